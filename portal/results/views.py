"""Year-end results of a class (the GVCN acts, management reads), and the class summary of any period."""
from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any, NamedTuple

from flask import Flask, abort, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from flask_wtf import FlaskForm
from markupsafe import Markup
from werkzeug.wrappers import Response

from portal import audit, pagecache
from portal.assessment import words
from portal.assessment.access import can_assess_class, can_view_class
from portal.assessment.classification import Outcome
from portal.assessment.models import Period, SchoolClass
from portal.extensions import db
from portal.results import services, summary
from portal.results.forms import (
    ActionForm,
    AwardForm,
    ExemplaryForm,
    OutcomeForm,
    PromotionForm,
    SelectionForm,
    SupplementaryForm,
)
from portal.results.services import PupilResult
from portal.schoolyear.services import get_class
from tenants.access import can, current_permissions, require, school_blueprint
from tenants.roles import N_, Permission

bp = school_blueprint("results", __name__)


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    app.jinja_env.globals.update(outcome_label=services.outcome_label, promotion_label=services.promotion_label)
    app.add_template_filter(words.reason, "reason")
    app.add_template_filter(words.catalogue, "catalogue")


@bp.errorhandler(services.ResultsError)
def _cannot_compute(error: services.ResultsError) -> tuple[str, int]:
    # Reading a class can fail only on the year's own settings (its score thresholds): say so plainly.
    db.session.rollback()
    return render_template("error.html", code=409, message=str(error)), 409


# --- who may do what (object-level, failing closed) --------------------------------------------------


def _class_or_404(class_id: int) -> SchoolClass:
    school_class = get_class(g.school, class_id)
    if school_class is None:
        abort(404)
    return school_class


def _may_act(school_class: SchoolClass) -> bool:
    return can_assess_class(current_user.id, current_permissions(), school_class)


def _may_read_results(school_class: SchoolClass) -> bool:
    return _may_act(school_class) or can(Permission.VIEW_ALL_RATINGS) or can(Permission.DECIDE_PROMOTION)


def _readable_class(class_id: int) -> SchoolClass:
    school_class = _class_or_404(class_id)
    if not _may_read_results(school_class):
        abort(403)
    return school_class


def _pupil_or_404(school_class: SchoolClass, pupil_id: int) -> PupilResult:
    entry = services.pupil_result(school_class, pupil_id)
    if entry is None:
        abort(404)
    return entry


def _back(school_class: SchoolClass, pupil_id: int | None = None) -> Response:
    if pupil_id is not None and request.form.get("back") == "pupil":
        return redirect(url_for("results.pupil", class_id=school_class.id, pupil_id=pupil_id))
    anchor = f"#pupil-{pupil_id}" if pupil_id is not None else ""
    return redirect(url_for("results.year_end", class_id=school_class.id) + anchor)


def _gvcn_action(form_class: type[FlaskForm], change: Callable[[SchoolClass, PupilResult, Any], object],
                 class_id: int, pupil_id: int, done: str) -> Response:
    """The shape of every GVCN action on one pupil: authorise, validate, change, commit, go back."""
    school_class = _class_or_404(class_id)
    if not _may_act(school_class):
        abort(403)  # before validation: a refused user learns nothing from the form's errors
    entry = _pupil_or_404(school_class, pupil_id)
    return _apply(form_class, change, school_class, entry, done)


def _apply(form_class: type[FlaskForm], change: Callable[[SchoolClass, PupilResult, Any], object],
           school_class: SchoolClass, entry: PupilResult, done: str) -> Response:
    form = form_class()
    if not form.validate_on_submit():
        for errors in form.errors.values():
            for error in errors:
                flash(str(error), "danger")
        return _back(school_class, entry.pupil.id)
    try:
        changed = change(school_class, entry, form)
    except services.ResultsError as exc:
        db.session.rollback()
        flash(str(exc), "danger")
    else:
        db.session.commit()
        if changed is not False:  # False: nothing to change (None: a change that returns nothing)
            flash(done, "success")
    return _back(school_class, entry.pupil.id)


# --- pages -------------------------------------------------------------------------------------------


