"""Fixtures: one app and one migrated database per run, tables emptied between tests.

By default the suite runs on the embedded stack (SQLite file, jobs in-process). With
TEST_DATABASE_URL (a PostgreSQL superuser URL) and TEST_REDIS_URL it runs on the production stack:
a fresh database owned by an ordinary role (so row-level security applies to the app, as it must in
production) and real RQ queues worked by `python worker.py` processes.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from portal.app import PROJECT_ROOT, create_app
from portal.extensions import db
from tenants.models import District, Membership, MembershipRole, School, User
from tenants.roles import Role
from tenants.scoping import all_schools

pytest_plugins = [
    "tests.browser",  # the `browser` and `live_url` fixtures
    "tests.warnings_policy",  # third-party deprecations reported in the summary, ours errors
    "pytester",  # tests of the suite's own policies run an inner pytest
]

PASSWORD = "Matkhau2025"
FAST_HASH = "pbkdf2:sha256:1000"  # the real default (scrypt) is slow on purpose; tests check it apart
# One database and one role per test run, so that several runs on one machine never disturb each other;
# both are dropped when the run ends (and those of a run that was killed, when the next one starts).
PG_PREFIX = "hocba_test_"
PG_APP_ROLE = f"{PG_PREFIX}app_{os.getpid()}"
PG_DATABASE = f"{PG_PREFIX}{os.getpid()}"


def _admin_engine(admin_url: str) -> sa.Engine:
    return sa.create_engine(admin_url.replace("postgresql://", "postgresql+psycopg://", 1),
                            isolation_level="AUTOCOMMIT")


def _drop_stale_postgres(conn: sa.Connection) -> None:
    """Drop the databases and roles of earlier runs on this machine whose process is gone."""
    def gone(name: str) -> bool:
        pid = name.rsplit("_", 1)[-1]
        if not pid.isdigit():
            return False
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    pattern = {"p": PG_PREFIX.replace("_", r"\_") + "%"}
    for name in conn.scalars(sa.text("select datname from pg_database where datname like :p"), pattern):
        if gone(name):
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    for name in conn.scalars(sa.text("select rolname from pg_roles where rolname like :p"), pattern):
        if gone(name):
            conn.execute(sa.text(f'DROP ROLE IF EXISTS "{name}"'))


def _postgres_url(admin_url: str) -> str:
    """Create a fresh test database owned by an ordinary (non-superuser) role; return its URL."""
    admin = _admin_engine(admin_url)
    with admin.connect() as conn:
        _drop_stale_postgres(conn)
        conn.execute(sa.text(f"DROP DATABASE IF EXISTS {PG_DATABASE} WITH (FORCE)"))
        exists = conn.scalar(sa.text("select 1 from pg_roles where rolname = :r"), {"r": PG_APP_ROLE})
        if not exists:
            conn.execute(sa.text(f"CREATE ROLE {PG_APP_ROLE} LOGIN NOSUPERUSER NOBYPASSRLS"))
        conn.execute(sa.text(f"CREATE DATABASE {PG_DATABASE} OWNER {PG_APP_ROLE}"))
    admin.dispose()
    parts = sa.engine.make_url(admin_url.replace("postgresql://", "postgresql+psycopg://", 1))
    return str(parts.set(username=PG_APP_ROLE, password=None, database=PG_DATABASE).render_as_string(
        hide_password=False))


@pytest.fixture(scope="session")
def instance_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("instance")


@pytest.fixture(scope="session")
def pki_service(instance_folder: Path) -> Iterator[str]:
    """The demo CA's timestamp/OCSP/CRL stand-in for the whole run, on a free loopback port (a thread)."""
    from portal.signing import PKI_FOLDER
    from tests.signing_factory import pki_standin

    with pki_standin(instance_folder / PKI_FOLDER) as url:
        yield url


@pytest.fixture(scope="session")
def settings(instance_folder: Path, pki_service: str) -> dict[str, object]:
    instance = instance_folder
    admin_url = os.environ.get("TEST_DATABASE_URL", "")
    database_url = _postgres_url(admin_url) if admin_url else f"sqlite:///{instance / 'test.sqlite'}"
    return {
        # Signing tests that do not test the level sign at B-B (no timestamp: fast); `issuing_level` raises
        # it to the default B-LTA, through the stand-in above.
        "DEMO_PKI_URL": pki_service,
        "SIGNATURE_LEVEL": "B-B",
        "SIGNING_SERVICE_RETRY_SECONDS": 0.0,
        "INSTANCE_PATH": str(instance),
        "DATABASE_URL": database_url,
        "REDIS_URL": os.environ.get("TEST_REDIS_URL", ""),
        "JOB_QUEUE": f"test-{uuid.uuid4().hex[:8]}",
        "SECRET_KEY": "test-secret-key",
        "PASSWORD_HASH_METHOD": FAST_HASH,
    }


