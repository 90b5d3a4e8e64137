"""How a request's transaction ends: one that only read ends with COMMIT, not ROLLBACK.

psycopg forgets every statement it has prepared on a connection at each ROLLBACK (a rollback may undo
the schema a statement was planned against), and Flask-SQLAlchemy ends every request by closing its
session, which rolls back. So on PostgreSQL no statement was ever prepared: every query of every page
was parsed and planned again, each time (a class page sends about ten). A transaction that wrote nothing
commits to the same effect as it rolls back; ending those with COMMIT lets psycopg prepare a statement
from its fifth use on (`prepare_threshold`) and keep it for as long as the connection lives.

"Wrote nothing" is read off the connection itself: since its transaction began, every statement sent on
it was a plain SELECT. Anything else (an ORM flush, a bulk or Core statement, a savepoint, SET, DDL) marks
the transaction as written, whoever sent it. A request that raised, or whose session still holds changes
not yet flushed, rolls back as before, and so does every transaction outside a request.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session

from portal.extensions import db

log = logging.getLogger(__name__)

_WROTE = "transaction_wrote"  # connection.info: a statement other than a SELECT was sent in this transaction


@event.listens_for(Engine, "begin")
def _began(connection: Connection) -> None:
    connection.info[_WROTE] = False


@event.listens_for(Engine, "before_cursor_execute")
def _note_statement(connection: Connection, cursor: Any, statement: str, parameters: Any, context: Any,
                    executemany: bool) -> None:
    if statement.lstrip()[:6].upper() != "SELECT":
        connection.info[_WROTE] = True


def wrote_nothing(session: Session) -> bool:
    """Whether the session's transaction has written nothing so far (every statement sent since it began a
    SELECT) and holds no change still to be flushed: committing it or rolling it back is then the same."""
    if session.new or session.dirty or session.deleted:
        return False
    return not session.in_transaction() or session.connection().info.get(_WROTE) is False


def init_app(app: Flask) -> None:
    app.teardown_request(_end_read_only)  # runs before Flask-SQLAlchemy closes the session


def _end_read_only(exc: BaseException | None) -> None:
    session = db.session()  # the request's own session, not the registry
    if exc is not None or not session.in_transaction() or not wrote_nothing(session):
        return
    try:
        session.commit()
    except Exception:  # a lost connection: the session's close rolls back, and the response already went
        log.warning("a read-only transaction could not commit; rolled back", exc_info=True)
        session.rollback()
