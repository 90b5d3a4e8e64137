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

One user action can be split into parts (`enqueue_parts`: a class each, say) so that every worker has
work to the end: each part is a job of its own, queued longest first; the user sees one row, the parent,
whose progress counts the items of all parts and whose result is the parts' results merged (by the
task's `merge`) once the last part ends. The parent itself never runs.

The row follows the queue's truth. Queueing happens inside the commit (before it completes), so a queue
that cannot be reached fails the transaction: no row claims a job the queue never got. A running job
beats a heartbeat into its row (every checkpoint, and a timer in between); `reconcile()` (run by every
worker on a timer and by `flask jobs reconcile`) marks a running job whose heartbeat stopped as
interrupted, and puts a resumable job back on the queue once. RQ's failure and stop callbacks and the
worker's "work horse killed" hook say the same sooner. SIGTERM to a job process lets the item under way
finish (at its next checkpoint) and puts the rest back on the queue.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import click
import sqlalchemy as sa
import sqlalchemy.orm
from flask import Flask, current_app, flash, g, has_app_context, has_request_context, redirect, render_template, request
from flask.cli import AppGroup
from flask_babel import gettext as _
from redis import Redis
from redis.exceptions import RedisError
from rq import Callback, Queue, SimpleWorker
from rq.job import JobStatus
from rq.timeouts import TimerDeathPenalty
from sqlalchemy import event
from sqlalchemy.orm import Mapped, Session, mapped_column

from portal import audit
from portal.extensions import UTCDateTime, db, str_enum, utcnow
from tenants.scoping import all_schools, school_scope

log = logging.getLogger(__name__)

TaskFunction = Callable[..., dict[str, Any] | None]
TASKS: dict[str, TaskFunction] = {}
# Tasks that may be put back on the queue on their own after an interruption: they skip what is done.
RESUMABLE: set[str] = set()
# What a worker does once before it takes jobs (`warm_up`): each job runs in a process forked from the
# worker, so what is loaded here (modules, fonts, compiled templates) is not loaded again by every job.
WARM_UPS: list[Callable[[], None]] = []
# How the results of a split job's parts become the result of the action (by task name).
MERGERS: dict[str, Callable[[list[dict[str, Any]]], dict[str, Any]]] = {}
# Work the reconciler does besides the jobs themselves (e.g. queueing uploads whose retry is due).
RECONCILE_HOOKS: list[Callable[[], dict[str, int]]] = []
SYSTEM_OWNER = "system"


class QueueUnavailable(RuntimeError):
    """The job queue could not be reached: the transaction that wanted to queue a job is not committed."""


