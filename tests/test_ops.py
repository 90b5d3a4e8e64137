"""The operator's view: /healthz for load balancers, the operations page, structured request logs with a
request id that the jobs carry too, warnings for failed calls to the city, and the storage clean-up."""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import pytest
import sqlalchemy as sa

from portal.audit import AuditEntry
from portal.extensions import db, utcnow
from portal.interop.city_client import CityClient, CityError
from portal.jobs import JobRun, JobState
from portal.ops import JsonFormatter
from portal.storage import storage
from tenants.roles import Role
from tenants.scoping import all_schools
from tests.conftest import csrf_token, login


def test_healthz_answers_with_each_component_and_its_timing(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ok"
    for name in ("database", "redis", "storage"):
        assert body["checks"][name]["ok"] is True and body["checks"][name]["ms"] >= 0
    assert response.headers["Cache-Control"] == "no-store"


def test_healthz_is_503_when_the_database_is_down(tmp_path):
    """A portal whose database refuses connections: the load balancer is told to stop sending to it."""
    from portal.app import create_app

    down = create_app({"DATABASE_URL": "postgresql+psycopg://portal@127.0.0.1:1/hocba", "TESTING": True,
                       "REDIS_URL": ""}, instance_path=str(tmp_path))
    response = down.test_client().get("/healthz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "down" and body["checks"]["database"]["ok"] is False
    assert body["checks"]["storage"]["ok"] is True and body["checks"]["database"]["ms"] >= 0


def test_healthz_is_degraded_but_serving_when_redis_is_down(app, client, monkeypatch):
    from redis import Redis

    monkeypatch.setattr(app.extensions["portal_jobs"], "connection", Redis(port=1, socket_connect_timeout=1))
    response = client.get("/healthz")
    assert response.status_code == 200 and response.get_json()["status"] == "degraded"
    assert response.get_json()["checks"]["redis"]["ok"] is False


def test_the_operations_page_shows_queues_jobs_uploads_schedule_and_storage(app, client, make):
    school = make.school("lqd", "Trường Tiểu học Lê Quang Định")
    admin = make.user(district_role=Role.DISTRICT_ADMIN)
    officer = make.user(district_role=Role.DISTRICT_OFFICER)
    principal = make.user(school, Role.PRINCIPAL)
    with app.app_context(), all_schools():
        storage().put(b"mot tep")
        db.session.add_all([
            JobRun(kind="x", title="Gửi lên Thành phố", school_id=school.id, state=JobState.INTERRUPTED,
                   note="Bị gián đoạn lúc 10:00"),
            JobRun(kind="x", title="Tạo học bạ", school_id=school.id, state=JobState.FAILED, error="Lỗi đọc tệp"),
            JobRun(kind="x", title="Xong rồi", school_id=None, state=JobState.FINISHED)])
        db.session.commit()
    login(client, admin)
    page = client.get("/district/operations/").get_data(as_text=True)
    assert "Bị gián đoạn lúc 10:00" in page and "Lỗi đọc tệp" in page and "Xong rồi" not in page
    assert 'data-jobs="interrupted"' in page and "flask storage gc" in page and "flask jobs reconcile" in page
    assert int(page.split('data-figure="files">')[1].split("<")[0]) >= 1
    for other in (officer, principal):
        visitor = app.test_client()
        login(visitor, other)
        assert visitor.get("/district/operations/").status_code == 403


def test_one_json_line_per_request_and_the_job_carries_its_request_id(app, client, make, caplog):
    school = make.school("lqd")
    principal = make.user(school, Role.PRINCIPAL)
    login(client, principal)
    token = csrf_token(client, "/s/lqd/audit")
    with caplog.at_level(logging.INFO, logger="portal.requests"):
        response = client.post("/s/lqd/audit/export", data={"csrf_token": token},
                               headers={"X-Request-ID": "yeu-cau-12345678"})
    assert response.headers["X-Request-ID"] == "yeu-cau-12345678"
    lines = [json.loads(JsonFormatter().format(r)) for r in caplog.records if r.getMessage() == "request"]
    assert len(lines) == 1
    line = lines[0]
    assert line["request_id"] == "yeu-cau-12345678" and line["user"] == principal.username
    assert line["school"] == "lqd" and line["route"] == "/s/<school_code>/audit/export"
    assert line["status"] == 302 and line["duration_ms"] >= 0 and line["method"] == "POST"
    run_id = response.location.rsplit("/", 1)[1]
    with app.app_context(), all_schools():
        assert db.session.get(JobRun, run_id).request_id == "yeu-cau-12345678"
    # A request without an id gets one of its own.
    assert len(client.get("/healthz").headers["X-Request-ID"]) == 32


def test_a_failed_call_to_the_city_is_a_warning_line(caplog):
    with caplog.at_level(logging.WARNING, logger="portal.interop.city_client"), pytest.raises(CityError):
        CityClient("http://127.0.0.1:1", "khoa", timeout=1).status("HB0001")
    warning = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warning) == 1
    line = json.loads(JsonFormatter().format(warning[0]))
    assert line["system"] == "city" and line["code"] == "UNREACHABLE" and line["path"] == "/api/v1/records/HB0001"


def test_storage_gc_removes_only_what_nothing_points_at_and_is_audited(app, make):
    school = make.school("lqd")
    with app.app_context(), all_schools():
        kept = storage().put(b"ket qua xuat")
        intermediate = storage().put(b"ban ky trung gian")
        fresh = storage().put(b"vua tai len, cho xac nhan")
        db.session.add(JobRun(kind="x", title="Xuất", school_id=school.id, state=JobState.FINISHED,
                              result={"digest": kept}))
        db.session.commit()
    old = utcnow() - timedelta(days=5)
    _age(app, [kept, intermediate], old)
    result = app.test_cli_runner().invoke(args=["storage", "gc", "--dry-run"])
    assert result.exit_code == 0 and "would remove 1 file(s)" in result.output
    with app.app_context():
        assert storage().exists(intermediate)
    result = app.test_cli_runner().invoke(args=["storage", "gc"])
    assert result.exit_code == 0 and "removed 1 file(s)" in result.output
    with app.app_context(), all_schools():
        assert storage().exists(kept) and storage().exists(fresh) and not storage().exists(intermediate)
        entry = db.session.scalar(sa.select(AuditEntry).where(AuditEntry.action == "storage.collected"))
        assert entry is not None and entry.changes["removed"] == 1


def test_storage_gc_keeps_the_prepared_pdf_of_a_signature_still_waiting_for_its_token(app, make):
    """The prepared PDF is named only inside the request's state file: gc must read it, not delete it."""
    import hashlib

    from cryptography.hazmat.primitives import serialization

    from portal.signing import pki
    from portal.signing import requests as signing_requests

    school = make.school("lqd")
    signer = make.user(school)
    certificate = pki.create_ca().issue_person("Người Ký", title="Giáo viên", organisation="Trường").certificate
    with app.app_context(), all_schools():
        pdf, source = storage().put(b"ban da chuan bi de ky"), storage().put(b"ban nguon")
        state = storage().put(json.dumps({"pdf": pdf, "source": source, "other": "x"}).encode())
        item = signing_requests.RequestItem(subject_id=1, step="gvcn", prepared_digest=state,
                                            digest=hashlib.sha256(b"1").hexdigest())
        [request] = signing_requests.create_requests(
            school.id, signer_id=signer.id, kind="usb", purpose="record_step", items=[item], actor=None,
            certificate_der=certificate.public_bytes(serialization.Encoding.DER))
        db.session.commit()
        request_id = request.id
    _age(app, [pdf, source, state], utcnow() - timedelta(days=5))
    assert app.test_cli_runner().invoke(args=["storage", "gc"]).exit_code == 0
    with app.app_context():
        assert all(storage().exists(d) for d in (pdf, source, state))
    with app.app_context(), all_schools():  # once the request is closed, its files are history
        signing_requests.cancel([request_id], "thử", actor=None)
        db.session.commit()
    assert app.test_cli_runner().invoke(args=["storage", "gc"]).exit_code == 0
    with app.app_context():
        assert storage().exists(state) and not storage().exists(pdf)


def _age(app, digests, when):
    import os

    from portal.storage import LocalStorage, StoredFile

    with app.app_context():
        store = storage()
        for digest in digests:
            if isinstance(store, LocalStorage):
                os.utime(store._path(digest), (when.timestamp(), when.timestamp()))
            else:
                with db.engine.begin() as connection:
                    connection.execute(sa.update(StoredFile).where(StoredFile.digest == digest)
                                       .values(created_at=when))

