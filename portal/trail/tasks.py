"""The audit trail's jobs (the Excel export, verification, the chain export) and its `flask audit` commands."""

from __future__ import annotations

import sys
from datetime import UTC, date, datetime, time
from typing import Any

import click
import sqlalchemy as sa
from flask.cli import AppGroup
from openpyxl import Workbook

from portal import audit, jobs, spreadsheets
from portal.extensions import db
from portal.i18n import format_datetime
from portal.storage import storage
from portal.trail import services
from tenants.models import School
from tenants.scoping import all_schools

HEADERS = ("Thời gian", "Người thực hiện", "Trường", "Hành động", "Đối tượng", "Mã đối tượng", "Nội dung",
           "Thay đổi", "Địa chỉ IP")


@jobs.task("audit.export", resumable=True)
def export_audit(run: jobs.JobRun) -> dict[str, Any]:
    """Write the trail of the job's school (all of it for a district job) to an .xlsx in the file store."""
    school_id = run.school_id
    total = db.session.scalar(audit.entries_query(school_id).with_only_columns(sa.func.count()).order_by(None))
    school_names = dict(db.session.execute(sa.select(School.id, School.name)).all())
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("Nhật ký")
    sheet.append(spreadsheets.row(sheet, HEADERS))
    written = 0
    for entry in audit.iter_entries(school_id):
        sheet.append(spreadsheets.row(sheet, [
            format_datetime(entry.at), entry.actor_name, school_names.get(entry.school_id, ""), entry.action,
            entry.object_type, entry.object_id, entry.summary, _changes_text(entry.changes), entry.address or ""]))
        written += 1
        if written % 500 == 0:
            run.report(written, total or 1, f"{written}/{total}")
    digest = storage().put(spreadsheets.to_bytes(workbook))
    return {"digest": digest, "filename": "nhat-ky-hoat-dong.xlsx", "rows": written,
            "mimetype": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}


def _changes_text(changes: dict[str, Any]) -> str:
    return "; ".join(f"{key}: {value}" for key, value in sorted(changes.items()))


# --- the hash chain: verification and exports as jobs, and the `flask audit` commands ----------------------


@jobs.task("audit.verify")
def verify_job(run: jobs.JobRun) -> dict[str, Any]:
    """Walk every chain (the district's job) and keep the report as the job's result."""
    reports = services.verify_chains()
    broken = [r for r in reports if not r.ok]
    run.report(1, 1, f"{len(reports)} chuỗi, {len(broken)} chuỗi có chỗ bị phá vỡ")
    return {"chains": [r.as_dict() for r in reports], "broken": len(broken)}


@jobs.task("audit.chain_export")
def chain_export_job(run: jobs.JobRun) -> dict[str, Any]:
    """The job's school's chain (every chain for a district job), its checkpoints and the offline verifier."""
    chains = [audit.chain_of(run.school_id)] if run.school_id is not None else services.chains()
    digest = storage().put(services.export_zip(chains))
    return {"digest": digest, "filename": "nhat-ky-kiem-chung.zip", "mimetype": "application/zip"}


cli = AppGroup("audit", help="The hash-chained audit trail: checkpoints, verification, archives, exports.")


@cli.command("checkpoint")
def checkpoint_command() -> None:
    """Seal the head of every chain that moved since its last checkpoint (run daily from cron)."""
    with all_schools():
        try:
            outcomes = services.seal_chains()
        except services.NoDistrictCertificate as exc:
            raise click.ClickException(str(exc)) from exc
    for outcome in outcomes:
        if outcome.checkpoint is None:
            click.echo(f"{outcome.chain}: NOT SEALED: {outcome.problem}")
        else:
            cp = outcome.checkpoint
            click.echo(f"{cp.chain}: sealed position {cp.seq} (entry #{cp.last_entry_id}, {cp.head_hash[:16]}…)"
                       + ("" if cp.timestamped else f" -- {cp.status}"))
    if not outcomes:
        click.echo("every chain is sealed at its head already")
    if any(o.checkpoint is None for o in outcomes):
        sys.exit(1)


