"""What the exchange keeps: one row per record version sent to the city (or announced), the records
received from the city or another school of the district, the transfers inside the district, and where
the returned-records feed was read up to."""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Mapped, mapped_column

from portal.extensions import UTCDateTime, db, str_enum, utcnow
from tenants.roles import N_
from tenants.scoping import TenantScoped


class UploadKind(StrEnum):
    UPLOAD = "upload"  # the signed PDF with its XML
    CANCELLED = "cancelled"  # an announcement: the version was cancelled
    SUPERSEDED = "superseded"  # an announcement: a correction replaced the version


class UploadState(StrEnum):
    WAITING = "waiting"  # not sent yet, or to be tried again at next_attempt_at
    SENT = "sent"  # a request is (or was, when a worker died) under way; its answer is not known
    ACKNOWLEDGED = "acknowledged"  # the city answered with a receipt number
    REJECTED = "rejected"  # the city refused it; `reason` and `action` say why and what to do

    @property
    def label(self) -> str:
        from flask_babel import gettext

        return gettext(UPLOAD_STATE_LABELS[self])


UPLOAD_STATE_LABELS = {
    UploadState.WAITING: N_("Đang chờ gửi"),
    UploadState.SENT: N_("Đã gửi, chờ trả lời"),
    UploadState.ACKNOWLEDGED: N_("Thành phố đã tiếp nhận"),
    UploadState.REJECTED: N_("Thành phố từ chối"),
}
KIND_LABELS = {
    UploadKind.UPLOAD: N_("Gửi học bạ"),
    UploadKind.CANCELLED: N_("Thông báo hủy"),
    UploadKind.SUPERSEDED: N_("Thông báo thay thế"),
}
FINAL_STATES = (UploadState.ACKNOWLEDGED, UploadState.REJECTED)


class CityUpload(TenantScoped, db.Model):
    """One record version on its way to the city (or one announcement about it): the unit of retry."""

    __tablename__ = "city_uploads"

    id: Mapped[int] = mapped_column(primary_key=True)
    record_version_id: Mapped[int] = mapped_column(sa.ForeignKey("record_versions.id"), index=True)
    kind: Mapped[UploadKind] = mapped_column(str_enum(UploadKind, 16), default=UploadKind.UPLOAD)
    record_code: Mapped[str] = mapped_column(sa.String(16), index=True)  # the idempotency key
    school_year_id: Mapped[int] = mapped_column(sa.ForeignKey("school_years.id"), index=True)
    grade: Mapped[int]
    pdf_digest: Mapped[str | None] = mapped_column(sa.String(64))  # SHA-256 of the signed PDF sent
    payload: Mapped[dict[str, Any]] = mapped_column(sa.JSON, default=dict)  # metadata or announcement body
    state: Mapped[UploadState] = mapped_column(str_enum(UploadState, 16), default=UploadState.WAITING, index=True)
    receipt_number: Mapped[str | None] = mapped_column(sa.String(40), unique=True)
    error_code: Mapped[str | None] = mapped_column(sa.String(40))
    reason: Mapped[str] = mapped_column(sa.Text, default="")  # the city's reason (Vietnamese)
    action: Mapped[str] = mapped_column(sa.Text, default="")  # what to do about it (Vietnamese)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)  # a worker holds it until then
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str] = mapped_column(sa.Text, default="")
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    __table_args__ = (sa.UniqueConstraint("record_version_id", "kind"),)

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES

    def stuck(self, now: datetime, *, max_attempts: int, stuck_minutes: int) -> bool:
        """Not final, and either out of attempts or with nothing happening for too long."""
        if self.final:
            return False
        if self.attempts >= max_attempts:
            return True
        return now - (self.last_attempt_at or self.created_at) > timedelta(minutes=stuck_minutes)

    @property
    def kind_label(self) -> str:
        from flask_babel import gettext

        return gettext(KIND_LABELS[self.kind])

    def __repr__(self) -> str:
        return f"<CityUpload {self.kind} {self.record_code} {self.state}>"


class ReceivedSource(StrEnum):
    CITY = "city"  # returned by the city after admissions
    TRANSFER = "transfer"  # came with a pupil transferred inside the district


class ReceivedState(StrEnum):
    ACCEPTED = "accepted"  # signatures valid: attached to the pupil
    REFUSED = "refused"  # tampered, wrongly signed or not matching: kept with the reason, attached to no one


