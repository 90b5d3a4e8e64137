"""The audit trail: one append-only row for every state change (who, when, school, action, object, diff).

Services call `record(...)` inside the transaction of the change itself, so the entry and the change
commit or roll back together. Rows are never updated or deleted: the ORM refuses it here, and on
PostgreSQL a trigger refuses it too (see the migration).

Those walls stop the portal, not whoever controls the database. So the trail is also hash-chained:
one chain per school and one for the district (entries with no school). When an entry is flushed it
takes the next position (`seq`) of its chain, the hash of the entry before it (`prev_hash`) and the
SHA-256 of its own canonical content, that previous hash included (`entry_hash`). The chain's head
row (`audit_chain_heads`) is locked for the rest of the transaction (by an UPDATE of the row that
also takes the entries' ids, one round trip; SQLite has one writer at a time anyway), so two writers
can never claim the same predecessor, and a unique (chain, seq) stops it even if the lock were
bypassed. Deleting, editing or re-ordering an entry afterwards breaks a link that
`portal.trail.services.verify_chains` names, and the district's signed checkpoints pin the heads, so
that a chain rewritten and re-hashed from some entry on shows too.

The head stays locked until the transaction ends: a job that records many entries commits per item.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, Session, mapped_column

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
    # The hash chain (filled at flush, see the module's docstring).
    chain: Mapped[str] = mapped_column(sa.String(32))
    seq: Mapped[int] = mapped_column()
    prev_hash: Mapped[str] = mapped_column(sa.String(64))
    entry_hash: Mapped[str] = mapped_column(sa.String(64))

    __table_args__ = (sa.UniqueConstraint("chain", "seq"),)

    def __repr__(self) -> str:
        return f"<AuditEntry {self.action} {self.object_type}:{self.object_id}>"

    def chained_fields(self) -> dict[str, Any]:
        """What the entry's hash covers (and what an export line holds besides the hash)."""
        return {"id": self.id, "chain": self.chain, "seq": self.seq, "prev_hash": self.prev_hash,
                "at": canonical_time(self.at), "actor_id": self.actor_id, "actor_name": self.actor_name,
                "school_id": self.school_id, "action": self.action, "object_type": self.object_type,
                "object_id": self.object_id, "summary": self.summary, "changes": self.changes,
                "address": self.address}


class AuditChainHead(db.Model):
    """The newest entry of one chain: the row writers lock to append, and what checkpoints seal."""

    __tablename__ = "audit_chain_heads"

    chain: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    school_id: Mapped[int | None] = mapped_column(sa.ForeignKey("schools.id"), index=True)
    seq: Mapped[int] = mapped_column(default=0)
    head_hash: Mapped[str] = mapped_column(sa.String(64), default=lambda: GENESIS)
    last_entry_id: Mapped[int | None] = mapped_column()

    def __repr__(self) -> str:
        return f"<AuditChainHead {self.chain} #{self.seq}>"


GENESIS = "0" * 64
DISTRICT_CHAIN = "district"
_order = itertools.count()


def chain_of(school_id: int | None) -> str:
    """The chain an entry belongs to: its school's, or the district's."""
    return DISTRICT_CHAIN if school_id is None else f"school:{school_id}"


def canonical_time(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    if moment.tzinfo is None:  # refused at flush (UTCDateTime); hash it as UTC meanwhile
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def canonical_json(fields: Mapping[str, Any]) -> bytes:
    """Sorted keys, no spaces, UTF-8: the same bytes for the same content, here and in any verifier."""
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def hash_fields(fields: Mapping[str, Any]) -> str:
    """The entry hash: SHA-256 of the canonical JSON of its chained fields (prev_hash included)."""
    return hashlib.sha256(canonical_json(fields)).hexdigest()


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
    entry._chain_order = next(_order)  # type: ignore[attr-defined]
    db.session.add(entry)
    return entry


@event.listens_for(Session, "before_flush")
def _chain_new_entries(session: Session, flush_context: object, instances: object) -> None:
    new = [obj for obj in session.new if isinstance(obj, AuditEntry) and obj.entry_hash is None]
    if not new:
        return
    new.sort(key=lambda e: getattr(e, "_chain_order", 0))
    by_chain: dict[str, list[AuditEntry]] = {}
    for entry in new:
        by_chain.setdefault(chain_of(entry.school_id), []).append(entry)
    connection = session.connection()
    postgres = connection.dialect.name == "postgresql"
    # Always the same order of locks, so two transactions writing to two chains cannot deadlock.
    claims = {chain: _claim(connection, chain, chained, postgres) for chain, chained in sorted(by_chain.items())}
    if not postgres:  # every head is locked (SQLite: the whole database): the next ids are ours
        first = (connection.scalar(sa.select(sa.func.max(AuditEntry.__table__.c.id))) or 0) + 1
        for entry_id, entry in enumerate(new, start=first):
            entry.id = entry_id
    table = AuditChainHead.__table__
    for chain, chained in by_chain.items():
        seq, prev = claims[chain]
        for entry in chained:
            _fill_defaults(entry)
            seq += 1
            entry.chain, entry.seq, entry.prev_hash = chain, seq, prev
            entry.entry_hash = prev = hash_fields(entry.chained_fields())
        connection.execute(table.update().where(table.c.chain == chain)
                           .values(head_hash=prev, last_entry_id=chained[-1].id))


# One round trip locks the head, moves its position on and takes the entries' ids: RETURNING runs
# once the row is locked, so within a chain the ids grow with the position (the id is hashed too).
_CLAIM_POSTGRES = sa.text(
    "UPDATE audit_chain_heads SET seq = seq + :n WHERE chain = :chain RETURNING seq - :n AS seq, head_hash, "
    "ARRAY(SELECT nextval(pg_get_serial_sequence('audit_entries', 'id')) FROM generate_series(1, :n)) AS ids")
_CLAIM_SQLITE = sa.text(
    "UPDATE audit_chain_heads SET seq = seq + :n WHERE chain = :chain RETURNING seq - :n AS seq, head_hash")


def _claim(connection: sa.Connection, chain: str, entries: list[AuditEntry], postgres: bool) -> tuple[int, str]:
    """Lock the chain's head until the transaction ends (creating it for a new chain); its (seq, hash)."""
    params = {"n": len(entries), "chain": chain}
    statement = _CLAIM_POSTGRES if postgres else _CLAIM_SQLITE
    head = connection.execute(statement, params).first()
    if head is None:
        heads = AuditChainHead.__table__
        insert = (postgresql.insert if postgres else sqlite.insert)(heads)
        connection.execute(insert.values(chain=chain, school_id=entries[0].school_id, seq=0, head_hash=GENESIS)
                           .on_conflict_do_nothing())
        head = connection.execute(statement, params).first()
        assert head is not None
    if postgres:
        for entry, entry_id in zip(entries, sorted(head.ids), strict=True):
            entry.id = entry_id
    return head.seq, head.head_hash


def _fill_defaults(entry: AuditEntry) -> None:
    """The column defaults, set on the object: the hash must cover what the row will hold."""
    if entry.at is None:
        entry.at = utcnow()
    for name in ("actor_name", "object_type", "object_id", "summary"):
        if getattr(entry, name) is None:
            setattr(entry, name, "")
    if entry.changes is None:
        entry.changes = {}


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
