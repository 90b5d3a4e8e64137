"""Record pages: the classes and their records, one record's preview and versions, downloads, generation."""

from __future__ import annotations

import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import date

import click
import sqlalchemy as sa
from flask import Flask, abort, flash, g, redirect, render_template, stream_with_context, url_for
from flask.cli import AppGroup
from flask_babel import gettext as _
from flask_login import current_user
from werkzeug.wrappers import Response

from portal import audit, jobs
from portal.assessment.models import SchoolClass
from portal.extensions import db
from portal.records import (
    draft_mark,
    exporters,
    pdf,
    sections,
    services,
    tasks,
    workflow,
)
from portal.records.access import can_generate_records, can_view_records
from portal.records.forms import ActionForm, ReasonForm, SignForm
from portal.records.models import RecordStatus, RecordVersion
from portal.results.services import visible_classes
from portal.schoolyear.services import get_class
from portal.signing import batches
from portal.signing import services as signing_services
from portal.signing.engine import SigningError
from portal.storage import storage
from tenants.access import can, current_permissions, require, school_blueprint
from tenants.certificates import KeyKind
from tenants.roles import Permission

bp = school_blueprint("records", __name__)
CHUNK = 64 * 1024


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    sections.init_app(app)
    app.cli.add_command(records_cli)


records_cli = AppGroup("records", help="Issued records: long-term upkeep.")


@records_cli.command("renew-timestamps")
@click.option("--limit", type=int, default=None, help="records at most (default TIMESTAMP_RENEWAL_BATCH)")
def renew_timestamps_command(limit: int | None) -> None:
    """Add a fresh archive timestamp to the issued records whose last one nears expiry (schedule it daily)."""
    from portal.records import archive

    run = archive.renew_due(limit=limit)
    click.echo(f"{run.renewed} renewed, {run.failed} failed, {run.still_due} still due")
    if run.failed:
        raise SystemExit(1)


def _viewable_class(class_id: int) -> SchoolClass:
    school_class = get_class(g.school, class_id)
    if school_class is None:
        abort(404)
    if not can_view_records(current_user.id, current_permissions(), school_class):
        abort(403)
    return school_class


def _viewable_version(version_id: int) -> RecordVersion:
    version = services.get_version(g.school, version_id)
    if version is None:
        abort(404)
    if not can_view_records(current_user.id, current_permissions(), version.school_class):
        abort(403)
    return version


@bp.route("/records/")
@require(Permission.VIEW_RECORDS)
def index() -> str:
    year, classes = visible_classes(g.school, date.today())
    mine = [c for c in classes if can_view_records(current_user.id, current_permissions(), c)]
    counts = _status_counts(mine)
    grades = sorted({c.grade for c in mine}) if can(Permission.VIEW_ALL_RECORDS) else []
    queue = signing_queue(mine)
    secret_steps = {entry["step"].field: kind for entry in queue if (kind := _secret_to_ask(entry["step"]))}
    return render_template("records/index.html", year=year, classes=mine, counts=counts, grades=grades,
                           form=ActionForm(), may_generate=can(Permission.GENERATE_RECORDS), queue=queue,
                           secret_steps=secret_steps, sign_form=SignForm(),
                           open_batches=[b for b in batches.batches_of(g.school, current_user.id, limit=5)
                                         if b.waiting or b.problems])


def _status_counts(classes: list[SchoolClass]) -> dict[int, Counter[str]]:
    counts: dict[int, Counter[str]] = {}
    for school_class in classes:
        pupils = services.class_pupils(school_class)
        latest = services.latest_versions([p.id for p in pupils])
        counts[school_class.id] = Counter(
            latest[p.id].status.value if p.id in latest else "none" for p in pupils)
    return counts


@bp.route("/records/classes/<int:class_id>")
@require(Permission.VIEW_RECORDS)
def class_records(class_id: int) -> str:
    school_class = _viewable_class(class_id)
    pupils = services.class_pupils(school_class)
    latest = services.latest_versions([p.id for p in pupils])
    waiting = {p.id: services.readiness(p, school_class) for p in pupils}
    return render_template("records/class.html", school_class=school_class, pupils=pupils, latest=latest,
                           waiting=waiting, form=ActionForm(),
                           may_generate=can_generate_records(current_user.id, current_permissions(), school_class))


