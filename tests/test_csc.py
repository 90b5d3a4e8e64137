"""Remote signing over the CSC API, against the stand-in server run as its own process on a local port.

The client: OAuth2 client credentials, credentials/list and /info, authorize (the signer approves on
the "phone"), signHash; a refusal, an approval that never comes and a slow server each end in a clear
Vietnamese error. The portal side: a batch of CSC requests is signed by the `signing.csc_batch` job
(the web request never waits for the phone), and every signature verifies against the certificate.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from portal.app import PROJECT_ROOT
from portal.extensions import db
from portal.jobs import JobRun, JobState
from portal.signing import csc, pki
from portal.signing import requests as signing
from portal.signing.requests import RequestItem, RequestState, SigningRequest
from tenants.models import User
from tenants.roles import Role
from tenants.scoping import all_schools
from tests.conftest import finish_jobs

PASSPHRASE = "hocbaso2025"
CLIENT = ("hocba-portal", "bi-mat-thu")
PURPOSE = "test_csc"


@dataclass
class Standin:
    url: str
    keys: dict[str, pki.IssuedCertificate]  # userID -> key and certificate held by the service

    def control(self, path: str, payload: dict[str, object] | None = None) -> dict[str, object]:
        data = json.dumps(payload or {}).encode()
        request = urllib.request.Request(self.url + path, data=data, method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def transactions(self) -> list[dict[str, object]]:
        with urllib.request.urlopen(self.url + "/_standin/transactions", timeout=10) as response:
            return json.loads(response.read())["transactions"]

    def der(self, user_id: str) -> bytes:
        return self.keys[user_id].certificate.public_bytes(serialization.Encoding.DER)


@pytest.fixture(scope="module")
def standin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standin]:
    """`python -m standins.csc` on port 0 with keys issued from a demo CA (one EC, one RSA signer)."""
    folder = tmp_path_factory.mktemp("csc-keys")
    ca = pki.create_ca()
    keys = {"0901234567": ca.issue_person("Võ Thị Lài", title="Hiệu trưởng", organisation="Trường TH Lê Quang Định"),
            "0907654321": ca.issue_person("Trần Văn Bình", title="Giáo viên chủ nhiệm",
                                          organisation="Trường TH Lê Quang Định", key_type="rsa")}
    for user_id, issued in keys.items():
        (folder / f"{user_id}.p12").write_bytes(issued.pkcs12(PASSPHRASE))
    log = folder / "standin.log"  # its request log: a pipe nobody reads would fill up and stall it
    with log.open("w") as errors, subprocess.Popen(
            [sys.executable, "-m", "standins.csc", "--port", "0", "--keys", str(folder), "--passphrase", PASSPHRASE,
             "--client-id", CLIENT[0], "--client-secret", CLIENT[1], "--approval-seconds", "60"],
            cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=errors, text=True) as process:
        try:
            line = process.stdout.readline()
            assert "listening on http://127.0.0.1:" in line, log.read_text()
            yield Standin(line.split("listening on ", 1)[1].strip(), keys)
        finally:
            process.terminate()
            process.wait(timeout=10)


@pytest.fixture(autouse=True)
def normal_behaviour(standin: Standin) -> Iterator[None]:
    yield
    standin.control("/_standin/behaviour", {"mode": "normal", "approval_seconds": 60})


def client(standin: Standin, **options: float) -> csc.CscClient:
    return csc.CscClient(standin.url, *CLIENT, **options)


def digests(n: int, seed: str = "hoc-ba") -> list[bytes]:
    return [hashlib.sha256(f"{seed}-{i}".encode()).digest() for i in range(n)]


def approve_when_asked(standin: Standin, user_id: str, *, after: float = 0.3,
                       transaction_id: str | None = None) -> threading.Thread:
    """The signer taps "Đồng ý" on the phone a moment after the request (this one, or the next) arrives."""
    earlier = set() if transaction_id else {t["transactionID"] for t in standin.transactions()}

    def tap() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            waiting = [t for t in standin.transactions() if t["userID"] == user_id and t["status"] == "pending"
                       and t["transactionID"] not in earlier
                       and t["transactionID"] == (transaction_id or t["transactionID"])]
            if waiting:
                time.sleep(after)
                standin.control(f"/_standin/approve/{waiting[0]['transactionID']}")
                return
            time.sleep(0.05)

    def guarded() -> None:
        with contextlib.suppress(OSError):  # the stand-in went away: the test has failed already
            tap()

    thread = threading.Thread(target=guarded, daemon=True)
    thread.start()
    return thread


# --- the client against the stand-in ------------------------------------------------------------------

@pytest.mark.parametrize("user_id", ["0901234567", "0907654321"])
def test_list_authorize_approve_sign_and_the_signatures_verify(app, standin, user_id):
    api = client(standin)
    assert "credentials/authorize" in api.info()["methods"]
    credential = api.find_credential(user_id, standin.der(user_id))
    assert api.list_credentials(user_id) == [credential.credential_id] and credential.status == "valid"
    assert len(credential.certificates) == 3  # the signer's, the issuing CA's, the root's
    hashes = digests(3)
    authorization = api.authorize(credential.credential_id, hashes, "Ký 3 học bạ số lớp 5A")
    assert authorization.status == "pending" and authorization.sad is None
    assert api.check(authorization.transaction_id).status == "pending"
    with pytest.raises(csc.CscError, match="từ chối yêu cầu"):  # no approval yet: nothing to sign with
        api.sign_hash(credential.credential_id, "chua-co", hashes, signing.algorithm_for(credential.certificate))
    approve_when_asked(standin, user_id, transaction_id=authorization.transaction_id)
    waits: list[float] = []
    sad = api.wait_for_approval(authorization.transaction_id, timeout=20, first_interval=0.1, on_wait=waits.append)
    assert waits and waits == sorted(waits)  # it polled, each wait longer than the one before
    algorithm = signing.algorithm_for(credential.certificate)
    signatures = api.sign_hash(credential.credential_id, sad, hashes, algorithm)
    for digest, signature in zip(hashes, signatures, strict=True):
        assert signing.der_signature(standin.der(user_id), algorithm, digest.hex(), signature) is not None
    assert signing.der_signature(standin.der(user_id), algorithm, hashes[1].hex(), signatures[0]) is None
    with pytest.raises(csc.CscError, match="từ chối yêu cầu"):  # the approval covers these hashes only
        api.sign_hash(credential.credential_id, sad, digests(1, "khac"), algorithm)


def test_a_refusal_on_the_phone_is_a_clear_error(app, standin):
    api = client(standin)
    credential = api.find_credential("0901234567", standin.der("0901234567"))
    authorization = api.authorize(credential.credential_id, digests(2), "Ký 2 học bạ")
    standin.control(f"/_standin/refuse/{authorization.transaction_id}")
    with app.test_request_context(), pytest.raises(csc.CscRefused) as refused:
        api.wait_for_approval(authorization.transaction_id, timeout=5, first_interval=0.1)
    assert refused.value.message == "Người ký đã từ chối yêu cầu ký trên điện thoại."


def test_an_approval_that_never_comes_times_out(app, standin):
    api = client(standin)
    credential = api.find_credential("0901234567", standin.der("0901234567"))
    authorization = api.authorize(credential.credential_id, digests(1), "Ký 1 học bạ")
    started = time.monotonic()
    with pytest.raises(csc.CscExpired, match="chưa xác nhận trên điện thoại"):
        api.wait_for_approval(authorization.transaction_id, timeout=0.5, first_interval=0.1)
    assert time.monotonic() - started < 3
    standin.control("/_standin/behaviour", {"mode": "never", "approval_seconds": 0})  # the service gives up itself
    expired = api.authorize(credential.credential_id, digests(1), "Ký 1 học bạ")
    with pytest.raises(csc.CscExpired) as by_service:
        api.check(expired.transaction_id)
    assert by_service.value.code == "expired_transaction"


def test_a_slow_service_and_wrong_credentials_are_clear_errors(app, standin):
    standin.control("/_standin/behaviour", {"mode": "slow", "delay": 1.5})
    started = time.monotonic()
    with pytest.raises(csc.CscTimeout, match="không trả lời trong 1 giây"):
        client(standin, timeout=1).list_credentials("0901234567")
    assert time.monotonic() - started < 3
    standin.control("/_standin/behaviour", {"mode": "normal"})
    with pytest.raises(csc.CscError, match="sai mã ứng dụng hoặc khóa bí mật"):
        csc.CscClient(standin.url, CLIENT[0], "sai").list_credentials("0901234567")
    with pytest.raises(csc.CscError, match="Không tìm thấy chứng thư số") as missing:
        client(standin).find_credential("0901234567", standin.der("0907654321"))
    assert missing.value.code == "no_credential"
    with pytest.raises(csc.CscError, match="Không kết nối được"):
        csc.CscClient("http://127.0.0.1:9", *CLIENT, timeout=2).info()


# --- the portal: a batch signed through the job -------------------------------------------------------

def configure(app, monkeypatch: pytest.MonkeyPatch, **settings: object) -> None:
    """Settings for the job, wherever it runs: this process (in-process queue) or a `worker.py` (Redis)."""
    for key, value in settings.items():
        monkeypatch.setitem(app.config, key, value)
        monkeypatch.setenv(key, str(value if key != "CSC_POLL_SECONDS" else max(1, int(value))))


@pytest.fixture
def configured(app, standin, monkeypatch: pytest.MonkeyPatch) -> None:
    configure(app, monkeypatch, CSC_BASE_URL=standin.url, CSC_CLIENT_ID=CLIENT[0], CSC_CLIENT_SECRET=CLIENT[1],
              CSC_POLL_SECONDS=0.1, CSC_APPROVAL_TIMEOUT_SECONDS=20, CSC_HTTP_TIMEOUT_SECONDS=5)


def hooks_run_here(app) -> bool:
    """The finishing hook a test registers lives in this process: a `worker.py` does not have it."""
    return not app.config["REDIS_URL"]


@pytest.fixture
def finished(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    monkeypatch.setitem(signing._HOOKS, PURPOSE, lambda request: calls.append(request.id))
    return calls


def register(app, user: User, certificate: bytes) -> None:
    """The certificate as the user's registered remote-signing (CSC) certificate."""
    from cryptography import x509

    from tenants.certificates import KeyKind, PersonCertificate

    info = pki.describe(x509.load_der_x509_certificate(certificate))
    with app.app_context():
        db.session.add(PersonCertificate(user_id=user.id, common_name=info.common_name, subject=info.subject,
                                         issuer=info.issuer, serial=info.serial, fingerprint=info.fingerprint,
                                         not_before=info.not_before, not_after=info.not_after,
                                         certificate=certificate, key_kind=KeyKind.CSC, csc_provider="standin"))
        db.session.commit()


