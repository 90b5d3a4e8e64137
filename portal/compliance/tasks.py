"""The daily progress snapshot: a job (started from the board) and a `flask compliance snapshot` command.

The command is what production schedules, once a day from cron (see the README): the snapshot of a
day is written once per school and milestone and rewritten by a second run the same day, so a retry
or a double schedule does no harm. No scheduler process is needed beside the workers.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import click
from flask.cli import AppGroup

from portal.compliance import services
from portal.district.services import get_district
from portal.extensions import db
from portal.jobs import JobRun, task
from tenants.scoping import all_schools

cli = AppGroup("compliance", help="The district compliance board: plan and daily progress snapshots.")


def snapshot_years(year_label: str | None, day: date) -> dict[str, int]:
    """Snapshot the given year's plan, or every year whose plan is still running on `day`."""
    district = get_district()
    labels = [year_label] if year_label else services.running_years(district, day)
    return {label: services.take_snapshot(district, label, day) for label in labels}


@task("compliance.snapshot", resumable=True)
def snapshot_job(run: JobRun, year_label: str | None = None, day: str | None = None) -> dict[str, Any]:
    when = date.fromisoformat(day) if day else services.today_local()
    written = snapshot_years(year_label, when)
    run.report(1, 1, ", ".join(f"{label}: {n}" for label, n in written.items()))
    return {"day": when.isoformat(), "rows": written}


@cli.command("snapshot")
@click.option("--year", "year_label", default=None, help="school year label, e.g. 2024-2025 (default: running plans)")
@click.option("--day", default=None, help="the day to record, YYYY-MM-DD (default: today)")
def snapshot_command(year_label: str | None, day: str | None) -> None:
    """Record today's progress of every school (run daily from cron; safe to run twice)."""
    when = date.fromisoformat(day) if day else services.today_local()
    with all_schools():
        written = snapshot_years(year_label, when)
        db.session.commit()
    if not written:
        click.echo(f"{when.isoformat()}: no plan for the school year of this day, nor one with a deadline in the "
                   "last 60 days or later (copy the plan to the new year, or use --year)")
    for label, rows in written.items():
        click.echo(f"{when.isoformat()} {label}: {rows} snapshot rows")


@cli.command("seed-plan")
def seed_plan_command() -> None:
    """Create the 2024-2025 plan (domain brief) for the district, unless it exists."""
    with all_schools():
        added = services.seed_plan(get_district(), actor=None)
        db.session.commit()
    click.echo(f"2024-2025: {added} milestones added")