class JobInterrupted(Exception):
    """Raised at a checkpoint when the job process was asked to stop: the rest goes back on the queue."""


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # its worker went away and it was not (or no longer) resumed


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
    # Who answers for a job nobody signed in for: "system" (a scheduled command, the reconciler).
    owner: Mapped[str] = mapped_column(sa.String(64), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The job process's last sign of life: every checkpoint and a timer in between.
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    interrupted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resumes: Mapped[int] = mapped_column(default=0)
    # What happened to the job besides its own messages (interrupted, resumed, handed on at a stop).
    note: Mapped[str] = mapped_column(sa.String(300), default="")
    rq_job_id: Mapped[str | None] = mapped_column(sa.String(48))
    request_id: Mapped[str | None] = mapped_column(sa.String(32))
    # A part of a split action (`enqueue_parts`): its parent is the row the user sees; `position` is the
    # part's place in the action's order (the result lists items in that order, whatever ran first).
    parent_id: Mapped[str | None] = mapped_column(sa.ForeignKey("job_runs.id"), index=True)
    position: Mapped[int] = mapped_column(default=0)
    # A parent: how many parts its work was split into (0: an ordinary job, which runs itself).
    parts: Mapped[int] = mapped_column(default=0)
    # Items done and to do, as last reported (a part's counts add up to its parent's progress).
    done_items: Mapped[int] = mapped_column(default=0)
    total_items: Mapped[int] = mapped_column(default=0)

    @property
    def done(self) -> bool:
        return self.state in (JobState.FINISHED, JobState.FAILED, JobState.INTERRUPTED)

    def report(self, done: int, total: int, message: str = "") -> None:
        """Record progress and commit: a checkpoint the page can show. At a checkpoint a job asked to
        stop (SIGTERM) ends its turn: the item just done is kept, the rest goes back on the queue."""
        self.progress = 100 if total <= 0 else min(99, int(done * 100 / total))
        self.done_items, self.total_items = done, total
        if message:
            self.message = message[:300]
        self.heartbeat_at = utcnow()
        if self.parent_id is not None:
            _report_parent(self.parent_id)
        db.session.commit()
        if _stop_requested.is_set() and self.state == JobState.RUNNING:
            raise JobInterrupted()

    @property
    def stalled(self) -> bool:
        """Running, but its heartbeat stopped: its worker is gone (the reconciler will say so soon)."""
        if self.state != JobState.RUNNING or self.parts:
            return False
        last = self.heartbeat_at or self.started_at
        if last is None:
            return False
        limit = float(current_app.config["JOB_HEARTBEAT_TIMEOUT_SECONDS"]) if has_app_context() else 120.0
        return (utcnow() - last).total_seconds() > limit

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "state": self.state.value, "progress": self.progress,
                "message": self.message, "result": self.result, "error": self.error, "done": self.done,
                "note": self.note}

    def __repr__(self) -> str:
        return f"<JobRun {self.kind} {self.state}>"


def task(name: str, *, resumable: bool = False,
         merge: Callable[[list[dict[str, Any]]], dict[str, Any]] | None = None
         ) -> Callable[[TaskFunction], TaskFunction]:
    """Register a job function under a stable name (the name is what the queue stores). A resumable
    task skips what an earlier run did, so the reconciler may run it again after an interruption.
    A task given `merge` may be split into parts (`enqueue_parts`): `merge` makes one result of theirs."""

    def decorator(func: TaskFunction) -> TaskFunction:
        TASKS[name] = func
        if resumable:
            RESUMABLE.add(name)
        if merge is not None:
            MERGERS[name] = merge
        return func

    return decorator


def warm_up(func: Callable[[], None]) -> Callable[[], None]:
    """Register something a worker does once before taking jobs (decorator)."""
    WARM_UPS.append(func)
    return func


def warm_worker(app: Flask) -> float:
    """Run every registered warm-up in `app` (a worker, before it forks its first job); returns seconds.
    A warm-up that fails is logged and skipped: a cold job is slower, not wrong."""
    began = time.perf_counter()
    sa.orm.configure_mappers()  # else every job process configures the models again (~0.1 s) on its first query
    with app.app_context():
        for func in WARM_UPS:
            try:
                func()
            except Exception:
                log.exception("a worker warm-up failed: %s", getattr(func, "__qualname__", func))
            finally:
                db.session.rollback()
    return time.perf_counter() - began


def enqueue(kind: str, *, school_id: int | None, actor: Any, title: str, owner: str = "", **params: Any) -> JobRun:
    """Create the job's row in the current transaction; the job is queued as that transaction commits
    (and the commit fails with `QueueUnavailable` if the queue cannot take it)."""
    if kind not in TASKS:
        raise KeyError(f"no task named {kind!r}")
    run = JobRun(id=uuid.uuid4().hex, school_id=school_id, kind=kind, title=title, params=params,
                 created_by_id=getattr(actor, "id", None),
                 owner=owner or ("" if actor is not None else SYSTEM_OWNER),
                 request_id=g.get("request_id") if has_request_context() else None)
    db.session.add(run)
    audit.record("job.queued", actor=actor, school_id=school_id, obj=run, summary=title,
                 changes={"kind": kind, "params": params})
    db.session.info.setdefault("pending_jobs", []).append(run.id)
    return run