@bp.route("/results")
@require(Permission.VIEW_SCHOOL)
def classes() -> str:
    year, all_classes = services.visible_classes(g.school, date.today())
    permissions = current_permissions()
    rows = [(c, _may_read_results(c)) for c in all_classes if can_view_class(current_user.id, permissions, c)
            or _may_read_results(c)]
    return render_template("results/classes.html", year=year, rows=rows)


# The decision table's filters: what the GVCN looks for at the year end.
FILTERS: dict[str, tuple[str, Callable[[PupilResult], bool]]] = {
    "all": (N_("Tất cả"), lambda e: True),
    "to_confirm": (N_("Chờ xác nhận"), lambda e: e.needs_confirmation),
    "cht": (N_("Chưa hoàn thành"), lambda e: Outcome.NOT_COMPLETED in (e.outcome, e.computed.outcome)),
    "awards": (N_("Khen thưởng"), lambda e: bool(e.awards)),
    "to_review": (N_("Chưa rà soát"), lambda e: not e.reviewed),
}


@bp.route("/results/classes/<int:class_id>")
@require(Permission.VIEW_SCHOOL)
def year_end(class_id: int) -> str:
    school_class = _readable_class(class_id)
    shown = request.args.get("show", "all")
    shown = shown if shown in FILTERS else "all"
    may_act = _may_act(school_class)
    table = pagecache.kept("results", (school_class.id, shown, may_act),
                           lambda: _results_table(school_class, shown, may_act=may_act), ResultsTable.size)
    return render_template("results/class.html", school_class=school_class, table=table, shown=shown,
                           filters={key: label for key, (label, _test) in FILTERS.items()}, may_act=may_act,
                           form=ActionForm(), selection=SelectionForm(),
                           year_end_period=services.year_end_period(school_class.school_year))


class ResultsTable(NamedTuple):
    """What the year-end page shows of its pupils: kept rendered per data version (portal/pagecache.py)."""

    total: int
    confirmed: int
    reviewed: int
    counts: dict[str, int]  # pupils per filter
    shown: int  # rows under the filter shown
    rows: Markup  # the table's rows
    left: Markup  # the pupils whose result is not reviewed yet

    def size(self) -> int:
        return pagecache.size_of(self.rows, self.left) + 500


def _results_table(school_class: SchoolClass, shown: str, *, may_act: bool) -> ResultsTable:
    entries = services.read_class_results(school_class)
    rows = [e for e in entries if FILTERS[shown][1](e)]
    left = [e for e in entries if not e.reviewed]
    return ResultsTable(
        total=len(entries), confirmed=sum(1 for e in entries if e.confirmed), reviewed=len(entries) - len(left),
        counts={key: sum(1 for e in entries if test(e)) for key, (_label, test) in FILTERS.items()},
        shown=len(rows),
        rows=Markup(render_template("results/_rows.html", school_class=school_class, entries=entries, rows=rows,
                                   numbers={e.pupil.id: n for n, e in enumerate(entries, start=1)},
                                   may_act=may_act, pupil_url_prefix=_pupil_url_prefix(school_class))),
        left=Markup(render_template("results/_left.html", left=left)))


def _pupil_url_prefix(school_class: SchoolClass) -> str:
    """The address of a pupil's results page without the pupil's id: built once, not once per row."""
    url = url_for("results.pupil", class_id=school_class.id, pupil_id=0)
    assert url.endswith("/0")
    return url[:-1]


@bp.route("/results/classes/<int:class_id>/pupils/<int:pupil_id>")
@require(Permission.VIEW_SCHOOL)
def pupil(class_id: int, pupil_id: int) -> str:
    school_class = _readable_class(class_id)
    entry = _pupil_or_404(school_class, pupil_id)
    stored = entry.stored
    names = services.people_names([stored.confirmed_by_id, stored.decided_by_id] if stored else [])
    return render_template(
        "results/pupil.html", school_class=school_class, entry=entry, names=names, Outcome=Outcome,
        may_act=_may_act(school_class), may_decide=can(Permission.DECIDE_PROMOTION),
        form=ActionForm(back="pupil"), outcome_form=OutcomeForm(back="pupil", outcome=stored.outcome if stored else ""),
        exemplary_form=ExemplaryForm(back="pupil", recognised=entry.exemplary),
        award_form=AwardForm(back="pupil"),
        supplementary_form=SupplementaryForm(back="pupil", note=stored.supplementary_note if stored else "",
                                             assessed_on=stored.supplementary_on if stored else None,
                                             passed=_promoted_choice(stored.supplementary_passed if stored else None)),
        promotion_form=PromotionForm(back="pupil", promoted=_promoted_choice(stored.promoted if stored else None)))


