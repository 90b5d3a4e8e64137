"""Jobs on the production stack with real worker processes: "generate" pressed twice with two workers, and a
job process killed under a live worker (the worker's own hook marks it interrupted and resumes it)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from portal import jobs
from portal.extensions import db
from portal.records.models import RecordVersion
from tenants.roles import Role
from tenants.scoping import school_scope
from tests.conftest import csrf_token, login, worker_env
from tests.records_factory import assessed_class


def _env(app, **extra: str) -> dict[str, str]:
    return dict(worker_env(app), LOG_FORMAT="text", **extra)


def _worker(app, *args: str, **extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(Path(app.root_path).parent / "worker.py"), *args],
                            env=_env(app, **extra), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _wait_done(app, run_ids: list[str], timeout: float) -> list[jobs.JobRun]:
    deadline = time.monotonic() + timeout
    while True:
        with app.app_context():
            runs = [db.session.get(jobs.JobRun, run_id) for run_id in run_ids]
            for run in runs:
                db.session.expunge(run)
        if all(run.done for run in runs) or time.monotonic() > deadline:
            return runs
        time.sleep(0.1)


@pytest.mark.slow
def test_generate_pressed_twice_with_two_workers_reports_no_sql_errors(app, client, make):
    if not app.config["REDIS_URL"]:
        pytest.skip("worker processes exist only on the Redis stack")
    school = make.school("lqd", "Trường Tiểu học Lê Quang Định")
    gvcn = make.user(school, Role.HOMEROOM_TEACHER, full_name="Nguyễn Thị Ánh Tuyết")
    assessed = assessed_class(app, school, gvcn, pupils=12, years=1)
    login(client, gvcn)
    url = f"/s/lqd/records/classes/{assessed.setup.class_id}/generate"
    token = csrf_token(client, "/s/lqd/records/")
    run_ids = []
    for _click in range(2):  # a double click: two jobs for the same class
        response = client.post(url, data={"csrf_token": token})
        assert response.status_code == 302
        run_ids.append(response.location.rsplit("/", 1)[-1])
    workers = [_worker(app, "--burst") for _n in range(2)]
    try:
        runs = _wait_done(app, run_ids, 240)
    finally:
        for worker in workers:
            worker.wait(60)
    assert [run.state for run in runs] == [jobs.JobState.FINISHED] * 2, [(r.state, r.error) for r in runs]
    for run in runs:
        outcomes = {item["outcome"] for item in run.result["items"]}
        reasons = " ".join(item.get("reason") or "" for item in run.result["items"])
        assert outcomes <= {"created", "unchanged"}, run.result["items"]
        assert "SQL" not in reasons and "IntegrityError" not in reasons
    with app.app_context(), school_scope(school.id):
        pupils = list(db.session.scalars(sa.select(RecordVersion.pupil_id)))
    assert len(pupils) == 12 and len(set(pupils)) == 12  # one draft per pupil, none twice


@pytest.mark.slow
def test_a_job_process_killed_under_a_live_worker_is_interrupted_and_resumed_at_once(app, make):
    """kill -9 of the job process alone: the worker sees it die and says so at once, and the job runs again."""
    if not app.config["REDIS_URL"]:
        pytest.skip("worker processes exist only on the Redis stack")
    school = make.school("lqd", "Trường Tiểu học Lê Quang Định")
    gvcn = make.user(school, Role.HOMEROOM_TEACHER)
    assessed = assessed_class(app, school, gvcn, pupils=28, years=1)
    from portal.extensions import db as database
    from tenants.models import User

    with app.app_context(), school_scope(school.id):
        run = jobs.enqueue("records.generate", school_id=school.id, actor=database.session.get(User, gvcn.id),
                           title="Tạo học bạ", class_ids=[assessed.setup.class_id])
        database.session.commit()
        run_id = run.id
    worker = _worker(app, JOB_HEARTBEAT_SECONDS="0.5", JOB_HEARTBEAT_TIMEOUT_SECONDS="600")
    try:
        deadline = time.monotonic() + 120
        horse = None
        while time.monotonic() < deadline:
            with app.app_context():
                progress = database.session.get(jobs.JobRun, run_id).progress
            children = Path(f"/proc/{worker.pid}/task/{worker.pid}/children")
            pids = children.read_text().split() if children.exists() else []
            if progress >= 10 and pids:
                horse = int(pids[0])
                break
            time.sleep(0.1)
        assert horse, "the job never got going"
        os.kill(horse, signal.SIGKILL)
        killed = time.monotonic()
        noticed = None
        while time.monotonic() - killed < 60:
            with app.app_context():
                row = database.session.get(jobs.JobRun, run_id)
                if row.resumes == 1 and noticed is None:
                    noticed = time.monotonic() - killed
                    assert "Bị gián đoạn" in row.note
                if row.state == jobs.JobState.FINISHED:
                    break
            time.sleep(0.1)
        # The heartbeat timeout is 10 minutes here: only the worker's hook can have said it this soon.
        assert noticed is not None and noticed < 30, noticed
        final = _wait_done(app, [run_id], 240)[0]
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(60)
    assert final.state == jobs.JobState.FINISHED and final.resumes == 1, (final.state, final.error, final.note)
    with app.app_context(), school_scope(school.id):
        pupils = list(database.session.scalars(sa.select(RecordVersion.pupil_id)))
    assert len(pupils) == 28 and len(set(pupils)) == 28
