from __future__ import annotations

from flask import Flask, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from werkzeug.wrappers import Response

from portal.compliance.services import today_local
from portal.district import services
from portal.district.forms import SchoolAdminForm, SchoolForm
from portal.extensions import db
from portal.school import queue
from portal.school import services as staff_services
from tenants.access import can, district_blueprint, require
from tenants.models import School
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
    district = services.get_district()
    year, behind = queue.schools_behind(district, today_local())
    return render_template("district/schools.html", district=district, overview=services.school_overview(),
                           behind_year=year, behind=behind)


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
                                       password=account.temporary_password, created=True)
    with school_scope(school.id):
        members = staff_services.list_staff(school)
        return render_template("district/school_detail.html", school=school, members=members, form=form)

