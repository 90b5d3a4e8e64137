from __future__ import annotations

from datetime import date

from flask import Flask, abort, flash, g, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_login import current_user
from werkzeug.wrappers import Response
from wtforms.fields.choices import SelectChoice

from portal.assessment.models import SchoolClass, SchoolYear
from portal.extensions import db
from portal.schoolyear import services
from portal.schoolyear.forms import ClassesForm, YearForm, assignment_form, windows_form
from tenants.access import require, school_blueprint
from tenants.roles import Permission, Role

bp = school_blueprint("schoolyear", __name__)


def init_app(app: Flask) -> None:
    from portal.schoolyear.commands import cli

    app.register_blueprint(bp)
    app.cli.add_command(cli)


def _year_or_404(year_id: int) -> SchoolYear:
    year = services.get_year(g.school, year_id)
    if year is None:
        abort(404)
    return year


def _class_or_404(class_id: int) -> SchoolClass:
    school_class = services.get_class(g.school, class_id)
    if school_class is None:
        abort(404)
    return school_class


@bp.route("/years", methods=["GET", "POST"])
@require(Permission.MANAGE_SCHOOL_YEAR)
def years() -> str | Response:
    existing = services.list_years(g.school)
    form = YearForm()
    form.copy_from.choices = [SelectChoice(0, _("Theo chương trình GDPT 2018"))] + [
        SelectChoice(y.id, _("Chép từ năm học %(n)s", n=y.name)) for y in existing]
    if form.validate_on_submit():
        source = next((y for y in existing if y.id == form.copy_from.data), None)
        try:
            year = services.create_year(g.school, form.name.data, form.starts_on.data, form.ends_on.data,
                                        actor=current_user, copy_from=source)
        except services.SetupError as exc:
            db.session.rollback()
            flash(str(exc), "danger")
        else:
            db.session.commit()
            flash(_("Đã tạo năm học %(n)s.", n=year.name), "success")
            return redirect(url_for("schoolyear.year", year_id=year.id))
    return render_template("schoolyear/years.html", years=existing, form=form)


@bp.route("/years/<int:year_id>", methods=["GET", "POST"])
@require(Permission.MANAGE_SCHOOL_YEAR)
def year(year_id: int) -> str | Response:
    school_year = _year_or_404(year_id)
    data = {}
    for period in school_year.periods:
        data[f"opens_{period.id}"] = period.entry_opens_on
        data[f"closes_{period.id}"] = period.entry_closes_on
    form = windows_form(school_year.periods)(data=data)
    classes_form = ClassesForm(prefix="classes")
    if form.validate_on_submit():
        try:
            for period in school_year.periods:
                services.set_entry_window(g.school, period, form[f"opens_{period.id}"].data,
                                          form[f"closes_{period.id}"].data, actor=current_user)
        except services.SetupError as exc:
            db.session.rollback()
            flash(str(exc), "danger")
        else:
            db.session.commit()
            flash(_("Đã lưu thời hạn nhập đánh giá."), "success")
            return redirect(url_for("schoolyear.year", year_id=year_id))
    return render_template("schoolyear/year.html", year=school_year, form=form, classes_form=classes_form,
                           today=date.today())


@bp.route("/years/<int:year_id>/classes", methods=["POST"])
@require(Permission.MANAGE_SCHOOL_YEAR)
def create_classes(year_id: int) -> Response:
    school_year = _year_or_404(year_id)
    form = ClassesForm(prefix="classes")
    if form.validate_on_submit():
        try:
            created = services.create_classes(g.school, school_year, form.names.data, actor=current_user)
        except services.SetupError as exc:
            db.session.rollback()
            flash(str(exc), "danger")
        else:
            db.session.commit()
            flash(_("Đã tạo %(n)d lớp.", n=len(created)), "success")
    else:
        flash(_("Nhập tên lớp, ví dụ: 1A 1B 2A."), "danger")
    return redirect(url_for("schoolyear.year", year_id=year_id))


@bp.route("/classes/<int:class_id>/teachers", methods=["GET", "POST"])
@require(Permission.MANAGE_SCHOOL_YEAR)
def class_teachers(class_id: int) -> str | Response:
    school_class = _class_or_404(class_id)
    subjects = services.subjects_of_class(school_class)
    choices = [(u.id, u.full_name) for u in services.teachers(g.school, Role.SUBJECT_TEACHER)]
    choices += [(u.id, u.full_name) for u in services.teachers(g.school, Role.HOMEROOM_TEACHER)
                if (u.id, u.full_name) not in choices]
    homeroom = [(u.id, u.full_name) for u in services.teachers(g.school, Role.HOMEROOM_TEACHER)]
    current = {a.subject_id: a.teacher_id for a in school_class.assignments}
    data = {"homeroom": school_class.homeroom_teacher_id or 0}
    data.update({f"subject_{s.id}": current.get(s.id, 0) for s in subjects})
    form = assignment_form(subjects, sorted(choices, key=lambda c: c[1]), homeroom)(data=data)
    if form.validate_on_submit():
        try:
            services.set_homeroom_teacher(g.school, school_class, form.homeroom.data or None, actor=current_user)
            for subject in subjects:
                services.set_subject_teacher(g.school, school_class, subject,
                                             form[f"subject_{subject.id}"].data or None, actor=current_user)
        except services.SetupError as exc:
            db.session.rollback()
            flash(str(exc), "danger")
        else:
            db.session.commit()
            flash(_("Đã lưu phân công lớp %(c)s.", c=school_class.name), "success")
            return redirect(url_for("schoolyear.year", year_id=school_class.school_year_id))
    return render_template("schoolyear/class_teachers.html", school_class=school_class, form=form)


@bp.route("/years/<int:year_id>/next", methods=["GET", "POST"])
@require(Permission.MANAGE_SCHOOL_YEAR)
def start_next(year_id: int) -> str | Response:
    """The next year from this one: the proposal first (a dry run), then, confirmed, the year itself."""
    from portal.forms import PortalForm
    from portal.schoolyear import rollover

    source = _year_or_404(year_id)
    form = PortalForm()
    if form.validate_on_submit():
        try:
            result = rollover.start_next_year(g.school, source, actor=current_user, dry_run=False)
        except services.SetupError as exc:
            db.session.rollback()
            flash(str(exc), "danger")
        else:
            db.session.commit()
            flash(_("Đã bắt đầu năm học %(n)s: hãy phân công giáo viên chủ nhiệm và giáo viên bộ môn.",
                    n=result.name), "success")
            started = next(y for y in services.list_years(g.school) if y.name == result.name)
            return redirect(url_for("schoolyear.year", year_id=started.id))
    proposal = rollover.start_next_year(g.school, source, actor=current_user, dry_run=True)
    return render_template("schoolyear/next.html", source=source, proposal=proposal, form=form)
