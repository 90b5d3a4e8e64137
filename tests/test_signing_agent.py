"""The USB-token path: signing requests, the agent's JSON API, and the agent itself signing on softhsm2.

The agent runs as its own process (as on a teacher's computer) against the portal served on a local
port, with Debian's softhsm2 as the USB token: it signs in, fetches the hashes, asks for the PIN once,
signs through PKCS#11 and posts the signatures, which the portal checks before accepting.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, decode_dss_signature, encode_dss_signature
from flask import Flask

from portal.app import PROJECT_ROOT
from portal.audit import AuditEntry
from portal.extensions import db, utcnow
from portal.signing import pki
from portal.signing import requests as signing
from portal.signing.agent_api import AgentToken
from portal.signing.requests import RequestItem, RequestState, SigningRequest
from tenants.models import Membership, School, User
from tenants.roles import Role
from tenants.scoping import all_schools
from tests.conftest import PASSWORD, Factory, csrf_token, login
from tests.tools import needs, softhsm_module

SOFTHSM_MODULE = softhsm_module()
PIN = "246810"
AGENT = PROJECT_ROOT / "agent" / "hocba_agent.py"
PURPOSE = "test_agent"

needs_softhsm = needs("softhsm2-util", "pkcs11-tool")


@pytest.fixture(scope="module")
def ca() -> pki.DemoCA:
    return pki.create_ca()


def sign_digest(key: pki.PrivateKey, digest_hex: str) -> bytes:
    digest = bytes.fromhex(digest_hex)
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(digest, padding.PKCS1v15(), Prehashed(hashes.SHA256()))
    return key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))


def der(issued: pki.IssuedCertificate) -> bytes:
    return issued.certificate.public_bytes(serialization.Encoding.DER)


def register(app: Flask, user: User, issued: pki.IssuedCertificate, *, kind: str = "usb") -> int:
    """`issued` as the user's registered (active) certificate; returns the row's id."""
    from tenants.certificates import KeyKind, PersonCertificate

    info = pki.describe(issued.certificate)
    with app.app_context():
        row = PersonCertificate(user_id=user.id, common_name=info.common_name, subject=info.subject,
                                issuer=info.issuer, serial=info.serial, fingerprint=info.fingerprint,
                                not_before=info.not_before, not_after=info.not_after, certificate=der(issued),
                                chain_pem=pki.certificates_pem(issued.chain), key_kind=KeyKind(kind))
        db.session.add(row)
        db.session.commit()
        return row.id


def open_requests(app: Flask, school: School, signer: User, certificate: bytes, count: int, *, kind: str = "usb",
                  step: str = "gvcn", first_subject: int = 1, purpose: str = PURPOSE) -> list[int]:
    items = [RequestItem(subject_id=first_subject + n, step=step,
                         digest=hashlib.sha256(f"{school.code}-{first_subject + n}".encode()).hexdigest(),
                         prepared_digest="0" * 64, description=f"Học sinh Số {first_subject + n} – lớp 5A")
             for n in range(count)]
    with app.app_context(), all_schools():  # ids read after the commit
        created = signing.create_requests(school.id, signer_id=signer.id, kind=kind, purpose=purpose, items=items,
                                          certificate_der=certificate, actor=None)
        db.session.commit()
        return [r.id for r in created]


def states(app: Flask, ids: list[int]) -> list[RequestState]:
    with app.app_context(), all_schools():
        return [db.session.get(SigningRequest, i).state for i in ids]


@pytest.fixture
def finished(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The hook of the test purpose: records which requests it was asked to finish."""
    calls: list[int] = []
    monkeypatch.setitem(signing._HOOKS, PURPOSE, lambda request: calls.append(request.id))
    return calls


@dataclass
class Teacher:
    school: School
    other_school: School
    user: User
    issued: pki.IssuedCertificate


