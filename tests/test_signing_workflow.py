"""The signing workflow of record versions: GVCN -> Hiệu trưởng -> seal, batches, return, cancel, correct."""

from __future__ import annotations

import subprocess

import pytest
import sqlalchemy as sa

from portal import jobs
from portal.audit import AuditEntry
from portal.extensions import db
from portal.records import services, workflow
from portal.records.models import RecordSignature, RecordStatus, RecordVersion
from portal.signing import pki, pki_folder
from portal.signing import services as certificates
from portal.signing.validate import validate_pdf
from tenants.certificates import KeyKind
from tenants.models import School, User
from tenants.roles import Role
from tenants.scoping import school_scope
from tests.conftest import csrf_token, finish_jobs, login, worker_env
from tests.records_factory import assessed_class, generate
from tests.tools import require

PASSPHRASE = "mat-khau-p12"
GVCN_PIN = "864209"  # the GVCN's signing PIN: only she knows it


@pytest.fixture
def ca(app) -> pki.DemoCA:
    """The demo CA of the instance folder: what the portal, and every worker process, trusts by default."""
    return pki.create_demo_ca(pki_folder(app))


@pytest.fixture
def world(app, make, ca):
    """School lqd, a grade-5 class of three pupils with drafts, and a registered certificate for each signer."""
    school = make.school("lqd", "Trường Tiểu học Lê Quang Định")
    principal = make.user(school, Role.PRINCIPAL, full_name="Võ Thị Lài")
    gvcn = make.user(school, Role.HOMEROOM_TEACHER, full_name="Nguyễn Thị Ánh Tuyết")
    assessed = assessed_class(app, school, gvcn, pupils=3, years=1)
    versions = generate(app, school, assessed.setup.class_id, gvcn)
    with app.app_context(), school_scope(school.id):
        here = db.session.get(School, school.id)
        for user, title, keep in ((gvcn, "Giáo viên chủ nhiệm", True), (principal, "Hiệu trưởng", False)):
            issued = ca.issue_person(user.full_name, title=title, organisation=school.name)
            certificates.register_person_certificate(
                db.session.get(User, user.id), certificates.Upload(issued.pkcs12(PASSPHRASE, kdf_rounds=1000),
                                                                   KeyKind.PKCS12, PASSPHRASE,
                                                                   keep_passphrase_on_server=keep,
                                                                   signing_pin=GVCN_PIN if keep else ""),
                school=here, actor=None)
        seal = ca.issue_organisation(school.name, locality="Nhà Bè")
        certificates.register_seal_certificate(here, certificates.Upload(seal.pkcs12(PASSPHRASE, kdf_rounds=1000),
                                                                         KeyKind.PKCS12, PASSPHRASE), actor=None)
        db.session.commit()
    return {"app": app, "school": school, "principal": principal, "gvcn": gvcn, "class_id": assessed.setup.class_id,
            "versions": versions, "ca": ca}


def _sign(client, app, step: str, **scope) -> jobs.JobRun:
    data = {"csrf_token": csrf_token(client, "/s/lqd/records/"), "step": step, **scope}
    response = client.post("/s/lqd/records/sign", data=data)
    assert response.status_code == 302 and "/jobs/" in response.location, response.location
    run_id = response.location.rsplit("/", 1)[-1]
    finish_jobs(app, [run_id], timeout=120)
    with app.app_context():
        run = db.session.get(jobs.JobRun, run_id)
        db.session.expunge(run)
        return run


def _statuses(app, school) -> dict[int, RecordStatus]:
    with app.app_context(), school_scope(school.id):
        return dict(db.session.execute(sa.select(RecordVersion.id, RecordVersion.status)).all())


def _file(app, school, version_id: int) -> bytes:
    with app.app_context(), school_scope(school.id):
        return services.read_file(db.session.get(RecordVersion, version_id).current_digest)


