"""Benchmark: the district compliance board at city scale and at district scale, on PostgreSQL.

    BENCH_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres \\
        .venv/bin/python benchmarks/compliance_board.py [--runs 30] [--schools 500] [--pupils 600000]

Builds a throwaway database (benchmarks/common.py) per scale, fills it with COPY: the schools, their
staff, a 2024-2025 year with 30-pupil classes, every pupil with its enrolment, year result and import
mark (the audit entry the CSDL import writes), identity and results review marks and, when the
records feature is installed, issued record versions for part of grade 5; the 2024-2025 plan,
training sessions, evidence and two weeks of daily snapshots. Then it times the count refresh (the job
that counts every pupil with GROUP BY queries and stores today's counts; it runs in the background,
from cron or the board's button) and, over repeated requests, the board: its queries in a fresh session
(stored counts, live evidence, pace points) and the whole page over HTTP as a district officer.
Targets for the board (p95): <= 300 ms for 500 schools / 600,000 pupils, <= 50 ms for 20 schools.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))
import sqlalchemy as sa  # noqa: E402
from flask import Flask  # noqa: E402

from benchmarks import common  # noqa: E402
from benchmarks.common import postgres_database  # noqa: E402
from portal.app import create_app  # noqa: E402
from portal.extensions import db  # noqa: E402

PASSWORD = "Matkhau2025"
TODAY = date(2025, 5, 20)  # the board as of a busy day: reviews due, grade 5's records being issued
YEAR = "2024-2025"
PER_CLASS = 30
STAFF_PER_SCHOOL = 30


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="timed requests per measure")
    parser.add_argument("--schools", type=int, default=500, help="schools at city scale")
    parser.add_argument("--pupils", type=int, default=600_000, help="pupils at city scale")
    parser.add_argument("--district-schools", type=int, default=20)
    args = common.parse_args(parser, smoke={'runs': 2, 'schools': 3, 'pupils': 60, 'district_schools': 2})
    admin_url = os.environ.get("BENCH_DATABASE_URL", "")
    if not admin_url:
        print("BENCH_DATABASE_URL is not set: this benchmark needs PostgreSQL (see the docstring).")
        return
    with tempfile.TemporaryDirectory() as folder:
        pupils_per_school = args.pupils // args.schools
        for label, schools, target in (("city", args.schools, 300),
                                       ("district", args.district_schools, 50)):
            with postgres_database(admin_url, f"board_{label}") as url:
                bench(label, url, admin_url, folder, schools, pupils_per_school, args.runs, target)


def bench(label: str, url: str, admin_url: str, folder: str, schools: int, per_school: int, runs: int,
          target: int) -> None:
    app = create_app({"DATABASE_URL": url, "SECRET_KEY": "bench", "REDIS_URL": "", "TESTING": True,
                      "WTF_CSRF_ENABLED": False, "SESSION_COOKIE_SECURE": False,
                      "PASSWORD_HASH_METHOD": "pbkdf2:sha256:1000"}, instance_path=str(Path(folder) / label))
    from flask_migrate import upgrade

    with app.app_context():
        upgrade(directory=str(PROJECT_ROOT / "migrations"))
    started = time.perf_counter()
    # Loading goes through the server's superuser: COPY does not run under row-level security.
    loader_url = sa.engine.make_url(admin_url.replace("postgresql://", "postgresql+psycopg://", 1)).set(
        database=sa.engine.make_url(url).database)
    pupils = generate(app, loader_url, schools, per_school)
    print(f"{label}: {schools} schools, {pupils:,} pupils generated in {time.perf_counter() - started:.0f} s")

    from portal.compliance import services
    from tenants.models import District
    from tenants.scoping import all_schools

    def refresh() -> None:
        with app.app_context(), all_schools():
            services.refresh_counts(db.session.scalar(sa.select(District)), YEAR, TODAY)
            db.session.commit()

    def board() -> None:
        with app.app_context(), all_schools():
            services.build_board(db.session.scalar(sa.select(District)), YEAR, TODAY, live=False)
            db.session.remove()

    client = app.test_client()
    response = client.post("/login", data={"username": "phong.cv", "password": PASSWORD})
    assert response.status_code == 302, "benchmark login failed"
    services.today_local = lambda: TODAY  # the page as of the same day

    def page() -> None:
        assert client.get("/district/compliance/").status_code == 200

    report("  count refresh (the background job: every pupil counted, GROUP BY)", refresh, 3, None)
    report("  board (its queries, from the stored counts)", board, runs, target)
    report("  board page (HTTP, rendered)", page, runs, target)
    with app.app_context():
        db.engine.dispose()


def report(name: str, func: Callable[[], None], runs: int, target: int | None) -> None:
    func()  # warm-up: caches, first connection
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        func()
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    p95 = times[max(0, round(0.95 * len(times)) - 1)]
    verdict = "" if target is None else f"(target {target} ms) " + ("OK" if p95 <= target else "OVER TARGET")
    print(f"{name}: median {statistics.median(times):.1f} ms, p95 {p95:.1f} ms {verdict}")


# --- data --------------------------------------------------------------------------------------------------


def _filler(column: sa.Column) -> Any:
    """A value for a NOT NULL column the generator does not set (other features' columns)."""
    kind = column.type
    kind = kind.impl if isinstance(kind, sa.TypeDecorator) else kind
    if isinstance(kind, sa.Boolean):
        return False
    if isinstance(kind, sa.Integer):
        return 0
    if isinstance(kind, sa.DateTime):
        return datetime(2025, 5, 1, tzinfo=UTC)
    if isinstance(kind, sa.Date):
        return date(2025, 5, 1)
    if isinstance(kind, sa.JSON):
        return "{}"
    if isinstance(kind, sa.Enum):
        return kind.enums[0]
    return uuid.uuid4().hex[: getattr(kind, "length", None) or 32]


def copy(conn: Any, table: str, rows: Iterable[dict[str, Any]]) -> int:
    """COPY the rows into the table, filling NOT NULL columns they leave out."""
    columns = db.metadata.tables[table].columns
    iterator = iter(rows)
    first = next(iterator, None)
    if first is None:
        return 0
    given = list(first)
    extra = [c for c in columns if not c.nullable and c.name not in given and not (c.primary_key and c.name == "id")]
    names = given + [c.name for c in extra]
    count = 0
    with conn.cursor() as cursor, cursor.copy(f"COPY {table} ({', '.join(names)}) FROM STDIN") as stream:
        for row in _chain(first, iterator):
            stream.write_row([_plain(row[n]) for n in given] + [_filler(c) for c in extra])
            count += 1
    return count


def _chain(first: dict[str, Any], rest: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    yield first
    yield from rest


def _plain(value: Any) -> Any:
    return value.value if hasattr(value, "value") and not isinstance(value, (int, str)) else value


def generate(app: Flask, loader_url: sa.URL, schools: int, per_school: int) -> int:
    """Fill the database; returns the number of pupils."""
    from portal.auth.services import hash_password
    from portal.compliance import services
    from tenants.models import District
    from tenants.roles import Role
    from tenants.scoping import all_schools

    rng = random.Random(2025)
    with app.app_context(), all_schools():
        district = District(code="hcm", name="Sở GD&ĐT (benchmark)", city="Thành phố Hồ Chí Minh")
        db.session.add(district)
        db.session.flush()
        services.seed_plan(district, actor=None)
        db.session.commit()
        district_id = district.id
        milestones = [(m.id, m.measure, m.scope) for m in services.plan(district, YEAR)]
        password_hash = hash_password(PASSWORD)
    engine = sa.create_engine(loader_url)
    raw = engine.raw_connection()
    conn = raw.driver_connection
    ids = {"user": 0, "membership": 0, "role": 0, "class": 0, "pupil": 0}
    classes_per_school = max(1, per_school // PER_CLASS)
    now = datetime(2025, 5, 20, tzinfo=UTC)
    copy(conn, "schools", ({"id": s, "district_id": district_id, "code": f"truong{s}",
                            "name": f"Trường Tiểu học Số {s:03d}", "active": True, "commune": "",
                            "address": "", "created_at": now} for s in range(1, schools + 1)))
    users = [{"id": 1, "district_id": district_id, "username": "phong.cv", "full_name": "Chuyên viên",
              "password_hash": password_hash, "district_role": Role.DISTRICT_OFFICER.value, "active": True,
              "must_change_password": False, "session_token": uuid.uuid4().hex, "created_at": now}]
    memberships, roles, sessions, attendances = [], [], [], []
    ids["user"] = 1
    for s in range(1, schools + 1):
        trained = rng.random()
        session_id = len(sessions) + 1
        sessions.append({"id": session_id, "school_id": s, "held_on": date(2025, 4, 10 + rng.randrange(15)),
                         "topic": "Tập huấn học bạ số", "trainer": "Phòng GD&ĐT", "created_at": now})
        for n in range(STAFF_PER_SCHOOL):
            ids["user"] += 1
            users.append({"id": ids["user"], "district_id": district_id, "username": f"gv{s}.{n}",
                          "full_name": f"Giáo viên {n} trường {s}", "password_hash": password_hash,
                          "district_role": None, "active": True, "must_change_password": False,
                          "session_token": uuid.uuid4().hex, "created_at": now})
            memberships.append({"id": ids["user"], "school_id": s, "user_id": ids["user"], "active": True,
                                "created_at": now})
            role = Role.PRINCIPAL if n == 0 else Role.HOMEROOM_TEACHER if n <= classes_per_school else \
                Role.SUBJECT_TEACHER
            roles.append({"id": ids["user"], "school_id": s, "membership_id": ids["user"], "role": role.value})
            if rng.random() < trained:
                attendances.append({"id": len(attendances) + 1, "school_id": s, "session_id": session_id,
                                    "user_id": ids["user"]})
    copy(conn, "users", users)
    copy(conn, "memberships", memberships)
    copy(conn, "membership_roles", roles)
    copy(conn, "training_sessions", sessions)
    copy(conn, "training_attendances", attendances)
    copy(conn, "school_years", ({"id": s, "school_id": s, "name": YEAR, "starts_on": date(2024, 9, 5),
                                 "ends_on": date(2025, 5, 31), "excellent_min_score": 9, "good_min_score": 7,
                                 "completed_min_score": 5, "created_at": now} for s in range(1, schools + 1)))
    classes = []
    for s in range(1, schools + 1):
        for c in range(classes_per_school):
            grade = 1 + c * 5 // classes_per_school
            classes.append({"id": len(classes) + 1, "school_id": s, "school_year_id": s,
                            "name": f"{grade}{chr(65 + c % 26)}{c // 26 or ''}", "grade": grade})
    copy(conn, "classes", classes)
    pupils = _pupils(rng, schools, classes, per_school)
    copy(conn, "pupils", (p for p, _e, _r in pupils))
    copy(conn, "enrolments", (e for _p, e, _r in pupils))
    copy(conn, "year_results", (r for _p, _e, r in pupils))
    # Not hash-chained (the board never reads the chain): unique positions are all the table asks for.
    copy(conn, "audit_entries", ({"at": now - timedelta(days=60), "actor_name": "", "school_id": p["school_id"],
                                  "action": "pupil.created", "object_type": "Pupil", "object_id": str(p["id"]),
                                  "summary": "", "changes": "{}", "chain": f"school:{p['school_id']}",
                                  "seq": p["id"], "prev_hash": "", "entry_hash": ""}
                                 for p, _e, _r in pupils if p["id"] % 50))
    grade5 = {c["id"] for c in classes if c["grade"] == 5}
    copy(conn, "record_versions", (
        {"school_id": p["school_id"], "pupil_id": p["id"], "school_year_id": e["school_year_id"],
         "class_id": e["class_id"], "grade": 5, "number": 1, "code": uuid.uuid4().hex[:16],
         "status": "issued", "issued_at": now - timedelta(days=rng.randrange(5)), "content": "{}"}
        for p, e, _r in pupils if e["class_id"] in grade5 and rng.random() < 0.6))
    snapshots = []
    for s in range(1, schools + 1):
        for milestone_id, measure, _scope in milestones:
            if measure in ("identity_reviewed", "results_reviewed", "staff_trained", "imported"):
                for d in range(14, 0, -1):
                    snapshots.append({"school_id": s, "milestone_id": milestone_id, "taken_on": TODAY - timedelta(d),
                                      "done": max(0, per_school - d * 40), "total": per_school})
    copy(conn, "progress_snapshots", snapshots)
    evidence_ids = [m for m, measure, _s in milestones if measure == "evidence"]
    copy(conn, "compliance_evidence", ({"school_id": s, "milestone_id": m, "done_on": date(2025, 3, 20),
                                        "note": "", "filename": "bien-ban.pdf", "mimetype": "application/pdf",
                                        "digest": "0" * 64, "status": rng.choice(["submitted", "accepted", "returned"]),
                                        "submitted_at": now, "review_comment": ""}
                                       for s in range(1, schools + 1) for m in evidence_ids if rng.random() < 0.7))
    with conn.cursor() as cursor:
        for table in ("schools", "users", "memberships", "membership_roles", "classes", "pupils", "enrolments",
                      "year_results", "school_years", "audit_entries"):
            cursor.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
        cursor.execute("ANALYZE")
    conn.commit()
    raw.close()
    engine.dispose()
    return len(pupils)


def _pupils(rng: random.Random, schools: int, classes: list[dict[str, Any]], per_school: int
            ) -> list[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]]:
    by_school: dict[int, list[dict[str, Any]]] = {}
    for c in classes:
        by_school.setdefault(c["school_id"], []).append(c)
    now = datetime(2025, 5, 20, tzinfo=UTC)
    rows = []
    pupil_id = 0
    for s in range(1, schools + 1):
        pace = rng.random()  # how far along this school is
        school_classes = by_school[s]
        for n in range(per_school):
            pupil_id += 1
            school_class = school_classes[n % len(school_classes)]
            reviewed = now - timedelta(days=rng.randrange(20), hours=rng.randrange(24)) if rng.random() < pace else None
            results = now - timedelta(days=rng.randrange(10)) if rng.random() < pace * 0.9 else None
            rows.append((
                {"id": pupil_id, "school_id": s, "pupil_code": f"79{s:04d}{n:05d}", "full_name": f"Học sinh {n}",
                 "personal_plan": False, "identity_reviewed_at": reviewed, "created_at": now, "updated_at": now},
                {"id": pupil_id, "school_id": s, "pupil_id": pupil_id, "school_year_id": s,
                 "class_id": school_class["id"], "status": "studying"},
                {"id": pupil_id, "school_id": s, "enrolment_id": pupil_id, "reasons": "[]",
                 "supplementary_note": "", "results_reviewed_at": results},
            ))
    return rows


if __name__ == "__main__":
    main()