@pytest.fixture
def teacher(make: Factory, ca: pki.DemoCA) -> Teacher:
    school = make.school("lqd", "Trường Tiểu học Lê Quang Định")
    other = make.school("hiepphuoc", "Trường Tiểu học Hiệp Phước")
    user = make.user(school, Role.HOMEROOM_TEACHER, username="gv.lan", full_name="Nguyễn Thị Lan")
    with make.app.app_context(), all_schools():
        db.session.add(Membership(school_id=other.id, user_id=user.id))
        db.session.commit()
    issued = ca.issue_person("Nguyễn Thị Lan", title="Giáo viên chủ nhiệm", organisation=school.name)
    register(make.app, user, issued)
    return Teacher(school, other, user, issued)


# --- the requests themselves -----------------------------------------------------------------------------

def test_an_answer_is_checked_against_the_certificate_and_accepted_once(app, teacher, ca, finished):
    ids = open_requests(app, teacher.school, teacher.user, der(teacher.issued), 2)
    with app.app_context(), all_schools():
        digests = [db.session.get(SigningRequest, i).digest for i in ids]
        signer = db.session.get(User, teacher.user.id)
        stranger = ca.issue_person("Người Lạ", title="Giáo viên", organisation="Trường khác")
        wrong = signing.answer(ids[0], sign_digest(stranger.key, digests[0]), actor=signer)
        assert not wrong.accepted and "không khớp" in wrong.error and wrong.state == "pending"
        swapped = signing.answer(ids[0], sign_digest(teacher.issued.key, digests[1]), actor=signer)
        assert not swapped.accepted  # a right key over another document's digest is no answer either
        assert finished == []
        good = sign_digest(teacher.issued.key, digests[0])
        assert signing.answer(ids[0], good, actor=signer).accepted
        again = signing.answer(ids[0], good, actor=signer)
        assert again.accepted and again.state == "answered" and finished == [ids[0]]  # the same answer: no-op
        other = sign_digest(teacher.issued.key, digests[0])  # ECDSA: a second, different valid signature
        assert other != good
        late = signing.answer(ids[0], other, actor=signer)
        assert not late.accepted and finished == [ids[0]]
        request = db.session.get(SigningRequest, ids[0])
        assert request.raw_signature == good and request.answered_at is not None
        actions = [e.action for e in db.session.scalars(sa.select(AuditEntry).order_by(AuditEntry.id))]
    assert actions.count("signing.signature_refused") == 2 and actions.count("signing.signature_received") == 1
    assert states(app, ids) == [RequestState.ANSWERED, RequestState.PENDING]
    # ECDSA as PKCS#11 gives it (r || s) is accepted too, and kept DER-encoded as CMS wants it.
    r, s = decode_dss_signature(sign_digest(teacher.issued.key, digests[1]))
    with app.app_context(), all_schools():
        signer = db.session.get(User, teacher.user.id)
        assert signing.answer(ids[1], r.to_bytes(32, "big") + s.to_bytes(32, "big"), actor=signer).accepted
        assert db.session.get(SigningRequest, ids[1]).raw_signature == encode_dss_signature(r, s)


def test_a_certificate_replaced_since_the_request_is_refused(app, teacher, finished):
    from tenants.certificates import PersonCertificate

    [request_id] = open_requests(app, teacher.school, teacher.user, der(teacher.issued), 1)
    with app.app_context(), all_schools():
        for row in db.session.scalars(sa.select(PersonCertificate)):
            row.active = False  # the teacher registered a new certificate, or it was revoked
        db.session.commit()
        digest = db.session.get(SigningRequest, request_id).digest
        signer = db.session.get(User, teacher.user.id)
        result = signing.answer(request_id, sign_digest(teacher.issued.key, digest), actor=signer)
    assert not result.accepted and "không còn được đăng kí" in result.error
    assert states(app, [request_id]) == [RequestState.PENDING] and finished == []


def test_a_batch_started_twice_asks_once_and_someone_else_cannot_answer(app, make, teacher, finished):
    first = open_requests(app, teacher.school, teacher.user, der(teacher.issued), 3)
    again = open_requests(app, teacher.school, teacher.user, der(teacher.issued), 3)
    assert again == first
    intruder = make.user(teacher.school, Role.HOMEROOM_TEACHER, username="gv.khac")
    with app.app_context(), all_schools():
        digest = db.session.get(SigningRequest, first[0]).digest
        result = signing.answer(first[0], sign_digest(teacher.issued.key, digest),
                                actor=db.session.get(User, intruder.id))
    assert not result.accepted and result.state == "unknown" and finished == []


