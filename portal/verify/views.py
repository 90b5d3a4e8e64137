"""Public verification pages and API (no login), the family's pages, and the staff pages for access codes."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import click
from flask import (
    Blueprint,
    Flask,
    abort,
    current_app,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    stream_with_context,
    url_for,
)
from flask_babel import gettext as _
from flask_login import current_user
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wrappers import Response

from portal.assessment.models import SchoolClass
from portal.extensions import csrf, db, utcnow
from portal.records.services import class_pupils, normalise_code, verify_url
from portal.results.services import visible_classes
from portal.schoolyear.services import get_class
from portal.storage import storage
from portal.verify import services
from portal.verify.access import can_manage_family_access
from portal.verify.forms import ActionForm, CodeForm, FamilyCodeForm, UploadForm
from portal.verify.models import FamilyAccessCode, LookupKind, LookupOutcome
from tenants.access import current_permissions, require, school_blueprint
from tenants.roles import Permission

bp = Blueprint("verify", __name__)
staff = school_blueprint("family_access", __name__)
FAMILY_SESSION = "family_access"
UPLOAD_ENDPOINTS = ("verify.upload", "verify.api_file")
FORM_OVERHEAD = 64 * 1024  # multipart boundaries and the CSRF field around the file itself


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    app.register_blueprint(staff)
    app.cli.add_command(verify_cli)


def _address() -> str:
    return services.address_key(request.remote_addr)


@bp.url_value_preprocessor
def _limit_upload_size(endpoint: str | None, values: dict[str, Any] | None) -> None:
    # Runs before every before_request (the CSRF check reads the form): a huge body is refused unread.
    if endpoint in UPLOAD_ENDPOINTS:
        request.max_content_length = services.max_upload_bytes() + FORM_OVERHEAD


@bp.after_request
def _private(response: Response) -> Response:
    # Children's records: never kept by shared caches, never indexed, never leaked in a Referer.
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Robots-Tag"] = "noindex, nofollow"
    response.headers["Referrer-Policy"] = "no-referrer"
    if request.path.startswith("/api/"):
        response.headers["Access-Control-Allow-Origin"] = "*"  # public data, no cookies involved
    return response


@bp.errorhandler(RequestEntityTooLarge)
def _too_large(error: RequestEntityTooLarge) -> tuple[Any, int]:
    services.log_lookup(LookupKind.FILE, LookupOutcome.REFUSED, _address())
    db.session.commit()
    message = services.too_large_message()
    if request.endpoint == "verify.api_file":
        return jsonify(api_version=services.API_VERSION, error="too_large", message=message), 413
    return render_template("verify/upload.html", form=UploadForm(formdata=None), check=None, refused=message), 413


# --- verification by code ------------------------------------------------------------------------------------


@bp.route("/verify")
def index() -> str | Response:
    form = CodeForm(formdata=request.args if "code" in request.args else None)
    if "code" in request.args and form.validate():
        code = normalise_code(form.code.data)
        if code:
            return redirect(url_for("verify.show", code=code))
        form.code.errors = [_("Mã tra cứu gồm chữ và số, in dưới mã QR của học bạ.")]
    return render_template("verify/index.html", form=form)


@bp.route("/verify/<code>")
def show(code: str) -> tuple[str, int] | str:
    result = services.lookup_code(code, address_hash=_address())
    db.session.commit()
    if result.limited:
        return render_template("verify/limited.html", message=services.limited_message(LookupKind.CODE)), 429
    return render_template("verify/show.html", record=result.record, typed=code, form=CodeForm(formdata=None))


@bp.route("/api/verify/<code>")
def api_code(code: str) -> tuple[Response, int] | Response:
    result = services.lookup_code(code, address_hash=_address())
    db.session.commit()
    if result.limited:
        return _limited_json(LookupKind.CODE)
    if result.record is None:
        return jsonify(api_version=services.API_VERSION, found=False, code=normalise_code(code))
    return jsonify(api_version=services.API_VERSION, found=True, **result.record.as_dict(verify_url))


def _limited_json(kind: LookupKind) -> tuple[Response, int]:
    response = jsonify(api_version=services.API_VERSION, error="rate_limited", message=services.limited_message(kind))
    response.headers["Retry-After"] = str(services.window_minutes(kind) * 60)
    return response, 429


# --- verification by file ------------------------------------------------------------------------------------


@bp.route("/verify/upload", methods=["GET", "POST"])
def upload() -> tuple[str, int] | str:
    form = UploadForm()
    check = None
    if form.validate_on_submit():
        check = services.check_file(form.file.data.read(), address_hash=_address())
        db.session.commit()
        if check is None:
            return render_template("verify/limited.html", message=services.limited_message(LookupKind.FILE)), 429
    return render_template("verify/upload.html", form=form, check=check, refused=None)


@bp.route("/api/verify/file", methods=["POST"])
@csrf.exempt  # for other systems: no session, no cookie, nothing changes but the lookup log
def api_file() -> tuple[Response, int] | Response:
    uploaded = request.files.get("file")
    if uploaded is not None:
        data = uploaded.read()
    elif request.mimetype in ("application/pdf", "application/octet-stream"):
        data = request.get_data(cache=False)
    else:
        return jsonify(api_version=services.API_VERSION, error="no_file",
                       message=_("Gửi tệp PDF trong trường “file” (multipart/form-data) hoặc làm thân yêu cầu "
                                 "(Content-Type: application/pdf).")), 400
    check = services.check_file(data, address_hash=_address())
    db.session.commit()
    if check is None:
        return _limited_json(LookupKind.FILE)
    return jsonify(check.as_dict(verify_url))


# --- the family's pages ------------------------------------------------------------------------------------------


def _family() -> FamilyAccessCode | None:
    """The access code of this browser's family session, while it lasts and the code is active."""
    held = session.get(FAMILY_SESSION)
    if not isinstance(held, dict):
        return None
    access = None
    if held.get("until", 0) > utcnow().timestamp():
        access = services.family_access(held.get("id"))
    if access is None:
        session.pop(FAMILY_SESSION, None)
    return access


