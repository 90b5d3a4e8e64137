"""A school's staff through its pages: accounts, roles, locking, password resets, imports, audit."""

from __future__ import annotations

import html
import io
import re
import unicodedata
import zipfile

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from openpyxl import Workbook
from werkzeug.test import TestResponse

from portal.audit import AuditEntry
from portal.extensions import db
from portal.storage import digest_of
from tenants.models import Membership, School, User
from tenants.roles import Role
from tenants.scoping import all_schools
from tests.conftest import PASSWORD, Factory, csrf_token, login

NEW_PASSWORD = "Cay-Dua-Ben-Song7"
STAFF_ACTIONS = ("staff.created", "staff.updated", "staff.deactivated", "staff.activated",
                 "staff.password_reset", "staff.imported")


# --- helpers ---------------------------------------------------------------------------------------

@pytest.fixture
def school(make: Factory) -> School:
    return make.school("lqd", "Trường Tiểu học Lê Quang Định")


@pytest.fixture
def principal(make: Factory, school: School) -> User:
    return make.user(school, Role.PRINCIPAL, username="ht.lqd", full_name="Trần Văn Hiệu")


@pytest.fixture
def as_principal(client: FlaskClient, principal: User) -> FlaskClient:
    login(client, principal)
    return client


def page(response: TestResponse) -> str:
    return html.unescape(response.get_data(as_text=True))


def post(client: FlaskClient, url: str, data: dict[str, object], *, form_url: str | None = None,
         **kwargs: object) -> TestResponse:
    """POST with the CSRF token of the form on `form_url` (by default the page at `url` itself)."""
    return client.post(url, data={**data, "csrf_token": csrf_token(client, form_url or url)}, **kwargs)


def create(client: FlaskClient, username: str, full_name: str, roles: list[str], email: str = "",
           code: str = "lqd") -> TestResponse:
    return post(client, f"/s/{code}/staff/new",
                {"username": username, "full_name": full_name, "email": email, "roles": roles})


def shown_link(response: TestResponse) -> str:
    """The path of the set-password link on the slip page."""
    match = re.search(r'id="set-password-link" href="http://[^/"]+(/account/set-password/[^"]+)"',
                      response.get_data(as_text=True))
    assert match, "no set-password link on the page"
    return match.group(1)


def set_password_by_link(app: Flask, link: str, password: str = NEW_PASSWORD) -> TestResponse:
    """The holder opens the link in their own browser and chooses a password."""
    client = app.test_client()
    return client.post(link, data={"new": password, "confirm": password, "csrf_token": csrf_token(client, link)})


def try_login(app: Flask, username: str, password: str) -> tuple[FlaskClient, TestResponse]:
    client = app.test_client()
    response = client.post("/login", data={"username": username, "password": password,
                                           "csrf_token": csrf_token(client, "/login")})
    return client, response


def change_password(client: FlaskClient, current: str) -> TestResponse:
    return post(client, "/account/password", {"current": current, "new": NEW_PASSWORD, "confirm": NEW_PASSWORD})


def user_named(app: Flask, username: str) -> User | None:
    with app.app_context():
        user = db.session.scalar(sa.select(User).where(User.username == username))
        if user is not None:
            db.session.expunge(user)
        return user


def membership_of(app: Flask, school: School, username: str) -> tuple[bool, set[Role]] | None:
    """(active, roles) of that user in the school, or None."""
    with app.app_context(), all_schools():
        membership = db.session.scalar(
            sa.select(Membership).join(User, Membership.user_id == User.id)
            .where(User.username == username, Membership.school_id == school.id))
        return None if membership is None else (membership.active, set(membership.role_set))


def user_count(app: Flask) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count()).select_from(User))


def audit_of(app: Flask, *actions: str) -> list[dict[str, object]]:
    with app.app_context():
        entries = db.session.scalars(sa.select(AuditEntry).where(AuditEntry.action.in_(actions))
                                     .order_by(AuditEntry.id))
        return [{"action": e.action, "school_id": e.school_id, "actor_id": e.actor_id, "object_id": e.object_id,
                 "summary": e.summary, "changes": e.changes} for e in entries]


def xlsx(rows: list[list[object]]) -> bytes:
    workbook = Workbook()
    sheet = workbook.active
    for row in rows:
        sheet.append(row)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def upload(client: FlaskClient, filename: str, data: bytes) -> TestResponse:
    return post(client, "/s/lqd/staff/import", {"file": (io.BytesIO(data), filename)},
                content_type="multipart/form-data")