def start_batch(app, make, standin: Standin, count: int = 3) -> tuple[list[int], str]:
    school = make.school("lqd", "Trường Tiểu học Lê Quang Định")
    principal = make.user(school, Role.PRINCIPAL, username="ht.lai", full_name="Võ Thị Lài")
    register(app, principal, standin.der("0901234567"))
    items = [RequestItem(subject_id=n, step="hieu_truong", digest=digest.hex(), prepared_digest="0" * 64,
                         description=f"Học sinh Số {n} – lớp 5A") for n, digest in enumerate(digests(count, "lop5a"))]
    with app.app_context(), all_schools():  # ids read after the commit
        actor = db.session.get(User, principal.id)
        created, run = csc.start_remote_batch(school.id, signer_id=principal.id, csc_user_id="0901234567",
                                              purpose=PURPOSE, items=items, certificate_der=standin.der("0901234567"),
                                              title="Ký học bạ lớp 5A (ký số từ xa)", actor=actor)
        db.session.commit()
        return [r.id for r in created], run.id


def request_rows(app, ids: list[int]) -> list[SigningRequest]:
    with app.app_context(), all_schools():
        rows = [db.session.get(SigningRequest, i) for i in ids]
        for row in rows:
            db.session.expunge(row)
        return rows


@pytest.mark.slow
def test_a_batch_is_signed_after_one_approval_without_a_web_request_waiting(app, make, standin, configured,
                                                                         finished):
    approve_when_asked(standin, "0901234567", after=0.5)
    started = time.monotonic()
    ids, run_id = start_batch(app, make, standin)
    assert time.monotonic() - started < 2  # opening the batch did not wait for the phone
    finish_jobs(app, [run_id], timeout=60)
    with app.app_context():
        run = db.session.get(JobRun, run_id)
        assert run.state == JobState.FINISHED, run.error
        assert run.result["states"] == {"answered": 3}
    rows = request_rows(app, ids)
    assert len({r.csc_transaction_id for r in rows}) == 1 and rows[0].csc_credential_id == "0901234567/1"
    asked = [t for t in standin.transactions() if t["transactionID"] == rows[0].csc_transaction_id]
    assert [t["numSignatures"] for t in asked] == [3]  # one approval for the whole batch
    for row in rows:
        assert row.state == RequestState.ANSWERED
        assert signing.der_signature(row.certificate, row.algorithm, row.digest, row.raw_signature) is not None
    assert sorted(finished) == (ids if hooks_run_here(app) else [])