class ReceivedRecord(TenantScoped, db.Model):
    """A record issued and signed by another school, as received by this one. Never altered here."""

    __tablename__ = "received_records"

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[ReceivedSource] = mapped_column(str_enum(ReceivedSource, 16))
    external_ref: Mapped[str] = mapped_column(sa.String(64))  # "city:<return id>" or "transfer:<id>:<code>"
    pupil_id: Mapped[int | None] = mapped_column(sa.ForeignKey("pupils.id"), index=True)
    pupil_code: Mapped[str] = mapped_column(sa.String(32), default="")
    record_code: Mapped[str] = mapped_column(sa.String(16), default="")
    version_number: Mapped[int | None]
    school_year: Mapped[str] = mapped_column(sa.String(16), default="")
    grade: Mapped[int | None]
    issuing_school_name: Mapped[str] = mapped_column(sa.String(200), default="")
    issuing_school_moet_code: Mapped[str] = mapped_column(sa.String(32), default="")
    pdf_digest: Mapped[str | None] = mapped_column(sa.String(64))
    state: Mapped[ReceivedState] = mapped_column(str_enum(ReceivedState, 16))
    reason: Mapped[str] = mapped_column(sa.Text, default="")
    report: Mapped[dict[str, Any]] = mapped_column(sa.JSON, default=dict)
    transfer_id: Mapped[int | None] = mapped_column(sa.ForeignKey("pupil_transfers.id"))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (sa.UniqueConstraint("school_id", "external_ref"),)

    def __repr__(self) -> str:
        return f"<ReceivedRecord {self.record_code} {self.state}>"


# What the issuing school signed, and what was found about it, is fixed once received.
_FIXED = ("source", "external_ref", "record_code", "version_number", "issuing_school_name",
          "issuing_school_moet_code", "pdf_digest", "state", "reason", "report", "school_id")


class ReceivedRecordFixed(RuntimeError):
    """A received record's signed content and verdict cannot be changed."""


@event.listens_for(ReceivedRecord, "before_update")
def _refuse_changes(mapper: object, connection: object, target: ReceivedRecord) -> None:
    state = sa.inspect(target)
    changed = [name for name in _FIXED if state.attrs[name].history.has_changes()]
    if changed:
        raise ReceivedRecordFixed(f"received records are fixed: {', '.join(changed)}")


@event.listens_for(ReceivedRecord, "before_delete")
def _refuse_delete(mapper: object, connection: object, target: ReceivedRecord) -> None:
    raise ReceivedRecordFixed("received records are kept")


class TransferState(StrEnum):
    RELEASED = "released"  # the sending school let the pupil go; the receiving school has not accepted yet
    ACCEPTED = "accepted"
    WITHDRAWN = "withdrawn"  # the sending school took the release back before it was accepted


class PupilTransfer(TenantScoped, db.Model):
    """A pupil moving to another school of the district (chuyển trường). Owned by the sending school;
    the receiving school reads it by `to_school_id` and accepts it."""

    __tablename__ = "pupil_transfers"

    id: Mapped[int] = mapped_column(primary_key=True)
    pupil_id: Mapped[int] = mapped_column(sa.ForeignKey("pupils.id"), index=True)
    to_school_id: Mapped[int] = mapped_column(sa.ForeignKey("schools.id"), index=True)
    pupil_code: Mapped[str] = mapped_column(sa.String(32))
    pupil_name: Mapped[str] = mapped_column(sa.String(200))
    reason: Mapped[str] = mapped_column(sa.Text, default="")
    state: Mapped[TransferState] = mapped_column(str_enum(TransferState, 16), default=TransferState.RELEASED)
    record_version_ids: Mapped[list[int]] = mapped_column(sa.JSON, default=list)  # issued versions that go along
    released_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    released_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    accepted_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    received_pupil_id: Mapped[int | None] = mapped_column(sa.ForeignKey("pupils.id"))

    def __repr__(self) -> str:
        return f"<PupilTransfer {self.pupil_code} {self.school_id}->{self.to_school_id} {self.state}>"


class CityFeedCursor(db.Model):
    """Where the district last read the city's returned-records feed up to (one row per district)."""

    __tablename__ = "city_feed_cursors"

    district_id: Mapped[int] = mapped_column(sa.ForeignKey("districts.id"), primary_key=True)
    after: Mapped[int] = mapped_column(default=0)
    pulled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    def __repr__(self) -> str:
        return f"<CityFeedCursor district={self.district_id} after={self.after}>"
