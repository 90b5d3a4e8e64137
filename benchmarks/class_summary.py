"""Benchmark: the class summary (bảng tổng hợp) of a 40-pupil class with every period fully rated.

    .venv/bin/python benchmarks/class_summary.py [--runs 200] [--pupils 40]

Runs on SQLite in a temporary folder, and also on PostgreSQL when BENCH_DATABASE_URL is set (a URL
allowed to create databases, e.g. postgresql://postgres@127.0.0.1:5432/postgres): a throwaway
database is created there, owned by an ordinary role when possible so that row-level security
applies as in production, and dropped afterwards.

For each database it prints the median and p95 in milliseconds of: building the year-end (CN) summary
in a fresh session, as the page does (the target is <= 200 ms); writing its Excel file; and the whole
HTTP request of the summary page.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import date
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))
from flask import Flask  # noqa: E402

from benchmarks import common  # noqa: E402
from benchmarks.common import postgres_database  # noqa: E402
from portal.app import create_app  # noqa: E402
from portal.assessment.models import Award, Enrolment, Period, Pupil, SchoolClass, YearResult  # noqa: E402
from portal.extensions import db  # noqa: E402
from portal.results import summary  # noqa: E402
from tenants.models import District, Membership, MembershipRole, School, User  # noqa: E402
from tenants.roles import Role  # noqa: E402
from tenants.scoping import all_schools, school_scope  # noqa: E402
from tests.assessment_factory import ClassSetup, make_class, make_year  # noqa: E402
from tests.results_factory import rate  # noqa: E402

TARGET_MS = 200
PASSWORD = "Matkhau2025"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200, help="timed repetitions of each measure")
    parser.add_argument("--pupils", type=int, default=40, help="pupils in the class")
    args = common.parse_args(parser, smoke={'runs': 2, 'pupils': 5})
    with tempfile.TemporaryDirectory() as folder:
        bench("SQLite", f"sqlite:///{Path(folder) / 'bench.sqlite'}", folder, args.runs, args.pupils)
        admin_url = os.environ.get("BENCH_DATABASE_URL", "")
        if admin_url:
            with postgres_database(admin_url, "summary") as url:
                bench("PostgreSQL", url, folder, args.runs, args.pupils)
        else:
            print("PostgreSQL: skipped (set BENCH_DATABASE_URL to run it)")


def bench(label: str, url: str, folder: str, runs: int, pupils: int) -> None:
    app = create_app({"DATABASE_URL": url, "SECRET_KEY": "bench", "REDIS_URL": "", "TESTING": True,
                      "WTF_CSRF_ENABLED": False, "SESSION_COOKIE_SECURE": False,
                      "PASSWORD_HASH_METHOD": "pbkdf2:sha256:1000"},
                     instance_path=str(Path(folder) / label.lower()))
    from flask_migrate import upgrade

    with app.app_context():
        upgrade(directory=str(PROJECT_ROOT / "migrations"))
    school, user, class_id, period_id = build_class(app, pupils)

    def build() -> None:
        with app.app_context(), school_scope(school.id):
            school_class = db.session.get(SchoolClass, class_id)
            built = summary.build_class_summary(school_class, db.session.get(Period, period_id))
            summary.summary_tables(built)

    def workbook() -> None:
        with app.app_context(), school_scope(school.id):
            school_class = db.session.get(SchoolClass, class_id)
            summary.summary_workbook(summary.build_class_summary(school_class, db.session.get(Period, period_id)),
                                     school.name)

    client = app.test_client()
    response = client.post("/login", data={"username": user.username, "password": PASSWORD})
    assert response.status_code == 302, "benchmark login failed"
    page_url = f"/s/{school.code}/results/classes/{class_id}/summary/{period_id}"

    def page() -> None:
        assert client.get(page_url).status_code == 200

    print(f"{label}: class of {pupils} pupils, {runs} runs")
    report("  summary (queries + tables)", build, runs, target=True)
    report("  summary as Excel", workbook, runs)
    report("  summary page (HTTP)", page, runs)
    with app.app_context():
        db.engine.dispose()


def build_class(app: Flask, pupils: int) -> tuple[School, User, int, int]:
    """A school, its GVCN, and a grade-5 class rated in every period, with results and awards."""
    from portal.auth.services import hash_password

    with app.app_context(), all_schools():
        district = District(code="bench", name="Phòng GD&ĐT Benchmark", city="Thành phố Hồ Chí Minh")
        db.session.add(district)
        db.session.flush()
        school = School(district_id=district.id, code="bench", name="Trường Tiểu học Benchmark", commune="Nhà Bè")
        user = User(district_id=district.id, username="gvcn", full_name="Lê Thị Lan",
                    password_hash=hash_password(PASSWORD))
        db.session.add_all([school, user])
        db.session.flush()
        db.session.add(Membership(school_id=school.id, user_id=user.id,
                                  roles=[MembershipRole(school_id=school.id, role=Role.HOMEROOM_TEACHER)]))
        db.session.commit()
        db.session.refresh(school)
        db.session.refresh(user)
        db.session.expunge_all()
    year_id = make_year(app, school)
    # The test factory gives each pupil a birthday in March, so it makes at most 31; the rest are added here.
    setup = make_class(app, school, year_id, "5A", homeroom_id=user.id, pupils=min(pupils, 28))
    setup = add_pupils(app, school, setup, pupils - len(setup.enrolment_ids))
    for period in setup.period_ids:
        for index in range(pupils):
            # Varied levels and scores, so that every group of the counts has rows.
            rate(app, school, setup, index, period=period, level="THC"[index % 3], score=1 + (index * 7) % 10,
                 trait="TĐC"[(index + 1) % 3])
    with app.app_context(), school_scope(school.id):
        outcomes = ("hoan_thanh_xuat_sac", "hoan_thanh_tot", "hoan_thanh", "chua_hoan_thanh")
        for index, enrolment_id in enumerate(setup.enrolment_ids):
            db.session.add(YearResult(school_id=school.id, enrolment_id=enrolment_id, reasons=[],
                                      outcome=outcomes[index % 4]))
            if index % 4 == 0:
                db.session.add(Award(school_id=school.id, enrolment_id=enrolment_id, title="Học sinh Xuất sắc"))
        db.session.commit()
    return school, user, setup.class_id, setup.period_ids["CN"]


def add_pupils(app: Flask, school: School, setup: ClassSetup, count: int) -> ClassSetup:
    with app.app_context(), school_scope(school.id):
        enrolments, pupils = list(setup.enrolment_ids), list(setup.pupil_ids)
        for n in range(count):
            pupil = Pupil(school_id=school.id, pupil_code=f"bench{n:03d}", full_name=f"Học Sinh Thêm {n}",
                          birth_date=date(2014, 4, 1 + n % 28))
            db.session.add(pupil)
            db.session.flush()
            enrolment = Enrolment(school_id=school.id, pupil_id=pupil.id, school_year_id=setup.year_id,
                                  class_id=setup.class_id)
            db.session.add(enrolment)
            db.session.flush()
            enrolments.append(enrolment.id)
            pupils.append(pupil.id)
        db.session.commit()
    return replace(setup, enrolment_ids=enrolments, pupil_ids=pupils)


def report(label: str, action: Callable[[], None], runs: int, *, target: bool = False) -> None:
    for _ in range(min(5, runs)):
        action()  # warm-up: compiled statement caches, Jinja templates, connection pool
    timings = []
    for _ in range(runs):
        start = time.perf_counter()
        action()
        timings.append((time.perf_counter() - start) * 1000)
    median = statistics.median(timings)
    p95 = statistics.quantiles(timings, n=20)[-1] if len(timings) >= 2 else timings[0]
    verdict = (" OK" if p95 <= TARGET_MS else f" OVER the {TARGET_MS} ms target") if target else ""
    print(f"{label:<32} median {median:7.2f} ms   p95 {p95:7.2f} ms{verdict}")


if __name__ == "__main__":
    main()