@bp.route("/records/classes/<int:class_id>/generate", methods=["POST"])
@require(Permission.GENERATE_RECORDS)
def generate_class(class_id: int) -> Response:
    school_class = _viewable_class(class_id)
    if not can_generate_records(current_user.id, current_permissions(), school_class):
        abort(403)
    return _start_generation([school_class], _("Tạo bản học bạ số lớp %(c)s", c=school_class.name))


@bp.route("/records/grades/<int:grade>/generate", methods=["POST"])
@require(Permission.GENERATE_RECORDS, Permission.VIEW_ALL_RECORDS)
def generate_grade(grade: int) -> Response:
    _year, classes = visible_classes(g.school, date.today())
    chosen = [c for c in classes if c.grade == grade]
    if not chosen:
        flash(_("Năm học hiện tại không có lớp nào thuộc khối %(g)s.", g=grade), "error")
        return redirect(url_for("records.index"))
    return _start_generation(chosen, _("Tạo bản học bạ số khối %(g)s", g=grade))


def _start_generation(classes: list[SchoolClass], title: str) -> Response:
    if not ActionForm().validate_on_submit():
        abort(400)
    run = tasks.start_generation(g.school, classes, title, actor=current_user)
    db.session.commit()
    return redirect(url_for("school_jobs.show", run_id=run.id))


@bp.route("/records/<int:version_id>")
@require(Permission.VIEW_RECORDS)
def show(version_id: int) -> str:
    version = _viewable_version(version_id)
    return render_template("records/show.html", version=version, versions=services.versions_of(version.pupil),
                           preview=pdf.render_html(version.content), signatures=workflow.signatures_of(version),
                           form=ReasonForm(), steps=workflow.STEPS)


@bp.route("/records/<int:version_id>/hoc-ba.pdf")
@require(Permission.VIEW_RECORDS)
def download_pdf(version_id: int) -> Response:
    version = _viewable_version(version_id)
    return _send(version, version.current_digest, "pdf", "application/pdf")


@bp.route("/records/<int:version_id>/hoc-ba.xml")
@require(Permission.VIEW_RECORDS)
def download_xml(version_id: int) -> Response:
    version = _viewable_version(version_id)
    return _send(version, version.xml_digest, "xml", "application/xml")


@bp.route("/records/<int:version_id>/hoc-ba.json")
@require(Permission.VIEW_RECORDS)
def download_json(version_id: int) -> Response:
    """The record's content as canonical JSON (the form its content hash is taken of)."""
    version = _viewable_version(version_id)
    _log_download(version, "json")
    db.session.commit()
    response = Response(exporters.canonical_json(version.content), mimetype="application/json")
    response.headers["Content-Disposition"] = f'attachment; filename="{file_name(version, "json")}"'
    return response


def _send(version: RecordVersion, digest: str, kind: str, mimetype: str) -> Response:
    _log_download(version, kind)
    db.session.commit()
    if kind == "pdf" and version.status != RecordStatus.ISSUED:  # a copy without value must look like one
        # Marked in memory (a record is a few hundred kilobytes); the issued PDF streams from the store.
        body: Iterator[bytes] = iter([draft_mark.mark_unissued(storage().read(digest), version.status.label)])
    else:
        body = stream_with_context(storage().stream(digest))
    response = Response(body, mimetype=mimetype)
    response.headers["Content-Disposition"] = f'attachment; filename="{file_name(version, kind)}"'
    return response


def _log_download(version: RecordVersion, kind: str) -> None:
    """Every copy handed out is traceable (domain brief §4)."""
    audit.record("record.downloaded", actor=current_user, school_id=g.school.id, obj=version,
                 summary=_("Tải học bạ %(code)s (%(kind)s)", code=version.code, kind=kind.upper()),
                 changes={"kind": kind, "status": version.status.value, "digest": version.current_digest})


def file_name(version: RecordVersion, kind: str) -> str:
    """An ASCII file name: the pupil code, the record code and the version."""
    return f"hoc-ba-{version.content['pupil']['pupil_code']}-{version.code}-v{version.number}.{kind}"


