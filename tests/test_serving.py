"""Serving at scale: a 100 MB file downloads completely through gunicorn, with the repository's
gunicorn.conf.py, to a client slower than gunicorn's worker timeout."""

from __future__ import annotations

import hashlib
import http.client
import http.cookiejar
import re
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from portal.app import PROJECT_ROOT
from portal.extensions import db
from portal.jobs import JobRun, JobState
from portal.storage import storage
from tenants.roles import Role
from tenants.scoping import all_schools
from tests.conftest import PASSWORD, worker_env

SIZE = 100 * 1024 * 1024
TIMEOUT = 2  # gunicorn's worker timeout for the test: the download takes several times longer


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_a_100_mb_download_to_a_slow_client_is_not_cut(app, make, tmp_path):
    admin = make.user(district_role=Role.DISTRICT_ADMIN)
    block = hashlib.sha256(b"goi hoc ba").digest() * (1024 * 1024 // 32)  # 1 MB, not all one byte
    data = block * (SIZE // len(block))
    with app.app_context(), all_schools():
        digest = storage().put(data)
        run = JobRun(kind="interop.bundle", title="Gói học bạ nộp Bộ", school_id=None, params={},
                     created_by_id=admin.id, state=JobState.FINISHED, progress=100,
                     result={"digest": digest, "filename": "goi-hoc-ba.zip", "mimetype": "application/zip"})
        db.session.add(run)
        db.session.commit()
        run_id = run.id
    expected = hashlib.sha256(data).hexdigest()
    del data, block

    port = _free_port()
    env = dict(worker_env(app), STORAGE_BACKEND=app.config["STORAGE_BACKEND"], LOG_FORMAT="text",
               GUNICORN_BIND=f"127.0.0.1:{port}", GUNICORN_WORKERS="1", GUNICORN_THREADS="2",
               GUNICORN_TIMEOUT=str(TIMEOUT), GUNICORN_GRACEFUL_TIMEOUT="5")
    gunicorn = Path(sys.executable).parent / "gunicorn"
    log = (tmp_path / "gunicorn.log").open("wb")
    server = subprocess.Popen([str(gunicorn), "-c", str(Path(PROJECT_ROOT) / "gunicorn.conf.py")],
                              cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(base + "/healthz", timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.2)
        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        page = opener.open(base + "/login", timeout=10).read().decode()
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
        opener.open(base + "/login", data=urllib.parse.urlencode(
            {"username": admin.username, "password": PASSWORD, "csrf_token": token}).encode(), timeout=10)
        cookie = "; ".join(f"{c.name}={c.value}" for c in jar)

        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.request("GET", f"/district/jobs/{run_id}/download", headers={"Cookie": cookie})
        response = connection.getresponse()
        assert response.status == 200
        assert response.getheader("Content-Disposition") == 'attachment; filename="goi-hoc-ba.zip"'
        received, hasher, started = 0, hashlib.sha256(), time.monotonic()
        while chunk := response.read(1024 * 1024):
            hasher.update(chunk)
            received += len(chunk)
            time.sleep(0.04)  # a slow client: ~4 s for 100 MB, twice gunicorn's timeout
        took = time.monotonic() - started
        connection.close()
    finally:
        server.terminate()
        server.wait(30)
        log.close()
    assert took > 2 * TIMEOUT, "the client was not slower than the worker timeout: the test proves nothing"
    assert received == SIZE and hasher.hexdigest() == expected, (received, (tmp_path / "gunicorn.log").read_text())
