"""Record versions: immutable snapshots of a pupil's học bạ, and where each stands on its way to issue.

A version's `content` (the dict of `content.py`) and its files never change once written. What moves is
its `status`: draft -> signed by the GVCN -> signed by the Hiệu trưởng -> sealed (issued), or back to
the GVCN (returned), or replaced by a newer version (superseded) or cancelled. A correction is a new
version whose `replaces_id` points to the one it replaces.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.extensions import UTCDateTime, db, str_enum, utcnow
from tenants.roles import N_
from tenants.scoping import TenantScoped


class RecordStatus(StrEnum):
    DRAFT = "draft"
    RETURNED = "returned"  # the principal sent it back to the GVCN with a reason
    SIGNED_HOMEROOM = "signed_homeroom"
    SIGNED_PRINCIPAL = "signed_principal"
    ISSUED = "issued"  # all three signatures: sealed
    CANCELLED = "cancelled"
    SUPERSEDED = "superseded"

    @property
    def label(self) -> str:
        from flask_babel import gettext

        return gettext(STATUS_LABELS[self])


STATUS_LABELS = {
    RecordStatus.DRAFT: N_("Bản nháp"),
    RecordStatus.RETURNED: N_("Trả lại giáo viên chủ nhiệm"),
    RecordStatus.SIGNED_HOMEROOM: N_("GVCN đã ký"),
    RecordStatus.SIGNED_PRINCIPAL: N_("Hiệu trưởng đã ký"),
    RecordStatus.ISSUED: N_("Đã ban hành"),
    RecordStatus.CANCELLED: N_("Đã hủy"),
    RecordStatus.SUPERSEDED: N_("Đã được thay thế"),
}
# A version in one of these states is the pupil's live one: generation never creates a second beside it.
OPEN_STATUSES = (RecordStatus.DRAFT, RecordStatus.RETURNED, RecordStatus.SIGNED_HOMEROOM,
                 RecordStatus.SIGNED_PRINCIPAL)


class RecordVersion(TenantScoped, db.Model):
    __tablename__ = "record_versions"

    id: Mapped[int] = mapped_column(primary_key=True)
    pupil_id: Mapped[int] = mapped_column(sa.ForeignKey("pupils.id"), index=True)
    school_year_id: Mapped[int] = mapped_column(sa.ForeignKey("school_years.id"), index=True)
    class_id: Mapped[int] = mapped_column(sa.ForeignKey("classes.id"), index=True)
    grade: Mapped[int]
    number: Mapped[int]  # 1, 2, ... per pupil
    code: Mapped[str] = mapped_column(sa.String(16), unique=True)  # the verification code
    replaces_id: Mapped[int | None] = mapped_column(sa.ForeignKey("record_versions.id"))
    status: Mapped[RecordStatus] = mapped_column(str_enum(RecordStatus, 24), default=RecordStatus.DRAFT, index=True)
    status_reason: Mapped[str] = mapped_column(sa.Text, default="")  # why returned, cancelled, superseded
    correction_reason: Mapped[str] = mapped_column(sa.Text, default="")  # why this version corrects `replaces`
    status_changed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    content: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    # SHA-256 of the canonical JSON of the content without its "record" part: what the pupil's data
    # were. Equal hashes mean regenerating would produce the same record.
    source_hash: Mapped[str] = mapped_column(sa.String(64))
    content_hash: Mapped[str] = mapped_column(sa.String(64))  # of the whole canonical JSON
    draft_digest: Mapped[str] = mapped_column(sa.String(64))  # the unsigned PDF (XML embedded), in storage
    xml_digest: Mapped[str] = mapped_column(sa.String(64))
    signed_digest: Mapped[str | None] = mapped_column(sa.String(64))  # the PDF after the latest signature
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    issued_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The issued PDF's last document (archive) timestamp: its time, when its authority's certificate expires
    # and its digest algorithm; what `flask records renew-timestamps` selects on (portal/records/archive.py).
    archive_timestamp_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    archive_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    archive_digest_algorithm: Mapped[str | None] = mapped_column(sa.String(16))

    pupil = relationship("Pupil")
    school_class = relationship("SchoolClass")
    replaces: Mapped[RecordVersion | None] = relationship(remote_side=[id])

    __table_args__ = (sa.UniqueConstraint("pupil_id", "number"),)

    @property
    def current_digest(self) -> str:
        """The file as it stands: the latest signed PDF, else the draft."""
        return self.signed_digest or self.draft_digest

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    def __repr__(self) -> str:
        return f"<RecordVersion {self.code} pupil={self.pupil_id} v{self.number} {self.status}>"


class RecordSignature(TenantScoped, db.Model):
    """One signature put into a record version's PDF: the commit point of a signing step.

    At most one per (version, step): a batch that runs twice, or two workers racing, can never sign the
    same step of the same record twice (the second insert fails and its work is dropped).
    """

    __tablename__ = "record_signatures"

    id: Mapped[int] = mapped_column(primary_key=True)
    record_version_id: Mapped[int] = mapped_column(sa.ForeignKey("record_versions.id"), index=True)
    step: Mapped[str] = mapped_column(sa.String(16))  # gvcn / hieu_truong / con_dau
    signer_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    signer_name: Mapped[str] = mapped_column(sa.String(200))  # as on the certificate
    certificate_fingerprint: Mapped[str] = mapped_column(sa.String(64))
    key_kind: Mapped[str] = mapped_column(sa.String(16))
    signed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    input_digest: Mapped[str] = mapped_column(sa.String(64))
    output_digest: Mapped[str] = mapped_column(sa.String(64))

    version: Mapped[RecordVersion] = relationship()

    __table_args__ = (sa.UniqueConstraint("record_version_id", "step"),)

    def __repr__(self) -> str:
        return f"<RecordSignature version={self.record_version_id} {self.step}>"


class ArchiveRenewal(TenantScoped, db.Model):
    """One renewal of an issued record's archive timestamp: the file before and after.

    The file before stays in storage and stays genuine: a copy a family downloaded earlier is that file.
    """

    __tablename__ = "record_archive_renewals"

    id: Mapped[int] = mapped_column(primary_key=True)
    record_version_id: Mapped[int] = mapped_column(sa.ForeignKey("record_versions.id"), index=True)
    previous_digest: Mapped[str] = mapped_column(sa.String(64), index=True)
    new_digest: Mapped[str] = mapped_column(sa.String(64))
    previous_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    timestamp_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    renewed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
