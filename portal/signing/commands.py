"""`flask signing ...`: what the school's management records about signing outside the pages."""

from __future__ import annotations

from datetime import datetime, time, timedelta

import click
import sqlalchemy as sa
from flask.cli import AppGroup

from portal.extensions import db
from portal.i18n import local_zone, parse_date
from portal.signing import policy
from tenants.models import School, User
from tenants.scoping import school_scope

cli = AppGroup("signing", help="Signing: delegations of the principal's signature.")


def _day_start(text: str) -> datetime:
    try:
        day = parse_date(text)
    except ValueError as exc:
        raise click.BadParameter(f"{text!r} is not a date dd/mm/yyyy") from exc
    return datetime.combine(day, time.min, tzinfo=local_zone())


@cli.command("delegate")
@click.option("--school", "school_code", required=True, help="the school's code")
@click.option("--username", required=True, help="the vice principal's login")
@click.option("--from", "starts", required=True, help="first day, dd/mm/yyyy (local time)")
@click.option("--until", "ends", default=None, help="last day, dd/mm/yyyy; open-ended without it")
@click.option("--reason", default="", help="the school's decision that assigns it")
def delegate_command(school_code: str, username: str, starts: str, ends: str | None, reason: str) -> None:
    """Record that a vice principal signs records in the Hiệu trưởng field for a period."""
    school = db.session.scalar(sa.select(School).where(School.code == school_code))
    user = db.session.scalar(sa.select(User).where(User.username == username))
    if school is None or user is None:
        raise click.ClickException("no such school or user")
    until = _day_start(ends) + timedelta(days=1) - timedelta(microseconds=1) if ends else None
    with school_scope(school.id):
        try:
            row = policy.delegate_principal_signing(school.id, user.id, starts_at=_day_start(starts), ends_at=until,
                                                    reason=reason, actor=None)
        except policy.DelegationRefused as exc:
            raise click.ClickException(str(exc)) from exc
        summary = f"delegation {row.id}: {user.full_name} signs for the principal of {school.name}"
        db.session.commit()
    click.echo(summary)
