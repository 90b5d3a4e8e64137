"""Family access codes, and the log of public lookups that the rate limits count.

A family access code is shown once, when it is made, and printed for the family; only its SHA-256 is
stored. It has 80 random bits, so the hash cannot be reversed by trying codes, and with the per-address
limit on wrong codes guessing one online is hopeless. Rotating a code ends its row and makes a new one,
so the history of who issued which code and when stays.

The public lookup log holds no code, no name and no address: only what kind of lookup it was, how it
ended, and a keyed hash of the address (enough to count an address's requests, not to recover it).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.extensions import UTCDateTime, db, str_enum, utcnow
from tenants.scoping import TenantScoped


class CodeEnd(StrEnum):
    ROTATED = "rotated"  # replaced by a new code
    REVOKED = "revoked"  # taken back; the family has no code until a new one is issued


class FamilyAccessCode(TenantScoped, db.Model):
    __tablename__ = "family_access_codes"

    id: Mapped[int] = mapped_column(primary_key=True)
    pupil_id: Mapped[int] = mapped_column(sa.ForeignKey("pupils.id"), index=True)
    code_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    issued_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    end_reason: Mapped[CodeEnd | None] = mapped_column(str_enum(CodeEnd, 16))
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    pupil = relationship("Pupil")

    @property
    def active(self) -> bool:
        return self.ended_at is None

    def __repr__(self) -> str:
        return f"<FamilyAccessCode pupil={self.pupil_id} {'active' if self.active else self.end_reason}>"


class LookupKind(StrEnum):
    CODE = "code"  # a verification code, on the page or through the API
    FILE = "file"  # an uploaded file, on the page or through the API
    FAMILY = "family"  # a family access code typed in


class LookupOutcome(StrEnum):
    FOUND = "found"
    UNKNOWN = "unknown"  # no public record with that code or that file
    CHECKED = "checked"  # a file was checked (in the registry or not: see FOUND / UNKNOWN for codes)
    REFUSED = "refused"  # not checkable: empty, not a PDF, too large
    WRONG = "wrong"  # a family access code that opens nothing
    LIMITED = "limited"  # refused by the rate limit


class PublicLookup(db.Model):
    """One public request (verification or family code): what, when, how it ended, from which address hash."""

    __tablename__ = "public_lookups"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[LookupKind] = mapped_column(str_enum(LookupKind, 16))
    outcome: Mapped[LookupOutcome] = mapped_column(str_enum(LookupOutcome, 16))
    address_hash: Mapped[str] = mapped_column(sa.String(16))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)

    __table_args__ = (sa.Index("ix_public_lookups_address_kind_at", "address_hash", "kind", "at"),)

    def __repr__(self) -> str:
        return f"<PublicLookup {self.kind} {self.outcome}>"
