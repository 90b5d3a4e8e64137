"""The exchange pages: the school's uploads, received records, transfers and bundle; the district's view
of every school's uploads; and the `flask interop ...` commands."""

from __future__ import annotations

from pathlib import Path

import click
import sqlalchemy as sa
from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    flash,
    g,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from flask.cli import AppGroup
from flask_babel import gettext as _
from flask_login import current_user
from wtforms.fields.choices import SelectChoice

from portal import audit, jobs
from portal.assessment.models import Enrolment, Pupil, SchoolYear
from portal.collation import name_key
from portal.extensions import db, utcnow
from portal.interop import (
    bundle,
    received,
    tasks,  # noqa: F401 - importing registers the exchange's jobs
    transfers,
    uploads,
)
from portal.interop.city_client import CityError
from portal.interop.forms import ActionForm, BundleForm, ReleaseForm, UploadForm
from portal.interop.models import UploadState
from portal.records import workflow
from portal.results.services import ACTIVE_STATUSES
from portal.storage import FileMissing, storage
from tenants.access import district_blueprint, require, school_blueprint
from tenants.models import School
from tenants.roles import Permission
from tenants.scoping import all_schools, school_scope

bp = school_blueprint("interop", __name__)
district_bp: Blueprint = district_blueprint("district_interop", __name__, url_prefix="/district/exchange")
P = Permission


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    app.register_blueprint(district_bp)
    app.cli.add_command(interop_cli)


# --- the school's uploads ------------------------------------------------------------------------------


def _year_names(school_id: int | None) -> list[str]:
    query = sa.select(SchoolYear.name).distinct().order_by(SchoolYear.name.desc())
    if school_id is not None:
        query = query.where(SchoolYear.school_id == school_id)
    return list(db.session.scalars(query))


def _upload_form() -> UploadForm:
    form = UploadForm()
    form.school_year.choices = [SelectChoice(name, name) for name in _year_names(g.school.id)]
    return form


def _bundle_form(school_id: int | None) -> BundleForm:
    form = BundleForm()
    form.school_year.choices = [SelectChoice(name, name) for name in _year_names(school_id)]
    return form


UPLOADS_PER_PAGE = 50