def test_a_class_goes_from_draft_to_issued_in_three_batches(client, world):
    app, school = world["app"], world["school"]
    ids = [v.id for v in world["versions"]]
    login(client, world["gvcn"])
    run = _sign(client, app, "gvcn", class_id=world["class_id"], passphrase=GVCN_PIN)  # her PIN, once
    assert run.state == jobs.JobState.FINISHED, run.error
    assert [i["outcome"] for i in run.result["items"]] == ["signed"] * 3
    assert set(_statuses(app, school).values()) == {RecordStatus.SIGNED_HOMEROOM}

    # The principal sends one back with a reason, and signs the rest of the grade (typing the passphrase).
    principal = app.test_client()
    login(principal, world["principal"])
    returned = ids[0]
    response = principal.post(f"/s/lqd/records/{returned}/return",
                              data={"csrf_token": csrf_token(principal, f"/s/lqd/records/{returned}"),
                                    "reason": "Sai ngày sinh, đề nghị kiểm tra lại."})
    assert response.status_code == 302
    run = _sign(principal, app, "hieu_truong", grade=5, passphrase=PASSPHRASE)
    assert sorted(i["outcome"] for i in run.result["items"]) == ["signed", "signed"], run.result
    run = _sign(principal, app, "con_dau")
    assert [i["outcome"] for i in run.result["items"]] == ["signed", "signed"], run.result
    statuses = _statuses(app, school)
    assert statuses[returned] == RecordStatus.RETURNED
    assert [statuses[i] for i in ids[1:]] == [RecordStatus.ISSUED] * 2

    # Each issued file carries three valid, trusted signatures, checked by pyHanko and by poppler.
    for version_id in ids[1:]:
        signed = _file(app, school, version_id)
        report = validate_pdf(signed, [world["ca"].root])
        assert report.ok and report.signed_fields == ["gvcn", "hieu_truong", "con_dau"], report.as_dict()
        require("pdfsig")
        checked = subprocess.run(["pdfsig", "-nocert", "-"], input=signed, capture_output=True, check=False)
        if checked.returncode != 0:  # older poppler cannot read from stdin
            path = world["app"].instance_path + f"/check-{version_id}.pdf"
            with open(path, "wb") as handle:
                handle.write(signed)
            checked = subprocess.run(["pdfsig", "-nocert", path], capture_output=True, check=False)
        assert checked.stdout.decode().count("Signature is Valid") == 3, checked.stdout.decode()
    with app.app_context(), school_scope(school.id):
        rows = db.session.execute(sa.select(RecordSignature.record_version_id, RecordSignature.step,
                                            RecordSignature.signer_name)).all()
    assert len(rows) == 3 + 2 + 2
    assert {(v, s) for v, s, _n in rows if v == ids[1]} == {(ids[1], "gvcn"), (ids[1], "hieu_truong"),
                                                            (ids[1], "con_dau")}


def test_a_batch_run_twice_signs_nothing_twice(world):
    app, school = world["app"], world["school"]
    ids = [v.id for v in world["versions"]]
    step = workflow.STEPS["gvcn"]
    with app.app_context(), school_scope(school.id):
        here, gvcn = db.session.get(School, school.id), db.session.get(User, world["gvcn"].id)
        first = workflow.sign_batch(here, step, ids[:2], signer=gvcn, secret=GVCN_PIN)
        # A crash after two records: the batch is run again over all three.
        again = workflow.sign_batch(here, step, ids, signer=gvcn, secret=GVCN_PIN)
        counts = dict(db.session.execute(sa.select(RecordSignature.record_version_id, sa.func.count())
                                         .group_by(RecordSignature.record_version_id)).all())
    assert [r.outcome for r in first] == ["signed", "signed"]
    assert [r.outcome for r in again] == ["already", "already", "signed"]
    assert counts == {i: 1 for i in ids}


