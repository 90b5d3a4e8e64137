from __future__ import annotations

import io
from collections.abc import Callable
from datetime import date
from typing import TypeVar

from flask import Flask, abort, current_app, flash, g, redirect, render_template, request, send_file, url_for
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy.exc import IntegrityError
from werkzeug.wrappers import Response
from wtforms.fields.choices import SelectChoice

from portal import audit
from portal.assessment.csdl import ImportFileError, _corrupt_message, parse_pupil_list
from portal.assessment.models import Period, Pupil, SchoolClass, SchoolYear
from portal.extensions import db
from portal.pupils import exports, results_exchange, services
from portal.pupils import search as pupil_search
from portal.pupils.forms import (
    ConfirmPupilImportForm,
    ConfirmResultsImportForm,
    PupilForm,
    PupilImportForm,
    ResultsChoiceForm,
    ResultsImportForm,
    ReviewForm,
    ReviewOneForm,
)
from portal.schoolyear.services import current_year, get_class, get_year, list_years
from portal.storage import FileMissing, storage
from tenants.access import can, current_permissions, require, school_blueprint
from tenants.models import User
from tenants.roles import Permission

bp = school_blueprint("pupils", __name__)
T = TypeVar("T")
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    app.add_template_filter(services.status_label, "enrolment_status")


def _year_or_404(year_id: int | None) -> SchoolYear:
    year = get_year(g.school, year_id) if year_id else None
    if year is None:
        abort(404)
    return year


def _class_or_404(class_id: int) -> SchoolClass:
    school_class = get_class(g.school, class_id)
    if school_class is None:
        abort(404)
    return school_class


def _pupil_or_404(pupil_id: int) -> Pupil:
    pupil = services.get_pupil(g.school, pupil_id)
    if pupil is None:
        abort(404)
    return pupil


def _may_view_class(school_class: SchoolClass) -> bool:
    return services.can_view_class_pupils(current_user.id, current_permissions(), school_class)


def _may_review(school_class: SchoolClass) -> bool:
    return services.may_review(current_user.id, current_permissions(), school_class)


def _year_choices() -> list[SelectChoice]:
    return [SelectChoice(y.id, y.name) for y in list_years(g.school)]


def _arg(name: str, alias: str) -> int | None:
    # `?year=&class=` are accepted too: they are the short forms people type and bookmark.
    return request.args.get(name, type=int) or request.args.get(alias, type=int)


def _read_upload(parse: Callable[[], T]) -> T | None:
    """The parsed file, or None after telling the user in Vietnamese why it cannot be read."""
    try:
        return parse()
    except ImportFileError as exc:
        flash(str(exc), "danger")
    except Exception:  # an unforeseen fault deep in openpyxl on a hostile file: refuse it, never a 500
        current_app.logger.exception("unreadable upload")
        flash(_corrupt_message(), "danger")
    return None


def _xlsx(data: bytes, filename: str) -> Response:
    response = send_file(io.BytesIO(data), mimetype=XLSX, as_attachment=True, download_name=filename)
    response.headers["Cache-Control"] = "no-store"  # children's personal data: no copies in caches
    return response


# --- lists and the identity page ------------------------------------------------------------------

def _year_and_class() -> tuple[SchoolYear | None, SchoolClass | None]:
    """The year and class asked for in the query (the current year by default); 404 for another school's."""
    class_id, year_id = _arg("class_id", "class"), _arg("year_id", "year")
    school_class = _class_or_404(class_id) if class_id else None
    if year_id:
        year = _year_or_404(year_id)
    elif school_class is not None:
        year = school_class.school_year
    else:
        year = current_year(g.school, date.today())
    if school_class is not None and school_class.school_year_id != year.id:
        school_class = None  # a class of another year than the one chosen: the year is shown
    return year, school_class


@bp.route("/pupils")
@require(Permission.VIEW_PUPILS)
def pupils() -> str:
    year, school_class = _year_and_class()
    if school_class is not None and not _may_view_class(school_class):
        abort(403)
    classes = services.visible_classes(year, current_user.id, current_permissions()) if year else []
    roster = services.class_roster(school_class) if school_class else []
    review_link = school_class is not None and (_may_review(school_class) or can(Permission.VIEW_REVIEW_PROGRESS))
    return render_template("pupils/list.html", years=list_years(g.school), year=year, classes=classes,
                           school_class=school_class, roster=roster, review_link=review_link,
                           sizes=services.class_sizes(year) if year else {})


