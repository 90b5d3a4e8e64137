"""Public verification by code and by file, its JSON API, the lookup log and the rate limits."""

from __future__ import annotations

import io
import re

import pytest
import sqlalchemy as sa

from portal.audit import AuditEntry
from portal.extensions import db
from portal.records.models import RecordStatus
from portal.verify import services
from portal.verify.models import LookupKind, LookupOutcome, PublicLookup
from tenants.roles import Role
from tests import verify_factory as vf
from tests.conftest import csrf_token
from tests.records_factory import assessed_class, generate


@pytest.fixture
def trust(app, tmp_path, monkeypatch):
    """The test CA's root is the configured trust root."""
    monkeypatch.setitem(app.config, "TRUST_ROOTS", (vf.write_root(tmp_path, vf.trusted_ca()),))


@pytest.fixture
def world(app, make, trust):
    """School lqd with two grade-5 pupils' drafts; the first one's record issued (three signatures)."""
    school = make.school("lqd", vf.SCHOOL_NAME)
    gvcn = make.user(school, Role.HOMEROOM_TEACHER, full_name=vf.GVCN_NAME)
    assessed = assessed_class(app, school, gvcn, pupils=2, years=1)
    drafts = sorted(generate(app, school, assessed.setup.class_id, gvcn),
                    key=lambda v: v.content["pupil"]["full_name"] != "Nguyễn Thị Ánh Tuyết")
    issued = vf.issue(app, school, drafts[0].id)
    return {"app": app, "school": school, "gvcn": gvcn, "issued": issued, "draft": drafts[1],
            "class_id": assessed.setup.class_id, "pupils": assessed.setup.pupil_ids}


def lookups(app, kind=None):
    with app.app_context():
        query = sa.select(PublicLookup.kind, PublicLookup.outcome).order_by(PublicLookup.id)
        if kind:
            query = query.where(PublicLookup.kind == kind)
        return [tuple(row) for row in db.session.execute(query)]


def audit_actions(app, action_prefix):
    with app.app_context():
        return list(db.session.scalars(sa.select(AuditEntry).where(AuditEntry.action.startswith(action_prefix))
                                       .order_by(AuditEntry.id)))


# --- masking ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "masked"), [
    ("Nguyễn Thị Ánh Tuyết", "N. T. Á. Tuyết"),
    ("Đặng  Văn   Ánh", "Đ. V. Ánh"),
    ("Nguye\u0302\u0303n Thi\u0323 Ánh Tuyê\u0301t", "N. T. Á. Tuyết"),  # NFD input
    ("Tuyết", "Tuyết"),
    ("", ""),
    (None, ""),
])
def test_names_are_masked_to_initials_and_the_last_given_name(name, masked):
    assert services.mask_name(name) == masked


# --- by code ---------------------------------------------------------------------------------------------------


def test_an_issued_current_record_shows_the_minimum(client, world):
    app, issued = world["app"], world["issued"]
    page = client.get(f"/verify/{issued.code}")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert 'data-state="current"' in text and "Đã ban hành, là bản hiện hành" in text
    assert "N. T. Á. Tuyết" in text and "Nguyễn Thị Ánh Tuyết" not in text
    birth_date = issued.content["pupil"]["birth_date"]
    assert birth_date[:4] in text and birth_date not in text and "/03/" not in text  # the year only
    assert vf.SCHOOL_NAME in text and issued.content["years"][-1]["school_year"] in text
    assert issued.signed_digest in text
    # The signers, read from the issued file's signatures, in order, with the signing time.
    assert text.index(vf.GVCN_NAME) < text.index(vf.PRINCIPAL_NAME) < text.rindex(vf.SCHOOL_NAME)
    assert "Giáo viên chủ nhiệm" in text and "Hiệu trưởng" in text and "Ký lúc" in text
    # Nothing else of the record's personal data.
    for key in ("pupil_code", "father_name", "mother_name", "address", "birth_place"):
        value = issued.content["pupil"].get(key)
        assert not value or value not in text, key
    # A code typed loosely (lower case, dashes, O for 0) finds the same record.
    loose = "-".join(issued.code[i:i + 4] for i in range(0, 12, 4)).lower().replace("0", "o")
    assert 'data-state="current"' in client.get(f"/verify/{loose}").get_data(as_text=True)
    # Logged: found, twice, and in the school's trail with a hashed address.
    assert lookups(app) == [(LookupKind.CODE, LookupOutcome.FOUND)] * 2
    entries = audit_actions(app, "verify.code")
    assert len(entries) == 2 and entries[0].school_id == world["school"].id and entries[0].object_id == str(issued.id)
    assert entries[0].address and entries[0].address != "127.0.0.1" and len(entries[0].address) == 16


