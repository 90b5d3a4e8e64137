"""Benchmark: checking an uploaded, issued 5-year record PDF with three signatures (GVCN, Hiệu trưởng, con dấu).

    .venv/bin/python benchmarks/verify_upload.py [--runs 30] [--http-runs 60] [--smoke]

Builds one grade-5 record covering five school years with the records pipeline, signs its three fields with
the signing engine (demo CA keys), marks it issued, then times, on SQLite in a temporary folder (and on
PostgreSQL when BENCH_DATABASE_URL is set, see class_summary.py):

- in this process, prepared as a web worker is (`portal.app.prepare_process`: warm-up, frozen start-up
  heap): the whole check as the upload page and the API run it (`portal.verify.services.check_file`:
  SHA-256, signature validation against the trust root, registry lookup, lookup log and audit entry); the
  same through Flask's test client (`POST /api/verify/file`); `validate_pdf` alone;
- over real HTTP, against a `gunicorn -c gunicorn.conf.py` process (`wsgi:app`, 2 workers, production
  settings but the database and the trust root made here): after a few warm-up requests, `--http-runs`
  requests each of `POST /api/verify/file` and of the upload page (`POST /verify/upload` with its CSRF
  token), alternating. Target: p95 <= 200 ms over HTTP.

Every line prints median, p95 and p99 (wall clock), CPU time (this process; for gunicorn, its workers'
CPU per request) and the load average, since the machine may be shared.
"""

from __future__ import annotations

import argparse
import http.client
import io
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))
from flask import Flask  # noqa: E402

from benchmarks import common  # noqa: E402
from benchmarks.common import postgres_database  # noqa: E402
from portal.app import create_app, prepare_process  # noqa: E402
from portal.extensions import db  # noqa: E402
from portal.signing.validate import validate_pdf  # noqa: E402
from portal.verify import services  # noqa: E402
from tenants.models import District, Membership, MembershipRole, School, User  # noqa: E402
from tenants.roles import Role  # noqa: E402
from tenants.scoping import all_schools  # noqa: E402
from tests import verify_factory as vf  # noqa: E402
from tests.records_factory import assessed_class, generate  # noqa: E402

TARGET_P95_MS = 200  # over HTTP
YEARS = 5
HTTP_WARM_UP = 6  # requests before the timed ones: each gunicorn worker's first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="timed repetitions of each in-process measure")
    parser.add_argument("--http-runs", type=int, default=60, help="timed requests of each kind to gunicorn")
    parser.add_argument("--years", type=int, default=YEARS, help="school years the record covers")
    args = common.parse_args(parser, smoke={"runs": 2, "http_runs": 2, "years": 1})
    with tempfile.TemporaryDirectory() as folder:
        bench("SQLite", f"sqlite:///{Path(folder) / 'bench.sqlite'}", folder, args)
        admin_url = os.environ.get("BENCH_DATABASE_URL", "")
        if admin_url:
            with postgres_database(admin_url, "verify") as url:
                bench("PostgreSQL", url, folder, args)
        else:
            print("PostgreSQL: skipped (set BENCH_DATABASE_URL to run it)")


def bench(label: str, url: str, folder: str, args: argparse.Namespace) -> None:
    runs = args.runs
    root = vf.write_root(Path(folder), vf.trusted_ca())
    # The record is signed here without a timestamp authority (B-B): the policy is asked for that level.
    settings = {"DATABASE_URL": url, "SECRET_KEY": "bench", "REDIS_URL": "", "SIGNATURE_LEVEL": "B-B",
                "SESSION_COOKIE_SECURE": False, "TRUST_ROOTS": (root,), "VERIFY_UPLOADS_PER_ADDRESS": 1_000_000}
    app = create_app({**settings, "TESTING": True}, instance_path=str(Path(folder) / label.lower()))
    from flask_migrate import upgrade

    with app.app_context():
        upgrade(directory=str(PROJECT_ROOT / "migrations"))
    data = issued_record(app, args.years)
    roots = None
    with app.app_context():
        roots = services.configured_trust_roots()
        check = services.check_file(data, address_hash="bench")
        assert check is not None and check.verdict == "registered_current", check and check.problems
    prepare_process(app)  # as wsgi.py prepares each gunicorn worker

    def whole_check() -> None:
        with app.app_context():
            result = services.check_file(data, address_hash="bench")
            db.session.commit()
            assert result is not None and result.signatures_ok

    client = app.test_client()

    def http() -> None:
        response = client.post("/api/verify/file", data={"file": (io.BytesIO(data), "hoc-ba.pdf")},
                               content_type="multipart/form-data")
        assert response.status_code == 200 and response.get_json()["ok"]

    def validation_only() -> None:
        assert validate_pdf(data, roots).ok

    print(f"{label}: one issued {args.years}-year record, {len(data) // 1024} KB, 3 signatures, {runs} runs in this "
          f"process; load average {load()}")
    report("  check_file (whole check)", whole_check, runs)
    report("  POST /api/verify/file (test client)", http, runs)
    report("  validate_pdf alone", validation_only, runs)
    with app.app_context():
        db.engine.dispose()
    over_gunicorn(settings, app.instance_path, data, args.http_runs)