@dataclass(frozen=True)
class Part:
    """One part of a split action: what its page row says, its size in items (the parent's progress counts
    items: pupils, records), its task parameters, and its cost (the costliest parts are queued first)."""

    title: str
    size: int
    params: dict[str, Any] = field(default_factory=dict)
    cost: int = 0  # how long it takes, relative to the other parts (default: its size)


def enqueue_parts(kind: str, *, school_id: int | None, actor: Any, title: str, parts: list[Part]) -> JobRun:
    """One user action as parts that the workers take at once (a class each, say), so that a school's
    work keeps every worker busy to the end; returns the row the user follows (the parent). The parts are
    queued costliest first, so that no long part starts last and runs on alone. One part is an ordinary job."""
    if kind not in MERGERS:
        raise KeyError(f"task {kind!r} has no merge: it cannot be split")
    if len(parts) == 1:
        return enqueue(kind, school_id=school_id, actor=actor, title=title, **parts[0].params)
    common = {"school_id": school_id, "kind": kind, "created_by_id": getattr(actor, "id", None),
              "owner": "" if actor is not None else SYSTEM_OWNER,
              "request_id": g.get("request_id") if has_request_context() else None}
    parent = JobRun(id=uuid.uuid4().hex, title=title, params={"parts": [p.params for p in parts]},
                    parts=len(parts), total_items=sum(p.size for p in parts), **common)
    db.session.add(parent)
    audit.record("job.queued", actor=actor, school_id=school_id, obj=parent, summary=title,
                 changes={"kind": kind, "parts": [{"title": p.title, **p.params} for p in parts]})
    children = [JobRun(id=uuid.uuid4().hex, parent_id=parent.id, position=position,
                       title=f"{title} · {part.title}"[:200], params=part.params, total_items=part.size, **common)
                for position, part in enumerate(parts)]
    db.session.add_all(children)
    costliest_first = sorted(zip(children, parts, strict=True), key=lambda pair: -(pair[1].cost or pair[1].size))
    db.session.info.setdefault("pending_jobs", []).extend(child.id for child, _part in costliest_first)
    return parent


def _report_parent(parent_id: str) -> None:
    """A part's checkpoint: its parent counts the items of all its parts (in the part's transaction)."""
    done, total = db.session.execute(sa.select(sa.func.coalesce(sa.func.sum(JobRun.done_items), 0),
                                               sa.func.coalesce(sa.func.sum(JobRun.total_items), 0))
                                     .where(JobRun.parent_id == parent_id)).one()
    now = utcnow()
    db.session.execute(sa.update(JobRun).where(JobRun.id == parent_id, JobRun.state.in_(
        [JobState.QUEUED, JobState.RUNNING])).values(
        state=JobState.RUNNING, started_at=sa.func.coalesce(JobRun.started_at, now), heartbeat_at=now,
        progress=min(99, int(done * 100 / total)) if total else 0, done_items=done,
        message=f"{done}/{total}").execution_options(synchronize_session=False))


def _settle_parent(parent_id: str) -> None:
    """A part ended: once every part has, the parent ends with their merged result (whoever ends last
    does it; the parent's row lock keeps two last parts from both doing it)."""
    with all_schools():
        parent = db.session.scalar(sa.select(JobRun).where(JobRun.id == parent_id).with_for_update())
        if parent is None or parent.done:
            db.session.rollback()
            return
        children = list(db.session.scalars(sa.select(JobRun).where(JobRun.parent_id == parent_id)
                                           .order_by(JobRun.position)))
        if not all(child.done for child in children):
            db.session.rollback()
            return
        failed = [child for child in children if child.state == JobState.FAILED]
        interrupted = [child for child in children if child.state == JobState.INTERRUPTED]
        parent.result = MERGERS[parent.kind]([child.result for child in children if child.result])
        parent.state = (JobState.FAILED if failed else JobState.INTERRUPTED if interrupted else JobState.FINISHED)
        parent.error = "\n".join(f"{child.title}: {child.error}" for child in failed) or None
        parent.note = next((child.note for child in interrupted), "")
        parent.progress = 100 if parent.state == JobState.FINISHED else parent.progress
        parent.done_items = sum(child.done_items for child in children)
        parent.finished_at = utcnow()
        kind, count = parent.kind, len(children)
        if parent.state != JobState.FINISHED:
            audit.record("job.parts_ended", actor=None, school_id=parent.school_id, obj=parent, summary=parent.title,
                         changes={"failed": [c.title for c in failed], "interrupted": [c.title for c in interrupted]})
        db.session.commit()
    drop_secret(parent_id)  # what the signer typed for the action is needed by no part any more
    log.info("split job ended", extra={"job_id": parent_id, "job_kind": kind, "parts": count})