def test_pending_lists_every_school_of_the_signer_and_nothing_else(app, make, teacher):
    mine = open_requests(app, teacher.school, teacher.user, der(teacher.issued), 2)
    elsewhere = open_requests(app, teacher.other_school, teacher.user, der(teacher.issued), 1, first_subject=10)
    remote = open_requests(app, teacher.school, teacher.user, der(teacher.issued), 1, kind="csc", first_subject=20)
    colleague = make.user(teacher.school, Role.PRINCIPAL, username="ht.lai")
    open_requests(app, teacher.school, colleague, der(teacher.issued), 1, step="hieu_truong")
    with app.app_context():
        assert [r.id for r in signing.pending_for(teacher.user.id, kind="usb")] == mine + elsewhere
        assert {r.id for r in signing.pending_for(teacher.user.id)} == set(mine + elsewhere + remote)
        with all_schools():  # a school that closed its door to the teacher hides its requests
            membership = db.session.scalar(sa.select(Membership).where(
                Membership.user_id == teacher.user.id, Membership.school_id == teacher.other_school.id))
            membership.active = False
            db.session.commit()
        assert [r.id for r in signing.pending_for(teacher.user.id, kind="usb")] == mine
        with all_schools():
            request = db.session.get(SigningRequest, mine[0])
            request.expires_at = utcnow() - timedelta(minutes=1)
            db.session.commit()
        assert [r.id for r in signing.pending_for(teacher.user.id, kind="usb")] == mine[1:]
        assert signing.expire_overdue() == 1
        db.session.commit()
    assert states(app, mine) == [RequestState.EXPIRED, RequestState.PENDING]


# --- the agent API ------------------------------------------------------------------------------------

def agent_sign_in(client, username: str, password: str = PASSWORD):
    return client.post("/api/agent/session", json={"username": username, "password": password, "agent": "test"})


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_api_signs_in_lists_accepts_signatures_and_signs_out(app, client, teacher, finished):
    ids = open_requests(app, teacher.school, teacher.user, der(teacher.issued), 2)
    response = agent_sign_in(client, "GV.Lan ")
    assert response.status_code == 200, response.json
    token = response.json["token"]
    with app.app_context():
        stored = db.session.scalar(sa.select(AgentToken))
        assert stored.token_hash == hashlib.sha256(token.encode()).hexdigest() and token not in stored.token_hash
    listing = client.get("/api/agent/requests", headers=bearer(token)).json
    assert [r["id"] for r in listing["requests"]] == ids
    first = listing["requests"][0]
    assert first["school"]["name"] == "Trường Tiểu học Lê Quang Định" and first["step_label"] == "Giáo viên chủ nhiệm"
    assert base64.b64decode(first["certificate"]) == der(teacher.issued) and first["algorithm"] == "ecdsa_sha256"
    signatures = [{"id": r["id"], "signature": base64.b64encode(sign_digest(teacher.issued.key, r["digest"])).decode()}
                  for r in listing["requests"]]
    signatures.append({"id": ids[0], "signature": "không phải base64"})
    # No CSRF token: a bearer-token endpoint is exempt (the CSRF check is on in the tests).
    assert app.config.get("WTF_CSRF_ENABLED", True)
    answer = client.post("/api/agent/signatures", json={"signatures": signatures}, headers=bearer(token)).json
    assert answer["accepted"] == 2 and answer["refused"] == 1 and "base64" in answer["results"][2]["error"]
    assert sorted(finished) == ids and states(app, ids) == [RequestState.ANSWERED] * 2
    assert client.get("/api/agent/requests", headers=bearer(token)).json["requests"] == []
    assert client.delete("/api/agent/session", headers=bearer(token)).status_code == 200
    refused = client.get("/api/agent/requests", headers=bearer(token))
    assert refused.status_code == 401 and "đăng nhập lại" in refused.json["error"]
    assert refused.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_cookie_session_alone_cannot_use_the_api(app, client, teacher):
    ids = open_requests(app, teacher.school, teacher.user, der(teacher.issued), 1)
    login(client, teacher.user)  # a signed-in browser: what a forged cross-site request would ride on
    assert client.get(f"/s/{teacher.school.code}/").status_code == 200
    assert client.get("/api/agent/requests").status_code == 401
    with app.app_context(), all_schools():
        digest = db.session.get(SigningRequest, ids[0]).digest
    payload = {"signatures": [{"id": ids[0], "signature": base64.b64encode(
        sign_digest(teacher.issued.key, digest)).decode()}]}
    assert client.post("/api/agent/signatures", json=payload).status_code == 401
    assert client.post("/api/agent/signatures", json=payload, headers=bearer("hba_made-up")).status_code == 401
    assert client.delete("/api/agent/session").status_code == 401
    assert states(app, ids) == [RequestState.PENDING]


