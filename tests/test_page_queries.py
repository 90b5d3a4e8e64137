"""The heaviest teacher pages ask the database a fixed, small number of questions, whatever the class size.

The class assessment grid and a class's year-end results read some 600 and 1,000 rating rows for a
35-pupil class; each kind of data is read in one query. A query per pupil (or per cell) slipping back in
would multiply these counts, and fail here before it shows in the load benchmark
(benchmarks/pages_load.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa

from portal.extensions import db
from tenants.roles import Role
from tests.assessment_factory import make_class, make_year
from tests.conftest import login
from tests.results_factory import rate

PUPILS = 35
# Every school page first reads the school, the signed-in user and her membership with its roles (3);
# on PostgreSQL the query that finds the school begins the transaction and hands the tenant to the database
# in the same round trip (no `set_config` of its own first: tenants/scoping.py, settings_in_statement).
SCHOOL_PAGE = 3
POSTGRES_TENANT = 0


@pytest.fixture
def rated_class(app, make):
    school = make.school("lqd")
    gvcn = make.user(school, Role.HOMEROOM_TEACHER, full_name="Lê Thị Lan")
    year_id = make_year(app, school)
    setup = make_class(app, school, year_id, "5A", homeroom_id=gvcn.id, pupils=PUPILS, personal_plan=(7,))
    for period in setup.period_ids:
        rate(app, school, setup, range(PUPILS), period=period, level="T", score=9)
    return gvcn, setup


@contextmanager
def counted(app) -> Iterator[list[str]]:
    statements: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    with app.app_context():
        engine = db.engine
    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)


def expected(app, page_queries: int) -> int:
    with app.app_context():
        postgres = db.engine.dialect.name == "postgresql"
    return SCHOOL_PAGE + page_queries + (POSTGRES_TENANT if postgres else 0)


@pytest.mark.parametrize(("page", "page_queries", "kept_queries"), [
    # the class with its year and periods; the traits; the pupils; trait ratings; measurements; refused cells
    # (seen again, with its rows kept: the class, the traits)
    ("grid", 6, 2),
    # the class with its year and periods; the pupils with their stored results and awards; subjects and
    # traits together; subject and trait ratings together (seen again: the class)
    ("results", 4, 1),
])
def test_a_35_pupil_class_page_takes_a_fixed_number_of_queries(app, client, rated_class, page, page_queries,
                                                                kept_queries):
    gvcn, setup = rated_class
    url = (f"/s/lqd/grading/classes/{setup.class_id}/periods/{setup.period_ids['CN']}" if page == "grid"
           else f"/s/lqd/results/classes/{setup.class_id}")
    login(client, gvcn)
    assert client.get(url).status_code == 200  # first: the session's flashed notices, the connection
    app.extensions["page_cache"].clear()  # as after a change: nothing kept (portal/pagecache.py)
    for queries in (page_queries, kept_queries):
        with counted(app) as statements:
            response = client.get(url)
        assert response.status_code == 200
        page_html = response.get_data(as_text=True)
        assert page_html.count('<tr id="pupil-' if page == "results" else '<td class="stt">') == PUPILS
        assert len(statements) == expected(app, queries), "\n".join(statements)