@pytest.fixture(scope="session")
def app(settings: dict[str, object]) -> Iterator[Flask]:
    overrides = {k: v for k, v in settings.items() if k != "INSTANCE_PATH"}
    overrides.update(TESTING=True, SESSION_COOKIE_SECURE=False)
    application = create_app(overrides, instance_path=str(settings["INSTANCE_PATH"]))
    from flask_migrate import upgrade

    with application.app_context():
        upgrade(directory=str(PROJECT_ROOT / "migrations"))
    yield application
    with application.app_context():
        db.engine.dispose()
    if settings["DATABASE_URL"].startswith("postgresql"):
        _drop_postgres(os.environ["TEST_DATABASE_URL"])
    if settings["REDIS_URL"]:
        _drop_redis_queue(str(settings["REDIS_URL"]), str(settings["JOB_QUEUE"]))


def _drop_postgres(admin_url: str) -> None:
    admin = _admin_engine(admin_url)
    with admin.connect() as conn:
        conn.execute(sa.text(f"DROP DATABASE IF EXISTS {PG_DATABASE} WITH (FORCE)"))
        conn.execute(sa.text(f"DROP ROLE IF EXISTS {PG_APP_ROLE}"))
    admin.dispose()


def _drop_redis_queue(redis_url: str, queue: str) -> None:
    """Remove what this run's queue left in Redis: its jobs, registries and the workers that served it."""
    from redis import Redis

    redis = Redis.from_url(redis_url)
    job_ids: set[bytes] = set()
    for key in redis.scan_iter(match=f"rq:*:{queue}"):
        kind = redis.type(key)
        if kind == b"zset":
            job_ids.update(redis.zrange(key, 0, -1))
        elif kind == b"list":
            job_ids.update(redis.lrange(key, 0, -1))
        redis.delete(key)
    for key in redis.scan_iter(match="rq:job:*"):
        if redis.hget(key, "origin") == queue.encode():
            job_ids.add(key.split(b":", 2)[2])
    for job_id in job_ids:
        redis.delete(b"rq:job:" + job_id, b"rq:job:" + job_id + b":dependents",
                     b"rq:job:" + job_id + b":dependencies", b"rq:results:" + job_id)
    for worker_key in redis.smembers("rq:workers"):
        queues = redis.hget(worker_key, "queues")
        if queues is None or queues.decode() == queue:
            redis.srem("rq:workers", worker_key)
            redis.delete(worker_key)
    redis.srem("rq:queues", f"rq:queue:{queue}")
    redis.close()