def test_sign_in_is_throttled_like_the_login_page(app, client, teacher):
    wrong = agent_sign_in(client, "gv.lan", "sai-mat-khau")
    assert wrong.status_code == 401 and wrong.json["error"] == "Tên đăng nhập hoặc mật khẩu không đúng."
    for _attempt in range(app.config["LOGIN_FREE_FAILURES"] - 1):
        agent_sign_in(client, "gv.lan", "sai-mat-khau")
    throttled = agent_sign_in(client, "gv.lan")  # even the right password, for the window
    assert throttled.status_code == 429 and "quá nhiều lần" in throttled.json["error"]
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(AgentToken)) == 0
        assert db.session.scalar(sa.select(sa.func.count()).select_from(AuditEntry).where(
            AuditEntry.action == "auth.login_throttled")) == 1
    assert agent_sign_in(client, "").status_code == 400


def test_a_token_dies_with_a_password_change_a_lock_or_its_expiry(app, client, teacher):
    from portal.auth.services import set_password

    tokens = [agent_sign_in(client, "gv.lan").json["token"] for _ in range(3)]
    assert all(client.get("/api/agent/requests", headers=bearer(t)).status_code == 200 for t in tokens)
    with app.app_context():
        stored = db.session.scalar(sa.select(AgentToken).where(
            AgentToken.token_hash == hashlib.sha256(tokens[0].encode()).hexdigest()))
        stored.expires_at = utcnow() - timedelta(seconds=1)
        db.session.commit()
    assert client.get("/api/agent/requests", headers=bearer(tokens[0])).status_code == 401
    assert client.get("/api/agent/requests", headers=bearer(tokens[1])).status_code == 200
    with app.app_context():
        set_password(db.session.get(User, teacher.user.id), "Matkhaumoi2025", must_change=False)
        db.session.commit()
    assert client.get("/api/agent/requests", headers=bearer(tokens[1])).status_code == 401
    token = agent_sign_in(client, "gv.lan", "Matkhaumoi2025").json["token"]
    with app.app_context():
        db.session.get(User, teacher.user.id).active = False
        db.session.commit()
    assert client.get("/api/agent/requests", headers=bearer(token)).status_code == 401


# --- the agent on softhsm2 ----------------------------------------------------------------------------

@dataclass
class SoftToken:
    env: dict[str, str]
    label: str


def soft_token(folder: Path, *, label: str, key: pki.PrivateKey, certificate: bytes | None) -> SoftToken:
    """A softhsm2 token holding `key`, and `certificate` beside it, in the folder's own configuration (a
    second call with the same folder plugs a second token in beside the first)."""
    (folder / "tokens").mkdir(parents=True, exist_ok=True)
    conf = folder / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {folder / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n")
    env = dict(os.environ, SOFTHSM2_CONF=str(conf))
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", label, "--so-pin", "13579135",
                    "--pin", PIN], env=env, check=True, capture_output=True)
    objects = [("privkey", key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()))]
    if certificate is not None:
        objects.append(("cert", certificate))
    for kind, data in objects:
        path = folder / f"{kind}.der"
        path.write_bytes(data)
        subprocess.run(["pkcs11-tool", "--module", SOFTHSM_MODULE, "--token-label", label, "--login", "--pin", PIN,
                        "--write-object", str(path), "--type", kind, "--id", "01", "--label", "ky-so"],
                       env=env, check=True, capture_output=True)
        path.unlink()
    return SoftToken(env, label)