def run_here(kind: str, *, school_id: int | None, owner: str, title: str, **params: Any) -> JobRun:
    """Run a job in this process now (a scheduled command: it needs no queue and no worker), with a row
    like any other job's so that its owner (the system) and its outcome show on the job pages."""
    if kind not in TASKS:
        raise KeyError(f"no task named {kind!r}")
    with all_schools():
        run = JobRun(id=uuid.uuid4().hex, school_id=school_id, kind=kind, title=title, params=params, owner=owner)
        db.session.add(run)
        audit.record("job.started_here", actor=None, school_id=school_id, obj=run, summary=title,
                     changes={"kind": kind, "params": params, "owner": owner})
        db.session.commit()
        run_id = run.id
    _execute(run_id)
    with all_schools():
        done = db.session.get(JobRun, run_id)
        assert done is not None
        db.session.refresh(done)
        return done


def may_see(run: JobRun, user: Any, permissions: Any) -> bool:
    """Whoever started a job sees it; so does whoever answers for its scope: the school's management
    (who see the school's whole trail) for a school's job, the district's staff for a district job."""
    from tenants.roles import Permission

    if run.created_by_id is not None and run.created_by_id == getattr(user, "id", None):
        return True
    if run.school_id is None:
        return Permission.VIEW_DISTRICT_AUDIT in permissions
    return Permission.VIEW_SCHOOL_AUDIT in permissions


def get_run(run_id: str, school_id: int | None) -> JobRun | None:
    """A job of this school (or a district job when school_id is None), else None."""
    run = db.session.get(JobRun, run_id)
    if run is None or run.school_id != school_id:
        return None
    return run


@event.listens_for(Session, "before_commit")
def _send_pending(session: Session) -> None:
    # Queued inside the commit, not after it: if the queue refuses, the commit fails and nothing claims a
    # job was queued. A worker that is quicker than the commit waits for the row (see `_execute`).
    pending = session.info.get("pending_jobs")
    if not pending:
        return
    session.flush()
    backend = current_app.extensions["portal_jobs"]
    for run_id in list(pending):
        run = session.get(JobRun, run_id)
        if run is not None:
            # A job handed back to the queue gets a queue id of its own: its first id may still be running.
            run.rq_job_id = backend.push(run_id, again=run.rq_job_id is not None)
    session.flush()
    session.info.pop("pending_jobs", None)


@event.listens_for(Session, "after_rollback")
def _drop_pending(session: Session) -> None:
    session.info.pop("pending_jobs", None)


def execute(run_id: str) -> None:
    """The RQ entry point: run one job by the id of its row. Safe to call twice."""
    # A fresh app context per job: a fresh database session, removed when the job ends.
    app = current_app._get_current_object() if has_app_context() else _worker_app()  # type: ignore[attr-defined]
    with app.app_context():
        _execute(run_id)


def _find_row(run_id: str) -> JobRun | None:
    """The job's row; a job pushed inside its commit may reach a worker a moment before the commit ends."""
    deadline = time.monotonic() + float(current_app.config["JOB_ROW_WAIT_SECONDS"])
    while True:
        with all_schools():
            run = db.session.get(JobRun, run_id)
        if run is not None or time.monotonic() >= deadline:
            return run
        db.session.rollback()
        time.sleep(0.1)


