"""Uploads to the city: which record versions go up, sending one with retries and backoff, and the summary.

Each row is a small state machine: waiting -> sent (claimed, a request under way) -> acknowledged (the
receipt the city holds for that code) or rejected (the city refused the content: final, with the city's
reason and action), and back to waiting after a transport failure (retried with backoff) or a
configuration failure (a wrong key, TLS: it waits, without using up its attempts, until the setting is
fixed). Nothing here sleeps: a pass sends what is due and ends; the retries are run by the scheduled
reconciler (`flask jobs reconcile`, every worker) and `flask interop upload`.

A receipt is taken only from what the city says it stored for the record's code (the status query,
§5 of the contract): an upload's own answer may carry another record's receipt number.

The commit points make every step safe to repeat. A row is claimed (state `sent`, a lease, one more
attempt) in its own transaction before its request goes out; the answer is written in the next one. A
worker that dies in between leaves a `sent` row whose lease runs out; whoever picks it up next first asks
the city for the version's status and only sends it again if the city never got it. The city also
de-duplicates by the idempotency key (the version's code), so even two workers racing cannot make it
store a version twice.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from flask import current_app
from flask_babel import gettext as _

from portal import audit
from portal.assessment.models import SchoolYear
from portal.extensions import db, utcnow
from portal.interop.city_client import CityClient, CityError, Receipt, _transport
from portal.interop.models import CityUpload, UploadKind, UploadState
from portal.records.models import RecordStatus, RecordVersion
from portal.storage import storage
from tenants.models import School
from tenants.scoping import all_schools

ANNOUNCED = {RecordStatus.CANCELLED: UploadKind.CANCELLED, RecordStatus.SUPERSEDED: UploadKind.SUPERSEDED}


def client_from_config(config: dict[str, Any] | None = None) -> CityClient:
    config = config or current_app.config
    return CityClient(config["CITY_URL"], config["CITY_API_KEY"], timeout=float(config["CITY_TIMEOUT_SECONDS"]))


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    first_wait: float  # seconds before the 2nd attempt; doubled for each later one
    longest_wait: float
    lease: float  # how long a claimed row is left alone by other workers

    @classmethod
    def from_config(cls, config: dict[str, Any] | None = None) -> RetryPolicy:
        config = config or current_app.config
        return cls(int(config["CITY_MAX_ATTEMPTS"]), float(config["CITY_RETRY_SECONDS"]),
                   float(config["CITY_RETRY_MAX_SECONDS"]), float(config["CITY_TIMEOUT_SECONDS"]) + 5)

    def wait_after(self, attempts: int) -> float:
        """Exponential backoff with jitter, so that many schools do not retry in step."""
        wait = min(self.longest_wait, self.first_wait * 2 ** max(attempts - 1, 0))
        return wait * random.uniform(0.8, 1.2)


# --- which versions go up ---------------------------------------------------------------------------


def upload_metadata(version: RecordVersion, school: School, year_name: str) -> dict[str, Any]:
    """The contract's metadata of one issued version (docs/city-contract.md §3)."""
    content = version.content or {}
    record = content.get("record", {})
    return {
        "record_code": version.code,
        "version_number": version.number,
        "replaces": record.get("replaces"),
        "school_moet_code": (content.get("school") or {}).get("moet_code") or school.moet_code or school.code,
        "issuing_school_name": (content.get("school") or {}).get("name") or school.name,
        "pupil_code": (content.get("pupil") or {}).get("pupil_code") or "",
        "school_year": year_name,
        "grade": version.grade,
        "sha256": version.signed_digest,
        "issued_at": version.issued_at.isoformat() if version.issued_at else None,
    }


