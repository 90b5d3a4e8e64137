"""Passwords and logins. Services take plain values; the views pass the request's data in."""

from __future__ import annotations

import hashlib
import re
import secrets
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path

import sqlalchemy as sa
from flask import current_app
from flask_babel import gettext as _
from werkzeug.security import check_password_hash, generate_password_hash

from portal import audit
from portal.auth.models import AccountNotice, LoginFailure, PasswordLink
from portal.extensions import db, utcnow
from tenants.models import User
from tenants.roles import N_

# A hash to compare against when the account does not exist, so that a wrong username costs as
# much time as a wrong password and does not reveal which accounts exist.
_DUMMY_HASH: dict[str, str] = {}


def hash_password(password: str) -> str:
    return generate_password_hash(password, method=current_app.config["PASSWORD_HASH_METHOD"])


def normalise_username(username: str) -> str:
    return username.strip().lower()


COMMON_WORDS_FILE = Path(__file__).parent / "data" / "common_passwords_vi.txt"
# zxcvbn scores 0-4; 3 is "safely unguessable" against online guessing and slows an offline attack on the
# hashes down to years. It does not know Vietnamese, hence the shipped word list it is given as well.
MIN_STRENGTH_SCORE = 3
_ESTIMATED_LENGTH = 64  # zxcvbn's time grows with the length; the first 64 characters tell enough


@cache
def common_words() -> tuple[str, ...]:
    """The shipped list of common Vietnamese passwords and school words (lowercase, unaccented)."""
    lines = COMMON_WORDS_FILE.read_text(encoding="utf-8").splitlines()
    return tuple(line.strip() for line in lines if line.strip() and not line.startswith("#"))


def _plain(text: str) -> str:
    """Lowercase without Vietnamese accents: 'Mật khẩu' -> 'mat khau'."""
    decomposed = unicodedata.normalize("NFD", text.replace("đ", "d").replace("Đ", "D"))
    return "".join(c for c in decomposed if not unicodedata.combining(c)).lower()


def _is_common(password: str) -> bool:
    plain = _plain(password)
    words = set(common_words())
    core = re.sub(r"[\W\d_]+$", "", plain)  # 'matkhau@2025' -> 'matkhau'
    return plain in words or core in words or plain.replace(" ", "") in words


def password_problems(password: str, *, username: str = "", full_name: str = "") -> list[str]:
    """Why a new password is refused, in the user's language; empty when it is acceptable."""
    from zxcvbn import zxcvbn

    problems = []
    minimum = current_app.config["PASSWORD_MIN_LENGTH"]
    if len(password) < minimum:
        problems.append(_("Mật khẩu phải có ít nhất %(n)d ký tự.", n=minimum))
    if password.isdigit() or password.isalpha():
        problems.append(_("Mật khẩu phải có cả chữ và số."))
    if username and normalise_username(username) in password.lower():
        problems.append(_("Mật khẩu không được chứa tên đăng nhập."))
    if problems:
        return problems
    personal = [username, *_plain(full_name).split(), _plain(full_name).replace(" ", "")]
    estimate = zxcvbn(password[:_ESTIMATED_LENGTH], user_inputs=[w for w in [*common_words(), *personal] if w])
    if _is_common(password) or estimate["score"] < MIN_STRENGTH_SCORE:
        problems.append(_("Mật khẩu quá dễ đoán (từ thông dụng như “matkhau”, “123456a”, tên trường, "
                          "họ tên, năm sinh...). Hãy chọn một cụm vài từ ít gặp, có thêm chữ số hoặc ký hiệu."))
    return problems


# No password matches it (werkzeug reads no method in it): a new account waits for its holder to set one.
UNUSABLE_PASSWORD_HASH = "!unset"


def set_password(user: User, password: str, *, must_change: bool) -> None:
    """Store a new password and end every other session of the user."""
    user.password_hash = hash_password(password)
    user.must_change_password = must_change
    end_sessions(user)


