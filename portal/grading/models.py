"""What the grid keeps besides the ratings themselves."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from portal.extensions import UTCDateTime, db, utcnow
from tenants.scoping import TenantScoped


class UnsavedCell(TenantScoped, db.Model):
    """A cell a teacher typed that the server refused, kept with the reason until it is corrected or cleared.

    Valid cells are saved at once; an invalid one must not live only in one browser's storage: a reload, or
    the same grid on another computer, shows it still typed, still marked "not saved", with why.
    """

    __tablename__ = "unsaved_cells"

    id: Mapped[int] = mapped_column(primary_key=True)
    grid_key: Mapped[str] = mapped_column(sa.String(64))
    record_key: Mapped[str] = mapped_column(sa.String(32))
    field: Mapped[str] = mapped_column(sa.String(32))
    raw: Mapped[str] = mapped_column(sa.Text)
    message: Mapped[str] = mapped_column(sa.Text)
    user_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (sa.UniqueConstraint("grid_key", "record_key", "field"),)

    def __repr__(self) -> str:
        return f"<UnsavedCell {self.grid_key} {self.record_key}.{self.field}>"
