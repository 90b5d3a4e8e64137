"""Signing in and out, passwords, throttling, sessions."""

from __future__ import annotations

import pytest
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


STRANGER = {"REMOTE_ADDR": "203.0.113.7"}
TOO_MANY = "Đăng nhập sai quá nhiều lần"


def _post_from(client, username, password, environ=None):
    token = csrf_token(client, "/login")
    return client.post("/login", data={"username": username, "password": password, "csrf_token": token},
                       environ_base=environ or {})


def _age_failures(app, seconds):
    """Move every recorded failure `seconds` into the past (time passing, without sleeping)."""
    from datetime import timedelta

    from portal.auth.models import LoginFailure

    with app.app_context():
        for failure in db.session.scalars(sa.select(LoginFailure)):
            failure.at -= timedelta(seconds=seconds)
        db.session.commit()


def test_failures_of_one_account_from_one_address_wait_longer_each_time(client, make, app):
    make.user(username="gv.b")
    free = app.config["LOGIN_FREE_FAILURES"]
    first = app.config["LOGIN_FIRST_DELAY_SECONDS"]
    for _ in range(free):
        _post_login(client, "gv.b", "wrong-pass1")
    response = _post_login(client, "gv.b", PASSWORD)  # even the right password waits now
    assert TOO_MANY in response.get_data(as_text=True) and "giây" in response.get_data(as_text=True)
    assert client.get("/").status_code == 302
    _age_failures(app, first + 1)  # the first wait is over: one more try
    assert TOO_MANY not in _post_login(client, "gv.b", "wrong-pass2").get_data(as_text=True)
    _age_failures(app, first + 1)  # ... but the next wait is twice as long
    assert TOO_MANY in _post_login(client, "gv.b", PASSWORD).get_data(as_text=True)
    _age_failures(app, first + 1)
    assert _post_login(client, "gv.b", PASSWORD).status_code == 302


def test_a_strangers_failures_do_not_lock_the_owner_out(app, make):
    make.user(username="ht.lqd")
    stranger = app.test_client()
    for _ in range(app.config["LOGIN_FREE_FAILURES"] * 3):
        _post_from(stranger, "ht.lqd", "doan-mo-123", STRANGER)
    assert TOO_MANY in _post_from(stranger, "ht.lqd", PASSWORD, STRANGER).get_data(as_text=True)
    owner = app.test_client()  # the principal, at school
    assert _post_from(owner, "ht.lqd", PASSWORD).status_code == 302
    assert "/login" not in (owner.get("/").location or "")
    # The owner's success did not wipe out the stranger's wait.
    assert TOO_MANY in _post_from(app.test_client(), "ht.lqd", PASSWORD, STRANGER).get_data(as_text=True)


def test_one_schools_router_is_not_blocked_for_everyone(client, make, app):
    make.user(username="gv.c")
    make.user(username="gv.known")
    assert _post_login(app.test_client(), "gv.known", PASSWORD).status_code == 302  # signed in here before
    app.config["LOGIN_MAX_ACCOUNTS_PER_ADDRESS"] = 3
    try:
        for n in range(3):
            _post_login(client, f"khong-co-{n}", "wrong-pass1")  # spraying: many accounts, one address
        # An account that never signed in from here waits (spraying would otherwise go on)...
        assert TOO_MANY in _post_login(client, "gv.c", PASSWORD).get_data(as_text=True)
        # ... the school's own staff who sign in from here do not ...
        assert _post_login(app.test_client(), "gv.known", PASSWORD).status_code == 302
        # ... nor does anyone elsewhere.
        assert _post_from(app.test_client(), "gv.c", PASSWORD, {"REMOTE_ADDR": "10.9.9.9"}).status_code == 302
    finally:
        app.config["LOGIN_MAX_ACCOUNTS_PER_ADDRESS"] = 30


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
        "current": PASSWORD, "new": "Cay-Dua-Ben-Song7", "confirm": "Cay-Dua-Ben-Song7", "csrf_token": token})
    assert response.status_code == 302
    assert first.get(f"/s/{school.code}/").status_code == 200  # this session goes on
    assert second.get(f"/s/{school.code}/").status_code == 302  # the other one ended
    fresh = app.test_client()
    login(fresh, "gv.e", "Cay-Dua-Ben-Song7")