def confirm(client: FlaskClient, filename: str, data: bytes) -> TestResponse:
    """Post the confirmation of an import as the dry-run page's button would, for the given file."""
    return post(client, "/s/lqd/staff/import/confirm", {"digest": digest_of(data), "filename": filename},
                form_url="/s/lqd/staff/import")


def import_rows(response: TestResponse) -> dict[int, tuple[str, str]]:
    """The dry-run table: line number -> (good|bad, the row's text)."""
    rows = re.findall(r'<tr class="(good|bad)"><td>(\d+)</td>(.*?)</tr>', page(response), re.S)
    return {int(line): (state, re.sub(r"<[^>]+>", " ", rest)) for state, line, rest in rows}


# --- creating accounts -----------------------------------------------------------------------------

def test_principal_creates_account_and_only_its_holder_sets_the_password(app, school, principal, as_principal):
    response = create(as_principal, "gv.lan", "Lê Thị Lan", [Role.HOMEROOM_TEACHER.value], "lan@lqd.edu.vn")
    assert response.status_code == 200
    assert "Đã tạo tài khoản" in page(response)
    link = shown_link(response)
    assert "temporary-password" not in page(response) and "Mật khẩu tạm thời" not in page(response)

    user = user_named(app, "gv.lan")
    assert user is not None and user.full_name == "Lê Thị Lan" and user.email == "lan@lqd.edu.vn"
    assert membership_of(app, school, "gv.lan") == (True, {Role.HOMEROOM_TEACHER})
    # Shown once: neither the list nor the person's page repeats it.
    assert "gv.lan" in page(as_principal.get("/s/lqd/staff"))
    assert link not in page(as_principal.get("/s/lqd/staff"))
    assert link not in page(as_principal.get(f"/s/lqd/staff/{user.id}"))

    [entry] = audit_of(app, "staff.created")
    assert entry["school_id"] == school.id and entry["actor_id"] == principal.id
    assert entry["object_id"] == str(user.id)
    assert entry["changes"]["roles"] == [Role.HOMEROOM_TEACHER.value]
    assert link.rsplit("/", 1)[1] not in str(entry)

    assert try_login(app, "gv.lan", "")[1].status_code == 200  # no password works before the holder sets one
    weak = set_password_by_link(app, link, "matkhau123")
    assert weak.status_code == 200 and "Mật khẩu quá dễ đoán" in page(weak)
    assert set_password_by_link(app, link).status_code == 302
    teacher, response = try_login(app, "gv.lan", NEW_PASSWORD)
    assert response.status_code == 302
    landed = teacher.get("/", follow_redirects=True)
    assert landed.request.path == "/s/lqd/" and "Lê Thị Lan" in page(landed)
    # One time only.
    assert app.test_client().get(link).status_code == 404
    assert set_password_by_link(app, link, "Mot-Lan-Nua-2026").status_code == 404


def test_one_person_holds_several_roles(app, school, as_principal):
    response = create(as_principal, "gv.minh", "Phan Văn Minh",
                      [Role.HOMEROOM_TEACHER.value, Role.SUBJECT_TEACHER.value])
    link = shown_link(response)
    assert membership_of(app, school, "gv.minh") == (True, {Role.HOMEROOM_TEACHER, Role.SUBJECT_TEACHER})
    [entry] = audit_of(app, "staff.created")
    assert sorted(entry["changes"]["roles"]) == sorted([Role.HOMEROOM_TEACHER.value, Role.SUBJECT_TEACHER.value])

    set_password_by_link(app, link)
    teacher, _ = try_login(app, "gv.minh", NEW_PASSWORD)
    home = page(teacher.get("/s/lqd/"))
    assert "Giáo viên chủ nhiệm" in home and "Giáo viên bộ môn" in home


def test_school_it_creates_teachers_but_not_management_roles(app, make, school):
    it_staff = make.user(school, Role.SCHOOL_IT, username="cntt.lqd")
    client = app.test_client()
    login(client, it_staff)
    assert create(client, "gv.hoa", "Ngô Thị Hoa", [Role.SUBJECT_TEACHER.value]).status_code == 200
    [entry] = audit_of(app, "staff.created")
    assert entry["actor_id"] == it_staff.id and entry["school_id"] == school.id

    response = create(client, "pht.lqd", "Đinh Văn Phó", [Role.VICE_PRINCIPAL.value])
    assert "Chỉ Hiệu trưởng hoặc Phòng GD&ĐT được giao vai trò" in page(response)
    assert user_named(app, "pht.lqd") is None
    assert len(audit_of(app, "staff.created")) == 1


