"""A user action split into parts (a class each): one row to follow, parts queued longest first, the result
merged in the action's order, the signer's PIN kept until the last part, failures and interruptions told."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from portal import jobs
from portal.extensions import db, utcnow
from portal.jobs import JobRun, JobState
from tenants.roles import Role
from tenants.scoping import all_schools
from tests.assessment_factory import make_class, make_year
from tests.conftest import csrf_token, finish_jobs, login
from tests.records_factory import confirm_class
from tests.results_factory import rate

# Test-only tasks, run with `jobs.execute` in this process on rows whose queueing was dropped (a Redis
# worker is another process that never imports this module).
_seen_secrets: list[str | None] = []


def _merge(results: list[dict[str, object]]) -> dict[str, object]:
    return {"items": [item for result in results for item in result["items"]]}  # type: ignore[attr-defined]


@jobs.task("test.parts.work", merge=_merge)
def _work(run: JobRun, name: str, fail: bool = False, halfway: bool = False) -> dict[str, object]:
    _seen_secrets.append(jobs.job_secret(run.parent_id or run.id))
    if halfway:
        run.report(3, 10)
        return {"items": [name]}
    if fail:
        raise RuntimeError(f"Không đọc được dữ liệu lớp {name}")
    return {"items": [name]}


def _split(app, school_id: int, parts: list[jobs.Part], *, queue: bool = False) -> tuple[str, list[str], list[str]]:
    """A split action's parent id, its parts' ids in the action's order, and the order they were queued in."""
    with app.app_context(), all_schools():
        parent = jobs.enqueue_parts("test.parts.work", school_id=school_id, actor=None, title="Việc thử", parts=parts)
        queued = list(db.session.info.get("pending_jobs", []))
        if not queue:
            db.session.info.pop("pending_jobs", None)
        db.session.commit()
        children = list(db.session.scalars(sa.select(JobRun.id).where(JobRun.parent_id == parent.id)
                                           .order_by(JobRun.position)))
        return parent.id, children, queued


def _run(app, run_id: str) -> JobRun:
    with app.app_context(), all_schools():
        run = db.session.get(JobRun, run_id)
        db.session.expunge(run)
        return run


def _execute(app, run_id: str) -> None:
    with app.app_context():
        jobs.execute(run_id)


def test_parts_are_queued_longest_first_and_the_result_keeps_the_actions_order(app, make):
    school = make.school("lqd", "Trường Tiểu học Lê Quang Định")
    parent_id, children, queued = _split(app, school.id, [
        jobs.Part("1A", 30, {"name": "1A"}, cost=30), jobs.Part("5A", 35, {"name": "5A"}, cost=175),
        jobs.Part("3A", 32, {"name": "3A"}, cost=96)])
    assert queued == [children[1], children[2], children[0]]  # 5A, 3A, 1A: no long part starts last
    assert _run(app, parent_id).total_items == 97 and _run(app, parent_id).parts == 3  # pupils

    _execute(app, parent_id)  # a parent is never run itself (a stray delivery does nothing)
    assert _run(app, parent_id).state == JobState.QUEUED and _seen_secrets == []

    for child in (children[1], children[2]):
        _execute(app, child)
    assert _run(app, parent_id).state == JobState.RUNNING
    _execute(app, children[0])
    parent = _run(app, parent_id)
    assert parent.state == JobState.FINISHED and parent.progress == 100
    assert parent.result == {"items": ["1A", "5A", "3A"]}
    _execute(app, children[0])  # a second delivery of a part changes nothing
    assert _run(app, parent_id).result == {"items": ["1A", "5A", "3A"]}


def test_the_parent_counts_the_items_of_all_parts(app, make):
    school = make.school("lqd", "Trường Tiểu học Lê Quang Định")
    parent_id, children, _queued = _split(app, school.id, [
        jobs.Part("5A", 10, {"name": "5A", "halfway": True}), jobs.Part("5B", 20, {"name": "5B"})])
    _execute(app, children[0])  # reports 3/10 on its way, then ends: its 10 items are done
    parent = _run(app, parent_id)
    assert parent.state == JobState.RUNNING and not parent.done
    assert parent.done_items == 3 and parent.progress == 10 and parent.message == "3/30"
    _execute(app, children[1])
    assert _run(app, parent_id).state == JobState.FINISHED


def test_the_signers_pin_is_kept_for_every_part_and_dropped_after_the_last(app, make):
    school = make.school("lqd", "Trường Tiểu học Lê Quang Định")
    parent_id, children, _queued = _split(app, school.id, [jobs.Part("5A", 2, {"name": "5A"}),
                                                           jobs.Part("5B", 2, {"name": "5B"})])
    with app.app_context():
        jobs.stash_secret(parent_id, "864209")
    _seen_secrets.clear()
    _execute(app, children[0])
    _execute(app, children[1])
    assert _seen_secrets == ["864209", "864209"]
    with app.app_context():
        assert jobs.job_secret(parent_id) is None