@bp.route("/family", methods=["GET", "POST"])
def family() -> tuple[str, int] | str | Response:
    if _family() is not None:
        return redirect(url_for("verify.family_records"))
    form = FamilyCodeForm()
    if form.validate_on_submit():
        opening = services.open_with_code(form.code.data, address_hash=_address())
        db.session.commit()
        if opening.limited:
            return render_template("verify/family_code.html", form=form,
                                   limited=services.limited_message(LookupKind.FAMILY)), 429
        if opening.access_id is not None:
            minutes = current_app.config["FAMILY_SESSION_MINUTES"]
            session[FAMILY_SESSION] = {"id": opening.access_id,
                                       "until": (utcnow() + timedelta(minutes=minutes)).timestamp()}
            return redirect(url_for("verify.family_records"))
        form.code.errors = [_("Mã truy cập không đúng, hoặc đã được nhà trường đổi hay thu hồi. Hãy kiểm tra lại "
                              "phiếu nhà trường phát hoặc liên hệ giáo viên chủ nhiệm.")]
    return render_template("verify/family_code.html", form=form, limited=None)


@bp.route("/family/records")
def family_records() -> str | Response:
    access = _family()
    if access is None:
        flash(_("Vui lòng nhập mã truy cập do nhà trường cấp."), "info")
        return redirect(url_for("verify.family"))
    page = services.family_page(access)
    services.log_family_view(access, address_hash=_address())
    # Rendered before the commit: afterwards the tenant's rows are out of this public request's reach.
    html = render_template("verify/family_records.html", page=page, form=ActionForm())
    db.session.commit()
    return html


@bp.route("/family/records/<code>/hoc-ba.pdf")
def family_download(code: str) -> Response:
    access = _family()
    if access is None:
        return redirect(url_for("verify.family"))
    version = services.family_record(access, code)
    if version is None or not version.signed_digest:
        abort(404)
    # Read before the commit: afterwards the tenant's rows are out of this public request's reach.
    digest, name = version.signed_digest, f"hoc-ba-{version.code}-v{version.number}.pdf"
    services.log_family_download(access, version, address_hash=_address())
    db.session.commit()
    response = Response(stream_with_context(storage().stream(digest)), mimetype="application/pdf")
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


@bp.route("/family/logout", methods=["POST"])
def family_logout() -> Response:
    if ActionForm().validate_on_submit():
        session.pop(FAMILY_SESSION, None)
    return redirect(url_for("verify.family"))


# --- staff: the families' access codes ----------------------------------------------------------------------------