def _promoted_choice(promoted: bool | None) -> str | None:
    return None if promoted is None else ("1" if promoted else "0")


# --- the GVCN's actions ------------------------------------------------------------------------------


@bp.route("/results/classes/<int:class_id>/confirm", methods=["POST"])
@require(Permission.CONFIRM_RESULTS)
def confirm_all(class_id: int) -> Response:
    school_class = _class_or_404(class_id)
    if not _may_act(school_class):
        abort(403)
    if not ActionForm().validate_on_submit():
        abort(400)
    count = services.confirm_all(g.school, school_class, actor=current_user)
    db.session.commit()
    flash(_("Đã xác nhận kết quả của %(n)d học sinh.", n=count), "success")
    return _back(school_class)


@bp.route("/results/classes/<int:class_id>/selected", methods=["POST"])
@require(Permission.CONFIRM_RESULTS)
def act_on_selected(class_id: int) -> Response:
    """The decision table's bulk actions on the ticked rows: confirm them, or mark them reviewed."""
    school_class = _class_or_404(class_id)
    if not _may_act(school_class):
        abort(403)
    form = SelectionForm()
    if not form.validate_on_submit():
        abort(400)
    chosen = form.pupil_ids.data or []
    if not chosen:
        flash(_("Chưa chọn học sinh nào: hãy đánh dấu các dòng bạn đồng ý."), "warning")
    elif request.form.get("action") == "review":
        count = services.review_selected(g.school, school_class, chosen, actor=current_user)
        db.session.commit()
        flash(_("Đã đánh dấu đã rà soát %(n)d học sinh.", n=count), "success")
    else:
        count = services.confirm_selected(g.school, school_class, chosen, actor=current_user)
        db.session.commit()
        flash(_("Đã xác nhận kết quả của %(n)d học sinh.", n=count), "success")
    show = request.form.get("show", "")
    return redirect(url_for("results.year_end", class_id=school_class.id, show=show if show in FILTERS else None))


@bp.route("/results/classes/<int:class_id>/pupils/<int:pupil_id>/confirm", methods=["POST"])
@require(Permission.CONFIRM_RESULTS)
def confirm(class_id: int, pupil_id: int) -> Response:
    return _gvcn_action(ActionForm, lambda c, e, f: services.confirm_result(g.school, c, e, actor=current_user),
                        class_id, pupil_id, _("Đã xác nhận kết quả."))


@bp.route("/results/classes/<int:class_id>/pupils/<int:pupil_id>/outcome", methods=["POST"])
@require(Permission.CONFIRM_RESULTS)
def set_outcome(class_id: int, pupil_id: int) -> Response:
    return _gvcn_action(
        OutcomeForm, lambda c, e, f: services.set_result(g.school, c, e, Outcome(f.outcome.data), actor=current_user),
        class_id, pupil_id, _("Đã lưu kết quả."))


@bp.route("/results/classes/<int:class_id>/pupils/<int:pupil_id>/exemplary", methods=["POST"])
@require(Permission.CONFIRM_RESULTS)
def set_exemplary(class_id: int, pupil_id: int) -> Response:
    return _gvcn_action(
        ExemplaryForm,
        lambda c, e, f: services.set_exemplary(g.school, c, e, bool(f.recognised.data), actor=current_user),
        class_id, pupil_id, _("Đã lưu danh hiệu."))