def issued_record(app: Flask, years: int) -> bytes:
    """A grade-5 record of `years` school years made by the records pipeline, signed three times and issued;
    its file."""
    from portal.auth.services import hash_password

    with app.app_context(), all_schools():
        district = District(code="bench", name="Phòng GD&ĐT Benchmark", city="Thành phố Hồ Chí Minh")
        db.session.add(district)
        db.session.flush()
        school = School(district_id=district.id, code="bench", name=vf.SCHOOL_NAME, commune="Nhà Bè")
        user = User(district_id=district.id, username="gvcn", full_name=vf.GVCN_NAME,
                    password_hash=hash_password("Matkhau2025"))
        db.session.add_all([school, user])
        db.session.flush()
        db.session.add(Membership(school_id=school.id, user_id=user.id,
                                  roles=[MembershipRole(school_id=school.id, role=Role.HOMEROOM_TEACHER)]))
        db.session.commit()
        db.session.refresh(school)
        db.session.refresh(user)
        db.session.expunge_all()
    assessed = assessed_class(app, school, user, pupils=1, years=years)
    version = vf.issue(app, school, generate(app, school, assessed.setup.class_id, user)[0].id)
    return vf.signed_file(app, version)


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def summary(timings: list[float]) -> tuple[float, float, float]:
    """Median, p95 and p99 of `timings` (with few timings, p99 is the largest)."""
    if len(timings) < 2:
        return timings[0], timings[0], timings[0]
    percentiles = statistics.quantiles(timings, n=100, method="inclusive")
    return statistics.median(timings), percentiles[94], percentiles[98]


def line(label: str, timings: list[float], cpu_ms: float, *, target: bool = False) -> str:
    median, p95, p99 = summary(timings)
    verdict = ""
    if target:
        verdict = "  OK" if p95 <= TARGET_P95_MS else f"  OVER the p95 <= {TARGET_P95_MS} ms target"
    return (f"{label:<40} median {median:7.1f}  p95 {p95:7.1f}  p99 {p99:7.1f} ms  CPU {cpu_ms:6.1f} ms"
            f"{verdict}")


def report(label: str, action: Callable[[], None], runs: int) -> None:
    for _ in range(min(3, runs)):
        action()  # warm-up: compiled statements, templates
    timings, cpu = [], []
    for _ in range(runs):
        start, start_cpu = time.perf_counter(), time.process_time()
        action()
        timings.append((time.perf_counter() - start) * 1000)
        cpu.append((time.process_time() - start_cpu) * 1000)
    # CPU time as well: on a shared, busy machine the wall clock also counts the waits for a core.
    print(line(label, timings, statistics.median(cpu)))


# --- over HTTP, against gunicorn ------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _gunicorn_env(settings: dict, instance_path: str, port: int) -> dict[str, str]:
    """Production settings (PRODUCTION is only off for the generated keys and the plain-HTTP cookie), the
    database and trust root made here, 2 workers as on the 2-core server."""
    return dict(os.environ, DATABASE_URL=settings["DATABASE_URL"], REDIS_URL="", SECRET_KEY="bench-" + "k" * 40,
                PORTAL_INSTANCE_PATH=instance_path, PRODUCTION="false", SESSION_COOKIE_SECURE="false",
                SIGNATURE_LEVEL=settings["SIGNATURE_LEVEL"], TRUST_ROOTS=",".join(settings["TRUST_ROOTS"]),
                VERIFY_UPLOADS_PER_ADDRESS=str(settings["VERIFY_UPLOADS_PER_ADDRESS"]),
                GUNICORN_BIND=f"127.0.0.1:{port}", GUNICORN_WORKERS="2")


