"""Benchmark: the two heaviest teacher pages under load, through gunicorn on PostgreSQL.

    BENCH_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres \\
        .venv/bin/python benchmarks/pages_load.py [--seconds 20] [--pupils 35] [--concurrency 8] [--workers 2]

PostgreSQL only: builds a throwaway database (benchmarks/common.py) with one school and a 35-pupil
grade-5 class rated in every period (the class summary benchmark's data: levels, scores, year results,
awards), with comments and the measurements of the year end. Starts `gunicorn -c gunicorn.conf.py`
(`wsgi:app`, the repository's settings: threaded workers) with 2 workers on a free loopback port, in
the environment production runs in (PostgreSQL as an ordinary role, CSRF, JSON request logs, no test
mode), signs the class's homeroom teacher in as a browser does (the login form and its CSRF token),
then loads each page at concurrency 8 for `--seconds` with `wrk`:

- the class assessment grid of the year end (the page where the GVCN enters the qualities and
  competencies, `/grading/classes/<id>/periods/<id>`);
- the year-end results of the class (`/results/classes/<id>`).

Each page is loaded twice over, by two servers one after the other: as a page seen again (its rows kept
rendered for the school's data version, portal/pagecache.py: what every load of an unchanged page costs),
and with nothing kept (`PAGE_CACHE_BYTES=0`: what the first load after any change in the school costs).
It prints requests per second, p50 and p99 latency, the load average, and OK or OVER against the
target for each: >= 150 requests/s with p99 <= 150 ms on 2 workers. The database is ANALYZEd once built, and
the measurements start once the load average of the last minute is below 1.5 (`common.wait_for_quiet`).
Without `wrk` (Debian package wrk) it says so and falls back to a small Python load generator (threads,
keep-alive connections), whose figures are not comparable with wrk's. `--smoke` runs a couple of seconds per
page with the Python generator, so that CI needs no extra package; `--load wrk` or `--load python` chooses the
generator.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import resource
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))
import sqlalchemy as sa  # noqa: E402
from flask import Flask  # noqa: E402

from benchmarks import common  # noqa: E402
from benchmarks.class_summary import PASSWORD, build_class  # noqa: E402
from benchmarks.common import postgres_database  # noqa: E402
from portal.app import create_app  # noqa: E402
from portal.assessment.models import PeriodNote, TraitRating  # noqa: E402
from portal.extensions import db  # noqa: E402
from tenants.scoping import school_scope  # noqa: E402

TARGET_RPS = 150
TARGET_P99_MS = 150


@dataclass
class Figures:
    requests: int
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=20, help="load time per page")
    parser.add_argument("--pupils", type=int, default=35, help="pupils in the class")
    parser.add_argument("--concurrency", type=int, default=8, help="open connections")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--load", choices=("auto", "wrk", "python"), default="auto",
                        help="load generator: wrk when installed (auto), or the Python fallback")
    args = common.parse_args(parser, smoke={"seconds": 2, "pupils": 5, "load": "python"})
    admin_url = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    generator = "wrk" if args.load == "auto" else args.load
    if generator == "wrk" and shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install wrk): using the Python load generator instead; its figures "
              "are NOT comparable with wrk's")
        generator = "python"
    elif generator == "python" and not args.smoke:
        print("Python load generator: its figures are NOT comparable with wrk's")
    with tempfile.TemporaryDirectory() as folder, postgres_database(admin_url, "pages") as url:
        app = create_app({"DATABASE_URL": url, "SECRET_KEY": "bench", "REDIS_URL": "", "TESTING": True,
                          "SESSION_COOKIE_SECURE": False, "PASSWORD_HASH_METHOD": "pbkdf2:sha256:1000"},
                         instance_path=str(Path(folder) / "setup"))
        from flask_migrate import upgrade

        with app.app_context():
            upgrade(directory=str(PROJECT_ROOT / "migrations"))
        school_code, username, class_id, period_id = build(app, args.pupils)
        with app.app_context():
            # Statistics, as a database that has lived a while has them (autovacuum would gather them at
            # some moment of the run, and the plans of the pages' joins change when it does).
            with db.engine.begin() as connection:
                connection.execute(sa.text("ANALYZE"))
            db.engine.dispose()
        pages = {
            "class assessment grid (CN)": f"/s/{school_code}/grading/classes/{class_id}/periods/{period_id}",
            "year-end results": f"/s/{school_code}/results/classes/{class_id}",
        }
        if not args.smoke:
            common.wait_for_quiet()  # building the class left the cores busy; another benchmark may be running
        print(f"class of {args.pupils} pupils; gunicorn, {args.workers} workers; {generator}, "
              f"{args.concurrency} connections, {args.seconds} s per page; load average at start "
              f"{os.getloadavg()[0]:.2f}")
        for kept, heading in ((True, "seen again (the rows kept rendered, portal/pagecache.py)"),
                              (False, "first view after a change (nothing kept: PAGE_CACHE_BYTES=0)")):
            print(heading)
            server = gunicorn(url, Path(folder), args.workers, page_cache=kept)
            with server as base:
                cookie = sign_in(base, username)
                for label, path in pages.items():
                    check_page(base, path, cookie)
                    load(generator, base + path, cookie, args.concurrency, 1)  # warm-up: templates, connections
                    before, cpu = os.getloadavg()[0], server_cpu(server.process.pid, admin_url, url)
                    generator_cpu = load_generator_cpu(generator)
                    figures = load(generator, base + path, cookie, args.concurrency, args.seconds)
                    spent = cpu_spent(cpu, server_cpu(server.process.pid, admin_url, url))
                    spent["load generator"] = load_generator_cpu(generator) - generator_cpu
                    report(label, figures, before, os.getloadavg()[0], spent)
                    check_page(base, path, cookie)  # still signed in: the figures were of the page, not a redirect


def build(app: Flask, pupils: int) -> tuple[str, str, int, int]:
    """The class summary benchmark's class, with a comment on every year-end trait and its measurements."""
    school, user, class_id, period_id = build_class(app, pupils)
    with app.app_context(), school_scope(school.id):
        db.session.execute(sa.update(TraitRating).where(TraitRating.period_id == period_id)
                           .values(comment="Em thực hiện tốt, tích cực tham gia các hoạt động của lớp."))
        enrolments = db.session.scalars(sa.select(TraitRating.enrolment_id).distinct()
                                        .where(TraitRating.period_id == period_id)).all()
        for index, enrolment_id in enumerate(enrolments):
            db.session.add(PeriodNote(school_id=school.id, enrolment_id=enrolment_id, period_id=period_id,
                                      height_cm=125 + index % 15, weight_kg=24.5 + index % 9,
                                      absent_excused=index % 3, absent_unexcused=0))
        db.session.commit()
    return school.code, user.username, class_id, period_id


