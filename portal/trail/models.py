"""What seals the hash-chained trail: signed checkpoints of each chain's head, and archives of old entries."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from portal.extensions import UTCDateTime, db, utcnow


class AuditCheckpoint(db.Model):
    """One chain's head as the district signed it: `document` (canonical JSON) and its CMS signature."""

    __tablename__ = "audit_checkpoints"

    id: Mapped[int] = mapped_column(primary_key=True)
    chain: Mapped[str] = mapped_column(sa.String(32), index=True)
    # Not a tenant table: the district's chain has no school. Pages filter on it.
    school_id: Mapped[int | None] = mapped_column(sa.ForeignKey("schools.id"), index=True)
    seq: Mapped[int] = mapped_column()  # how many entries the chain held: the head's position
    last_entry_id: Mapped[int] = mapped_column()
    head_hash: Mapped[str] = mapped_column(sa.String(64))
    sealed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    document_digest: Mapped[str] = mapped_column(sa.String(64))  # the JSON in the file store
    signature_digest: Mapped[str] = mapped_column(sa.String(64))  # the detached CMS (DER) in the file store
    certificate_fingerprint: Mapped[str] = mapped_column(sa.String(64))
    timestamped: Mapped[bool] = mapped_column(default=False)
    status: Mapped[str] = mapped_column(sa.String(300), default="")

    def __repr__(self) -> str:
        return f"<AuditCheckpoint {self.chain} #{self.seq}>"


class AuditArchive(db.Model):
    """Entries of one chain moved out of the live table into a file, sealed by a checkpoint first."""

    __tablename__ = "audit_archives"

    id: Mapped[int] = mapped_column(primary_key=True)
    chain: Mapped[str] = mapped_column(sa.String(32), index=True)
    school_id: Mapped[int | None] = mapped_column(sa.ForeignKey("schools.id"), index=True)
    first_seq: Mapped[int] = mapped_column()
    last_seq: Mapped[int] = mapped_column()
    prev_hash: Mapped[str] = mapped_column(sa.String(64))  # the hash the first archived entry links to
    last_hash: Mapped[str] = mapped_column(sa.String(64))
    last_entry_id: Mapped[int] = mapped_column()
    before: Mapped[datetime] = mapped_column(UTCDateTime)
    file_digest: Mapped[str] = mapped_column(sa.String(64))  # the entries as JSON lines, in the file store
    checkpoint_id: Mapped[int] = mapped_column(sa.ForeignKey("audit_checkpoints.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (sa.UniqueConstraint("chain", "first_seq"),)

    def __repr__(self) -> str:
        return f"<AuditArchive {self.chain} #{self.first_seq}-{self.last_seq}>"
