"""A request's transaction that only read ends with COMMIT (so that psycopg keeps the statements it prepared);
one that wrote anything, raised, or holds unflushed changes still rolls back (portal/transactions.py)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from portal import transactions
from portal.extensions import db
from tenants.models import School
from tenants.roles import Role
from tests.test_grading import signed_in


@contextmanager
def transaction_ends(app) -> Iterator[list[str]]:
    """How each transaction on the app's engine ended, in order ("commit" or "rollback")."""
    ends: list[str] = []

    def on_commit(connection):
        ends.append("commit")

    def on_rollback(connection):
        ends.append("rollback")

    with app.app_context():
        engine = db.engine
    event.listen(engine, "commit", on_commit)
    event.listen(engine, "rollback", on_rollback)
    try:
        yield ends
    finally:
        event.remove(engine, "commit", on_commit)
        event.remove(engine, "rollback", on_rollback)


def school_name(app, school_id: int) -> str:
    with app.app_context():
        return db.session.scalar(sa.select(School.name).where(School.id == school_id))


def test_a_page_that_only_read_ends_its_transaction_with_commit(app, make):
    school = make.school("lqd", "Trường Tiểu học Lê Quang Định")
    teacher = make.user(school, Role.HOMEROOM_TEACHER)
    client = signed_in(app, teacher)
    with transaction_ends(app) as ends:
        page = client.get("/s/lqd/")
    assert page.status_code == 200
    assert ends == ["commit"]


def test_a_transaction_that_only_read_commits(app, make):
    school = make.school("lqd")
    with app.test_request_context("/"), transaction_ends(app) as ends:
        db.session.scalar(sa.select(School.name).where(School.id == school.id))
        transactions._end_read_only(None)
        assert ends == ["commit"]


@pytest.mark.parametrize("how", ["flushed", "bulk", "core", "unflushed", "savepoint"])
def test_a_transaction_that_wrote_is_never_committed_by_the_end_of_a_request(app, make, how):
    school = make.school("lqd", "Trường Tiểu học Lê Quang Định")
    with app.test_request_context("/"), transaction_ends(app) as ends:
        loaded = db.session.get(School, school.id)
        if how == "flushed":
            loaded.name = "Đổi tên"
            db.session.flush()
        elif how == "bulk":
            db.session.execute(sa.update(School).where(School.id == school.id).values(name="Đổi tên"))
        elif how == "core":
            db.session.connection().execute(School.__table__.update().where(School.__table__.c.id == school.id)
                                            .values(name="Đổi tên"))
        elif how == "unflushed":
            loaded.name = "Đổi tên"
        else:
            with db.session.begin_nested():
                db.session.scalar(sa.select(School.name))
        transactions._end_read_only(None)
        assert "commit" not in ends
        db.session.remove()  # what the end of the request does next
    assert school_name(app, school.id) == "Trường Tiểu học Lê Quang Định"


def test_a_request_that_raised_is_not_committed(app, make):
    school = make.school("lqd")
    with app.test_request_context("/"), transaction_ends(app) as ends:
        db.session.scalar(sa.select(School.name).where(School.id == school.id))
        transactions._end_read_only(RuntimeError("the view failed"))
        assert ends == []


def test_the_written_mark_starts_again_with_each_transaction(app, make):
    school = make.school("lqd", "Trường Tiểu học Lê Quang Định")
    with app.test_request_context("/"), transaction_ends(app) as ends:
        db.session.execute(sa.update(School).where(School.id == school.id).values(name="Tên mới"))
        db.session.commit()  # a view that saved, then read again for its page
        db.session.scalar(sa.select(School.name).where(School.id == school.id))
        transactions._end_read_only(None)
        assert ends == ["commit", "commit"]
    assert school_name(app, school.id) == "Tên mới"
