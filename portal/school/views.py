from __future__ import annotations

from flask import Flask, abort, current_app, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from werkzeug.wrappers import Response

from portal.compliance.services import today_local
from portal.extensions import db
from portal.school import queue, services
from portal.school.forms import ActionForm, ConfirmImportForm, StaffCreateForm, StaffEditForm, StaffImportForm
from portal.school.staff_import import parse_staff_file
from portal.storage import FileMissing, storage
from tenants.access import can, current_permissions, require, school_blueprint
from tenants.models import Membership
from tenants.roles import Permission, Role

bp = school_blueprint("school", __name__)


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)


def _member_or_404(user_id: int) -> Membership:
    membership = services.get_member(g.school, user_id)
    if membership is None:
        abort(404)
    return membership


def _may_assign_management() -> bool:
    return can(Permission.ASSIGN_MANAGEMENT_ROLES)


@bp.route("/")
@require(Permission.VIEW_SCHOOL)
def home() -> str:
    today = today_local()
    permissions = current_permissions()
    return render_template("school/home.html",
                           classes=queue.teacher_queue(g.school, current_user, permissions, today),
                           waiting=queue.principal_queue(g.school, permissions, today, current_app.config))


@bp.route("/staff")
@require(Permission.VIEW_STAFF)
def staff() -> str:
    members = services.list_staff(g.school)
    manageable = {m.user_id for m in members if can(Permission.MANAGE_STAFF)
                  and services.may_manage(g.school, current_user, m.user)}
    return render_template("school/staff.html", members=members, action_form=ActionForm(), manageable=manageable)


@bp.route("/staff/new", methods=["GET", "POST"])
@require(Permission.MANAGE_STAFF)
def staff_new() -> str:
    form = StaffCreateForm()
    if form.validate_on_submit():
        try:
            account = services.create_staff(
                g.school, username=form.username.data, full_name=form.full_name.data, email=form.email.data,
                roles={Role(r) for r in form.roles.data}, actor=current_user,
                may_assign_management=_may_assign_management())
        except services.StaffError as exc:
            flash(str(exc), "danger")
        else:
            db.session.commit()
            return render_template("school/staff_password.html", user=account.user, token=account.link_token,
                                   created=True)
    return render_template("school/staff_form.html", form=form, membership=None)


@bp.route("/staff/<int:user_id>", methods=["GET", "POST"])
@require(Permission.VIEW_STAFF)
def staff_edit(user_id: int) -> str | Response:
    membership = _member_or_404(user_id)
    form = StaffEditForm(obj=membership.user, data={"roles": [r.value for r in membership.role_set]})
    if request.method == "POST" and not can(Permission.MANAGE_STAFF):
        abort(403)  # before validation: a refused user learns nothing from the form's errors
    if form.validate_on_submit():
        try:
            services.update_staff(g.school, membership, full_name=form.full_name.data, email=form.email.data,
                                  roles={Role(r) for r in form.roles.data}, actor=current_user,
                                  may_assign_management=_may_assign_management())
        except services.StaffError as exc:
            db.session.rollback()
            flash(str(exc), "danger")
        else:
            db.session.commit()
            flash(_("Đã lưu thay đổi."), "success")
            return redirect(url_for("school.staff"))
    return render_template("school/staff_form.html", form=form, membership=membership,
                           action_form=ActionForm(),
                           may_manage=services.may_manage(g.school, current_user, membership.user))


@bp.route("/staff/<int:user_id>/active/<int:active>", methods=["POST"])
@require(Permission.MANAGE_STAFF)
def staff_set_active(user_id: int, active: int) -> Response:
    membership = _member_or_404(user_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        services.set_staff_active(g.school, membership, bool(active), actor=current_user)
    except services.StaffError as exc:
        flash(str(exc), "danger")
    else:
        db.session.commit()
        flash(_("Đã mở khóa tài khoản.") if active else _("Đã khóa tài khoản tại trường."), "success")
    return redirect(url_for("school.staff"))


@bp.route("/staff/<int:user_id>/reset-password", methods=["POST"])
@require(Permission.MANAGE_STAFF)
def staff_reset_password(user_id: int) -> str | Response:
    membership = _member_or_404(user_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        token = services.reset_staff_password(g.school, membership, actor=current_user)
    except services.StaffError as exc:
        db.session.rollback()
        flash(str(exc), "danger")
        return redirect(url_for("school.staff"))
    db.session.commit()
    return render_template("school/staff_password.html", user=membership.user, token=token, created=False)


@bp.route("/staff/import", methods=["GET", "POST"])
@require(Permission.MANAGE_STAFF)
def staff_import() -> str:
    form = StaffImportForm()
    if form.validate_on_submit():
        upload = form.file.data
        data = upload.read()
        try:
            rows = parse_staff_file(upload.filename or "", data)
        except services.StaffError as exc:
            flash(str(exc), "danger")
            return render_template("school/staff_import.html", form=form)
        result = services.import_staff(g.school, rows, actor=current_user,
                                       may_assign_management=_may_assign_management(), commit=False)
        confirm = ConfirmImportForm(digest=storage().put(data), filename=upload.filename)
        return render_template("school/staff_import.html", form=form, result=result, confirm=confirm)
    return render_template("school/staff_import.html", form=form)


@bp.route("/staff/import/confirm", methods=["POST"])
@require(Permission.MANAGE_STAFF)
def staff_import_confirm() -> str:
    confirm = ConfirmImportForm()
    if not confirm.validate_on_submit():
        abort(400)
    try:
        rows = parse_staff_file(confirm.filename.data, storage().read(confirm.digest.data))
    except FileMissing:
        abort(404)
    except services.StaffError as exc:
        flash(str(exc), "danger")
        return render_template("school/staff_import.html", form=StaffImportForm())
    result = services.import_staff(g.school, rows, actor=current_user,
                                   may_assign_management=_may_assign_management(), commit=True)
    if not result.ok:
        db.session.rollback()
        flash(_("Tệp có lỗi, chưa nhập tài khoản nào."), "danger")
        return render_template("school/staff_import.html", form=StaffImportForm(), result=result)
    db.session.commit()
    flash(_("Đã nhập %(n)d tài khoản.", n=len(result.created)), "success")
    return render_template("school/staff_import_done.html", created=result.created)
