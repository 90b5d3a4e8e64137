"""The JSON API of the signing agent (`agent/hocba_agent.py`), under /api/agent/.

The agent signs in with the user's username and password (throttled exactly like the login page) and
gets a bearer token: random, stored only as its SHA-256, expiring, revocable, and void as soon as the
user's password changes or the account is locked. With it the agent lists the user's pending USB
requests (every school the user belongs to), posts signatures in a batch, and signs out.

These endpoints read no cookie: a browser session alone cannot use them, which is why CSRF (a
cookie-borne attack) does not apply and they are exempted from it explicitly. See docs/signing-agent.md.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import wraps
from typing import Any

import sqlalchemy as sa
from flask import Blueprint, Flask, current_app, g, jsonify, request
from flask_babel import gettext as _
from sqlalchemy.orm import Mapped, mapped_column
from werkzeug.exceptions import HTTPException

from portal import audit
from portal.auth import services as auth_services
from portal.extensions import UTCDateTime, csrf, db, utcnow
from portal.signing import requests as signing_requests
from tenants.models import School, User
from tenants.scoping import all_schools

TOKEN_PREFIX = "hba_"

bp = Blueprint("agent_api", __name__, url_prefix="/api/agent")


class AgentToken(db.Model):
    """A bearer token of the signing agent; only its SHA-256 is kept."""

    __tablename__ = "agent_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"), index=True)
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    # The user's session token when this one was issued, hashed: a password change voids the agent too.
    session_hash: Mapped[str] = mapped_column(sa.String(64))
    agent: Mapped[str] = mapped_column(sa.String(200), default="")  # what the agent said it is
    address: Mapped[str | None] = mapped_column(sa.String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    def __repr__(self) -> str:
        return f"<AgentToken user={self.user_id} expires={self.expires_at:%Y-%m-%d %H:%M}>"


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


# --- services ------------------------------------------------------------------------------------------

def issue_token(user: User, *, agent: str, address: str | None) -> tuple[str, AgentToken]:
    """A new bearer token for the user (in the current transaction); the plain value is returned once."""
    plain = TOKEN_PREFIX + secrets.token_urlsafe(32)
    now = utcnow()
    token = AgentToken(user_id=user.id, token_hash=_sha256(plain), session_hash=_sha256(user.session_token),
                       agent=agent[:200], address=address, created_at=now,
                       expires_at=now + timedelta(hours=current_app.config["AGENT_TOKEN_HOURS"]))
    db.session.add(token)
    db.session.flush()
    audit.record("agent.signed_in", actor=user, school_id=None, obj=token, summary=agent[:200], address=address)
    return plain, token


def user_for_token(plain: str) -> tuple[User, AgentToken] | None:
    """The active user a live token belongs to, else None."""
    token = db.session.scalar(sa.select(AgentToken).where(AgentToken.token_hash == _sha256(plain)))
    if token is None or token.revoked_at is not None or token.expires_at <= utcnow():
        return None
    user = db.session.get(User, token.user_id)
    if user is None or not user.active or not secrets.compare_digest(token.session_hash, _sha256(user.session_token)):
        return None
    return user, token


def revoke_token(token: AgentToken, *, actor: Any, address: str | None) -> None:
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        audit.record("agent.signed_out", actor=actor, school_id=None, obj=token, address=address)


# --- views ---------------------------------------------------------------------------------------------

def _error(status: int, message: str) -> tuple[Any, int]:
    response = jsonify({"error": message})
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="hocba-agent"'
    return response, status


def bearer_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """Only a bearer token authenticates here; a cookie session is ignored."""

    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        scheme, _sep, value = request.headers.get("Authorization", "").partition(" ")
        found = user_for_token(value.strip()) if scheme.lower() == "bearer" and value.strip() else None
        if found is None:
            return _error(401, _("Phiên đăng nhập của chương trình ký đã hết hạn hoặc không hợp lệ. "
                                 "Vui lòng đăng nhập lại."))
        g.agent_user, g.agent_token = found
        g.agent_token.last_used_at = utcnow()
        return view(*args, **kwargs)

    return wrapped


def _json_body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    return body if isinstance(body, dict) else {}


@bp.post("/session")
def sign_in() -> Any:
    body = _json_body()
    username, password = str(body.get("username", "")), str(body.get("password", ""))
    if not username or not password:
        return _error(400, _("Vui lòng nhập tên đăng nhập và mật khẩu."))
    address = request.remote_addr or "unknown"
    result = auth_services.authenticate(username, password, address=address)
    if result.user is None:
        return _error(429 if result.throttled else 401, result.error or "")
    if result.user.must_change_password:
        return _error(403, _("Bạn cần đổi mật khẩu trên cổng học bạ số trước khi dùng chương trình ký."))
    plain, token = issue_token(result.user, agent=str(body.get("agent", "")), address=address)
    db.session.commit()
    return jsonify({"token": plain, "expires_at": token.expires_at.isoformat(),
                    "user": {"username": result.user.username, "full_name": result.user.full_name}})


@bp.delete("/session")
@bearer_required
def sign_out() -> Any:
    revoke_token(g.agent_token, actor=g.agent_user, address=request.remote_addr)
    db.session.commit()
    return jsonify({"signed_out": True})


@bp.get("/requests")
@bearer_required
def pending() -> Any:
    db.session.commit()  # last_used_at
    found = signing_requests.pending_for(g.agent_user.id, kind=signing_requests.RequestKind.USB)
    with all_schools():
        schools = {s.id: s for s in db.session.scalars(sa.select(School).where(
            School.id.in_({r.school_id for r in found})))}
    return jsonify({"user": {"username": g.agent_user.username, "full_name": g.agent_user.full_name},
                    "requests": [_request_json(r, schools[r.school_id]) for r in found]})


def _certificate_names(der: bytes) -> dict[str, str]:
    """Who the certificate names and its serial, so the agent can say which one it looks for on the tokens."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    certificate = x509.load_der_x509_certificate(der)
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return {"certificate_name": str(names[0].value) if names else certificate.subject.rfc4514_string(),
            "certificate_serial": format(certificate.serial_number, "X")}