@bp.route("/exchange")
@require(P.EXCHANGE_RECORDS)
def index() -> str:
    state, grade = request.args.get("state") or None, request.args.get("grade", type=int)
    if state not in {s.value for s in UploadState}:
        state = None
    text = request.args.get("q", "").strip()[:100]
    page = max(request.args.get("page", 1, type=int) or 1, 1)
    rows, matching = uploads.upload_page(g.school.id, state=state, grade=grade, text=text, page=page,
                                         per_page=UPLOADS_PER_PAGE)
    return render_template("interop/index.html", counts=uploads.counts(g.school.id), rows=rows, text=text,
                           page=page, pages=max(1, -(-matching // UPLOADS_PER_PAGE)), matching=matching,
                           stuck={u.id for u in uploads.stuck_uploads(g.school.id)}, state=state, grade=grade,
                           states=list(UploadState), form=_upload_form(), bundle_form=_bundle_form(g.school.id),
                           action=ActionForm())


@bp.route("/exchange/upload", methods=["POST"])
@require(P.EXCHANGE_RECORDS)
def upload() -> Response:
    form = _upload_form()
    if not form.validate_on_submit():
        flash(_("Chọn năm học để gửi."), "danger")
        return redirect(url_for("interop.index"))
    year_id = db.session.scalar(sa.select(SchoolYear.id).where(SchoolYear.school_id == g.school.id,
                                                               SchoolYear.name == form.school_year.data))
    grade = int(form.grade.data) if form.grade.data else None
    title = _("Gửi học bạ số lên Thành phố: năm học %(y)s", y=form.school_year.data) + (
        " — " + _("khối %(g)d", g=grade) if grade else "")
    # Pressing send starts the waits over: what waited is due now, with a fresh set of attempts.
    run = jobs.enqueue("interop.upload", school_id=g.school.id, actor=current_user, title=title,
                       grade=grade, school_year_id=year_id, fresh=True)
    db.session.commit()
    return redirect(url_for("school_jobs.show", run_id=run.id))


def _upload_or_404(upload_id: int) -> uploads.CityUpload:
    row = uploads.get_upload(g.school, upload_id)
    if row is None:
        abort(404)
    return row


@bp.route("/exchange/uploads/<int:upload_id>")
@require(P.EXCHANGE_RECORDS)
def upload_detail(upload_id: int) -> str:
    row = _upload_or_404(upload_id)
    return render_template("interop/upload.html", item=row, stuck=row in uploads.stuck_uploads(g.school.id),
                           action=ActionForm())


@bp.route("/exchange/uploads/<int:upload_id>/retry", methods=["POST"])
@require(P.EXCHANGE_RECORDS)
def retry(upload_id: int) -> Response:
    row = _upload_or_404(upload_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    if not uploads.retry_upload(row, actor=current_user):
        flash(_("Bản này đã có kết quả cuối cùng, không gửi lại."), "danger")
        return redirect(url_for("interop.upload_detail", upload_id=row.id))
    run = jobs.enqueue("interop.upload", school_id=g.school.id, actor=current_user,
                       title=_("Gửi lại học bạ %(code)s", code=row.record_code), grade=row.grade,
                       school_year_id=row.school_year_id, queue_new=False)
    db.session.commit()
    return redirect(url_for("school_jobs.show", run_id=run.id))


# --- received records ----------------------------------------------------------------------------------


@bp.route("/exchange/received")
@require(P.EXCHANGE_RECORDS)
def received_list() -> str:
    return render_template("interop/received.html", items=received.received_list(g.school), action=ActionForm())


@bp.route("/exchange/received/pull", methods=["POST"])
@require(P.EXCHANGE_RECORDS)
def pull() -> Response:
    if not ActionForm().validate_on_submit():
        abort(400)
    run = jobs.enqueue("interop.pull_returned", school_id=g.school.id, actor=current_user,
                       title=_("Nhận học bạ do Thành phố trả về"))
    db.session.commit()
    return redirect(url_for("school_jobs.show", run_id=run.id))


def _received_or_404(received_id: int) -> received.ReceivedRecord:
    row = received.get_received(g.school, received_id)
    if row is None:
        abort(404)
    return row


@bp.route("/exchange/received/<int:received_id>")
@require(P.EXCHANGE_RECORDS)
def received_detail(received_id: int) -> str:
    row = _received_or_404(received_id)
    pupil = db.session.get(Pupil, row.pupil_id) if row.pupil_id else None
    # The signature fields by what they are ("Hiệu trưởng ký"), not by their internal names ("hieu_truong").
    slot_labels = {field: _(step.label) for field, step in workflow.STEPS.items()}
    return render_template("interop/received_detail.html", item=row, pupil=pupil, slot_labels=slot_labels)


@bp.route("/exchange/received/<int:received_id>/file")
@require(P.EXCHANGE_RECORDS)
def received_file(received_id: int) -> Response:
    row = _received_or_404(received_id)
    try:
        data = storage().read(row.pdf_digest or "")
    except FileMissing:
        abort(404)
    audit.record("exchange.received_copy", actor=current_user, school_id=g.school.id, obj=row,
                 summary=_("Tải bản học bạ nhận được %(code)s", code=row.record_code), address=request.remote_addr)
    db.session.commit()
    response = Response(data, mimetype="application/pdf")
    response.headers["Content-Disposition"] = f'attachment; filename="{row.record_code or "hoc-ba"}.pdf"'
    return response


# --- transfers -----------------------------------------------------------------------------------------


def _release_form() -> ReleaseForm:
    form = ReleaseForm()
    pupils = db.session.execute(sa.select(Pupil.id, Pupil.full_name, Pupil.pupil_code).join(
        Enrolment, Enrolment.pupil_id == Pupil.id).where(Enrolment.status.in_(ACTIVE_STATUSES))
        .distinct()).all()
    pupils = sorted(pupils, key=lambda row: name_key(row[1]))
    form.pupil_id.choices = [SelectChoice(pid, f"{name} ({code})") for pid, name, code in pupils]
    form.to_school_id.choices = [SelectChoice(s.id, s.name) for s in transfers.destinations(g.school)]
    return form


def _transfers_page(form: ReleaseForm) -> str:
    outgoing, incoming = transfers.outgoing(g.school), transfers.incoming(g.school)
    names = transfers.school_names({t.to_school_id for t in outgoing} | {t.school_id for t in incoming})
    return render_template("interop/transfers.html", outgoing=outgoing, incoming=incoming, names=names, form=form)


@bp.route("/exchange/transfers")
@require(P.TRANSFER_PUPILS)
def transfers_page() -> str:
    return _transfers_page(_release_form())


@bp.route("/exchange/transfers/release", methods=["POST"])
@require(P.TRANSFER_PUPILS)
def release() -> str | Response:
    form = _release_form()
    if not form.validate_on_submit():
        return _transfers_page(form)
    pupil = db.session.get(Pupil, form.pupil_id.data)
    to_school = db.session.get(School, form.to_school_id.data)
    if pupil is None or to_school is None:
        abort(404)
    try:
        transfers.release_pupil(g.school, pupil, to_school, reason=form.reason.data, actor=current_user)
    except transfers.TransferError as exc:
        db.session.rollback()
        flash(str(exc), "danger")
        return redirect(url_for("interop.transfers_page"))
    db.session.commit()
    flash(_("Đã chuyển học sinh; chờ trường nhận tiếp nhận."), "success")
    return redirect(url_for("interop.transfers_page"))


def _incoming_or_404(transfer_id: int) -> transfers.PupilTransfer:
    row = transfers.get_incoming(g.school, transfer_id)
    if row is None:
        abort(404)
    return row


@bp.route("/exchange/transfers/<int:transfer_id>")
@require(P.TRANSFER_PUPILS)
def transfer_detail(transfer_id: int) -> str:
    row = _incoming_or_404(transfer_id)
    names = transfers.school_names({row.school_id})
    items = [r for r in received.received_list(g.school) if r.transfer_id == row.id]
    return render_template("interop/transfer.html", item=row, sender=names.get(row.school_id, ""), received=items,
                           action=ActionForm())


@bp.route("/exchange/transfers/<int:transfer_id>/accept", methods=["POST"])
@require(P.TRANSFER_PUPILS)
def accept(transfer_id: int) -> Response:
    row = _incoming_or_404(transfer_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        transfers.accept_transfer(g.school, row.id, actor=current_user, roots=received.trust_roots())
    except transfers.TransferError as exc:
        db.session.rollback()
        flash(str(exc), "danger")
        return redirect(url_for("interop.transfer_detail", transfer_id=row.id))
    db.session.commit()
    flash(_("Đã tiếp nhận học sinh và học bạ chuyển đến."), "success")
    return redirect(url_for("interop.transfer_detail", transfer_id=row.id))


# --- the ministry bundle --------------------------------------------------------------------------------


def _stream_zip(school_ids: list[int] | None, school_year: str, scope: str, school_id: int | None) -> Response:
    audit.record("exchange.bundle", actor=current_user, school_id=school_id, object_type="Bundle",
                 summary=_("Lập gói học bạ nộp Bộ: %(s)s, năm học %(y)s", s=scope, y=school_year),
                 changes={"school_year": school_year, "scope": scope}, address=request.remote_addr)
    db.session.commit()

    def body():  # runs after the view returned: the tenant scope is set again for it
        with school_scope(school_id) if school_id is not None else all_schools():
            yield from bundle.stream_bundle(school_ids, school_year, scope=scope)

    response = Response(stream_with_context(body()), mimetype="application/zip")
    response.headers["Content-Disposition"] = f'attachment; filename="{bundle.bundle_name(scope, school_year)}"'
    return response


@bp.route("/exchange/bundle", methods=["POST"])
@require(P.EXCHANGE_RECORDS)
def school_bundle() -> Response:
    form = _bundle_form(g.school.id)
    if not form.validate_on_submit():
        flash(_("Chọn năm học để lập gói."), "danger")
        return redirect(url_for("interop.index"))
    return _stream_zip([g.school.id], form.school_year.data, g.school.code, g.school.id)


# --- the district ---------------------------------------------------------------------------------------


@district_bp.route("/")
@require(P.VIEW_DISTRICT)
def district_index() -> str:
    schools = list(db.session.scalars(sa.select(School).where(School.active.is_(True)).order_by(School.name)))
    per_school = {s.id: uploads.counts(s.id) for s in schools}
    form = UploadForm()
    form.school_year.choices = [SelectChoice(n, n) for n in _year_names(None)]
    return render_template("interop/district.html", schools=schools, per_school=per_school,
                           stuck=uploads.stuck_uploads(None), names={s.id: s.name for s in schools}, form=form,
                           bundle_form=_bundle_form(None), action=ActionForm())


@district_bp.route("/upload", methods=["POST"])
@require(P.VIEW_DISTRICT, P.DISTRICT_EXCHANGE)
def district_upload() -> Response:
    form = UploadForm()
    form.school_year.choices = [SelectChoice(n, n) for n in _year_names(None)]
    if not form.validate_on_submit():
        flash(_("Chọn năm học để gửi."), "danger")
        return redirect(url_for("district_interop.district_index"))
    grade = int(form.grade.data) if form.grade.data else None
    run = jobs.enqueue("interop.upload_district", school_id=None, actor=current_user,
                       title=_("Gửi học bạ số của các trường lên Thành phố: năm học %(y)s", y=form.school_year.data),
                       grade=grade, school_year=form.school_year.data, fresh=True)
    db.session.commit()
    return redirect(url_for("district_jobs.show_district", run_id=run.id))


@district_bp.route("/pull", methods=["POST"])
@require(P.VIEW_DISTRICT, P.DISTRICT_EXCHANGE)
def district_pull() -> Response:
    if not ActionForm().validate_on_submit():
        abort(400)
    run = jobs.enqueue("interop.pull_returned", school_id=None, actor=current_user,
                       title=_("Nhận học bạ do Thành phố trả về"))
    db.session.commit()
    return redirect(url_for("district_jobs.show_district", run_id=run.id))


@district_bp.route("/bundle", methods=["POST"])
@require(P.VIEW_DISTRICT, P.DISTRICT_EXCHANGE)
def district_bundle() -> Response:
    form = _bundle_form(None)
    if not form.validate_on_submit():
        flash(_("Chọn năm học để lập gói."), "danger")
        return redirect(url_for("district_interop.district_index"))
    return _stream_zip(None, form.school_year.data, "phong", None)


# --- commands -------------------------------------------------------------------------------------------


interop_cli = AppGroup("interop", help="Exchange with the city system and the ministry bundle.")


@interop_cli.command("bundle")
@click.option("--year", "school_year", required=True, help="school year name, e.g. 2024-2025")
@click.option("--school", "school_code", default=None, help="one school's code; the whole district without it")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), required=True)
def bundle_command(school_year: str, school_code: str | None, output: Path) -> None:
    """Write the ministry bundle (ZIP of PDF + XML + manifest.json) of a school or the district."""
    with all_schools():
        school = None
        if school_code:
            school = db.session.scalar(sa.select(School).where(School.code == school_code))
            if school is None:
                raise click.ClickException(f"no school with code {school_code!r}")
        ids = [school.id] if school else None
        with output.open("wb") as handle:
            for chunk in bundle.stream_bundle(ids, school_year, scope=school.code if school else "phong"):
                handle.write(chunk)
        audit.record("exchange.bundle", actor=None, school_id=school.id if school else None, object_type="Bundle",
                     summary=f"flask interop bundle --year {school_year}", changes={"school_year": school_year})
        db.session.commit()
    click.echo(f"{output} ({output.stat().st_size} bytes)")


@interop_cli.command("upload")
@click.option("--year", "school_year", default=None, help="school year name; every year without it")
@click.option("--grade", type=int, default=None)
def upload_command(school_year: str | None, grade: int | None) -> None:
    """Send the uploads that wait and are due, in this process (for a schedule; needs no Redis). It queues
    nothing new: issuing a record and the schools' send buttons do that."""
    run = jobs.run_here("interop.upload_district", school_id=None, owner="system:flask interop upload",
                        title="flask interop upload", grade=grade, school_year=school_year, queue_new=False)
    if run.state != jobs.JobState.FINISHED:
        raise click.ClickException(f"job {run.id} {run.state.value}: {run.error or run.note}")
    result = run.result or {}
    click.echo(f"job {run.id}: {result.get('attempts', 0)} attempt(s); {result.get('open', 0)} upload(s) "
               f"still waiting" + (f", next due {result['next_attempt_at']}" if result.get("next_attempt_at") else "")
               + ".")


@interop_cli.command("pull")
def pull_command() -> None:
    """Read the city's returned-records feed now (for a schedule, e.g. cron every 15 minutes)."""
    from portal.interop import tasks as exchange_tasks

    with all_schools():
        run = jobs.JobRun(kind="interop.pull_returned", title="flask interop pull", school_id=None, params={},
                          started_at=utcnow())
        try:
            result = exchange_tasks.pull_returned(run)
        except CityError as exc:
            raise click.ClickException(f"the city system did not answer as it should: {exc.message} ({exc.code}); "
                                       "nothing was lost, the next pull starts from the same place") from exc
    unknown = result["unknown_schools"]
    click.echo(f"{result['returned']} returned record(s) read: {result['accepted']} accepted, "
               f"{result['refused']} refused" + (f", {len(unknown)} for schools not in this district "
                                                 f"({', '.join(unknown)})" if unknown else "") + ".")
