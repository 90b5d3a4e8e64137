from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, Flask, abort, g, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from werkzeug.wrappers import Response

from portal import audit, jobs
from portal.audit import AuditEntry
from portal.extensions import db
from portal.school.forms import ActionForm
from portal.trail import (
    labels,
    tasks,  # noqa: F401 - importing registers the export task
)
from tenants.access import district_blueprint, require, school_blueprint
from tenants.roles import Permission

school_bp = school_blueprint("school_trail", __name__)
district_bp: Blueprint = district_blueprint("district_trail", __name__, url_prefix="/district/audit")
PAGE_SIZE = 50


def init_app(app: Flask) -> None:
    app.register_blueprint(school_bp)
    app.register_blueprint(district_bp)


def _page(school_id: int | None) -> dict[str, object]:
    page = max(request.args.get("page", 1, type=int) or 1, 1)
    group = request.args.get("group", "")
    group = group if group in labels.GROUPS else ""
    text = request.args.get("q", "").strip()[:100]
    query = audit.entries_query(school_id)
    if group:
        # The groups that share one word ("grading", "ratings") are filtered together.
        same = [key for key, label in labels.GROUPS.items() if label == labels.GROUPS[group]]
        query = query.where(sa.or_(*(AuditEntry.action.startswith(f"{key}.") for key in same)))
    if text:
        query = query.where(sa.or_(AuditEntry.summary.ilike(f"%{text}%"), AuditEntry.actor_name.ilike(f"%{text}%")))
    pagination = db.paginate(query, page=page, per_page=PAGE_SIZE, error_out=False)
    return {"pagination": pagination, "form": ActionForm(), "group": group, "text": text,
            "groups": labels.group_choices(), "action_label": labels.action_label,
            "object_label": labels.object_label}


@school_bp.route("/audit")
@require(Permission.VIEW_SCHOOL_AUDIT)
def school_trail() -> str:
    return render_template("trail/list.html", scope_name=g.school.name, **_page(g.school.id))


@school_bp.route("/audit/export", methods=["POST"])
@require(Permission.VIEW_SCHOOL_AUDIT)
def school_export() -> Response:
    if not ActionForm().validate_on_submit():
        abort(400)
    run = jobs.enqueue("audit.export", school_id=g.school.id, actor=current_user, title=_("Xuất nhật ký hoạt động"))
    db.session.commit()
    return redirect(url_for("school_jobs.show", run_id=run.id))


@district_bp.route("/")
@require(Permission.VIEW_DISTRICT_AUDIT)
def district_trail() -> str:
    return render_template("trail/list.html", scope_name=_("Toàn Phòng"), **_page(None))


@district_bp.route("/export", methods=["POST"])
@require(Permission.VIEW_DISTRICT_AUDIT)
def district_export() -> Response:
    if not ActionForm().validate_on_submit():
        abort(400)
    run = jobs.enqueue("audit.export", school_id=None, actor=current_user, title=_("Xuất nhật ký hoạt động"))
    db.session.commit()
    return redirect(url_for("district_jobs.show_district", run_id=run.id))

