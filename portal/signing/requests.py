"""The waiting room for signatures whose key is elsewhere: a USB token at the signer's computer, or a
remote signing service (CSC API) that answers after the signer approves on a phone.

The workflow prepares a PDF (pyHanko interrupted signing), stores the prepared state, and creates one
`SigningRequest` per document with the SHA-256 digest of the signed attributes. The signing agent or the
CSC job later posts the raw signature to `answer()`, which checks it against the signer's certificate
before accepting it and then calls the hook the workflow registered for the request's purpose (which
enqueues the job that finishes the PDF: `portal.jobs.enqueue` hands it to the queue after the commit).

One batch (one PIN entry, one phone approval) shares a `batch_id`. Answering twice with the same
signature is a no-op; a wrong signature is refused with a reason and the request stays pending.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from flask_babel import gettext as _
from sqlalchemy.orm import Mapped, mapped_column

from portal import audit
from portal.extensions import UTCDateTime, db, str_enum, utcnow
from portal.signing.engine import ecdsa_der_candidates, first_that_verifies
from tenants.models import Membership, School
from tenants.roles import N_
from tenants.scoping import TenantScoped, all_schools, school_scope


class RequestKind(StrEnum):
    USB = "usb"  # the signing agent with a PKCS#11 token on the signer's computer
    CSC = "csc"  # a remote signing service (Cloud Signature Consortium API)


class RequestState(StrEnum):
    PENDING = "pending"  # waiting for the signer
    ANSWERED = "answered"  # a verified raw signature is stored; the PDF is being finished
    FINISHED = "finished"  # the PDF carries the signature
    FAILED = "failed"  # the device, the service or finishing failed: `error` says why
    REFUSED = "refused"  # the signer refused on the phone
    EXPIRED = "expired"  # nobody answered in time
    CANCELLED = "cancelled"

    @property
    def label(self) -> str:
        from flask_babel import gettext

        return gettext(STATE_LABELS[self])


STATE_LABELS = {
    RequestState.PENDING: N_("Đang chờ ký"),
    RequestState.ANSWERED: N_("Đã nhận chữ ký, đang hoàn tất"),
    RequestState.FINISHED: N_("Đã ký"),
    RequestState.FAILED: N_("Không ký được"),
    RequestState.REFUSED: N_("Bị từ chối"),
    RequestState.EXPIRED: N_("Hết hạn"),
    RequestState.CANCELLED: N_("Đã hủy"),
}
OPEN_STATES = (RequestState.PENDING, RequestState.ANSWERED)

SEAL_STEP = "con_dau"  # signed with the school's seal certificate, not the signer's own
STEP_LABELS = {
    "gvcn": N_("Giáo viên chủ nhiệm"),
    "hieu_truong": N_("Hiệu trưởng"),
    "con_dau": N_("Con dấu số của trường"),
}

# Signature algorithms a request may ask for: what the key does with the SHA-256 digest it is sent.
RSA_PKCS1V15_SHA256 = "rsa_pkcs1v15_sha256"
ECDSA_SHA256 = "ecdsa_sha256"
ALGORITHMS = (RSA_PKCS1V15_SHA256, ECDSA_SHA256)


class SigningRequest(TenantScoped, db.Model):
    """One signature asked of one person for one document, answered from outside the portal."""

    __tablename__ = "signing_requests"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"), index=True)
    kind: Mapped[RequestKind] = mapped_column(str_enum(RequestKind, 8))
    purpose: Mapped[str] = mapped_column(sa.String(64))  # which hook finishes it, e.g. "record_step"
    subject_id: Mapped[int] = mapped_column()  # what it signs, e.g. the record version's id
    step: Mapped[str] = mapped_column(sa.String(32))  # gvcn / hieu_truong / con_dau
    description: Mapped[str] = mapped_column(sa.String(300), default="")  # shown to the signer
    digest: Mapped[str] = mapped_column(sa.String(64))  # hex sha256 of the signed attributes
    algorithm: Mapped[str] = mapped_column(sa.String(32))
    certificate: Mapped[bytes] = mapped_column(sa.LargeBinary)  # DER, the one the attributes name
    prepared_digest: Mapped[str] = mapped_column(sa.String(64))  # storage digest of the prepared state
    state: Mapped[RequestState] = mapped_column(str_enum(RequestState, 16), default=RequestState.PENDING,
                                                index=True)
    raw_signature: Mapped[bytes | None] = mapped_column(sa.LargeBinary)
    error: Mapped[str | None] = mapped_column(sa.Text)
    batch_id: Mapped[str] = mapped_column(sa.String(32), index=True)
    csc_credential_id: Mapped[str | None] = mapped_column(sa.String(200))
    csc_transaction_id: Mapped[str | None] = mapped_column(sa.String(200), index=True)
    created_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (sa.Index("ix_signing_requests_subject", "purpose", "subject_id", "step"),)

    @property
    def step_label(self) -> str:
        from flask_babel import gettext

        return gettext(STEP_LABELS[self.step]) if self.step in STEP_LABELS else self.step

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES

    def __repr__(self) -> str:
        return f"<SigningRequest {self.kind} {self.purpose}:{self.subject_id}/{self.step} {self.state}>"


@dataclass(frozen=True)
class RequestItem:
    """One document of a batch, as the workflow hands it over after `prepare_signature`."""

    subject_id: int
    step: str
    digest: str  # hex sha256 of the signed attributes
    prepared_digest: str  # storage digest of the prepared state
    description: str = ""


@dataclass(frozen=True)
class AnswerResult:
    request_id: int
    accepted: bool
    state: str
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.request_id, "accepted": self.accepted, "state": self.state, "error": self.error}


# --- hooks ---------------------------------------------------------------------------------------------

AnsweredHook = Callable[[SigningRequest], None]
_HOOKS: dict[str, AnsweredHook] = {}


def on_answered(purpose: str) -> Callable[[AnsweredHook], AnsweredHook]:
    """Register the function that finishes a request of this purpose once its signature is accepted.

    It runs inside the transaction that accepts the signature, with the request's school in scope; it
    should only enqueue a job (`portal.jobs.enqueue`), which reaches the queue after the commit.
    """

    def decorator(func: AnsweredHook) -> AnsweredHook:
        _HOOKS[purpose] = func
        return func

    return decorator


def hook_for(purpose: str) -> AnsweredHook | None:
    return _HOOKS.get(purpose)


# --- creating ------------------------------------------------------------------------------------------

def algorithm_for(certificate_der: bytes) -> str:
    """The signature algorithm a request for this certificate's key asks for."""
    key = x509.load_der_x509_certificate(certificate_der).public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return RSA_PKCS1V15_SHA256
    if isinstance(key, ec.EllipticCurvePublicKey):
        return ECDSA_SHA256
    raise ValueError(f"unsupported key type {type(key).__name__}")