@bp.route("/results/classes/<int:class_id>/pupils/<int:pupil_id>/awards", methods=["POST"])
@require(Permission.CONFIRM_RESULTS)
def add_award(class_id: int, pupil_id: int) -> Response:
    return _gvcn_action(
        AwardForm,
        lambda c, e, f: services.add_award(g.school, c, e, f.awarded_on.data, f.title.data, actor=current_user),
        class_id, pupil_id, _("Đã thêm khen thưởng."))


@bp.route("/results/classes/<int:class_id>/awards/<int:award_id>/delete", methods=["POST"])
@require(Permission.CONFIRM_RESULTS)
def delete_award(class_id: int, award_id: int) -> Response:
    school_class = _class_or_404(class_id)
    if not _may_act(school_class):
        abort(403)
    found = services.find_award(services.class_results(school_class), award_id)
    if found is None:
        abort(404)
    entry, award = found
    return _apply(ActionForm, lambda c, e, f: services.remove_award(g.school, c, e, award, actor=current_user),
                  school_class, entry, _("Đã xóa khen thưởng."))


@bp.route("/results/classes/<int:class_id>/pupils/<int:pupil_id>/supplementary", methods=["POST"])
@require(Permission.CONFIRM_RESULTS)
def set_supplementary(class_id: int, pupil_id: int) -> Response:
    return _gvcn_action(
        SupplementaryForm,
        lambda c, e, f: services.record_supplementary(g.school, c, e, on=f.assessed_on.data, note=f.note.data,
                                                      passed=f.passed.data == "1", actor=current_user)
        if f.assessed_on.data else services.set_supplementary_note(g.school, c, e, f.note.data, actor=current_user),
        class_id, pupil_id, _("Đã lưu kết quả đánh giá bổ sung."))


@bp.route("/results/classes/<int:class_id>/pupils/<int:pupil_id>/review", methods=["POST"])
@require(Permission.CONFIRM_RESULTS)
def mark_reviewed(class_id: int, pupil_id: int) -> Response:
    return _gvcn_action(ActionForm, lambda c, e, f: services.mark_reviewed(g.school, c, e, actor=current_user),
                        class_id, pupil_id, _("Đã đánh dấu đã rà soát."))


# --- the principal's decision ------------------------------------------------------------------------


@bp.route("/results/classes/<int:class_id>/pupils/<int:pupil_id>/promotion", methods=["POST"])
@require(Permission.DECIDE_PROMOTION)
def decide_promotion(class_id: int, pupil_id: int) -> Response:
    school_class = _class_or_404(class_id)
    entry = _pupil_or_404(school_class, pupil_id)
    return _apply(
        PromotionForm,
        lambda c, e, f: services.decide_promotion(g.school, c, e, f.promoted.data == "1", actor=current_user),
        school_class, entry, _("Đã lưu quyết định lên lớp."))


# --- the class summary -------------------------------------------------------------------------------


def _summary_or_404(class_id: int, period_id: int) -> summary.ClassSummary:
    school_class = _class_or_404(class_id)
    if not can_view_class(current_user.id, current_permissions(), school_class):
        abort(403)
    period: Period | None = services.get_period(school_class, period_id)
    if period is None:
        abort(404)
    return summary.build_class_summary(school_class, period)


@bp.route("/results/classes/<int:class_id>/summary/<int:period_id>")
@require(Permission.VIEW_SCHOOL)
def class_summary(class_id: int, period_id: int) -> str:
    built = _summary_or_404(class_id, period_id)
    return render_template("results/summary.html", summary=built, tables=summary.summary_tables(built),
                           title=summary.summary_title())


@bp.route("/results/classes/<int:class_id>/summary/<int:period_id>.xlsx")
@require(Permission.VIEW_SCHOOL)
def class_summary_xlsx(class_id: int, period_id: int) -> Response:
    built = _summary_or_404(class_id, period_id)
    content = summary.summary_workbook(built, g.school.name)
    filename = f"tong-hop-{built.school_class.name}-{built.period.code}.xlsx".lower()
    audit.record("results.summary_exported", actor=current_user, school_id=g.school.id, obj=built.school_class,
                 summary=filename, changes={"period": built.period.code})
    db.session.commit()
    return Response(content, mimetype=summary.XLSX_MIMETYPE,
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})
