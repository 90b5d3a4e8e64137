"""The certificate registry: registering personal and seal certificates over the pages, what the pages
show (expiry warning included), refusals in Vietnamese, tenant isolation, the demo's certificates, and
a registered certificate signing through the engine."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from io import BytesIO
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from portal.audit import AuditEntry
from portal.extensions import db
from portal.signing import engine, pki, pki_folder, services
from portal.signing.validate import validate_pdf
from tenants.certificates import (
    KeyKind,
    PersonCertificate,
    SealCertificate,
    WrongPin,
    open_secret,
    seal_secret,
    unwrap_with_pin,
)
from tenants.models import School, User
from tenants.roles import Role
from tenants.scoping import TenantRequired, all_schools, school_scope
from tests.conftest import Factory, csrf_token, login
from tests.signing_factory import record_pdf, stamp

PASSPHRASE = "p12-Matkhau"
PIN = "482916"  # the holder's signing PIN


@pytest.fixture
def ca(app: Flask) -> pki.DemoCA:
    """The demo CA of the test instance: its root is the embedded default trust root."""
    return pki.create_demo_ca(pki_folder(app))


def p12_for(ca: pki.DemoCA, name: str, **options: object) -> pki.IssuedCertificate:
    return ca.issue_person(name, title="Giáo viên chủ nhiệm", organisation="Trường Tiểu học Lê Quang Định",
                           **options)


def post_certificate(client: FlaskClient, url: str, data: bytes, *, filename: str = "chungthu.p12",
                     **fields: object):
    form = {"csrf_token": csrf_token(client, url), "key_kind": "pkcs12", "passphrase": PASSPHRASE,
            "keep_passphrase": "y", "signing_pin": PIN, "signing_pin_confirm": PIN, **fields}
    form["file"] = (BytesIO(data), filename)
    return client.post(url, data=form, content_type="multipart/form-data")


def text_of(response) -> str:
    return re.sub(r"\s+", " ", response.get_data(as_text=True))


@pytest.fixture
def school(make: Factory) -> School:
    return make.school("lqd", "Trường Tiểu học Lê Quang Định")


def test_a_teacher_registers_a_p12_and_sees_its_details(app: Flask, client: FlaskClient, make: Factory,
                                                        school: School, ca: pki.DemoCA) -> None:
    teacher = make.user(school, Role.HOMEROOM_TEACHER, full_name="Nguyễn Thị Thu Hương")
    login(client, teacher)
    assert "Bạn chưa đăng kí chứng thư số nào" in text_of(client.get("/s/lqd/certificates"))
    issued = p12_for(ca, "Nguyễn Thị Thu Hương")
    response = post_certificate(client, "/s/lqd/certificates/new", issued.pkcs12(PASSPHRASE))
    assert response.status_code == 302 and response.location.endswith("/s/lqd/certificates")
    page = text_of(client.get("/s/lqd/certificates"))
    info = pki.describe(issued.certificate)
    assert "CN=Nguyễn Thị Thu Hương" in page and "KHÔNG DÙNG THẬT" in page  # subject and issuer
    assert info.serial in page
    hanoi = ZoneInfo("Asia/Ho_Chi_Minh")  # the page gives dates as they are in Việt Nam (after 17:00 UTC, the next day)
    assert f"từ {info.not_before.astimezone(hanoi):%d/%m/%Y} đến {info.not_after.astimezone(hanoi):%d/%m/%Y}" in page
    assert "Còn hiệu lực" in page and "Sắp hết hạn" not in page
    with app.app_context(), all_schools():
        row = db.session.scalar(sa.select(PersonCertificate))
        assert (row.user_id, row.school_id, row.key_kind, row.active) == (teacher.id, school.id, KeyKind.PKCS12, True)
        assert PASSPHRASE not in row.passphrase_sealed  # sealed, not stored as typed
        assert row.needs_signing_pin and row.secret_to_ask == "pin"
        assert unwrap_with_pin(row.passphrase_sealed, PIN, services.wrapping_keys()) == PASSPHRASE
        with pytest.raises(WrongPin):  # the server's keys alone open nothing
            unwrap_with_pin(row.passphrase_sealed, "000000", services.wrapping_keys())
        assert "khóa bằng mã PIN ký số của người ký" in page
        assert db.session.scalar(sa.select(AuditEntry.action).where(AuditEntry.object_type == "PersonCertificate")
                                 ) == "certificate.registered"


def test_wrong_passphrase_and_bad_files_are_refused_in_vietnamese(app: Flask, client: FlaskClient, make: Factory,
                                                                  school: School, ca: pki.DemoCA) -> None:
    login(client, make.user(school, Role.HOMEROOM_TEACHER))
    data = p12_for(ca, "Trần Văn Hùng").pkcs12(PASSPHRASE)
    wrong = post_certificate(client, "/s/lqd/certificates/new", data, passphrase="sai-mat-khau")
    assert wrong.status_code == 200 and "Mật khẩu của tệp chứng thư số không đúng." in text_of(wrong)
    garbage = post_certificate(client, "/s/lqd/certificates/new", b"khong phai chung thu")
    assert "Tệp không phải là tệp chứng thư số PKCS#12 (.p12, .pfx)." in text_of(garbage)
    missing = post_certificate(client, "/s/lqd/certificates/new", data, passphrase="")
    assert "Cần nhập mật khẩu của tệp .p12/.pfx." in text_of(missing)
    now = datetime.now(UTC)
    expired = p12_for(ca, "Trần Văn Hùng", not_before=now - timedelta(days=400), not_after=now - timedelta(days=2))
    refused = post_certificate(client, "/s/lqd/certificates/new", expired.pkcs12(PASSPHRASE))
    assert "đã hết hạn ngày" in text_of(refused)
    stranger = pki.create_ca().issue_person("Trần Văn Hùng", title="Giáo viên", organisation="Trường khác")
    untrusted = post_certificate(client, "/s/lqd/certificates/new", stranger.pkcs12(PASSPHRASE))
    assert "không do một tổ chức chứng thực được tin cậy cấp" in text_of(untrusted)
    with app.app_context(), all_schools():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(PersonCertificate)) == 0


def test_expiry_warning_starts_30_days_before(app: Flask, client: FlaskClient, make: Factory, school: School,
                                              ca: pki.DemoCA) -> None:
    teacher = make.user(school, Role.HOMEROOM_TEACHER)
    login(client, teacher)
    now = datetime.now(UTC)
    later = p12_for(ca, "Lê Thị Lan", not_before=now - timedelta(days=300), not_after=now + timedelta(days=31))
    post_certificate(client, "/s/lqd/certificates/new", later.pkcs12(PASSPHRASE))
    assert "Sắp hết hạn" not in text_of(client.get("/s/lqd/certificates"))
    soon = p12_for(ca, "Lê Thị Lan", not_before=now - timedelta(days=300), not_after=now + timedelta(days=20))
    assert post_certificate(client, "/s/lqd/certificates/new", soon.pkcs12(PASSPHRASE)).status_code == 302
    page = text_of(client.get("/s/lqd/certificates"))
    end = (now + timedelta(days=20)).astimezone(ZoneInfo("Asia/Ho_Chi_Minh"))
    assert f"Chứng thư số này hết hạn ngày {end:%d/%m/%Y}." in page
    assert "Đã thay bằng chứng thư mới" in page  # the earlier one is kept, inactive
    with app.app_context(), all_schools():
        rows = db.session.scalars(sa.select(PersonCertificate).order_by(PersonCertificate.id)).all()
        assert [r.active for r in rows] == [False, True]


def test_usb_and_remote_keys_register_the_certificate_alone(app: Flask, client: FlaskClient, make: Factory,
                                                            school: School, ca: pki.DemoCA) -> None:
    login(client, make.user(school, Role.PRINCIPAL, full_name="Võ Thị Lài"))
    issued = ca.issue_person("Võ Thị Lài", title="Hiệu trưởng", organisation=school.name)
    bundle = pki.certificates_pem([issued.certificate, *issued.chain]).encode()
    usb = post_certificate(client, "/s/lqd/certificates/new", bundle, filename="vothilai.pem", key_kind="usb")
    assert usb.status_code == 302
    remote = ca.issue_person("Võ Thị Lài", title="Hiệu trưởng", organisation=school.name)
    no_id = post_certificate(client, "/s/lqd/certificates/new", remote.certificate_pem(), filename="smartca.cer",
                             key_kind="csc")
    assert "Cần nhập mã chứng thư tại nhà cung cấp" in text_of(no_id)
    alone = post_certificate(client, "/s/lqd/certificates/new", remote.certificate_pem(), filename="smartca.cer",
                             key_kind="csc", csc_provider="VNPT SmartCA", csc_credential_id="cred-42")
    assert "hãy tải tệp có kèm chuỗi chứng thực của tổ chức cấp" in text_of(alone)  # the issuing CA is unknown
    with_chain = pki.certificates_pem([remote.certificate, *remote.chain]).encode()
    ok = post_certificate(client, "/s/lqd/certificates/new", with_chain, filename="smartca.pem", key_kind="csc",
                          csc_provider="VNPT SmartCA", csc_credential_id="cred-42")
    assert ok.status_code == 302
    assert "Ký số từ xa: VNPT SmartCA" in text_of(client.get("/s/lqd/certificates"))
    with app.app_context(), all_schools():
        rows = db.session.scalars(sa.select(PersonCertificate).order_by(PersonCertificate.id)).all()
        assert [(r.key_kind, r.pkcs12_digest, r.csc_credential_id) for r in rows] == [
            (KeyKind.USB, None, None), (KeyKind.CSC, None, "cred-42")]
        assert len(rows[0].chain()) == 2  # the chain uploaded with it is kept
        with pytest.raises(engine.SigningError, match="không nằm trên máy chủ"):
            services.server_key(rows[1])


def test_the_principal_registers_the_seal_and_sees_who_holds_a_certificate(
        app: Flask, client: FlaskClient, make: Factory, school: School, ca: pki.DemoCA) -> None:
    principal = make.user(school, Role.PRINCIPAL, full_name="Võ Thị Lài")
    teacher = make.user(school, Role.HOMEROOM_TEACHER, full_name="Nguyễn Thị Thu Hương")
    make.user(school, Role.SUBJECT_TEACHER, full_name="Phạm Văn Bộ Môn")
    with app.app_context(), school_scope(school.id):
        services.register_person_certificate(
            db.session.get(User, teacher.id),
            services.Upload(p12_for(ca, teacher.full_name).pkcs12(PASSPHRASE), KeyKind.PKCS12, PASSPHRASE,
                            signing_pin=PIN),
            school=db.session.get(School, school.id), actor=None)
        db.session.commit()
    login(client, principal)
    seal = ca.issue_organisation(school.name)
    assert post_certificate(client, "/s/lqd/certificates/seal", seal.pkcs12(PASSPHRASE)).status_code == 302
    assert f"CN={school.name}" in text_of(client.get("/s/lqd/certificates/seal"))
    page = text_of(client.get("/s/lqd/certificates/staff"))
    assert "1/3 người có chứng thư số còn hiệu lực." in page
    assert "Con dấu số của trường: còn hiệu lực đến" in page
    rows = dict(re.findall(r'data-username="([^"]+)" data-valid="(yes|no)"', client.get(
        "/s/lqd/certificates/staff").get_data(as_text=True)))
    assert rows[teacher.username] == "yes" and rows[principal.username] == "no"
    with app.app_context(), all_schools():
        assert services.staff_with_valid_certificate() == {school.id: 1}
        assert services.schools_with_valid_seal() == {school.id}


def test_only_seal_managers_open_the_seal_page(client: FlaskClient, make: Factory, school: School) -> None:
    login(client, make.user(school, Role.HOMEROOM_TEACHER))
    assert client.get("/s/lqd/certificates/seal").status_code == 403
    assert client.get("/s/lqd/certificates/staff").status_code == 403
    assert client.get("/s/lqd/certificates").status_code == 200


def test_tenant_isolation(app: Flask, client: FlaskClient, make: Factory, school: School, ca: pki.DemoCA) -> None:
    other = make.school("hp", "Trường Tiểu học Hiệp Phước")
    principal_a = make.user(school, Role.PRINCIPAL)
    principal_b = make.user(other, Role.PRINCIPAL)
    teacher_b = make.user(other, Role.HOMEROOM_TEACHER, full_name="Đỗ Văn Bên Kia")
    with app.app_context():
        with school_scope(other.id):
            services.register_seal_certificate(db.session.get(School, other.id), services.Upload(
                ca.issue_organisation(other.name).pkcs12(PASSPHRASE), KeyKind.PKCS12, PASSPHRASE), actor=None)
            services.register_person_certificate(db.session.get(User, teacher_b.id), services.Upload(
                p12_for(ca, teacher_b.full_name).pkcs12(PASSPHRASE), KeyKind.PKCS12, PASSPHRASE, signing_pin=PIN),
                school=db.session.get(School, other.id), actor=None)
        db.session.commit()
        with school_scope(school.id):  # school A's scope sees no seal of school B
            assert db.session.scalars(sa.select(SealCertificate)).all() == []
        with pytest.raises(TenantRequired):
            db.session.scalars(sa.select(SealCertificate)).all()
    login(client, principal_a)
    assert client.get("/s/hp/certificates/seal").status_code == 403
    assert client.get("/s/hp/certificates/staff").status_code == 403
    page = text_of(client.get("/s/lqd/certificates/staff"))
    assert "Đỗ Văn Bên Kia" not in page and "Trường chưa có con dấu số còn hiệu lực." in page
    assert other.name not in text_of(client.get("/s/lqd/certificates/seal"))
    other_client = app.test_client()
    login(other_client, principal_b)
    assert "Đỗ Văn Bên Kia" in text_of(other_client.get("/s/hp/certificates/staff"))


def test_a_registered_certificate_signs_through_the_engine(app: Flask, make: Factory, school: School,
                                                           ca: pki.DemoCA) -> None:
    teacher = make.user(school, Role.HOMEROOM_TEACHER, full_name="Nguyễn Thị Thu Hương")
    issued = p12_for(ca, teacher.full_name)
    with app.app_context(), school_scope(school.id):
        user = db.session.get(User, teacher.id)
        kept = services.register_person_certificate(user, services.Upload(
            issued.pkcs12(PASSPHRASE), KeyKind.PKCS12, PASSPHRASE, signing_pin=PIN), school=None, actor=None)
        db.session.commit()
        assert services.current_person_certificate(teacher.id) is kept
        with pytest.raises(engine.SigningError, match="Cần nhập mã PIN ký số"):
            services.server_key(kept)
        pdf = engine.sign_field(record_pdf(), "gvcn", services.server_key(kept, secret=PIN), certify=True,
                                stamp=stamp("gvcn", issued))
        assert validate_pdf(pdf, [ca.root]).signatures[0].bottom_line
        held = services.register_person_certificate(user, services.Upload(
            p12_for(ca, teacher.full_name).pkcs12(PASSPHRASE), KeyKind.PKCS12, PASSPHRASE,
            keep_passphrase_on_server=False), school=None, actor=None)
        assert held.passphrase_held_by_user and services.current_person_certificate(teacher.id) is held
        with pytest.raises(engine.SigningError, match="Cần nhập mật khẩu"):
            services.server_key(held)
        assert isinstance(services.server_key(held, secret=PASSPHRASE), engine.Pkcs12Key)


def test_the_demo_step_gives_every_person_and_school_a_certificate(app: Flask, make: Factory) -> None:
    from portal.demo.signing import DEMO_SIGNING_PIN, build_signing_demo

    schools = [make.school("lqd", "Trường Tiểu học Lê Quang Định"), make.school("hp", "Trường Tiểu học Hiệp Phước")]
    people = [make.user(s, role) for s in schools for role in (Role.PRINCIPAL, Role.HOMEROOM_TEACHER)]
    with app.app_context():
        assert build_signing_demo("hocbaso2025") == {"person_certificates": 4, "seal_certificates": 2,
                                                     "district_certificates": 1}
        assert build_signing_demo("hocbaso2025") == {"person_certificates": 0, "seal_certificates": 0,
                                                     "district_certificates": 0}
        district = services.current_district_certificate(schools[0].district_id)
        assert district is not None and "KHÔNG DÙNG THẬT" in district.issuer  # it signs the trail's checkpoints
        with all_schools():
            assert set(services.staff_with_valid_certificate().values()) == {2}
            assert services.schools_with_valid_seal() == {s.id for s in schools}
            for person in people:
                row = services.current_person_certificate(person.id)
                assert row is not None and "KHÔNG DÙNG THẬT" in row.issuer
                assert row.needs_signing_pin  # the demo PIN, printed by `flask demo`
                key = services.server_key(row, secret=DEMO_SIGNING_PIN)
                assert isinstance(key, engine.Pkcs12Key) and key.bundle().certificate.serial_number
    assert (pki_folder(app) / pki.ROOT_FILE).exists()


def test_registering_a_key_kept_on_the_server_asks_the_holder_for_a_signing_pin(
        app: Flask, client: FlaskClient, make: Factory, school: School, ca: pki.DemoCA) -> None:
    login(client, make.user(school, Role.HOMEROOM_TEACHER))
    data = p12_for(ca, "Trần Văn Hùng").pkcs12(PASSPHRASE)
    missing = post_certificate(client, "/s/lqd/certificates/new", data, signing_pin="", signing_pin_confirm="")
    assert "Cần đặt mã PIN ký số" in text_of(missing)
    differ = post_certificate(client, "/s/lqd/certificates/new", data, signing_pin_confirm="482917")
    assert "Hai mã PIN không giống nhau." in text_of(differ)
    weak = post_certificate(client, "/s/lqd/certificates/new", data, signing_pin="123456", signing_pin_confirm="123456")
    assert "quá dễ đoán" in text_of(weak)
    with app.app_context(), all_schools():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(PersonCertificate)) == 0
    # Keeping the passphrase to type each time needs no PIN.
    typed = post_certificate(client, "/s/lqd/certificates/new", data, keep_passphrase="", signing_pin="")
    assert typed.status_code == 302


def test_a_persons_secret_sealed_by_the_server_alone_no_longer_signs(app: Flask, make: Factory, school: School,
                                                                     ca: pki.DemoCA) -> None:
    """What the server alone could open before signing PINs (dropped by the migration) never signs for a person."""
    teacher = make.user(school, Role.HOMEROOM_TEACHER)
    with app.app_context(), school_scope(school.id):
        row = services.register_person_certificate(db.session.get(User, teacher.id), services.Upload(
            p12_for(ca, teacher.full_name).pkcs12(PASSPHRASE), KeyKind.PKCS12, PASSPHRASE, signing_pin=PIN),
            school=None, actor=None)
        row.passphrase_sealed = seal_secret(PASSPHRASE, app.config["SECRET_KEY"])
        with pytest.raises(engine.SigningError, match="chưa có mã PIN ký số"):
            services.server_key(row, secret="anything")
        db.session.rollback()


def test_rotating_the_wrapping_key_keeps_every_secret_and_every_pin(app: Flask, make: Factory, school: School,
                                                                    ca: pki.DemoCA) -> None:
    from portal.cli import rotate_keys

    teacher = make.user(school, Role.HOMEROOM_TEACHER)
    old_keys = app.config["WRAPPING_KEYS"]
    with app.app_context(), school_scope(school.id):
        services.register_person_certificate(db.session.get(User, teacher.id), services.Upload(
            p12_for(ca, teacher.full_name).pkcs12(PASSPHRASE), KeyKind.PKCS12, PASSPHRASE, signing_pin=PIN),
            school=None, actor=None)
        services.register_seal_certificate(db.session.get(School, school.id), services.Upload(
            ca.issue_organisation(school.name).pkcs12(PASSPHRASE), KeyKind.PKCS12, PASSPHRASE), actor=None)
        seal = db.session.scalar(sa.select(SealCertificate))
        seal.pin_sealed = seal_secret("hsm-pin", app.config["SECRET_KEY"])  # sealed before WRAPPING_KEYS existed
        db.session.commit()
    new_key = "k" + "Zx9-Qw8_Er7Ty6Ui5Op4As3Df2Gh1Jk0Lm" * 2
    old_secret_key = app.config["SECRET_KEY"]
    app.config["WRAPPING_KEYS"] = (new_key, *old_keys)
    try:
        result = app.test_cli_runner().invoke(rotate_keys)
        assert result.exit_code == 0 and "Re-sealed 3 stored secrets" in result.output, result.output
        app.config["WRAPPING_KEYS"] = (new_key,)  # the old key is dropped ...
        app.config["SECRET_KEY"] = "another-session-key-" + "x1y2z3" * 5  # the session key is not needed
        with app.app_context(), all_schools():
            person = db.session.scalar(sa.select(PersonCertificate))
            seal = db.session.scalar(sa.select(SealCertificate))
            # ... and everything still opens, the person's key still only with the PIN.
            assert isinstance(services.server_key(person, secret=PIN), engine.Pkcs12Key)
            with pytest.raises(engine.SigningError, match="không đúng"):
                services.server_key(person, secret="975310")
            assert isinstance(services.server_key(seal), engine.Pkcs12Key)
            assert open_secret(seal.pin_sealed, [new_key]) == "hsm-pin"
            assert db.session.scalar(sa.select(AuditEntry.action).where(AuditEntry.action == "keys.rotated"))
    finally:
        app.config["WRAPPING_KEYS"] = old_keys
        app.config["SECRET_KEY"] = old_secret_key