@bp.route("/records/classes/<int:class_id>/hoc-ba.zip")
@require(Permission.VIEW_RECORDS)
def download_class_zip(class_id: int) -> Response:
    school_class = _viewable_class(class_id)
    pupils = services.class_pupils(school_class)
    latest = services.latest_versions([p.id for p in pupils])
    versions = [latest[p.id] for p in pupils if p.id in latest
                and latest[p.id].status not in (RecordStatus.CANCELLED, RecordStatus.SUPERSEDED)]
    if not versions:
        abort(404)
    for version in versions:
        _log_download(version, "zip")
    db.session.commit()
    entries: list[tuple[str, str | Callable[[], bytes]]] = [
        (file_name(v, "pdf"), v.current_digest if v.status == RecordStatus.ISSUED else _marked(v)) for v in versions]
    entries += [(file_name(v, "xml"), v.xml_digest) for v in versions]
    response = Response(stream_with_context(stream_zip(entries)), mimetype="application/zip")
    response.headers["Content-Disposition"] = f'attachment; filename="hoc-ba-lop-{school_class.id}.zip"'
    return response


class _Pipe:
    """A write-only stream zipfile writes into; whatever was written is handed on, then forgotten."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.chunks.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data, self.chunks = b"".join(self.chunks), []
        return data


def _marked(version: RecordVersion) -> Callable[[], bytes]:
    """The unissued version's PDF with the draft mark, made when the ZIP reaches it."""
    digest, label = version.current_digest, version.status.label
    return lambda: draft_mark.mark_unissued(storage().read(digest), label)


def stream_zip(entries: list[tuple[str, str | Callable[[], bytes]]]) -> Iterator[bytes]:
    """A ZIP of stored files (or of files made on the way), produced piece by piece: never the whole archive."""
    pipe = _Pipe()
    files = storage()
    with zipfile.ZipFile(pipe, mode="w", compression=zipfile.ZIP_STORED) as archive:  # type: ignore[arg-type]
        for name, source in entries:
            with archive.open(name, mode="w", force_zip64=True) as member:
                for chunk in ([source()] if callable(source) else files.stream(source)):
                    member.write(chunk)
                    yield pipe.take()
            yield pipe.take()
    yield pipe.take()


# --- signing, sending back, cancelling, correcting ----------------------------------------------------------


def signing_queue(classes: list[SchoolClass]) -> list[dict[str, object]]:
    """What the current user may sign now: one entry per (step, class or grade or school) with a count."""
    permissions = current_permissions()
    queue: list[dict[str, object]] = []
    step = workflow.STEPS["gvcn"]
    if step.permission in permissions:
        for school_class in classes:
            if school_class.homeroom_teacher_id == current_user.id:
                queue.append({"step": step, "class_id": school_class.id,
                              "count": workflow.count_waiting(g.school, step, [school_class.id]),
                              "scope": _("Lớp %(c)s", c=school_class.name)})
    step = workflow.STEPS["hieu_truong"]
    if step.permission in permissions:
        for grade in sorted({c.grade for c in classes}):
            ids = [c.id for c in classes if c.grade == grade]
            queue.append({"step": step, "grade": grade, "count": workflow.count_waiting(g.school, step, ids),
                          "scope": _("Khối %(g)s", g=grade)})
    step = workflow.STEPS["con_dau"]
    if step.permission in permissions:
        queue.append({"step": step, "count": workflow.count_waiting(g.school, step, [c.id for c in classes]),
                      "scope": _("Cả trường")})
    return queue


def _secret_to_ask(step: workflow.Step) -> str | None:
    """What the signer types once for the batch: "pin" (their signing PIN), "passphrase", or None."""
    try:
        certificate = workflow.signing_certificate(g.school, step, current_user)
    except workflow.WorkflowError:
        return None
    return certificate.secret_to_ask