def run_agent(url: str, token: SoftToken, answers: str, *extra: str,
              username: str = "gv.lan") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(AGENT), "--portal", url, "--username", username, "--module",
                           str(SOFTHSM_MODULE), *extra], input=answers, env=token.env, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.slow
@needs_softhsm
@pytest.mark.parametrize("key_type", ["ec", "rsa"])
def test_agent_signs_the_whole_batch_with_one_pin(app, make, ca, teacher, finished, live_url, tmp_path, key_type):
    issued = ca.issue_person("Nguyễn Thị Lan", title="Giáo viên chủ nhiệm", organisation=teacher.school.name,
                             key_type=key_type)
    register(app, teacher.user, issued)
    token = soft_token(tmp_path, label="GV LAN", key=issued.key, certificate=der(issued))
    here = open_requests(app, teacher.school, teacher.user, der(issued), 3)
    there = open_requests(app, teacher.other_school, teacher.user, der(issued), 2, first_subject=10)
    remote = open_requests(app, teacher.school, teacher.user, der(issued), 1, kind="csc", first_subject=30)
    colleague = make.user(teacher.school, Role.PRINCIPAL, username="ht.lai")
    theirs = open_requests(app, teacher.school, colleague, der(issued), 1, step="hieu_truong")
    # Standard input holds one password and ONE PIN: a second PIN question would find no answer and fail.
    result = run_agent(live_url, token, f"{PASSWORD}\n{PIN}\n", "--yes")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert out.count("Nhập mã PIN") == 1 and "(một lần cho cả 5 tài liệu)" in out
    assert "Có 5 tài liệu đang chờ bạn ký" in out
    assert "Trường Tiểu học Lê Quang Định — ký với vai trò Giáo viên chủ nhiệm: 3 học bạ" in out
    assert "Trường Tiểu học Hiệp Phước — ký với vai trò Giáo viên chủ nhiệm: 2 học bạ" in out
    assert "Học sinh Số 10 – lớp 5A" in out and "cổng đã nhận 5/5 chữ ký" in out
    assert states(app, here + there) == [RequestState.ANSWERED] * 5 and sorted(finished) == sorted(here + there)
    assert states(app, remote + theirs) == [RequestState.PENDING] * 2
    with app.app_context(), all_schools():
        for request_id in here + there:
            request = db.session.get(SigningRequest, request_id)
            assert signing.der_signature(request.certificate, request.algorithm, request.digest,
                                         request.raw_signature) is not None
        tokens = list(db.session.scalars(sa.select(AgentToken)))
    assert len(tokens) == 1 and tokens[0].revoked_at is not None  # the agent signed out
    nothing = run_agent(live_url, token, f"{PASSWORD}\n")
    assert nothing.returncode == 0 and "Không có tài liệu nào đang chờ bạn ký." in nothing.stdout


@pytest.mark.slow
@needs_softhsm
def test_agent_with_the_wrong_key_is_refused_and_nothing_is_signed(app, ca, teacher, finished, live_url, tmp_path):
    someone = ca.issue_person("Người Khác", title="Giáo viên", organisation=teacher.school.name)
    token = soft_token(tmp_path, label="GV LAN", key=someone.key, certificate=None)  # a token with another key
    ids = open_requests(app, teacher.school, teacher.user, der(teacher.issued), 2)
    result = run_agent(live_url, token, f"{PASSWORD}\n{PIN}\n", "--yes")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "cổng đã nhận 0/2 chữ ký" in result.stdout
    assert result.stdout.count("Chữ ký không khớp với chứng thư số đã đăng kí") == 2
    assert states(app, ids) == [RequestState.PENDING] * 2 and finished == []
    with app.app_context(), all_schools():
        assert all(db.session.get(SigningRequest, i).raw_signature is None for i in ids)


