"""gunicorn's settings for the portal: `gunicorn -c gunicorn.conf.py` (the README's Production section).

Threaded workers (gthread): a worker's main thread reports to the arbiter while its threads serve, so a
long download (a ministry bundle, an export streamed from the file store in 1 MB chunks to a slow client)
is never cut by `timeout`; `timeout` only restarts a worker that stopped answering altogether.
`kill -HUP` (systemctl reload) starts new workers with the new code and lets the old ones finish what they
serve within `graceful_timeout`; SIGTERM (systemctl stop) does the same before exiting.
Every value can be moved by the environment variable named beside it.
"""

import os

wsgi_app = "wsgi:app"
bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
# worker_class: gthread, spreading connections over the workers (BalancedThreadWorker, below)
workers = int(os.environ.get("GUNICORN_WORKERS", str(2 * (os.cpu_count() or 1))))
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "60"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "300"))
keepalive = 5
# Fresh workers now and then: memory a worker grew for one large request is handed back. Not too often: a
# new worker spends ~2.4 s of CPU loading and warming up (wsgi.py), a cost every request shares.
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "20000"))
max_requests_jitter = max_requests // 10
# The portal writes one JSON line per request itself (request id, user, school, status, duration).
accesslog = None
errorlog = "-"
# The reverse proxy in front; the portal's PROXY_HOPS decides which X-Forwarded-* it believes.
forwarded_allow_ips = os.environ.get("GUNICORN_FORWARDED_ALLOW_IPS", "127.0.0.1")
# Reloads and stops go through signals (systemd's ExecReload sends HUP); no control socket in the home folder.
control_socket_disable = True


# --- spreading connections over the workers -----------------------------------------------------------------
#
# The workers share one listening socket and race to accept. A worker that is awake wins every race of a
# burst: a handful of keep-alive clients opening their connections together (a browser, a proxy's upstream
# pool, a load test) all land on one worker, which then serves them on one core (its threads share one
# interpreter lock) while the other worker idles. Each worker publishes how many connections it holds in a
# small shared table made here, before the fork; a worker takes a new connection only while it holds no more
# than the least loaded of the others. A worker that stopped reporting for a few seconds (gone, or stuck) is
# left out, so one that hangs never stops the others from accepting.

import multiprocessing  # noqa: E402
import time  # noqa: E402

from gunicorn.workers.gthread import ThreadWorker  # noqa: E402

_SLOTS = 64
_STALE_AFTER = 3.0  # seconds without a report; a worker reports at least once a second (its poll timeout)
_LOOK_AGAIN = 0.05  # seconds: how long a worker that stepped back waits at most before it looks again
_claims = multiprocessing.Lock()
_pids = multiprocessing.RawArray("q", _SLOTS)
_connections = multiprocessing.RawArray("q", _SLOTS)
_reported_at = multiprocessing.RawArray("d", _SLOTS)


def fair_to_accept(mine: int, others: list[int]) -> bool:
    """Whether a worker holding `mine` connections takes another, given the live others' counts."""
    return not others or mine <= min(others)


class BalancedThreadWorker(ThreadWorker):
    """gunicorn's threaded worker, accepting only while no other worker holds fewer connections."""

    slot = -1

    def run(self) -> None:
        # In the table only while it can take connections: from when its app is loaded (a booting worker
        # holding none would make the others step back for one that cannot serve yet) until it leaves.
        now = time.monotonic()
        with _claims:
            for slot in range(_SLOTS):
                if _pids[slot] == 0 or now - _reported_at[slot] > _STALE_AFTER:
                    _pids[slot], _connections[slot], _reported_at[slot] = self.pid, 0, now
                    self.slot = slot
                    break
        try:
            super().run()
        finally:
            self._leave()

    def _leave(self) -> None:
        if self.slot >= 0:
            with _claims:
                if _pids[self.slot] == self.pid:
                    _pids[self.slot] = 0
            self.slot = -1

    def accept(self, listener: object) -> None:
        super().accept(listener)
        self._report_and_decide()  # at once: in a burst, the next connection may be this one's again

    def wait_for_and_dispatch_events(self, timeout: float) -> None:
        if not self._report_and_decide():
            # Look again soon: the others may all have stepped back on counts this one has since changed.
            timeout = min(timeout, _LOOK_AGAIN)
        super().wait_for_and_dispatch_events(timeout)

    def _report_and_decide(self) -> bool:
        """Publish this worker's count, then accept or step back; whether it accepts (True when not its call)."""
        if self.slot < 0:
            return True
        if not self.alive:
            # Leaving (max_requests reached, a reload, a stop): it takes no new connection, so the others must
            # not step back for it while it finishes what it holds.
            self._leave()
            return True
        now = time.monotonic()
        _connections[self.slot], _reported_at[self.slot] = self.nr_conns, now
        if self.nr_conns >= self.worker_connections:
            return True  # gunicorn's own rules decide (its run loop)
        others = [_connections[s] for s in range(_SLOTS)
                  if s != self.slot and _pids[s] and now - _reported_at[s] <= _STALE_AFTER]
        fair = fair_to_accept(self.nr_conns, others)
        self.set_accept_enabled(fair)
        return fair


worker_class = BalancedThreadWorker
