"""Passwords and logins. Services take plain values; the views pass the request's data in."""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass
from datetime import timedelta

import sqlalchemy as sa
from flask import current_app
from flask_babel import gettext as _
from werkzeug.security import check_password_hash, generate_password_hash

from portal import audit
from portal.auth.models import LoginFailure
from portal.extensions import db, utcnow
from tenants.models import User

# A hash to compare against when the account does not exist, so that a wrong username costs as
# much time as a wrong password and does not reveal which accounts exist.
_DUMMY_HASH: dict[str, str] = {}


def hash_password(password: str) -> str:
    return generate_password_hash(password, method=current_app.config["PASSWORD_HASH_METHOD"])


def normalise_username(username: str) -> str:
    return username.strip().lower()


def password_problems(password: str, *, username: str = "") -> list[str]:
    """Why a new password is refused, in the user's language; empty when it is acceptable."""
    problems = []
    minimum = current_app.config["PASSWORD_MIN_LENGTH"]
    if len(password) < minimum:
        problems.append(_("Mật khẩu phải có ít nhất %(n)d ký tự.", n=minimum))
    if password.isdigit() or password.isalpha():
        problems.append(_("Mật khẩu phải có cả chữ và số."))
    if username and normalise_username(username) in password.lower():
        problems.append(_("Mật khẩu không được chứa tên đăng nhập."))
    return problems


def generate_temporary_password() -> str:
    """A readable one-time password the user must change at the next login."""
    alphabet = "".join(c for c in string.ascii_letters + string.digits if c not in "0O1lI")
    while True:
        candidate = "".join(secrets.choice(alphabet) for _ in range(10))
        if any(c.isdigit() for c in candidate) and any(c.isalpha() for c in candidate):
            return candidate


def set_password(user: User, password: str, *, must_change: bool) -> None:
    """Store a new password and end every other session of the user."""
    user.password_hash = hash_password(password)
    user.must_change_password = must_change
    user.session_token = secrets.token_hex(16)


@dataclass(frozen=True)
class LoginResult:
    user: User | None
    error: str | None = None


def _window_start():
    return utcnow() - timedelta(minutes=current_app.config["LOGIN_THROTTLE_MINUTES"])


def is_throttled(username: str, address: str) -> bool:
    """True when the account or the address has failed too often within the window."""
    since = _window_start()
    per_account = db.session.scalar(sa.select(sa.func.count()).select_from(LoginFailure).where(
        LoginFailure.username == username, LoginFailure.at >= since))
    if per_account >= current_app.config["LOGIN_MAX_FAILURES_PER_ACCOUNT"]:
        return True
    per_address = db.session.scalar(sa.select(sa.func.count()).select_from(LoginFailure).where(
        LoginFailure.address == address, LoginFailure.at >= since))
    return per_address >= current_app.config["LOGIN_MAX_FAILURES_PER_ADDRESS"]


def authenticate(username: str, password: str, *, address: str) -> LoginResult:
    """Check a login attempt, throttling repeated failures; records the outcome in the audit trail."""
    username = normalise_username(username)
    if is_throttled(username, address):
        minutes = current_app.config["LOGIN_THROTTLE_MINUTES"]
        audit.record("auth.login_throttled", actor=None, school_id=None, object_type="User",
                     summary=username, address=address)
        db.session.commit()
        return LoginResult(None, _("Đăng nhập sai quá nhiều lần. Vui lòng thử lại sau %(m)d phút.", m=minutes))
    user = db.session.scalar(sa.select(User).where(User.username == username))
    stored = user.password_hash if user else _dummy_hash()
    password_ok = check_password_hash(stored, password)
    if user is None or not password_ok or not user.active:
        db.session.add(LoginFailure(username=username, address=address))
        audit.record("auth.login_failed", actor=None, school_id=None, object_type="User",
                     object_id=user.id if user else "", summary=username, address=address)
        db.session.commit()
        if user is not None and password_ok and not user.active:
            return LoginResult(None, _("Tài khoản đã bị khóa. Vui lòng liên hệ nhà trường hoặc Phòng GD&ĐT."))
        return LoginResult(None, _("Tên đăng nhập hoặc mật khẩu không đúng."))
    db.session.execute(sa.delete(LoginFailure).where(LoginFailure.username == username))
    user.last_login_at = utcnow()
    audit.record("auth.login", actor=user, school_id=None, obj=user, summary=username, address=address)
    db.session.commit()
    return LoginResult(user)


def _dummy_hash() -> str:
    method = current_app.config["PASSWORD_HASH_METHOD"]
    if method not in _DUMMY_HASH:
        _DUMMY_HASH[method] = generate_password_hash(secrets.token_hex(8), method=method)
    return _DUMMY_HASH[method]


def change_own_password(user: User, current: str, new: str, *, address: str) -> list[str]:
    """Change the user's own password after checking the current one; returns the problems, if any."""
    if not check_password_hash(user.password_hash, current):
        return [_("Mật khẩu hiện tại không đúng.")]
    problems = password_problems(new, username=user.username)
    if current == new:
        problems.append(_("Mật khẩu mới phải khác mật khẩu hiện tại."))
    if problems:
        return problems
    set_password(user, new, must_change=False)
    audit.record("auth.password_changed", actor=user, school_id=None, obj=user, address=address)
    db.session.commit()
    return []


def set_locale(user: User | None, locale: str) -> None:
    """Remember a signed-in user's language choice."""
    if user is not None and user.locale != locale:
        audit.record("auth.locale_changed", actor=user, school_id=None, obj=user,
                     changes={"locale": [user.locale, locale]})
        user.locale = locale
        db.session.commit()


def load_user(session_id: str) -> User | None:
    """Flask-Login's loader: the id must come with the user's current session token."""
    user_id, _sep, token = session_id.partition(":")
    if not user_id.isdigit():
        return None
    user = db.session.get(User, int(user_id))
    if user is None or not user.active or not secrets.compare_digest(user.session_token, token):
        return None
    return user
