"""Certificate pages: each person registers their own; the principal or IT staff register the seal."""

from __future__ import annotations

import re

from flask import Flask, abort, current_app, flash, g, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_login import current_user
from werkzeug.wrappers import Response

from portal import jobs
from portal.app import PROJECT_ROOT
from portal.extensions import db, utcnow
from portal.signing import batches, services
from portal.signing.forms import BatchActionForm, CertificateForm, SigningPinForm
from tenants.access import can, current_permissions, require, school_blueprint
from tenants.certificates import EXPIRY_WARNING_DAYS, KeyKind, PersonCertificate
from tenants.roles import Permission

bp = school_blueprint("signing", __name__)


def init_app(app: Flask) -> None:
    from portal.signing.commands import cli

    app.register_blueprint(bp)
    app.cli.add_command(cli)


def _upload(form: CertificateForm) -> services.Upload:
    return services.Upload(
        data=form.file.data.read(), key_kind=KeyKind(form.key_kind.data), passphrase=form.passphrase.data or "",
        keep_passphrase_on_server=bool(form.keep_passphrase.data), csc_provider=form.csc_provider.data or "",
        csc_credential_id=form.csc_credential_id.data or "",
        signing_pin=(form.signing_pin.data or "") if "signing_pin" in form else "")


@bp.route("/certificates")
@require(Permission.VIEW_SCHOOL)
def mine() -> str:
    return render_template("signing/mine.html", certificates=services.person_certificates(current_user),
                           now=utcnow(), warning_days=EXPIRY_WARNING_DAYS)


@bp.route("/certificates/new", methods=["GET", "POST"])
@require(Permission.VIEW_SCHOOL)
def register() -> str | Response:
    form = CertificateForm()
    if form.validate_on_submit():
        try:
            services.register_person_certificate(current_user, _upload(form), school=g.school, actor=current_user)
        except services.CertificateRefused as exc:
            db.session.rollback()
            form.file.errors = [str(exc)]
        else:
            db.session.commit()
            flash(_("Đã đăng kí chứng thư số."), "success")
            return redirect(url_for("signing.mine"))
    return render_template("signing/register.html", form=form, seal=False)


@bp.route("/certificates/<int:certificate_id>/pin", methods=["GET", "POST"])
@require(Permission.VIEW_SCHOOL)
def signing_pin(certificate_id: int) -> str | Response:
    """Only the holder sets or resets their signing PIN; anyone else's certificate is not found."""
    certificate = db.session.get(PersonCertificate, certificate_id)
    if certificate is None or certificate.user_id != current_user.id or not certificate.active:
        abort(404)
    form = SigningPinForm()
    if form.validate_on_submit():
        try:
            services.set_signing_pin(certificate, form.passphrase.data, form.signing_pin.data, actor=current_user)
        except services.CertificateRefused as exc:
            db.session.rollback()
            form.signing_pin.errors = [str(exc)]
        else:
            db.session.commit()
            flash(_("Đã đặt mã PIN ký số."), "success")
            return redirect(url_for("signing.mine"))
    return render_template("signing/pin.html", form=form, certificate=certificate)


@bp.route("/certificates/staff")
@require(Permission.VIEW_STAFF)
def staff() -> str:
    rows = services.staff_certificates(g.school)
    return render_template("signing/staff.html", rows=rows, valid=sum(1 for r in rows if r.valid),
                           seal=services.current_seal_certificate(g.school.id), now=utcnow(),
                           warning_days=EXPIRY_WARNING_DAYS)


@bp.route("/certificates/seal", methods=["GET", "POST"])
@require(Permission.MANAGE_SEAL)
def seal() -> str | Response:
    form = CertificateForm(seal=True)
    if form.validate_on_submit():
        try:
            services.register_seal_certificate(g.school, _upload(form), actor=current_user)
        except services.CertificateRefused as exc:
            db.session.rollback()
            form.file.errors = [str(exc)]
        else:
            db.session.commit()
            flash(_("Đã đăng kí chứng thư số của trường (con dấu số)."), "success")
            return redirect(url_for("signing.seal"))
    return render_template("signing/seal.html", form=form, certificates=services.seal_certificates(g.school),
                           now=utcnow(), warning_days=EXPIRY_WARNING_DAYS)


