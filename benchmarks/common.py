"""What the benchmark scripts share: a throwaway PostgreSQL database owned by an ordinary role, and waiting for a
quiet machine."""

from __future__ import annotations

import argparse
import contextlib
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa

# An ordinary role, so that row-level security applies as it does in production.
BENCH_ROLE = "hocba_bench_app"


@contextmanager
def postgres_database(admin_url: str, label: str) -> Iterator[str]:
    """A throwaway database on the server of `admin_url`; yields the URL the portal should use."""
    admin_url = admin_url.replace("postgresql://", "postgresql+psycopg://", 1)
    name = f"hocba_bench_{label}_{os.getpid()}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    parts = sa.engine.make_url(admin_url)
    with admin.connect() as conn:
        conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        owner = None
        try:
            if not conn.scalar(sa.text("select 1 from pg_roles where rolname = :r"), {"r": BENCH_ROLE}):
                conn.execute(sa.text(f"CREATE ROLE {BENCH_ROLE} LOGIN NOSUPERUSER NOBYPASSRLS"))
            owner = BENCH_ROLE
        except sa.exc.DBAPIError:
            print("PostgreSQL: cannot create an ordinary role; running as the given user (RLS may be bypassed)")
        conn.execute(sa.text(f"CREATE DATABASE {name}" + (f" OWNER {owner}" if owner else "")))
    url = parts.set(database=name)
    if owner:
        url = url.set(username=owner, password=None)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            if owner:  # the role goes too, unless another benchmark running now still owns a database
                with contextlib.suppress(sa.exc.DBAPIError):
                    conn.execute(sa.text(f"DROP ROLE IF EXISTS {BENCH_ROLE}"))
        admin.dispose()


QUIET_LOAD = 1.5  # the load average below which a measurement may start (the targets are stated at it)
QUIET_WAIT_SECONDS = 300


def wait_for_quiet() -> None:
    """Until the last minute's load average is below `QUIET_LOAD`, or `QUIET_WAIT_SECONDS` have passed."""
    deadline = time.monotonic() + QUIET_WAIT_SECONDS
    while os.getloadavg()[0] >= QUIET_LOAD and time.monotonic() < deadline:
        time.sleep(5)


def parse_args(parser: argparse.ArgumentParser, smoke: dict[str, object]) -> argparse.Namespace:
    """The script's arguments, with `--smoke`: the tiny sizes CI runs so that no benchmark rots unnoticed.

    Smoke figures prove the script still runs end to end; they are not measurements.
    """
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, to check the script still runs (CI)")
    args = parser.parse_args()
    if args.smoke:
        for name, value in smoke.items():
            setattr(args, name, value)
        print(f"(smoke run: {', '.join(f'{k}={v}' for k, v in smoke.items())}; the figures below are not measurements)")
    return args