def test_the_seal_is_refused_on_a_tampered_file(world):
    app, school = world["app"], world["school"]
    version_id = world["versions"][0].id
    with app.app_context(), school_scope(school.id):
        here = db.session.get(School, school.id)
        gvcn, principal = db.session.get(User, world["gvcn"].id), db.session.get(User, world["principal"].id)
        workflow.sign_batch(here, workflow.STEPS["gvcn"], [version_id], signer=gvcn, secret=GVCN_PIN)
        workflow.sign_batch(here, workflow.STEPS["hieu_truong"], [version_id], signer=principal,
                            secret=PASSPHRASE)
        version = db.session.get(RecordVersion, version_id)
        data = bytearray(services.read_file(version.current_digest))
        data[len(data) // 3] ^= 0x01  # one flipped byte inside the signed range
        from portal.storage import storage

        version.signed_digest = storage().put(bytes(data))
        db.session.commit()
        [result] = workflow.sign_batch(here, workflow.STEPS["con_dau"], [version_id], signer=principal)
        assert result.outcome == "failed" and "chưa ban hành" in result.reason
        assert db.session.get(RecordVersion, version_id).status == RecordStatus.SIGNED_PRINCIPAL


def test_wrong_passphrase_and_missing_certificate_fail_with_a_message(world, make):
    app, school = world["app"], world["school"]
    with app.app_context(), school_scope(school.id):
        here = db.session.get(School, school.id)
        gvcn, principal = db.session.get(User, world["gvcn"].id), db.session.get(User, world["principal"].id)
        workflow.sign_batch(here, workflow.STEPS["gvcn"], [world["versions"][0].id], signer=gvcn, secret=GVCN_PIN)
        with pytest.raises(Exception) as refused:
            workflow.sign_batch(here, workflow.STEPS["hieu_truong"], [world["versions"][0].id], signer=principal)
        assert "mật khẩu" in str(refused.value)
    stranger = make.user(school, Role.HOMEROOM_TEACHER)
    with (app.app_context(), school_scope(school.id),
          pytest.raises(workflow.WorkflowError, match="chưa đăng kí chứng thư số")):
        workflow.signing_certificate(db.session.get(School, school.id), workflow.STEPS["gvcn"],
                                     db.session.get(User, stranger.id))


def _gvcn_certificate(app, world):
    from tenants.certificates import PersonCertificate

    with app.app_context():
        certificate = db.session.scalar(sa.select(PersonCertificate).where(
            PersonCertificate.user_id == world["gvcn"].id))
        db.session.expunge(certificate)
        return certificate


def _refused_sign(client, step: str, **data) -> str:
    """POST a signing batch; returns the page it lands on (the refusal is flashed, no job is queued)."""
    form = {"csrf_token": csrf_token(client, "/s/lqd/records/"), "step": step, **data}
    response = client.post("/s/lqd/records/sign", data=form, follow_redirects=True)
    assert "/jobs/" not in response.request.path
    return response.get_data(as_text=True)


def test_a_principal_who_resets_a_gvcns_password_cannot_sign_as_that_gvcn(app, world):
    """Even if the principal takes over the GVCN's account through the reset link, the GVCN's key stays hers."""
    import html
    import re

    gvcn = world["gvcn"]
    before = _gvcn_certificate(app, world)
    principal = app.test_client()
    login(principal, world["principal"])
    staff_page = f"/s/lqd/staff/{gvcn.id}"
    response = principal.post(f"{staff_page}/reset-password", data={"csrf_token": csrf_token(principal, staff_page)})
    link = re.search(r'id="set-password-link" href="http://[^/"]+([^"]+)"', response.get_data(as_text=True)).group(1)
    # The worst case: the principal uses the link himself and signs in as the GVCN.
    takeover = app.test_client()
    assert takeover.post(link, data={"new": "Chiem-Quyen-2026", "confirm": "Chiem-Quyen-2026",
                                     "csrf_token": csrf_token(takeover, link)}).status_code == 302
    login(takeover, gvcn.username, "Chiem-Quyen-2026")
    index = html.unescape(takeover.get("/s/lqd/records/").get_data(as_text=True))
    assert "Mã PIN ký số của bạn" in index  # the batch asks for the holder's PIN
    class_id = world["class_id"]
    assert "Cần nhập mã PIN ký số" in html.unescape(_refused_sign(takeover, "gvcn", class_id=class_id))
    for guess in ("123456", "000000", "hocbaso2025", PASSPHRASE):
        assert "Mã PIN ký số không đúng" in html.unescape(_refused_sign(takeover, "gvcn", class_id=class_id,
                                                                       passphrase=guess))
    assert set(_statuses(app, world["school"]).values()) == {RecordStatus.DRAFT}  # nothing signed as her
    # Without the .p12 passphrase the PIN cannot be replaced either.
    pin_page = f"/s/lqd/certificates/{before.id}/pin"
    refused = takeover.post(pin_page, data={"passphrase": "doan-bua", "signing_pin": "975310",
                                            "signing_pin_confirm": "975310",
                                            "csrf_token": csrf_token(takeover, pin_page)})
    assert "Mật khẩu tệp .p12/.pfx không đúng." in html.unescape(refused.get_data(as_text=True))
    # The PIN lock is untouched by the reset, and nobody else opens the principal's certificates page for it.
    assert _gvcn_certificate(app, world).passphrase_sealed == before.passphrase_sealed
    assert principal.get(pin_page).status_code == 404
    # The job cannot be asked directly either: a batch queued without her PIN signs nothing.
    with app.app_context(), school_scope(world["school"].id):
        here = db.session.get(School, world["school"].id)
        results = None
        with pytest.raises(Exception, match="mã PIN"):
            results = workflow.sign_batch(here, workflow.STEPS["gvcn"], [v.id for v in world["versions"]],
                                          signer=db.session.get(User, gvcn.id))
        assert results is None


def test_wrong_pins_block_the_key_until_its_holder_sets_the_pin_again(app, world):
    import html

    from portal.signing.services import PIN_MAX_FAILURES

    school, ids = world["school"], [v.id for v in world["versions"]]
    step = workflow.STEPS["gvcn"]
    with app.app_context(), school_scope(school.id):
        here, gvcn = db.session.get(School, school.id), db.session.get(User, world["gvcn"].id)
        for _ in range(PIN_MAX_FAILURES):
            with pytest.raises(Exception, match="không đúng"):
                workflow.sign_batch(here, step, ids[:1], signer=gvcn, secret="975310")
        with pytest.raises(Exception, match="đã bị khóa"):  # now even her right PIN waits for a new one
            workflow.sign_batch(here, step, ids[:1], signer=gvcn, secret=GVCN_PIN)
    certificate = _gvcn_certificate(app, world)
    holder = app.test_client()
    login(holder, world["gvcn"])
    pin_page = f"/s/lqd/certificates/{certificate.id}/pin"
    weak = holder.post(pin_page, data={"passphrase": PASSPHRASE, "signing_pin": "111111",
                                       "signing_pin_confirm": "111111", "csrf_token": csrf_token(holder, pin_page)})
    assert "quá dễ đoán" in html.unescape(weak.get_data(as_text=True))
    done = holder.post(pin_page, data={"passphrase": PASSPHRASE, "signing_pin": "975310",
                                       "signing_pin_confirm": "975310", "csrf_token": csrf_token(holder, pin_page)})
    assert done.status_code == 302
    with app.app_context(), school_scope(school.id):
        here, gvcn = db.session.get(School, school.id), db.session.get(User, world["gvcn"].id)
        [result] = workflow.sign_batch(here, step, ids[:1], signer=gvcn, secret="975310")
        assert result.outcome == "signed"
        actions = list(db.session.scalars(sa.select(AuditEntry.action).where(
            AuditEntry.action.like("certificate.pin%"))))
    assert actions.count("certificate.pin_wrong") == PIN_MAX_FAILURES and "certificate.pin_set" in actions


def _drop_jobs(app, run_ids: list[str]) -> None:
    """Jobs this test only had to see queued: off the Redis queue, or finished by the job thread."""
    backend = app.extensions["portal_jobs"]
    if backend.in_process:
        finish_jobs(app, run_ids, timeout=60)
        return
    for run_id in run_ids:
        job = backend.queue.fetch_job(run_id)
        if job is not None:
            job.delete()


def _issue(app, school, world, version_id: int) -> None:
    with app.app_context(), school_scope(school.id):
        here = db.session.get(School, school.id)
        gvcn, principal = db.session.get(User, world["gvcn"].id), db.session.get(User, world["principal"].id)
        for step, signer, secret in (("gvcn", gvcn, GVCN_PIN), ("hieu_truong", principal, PASSPHRASE),
                                     ("con_dau", principal, None)):
            [result] = workflow.sign_batch(here, workflow.STEPS[step], [version_id], signer=signer, secret=secret)
            assert result.outcome == "signed", result


def test_an_issued_record_is_corrected_by_a_new_version_and_cancelled_with_a_reason(client, world, monkeypatch):
    app, school = world["app"], world["school"]
    first, second = world["versions"][0].id, world["versions"][1].id
    _issue(app, school, world, first)
    _issue(app, school, world, second)
    login(client, world["principal"])
    token = csrf_token(client, f"/s/lqd/records/{first}")
    response = client.post(f"/s/lqd/records/{first}/correct", data={"csrf_token": token,
                                                                    "reason": "Sửa nơi sinh theo giấy khai sinh."})
    assert response.status_code == 302
    correction = int(response.location.rsplit("/", 1)[-1])
    statuses = _statuses(app, school)
    assert statuses[first] == RecordStatus.ISSUED and statuses[correction] == RecordStatus.DRAFT
    _issue(app, school, world, correction)
    with app.app_context(), school_scope(school.id):
        old, new = db.session.get(RecordVersion, first), db.session.get(RecordVersion, correction)
        assert old.status == RecordStatus.SUPERSEDED and new.status == RecordStatus.ISSUED
        assert new.code in old.status_reason and "Sửa nơi sinh" in old.status_reason
        assert new.replaces_id == old.id and new.number == old.number + 1
    response = client.post(f"/s/lqd/records/{second}/cancel", data={"csrf_token": token, "reason": ""})
    assert _statuses(app, school)[second] == RecordStatus.ISSUED  # no reason, no cancel
    # The city had the record: cancelling it starts the job that announces it.
    from portal.interop.models import CityUpload, UploadKind, UploadState

    with app.app_context(), school_scope(school.id):
        sent = db.session.get(RecordVersion, second)
        db.session.add(CityUpload(school_id=sent.school_id, record_version_id=sent.id, kind=UploadKind.UPLOAD,
                                  record_code=sent.code, school_year_id=sent.school_year_id, grade=sent.grade,
                                  state=UploadState.ACKNOWLEDGED, receipt_number="TP-1"))
        db.session.commit()
    client.post(f"/s/lqd/records/{second}/cancel", data={"csrf_token": token, "reason": "Cấp nhầm học sinh."})
    with app.app_context(), school_scope(school.id):
        cancelled = db.session.get(RecordVersion, second)
        assert cancelled.status == RecordStatus.CANCELLED and cancelled.status_reason == "Cấp nhầm học sinh."
        announcing = list(db.session.scalars(sa.select(jobs.JobRun.id).where(jobs.JobRun.kind == "interop.upload")))
    assert len(announcing) == 1  # and none for the correction's old version, which the city never had
    _drop_jobs(app, announcing)
    # The issued file itself never changed.
    assert validate_pdf(_file(app, school, second), [world["ca"].root]).ok


def test_a_usb_token_signs_through_requests_and_the_portal_finishes_the_pdfs(client, world, make):
    """The GVCN's key is on a USB token: the batch asks the signing agent, the answers finish the records."""
    from tests.test_signing_agent import sign_digest

    app, school, ca = world["app"], world["school"], world["ca"]
    holder = make.user(school, Role.HOMEROOM_TEACHER, full_name="Phan Thị Token")
    token = ca.issue_person(holder.full_name, title="Giáo viên chủ nhiệm", organisation=school.name)
    with app.app_context(), school_scope(school.id):
        here = db.session.get(School, school.id)
        user = db.session.get(User, holder.id)
        certificates.register_person_certificate(user, certificates.Upload(
            token.certificate_pem() + pki.certificates_pem(list(ca.chain)).encode(), KeyKind.USB),
                                                 school=here, actor=None)
        from portal.assessment.models import SchoolClass

        db.session.get(SchoolClass, world["class_id"]).homeroom_teacher_id = holder.id
        db.session.commit()
    ids = [v.id for v in world["versions"]]
    login(client, holder)
    run = _sign(client, app, "gvcn", class_id=world["class_id"])
    assert [i["outcome"] for i in run.result["items"]] == ["waiting"] * 3
    assert set(_statuses(app, school).values()) == {RecordStatus.DRAFT}  # nothing signed until the token answers

    from portal.signing import requests

    with app.app_context():
        pending = requests.pending_for(holder.id)
        assert sorted(r.subject_id for r in pending) == sorted(ids)
        answers = [(r.id, sign_digest(token.key, r.digest)) for r in pending]
        wrong = answers[0][0], sign_digest(world["ca"].issuing_key, pending[0].digest)
        refused = requests.answer(wrong[0], wrong[1], actor=db.session.get(User, holder.id))
        assert not refused.accepted and "không khớp" in refused.error
        results = requests.answer_many(answers, actor=db.session.get(User, holder.id))
        assert all(r.accepted for r in results)
        finishing = list(db.session.scalars(sa.select(jobs.JobRun.id).where(
            jobs.JobRun.kind == "records.finish_signature")))
    finish_jobs(app, finishing, timeout=120)
    assert set(_statuses(app, school).values()) == {RecordStatus.SIGNED_HOMEROOM}
    report = validate_pdf(_file(app, school, ids[0]), [ca.root])
    assert report.signed_fields == ["gvcn"] and report.all_valid, report.as_dict()
    # The same answers again change nothing.
    with app.app_context():
        again = requests.answer_many(answers, actor=db.session.get(User, holder.id))
    assert all(r.accepted for r in again)
    with app.app_context(), school_scope(school.id):
        assert db.session.scalar(sa.select(sa.func.count()).select_from(RecordSignature)) == 3


@pytest.mark.slow
def test_a_worker_killed_in_the_middle_of_a_batch_leaves_nothing_signed_twice(app, make, ca, client, monkeypatch):
    """On Redis: the worker sealing a school and its job process are killed (kill -9); from the silent
    heartbeat the job shows as interrupted within the threshold, resumes by itself, and seals the rest,
    each record exactly once."""
    import os
    import signal
    import sys
    import time
    from pathlib import Path

    if not app.config["REDIS_URL"]:
        pytest.skip("worker processes exist only on the Redis stack")
    fast = {"JOB_HEARTBEAT_SECONDS": 0.5, "JOB_HEARTBEAT_TIMEOUT_SECONDS": 4.0, "JOB_RECONCILE_SECONDS": 1.0}
    for key, value in fast.items():
        monkeypatch.setitem(app.config, key, value)
    school = make.school("lqd", "Trường Tiểu học Lê Quang Định")
    principal = make.user(school, Role.PRINCIPAL, full_name="Võ Thị Lài")
    gvcn = make.user(school, Role.HOMEROOM_TEACHER, full_name="Nguyễn Thị Ánh Tuyết")
    assessed = assessed_class(app, school, gvcn, pupils=12, years=1)
    ids = [v.id for v in generate(app, school, assessed.setup.class_id, gvcn)]
    with app.app_context(), school_scope(school.id):
        here = db.session.get(School, school.id)
        for user, title in ((gvcn, "Giáo viên chủ nhiệm"), (principal, "Hiệu trưởng")):
            issued = ca.issue_person(user.full_name, title=title, organisation=school.name)
            certificates.register_person_certificate(db.session.get(User, user.id), certificates.Upload(
                issued.pkcs12(PASSPHRASE, kdf_rounds=1000), KeyKind.PKCS12, PASSPHRASE, signing_pin=GVCN_PIN),
                school=here, actor=None)
        seal = ca.issue_organisation(school.name)
        certificates.register_seal_certificate(here, certificates.Upload(
            seal.pkcs12(PASSPHRASE, kdf_rounds=1000), KeyKind.PKCS12, PASSPHRASE), actor=None)
        db.session.commit()
        workflow.sign_batch(here, workflow.STEPS["gvcn"], ids, signer=db.session.get(User, gvcn.id), secret=GVCN_PIN)
        workflow.sign_batch(here, workflow.STEPS["hieu_truong"], ids, signer=db.session.get(User, principal.id),
                            secret=GVCN_PIN)
        first = jobs.enqueue("records.sign", school_id=school.id, actor=db.session.get(User, principal.id),
                             title="Đóng dấu", step="con_dau", version_ids=ids)
        db.session.commit()
        first_id = first.id

    def sealed() -> list[int]:
        with app.app_context(), school_scope(school.id):
            return list(db.session.scalars(sa.select(RecordSignature.record_version_id)
                                           .where(RecordSignature.step == "con_dau")))

    env = {**worker_env(app), **{key: str(value) for key, value in fast.items()}}
    worker = subprocess.Popen([sys.executable, str(Path(app.root_path).parent / "worker.py")], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and len(sealed()) < 2:
            time.sleep(0.05)
        assert len(sealed()) >= 2, "the worker never got going"
    finally:
        # The job process first (RQ runs it in a process group of its own), then the worker: nobody is
        # left to report the death, as when a machine goes down.
        children = Path(f"/proc/{worker.pid}/task/{worker.pid}/children")
        for pid in (children.read_text().split() if children.exists() else []):
            os.kill(int(pid), signal.SIGKILL)
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
    killed_at = time.monotonic()
    assert len(sealed()) < len(ids), "the worker finished before it was killed: the test proves nothing"
    with app.app_context():
        assert db.session.get(jobs.JobRun, first_id).state == jobs.JobState.RUNNING  # left behind by the kill
    # The scheduled `flask jobs reconcile` (or any other worker) notices the silence.
    while True:
        with app.app_context():
            jobs.reconcile()
            run = db.session.get(jobs.JobRun, first_id)
            state, note, resumes = run.state, run.note, run.resumes
        if state != jobs.JobState.RUNNING or time.monotonic() - killed_at > 120:
            break
        time.sleep(0.5)
    noticed = time.monotonic() - killed_at
    assert state == jobs.JobState.QUEUED and resumes == 1, state  # interrupted, and put back on the queue
    assert noticed < fast["JOB_HEARTBEAT_TIMEOUT_SECONDS"] + 10, noticed
    login(client, principal)
    assert "Bị gián đoạn" in note and "Bị gián đoạn" in client.get(f"/s/lqd/jobs/{first_id}").get_data(as_text=True)
    finish_jobs(app, [first_id], timeout=180)  # the next worker takes the resumed job
    with app.app_context(), school_scope(school.id):
        run = db.session.get(jobs.JobRun, first_id)
        assert run.state == jobs.JobState.FINISHED, (run.state, run.error)
        outcomes = [item["outcome"] for item in run.result["items"]]
        statuses = set(db.session.scalars(sa.select(RecordVersion.status).where(RecordVersion.id.in_(ids))))
    assert sorted(sealed()) == sorted(ids)  # every record sealed, none twice (one row per version and step)
    assert statuses == {RecordStatus.ISSUED}
    assert outcomes.count("already") >= 2 and outcomes.count("signed") + outcomes.count("already") == len(ids)
    for version_id in ids[:3]:
        assert validate_pdf(_file(app, school, version_id), [ca.root]).ok
