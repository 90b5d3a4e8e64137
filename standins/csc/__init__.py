"""A stand-in remote signing service speaking the Cloud Signature Consortium (CSC) API subset that
VNPT SmartCA / Viettel MySign style services use, for the demo and the tests.

It holds users' keys (PKCS#12 files, e.g. issued from the portal's demo CA), authenticates the portal
with OAuth2 client credentials, and answers `credentials/authorize` with "waiting for the signer's
approval", like a real provider that pushes a notification to the signer's phone. The approval comes
from `POST /_standin/approve/<transaction>` or from the little "phone" page `/_standin/phone/<userID>`.
It can also refuse, never answer (the approval times out), or be slow (HTTP time-outs) on request:
`POST /_standin/behaviour {"mode": "normal" | "refuse" | "never" | "slow", "delay": seconds}`.

Endpoints (JSON POST, `Authorization: Bearer <token>` except `info` and the token endpoint):

    /oauth2/token                      grant_type=client_credentials (form; client id/secret in the
                                       form or HTTP Basic) -> {access_token, token_type, expires_in}
    /csc/v2/info                       the service's description
    /csc/v2/credentials/list           {userID} -> {credentialIDs}
    /csc/v2/credentials/info           {credentialID} -> {key, cert: {status, certificates, ...}, authMode}
    /csc/v2/credentials/authorize      {credentialID, numSignatures, hashes, hashAlgorithmOID, description}
                                       -> {transactionID, status: "pending", expiresIn}
    /csc/v2/credentials/authorizeCheck {transactionID} -> {status: "pending"} or
                                       {status: "approved", SAD, expiresIn}; a refusal is error
                                       `access_denied`, an approval that never came `expired_transaction`
    /csc/v2/signatures/signHash        {credentialID, SAD, hashes, hashAlgorithmOID, signAlgo} -> {signatures}

The asynchronous authorisation (authorize, then authorizeCheck) is CSC 2.0's pattern for
approval on a second device. Hashes and signatures travel as base64.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.hazmat.primitives.serialization import pkcs12
from flask import Flask, abort, jsonify, redirect, render_template_string, request

SHA256_OID = "2.16.840.1.101.3.4.2.1"
RSA_OID = "1.2.840.113549.1.1.1"
SHA256_RSA_OID = "1.2.840.113549.1.1.11"
EC_OID = "1.2.840.10045.2.1"
SHA256_ECDSA_OID = "1.2.840.10045.4.3.2"
TOKEN_SECONDS = 3600


@dataclass
class Credential:
    """One signing key of one user, with its certificate and chain."""

    credential_id: str
    user_id: str
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...] = ()

    @property
    def sign_algos(self) -> list[str]:
        return [SHA256_RSA_OID, RSA_OID] if isinstance(self.key, rsa.RSAPrivateKey) else [SHA256_ECDSA_OID]

    def sign(self, digest: bytes) -> bytes:
        if isinstance(self.key, rsa.RSAPrivateKey):
            return self.key.sign(digest, padding.PKCS1v15(), Prehashed(hashes.SHA256()))
        return self.key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))


@dataclass
class Transaction:
    transaction_id: str
    credential_id: str
    user_id: str
    hashes: list[str]
    description: str
    created_at: float
    expires_at: float
    status: str = "pending"  # pending / approved / refused / expired / used
    sad: str | None = None


@dataclass
class Behaviour:
    mode: str = "normal"  # normal / refuse / never / slow
    delay: float = 0.0  # seconds every API answer waits in "slow" mode
    auto_approve: float | None = None  # approve by itself after so many seconds (demo)


@dataclass
class State:
    client_id: str
    client_secret: str
    credentials: dict[str, Credential]
    approval_seconds: int = 300
    tokens: dict[str, float] = field(default_factory=dict)
    transactions: dict[str, Transaction] = field(default_factory=dict)
    behaviour: Behaviour = field(default_factory=Behaviour)
    lock: threading.Lock = field(default_factory=threading.Lock)


def load_credentials(folder: Path, passphrase: str) -> dict[str, Credential]:
    """Every `<userID>.p12` of the folder, as the credential `<userID>/1`."""
    found = {}
    for path in sorted(Path(folder).glob("*.p12")):
        try:
            key, certificate, chain = pkcs12.load_key_and_certificates(path.read_bytes(), passphrase.encode())
        except ValueError as exc:
            raise ValueError(f"{path.name}: cannot open (wrong passphrase?)") from exc
        assert isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) and certificate is not None
        credential = Credential(f"{path.stem}/1", path.stem, key, certificate, tuple(chain))
        found[credential.credential_id] = credential
    return found


class CscProblem(Exception):
    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status, self.error, self.description = status, error, description


def create_app(credentials: dict[str, Credential], *, client_id: str = "hocba-portal",
               client_secret: str = "standin-secret", approval_seconds: int = 300) -> Flask:
    app = Flask(__name__)
    state = State(client_id, client_secret, dict(credentials), approval_seconds)
    app.extensions["csc_standin"] = state

    @app.errorhandler(CscProblem)
    def problem(error: CscProblem) -> Any:
        return jsonify({"error": error.error, "error_description": error.description}), error.status

    @app.before_request
    def behave() -> None:
        if request.path.startswith("/csc/") and state.behaviour.mode == "slow":
            time.sleep(state.behaviour.delay)

    @app.post("/oauth2/token")
    def token() -> Any:
        auth = request.authorization
        client = (auth.username, auth.password) if auth else (request.form.get("client_id"),
                                                              request.form.get("client_secret"))
        if request.form.get("grant_type") != "client_credentials":
            raise CscProblem(400, "unsupported_grant_type", "only client_credentials is supported")
        if client != (state.client_id, state.client_secret):
            raise CscProblem(401, "invalid_client", "unknown client or wrong secret")
        value = secrets.token_urlsafe(24)
        with state.lock:
            state.tokens[value] = time.time() + TOKEN_SECONDS
        return jsonify({"access_token": value, "token_type": "Bearer", "expires_in": TOKEN_SECONDS})

    def body() -> dict[str, Any]:
        data = request.get_json(silent=True)
        if not isinstance(data, dict):
            raise CscProblem(400, "invalid_request", "a JSON object is expected")
        return data

    def authorised() -> None:
        scheme, _sep, value = request.headers.get("Authorization", "").partition(" ")
        expiry = state.tokens.get(value) if scheme.lower() == "bearer" else None
        if expiry is None or expiry < time.time():
            raise CscProblem(401, "invalid_token", "missing, unknown or expired access token")

    def credential(data: dict[str, Any]) -> Credential:
        found = state.credentials.get(str(data.get("credentialID", "")))
        if found is None:
            raise CscProblem(400, "invalid_request", "unknown credentialID")
        return found

    @app.post("/csc/v2/info")
    def info() -> Any:
        return jsonify({"specs": "2.0.0.2", "name": "Dịch vụ ký số từ xa (giả lập)", "region": "VN",
                        "lang": "vi-VN", "authType": ["oauth2client"],
                        "methods": ["credentials/list", "credentials/info", "credentials/authorize",
                                    "credentials/authorizeCheck", "signatures/signHash"]})

    @app.post("/csc/v2/credentials/list")
    def credentials_list() -> Any:
        authorised()
        user = str(body().get("userID", ""))
        return jsonify({"credentialIDs": [c.credential_id for c in state.credentials.values() if c.user_id == user]})

    @app.post("/csc/v2/credentials/info")
    def credentials_info() -> Any:
        authorised()
        found = credential(body())
        chain = [found.certificate, *found.chain]
        key = found.key
        return jsonify({
            "description": f"Chứng thư số của {found.user_id}",
            "key": {"status": "enabled", "algo": [RSA_OID if isinstance(key, rsa.RSAPrivateKey) else EC_OID],
                    "len": key.key_size, "signAlgo": found.sign_algos},
            "cert": {"status": "valid",
                     "certificates": [base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode()
                                      for c in chain],
                     "issuerDN": found.certificate.issuer.rfc4514_string(),
                     "subjectDN": found.certificate.subject.rfc4514_string(),
                     "serialNumber": format(found.certificate.serial_number, "X"),
                     "validFrom": found.certificate.not_valid_before_utc.strftime("%Y%m%d%H%M%SZ"),
                     "validTo": found.certificate.not_valid_after_utc.strftime("%Y%m%d%H%M%SZ")},
            "authMode": "explicit", "SCAL": "SCAL2", "multisign": 1000})

    @app.post("/csc/v2/credentials/authorize")
    def authorize() -> Any:
        authorised()
        data = body()
        found = credential(data)
        hashes_ = data.get("hashes") or data.get("hash") or []
        if not isinstance(hashes_, list) or not hashes_ or int(data.get("numSignatures", len(hashes_))) != len(hashes_):
            raise CscProblem(400, "invalid_request", "hashes and numSignatures do not match")
        now = time.time()
        transaction = Transaction(secrets.token_hex(12), found.credential_id, found.user_id, list(map(str, hashes_)),
                                  str(data.get("description", ""))[:500], now, now + state.approval_seconds)
        with state.lock:
            state.transactions[transaction.transaction_id] = transaction
            if state.behaviour.mode == "refuse":
                transaction.status = "refused"
        return jsonify({"transactionID": transaction.transaction_id, "status": "pending",
                        "expiresIn": state.approval_seconds})

    def current(transaction: Transaction) -> Transaction:
        now = time.time()
        auto = state.behaviour.auto_approve
        if (transaction.status == "pending" and auto is not None and state.behaviour.mode == "normal"
                and now >= transaction.created_at + auto):
            _approve(transaction)
        if transaction.status == "pending" and now >= transaction.expires_at:
            transaction.status = "expired"
        return transaction

    @app.post("/csc/v2/credentials/authorizeCheck")
    def authorize_check() -> Any:
        authorised()
        with state.lock:
            transaction = state.transactions.get(str(body().get("transactionID", "")))
            if transaction is None:
                raise CscProblem(400, "invalid_request", "unknown transactionID")
            transaction = current(transaction)
            if transaction.status == "refused":
                raise CscProblem(400, "access_denied", "the signer refused the request")
            if transaction.status == "expired":
                raise CscProblem(400, "expired_transaction", "the signer did not approve in time")
            if transaction.status == "pending":
                return jsonify({"status": "pending"})
            return jsonify({"status": "approved", "SAD": transaction.sad,
                            "expiresIn": max(0, int(transaction.expires_at - time.time()))})

    @app.post("/csc/v2/signatures/signHash")
    def sign_hash() -> Any:
        authorised()
        data = body()
        found = credential(data)
        with state.lock:
            transaction = next((t for t in state.transactions.values()
                                if t.sad is not None and t.sad == data.get("SAD")), None)
        if transaction is None or transaction.credential_id != found.credential_id:
            raise CscProblem(400, "invalid_request", "invalid SAD")
        requested = data.get("hashes") or data.get("hash") or []
        if not isinstance(requested, list) or not set(map(str, requested)) <= set(transaction.hashes):
            raise CscProblem(400, "invalid_request", "hash not covered by the authorisation")
        if data.get("hashAlgorithmOID", SHA256_OID) != SHA256_OID or data.get("signAlgo") not in found.sign_algos:
            raise CscProblem(400, "invalid_request", "unsupported algorithm")
        try:
            digests = [base64.b64decode(h, validate=True) for h in requested]
        except (binascii.Error, ValueError) as exc:
            raise CscProblem(400, "invalid_request", "hashes must be base64") from exc
        signatures = [base64.b64encode(found.sign(d)).decode() for d in digests]
        return jsonify({"signatures": signatures})

    # --- the stand-in's own controls ---------------------------------------------------------------

    def transaction_or_404(transaction_id: str) -> Transaction:
        transaction = state.transactions.get(transaction_id)
        if transaction is None:
            abort(404)
        return transaction

    @app.post("/_standin/approve/<transaction_id>")
    def approve(transaction_id: str) -> Any:
        with state.lock:
            transaction = current(transaction_or_404(transaction_id))
            if transaction.status == "pending":
                _approve(transaction)
        return _control_answer(transaction)

    @app.post("/_standin/refuse/<transaction_id>")
    def refuse(transaction_id: str) -> Any:
        with state.lock:
            transaction = current(transaction_or_404(transaction_id))
            if transaction.status == "pending":
                transaction.status = "refused"
        return _control_answer(transaction)

    @app.post("/_standin/behaviour")
    def behaviour() -> Any:
        data = request.get_json(silent=True) or {}
        mode = data.get("mode", "normal")
        if mode not in {"normal", "refuse", "never", "slow"}:
            raise CscProblem(400, "invalid_request", "mode is one of normal, refuse, never, slow")
        auto = data.get("auto_approve")
        state.behaviour = Behaviour(mode, float(data.get("delay", 0)), float(auto) if auto is not None else None)
        if "approval_seconds" in data:
            state.approval_seconds = int(data["approval_seconds"])
        return jsonify({"mode": mode, "delay": state.behaviour.delay, "auto_approve": state.behaviour.auto_approve,
                        "approval_seconds": state.approval_seconds})

    @app.get("/_standin/transactions")
    def transactions() -> Any:
        with state.lock:
            return jsonify({"transactions": [_transaction_json(current(t)) for t in state.transactions.values()]})

    @app.get("/_standin/phone/<user_id>")
    def phone(user_id: str) -> Any:
        with state.lock:
            waiting = [current(t) for t in state.transactions.values() if t.user_id == user_id]
        return render_template_string(PHONE_PAGE, user_id=user_id,
                                      waiting=[t for t in waiting if t.status == "pending"],
                                      done=[t for t in waiting if t.status != "pending"])

    def _control_answer(transaction: Transaction) -> Any:
        if request.form.get("back"):
            return redirect(f"/_standin/phone/{transaction.user_id}")
        return jsonify(_transaction_json(transaction))

    return app


def _approve(transaction: Transaction) -> None:
    transaction.status, transaction.sad = "approved", secrets.token_urlsafe(24)


def _transaction_json(transaction: Transaction) -> dict[str, Any]:
    return {"transactionID": transaction.transaction_id, "userID": transaction.user_id,
            "credentialID": transaction.credential_id, "numSignatures": len(transaction.hashes),
            "description": transaction.description, "status": transaction.status}


PHONE_PAGE = """<!doctype html>
<html lang="vi"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>Ký số từ xa – xác nhận</title>
<style>body{font-family:sans-serif;max-width:26rem;margin:1rem auto;padding:0 1rem}
.card{border:1px solid #ccc;border-radius:8px;padding:1rem;margin:1rem 0}
button{font-size:1rem;padding:.5rem 1rem;margin-right:.5rem}</style></head>
<body><h1>Điện thoại của {{ user_id }}</h1>
<p><small>Dịch vụ ký số từ xa giả lập – chỉ dùng để thử, không có giá trị pháp lý.</small></p>
{% for t in waiting %}<div class="card"><p><strong>Yêu cầu ký {{ t.hashes|length }} tài liệu</strong></p>
<p>{{ t.description }}</p>
<form method="post" action="/_standin/approve/{{ t.transaction_id }}" style="display:inline">
<input type="hidden" name="back" value="1"><button>Đồng ý ký</button></form>
<form method="post" action="/_standin/refuse/{{ t.transaction_id }}" style="display:inline">
<input type="hidden" name="back" value="1"><button>Từ chối</button></form></div>
{% else %}<p>Không có yêu cầu nào đang chờ.</p>{% endfor %}
{% if done %}<h2>Đã xử lý</h2><ul>{% for t in done %}<li>{{ t.description }}: {{ t.status }}</li>{% endfor %}</ul>
{% endif %}</body></html>
"""
