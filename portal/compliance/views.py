from __future__ import annotations

import io

from flask import Flask, abort, flash, g, redirect, render_template, request, send_file, url_for
from flask_babel import gettext as _
from flask_login import current_user
from werkzeug.wrappers import Response
from wtforms.fields.choices import SelectChoice

from portal import uploads
from portal.compliance import charts, exports, services, tasks
from portal.compliance.forms import (
    CopyPlanForm,
    EvidenceForm,
    MilestoneForm,
    ReminderForm,
    ReviewEvidenceForm,
    ShiftPlanForm,
    TrainingForm,
)
from portal.compliance.measures import REGISTRY, STATE_LABELS, CellState
from portal.compliance.models import Evidence, Milestone, Scope, TrainingSession
from portal.district.services import get_district, get_school
from portal.extensions import db, utcnow
from portal.jobs import enqueue
from portal.school.forms import ActionForm
from portal.schoolyear.services import school_year_label
from portal.storage import FileMissing, storage
from tenants.access import can, district_blueprint, require, school_blueprint
from tenants.models import District, School
from tenants.roles import Permission
from tenants.scoping import school_scope

bp = school_blueprint("compliance", __name__)
district_bp = district_blueprint("compliance_board", __name__, url_prefix="/district/compliance")
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    app.register_blueprint(district_bp)
    app.cli.add_command(tasks.cli)
    app.context_processor(lambda: {"compliance_notices": _notices_here})


def _notices_here() -> list:
    """The district's open reminders for the school page being shown (empty for those who do not follow it)."""
    if "school" not in g or not can(Permission.VIEW_SCHOOL_PROGRESS):
        return []
    return services.open_notices(g.school)


def _year(district: District, years: list[str] | None = None) -> str:
    """The year asked for, else today's school year when it has a plan, else the newest year with a plan
    (or the first plan's year)."""
    years = services.plan_years(district) if years is None else years
    asked = request.args.get("year", "")
    if asked in years:
        return asked
    current = school_year_label(services.today_local())
    if current in years:
        return current
    return years[0] if years else "2024-2025"


def _milestone_or_404(district: District, milestone_id: int | None) -> Milestone:
    milestone = services.get_milestone(district, milestone_id) if milestone_id else None
    if milestone is None:
        abort(404)
    return milestone


def _download(item: Evidence) -> Response:
    try:
        data = storage().read(item.digest)
    except FileMissing:
        abort(404)
    # A type stored before uploads were checked by content is not trusted: a download, never a page.
    mimetype = item.mimetype if uploads.is_evidence_mimetype(item.mimetype) else "application/octet-stream"
    response = send_file(io.BytesIO(data), mimetype=mimetype, as_attachment=True, download_name=item.filename)
    response.headers["Cache-Control"] = "no-store"
    return response


def _fix_url(measure_key: str, class_id: int | None) -> str | None:
    """The page where the school fixes what a measure misses, when that page exists here."""
    measure = REGISTRY.get(measure_key)
    endpoint = measure.fix_endpoint if measure else None
    if endpoint is None:
        return None
    from flask import current_app

    rule = next(iter(current_app.url_map.iter_rules(endpoint)), None) if endpoint in current_app.view_functions \
        else None
    if rule is None:
        return None
    if "class_id" in rule.arguments:
        return url_for(endpoint, class_id=class_id) if class_id else None
    return url_for(endpoint)


# --- the school's own view -------------------------------------------------------------------------------


@bp.route("/compliance/")
@require(Permission.VIEW_SCHOOL_PROGRESS)
def progress() -> str:
    district = get_district()
    year = _year(district)
    lines = services.school_progress(district, g.school, year, services.today_local())
    return render_template("compliance/school.html", year=year, years=services.plan_years(district), lines=lines,
                           fix_url=_fix_url, opened=request.args.get("m", type=int), registry=REGISTRY,
                           cell_html=exports.cell_html, labels=exports.cell_words())