def end_sessions(user: User) -> None:
    """End every session of the user on the server side: cookies and agent tokens carry the old token."""
    user.session_token = secrets.token_hex(16)


@dataclass(frozen=True)
class LoginResult:
    user: User | None
    error: str | None = None
    throttled: bool = False  # refused without checking the password: this account and address wait


def _window_start() -> datetime:
    return utcnow() - timedelta(minutes=current_app.config["LOGIN_THROTTLE_MINUTES"])


def throttle_wait(username: str, address: str) -> timedelta | None:
    """How long this (account, address) pair must still wait before its next try, or None.

    Failures count per pair, so a stranger elsewhere never locks the owner out, and the wait doubles
    with every failure past the free ones. An address that fails on many accounts (password spraying)
    is held back too, except for the accounts that have signed in from it before: a school's own staff
    behind one router keep working.
    """
    config = current_app.config
    since, now = _window_start(), utcnow()
    count, last = db.session.execute(sa.select(sa.func.count(), sa.func.max(LoginFailure.at)).where(
        LoginFailure.username == username, LoginFailure.address == address, LoginFailure.at >= since)).one()
    free = config["LOGIN_FREE_FAILURES"]
    if count >= free and last is not None:
        doublings = min(count - free, 16)  # the cap below is reached long before; no overflow either way
        delay = min(timedelta(seconds=config["LOGIN_FIRST_DELAY_SECONDS"] * 2 ** doublings),
                    timedelta(minutes=config["LOGIN_MAX_DELAY_MINUTES"]))
        if now < last + delay:
            return last + delay - now
    accounts = db.session.scalar(sa.select(sa.func.count(sa.distinct(LoginFailure.username))).where(
        LoginFailure.address == address, LoginFailure.at >= since))
    if accounts >= config["LOGIN_MAX_ACCOUNTS_PER_ADDRESS"] and not _signed_in_from(username, address):
        return timedelta(minutes=config["LOGIN_MAX_DELAY_MINUTES"])
    return None


def _signed_in_from(username: str, address: str) -> bool:
    since = utcnow() - timedelta(days=90)
    return db.session.scalar(sa.select(audit.AuditEntry.id).where(
        audit.AuditEntry.action == "auth.login", audit.AuditEntry.summary == username,
        audit.AuditEntry.address == address, audit.AuditEntry.at >= since).limit(1)) is not None


