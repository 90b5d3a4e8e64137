"""Signing in and out, passwords, throttling, sessions."""

from __future__ import annotations

import sqlalchemy as sa

from portal.audit import AuditEntry
from portal.extensions import db
from tenants.models import User
from tenants.roles import Role
from tests.conftest import PASSWORD, csrf_token, login


def _post_login(client, username, password):
    token = csrf_token(client, "/login")
    return client.post("/login", data={"username": username, "password": password, "csrf_token": token})


def test_principal_logs_in_lands_on_school_and_logs_out(client, make):
    school = make.school("lqd", "Trường Tiểu học Lê Quang Định")
    principal = make.user(school, Role.PRINCIPAL, username="ht.lqd")
    login(client, principal)
    home = client.get("/", follow_redirects=True)
    assert "Trường Tiểu học Lê Quang Định" in home.get_data(as_text=True)
    token = csrf_token(client, "/s/lqd/")
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    assert client.get("/s/lqd/").status_code == 302  # back to the login page


def test_wrong_password_is_refused_in_vietnamese(client, make, app):
    make.user(username="gv.a")
    response = _post_login(client, "gv.a", "sai-mat-khau1")
    assert response.status_code == 200
    assert "Tên đăng nhập hoặc mật khẩu không đúng." in response.get_data(as_text=True)
    with app.app_context():
        actions = db.session.scalars(sa.select(AuditEntry.action)).all()
    assert "auth.login_failed" in actions


def test_failed_logins_are_throttled_per_account(client, make, app):
    make.user(username="gv.b")
    limit = app.config["LOGIN_MAX_FAILURES_PER_ACCOUNT"]
    for _ in range(limit):
        _post_login(client, "gv.b", "wrong-pass1")
    response = _post_login(client, "gv.b", PASSWORD)  # even the right password waits now
    assert "Đăng nhập sai quá nhiều lần" in response.get_data(as_text=True)
    assert client.get("/").status_code == 302


def test_failed_logins_are_throttled_per_address(client, make, app):
    make.user(username="gv.c")
    app.config["LOGIN_MAX_FAILURES_PER_ADDRESS"] = 3
    try:
        for n in range(3):
            _post_login(client, f"khong-co-{n}", "wrong-pass1")  # different accounts, same address
        response = _post_login(client, "gv.c", PASSWORD)
        assert "Đăng nhập sai quá nhiều lần" in response.get_data(as_text=True)
        other_address = app.test_client()
        token = csrf_token(other_address, "/login")
        ok = other_address.post("/login", data={"username": "gv.c", "password": PASSWORD, "csrf_token": token},
                                environ_base={"REMOTE_ADDR": "10.9.9.9"})
        assert ok.status_code == 302
    finally:
        app.config["LOGIN_MAX_FAILURES_PER_ADDRESS"] = 20


def test_deactivated_account_cannot_log_in(client, make):
    make.user(username="gv.d", active=False)
    response = _post_login(client, "gv.d", PASSWORD)
    assert "Tài khoản đã bị khóa" in response.get_data(as_text=True)


def test_change_password_ends_other_sessions(app, make):
    school = make.school()
    user = make.user(school, Role.HOMEROOM_TEACHER, username="gv.e")
    first, second = app.test_client(), app.test_client()
    login(first, user)
    login(second, user)
    token = csrf_token(first, "/account/password")
    response = first.post("/account/password", data={
        "current": PASSWORD, "new": "MatKhauMoi2026", "confirm": "MatKhauMoi2026", "csrf_token": token})
    assert response.status_code == 302
    assert first.get(f"/s/{school.code}/").status_code == 200  # this session goes on
    assert second.get(f"/s/{school.code}/").status_code == 302  # the other one ended
    fresh = app.test_client()
    login(fresh, "gv.e", "MatKhauMoi2026")


def test_weak_new_password_is_refused_with_reasons(client, make):
    make.user(username="gv.f")
    login(client, "gv.f")
    token = csrf_token(client, "/account/password")
    response = client.post("/account/password", data={
        "current": PASSWORD, "new": "12345678", "confirm": "12345678", "csrf_token": token})
    assert response.status_code == 200
    assert "Mật khẩu phải có cả chữ và số." in response.get_data(as_text=True)


def test_default_password_hash_is_scrypt(app, ctx):  # no requests here
    from portal.auth.services import hash_password

    app.config["PASSWORD_HASH_METHOD"] = "scrypt"
    try:
        assert hash_password("Matkhau2025").startswith("scrypt:")
    finally:
        app.config["PASSWORD_HASH_METHOD"] = "pbkdf2:sha256:1000"


def test_session_cookie_is_httponly_and_samesite(client, make):
    make.user(username="gv.g")
    token = csrf_token(client, "/login")
    response = client.post("/login", data={"username": "gv.g", "password": PASSWORD, "csrf_token": token})
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_temporary_password_must_be_changed_first(client, make, app):
    school = make.school()
    user = make.user(school, Role.SUBJECT_TEACHER, username="gv.h")
    with app.app_context():
        db.session.get(User, user.id).must_change_password = True
        db.session.commit()
    login(client, user)
    response = client.get(f"/s/{school.code}/")
    assert response.status_code == 302 and response.location.endswith("/account/password")
