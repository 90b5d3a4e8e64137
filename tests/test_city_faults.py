"""The upload jobs against a misbehaving stand-in: down for a while, slow, 500 on half the requests, answers
lost, a duplicate receipt, a rejection, out of attempts, a wrong API key, a worker killed mid-job. Whatever
happens, every record ends acknowledged (with the receipt the city holds) or rejected with its reason, none
is lost, and the stand-in's log shows none was stored twice (nor, where the portal could know better, sent
twice). A job makes one pass and never sleeps: the retries are the scheduled command's (`settle`)."""

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
from portal.extensions import db, utcnow
from portal.interop import uploads
from portal.interop.models import CityUpload, UploadState
from portal.records.models import RecordStatus, RecordVersion
from tenants.roles import Role
from tenants.scoping import all_schools, school_scope
from tests.city_helpers import API_KEY, issue_correction, issued_class, standin
from tests.conftest import finish_jobs, login

FAST = {"CITY_TIMEOUT_SECONDS": 2.0, "CITY_MAX_ATTEMPTS": 30, "CITY_RETRY_SECONDS": 0.05,
        "CITY_RETRY_MAX_SECONDS": 0.3, "CITY_STUCK_MINUTES": 60}


@pytest.fixture
def city(app, tmp_path, monkeypatch):
    """The stand-in, and the portal pointed at it (also for worker processes, through the environment)."""
    with standin(tmp_path / "city") as server:
        settings = {**FAST, "CITY_URL": server.url, "CITY_API_KEY": API_KEY}
        for key, value in settings.items():
            monkeypatch.setitem(app.config, key, value)
            monkeypatch.setenv(key, str(value))
        yield server


@pytest.fixture
def school(make):
    return make.school("lqd", "Trường Tiểu học Lê Quang Định")


def run_upload(app, school, grade=5, **params):
    with app.app_context(), school_scope(school.id):
        run = jobs.enqueue("interop.upload", school_id=school.id, actor=None, title="Gửi lên Thành phố",
                           grade=grade, **params)
        db.session.commit()
        run_id = run.id
    finish_jobs(app, [run_id], timeout=120)
    with app.app_context():
        return db.session.get(jobs.JobRun, run_id)


def settle(app, school, rounds: int = 80):
    """What the schedule does: `flask interop upload` whenever a waiting row is due, until none has attempts
    left (or the rounds run out). Returns how many times the command ran."""
    runner = app.test_cli_runner()
    for n in range(rounds):
        with app.app_context(), school_scope(school.id):
            pending = [u for u in db.session.scalars(sa.select(CityUpload).where(
                CityUpload.state.in_([UploadState.WAITING, UploadState.SENT])))
                if u.attempts < app.config["CITY_MAX_ATTEMPTS"]]
            due = min((u.next_attempt_at for u in pending), default=None)
        if not pending:
            return n
        wait = (due - utcnow()).total_seconds() if due else 0
        if wait > 0:
            time.sleep(min(wait, 1.0))
        result = runner.invoke(args=["interop", "upload"])
        assert result.exit_code == 0, result.output
    return rounds


def uploads_of(app, school):
    with app.app_context(), school_scope(school.id):
        rows = list(db.session.scalars(sa.select(CityUpload).order_by(CityUpload.record_code)))
        for row in rows:
            db.session.expunge(row)
        return rows


def assert_all_final_none_lost_none_twice(app, school, city, codes, rejected=()):
    rows = uploads_of(app, school)
    assert sorted(r.record_code for r in rows) == sorted(codes), "a record was lost or queued twice"
    for row in rows:
        if row.record_code in rejected:
            assert row.state == UploadState.REJECTED and row.reason and row.action, row
        else:
            assert row.state == UploadState.ACKNOWLEDGED and row.receipt_number, row
    held = {r["record_code"]: r["receipt_number"] for r in city.records()}
    assert held == {r.record_code: r.receipt_number for r in rows if r.state == UploadState.ACKNOWLEDGED}
    stored = city.stored()
    assert set(stored) == set(codes) - set(rejected) and set(stored.values()) == {1}, stored
    return rows


