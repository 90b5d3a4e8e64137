"""A whole school issued through the real job queue: generation, the three signatures, validation, issue.

A generated school (six classes in each of grades 1-5 by default, about 1,000 pupils, five years of
assessment data built as the demo builds it) in a throwaway PostgreSQL database, `--workers` real
`worker.py` processes on Redis, the demo CA's timestamp/OCSP/CRL stand-in over HTTP, signatures at
`SIGNATURE_LEVEL` (B-LTA by default). The actions are started as their pages start them: the principal
generates the school's drafts, each GVCN signs her classes (typing her PIN once), the principal signs the
school, the seal issues it. Each is split into a part per class, the longest first (`portal.records.tasks`).

Two schools, timed the same way:
- cold: nothing laid out before (a school's first year of Học bạ số);
- warm: last year's drafts were generated a year ago (untimed), so the earlier year pages of every pupil
  are in the shared section store, as in every later year.

Prints each stage's wall time, the whole, the target (cold <= 5 min, warm <= 3 min) and OK/OVER, with the
load average. `BENCH_DATABASE_URL` names a PostgreSQL server where a throwaway database may be created
(default: the local one); `BENCH_REDIS_URL` a Redis database the benchmark may empty (default: db 15);
`BENCH_WORKER_WRAP` a command each worker runs under (a sampling profiler: `py-spy record -s -f raw -o FILE --`).

    .venv/bin/python benchmarks/issue_school.py [--classes-per-grade 6] [--workers 2] [--only cold|warm]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

import sqlalchemy as sa  # noqa: E402
from flask import Flask  # noqa: E402
from redis import Redis  # noqa: E402

from benchmarks import common  # noqa: E402
from portal.app import create_app  # noqa: E402
from portal.extensions import db  # noqa: E402

COLD_TARGET_S, WARM_TARGET_S = 300.0, 180.0
# Every grade's year is over on this day: the grade-5 pupils' records hold five school years (2024-2025 on).
LAST_YEAR_OVER = date(2029, 6, 1)
YEAR_BEFORE = date(2028, 6, 1)


def settings(database_url: str, redis_url: str, instance: str, pki_url: str, level: str) -> dict[str, str]:
    """The environment of every process of the run: this one and the workers."""
    return {"DATABASE_URL": database_url, "REDIS_URL": redis_url, "JOB_QUEUE": f"bench-{os.getpid()}",
            "SECRET_KEY": "bench-secret-key-" + "x" * 32, "PORTAL_INSTANCE_PATH": instance,
            "SESSION_COOKIE_SECURE": "false", "PRODUCTION": "false", "SIGNATURE_LEVEL": level,
            "DEMO_PKI_URL": pki_url, "LOG_LEVEL": "WARNING"}


def build_school(app: Flask, code: str, name: str, today: date, classes_per_grade: int,
                 pupils: tuple[int, int]) -> int:
    """The school, its demo staff and their certificates (signing PIN: the demo's), its years up to `today`."""
    from portal.auth.services import hash_password
    from portal.demo import DEMO_PASSWORD, demo_district, school_with_staff
    from portal.demo.assessment import build_school_years
    from portal.demo.signing import build_signing_demo
    from tenants.scoping import all_schools

    with app.app_context():
        with all_schools():
            district = demo_district()
            school, _staff = school_with_staff(district, code, name, "Xã Hiệp Phước", hash_password(DEMO_PASSWORD))
            db.session.commit()
            school_id = school.id
        build_school_years(db.session.get_one(type(school), school_id), today, classes_per_grade=classes_per_grade,
                           pupils_per_class=pupils)
        db.session.commit()
        build_signing_demo(DEMO_PASSWORD, school_codes=[code])
        return school_id


def extend_school(app: Flask, school_id: int, today: date, classes_per_grade: int, pupils: tuple[int, int]) -> None:
    from portal.demo.assessment import build_school_years
    from tenants.models import School

    with app.app_context():
        build_school_years(db.session.get_one(School, school_id), today, classes_per_grade=classes_per_grade,
                           pupils_per_class=pupils)
        db.session.commit()


def _last_classes(school_id: int, year_end: date) -> list:
    from portal.assessment.models import SchoolClass, SchoolYear

    return list(db.session.scalars(sa.select(SchoolClass).join(SchoolYear).where(
        SchoolClass.school_id == school_id, SchoolYear.ends_on < year_end,
        SchoolYear.ends_on == sa.select(sa.func.max(SchoolYear.ends_on)).where(
            SchoolYear.school_id == school_id, SchoolYear.ends_on < year_end).scalar_subquery())
        .order_by(SchoolClass.name)))


def start_generation(app: Flask, school_id: int, today: date) -> list[str]:
    from portal.records import tasks
    from tenants.models import School, User
    from tenants.scoping import school_scope

    with app.app_context(), school_scope(school_id):
        school = db.session.get_one(School, school_id)
        principal = db.session.scalar(sa.select(User).where(User.username == f"ht.{school.code}"))
        run = tasks.start_generation(school, _last_classes(school_id, today), "Tạo bản học bạ số cả trường",
                                     actor=principal)
        db.session.commit()
        return [run.id]


def start_step(app: Flask, school_id: int, today: date, step_name: str) -> list[str]:
    """Start a signing step as its page does: each GVCN her classes, the principal and the seal the school."""
    from portal import jobs
    from portal.demo.signing import DEMO_SIGNING_PIN
    from portal.records import tasks, workflow
    from tenants.models import Membership, School, User
    from tenants.roles import permissions_for
    from tenants.scoping import school_scope

    step = workflow.STEPS[step_name]
    run_ids = []
    with app.app_context(), school_scope(school_id):
        school = db.session.get_one(School, school_id)
        classes = _last_classes(school_id, today)
        if step_name == "gvcn":
            signers = sorted({c.homeroom_teacher_id for c in classes})
        else:
            signers = [db.session.scalar(sa.select(User.id).where(User.username == f"ht.{school.code}"))]
        for signer_id in signers:
            signer = db.session.get_one(User, signer_id)
            membership = db.session.scalar(sa.select(Membership).where(Membership.user_id == signer_id))
            permissions = permissions_for(membership.role_set)
            mine = [c.id for c in classes if step_name != "gvcn" or c.homeroom_teacher_id == signer_id]
            versions = [v for v in workflow.waiting_for(school, step, mine)
                        if workflow.may_sign(signer_id, permissions, v, step)]
            if not versions:
                continue
            certificate = workflow.signing_certificate(school, step, signer)
            run = tasks.start_signing(school, step, versions, f"{step.label}: {len(versions)} học bạ", actor=signer,
                                      split=True)
            if certificate.needs_signing_pin:
                jobs.stash_secret(run.id, DEMO_SIGNING_PIN)
            db.session.commit()
            run_ids.append(run.id)
    return run_ids


def wait(app: Flask, run_ids: list[str], label: str) -> None:
    from portal.jobs import JobRun, JobState
    from tenants.scoping import all_schools

    while True:
        with app.app_context(), all_schools():
            runs = [db.session.get_one(JobRun, run_id) for run_id in run_ids]
            if all(run.done for run in runs):
                bad = [f"{run.title}: {run.state} {run.error or run.note}" for run in runs
                       if run.state != JobState.FINISHED]
                if bad:
                    raise SystemExit(f"{label} did not finish: {bad}")
                outcomes: dict[str, int] = {}
                for run in runs:
                    for item in (run.result or {}).get("items", []):
                        outcomes[item["outcome"]] = outcomes.get(item["outcome"], 0) + 1
                return outcomes  # type: ignore[return-value]
        time.sleep(0.5)


def issue(app: Flask, school_id: int, today: date) -> list[tuple[str, float, dict[str, int]]]:
    """Every stage of issuing the school, timed from its start to its last part's end."""
    stages = []
    for label, start in (("generation", lambda: start_generation(app, school_id, today)),
                         ("GVCN signing", lambda: start_step(app, school_id, today, "gvcn")),
                         ("principal signing", lambda: start_step(app, school_id, today, "hieu_truong")),
                         ("seal, validation, issue", lambda: start_step(app, school_id, today, "con_dau"))):
        began = time.perf_counter()
        outcomes = wait(app, start(), label)
        stages.append((label, time.perf_counter() - began, outcomes))
        print(f"  {label:<26} {stages[-1][1]:7.1f} s  {outcomes}  (load {os.getloadavg()[0]:.1f})", flush=True)
    return stages


def pupils_of(app: Flask, school_id: int, today: date) -> int:
    from portal.assessment.models import Enrolment
    from tenants.scoping import school_scope

    with app.app_context(), school_scope(school_id):
        return db.session.scalar(sa.select(sa.func.count()).select_from(Enrolment).where(
            Enrolment.class_id.in_([c.id for c in _last_classes(school_id, today)])))


def issued_of(app: Flask, school_id: int) -> int:
    from portal.records.models import RecordStatus, RecordVersion
    from tenants.scoping import school_scope

    with app.app_context(), school_scope(school_id):
        return db.session.scalar(sa.select(sa.func.count()).select_from(RecordVersion).where(
            RecordVersion.school_id == school_id, RecordVersion.status == RecordStatus.ISSUED))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classes-per-grade", type=int, default=6)
    parser.add_argument("--pupils", type=int, nargs=2, default=(28, 38), metavar=("MIN", "MAX"),
                        help="pupils per new class (the demo's range is 25-35; 28-38 gives ~1,000 pupils)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--level", default="B-LTA")
    parser.add_argument("--only", choices=("cold", "warm"))
    args = common.parse_args(parser, {"classes_per_grade": 1, "pupils": (1, 1), "workers": 2})
    admin_url = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    redis_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
    redis = Redis.from_url(redis_url)
    redis.flushdb()  # its own database: the section mappings of an earlier run must not make "cold" warm
    pupils = tuple(args.pupils)
    wrap = os.environ.get("BENCH_WORKER_WRAP", "").split()
    print(f"load average at start: {os.getloadavg()[0]:.2f}; {os.cpu_count()} cores; {args.workers} workers; "
          f"level {args.level}", flush=True)
    from tests.signing_factory import pki_standin

    workers: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="issue-school-") as instance, \
            common.postgres_database(admin_url, "school") as database_url, \
            pki_standin(Path(instance) / "pki") as pki_url:
        env = settings(database_url, redis_url, instance, pki_url, args.level)
        os.environ.update(env)
        app = create_app()
        from flask_migrate import upgrade

        with app.app_context():
            upgrade(directory=str(PROJECT_ROOT / "migrations"))
        began = time.perf_counter()
        schools = {}
        if args.only != "warm":
            schools["cold"] = build_school(app, "bench_cold", "Trường Tiểu học Hiệp Phước", LAST_YEAR_OVER,
                                           args.classes_per_grade, pupils)
        if args.only != "cold":
            # Built up to last year first: last year's drafts are generated (untimed) before this year exists.
            schools["warm"] = build_school(app, "bench_warm", "Trường Tiểu học Long Thới", YEAR_BEFORE,
                                           args.classes_per_grade, pupils)
        print(f"schools built in {time.perf_counter() - began:.0f} s", flush=True)
        try:
            for _ in range(args.workers):
                command = [*wrap, sys.executable, str(PROJECT_ROOT / "worker.py")]
                workers.append(subprocess.Popen(command, env={**os.environ}, cwd=PROJECT_ROOT, start_new_session=True,
                                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            results = {}
            for kind, school_id in schools.items():
                if kind == "warm":
                    began = time.perf_counter()
                    wait(app, start_generation(app, school_id, YEAR_BEFORE), "last year's drafts")
                    extend_school(app, school_id, LAST_YEAR_OVER, args.classes_per_grade, pupils)
                    print(f"warm: last year's drafts generated and this year built in "
                          f"{time.perf_counter() - began:.0f} s (untimed)", flush=True)
                count = pupils_of(app, school_id, LAST_YEAR_OVER)
                print(f"{kind}: {count} pupils in {args.classes_per_grade * 5} classes", flush=True)
                stages = issue(app, school_id, LAST_YEAR_OVER)
                issued = issued_of(app, school_id)
                if issued != count:
                    raise SystemExit(f"{kind}: {issued} of {count} records issued")
                results[kind] = (count, sum(seconds for _label, seconds, _o in stages))
        finally:
            for worker in workers:  # each in a session of its own: the worker, its job process, a profiler
                os.killpg(worker.pid, signal.SIGINT if wrap else signal.SIGTERM)  # a profiler writes on SIGINT
            for worker in workers:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    worker.wait(timeout=30)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(worker.pid, signal.SIGKILL)
            with app.app_context():
                db.engine.dispose()
            redis.flushdb()
    print(f"\nload average at end: {os.getloadavg()[0]:.2f}")
    for kind, (count, seconds) in results.items():
        target = COLD_TARGET_S if kind == "cold" else WARM_TARGET_S
        per_1000 = seconds * 1000 / count
        verdict = "OK" if per_1000 <= target else "OVER TARGET"
        print(f"{kind:<5} {count} pupils issued in {seconds:.0f} s = {per_1000 / 60:.2f} min per 1,000 pupils "
              f"(target <= {target / 60:.0f} min): {verdict}")


if __name__ == "__main__":
    main()