def queue_uploads(school: School, *, grade: int | None = None, school_year_id: int | None = None) -> dict[str, int]:
    """Add a waiting row for every issued version not yet queued, and an announcement for every queued
    version since cancelled or superseded. Safe to run twice: a version is queued once per kind."""
    years = dict(db.session.execute(sa.select(SchoolYear.id, SchoolYear.name)).all())
    query = sa.select(RecordVersion).where(RecordVersion.school_id == school.id)
    if grade is not None:
        query = query.where(RecordVersion.grade == grade)
    if school_year_id is not None:
        query = query.where(RecordVersion.school_year_id == school_year_id)
    versions = list(db.session.scalars(query.where(RecordVersion.status.in_(
        [RecordStatus.ISSUED, *ANNOUNCED]))))
    existing = {(u.record_version_id, u.kind): u for u in db.session.scalars(
        sa.select(CityUpload).where(CityUpload.record_version_id.in_([v.id for v in versions])))}
    codes = dict(db.session.execute(sa.select(RecordVersion.id, RecordVersion.code)
                                    .where(RecordVersion.school_id == school.id)).all())
    counts = {"uploads": 0, "announcements": 0}
    for version in versions:
        upload = existing.get((version.id, UploadKind.UPLOAD))
        if version.status == RecordStatus.ISSUED and upload is None and version.signed_digest:
            db.session.add(CityUpload(school_id=school.id, record_version_id=version.id, kind=UploadKind.UPLOAD,
                                      record_code=version.code, school_year_id=version.school_year_id,
                                      grade=version.grade, pdf_digest=version.signed_digest,
                                      payload=upload_metadata(version, school, years.get(version.school_year_id, ""))))
            counts["uploads"] += 1
        kind = ANNOUNCED.get(version.status)
        # Only what the city has (or may have) got needs an announcement: never a refused upload.
        if kind and upload is not None and upload.state != UploadState.REJECTED and (version.id, kind) not in existing:
            replaced_by = _replacement_code(version, codes)
            db.session.add(CityUpload(school_id=school.id, record_version_id=version.id, kind=kind,
                                      record_code=version.code, school_year_id=version.school_year_id,
                                      grade=version.grade, payload={"reason": version.status_reason or kind.value,
                                                                    "replaced_by": replaced_by}))
            counts["announcements"] += 1
    if any(counts.values()):
        audit.record("exchange.queued", actor=None, school_id=school.id, object_type="CityUpload",
                     summary=_("Xếp hàng gửi lên Thành phố: %(u)d học bạ, %(a)d thông báo",
                               u=counts["uploads"], a=counts["announcements"]),
                     changes={**counts, "grade": grade, "school_year_id": school_year_id})
    db.session.flush()
    return counts


def _replacement_code(version: RecordVersion, codes: dict[int, str]) -> str | None:
    newer = db.session.scalar(sa.select(RecordVersion.id).where(RecordVersion.replaces_id == version.id))
    return codes.get(newer) if newer else None


# --- sending ---------------------------------------------------------------------------------------


def _scope_filter(query: Any, school_id: int, grade: int | None, school_year_id: int | None) -> Any:
    query = query.where(CityUpload.school_id == school_id)
    if grade is not None:
        query = query.where(CityUpload.grade == grade)
    if school_year_id is not None:
        query = query.where(CityUpload.school_year_id == school_year_id)
    return query


def due_uploads(school_id: int, policy: RetryPolicy, *, grade: int | None = None,
                school_year_id: int | None = None, now: datetime | None = None) -> list[int]:
    """Ids of the rows to try now: not final, attempts left, due, and held by no live worker;
    announcements only once their version's upload was acknowledged."""
    now = now or utcnow()
    acknowledged = sa.select(CityUpload.record_version_id).where(
        CityUpload.kind == UploadKind.UPLOAD, CityUpload.state == UploadState.ACKNOWLEDGED)
    query = _scope_filter(sa.select(CityUpload.id), school_id, grade, school_year_id).where(
        CityUpload.state.in_([UploadState.WAITING, UploadState.SENT]),
        CityUpload.attempts < policy.max_attempts,
        CityUpload.next_attempt_at <= now,
        sa.or_(CityUpload.lease_until.is_(None), CityUpload.lease_until < now),
        sa.or_(CityUpload.kind == UploadKind.UPLOAD, CityUpload.record_version_id.in_(acknowledged)),
    ).order_by(CityUpload.kind != UploadKind.UPLOAD, CityUpload.id)
    return list(db.session.scalars(query))


def _claim(upload_id: int, policy: RetryPolicy, now: datetime) -> bool:
    """Take the row for one attempt, in a transaction of its own: whoever commits first sends it."""
    result = db.session.execute(
        sa.update(CityUpload).where(
            CityUpload.id == upload_id,
            CityUpload.state.in_([UploadState.WAITING, UploadState.SENT]),
            sa.or_(CityUpload.lease_until.is_(None), CityUpload.lease_until < now),
        ).values(state=UploadState.SENT, attempts=CityUpload.attempts + 1, last_attempt_at=now,
                 lease_until=now + timedelta(seconds=policy.lease), updated_at=now)
        .execution_options(synchronize_session=False))
    db.session.commit()
    return result.rowcount == 1


