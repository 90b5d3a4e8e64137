"""Benchmark: uploads per minute of issued records to the stand-in city server over loopback HTTP.

    .venv/bin/python benchmarks/city_upload.py [--records 1000] [--classes 40]

Builds one school with `--records` issued record versions (each a small PDF carrying its schema-valid
XML) in a temporary SQLite database (and on PostgreSQL too when BENCH_DATABASE_URL is set, see
benchmarks/README.md), starts the stand-in as its own process (`python -m standins.city`, checking hash,
XML, schema and metadata; signature validation is left out here: it costs ~150 ms per record at the
city's side, not the portal's), then runs the upload job's own code (`queue_uploads` + `send_pending`)
and prints the uploads per minute, with the stand-in's log checked: every record stored exactly once.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))
from benchmarks import common  # noqa: E402
from benchmarks.common import postgres_database  # noqa: E402
from portal.app import create_app  # noqa: E402
from portal.extensions import db  # noqa: E402
from portal.interop import uploads  # noqa: E402
from portal.interop.city_client import CityClient  # noqa: E402
from tenants.models import District, School  # noqa: E402
from tenants.scoping import school_scope  # noqa: E402
from tests.assessment_factory import make_year  # noqa: E402
from tests.city_helpers import issued_class  # noqa: E402

API_KEY = "khoa-do-hieu-nang"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_standin(folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "standins.city", "--port", str(port), "--data", str(folder),
                                "--api-key", API_KEY, "--skip", "signatures"], cwd=PROJECT_ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url + "/", timeout=1).close()
            return process, url
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("the stand-in did not start")


def bench(label: str, database_url: str, folder: str, records: int, classes: int) -> None:
    app = create_app({"DATABASE_URL": database_url, "SECRET_KEY": "bench", "TESTING": True},
                     instance_path=str(Path(folder) / label))
    from flask_migrate import upgrade

    with app.app_context():
        upgrade(directory=str(PROJECT_ROOT / "migrations"))
        district = District(code="nhabe", name="Phòng GD&ĐT Nhà Bè", city="TP.HCM")
        db.session.add(district)
        db.session.flush()
        school = School(district_id=district.id, code="lqd", name="Trường Tiểu học Lê Quang Định",
                        moet_code="79786401")
        db.session.add(school)
        db.session.commit()
        db.session.refresh(school)
        db.session.expunge(school)
    started = time.perf_counter()
    year_id = make_year(app, school)
    per_class = -(-records // classes)
    made = 0
    for n in range(classes):
        count = min(per_class, records - made)
        if count <= 0:
            break
        issued_class(app, school, pupils=count, name=f"5{chr(65 + n % 26)}{n // 26 or ''}", year_id=year_id,
                     code_prefix=f"B{n:02d}")
        made += count
    print(f"{label}: {made} issued versions built in {time.perf_counter() - started:.1f} s")
    process, url = start_standin(Path(folder) / f"city-{label}")
    try:
        client = CityClient(url, API_KEY, timeout=20)
        policy = uploads.RetryPolicy(max_attempts=5, first_wait=0.5, longest_wait=5, lease=25)
        with app.app_context(), school_scope(school.id):
            queued = uploads.queue_uploads(school)
            db.session.commit()
            began = time.perf_counter()
            outcome = uploads.send_pending(school.id, client, policy)  # one pass: the stand-in answers every one
            elapsed = time.perf_counter() - began
        log = json.loads(urllib.request.urlopen(url + "/_standin/log", timeout=30).read())
        stored = Counter(e["record_code"] for e in log if e["outcome"].startswith("stored"))
        ok = len(stored) == made and set(stored.values()) == {1}
        acknowledged = outcome.states.get("acknowledged", 0)
        print(f"{label}: {queued['uploads']} queued, {acknowledged} acknowledged, "
              f"{outcome.attempts} attempts in {elapsed:.1f} s -> {acknowledged * 60 / elapsed:.0f} "
              f"uploads per minute ({elapsed * 1000 / max(made, 1):.1f} ms each); "
              f"stored once each: {'yes' if ok else 'NO'}")
    finally:
        process.terminate()
        process.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument("--classes", type=int, default=40, help="classes the records are spread over (28 at most each)")
    args = common.parse_args(parser, smoke={'records': 4, 'classes': 2})
    with tempfile.TemporaryDirectory() as folder:
        bench("SQLite", f"sqlite:///{Path(folder) / 'bench.sqlite'}", folder, args.records, args.classes)
        admin_url = os.environ.get("BENCH_DATABASE_URL", "")
        if admin_url:
            with postgres_database(admin_url, "city") as url:
                bench("PostgreSQL", url, folder, args.records, args.classes)
        else:
            print("PostgreSQL: skipped (set BENCH_DATABASE_URL to run it)")


if __name__ == "__main__":
    main()