def test_the_form_leads_to_the_code_page(client, world):
    response = client.get("/verify", query_string={"code": world["issued"].code.lower()})
    assert response.status_code == 302 and response.location.endswith(f"/verify/{world['issued'].code}")
    page = client.get("/verify", query_string={"code": "--"})
    assert page.status_code == 200 and "Mã tra cứu gồm chữ và số" in page.get_data(as_text=True)
    assert client.get("/verify").status_code == 200


def test_unknown_and_draft_codes_answer_alike(client, world):
    app = world["app"]
    draft, unknown = world["draft"].code, "HB0000000000"
    pages = {code: client.get(f"/verify/{code}") for code in (draft, unknown)}
    assert {p.status_code for p in pages.values()} == {200}
    # The form token carries the second it was made in: two pages a second apart differ there and only there.
    texts = {code: re.sub(r'name="csrf_token" value="[^"]*"', 'name="csrf_token"',
                          p.get_data(as_text=True).replace(code, "<code>")) for code, p in pages.items()}
    assert texts[draft] == texts[unknown], "a draft must not be told apart from an unknown code"
    assert 'data-state="unknown"' in texts[draft] and "N. T." not in texts[draft]
    # The API too.
    answers = [client.get(f"/api/verify/{code}").get_json() for code in (draft, unknown)]
    assert [a["found"] for a in answers] == [False, False] and set(answers[0]) == set(answers[1])
    # Each signed stage before issue is still unknown.
    for status in (RecordStatus.SIGNED_HOMEROOM, RecordStatus.SIGNED_PRINCIPAL, RecordStatus.RETURNED):
        vf.set_status(app, world["school"], world["draft"].id, status)
        assert client.get(f"/api/verify/{draft}").get_json()["found"] is False, status
    # ...and so is a draft cancelled before it was ever issued.
    vf.set_status(app, world["school"], world["draft"].id, RecordStatus.CANCELLED, "Tạo nhầm")
    assert client.get(f"/api/verify/{draft}").get_json()["found"] is False
    assert not audit_actions(app, "verify.")
    assert {o for _k, o in lookups(app)} == {LookupOutcome.UNKNOWN}


def test_a_superseded_record_names_the_version_that_replaced_it(client, world):
    app, school, old = world["app"], world["school"], world["issued"]
    new = vf.correction(app, school, old)
    # While the correction is a draft, the old record is still the current one and the new is unknown.
    assert client.get(f"/api/verify/{old.code}").get_json()["status"] == "current"
    assert client.get(f"/api/verify/{new.code}").get_json()["found"] is False
    vf.issue(app, school, new.id)
    vf.set_status(app, school, old.id, RecordStatus.SUPERSEDED, "Sửa nhận xét môn Toán")
    text = client.get(f"/verify/{old.code}").get_data(as_text=True)
    assert 'data-state="superseded"' in text and "Sửa nhận xét môn Toán" in text
    assert f'href="/verify/{new.code}"' in text and "bản số 2" in text
    answer = client.get(f"/api/verify/{old.code}").get_json()
    assert answer["status"] == "superseded" and answer["status_reason"] == "Sửa nhận xét môn Toán"
    assert answer["superseded_by"]["code"] == new.code and answer["superseded_by"]["number"] == 2
    assert answer["superseded_by"]["url"].endswith(f"/verify/{new.code}") and answer["status_changed_at"]
    assert client.get(f"/api/verify/{new.code}").get_json()["status"] == "current"


def test_a_cancelled_record_says_when_and_why(client, world):
    app, school, issued = world["app"], world["school"], world["issued"]
    vf.set_status(app, school, issued.id, RecordStatus.CANCELLED, "Cấp nhầm học sinh")
    text = client.get(f"/verify/{issued.code}").get_data(as_text=True)
    assert 'data-state="cancelled"' in text and "Đã bị hủy" in text and "Cấp nhầm học sinh" in text
    answer = client.get(f"/api/verify/{issued.code}").get_json()
    assert answer["found"] is True and answer["status"] == "cancelled"
    assert answer["status_reason"] == "Cấp nhầm học sinh" and answer["superseded_by"] is None