def attempt(upload_id: int, client: CityClient, policy: RetryPolicy) -> UploadState | None:
    """One attempt at one row; None when another worker holds it or it is already final."""
    if not _claim(upload_id, policy, utcnow()):
        return None
    upload = db.session.get(CityUpload, upload_id)
    assert upload is not None
    db.session.refresh(upload)
    try:
        receipt = _exchange(upload, client)
        receipt = _unique_receipt(upload, receipt, client)
    except CityError as exc:
        _failed(upload, exc, policy)
    else:
        _acknowledged(upload, receipt)
    upload.lease_until = None
    try:
        db.session.commit()
    except sa.exc.IntegrityError:  # another worker stored the same receipt number meanwhile
        db.session.rollback()
        upload = db.session.get(CityUpload, upload_id)
        assert upload is not None
        _failed(upload, _duplicate_receipt(receipt.receipt_number), policy)
        upload.lease_until = None
        db.session.commit()
    return upload.state


def _exchange(upload: CityUpload, client: CityClient) -> Receipt:
    if upload.kind != UploadKind.UPLOAD:
        return client.announce(upload.record_code, upload.kind.value, upload.payload.get("reason") or "",
                               upload.payload.get("replaced_by"))
    if upload.attempts > 1 or upload.error_code is not None:
        # An earlier attempt may have reached the city with its answer lost: ask before sending again.
        held = client.status(upload.record_code)
        if held is not None:
            return _held_for(upload, held)
    answer = client.upload(storage().read(upload.pdf_digest or ""), upload.payload)
    # The answer's receipt number is taken only if the city says it holds it for this code.
    held = client.status(upload.record_code)
    if held is None:
        raise _transport("RECEIPT_UNCONFIRMED", f"answer named {answer.receipt_number}")
    return _held_for(upload, held, duplicate=answer.duplicate)


def _held_for(upload: CityUpload, held: Receipt, *, duplicate: bool = False) -> Receipt:
    if held.sha256 != upload.pdf_digest:
        raise CityError("IDEMPOTENCY_CONFLICT", _("Hệ thống Thành phố đang giữ một tệp khác cho mã học bạ này."),
                        _("Không gửi lại bằng cùng mã: tạo bản điều chỉnh (phiên bản mới) rồi gửi bản đó."),
                        retryable=False, detail=held.sha256 or "")
    return Receipt(held.record_code, held.receipt_number, held.status, duplicate, held.sha256, held.received_at)


def _unique_receipt(upload: CityUpload, receipt: Receipt, client: CityClient) -> Receipt:
    """The receipt is the city's own for this code; a row of ours holding the same number took a wrong one
    earlier (an answer that carried another record's number): set that row right from the city."""
    if upload.kind != UploadKind.UPLOAD or not _receipt_taken(upload, receipt.receipt_number):
        return receipt
    with all_schools():
        others = list(db.session.scalars(sa.select(CityUpload).where(
            CityUpload.receipt_number == receipt.receipt_number, CityUpload.id != upload.id)))
        for other in others:
            held = client.status(other.record_code) if other.kind == UploadKind.UPLOAD else None
            if held is None or held.receipt_number == receipt.receipt_number:
                raise _duplicate_receipt(receipt.receipt_number)
            wrong, other.receipt_number = other.receipt_number, held.receipt_number
            audit.record("exchange.receipt_corrected", actor=None, school_id=other.school_id, obj=other,
                         summary=_("Sửa số biên nhận của %(code)s theo hệ thống Thành phố: %(n)s",
                                   code=other.record_code, n=held.receipt_number),
                         changes={"receipt_number": [wrong, held.receipt_number]})
        db.session.flush()
    return receipt


def _duplicate_receipt(number: str) -> CityError:
    return CityError("DUPLICATE_RECEIPT", _("Hệ thống Thành phố trả về số biên nhận đã cấp cho một học bạ khác."),
                     _("Không cần làm gì: hệ thống sẽ hỏi lại sau; nếu kéo dài, báo cho Sở GD&ĐT."),
                     retryable=True, detail=number)


def _receipt_taken(upload: CityUpload, number: str) -> bool:
    with all_schools():  # receipt numbers are unique across the district's schools
        return db.session.scalar(sa.select(CityUpload.id).where(CityUpload.receipt_number == number,
                                                                CityUpload.id != upload.id)) is not None