def create_requests(school_id: int, *, signer_id: int, kind: RequestKind | str, purpose: str,
                    items: Sequence[RequestItem], certificate_der: bytes, actor: Any,
                    lifetime: timedelta = timedelta(days=7)) -> list[SigningRequest]:
    """Open one request per item as one batch (one PIN entry / one phone approval) in the transaction.

    A document that already has an open (pending or answered) request for the same step keeps it (no
    second request), so a batch that is started twice asks once; to change the signer, the key or the
    prepared PDF, `cancel` the pending one first.
    """
    kind = RequestKind(kind)
    algorithm = algorithm_for(certificate_der)
    batch_id = uuid.uuid4().hex
    now = utcnow()
    created = []
    with school_scope(school_id):
        for item in items:
            existing = _open_request(purpose, item.subject_id, item.step)
            if existing is not None:
                created.append(existing)
                continue
            _check_digest(item.digest)
            request = SigningRequest(school_id=school_id, user_id=signer_id, kind=kind, purpose=purpose,
                                     subject_id=item.subject_id, step=item.step, description=item.description[:300],
                                     digest=item.digest.lower(), algorithm=algorithm, certificate=certificate_der,
                                     prepared_digest=item.prepared_digest, batch_id=batch_id,
                                     created_by_id=getattr(actor, "id", None), created_at=now,
                                     expires_at=now + lifetime)
            db.session.add(request)
            created.append(request)
        db.session.flush()
        new = [r for r in created if r.batch_id == batch_id]
        if new:
            audit.record("signing.requests_created", actor=actor, school_id=school_id, object_type="SigningRequest",
                         object_id=batch_id, summary=f"{len(new)} × {purpose}/{new[0].step} ({kind.value})",
                         changes={"batch_id": batch_id, "signer_id": signer_id, "kind": kind.value,
                                  "ids": [r.id for r in new]})
    return created


def _open_request(purpose: str, subject_id: int, step: str) -> SigningRequest | None:
    return db.session.scalar(sa.select(SigningRequest).where(
        SigningRequest.purpose == purpose, SigningRequest.subject_id == subject_id, SigningRequest.step == step,
        SigningRequest.state.in_(OPEN_STATES)))


def _check_digest(digest: str) -> None:
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest.lower()):
        raise ValueError("a request's digest is the hex SHA-256 of the signed attributes")


# --- reading -------------------------------------------------------------------------------------------