def test_a_plain_run_sends_each_record_once(app, city, school):
    made = issued_class(app, school, pupils=6)
    run = run_upload(app, school)
    assert run.state == jobs.JobState.FINISHED and run.result["states"]["acknowledged"] == 6
    assert_all_final_none_lost_none_twice(app, school, city, made.codes)
    assert set(city.posts().values()) == {1}
    # Running the job again sends nothing: every row is final.
    before = len(city.log())
    assert run_upload(app, school).result["attempts"] == 0
    assert len(city.log()) == before


def test_down_for_a_while(app, city, school):
    made = issued_class(app, school, pupils=5)
    city.behave(down_requests=12)
    run_upload(app, school)
    settle(app, school)
    assert_all_final_none_lost_none_twice(app, school, city, made.codes)
    assert sum(1 for e in city.log() if e["status"] == 503) == 12
    rows = uploads_of(app, school)
    assert max(r.attempts for r in rows) > 1 and all(r.error_code is None for r in rows)


def test_half_the_requests_fail_with_500(app, city, school):
    made = issued_class(app, school, pupils=10)
    city.behave(error_rate=0.5, seed=7)
    run_upload(app, school)
    settle(app, school)
    assert_all_final_none_lost_none_twice(app, school, city, made.codes)
    assert sum(1 for e in city.log() if e["status"] == 500) >= 5


def test_answers_lost_after_the_city_stored_the_record(app, city, school):
    """The city stores the record but its answer never arrives: the next attempt asks before sending."""
    made = issued_class(app, school, pupils=8)
    city.behave(lose_response_rate=0.5, seed=3)
    run_upload(app, school)
    settle(app, school)
    assert_all_final_none_lost_none_twice(app, school, city, made.codes)
    lost = [e["record_code"] for e in city.log() if e["outcome"] == "stored;response-lost"]
    assert lost, "the stand-in lost no answer: the test proves nothing"
    assert set(city.posts().values()) == {1}, "a record the city already held was sent again"


def test_slower_than_the_portal_waits(app, city, school, monkeypatch):
    """Requests time out while the city still stores what it got; later the portal finds out by asking."""
    made = issued_class(app, school, pupils=4)
    monkeypatch.setitem(app.config, "CITY_TIMEOUT_SECONDS", 0.3)
    monkeypatch.setenv("CITY_TIMEOUT_SECONDS", "0.3")
    city.behave(delay_seconds=0.6)
    first = run_upload(app, school)
    # The job ended with records still waiting, and said so: in its result and in its last words.
    assert first.state == jobs.JobState.FINISHED and first.result["open"] == 4
    assert "còn 4 bản chờ" in first.message
    rows = uploads_of(app, school)
    assert all(r.state in (UploadState.WAITING, UploadState.SENT) and r.error_code == "TIMEOUT" for r in rows)
    time.sleep(1.0)  # let the slow requests finish storing at the city
    city.behave(delay_seconds=0)
    settle(app, school)
    assert_all_final_none_lost_none_twice(app, school, city, made.codes)
    assert set(city.posts().values()) == {1}, "a record the city already held was sent again"


def test_a_duplicate_receipt_number_is_not_taken(app, city, school):
    made = issued_class(app, school, pupils=8)
    city.behave(duplicate_receipt_rate=0.5, seed=11)
    run_upload(app, school)
    settle(app, school)
    rows = assert_all_final_none_lost_none_twice(app, school, city, made.codes)
    assert any(e["outcome"] == "stored;duplicate-receipt" for e in city.log())
    assert len({r.receipt_number for r in rows}) == len(rows)