@bp.route("/compliance/evidence", methods=["GET", "POST"])
@require(Permission.VIEW_SCHOOL_PROGRESS)
def evidence() -> str | Response:
    district = get_district()
    year = _year(district)
    lines = [m for m in services.plan(district, year) if m.measure == "evidence"]
    form = EvidenceForm()
    if request.method == "POST":
        if not can(Permission.SUBMIT_EVIDENCE):
            abort(403)
        milestone = _milestone_or_404(district, _int(form.milestone_id.data))
        if form.validate_on_submit():
            upload = form.file.data
            try:
                services.submit_evidence(g.school, milestone, data=upload.read(), filename=upload.filename or "",
                                         done_on=form.done_on.data,
                                         note=form.note.data or "", actor=current_user)
            except services.EvidenceError as exc:
                db.session.rollback()
                flash(str(exc), "danger")
            else:
                db.session.commit()
                flash(_("Đã gửi minh chứng; Phòng GD&ĐT sẽ xem xét."), "success")
                return redirect(url_for("compliance.evidence", year=year))
    sent = services.evidence_of(g.school, [m.id for m in lines])
    return render_template("compliance/evidence.html", year=year, lines=lines, sent=sent, form=form,
                           failed=_int(form.milestone_id.data) if request.method == "POST" else None)


def _int(text: object) -> int | None:
    try:
        return int(str(text))
    except (TypeError, ValueError):
        return None


@bp.route("/compliance/evidence/<int:evidence_id>")
@require(Permission.VIEW_SCHOOL_PROGRESS)
def evidence_file(evidence_id: int) -> Response:
    item = services.get_evidence(evidence_id)  # scoped to this school: another school's id is None
    if item is None:
        abort(404)
    return _download(item)


@bp.route("/compliance/training", methods=["GET", "POST"])
@require(Permission.MANAGE_TRAINING)
def training() -> str | Response:
    form = TrainingForm()
    staff = services.staff_members(g.school)
    form.attendees.choices = [SelectChoice(u.id, u.full_name) for u in staff]
    if form.validate_on_submit():
        try:
            services.record_training(g.school, held_on=form.held_on.data, topic=form.topic.data,
                                     trainer=form.trainer.data, attendee_ids=form.attendees.data or [],
                                     actor=current_user)
        except services.TrainingError as exc:
            db.session.rollback()
            flash(str(exc), "danger")
        else:
            db.session.commit()
            flash(_("Đã ghi nhận buổi tập huấn."), "success")
            return redirect(url_for("compliance.training"))
    return render_template("compliance/training.html", form=form, sessions=services.trainings(g.school),
                           staff=staff, action_form=ActionForm())


def _training_or_404(training_id: int) -> TrainingSession:
    session = services.get_training(training_id)
    if session is None:
        abort(404)
    return session


@bp.route("/compliance/training/<int:training_id>", methods=["GET", "POST"])
@require(Permission.MANAGE_TRAINING)
def training_edit(training_id: int) -> str | Response:
    session = _training_or_404(training_id)
    form = TrainingForm(obj=session)
    form.attendees.choices = [SelectChoice(u.id, u.full_name) for u in services.staff_members(g.school)]
    if request.method == "GET":
        form.attendees.data = [a.user_id for a in session.attendances]
    if form.validate_on_submit():
        try:
            services.update_training(g.school, session, held_on=form.held_on.data, topic=form.topic.data,
                                     trainer=form.trainer.data, attendee_ids=form.attendees.data or [],
                                     actor=current_user)
        except services.TrainingError as exc:
            db.session.rollback()
            flash(str(exc), "danger")
        else:
            db.session.commit()
            flash(_("Đã lưu buổi tập huấn."), "success")
            return redirect(url_for("compliance.training"))
    return render_template("compliance/training_edit.html", form=form, session=session)