BAD_INPUT = [
    pytest.param({"username": "gv.trung"}, "Tên đăng nhập gv.trung đã có người dùng.", id="duplicate"),
    pytest.param({"username": "GV.Trung "}, "Tên đăng nhập gv.trung đã có người dùng.", id="duplicate-case"),
    pytest.param({"username": "nguyễn văn a"}, "Tên đăng nhập chỉ gồm chữ không dấu, số", id="accents-spaces"),
    pytest.param({"username": "ab"}, "gạch ngang; 3-80 ký tự.", id="too-short"),
    pytest.param({"roles": []}, "Cần chọn ít nhất một vai trò.", id="no-role"),
    pytest.param({"email": "khong-phai-email"}, "Địa chỉ email không hợp lệ.", id="bad-email"),
]


@pytest.mark.parametrize(("change", "message"), BAD_INPUT)
def test_bad_input_gets_a_vietnamese_message_and_creates_nothing(app, make, school, as_principal, change, message):
    make.user(school, Role.HOMEROOM_TEACHER, username="gv.trung")
    users = user_count(app)
    data = {"username": "gv.moi", "full_name": "Hồ Văn Mới", "email": "", "roles": [Role.HOMEROOM_TEACHER.value],
            **change}
    response = post(as_principal, "/s/lqd/staff/new", data)
    assert response.status_code == 200
    text = page(response)
    assert message in text
    assert "This field" not in text and "Field must" not in text  # no untranslated WTForms message
    assert "set-password-link" not in text
    assert user_count(app) == users
    assert audit_of(app, *STAFF_ACTIONS) == []


# --- changing accounts -----------------------------------------------------------------------------

def test_edit_name_and_roles(app, make, school, principal, as_principal):
    teacher = make.user(school, Role.HOMEROOM_TEACHER, username="gv.anh", full_name="Nguyen Thi Anh")
    nfd_name = unicodedata.normalize("NFD", "Nguyễn Thị Ánh")
    response = post(as_principal, f"/s/lqd/staff/{teacher.id}", {
        "full_name": nfd_name, "email": "", "roles": [Role.SUBJECT_TEACHER.value, Role.VICE_PRINCIPAL.value]})
    assert response.status_code == 302 and response.location.endswith("/s/lqd/staff")
    assert membership_of(app, school, "gv.anh") == (True, {Role.SUBJECT_TEACHER, Role.VICE_PRINCIPAL})
    assert user_named(app, "gv.anh").full_name == unicodedata.normalize("NFC", "Nguyễn Thị Ánh")

    [entry] = audit_of(app, "staff.updated")
    assert entry["school_id"] == school.id and entry["actor_id"] == principal.id
    assert entry["object_id"] == str(teacher.id)
    assert entry["changes"]["roles"] == [[Role.HOMEROOM_TEACHER.value],
                                         sorted([Role.SUBJECT_TEACHER.value, Role.VICE_PRINCIPAL.value])]

    # The new role takes effect: a vice principal may see the staff list, a homeroom teacher may not.
    client = app.test_client()
    login(client, teacher)
    assert client.get("/s/lqd/staff").status_code == 200

    # Removing every role is refused and changes nothing.
    response = post(as_principal, f"/s/lqd/staff/{teacher.id}", {"full_name": "X", "email": "", "roles": []})
    assert "Cần chọn ít nhất một vai trò." in page(response)
    assert membership_of(app, school, "gv.anh") == (True, {Role.SUBJECT_TEACHER, Role.VICE_PRINCIPAL})
    assert len(audit_of(app, "staff.updated")) == 1


def test_school_it_cannot_grant_management_roles_by_editing(app, make, school):
    it_staff = make.user(school, Role.SCHOOL_IT, username="cntt.lqd")
    teacher = make.user(school, Role.HOMEROOM_TEACHER, username="gv.tam")
    client = app.test_client()
    login(client, it_staff)
    response = post(client, f"/s/lqd/staff/{teacher.id}", {
        "full_name": "Gv Tâm", "email": "", "roles": [Role.HOMEROOM_TEACHER.value, Role.PRINCIPAL.value]})
    assert "Chỉ Hiệu trưởng hoặc Phòng GD&ĐT được giao vai trò" in page(response)
    assert membership_of(app, school, "gv.tam") == (True, {Role.HOMEROOM_TEACHER})
    assert audit_of(app, "staff.updated") == []