def test_a_rejection_ends_with_the_citys_reason_and_is_not_retried(app, city, school, make, client, no_csrf):
    made = issued_class(app, school, pupils=5)
    refused = made.codes[1:3]
    city.behave(reject={"record_codes": refused, "code": "SIGNATURE_UNTRUSTED"})
    run_upload(app, school)
    rows = assert_all_final_none_lost_none_twice(app, school, city, made.codes, rejected=refused)
    for row in rows:
        if row.record_code in refused:
            assert row.error_code == "SIGNATURE_UNTRUSTED" and row.attempts == 1
            assert "Chứng thư số" in row.reason and "Kiểm tra" in row.action
    assert all(city.posts()[code] == 1 for code in refused)
    # The page shows each record's state, with the city's reason and what to do.
    principal = make.user(school, Role.PRINCIPAL)
    login(client, principal)
    page = client.get("/s/lqd/exchange").get_data(as_text=True)
    assert page.count('data-state="rejected"') == 2 and page.count('data-state="acknowledged"') == 3
    assert "Chứng thư số đã ký không thuộc tổ chức" in page


def test_out_of_attempts_shows_as_stuck_and_can_be_retried(app, city, school, monkeypatch, make, client, no_csrf):
    made = issued_class(app, school, pupils=3)
    monkeypatch.setitem(app.config, "CITY_MAX_ATTEMPTS", 3)
    monkeypatch.setenv("CITY_MAX_ATTEMPTS", "3")
    city.behave(down=True)
    run = run_upload(app, school)
    settle(app, school)
    assert run.state == jobs.JobState.FINISHED and run.result["open"] == 3 and run.result["states"]["waiting"] == 3
    with app.app_context(), school_scope(school.id):
        stuck = uploads.stuck_uploads(school.id)
        assert sorted(u.record_code for u in stuck) == sorted(made.codes)
        assert all(u.attempts == 3 and u.error_code == "UNAVAILABLE" for u in stuck)
        stuck_id = stuck[0].id
    login(client, make.user(school, Role.SCHOOL_IT))
    assert "Bị kẹt" in client.get("/s/lqd/exchange").get_data(as_text=True)
    assert "Bị kẹt" in client.get(f"/s/lqd/exchange/uploads/{stuck_id}").get_data(as_text=True)
    city.behave(down=False)
    response = client.post(f"/s/lqd/exchange/uploads/{stuck_id}/retry")
    assert response.status_code == 302
    finish_jobs(app, [response.location.rsplit("/", 1)[1]], timeout=60)
    rows = {r.id: r for r in uploads_of(app, school)}
    assert rows[stuck_id].state == UploadState.ACKNOWLEDGED
    assert sum(r.state == UploadState.WAITING for r in rows.values()) == 2  # the others wait for their own retry


def test_nothing_waits_forever_unnoticed(app, city, school):
    """A row nobody tried for longer than CITY_STUCK_MINUTES (no worker running, say) shows as stuck."""
    issued_class(app, school, pupils=2)
    with app.app_context(), school_scope(school.id):
        uploads.queue_uploads(school)
        db.session.commit()
        assert uploads.stuck_uploads(school.id) == []
        long_ago = sa.func.datetime("now", "-2 hours") if db.engine.dialect.name == "sqlite" else sa.text(
            "now() - interval '2 hours'")
        db.session.execute(sa.update(CityUpload).values(created_at=long_ago))
        db.session.commit()
        assert len(uploads.stuck_uploads(school.id)) == 2


def test_cancelled_and_superseded_versions_are_announced(app, city, school):
    made = issued_class(app, school, pupils=3)
    run_upload(app, school)
    settle(app, school)
    with app.app_context(), school_scope(school.id):
        first = db.session.get(RecordVersion, made.version_ids[0])
        first.status, first.status_reason = RecordStatus.CANCELLED, "Nhầm học sinh"
        db.session.commit()
    correction = issue_correction(app, school, made.version_ids[1], "Điều chỉnh chiều cao")
    city.behave(error_rate=0.5, seed=5)
    run_upload(app, school)
    settle(app, school)
    held = {r["record_code"]: r for r in city.records()}
    assert held[made.codes[0]]["status"] == "cancelled" and held[made.codes[0]]["reason"] == "Nhầm học sinh"
    assert held[made.codes[1]]["status"] == "superseded" and held[made.codes[1]]["replaced_by"] == correction
    assert held[correction]["status"] == "accepted"
    rows = uploads_of(app, school)
    assert len(rows) == 6 and all(r.state == UploadState.ACKNOWLEDGED for r in rows)
    assert city.stored() == {code: 1 for code in [*made.codes, correction]}
    # Announcing again sends nothing: each announcement is final.
    before = len(city.log())
    run_upload(app, school)
    assert len(city.log()) == before