def test_the_code_api_answers_json_for_other_systems(client, world):
    issued = world["issued"]
    response = client.get(f"/api/verify/{issued.code}")
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert response.headers["Access-Control-Allow-Origin"] == "*" and "Set-Cookie" not in response.headers
    answer = response.get_json()
    assert answer["api_version"] == 1 and answer["found"] is True and answer["code"] == issued.code
    assert answer["pupil"] == {"name_masked": "N. T. Á. Tuyết",
                               "birth_year": issued.content["pupil"]["birth_date"][:4]}
    assert answer["sha256"] == issued.signed_digest and answer["grade"] == 5
    assert [s["name"] for s in answer["signers"]] == [vf.GVCN_NAME, vf.PRINCIPAL_NAME, vf.SCHOOL_NAME]
    assert all(s["signed_at"].endswith("Z") for s in answer["signers"])
    assert answer["url"].endswith(f"/verify/{issued.code}")


# --- by file ---------------------------------------------------------------------------------------------------


BOUNDARY = "----hocbaso-test-boundary"


def multipart(data: bytes, name: str = "hoc-ba.pdf", **fields: str) -> bytes:
    """A multipart/form-data body built in memory (the test client spools big files to unclosed temp files)."""
    parts = [f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in fields.items()]
    parts.append(f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
                 f"Content-Type: application/pdf\r\n\r\n".encode() + data + b"\r\n")
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def upload(client, data: bytes, name: str = "hoc-ba.pdf"):
    token = csrf_token(client, "/verify/upload")
    return client.post("/verify/upload", data=multipart(data, name, csrf_token=token),
                       content_type=f"multipart/form-data; boundary={BOUNDARY}")


def api_upload(client, data: bytes):
    return client.post("/api/verify/file", data=multipart(data),
                       content_type=f"multipart/form-data; boundary={BOUNDARY}")


def test_the_issued_file_is_valid_and_found_in_the_registry(client, world):
    app, issued = world["app"], world["issued"]
    data = vf.signed_file(app, issued)
    page = upload(client, data)
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert 'data-verdict="registered_current"' in text and 'data-found="yes"' in text
    assert text.count('class="signature"') == 3 and 'check-bad' not in text
    assert text.count('data-check="trusted"') == 3 and "Không có dấu thời gian" in text
    assert "N. T. Á. Tuyết" in text and issued.signed_digest in text
    answer = api_upload(client, data).get_json()
    assert answer["ok"] is True and answer["verdict"] == "registered_current" and answer["checkable"] is True
    assert answer["registry"]["found"] is True and answer["registry"]["current"] is True
    assert answer["registry"]["record"]["code"] == issued.code and answer["sha256"] == issued.signed_digest
    assert [s["field"] for s in answer["signatures"]] == ["gvcn", "hieu_truong", "con_dau"]
    assert all(all(v is not False for v in s["checks"].values()) for s in answer["signatures"])
    assert answer["signatures"][0]["checks"]["timestamp"] is None  # no timestamp: nothing to judge
    assert lookups(app, LookupKind.FILE) == [(LookupKind.FILE, LookupOutcome.FOUND)] * 2
    assert len(audit_actions(app, "verify.file")) == 2


def test_an_old_version_file_is_valid_but_not_current(client, world):
    app, school, old = world["app"], world["school"], world["issued"]
    new = vf.issue(app, school, vf.correction(app, school, old).id)
    vf.set_status(app, school, old.id, RecordStatus.SUPERSEDED, "Điều chỉnh")
    answer = api_upload(client, vf.signed_file(app, old)).get_json()
    assert answer["ok"] is True and answer["verdict"] == "registered_old"
    assert answer["registry"]["found"] is True and answer["registry"]["current"] is False
    assert answer["registry"]["record"]["superseded_by"]["code"] == new.code