def _acknowledged(upload: CityUpload, receipt: Receipt) -> None:
    upload.state, upload.receipt_number = UploadState.ACKNOWLEDGED, receipt.receipt_number
    upload.acknowledged_at = utcnow()
    upload.error_code, upload.reason, upload.action, upload.last_error = None, "", "", ""
    audit.record("exchange.acknowledged", actor=None, school_id=upload.school_id, obj=upload,
                 summary=_("Thành phố đã tiếp nhận %(code)s (%(kind)s), số biên nhận %(n)s",
                           code=upload.record_code, kind=upload.kind.value, n=receipt.receipt_number),
                 changes={"state": UploadState.ACKNOWLEDGED.value, "receipt_number": receipt.receipt_number,
                          "attempts": upload.attempts, "duplicate": receipt.duplicate})


def _failed(upload: CityUpload, exc: CityError, policy: RetryPolicy) -> None:
    upload.error_code, upload.last_error = exc.code, str(exc)[:2000]
    if exc.kind == "configuration":
        # Not the record's fault: wait for the fix without using up attempts, then go as it is.
        upload.state, upload.attempts = UploadState.WAITING, max(upload.attempts - 1, 0)
        upload.next_attempt_at = utcnow() + timedelta(seconds=policy.longest_wait)
        upload.reason, upload.action = exc.message, exc.action
        return
    if not exc.final:
        upload.state = UploadState.WAITING
        upload.next_attempt_at = utcnow() + timedelta(seconds=policy.wait_after(upload.attempts))
        upload.reason, upload.action = exc.message, exc.action
        if upload.attempts >= policy.max_attempts:
            audit.record("exchange.stuck", actor=None, school_id=upload.school_id, obj=upload,
                         summary=_("Gửi %(code)s không thành sau %(n)d lần thử", code=upload.record_code,
                                   n=upload.attempts), changes={"error": exc.code})
        return
    upload.state, upload.reason, upload.action = UploadState.REJECTED, exc.message, exc.action
    audit.record("exchange.rejected", actor=None, school_id=upload.school_id, obj=upload,
                 summary=_("Thành phố từ chối %(code)s: %(reason)s", code=upload.record_code, reason=exc.message),
                 changes={"state": UploadState.REJECTED.value, "error": exc.code, "reason": exc.message})


@dataclass
class SendOutcome:
    attempts: int = 0
    open: int = 0  # not final: waiting or sent, attempts left or not
    states: dict[str, int] = field(default_factory=dict)
    next_attempt_at: datetime | None = None


def send_pending(school_id: int, client: CityClient, policy: RetryPolicy, *, grade: int | None = None,
                 school_year_id: int | None = None,
                 progress: Callable[[SendOutcome], None] | None = None) -> SendOutcome:
    """One pass: try every row due now, once. What fails waits for its next attempt time, when the scheduled
    retry picks it up; nothing here waits for it."""
    outcome = SendOutcome()
    for upload_id in due_uploads(school_id, policy, grade=grade, school_year_id=school_year_id):
        if attempt(upload_id, client, policy) is not None:
            outcome.attempts += 1
            if progress and outcome.attempts % 20 == 0:
                progress(outcome)
    outcome.open, outcome.next_attempt_at = waiting_uploads(school_id, grade=grade, school_year_id=school_year_id)
    outcome.states = counts(school_id, grade=grade, school_year_id=school_year_id)
    if progress:
        progress(outcome)
    return outcome


def waiting_uploads(school_id: int, *, grade: int | None = None, school_year_id: int | None = None
                    ) -> tuple[int, datetime | None]:
    """Every row not final yet (attempts left or not: what really waits), and when the next one is due."""
    query = _scope_filter(sa.select(sa.func.count(), sa.func.min(CityUpload.next_attempt_at)), school_id, grade,
                          school_year_id).where(CityUpload.state.in_([UploadState.WAITING, UploadState.SENT]))
    count, earliest = db.session.execute(query).one()
    if earliest is not None and earliest.tzinfo is None:  # an aggregate skips the column type on SQLite
        from datetime import UTC

        earliest = earliest.replace(tzinfo=UTC)
    return int(count or 0), earliest


def make_due(school_id: int, *, grade: int | None = None, school_year_id: int | None = None) -> int:
    """Someone pressed send: every waiting row of the scope is due now with a fresh set of attempts."""
    rows = db.session.execute(_scope_filter(
        sa.update(CityUpload), school_id, grade, school_year_id).where(
        CityUpload.state.in_([UploadState.WAITING, UploadState.SENT]),
        sa.or_(CityUpload.lease_until.is_(None), CityUpload.lease_until < utcnow()))
        .values(attempts=0, next_attempt_at=utcnow()).execution_options(synchronize_session=False)).rowcount
    return int(rows or 0)


