"""What an operator sees: structured logs, the health endpoint for load balancers, the operations page.

- Logs: with LOG_FORMAT=json (the default) every log line is one JSON object; every request ends with one
  line `request` (request id, user, school, route, method, status, duration). The request id comes from the
  proxy's X-Request-ID or is made here, is sent back in the same header, and travels with the jobs the
  request queued, so a job's log lines carry it too.
- `GET /healthz`: the database, Redis and the file store, each with its timing; 200, or 503 when the
  database or the file store cannot be used (Redis down only degrades: the answer says so).
- `/district/operations`: queues, running, failed and interrupted jobs, uploads waiting and failing,
  the next scheduled runs and the storage used, for the district admin.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from flask import Blueprint, Flask, g, jsonify, render_template, request
from flask_login import current_user
from werkzeug.wrappers import Response

from portal.extensions import db, utcnow
from tenants.access import district_blueprint, require
from tenants.roles import Permission

log = logging.getLogger("portal.requests")

# Set for the length of a request or a job: every log line written meanwhile carries them.
log_context: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("portal_log_context",
                                                                                    default=None)
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}

class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the request/job context, and any extras."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "at": datetime.fromtimestamp(record.created).astimezone().isoformat(timespec="milliseconds"),
            "level": record.levelname, "logger": record.name, "message": record.getMessage(),
        }
        line.update(log_context.get() or {})
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_") and value is not None:
                line[key] = value if isinstance(value, str | int | float | bool) else str(value)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


NOISY_LIBRARIES = ("pyhanko", "pyhanko_certvalidator", "fontTools", "xhtml2pdf", "aiohttp")


def configure_logging(app: Flask) -> None:
    if app.config["LOG_FORMAT"] != "json" or app.config.get("TESTING"):
        return
    root = logging.getLogger()
    if any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root.handlers[:] = [handler]
    root.setLevel(app.config["LOG_LEVEL"])
    # Libraries that narrate every fetch at INFO (each OCSP/CRL request of a signature, each migration step):
    # their warnings and errors still come through; their chatter would bury the portal's own lines.
    for name in NOISY_LIBRARIES:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))


def _start_request() -> None:
    given = request.headers.get("X-Request-ID", "")
    g.request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
    g.request_started = time.perf_counter()
    g.log_token = log_context.set({"request_id": g.request_id})


def _end_request(response: Response) -> Response:
    response.headers["X-Request-ID"] = g.get("request_id", "")
    started = g.get("request_started")
    user = getattr(current_user, "username", None) if current_user and current_user.is_authenticated else None
    school = getattr(g.get("school"), "code", None)
    log.info("request", extra={
        "request_id": g.get("request_id"), "user": user, "school": school, "method": request.method,
        "route": request.url_rule.rule if request.url_rule else None, "path": request.path,
        "status": response.status_code,
        "duration_ms": round((time.perf_counter() - started) * 1000, 1) if started else None})
    return response


def _forget_request(exc: BaseException | None) -> None:
    token = g.pop("log_token", None)
    if token is not None:
        log_context.reset(token)


# --- health -------------------------------------------------------------------------------------------

health_bp = Blueprint("health", __name__)


def _timed(check: Callable[[], str | None]) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        detail = check()
        result: dict[str, Any] = {"ok": True}
        if detail:
            result["detail"] = detail
    except Exception as exc:  # a health check reports whatever went wrong, it never raises
        result = {"ok": False, "error": f"{type(exc).__name__}: {str(exc)[:200]}"}
    result["ms"] = round((time.perf_counter() - started) * 1000, 1)
    return result


def _check_database() -> str | None:
    with db.engine.connect() as connection:
        connection.execute(sa.text("select 1"))
    return db.engine.dialect.name


def _check_redis() -> str | None:
    from flask import current_app

    backend = current_app.extensions["portal_jobs"]
    backend.connection.ping()
    return "in-process" if backend.in_process else None


def _check_storage() -> str | None:
    from flask import current_app

    from portal.storage import LocalStorage, storage

    store = storage()
    if isinstance(store, LocalStorage):
        store.root.mkdir(parents=True, exist_ok=True)
        probe = store.root / f".health-{uuid.uuid4().hex}"
        probe.write_bytes(b"ok")
        probe.unlink()
        return "local"
    return current_app.config["STORAGE_BACKEND"]


@health_bp.route("/healthz")
def healthz() -> tuple[Response, int]:
    checks = {"database": _timed(_check_database), "redis": _timed(_check_redis),
              "storage": _timed(_check_storage)}
    serving = checks["database"]["ok"] and checks["storage"]["ok"]
    status = "ok" if serving and checks["redis"]["ok"] else ("degraded" if serving else "down")
    response = jsonify({"status": status, "checks": checks})
    response.headers["Cache-Control"] = "no-store"
    return response, 200 if serving else 503


# --- the operations page -----------------------------------------------------------------------------

ops_bp: Blueprint = district_blueprint("operations", __name__, url_prefix="/district/operations")


def _queue_figures() -> dict[str, Any]:
    from flask import current_app
    from rq import Worker
    from rq.registry import FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry

    backend = current_app.extensions["portal_jobs"]
    queue = backend.queue
    try:
        return {"name": queue.name, "ok": True, "queued": queue.count,
                "started": StartedJobRegistry(queue=queue).count, "failed": FailedJobRegistry(queue=queue).count,
                "scheduled": ScheduledJobRegistry(queue=queue).count,
                "workers": len(Worker.all(queue=queue)) if not backend.in_process else 1,
                "in_process": backend.in_process}
    except Exception as exc:  # the page still shows everything else when Redis is down
        return {"name": queue.name, "ok": False, "error": f"{type(exc).__name__}: {str(exc)[:200]}"}


def operations_overview() -> dict[str, Any]:
    from flask import current_app

    from portal.interop.models import CityUpload, UploadState
    from portal.jobs import JobRun, JobState
    from portal.storage import storage_usage

    config = current_app.config
    since = utcnow() - timedelta(days=7)
    jobs_by_state = dict(db.session.execute(sa.select(JobRun.state, sa.func.count()).where(
        JobRun.created_at >= since).group_by(JobRun.state)).all())
    attention = list(db.session.scalars(sa.select(JobRun).where(
        sa.or_(JobRun.state == JobState.RUNNING,
               sa.and_(JobRun.state.in_([JobState.FAILED, JobState.INTERRUPTED]), JobRun.created_at >= since)))
        .order_by(JobRun.created_at.desc()).limit(50)))
    open_states = [UploadState.WAITING, UploadState.SENT]
    uploads = db.session.execute(sa.select(
        CityUpload.school_id, sa.func.count(),
        sa.func.sum(sa.case((CityUpload.error_code.is_not(None), 1), else_=0)),
        sa.func.sum(sa.case((CityUpload.attempts >= int(config["CITY_MAX_ATTEMPTS"]), 1), else_=0)),
        sa.func.min(CityUpload.next_attempt_at)).where(CityUpload.state.in_(open_states))
        .group_by(CityUpload.school_id)).all()
    rejected = dict(db.session.execute(sa.select(CityUpload.school_id, sa.func.count()).where(
        CityUpload.state == UploadState.REJECTED).group_by(CityUpload.school_id)).all())
    from tenants.models import School

    names = dict(db.session.execute(sa.select(School.id, School.name)).all())
    next_retry = min((row[4] for row in uploads if row[4] is not None), default=None)
    if next_retry is not None and next_retry.tzinfo is None:  # an aggregate skips the column type on SQLite
        from datetime import UTC

        next_retry = next_retry.replace(tzinfo=UTC)
    now = utcnow()
    return {
        "queue": _queue_figures(),
        "jobs_by_state": {state.value: n for state, n in jobs_by_state.items()},
        "attention": attention,
        "uploads": [{"school": names.get(school_id, "?"), "waiting": int(n), "failing": int(failing or 0),
                     "stuck": int(stuck or 0), "rejected": rejected.get(school_id, 0)}
                    for school_id, n, failing, stuck, _due in uploads],
        "next_runs": [{"command": command, "when": when, "next": following(now)}
                      for command, when, following in SCHEDULES] + (
            [{"command": "upload retry", "when": "", "next": next_retry}] if next_retry else []),
        "storage": storage_usage(),
        "heartbeat_timeout": config["JOB_HEARTBEAT_TIMEOUT_SECONDS"],
    }


@ops_bp.route("/")
@require(Permission.MANAGE_SCHOOLS)
def operations() -> str:
    return render_template("district/operations.html", ops=operations_overview())


def _every(minutes: int) -> Callable[[datetime], datetime]:
    def following(now: datetime) -> datetime:
        start = now.replace(second=0, microsecond=0)
        return start + timedelta(minutes=minutes - start.minute % minutes)
    return following


def _daily(hour: int, minute: int) -> Callable[[datetime], datetime]:
    """At a local (Asia/Ho_Chi_Minh) time each day; computed in UTC+7 as the timers are."""
    def following(now: datetime) -> datetime:
        local = now + timedelta(hours=7)
        at = local.replace(hour=hour, minute=minute, second=0, microsecond=0)
        if at <= local:
            at += timedelta(days=1)
        return at - timedelta(hours=7)
    return following


# Mirrors deploy/systemd/*.timer: keep the two in step.
SCHEDULES: tuple[tuple[str, str, Callable[[datetime], datetime]], ...] = (
    ("flask jobs reconcile", "mỗi phút", _every(1)),
    ("flask interop upload", "mỗi 5 phút", _every(5)),
    ("flask interop pull", "mỗi 15 phút", _every(15)),
    ("flask compliance snapshot", "mỗi 15 phút (7–18 giờ) và 23:55", _every(15)),
    ("flask verify purge-log", "hằng ngày 02:30", _daily(2, 30)),
    ("flask storage gc", "hằng ngày 03:00", _daily(3, 0)),
)


def init_app(app: Flask) -> None:
    configure_logging(app)
    app.before_request(_start_request)
    app.after_request(_end_request)
    app.teardown_request(_forget_request)
    app.register_blueprint(health_bp)
    app.register_blueprint(ops_bp)
