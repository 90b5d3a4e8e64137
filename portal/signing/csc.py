"""Remote signing through the Cloud Signature Consortium (CSC) API, as VNPT SmartCA / Viettel MySign
style services offer it: the provider keeps the signer's key and signs a hash once the signer approves
on their phone.

`CscClient` speaks the subset the portal needs (OAuth2 client credentials, `credentials/list`,
`credentials/info`, `credentials/authorize` with CSC 2.0's asynchronous `credentials/authorizeCheck`,
`signatures/signHash`) and turns time-outs and refusals into `CscError`s with Vietnamese messages.

The web request never waits for the phone: `start_remote_batch` only opens the signing requests and
enqueues the `signing.csc_batch` job, which asks for one approval for the whole batch, polls with a
growing interval, has the provider sign every hash, and hands each signature to
`portal.signing.requests.answer` (which checks it and calls the workflow's finishing hook). The job
keeps the transaction id on the requests, so a second delivery resumes the same approval.
"""

from __future__ import annotations

import base64
import json
import logging
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from flask import current_app
from flask_babel import gettext as _

from portal import jobs
from portal.extensions import db, utcnow
from portal.signing import requests as signing_requests
from portal.signing.requests import RequestItem, RequestKind, RequestState, SigningRequest
from tenants.scoping import school_scope

SHA256_OID = "2.16.840.1.101.3.4.2.1"
SIGN_ALGOS = {signing_requests.RSA_PKCS1V15_SHA256: "1.2.840.113549.1.1.11",
              signing_requests.ECDSA_SHA256: "1.2.840.10045.4.3.2"}
PURPOSE_TITLE = "signing.csc_batch"
MAX_POLL_SECONDS = 30.0


class CscError(Exception):
    """The remote signing service could not sign; `message` is for the user (Vietnamese)."""

    def __init__(self, message: str, *, code: str = "") -> None:
        super().__init__(message)
        self.message, self.code = message, code


class CscTimeout(CscError):
    """The service did not answer in time."""


class CscRefused(CscError):
    """The signer refused on the phone."""


class CscExpired(CscError):
    """The signer did not approve in time."""


class CscWithdrawn(CscError):
    """The batch was cancelled in the portal while the phone was asked."""


@dataclass(frozen=True)
class CredentialInfo:
    credential_id: str
    certificates: tuple[bytes, ...]  # DER, the signer's first
    status: str
    sign_algos: tuple[str, ...]

    @property
    def certificate(self) -> bytes:
        return self.certificates[0]


@dataclass(frozen=True)
class Authorization:
    transaction_id: str
    status: str  # pending / approved
    sad: str | None = None


