"""Tenant scoping that fails closed.

Every tenant-owned model inherits `TenantScoped` and so carries a `school_id`. Each ORM query that
touches such a model is filtered to the current school automatically; with no tenant in force it is
refused (`TenantRequired`) instead of returning every school's rows. District-wide reading is an
explicit `all_schools()` scope. New rows take the current school, and a row of another school is
refused at flush.

On PostgreSQL the same tenant is also handed to the database (transaction-local settings read by
row-level security policies, see `rls.py`), so a raw SQL query cannot cross schools either.
Not covered by the ORM layer: raw SQL and bulk UPDATE/DELETE statements (RLS covers those on
PostgreSQL).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import sqlalchemy as sa
from flask import has_app_context
from sqlalchemy import event
from sqlalchemy.orm import Mapped, ORMExecuteState, Session, declared_attr, mapped_column, with_loader_criteria
from sqlalchemy.sql.base import ExecutableOption

from portal.extensions import db


class TenantRequired(RuntimeError):
    """A tenant-owned table was queried with no school in scope."""


class WrongTenant(RuntimeError):
    """A row of one school was about to be written while another school is in scope."""


@dataclass(frozen=True)
class Scope:
    school_id: int | None = None
    all_schools: bool = False


_NO_SCOPE = Scope()
_scope: ContextVar[Scope] = ContextVar("tenant_scope", default=_NO_SCOPE)


class TenantScoped:
    """Mixin for every tenant-owned model: a non-null, indexed `school_id`."""

    @declared_attr
    def school_id(cls) -> Mapped[int]:
        return mapped_column(sa.ForeignKey("schools.id", ondelete="RESTRICT"), index=True, nullable=False)


def current_scope() -> Scope:
    return _scope.get()


def current_school_id() -> int | None:
    return _scope.get().school_id


@contextmanager
def school_scope(school_id: int) -> Iterator[None]:
    """Run the block as one school: queries see only its rows."""
    with _scoped(Scope(school_id=school_id)):
        yield


@contextmanager
def all_schools() -> Iterator[None]:
    """Run the block across every school of the district (district pages, jobs, reports)."""
    with _scoped(Scope(all_schools=True)):
        yield


@contextmanager
def no_school() -> Iterator[None]:
    """Run the block with no tenant: any tenant-owned query in it is refused."""
    with _scoped(Scope()):
        yield


@contextmanager
def _scoped(scope: Scope) -> Iterator[None]:
    token = _scope.set(scope)
    _sync_database(scope)
    try:
        yield
        # What was written in this scope is written under it: row-level security checks a pending row
        # (an audit entry of this school, say) against the scope in force when it is flushed.
        _flush_pending()
    finally:
        _scope.reset(token)
        _sync_database(_scope.get())


def _flush_pending() -> None:
    if not has_app_context():
        return
    session = db.session()
    transaction = session.get_transaction()
    # A transaction a failed flush left behind waits for its rollback: nothing to write in it.
    if transaction is not None and transaction.is_active and (session.new or session.dirty or session.deleted):
        # A row refused before any SQL is refused again where the caller flushes or commits: not here.
        with contextlib.suppress(WrongTenant, TenantRequired):
            session.flush()


def enter_request_scope(scope: Scope) -> object:
    """Set the scope for the rest of a request; `leave_request_scope` undoes it at teardown."""
    token = _scope.set(scope)
    _sync_database(scope)
    return token


def school_settings(school_id: sa.ColumnElement[int]) -> tuple[sa.ColumnElement[str], sa.ColumnElement[str]]:
    """The two transaction-local settings of `_apply_settings` for one school, as columns a query can carry:
    the query that finds the school hands it to the database in the same round trip. Pair it with
    `enter_school_scope`, which sets the same scope on this side."""
    return (sa.func.set_config("app.school_id", sa.cast(school_id, sa.Text), True),
            sa.func.set_config("app.all_schools", "off", True))


def enter_school_scope(school_id: int, *, handed_over: bool) -> object:
    """`enter_request_scope` for one school; `handed_over`: the transaction under way already carries its
    settings (a query of the school with `school_settings` ran in it, on PostgreSQL)."""
    scope = Scope(school_id=school_id)
    token = _scope.set(scope)
    if not handed_over:
        _sync_database(scope)
    return token


def leave_request_scope(token: object) -> None:
    _scope.reset(token)  # type: ignore[arg-type]


def _sync_database(scope: Scope) -> None:
    # A transaction already under way on PostgreSQL must see the new tenant at once: RLS reads
    # transaction-local settings, which `after_begin` sets only for transactions begun later.
    if not has_app_context():
        return
    session = db.session()
    if session.in_transaction():
        connection = session.connection()
        if connection.dialect.name == "postgresql":
            _apply_settings(connection, scope)


def _apply_settings(connection: sa.Connection, scope: Scope) -> None:
    connection.execute(
        sa.text("select set_config('app.school_id', :school, true), set_config('app.all_schools', :all, true)"),
        {"school": str(scope.school_id or ""), "all": "on" if scope.all_schools else "off"},
    )


def _scoped_mappers(state: ORMExecuteState) -> bool:
    return any(issubclass(mapper.class_, TenantScoped) for mapper in state.all_mappers)


@event.listens_for(Session, "do_orm_execute")
def _filter_by_tenant(state: ORMExecuteState) -> None:
    if not state.is_select or state.is_column_load:
        return
    scope = _scope.get()
    if scope.school_id is not None:
        # In a school's scope every select takes the school's criteria: on a statement without a
        # tenant-owned entity they select nothing away, and adding them costs less than looking.
        state.statement = state.statement.options(_school_criteria(scope.school_id))
        return
    if scope.all_schools or not _scoped_mappers(state):
        return
    raise TenantRequired("tenant-owned data queried with no school in scope")


@functools.lru_cache(maxsize=4096)
def _school_criteria(school_id: int) -> ExecutableOption:
    """The criteria keeping a school's queries to its own rows: made once per school, not per statement."""
    return with_loader_criteria(TenantScoped, lambda cls: cls.school_id == school_id, include_aliases=True)


