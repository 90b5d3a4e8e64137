"""The repository's gunicorn.conf.py spreads kept-alive connections over its workers, instead of one worker
taking them all and serving them on one core while the other idles."""

from __future__ import annotations

import contextlib
import http.client
import os
import runpy
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from portal.app import PROJECT_ROOT

CONFIG = Path(PROJECT_ROOT) / "gunicorn.conf.py"


def pid_app(environ: dict, start_response: Callable) -> list[bytes]:
    """Answers with the id of the worker process that served the request, after a little work."""
    time.sleep(0.02)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(os.getpid()).encode()]


def test_a_worker_takes_a_connection_only_while_no_other_holds_fewer():
    fair_to_accept = runpy.run_path(str(CONFIG))["fair_to_accept"]
    assert fair_to_accept(0, [])
    assert fair_to_accept(5, [])  # alone (or the others stopped reporting): it accepts
    assert fair_to_accept(3, [3, 4])
    assert not fair_to_accept(4, [3, 9])


def slow_boot_app() -> Callable:
    """`pid_app`, from a worker that takes a few seconds to load it (as the portal's workers warm up)."""
    time.sleep(3)
    return pid_app


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def _serving(tmp_path: Path, app: str) -> Iterator[int]:
    """gunicorn with the repository's configuration and 2 workers serving `app`; its port once both answer and
    the connections of that check are closed."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUNICORN_")}
    env.update(GUNICORN_BIND=f"127.0.0.1:{port}", GUNICORN_WORKERS="2")
    gunicorn = Path(sys.executable).parent / "gunicorn"
    log = (tmp_path / "gunicorn.log").open("wb")
    server = subprocess.Popen([str(gunicorn), "-c", str(CONFIG), app],
                              cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:  # both workers up: they answer with two different ids
            try:
                seen = {_get(port) for _ in range(20)}
            except OSError:
                seen = set()
            if len(seen) == 2:
                break
            assert time.monotonic() < deadline and server.poll() is None, (tmp_path / "gunicorn.log").read_text()
            time.sleep(0.2)
        time.sleep(0.5)  # the check's connections closed: both workers hold none
        yield port
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def _kept_alive(port: int, count: int) -> list[tuple[http.client.HTTPConnection, str]]:
    """`count` connections opened one after another and kept open, each with the worker id that served it."""
    opened = []
    for _ in range(count):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("GET", "/")
        opened.append((connection, connection.getresponse().read().decode()))
    return opened


@pytest.mark.slow
def test_kept_alive_connections_are_spread_over_both_workers(tmp_path):
    with _serving(tmp_path, "tests.test_gunicorn_balance:pid_app") as port:
        # Connections opened one after another and kept open (browsers, a proxy's pool, a load test): each
        # goes to the worker holding fewer, and so they alternate.
        opened = _kept_alive(port, 6)
        for connection, pid in opened:  # kept alive: one connection, one worker
            connection.request("GET", "/")
            assert connection.getresponse().read().decode() == pid
            connection.close()
        assert sorted(Counter(pid for _c, pid in opened).values()) == [3, 3], opened


@pytest.mark.slow
def test_no_one_waits_for_a_worker_that_leaves_or_is_still_loading(tmp_path):
    """A worker that leaves (max_requests, a reload, a stop) and the one that replaces it while it loads its
    app hold no connection: the worker that stays must not step back for them, or new clients wait seconds."""
    with _serving(tmp_path, "tests.test_gunicorn_balance:slow_boot_app()") as port:
        held = _kept_alive(port, 3)  # two on one worker, one on the other
        counts = Counter(pid for _c, pid in held)
        assert sorted(counts.values()) == [1, 2], counts
        staying, leaving = (pid for pid, _n in counts.most_common())
        os.kill(int(leaving), signal.SIGTERM)  # the worker holding fewer leaves; its replacement loads for 3 s
        time.sleep(0.5)
        started = time.monotonic()
        assert _get(port) == staying
        assert time.monotonic() - started < 1.5
        for connection, _pid in held:
            connection.close()


def _get(port: int) -> str:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", "/")
        return connection.getresponse().read().decode()
    finally:
        connection.close()
