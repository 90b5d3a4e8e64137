"""Background jobs: the one module every feature uses to start long work and to read its progress.

A `JobRun` row records each long operation (state, progress, message, result, error) for the page to
show. `enqueue()` adds the row to the caller's transaction and hands the job to the queue only after
that transaction commits, so the worker always finds its row.

With REDIS_URL set, jobs go to a real RQ queue worked by `python worker.py` (any number of them, on
any machine). Without it, the same RQ queue lives in an in-process fakeredis server worked by a
thread, so the embedded default shows real progress with nothing installed.

A task is a plain function registered with `@task("name")`. It receives its `JobRun` and its
parameters, reports progress with `run.report(done, total, message)` (a checkpoint: it commits), and
returns a JSON-able result. RQ delivers at least once, so tasks must be safe to run twice.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from flask import Flask, current_app, has_app_context
from redis import Redis
from rq import Queue, SimpleWorker
from rq.timeouts import TimerDeathPenalty
from sqlalchemy import event
from sqlalchemy.orm import Mapped, Session, mapped_column

from portal import audit
from portal.extensions import UTCDateTime, db, str_enum, utcnow
from tenants.scoping import all_schools, school_scope

log = logging.getLogger(__name__)

TaskFunction = Callable[..., dict[str, Any] | None]
TASKS: dict[str, TaskFunction] = {}


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"


class JobRun(db.Model):
    __tablename__ = "job_runs"

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True, default=lambda: uuid.uuid4().hex)
    # None for district-wide jobs; read back through `get_run`, which checks the school.
    school_id: Mapped[int | None] = mapped_column(sa.ForeignKey("schools.id"), index=True)
    kind: Mapped[str] = mapped_column(sa.String(64))
    title: Mapped[str] = mapped_column(sa.String(200), default="")
    params: Mapped[dict[str, Any]] = mapped_column(sa.JSON, default=dict)
    state: Mapped[JobState] = mapped_column(str_enum(JobState, 16),
                                            default=JobState.QUEUED)
    progress: Mapped[int] = mapped_column(default=0)
    message: Mapped[str] = mapped_column(sa.String(300), default="")
    result: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    error: Mapped[str | None] = mapped_column(sa.Text)
    created_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    @property
    def done(self) -> bool:
        return self.state in (JobState.FINISHED, JobState.FAILED)

    def report(self, done: int, total: int, message: str = "") -> None:
        """Record progress and commit: a checkpoint the page can show."""
        self.progress = 100 if total <= 0 else min(99, int(done * 100 / total))
        if message:
            self.message = message[:300]
        db.session.commit()

    @property
    def stalled(self) -> bool:
        """Running for longer than any job may run: its worker died (the queue had to stop it by now)."""
        if self.state != JobState.RUNNING or self.started_at is None:
            return False
        limit = current_app.config["JOB_TIMEOUT_SECONDS"] if has_app_context() else 1800
        return (utcnow() - self.started_at).total_seconds() > limit + 60

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "state": self.state.value, "progress": self.progress,
                "message": self.message, "result": self.result, "error": self.error, "done": self.done}

    def __repr__(self) -> str:
        return f"<JobRun {self.kind} {self.state}>"


def task(name: str) -> Callable[[TaskFunction], TaskFunction]:
    """Register a job function under a stable name (the name is what the queue stores)."""

    def decorator(func: TaskFunction) -> TaskFunction:
        TASKS[name] = func
        return func

    return decorator


def enqueue(kind: str, *, school_id: int | None, actor: Any, title: str, **params: Any) -> JobRun:
    """Create the job's row in the current transaction; the job is queued once it commits."""
    if kind not in TASKS:
        raise KeyError(f"no task named {kind!r}")
    run = JobRun(id=uuid.uuid4().hex, school_id=school_id, kind=kind, title=title, params=params,
                 created_by_id=getattr(actor, "id", None))
    db.session.add(run)
    audit.record("job.queued", actor=actor, school_id=school_id, obj=run, summary=title,
                 changes={"kind": kind, "params": params})
    db.session.info.setdefault("pending_jobs", []).append(run.id)
    return run


def get_run(run_id: str, school_id: int | None) -> JobRun | None:
    """A job of this school (or a district job when school_id is None), else None."""
    run = db.session.get(JobRun, run_id)
    if run is None or run.school_id != school_id:
        return None
    return run


