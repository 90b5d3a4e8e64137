"""Uploads to the city: which record versions go up, sending one with retries and backoff, and the summary.

The commit points make every step safe to repeat. A row is claimed (state `sent`, a lease, one more
attempt) in its own transaction before its request goes out; the answer is written in the next one. A
worker that dies in between leaves a `sent` row whose lease runs out; whoever picks it up next first asks
the city for the version's status and only sends it again if the city never got it. The city also
de-duplicates by the idempotency key (the version's code), so even two workers racing cannot make it
store a version twice.
"""

from __future__ import annotations

import random
import time
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
from portal.interop.city_client import CityClient, CityError, Receipt
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


def _scope_filter(query: sa.Select[Any], school_id: int, grade: int | None, school_year_id: int | None
                  ) -> sa.Select[Any]:
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


def open_uploads(school_id: int, policy: RetryPolicy, *, grade: int | None = None,
                 school_year_id: int | None = None) -> tuple[int, datetime | None]:
    """How many rows still have attempts left, and when the earliest of them is due."""
    query = _scope_filter(sa.select(sa.func.count(), sa.func.min(CityUpload.next_attempt_at)), school_id, grade,
                          school_year_id).where(CityUpload.state.in_([UploadState.WAITING, UploadState.SENT]),
                                                CityUpload.attempts < policy.max_attempts)
    count, earliest = db.session.execute(query).one()
    if earliest is not None and earliest.tzinfo is None:  # an aggregate skips the column type on SQLite
        from datetime import UTC

        earliest = earliest.replace(tzinfo=UTC)
    return int(count or 0), earliest


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
    if upload.attempts > 1:
        # An earlier attempt may have reached the city with its answer lost: ask before sending again.
        held = client.status(upload.record_code)
        if held is not None and held.sha256 == upload.pdf_digest:
            return held
    return client.upload(storage().read(upload.pdf_digest or ""), upload.payload)


def _unique_receipt(upload: CityUpload, receipt: Receipt, client: CityClient) -> Receipt:
    """A receipt number the city already gave for another version is a fault of the city: ask again."""
    if not _receipt_taken(upload, receipt.receipt_number):
        return receipt
    held = client.status(upload.record_code)
    if held is not None and not _receipt_taken(upload, held.receipt_number):
        return held
    raise _duplicate_receipt(receipt.receipt_number)


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
    if exc.retryable:
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
    open: int = 0
    states: dict[str, int] = field(default_factory=dict)


def send_pending(school_id: int, client: CityClient, policy: RetryPolicy, *, grade: int | None = None,
                 school_year_id: int | None = None, max_wait: float = 0,
                 progress: Callable[[SendOutcome], None] | None = None) -> SendOutcome:
    """Try every due row; keep retrying for up to `max_wait` seconds while some are not final yet."""
    deadline = time.monotonic() + max_wait
    outcome = SendOutcome()
    while True:
        for upload_id in due_uploads(school_id, policy, grade=grade, school_year_id=school_year_id):
            if attempt(upload_id, client, policy) is not None:
                outcome.attempts += 1
                if progress and outcome.attempts % 20 == 0:
                    progress(outcome)
        outcome.open, earliest = open_uploads(school_id, policy, grade=grade, school_year_id=school_year_id)
        if progress:
            progress(outcome)
        if outcome.open == 0 or earliest is None:
            break
        wait = max((earliest - utcnow()).total_seconds(), 0.05)
        if time.monotonic() + wait > deadline:
            break
        time.sleep(min(wait, 5.0))
    outcome.states = counts(school_id, grade=grade, school_year_id=school_year_id)
    return outcome


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
