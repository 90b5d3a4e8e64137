"""The audit trail: one append-only row for every state change (who, when, school, action, object, diff).

Services call `record(...)` inside the transaction of the change itself, so the entry and the change
commit or roll back together. Rows are never updated or deleted: the ORM refuses it here, and on
PostgreSQL a trigger refuses it too (see the migration).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Mapped, mapped_column

from portal.extensions import UTCDateTime, db, utcnow


class AuditEntry(db.Model):
    __tablename__ = "audit_entries"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    # Kept as plain values as well as ids: the trail must still read right after a rename.
    actor_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"), index=True)
    actor_name: Mapped[str] = mapped_column(sa.String(200), default="")
    school_id: Mapped[int | None] = mapped_column(sa.ForeignKey("schools.id"), index=True)
    action: Mapped[str] = mapped_column(sa.String(64), index=True)
    object_type: Mapped[str] = mapped_column(sa.String(64), default="")
    object_id: Mapped[str] = mapped_column(sa.String(64), default="")
    summary: Mapped[str] = mapped_column(sa.String(300), default="")
    changes: Mapped[dict[str, Any]] = mapped_column(sa.JSON, default=dict)
    address: Mapped[str | None] = mapped_column(sa.String(64))

    def __repr__(self) -> str:
        return f"<AuditEntry {self.action} {self.object_type}:{self.object_id}>"


class AppendOnly(RuntimeError):
    """Audit entries cannot be changed or removed."""


@event.listens_for(AuditEntry, "before_update")
@event.listens_for(AuditEntry, "before_delete")
def _refuse_change(mapper: object, connection: object, target: AuditEntry) -> None:
    raise AppendOnly("audit entries are append-only")


def record(
    action: str,
    *,
    actor: Any | None,
    school_id: int | None,
    obj: Any | None = None,
    object_type: str = "",
    object_id: str | int = "",
    summary: str = "",
    changes: Mapping[str, Any] | None = None,
    address: str | None = None,
) -> AuditEntry:
    """Add an audit entry to the current transaction."""
    if obj is not None:
        object_type = object_type or type(obj).__name__
        object_id = object_id or getattr(obj, "id", "") or ""
    entry = AuditEntry(
        actor_id=getattr(actor, "id", None),
        actor_name=getattr(actor, "full_name", "") or "",
        school_id=school_id,
        action=action,
        object_type=object_type,
        object_id=str(object_id),
        summary=summary[:300],
        changes=_jsonable(dict(changes or {})),
        address=address,
    )
    db.session.add(entry)
    return entry


def diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, list[Any]]:
    """The fields that differ, as {field: [old, new]}."""
    return {k: [before.get(k), after.get(k)] for k in sorted(set(before) | set(after)) if before.get(k) != after.get(k)}


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [_jsonable(v) for v in value]
        return sorted(items, key=str) if isinstance(value, set | frozenset) else items
    if isinstance(value, datetime):
        return value.isoformat()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def entries_query(school_id: int | None) -> sa.Select[tuple[AuditEntry]]:
    """Newest first; one school's trail, or every school's (and the district's) with None."""
    query = sa.select(AuditEntry).order_by(AuditEntry.at.desc(), AuditEntry.id.desc())
    if school_id is not None:
        query = query.where(AuditEntry.school_id == school_id)
    return query


def iter_entries(school_id: int | None, batch: int = 500) -> Iterator[AuditEntry]:
    """Every entry of the trail, oldest first, read in batches (for exports)."""
    last_id = 0
    while True:
        query = sa.select(AuditEntry).where(AuditEntry.id > last_id).order_by(AuditEntry.id).limit(batch)
        if school_id is not None:
            query = query.where(AuditEntry.school_id == school_id)
        rows = db.session.scalars(query).all()
        if not rows:
            return
        yield from rows
        last_id = rows[-1].id