def test_deactivate_closes_the_school_and_reactivate_reopens_it(app, make, school, principal, as_principal):
    teacher = make.user(school, Role.HOMEROOM_TEACHER, username="gv.khoa", full_name="Lý Văn Khoa")
    teacher_client = app.test_client()
    login(teacher_client, teacher)
    assert teacher_client.get("/s/lqd/").status_code == 200

    response = post(as_principal, f"/s/lqd/staff/{teacher.id}/active/0", {}, form_url="/s/lqd/staff")
    assert response.status_code == 302
    assert membership_of(app, school, "gv.khoa") == (False, {Role.HOMEROOM_TEACHER})
    assert teacher_client.get("/s/lqd/").status_code == 403
    assert teacher_client.get("/s/lqd/staff").status_code == 403
    fresh = app.test_client()
    login(fresh, teacher)  # the account still signs in (it may belong to other schools) ...
    assert fresh.get("/s/lqd/").status_code == 403  # ... but this school is closed to it
    row = re.search(r'data-username="gv.khoa">(.*?)</tr>', page(as_principal.get("/s/lqd/staff")), re.S)
    assert row and "Đã khóa" in row.group(1)
    [entry] = audit_of(app, "staff.deactivated")
    assert (entry["school_id"], entry["actor_id"], entry["object_id"]) == (school.id, principal.id, str(teacher.id))

    response = post(as_principal, f"/s/lqd/staff/{teacher.id}/active/1", {}, form_url="/s/lqd/staff")
    assert response.status_code == 302
    assert membership_of(app, school, "gv.khoa") == (True, {Role.HOMEROOM_TEACHER})
    assert fresh.get("/s/lqd/").status_code == 200
    [entry] = audit_of(app, "staff.activated")
    assert (entry["school_id"], entry["actor_id"], entry["object_id"]) == (school.id, principal.id, str(teacher.id))


def test_principal_cannot_lock_themselves_out(app, school, principal, as_principal):
    response = post(as_principal, f"/s/lqd/staff/{principal.id}/active/0", {}, form_url="/s/lqd/staff",
                    follow_redirects=True)
    assert "Bạn không thể tự khóa tài khoản của mình." in page(response)
    assert membership_of(app, school, "ht.lqd") == (True, {Role.PRINCIPAL})
    assert audit_of(app, "staff.deactivated") == []


def test_reset_gives_a_link_only_the_holder_uses_and_tells_them_at_next_login(app, make, school, principal,
                                                                           as_principal):
    teacher = make.user(school, Role.SUBJECT_TEACHER, username="gv.son")
    response = post(as_principal, f"/s/lqd/staff/{teacher.id}/reset-password", {},
                    form_url=f"/s/lqd/staff/{teacher.id}")
    assert response.status_code == 200 and "Đã tạo liên kết đặt lại mật khẩu" in page(response)
    link = shown_link(response)
    assert "temporary-password" not in page(response)
    # The current password still works (a reset locks nobody out) until the holder sets a new one...
    client, accepted = try_login(app, "gv.son", PASSWORD)
    assert accepted.status_code == 302
    # ... and the holder is told who reset it.
    told = page(client.get("/", follow_redirects=True))
    assert "Trần Văn Hiệu đã tạo liên kết đặt lại mật khẩu cho tài khoản của bạn." in told

    assert set_password_by_link(app, link).status_code == 302
    assert client.get("/s/lqd/").status_code == 302  # setting the password ended every session
    _, refused = try_login(app, "gv.son", PASSWORD)
    assert refused.status_code == 200 and "Tên đăng nhập hoặc mật khẩu không đúng." in page(refused)
    assert try_login(app, "gv.son", NEW_PASSWORD)[1].status_code == 302

    [entry] = audit_of(app, "staff.password_reset")
    assert (entry["school_id"], entry["actor_id"], entry["object_id"]) == (school.id, principal.id, str(teacher.id))
    assert link.rsplit("/", 1)[1] not in str(entry) and NEW_PASSWORD not in str(entry)
    [used] = audit_of(app, "auth.password_set_by_link")
    assert used["actor_id"] == teacher.id and NEW_PASSWORD not in str(used)
    # No page the principal opens ever shows the password the holder chose.
    for url in ("/s/lqd/staff", f"/s/lqd/staff/{teacher.id}", "/s/lqd/audit", "/s/lqd/certificates/staff"):
        shown = as_principal.get(url)
        assert shown.status_code == 200 and NEW_PASSWORD not in page(shown), url