def _execute(run_id: str) -> None:
    run = _find_row(run_id)
    if run is None or run.done or run.parts or (run.state == JobState.RUNNING and not run.stalled):
        # Done by an earlier delivery, never committed, under way in a live worker, or a split action's
        # parent (its parts run, it does not).
        return
    parent_id = run.parent_id
    now = utcnow()
    run.state, run.started_at, run.heartbeat_at, run.error = JobState.RUNNING, now, now, None
    if parent_id is not None:
        _report_parent(parent_id)  # the action the user follows is under way from its first part on
    db.session.commit()
    from portal.ops import log_context

    context = log_context.set({"job_id": run_id, "job_kind": run.kind, "request_id": run.request_id})
    log.info("job started")
    heartbeat = _Heartbeat(db.engine, run_id, float(current_app.config["JOB_HEARTBEAT_SECONDS"]))
    heartbeat.start()
    previous = _listen_for_stop()
    scope = school_scope(run.school_id) if run.school_id is not None else all_schools()
    try:
        with scope:
            result = TASKS[run.kind](run, **run.params)
    except JobInterrupted:
        db.session.rollback()
        _hand_on(run_id)
        return
    except Exception as exc:  # the row must say what went wrong, whatever it was
        log.exception("job %s (%s) failed", run_id, run.kind)
        db.session.rollback()
        with all_schools():
            run = db.session.get(JobRun, run_id)
            assert run is not None
            run.state, run.error, run.finished_at = JobState.FAILED, f"{type(exc).__name__}: {exc}", utcnow()
            db.session.commit()
        if parent_id is not None:
            _settle_parent(parent_id)
        return
    finally:
        heartbeat.stop()
        _restore_stop(previous)
        log_context.reset(context)
    with all_schools():
        run = db.session.get(JobRun, run_id)
        assert run is not None
        run.state, run.progress, run.result, run.finished_at = JobState.FINISHED, 100, result or {}, utcnow()
        run.done_items = run.total_items
        db.session.commit()
    if parent_id is not None:
        _settle_parent(parent_id)
    log.info("job finished", extra={"job_id": run_id, "job_kind": run.kind, "request_id": run.request_id,
                                    "duration_ms": round((utcnow() - now).total_seconds() * 1000, 1)})


def _hand_on(run_id: str) -> None:
    """A stop was asked for between two items: what is done stays done, the rest goes back on the queue."""
    with all_schools():
        run = db.session.get(JobRun, run_id)
        assert run is not None
        run.state = JobState.QUEUED
        run.note = _("Máy chạy nền được yêu cầu dừng lúc %(at)s; phần còn lại đã được xếp hàng để chạy tiếp.",
                     at=_local_time(utcnow()))[:300]
        audit.record("job.handed_on", actor=None, school_id=run.school_id, obj=run, summary=run.title,
                     changes={"progress": run.progress})
        db.session.info.setdefault("pending_jobs", []).append(run.id)
        db.session.commit()
    log.warning("job handed back to the queue at a stop", extra={"job_id": run_id})


def _local_time(moment: datetime) -> str:
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(current_app.config["TIMEZONE"]) if has_app_context() else None
    return moment.astimezone(zone).strftime("%H:%M %d/%m/%Y")


# --- stopping between items (SIGTERM) -------------------------------------------------------------------

_stop_requested = threading.Event()


def _listen_for_stop() -> Any:
    """In a job process (RQ's work horse runs the job in its main thread), SIGTERM asks for a stop at the
    next checkpoint instead of killing the process mid-item."""
    _stop_requested.clear()
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, lambda signum, frame: _stop_requested.set())


def _restore_stop(previous: Any) -> None:
    if previous is not None:
        signal.signal(signal.SIGTERM, previous)