@pytest.mark.slow
@needs_softhsm
def test_agent_with_a_wrong_pin_stops_before_signing(app, teacher, finished, live_url, tmp_path):
    token = soft_token(tmp_path, label="GV LAN", key=teacher.issued.key, certificate=der(teacher.issued))
    ids = open_requests(app, teacher.school, teacher.user, der(teacher.issued), 1)
    result = run_agent(live_url, token, f"{PASSWORD}\n000000\n", "--yes")
    assert result.returncode == 2 and "Mã PIN không đúng" in result.stdout
    assert states(app, ids) == [RequestState.PENDING]
    declined = run_agent(live_url, token, f"{PASSWORD}\nk\n")  # asked to confirm, the teacher says no
    assert declined.returncode == 0 and "chưa ký tài liệu nào" in declined.stdout
    assert "Nhập mã PIN" not in declined.stdout
    wrong_password = run_agent(live_url, token, "sai-mat-khau\n")
    assert wrong_password.returncode == 2 and "Tên đăng nhập hoặc mật khẩu không đúng." in wrong_password.stdout
    assert states(app, ids) == [RequestState.PENDING] and finished == []


@pytest.mark.slow
@needs_softhsm
def test_a_record_signed_through_the_agent_validates(app, make, ca, teacher, live_url, tmp_path, monkeypatch):
    """A real record PDF: the GVCN and the principal sign on their USB tokens through the agent, the
    portal finishes each signature (what the workflow's finishing job does), the seal is a server key,
    and the result validates with all three signatures intact, valid and trusted."""
    from portal.records.pdf import render_pdf
    from portal.signing import engine
    from portal.signing.stamp import StampText
    from portal.signing.validate import validate_pdf
    from portal.storage import storage
    from tests.record_factory import sample_content

    principal = make.user(teacher.school, Role.PRINCIPAL, username="ht.lai", full_name="Võ Thị Lài")
    principal_cert = ca.issue_person("Võ Thị Lài", title="Hiệu trưởng", organisation=teacher.school.name,
                                     key_type="rsa")
    register(app, principal, principal_cert)
    seal = ca.issue_organisation(teacher.school.name)
    answered: list[int] = []
    monkeypatch.setitem(signing._HOOKS, "test_record", lambda request: answered.append(request.id))
    pdf = render_pdf(sample_content())
    signers = (("gvcn", teacher.user, teacher.issued, "Giáo viên chủ nhiệm"),
               ("hieu_truong", principal, principal_cert, "Hiệu trưởng"))
    for step, user, issued, role in signers:
        prepared = engine.prepare_signature(pdf, step, issued.certificate, issued.chain, certify=step == "gvcn",
                                            stamp=StampText(role, user.full_name))
        with app.app_context(), all_schools():  # ids read after the commit
            pdf_digest = storage().put(prepared.pdf)
            state_digest = storage().put(json.dumps({"pdf": pdf_digest, "state": prepared.state()}).encode())
            [request] = signing.create_requests(
                teacher.school.id, signer_id=user.id, kind="usb", purpose="test_record", certificate_der=der(issued),
                items=[RequestItem(subject_id=1, step=step, digest=prepared.digest.hex(),
                                   prepared_digest=state_digest, description="Học sinh Số 1 – lớp 5A")], actor=None)
            db.session.commit()
            request_id = request.id
        token = soft_token(tmp_path / step, label=step.upper(), key=issued.key, certificate=der(issued))
        result = run_agent(live_url, token, f"{PASSWORD}\n{PIN}\n", "--yes", username=user.username)
        assert result.returncode == 0, result.stdout + result.stderr
        assert answered[-1] == request_id
        with app.app_context(), all_schools():  # the finishing job, in another process in real life
            request = db.session.get(SigningRequest, request_id)
            stored = json.loads(storage().read(request.prepared_digest))
            again = engine.PreparedSignature.from_state(stored["state"], storage().read(stored["pdf"]))
            pdf = engine.finish_signature(again, request.raw_signature)
            signing.mark_finished(request_id)
            db.session.commit()
    pdf = engine.sign_field(pdf, "con_dau", engine.Pkcs12Key(seal.pkcs12("dau-so"), "dau-so"), certify=False,
                            stamp=StampText("Con dấu số", teacher.school.name))
    report = validate_pdf(pdf, [ca.root])
    assert report.ok, report.problems
    assert [(s.field, s.signer_name) for s in report.signatures] == [
        ("gvcn", "Nguyễn Thị Lan"), ("hieu_truong", "Võ Thị Lài"), ("con_dau", teacher.school.name)]
    assert states(app, [request_id]) == [RequestState.FINISHED]
    tampered = bytearray(pdf)
    tampered[len(pdf) // 3] ^= 0x01
    assert not validate_pdf(bytes(tampered), [ca.root]).ok


def run_agent_pulling_the_token(url: str, token: SoftToken, folder: Path, answers: str, *, when: str
                                ) -> subprocess.CompletedProcess[str]:
    """The agent, with the token's files taken away at a given moment (as if the USB token were pulled out):
    `when` is "before" the PIN session opens, or "after-first" signature."""
    script = f"""
import os, shutil, sys
sys.path.insert(0, {str(AGENT.parent)!r})
import hocba_agent

def pull_out():
    shutil.rmtree({str(folder / "tokens")!r})
    os.mkdir({str(folder / "tokens")!r})

if {when!r} == "before":
    opened = hocba_agent.Token.open
    def open_after_pulling(self, pin):
        pull_out()
        return opened(self, pin)
    hocba_agent.Token.open = open_after_pulling
else:
    signed = hocba_agent.Token.sign
    def sign_then_pull(self, *args):
        result = signed(self, *args)
        if not getattr(self, "_pulled", False):
            self._pulled = True
            pull_out()
        return result
    hocba_agent.Token.sign = sign_then_pull
sys.exit(hocba_agent.main(sys.argv[1:]))
"""
    return subprocess.run([sys.executable, "-c", script, "--portal", url, "--username", "gv.lan", "--module",
                           str(SOFTHSM_MODULE), "--yes"], input=answers, env=token.env, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.slow
@needs_softhsm
def test_a_token_pulled_out_before_the_first_signature_says_so_and_exits_2(app, teacher, finished, live_url,
                                                                          tmp_path):
    token = soft_token(tmp_path, label="GV LAN", key=teacher.issued.key, certificate=der(teacher.issued))
    ids = open_requests(app, teacher.school, teacher.user, der(teacher.issued), 2)
    result = run_agent_pulling_the_token(live_url, token, tmp_path, f"{PASSWORD}\n{PIN}\n", when="before")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Lỗi: USB token «GV LAN» không còn kết nối" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr and "Error" not in result.stdout
    assert states(app, ids) == [RequestState.PENDING] * 2 and finished == []


@pytest.mark.slow
@needs_softhsm
def test_a_token_pulled_out_mid_batch_keeps_what_was_signed(app, teacher, finished, live_url, tmp_path):
    token = soft_token(tmp_path, label="GV LAN", key=teacher.issued.key, certificate=der(teacher.issued))
    ids = open_requests(app, teacher.school, teacher.user, der(teacher.issued), 3)
    result = run_agent_pulling_the_token(live_url, token, tmp_path, f"{PASSWORD}\n{PIN}\n", when="after-first")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "cổng đã nhận 1/3 chữ ký" in result.stdout and "Lỗi: USB token «GV LAN» không còn kết nối" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    assert sorted(states(app, ids)) == sorted([RequestState.ANSWERED] + [RequestState.PENDING] * 2)


@pytest.mark.slow
@needs_softhsm
def test_a_token_of_someone_else_is_named_and_not_used(app, ca, teacher, finished, live_url, tmp_path):
    someone = ca.issue_person("Người Khác", title="Giáo viên", organisation=teacher.school.name)
    token = soft_token(tmp_path, label="NGUOI KHAC", key=someone.key, certificate=der(someone))
    ids = open_requests(app, teacher.school, teacher.user, der(teacher.issued), 2)
    result = run_agent(live_url, token, f"{PASSWORD}\n{PIN}\n", "--yes")
    assert result.returncode == 2, result.stdout + result.stderr
    serial = format(teacher.issued.certificate.serial_number, "X")
    assert (f"Lỗi: Không USB token nào đang cắm («NGUOI KHAC») chứa chứng thư số «Nguyễn Thị Lan», số sê-ri {serial}"
            in result.stdout)
    assert "Nhập mã PIN" not in result.stdout  # no PIN is asked for a token that cannot sign
    assert states(app, ids) == [RequestState.PENDING] * 2 and finished == []


@pytest.mark.slow
@needs_softhsm
def test_with_two_tokens_plugged_in_the_one_holding_the_certificate_signs(app, ca, teacher, finished, live_url,
                                                                         tmp_path):
    someone = ca.issue_person("Người Khác", title="Giáo viên", organisation=teacher.school.name)
    soft_token(tmp_path, label="NGUOI KHAC", key=someone.key, certificate=der(someone))
    token = soft_token(tmp_path, label="GV LAN", key=teacher.issued.key, certificate=der(teacher.issued))
    listed = subprocess.run(["pkcs11-tool", "--module", str(SOFTHSM_MODULE), "--list-token-slots"], env=token.env,
                            capture_output=True, text=True, check=True).stdout
    assert "NGUOI KHAC" in listed and "GV LAN" in listed  # both plugged in
    ids = open_requests(app, teacher.school, teacher.user, der(teacher.issued), 2)
    result = run_agent(live_url, token, f"{PASSWORD}\n{PIN}\n", "--yes")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Nhập mã PIN của USB token «GV LAN»" in result.stdout and "cổng đã nhận 2/2 chữ ký" in result.stdout
    assert states(app, ids) == [RequestState.ANSWERED] * 2


def _readme_blocks() -> list[str]:
    """The shell blocks of agent/README.md's "Thử với SoftHSM" section, in order."""
    readme = (PROJECT_ROOT / "agent" / "README.md").read_text()
    section = readme.split("## Thử với SoftHSM", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)```", section, flags=re.S)


@pytest.mark.slow
@needs_softhsm
@needs("openssl")
def test_the_readme_steps_as_written_put_the_certificate_on_the_portal_and_sign(app, make, live_url, tmp_path):
    """agent/README.md followed to the letter: a token, its certificate read out and joined with the chain,
    registered on the page the README names, then the agent signs what waits."""
    from portal.signing import pki_folder

    school = make.school("lqd", "Trường Tiểu học Lê Quang Định")
    user = make.user(school, Role.HOMEROOM_TEACHER, username="gv.lan", full_name="Nguyễn Thị Lan")
    trusted = pki.create_demo_ca(pki_folder(app))  # the CA the portal trusts by default
    issued = trusted.issue_person("Nguyễn Thị Lan", title="Giáo viên chủ nhiệm", organisation=school.name)
    (tmp_path / "khoa.der").write_bytes(issued.key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    (tmp_path / "chung-thu.der").write_bytes(der(issued))
    (tmp_path / "chuoi-ca.pem").write_text(pki.certificates_pem(issued.chain))
    (tmp_path / "tokens").mkdir()
    (tmp_path / "softhsm2.conf").write_text(f"directories.tokendir = {tmp_path / 'tokens'}\n"
                                            "objectstore.backend = file\nlog.level = ERROR\n")
    env = dict(os.environ, SOFTHSM2_CONF=str(tmp_path / "softhsm2.conf"))
    make_token, read_out, run_it = _readme_blocks()

    def as_written(block: str) -> str:  # only what differs on this machine: the module's path, the portal
        return (block.replace("/usr/lib/softhsm/libsofthsm2.so", str(SOFTHSM_MODULE))
                .replace("http://127.0.0.1:5000", live_url)
                .replace("python hocba_agent.py", f"{sys.executable} {AGENT}"))

    for block in (make_token, read_out):
        subprocess.run(["bash", "-euo", "pipefail", "-c", as_written(block)], cwd=tmp_path, env=env, check=True,
                       capture_output=True)
    client = app.test_client()
    login(client, user)
    page = f"/s/{school.code}/certificates/new"
    response = client.post(page, data={"csrf_token": csrf_token(client, page), "key_kind": "usb",
                                       "file": ((tmp_path / "chung-thu-kem-chuoi.pem").open("rb"), "chung-thu.pem")},
                           content_type="multipart/form-data")
    assert response.status_code == 302, response.get_data(as_text=True)
    ids = open_requests(app, school, user, der(issued), 2)
    result = subprocess.run(["bash", "-c", as_written(run_it)], cwd=tmp_path, env=env, input=f"{PASSWORD}\nc\n123456\n",
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "cổng đã nhận 2/2 chữ ký" in result.stdout
    assert states(app, ids) == [RequestState.ANSWERED] * 2
