"""Keeping issued records provable: renewing their archive (document) timestamps, PAdES B-LTA.

An issued record ends with a document timestamp over the whole file. Its proof lasts as long as the
timestamp authority's certificate and the digest algorithm are trusted; before either goes, a fresh
document timestamp is added over the file with the validation data of the previous one (certificates,
OCSP/CRL), extending the chain of proofs. The scheduled command `flask records renew-timestamps` does it
for the records whose last timestamp's certificate expires within `TIMESTAMP_RENEWAL_MARGIN_DAYS`, or
whose digest algorithm is in `TIMESTAMP_RETIRED_DIGESTS`, at most `TIMESTAMP_RENEWAL_BATCH` per run.

What selects a record is kept on its row (`archive_expires_at`, `archive_digest_algorithm`), written when
the record is issued and at every renewal, so a run reads only the files it renews. A renewal is one
transaction per record (new file stored by content, the row, an `ArchiveRenewal`, an audit entry): a run
that stops half-way is simply run again, and a run right after a complete one renews nothing.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from flask import current_app
from flask_babel import gettext as _

from portal import audit, signing
from portal.extensions import db, utcnow
from portal.records.models import ArchiveRenewal, RecordStatus, RecordVersion
from portal.signing import engine
from portal.signing.validate import ValidationReport
from portal.storage import storage
from tenants.scoping import all_schools, school_scope

log = logging.getLogger(__name__)
# Issued records, and those a correction superseded: both stay genuine documents of their time.
KEPT = (RecordStatus.ISSUED, RecordStatus.SUPERSEDED)
RUN_ACTION = "records.archive_renewal_run"


def note_archive_timestamp(version: RecordVersion, pdf: bytes, report: ValidationReport | None = None) -> None:
    """Copy what the file's last document timestamp says onto the version's row (none: left empty).

    `report`: the file's validation, just made (issuing): what it read of the timestamps is used instead of
    parsing the file again.
    """
    last = _stated_in(report) if report is not None else _UNREAD
    if last is _UNREAD:
        last = engine.last_archive_timestamp(pdf)
    if last is None:
        version.archive_timestamp_at = version.archive_expires_at = version.archive_digest_algorithm = None
        return
    version.archive_timestamp_at, version.archive_expires_at, version.archive_digest_algorithm = last


_UNREAD: Any = object()


def _stated_in(report: ValidationReport) -> tuple[dt.datetime, dt.datetime, str] | None:
    """The report's last document timestamp's facts; None without one; `_UNREAD` when the report did not read
    them (an unreadable file or token: the file itself then fails as it did)."""
    if not report.readable or report.encrypted:
        return _UNREAD
    if not report.document_timestamps:
        return None
    facts = report.document_timestamps[-1].archive_facts
    return _UNREAD if facts is None else facts


def _due(now: dt.datetime) -> sa.Select:
    config = current_app.config
    horizon = now + dt.timedelta(days=config["TIMESTAMP_RENEWAL_MARGIN_DAYS"])
    retired = list(config["TIMESTAMP_RETIRED_DIGESTS"])
    return sa.select(RecordVersion).where(
        RecordVersion.status.in_(KEPT), RecordVersion.archive_expires_at.is_not(None),
        sa.or_(RecordVersion.archive_expires_at <= horizon, RecordVersion.archive_digest_algorithm.in_(retired)))


def due_count(now: dt.datetime | None = None) -> int:
    """How many records of the whole district are due for renewal now."""
    with all_schools():
        return db.session.scalar(_due(now or utcnow()).with_only_columns(sa.func.count())) or 0


def next_run(now: dt.datetime | None = None) -> dt.datetime:
    """The next scheduled run (`TIMESTAMP_RENEWAL_AT`, daily, in the portal's time zone), in UTC."""
    zone = ZoneInfo(current_app.config["TIMEZONE"])
    local = (now or utcnow()).astimezone(zone)
    hours, minutes = (int(part) for part in current_app.config["TIMESTAMP_RENEWAL_AT"].split(":"))
    candidate = local.replace(hour=hours, minute=minutes, second=0, microsecond=0)
    if candidate <= local:
        candidate += dt.timedelta(days=1)
    return candidate.astimezone(dt.UTC)


def last_run() -> dt.datetime | None:
    from portal.audit import AuditEntry

    return db.session.scalar(sa.select(sa.func.max(AuditEntry.at)).where(AuditEntry.action == RUN_ACTION))


@dataclass
class RenewalRun:
    renewed: int = 0
    failed: int = 0
    still_due: int = 0


def renew_due(*, limit: int | None = None, now: dt.datetime | None = None) -> RenewalRun:
    """Renew the archive timestamp of the records due, oldest expiry first, each in its own transaction."""
    now = now or utcnow()
    limit = limit or current_app.config["TIMESTAMP_RENEWAL_BATCH"]
    with all_schools():
        due = db.session.execute(_due(now).with_only_columns(RecordVersion.id, RecordVersion.school_id)
                                 .order_by(RecordVersion.archive_expires_at, RecordVersion.id).limit(limit)).all()
    run = RenewalRun()
    for version_id, school_id in due:
        with school_scope(school_id):
            if _renew_one(version_id, now):
                run.renewed += 1
            else:
                run.failed += 1
    run.still_due = due_count(now)
    audit.record(RUN_ACTION, actor=None, school_id=None, object_type="ArchiveRenewal",
                 summary=f"flask records renew-timestamps: {run.renewed} renewed, {run.failed} failed",
                 changes={"renewed": run.renewed, "failed": run.failed, "still_due": run.still_due})
    db.session.commit()
    return run


def _renew_one(version_id: int, now: dt.datetime) -> bool:
    from portal.records.workflow import with_retries

    version = db.session.get(RecordVersion, version_id)
    if version is None or version.signed_digest is None:
        return False
    previous, previous_expiry = version.signed_digest, version.archive_expires_at
    try:
        renewed = with_retries(lambda: engine.renew_archive_timestamp(
            storage().read(previous), timestamp_url=signing.timestamp_url(), trust_roots=signing.trust_roots()))
        engine.check_level(renewed, "B-LTA")
    except engine.SigningError as exc:
        db.session.rollback()
        log.warning("renewing the archive timestamp of record version %s failed: %s", version_id, exc)
        return False
    version = db.session.get(RecordVersion, version_id)
    digest = storage().put(renewed)
    version.signed_digest = digest
    note_archive_timestamp(version, renewed)
    db.session.add(ArchiveRenewal(school_id=version.school_id, record_version_id=version.id,
                                  previous_digest=previous, new_digest=digest, previous_expires_at=previous_expiry,
                                  timestamp_at=version.archive_timestamp_at, expires_at=version.archive_expires_at,
                                  renewed_at=now))
    audit.record("record.archive_timestamp_renewed", actor=None, school_id=version.school_id, obj=version,
                 summary=_("Gia hạn dấu thời gian lưu trữ: học bạ %(code)s", code=version.code),
                 changes={"previous_digest": previous, "digest": digest,
                          "expires_at": version.archive_expires_at.isoformat() if version.archive_expires_at else None})
    db.session.commit()
    return True