@pytest.mark.slow
@pytest.mark.parametrize("behaviour, state, message", [
    ({"mode": "refuse"}, RequestState.REFUSED, "Người ký đã từ chối yêu cầu ký trên điện thoại."),
    ({"mode": "never"}, RequestState.EXPIRED, "Người ký chưa xác nhận trên điện thoại trong thời gian cho phép"),
])
def test_a_refused_or_unanswered_batch_ends_whole_with_the_reason(app, make, standin, configured, finished,
                                                                 monkeypatch, behaviour, state, message):
    configure(app, monkeypatch, CSC_APPROVAL_TIMEOUT_SECONDS=2)
    standin.control("/_standin/behaviour", behaviour)
    ids, run_id = start_batch(app, make, standin, count=2)
    finish_jobs(app, [run_id], timeout=60)
    with app.app_context():
        run = db.session.get(JobRun, run_id)
        # The signer's answer (or its absence) is an outcome, not a fault: the job ends and says how.
        assert run.state == JobState.FINISHED and run.result["states"] == {state.value: 2}
    rows = request_rows(app, ids)
    assert [r.state for r in rows] == [state] * 2 and all(message in r.error for r in rows)
    assert all(r.raw_signature is None for r in rows) and finished == []


def test_the_phone_page_approves(app, standin):
    api = client(standin)
    credential = api.find_credential("0901234567", standin.der("0901234567"))
    authorization = api.authorize(credential.credential_id, digests(1), "Ký học bạ của Học sinh Số 1")
    with urllib.request.urlopen(f"{standin.url}/_standin/phone/0901234567", timeout=10) as response:
        page = response.read().decode()
    assert "Ký học bạ của Học sinh Số 1" in page and "Đồng ý ký" in page
    form = urllib.request.Request(f"{standin.url}/_standin/approve/{authorization.transaction_id}",
                                  data=b"back=1", method="POST")
    with urllib.request.urlopen(form, timeout=10) as response:  # follows the redirect back to the phone
        after = response.read().decode()
    assert f"/_standin/approve/{authorization.transaction_id}" in page
    assert f"/_standin/approve/{authorization.transaction_id}" not in after
    assert "Ký học bạ của Học sinh Số 1: approved" in after
    assert api.check(authorization.transaction_id).sad


