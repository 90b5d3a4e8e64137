"""Where an external signing batch stands: the page a signer lands on after "Ký tất cả" with a USB token or
remote signing (CSC), per record waiting / approved / refused / expired / signed, with a retry and a cancel;
the approval deadline kept to the second; the phone's request naming the batch."""

from __future__ import annotations

import base64
import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import sqlalchemy as sa
from werkzeug.serving import make_server

from portal.extensions import db
from portal.records import workflow
from portal.records.models import RecordStatus, RecordVersion
from portal.signing import csc, pki
from portal.signing import services as certificates
from portal.signing.requests import RequestKind, RequestState, SigningRequest
from standins.csc import create_app as create_csc_app
from standins.csc import load_credentials
from tenants.certificates import KeyKind
from tenants.models import School, User
from tenants.scoping import all_schools, school_scope
from tests import test_signing_workflow as workflow_tests
from tests.browser import ARGS, CHROMIUM, require_browser
from tests.conftest import PASSWORD, csrf_token, finish_jobs, login
from tests.test_signing_workflow import PASSPHRASE

ca, world = workflow_tests.ca, workflow_tests.world  # the fixtures of the workflow tests

CLIENT = ("hocba-portal", "bi-mat-thu")


# --- the deadline and the phone's words ------------------------------------------------------------------

class NeverApproved(csc.CscClient):
    """A CSC client whose signer never answers, on a clock the test moves."""

    def __init__(self) -> None:
        super().__init__("http://127.0.0.1:9", *CLIENT)
        self.now, self.checks = 0.0, []

    def check(self, transaction_id: str) -> csc.Authorization:
        self.checks.append(self.now)
        return csc.Authorization(transaction_id, "pending")

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_the_approval_deadline_is_kept_to_the_second(app):
    client = NeverApproved()
    with app.test_request_context(), pytest.raises(csc.CscExpired):
        client.wait_for_approval("t1", timeout=60, first_interval=2, sleep=client.sleep, clock=lambda: client.now)
    # Polls at 0, 2, 6, 14, 30 s, then one last check exactly at the deadline: not 30 s early, not later.
    assert client.checks == [0, 2, 6, 14, 30, 60]


def test_the_phone_is_asked_for_the_whole_batch_by_name(app):
    pupils = ["Nguyễn Tuấn An", "Trần Thị Bích", "Lê Văn Cường", "Phạm Ngọc Dung"]
    requests = [SigningRequest(subject_id=n, description=f"{name} · 5A") for n, name in enumerate(pupils)]
    with app.test_request_context():
        text = csc.batch_description(requests)
    assert text == "Ký 4 học bạ số lớp 5A: Nguyễn Tuấn An, Trần Thị Bích, Lê Văn Cường, Phạm Ngọc Dung"


# --- the batch page over HTTP ------------------------------------------------------------------------------

@dataclass
class Csc:
    url: str
    app: object

    def behave(self, **settings: object) -> None:
        request = urllib.request.Request(self.url + "/_standin/behaviour", data=json.dumps(settings).encode(),
                                         headers={"Content-Type": "application/json"}, method="POST")
        urllib.request.urlopen(request, timeout=10).close()

    def pending(self) -> list[dict[str, object]]:
        with urllib.request.urlopen(self.url + "/_standin/transactions", timeout=10) as response:
            return [t for t in json.loads(response.read())["transactions"] if t["status"] == "pending"]

    def approve_when_asked(self, timeout: float = 60) -> threading.Thread:
        """The signer taps "Đồng ý" on the phone as soon as the next request arrives (in the background, so that
        a worker process waiting for the phone can be run meanwhile)."""
        def tap() -> None:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and not self.approve_all():
                time.sleep(0.2)

        thread = threading.Thread(target=tap, daemon=True)
        thread.start()
        return thread

    def approve_all(self) -> int:
        waiting = self.pending()
        for transaction in waiting:
            urllib.request.urlopen(urllib.request.Request(
                f"{self.url}/_standin/approve/{transaction['transactionID']}", data=b"", method="POST"),
                timeout=10).close()
        return len(waiting)