WEAK = "Mật khẩu quá dễ đoán"


@pytest.mark.parametrize("weak", ["password1", "12345678a", "Matkhau2025", "matkhau@123", "Hocbaso2025",
                                  "giaovien123", "Nguyenvanhung1"])
def test_common_and_guessable_passwords_are_refused_in_vietnamese(app, ctx, weak):
    from portal.auth.services import password_problems

    problems = password_problems(weak, username="gv.hung", full_name="Nguyễn Văn Hùng")
    assert problems and any(WEAK in p or "chữ và số" in p for p in problems), weak


def test_a_strong_password_passes(app, ctx):
    from portal.auth.services import password_problems

    assert password_problems("Song-Sai-Gon-cuoi-2026", username="gv.hung", full_name="Nguyễn Văn Hùng") == []
    assert password_problems("Cay-Dua-Ben-Song7", username="gv.hung") == []


def test_weak_new_password_is_refused_on_the_page(client, make):
    make.user(username="gv.weak")
    login(client, "gv.weak")
    token = csrf_token(client, "/account/password")
    response = client.post("/account/password", data={
        "current": PASSWORD, "new": "123456aA", "confirm": "123456aA", "csrf_token": token})
    assert response.status_code == 200 and WEAK in response.get_data(as_text=True)


def test_a_cookie_copied_before_logout_is_refused_after_it(app, make):
    school = make.school()
    user = make.user(school, Role.HOMEROOM_TEACHER, username="gv.copy")
    browser, thief = app.test_client(), app.test_client()
    login(browser, user)
    cookie = browser.get_cookie("session")
    thief.set_cookie("session", cookie.value)
    assert thief.get(f"/s/{school.code}/").status_code == 200  # the copy works while the login lasts
    token = csrf_token(browser, f"/s/{school.code}/")
    assert browser.post("/logout", data={"csrf_token": token}).status_code == 302
    assert thief.get(f"/s/{school.code}/").status_code == 302  # ended on the server, not only in the browser
    assert browser.get(f"/s/{school.code}/").status_code == 302


def test_a_login_ends_after_the_absolute_lifetime_however_busy(app, make):
    import time

    school = make.school()
    user = make.user(school, Role.HOMEROOM_TEACHER, username="gv.long")
    client = app.test_client()
    login(client, user)
    assert client.get(f"/s/{school.code}/").status_code == 200
    with client.session_transaction() as session:
        session["auth_at"] = time.time() - app.config["SESSION_ABSOLUTE_HOURS"] * 3600 - 1
    response = client.get(f"/s/{school.code}/")
    assert response.status_code == 302 and "/login" in response.location


def test_notices_tell_the_holder_at_next_login_who_did_what(app, make):
    from portal.auth import services

    school = make.school()
    user = make.user(school, Role.HOMEROOM_TEACHER, username="gv.notice")
    admin = make.user(school, Role.PRINCIPAL, username="ht.notice", full_name="Võ Thị Lài")
    with app.app_context():
        services.notify(db.session.get(User, user.id), services.NOTICE_PASSWORD_RESET,
                        actor=db.session.get(User, admin.id))
        db.session.commit()
    client = app.test_client()
    token = csrf_token(client, "/login")
    response = client.post("/login", data={"username": "gv.notice", "password": PASSWORD, "csrf_token": token},
                           follow_redirects=True)
    assert "Võ Thị Lài đã tạo liên kết đặt lại mật khẩu" in response.get_data(as_text=True)
    second = app.test_client()
    login(second, user)
    assert "Võ Thị Lài" not in second.get("/", follow_redirects=True).get_data(as_text=True)  # told once


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