@bp.route("/pupils/search")
@require(Permission.VIEW_PUPILS)
def search() -> str:
    """From the search box of every school page: by name (diacritics optional) or by pupil code."""
    text = request.args.get("q", "").strip()[:100]
    found = pupil_search.search_pupils(g.school, text, current_user.id, current_permissions()) if text else []
    return render_template("pupils/search.html", text=text, found=found, max_results=pupil_search.MAX_RESULTS)


@bp.route("/pupils/<int:pupil_id>")
@require(Permission.VIEW_PUPILS)
def pupil(pupil_id: int) -> str:
    record = _pupil_or_404(pupil_id)
    if not services.can_view_pupil(current_user.id, current_permissions(), record):
        abort(403)
    enrolments = services.enrolments_of(record)
    review_class = next((e.school_class for e in enrolments if _may_review(e.school_class)), None)
    reviewer = db.session.get(User, record.identity_reviewed_by_id) if record.identity_reviewed_by_id else None
    return render_template("pupils/detail.html", pupil=record, enrolments=enrolments, review_class=review_class,
                           reviewer=reviewer, review_form=ReviewOneForm(back="pupil"))


@bp.route("/pupils/<int:pupil_id>/edit", methods=["GET", "POST"])
@require(Permission.MANAGE_PUPILS)
def edit_pupil(pupil_id: int) -> str | Response:
    record = _pupil_or_404(pupil_id)
    form = PupilForm(obj=record)
    if not can(Permission.VIEW_PERSONAL_ID):
        del form.personal_id
    if form.validate_on_submit():
        values = {name: form[name].data for name in record.IDENTITY_FIELDS if name in form}
        values = {k: (services.nfc(v) or None) if isinstance(v, str) else v for k, v in values.items()}
        if values.get("personal_id"):
            values["personal_id"] = "".join(values["personal_id"].split())
        changes, cleared = services.update_identity(g.school, record, values, actor=current_user)
        db.session.commit()
        if not changes:
            flash(_("Không có thay đổi nào."), "info")
        else:
            flash(_("Đã lưu thông tin nhân thân."), "success")
        if cleared:
            flash(_("Thông tin nhân thân đã thay đổi nên dấu “đã rà soát” được bỏ: giáo viên chủ nhiệm cần "
                    "rà soát lại học sinh này."), "warning")
        return redirect(url_for("pupils.pupil", pupil_id=record.id))
    return render_template("pupils/edit.html", pupil=record, form=form)


# --- review (rà soát) -----------------------------------------------------------------------------

@bp.route("/pupils/review/<int:class_id>", methods=["GET", "POST"])
@require(Permission.VIEW_PUPILS)
def review_class(class_id: int) -> str | Response:
    school_class = _class_or_404(class_id)
    may_mark = _may_review(school_class)
    if not (may_mark or can(Permission.VIEW_REVIEW_PROGRESS)):
        abort(403)
    roster = services.class_roster(school_class)
    form = ReviewForm()
    form.pupil_ids.choices = [SelectChoice(e.pupil_id, e.pupil.full_name) for e in roster]
    if request.method == "POST":
        if not may_mark:
            abort(403)
        if not form.validate_on_submit():
            abort(400)
        chosen = set(form.pupil_ids.data or [])
        marked = services.mark_identity_reviewed(g.school, [e.pupil for e in roster if e.pupil_id in chosen],
                                                 actor=current_user)
        db.session.commit()
        if chosen:
            flash(_("Đã đánh dấu rà soát thông tin nhân thân của %(n)d học sinh.", n=marked), "success")
        else:
            flash(_("Hãy chọn các học sinh đã rà soát."), "warning")
        return redirect(url_for("pupils.review_class", class_id=class_id))
    return render_template("pupils/review.html", school_class=school_class, roster=roster, form=form,
                           may_mark=may_mark)