def schools_due(policy: RetryPolicy, now: datetime | None = None) -> list[int]:
    """Schools with a row whose next attempt is due (for the scheduled retry)."""
    now = now or utcnow()
    with all_schools():
        return list(db.session.scalars(sa.select(CityUpload.school_id).where(
            CityUpload.state.in_([UploadState.WAITING, UploadState.SENT]),
            CityUpload.attempts < policy.max_attempts, CityUpload.next_attempt_at <= now,
            sa.or_(CityUpload.lease_until.is_(None), CityUpload.lease_until < now)).distinct()))


# --- reading ---------------------------------------------------------------------------------------


def counts(school_id: int | None, *, grade: int | None = None, school_year_id: int | None = None) -> dict[str, int]:
    """{state: how many} of the uploads (not the announcements) of a school, or of all with None."""
    query = sa.select(CityUpload.state, sa.func.count()).where(CityUpload.kind == UploadKind.UPLOAD)
    if school_id is not None:
        query = _scope_filter(query, school_id, grade, school_year_id)
    rows = db.session.execute(query.group_by(CityUpload.state)).all()
    return {state.value: 0 for state in UploadState} | {state.value: n for state, n in rows}


def stuck_uploads(school_id: int | None, config: dict[str, Any] | None = None) -> list[CityUpload]:
    """Rows that need a person: out of attempts, or with nothing happening for too long."""
    config = config or current_app.config
    limit = utcnow() - timedelta(minutes=int(config["CITY_STUCK_MINUTES"]))
    query = sa.select(CityUpload).where(
        CityUpload.state.in_([UploadState.WAITING, UploadState.SENT]),
        sa.or_(CityUpload.attempts >= int(config["CITY_MAX_ATTEMPTS"]),
               sa.func.coalesce(CityUpload.last_attempt_at, CityUpload.created_at) < limit))
    if school_id is not None:
        query = query.where(CityUpload.school_id == school_id)
    return list(db.session.scalars(query.order_by(CityUpload.id)))


def list_uploads(school_id: int, *, state: str | None = None, grade: int | None = None,
                 limit: int = 500) -> list[CityUpload]:
    query = sa.select(CityUpload).where(CityUpload.school_id == school_id)
    if state:
        query = query.where(CityUpload.state == state)
    if grade:
        query = query.where(CityUpload.grade == grade)
    return list(db.session.scalars(query.order_by(CityUpload.updated_at.desc(), CityUpload.id.desc()).limit(limit)))


@dataclass(frozen=True)
class UploadRow:
    upload: CityUpload
    pupil_name: str
    class_name: str


def upload_page(school_id: int, *, state: str | None = None, grade: int | None = None, text: str = "",
                page: int = 1, per_page: int = 50) -> tuple[list[UploadRow], int]:
    """One page of the school's uploads, newest first, each with its pupil and class; and how many match.

    `text` matches the record code or the pupil's name, with or without diacritics."""
    from portal.assessment.models import Pupil, SchoolClass

    query = (sa.select(CityUpload, Pupil.full_name, SchoolClass.name)
             .join(RecordVersion, RecordVersion.id == CityUpload.record_version_id)
             .join(Pupil, Pupil.id == RecordVersion.pupil_id)
             .join(SchoolClass, SchoolClass.id == RecordVersion.class_id)
             .where(CityUpload.school_id == school_id))
    if state:
        query = query.where(CityUpload.state == state)
    if grade:
        query = query.where(CityUpload.grade == grade)
    rows = [UploadRow(u, name, class_name) for u, name, class_name in db.session.execute(
        query.order_by(CityUpload.updated_at.desc(), CityUpload.id.desc()))]
    if text:
        from portal.pupils.search import folded

        wanted = folded(text)
        rows = [r for r in rows if wanted in folded(r.pupil_name) or wanted in r.upload.record_code.lower()]
    start = (max(page, 1) - 1) * per_page
    return rows[start:start + per_page], len(rows)


def get_upload(school: School, upload_id: int) -> CityUpload | None:
    return db.session.scalar(sa.select(CityUpload).where(CityUpload.id == upload_id,
                                                         CityUpload.school_id == school.id))


def retry_upload(upload: CityUpload, *, actor: Any) -> bool:
    """Give a stuck row a fresh set of attempts, due now; a final row is left as it is."""
    if upload.final:
        return False
    before = upload.attempts
    upload.attempts, upload.next_attempt_at, upload.lease_until = 0, utcnow(), None
    audit.record("exchange.retry", actor=actor, school_id=upload.school_id, obj=upload,
                 summary=_("Thử gửi lại %(code)s", code=upload.record_code), changes={"attempts": [before, 0]})
    return True
