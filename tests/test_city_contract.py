"""Contract v1 (docs/city-contract.md): the portal's client against the stand-in city server over real HTTP."""

from __future__ import annotations

import socket

import pytest

from portal.interop.city_client import CityClient, CityError
from portal.records import exporters
from tests.city_helpers import API_KEY, content_for, metadata_for, record_pdf, standin


@pytest.fixture
def city(tmp_path):
    with standin(tmp_path / "city") as server:
        yield server


@pytest.fixture
def client(city):
    return CityClient(city.url, API_KEY, timeout=5)


def a_record(code="HB0000000001", pupil_code="7978640123", number=1):
    content = content_for(code, pupil_code, number=number)
    pdf = record_pdf(exporters.export_xml(content))
    return pdf, metadata_for(content, pdf)


def test_upload_answers_a_receipt_and_the_status_query_finds_it(client, city):
    pdf, metadata = a_record()
    receipt = client.upload(pdf, metadata)
    assert receipt.record_code == "HB0000000001" and receipt.status == "accepted" and not receipt.duplicate
    assert receipt.receipt_number.startswith("TP-")
    held = client.status("HB0000000001")
    assert held is not None and held.receipt_number == receipt.receipt_number and held.sha256 == metadata["sha256"]
    assert client.status("HB9999999999") is None
    # What the city received is the file sent, byte for byte.
    assert (city.data / "files" / f"{metadata['sha256']}.pdf").read_bytes() == pdf


def test_the_version_code_is_the_idempotency_key(client, city):
    pdf, metadata = a_record()
    first = client.upload(pdf, metadata)
    again = client.upload(pdf, metadata)
    assert again.duplicate and again.receipt_number == first.receipt_number
    assert city.stored() == {"HB0000000001": 1}
    other_pdf, other = a_record(pupil_code="7978640999")
    other["record_code"] = "HB0000000001"
    with pytest.raises(CityError) as refused:
        client.upload(other_pdf, {**other, "pupil_code": "7978640123"})
    assert refused.value.code == "IDEMPOTENCY_CONFLICT" and not refused.value.retryable
    assert "phiên bản mới" in refused.value.action
    assert len(city.records()) == 1


def test_the_district_key_is_required(city):
    pdf, metadata = a_record()
    for key, code in (("", "AUTH_MISSING"), ("khoa-sai", "AUTH_INVALID")):
        with pytest.raises(CityError) as refused:
            CityClient(city.url, key).upload(pdf, metadata)
        # Our key, not the record: not final, it waits for the fix (see test_city_faults).
        assert refused.value.code == code and refused.value.status == 401
        assert refused.value.kind == "configuration" and not refused.value.final
    assert city.records() == []


@pytest.mark.parametrize(("spoil", "code", "retryable"), [
    (lambda pdf, m: (pdf, {**m, "sha256": "0" * 64}), "HASH_MISMATCH", True),
    (lambda pdf, m: (record_pdf(None), {**m, "sha256": metadata_for_pdf(record_pdf(None))}), "XML_MISSING", False),
    (lambda pdf, m: (pdf, {**m, "pupil_code": "khac"}), "METADATA_MISMATCH", False),
    (lambda pdf, m: (pdf, {**m, "version_number": 2}), "METADATA_MISMATCH", False),
])
def test_what_the_city_checks_is_refused_with_a_vietnamese_reason(client, city, spoil, code, retryable):
    pdf, metadata = spoil(*a_record())
    with pytest.raises(CityError) as refused:
        client.upload(pdf, metadata)
    assert refused.value.code == code and refused.value.retryable is retryable
    assert refused.value.status == 422 and refused.value.message and refused.value.action
    assert city.records() == []


def metadata_for_pdf(pdf):
    import hashlib

    return hashlib.sha256(pdf).hexdigest()


def test_xml_outside_the_schema_is_refused(client, city):
    xml = exporters.export_xml(content_for("HB0000000001", "7978640123")).replace(b"<", b"<x:", 1)
    bad = b'<?xml version="1.0"?><hocBa xmlns="urn:khac"><ma>HB0000000001</ma></hocBa>'
    for payload in (xml, bad):
        pdf = record_pdf(payload)
        _, metadata = a_record()
        with pytest.raises(CityError) as refused:
            client.upload(pdf, {**metadata, "sha256": metadata_for_pdf(pdf)})
        assert refused.value.code == "SCHEMA_INVALID" and not refused.value.retryable


