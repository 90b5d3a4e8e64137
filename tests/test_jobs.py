"""Background jobs: the audit export end to end, queuing after commit, re-runs, failures, progress, access."""

from __future__ import annotations

import io
import re
import threading
import time

import pytest
import sqlalchemy as sa
from openpyxl import load_workbook

from portal import audit, jobs
from portal.audit import AuditEntry
from portal.extensions import db
from portal.jobs import JobRun, JobState
from portal.storage import storage
from portal.trail.tasks import HEADERS
from tenants.roles import Role
from tests.conftest import csrf_token, finish_jobs, login

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

# Test-only tasks. A Redis worker is another process that never imports this module, so these
# tasks are run with `jobs.execute` in this process, on rows committed without `enqueue`.
_calls: list[str] = []
_gate = threading.Event()


@jobs.task("test.jobs.count")
def _count(run: JobRun, **params: object) -> dict[str, object]:
    _calls.append(run.id)
    return {"calls": len(_calls)}


@jobs.task("test.jobs.explode")
def _explode(run: JobRun, **params: object) -> None:
    audit.record("test.must_vanish", actor=None, school_id=run.school_id, summary="half-done work")
    db.session.flush()
    raise RuntimeError("Không đọc được tệp lớp 5A")


@jobs.task("test.jobs.report_then_wait")
def _report_then_wait(run: JobRun, **params: object) -> dict[str, object]:
    run.report(3, 10, "3/10 lớp")
    _gate.wait(15)
    return {"rows": 10}


def _note(app, school_id: int | None, summary: str) -> None:
    with app.app_context():
        audit.record("test.note", actor=None, school_id=school_id, summary=summary)
        db.session.commit()


def _row(app, kind: str, *, school_id: int | None, user_id: int | None, **fields: object) -> str:
    """A committed job row that is not queued (for running it here with `jobs.execute`)."""
    with app.app_context():
        run = JobRun(kind=kind, school_id=school_id, created_by_id=user_id, title="Việc thử", params={}, **fields)
        db.session.add(run)
        db.session.commit()
        return run.id


def _execute(app, run_id: str) -> None:
    with app.app_context():
        jobs.execute(run_id)


def _run(app, run_id: str) -> JobRun:
    with app.app_context():
        run = db.session.get(JobRun, run_id)
        assert run is not None
        db.session.expunge(run)
        return run


def _sheet_rows(data: bytes) -> list[tuple[object, ...]]:
    workbook = load_workbook(io.BytesIO(data), read_only=True)
    try:
        return list(workbook.active.iter_rows(values_only=True))
    finally:
        workbook.close()


def test_school_export_runs_as_a_job_and_downloads_only_this_school(app, client, make):
    school = make.school("lqd", "Trường Tiểu học Lê Quang Định")
    other = make.school("nb", "Trường Tiểu học Nguyễn Bình")
    principal = make.user(school, Role.PRINCIPAL, full_name="Võ Thị Lài")
    _note(app, school.id, "Sửa điểm môn Toán lớp 5A")
    _note(app, other.id, "Bí mật của trường Nguyễn Bình")
    login(client, principal)

    response = client.post("/s/lqd/audit/export", data={"csrf_token": csrf_token(client, "/s/lqd/audit")})
    assert response.status_code == 302
    run_id = response.location.rsplit("/", 1)[-1]
    assert response.location.endswith(f"/s/lqd/jobs/{run_id}")
    page = client.get(response.location).get_data(as_text=True)
    assert "<progress" in page and f"/s/lqd/jobs/{run_id}.json" in page

    finish_jobs(app, [run_id])
    status = client.get(f"/s/lqd/jobs/{run_id}.json").get_json()
    assert status["state"] == "finished" and status["progress"] == 100 and status["done"] is True
    assert status["error"] is None and len(status["result"]["digest"]) == 64

    download = client.get(f"/s/lqd/jobs/{run_id}/download")
    assert download.status_code == 200 and download.mimetype == XLSX
    assert 'filename="nhat-ky-hoat-dong.xlsx"' in download.headers["Content-Disposition"]
    with app.app_context():  # the extract handed out is in the trail, with who took it
        taken = db.session.scalar(sa.select(AuditEntry).where(AuditEntry.action == "job.downloaded"))
        assert taken.object_id == run_id and taken.actor_id is not None and taken.school_id is not None
    rows = _sheet_rows(download.data)
    assert rows[0] == HEADERS
    summaries = [row[6] for row in rows[1:]]
    assert "Sửa điểm môn Toán lớp 5A" in summaries
    assert "Bí mật của trường Nguyễn Bình" not in summaries
    assert {row[2] for row in rows[1:]} == {"Trường Tiểu học Lê Quang Định"}
    assert "job.queued" in [row[3] for row in rows[1:]]  # committed together with the job's row
    with app.app_context():
        own = db.session.scalar(sa.select(sa.func.count()).select_from(AuditEntry)
                                .where(AuditEntry.school_id == school.id, AuditEntry.action != "job.downloaded"))
    assert len(rows) - 1 == own == status["result"]["rows"]


