"""`flask` commands for set-up and the demo."""

from __future__ import annotations

import click
from flask import Flask
from flask.cli import with_appcontext

from portal import audit
from portal.auth.services import hash_password, password_problems
from portal.extensions import db
from tenants.models import District, User
from tenants.roles import Role


def init_app(app: Flask) -> None:
    app.cli.add_command(demo)
    app.cli.add_command(create_district)
    app.cli.add_command(create_admin)
    app.cli.add_command(keys)


@click.command("demo")
@with_appcontext
@click.option("--today", "day", default=None, help="build the demo as of this day, YYYY-MM-DD (default: today)")
def demo(day: str | None) -> None:
    """Create the demo district of Nhà Bè in today's school year (safe to run again, any later day too)
    and print its logins."""
    from datetime import date

    from portal.demo import DEMO_PASSWORD, build_demo
    from portal.demo.assessment import demo_years

    today = date.fromisoformat(day) if day else date.today()
    created: dict[str, int] = {}
    logins = build_demo(today, created=created)
    click.echo(f"Demo logins (password for all: {DEMO_PASSWORD}) -- demo data, not for real use:")
    for login in logins:
        click.echo(f"  {login.username:<28} {login.full_name:<24} {login.roles} - {login.school}")
    click.echo("  (every school has ht., pht., cntt., gvcn1-5. and gvbm1-2.<school code> accounts)")
    years = demo_years(today)
    span = f"School years {years[0]} to {years[-1]}" if len(years) > 1 else f"School year {years[0]}"
    ratings = created.get("subject_ratings", 0) + created.get("trait_ratings", 0)
    if created.get("schools"):
        click.echo(f"{span}: {created['pupils']:,} pupils, {created['classes']} classes, {ratings:,} ratings, "
                   f"{created['year_results']:,} year results created at {created['schools']} schools; "
                   f"current year {years[-1]} as of {today.strftime('%d/%m/%Y')}.")
    else:
        click.echo(f"{span}: already there at every school, nothing created.")
    from portal.demo.signing import DEMO_SIGNING_PIN, build_signing_demo

    certificates = build_signing_demo(DEMO_PASSWORD)
    click.echo(f"Demo certificates (KHÔNG DÙNG THẬT - demo CA in the instance folder, not for real use): "
               f"{certificates['person_certificates']} personal, {certificates['seal_certificates']} school seals "
               f"created; .p12 passphrase: {DEMO_PASSWORD}; signing PIN of every demo person: {DEMO_SIGNING_PIN}.")
    from portal.demo.records import RECORD_SCHOOL, TRANSFER_FROM, build_records_demo

    for name, counts in build_records_demo(today).items():
        if "received" in counts:
            click.echo(f"Transferred in at {RECORD_SCHOOL}, {name}, with the record issued by {TRANSFER_FROM}.")
            continue
        click.echo(f"Học bạ số of {name} at {RECORD_SCHOOL}: "
                   + ", ".join(f"{n} {status}" for status, n in sorted(counts.items())))
    from portal.trail.services import seal_chains

    sealed = [o for o in seal_chains() if o.checkpoint]
    click.echo(f"Audit trail: {len(sealed)} chains sealed under the district's demo certificate "
               "(flask audit checkpoint, daily in production).")


@click.command("create-district")
@with_appcontext
@click.option("--code", required=True)
@click.option("--name", required=True, help="e.g. Phòng Giáo dục và Đào tạo huyện Nhà Bè")
@click.option("--city", required=True)
def create_district(code: str, name: str, city: str) -> None:
    """Create the district this deployment serves (production set-up)."""
    district = District(code=code, name=name, city=city)
    db.session.add(district)
    db.session.flush()
    audit.record("district.created", actor=None, school_id=None, obj=district, summary=name)
    db.session.commit()
    click.echo(f"District {name} created.")


@click.command("create-admin")
@with_appcontext
@click.option("--username", required=True)
@click.option("--full-name", required=True)
@click.password_option()
def create_admin(username: str, full_name: str, password: str) -> None:
    """Create a district admin account (production set-up)."""
    problems = password_problems(password, username=username)
    if problems:
        raise click.ClickException(" ".join(problems))
    district = db.session.scalar(db.select(District).order_by(District.id))
    if district is None:
        raise click.ClickException("Create the district first: flask create-district")
    if db.session.scalar(db.select(User.id).where(User.username == username.strip().lower())) is not None:
        raise click.ClickException(f"an account named {username.strip().lower()!r} already exists; nothing changed")
    user = User(district_id=district.id, username=username.strip().lower(), full_name=full_name,
                password_hash=hash_password(password), district_role=Role.DISTRICT_ADMIN)
    db.session.add(user)
    db.session.flush()
    audit.record("user.created", actor=None, school_id=None, obj=user, summary=full_name,
                 changes={"username": user.username, "district_role": Role.DISTRICT_ADMIN.value})
    db.session.commit()
    click.echo(f"District admin {user.username} created.")


@click.group("keys")
def keys() -> None:
    """The keys that wrap the secrets stored in the database."""


@keys.command("rotate")
@with_appcontext
def rotate_keys() -> None:
    """Seal every stored secret again with the first key of WRAPPING_KEYS.

    To rotate: put a new key first (WRAPPING_KEYS=new,old), restart, run this, then drop the old key.
    Signing-PIN locks keep their PIN: only the server's outer layer changes.
    """
    from portal.signing.services import rotate_wrapped_secrets

    done = rotate_wrapped_secrets(actor=None)
    click.echo(f"Re-sealed {done.resealed} stored secrets with the first key of WRAPPING_KEYS.")
    if done.unreadable:
        click.echo(f"{len(done.unreadable)} did not open with any configured key and were left as they are: "
                   + ", ".join(done.unreadable), err=True)
        raise SystemExit(1)