@pytest.fixture
def remote_principal(app, world, tmp_path, monkeypatch) -> Iterator[Csc]:
    """The class signed by its GVCN; the principal (ht.lai) signs remotely with a key the stand-in provider
    holds, issued by the demo CA the portal trusts; the provider runs on a loopback port."""
    school = world["school"]
    with app.app_context(), school_scope(school.id):
        workflow.sign_batch(db.session.get(School, school.id), workflow.STEPS["gvcn"],
                            [v.id for v in world["versions"]], signer=db.session.get(User, world["gvcn"].id),
                            secret=workflow_tests.GVCN_PIN)
        principal = db.session.get(User, world["principal"].id)
        issued = world["ca"].issue_person(principal.full_name, title="Hiệu trưởng", organisation=school.name)
        (tmp_path / f"{principal.username}.p12").write_bytes(issued.pkcs12(PASSPHRASE, kdf_rounds=1000))
        certificates.register_person_certificate(principal, certificates.Upload(
            pki.certificates_pem([issued.certificate, *issued.chain]).encode(), KeyKind.CSC,
            csc_provider="standin", csc_credential_id=f"{principal.username}/1"),
            school=db.session.get(School, school.id), actor=principal)
        db.session.commit()
    provider = create_csc_app(load_credentials(tmp_path, PASSPHRASE), client_id=CLIENT[0], client_secret=CLIENT[1])
    server = make_server("127.0.0.1", 0, provider, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}"
    for key, value in {"CSC_BASE_URL": url, "CSC_CLIENT_ID": CLIENT[0], "CSC_CLIENT_SECRET": CLIENT[1],
                       "CSC_POLL_SECONDS": 1, "CSC_APPROVAL_TIMEOUT_SECONDS": 20}.items():
        monkeypatch.setitem(app.config, key, value)
        monkeypatch.setenv(key, str(value))  # a worker process reads them from its environment
    yield Csc(url, provider)
    server.shutdown()
    thread.join(5)


def _sign_principal(client, app) -> str:
    """Press "Ký tất cả" for the principal's step; returns the batch id the job names."""
    data = {"csrf_token": csrf_token(client, "/s/lqd/records/"), "step": "hieu_truong", "grade": 5}
    response = client.post("/s/lqd/records/sign", data=data)
    assert response.status_code == 302 and "/jobs/" in response.location
    run_id = response.location.rsplit("/", 1)[-1]
    finish_jobs(app, [run_id], timeout=120)
    page = client.get(f"/s/lqd/jobs/{run_id}").get_data(as_text=True)
    assert "Xem trạng thái đợt ký" in page
    with app.app_context():
        from portal.jobs import JobRun

        run = db.session.get(JobRun, run_id)
        assert run.result["next"][0] == "signing.batch"
        return run.result["batches"][0]


def _batch_requests(app, batch_id: str) -> list[SigningRequest]:
    with app.app_context(), all_schools():
        rows = list(db.session.scalars(sa.select(SigningRequest).where(SigningRequest.batch_id == batch_id)))
        for row in rows:
            db.session.expunge(row)
        return rows