@bp.route("/compliance/training/<int:training_id>/delete", methods=["POST"])
@require(Permission.MANAGE_TRAINING)
def training_delete(training_id: int) -> Response:
    session = _training_or_404(training_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    services.delete_training(g.school, session, actor=current_user)
    db.session.commit()
    flash(_("Đã xóa buổi tập huấn."), "success")
    return redirect(url_for("compliance.training"))


@bp.route("/compliance/notices/read", methods=["POST"])
@require(Permission.VIEW_SCHOOL_PROGRESS)
def notices_read() -> Response:
    if not ActionForm().validate_on_submit():
        abort(400)
    services.mark_notices_read(g.school, actor=current_user)
    db.session.commit()
    return redirect(url_for("school.home"))


# --- the district board ----------------------------------------------------------------------------------


def _filters() -> dict[str, object]:
    state = request.args.get("state", "")
    scope = request.args.get("scope", "")
    return {"state": state if state in {s.value for s in CellState} else "",
            "phase": request.args.get("phase", type=int),
            "scope": scope if scope in {s.value for s in Scope} else "",
            "sort": request.args.get("sort", "name")}


def _board(district: District | None = None, years: list[str] | None = None
           ) -> tuple[services.Board, list[Milestone], list[School], dict[str, object]]:
    district = district or get_district()
    board = services.current_board(district, _year(district, years), services.today_local())
    filters = _filters()
    columns, rows = services.filter_board(board, **filters)  # type: ignore[arg-type]
    return board, columns, rows, filters


PER_PAGE = 50  # schools per page of the board: a district fits on one, a city's 500 take ten


@district_bp.route("/")
@require(Permission.VIEW_DISTRICT)
def board() -> str:
    district = get_district()
    years = services.plan_years(district)
    board, columns, rows, filters = _board(district, years)
    pages = max(1, -(-len(rows) // PER_PAGE))
    page = min(max(request.args.get("page", 1, type=int), 1), pages)
    shown = rows[(page - 1) * PER_PAGE:page * PER_PAGE]
    labels = exports.cell_words()
    grid = []  # built here rather than in the template: hundreds of cells render 5x faster in plain Python
    for school in shown:
        detail = url_for("compliance_board.school_detail", code=school.code, year=board.year_label)
        grid.append((school, detail, [exports.cell_html(board.cell(school, m), labels, f"{detail}&m={m.id}#m{m.id}",
                                                        f"{detail}&m={m.id}#missing") for m in columns]))
    stale, refreshing = services.needs_refresh(board, utcnow()), services.refresh_queued()
    if stale and not refreshing:  # too old to show as it is: count again in the background, say so
        enqueue("compliance.snapshot", school_id=None, actor=current_user, title=_("Cập nhật số liệu tiến độ"),
                year_label=board.year_label, day=services.today_local().isoformat())
        db.session.commit()
        refreshing = True
    return render_template("compliance/board.html", board=board, columns=columns, grid=grid, filters=filters,
                           page=page, pages=pages, matching=len(rows),
                           years=years, states=STATE_LABELS, scopes=list(Scope),
                           pending=services.pending_evidence(district), action_form=ActionForm(),
                           cell_text=exports.cell_text, stale=stale, refreshing=refreshing,
                           overview=charts.plan_overview(board))


@district_bp.route("/board.xlsx")
@require(Permission.VIEW_DISTRICT)
def board_xlsx() -> Response:
    board, columns, rows, _ignored = _board()
    data = exports.board_workbook(board, columns, rows)
    response = send_file(io.BytesIO(data), mimetype=XLSX, as_attachment=True,
                         download_name=f"tien-do-hoc-ba-so-{board.year_label}-{board.today.isoformat()}.xlsx")
    response.headers["Cache-Control"] = "no-store"
    return response


@district_bp.route("/print")
@require(Permission.VIEW_DISTRICT)
def board_print() -> str:
    board, columns, rows, _ignored = _board()
    return render_template("compliance/print.html", board=board, columns=columns, rows=rows,
                           district=get_district(), cell_text=exports.cell_text)


@district_bp.route("/milestones/<int:milestone_id>")
@require(Permission.VIEW_DISTRICT)
def milestone_chart(milestone_id: int) -> str:
    district = get_district()
    milestone = _milestone_or_404(district, milestone_id)
    today = services.today_local()
    board = services.current_board(district, milestone.year_label, today, milestones=[milestone])
    series = services.history(milestone)
    live = [board.cell(s, milestone) for s in board.schools]
    counted = [c for c in live if c.state not in (CellState.NOT_MEASURABLE, CellState.NO_ONE_IN_SCOPE)]
    if counted:
        series[today] = (sum(c.done for c in counted), sum(c.total for c in counted))
    return render_template("compliance/milestone.html", milestone=milestone, board=board,
                           burn_up=charts.burn_up(series, milestone.deadline, today),
                           positions=charts.positions([(s.name, s.code, board.cell(s, milestone))
                                                       for s in board.schools]),
                           measure=REGISTRY.get(milestone.measure))


def _school_or_404(code: str) -> School:
    school = get_school(code)
    if school is None or not school.active:
        abort(404)
    return school


@district_bp.route("/schools/<code>")
@require(Permission.VIEW_DISTRICT)
def school_detail(code: str) -> str:
    school = _school_or_404(code)
    district = get_district()
    year = _year(district)
    with school_scope(school.id):
        lines = services.school_progress(district, school, year, services.today_local())
    form = ReminderForm()
    form.milestone_id.choices = [SelectChoice(0, "—")] + [SelectChoice(line.milestone.id, line.milestone.title)
                                                            for line in lines]
    return render_template("compliance/district_school.html", school=school, year=year, lines=lines, form=form,
                           review_form=ReviewEvidenceForm(), opened=request.args.get("m", type=int),
                           registry=REGISTRY, cell_html=exports.cell_html, labels=exports.cell_words())


@district_bp.route("/schools/<code>/remind", methods=["POST"])
@require(Permission.VIEW_DISTRICT, Permission.MANAGE_PLAN)
def remind(code: str) -> Response:
    school = _school_or_404(code)
    district = get_district()
    form = ReminderForm()
    form.milestone_id.choices = [SelectChoice(0, "—")] + [SelectChoice(m.id, m.title)
                                                            for m in services.plan(district, _year(district))]
    if not form.validate_on_submit():
        flash(_("Hãy ghi nội dung nhắc việc."), "danger")
        return redirect(url_for("compliance_board.school_detail", code=code))
    milestone = services.get_milestone(district, form.milestone_id.data) if form.milestone_id.data else None
    with school_scope(school.id):
        services.send_reminder(school, message=form.message.data, milestone=milestone, actor=current_user)
        db.session.commit()
    flash(_("Đã gửi nhắc việc tới %(s)s.", s=school.name), "success")
    return redirect(url_for("compliance_board.school_detail", code=code))


def _district_evidence_or_404(evidence_id: int) -> Evidence:
    item = services.get_evidence(evidence_id)
    if item is None or item.milestone.district_id != get_district().id:
        abort(404)
    return item


@district_bp.route("/evidence/<int:evidence_id>", methods=["GET", "POST"])
@require(Permission.VIEW_DISTRICT)
def evidence_review(evidence_id: int) -> Response:
    item = _district_evidence_or_404(evidence_id)
    if request.method == "GET":
        return _download(item)
    if not can(Permission.MANAGE_PLAN):
        abort(403)
    form = ReviewEvidenceForm()
    school = db.session.get(School, item.school_id)
    if form.validate_on_submit():
        try:
            with school_scope(item.school_id):
                services.review_evidence(item, accept=form.verdict.data == "accept", comment=form.comment.data or "",
                                         actor=current_user)
                db.session.commit()
        except services.EvidenceError as exc:
            db.session.rollback()
            flash(str(exc), "danger")
        else:
            flash(_("Đã ghi kết luận về minh chứng."), "success")
    else:
        flash(_("Hãy chọn chấp nhận hoặc trả lại."), "danger")
    return redirect(url_for("compliance_board.school_detail", code=school.code if school else ""))


@district_bp.route("/refresh", methods=["POST"])
@require(Permission.VIEW_DISTRICT)
def refresh() -> Response:
    """Count every school again now (a job); any district officer may ask, it changes no one's data."""
    if not ActionForm().validate_on_submit():
        abort(400)
    district = get_district()
    year = _year(district)
    if not services.refresh_queued():
        enqueue("compliance.snapshot", school_id=None, actor=current_user, title=_("Cập nhật số liệu tiến độ"),
                year_label=year, day=services.today_local().isoformat())
        db.session.commit()
    flash(_("Đang cập nhật số liệu; tải lại trang sau ít phút."), "success")
    return redirect(url_for("compliance_board.board", year=year))


# --- the plan --------------------------------------------------------------------------------------------


@district_bp.route("/plan", methods=["GET", "POST"])
@require(Permission.VIEW_DISTRICT)
def plan() -> str | Response:
    district = get_district()
    year = _year(district)
    form = MilestoneForm()
    if request.method == "POST":
        if not can(Permission.MANAGE_PLAN):
            abort(403)
        if form.validate_on_submit():
            try:
                services.add_milestone(district, year, phase=form.phase.data, title=form.title.data,
                                       deadline=form.deadline.data, scope=Scope(form.scope.data),
                                       measure=form.measure.data, actor=current_user)
            except services.PlanError as exc:
                db.session.rollback()
                flash(str(exc), "danger")
            else:
                db.session.commit()
                flash(_("Đã thêm mốc vào kế hoạch."), "success")
                return redirect(url_for("compliance_board.plan", year=year))
    copy_form = CopyPlanForm(source=year, target=_next(year))
    return render_template("compliance/plan.html", year=year, years=services.plan_years(district),
                           lines=services.plan(district, year), form=form, copy_form=copy_form,
                           shift_form=ShiftPlanForm(), action_form=ActionForm(), registry=REGISTRY)


def _next(year: str) -> str:
    try:
        return services.next_year_label(year)
    except services.PlanError:
        return ""


@district_bp.route("/plan/seed", methods=["POST"])
@require(Permission.VIEW_DISTRICT, Permission.MANAGE_PLAN)
def plan_seed() -> Response:
    if not ActionForm().validate_on_submit():
        abort(400)
    added = services.seed_plan(get_district(), actor=current_user)
    db.session.commit()
    flash(_("Đã tạo %(n)d mốc của kế hoạch 2024-2025.", n=added), "success")
    return redirect(url_for("compliance_board.plan", year="2024-2025"))


@district_bp.route("/plan/copy", methods=["POST"])
@require(Permission.VIEW_DISTRICT, Permission.MANAGE_PLAN)
def plan_copy() -> Response:
    form = CopyPlanForm()
    if not form.validate_on_submit():
        flash(" ".join(str(e) for errors in form.errors.values() for e in errors), "danger")  # lazy messages too
        return redirect(url_for("compliance_board.plan"))
    try:
        years = int(form.target.data[:4]) - int(form.source.data[:4])
        copied = services.copy_plan(get_district(), form.source.data, form.target.data, shift_years=years,
                                    shift_days=form.shift_days.data, actor=current_user)
    except services.PlanError as exc:
        db.session.rollback()
        flash(str(exc), "danger")
        return redirect(url_for("compliance_board.plan", year=form.source.data))
    db.session.commit()
    flash(_("Đã chép %(n)d mốc sang năm học %(y)s.", n=copied, y=form.target.data), "success")
    return redirect(url_for("compliance_board.plan", year=form.target.data))


@district_bp.route("/plan/shift", methods=["POST"])
@require(Permission.VIEW_DISTRICT, Permission.MANAGE_PLAN)
def plan_shift() -> Response:
    district = get_district()
    year = _year(district)
    form = ShiftPlanForm()
    if form.validate_on_submit():
        services.shift_plan(district, year, days=form.days.data, actor=current_user)
        db.session.commit()
        flash(_("Đã dời các thời hạn %(n)d ngày.", n=form.days.data), "success")
    return redirect(url_for("compliance_board.plan", year=year))


@district_bp.route("/plan/<int:milestone_id>", methods=["GET", "POST"])
@require(Permission.VIEW_DISTRICT, Permission.MANAGE_PLAN)
def plan_edit(milestone_id: int) -> str | Response:
    milestone = _milestone_or_404(get_district(), milestone_id)
    form = MilestoneForm(obj=milestone)
    if request.method == "GET":
        form.scope.data = milestone.scope.value
    if form.validate_on_submit():
        try:
            services.update_milestone(milestone, phase=form.phase.data, title=form.title.data,
                                      deadline=form.deadline.data, scope=Scope(form.scope.data),
                                      measure=form.measure.data, actor=current_user)
        except services.PlanError as exc:
            db.session.rollback()
            flash(str(exc), "danger")
        else:
            db.session.commit()
            flash(_("Đã lưu mốc."), "success")
            return redirect(url_for("compliance_board.plan", year=milestone.year_label))
    return render_template("compliance/plan_edit.html", form=form, milestone=milestone, action_form=ActionForm())


@district_bp.route("/plan/<int:milestone_id>/delete", methods=["POST"])
@require(Permission.VIEW_DISTRICT, Permission.MANAGE_PLAN)
def plan_delete(milestone_id: int) -> Response:
    milestone = _milestone_or_404(get_district(), milestone_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    year = milestone.year_label
    try:
        services.delete_milestone(milestone, actor=current_user)
    except services.PlanError as exc:
        db.session.rollback()
        flash(str(exc), "danger")
    else:
        db.session.commit()
        flash(_("Đã xóa mốc."), "success")
    return redirect(url_for("compliance_board.plan", year=year))