class _Heartbeat(threading.Thread):
    """Beats the job's heartbeat between checkpoints, on a connection of its own."""

    def __init__(self, engine: sa.Engine, run_id: str, every: float) -> None:
        super().__init__(name=f"heartbeat-{run_id[:8]}", daemon=True)
        self.engine, self.run_id, self.every = engine, run_id, every
        self._stop = threading.Event()

    def run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                beat(self.engine, self.run_id)
            except Exception:  # a missed beat is not worth failing the job for
                log.warning("job heartbeat failed", extra={"job_id": self.run_id}, exc_info=True)

    def stop(self) -> None:
        self._stop.set()


def beat(engine: sa.Engine, run_id: str) -> None:
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(sa.text("select set_config('app.all_schools', 'on', true)"))
        connection.execute(sa.update(JobRun).where(JobRun.id == run_id, JobRun.state == JobState.RUNNING)
                           .values(heartbeat_at=utcnow()))


# --- reconciling with the queue -------------------------------------------------------------------------


def interrupt(run_id: str, why: str, *, stale_before: datetime | None = None, resume: bool = True,
              delivery: str | None = None) -> JobRun | None:
    """Mark a running (or queued) job whose worker is gone as interrupted, and put it back on the queue once
    if its task is resumable. Whoever changes the row first does it; None when someone else did."""
    now = utcnow()
    with all_schools():
        claim = sa.update(JobRun).where(JobRun.id == run_id,
                                        JobRun.state.in_([JobState.RUNNING, JobState.QUEUED]))
        if stale_before is not None:
            claim = claim.where(sa.func.coalesce(JobRun.heartbeat_at, JobRun.started_at, JobRun.created_at)
                                < stale_before)
        if delivery is not None:  # news of an earlier delivery must not touch the row's current one
            claim = claim.where(JobRun.rq_job_id == delivery)
        taken = db.session.execute(claim.values(state=JobState.INTERRUPTED, interrupted_at=now)
                                   .execution_options(synchronize_session=False)).rowcount
        if taken != 1:
            db.session.rollback()
            return None
        run = db.session.get(JobRun, run_id)
        assert run is not None
        db.session.refresh(run)
        again = resume and run.kind in RESUMABLE and run.resumes < int(current_app.config["JOB_AUTO_RESUMES"])
        when = _local_time(now)
        if again:
            run.state, run.resumes = JobState.QUEUED, run.resumes + 1
            run.note = _("Bị gián đoạn lúc %(at)s (%(why)s); đã tự chạy lại phần còn lại.", at=when, why=why)[:300]
            db.session.info.setdefault("pending_jobs", []).append(run.id)
        else:
            run.finished_at = now
            run.note = _("Bị gián đoạn lúc %(at)s (%(why)s). Những gì đã xong được giữ nguyên; hãy chạy lại "
                         "thao tác để làm nốt phần còn lại.", at=when, why=why)[:300]
        audit.record("job.interrupted", actor=None, school_id=run.school_id, obj=run, summary=run.title,
                     changes={"why": why, "resumed": again, "progress": run.progress})
        db.session.commit()
        parent_id = run.parent_id
    if parent_id is not None and not again:
        _settle_parent(parent_id)
    log.warning("job interrupted", extra={"job_id": run_id, "job_kind": run.kind, "why": why, "resumed": again,
                                          "request_id": run.request_id})
    return run


