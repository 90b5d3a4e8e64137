"""The RQ worker: `python worker.py` works the portal's queue (REDIS_URL must be set).

Run as many as the load needs, on any machine that reaches the same PostgreSQL and Redis.
`--burst` works until the queue is empty, then exits.
"""

from __future__ import annotations

import argparse
import sys

from redis import Redis
from rq import Queue, Worker

from portal.app import create_app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    args = parser.parse_args(argv)
    app = create_app()
    if not app.config["REDIS_URL"]:
        print("REDIS_URL is not set: without it the web process runs jobs itself.", file=sys.stderr)
        return 2
    connection = Redis.from_url(app.config["REDIS_URL"])
    worker = Worker([Queue(app.config["JOB_QUEUE"], connection=connection)], connection=connection)
    worker.work(burst=args.burst, logging_level="INFO")
    return 0


if __name__ == "__main__":
    sys.exit(main())