def test_a_newer_link_or_the_expiry_ends_an_older_link(app, make, school, as_principal):
    from datetime import timedelta

    from portal.auth.models import PasswordLink

    teacher = make.user(school, Role.SUBJECT_TEACHER, username="gv.tam")
    reset = f"/s/lqd/staff/{teacher.id}/reset-password"
    first = shown_link(post(as_principal, reset, {}, form_url=f"/s/lqd/staff/{teacher.id}"))
    second = shown_link(post(as_principal, reset, {}, form_url=f"/s/lqd/staff/{teacher.id}"))
    assert app.test_client().get(first).status_code == 404
    assert app.test_client().get(second).status_code == 200
    with app.app_context():
        for link in db.session.scalars(sa.select(PasswordLink)):
            link.expires_at -= timedelta(hours=app.config["PASSWORD_LINK_HOURS"] + 1)
        db.session.commit()
    assert set_password_by_link(app, second).status_code == 404


# --- authority is ordered --------------------------------------------------------------------------

REFUSED_AUTHORITY = "Bạn không thể đặt lại mật khẩu, khóa, mở khóa hay đổi vai trò của người có thẩm quyền"


def test_it_staff_cannot_reset_lock_or_re_role_the_principal(app, make, school, principal):
    it_staff = make.user(school, Role.SCHOOL_IT, username="cntt.lqd")
    vice = make.user(school, Role.VICE_PRINCIPAL, username="pht.lqd")
    colleague = make.user(school, Role.SCHOOL_IT, username="cntt2.lqd")
    client = app.test_client()
    login(client, it_staff)
    for target in (principal, vice, colleague):
        reset = post(client, f"/s/lqd/staff/{target.id}/reset-password", {}, form_url="/s/lqd/staff",
                     follow_redirects=True)
        assert REFUSED_AUTHORITY in page(reset) and "set-password-link" not in page(reset), target.username
        locked = post(client, f"/s/lqd/staff/{target.id}/active/0", {}, form_url="/s/lqd/staff",
                      follow_redirects=True)
        assert REFUSED_AUTHORITY in page(locked), target.username
        roles = post(client, f"/s/lqd/staff/{target.id}", {"full_name": "Ai Đó", "email": "",
                                                          "roles": [Role.SUBJECT_TEACHER.value]},
                     form_url="/s/lqd/staff")
        assert REFUSED_AUTHORITY in page(roles), target.username
    assert membership_of(app, school, "ht.lqd") == (True, {Role.PRINCIPAL})
    assert user_named(app, "ht.lqd").full_name == "Trần Văn Hiệu"
    assert membership_of(app, school, "pht.lqd") == (True, {Role.VICE_PRINCIPAL})
    assert audit_of(app, *STAFF_ACTIONS) == []
    # The page offers no such button either.
    listing = page(client.get("/s/lqd/staff"))
    row = re.search(r'data-username="ht.lqd">(.*?)</tr>', listing, re.S).group(1)
    assert "Khóa" not in row
    assert "reset-password" not in page(client.get(f"/s/lqd/staff/{principal.id}"))
    # The teachers remain IT's to manage.
    teacher = make.user(school, Role.SUBJECT_TEACHER, username="gv.nam")
    assert shown_link(post(client, f"/s/lqd/staff/{teacher.id}/reset-password", {}, form_url="/s/lqd/staff"))


def test_a_teacher_who_is_principal_elsewhere_is_not_reset_by_it_staff(app, make, school):
    other = make.school("ntr", "Trường Tiểu học Nguyễn Trãi")
    both = make.user(other, Role.PRINCIPAL, username="ht.ntr")
    with app.app_context(), all_schools():
        from tenants.models import MembershipRole
        db.session.add(Membership(school_id=school.id, user_id=both.id, roles=[
            MembershipRole(school_id=school.id, role=Role.SUBJECT_TEACHER)]))
        db.session.commit()
    it_staff = make.user(school, Role.SCHOOL_IT, username="cntt.lqd")
    client = app.test_client()
    login(client, it_staff)
    response = post(client, f"/s/lqd/staff/{both.id}/reset-password", {}, form_url="/s/lqd/staff",
                    follow_redirects=True)
    assert REFUSED_AUTHORITY in page(response)  # a password is the whole account's