def pending_for(user: Any, kind: RequestKind | str | None = None) -> list[SigningRequest]:
    """The user's (a User or its id) requests waiting for a signature, in every school where the user is an
    active member; `kind` narrows them to the USB or the CSC ones."""
    user_id = user if isinstance(user, int) else user.id
    now = utcnow()
    kinds = [RequestKind(kind)] if kind is not None else list(RequestKind)
    with all_schools():
        schools = sa.select(Membership.school_id).where(Membership.user_id == user_id,
                                                        Membership.active.is_(True))
        return list(db.session.scalars(
            sa.select(SigningRequest)
            .join(School, School.id == SigningRequest.school_id)
            .where(SigningRequest.user_id == user_id, SigningRequest.state == RequestState.PENDING,
                   SigningRequest.kind.in_(kinds),
                   SigningRequest.expires_at > now, SigningRequest.school_id.in_(schools),
                   School.active.is_(True))
            .order_by(SigningRequest.school_id, SigningRequest.batch_id, SigningRequest.id)))


def batch(batch_id: str) -> list[SigningRequest]:
    """Every request of one batch (any school: batch ids are unique), oldest first."""
    with all_schools():
        return list(db.session.scalars(sa.select(SigningRequest).where(SigningRequest.batch_id == batch_id)
                                       .order_by(SigningRequest.id)))


def get_request(request_id: int) -> SigningRequest | None:
    with all_schools():
        return db.session.get(SigningRequest, request_id)


# --- answering -----------------------------------------------------------------------------------------

def der_signature(certificate_der: bytes, algorithm: str, digest_hex: str, signature: bytes) -> bytes | None:
    """`signature` as CMS wants it (ECDSA DER-encoded: it may come as r || s, from PKCS#11 CKM_ECDSA and some
    services) when it is the certificate key's signature of the (already hashed) digest, else None."""
    key = x509.load_der_x509_certificate(certificate_der).public_key()
    digest = bytes.fromhex(digest_hex)
    if algorithm == RSA_PKCS1V15_SHA256 and isinstance(key, rsa.RSAPublicKey):
        candidates = [(signature, (padding.PKCS1v15(), Prehashed(hashes.SHA256())))]
    elif algorithm == ECDSA_SHA256 and isinstance(key, ec.EllipticCurvePublicKey):
        ecdsa = (ec.ECDSA(Prehashed(hashes.SHA256())),)
        candidates = [(value, ecdsa) for value in ecdsa_der_candidates(key, signature)]
    else:
        return None
    return first_that_verifies(key, digest, candidates)


def is_registered(request: SigningRequest) -> bool:
    """The request's certificate is still the signer's (or, for the seal, the school's) active registration."""
    from tenants.certificates import PersonCertificate, SealCertificate

    fingerprint = hashlib.sha256(request.certificate).hexdigest()
    if request.step == SEAL_STEP:
        query = sa.select(SealCertificate.id).where(SealCertificate.school_id == request.school_id,
                                                    SealCertificate.fingerprint == fingerprint,
                                                    SealCertificate.active.is_(True))
    else:
        query = sa.select(PersonCertificate.id).where(PersonCertificate.user_id == request.user_id,
                                                      PersonCertificate.fingerprint == fingerprint,
                                                      PersonCertificate.active.is_(True))
    return db.session.scalar(query.limit(1)) is not None


def answer(request_id: int, raw_signature: bytes, *, actor: Any, commit: bool = True) -> AnswerResult:
    """Accept the raw signature of a pending request after checking it against the signer's certificate.

    `actor` must be the signer (the agent's user) or None for a system job acting for the signer
    (the CSC poller). A wrong signature is refused with a reason and the request stays pending; the
    same signature sent again is a no-op.
    """
    request = get_request(request_id)
    if request is None or (actor is not None and request.user_id != getattr(actor, "id", None)):
        return AnswerResult(request_id, False, "unknown", _("Không tìm thấy yêu cầu ký này."))
    with school_scope(request.school_id):
        result = _answer(request, raw_signature, actor=actor)
        if commit:
            db.session.commit()
    return result


def answer_many(answers: Iterable[tuple[int, bytes]], *, actor: Any) -> list[AnswerResult]:
    """`answer` for each (request id, raw signature), one transaction per request: one bad one stops none."""
    return [answer(request_id, signature, actor=actor) for request_id, signature in answers]


