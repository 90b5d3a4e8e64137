"""The district office's pages: schools with their staff counts, new schools, their first accounts, the trail."""

from __future__ import annotations

import html
import re
import unicodedata

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from portal.audit import AuditEntry
from portal.extensions import db
from tenants.models import Membership, School, User
from tenants.roles import Role
from tenants.scoping import all_schools, school_scope
from tests.conftest import Factory, csrf_token, login

NEW_PASSWORD = "Cay-Dua-Ben-Song7"


@pytest.fixture
def admin(make: Factory) -> User:
    return make.user(username="pgd.admin", full_name="Quản trị Phòng", district_role=Role.DISTRICT_ADMIN)


@pytest.fixture
def as_admin(client: FlaskClient, admin: User) -> FlaskClient:
    login(client, admin)
    return client


def page(response: TestResponse) -> str:
    return html.unescape(response.get_data(as_text=True))


def post(client: FlaskClient, url: str, data: dict[str, object], *, form_url: str | None = None) -> TestResponse:
    return client.post(url, data={**data, "csrf_token": csrf_token(client, form_url or url)})


def new_school(client: FlaskClient, code: str, name: str, **extra: str) -> TestResponse:
    return post(client, "/district/schools/new", {"code": code, "name": name, "moet_code": "",
                                                  "commune": "Xã Phước Kiển", "address": "", **extra})


def new_account(client: FlaskClient, code: str, role: str, username: str, full_name: str) -> TestResponse:
    return post(client, f"/district/schools/{code}",
                {"role": role, "username": username, "full_name": full_name, "email": ""})


def shown_password(response: TestResponse) -> str:
    """The set-password link (its path) shown once for a new account: never a password."""
    match = re.search(r'id="set-password-link" href="http://[^/"]+(/account/set-password/[^"]+)"',
                      response.get_data(as_text=True))
    assert match, "no set-password link on the page"
    assert "temporary-password" not in response.get_data(as_text=True)
    return match.group(1)


def staff_counts(response: TestResponse) -> dict[str, int]:
    """The school list: code -> number of accounts shown."""
    rows = re.findall(r'<td><a href="/district/schools/([^"]+)">.*?<td class="num">(\d+)</td>', page(response), re.S)
    return {code: int(count) for code, count in rows}


def school_codes(app: Flask) -> list[str]:
    with app.app_context():
        return sorted(db.session.scalars(sa.select(School.code)))


def audit_of(app: Flask, action: str) -> list[tuple[int | None, int | None, str]]:
    """(school id, actor id, summary) of each entry with that action."""
    with app.app_context():
        return [(e.school_id, e.actor_id, e.summary) for e in db.session.scalars(
            sa.select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id))]


def roles_in(app: Flask, school: School, username: str) -> set[Role] | None:
    with app.app_context(), all_schools():
        membership = db.session.scalar(
            sa.select(Membership).join(User, Membership.user_id == User.id)
            .where(User.username == username, Membership.school_id == school.id))
        return None if membership is None else set(membership.role_set)