@event.listens_for(Session, "after_commit")
def _send_pending(session: Session) -> None:
    pending = session.info.pop("pending_jobs", [])
    if pending:
        backend = current_app.extensions["portal_jobs"]
        for run_id in pending:
            backend.push(run_id)


@event.listens_for(Session, "after_rollback")
def _drop_pending(session: Session) -> None:
    session.info.pop("pending_jobs", None)


def execute(run_id: str) -> None:
    """The RQ entry point: run one job by the id of its row. Safe to call twice."""
    # A fresh app context per job: a fresh database session, removed when the job ends.
    app = current_app._get_current_object() if has_app_context() else _worker_app()  # type: ignore[attr-defined]
    with app.app_context():
        _execute(run_id)


def _execute(run_id: str) -> None:
    run = db.session.get(JobRun, run_id)
    if run is None or run.done:
        return  # already done by an earlier delivery, or its transaction never committed
    run.state, run.started_at, run.error = JobState.RUNNING, utcnow(), None
    db.session.commit()
    scope = school_scope(run.school_id) if run.school_id is not None else all_schools()
    try:
        with scope:
            result = TASKS[run.kind](run, **run.params)
    except Exception as exc:  # the row must say what went wrong, whatever it was
        log.exception("job %s (%s) failed", run_id, run.kind)
        db.session.rollback()
        run = db.session.get(JobRun, run_id)
        assert run is not None
        run.state, run.error, run.finished_at = JobState.FAILED, f"{type(exc).__name__}: {exc}", utcnow()
        db.session.commit()
        return
    run.state, run.progress, run.result, run.finished_at = JobState.FINISHED, 100, result or {}, utcnow()
    db.session.commit()


_worker_app_instance: Flask | None = None


def _worker_app() -> Flask:
    global _worker_app_instance
    if _worker_app_instance is None:
        from portal.app import create_app  # a job process builds the app once, on its first job

        _worker_app_instance = create_app()
    return _worker_app_instance


class QueueBackend:
    """Where jobs go: a real Redis queue, or an in-process fakeredis queue with a worker thread."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.name = app.config["JOB_QUEUE"]
        self.timeout = app.config["JOB_TIMEOUT_SECONDS"]
        self.in_process = not app.config["REDIS_URL"]
        if self.in_process:
            import fakeredis

            self.connection: Redis = fakeredis.FakeRedis(server=fakeredis.FakeServer())
        else:
            self.connection = Redis.from_url(app.config["REDIS_URL"])
        self.queue = Queue(self.name, connection=self.connection)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def push(self, run_id: str) -> None:
        self.queue.enqueue(execute, run_id, job_id=run_id, job_timeout=self.timeout,
                           result_ttl=3600, failure_ttl=7 * 86400)
        if self.in_process:
            self._ensure_thread()

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._work, name="portal-jobs", daemon=True)
                self._thread.start()

    def _work(self) -> None:
        worker = ThreadWorker([self.queue], connection=self.connection)
        with self.app.app_context():
            worker.work(burst=False, logging_level="WARNING")


class ThreadWorker(SimpleWorker):
    """An RQ worker that can live in a thread: no signal handlers, timer-based timeouts."""

    death_penalty_class = TimerDeathPenalty

    def _install_signal_handlers(self) -> None:
        pass


def init_app(app: Flask) -> None:
    app.extensions["portal_jobs"] = QueueBackend(app)


# --- secrets a job needs but no row may keep (a passphrase typed for one batch) ------------------------------

SECRET_TTL_SECONDS = 900


def stash_secret(run_id: str, value: str, ttl: int = SECRET_TTL_SECONDS) -> None:
    """Hand a secret to a job through the queue's Redis, never the database; it expires on its own."""
    current_app.extensions["portal_jobs"].connection.set(f"portal:secret:{run_id}", value, ex=ttl)


def job_secret(run_id: str) -> str | None:
    """The secret stashed for this job, while it lasts (a job run again soon after a crash finds it too)."""
    value = current_app.extensions["portal_jobs"].connection.get(f"portal:secret:{run_id}")
    return value.decode() if value is not None else None


def drop_secret(run_id: str) -> None:
    current_app.extensions["portal_jobs"].connection.delete(f"portal:secret:{run_id}")
