"""Certificate pages: each person registers their own; the principal or IT staff register the seal."""

from __future__ import annotations

from flask import Flask, flash, g, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_login import current_user
from werkzeug.wrappers import Response

from portal.extensions import db, utcnow
from portal.signing import services
from portal.signing.forms import CertificateForm
from tenants.access import require, school_blueprint
from tenants.certificates import EXPIRY_WARNING_DAYS, KeyKind
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
        csc_credential_id=form.csc_credential_id.data or "")


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