def _wait_for_state(app, batch_id: str, state: RequestState, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(r.state == state for r in _batch_requests(app, batch_id)):
            return
        time.sleep(0.2)
    raise AssertionError(f"batch {batch_id} not {state}: {[r.state for r in _batch_requests(app, batch_id)]}")


@pytest.mark.slow
def test_a_refused_batch_says_so_per_record_and_a_retry_asks_again(app, world, remote_principal):
    remote_principal.behave(mode="refuse")
    client = app.test_client()
    login(client, world["principal"])
    batch_id = _sign_principal(client, app)
    _wait_for_state(app, batch_id, RequestState.REFUSED)
    page = client.get(f"/s/lqd/signing/batches/{batch_id}").get_data(as_text=True)
    assert page.count("Bị từ chối") >= 3 and "Người ký đã từ chối yêu cầu ký trên điện thoại." in page
    assert "Ký lại 3 học bạ chưa ký được" in page

    # The GVCN may not see the principal's batch; another school's URL answers 404 too.
    teacher = app.test_client()
    login(teacher, world["gvcn"])
    assert teacher.get(f"/s/lqd/signing/batches/{batch_id}").status_code == 404

    remote_principal.behave(mode="normal")
    approver = remote_principal.approve_when_asked()  # one phone approval for the three records
    retried = client.post(f"/s/lqd/signing/batches/{batch_id}/retry",
                          data={"csrf_token": csrf_token(client, f"/s/lqd/signing/batches/{batch_id}")})
    assert retried.status_code == 302 and "/jobs/" in retried.location
    run_id = retried.location.rsplit("/", 1)[-1]
    finish_jobs(app, [run_id], timeout=120)  # on Redis the worker also takes the CSC job and the finishing jobs
    with app.app_context():
        from portal.jobs import JobRun

        again = db.session.get(JobRun, run_id).result["batches"][0]
    assert again != batch_id
    _wait_for_state(app, again, RequestState.FINISHED, timeout=120)
    approver.join(5)
    assert [t for t in remote_principal.pending()] == []
    with app.app_context(), school_scope(world["school"].id):
        assert set(db.session.scalars(sa.select(RecordVersion.status))) == {RecordStatus.SIGNED_PRINCIPAL}
    assert client.get(f"/s/lqd/signing/batches/{again}").get_data(as_text=True).count("Đã ký") >= 3


@pytest.fixture
def usb_teacher(app, world) -> pki.IssuedCertificate:
    """The GVCN's certificate registered as a USB-token one (the key stays with the test, as on a token)."""
    with app.app_context(), school_scope(world["school"].id):
        gvcn = db.session.get(User, world["gvcn"].id)
        issued = world["ca"].issue_person(gvcn.full_name, title="Giáo viên chủ nhiệm",
                                          organisation=world["school"].name)
        certificates.register_person_certificate(gvcn, certificates.Upload(
            pki.certificates_pem([issued.certificate, *issued.chain]).encode(), KeyKind.USB),
            school=db.session.get(School, world["school"].id), actor=gvcn)
        db.session.commit()
    return issued


def test_a_batch_is_seen_by_its_signer_and_the_principal_and_cancelled_with_its_count(app, world, usb_teacher):
    teacher = app.test_client()
    login(teacher, world["gvcn"])
    response = teacher.post("/s/lqd/records/sign", data={"csrf_token": csrf_token(teacher, "/s/lqd/records/"),
                                                         "step": "gvcn", "class_id": world["class_id"]})
    run_id = response.location.rsplit("/", 1)[-1]
    finish_jobs(app, [run_id], timeout=120)
    with app.app_context():
        from portal.jobs import JobRun

        batch_id = db.session.get(JobRun, run_id).result["batches"][0]
    page = teacher.get(f"/s/lqd/signing/batches/{batch_id}").get_data(as_text=True)
    assert page.count("Đang chờ chương trình ký số") >= 3 and "chưa kết nối lần nào" in page
    assert 'data-confirm="Hủy 3 yêu cầu ký đang chờ của đợt này?"' in page
    assert f"/s/lqd/signing/batches/{batch_id}" in teacher.get("/s/lqd/records/").get_data(as_text=True)
    principal = app.test_client()
    login(principal, world["principal"])
    assert principal.get(f"/s/lqd/signing/batches/{batch_id}").status_code == 200
    token = csrf_token(principal, f"/s/lqd/signing/batches/{batch_id}")
    assert principal.post(f"/s/lqd/signing/batches/{batch_id}/retry",
                          data={"csrf_token": token}).status_code == 403  # signing needs the signer
    assert principal.get("/s/lqd/signing/batches/" + "0" * 32).status_code == 404
    assert principal.get("/s/lqd/signing/batches/not-a-batch").status_code == 404
    principal.post(f"/s/lqd/signing/batches/{batch_id}/cancel", data={"csrf_token": token})
    assert [r.state for r in _batch_requests(app, batch_id)] == [RequestState.CANCELLED] * 3
    assert teacher.get(f"/s/lqd/signing/batches/{batch_id}").get_data(as_text=True).count("Đã hủy") >= 3


# --- in a real browser -------------------------------------------------------------------------------------

@pytest.fixture
def browser_now(app) -> Iterator[object]:
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield instance
        instance.close()


def _browser_login(page, live_url: str, username: str) -> None:
    page.goto(f"{live_url}/login")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("main button.primary")
    page.wait_for_url(f"{live_url}/s/lqd/")


def _press_sign_all(page, app, live_url: str, step: str) -> None:
    page.goto(f"{live_url}/s/lqd/records/")
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator(f"#signing tr[data-step='{step}'] button", has_text="Ký tất cả").click()
    page.wait_for_url("**/jobs/*")
    finish_jobs(app, [page.url.rsplit("/", 1)[-1]], timeout=120)
    page.get_by_role("link", name="Xem trạng thái đợt ký").click()
    page.wait_for_url("**/signing/batches/*")


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.parametrize("mode, label", [("refuse", "bị từ chối"), ("never", "hết hạn")])
def test_the_signer_lands_on_the_batch_and_sees_how_it_ended(app, world, remote_principal, monkeypatch,
                                                             browser_now, live_url, mode, label):
    monkeypatch.setitem(app.config, "CSC_APPROVAL_TIMEOUT_SECONDS", 2)
    monkeypatch.setenv("CSC_APPROVAL_TIMEOUT_SECONDS", "2")
    remote_principal.behave(mode=mode)
    page = browser_now.new_page()
    page.set_default_timeout(60_000)
    _browser_login(page, live_url, world["principal"].username)
    _press_sign_all(page, app, live_url, "hieu_truong")
    # The page refreshes itself until the batch has ended (no eval under the portal's CSP: a locator waits).
    page.locator(f".batch-item-{'refused' if mode == 'refuse' else 'expired'}").nth(2).wait_for()
    rows = page.locator(".batch-item")
    assert rows.count() == 3 and all(label in rows.nth(i).inner_text().lower() for i in range(3))
    assert page.get_by_role("button", name="Ký lại 3 học bạ chưa ký được").is_visible()


@pytest.mark.browser
@pytest.mark.slow
def test_a_usb_batch_waits_for_the_signing_agent_until_it_connects(app, world, usb_teacher, browser_now, live_url):
    # usb_teacher before browser_now: registering checks the certificate with pyHanko (asyncio), which cannot
    # run in this thread while Playwright's event loop does.
    issued = usb_teacher
    page = browser_now.new_page()
    page.set_default_timeout(60_000)
    _browser_login(page, live_url, world["gvcn"].username)
    _press_sign_all(page, app, live_url, "gvcn")
    assert page.locator(".batch-item", has_text="Đang chờ chương trình ký số").count() == 3
    assert "chưa kết nối lần nào" in page.locator(".batch-usb-waiting").inner_text()

    # The signing agent connects and signs (what agent/hocba_agent.py does, over the same API).
    def call(method: str, path: str, body: dict | None = None, token: str | None = None) -> dict:
        request = urllib.request.Request(f"{live_url}/api/agent{path}", method=method,
                                         data=json.dumps(body).encode() if body is not None else None,
                                         headers={"Content-Type": "application/json",
                                                  **({"Authorization": f"Bearer {token}"} if token else {})})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    token = call("POST", "/session", {"username": world["gvcn"].username, "password": PASSWORD})["token"]
    waiting = call("GET", "/requests", token=token)["requests"]
    page.reload()
    assert "kết nối lần cuối lúc" in page.locator(".batch-usb-waiting").inner_text()
    from tests.test_signing_agent import sign_digest

    call("POST", "/signatures", {"signatures": [
        {"id": r["id"], "signature": base64.b64encode(sign_digest(issued.key, r["digest"])).decode()}
        for r in waiting]}, token=token)
    if app.config["REDIS_URL"]:
        with app.app_context(), all_schools():
            ids = [r.id for r in db.session.scalars(sa.select(SigningRequest).where(
                SigningRequest.kind == RequestKind.USB))]
        assert ids
        from portal.jobs import JobRun

        with app.app_context():
            runs = [r.id for r in db.session.scalars(sa.select(JobRun).where(
                JobRun.kind == "records.finish_signature"))]
        finish_jobs(app, runs, timeout=120)
    page.locator(".batch-item-finished").nth(2).wait_for()
    assert page.locator(".batch-usb-waiting").count() == 0
