"""The signature policy against forgeries, as an attacker would make them, on the upload page and the API.

Every record here is signed in-process the way the issuing pipeline signs (PAdES B-LTA: timestamped
signatures, the CAs' CRLs in the DSS, a document timestamp) under a test PKI whose root (also the
timestamp authority's) is the configured trust root, and the required level is B-LTA. The genuine record
is `registered_current`; each forgery is `invalid` with a reason naming what is wrong.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization

from portal.extensions import db, utcnow
from portal.records import services as records
from portal.records.models import RecordStatus, RecordVersion
from portal.storage import storage
from tenants.roles import Role
from tenants.scoping import school_scope
from tests import ltv_factory as lf
from tests.assessment_factory import make_class, make_year
from tests.conftest import csrf_token
from tests.records_factory import insert_version
from tests.registry_factory import register_person, register_seal
from tests.test_verify import BOUNDARY, multipart

pytestmark = pytest.mark.slow  # every test signs a B-LTA record (timestamps, CRLs, document timestamp)

SCHOOL = "Trường Tiểu học Lê Quang Định"
OTHER_SCHOOL = "Trường Tiểu học Hiệp Phước"
GVCN, PRINCIPAL, SUBJECT_TEACHER = "Nguyễn Thị Mai", "Võ Thị Lài", "Trần Văn Bình"


@dataclass
class World:
    app: object
    school: object
    version_id: int
    code: str
    draft: bytes
    pki: lf.TestPki
    certs: dict  # name -> pki.IssuedCertificate
    users: dict  # name -> user id
    genuine: bytes

    def signatures(self, **override: lf.Signature) -> list[lf.Signature]:
        """The three genuine signatures, with some replaced."""
        default = {"gvcn": lf.Signature("gvcn", self.certs["gvcn"], GVCN),
                   "hieu_truong": lf.Signature("hieu_truong", self.certs["principal"], PRINCIPAL),
                   "con_dau": lf.Signature("con_dau", self.certs["seal"], SCHOOL)}
        default.update(override)
        return [default[f] for f in lf.FIELDS]

    def sign(self, signatures: list[lf.Signature] | None = None, **options: bool) -> bytes:
        return lf.sign_record(self.draft, signatures or self.signatures(), self.pki, school_name=SCHOOL, **options)


@pytest.fixture
def world(app, make, tmp_path, monkeypatch) -> World:
    """An issued B-LTA record of school lqd, its three signers registered; a teacher and a seal of lqd and
    of another school registered too (all under the trusted root)."""
    test_pki = lf.shared_pki()
    root = tmp_path / "root.pem"
    root.write_bytes(test_pki.root.public_bytes(serialization.Encoding.PEM))
    monkeypatch.setitem(app.config, "TRUST_ROOTS", (str(root),))
    monkeypatch.setitem(app.config, "SIGNATURE_LEVEL", "B-LTA")
    school, other = make.school("lqd", SCHOOL), make.school("hiepphuoc", OTHER_SCHOOL)
    users = {"gvcn": make.user(school, Role.HOMEROOM_TEACHER, full_name=GVCN).id,
             "principal": make.user(school, Role.PRINCIPAL, full_name=PRINCIPAL).id,
             "subject": make.user(school, Role.SUBJECT_TEACHER, full_name=SUBJECT_TEACHER).id,
             "vice": make.user(school, Role.VICE_PRINCIPAL, full_name="Lê Thị Hoa").id,
             "other_teacher": make.user(other, Role.HOMEROOM_TEACHER, full_name="Phạm Văn Đức").id}
    certs = {"gvcn": test_pki.person(GVCN, title="Giáo viên chủ nhiệm", school=SCHOOL),
             "principal": test_pki.person(PRINCIPAL, title="Hiệu trưởng", school=SCHOOL),
             "seal": test_pki.seal(SCHOOL),
             "subject": test_pki.person(SUBJECT_TEACHER, title="Giáo viên", school=SCHOOL),
             "vice": test_pki.person("Lê Thị Hoa", title="Phó hiệu trưởng", school=SCHOOL),
             "other_teacher": test_pki.person("Phạm Văn Đức", title="Giáo viên chủ nhiệm", school=OTHER_SCHOOL),
             "other_seal": test_pki.seal(OTHER_SCHOOL)}
    for name in ("gvcn", "principal", "subject", "vice"):
        register_person(app, users[name], certs[name].certificate, school_id=school.id)
    register_person(app, users["other_teacher"], certs["other_teacher"].certificate, school_id=other.id)
    register_seal(app, school.id, certs["seal"].certificate)
    register_seal(app, other.id, certs["other_seal"].certificate)
    year_id = make_year(app, school)
    setup = make_class(app, school, year_id, "5A", homeroom_id=users["gvcn"], pupils=1)
    version_id = insert_version(app, school, setup)
    with app.app_context(), school_scope(school.id):
        version = db.session.get(RecordVersion, version_id)
        code = version.code
        draft = lf.titled_record_pdf(code)
        version.draft_digest = storage().put(draft)
        db.session.commit()
    result = World(app, school, version_id, code, draft, test_pki, certs, users, b"")
    result.genuine = result.sign()
    with app.app_context(), school_scope(school.id):
        version = db.session.get(RecordVersion, version_id)
        version.signed_digest = storage().put(result.genuine)
        records.set_status(version, RecordStatus.ISSUED, actor=None)
        db.session.commit()
    return result


def api(client, data: bytes) -> dict:
    response = client.post("/api/verify/file", data=multipart(data),
                           content_type=f"multipart/form-data; boundary={BOUNDARY}")
    assert response.status_code == 200
    return response.get_json()


def page(client, data: bytes) -> str:
    token = csrf_token(client, "/verify/upload")
    response = client.post("/verify/upload", data=multipart(data, csrf_token=token),
                           content_type=f"multipart/form-data; boundary={BOUNDARY}")
    assert response.status_code == 200
    return response.get_data(as_text=True)


def assert_invalid(client, data: bytes, *reasons: str) -> dict:
    """Invalid on the API and on the page, each reason among the problems of both."""
    answer = api(client, data)
    assert answer["verdict"] == "invalid" and answer["ok"] is False, answer["problems"]
    for reason in reasons:
        assert any(reason in p for p in answer["problems"]), (reason, answer["problems"])
    text = page(client, data)
    assert 'data-verdict="invalid"' in text
    for reason in reasons:
        assert reason in text, reason
    return answer


def by_field(answer: dict) -> dict:
    return {s["field"]: s for s in answer["signatures"]}


# --- the genuine record ------------------------------------------------------------------------------------------


def test_the_genuine_b_lta_record_is_registered_current_with_every_detail(client, world):
    answer = api(client, world.genuine)
    assert answer["verdict"] == "registered_current" and answer["ok"] is True, answer["problems"]
    assert answer["problems"] == [] and answer["level"] == "B-LTA" and answer["required_level"] == "B-LTA"
    assert answer["signers_checked"] is True and answer["changed_after_seal"] is False
    assert len(answer["document_timestamps"]) == 1 and answer["document_timestamps"][0]["valid"] is True
    for field, signature in by_field(answer).items():
        assert signature["bottom_line"] and all(v is not False for v in signature["checks"].values()), field
        assert signature["level"] == "B-LTA" and signature["revocation"]["status"] == "good"
        assert signature["signer_matches"] is True and signature["time_source"] == "timestamp"
        assert signature["timestamp"]["valid"] is True and "TSA" in signature["timestamp"]["authority"]
        assert signature["judged_at"] == signature["timestamp"]["time"]
    signatures = by_field(answer)
    assert "lớp 5A" in signatures["gvcn"]["role_expected"] and GVCN in signatures["gvcn"]["role_found"]
    assert PRINCIPAL in signatures["hieu_truong"]["role_expected"]
    assert "con dấu" in signatures["con_dau"]["role_expected"]
    text = page(client, world.genuine)
    assert 'data-verdict="registered_current"' in text and 'data-level="B-LTA"' in text
    assert "check-bad" not in text and text.count('data-check="signer_role"') == 3
    assert text.count('data-check="revocation"') == 3 and "TSA thử nghiệm" in text
    assert 'data-doc-timestamp="ok"' in text


# --- when: the timestamp's time, never the signer's claim ------------------------------------------------------------


def test_an_expired_certificate_with_a_backdated_claim_is_invalid(client, world):
    now = utcnow()
    expired = world.pki.person(GVCN, title="Giáo viên chủ nhiệm", school=SCHOOL,
                               not_before=now - dt.timedelta(days=400), not_after=now - dt.timedelta(days=30))
    register_person(world.app, world.users["gvcn"], expired.certificate, at=now - dt.timedelta(days=399))
    claimed = now - dt.timedelta(days=60)  # inside the certificate's validity: what the forger writes in /M
    forged = world.sign(world.signatures(gvcn=lf.Signature("gvcn", expired, GVCN, claimed_time=claimed)))
    answer = assert_invalid(client, forged, "chứng thư số đã hết hạn ngày")
    gvcn = by_field(answer)["gvcn"]
    assert gvcn["checks"]["certificate_valid"] is False and gvcn["time_source"] == "timestamp"
    assert gvcn["signing_time"] < gvcn["timestamp"]["time"]  # the claim is shown, never used
    # Without a timestamp there is no trusted time at all: judged now, and the missing timestamp is named.
    bare = world.sign(world.signatures(gvcn=lf.Signature("gvcn", expired, GVCN, claimed_time=claimed)),
                      timestamps_on=False)
    answer = assert_invalid(client, bare, "chứng thư số đã hết hạn ngày", "thiếu dấu thời gian")
    assert by_field(answer)["gvcn"]["time_source"] == "validation_time"


def test_a_revoked_certificate_with_a_backdated_claim_is_invalid(client, world):
    now = utcnow()
    revoked = world.pki.person(PRINCIPAL, title="Hiệu trưởng", school=SCHOOL, not_before=now - dt.timedelta(days=90))
    register_person(world.app, world.users["principal"], revoked.certificate, at=now - dt.timedelta(days=89))
    world.pki.revoke(revoked, now - dt.timedelta(days=10))
    claimed = now - dt.timedelta(days=20)  # before the revocation
    forged = world.sign(world.signatures(hieu_truong=lf.Signature("hieu_truong", revoked, PRINCIPAL,
                                                                  claimed_time=claimed)))
    answer = assert_invalid(client, forged, "chứng thư số đã bị thu hồi từ ngày")
    principal = by_field(answer)["hieu_truong"]
    assert principal["revocation"]["status"] == "revoked" and principal["checks"]["revocation"] is False
    assert principal["revocation"]["revoked_at"] is not None


# --- who: the registered holder of each role ---------------------------------------------------------------------


def test_a_field_signed_by_the_wrong_person_is_invalid(client, world):
    # Another teacher of the same school, with a registered certificate, signs in the GVCN's box.
    forged = world.sign(world.signatures(gvcn=lf.Signature("gvcn", world.certs["subject"], SUBJECT_TEACHER)))
    answer = assert_invalid(client, forged, "Ô “Giáo viên chủ nhiệm” được ký bởi " + SUBJECT_TEACHER)
    gvcn = by_field(answer)["gvcn"]
    assert gvcn["signer_matches"] is False and gvcn["checks"]["signer_role"] is False
    assert gvcn["checks"]["trusted"] is True  # a perfectly valid signature: the wrong signer is the forgery
    # The GVCN signing the principal's box is no better.
    forged = world.sign(world.signatures(hieu_truong=lf.Signature("hieu_truong", world.certs["gvcn"], GVCN)))
    assert_invalid(client, forged, "Ô “Hiệu trưởng” được ký bởi " + GVCN)


def test_a_field_signed_with_another_schools_certificate_is_invalid(client, world):
    forged = world.sign(world.signatures(con_dau=lf.Signature("con_dau", world.certs["other_teacher"], "Phạm Văn Đức")))
    answer = assert_invalid(client, forged, "Ô “Con dấu số” được ký bởi Phạm Văn Đức", OTHER_SCHOOL)
    assert by_field(answer)["con_dau"]["checks"]["trusted"] is True
    forged = world.sign(world.signatures(con_dau=lf.Signature("con_dau", world.certs["other_seal"], OTHER_SCHOOL)))
    assert_invalid(client, forged, "con dấu số của " + OTHER_SCHOOL)
    # A certificate under the trusted root that the portal never registered is named as such.
    stranger = world.pki.person("Người Lạ", title="Hiệu trưởng", school=SCHOOL)
    forged = world.sign(world.signatures(hieu_truong=lf.Signature("hieu_truong", stranger, "Người Lạ")))
    assert_invalid(client, forged, "chứng thư số không được đăng kí trên cổng")


def test_a_vice_principal_signs_for_the_principal_only_where_the_school_recorded_it(app, client, world):
    from tenants.models import User

    vice = lf.Signature("hieu_truong", world.certs["vice"], "Lê Thị Hoa")
    forged = world.sign(world.signatures(hieu_truong=vice))
    assert_invalid(client, forged, "Ô “Hiệu trưởng” được ký bởi Lê Thị Hoa")
    with app.app_context():
        names = {key: db.session.get(User, world.users[key]).username for key in ("vice", "subject")}
    runner = app.test_cli_runner()
    yesterday = (utcnow() - dt.timedelta(days=1)).astimezone(dt.timezone(dt.timedelta(hours=7)))
    refused = runner.invoke(args=["signing", "delegate", "--school", "lqd", "--username", names["subject"],
                                  "--from", f"{yesterday:%d/%m/%Y}"])
    assert refused.exit_code != 0 and "Phó hiệu trưởng" in refused.output
    done = runner.invoke(args=["signing", "delegate", "--school", "lqd", "--username", names["vice"],
                               "--from", f"{yesterday:%d/%m/%Y}", "--reason", "Quyết định 12/QĐ-THLQĐ"])
    assert done.exit_code == 0, done.output
    answer = api(client, world.sign(world.signatures(hieu_truong=vice)))
    assert answer["verdict"] == "valid_unregistered" and answer["ok"] is True, answer["problems"]
    assert "Phó hiệu trưởng được giao ký thay" in by_field(answer)["hieu_truong"]["role_expected"]


def test_signatures_out_of_order_are_invalid(client, world):
    gvcn, principal, seal = world.signatures()
    assert_invalid(client, world.sign([principal, gvcn, seal]), "không theo đúng thứ tự")


# --- nothing after the seal but validation data and document timestamps ---------------------------------------------


@pytest.mark.parametrize("change", ["empty_field", "annotation", "page", "signature"])
def test_anything_added_after_the_seal_makes_the_record_invalid(client, world, change):
    if change == "signature":
        extra = lf.Signature("xac_nhan", world.certs["principal"], PRINCIPAL)
        forged = lf.add_signature(world.genuine, extra, world.pki)
    else:
        forged = {"empty_field": lf.add_empty_field, "annotation": lf.add_annotation,
                  "page": lf.add_page}[change](world.genuine)
    answer = assert_invalid(client, forged, "Tài liệu đã bị thay đổi sau khi ban hành")
    assert answer["changed_after_seal"] is True
    assert by_field(answer)["con_dau"]["checks"]["unchanged"] is False


# --- the timestamp stripped ------------------------------------------------------------------------------------------


def test_a_valid_record_with_its_timestamps_stripped_is_invalid(client, world):
    unstamped = world.sign(timestamps_on=False, lta=False)
    answer = assert_invalid(client, unstamped, "thiếu dấu thời gian", "thấp hơn mức B-LTA")
    assert answer["level"] == "B-B" and all(s["checks"]["timestamp"] is False for s in answer["signatures"])
    # The genuine file cut before its document timestamp: no longer B-LTA.
    truncated = lf.strip_document_timestamps(world.genuine)
    answer = assert_invalid(client, truncated, "thấp hơn mức B-LTA")
    assert answer["document_timestamps"] == [] and answer["level"] in ("B-T", "B-LT")


# --- the same policy before the seal ------------------------------------------------------------------------------


def test_the_seal_step_refuses_a_record_the_policy_refuses(app, world):
    from portal.records import workflow

    forged = world.sign(world.signatures(con_dau=lf.Signature("con_dau", world.certs["other_seal"], OTHER_SCHOOL)))
    with app.app_context(), school_scope(world.school.id):
        version = db.session.get(RecordVersion, world.version_id)
        with pytest.raises(workflow.WorkflowError, match="Con dấu số"):
            workflow.check_issuable(forged, version)
        workflow.check_issuable(world.genuine, version)  # the genuine file passes


def test_validating_the_genuine_record_stays_fast(app, world):
    import time

    from portal.verify import services

    with app.test_request_context(), school_scope(world.school.id):
        version = db.session.scalar(sa.select(RecordVersion).where(RecordVersion.id == world.version_id))
        services.validate_file(world.genuine, version)  # warm: imports, stamp font, trust roots
        started = time.perf_counter()
        report = services.validate_file(world.genuine, version)
        elapsed = time.perf_counter() - started
    assert report.ok
    assert elapsed < 2.0, elapsed  # ~0.2 s measured on two shared cores; generous against a loaded machine