@pytest.fixture(autouse=True)
def _empty_tables(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "app" not in request.fixturenames:
        return
    application: Flask = request.getfixturevalue("app")
    application.extensions["page_cache"].clear()  # the next test's schools may have this one's ids
    with application.app_context():
        db.session.remove()
        tables = [t.name for t in reversed(db.metadata.sorted_tables)]
        with db.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # TRUNCATE costs per table (~6 ms each): empty only the tables the test wrote to.
                conn.execute(sa.text("SELECT set_config('app.all_schools', 'on', true)"))
                probe = " UNION ALL ".join(f"SELECT '{t}' WHERE EXISTS (SELECT 1 FROM {t})" for t in tables)
                written = list(conn.scalars(sa.text(probe)))
                if written:
                    conn.execute(sa.text(f"TRUNCATE {', '.join(written)} RESTART IDENTITY CASCADE"))
            else:
                for table in tables:
                    conn.execute(sa.text(f"DELETE FROM {table}"))


@pytest.fixture
def ctx(app: Flask) -> Iterator[Flask]:
    """An app context for code that talks to the database directly.

    Not for tests that also send requests: requests would share this context's `g` and session.
    Those open `with app.app_context():` around their own database reads instead.
    """
    with app.app_context():
        yield app
        db.session.remove()


# The principal's school (two grade-5 classes, identity review marks) and one ordinary school.
FAST_SCHOOLS = ("lequangdinh", "hiepphuoc")


@pytest.fixture
def two_schools(monkeypatch: pytest.MonkeyPatch) -> None:
    """build_demo() with the assessment data of FAST_SCHOOLS only (the whole district is a slow test)."""
    from portal.demo import assessment as demo_assessment

    whole = demo_assessment.build_assessment_demo
    # build_demo imports the function when it runs, so it picks this one up.
    monkeypatch.setattr(demo_assessment, "build_assessment_demo",
                        lambda today: whole(today, schools=FAST_SCHOOLS))


@pytest.fixture
def issuing_level(app: Flask) -> Iterator[str]:
    """Records are issued at the default level (B-LTA) through the stand-in PKI services."""
    app.config["SIGNATURE_LEVEL"] = "B-LTA"
    yield "B-LTA"
    app.config["SIGNATURE_LEVEL"] = "B-B"


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def no_csrf(app: Flask) -> Iterator[None]:
    """For tests about something else than CSRF (which has its own tests)."""
    app.config["WTF_CSRF_ENABLED"] = False
    yield
    app.config["WTF_CSRF_ENABLED"] = True


class Factory:
    """Builds what a test needs, committed, so that requests and workers see it."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self._count = 0

    def _next(self) -> int:
        self._count += 1
        return self._count

    def district(self) -> District:
        with self.app.app_context():
            district = db.session.scalar(sa.select(District))
            if district is None:
                district = District(code="nhabe", name="Phòng Giáo dục và Đào tạo huyện Nhà Bè",
                                    city="Thành phố Hồ Chí Minh")
                db.session.add(district)
                db.session.commit()
            db.session.refresh(district)
            db.session.expunge(district)
            return district

    def school(self, code: str | None = None, name: str | None = None) -> School:
        district = self.district()
        n = self._next()
        with self.app.app_context():
            school = School(district_id=district.id, code=code or f"truong{n}",
                            name=name or f"Trường Tiểu học Số {n}", commune="Thị trấn Nhà Bè")
            db.session.add(school)
            db.session.commit()
            db.session.refresh(school)
            db.session.expunge(school)
            return school

    def user(self, school: School | None = None, *roles: Role, username: str | None = None,
             full_name: str | None = None, district_role: Role | None = None, active: bool = True) -> User:
        from portal.auth.services import hash_password

        district = self.district()
        n = self._next()
        with self.app.app_context(), all_schools():
            user = User(district_id=district.id, username=username or f"user{n}",
                        full_name=full_name or f"Nguyễn Văn Số {n}", password_hash=hash_password(PASSWORD),
                        district_role=district_role, active=active)
            db.session.add(user)
            db.session.flush()
            if school is not None:
                db.session.add(Membership(school_id=school.id, user_id=user.id, roles=[
                    MembershipRole(school_id=school.id, role=role) for role in roles]))
            db.session.commit()
            db.session.refresh(user)
            db.session.expunge(user)
            return user


@pytest.fixture
def make(app: Flask) -> Factory:
    return Factory(app)


def csrf_token(client: FlaskClient, url: str) -> str:
    """The CSRF token of the form on the page at `url`."""
    page = client.get(url).get_data(as_text=True)
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page) or re.search(
        r'name="csrf_token" value="([^"]+)"', page)
    assert match, f"no CSRF token on {url}"
    return match.group(1)


def login(client: FlaskClient, user: User | str, password: str = PASSWORD) -> None:
    """Sign in through the real login form (with its CSRF token)."""
    username = user if isinstance(user, str) else user.username
    token = csrf_token(client, "/login")
    response = client.post("/login", data={"username": username, "password": password, "csrf_token": token})
    assert response.status_code == 302 and "/login" not in response.location, "login failed"


@pytest.fixture
def log_in():
    return login


def worker_env(app: Flask) -> dict[str, str]:
    """The environment of a `worker.py` process serving this test app (its database, queue, signing level and
    the stand-in PKI service)."""
    return dict(os.environ, DATABASE_URL=app.config["SQLALCHEMY_DATABASE_URI"],
                REDIS_URL=app.config["REDIS_URL"], JOB_QUEUE=app.config["JOB_QUEUE"],
                SECRET_KEY=app.config["SECRET_KEY"], PORTAL_INSTANCE_PATH=app.instance_path,
                SESSION_COOKIE_SECURE="false", PRODUCTION="false", SIGNATURE_LEVEL=app.config["SIGNATURE_LEVEL"],
                DEMO_PKI_URL=app.config["DEMO_PKI_URL"],
                SIGNING_SERVICE_RETRY_SECONDS=str(app.config["SIGNING_SERVICE_RETRY_SECONDS"]))


def finish_jobs(app: Flask, run_ids: list[str], timeout: float = 180) -> None:
    """Let the queue work the given jobs: a real `worker.py --burst` on Redis, else the job thread.
    `timeout` is a ceiling for a machine whose two cores are busy with the rest of the suite (the benchmarks'
    smoke runs start workers and servers of their own), not the time a job is expected to take."""
    from portal.jobs import JobRun

    if app.config["REDIS_URL"]:
        env = worker_env(app)
        subprocess.run([sys.executable, str(Path(PROJECT_ROOT) / "worker.py"), "--burst"], env=env,
                       check=True, timeout=timeout, capture_output=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with app.app_context():
            runs = [db.session.get(JobRun, run_id) for run_id in run_ids]
            if all(run is not None and run.done for run in runs):
                return
        time.sleep(0.05)
    raise AssertionError(f"jobs {run_ids} did not finish within {timeout} s")
