"""The pages of a background job: progress (HTML and JSON for the progress bar) and its result file."""

from __future__ import annotations

from flask import Blueprint, Flask, abort, g, jsonify, render_template
from flask_login import current_user
from werkzeug.wrappers import Response

from portal import audit, jobs
from portal.extensions import db
from portal.storage import FileMissing, storage
from tenants.access import current_permissions, district_blueprint, require, school_blueprint
from tenants.roles import Permission

school_bp = school_blueprint("school_jobs", __name__)
district_bp: Blueprint = district_blueprint("district_jobs", __name__, url_prefix="/district/jobs")


def init_app(app: Flask) -> None:
    app.register_blueprint(school_bp)
    app.register_blueprint(district_bp)


def _run_or_404(run_id: str, school_id: int | None) -> jobs.JobRun:
    run = jobs.get_run(run_id, school_id)
    # A job's page and result belong to whoever started it and to whoever answers for its scope:
    # results may hold what others may not see.
    if run is None or not jobs.may_see(run, current_user, current_permissions()):
        abort(404)
    return run


def _download(run: jobs.JobRun) -> Response:
    result = run.result or {}
    if run.state != jobs.JobState.FINISHED or "digest" not in result:
        abort(404)
    try:
        chunks = storage().stream(result["digest"])
        first = next(chunks, b"")
    except FileMissing:
        abort(404)

    # A job's file is an extract (a list, a bundle, a trail): who took which one is kept.
    audit.record("job.downloaded", actor=current_user, school_id=run.school_id, object_type="JobRun",
                 object_id=run.id, summary=f"{run.title}: {result.get('filename', '')}"[:300],
                 changes={"kind": run.kind, "digest": result["digest"]})
    db.session.commit()

    def body():
        yield first
        yield from chunks

    response = Response(body(), mimetype=result.get("mimetype", "application/octet-stream"))
    response.headers["Content-Disposition"] = f'attachment; filename="{result.get("filename", "ket-qua")}"'
    return response


@school_bp.route("/jobs/<run_id>")
@require(Permission.VIEW_SCHOOL)
def show(run_id: str) -> str:
    return render_template("jobs/show.html", run=_run_or_404(run_id, g.school.id))


@school_bp.route("/jobs/<run_id>.json")
@require(Permission.VIEW_SCHOOL)
def status(run_id: str) -> Response:
    return jsonify(_run_or_404(run_id, g.school.id).as_dict())


@school_bp.route("/jobs/<run_id>/download")
@require(Permission.VIEW_SCHOOL)
def download(run_id: str) -> Response:
    return _download(_run_or_404(run_id, g.school.id))


@district_bp.route("/<run_id>")
@require(Permission.VIEW_DISTRICT)
def show_district(run_id: str) -> str:
    return render_template("jobs/show.html", run=_run_or_404(run_id, None))


@district_bp.route("/<run_id>.json")
@require(Permission.VIEW_DISTRICT)
def status_district(run_id: str) -> Response:
    return jsonify(_run_or_404(run_id, None).as_dict())


@district_bp.route("/<run_id>/download")
@require(Permission.VIEW_DISTRICT)
def download_district(run_id: str) -> Response:
    return _download(_run_or_404(run_id, None))
