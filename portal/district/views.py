from __future__ import annotations

from flask import Flask, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from werkzeug.wrappers import Response

from portal.compliance.services import today_local
from portal.district import services
from portal.district.forms import SchoolAdminForm, SchoolForm
from portal.extensions import db
from portal.school import queue
from portal.school import services as staff_services
from portal.school.forms import ActionForm
from tenants.access import can, district_blueprint, require
from tenants.models import Membership, School
from tenants.roles import Permission, Role
from tenants.scoping import school_scope

bp = district_blueprint("district", __name__)


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)


def _school_or_404(code: str) -> School:
    school = services.get_school(code)
    if school is None:
        abort(404)
    return school


@bp.route("/")
@require(Permission.VIEW_DISTRICT)
def schools() -> str:
    from portal.records import archive

    district = services.get_district()
    year, behind = queue.schools_behind(district, today_local())
    return render_template("district/schools.html", district=district, overview=services.school_overview(),
                           behind_year=year, behind=behind, archive_due=archive.due_count(),
                           archive_next=archive.next_run(), archive_last=archive.last_run())


@bp.route("/schools/new", methods=["GET", "POST"])
@require(Permission.MANAGE_SCHOOLS)
def school_new() -> str | Response:
    form = SchoolForm()
    if form.validate_on_submit():
        try:
            school = services.create_school(services.get_district(), code=form.code.data, name=form.name.data,
                                            moet_code=form.moet_code.data, commune=form.commune.data,
                                            address=form.address.data, actor=current_user)
        except services.SchoolError as exc:
            db.session.rollback()
            flash(str(exc), "danger")
        else:
            db.session.commit()
            flash(f"{school.name}: OK", "success")
            return redirect(url_for("district.school_detail", code=school.code))
    return render_template("district/school_form.html", form=form)


@bp.route("/schools/<code>", methods=["GET", "POST"])
@require(Permission.VIEW_DISTRICT)
def school_detail(code: str) -> str:
    school = _school_or_404(code)
    form = SchoolAdminForm()
    if request.method == "POST" and not can(Permission.MANAGE_SCHOOLS):
        abort(403)  # before validation: a refused user learns nothing from the form's errors
    if form.validate_on_submit():
        with school_scope(school.id):
            try:
                account = staff_services.create_staff(
                    school, username=form.username.data, full_name=form.full_name.data, email=form.email.data,
                    roles={Role(form.role.data)}, actor=current_user, may_assign_management=True)
            except staff_services.StaffError as exc:
                db.session.rollback()
                flash(str(exc), "danger")
            else:
                db.session.commit()
                return render_template("school/staff_password.html", user=account.user, school=school,
                                       token=account.link_token, created=True)
    with school_scope(school.id):
        members = staff_services.list_staff(school)
        manageable = {m.user_id for m in members if can(Permission.MANAGE_SCHOOLS)
                      and staff_services.may_manage(school, current_user, m.user)}
        return render_template("district/school_detail.html", school=school, members=members, form=form,
                               manageable=manageable, action_form=ActionForm())


def _school_member_or_404(school: School, user_id: int) -> Membership:
    membership = staff_services.get_member(school, user_id)
    if membership is None:
        abort(404)
    return membership


@bp.route("/schools/<code>/staff/<int:user_id>/reset-password", methods=["POST"])
@require(Permission.VIEW_DISTRICT, Permission.MANAGE_SCHOOLS)
def staff_reset_password(code: str, user_id: int) -> str | Response:
    """The district admin manages the accounts that run a school (its principal above all)."""
    school = _school_or_404(code)
    if not ActionForm().validate_on_submit():
        abort(400)
    with school_scope(school.id):
        membership = _school_member_or_404(school, user_id)
        try:
            token = staff_services.reset_staff_password(school, membership, actor=current_user)
        except staff_services.StaffError as exc:
            db.session.rollback()
            flash(str(exc), "danger")
            return redirect(url_for("district.school_detail", code=code))
        db.session.commit()
        return render_template("school/staff_password.html", user=membership.user, school=school, token=token,
                               created=False)


@bp.route("/schools/<code>/staff/<int:user_id>/active/<int:active>", methods=["POST"])
@require(Permission.VIEW_DISTRICT, Permission.MANAGE_SCHOOLS)
def staff_set_active(code: str, user_id: int, active: int) -> Response:
    school = _school_or_404(code)
    if not ActionForm().validate_on_submit():
        abort(400)
    with school_scope(school.id):
        membership = _school_member_or_404(school, user_id)
        try:
            staff_services.set_staff_active(school, membership, bool(active), actor=current_user)
        except staff_services.StaffError as exc:
            db.session.rollback()
            flash(str(exc), "danger")
        else:
            db.session.commit()
            flash(_("Đã mở khóa tài khoản.") if active else _("Đã khóa tài khoản tại trường."), "success")
    return redirect(url_for("district.school_detail", code=code))