def test_a_failed_part_fails_the_action_naming_the_class_and_keeps_the_others_items(app, make):
    school = make.school("lqd", "Trường Tiểu học Lê Quang Định")
    parent_id, children, _queued = _split(app, school.id, [jobs.Part("5A", 2, {"name": "5A", "fail": True}),
                                                           jobs.Part("5B", 2, {"name": "5B"})])
    for child in children:
        _execute(app, child)
    parent = _run(app, parent_id)
    assert parent.state == JobState.FAILED
    assert "5A" in parent.error and "Không đọc được dữ liệu lớp 5A" in parent.error
    assert parent.result == {"items": ["5B"]}
    with app.app_context(), all_schools():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(jobs.audit.AuditEntry).where(
            jobs.audit.AuditEntry.action == "job.parts_ended")) == 1


def test_the_reconciler_leaves_parents_alone_and_a_lost_part_ends_the_action(app, make):
    school = make.school("lqd", "Trường Tiểu học Lê Quang Định")
    parent_id, children, _queued = _split(app, school.id, [jobs.Part("5A", 2, {"name": "5A"}),
                                                           jobs.Part("5B", 2, {"name": "5B"})])
    _execute(app, children[0])
    long_ago = utcnow() - timedelta(seconds=float(app.config["JOB_HEARTBEAT_TIMEOUT_SECONDS"]) + 30)
    with app.app_context(), all_schools():
        # The parent looks old and running; the second part's worker died with it running.
        db.session.execute(sa.update(JobRun).where(JobRun.id.in_([parent_id, children[1]])).values(
            state=JobState.RUNNING, started_at=long_ago, heartbeat_at=long_ago, created_at=long_ago))
        db.session.commit()
    with app.app_context():
        counts = jobs.reconcile()
    assert counts["interrupted"] == 1  # the part, not the parent
    parent = _run(app, parent_id)
    assert parent.state == JobState.INTERRUPTED and parent.note  # the part's task cannot resume: told, not hung
    assert parent.result == {"items": ["5A"]}


def test_generating_a_grade_is_one_job_of_a_part_per_class(app, client, make):
    school = make.school("lqd", "Trường Tiểu học Lê Quang Định")
    principal = make.user(school, Role.PRINCIPAL)
    gvcn = make.user(school, Role.HOMEROOM_TEACHER, full_name="Nguyễn Thị Ánh Tuyết")
    year_id = make_year(app, school, name="2024-2025")
    classes = {}
    for name, pupils in (("5A", 2), ("5B", 3)):
        setup = make_class(app, school, year_id, name, homeroom_id=gvcn.id, pupils=pupils)
        rate(app, school, setup, range(pupils))
        confirm_class(app, school, setup.class_id, gvcn)
        classes[name] = setup
    login(client, principal)
    response = client.post("/s/lqd/records/grades/5/generate",
                           data={"csrf_token": csrf_token(client, "/s/lqd/records/")})
    assert response.status_code == 302
    parent_id = response.location.rsplit("/", 1)[-1]
    with app.app_context(), all_schools():
        children = list(db.session.scalars(sa.select(JobRun).where(JobRun.parent_id == parent_id)
                                           .order_by(JobRun.position)))
        parts = [(c.title.rsplit(" · ", 1)[-1], c.params, c.total_items) for c in children]
    assert parts == [("5A", {"class_ids": [classes["5A"].class_id]}, 2),
                     ("5B", {"class_ids": [classes["5B"].class_id]}, 3)]
    finish_jobs(app, [parent_id], timeout=120)
    parent = _run(app, parent_id)
    assert parent.state == JobState.FINISHED, parent.error
    assert [item["name"].rsplit("(", 1)[-1] for item in parent.result["items"]] == ["5A)"] * 2 + ["5B)"] * 3
    assert sum(count for _label, count in parent.result["counts"]) == 5
    page = client.get(f"/s/lqd/jobs/{parent_id}")
    assert page.status_code == 200 and page.get_data(as_text=True).count("job-item ") == 5


def test_a_worker_warms_up_once_and_a_failing_warm_up_only_slows_it(app, monkeypatch, caplog):
    calls: list[str] = []
    monkeypatch.setattr(jobs, "WARM_UPS", [lambda: calls.append("first"), lambda: 1 / 0,
                                           lambda: calls.append("last")])
    assert jobs.warm_worker(app) >= 0
    assert calls == ["first", "last"] and "warm-up failed" in caplog.text