def _answer(request: SigningRequest, raw_signature: bytes, *, actor: Any) -> AnswerResult:
    der = der_signature(request.certificate, request.algorithm, request.digest, raw_signature)
    if request.raw_signature is not None and request.raw_signature == der:
        return AnswerResult(request.id, True, request.state.value)  # the same answer twice: nothing to do
    if request.state != RequestState.PENDING:
        return AnswerResult(request.id, False, request.state.value,
                            _("Yêu cầu ký này không còn chờ ký (%(state)s).", state=request.state.label))
    if request.expires_at <= utcnow():
        _close(request, RequestState.EXPIRED, _("Yêu cầu ký đã quá hạn."), actor=actor)
        return AnswerResult(request.id, False, request.state.value, request.error)
    if not is_registered(request):
        audit.record("signing.signature_refused", actor=actor, school_id=request.school_id, obj=request,
                     summary=f"{request.purpose}:{request.subject_id}/{request.step}: certificate not registered")
        return AnswerResult(request.id, False, request.state.value, _(
            "Chứng thư số dùng cho yêu cầu này không còn được đăng kí trên cổng (đã thay hoặc thu hồi). "
            "Yêu cầu vẫn đang chờ ký; nhà trường cần tạo lại yêu cầu với chứng thư số mới."))
    if der is None:
        audit.record("signing.signature_refused", actor=actor, school_id=request.school_id, obj=request,
                     summary=f"{request.purpose}:{request.subject_id}/{request.step}")
        return AnswerResult(request.id, False, request.state.value, _(
            "Chữ ký không khớp với chứng thư số đã đăng kí của người ký: có thể thiết bị ký (USB token) "
            "chứa khóa khác. Yêu cầu vẫn đang chờ ký."))
    request.raw_signature = der
    request.state, request.answered_at, request.error = RequestState.ANSWERED, utcnow(), None
    audit.record("signing.signature_received", actor=actor, school_id=request.school_id, obj=request,
                 summary=f"{request.purpose}:{request.subject_id}/{request.step}",
                 changes={"kind": request.kind.value, "batch_id": request.batch_id,
                          "signature_sha256": hashlib.sha256(raw_signature).hexdigest()})
    hook = hook_for(request.purpose)
    if hook is not None:
        hook(request)
    return AnswerResult(request.id, True, request.state.value)


# --- closing -------------------------------------------------------------------------------------------

def mark_finished(request_id: int, *, actor: Any = None) -> None:
    """The finishing job put the signature into the PDF (call inside its transaction)."""
    request = get_request(request_id)
    if request is None or request.state == RequestState.FINISHED:
        return
    with school_scope(request.school_id):
        request.state, request.finished_at = RequestState.FINISHED, utcnow()
        audit.record("signing.request_finished", actor=actor, school_id=request.school_id, obj=request,
                     summary=f"{request.purpose}:{request.subject_id}/{request.step}")
        db.session.flush()


def mark_failed(request_ids: Iterable[int], error: str, *, actor: Any = None) -> None:
    """Close open requests with the reason (refused, timed out, finishing failed)."""
    for request_id in request_ids:
        request = get_request(request_id)
        if request is not None and request.is_open:
            _close(request, RequestState.FAILED, error, actor=actor)


def close_open(request_ids: Iterable[int], state: RequestState, error: str, *, actor: Any = None) -> None:
    """Close the requests still open in the given final state (refused, expired, failed), with the reason."""
    for request_id in request_ids:
        request = get_request(request_id)
        if request is not None and request.is_open:
            _close(request, state, error, actor=actor)


def cancel(request_ids: Iterable[int], reason: str, *, actor: Any) -> None:
    """Withdraw pending requests (the record was sent back, cancelled, or the batch restarted)."""
    for request_id in request_ids:
        request = get_request(request_id)
        if request is not None and request.state == RequestState.PENDING:
            _close(request, RequestState.CANCELLED, reason, actor=actor)


def expire_overdue(*, now: datetime | None = None) -> int:
    """Close every pending request past its expiry; returns how many."""
    now = now or utcnow()
    with all_schools():
        overdue = list(db.session.scalars(sa.select(SigningRequest).where(
            SigningRequest.state == RequestState.PENDING, SigningRequest.expires_at <= now)))
    for request in overdue:
        _close(request, RequestState.EXPIRED, _("Yêu cầu ký đã quá hạn."), actor=None)
    return len(overdue)


def _close(request: SigningRequest, state: RequestState, error: str, *, actor: Any) -> None:
    # Flushed in the request's own school: callers (jobs, the agent API) may run in another scope.
    with school_scope(request.school_id):
        request.state, request.error, request.finished_at = state, error, utcnow()
        audit.record(f"signing.request_{state.value}", actor=actor, school_id=request.school_id, obj=request,
                     summary=f"{request.purpose}:{request.subject_id}/{request.step}: {error}"[:300])
        db.session.flush()