@cli.command("verify")
@click.option("--chain", default=None, help="one chain, e.g. district or school:3 (default: all)")
@click.option("--no-signatures", is_flag=True, help="check the links only, not the checkpoints' signatures")
def verify_command(chain: str | None, no_signatures: bool) -> None:
    """Walk every chain, check every link and checkpoint; name each place where history diverges."""
    with all_schools():
        reports = services.verify_chains(chain=chain, check_signatures=not no_signatures)
    for report in reports:
        archived = f", {report.archived} archived" if report.archived else ""
        click.echo(f"{report.chain}: {report.entries} entries{archived}, {report.checkpoints} checkpoints: "
                   + ("OK" if report.ok else f"BROKEN, first at entry #{report.first_break.entry_id}"))
        for problem in report.breaks:
            click.echo(f"  {problem}")
    if any(not r.ok for r in reports):
        sys.exit(1)


@cli.command("archive")
@click.option("--before", required=True, help="archive the entries written before this day, YYYY-MM-DD (UTC)")
def archive_command(before: str) -> None:
    """Move old entries out of the live table into sealed files in the store; chains still verify."""
    moment = datetime.combine(date.fromisoformat(before), time(0), tzinfo=UTC)
    with all_schools():
        try:
            outcomes = services.archive_before(moment)
        except services.NoDistrictCertificate as exc:
            raise click.ClickException(str(exc)) from exc
    for outcome in outcomes:
        if outcome.archive is None:
            click.echo(f"{outcome.chain}: {outcome.problem}")
        else:
            click.echo(f"{outcome.chain}: {outcome.entries} entries archived (positions {outcome.archive.first_seq}-"
                       f"{outcome.archive.last_seq}, file {outcome.archive.file_digest[:16]}…)")
    if not outcomes:
        click.echo(f"no entry written before {before}")
    if any(o.archive is None for o in outcomes):
        sys.exit(1)


@cli.command("export")
@click.option("--school", "school_code", default=None, help="one school's chain (default: every chain)")
@click.option("--output", "-o", type=click.Path(dir_okay=False), required=True, help="the .zip to write")
def export_command(school_code: str | None, output: str) -> None:
    """Write a chain (or all), its checkpoints and the offline verifier to a zip."""
    with all_schools():
        if school_code:
            school = db.session.scalar(sa.select(School).where(School.code == school_code))
            if school is None:
                raise click.ClickException(f"no school {school_code}")
            chains = [audit.chain_of(school.id)]
        else:
            chains = services.chains()
        data = services.export_zip(chains)
    with open(output, "wb") as handle:
        handle.write(data)
    click.echo(f"{output}: {len(chains)} chain(s); check with: python nhat-ky/verify_offline.py "
               "nhat-ky/export.jsonl nhat-ky/checkpoints")


@cli.command("certificate")
@click.argument("p12", type=click.Path(exists=True, dir_okay=False))
@click.option("--passphrase", prompt=True, hide_input=True, envvar="AUDIT_CERTIFICATE_PASSPHRASE")
def certificate_command(p12: str, passphrase: str) -> None:
    """Register the district office's organisation certificate (.p12) that signs the checkpoints."""
    from pathlib import Path

    from portal.district.services import get_district
    from portal.signing import services as signing_services
    from tenants.certificates import KeyKind

    upload = signing_services.Upload(data=Path(p12).read_bytes(), key_kind=KeyKind.PKCS12, passphrase=passphrase)
    with all_schools():
        try:
            row = signing_services.register_district_certificate(get_district(), upload, actor=None)
        except signing_services.CertificateRefused as exc:
            raise click.ClickException(str(exc)) from exc
        db.session.commit()
        click.echo(f"registered: {row.subject} (SHA-256 {row.fingerprint})")