def _wait_text(wait: timedelta) -> str:
    seconds = max(1, int(wait.total_seconds() + 0.999))
    if seconds < 60:
        return _("%(n)d giây", n=seconds)
    return _("%(n)d phút", n=(seconds + 59) // 60)


def authenticate(username: str, password: str, *, address: str) -> LoginResult:
    """Check a login attempt, throttling repeated failures; records the outcome in the audit trail."""
    username = normalise_username(username)
    wait = throttle_wait(username, address)
    if wait is not None:
        audit.record("auth.login_throttled", actor=None, school_id=None, object_type="User",
                     summary=username, address=address)
        db.session.commit()
        return LoginResult(None, _("Đăng nhập sai quá nhiều lần. Vui lòng thử lại sau %(wait)s.",
                                   wait=_wait_text(wait)), throttled=True)
    user = db.session.scalar(sa.select(User).where(User.username == username))
    # An account still waiting for its holder's password costs as much time as any other wrong password.
    stored = user.password_hash if user and user.password_hash != UNUSABLE_PASSWORD_HASH else _dummy_hash()
    password_ok = check_password_hash(stored, password)
    if user is None or not password_ok or not user.active:
        db.session.add(LoginFailure(username=username, address=address))
        audit.record("auth.login_failed", actor=None, school_id=None, object_type="User",
                     object_id=user.id if user else "", summary=username, address=address)
        db.session.commit()
        if user is not None and password_ok and not user.active:
            return LoginResult(None, _("Tài khoản đã bị khóa. Vui lòng liên hệ nhà trường hoặc Phòng GD&ĐT."))
        return LoginResult(None, _("Tên đăng nhập hoặc mật khẩu không đúng."))
    # Only this pair's failures: the owner's success must not wipe out a stranger's growing wait.
    db.session.execute(sa.delete(LoginFailure).where(LoginFailure.username == username,
                                                     LoginFailure.address == address))
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
    problems = password_problems(new, username=user.username, full_name=user.full_name)
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


def log_out(user: User, *, address: str | None) -> None:
    """End every session of the user (a copied cookie stops working too) and say so in the trail."""
    end_sessions(user)
    audit.record("auth.logout", actor=user, school_id=None, obj=user, address=address)
    db.session.commit()


# --- set-password links: a reset never shows a password to the person who asks for it -----------------------


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_password_link(user: User, *, purpose: str, actor: User | None) -> str:
    """A one-time token with which only `user` sets their password; earlier unused ones stop working."""
    now = utcnow()
    for older in db.session.scalars(sa.select(PasswordLink).where(PasswordLink.user_id == user.id,
                                                                  PasswordLink.used_at.is_(None))):
        older.used_at = now
    token = secrets.token_urlsafe(24)
    db.session.add(PasswordLink(user_id=user.id, token_hash=_token_hash(token), purpose=purpose,
                                created_by_id=getattr(actor, "id", None),
                                created_by_name=getattr(actor, "full_name", "") or "",
                                expires_at=now + timedelta(hours=current_app.config["PASSWORD_LINK_HOURS"])))
    return token


def valid_password_link(token: str) -> PasswordLink | None:
    """The unused, unexpired link of this token, or None."""
    link = db.session.scalar(sa.select(PasswordLink).where(PasswordLink.token_hash == _token_hash(token)))
    if link is None or link.used_at is not None or link.expires_at < utcnow():
        return None
    return link


def set_password_with_link(link: PasswordLink, new: str, *, address: str) -> list[str]:
    """The holder sets their own password with a link; it is used up, and every session ends."""
    user = db.session.get(User, link.user_id)
    problems = password_problems(new, username=user.username, full_name=user.full_name)
    if problems:
        return problems
    set_password(user, new, must_change=False)
    link.used_at = utcnow()
    audit.record("auth.password_set_by_link", actor=user, school_id=None, obj=user, address=address,
                 changes={"purpose": link.purpose, "link_by": link.created_by_name})
    db.session.commit()
    return []


# --- telling the holder what someone else did to their account ---------------------------------------------

NOTICE_PASSWORD_RESET = N_("%(at)s: %(actor)s đã tạo liên kết đặt lại mật khẩu cho tài khoản của bạn.")
NOTICE_LOCKED = N_("%(at)s: %(actor)s đã khóa tài khoản của bạn tại %(school)s.")
NOTICE_UNLOCKED = N_("%(at)s: %(actor)s đã mở khóa tài khoản của bạn tại %(school)s.")
NOTICE_ROLES = N_("%(at)s: %(actor)s đã đổi vai trò của bạn tại %(school)s: %(before)s → %(after)s.")
NOTICE_PROFILE = N_("%(at)s: %(actor)s đã sửa họ tên hoặc email của tài khoản của bạn tại %(school)s.")


def notify(user: User, message: str, *, actor: User | None, **params: str) -> None:
    """Leave a notice for `user` (shown at their next login); nothing when they acted on themselves."""
    if actor is not None and actor.id == user.id:
        return
    from portal.i18n import format_datetime

    db.session.add(AccountNotice(user_id=user.id, message=message, params={
        "at": format_datetime(utcnow()), "actor": getattr(actor, "full_name", "") or "Phòng GD&ĐT", **params}))


def take_notices(user: User) -> list[AccountNotice]:
    """The notices `user` has not seen yet, oldest first, marked as seen now (the caller commits)."""
    notices = list(db.session.scalars(sa.select(AccountNotice).where(
        AccountNotice.user_id == user.id, AccountNotice.seen_at.is_(None)).order_by(AccountNotice.id)))
    for notice in notices:
        notice.seen_at = utcnow()
    return notices