@event.listens_for(Session, "before_flush")
def _stamp_new_rows(session: Session, flush_context: object, instances: object) -> None:
    scope = _scope.get()
    for obj in list(session.new) + list(session.dirty):
        if not isinstance(obj, TenantScoped):
            continue
        if obj.school_id is None:
            if scope.school_id is None:
                raise TenantRequired(f"{type(obj).__name__} has no school and none is in scope")
            obj.school_id = scope.school_id
        elif scope.school_id is not None and obj.school_id != scope.school_id:
            raise WrongTenant(f"{type(obj).__name__} belongs to another school than the one in scope")
        elif scope.school_id is None and not scope.all_schools:
            raise TenantRequired(f"{type(obj).__name__} written with no school in scope")


# Set only around a statement that itself carries the tenant settings (`school_settings`): a transaction
# that this statement begins needs no separate round trip for them first.
_settings_in_statement: ContextVar[bool] = ContextVar("settings_in_statement", default=False)


@contextmanager
def settings_in_statement() -> Iterator[None]:
    """Around the one statement that carries `school_settings`: if it begins the transaction, the settings
    are not sent separately first. The caller must hand the settings over itself when that statement
    returns no row (its `set_config` columns then ran for no row): `clear_settings`."""
    token = _settings_in_statement.set(True)
    try:
        yield
    finally:
        _settings_in_statement.reset(token)


def clear_settings() -> None:
    """The current scope handed to the transaction under way (PostgreSQL), in a round trip of its own."""
    session = db.session()
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        _apply_settings(connection, _scope.get())


@event.listens_for(Session, "after_begin")
def _hand_tenant_to_database(session: Session, transaction: object, connection: sa.Connection) -> None:
    if connection.dialect.name == "postgresql" and not _settings_in_statement.get():
        _apply_settings(connection, _scope.get())