def _request_json(req: signing_requests.SigningRequest, school: School) -> dict[str, Any]:
    return {**_certificate_names(req.certificate),
            "id": req.id, "school": {"code": school.code, "name": school.name}, "purpose": req.purpose,
            "step": req.step, "step_label": req.step_label, "description": req.description,
            "digest": req.digest, "algorithm": req.algorithm,
            "certificate": base64.b64encode(req.certificate).decode(), "batch_id": req.batch_id,
            "created_at": req.created_at.isoformat(), "expires_at": req.expires_at.isoformat()}


@bp.post("/signatures")
@bearer_required
def post_signatures() -> Any:
    items = _json_body().get("signatures")
    if not isinstance(items, list) or not items:
        return _error(400, _("Không có chữ ký nào được gửi lên."))
    results = []
    for item in items:
        parsed = _parse_signature(item)
        if isinstance(parsed, str):
            request_id = item.get("id") if isinstance(item, dict) else None
            results.append({"id": request_id, "accepted": False, "state": "unknown", "error": parsed})
            continue
        results.append(signing_requests.answer(*parsed, actor=g.agent_user).as_dict())
    accepted = sum(1 for r in results if r["accepted"])
    return jsonify({"accepted": accepted, "refused": len(results) - accepted, "results": results})


def _parse_signature(item: Any) -> tuple[int, bytes] | str:
    if not isinstance(item, dict) or not isinstance(item.get("id"), int):
        return _("Thiếu mã yêu cầu ký.")
    try:
        return item["id"], base64.b64decode(str(item.get("signature", "")), validate=True)
    except (binascii.Error, ValueError):
        return _("Chữ ký không đúng định dạng (base64).")


@bp.errorhandler(HTTPException)
def _json_errors(error: HTTPException) -> Any:
    return _error(error.code or 500, error.description or "")


def init_app(app: Flask) -> None:
    """The agent API, and the remote-signing (CSC) job that answers requests the same way."""
    from portal.signing import csc  # noqa: F401  registers the signing.csc_batch job

    # Bearer tokens only, never cookies (see the module docstring): each view is exempted by name, so a
    # view added later without it stays under the CSRF check (and fails closed).
    for view in (sign_in, sign_out, pending, post_signatures):
        csrf.exempt(view)
    app.register_blueprint(bp)