class gunicorn:
    """`gunicorn -c gunicorn.conf.py` on a free loopback port, in a production-like environment."""

    def __init__(self, url: str, folder: Path, workers: int, *, page_cache: bool = True) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.log_path = folder / "gunicorn.log"
        self.env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "FLASK_DEBUG"}}
        self.env.update(DATABASE_URL=url, REDIS_URL="", SECRET_KEY=secrets.token_hex(32),
                        WRAPPING_KEYS=secrets.token_hex(32), PORTAL_INSTANCE_PATH=str(folder / "instance"),
                        SESSION_COOKIE_SECURE="false", PRODUCTION="false", GUNICORN_WORKERS=str(workers),
                        GUNICORN_BIND=f"127.0.0.1:{self.port}")
        if not page_cache:
            self.env["PAGE_CACHE_BYTES"] = "0"

    def __enter__(self) -> str:
        program = Path(sys.executable).parent / "gunicorn"
        self.log = self.log_path.open("wb")
        self.process = subprocess.Popen([str(program), "-c", str(PROJECT_ROOT / "gunicorn.conf.py")],
                                        cwd=PROJECT_ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"gunicorn stopped: {self.log_path.read_text()[-3000:]}")
            try:
                if request(base, "GET", "/login")[0] == 200:
                    return base
            except OSError:
                time.sleep(0.2)
        raise SystemExit("gunicorn did not answer within 60 s")

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


def request(base: str, method: str, path: str, *, cookie: str = "",
            form: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
    parts = urllib.parse.urlsplit(base)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    headers = {"Cookie": cookie} if cookie else {}
    body = None
    if form is not None:
        body = urllib.parse.urlencode(form)
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read().decode()
    finally:
        connection.close()


def _session_cookie(headers: dict[str, str], cookie: str) -> str:
    found = re.match(r"(session=[^;]*)", headers.get("set-cookie", ""))
    return found.group(1) if found else cookie


def sign_in(base: str, username: str) -> str:
    """The session cookie of the teacher, signed in through the login form with its CSRF token."""
    status, headers, page = request(base, "GET", "/login")
    cookie = _session_cookie(headers, "")
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page)
    assert status == 200 and token, "no login form"
    status, headers, _page = request(base, "POST", "/login", cookie=cookie,
                                     form={"csrf_token": token.group(1), "username": username, "password": PASSWORD})
    assert status == 302, f"login refused ({status})"
    cookie = _session_cookie(headers, cookie)
    # The first page shows (and so clears) the notices flashed at login: the loaded pages are then all alike.
    status, headers, _page = request(base, "GET", headers["location"], cookie=cookie)
    return _session_cookie(headers, cookie)


def check_page(base: str, path: str, cookie: str) -> None:
    status, _headers, page = request(base, "GET", path, cookie=cookie)
    assert status == 200 and "<table" in page, f"{path} answered {status}"