def test_cancel_and_supersede_are_announced_once(client, city):
    pdf, metadata = a_record()
    client.upload(pdf, metadata)
    first = client.announce("HB0000000001", "superseded", "Điều chỉnh ngày sinh", replaced_by="HB0000000002")
    again = client.announce("HB0000000001", "superseded", "Điều chỉnh ngày sinh", replaced_by="HB0000000002")
    assert first.status == "superseded" and again.duplicate and again.receipt_number == first.receipt_number
    assert client.status("HB0000000001").status == "superseded"
    with pytest.raises(CityError) as unknown:
        client.announce("HB0000000404", "cancelled", "Nhầm học sinh")
    assert unknown.value.code == "RECORD_NOT_FOUND" and unknown.value.status == 404


def test_returned_records_feed_and_its_files(client, city):
    import json
    import urllib.request

    pdf, metadata = a_record()
    client.upload(pdf, metadata)
    body = json.dumps({"record_code": "HB0000000001", "admitted_school_moet_code": "79786402"}).encode()
    urllib.request.urlopen(urllib.request.Request(city.url + "/_standin/returned", data=body, method="POST",
                                                  headers={"Content-Type": "application/json"}), timeout=5).close()
    items, cursor = client.returned(0)
    assert [i["record_code"] for i in items] == ["HB0000000001"]
    assert items[0]["admitted_school_moet_code"] == "79786402" and items[0]["issuing_school_moet_code"] == "79786401"
    assert client.returned_file(items[0]["return_id"]) == pdf
    assert client.returned(cursor) == ([], cursor)


def test_what_was_received_survives_a_restart(tmp_path):
    pdf, metadata = a_record()
    with standin(tmp_path / "city") as first:
        receipt = CityClient(first.url, API_KEY).upload(pdf, metadata)
    with standin(tmp_path / "city") as second:
        held = CityClient(second.url, API_KEY).status("HB0000000001")
        assert held is not None and held.receipt_number == receipt.receipt_number
        again = CityClient(second.url, API_KEY).upload(pdf, metadata)
        assert again.duplicate and again.receipt_number == receipt.receipt_number
        # A new record after the restart gets a new number, never one given before.
        pdf2, metadata2 = a_record("HB0000000002", "7978640124")
        assert CityClient(second.url, API_KEY).upload(pdf2, metadata2).receipt_number != receipt.receipt_number
        assert [e["outcome"] for e in second.log()][:1] == ["stored"]


def test_faults_the_stand_in_can_be_told_to_make_are_retryable(client, city):
    pdf, metadata = a_record()
    city.behave(down=True)
    with pytest.raises(CityError) as down:
        client.upload(pdf, metadata)
    assert down.value.code == "UNAVAILABLE" and down.value.status == 503 and down.value.retryable
    city.behave(down=False, error_rate=1.0)
    with pytest.raises(CityError) as failing:
        client.status("HB0000000001")
    assert failing.value.code == "INTERNAL" and failing.value.retryable
    city.behave(error_rate=0.0, delay_seconds=0.6)
    with pytest.raises(CityError) as slow:
        CityClient(city.url, API_KEY, timeout=0.2).status("HB0000000001")
    assert slow.value.code == "TIMEOUT" and slow.value.retryable
    city.behave(reset=True, reject={"record_codes": None, "code": "SIGNATURE_UNTRUSTED",
                                    "message": "Chứng thư số của trường chưa đăng ký với Sở."})
    with pytest.raises(CityError) as rejected:
        client.upload(pdf, metadata)
    assert rejected.value.code == "SIGNATURE_UNTRUSTED" and not rejected.value.retryable
    assert rejected.value.message == "Chứng thư số của trường chưa đăng ký với Sở."
    city.behave(reset=True)
    assert client.upload(pdf, metadata).status == "accepted"
    # Every request was logged with what came of it.
    outcomes = [(e["method"], e["status"], e["outcome"]) for e in city.log()]
    assert outcomes[0] == ("POST", 503, "error:UNAVAILABLE") and outcomes[-1] == ("POST", 201, "stored")


def test_a_city_nobody_answers_at_is_retryable():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(CityError) as unreachable:
        CityClient(f"http://127.0.0.1:{port}", API_KEY, timeout=2).status("HB0000000001")
    assert unreachable.value.code == "UNREACHABLE" and unreachable.value.retryable
    assert "Không kết nối được" in unreachable.value.message