def test_one_changed_byte_breaks_the_file(client, world):
    app, issued = world["app"], world["issued"]
    data = bytearray(vf.signed_file(app, issued))
    # A byte inside the first revision's content (signed by every signature), not in a signature value.
    position = data.index(b"stream", len(data) // 8) + 40
    data[position] ^= 0x01
    answer = api_upload(client, bytes(data)).get_json()
    assert answer["ok"] is False and answer["verdict"] == "invalid"
    assert answer["registry"]["found"] is False
    assert [s["checks"]["intact"] for s in answer["signatures"]] == [False, False, False]
    assert any("đã bị sửa sau khi ký" in p for p in answer["problems"])
    # The file still names its record: the page points at what the registry holds for that code.
    assert answer["registry"]["claimed_code"] == issued.code
    text = upload(client, bytes(data)).get_data(as_text=True)
    assert 'data-verdict="invalid"' in text and 'data-found="no"' in text and f"/verify/{issued.code}" in text


def test_a_file_signed_by_an_untrusted_certificate_is_flagged(client, world):
    app, school = world["app"], world["school"]
    forged = vf.issue(app, school, world["draft"].id, vf.untrusted_ca())  # in the registry, but forged keys
    answer = api_upload(client, vf.signed_file(app, forged)).get_json()
    assert answer["ok"] is False and answer["verdict"] == "invalid"
    assert [s["checks"]["trusted"] for s in answer["signatures"]] == [False, False, False]
    assert all(s["checks"]["intact"] and s["checks"]["valid"] for s in answer["signatures"])
    text = upload(client, vf.signed_file(app, forged)).get_data(as_text=True)
    assert 'data-verdict="invalid"' in text and "tổ chức chứng thực được tin cậy" in text


def _encrypted_pdf() -> bytes:
    from pypdf import PdfWriter

    writer = PdfWriter()
    writer.add_blank_page(width=595, height=842)
    writer.encrypt("mat-khau")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


@pytest.mark.parametrize(("data", "message"), [
    (b"", "Tệp rỗng"),
    (b"PK\x03\x04 a zip, not a PDF" * 10, "không phải là tệp PDF"),
    (b"%PDF-1.7\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF garbage", "bị hỏng"),
    (_encrypted_pdf(), "được mã hóa"),
], ids=["empty", "not-pdf", "broken", "encrypted"])
def test_files_that_cannot_be_checked_get_a_clear_answer(client, world, data, message):
    page = upload(client, data, "tep.pdf")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert 'data-verdict="unreadable"' in text and message in text
    answer = api_upload(client, data).get_json()
    assert answer["verdict"] == "unreadable" and answer["ok"] is False and answer["registry"]["found"] is False
    assert any(message in p for p in answer["problems"])


def test_the_api_takes_the_file_as_the_body_too(client, world):
    data = vf.signed_file(world["app"], world["issued"])
    answer = client.post("/api/verify/file", data=data, content_type="application/pdf").get_json()
    assert answer["verdict"] == "registered_current"
    empty = client.post("/api/verify/file", data=b"", content_type="application/pdf").get_json()
    assert empty["checkable"] is False and "Tệp rỗng" in empty["problems"][0]
    missing = client.post("/api/verify/file", data={"other": "x"})
    assert missing.status_code == 400 and missing.get_json()["error"] == "no_file"


def test_a_file_over_the_size_limit_is_refused_clearly(app, client, world, monkeypatch):
    monkeypatch.setitem(app.config, "VERIFY_MAX_UPLOAD_MB", 1)
    # Just over the limit (the form around it still fits the request allowance): the service refuses it.
    just_over = b"%PDF-1.7\n" + b"0" * (1024 * 1024)
    answer = api_upload(client, just_over).get_json()
    assert answer["checkable"] is False and "lớn hơn 1 MB" in answer["problems"][0]
    # Far over: the request is refused before it is read, with the same clear answer (never an error page).
    huge = b"%PDF-1.7\n" + b"0" * (3 * 1024 * 1024)
    page = upload(client, huge)
    assert page.status_code == 413
    text = page.get_data(as_text=True)
    assert "lớn hơn 1 MB" in text and 'id="upload-form"' in text and 'data-verdict="unreadable"' in text
    response = api_upload(client, huge)
    assert response.status_code == 413 and response.get_json()["error"] == "too_large"
    assert lookups(world["app"], LookupKind.FILE) == [(LookupKind.FILE, LookupOutcome.REFUSED)] * 3


def test_the_upload_form_needs_its_token_but_the_api_does_not(client, world):
    data = vf.signed_file(world["app"], world["issued"])
    refused = client.post("/verify/upload", data=multipart(data),
                          content_type=f"multipart/form-data; boundary={BOUNDARY}")
    assert refused.status_code == 400
    assert api_upload(client, data).status_code == 200


# --- rate limits -------------------------------------------------------------------------------------------------


def test_code_lookups_are_limited_per_address(app, client, world, monkeypatch):
    monkeypatch.setitem(app.config, "VERIFY_LOOKUPS_PER_ADDRESS", 3)
    code = world["issued"].code
    assert [client.get(f"/verify/{code}").status_code for _ in range(3)] == [200] * 3
    page = client.get(f"/verify/{code}")
    assert page.status_code == 429 and "thử lại sau 10 phút" in page.get_data(as_text=True)
    api = client.get(f"/api/verify/{code}")
    assert api.status_code == 429 and api.get_json()["error"] == "rate_limited"
    assert api.headers["Retry-After"] == "600"
    # Unknown codes count too: guessing is what the limit is for.
    other = app.test_client()
    env = {"REMOTE_ADDR": "203.0.113.9"}
    assert [other.get(f"/verify/HB{n:010d}", environ_base=env).status_code for n in range(3)] == [200] * 3
    assert other.get(f"/verify/{code}", environ_base=env).status_code == 429
    # Another address is not affected; an IPv6 neighbour in the same /64 is.
    assert client.get(f"/verify/{code}", environ_base={"REMOTE_ADDR": "198.51.100.7"}).status_code == 200
    for n in range(3):
        client.get(f"/api/verify/{code}", environ_base={"REMOTE_ADDR": f"2001:db8:1:2::{n + 1}"})
    assert client.get(f"/api/verify/{code}", environ_base={"REMOTE_ADDR": "2001:db8:1:2::ff"}).status_code == 429
    assert client.get(f"/api/verify/{code}", environ_base={"REMOTE_ADDR": "2001:db8:1:3::1"}).status_code == 200
    outcomes = [o for _k, o in lookups(app, LookupKind.CODE)]
    assert outcomes.count(LookupOutcome.LIMITED) == 4


def test_uploads_are_limited_per_address(app, client, world, monkeypatch):
    monkeypatch.setitem(app.config, "VERIFY_UPLOADS_PER_ADDRESS", 2)
    assert [api_upload(client, b"not a pdf").status_code for _ in range(2)] == [200, 200]
    assert api_upload(client, b"not a pdf").status_code == 429
    page = upload(client, b"not a pdf")
    assert page.status_code == 429 and "Vui lòng thử lại sau" in page.get_data(as_text=True)


def test_the_window_passes(app, world):
    with app.test_request_context():
        key = services.address_key("192.0.2.1")
        app.config["VERIFY_LOOKUPS_PER_ADDRESS"], saved = 1, app.config["VERIFY_LOOKUPS_PER_ADDRESS"]
        try:
            services.log_lookup(LookupKind.CODE, LookupOutcome.UNKNOWN, key)
            db.session.commit()
            assert services.is_limited(LookupKind.CODE, key)
            later = services.utcnow() + services.timedelta(minutes=app.config["VERIFY_WINDOW_MINUTES"] + 1)
            assert not services.is_limited(LookupKind.CODE, key, now=later)
            assert services.purge_lookups(now=later + services.timedelta(days=app.config["LOOKUP_LOG_DAYS"])) == 1
        finally:
            app.config["VERIFY_LOOKUPS_PER_ADDRESS"] = saved


def test_the_signing_workflows_rows_name_the_signers_when_there_are_some(app, client, world):
    from datetime import UTC, datetime

    from portal.records.models import RecordSignature
    from tenants.scoping import school_scope

    issued = world["issued"]
    with app.app_context(), school_scope(world["school"].id):
        for n, step in enumerate(("con_dau", "gvcn", "hieu_truong")):  # stored in any order
            db.session.add(RecordSignature(record_version_id=issued.id, step=step, signer_name=f"Người ký {step}",
                                           certificate_fingerprint="0" * 64, key_kind="pkcs12",
                                           signed_at=datetime(2025, 5, 28, 3, n, tzinfo=UTC),
                                           input_digest="0" * 64, output_digest="0" * 64))
        db.session.commit()
    answer = client.get(f"/api/verify/{issued.code}").get_json()
    assert [(s["name"], s["role"]) for s in answer["signers"]] == [
        ("Người ký gvcn", "Giáo viên chủ nhiệm"), ("Người ký hieu_truong", "Hiệu trưởng"),
        ("Người ký con_dau", "Con dấu số của trường")]
    assert answer["signers"][0]["signed_at"] == "2025-05-28T03:01:00Z"
