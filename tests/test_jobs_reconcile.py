"""Jobs that follow the queue's truth: a silent job is marked interrupted and resumed once, SIGTERM hands the
rest of a batch back to the queue, a queue that cannot be reached commits nothing, command jobs have an owner."""

from __future__ import annotations

import os
import signal
import time
from datetime import timedelta

import pytest
import sqlalchemy as sa
from redis import Redis
from rq import Queue

from portal import jobs
from portal.audit import AuditEntry
from portal.extensions import db, utcnow
from portal.jobs import JobRun, JobState
from tenants.roles import Role
from tenants.scoping import all_schools
from tests.conftest import csrf_token, login

_items_done: list[int] = []


@jobs.task("test.reconcile.items", resumable=True)
def _items(run: JobRun, stop_after: int = 0, **params: object) -> dict[str, object]:
    """Three items; an item done by an earlier run is skipped (as the real batch tasks do)."""
    for item in (1, 2, 3):
        if item in _items_done:
            continue
        _items_done.append(item)
        if item == stop_after:
            os.kill(os.getpid(), signal.SIGTERM)  # what systemd (or the worker's warm shutdown) sends
            time.sleep(0.05)  # the handler runs between two bytecodes of this thread
        run.report(item, 3, f"{item}/3")
    return {"items": list(_items_done)}


@jobs.task("test.reconcile.once")
def _once(run: JobRun, **params: object) -> None:
    return None


def _row(app, kind: str, school_id: int | None, **fields: object) -> str:
    with app.app_context(), all_schools():
        run = JobRun(kind=kind, school_id=school_id, title="Việc thử", params={}, **fields)
        db.session.add(run)
        db.session.commit()
        return run.id


def _get(app, run_id: str) -> JobRun:
    with app.app_context(), all_schools():
        run = db.session.get(JobRun, run_id)
        db.session.expunge(run)
        return run


def _silence(app, run_id: str) -> None:
    """As a worker killed mid-job leaves it: running, its last heartbeat long ago."""
    long_ago = utcnow() - timedelta(seconds=float(app.config["JOB_HEARTBEAT_TIMEOUT_SECONDS"]) + 30)
    with app.app_context(), all_schools():
        db.session.execute(sa.update(JobRun).where(JobRun.id == run_id).values(
            state=JobState.RUNNING, started_at=long_ago, heartbeat_at=long_ago))
        db.session.commit()


def test_a_silent_job_is_interrupted_and_resumed_once_and_the_page_says_so(app, client, make):
    school = make.school("lqd")
    principal = make.user(school, Role.PRINCIPAL)
    _items_done[:] = [1, 2, 3]  # a resumed run has nothing left to do
    run_id = _row(app, "test.reconcile.items", school.id)
    fresh_id = _row(app, "test.reconcile.items", school.id)
    _silence(app, run_id)
    with app.app_context(), all_schools():  # beating: left alone
        db.session.execute(sa.update(JobRun).where(JobRun.id == fresh_id).values(
            state=JobState.RUNNING, started_at=utcnow() - timedelta(hours=3), heartbeat_at=utcnow()))
        db.session.commit()

    with app.app_context():
        counts = jobs.reconcile()
    assert counts["interrupted"] == 1
    run = _get(app, run_id)
    assert run.resumes == 1 and run.interrupted_at is not None and "Bị gián đoạn" in run.note
    assert run.state in (JobState.QUEUED, JobState.RUNNING, JobState.FINISHED)  # back on the queue
    assert app.extensions["portal_jobs"].status(run.rq_job_id) is not None
    assert _get(app, fresh_id).state == JobState.RUNNING
    with app.app_context(), all_schools():
        assert db.session.scalar(sa.select(AuditEntry.changes).where(AuditEntry.action == "job.interrupted")
                                 )["resumed"] is True

    if not app.config["REDIS_URL"]:  # the embedded queue's thread runs the resumed job: let it end first
        deadline = time.monotonic() + 20
        while _get(app, run_id).state != JobState.FINISHED and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _get(app, run_id).state == JobState.FINISHED

    # Interrupted again: it was resumed once already, so now it stays interrupted, and says what to do.
    _silence(app, run_id)
    with app.app_context():
        jobs.reconcile()
    run = _get(app, run_id)
    assert run.state == JobState.INTERRUPTED and run.done and run.resumes == 1
    login(client, principal)
    status = client.get(f"/s/lqd/jobs/{run_id}.json").get_json()
    assert status["state"] == "interrupted" and status["done"] and "chạy lại thao tác" in status["note"]
    page = client.get(f"/s/lqd/jobs/{run_id}").get_data(as_text=True)
    assert "Bị gián đoạn" in page and 'data-state="interrupted"' in page


