"""Rendered parts of the heaviest teacher pages, kept per school data version.

A class's assessment grid and its year-end results are read far more often than they change (a teacher
reloads, a principal looks, the GVCN goes back to the list). Their expensive part, the rows, is kept here
once rendered, under a key that holds everything the rows depend on besides the school's data (the
grid, the section, whether it is editable, the language...) and the school's **data version**.

The data version (`tenants.models.SchoolDataVersion`) changes in the same transaction as every write to a
school's rows: whenever a transaction that wrote tenant-owned rows (through the ORM, bulk statements
included) commits, its schools take a new random version (`_bump`), so a version read at the start of a
request never again names data that changed after it. A request reads the version in the query that finds
its school (`tenants.access`), before any of the data, so what it renders is at least as new as the
version it files it under. A random value rather than a counter: a database restored from a backup, or a
test database made again, does not bring back a version whose rows this process kept.

What the ORM does not see (SQL typed by hand into the database) is not noticed: kept rows also expire
after `PAGE_CACHE_SECONDS`. Each web process keeps its own parts, at most `PAGE_CACHE_BYTES`; 0 turns
the cache off. Only GET and HEAD requests that wrote nothing (`transactions.wrote_nothing`) use it: a page
rendered inside a transaction that also wrote is never kept (the write may still roll back).
"""

from __future__ import annotations

import secrets
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from flask import Flask, current_app, g, request
from flask_babel import get_locale
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import ORMExecuteState, Session

from portal import transactions
from portal.extensions import db
from tenants.models import SchoolDataVersion
from tenants.scoping import TenantScoped, current_school_id

T = TypeVar("T")

_WRITTEN = "pagecache_written_schools"  # session.info: the schools whose rows this transaction wrote
_EVERY_SCHOOL = 0  # in that set: a bulk statement outside one school's scope, so every school


def new_version() -> int:
    return secrets.randbits(62)


# --- the data version ---------------------------------------------------------------------------------


@event.listens_for(Session, "after_flush")
def _note_flushed(session: Session, flush_context: object) -> None:
    # The lists still hold what this flush wrote.
    written = {obj.school_id for group in (session.new, session.dirty, session.deleted) for obj in group
               if isinstance(obj, TenantScoped)}
    if written:
        session.info.setdefault(_WRITTEN, set()).update(written)


@event.listens_for(Session, "do_orm_execute")
def _note_bulk(state: ORMExecuteState) -> None:
    if not (state.is_insert or state.is_update or state.is_delete):
        return
    table = getattr(state.statement, "table", None)
    if table is None or "school_id" not in table.c:
        return
    school_id = current_school_id()
    state.session.info.setdefault(_WRITTEN, set()).add(school_id if school_id is not None else _EVERY_SCHOOL)


def _bump(session: Session) -> None:
    """Give every school this transaction wrote to a new data version, as the last thing before it commits."""
    if session.in_nested_transaction():
        return  # a savepoint: the transaction's own commit bumps, last
    if session.new or session.dirty or session.deleted:
        session.flush()
    written = session.info.pop(_WRITTEN, None)
    if not written:
        return
    table = SchoolDataVersion.__table__
    connection = session.connection()
    version = new_version()
    if _EVERY_SCHOOL in written:
        # A school without a version row yet has nothing kept (its pages are made afresh until it has one).
        connection.execute(table.update().values(version=version))
        return
    insert = (postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert)(table)
    # In id order: two transactions writing to the same two schools cannot deadlock on their rows.
    rows = [{"school_id": school_id, "version": version} for school_id in sorted(written)]
    connection.execute(insert.values(rows).on_conflict_do_update(index_elements=[table.c.school_id],
                                                                 set_={"version": version}))


@event.listens_for(Session, "after_rollback")
def _forget(session: Session) -> None:
    session.info.pop(_WRITTEN, None)


def init_app(app: Flask) -> None:
    """Bump the versions in the last `before_commit` step (after the job queue's, which also writes), and
    size the cache from the settings."""
    if not event.contains(Session, "before_commit", _bump):
        event.listen(Session, "before_commit", _bump)
    app.extensions["page_cache"] = Fragments(app.config["PAGE_CACHE_BYTES"], app.config["PAGE_CACHE_SECONDS"])


# --- the kept parts -----------------------------------------------------------------------------------


class Fragments:
    """A bounded, thread-safe, least-recently-used store of rendered parts that expire."""

    def __init__(self, max_bytes: int, max_age: float) -> None:
        self.max_bytes, self.max_age = max_bytes, max_age
        self._items: OrderedDict[Hashable, tuple[float, int, Any]] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Any | None:
        with self._lock:
            found = self._items.get(key)
            if found is None:
                return None
            if time.monotonic() - found[0] > self.max_age:
                self._drop(key)
                return None
            self._items.move_to_end(key)
            return found[2]

    def put(self, key: Hashable, value: Any, size: int) -> None:
        if size > self.max_bytes:
            return
        with self._lock:
            if key in self._items:
                self._drop(key)
            self._items[key] = (time.monotonic(), size, value)
            self._size += size
            while self._size > self.max_bytes:
                self._drop(next(iter(self._items)))

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._size = 0

    def __len__(self) -> int:
        return len(self._items)

    def _drop(self, key: Hashable) -> None:
        _at, size, _value = self._items.pop(key)
        self._size -= size


def kept(name: str, parts: tuple[Hashable, ...], make: Callable[[], T], size: Callable[[T], int]) -> T:
    """The part `name` of the current school page for `parts`, rendered by `make` unless kept already."""
    fragments: Fragments = current_app.extensions["page_cache"]
    if not _may_keep(fragments):
        return make()
    key = (name, g.school.id, g.school.code, g.school_version, str(get_locale()), *parts)
    found = fragments.get(key)
    if found is not None:
        return found
    value = make()
    if _may_keep(fragments):  # still nothing written in this transaction
        fragments.put(key, value, size(value))
    return value


def _may_keep(fragments: Fragments) -> bool:
    if fragments.max_bytes <= 0 or request.method not in ("GET", "HEAD") or g.get("school_version") is None:
        return False
    return transactions.wrote_nothing(db.session())


def size_of(*texts: str) -> int:
    return sum(sys.getsizeof(text) for text in texts)