def _manageable_class(class_id: int) -> SchoolClass:
    school_class = get_class(g.school, class_id)
    if school_class is None:
        abort(404)
    if not can_manage_family_access(current_user.id, current_permissions(), school_class):
        abort(403)
    return school_class


def _manageable_pupil(pupil_id: int) -> tuple[Any, SchoolClass | None]:
    pupil = services.get_pupil(g.school, pupil_id)
    if pupil is None:
        abort(404)
    school_class = services.pupil_class(pupil)
    if not can_manage_family_access(current_user.id, current_permissions(), school_class):
        abort(403)
    return pupil, school_class


def _slips(slips: list[tuple[Any, str]], school_class: SchoolClass | None) -> Response:
    page = render_template("verify/slips.html", slips=slips, school_class=school_class,
                           family_url=f"{current_app.config['PUBLIC_URL']}/family",
                           format_code=services.format_family_code)
    response = Response(page, mimetype="text/html")
    response.headers["Cache-Control"] = "no-store"  # the codes are on this page only, this once
    return response


@staff.route("/family-access/")
@require(Permission.MANAGE_FAMILY_ACCESS)
def staff_index() -> str:
    year, classes = visible_classes(g.school, date.today())
    mine = [c for c in classes if can_manage_family_access(current_user.id, current_permissions(), c)]
    counts = {}
    for school_class in mine:
        pupils = class_pupils(school_class)
        counts[school_class.id] = (len(services.active_codes([p.id for p in pupils])), len(pupils))
    return render_template("verify/staff_index.html", year=year, classes=mine, counts=counts)


@staff.route("/family-access/classes/<int:class_id>")
@require(Permission.MANAGE_FAMILY_ACCESS)
def staff_class(class_id: int) -> str:
    school_class = _manageable_class(class_id)
    pupils = class_pupils(school_class)
    return render_template("verify/staff_class.html", school_class=school_class, pupils=pupils,
                           codes=services.active_codes([p.id for p in pupils]), form=ActionForm())


@staff.route("/family-access/classes/<int:class_id>/issue", methods=["POST"])
@require(Permission.MANAGE_FAMILY_ACCESS)
def staff_issue_class(class_id: int) -> Response:
    school_class = _manageable_class(class_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    pupils = class_pupils(school_class)
    have = services.active_codes([p.id for p in pupils])
    actor = current_user._get_current_object()  # type: ignore[attr-defined]
    slips = [(p, services.issue_code(g.school, p, actor=actor)) for p in pupils if p.id not in have]
    db.session.commit()
    if not slips:
        flash(_("Mọi học sinh của lớp đã có mã truy cập. Dùng “Đổi mã” cho gia đình bị mất phiếu."), "info")
        return redirect(url_for("family_access.staff_class", class_id=class_id))
    return _slips(slips, school_class)


@staff.route("/family-access/pupils/<int:pupil_id>/rotate", methods=["POST"])
@require(Permission.MANAGE_FAMILY_ACCESS)
def staff_rotate(pupil_id: int) -> Response:
    pupil, school_class = _manageable_pupil(pupil_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    code = services.issue_code(g.school, pupil, actor=current_user._get_current_object())  # type: ignore[attr-defined]
    db.session.commit()
    return _slips([(pupil, code)], school_class)


@staff.route("/family-access/pupils/<int:pupil_id>/revoke", methods=["POST"])
@require(Permission.MANAGE_FAMILY_ACCESS)
def staff_revoke(pupil_id: int) -> Response:
    pupil, school_class = _manageable_pupil(pupil_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    if services.revoke_code(g.school, pupil, actor=current_user._get_current_object()):  # type: ignore[attr-defined]
        flash(_("Đã thu hồi mã truy cập của gia đình em %(name)s.", name=pupil.full_name), "success")
    db.session.commit()
    if school_class is None:
        return redirect(url_for("family_access.staff_index"))
    return redirect(url_for("family_access.staff_class", class_id=school_class.id))


# --- command line -------------------------------------------------------------------------------------------------


@click.group("verify")
def verify_cli() -> None:
    """Public verification."""


@verify_cli.command("purge-log")
def purge_log() -> None:
    """Forget public lookups older than LOOKUP_LOG_DAYS."""
    removed = services.purge_lookups()
    db.session.commit()
    click.echo(f"{removed} lookups removed")

