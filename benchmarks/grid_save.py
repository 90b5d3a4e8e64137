"""Benchmark: saving a full subject grid (40 pupils x level, test score and comment) through the service.

    .venv/bin/python benchmarks/grid_save.py [--runs 100] [--pupils 40]

Runs on SQLite in a temporary folder, and also on PostgreSQL when BENCH_DATABASE_URL is set (a URL
allowed to create databases, e.g. postgresql://postgres@127.0.0.1:5432/postgres): a throwaway
database is created there, owned by an ordinary role when possible so that row-level security
applies as in production, and dropped afterwards.

Every run changes every cell (so all rows are written, versions checked and bumped, one audit entry
added) and prints the median and p95 in milliseconds of: `save_grid` plus the commit (the target is
<= 150 ms), and the same with the grid loaded first in a fresh session, as the save request does.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))
from flask import Flask  # noqa: E402

from benchmarks import common  # noqa: E402
from benchmarks.common import postgres_database  # noqa: E402
from portal.app import create_app  # noqa: E402
from portal.assessment.catalogue import build_year  # noqa: E402
from portal.assessment.models import Enrolment, Pupil, SchoolClass, TeachingAssignment  # noqa: E402
from portal.extensions import db  # noqa: E402
from portal.grading import services  # noqa: E402
from tenants.models import District, Membership, MembershipRole, School, User  # noqa: E402
from tenants.roles import Role  # noqa: E402
from tenants.scoping import all_schools, school_scope  # noqa: E402

TARGET_MS = 150
GIVEN_NAMES = ["An", "Bình", "Châu", "Dũng", "Đạt", "Giang", "Hân", "Khoa", "Linh", "Minh", "Nam", "Phúc",
               "Quân", "Sơn", "Tâm", "Uyên", "Vy", "Yến"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100, help="timed saves per measure")
    parser.add_argument("--pupils", type=int, default=40, help="pupils in the class")
    args = common.parse_args(parser, smoke={'runs': 2, 'pupils': 5})
    with tempfile.TemporaryDirectory() as folder:
        bench("SQLite", f"sqlite:///{Path(folder) / 'bench.sqlite'}", folder, args.runs, args.pupils)
        admin_url = os.environ.get("BENCH_DATABASE_URL", "")
        if admin_url:
            with postgres_database(admin_url, "grid") as url:
                bench("PostgreSQL", url, folder, args.runs, args.pupils)
        else:
            print("PostgreSQL: skipped (set BENCH_DATABASE_URL to run it)")


def bench(label: str, url: str, folder: str, runs: int, pupils: int) -> None:
    app = create_app({"DATABASE_URL": url, "SECRET_KEY": "bench", "REDIS_URL": "", "TESTING": True,
                      "SESSION_COOKIE_SECURE": False}, instance_path=str(Path(folder) / label.lower()))
    from flask_migrate import upgrade

    with app.app_context():
        upgrade(directory=str(PROJECT_ROOT / "migrations"))
    school, teacher_id, ids = build_class(app, pupils)
    state: dict[str, object] = {"run": 0, "versions": {}}

    def save_once(*, time_the_load: bool) -> float:
        """One save of every cell in a fresh session; returns the milliseconds measured."""
        with app.app_context(), school_scope(school.id):
            start = time.perf_counter()
            grid = services.subject_grid(school, *ids)
            assert grid is not None and grid.tested
            actor = db.session.get(User, teacher_id)
            if not time_the_load:
                start = time.perf_counter()
            versions: dict[str, int] = state["versions"]  # type: ignore[assignment]
            changes = full_grid(grid, state["run"], versions)  # type: ignore[arg-type]
            result = services.save_grid(school, grid, changes, actor=actor, today=date.today())
            db.session.commit()
            elapsed = (time.perf_counter() - start) * 1000
            assert result.ok and result.changed_cells == 3 * len(grid.pupils), result.errors or result.conflicts
            versions.update(result.versions)
            state["run"] = int(state["run"]) + 1  # type: ignore[call-overload]
            return elapsed

    print(f"{label}: class of {pupils} pupils, {runs} saves of {3 * pupils} cells each")
    report("  save_grid + commit", lambda: save_once(time_the_load=False), runs, target=True)
    report("  load grid + save_grid + commit", lambda: save_once(time_the_load=True), runs)
    with app.app_context():
        db.engine.dispose()


def full_grid(grid: services.Grid, run: int, versions: dict[str, int]) -> list[services.RowChange]:
    """Every cell of every row changed from the previous run."""
    changes = []
    for index, pupil in enumerate(grid.pupils):
        key = services.record_key(pupil.enrolment_id, "")
        cells = {"level": "THC"[(index + run) % 3], "score": str(1 + (index + run) % 10),
                 "comment": f"Lần {run}: nắm vững kiến thức, kĩ năng; trình bày rõ ràng, cẩn thận."}
        changes.append(services.RowChange(key, versions.get(key, 0), cells))
    return changes


def build_class(app: Flask, pupils: int) -> tuple[School, int, tuple[int, int, int]]:
    """A school, a GVBM of Toán (tested at CN in grade 5) and a grade-5 class of `pupils` pupils."""
    with app.app_context(), all_schools():
        district = District(code="bench", name="Phòng GD&ĐT Benchmark", city="Thành phố Hồ Chí Minh")
        db.session.add(district)
        db.session.flush()
        school = School(district_id=district.id, code="bench", name="Trường Tiểu học Benchmark", commune="Nhà Bè")
        user = User(district_id=district.id, username="gvbm", full_name="Phan Văn Âm",
                    password_hash="!")  # nobody signs in
        db.session.add_all([school, user])
        db.session.flush()
        db.session.add(Membership(school_id=school.id, user_id=user.id,
                                  roles=[MembershipRole(school_id=school.id, role=Role.SUBJECT_TEACHER)]))
        db.session.commit()
        db.session.refresh(school)
        db.session.expunge(school)
        teacher_id = user.id
    with app.app_context(), school_scope(school.id):
        year = build_year(school.id, "2024-2025", date(2024, 9, 5), date(2025, 5, 31))
        for period in year.periods:
            period.entry_opens_on, period.entry_closes_on = date(2000, 1, 1), date(2100, 1, 1)
        db.session.add(year)
        db.session.flush()
        school_class = SchoolClass(school_id=school.id, school_year_id=year.id, name="5A", grade=5)
        db.session.add(school_class)
        db.session.flush()
        subject = next(s for s in year.subjects if s.code == "toan")
        db.session.add(TeachingAssignment(school_id=school.id, class_id=school_class.id, subject_id=subject.id,
                                          teacher_id=teacher_id))
        for n in range(pupils):
            pupil = Pupil(school_id=school.id, pupil_code=f"7900{n:05d}", birth_date=date(2014, 1 + n % 12, 1 + n % 28),
                          full_name=f"Nguyễn Văn {GIVEN_NAMES[n % len(GIVEN_NAMES)]} {n}")
            db.session.add(pupil)
            db.session.flush()
            db.session.add(Enrolment(school_id=school.id, pupil_id=pupil.id, school_year_id=year.id,
                                     class_id=school_class.id))
        db.session.commit()
        period_id = next(p.id for p in year.periods if p.code == "CN")
        return school, teacher_id, (school_class.id, subject.id, period_id)


def report(label: str, measure: Callable[[], float], runs: int, *, target: bool = False) -> None:
    for _run in range(min(3, runs)):
        measure()  # warm-up: compiled statement caches, the connection pool, the first inserts
    timings = [measure() for _run in range(runs)]
    median = statistics.median(timings)
    p95 = statistics.quantiles(timings, n=20)[-1] if len(timings) >= 2 else timings[0]
    verdict = (" OK" if p95 <= TARGET_MS else f" OVER the {TARGET_MS} ms target") if target else ""
    print(f"{label:<34} median {median:7.2f} ms   p95 {p95:7.2f} ms{verdict}")


if __name__ == "__main__":
    main()
