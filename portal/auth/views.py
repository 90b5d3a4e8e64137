from __future__ import annotations

import time
from urllib.parse import urlsplit

import sqlalchemy as sa
from flask import Blueprint, Flask, abort, current_app, flash, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required, login_user, logout_user
from werkzeug.wrappers import Response

from portal.auth import services
from portal.auth.forms import ChangePasswordForm, LoginForm, SetPasswordForm
from portal.extensions import db, login_manager
from portal.i18n import LOCALES
from tenants.models import Membership, School, User
from tenants.roles import PERMISSION_LABELS, ROLE_PERMISSIONS, Permission, Role
from tenants.scoping import all_schools

bp = Blueprint("auth", __name__)

# Pages a user who must change a temporary password may still open.
_OPEN_WHILE_PASSWORD_EXPIRED = {"auth.change_password", "auth.logout", "auth.set_language", "static",
                                 "auth.set_password"}


def init_app(app: Flask) -> None:
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = None
    login_manager.session_protection = "strong"
    login_manager.user_loader(services.load_user)
    app.before_request(_end_old_session)
    app.before_request(_force_password_change)
    app.register_blueprint(bp)


def _end_old_session() -> Response | None:
    """An absolute limit besides the idle one: a login older than SESSION_ABSOLUTE_HOURS ends, however busy."""
    if not current_user.is_authenticated:
        return None
    started = session.get("auth_at")
    limit = current_app.config["SESSION_ABSOLUTE_HOURS"] * 3600
    if isinstance(started, int | float) and time.time() - started <= limit:
        return None
    logout_user()
    session.clear()
    flash(_("Phiên đăng nhập đã hết hạn. Vui lòng đăng nhập lại."), "info")
    return redirect(url_for("auth.login", next=request.full_path if request.method == "GET" else None))


def _force_password_change() -> Response | None:
    if (current_user.is_authenticated and current_user.must_change_password
            and request.endpoint not in _OPEN_WHILE_PASSWORD_EXPIRED):
        flash(_("Vui lòng đổi mật khẩu tạm thời trước khi tiếp tục."), "warning")
        return redirect(url_for("auth.change_password"))
    return None


def _safe_next(target: str | None) -> str | None:
    if not target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return None
    return target


@bp.route("/login", methods=["GET", "POST"])
def login() -> str | Response:
    if current_user.is_authenticated:
        return redirect(url_for("auth.home"))
    form = LoginForm(next=request.args.get("next", ""))
    if form.validate_on_submit():
        result = services.authenticate(form.username.data, form.password.data,
                                       address=request.remote_addr or "unknown")
        if result.user is not None:
            session.clear()
            login_user(result.user)
            session.permanent = True
            session["auth_at"] = time.time()
            _flash_notices(result.user)
            return redirect(_safe_next(form.next.data) or url_for("auth.home"))
        flash(result.error, "danger")
    return render_template("auth/login.html", form=form)


@bp.route("/logout", methods=["POST"])
@login_required
def logout() -> Response:
    services.log_out(current_user._get_current_object(),  # type: ignore[attr-defined]
                     address=request.remote_addr)
    logout_user()
    session.clear()
    flash(_("Bạn đã đăng xuất."), "info")
    return redirect(url_for("auth.login"))


@bp.route("/account/password", methods=["GET", "POST"])
@login_required
def change_password() -> str | Response:
    form = ChangePasswordForm()
    if form.validate_on_submit():
        user = current_user._get_current_object()  # type: ignore[attr-defined]
        problems = services.change_own_password(user, form.current.data, form.new.data,
                                                address=request.remote_addr or "unknown")
        if not problems:
            login_user(user)  # the session token rotated: keep this session, end the others
            session["auth_at"] = time.time()
            flash(_("Đã đổi mật khẩu."), "success")
            return redirect(url_for("auth.home"))
        form.new.errors = list(form.new.errors) + problems
    return render_template("auth/change_password.html", form=form)


def _flash_notices(user: object) -> None:
    """Tell the holder what others did to their account since their last login (once)."""
    notices = services.take_notices(user)  # type: ignore[arg-type]
    for notice in notices:
        flash(_(notice.message, **notice.params), "warning")
    if notices:
        db.session.commit()


@bp.route("/account/set-password/<token>", methods=["GET", "POST"])
def set_password(token: str) -> str | Response:
    """The holder of a set-password link chooses their own password; nobody else ever sees it."""
    link = services.valid_password_link(token)
    if link is None:
        return render_template("auth/set_password.html", form=None, user=None), 404
    user = db.session.get(User, link.user_id)
    form = SetPasswordForm()
    if form.validate_on_submit():
        problems = services.set_password_with_link(link, form.new.data, address=request.remote_addr or "unknown")
        if not problems:
            if current_user.is_authenticated:
                logout_user()
            session.clear()
            flash(_("Đã đặt mật khẩu. Hãy đăng nhập bằng mật khẩu mới."), "success")
            return redirect(url_for("auth.login"))
        form.new.errors = list(form.new.errors) + problems
    return render_template("auth/set_password.html", form=form, user=user)


@bp.route("/language/<locale>", methods=["POST"])
def set_language(locale: str) -> Response:
    if locale not in LOCALES:
        abort(404)
    session["locale"] = locale
    services.set_locale(current_user if current_user.is_authenticated else None, locale)
    return redirect(_safe_next(request.form.get("next")) or url_for("auth.home"))


@bp.route("/")
@login_required
def home() -> str | Response:
    """Send each user to their place: the district board, their school, or a choice of schools."""
    if current_user.is_district_staff:
        return redirect(url_for("district.schools"))
    with all_schools():
        schools = db.session.scalars(
            sa.select(School).join(Membership, Membership.school_id == School.id)
            .where(Membership.user_id == current_user.id, Membership.active.is_(True),
                   School.active.is_(True)).order_by(School.name)
        ).all()
    if len(schools) == 1:
        return redirect(url_for("school.home", school_code=schools[0].code))
    return render_template("auth/choose_school.html", schools=schools)


@bp.route("/roles")
@login_required
def roles() -> str:
    """The permission matrix, read from the one place where it is written."""
    return render_template("auth/roles.html", roles=list(Role), permissions=list(Permission),
                           matrix=ROLE_PERMISSIONS, permission_labels=PERMISSION_LABELS)