def test_principals_are_managed_by_the_district(app, make, school, principal):
    admin = make.user(username="phong.admin", district_role=Role.DISTRICT_ADMIN, full_name="Trần Minh Quân")
    client = app.test_client()
    login(client, admin)
    detail = f"/district/schools/{school.code}"
    other = make.school("ntr", "Trường Tiểu học Nguyễn Trãi")
    elsewhere = f"/district/schools/{other.code}/staff/{principal.id}"  # not a member there: not found
    assert post(client, f"{elsewhere}/reset-password", {}, form_url=detail).status_code == 404
    assert post(client, f"{elsewhere}/active/0", {}, form_url=detail).status_code == 404
    response = post(client, f"{detail}/staff/{principal.id}/reset-password", {}, form_url=detail)
    link = shown_link(response)
    assert post(client, f"{detail}/staff/{principal.id}/active/0", {}, form_url=detail).status_code == 302
    assert membership_of(app, school, "ht.lqd") == (False, {Role.PRINCIPAL})
    assert post(client, f"{detail}/staff/{principal.id}/active/1", {}, form_url=detail).status_code == 302
    assert set_password_by_link(app, link).status_code == 302
    owner, _ = try_login(app, "ht.lqd", NEW_PASSWORD)
    told = page(owner.get("/", follow_redirects=True))
    assert "Trần Minh Quân đã tạo liên kết đặt lại mật khẩu" in told and "đã khóa tài khoản của bạn" in told
    # The district admin is no one's to manage from a school.
    with app.app_context(), all_schools():
        from tenants.models import MembershipRole
        db.session.add(Membership(school_id=school.id, user_id=admin.id, roles=[
            MembershipRole(school_id=school.id, role=Role.SUBJECT_TEACHER)]))
        db.session.commit()
    login(as_ht := app.test_client(), "ht.lqd", NEW_PASSWORD)
    refused = post(as_ht, f"/s/lqd/staff/{admin.id}/reset-password", {}, form_url="/s/lqd/staff",
                   follow_redirects=True)
    assert REFUSED_AUTHORITY in page(refused)


def test_staff_pages_are_closed_to_teachers_and_other_schools(app, make, school, as_principal):
    other = make.school("ntr", "Trường Tiểu học Nguyễn Trãi")
    stranger = make.user(other, Role.HOMEROOM_TEACHER, username="gv.ntr")
    assert as_principal.get("/s/ntr/staff").status_code == 403
    assert as_principal.get(f"/s/lqd/staff/{stranger.id}").status_code == 404
    token = csrf_token(as_principal, "/s/lqd/staff")
    assert as_principal.post(f"/s/lqd/staff/{stranger.id}/reset-password",
                             data={"csrf_token": token}).status_code == 404
    assert as_principal.post(f"/s/lqd/staff/{stranger.id}/active/0", data={"csrf_token": token}).status_code == 404
    assert membership_of(app, other, "gv.ntr") == (True, {Role.HOMEROOM_TEACHER})

    teacher = make.user(school, Role.HOMEROOM_TEACHER, username="gv.lqd")
    client = app.test_client()
    login(client, teacher)
    for url in ("/s/lqd/staff", "/s/lqd/staff/new", "/s/lqd/staff/import"):
        assert client.get(url).status_code == 403, url
    assert audit_of(app, *STAFF_ACTIONS) == []


# --- importing -------------------------------------------------------------------------------------