@bp.route("/pupils/review/<int:class_id>/<int:pupil_id>", methods=["POST"])
@require(Permission.VIEW_PUPILS)
def review_pupil(class_id: int, pupil_id: int) -> Response:
    school_class = _class_or_404(class_id)
    record = _pupil_or_404(pupil_id)
    if services.enrolment_in(school_class, record.id) is None:
        abort(404)
    if not _may_review(school_class):
        abort(403)
    form = ReviewOneForm()
    if not form.validate_on_submit():
        abort(400)
    if services.mark_identity_reviewed(g.school, [record], actor=current_user):
        db.session.commit()
        flash(_("Đã đánh dấu rà soát thông tin nhân thân của %(n)s.", n=record.full_name), "success")
    if form.back.data == "pupil":
        return redirect(url_for("pupils.pupil", pupil_id=record.id))
    return redirect(url_for("pupils.review_class", class_id=class_id))


@bp.route("/pupils/review-progress")
@require(Permission.VIEW_REVIEW_PROGRESS)
def review_progress() -> str:
    year_id = _arg("year_id", "year")
    year = _year_or_404(year_id) if year_id else current_year(g.school, date.today())
    classes, total = services.review_progress(g.school, year) if year else ([], None)
    return render_template("pupils/progress.html", years=list_years(g.school), year=year, classes=classes,
                           total=total)


# --- exchange with CSDL ngành: pupil lists --------------------------------------------------------

@bp.route("/pupils/import", methods=["GET", "POST"])
@require(Permission.MANAGE_PUPILS)
def pupil_import() -> str:
    form = PupilImportForm()
    form.year_id.choices = _year_choices()
    if request.method == "GET":
        year = current_year(g.school, date.today())
        form.year_id.data = year.id if year else None
    if not form.validate_on_submit():
        return render_template("pupils/import.html", form=form)
    year = _year_or_404(form.year_id.data)
    upload = form.file.data
    filename, data = upload.filename or "", upload.read()
    rows = _read_upload(lambda: parse_pupil_list(filename, data, today=year.starts_on))
    if rows is None:
        return render_template("pupils/import.html", form=form)
    plan = services.plan_pupil_import(g.school, year, rows)
    confirm = ConfirmPupilImportForm(digest=storage().put(data), filename=filename, year_id=year.id)
    return render_template("pupils/import.html", form=form, plan=plan, confirm=confirm)


@bp.route("/pupils/import/confirm", methods=["POST"])
@require(Permission.MANAGE_PUPILS)
def pupil_import_confirm() -> str:
    confirm = ConfirmPupilImportForm()
    if not confirm.validate_on_submit():
        abort(400)
    year = _year_or_404(confirm.year_id.data)
    try:
        data = storage().read(confirm.digest.data)
    except FileMissing:
        abort(404)
    form = PupilImportForm(formdata=None, year_id=year.id)
    form.year_id.choices = _year_choices()
    rows = _read_upload(lambda: parse_pupil_list(confirm.filename.data, data, today=year.starts_on))
    if rows is None:
        return render_template("pupils/import.html", form=form)
    # Planned again against the data as it is now: someone may have changed pupils since the dry run.
    plan = services.plan_pupil_import(g.school, year, rows)
    try:
        services.apply_pupil_import(g.school, plan, actor=current_user, filename=confirm.filename.data)
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        flash(_("Danh sách học sinh vừa được thay đổi ở nơi khác nên chưa có gì được ghi. Hãy tải tệp lên lại."),
              "danger")
        return render_template("pupils/import.html", form=form)
    return render_template("pupils/import_done.html", plan=plan)


@bp.route("/pupils/export")
@require(Permission.MANAGE_PUPILS)
def pupil_export() -> Response:
    year, school_class = _year_and_class()
    if year is None or (_arg("class_id", "class") and school_class is None):
        abort(404)  # no year yet, or a class outside the year asked for: never a different list than asked
    classes = [school_class] if school_class else year.classes
    enrolments = [e for c in classes for e in services.class_roster(c)]
    with_personal_id = can(Permission.VIEW_PERSONAL_ID)
    filename = exports.export_filename(year, school_class.name if school_class else None)
    data = exports.pupil_list_xlsx(enrolments, with_personal_id=with_personal_id)
    # Personal data leaving the portal: who took which list is kept.
    audit.record("pupil.exported", actor=current_user, school_id=g.school.id, obj=year, summary=filename,
                 changes={"pupils": len(enrolments), "personal_id": with_personal_id})
    db.session.commit()
    return _xlsx(data, filename)


