"""Benchmark: what the hash chain costs an audit write, and how fast chains verify.

    .venv/bin/python benchmarks/audit_chain.py [--runs 300] [--threads 4] [--entries 20000]

Runs on SQLite in a temporary folder, and also on PostgreSQL when BENCH_DATABASE_URL is set (see
grid_save.py). Prints, in milliseconds (median and p95): a transaction holding one `audit.record`
and its commit (chained: lock the head, take the id, hash, insert, move the head), against the same
ORM write left out of the chain (what an audit write cost before); then the entries per
second that `--threads` threads of one process reach all writing to one school's chain (PostgreSQL
only: SQLite has one writer at a time); then the entries per second `verify_chains` walks.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))

import sqlalchemy as sa  # noqa: E402
from flask import Flask  # noqa: E402

from benchmarks import common  # noqa: E402
from benchmarks.common import postgres_database  # noqa: E402
from portal import audit  # noqa: E402
from portal.app import create_app  # noqa: E402
from portal.extensions import db  # noqa: E402
from portal.trail import services  # noqa: E402
from tenants.models import District, School  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300, help="timed writes per measure")
    parser.add_argument("--threads", type=int, default=4, help="concurrent writers to one chain (PostgreSQL)")
    parser.add_argument("--entries", type=int, default=20000, help="entries in the chain that is verified")
    args = common.parse_args(parser, smoke={"runs": 5, "threads": 2, "entries": 200})
    with tempfile.TemporaryDirectory() as folder:
        bench("SQLite", f"sqlite:///{Path(folder) / 'bench.sqlite'}", folder, args)
        admin_url = os.environ.get("BENCH_DATABASE_URL", "")
        if admin_url:
            with postgres_database(admin_url, "audit") as url:
                bench("PostgreSQL", url, folder, args)
        else:
            print("PostgreSQL: skipped (set BENCH_DATABASE_URL to run it)")


def bench(label: str, url: str, folder: str, args: argparse.Namespace) -> None:
    app = create_app({"DATABASE_URL": url, "SECRET_KEY": "bench", "REDIS_URL": "", "PRODUCTION": False},
                     instance_path=str(Path(folder) / label))
    from flask_migrate import upgrade

    with app.app_context():
        upgrade(directory=str(PROJECT_ROOT / "migrations"))
        district = District(code="bench", name="Phòng bench", city="Thành phố")
        db.session.add(district)
        db.session.flush()
        school = School(district_id=district.id, code="bench", name="Trường bench", commune="Xã")
        db.session.add(school)
        db.session.commit()
        school_id = school.id
        chained = timed(args.runs, lambda: _chained(school_id))
        plain = timed(args.runs, lambda: _plain(school_id))
        print(f"{label}: one audit write + commit, chained: median {chained[0]:.2f} ms, p95 {chained[1]:.2f} ms; "
              f"unchained insert: median {plain[0]:.2f} ms, p95 {plain[1]:.2f} ms")
        # The unchained rows would read as broken: remove them (the archive's controlled deletion).
        if db.engine.dialect.name == "postgresql":
            db.session.execute(sa.text("SELECT set_config('hocba.audit_archive', 'on', true)"))
        db.session.execute(audit.AuditEntry.__table__.delete().where(audit.AuditEntry.__table__.c.chain == "bench"))
        db.session.commit()
    if label == "PostgreSQL":
        print(f"{label}: {args.threads} threads on one chain: {_throughput(app, school_id, args.threads):.0f} "
              "entries/s")
    with app.app_context():
        _fill(school_id, args.entries)
        start = time.perf_counter()
        reports = services.verify_chains(check_signatures=False)
        seconds = time.perf_counter() - start
        walked = sum(r.entries for r in reports)
        assert all(r.ok for r in reports), [str(b) for r in reports for b in r.breaks]
        print(f"{label}: verify_chains walked {walked} entries in {seconds:.2f} s ({walked / seconds:.0f} entries/s)")
    with app.app_context():
        db.engine.dispose()


def timed(runs: int, action) -> tuple[float, float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        action()
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.95) - 1]


def _chained(school_id: int) -> None:
    audit.record("bench.change", actor=None, school_id=school_id, summary="Một thay đổi", changes={"a": [1, 2]})
    db.session.commit()


_plain_seq = iter(range(1, 10**9))


def _plain(school_id: int) -> None:
    # The same ORM write as before the chain: an entry whose hash is already set is not chained.
    entry = audit.record("bench.plain", actor=None, school_id=school_id, summary="Một thay đổi",
                         changes={"a": [1, 2]})
    entry.chain, entry.seq, entry.prev_hash, entry.entry_hash = "bench", next(_plain_seq), "", "-"
    db.session.commit()


def _throughput(app: Flask, school_id: int, threads: int, per_thread: int = 200) -> float:
    def writer() -> None:
        with app.app_context():
            for _ in range(per_thread):
                _chained(school_id)

    workers = [threading.Thread(target=writer) for _ in range(threads)]
    start = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return threads * per_thread / (time.perf_counter() - start)


def _fill(school_id: int, count: int) -> None:
    with db.session.no_autoflush:
        for n in range(count):
            audit.record("bench.fill", actor=None, school_id=school_id, summary=f"{n}")
            if n % 1000 == 999:
                db.session.commit()
    db.session.commit()


if __name__ == "__main__":
    main()