def test_district_export_holds_every_school(app, client, make):
    first = make.school("lqd", "Trường Tiểu học Lê Quang Định")
    second = make.school("nb", "Trường Tiểu học Nguyễn Bình")
    admin = make.user(district_role=Role.DISTRICT_ADMIN)
    _note(app, first.id, "Việc của Lê Quang Định")
    _note(app, second.id, "Việc của Nguyễn Bình")
    login(client, admin)

    response = client.post("/district/audit/export",
                           data={"csrf_token": csrf_token(client, "/district/audit/")})
    assert response.status_code == 302
    run_id = response.location.rsplit("/", 1)[-1]
    assert response.location.endswith(f"/district/jobs/{run_id}")
    assert "<progress" in client.get(response.location).get_data(as_text=True)

    finish_jobs(app, [run_id])
    assert client.get(f"/district/jobs/{run_id}.json").get_json()["state"] == "finished"
    download = client.get(f"/district/jobs/{run_id}/download")
    assert download.status_code == 200
    rows = _sheet_rows(download.data)
    summaries = {row[6] for row in rows[1:]}
    assert {"Việc của Lê Quang Định", "Việc của Nguyễn Bình"} <= summaries
    assert {"Trường Tiểu học Lê Quang Định", "Trường Tiểu học Nguyễn Bình"} <= {row[2] for row in rows[1:]}


def test_export_needs_a_csrf_token(client, make):
    school = make.school("lqd")
    login(client, make.user(school, Role.PRINCIPAL))
    assert client.post("/s/lqd/audit/export").status_code == 400


def test_job_is_queued_only_after_its_transaction_commits(app, make):
    school = make.school()
    principal = make.user(school, Role.PRINCIPAL)
    queue = app.extensions["portal_jobs"].queue

    with app.app_context():
        dropped = jobs.enqueue("audit.export", school_id=school.id, actor=principal, title="Bỏ").id
        db.session.rollback()
        db.session.commit()  # a later commit in the same session must not send the dropped job
    with app.app_context():
        assert db.session.get(JobRun, dropped) is None
        assert db.session.scalar(sa.select(AuditEntry).where(AuditEntry.action == "job.queued")) is None
    assert queue.fetch_job(dropped) is None

    with app.app_context():
        kept = jobs.enqueue("audit.export", school_id=school.id, actor=principal, title="Giữ").id
        db.session.flush()
        assert queue.fetch_job(kept) is None  # the row exists in the open transaction only
        db.session.commit()
    assert queue.fetch_job(kept) is not None
    finish_jobs(app, [kept])
    assert _run(app, kept).state == JobState.FINISHED


def test_enqueue_refuses_an_unknown_task(app, make):
    with app.app_context(), pytest.raises(KeyError):
        jobs.enqueue("no.such.task", school_id=None, actor=None, title="?")


def test_running_a_job_twice_is_harmless(app, make):
    _calls.clear()
    school = make.school()
    run_id = _row(app, "test.jobs.count", school_id=school.id, user_id=None)
    _execute(app, run_id)
    first = _run(app, run_id)
    assert first.state == JobState.FINISHED and first.result == {"calls": 1} and first.progress == 100
    _execute(app, run_id)  # RQ delivers at least once: a second delivery finds the job done
    second = _run(app, run_id)
    assert _calls == [run_id]
    assert (second.state, second.result, second.finished_at) == (first.state, first.result, first.finished_at)
    _execute(app, "0" * 32)  # a job whose transaction never committed: nothing to do, no error


def test_failing_task_ends_failed_with_its_error_and_its_work_undone(app, client, make):
    school = make.school("lqd")
    principal = make.user(school, Role.PRINCIPAL)
    run_id = _row(app, "test.jobs.explode", school_id=school.id, user_id=principal.id)
    _execute(app, run_id)

    run = _run(app, run_id)
    assert run.state == JobState.FAILED and run.done
    assert run.error == "RuntimeError: Không đọc được tệp lớp 5A"
    assert run.finished_at is not None and run.result is None
    with app.app_context():
        assert db.session.scalar(sa.select(AuditEntry).where(AuditEntry.action == "test.must_vanish")) is None

    login(client, principal)
    status = client.get(f"/s/lqd/jobs/{run_id}.json").get_json()
    assert status["state"] == "failed" and status["done"] is True
    assert status["error"] == "RuntimeError: Không đọc được tệp lớp 5A"
    assert "Không đọc được tệp lớp 5A" in client.get(f"/s/lqd/jobs/{run_id}").get_data(as_text=True)
    assert client.get(f"/s/lqd/jobs/{run_id}/download").status_code == 404


