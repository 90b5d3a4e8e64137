"""The second wall complete: row-level security on the audit trail and the job rows, a start-up that refuses a
database role walking through it, and settings that name files that are not there."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from portal import audit
from portal.app import create_app
from portal.config import ConfigError, load_settings
from portal.extensions import db
from portal.jobs import JobRun
from tenants import rls
from tenants.scoping import all_schools


@pytest.mark.parametrize("key", ["TRUST_ROOTS", "CITY_TRUST_ROOTS"])
def test_a_setting_naming_a_missing_file_is_refused(key, tmp_path):
    present = tmp_path / "root.pem"
    present.write_text("-----BEGIN CERTIFICATE-----\n")
    missing = tmp_path / "khong-co.pem"
    with pytest.raises(ConfigError, match=key) as refused:
        load_settings({key: f"{present},{missing}"})
    assert str(missing) in str(refused.value)
    assert load_settings({key: str(present)})[key] in ((str(present),), str(present))
    assert load_settings({})[key] in ((), "")


@pytest.fixture
def pg_engine(app) -> Iterator[sa.Engine]:
    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            pytest.skip("row-level security exists on PostgreSQL only")
        engine = sa.create_engine(db.engine.url, poolclass=sa.pool.NullPool)
    yield engine
    engine.dispose()


def test_the_audit_trail_and_the_job_rows_stay_inside_the_school(app, make, pg_engine):
    school_a, school_b = make.school(), make.school()
    with app.app_context(), all_schools():
        for school in (school_a, school_b):
            audit.record("test.note", actor=None, school_id=school.id, summary=f"Học sinh của trường {school.id}")
            db.session.add(JobRun(kind="x", title="Việc", school_id=school.id, params={}))
        audit.record("test.district", actor=None, school_id=None, summary="Phòng")
        db.session.add(JobRun(kind="x", title="Việc của Phòng", school_id=None, params={}))
        db.session.commit()
    as_school = sa.text("select set_config('app.school_id', :school, true)")
    for table in ("audit_entries", "job_runs"):
        with pg_engine.connect() as conn, conn.begin():
            conn.execute(as_school, {"school": str(school_a.id)})
            seen = set(conn.scalars(sa.text(f"select school_id from {table}")))
        assert seen == {school_a.id, None}, (table, seen)  # its own rows and the district's, never B's
        with pg_engine.connect() as conn, conn.begin():
            conn.execute(sa.text("select set_config('app.all_schools', 'on', true)"))
            assert set(conn.scalars(sa.text(f"select school_id from {table}"))) == {school_a.id, school_b.id, None}
    with pytest.raises(sa.exc.DBAPIError, match="row-level security"), pg_engine.connect() as conn, conn.begin():
        conn.execute(as_school, {"school": str(school_a.id)})
        conn.execute(sa.text("insert into audit_entries (at, actor_name, school_id, action, object_type, object_id, "
                             "summary, changes) values (now(), '', :b, 'test.forged', '', '', '', '{}')"),
                     {"b": school_b.id})
    with pg_engine.connect() as conn:
        rows = conn.execute(sa.text("select relname from pg_class where relrowsecurity and relforcerowsecurity "
                                    "and relname in ('audit_entries', 'job_runs')")).scalars().all()
    assert sorted(rows) == ["audit_entries", "job_runs"]
    assert set(rls.NOT_PROTECTED) == {"person_certificates", "stored_files"}  # each with its reason


def test_start_up_refuses_a_superuser_role(tmp_path):
    superuser = os.environ.get("TEST_DATABASE_URL", "")
    if not superuser.startswith("postgresql"):
        pytest.skip("needs the PostgreSQL superuser URL the production-stack run is given")
    settings = {"DATABASE_URL": superuser.replace("postgresql://", "postgresql+psycopg://", 1), "TESTING": True,
                "REDIS_URL": ""}
    with pytest.raises(ConfigError, match="superuser"):
        create_app(settings, instance_path=str(tmp_path))
    create_app({**settings, "DATABASE_ALLOW_SUPERUSER": True}, instance_path=str(tmp_path))


def test_start_up_accepts_the_ordinary_role(app, tmp_path):
    """The suite's own role (NOSUPERUSER NOBYPASSRLS) is what production uses: it starts."""
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    if not url.startswith("postgresql"):
        pytest.skip("PostgreSQL only")
    started = create_app({"DATABASE_URL": url, "TESTING": True, "REDIS_URL": ""}, instance_path=str(tmp_path))
    with started.app_context():
        try:
            with db.engine.connect() as connection:
                assert rls.check_database_role(connection) is None
        finally:
            db.engine.dispose()