class CscClient:
    """A small synchronous client of one CSC service (v2 paths)."""

    def __init__(self, base_url: str, client_id: str, client_secret: str, *, timeout: float = 20) -> None:
        if not base_url:
            raise CscError(_("Chưa cấu hình dịch vụ ký số từ xa (CSC_BASE_URL)."), code="not_configured")
        self.base_url, self.client_id, self.client_secret = base_url.rstrip("/"), client_id, client_secret
        self.timeout = timeout
        self._token: str | None = None
        self._token_expires = 0.0

    @classmethod
    def from_config(cls, config: Any = None) -> CscClient:
        config = config or current_app.config
        return cls(config["CSC_BASE_URL"], config["CSC_CLIENT_ID"], config["CSC_CLIENT_SECRET"],
                   timeout=config["CSC_HTTP_TIMEOUT_SECONDS"])

    # --- transport ---

    def _send(self, path: str, data: bytes, headers: dict[str, str]) -> dict[str, Any]:
        try:
            return self._exchange(path, data, headers)
        except CscError as exc:  # one warning line for every failed call to the outside system
            logging.getLogger(__name__).warning("remote signing call failed", extra={
                "system": "csc", "path": path, "code": getattr(exc, "code", None), "detail": str(exc)[:200]})
            raise

    def _exchange(self, path: str, data: bytes, headers: dict[str, str]) -> dict[str, Any]:
        req = urllib.request.Request(self.base_url + path, data=data, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            raise self._problem(exc) from exc
        except TimeoutError as exc:
            raise self._timeout() from exc
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, TimeoutError | socket.timeout):
                raise self._timeout() from exc
            raise CscError(_("Không kết nối được dịch vụ ký số từ xa (%(reason)s).", reason=exc.reason),
                           code="unreachable") from exc
        except json.JSONDecodeError as exc:
            raise CscError(_("Dịch vụ ký số từ xa trả lời không đúng định dạng."), code="bad_answer") from exc

    def _timeout(self) -> CscTimeout:
        return CscTimeout(_("Dịch vụ ký số từ xa không trả lời trong %(s)d giây. Vui lòng thử lại sau.",
                            s=int(self.timeout)), code="timeout")

    @staticmethod
    def _problem(exc: urllib.error.HTTPError) -> CscError:
        try:
            body = json.loads(exc.read() or b"{}")
        except (json.JSONDecodeError, OSError):
            body = {}
        code = str(body.get("error", "")) or f"http_{exc.code}"
        detail = str(body.get("error_description", "")) or exc.reason
        if code == "access_denied":
            return CscRefused(_("Người ký đã từ chối yêu cầu ký trên điện thoại."), code=code)
        if code == "expired_transaction":
            return CscExpired(_("Người ký chưa xác nhận trên điện thoại trong thời gian cho phép; "
                                "yêu cầu ký đã hết hạn."), code=code)
        if code in {"invalid_client", "invalid_token", "unauthorized_client"}:
            return CscError(_("Cổng không đăng nhập được vào dịch vụ ký số từ xa (sai mã ứng dụng hoặc khóa bí "
                              "mật). Vui lòng báo quản trị hệ thống."), code=code)
        return CscError(_("Dịch vụ ký số từ xa từ chối yêu cầu: %(detail)s", detail=detail), code=code)

    def _token_value(self) -> str:
        if self._token is None or time.monotonic() >= self._token_expires:
            form = urllib.parse.urlencode({"grant_type": "client_credentials", "client_id": self.client_id,
                                           "client_secret": self.client_secret}).encode()
            answer = self._send("/oauth2/token", form, {"Content-Type": "application/x-www-form-urlencoded"})
            self._token = str(answer["access_token"])
            self._token_expires = time.monotonic() + max(30, int(answer.get("expires_in", 3600)) - 30)
        return self._token

    def call(self, method: str, payload: dict[str, Any], *, auth: bool = True) -> dict[str, Any]:
        """POST a CSC method (e.g. "credentials/list") and return its JSON answer."""
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self._token_value()}"
        return self._send(f"/csc/v2/{method}", json.dumps(payload).encode(), headers)

    # --- the CSC methods ---

    def info(self) -> dict[str, Any]:
        return self.call("info", {}, auth=False)

    def list_credentials(self, user_id: str) -> list[str]:
        return [str(c) for c in self.call("credentials/list", {"userID": user_id}).get("credentialIDs", [])]

    def credential_info(self, credential_id: str) -> CredentialInfo:
        answer = self.call("credentials/info", {"credentialID": credential_id, "certificates": "chain",
                                                "certInfo": True})
        cert = answer.get("cert", {})
        return CredentialInfo(credential_id, tuple(base64.b64decode(c) for c in cert.get("certificates", [])),
                              str(cert.get("status", "")), tuple(answer.get("key", {}).get("signAlgo", [])))

    def find_credential(self, user_id: str, certificate_der: bytes) -> CredentialInfo:
        """The user's credential whose certificate is the one registered in the portal."""
        for credential_id in self.list_credentials(user_id):
            info = self.credential_info(credential_id)
            if info.certificates and info.certificate == certificate_der:
                if info.status not in {"", "valid"}:
                    raise CscError(_("Chứng thư số tại dịch vụ ký số từ xa không còn hiệu lực (%(s)s).",
                                     s=info.status), code="certificate_status")
                return info
        raise CscError(_("Không tìm thấy chứng thư số đã đăng kí trên cổng trong tài khoản ký số từ xa của "
                         "người ký (%(user)s).", user=user_id), code="no_credential")

    def authorize(self, credential_id: str, digests: Sequence[bytes], description: str) -> Authorization:
        """Ask the signer to approve signing these hashes (one approval for all of them)."""
        answer = self.call("credentials/authorize", {
            "credentialID": credential_id, "numSignatures": len(digests), "hashAlgorithmOID": SHA256_OID,
            "hashes": [base64.b64encode(d).decode() for d in digests], "description": description[:500]})
        if answer.get("SAD"):  # a service that approves at once (implicit authorisation)
            return Authorization(str(answer.get("transactionID", "")), "approved", str(answer["SAD"]))
        return Authorization(str(answer["transactionID"]), "pending")

    def check(self, transaction_id: str) -> Authorization:
        answer = self.call("credentials/authorizeCheck", {"transactionID": transaction_id})
        if answer.get("status") == "approved" and answer.get("SAD"):
            return Authorization(transaction_id, "approved", str(answer["SAD"]))
        return Authorization(transaction_id, "pending")

    def wait_for_approval(self, transaction_id: str, *, timeout: float, first_interval: float = 2.0,
                          sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
                          on_wait: Callable[[float], None] | None = None) -> str:
        """Poll until the signer approves (returns the SAD), refuses, or the deadline passes (CscExpired).

        The deadline is kept to the second: the last wait is cut to end at it and one last check is made
        there, so a signer who approves in the final seconds is not turned away early.
        """
        started = clock()
        deadline, interval = started + timeout, first_interval
        while True:
            answer = self.check(transaction_id)
            if answer.sad:
                return answer.sad
            remaining = deadline - clock()
            if remaining <= 0:
                raise CscExpired(_("Người ký chưa xác nhận trên điện thoại trong thời gian cho phép; "
                                   "yêu cầu ký đã hết hạn."), code="approval_timeout")
            if on_wait is not None:
                on_wait(clock() - started)
            sleep(min(interval, remaining))
            interval = min(MAX_POLL_SECONDS, interval * 2)

    def sign_hash(self, credential_id: str, sad: str, digests: Sequence[bytes], algorithm: str) -> list[bytes]:
        """The provider's raw signatures of the (already hashed) digests, in order."""
        answer = self.call("signatures/signHash", {
            "credentialID": credential_id, "SAD": sad, "hashAlgorithmOID": SHA256_OID,
            "signAlgo": SIGN_ALGOS[algorithm], "hashes": [base64.b64encode(d).decode() for d in digests]})
        signatures = [base64.b64decode(s) for s in answer.get("signatures", [])]
        if len(signatures) != len(digests):
            raise CscError(_("Dịch vụ ký số từ xa trả về %(got)d chữ ký cho %(want)d tài liệu.",
                             got=len(signatures), want=len(digests)), code="bad_answer")
        return signatures