def test_import_xlsx_dry_run_then_confirm(app, school, principal, as_principal):
    nfd_name = unicodedata.normalize("NFD", "Nguyễn Thị Ánh")
    data = xlsx([
        ["Vai trò", "Ghi chú", "Họ và tên", "Email", "Tên đăng nhập"],  # any order, one extra column
        ["GVCN, GVBM", "lớp 1A", nfd_name, "anh@lqd.edu.vn", "gv.anh"],
        ["Giáo viên bộ môn", None, "Phạm Văn Bình", None, "gv.binh"],
        ["gvcn", "lớp 2B", "Võ Thị Cúc", None, "GV.Cuc"],
    ])
    users = user_count(app)
    dry_run = upload(as_principal, "danh-sach.xlsx", data)
    assert dry_run.status_code == 200
    assert "Tệp hợp lệ: 3 tài khoản sẽ được tạo" in page(dry_run)
    rows = import_rows(dry_run)
    assert sorted(rows) == [2, 3, 4] and all(state == "good" for state, _ in rows.values())
    assert "lớp 1A" not in page(dry_run)  # the extra column is ignored
    assert user_count(app) == users and audit_of(app, *STAFF_ACTIONS) == []

    done = confirm(as_principal, "danh-sach.xlsx", data)
    assert done.status_code == 200 and "Đã nhập 3 tài khoản." in page(done)
    assert user_count(app) == users + 3
    assert membership_of(app, school, "gv.anh") == (True, {Role.HOMEROOM_TEACHER, Role.SUBJECT_TEACHER})
    assert membership_of(app, school, "gv.binh") == (True, {Role.SUBJECT_TEACHER})
    assert membership_of(app, school, "gv.cuc") == (True, {Role.HOMEROOM_TEACHER})
    anh = user_named(app, "gv.anh")
    assert anh.full_name == unicodedata.normalize("NFC", "Nguyễn Thị Ánh") and anh.email == "anh@lqd.edu.vn"

    links = dict(re.findall(r'<td class="mono">([^<]+)</td><td class="mono">http://[^/<]+([^<]+)</td>', page(done)))
    assert set(links) == {"gv.anh", "gv.binh", "gv.cuc"}
    assert set_password_by_link(app, links["gv.cuc"]).status_code == 302
    client, response = try_login(app, "gv.cuc", NEW_PASSWORD)
    assert response.status_code == 302 and client.get("/s/lqd/").status_code == 200

    created = audit_of(app, "staff.created")
    assert len(created) == 3
    assert all(e["school_id"] == school.id and e["actor_id"] == principal.id for e in created)
    [imported] = audit_of(app, "staff.imported")
    assert imported["school_id"] == school.id and imported["actor_id"] == principal.id
    assert sorted(imported["changes"]["usernames"]) == ["gv.anh", "gv.binh", "gv.cuc"]

    # Confirming the same file again creates nothing: every username is taken now.
    again = confirm(as_principal, "danh-sach.xlsx", data)
    assert "Tệp có lỗi, chưa nhập tài khoản nào." in page(again)
    assert user_count(app) == users + 3 and len(audit_of(app, "staff.imported")) == 1


def test_import_csv_with_bom_and_semicolons(app, make, school):
    it_staff = make.user(school, Role.SCHOOL_IT, username="cntt.lqd")
    client = app.test_client()
    login(client, it_staff)
    text = ("Họ và tên;Tên đăng nhập;Vai trò;Email\r\n"
            f"{unicodedata.normalize('NFD', 'Đỗ Văn Dũng')};gv.dung;GVCN, GVBM;\r\n"
            "Trịnh Thị Én;gv.en;Giáo viên chủ nhiệm;en@lqd.edu.vn\r\n")
    data = text.encode("utf-8-sig")
    assert data.startswith(b"\xef\xbb\xbf")

    dry_run = upload(client, "ds.csv", data)
    assert "Tệp hợp lệ: 2 tài khoản sẽ được tạo" in page(dry_run), page(dry_run)
    assert sorted(import_rows(dry_run)) == [2, 3]
    assert user_named(app, "gv.dung") is None

    done = confirm(client, "ds.csv", data)
    assert "Đã nhập 2 tài khoản." in page(done)
    assert membership_of(app, school, "gv.dung") == (True, {Role.HOMEROOM_TEACHER, Role.SUBJECT_TEACHER})
    assert membership_of(app, school, "gv.en") == (True, {Role.HOMEROOM_TEACHER})
    assert user_named(app, "gv.dung").full_name == "Đỗ Văn Dũng" == unicodedata.normalize("NFC", "Đỗ Văn Dũng")
    assert user_named(app, "gv.en").email == "en@lqd.edu.vn"
    [imported] = audit_of(app, "staff.imported")
    assert imported["school_id"] == school.id and imported["actor_id"] == it_staff.id


BAD_ROWS = [
    ["Tên đăng nhập", "Họ và tên", "Vai trò"],
    ["gv.tot", "Mai Văn Tốt", "GVCN"],            # line 2: fine
    ["gv.vai", "Lâm Thị Vai", "Bảo vệ"],           # line 3: unknown role
    ["GV.Tot", "Mai Văn Tốt Hai", "GVBM"],        # line 4: same username as line 2
    ["gv.cu", "Cao Văn Cũ", "GVBM"],              # line 5: username already taken
    ["gv.ten", "", "GVCN"],                        # line 6: no name
]
BAD_ROW_PROBLEMS = {3: "Vai trò không rõ: Bảo vệ.", 4: "Trùng tên đăng nhập với dòng 2.",
                    5: "Tên đăng nhập gv.cu đã có người dùng.", 6: "Thiếu họ và tên."}