@bp.route("/records/sign", methods=["POST"])
@require(Permission.VIEW_RECORDS)
def sign() -> Response:
    form = SignForm()
    if not form.validate_on_submit():
        _flash_errors(form)
        return redirect(url_for("records.index"))
    step = workflow.STEPS[form.step.data]
    _year, classes = visible_classes(g.school, date.today())
    if form.class_id.data is not None:
        classes = [c for c in classes if c.id == form.class_id.data]
    elif form.grade.data is not None:
        classes = [c for c in classes if c.grade == form.grade.data]
    permissions = current_permissions()
    versions = [v for v in workflow.waiting_for(g.school, step, [c.id for c in classes])
                if workflow.may_sign(current_user.id, permissions, v, step)]
    if step.permission not in permissions:
        abort(403)
    if not versions:
        flash(_("Không có học bạ nào đang chờ bước ký này."), "error")
        return redirect(url_for("records.index"))
    try:
        certificate = workflow.signing_certificate(g.school, step, current_user)
        if certificate.needs_signing_pin:  # a wrong PIN is told now (and counted), not by a failed job
            signing_services.check_secret(certificate, form.passphrase.data)
    except (workflow.WorkflowError, SigningError) as exc:
        flash(str(exc), "error")
        return redirect(url_for("records.index"))
    run = tasks.start_signing(g.school, step, versions, _("%(step)s: %(n)s học bạ", step=_(step.label),
                                                          n=len(versions)),
                              actor=current_user, split=certificate.key_kind not in (KeyKind.USB, KeyKind.CSC))
    if form.passphrase.data:
        jobs.stash_secret(run.id, form.passphrase.data)
    db.session.commit()
    return redirect(url_for("school_jobs.show", run_id=run.id))


def _flash_errors(form: SignForm | ReasonForm) -> None:
    flash(" ".join(str(e) for errors in form.errors.values() for e in errors), "error")


def _reasoned(version_id: int, change: str) -> Response:
    version = services.get_version(g.school, version_id)
    if version is None:
        abort(404)
    form = ReasonForm()
    if not form.validate_on_submit():
        _flash_errors(form)
        return redirect(url_for("records.show", version_id=version.id))
    try:
        if change == "return":
            workflow.return_to_homeroom(version, form.reason.data, actor=current_user)
            target = version
            done = _("Đã trả lại học bạ %(code)s cho giáo viên chủ nhiệm, kèm lý do.", code=version.code)
        elif change == "cancel":
            workflow.cancel(version, form.reason.data, actor=current_user)
            target = version
            done = _("Đã hủy học bạ %(code)s.", code=version.code)
            if _sent_to_the_city(version):  # the city hears of it at once (the upload job announces it)
                jobs.enqueue("interop.upload", school_id=g.school.id, actor=current_user,
                             title=_("Báo hủy học bạ %(code)s lên Thành phố", code=version.code),
                             grade=version.grade, school_year_id=version.school_year_id)
        else:
            target = workflow.correct(g.school, version, form.reason.data, actor=current_user)
            done = _("Đã tạo bản điều chỉnh %(code)s; bản này cần được ký lại.", code=target.code)
    except workflow.WorkflowError as exc:
        db.session.rollback()
        flash(str(exc), "error")
        return redirect(url_for("records.show", version_id=version.id))
    db.session.commit()
    flash(done, "success")
    return redirect(url_for("records.show", version_id=target.id))


def _sent_to_the_city(version: RecordVersion) -> bool:
    from portal.interop.models import CityUpload, UploadKind

    return db.session.scalar(sa.select(CityUpload.id).where(CityUpload.record_version_id == version.id,
                                                            CityUpload.kind == UploadKind.UPLOAD).limit(1)) is not None


@bp.route("/records/<int:version_id>/return", methods=["POST"])
@require(Permission.SIGN_AS_PRINCIPAL)
def send_back(version_id: int) -> Response:
    return _reasoned(version_id, "return")


@bp.route("/records/<int:version_id>/cancel", methods=["POST"])
@require(Permission.CANCEL_RECORDS)
def cancel(version_id: int) -> Response:
    return _reasoned(version_id, "cancel")


@bp.route("/records/<int:version_id>/correct", methods=["POST"])
@require(Permission.CANCEL_RECORDS)
def correct(version_id: int) -> Response:
    return _reasoned(version_id, "correct")
