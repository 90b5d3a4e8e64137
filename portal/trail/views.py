from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, Flask, abort, g, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from werkzeug.wrappers import Response

from portal import audit, jobs
from portal.audit import AuditChainHead, AuditEntry
from portal.extensions import db
from portal.school.forms import ActionForm
from portal.storage import FileMissing, storage
from portal.trail import labels, services, tasks
from portal.trail.models import AuditCheckpoint
from tenants.access import district_blueprint, require, school_blueprint
from tenants.certificates import DistrictCertificate
from tenants.models import School
from tenants.roles import Permission

school_bp = school_blueprint("school_trail", __name__)
district_bp: Blueprint = district_blueprint("district_trail", __name__, url_prefix="/district/audit")
PAGE_SIZE = 50
CHECKPOINTS_SHOWN = 10


def init_app(app: Flask) -> None:
    app.register_blueprint(school_bp)
    app.register_blueprint(district_bp)
    app.cli.add_command(tasks.cli)


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



# --- the chain's integrity: checkpoints, verification, offline exports ----------------------------------------


def _checkpoint_or_404(checkpoint_id: int, chain: str | None) -> AuditCheckpoint:
    checkpoint = db.session.get(AuditCheckpoint, checkpoint_id)
    # A school sees its own chain's checkpoints only; another school's id answers 404.
    if checkpoint is None or (chain is not None and checkpoint.chain != chain):
        abort(404)
    return checkpoint


def _send_checkpoint(checkpoint: AuditCheckpoint, kind: str) -> Response:
    digest = checkpoint.document_digest if kind == "json" else checkpoint.signature_digest
    try:
        data = storage().read(digest)
    except FileMissing:
        abort(404)
    mimetype = "application/json" if kind == "json" else "application/pkcs7-signature"
    response = Response(data, mimetype=mimetype)
    response.headers["Content-Disposition"] = f'attachment; filename="{services.checkpoint_name(checkpoint)}.{kind}"'
    return response


def _certificate_pem() -> Response:
    data = services.district_certificates_pem()
    if not data:
        abort(404)
    response = Response(data, mimetype="application/x-pem-file")
    response.headers["Content-Disposition"] = 'attachment; filename="district-certificate.pem"'
    return response


def _integrity(chain_names: list[str]) -> dict[str, object]:
    heads = {h.chain: h for h in db.session.scalars(sa.select(AuditChainHead).where(
        AuditChainHead.chain.in_(chain_names)))}
    rows = [{"chain": name, "school_id": services.school_of(name), "head": heads.get(name),
             "checkpoints": services.checkpoints(name)[:CHECKPOINTS_SHOWN]} for name in chain_names]
    certificates = db.session.scalars(sa.select(DistrictCertificate).where(DistrictCertificate.active.is_(True))
                                      .order_by(DistrictCertificate.id.desc())).all()
    names = dict(db.session.execute(sa.select(School.id, School.name)).all())
    return {"rows": rows, "school_names": names, "certificates": certificates, "form": ActionForm(),
            "break_labels": _break_labels()}


def _break_labels() -> dict[str, str]:
    return {"changed": _("nội dung đã bị sửa"), "missing": _("thiếu các mục liền trước"),
            "order": _("sai thứ tự"), "link": _("không nối với mục liền trước"),
            "checkpoint": _("không khớp điểm niêm phong"), "head": _("thiếu các mục cuối chuỗi"),
            "archive": _("bản lưu trữ không khớp")}


@school_bp.route("/audit/integrity")
@require(Permission.VIEW_SCHOOL_AUDIT)
def school_integrity() -> str:
    return render_template("trail/integrity.html", scope_name=g.school.name, report=None,
                           **_integrity([audit.chain_of(g.school.id)]))


@school_bp.route("/audit/checkpoints/<int:checkpoint_id>.<any(json, p7s):kind>")
@require(Permission.VIEW_SCHOOL_AUDIT)
def school_checkpoint(checkpoint_id: int, kind: str) -> Response:
    return _send_checkpoint(_checkpoint_or_404(checkpoint_id, audit.chain_of(g.school.id)), kind)


@school_bp.route("/audit/district-certificate.pem")
@require(Permission.VIEW_SCHOOL_AUDIT)
def school_certificate() -> Response:
    return _certificate_pem()


@school_bp.route("/audit/integrity/export", methods=["POST"])
@require(Permission.VIEW_SCHOOL_AUDIT)
def school_chain_export() -> Response:
    if not ActionForm().validate_on_submit():
        abort(400)
    run = jobs.enqueue("audit.chain_export", school_id=g.school.id, actor=current_user,
                       title=_("Xuất nhật ký để kiểm chứng ngoại tuyến"))
    db.session.commit()
    return redirect(url_for("school_jobs.show", run_id=run.id))


@district_bp.route("/integrity")
@require(Permission.VIEW_DISTRICT_AUDIT)
def district_integrity() -> str:
    latest = db.session.scalar(sa.select(jobs.JobRun).where(
        jobs.JobRun.kind == "audit.verify", jobs.JobRun.school_id.is_(None),
        jobs.JobRun.state == jobs.JobState.FINISHED).order_by(jobs.JobRun.finished_at.desc()).limit(1))
    return render_template("trail/integrity.html", scope_name=_("Toàn Phòng"), report=latest,
                           **_integrity(services.chains()))


@district_bp.route("/checkpoints/<int:checkpoint_id>.<any(json, p7s):kind>")
@require(Permission.VIEW_DISTRICT_AUDIT)
def district_checkpoint(checkpoint_id: int, kind: str) -> Response:
    return _send_checkpoint(_checkpoint_or_404(checkpoint_id, None), kind)


@district_bp.route("/district-certificate.pem")
@require(Permission.VIEW_DISTRICT_AUDIT)
def district_certificate() -> Response:
    return _certificate_pem()


@district_bp.route("/integrity/verify", methods=["POST"])
@require(Permission.VIEW_DISTRICT_AUDIT)
def district_verify() -> Response:
    if not ActionForm().validate_on_submit():
        abort(400)
    run = jobs.enqueue("audit.verify", school_id=None, actor=current_user, title=_("Kiểm tra toàn vẹn nhật ký"))
    db.session.commit()
    return redirect(url_for("district_jobs.show_district", run_id=run.id))


@district_bp.route("/integrity/export", methods=["POST"])
@require(Permission.VIEW_DISTRICT_AUDIT)
def district_chain_export() -> Response:
    if not ActionForm().validate_on_submit():
        abort(400)
    run = jobs.enqueue("audit.chain_export", school_id=None, actor=current_user,
                       title=_("Xuất nhật ký để kiểm chứng ngoại tuyến"))
    db.session.commit()
    return redirect(url_for("district_jobs.show_district", run_id=run.id))
