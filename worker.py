"""The RQ worker: `python worker.py` works the portal's queue (REDIS_URL must be set).

Run as many as the load needs, on any machine that reaches the same PostgreSQL and Redis.
`--burst` works until the queue is empty, then exits.

Besides the jobs, each worker reconciles the job rows with the queue every JOB_RECONCILE_SECONDS (a
job whose worker died is marked interrupted and, if it can, resumed; uploads whose retry is due are
queued). SIGTERM (systemd's stop) is a warm shutdown: the job under way finishes the item it is on,
puts the rest back on the queue and the worker exits.
"""

from __future__ import annotations

import argparse
import signal
import sys

from redis import Redis
from rq import Queue, Worker

from portal import jobs
from portal.app import create_app, prepare_process


class PortalWorker(Worker):
    def handle_warm_shutdown_request(self) -> None:
        super().handle_warm_shutdown_request()
        if self.horse_pid:
            # The job process stops at its next checkpoint and hands the rest back to the queue.
            self.kill_horse(sig=signal.SIGTERM)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    args = parser.parse_args(argv)
    app = create_app()
    if not app.config["REDIS_URL"]:
        print("REDIS_URL is not set: without it the web process runs jobs itself.", file=sys.stderr)
        return 2
    # Before the first job: each job's process is forked from this one, and runs in this app, warm and frozen.
    jobs.use_worker_app(app)
    prepare_process(app, jobs=True)
    connection = Redis.from_url(app.config["REDIS_URL"])
    if not args.burst:
        jobs.start_reconciler(app)
    worker = PortalWorker([Queue(app.config["JOB_QUEUE"], connection=connection)], connection=connection,
                          work_horse_killed_handler=jobs.horse_killed_handler(app))
    worker.work(burst=args.burst, logging_level="INFO")
    return 0


if __name__ == "__main__":
    sys.exit(main())