def test_a_task_that_cannot_resume_is_only_marked(app, make):
    run_id = _row(app, "test.reconcile.once", None)
    _silence(app, run_id)
    with app.app_context():
        jobs.reconcile()
    run = _get(app, run_id)
    assert run.state == JobState.INTERRUPTED and run.resumes == 0 and run.finished_at is not None


def test_sigterm_lets_the_item_finish_and_hands_the_rest_back(app, make):
    school = make.school("lqd")
    _items_done.clear()
    with app.app_context(), all_schools():
        run = JobRun(kind="test.reconcile.items", school_id=school.id, title="Ba mục", params={"stop_after": 1})
        db.session.add(run)
        db.session.commit()
        run_id = run.id
    before = signal.getsignal(signal.SIGTERM)
    with app.app_context():
        jobs.execute(run_id)  # in this (main) thread, as RQ's job process runs it
    assert signal.getsignal(signal.SIGTERM) is before, "the job's SIGTERM handler outlived the job"
    run = _get(app, run_id)
    # The item under way was finished and kept (the embedded queue's thread may already have run the rest).
    assert _items_done[:1] == [1] and (run.progress == 33 or run.state == JobState.FINISHED)
    assert "phần còn lại" in run.note and run.rq_job_id is not None
    assert run.state in (JobState.QUEUED, JobState.RUNNING, JobState.FINISHED)
    # The rest runs (here, or on the embedded queue's thread): every item exactly once.
    with app.app_context():
        jobs.execute(run_id)
    deadline = time.monotonic() + 20
    while _get(app, run_id).state != JobState.FINISHED and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _get(app, run_id).state == JobState.FINISHED
    assert sorted(_items_done) == [1, 2, 3] and len(_items_done) == 3


def test_queue_down_commits_nothing_and_says_so(app, client, make, monkeypatch):
    school = make.school("lqd")
    principal = make.user(school, Role.PRINCIPAL)
    login(client, principal)
    token = csrf_token(client, "/s/lqd/audit")
    backend = app.extensions["portal_jobs"]
    monkeypatch.setattr(backend, "queue", Queue("portal", connection=Redis(host="127.0.0.1", port=1,
                                                                            socket_connect_timeout=1)))
    response = client.post("/s/lqd/audit/export", data={"csrf_token": token},
                           headers={"Referer": "http://localhost/s/lqd/audit"})
    assert response.status_code == 302 and response.location.endswith("/s/lqd/audit")
    page = client.get("/s/lqd/audit").get_data(as_text=True)
    assert "Hàng đợi công việc nền tạm thời không kết nối được" in page
    with app.app_context(), all_schools():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(JobRun)) == 0
        assert db.session.scalar(sa.select(AuditEntry.id).where(AuditEntry.action == "job.queued")) is None


def test_a_queued_row_whose_queue_entry_is_lost_is_queued_again(app, make):
    """The outbox side of the reconciler: a row the queue never got (or dropped) is handed over again."""
    run_id = _row(app, "test.reconcile.once", None, created_at=utcnow() - timedelta(hours=1))
    with app.app_context():
        counts = jobs.reconcile()
    assert counts["requeued"] == 1
    run = _get(app, run_id)
    assert run.rq_job_id and app.extensions["portal_jobs"].status(run.rq_job_id) is not None


def test_command_jobs_have_an_owner_the_district_can_see(app, make):
    admin = make.user(district_role=Role.DISTRICT_ADMIN)
    with app.app_context(), all_schools():
        run = jobs.enqueue("test.reconcile.once", school_id=None, actor=None, title="Lệnh theo lịch")
        db.session.commit()
        run_id = run.id
    assert _get(app, run_id).owner == jobs.SYSTEM_OWNER
    district = app.test_client()
    login(district, admin)
    assert district.get(f"/district/jobs/{run_id}.json").status_code == 200
    assert "Do hệ thống khởi chạy" in district.get(f"/district/jobs/{run_id}").get_data(as_text=True)


@pytest.mark.parametrize("command", [["jobs", "reconcile"]])
def test_reconcile_command(app, command):
    result = app.test_cli_runner().invoke(args=command)
    assert result.exit_code == 0 and "interrupted: 0" in result.output