# --- the portal's side: a batch of requests signed remotely -----------------------------------------


def start_remote_batch(school_id: int, *, signer_id: int, csc_user_id: str, purpose: str,
                       items: Sequence[RequestItem], certificate_der: bytes, title: str,
                       actor: Any) -> tuple[list[SigningRequest], jobs.JobRun | None]:
    """Open the batch's CSC requests and enqueue the job that asks the signer's phone (caller commits)."""
    created = signing_requests.create_requests(school_id, signer_id=signer_id, kind=RequestKind.CSC,
                                               purpose=purpose, items=items, certificate_der=certificate_der,
                                               actor=actor)
    pending = [r for r in created if r.state == RequestState.PENDING and r.kind == RequestKind.CSC]
    if not pending:
        return created, None
    batch_ids = sorted({r.batch_id for r in pending})
    run = None
    for batch_id in batch_ids:
        run = jobs.enqueue(PURPOSE_TITLE, school_id=school_id, actor=actor, title=title, batch_id=batch_id,
                           csc_user_id=csc_user_id)
    return created, run


@jobs.task(PURPOSE_TITLE)
def csc_batch(run: jobs.JobRun, *, batch_id: str, csc_user_id: str) -> dict[str, Any]:
    """Have one batch signed by the remote service: one approval on the phone, then signHash. Resumable."""
    requests = [r for r in signing_requests.batch(batch_id) if r.kind == RequestKind.CSC]
    pending = [r for r in requests if r.state == RequestState.PENDING]
    if not pending:
        return _summary(requests)
    client = CscClient.from_config()
    try:
        sad, credential_id = _approval(run, client, pending, csc_user_id)
        run.report(len(pending) // 2, len(pending), _("Đã được xác nhận; dịch vụ đang ký..."))
        signatures = client.sign_hash(credential_id, sad, [bytes.fromhex(r.digest) for r in pending],
                                      pending[0].algorithm)
    except CscError as exc:
        # How the batch ended, for the signer's status page: refused on the phone, expired, or failed.
        state = (RequestState.REFUSED if isinstance(exc, CscRefused)
                 else RequestState.EXPIRED if isinstance(exc, CscExpired) else RequestState.FAILED)
        signing_requests.close_open([r.id for r in pending], state, exc.message)
        db.session.commit()
        if isinstance(exc, CscRefused | CscExpired | CscWithdrawn):
            return _summary(signing_requests.batch(batch_id))  # an answer, not a fault: the job ends normally
        raise
    refused = [result for req, signature in zip(pending, signatures, strict=True)
               if not (result := signing_requests.answer(req.id, signature, actor=None)).accepted]
    if refused:
        signing_requests.mark_failed([r.request_id for r in refused], refused[0].error or "")
        db.session.commit()
    return _summary(signing_requests.batch(batch_id))


def _approval(run: jobs.JobRun, client: CscClient, pending: list[SigningRequest],
              csc_user_id: str) -> tuple[str, str]:
    """The SAD of the batch's approval: asked once, then polled (a second delivery polls the same one)."""
    first = pending[0]
    credential_id = first.csc_credential_id
    if credential_id is None:
        credential_id = client.find_credential(csc_user_id, first.certificate).credential_id
    transaction_id = first.csc_transaction_id
    if transaction_id is None:
        description = batch_description(pending)
        authorization = client.authorize(credential_id, [bytes.fromhex(r.digest) for r in pending], description)
        with school_scope(first.school_id):
            for req in pending:
                req.csc_credential_id, req.csc_transaction_id = credential_id, authorization.transaction_id
            db.session.commit()
        if authorization.sad:
            return authorization.sad, credential_id
        transaction_id = authorization.transaction_id
    config = current_app.config
    started = first.created_at
    remaining = config["CSC_APPROVAL_TIMEOUT_SECONDS"] - (utcnow() - started) / timedelta(seconds=1)

    request_ids = [r.id for r in pending]

    def waiting(seconds: float) -> None:
        # Cancelled on the status page meanwhile: stop asking. CSC has no standard way to withdraw the
        # request at the provider; an approval that comes later is ignored (the requests are closed).
        db.session.expire_all()
        if all(not (signing_requests.get_request(i) or first).is_open for i in request_ids):
            raise CscWithdrawn(_("Đợt ký đã được hủy trên cổng."), code="withdrawn")
        run.report(0, len(pending), _("Đang chờ người ký xác nhận trên điện thoại (%(s)d giây)...", s=int(seconds)))

    sad = client.wait_for_approval(transaction_id, timeout=max(1.0, remaining),
                                   first_interval=config["CSC_POLL_SECONDS"], on_wait=waiting)
    return sad, credential_id


def batch_description(requests: Sequence[SigningRequest]) -> str:
    """What the signer's phone shows: how many records of which classes, and the pupils' names.

    E.g. "Ký 4 học bạ số lớp 5A: Nguyễn Tuấn An, Trần Thị Bích, ..." (descriptions are "name · class").
    """
    names, classes = [], []
    for request in requests:
        name, _sep, class_name = request.description.partition(" · ")
        names.append(name.strip() or str(request.subject_id))
        if class_name.strip() and class_name.strip() not in classes:
            classes.append(class_name.strip())
    where = _(" lớp %(classes)s", classes=", ".join(classes)) if classes else ""
    text = _("Ký %(n)d học bạ số%(where)s: %(names)s", n=len(requests), where=where, names=", ".join(names))
    return text if len(text) <= 500 else text[:497] + "..."


def _summary(requests: list[SigningRequest]) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for req in requests:
        counts[req.state.value] = counts.get(req.state.value, 0) + 1
    errors = sorted({r.error for r in requests if r.error})
    return {"requests": len(requests), "states": counts, "errors": errors}