# --- external signing batches (USB token, remote signing) -----------------------------------------------------

BATCH_ID = re.compile(r"^[0-9a-f]{32}$")


def _batch_or_404(batch_id: str) -> batches.BatchStatus:
    """The batch at this school, for its signer or for the school's management; others get 404."""
    status = batches.batch_status(g.school, batch_id) if BATCH_ID.match(batch_id) else None
    if status is None or not (status.signer.id == current_user.id or can(Permission.SIGN_AS_PRINCIPAL)):
        abort(404)
    return status


@bp.route("/signing/batches")
@require(Permission.VIEW_SCHOOL)
def my_batches() -> str:
    return render_template("signing/batches.html", batches=batches.batches_of(g.school, current_user.id))


@bp.route("/signing/batches/<batch_id>")
@require(Permission.VIEW_SCHOOL)
def batch(batch_id: str) -> str:
    status = _batch_or_404(batch_id)
    return render_template("signing/batch.html", status=status, form=BatchActionForm(),
                           is_signer=status.signer.id == current_user.id)


@bp.route("/signing/batches/<batch_id>/cancel", methods=["POST"])
@require(Permission.VIEW_SCHOOL)
def cancel_batch(batch_id: str) -> Response:
    status = _batch_or_404(batch_id)
    if BatchActionForm().validate_on_submit():
        count = batches.cancel_batch(status, actor=current_user)
        db.session.commit()
        flash(_("Đã hủy %(n)d yêu cầu ký đang chờ. Nếu điện thoại hoặc chương trình ký số vẫn hiện yêu cầu, "
                "hãy bỏ qua: cổng sẽ không nhận chữ ký của các yêu cầu đã hủy.", n=count), "success")
    return redirect(url_for("signing.batch", batch_id=batch_id))


@bp.route("/signing/batches/<batch_id>/retry", methods=["POST"])
@require(Permission.VIEW_SCHOOL)
def retry_batch(batch_id: str) -> Response:
    """Ask again for the records whose signature did not come (refused, expired, failed, cancelled)."""
    from portal.records import workflow

    status = _batch_or_404(batch_id)
    if status.signer.id != current_user.id:
        abort(403)  # signing needs the signer: no one asks the device of someone else
    if not BatchActionForm().validate_on_submit():
        return redirect(url_for("signing.batch", batch_id=batch_id))
    step = workflow.STEPS.get(status.step)
    requests = [r for r in status.retryable if r.purpose == workflow.PURPOSE]
    versions = [v for v in workflow.waiting_for(g.school, step, None) if v.id in {r.subject_id for r in requests}
                and workflow.may_sign(current_user.id, current_permissions(), v, step)] if step else []
    if not versions:
        flash(_("Không còn học bạ nào của đợt ký này cần ký lại."), "error")
        return redirect(url_for("signing.batch", batch_id=batch_id))
    run = jobs.enqueue("records.sign", school_id=g.school.id, actor=current_user,
                       title=_("Ký lại: %(step)s, %(n)s học bạ", step=status.step_label, n=len(versions)),
                       step=step.field, version_ids=[v.id for v in versions])
    db.session.commit()
    return redirect(url_for("school_jobs.show", run_id=run.id))


@bp.route("/signing/agent")
@require(Permission.VIEW_SCHOOL)
def agent_help() -> str:
    """How to sign with a USB token: the signing agent, where to get it, how to run it."""
    return render_template("signing/agent.html", portal_url=current_app.config["PUBLIC_URL"])


@bp.route("/signing/agent/hocba_agent.py")
@require(Permission.VIEW_SCHOOL)
def agent_download() -> Response:
    # Read whole (one small file): no open file handle outlives a response that is never read to the end.
    response = Response((PROJECT_ROOT / "agent" / "hocba_agent.py").read_bytes(), mimetype="text/x-python")
    response.headers["Content-Disposition"] = 'attachment; filename="hocba_agent.py"'
    return response