def reconcile() -> dict[str, int]:
    """Bring the job rows in line with the queue; safe to run anywhere, any number of times at once."""
    config = current_app.config
    now = utcnow()
    counts = {"interrupted": 0, "requeued": 0}
    stale_before = now - timedelta(seconds=float(config["JOB_HEARTBEAT_TIMEOUT_SECONDS"]))
    with all_schools():
        # A split action's parent is never on the queue: its parts are, and they are reconciled.
        running = list(db.session.scalars(sa.select(JobRun.id).where(
            JobRun.state == JobState.RUNNING, JobRun.parts == 0,
            sa.func.coalesce(JobRun.heartbeat_at, JobRun.started_at, JobRun.created_at) < stale_before)))
        queued = list(db.session.execute(sa.select(JobRun.id, JobRun.rq_job_id).where(
            JobRun.state == JobState.QUEUED, JobRun.parts == 0, JobRun.created_at < stale_before)))
        db.session.rollback()
    for run_id in running:
        if interrupt(run_id, _("máy chạy nền ngừng báo tin"), stale_before=stale_before):
            counts["interrupted"] += 1
    backend: QueueBackend = current_app.extensions["portal_jobs"]
    for run_id, rq_job_id in queued:
        status = backend.status(rq_job_id or run_id)
        if status in (None, JobStatus.FINISHED):
            # The queue lost it, or took it before its row existed: hand it over again (an outbox drain).
            with all_schools():
                run = db.session.get(JobRun, run_id)
                if run is not None and run.state == JobState.QUEUED:
                    db.session.info.setdefault("pending_jobs", []).append(run_id)
                db.session.commit()
            counts["requeued"] += 1
        elif status in (JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED) and interrupt(
                run_id, _("hàng đợi báo lỗi"), delivery=rq_job_id):
            counts["interrupted"] += 1
    for hook in RECONCILE_HOOKS:
        try:
            for key, value in hook().items():
                counts[key] = counts.get(key, 0) + value
        except Exception:
            db.session.rollback()
            log.exception("a reconcile hook failed")
    return counts


# RQ's callbacks and the worker's hook: the same truth, sooner than the heartbeat tells it.

def _run_id_of(job: Any) -> str | None:
    args = getattr(job, "args", None) or ()
    return str(args[0]) if args else None


def _delivery_of(job: Any) -> str | None:
    return getattr(job, "id", None)


def _in_app(func: Callable[[], Any], app: Flask | None = None) -> None:
    if app is None:
        app = current_app._get_current_object() if has_app_context() else _worker_app()  # type: ignore[attr-defined]
    with app.app_context():
        try:
            func()
        finally:
            db.session.remove()


def on_rq_failure(job: Any, connection: Any, exc_type: Any = None, exc: Any = None, tb: Any = None) -> None:
    """RQ failed the job outside the task's own error handling (a time-out, a crash of the runner)."""
    run_id = _run_id_of(job)
    if run_id:
        _in_app(lambda: interrupt(run_id, _("hàng đợi báo lỗi: %(e)s", e=getattr(exc_type, "__name__", "?")),
                                  resume=False, delivery=_delivery_of(job)))


def on_rq_stopped(job: Any, connection: Any) -> None:
    """Someone stopped the job on purpose (`rq` stop command): interrupted, not resumed."""
    run_id = _run_id_of(job)
    if run_id:
        _in_app(lambda: interrupt(run_id, _("đã bị dừng"), resume=False, delivery=_delivery_of(job)))


def horse_killed_handler(app: Flask) -> Callable[..., None]:
    """For the worker: its job process died (killed, out of memory): interrupted, and resumed once."""

    def handler(job: Any, retpid: int, ret_val: int, rusage: Any) -> None:
        run_id = _run_id_of(job)
        if run_id:
            _in_app(lambda: interrupt(run_id, _("tiến trình chạy việc bị dừng đột ngột"),
                                      delivery=_delivery_of(job)), app)

    return handler


_worker_app_instance: Flask | None = None
_worker_app_pid = 0


def use_worker_app(app: Flask) -> None:
    """`worker.py`: the job processes it forks use its app (built and warmed once) instead of each building
    their own."""
    global _worker_app_instance, _worker_app_pid
    _worker_app_instance, _worker_app_pid = app, os.getpid()