def test_progress_is_visible_while_the_job_runs(app, client, make):
    _gate.clear()
    school = make.school("lqd")
    principal = make.user(school, Role.PRINCIPAL)
    run_id = _row(app, "test.jobs.report_then_wait", school_id=school.id, user_id=principal.id)
    login(client, principal)
    assert client.get(f"/s/lqd/jobs/{run_id}.json").get_json()["state"] == "queued"
    page = client.get(f"/s/lqd/jobs/{run_id}").get_data(as_text=True)  # without JavaScript: words, not codes
    assert re.search(r'<span class="job-state"[^>]*>Đang chờ</span>', page)

    worker = threading.Thread(target=_execute, args=(app, run_id))
    worker.start()
    try:
        deadline = time.monotonic() + 10
        status = client.get(f"/s/lqd/jobs/{run_id}.json").get_json()
        while status["progress"] != 30 and time.monotonic() < deadline:
            time.sleep(0.05)
            status = client.get(f"/s/lqd/jobs/{run_id}.json").get_json()
        assert status == {"id": run_id, "state": "running", "progress": 30, "message": "3/10 lớp",
                          "result": None, "error": None, "done": False, "note": ""}
        assert 'value="30"' in client.get(f"/s/lqd/jobs/{run_id}").get_data(as_text=True)
    finally:
        _gate.set()
        worker.join(15)
    status = client.get(f"/s/lqd/jobs/{run_id}.json").get_json()
    assert status["state"] == "finished" and status["progress"] == 100 and status["result"] == {"rows": 10}


def test_report_never_shows_100_before_the_job_ends(app):
    with app.app_context():
        run = JobRun(kind="test.jobs.count", school_id=None, title="x", params={})
        db.session.add(run)
        run.report(10, 10)
        assert run.progress == 99
        run.report(0, 0, "không có gì")
        assert (run.progress, run.message) == (100, "không có gì")


def test_a_job_belongs_to_whoever_started_it_and_to_the_schools_management(app, make):
    school = make.school("lqd")
    other_school = make.school("nb")
    owner = make.user(school, Role.HOMEROOM_TEACHER)
    colleague = make.user(school, Role.HOMEROOM_TEACHER)
    principal = make.user(school, Role.PRINCIPAL)
    other_principal = make.user(other_school, Role.PRINCIPAL)
    admin = make.user(district_role=Role.DISTRICT_ADMIN)
    with app.app_context():
        digest = storage().put(b"bao cao cua hieu truong")
    run_id = _row(app, "audit.export", school_id=school.id, user_id=owner.id, state=JobState.FINISHED,
                  progress=100, result={"digest": digest, "filename": "bao-cao.txt", "mimetype": "text/plain"})
    urls = [f"/s/lqd/jobs/{run_id}", f"/s/lqd/jobs/{run_id}.json", f"/s/lqd/jobs/{run_id}/download"]

    mine = app.test_client()
    login(mine, owner)
    assert [mine.get(url).status_code for url in urls] == [200, 200, 200]
    assert mine.get(urls[2]).data == b"bao cao cua hieu truong"

    same_school = app.test_client()
    login(same_school, colleague)
    assert [same_school.get(url).status_code for url in urls] == [404, 404, 404]

    head = app.test_client()
    login(head, principal)  # the principal answers for every job of the school
    assert [head.get(url).status_code for url in urls] == [200, 200, 200]

    elsewhere = app.test_client()
    login(elsewhere, other_principal)
    assert elsewhere.get(urls[1]).status_code == 403  # not a member of that school at all
    assert elsewhere.get(f"/s/nb/jobs/{run_id}.json").status_code == 404  # not a job of their school

    district = app.test_client()
    login(district, admin)
    assert district.get(f"/district/jobs/{run_id}.json").status_code == 404  # a school's job, not the district's
    assert mine.get("/s/lqd/jobs/khong-co.json").status_code == 404


def test_a_job_whose_heartbeat_stopped_shows_as_stalled(app):
    """Stalled is judged from the last heartbeat, not from when the job started."""
    from datetime import timedelta

    from portal.extensions import utcnow
    from portal.jobs import JobRun, JobState

    with app.app_context():
        limit = app.config["JOB_HEARTBEAT_TIMEOUT_SECONDS"]
        long_ago = utcnow() - timedelta(hours=5)
        beating = JobRun(kind="x", state=JobState.RUNNING, started_at=long_ago,
                         heartbeat_at=utcnow() - timedelta(seconds=limit / 2))
        silent = JobRun(kind="x", state=JobState.RUNNING, started_at=utcnow() - timedelta(seconds=limit * 2),
                        heartbeat_at=utcnow() - timedelta(seconds=limit + 5))
        done = JobRun(kind="x", state=JobState.FINISHED, started_at=long_ago, heartbeat_at=long_ago)
        assert (beating.stalled, silent.stalled, done.stalled) == (False, True, False)