def test_the_standin_runs_from_its_own_folder_of_keys(tmp_path: Path):
    """What the demo does: `python -m standins.csc --keys FOLDER`; a wrong passphrase stops it with a message."""
    issued = pki.create_ca().issue_person("Võ Thị Lài", title="Hiệu trưởng", organisation="Trường TH")
    (tmp_path / "0901234567.p12").write_bytes(issued.pkcs12("khac"))
    result = subprocess.run([sys.executable, "-m", "standins.csc", "--port", "0", "--keys", str(tmp_path)],
                            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=30)
    assert result.returncode != 0 and "0901234567.p12" in result.stderr


@pytest.mark.slow
def test_a_record_signed_by_the_remote_service_validates(app, make, standin, configured, finished):
    """A real record PDF: the GVCN signs with a server key, the principal through the remote service (job,
    phone approval, signHash), the seal with a server key; the result validates against the demo root."""
    from portal.records.pdf import render_pdf
    from portal.signing import engine
    from portal.signing.stamp import StampText
    from portal.signing.validate import validate_pdf
    from portal.storage import storage
    from tests.record_factory import sample_content

    principal = standin.keys["0901234567"]
    root = principal.chain[-1]
    school = make.school("lqd", "Trường Tiểu học Lê Quang Định")
    user = make.user(school, Role.PRINCIPAL, username="ht.lai", full_name="Võ Thị Lài")
    register(app, user, standin.der("0901234567"))
    own_ca = pki.create_ca()  # the GVCN's and the seal's certificates come from another (trusted) CA
    gvcn = own_ca.issue_person("Trần Văn Bình", title="Giáo viên chủ nhiệm", organisation=school.name)
    seal = own_ca.issue_organisation(school.name)
    pdf = engine.sign_field(render_pdf(sample_content()), "gvcn", engine.Pkcs12Key(gvcn.pkcs12("k"), "k"),
                            certify=True, stamp=StampText("Giáo viên chủ nhiệm", "Trần Văn Bình"))
    prepared = engine.prepare_signature(pdf, "hieu_truong", principal.certificate, principal.chain, certify=False,
                                        stamp=StampText("Hiệu trưởng", "Võ Thị Lài"))
    approve_when_asked(standin, "0901234567", after=0.2)
    with app.app_context(), all_schools():  # ids read after the commit
        stored = {"pdf": storage().put(prepared.pdf), "state": prepared.state()}
        item = RequestItem(subject_id=1, step="hieu_truong", digest=prepared.digest.hex(),
                           prepared_digest=storage().put(json.dumps(stored).encode()),
                           description="Học sinh Số 1 – lớp 5A")
        [request], run = csc.start_remote_batch(school.id, signer_id=user.id, csc_user_id="0901234567",
                                                purpose=PURPOSE, items=[item], actor=None,
                                                certificate_der=standin.der("0901234567"),
                                                title="Ký học bạ (ký số từ xa)")
        db.session.commit()
        request_id, run_id = request.id, run.id
    finish_jobs(app, [run_id], timeout=60)
    assert finished == ([request_id] if hooks_run_here(app) else [])
    with app.app_context(), all_schools():  # the finishing job
        request = db.session.get(SigningRequest, request_id)
        stored = json.loads(storage().read(request.prepared_digest))
        again = engine.PreparedSignature.from_state(stored["state"], storage().read(stored["pdf"]))
        pdf = engine.finish_signature(again, request.raw_signature)
    pdf = engine.sign_field(pdf, "con_dau", engine.Pkcs12Key(seal.pkcs12("k"), "k"), certify=False,
                            stamp=StampText("Con dấu số", school.name))
    report = validate_pdf(pdf, [root, own_ca.root])
    assert report.ok, report.problems
    assert [(s.field, s.signer_name) for s in report.signatures] == [
        ("gvcn", "Trần Văn Bình"), ("hieu_truong", "Võ Thị Lài"), ("con_dau", school.name)]
    assert not validate_pdf(pdf, [own_ca.root]).ok  # the remote signer's CA is not trusted there