def _worker_app() -> Flask:
    global _worker_app_instance, _worker_app_pid
    if _worker_app_instance is None:
        from portal.app import create_app  # a job process builds the app once, on its first job

        _worker_app_instance, _worker_app_pid = create_app(), os.getpid()
    elif _worker_app_pid != os.getpid():
        # A job process forked from the worker: the worker's pooled connections are not this process's to use
        # (they are left to the worker, not closed); this process opens its own.
        with _worker_app_instance.app_context():
            for engine in db.engines.values():
                engine.dispose(close=False)
        _worker_app_pid = os.getpid()
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

    def push(self, run_id: str, *, again: bool = False) -> str:
        """Put the job on the queue; raises QueueUnavailable when Redis cannot take it."""
        job_id = f"{run_id}-{uuid.uuid4().hex[:8]}" if again else run_id
        try:
            self.queue.enqueue(execute, run_id, job_id=job_id, job_timeout=self.timeout,
                               result_ttl=3600, failure_ttl=7 * 86400,
                               on_failure=Callback(on_rq_failure), on_stopped=Callback(on_rq_stopped))
        except (RedisError, OSError) as exc:
            log.warning("the job queue is unreachable", extra={"system": "redis", "error": str(exc)[:200]})
            raise QueueUnavailable(str(exc)) from exc
        if self.in_process:
            self._ensure_thread()
        return job_id

    def status(self, job_id: str) -> JobStatus | None:
        try:
            job = self.queue.fetch_job(job_id)
            return job.get_status() if job is not None else None
        except (RedisError, OSError):
            return JobStatus.QUEUED  # unknown: leave the row alone until the queue answers again

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._work, name="portal-jobs", daemon=True)
                self._thread.start()

    def _work(self) -> None:
        start_reconciler(self.app)
        worker = ThreadWorker([self.queue], connection=self.connection)
        with self.app.app_context():
            worker.work(burst=False, logging_level="WARNING")


_reconcilers: set[int] = set()


def start_reconciler(app: Flask) -> None:
    """Run `reconcile()` every JOB_RECONCILE_SECONDS in a daemon thread of this process (once per app)."""
    if id(app) in _reconcilers or app.config.get("TESTING"):
        return  # tests run `reconcile()` themselves, when they mean to
    _reconcilers.add(id(app))
    every = float(app.config["JOB_RECONCILE_SECONDS"])

    def loop() -> None:
        while True:
            time.sleep(every)
            try:
                with app.app_context():
                    reconcile()
                    db.session.remove()
            except Exception:
                log.exception("reconciling the jobs failed")

    threading.Thread(target=loop, name="portal-reconcile", daemon=True).start()


class ThreadWorker(SimpleWorker):
    """An RQ worker that can live in a thread: no signal handlers, timer-based timeouts."""

    death_penalty_class = TimerDeathPenalty

    def _install_signal_handlers(self) -> None:
        pass


def init_app(app: Flask) -> None:
    app.extensions["portal_jobs"] = QueueBackend(app)
    app.register_error_handler(QueueUnavailable, _queue_unavailable)
    app.cli.add_command(jobs_cli)


def _queue_unavailable(exc: QueueUnavailable) -> Any:
    """Nothing was committed: say so in words, and send the user back to where they pressed the button."""
    db.session.rollback()
    message = _("Hàng đợi công việc nền tạm thời không kết nối được, nên thao tác chưa được thực hiện và "
                "chưa có gì thay đổi. Vui lòng thử lại sau ít phút; nếu kéo dài, báo cho quản trị hệ thống.")
    if request.method == "POST" and request.referrer:
        flash(message, "error")
        return redirect(request.referrer)
    return render_template("error.html", code=503, message=message), 503


jobs_cli = AppGroup("jobs", help="Background jobs: reconcile the job rows with the queue.")


@jobs_cli.command("reconcile")
def reconcile_command() -> None:
    """Mark jobs whose worker is gone as interrupted (resuming those that can), re-queue lost ones, and queue
    the uploads whose retry is due (for a schedule, e.g. a systemd timer every minute)."""
    counts = reconcile()
    click.echo(", ".join(f"{key}: {value}" for key, value in sorted(counts.items())))


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
