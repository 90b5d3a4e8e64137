"""`flask schoolyear start-next`: the school's IT starts the next school year from the last, dry run first."""

from __future__ import annotations

import click
import sqlalchemy as sa
from flask.cli import AppGroup

from portal.assessment.models import SchoolYear
from portal.extensions import db
from portal.schoolyear import rollover
from portal.schoolyear.services import SetupError
from tenants.models import School
from tenants.scoping import school_scope

cli = AppGroup("schoolyear", help="School years: start the next one from the last.")


@cli.command("start-next")
@click.option("--school", "code", required=True, help="the school's code")
@click.option("--from", "source_name", default=None, help="the year to start from (default: the latest)")
@click.option("--apply", "apply", is_flag=True, help="make the changes (without it: a dry run that changes nothing)")
def start_next(code: str, source_name: str | None, apply: bool) -> None:
    """Propose the next year from the last (classes, pupils moving up, kept, leaving); --apply starts it."""
    school = db.session.scalar(sa.select(School).where(School.code == code))
    if school is None:
        raise click.ClickException(f"no school with code {code!r}")
    with school_scope(school.id):
        query = sa.select(SchoolYear).where(SchoolYear.school_id == school.id)
        query = query.where(SchoolYear.name == source_name) if source_name else query
        source = db.session.scalar(query.order_by(SchoolYear.starts_on.desc()).limit(1))
        if source is None:
            raise click.ClickException("no such school year at this school")
        try:
            result = rollover.start_next_year(school, source, actor=None, dry_run=not apply)
        except SetupError as exc:
            raise click.ClickException(str(exc)) from exc
        db.session.commit()
    click.echo(f"{'Started' if result.applied else 'Dry run:'} {result.name} from {result.source} at {code}")
    for proposed in result.classes:
        click.echo(f"  {proposed.name:<4} from {proposed.from_class or 'new':<4} {len(proposed.pupil_ids):>3} pupils"
                   " (homeroom teacher to assign)")
    for label, people in (("promoted", result.promoted), ("kept in their grade", result.kept),
                          ("leaving (completed primary school)", result.leaving),
                          ("dropped (transferred out or left)", result.dropped),
                          ("waiting for a result or the principal's decision", result.undecided)):
        click.echo(f"  {len(people)} {label}" + (": " + ", ".join(n for _i, n in people) if people and
                                                  len(people) <= 10 else ""))
    if not result.applied:
        click.echo("Nothing changed. Run again with --apply to start the year.")


@cli.command("thresholds")
@click.option("--school", "code", required=True, help="the school's code")
@click.option("--year", "year_name", required=True, help="the school year, e.g. 2026-2027")
@click.option("--excellent", type=int, default=None, help="lowest CN score for Hoàn thành xuất sắc (default 9)")
@click.option("--good", type=int, default=None, help="lowest CN score for Hoàn thành tốt (default 7)")
@click.option("--completed", type=int, default=None, help="lowest CN score for Hoàn thành (default 5)")
def thresholds(code: str, year_name: str, excellent: int | None, good: int | None, completed: int | None) -> None:
    """Show, or change, the year's Điều 9 score thresholds (the lowest one is unconfirmed in the regulation)."""
    from portal.schoolyear.services import set_thresholds

    school = db.session.scalar(sa.select(School).where(School.code == code))
    if school is None:
        raise click.ClickException(f"no school with code {code!r}")
    with school_scope(school.id):
        year = db.session.scalar(sa.select(SchoolYear).where(SchoolYear.school_id == school.id,
                                                             SchoolYear.name == year_name))
        if year is None:
            raise click.ClickException(f"no school year {year_name} at {code}")
        if (excellent, good, completed) != (None, None, None):
            try:
                set_thresholds(school, year, excellent=excellent, good=good, completed=completed, actor=None)
            except SetupError as exc:
                raise click.ClickException(str(exc)) from exc
            db.session.commit()
        click.echo(f"{code} {year.name}: Hoàn thành xuất sắc >= {year.excellent_min_score}, "
                   f"Hoàn thành tốt >= {year.good_min_score}, Hoàn thành >= {year.completed_min_score}")