def first_login(app: Flask, username: str, link: str) -> FlaskClient:
    """The holder sets their own password with the link they were handed, then signs in with it."""
    client = app.test_client()
    response = post(client, link, {"new": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert response.status_code == 302
    login(client, username, NEW_PASSWORD)
    return client


# --- the school list -------------------------------------------------------------------------------

def test_admin_sees_every_school_with_its_active_staff_count(app, make, as_admin):
    lqd = make.school("lqd", "Trường Tiểu học Lê Quang Định")
    ntr = make.school("ntr", "Trường Tiểu học Nguyễn Trãi")
    make.school("moi", "Trường Tiểu học Mới Thành Lập")
    make.user(lqd, Role.PRINCIPAL)
    make.user(lqd, Role.HOMEROOM_TEACHER, Role.SUBJECT_TEACHER)  # several roles: still one account
    locked = make.user(lqd, Role.SUBJECT_TEACHER)
    make.user(ntr, Role.PRINCIPAL)
    with app.app_context(), school_scope(lqd.id):
        db.session.scalar(sa.select(Membership).where(Membership.user_id == locked.id)).active = False
        db.session.commit()

    response = as_admin.get("/district/")
    assert response.status_code == 200
    text = page(response)
    assert "Phòng Giáo dục và Đào tạo huyện Nhà Bè" in text
    assert "Trường Tiểu học Nguyễn Trãi" in text and "Trường Tiểu học Mới Thành Lập" in text
    assert staff_counts(response) == {"lqd": 2, "ntr": 1, "moi": 0}


def test_school_staff_are_not_district_pages(app, make):
    school = make.school("lqd")
    principal = make.user(school, Role.PRINCIPAL)
    client = app.test_client()
    login(client, principal)
    assert client.get("/district/").status_code == 403
    assert client.get("/district/schools/lqd").status_code == 403
    assert client.get("/district/audit/").status_code == 403
    assert app.test_client().get("/district/").status_code == 302  # anonymous: to the login page


# --- creating schools ------------------------------------------------------------------------------

def test_admin_creates_a_school(app, admin, as_admin):
    name = unicodedata.normalize("NFD", "Trường Tiểu học Nguyễn Văn Tư")
    response = new_school(as_admin, " Nguyen-Van-Tu ", name, moet_code="79785401")
    assert response.status_code == 302 and response.location.endswith("/district/schools/nguyen-van-tu")
    assert school_codes(app) == ["nguyen-van-tu"]
    with app.app_context():
        school = db.session.scalar(sa.select(School))
        assert school.name == unicodedata.normalize("NFC", "Trường Tiểu học Nguyễn Văn Tư")
        assert school.moet_code == "79785401" and school.commune == "Xã Phước Kiển"
        school_id = school.id
    assert staff_counts(as_admin.get("/district/")) == {"nguyen-van-tu": 0}
    assert audit_of(app, "school.created") == [(school_id, admin.id, "Trường Tiểu học Nguyễn Văn Tư")]
    detail = as_admin.get("/district/schools/nguyen-van-tu")
    assert detail.status_code == 200 and "Trường chưa có tài khoản nào." in page(detail)


@pytest.mark.parametrize(("code", "name", "message"), [
    pytest.param("lqd", "Trường Tiểu học Khác", "Mã trường lqd đã được dùng.", id="duplicate-code"),
    pytest.param("LQD", "Trường Tiểu học Khác", "Mã trường lqd đã được dùng.", id="duplicate-code-case"),
    pytest.param("trường 1", "Trường Tiểu học Khác", "Mã trường chỉ gồm chữ thường không dấu", id="accents"),
    pytest.param("a", "Trường Tiểu học Khác", "Mã trường chỉ gồm chữ thường không dấu", id="too-short"),
    pytest.param("-abc", "Trường Tiểu học Khác", "Mã trường chỉ gồm chữ thường không dấu", id="leading-dash"),
    pytest.param("khac", "Trường Tiểu học Lê Quang Định", "Đã có trường mang tên này.", id="duplicate-name"),
])
def test_bad_school_gets_a_clear_message_and_creates_nothing(app, make, as_admin, code, name, message):
    make.school("lqd", "Trường Tiểu học Lê Quang Định")
    response = new_school(as_admin, code, name)
    assert response.status_code == 200
    assert message in page(response)
    assert school_codes(app) == ["lqd"]
    assert audit_of(app, "school.created") == []


# --- a school's first accounts ---------------------------------------------------------------------

def test_admin_creates_principal_and_it_accounts(app, make, admin, as_admin):
    school = make.school("lqd", "Trường Tiểu học Lê Quang Định")
    response = new_account(as_admin, "lqd", Role.PRINCIPAL.value, "ht.lqd", "Trần Văn Hiệu")
    assert response.status_code == 200 and "Đã tạo tài khoản" in page(response)
    principal_password = shown_password(response)
    it_password = shown_password(new_account(as_admin, "lqd", Role.SCHOOL_IT.value, "cntt.lqd", "Lê Văn Tin"))

    assert roles_in(app, school, "ht.lqd") == {Role.PRINCIPAL}
    assert roles_in(app, school, "cntt.lqd") == {Role.SCHOOL_IT}
    detail = page(as_admin.get("/district/schools/lqd"))
    assert "Trần Văn Hiệu" in detail and "Hiệu trưởng" in detail
    assert "Lê Văn Tin" in detail and "Nhân viên CNTT" in detail
    assert principal_password not in detail and it_password not in detail
    assert staff_counts(as_admin.get("/district/")) == {"lqd": 2}
    created = audit_of(app, "staff.created")
    assert [(s, a) for s, a, _ in created] == [(school.id, admin.id)] * 2

    principal = first_login(app, "ht.lqd", principal_password)
    landed = principal.get("/", follow_redirects=True)
    assert landed.request.path == "/s/lqd/"
    assert "Trường Tiểu học Lê Quang Định" in page(landed)
    assert principal.get("/s/lqd/audit").status_code == 200

    it_staff = first_login(app, "cntt.lqd", it_password)
    assert it_staff.get("/", follow_redirects=True).request.path == "/s/lqd/"
    assert it_staff.get("/s/lqd/staff/new").status_code == 200


@pytest.mark.parametrize(("data", "message"), [
    pytest.param({"username": "ht.cu"}, "Tên đăng nhập ht.cu đã có người dùng.", id="duplicate"),
    pytest.param({"username": "hiệu trưởng"}, "Tên đăng nhập chỉ gồm chữ không dấu", id="invalid"),
    pytest.param({"username": "ab"}, "3-80 ký tự.", id="too-short"),
    pytest.param({"role": Role.HOMEROOM_TEACHER.value}, "", id="not-a-management-role"),
    pytest.param({"role": Role.DISTRICT_ADMIN.value}, "", id="district-role"),
])
def test_bad_account_on_school_page_creates_nothing(app, make, as_admin, data, message):
    school = make.school("lqd")
    make.user(school, Role.SUBJECT_TEACHER, username="ht.cu")
    fields = {"role": Role.PRINCIPAL.value, "username": "ht.moi", "full_name": "Võ Văn Mới", "email": "", **data}
    response = post(as_admin, "/district/schools/lqd", fields)
    assert response.status_code == 200
    text = page(response)
    assert message in text and "temporary-password" not in text
    assert "Field must" not in text
    assert audit_of(app, "staff.created") == []
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(User)) == 2  # the admin and ht.cu


def test_unknown_school_is_not_found(as_admin):
    assert as_admin.get("/district/schools/khong-co").status_code == 404


# --- the district officer reads only ---------------------------------------------------------------

def test_officer_reads_but_cannot_create(app, make):
    school = make.school("lqd", "Trường Tiểu học Lê Quang Định")
    make.user(school, Role.PRINCIPAL, full_name="Trần Văn Hiệu")
    officer = make.user(username="pgd.cv", district_role=Role.DISTRICT_OFFICER)
    client = app.test_client()
    login(client, officer)
    assert client.get("/", follow_redirects=True).request.path == "/district/"
    listing = client.get("/district/")
    assert listing.status_code == 200 and staff_counts(listing) == {"lqd": 1}
    assert "/district/schools/new" not in page(listing)
    detail = client.get("/district/schools/lqd")
    assert detail.status_code == 200 and "Trần Văn Hiệu" in page(detail)
    assert 'name="username"' not in page(detail)
    assert client.get("/district/audit/").status_code == 200

    token = csrf_token(client, "/account/password")  # any of the officer's own forms carries the session token
    assert client.get("/district/schools/new").status_code == 403
    assert client.post("/district/schools/new", data={
        "csrf_token": token, "code": "moi", "name": "Trường Tiểu học Mới", "commune": "", "address": "",
        "moet_code": ""}).status_code == 403
    assert client.post("/district/schools/lqd", data={
        "csrf_token": token, "role": Role.PRINCIPAL.value, "username": "ht.moi", "full_name": "Võ Văn Mới",
        "email": ""}).status_code == 403
    assert school_codes(app) == ["lqd"]
    assert audit_of(app, "school.created") == [] and audit_of(app, "staff.created") == []
    with app.app_context():
        assert db.session.scalar(sa.select(User).where(User.username == "ht.moi")) is None


# --- the audit trail -------------------------------------------------------------------------------

def test_district_trail_shows_every_school_and_a_school_trail_only_its_own(app, make, admin, as_admin):
    assert new_school(as_admin, "truong-a", "Trường Tiểu học Hoa Sen").status_code == 302
    assert new_school(as_admin, "truong-b", "Trường Tiểu học Hoa Mai").status_code == 302
    password_a = shown_password(new_account(as_admin, "truong-a", Role.PRINCIPAL.value, "ht.a", "Hiệu Trưởng An"))
    password_b = shown_password(new_account(as_admin, "truong-b", Role.PRINCIPAL.value, "ht.b", "Hiệu Trưởng Bảo"))

    principal_a = first_login(app, "ht.a", password_a)
    principal_b = first_login(app, "ht.b", password_b)
    for client, code, name in ((principal_a, "truong-a", "Giáo Viên Cúc"), (principal_b, "truong-b", "Giáo Viên Đào")):
        response = post(client, f"/s/{code}/staff/new", {"username": f"gv.{code}", "full_name": name, "email": "",
                                                         "roles": [Role.HOMEROOM_TEACHER.value]})
        assert response.status_code == 200

    district = as_admin.get("/district/audit/")
    assert district.status_code == 200
    text = page(district)
    for shown in ("Trường Tiểu học Hoa Sen", "Trường Tiểu học Hoa Mai", "Hiệu Trưởng An", "Hiệu Trưởng Bảo",
                  "Giáo Viên Cúc", "Giáo Viên Đào"):
        assert shown in text, shown

    trail_a = principal_a.get("/s/truong-a/audit")
    assert trail_a.status_code == 200
    text_a = page(trail_a)
    assert "Trường Tiểu học Hoa Sen" in text_a  # its own school.created entry
    assert "Hiệu Trưởng An" in text_a and "Giáo Viên Cúc" in text_a
    assert text_a.count("staff.created") == 2 and text_a.count("school.created") == 1
    assert "Hoa Mai" not in text_a and "Hiệu Trưởng Bảo" not in text_a and "Giáo Viên Đào" not in text_a
    assert "auth.login" not in text_a  # logins belong to no school

    text_b = page(principal_b.get("/s/truong-b/audit"))
    assert "Giáo Viên Đào" in text_b and "Giáo Viên Cúc" not in text_b
    assert principal_a.get("/s/truong-b/audit").status_code == 403

    # A school's trail is for its principal, not for its teachers.
    with app.app_context():
        school_a = db.session.scalar(sa.select(School).where(School.code == "truong-a"))
        db.session.expunge(school_a)
    teacher = app.test_client()
    login(teacher, make.user(school_a, Role.HOMEROOM_TEACHER))
    assert teacher.get("/s/truong-a/audit").status_code == 403