def test_the_district_uploads_every_school(app, city, make):
    schools = [make.school(f"truong{n}", f"Trường Tiểu học Số {n}") for n in (1, 2)]
    codes = [c for s in schools for c in issued_class(app, s, pupils=3, code_prefix=f"H{s.id}").codes]
    city.behave(error_rate=0.3, seed=1)
    with app.app_context(), all_schools():
        run = jobs.enqueue("interop.upload_district", school_id=None, actor=None, title="Toàn Phòng",
                           grade=5, school_year="2024-2025")
        db.session.commit()
        run_id = run.id
    finish_jobs(app, [run_id], timeout=120)
    settle(app, schools[0])
    settle(app, schools[1])
    with app.app_context():
        run = db.session.get(jobs.JobRun, run_id)
        assert run.state == jobs.JobState.FINISHED, run.error
    with app.app_context(), all_schools():
        assert uploads.counts(None)["acknowledged"] == 6
    assert sorted(city.stored()) == sorted(codes) and set(city.stored().values()) == {1}


@pytest.mark.slow
def test_a_worker_killed_in_the_middle(app, city, school, monkeypatch):
    """On Redis: a worker process is killed while uploads are under way; another finishes them."""
    if not app.config["REDIS_URL"]:
        pytest.skip("worker processes exist only on the Redis stack")
    made = issued_class(app, school, pupils=12)
    city.behave(delay_seconds=0.25)
    with app.app_context(), school_scope(school.id):
        run = jobs.enqueue("interop.upload", school_id=school.id, actor=None, title="Gửi", grade=5)
        db.session.commit()
        first_run = run.id
    env = dict(os.environ, DATABASE_URL=app.config["SQLALCHEMY_DATABASE_URI"], REDIS_URL=app.config["REDIS_URL"],
               JOB_QUEUE=app.config["JOB_QUEUE"], SECRET_KEY=app.config["SECRET_KEY"],
               PORTAL_INSTANCE_PATH=app.instance_path, SESSION_COOKIE_SECURE="false", PRODUCTION="false")
    worker = subprocess.Popen([sys.executable, str(Path(app.root_path).parent / "worker.py")], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(city.stored()) < 4:
            time.sleep(0.1)
        assert len(city.stored()) >= 4, "the worker never got going"
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
    assert len(city.stored()) < 12, "the worker finished before it was killed: the test proves nothing"
    city.behave(delay_seconds=0)
    with app.app_context():
        assert db.session.get(jobs.JobRun, first_run).state == jobs.JobState.RUNNING  # left behind by the kill
    time.sleep(FAST["CITY_TIMEOUT_SECONDS"] + 5)  # the killed worker's lease on its row runs out
    run_upload(app, school)
    settle(app, school)
    assert_all_final_none_lost_none_twice(app, school, city, made.codes)


def test_errors_lost_answers_and_duplicate_receipts_at_once(app, city, school):
    """Seeded: 500s, answers lost after storing, answers carrying another record's receipt number. Every record
    ends with the receipt the city holds for its code, none is stuck, none is stored or re-sent twice."""
    made = issued_class(app, school, pupils=16)
    city.behave(error_rate=0.3, lose_response_rate=0.3, duplicate_receipt_rate=0.5, seed=17)
    run_upload(app, school)
    settle(app, school)
    outcomes = [e["outcome"] for e in city.log()]
    assert "stored;duplicate-receipt" in outcomes and "stored;response-lost" in outcomes
    assert any(e["status"] == 500 and e["outcome"].startswith("error") for e in city.log())
    rows = assert_all_final_none_lost_none_twice(app, school, city, made.codes)
    held = {r["record_code"]: r["receipt_number"] for r in city.records()}
    assert all(row.receipt_number == held[row.record_code] for row in rows)
    assert "duplicate" not in outcomes, "a record the city already held was uploaded again"
    with app.app_context(), school_scope(school.id):
        assert uploads.stuck_uploads(school.id) == []


def test_a_wrong_api_key_waits_for_the_fix_then_sends_without_new_signatures(app, city, school, monkeypatch,
                                                                             make, client):
    made = issued_class(app, school, pupils=4)
    with app.app_context(), school_scope(school.id):
        digests = dict(db.session.execute(sa.select(RecordVersion.code, RecordVersion.signed_digest)).all())
    monkeypatch.setitem(app.config, "CITY_API_KEY", "khoa-da-bi-thu-hoi")
    monkeypatch.setenv("CITY_API_KEY", "khoa-da-bi-thu-hoi")  # for worker processes on the Redis stack
    run = run_upload(app, school)
    settle(app, school, rounds=3)
    rows = uploads_of(app, school)
    assert all(r.state == UploadState.WAITING and r.error_code == "AUTH_INVALID" for r in rows), rows
    assert all(r.attempts == 0 and "CITY_API_KEY" in r.action for r in rows)  # attempts are not used up
    assert run.result["open"] == 4 and "còn 4 bản chờ" in run.message
    login(client, make.user(school, Role.PRINCIPAL))
    page = client.get("/s/lqd/exchange").get_data(as_text=True)
    assert 'data-state="rejected"' not in page and page.count('data-state="waiting"') == 4
    assert city.stored() == {}

    monkeypatch.setitem(app.config, "CITY_API_KEY", API_KEY)  # the key is fixed
    monkeypatch.setenv("CITY_API_KEY", API_KEY)
    settle(app, school)
    assert_all_final_none_lost_none_twice(app, school, city, made.codes)
    with app.app_context(), school_scope(school.id):
        assert dict(db.session.execute(sa.select(RecordVersion.code, RecordVersion.signed_digest)).all()) == digests
        assert db.session.scalar(sa.select(sa.func.count()).select_from(RecordVersion)) == len(made.codes)


def test_the_command_sends_what_waits_and_nothing_else(app, city, school, make):
    """`flask interop upload` sends the rows that wait, runs here without a queue, and queues nothing new."""
    waiting = issued_class(app, school, pupils=2)
    with app.app_context(), school_scope(school.id):
        uploads.queue_uploads(school)
        db.session.commit()
    other = make.school("nb", "Trường Tiểu học Nhà Bè")
    not_queued = issued_class(app, other, pupils=2, code_prefix="N")
    result = app.test_cli_runner().invoke(args=["interop", "upload"])
    assert result.exit_code == 0, result.output
    assert "2 attempt(s); 0 upload(s) still waiting" in result.output
    assert sorted(city.stored()) == sorted(waiting.codes)
    assert not set(city.stored()) & set(not_queued.codes)
    with app.app_context(), all_schools():
        run = db.session.scalar(sa.select(jobs.JobRun).where(jobs.JobRun.kind == "interop.upload_district"))
        assert run.owner == "system:flask interop upload" and run.state == jobs.JobState.FINISHED


def test_the_reconciler_schedules_the_retries_that_are_due(app, city, school):
    made = issued_class(app, school, pupils=3)
    city.behave(down_requests=3)
    first = run_upload(app, school)
    assert first.result["open"] == 3
    time.sleep(0.4)  # past the longest wait
    with app.app_context():
        counts = jobs.reconcile()
        assert counts["upload_retries"] == 1
        jobs.reconcile()  # a retry job already queued for the school: not a second one
    with app.app_context(), all_schools():
        retry = db.session.scalars(sa.select(jobs.JobRun).where(jobs.JobRun.kind == "interop.upload",
                                                                jobs.JobRun.id != first.id)).all()
        assert len(retry) == 1 and retry[0].owner == jobs.SYSTEM_OWNER and retry[0].params["queue_new"] is False
        retry_id = retry[0].id
    finish_jobs(app, [retry_id], timeout=120)
    assert_all_final_none_lost_none_twice(app, school, city, made.codes)