def test_the_layout_warm_up_loads_the_layout_in_memory(app):
    import sys

    from portal.records import tasks

    with app.app_context():
        tasks.warm_up_layout()  # raises if the fonts cannot be read
    from portal.records import pdf

    assert "reportlab.platypus" in sys.modules and pdf._styles.cache_info().currsize == 1


def test_a_job_process_forked_from_the_worker_uses_its_app_with_connections_of_its_own(app, monkeypatch):
    monkeypatch.setattr(jobs, "_worker_app_instance", None)
    jobs.use_worker_app(app)
    with app.app_context():
        engine = db.engine
        engine.dispose()  # nothing pooled: the pretend fork below must not leave this process's connections open
        pool_before = engine.pool
    assert jobs._worker_app() is app and engine.pool is pool_before  # the worker itself: nothing changes
    monkeypatch.setattr(jobs.os, "getpid", lambda: -1)  # as seen from a forked job process
    assert jobs._worker_app() is app
    assert engine.pool is not pool_before  # a pool of its own: the worker's connections are not shared
    with app.app_context():
        assert db.session.execute(sa.text("select 1")).scalar() == 1


def test_the_principal_signs_and_seals_a_school_in_a_part_per_class_typing_once(app, make):
    from portal.records.models import RecordStatus, RecordVersion
    from portal.signing import pki, pki_folder
    from portal.signing import services as certificates
    from tenants.certificates import KeyKind
    from tenants.models import School, User
    from tenants.scoping import school_scope
    from tests.records_factory import generate

    passphrase, pin = "mat-khau-p12", "864209"
    ca = pki.create_demo_ca(pki_folder(app))
    school = make.school("lqd", "Trường Tiểu học Lê Quang Định")
    principal = make.user(school, Role.PRINCIPAL, full_name="Võ Thị Lài")
    gvcn = make.user(school, Role.HOMEROOM_TEACHER, full_name="Nguyễn Thị Ánh Tuyết")
    year_id = make_year(app, school, name="2024-2025")
    for name, pupils in (("5A", 2), ("5B", 1)):
        setup = make_class(app, school, year_id, name, homeroom_id=gvcn.id, pupils=pupils)
        rate(app, school, setup, range(pupils))
        confirm_class(app, school, setup.class_id, gvcn)
        generate(app, school, setup.class_id, gvcn)
    with app.app_context(), school_scope(school.id):
        here = db.session.get(School, school.id)
        for user, title, keep in ((gvcn, "Giáo viên chủ nhiệm", True), (principal, "Hiệu trưởng", False)):
            issued = ca.issue_person(user.full_name, title=title, organisation=school.name)
            certificates.register_person_certificate(db.session.get(User, user.id), certificates.Upload(
                issued.pkcs12(passphrase, kdf_rounds=1000), KeyKind.PKCS12, passphrase,
                keep_passphrase_on_server=keep, signing_pin=pin if keep else ""), school=here, actor=None)
        seal = ca.issue_organisation(school.name, locality="Nhà Bè")
        certificates.register_seal_certificate(here, certificates.Upload(seal.pkcs12(passphrase, kdf_rounds=1000),
                                                                         KeyKind.PKCS12, passphrase), actor=None)
        db.session.commit()

    def sign(who, step: str, **form: str) -> JobRun:
        client = app.test_client()
        login(client, who)
        response = client.post("/s/lqd/records/sign", data={
            "csrf_token": csrf_token(client, "/s/lqd/records/"), "step": step, **form})
        assert response.status_code == 302 and "/jobs/" in response.location, response.location
        run_id = response.location.rsplit("/", 1)[-1]
        finish_jobs(app, [run_id], timeout=180)
        return _run(app, run_id)

    for who, step, form in ((gvcn, "gvcn", {"passphrase": pin}), (principal, "hieu_truong", {"passphrase": passphrase}),
                            (principal, "con_dau", {})):
        run = sign(who, step, **form)
        assert run.parts == 2 and run.state == JobState.FINISHED, (step, run.error, run.note)
        assert [item["outcome"] for item in run.result["items"]] == ["signed"] * 3, run.result
        assert [item["name"][-3:-1] for item in run.result["items"]] == ["5A", "5A", "5B"]
        with app.app_context():
            assert jobs.job_secret(run.id) is None  # what was typed is gone once the last part ended
    with app.app_context(), school_scope(school.id):
        statuses = db.session.scalars(sa.select(RecordVersion.status)).all()
    assert statuses == [RecordStatus.ISSUED] * 3