def _cpu_ms(pids: list[int]) -> float:
    """User + system CPU time of these processes so far (Linux /proc), in ms."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total * 1000 / os.sysconf("SC_CLK_TCK")


def _workers(master: int) -> list[int]:
    children = Path(f"/proc/{master}/task/{master}/children")
    return [int(pid) for pid in children.read_text().split()] if children.exists() else []


class Client:
    """One keep-alive connection, as a browser or another system holds one; the session cookie kept."""

    def __init__(self, port: int) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.cookie = ""

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        headers = dict(headers or {}, Cookie=self.cookie) if self.cookie else dict(headers or {})
        self.connection.request(method, path, body=body, headers=headers)
        response = self.connection.getresponse()
        content = response.read()
        cookie = response.getheader("Set-Cookie")
        if cookie:
            self.cookie = cookie.split(";", 1)[0]
        return response.status, content


def _multipart(data: bytes, fields: dict[str, str]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
             for name, value in fields.items()]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="hoc-ba.pdf"\r\n'
                 "Content-Type: application/pdf\r\n\r\n".encode() + data + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def over_gunicorn(settings: dict, instance_path: str, data: bytes, runs: int) -> None:
    port = _free_port()
    log_path = Path(instance_path) / "gunicorn.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen([str(Path(sys.executable).parent / "gunicorn"), "-c",
                                   str(PROJECT_ROOT / "gunicorn.conf.py")], cwd=PROJECT_ROOT,
                                  env=_gunicorn_env(settings, instance_path, port), stdout=log,
                                  stderr=subprocess.STDOUT)
    try:
        _wait_for(server, port, log_path)
        api, page = Client(port), Client(port)

        def api_check() -> None:
            body, kind = _multipart(data, {})
            status, content = api.request("POST", "/api/verify/file", body, {"Content-Type": kind})
            assert status == 200 and b'"ok":true' in content.replace(b" ", b""), (status, content[:300])

        def page_check() -> None:
            status, form = page.request("GET", "/verify/upload")
            token = re.search(rb'name="csrf_token"[^>]*value="([^"]+)"', form)
            assert status == 200 and token, status
            body, kind = _multipart(data, {"csrf_token": token.group(1).decode()})
            status, content = page.request("POST", "/verify/upload", body, {"Content-Type": kind})
            assert status == 200 and b'data-verdict="registered_current"' in content, (status, content[-300:])

        for _ in range(min(HTTP_WARM_UP, runs)):
            api_check()
            page_check()
        pids = [server.pid, *_workers(server.pid)]
        timings: dict[str, list[float]] = {"api": [], "page": []}
        before_load, before_cpu = load(), _cpu_ms(pids)
        for _ in range(runs):
            for name, action in (("api", api_check), ("page", page_check)):
                start = time.perf_counter()
                action()
                timings[name].append((time.perf_counter() - start) * 1000)
        cpu_per_request = (_cpu_ms(pids) - before_cpu) / (2 * runs)
        print(f"  gunicorn wsgi:app, 2 workers, {runs} requests of each kind after {min(HTTP_WARM_UP, runs)} warm-up "
              f"pairs; load average {before_load} before, {load()} after")
        print(line("  POST /api/verify/file (gunicorn)", timings["api"], cpu_per_request, target=True))
        print(line("  upload page: GET + POST (gunicorn)", timings["page"], cpu_per_request, target=True))
        print("  (CPU: the gunicorn workers' time per request, both kinds averaged)")
    finally:
        server.terminate()
        server.wait(timeout=30)


def _wait_for(server: subprocess.Popen, port: int, log_path: Path) -> None:
    deadline = time.monotonic() + 120
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                pass
            status, _body = Client(port).request("GET", "/healthz")
            if status == 200:
                return
        except OSError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"gunicorn did not start:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.2)


if __name__ == "__main__":
    main()