@pytest.mark.parametrize("filename", ["ds.xlsx", "ds.csv"])
def test_import_with_bad_rows_shows_each_problem_and_creates_nothing(app, make, school, as_principal, filename):
    make.user(school, Role.HOMEROOM_TEACHER, username="gv.cu")
    if filename.endswith(".xlsx"):
        data = xlsx(BAD_ROWS)
    else:
        data = "\r\n".join(",".join(row) for row in BAD_ROWS).encode("utf-8")
    users = user_count(app)

    dry_run = upload(as_principal, filename, data)
    assert dry_run.status_code == 200
    assert "Tệp có lỗi ở 4 dòng" in page(dry_run)
    rows = import_rows(dry_run)
    assert rows[2][0] == "good"
    for line, problem in BAD_ROW_PROBLEMS.items():
        state, text = rows[line]
        assert state == "bad" and problem in text, (line, text)
    assert "Xác nhận nhập" not in page(dry_run)

    # Even a confirmation posted by hand for that file creates nothing, not even the good row.
    response = confirm(as_principal, filename, data)
    assert response.status_code == 200
    assert "Tệp có lỗi, chưa nhập tài khoản nào." in page(response)
    assert import_rows(response)[5][0] == "bad"
    assert user_count(app) == users and user_named(app, "gv.tot") is None
    assert audit_of(app, *STAFF_ACTIONS) == []


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def _broken_workbook() -> bytes:
    """A real .xlsx whose sheet XML has been cut short."""
    source = zipfile.ZipFile(io.BytesIO(xlsx([["Tên đăng nhập", "Họ và tên", "Vai trò"], ["gv.a", "A", "GVCN"]])))
    members = {name: source.read(name) for name in source.namelist()}
    members["xl/worksheets/sheet1.xml"] = members["xl/worksheets/sheet1.xml"][:80]
    return _zip(members)


UNREADABLE = [
    pytest.param("danh-sach.pdf", b"%PDF-1.4 ...", "Chỉ nhận tệp .xlsx hoặc .csv.", id="pdf"),
    pytest.param("danh-sach.xls", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(200), "Chỉ nhận tệp .xlsx hoặc .csv.",
                 id="old-xls"),
    pytest.param("danh-sach.xlsx", b"Ten dang nhap;Ho va ten\r\n", "Không đọc được tệp Excel.", id="not-a-zip"),
    pytest.param("danh-sach.xlsx", xlsx([["a"]])[:300], "Không đọc được tệp Excel.", id="truncated"),
    pytest.param("danh-sach.xlsx", _zip({"word/document.xml": b"<w:document/>"}), "Không đọc được tệp Excel.",
                 id="docx-renamed"),
    pytest.param("danh-sach.xlsx", _zip({"[Content_Types].xml": b"<Types", "xl/workbook.xml": b"<<<"}),
                 "Không đọc được tệp Excel.", id="garbage-xml"),
    pytest.param("danh-sach.xlsx", _broken_workbook(), "Không đọc được tệp Excel.", id="cut-sheet"),
    pytest.param("danh-sach.xlsx", xlsx([["Mã", "Tên"], ["1", "A"]]), "Không tìm thấy dòng tiêu đề", id="no-header"),
    pytest.param("danh-sach.csv", "Tên đăng nhập,Họ và tên\r\ngv.a,A\r\n".encode(), "Thiếu cột: Vai trò.",
                 id="missing-column"),
    pytest.param("danh-sach.csv", "Tên đăng nhập,Họ và tên,Vai trò\r\n".encode(), "Tệp không có dòng dữ liệu",
                 id="header-only"),
]


@pytest.mark.parametrize(("filename", "data", "message"), UNREADABLE)
def test_unreadable_file_gets_a_clear_message(app, school, as_principal, filename, data, message):
    users = user_count(app)
    response = upload(as_principal, filename, data)
    assert response.status_code == 200
    assert message in page(response)
    assert 'id="import-rows"' not in page(response)
    assert user_count(app) == users and audit_of(app, *STAFF_ACTIONS) == []


def test_confirming_an_unknown_file_is_not_found(as_principal):
    response = post(as_principal, "/s/lqd/staff/import/confirm", {"digest": "0" * 64, "filename": "ds.xlsx"},
                    form_url="/s/lqd/staff/import")
    assert response.status_code == 404
