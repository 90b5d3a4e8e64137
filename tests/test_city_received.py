"""Records returned by the city after admissions: pulled from the feed, verified, attached to the pupil at
the admitting school with the issuing school's identity; a tampered or wrongly signed record is refused
with a clear reason. The stand-in's own signature check speaks the same verdicts in the contract's codes."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from portal import jobs
from portal.assessment.models import Pupil
from portal.extensions import db
from portal.interop.city_client import CityClient, CityError
from portal.interop.models import ReceivedRecord, ReceivedRecordFixed, ReceivedState
from portal.interop.received import received_year_pages
from tenants.roles import Role
from tenants.scoping import all_schools, school_scope
from tests.city_helpers import (
    API_KEY,
    content_for,
    metadata_for,
    returned_to,
    roots_file,
    signed_record,
    standin,
    tampered,
)
from tests.conftest import finish_jobs, login
from tests.registry_factory import register_signers
from tests.signing_factory import make_demo_pki

pytestmark = pytest.mark.slow  # real records, rendered and signed three times each


@pytest.fixture(scope="module")
def signed():
    """A genuine record, the same tampered with, and one signed under a CA nobody trusts."""
    demo, stranger = make_demo_pki(), make_demo_pki()
    genuine = signed_record(content_for("HB00000000A1", "7978640123"), demo)
    untrusted = signed_record(content_for("HB00000000A2", "7978640124"), stranger)
    return {"demo": demo, "genuine": genuine, "tampered": tampered(genuine), "untrusted": untrusted}


@pytest.fixture
def city(app, tmp_path, monkeypatch, signed):
    with standin(tmp_path / "city") as server:
        settings = {"CITY_URL": server.url, "CITY_API_KEY": API_KEY,
                    "CITY_TRUST_ROOTS": roots_file(tmp_path, signed["demo"].roots)}
        for key, value in settings.items():
            monkeypatch.setitem(app.config, key, value)
            monkeypatch.setenv(key, str(value))
        yield server


def feed(city, signed, admitted):
    """The city returns four records: genuine, tampered, wrongly signed, and one for a school not ours."""
    items = {}
    for name, code, pupil_code, school in (("genuine", "HB00000000A1", "7978640123", admitted),
                                           ("tampered", "HB00000000A1", "7978640123", admitted),
                                           ("untrusted", "HB00000000A2", "7978640124", admitted),
                                           ("genuine", "HB00000000A1", "7978640123", "70000000")):
        pdf = signed[name]
        metadata = metadata_for(content_for(code, pupil_code), pdf)
        metadata["admitted_school_moet_code"] = school
        items[f"{name}:{school}"] = returned_to(city.url, pdf, metadata)
    return items


def test_returned_records_are_verified_and_attached(app, city, signed, make, client, no_csrf):
    school = make.school("hiepphuoc", "Trường Tiểu học Hiệp Phước")
    with app.app_context():
        from tenants.models import School

        db.session.get(School, school.id).moet_code = "79786402"
        db.session.commit()
    with app.app_context(), school_scope(school.id):
        db.session.add(Pupil(school_id=school.id, pupil_code="7978640123", full_name="Nguyễn Thị Ánh Tuyết"))
        db.session.commit()
    feed(city, signed, "79786402")
    login(client, make.user(school, Role.PRINCIPAL))
    response = client.post("/s/hiepphuoc/exchange/received/pull")
    assert response.status_code == 302
    run_id = response.location.rsplit("/", 1)[1]
    finish_jobs(app, [run_id], timeout=120)
    with app.app_context():
        run = db.session.get(jobs.JobRun, run_id)
        assert run.state == jobs.JobState.FINISHED, run.error
        assert run.result["returned"] == 4 and run.result["accepted"] == 1 and run.result["refused"] == 2
        assert run.result["unknown_schools"] == ["70000000"]
    with app.app_context(), school_scope(school.id):
        rows = {r.external_ref: r for r in db.session.scalars(sa.select(ReceivedRecord))}
        pupil = db.session.scalar(sa.select(Pupil).where(Pupil.pupil_code == "7978640123"))
        genuine, bad, stranger = (rows[f"city:{n}"] for n in (1, 2, 3))
        assert genuine.state == ReceivedState.ACCEPTED and genuine.pupil_id == pupil.id
        assert genuine.issuing_school_name == "Trường Tiểu học Lê Quang Định"  # the issuer, not this school
        assert genuine.issuing_school_moet_code == "79786401" and genuine.record_code == "HB00000000A1"
        assert [s["field"] for s in genuine.report["signatures"]] == ["gvcn", "hieu_truong", "con_dau"]
        assert bad.state == ReceivedState.REFUSED and bad.pupil_id is None
        assert "bị thay đổi sau khi ký" in bad.reason
        assert stranger.state == ReceivedState.REFUSED
        assert "không thuộc tổ chức chứng thực được tin cậy" in stranger.reason
        # The study history continues: the received year pages, marked as received, for new records.
        pages = received_year_pages(pupil)
        assert [p["school_year"] for p in pages] == ["2024-2025"] and pages[0]["source"] == "received"
        # What the issuing school signed, and the verdict, cannot be changed here.
        genuine.pdf_digest = "0" * 64
        with pytest.raises(ReceivedRecordFixed):
            db.session.flush()
        db.session.rollback()
        refused_id = bad.id
    page = client.get("/s/hiepphuoc/exchange/received").get_data(as_text=True)
    assert page.count('data-state="accepted"') == 1 and page.count('data-state="refused"') == 2
    detail = client.get(f"/s/hiepphuoc/exchange/received/{refused_id}").get_data(as_text=True)
    assert "bị thay đổi sau khi ký" in detail
    assert client.get("/s/hiepphuoc/exchange/received/1/file").data == signed["genuine"]
    # Pulling again takes nothing twice: the feed is read from where it was left.
    response = client.post("/s/hiepphuoc/exchange/received/pull")
    finish_jobs(app, [response.location.rsplit("/", 1)[1]], timeout=60)
    with app.app_context(), school_scope(school.id):
        assert db.session.scalar(sa.select(sa.func.count()).select_from(ReceivedRecord)) == 3


def test_the_standin_checks_the_three_signatures(tmp_path, signed):
    with standin(tmp_path / "city", checks=("hash", "xml", "schema", "metadata", "signatures"),
                 trust_roots=signed["demo"].roots) as city:
        client = CityClient(city.url, API_KEY)
        for name, code, pupil_code, error in (("tampered", "HB00000000A1", "7978640123", "SIGNATURE_INVALID"),
                                              ("untrusted", "HB00000000A2", "7978640124", "SIGNATURE_UNTRUSTED")):
            pdf = signed[name]
            with pytest.raises(CityError) as refused:
                client.upload(pdf, metadata_for(content_for(code, pupil_code), pdf))
            assert refused.value.code == error and not refused.value.retryable, name
            assert refused.value.message and refused.value.action
        assert city.records() == []
        genuine = signed["genuine"]
        receipt = client.upload(genuine, metadata_for(content_for("HB00000000A1", "7978640123"), genuine))
        assert receipt.status == "accepted" and city.stored() == {"HB00000000A1": 1}


def test_round_trip_upload_signed_then_returned_to_the_admitting_school(app, make, tmp_path, monkeypatch, signed):
    """A genuinely signed record goes up through the upload job to a stand-in checking all three signatures,
    and comes back through the returned feed to the school that admitted the pupil, accepted."""
    from portal.extensions import utcnow
    from portal.interop.models import CityUpload, UploadState
    from portal.records import exporters
    from portal.records.models import RecordStatus, RecordVersion
    from portal.storage import storage
    from tenants.models import School
    from tests.assessment_factory import make_class, make_year

    sender = make.school("lqd", "Trường Tiểu học Lê Quang Định")
    admitting = make.school("hp", "Trường Tiểu học Hiệp Phước")
    with app.app_context():
        db.session.get(School, sender.id).moet_code = "79786401"
        db.session.get(School, admitting.id).moet_code = "79786402"
        db.session.commit()
    year_id = make_year(app, sender)
    setup = make_class(app, sender, year_id, "5A", pupils=1)
    content = content_for("HB00000000A1", "7978640123")
    with app.app_context(), school_scope(sender.id):
        db.session.get(Pupil, setup.pupil_ids[0]).pupil_code = "7978640123"
        pdf = signed["genuine"]
        db.session.add(RecordVersion(school_id=sender.id, pupil_id=setup.pupil_ids[0], school_year_id=year_id,
                                     class_id=setup.class_id, grade=5, number=1, code="HB00000000A1",
                                     status=RecordStatus.ISSUED, content=content, source_hash="0" * 64,
                                     content_hash=exporters.content_hash(content), draft_digest=storage().put(pdf),
                                     xml_digest=storage().put(exporters.export_xml(content)),
                                     signed_digest=storage().put(pdf), issued_at=utcnow()))
        db.session.commit()
    # The portal issued it: its three signers are in the registry, as the signing workflow requires.
    register_signers(app, sender.id, setup.class_id,
                     {f: signed["demo"].by_field(f).certificate for f in ("gvcn", "hieu_truong", "con_dau")})
    with app.app_context(), school_scope(admitting.id):
        db.session.add(Pupil(school_id=admitting.id, pupil_code="7978640123", full_name="Nguyễn Thị Ánh Tuyết"))
        db.session.commit()
    with standin(tmp_path / "city", checks=("hash", "xml", "schema", "metadata", "signatures"),
                 trust_roots=signed["demo"].roots) as city:
        for key, value in {"CITY_URL": city.url, "CITY_API_KEY": API_KEY, "CITY_RETRY_SECONDS": 0.05,
                           "CITY_TRUST_ROOTS": roots_file(tmp_path, signed["demo"].roots)}.items():
            monkeypatch.setitem(app.config, key, value)
            monkeypatch.setenv(key, str(value))
        runs = []
        with app.app_context(), school_scope(sender.id):
            runs.append(jobs.enqueue("interop.upload", school_id=sender.id, actor=None, title="Gửi", grade=5).id)
            db.session.commit()
        finish_jobs(app, runs, timeout=120)
        with app.app_context(), school_scope(sender.id):
            upload = db.session.scalar(sa.select(CityUpload))
            assert upload.state == UploadState.ACKNOWLEDGED, (upload.error_code, upload.reason)
        returned_to_school = {"record_code": "HB00000000A1", "admitted_school_moet_code": "79786402"}
        import json
        import urllib.request

        urllib.request.urlopen(urllib.request.Request(
            city.url + "/_standin/returned", data=json.dumps(returned_to_school).encode(), method="POST",
            headers={"Content-Type": "application/json"}), timeout=10).close()
        with app.app_context(), all_schools():
            runs = [jobs.enqueue("interop.pull_returned", school_id=None, actor=None, title="Nhận").id]
            db.session.commit()
        finish_jobs(app, runs, timeout=120)
    with app.app_context(), school_scope(admitting.id):
        row = db.session.scalar(sa.select(ReceivedRecord))
        assert row.state == ReceivedState.ACCEPTED and row.pupil_id is not None, row.reason
        assert row.issuing_school_moet_code == "79786401" and storage().read(row.pdf_digest) == signed["genuine"]
