"""What the signing policy reads besides certificates: who signs in the principal's place, and when."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.extensions import UTCDateTime, db, utcnow
from tenants.models import User
from tenants.scoping import TenantScoped


class SigningDelegation(TenantScoped, db.Model):
    """The school recorded that a vice principal signs records in the Hiệu trưởng field, from `starts_at`
    until `ends_at` (open-ended while None): their registered certificate then counts as the principal's."""

    __tablename__ = "signing_delegations"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"), index=True)
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reason: Mapped[str] = mapped_column(sa.Text, default="")  # e.g. the decision that assigns it
    created_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    user: Mapped[User] = relationship(foreign_keys=[user_id])

    def active_at(self, moment: datetime) -> bool:
        return self.starts_at <= moment and (self.ends_at is None or moment <= self.ends_at)

    def __repr__(self) -> str:
        return f"<SigningDelegation school={self.school_id} user={self.user_id}>"