def load(generator: str, url: str, cookie: str, concurrency: int, seconds: int) -> Figures:
    if generator == "wrk":
        return wrk(url, cookie, concurrency, seconds)
    return python_load(url, cookie, concurrency, seconds)


def wrk(url: str, cookie: str, concurrency: int, seconds: int) -> Figures:
    """`wrk --latency` with the session cookie; its requests/s and latency percentiles."""
    threads = min(2, concurrency)
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{concurrency}", f"-d{seconds}s", "--latency", "--timeout", "10s",
                          "-H", f"Cookie: {cookie}", url], capture_output=True, text=True, check=True).stdout

    def milliseconds(percent: str) -> float:
        found = re.search(rf"^\s*{percent}%\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
        assert found, out
        return float(found.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[found.group(2)]

    count = re.search(r"(\d+) requests in", out)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*?(\d+) read, (\d+) write, (\d+) timeout", out)
    assert rate and count, out
    failed = int(bad.group(1)) if bad else 0
    if errors:
        failed += sum(int(n) for n in errors.groups())
    return Figures(int(count.group(1)), float(rate.group(1)), milliseconds("50"), milliseconds("99"), failed)


def python_load(url: str, cookie: str, concurrency: int, seconds: int) -> Figures:
    """`concurrency` threads, each with one keep-alive connection, requesting the page for `seconds`."""
    parts = urllib.parse.urlsplit(url)
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop = time.perf_counter() + seconds

    def client() -> None:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        mine: list[float] = []
        failed = 0
        while time.perf_counter() < stop:
            start = time.perf_counter()
            try:
                connection.request("GET", parts.path, headers={"Cookie": cookie})
                response = connection.getresponse()
                response.read()
                if response.status != 200:
                    failed += 1
            except (OSError, http.client.HTTPException):
                failed += 1
                connection.close()
                connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
            mine.append((time.perf_counter() - start) * 1000)
        connection.close()
        with lock:
            latencies.extend(mine)
            errors[0] += failed

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    cuts = statistics.quantiles(latencies, n=100) if len(latencies) >= 2 else latencies * 99
    return Figures(len(latencies), len(latencies) / elapsed, statistics.median(latencies), cuts[98], errors[0])


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc; 0 when it is gone or unreadable)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_cpu(master: int, admin_url: str, url: str) -> dict[str, dict[int, float]]:
    """CPU time so far of each gunicorn worker and of each PostgreSQL backend serving the database."""
    try:
        workers = [int(p) for p in Path(f"/proc/{master}/task/{master}/children").read_text().split()]
    except OSError:
        workers = []
    engine = sa.create_engine(admin_url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.connect() as conn:
        backends = conn.scalars(sa.text("select pid from pg_stat_activity where datname = :d"),
                                {"d": sa.engine.make_url(url).database}).all()
    engine.dispose()
    return {"gunicorn": {pid: _cpu_seconds(pid) for pid in workers},
            "postgres": {pid: _cpu_seconds(pid) for pid in backends}}


def load_generator_cpu(generator: str) -> float:
    """CPU seconds of the load generator so far: wrk runs as a child this process waits for; the Python
    generator's threads are this process."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN if generator == "wrk" else resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def cpu_spent(before: dict[str, dict[int, float]], after: dict[str, dict[int, float]]) -> dict[str, float]:
    """CPU seconds spent between the two readings, per side (a process started meanwhile counts from 0)."""
    return {side: sum(cpu - before[side].get(pid, 0.0) for pid, cpu in after[side].items()) for side in after}


def report(label: str, figures: Figures, load_before: float, load_after: float, cpu: dict[str, float]) -> None:
    ok = figures.requests_per_second >= TARGET_RPS and figures.p99_ms <= TARGET_P99_MS and not figures.errors
    per_request = {side: seconds * 1000 / max(figures.requests, 1) for side, seconds in cpu.items()}
    print(f"  {label:<28} {figures.requests_per_second:7.1f} req/s   p50 {figures.p50_ms:6.1f} ms   "
          f"p99 {figures.p99_ms:6.1f} ms   errors {figures.errors}   load {load_before:.1f}->{load_after:.1f}   "
          f"target >= {TARGET_RPS} req/s, p99 <= {TARGET_P99_MS} ms: {'OK' if ok else 'OVER'}")
    print(f"  {'':<28} server CPU per request: gunicorn {per_request['gunicorn']:.1f} ms, "
          f"PostgreSQL {per_request['postgres']:.1f} ms ({figures.requests} requests)")
    # All three share the machine's cores: at the target rate each request may cost this much CPU in all.
    budget = (os.cpu_count() or 1) * 1000 / TARGET_RPS
    print(f"  {'':<28} with the load generator ({per_request['load generator']:.1f} ms): "
          f"{sum(per_request.values()):.1f} ms of CPU per request, against {budget:.1f} ms on "
          f"{os.cpu_count()} cores at {TARGET_RPS} requests/s")


if __name__ == "__main__":
    main()