# --- exchange with CSDL ngành: results per grade and period ---------------------------------------

def _results_forms(year: SchoolYear | None) -> tuple[ResultsChoiceForm, ResultsImportForm]:
    export_form, import_form = ResultsChoiceForm(prefix="export"), ResultsImportForm(prefix="import")
    periods: dict[str, str] = {}
    for y in list_years(g.school):
        periods.update({p.code: p.name for p in y.periods if p.code not in periods})
    for form in (export_form, import_form):
        form.year_id.choices = _year_choices()
        form.period.choices = [SelectChoice(code, name) for code, name in periods.items()]
        if request.method == "GET" and year is not None:
            form.year_id.data = year.id
    return export_form, import_form


def _grade_period(form: ResultsChoiceForm) -> tuple[SchoolYear, int, Period] | None:
    year = _year_or_404(form.year_id.data)
    period = results_exchange.period_of(year, form.period.data)
    if period is None:
        flash(_("Năm học %(y)s không có kì đánh giá này.", y=year.name), "danger")
        return None
    return year, form.grade.data, period


@bp.route("/pupils/results-exchange", methods=["GET", "POST"])
@require(Permission.MANAGE_PUPILS)
def results() -> str:
    export_form, import_form = _results_forms(current_year(g.school, date.today()))
    page = {"export_form": export_form, "import_form": import_form}
    if not import_form.validate_on_submit():
        return render_template("pupils/results.html", **page)
    chosen = _grade_period(import_form)
    if chosen is None:
        return render_template("pupils/results.html", **page)
    year, grade, period = chosen
    upload = import_form.file.data
    filename, data = upload.filename or "", upload.read()
    rows = _read_upload(lambda: results_exchange.parse_results(filename, data, year=year, grade=grade, period=period))
    if rows is None:
        return render_template("pupils/results.html", **page)
    plan = results_exchange.plan_results_import(g.school, year, grade, period, rows)
    confirm = ConfirmResultsImportForm(digest=storage().put(data), filename=filename, year_id=year.id, grade=grade,
                                       period=period.code)
    return render_template("pupils/results.html", plan=plan, confirm=confirm, **page)


@bp.route("/pupils/results-exchange/export", methods=["POST"])
@require(Permission.MANAGE_PUPILS)
def results_export() -> str | Response:
    export_form, import_form = _results_forms(None)
    if not export_form.validate_on_submit():
        return render_template("pupils/results.html", export_form=export_form, import_form=import_form)
    chosen = _grade_period(export_form)
    if chosen is None:
        return render_template("pupils/results.html", export_form=export_form, import_form=import_form)
    year, grade, period = chosen
    data = results_exchange.results_xlsx(year, grade, period)
    filename = results_exchange.export_filename(year, grade, period)
    audit.record("results.exported", actor=current_user, school_id=g.school.id, obj=year, summary=filename,
                 changes={"grade": grade, "period": getattr(period, "code", str(period))})
    db.session.commit()
    return _xlsx(data, filename)


@bp.route("/pupils/results-exchange/confirm", methods=["POST"])
@require(Permission.MANAGE_PUPILS)
def results_confirm() -> str:
    confirm = ConfirmResultsImportForm()
    if not confirm.validate_on_submit():
        abort(400)
    year = _year_or_404(confirm.year_id.data)
    period = results_exchange.period_of(year, confirm.period.data)
    if period is None or confirm.grade.data not in range(1, 6):
        abort(404)
    try:
        data = storage().read(confirm.digest.data)
    except FileMissing:
        abort(404)
    export_form, import_form = _results_forms(year)
    page = {"export_form": export_form, "import_form": import_form}
    filename, grade = confirm.filename.data, confirm.grade.data
    rows = _read_upload(lambda: results_exchange.parse_results(filename, data, year=year, grade=grade, period=period))
    if rows is None:
        return render_template("pupils/results.html", **page)
    plan = results_exchange.plan_results_import(g.school, year, grade, period, rows)
    try:
        results_exchange.apply_results_import(g.school, plan, actor=current_user, filename=filename)
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        flash(_("Kết quả vừa được thay đổi ở nơi khác nên chưa có gì được ghi. Hãy tải tệp lên lại."), "danger")
        return render_template("pupils/results.html", **page)
    return render_template("pupils/results_done.html", plan=plan)
