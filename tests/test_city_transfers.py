"""Transfers inside the district: the sending school releases a pupil, the receiving school accepts, the
issued records go along verified and unchangeable, and no third school sees any of it."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from portal.assessment.models import Enrolment, EnrolmentStatus, Pupil
from portal.extensions import db, utcnow
from portal.interop.models import PupilTransfer, ReceivedRecord, ReceivedRecordFixed, ReceivedState, TransferState
from portal.records import exporters
from portal.records.models import RecordStatus, RecordVersion
from portal.storage import storage
from tenants.models import School
from tenants.roles import Role
from tenants.scoping import all_schools, school_scope
from tests.assessment_factory import make_class, make_year
from tests.city_helpers import content_for, roots_file, signed_record, tampered
from tests.conftest import login
from tests.registry_factory import register_signers
from tests.signing_factory import make_demo_pki

pytestmark = pytest.mark.slow  # a real record, rendered and signed


@pytest.fixture(scope="module")
def demo():
    return make_demo_pki()


@pytest.fixture
def world(app, make, demo, tmp_path, monkeypatch):
    """School A with a pupil holding an issued, signed record; school B to receive; school C aside."""
    monkeypatch.setitem(app.config, "CITY_TRUST_ROOTS", roots_file(tmp_path, demo.roots))
    a, b, c = (make.school(code, name) for code, name in (("lqd", "Trường Tiểu học Lê Quang Định"),
                                                          ("hiepphuoc", "Trường Tiểu học Hiệp Phước"),
                                                          ("khac", "Trường Tiểu học Khác")))
    year_id = make_year(app, a)
    setup = make_class(app, a, year_id, "4A", pupils=1, code_prefix="79786401")
    with app.app_context(), school_scope(a.id):
        pupil = db.session.get(Pupil, setup.pupil_ids[0])
        content = content_for("HB00000000T1", pupil.pupil_code)
        content["school"]["name"] = a.name
        pdf = signed_record(content, demo)
        version = RecordVersion(school_id=a.id, pupil_id=pupil.id, school_year_id=year_id, class_id=setup.class_id,
                                grade=4, number=1, code="HB00000000T1", status=RecordStatus.ISSUED, content=content,
                                source_hash="0" * 64, content_hash=exporters.content_hash(content),
                                draft_digest=storage().put(pdf), signed_digest=storage().put(pdf),
                                xml_digest=storage().put(exporters.export_xml(content)), issued_at=utcnow())
        db.session.add(version)
        db.session.commit()
        ids = {"pupil": pupil.id, "code": pupil.pupil_code, "version": version.id, "digest": version.signed_digest}
    a_head = make.user(a, Role.PRINCIPAL)
    # School A issued it: its three signers are in the registry, as the signing workflow requires.
    register_signers(app, a.id, setup.class_id,
                     {f: demo.by_field(f).certificate for f in ("gvcn", "hieu_truong", "con_dau")})
    return {"a": a, "b": b, "c": c, "ids": ids, "pdf": pdf, "a_head": a_head, "b_it": make.user(b, Role.SCHOOL_IT),
            "c_head": make.user(c, Role.PRINCIPAL)}


def release(app, client, world):
    login(client, world["a_head"])
    response = client.post("/s/lqd/exchange/transfers/release", data={
        "pupil_id": world["ids"]["pupil"], "to_school_id": world["b"].id, "reason": "Gia đình chuyển nơi ở"})
    assert response.status_code == 302
    client.post("/logout")
    with app.app_context(), all_schools():
        return db.session.scalar(sa.select(PupilTransfer.id))


def test_release_accept_and_the_records_go_along(app, client, world, no_csrf):
    transfer_id = release(app, client, world)
    with app.app_context(), school_scope(world["a"].id):
        enrolment = db.session.scalar(sa.select(Enrolment).where(Enrolment.pupil_id == world["ids"]["pupil"]))
        assert enrolment.status == EnrolmentStatus.TRANSFERRED_OUT
    login(client, world["b_it"])
    page = client.get("/s/hiepphuoc/exchange/transfers").get_data(as_text=True)
    assert "Gia đình chuyển nơi ở" not in page and "Trường Tiểu học Lê Quang Định" in page
    assert client.get(f"/s/hiepphuoc/exchange/transfers/{transfer_id}").status_code == 200
    for _ in range(2):  # accepting twice changes nothing the second time
        response = client.post(f"/s/hiepphuoc/exchange/transfers/{transfer_id}/accept")
        assert response.status_code == 302
    with app.app_context(), school_scope(world["b"].id):
        pupils = list(db.session.scalars(sa.select(Pupil)))
        assert [p.pupil_code for p in pupils] == [world["ids"]["code"]]
        pupil_id = pupils[0].id
        rows = list(db.session.scalars(sa.select(ReceivedRecord)))
        assert len(rows) == 1
        row = rows[0]
        row_id = row.id
        assert row.state == ReceivedState.ACCEPTED and row.pupil_id == pupils[0].id, row.reason
        assert row.issuing_school_name == "Trường Tiểu học Lê Quang Định" and row.record_code == "HB00000000T1"
        assert row.pdf_digest == world["ids"]["digest"]  # the very bytes the sending school signed
        # The receiving school cannot reach the sender's record version, nor change what it received.
        assert db.session.scalars(sa.select(RecordVersion)).all() == []
        row.record_code = "HB0000000XXX"
        with pytest.raises(ReceivedRecordFixed):
            db.session.flush()
        db.session.rollback()
    with app.app_context(), all_schools():
        transfer = db.session.get(PupilTransfer, transfer_id)
        assert transfer.state == TransferState.ACCEPTED and transfer.received_pupil_id == pupil_id
        version = db.session.get(RecordVersion, world["ids"]["version"])
        assert version.status == RecordStatus.ISSUED and version.school_id == world["a"].id  # untouched
    detail = client.get(f"/s/hiepphuoc/exchange/received/{row_id}").get_data(as_text=True)
    assert "Trường Tiểu học Lê Quang Định" in detail
    # No route lets the receiving school change a received record.
    changing = [r.rule for r in app.url_map.iter_rules() if "received/<int:received_id>" in r.rule
                and r.methods & {"POST", "PUT", "PATCH", "DELETE"}]
    assert changing == []


def test_a_third_school_sees_nothing_and_cannot_accept(app, client, world, no_csrf):
    transfer_id = release(app, client, world)
    login(client, world["c_head"])
    assert client.get(f"/s/khac/exchange/transfers/{transfer_id}").status_code == 404
    assert client.post(f"/s/khac/exchange/transfers/{transfer_id}/accept").status_code == 404
    # Nor may the sender accept its own release.
    client.post("/logout")
    login(client, world["a_head"])
    assert client.post(f"/s/lqd/exchange/transfers/{transfer_id}/accept").status_code == 404
    with app.app_context(), all_schools():
        assert db.session.get(PupilTransfer, transfer_id).state == TransferState.RELEASED
        assert db.session.scalar(sa.select(sa.func.count()).select_from(ReceivedRecord)) == 0


def test_a_record_altered_in_the_senders_store_is_refused(app, client, world, no_csrf):
    with app.app_context(), school_scope(world["a"].id):
        version = db.session.get(RecordVersion, world["ids"]["version"])
        version.signed_digest = storage().put(tampered(world["pdf"]))
        db.session.commit()
    transfer_id = release(app, client, world)
    login(client, world["b_it"])
    client.post(f"/s/hiepphuoc/exchange/transfers/{transfer_id}/accept")
    with app.app_context(), school_scope(world["b"].id):
        row = db.session.scalar(sa.select(ReceivedRecord))
        assert row.state == ReceivedState.REFUSED and row.pupil_id is None
        assert "bị thay đổi sau khi ký" in row.reason


def test_one_release_at_a_time_and_only_inside_the_district(app, client, world, make, no_csrf):
    release(app, client, world)
    login(client, world["a_head"])
    # The pupil left the class list: the form no longer offers them, and nothing is released again.
    response = client.post("/s/lqd/exchange/transfers/release", data={
        "pupil_id": world["ids"]["pupil"], "to_school_id": world["c"].id, "reason": "Lần nữa"})
    assert response.status_code == 200
    with app.app_context(), school_scope(world["a"].id):
        from portal.interop import transfers

        a, c = db.session.get(School, world["a"].id), db.session.get(School, world["c"].id)
        pupil = db.session.get(Pupil, world["ids"]["pupil"])
        with pytest.raises(transfers.TransferError, match="đang chờ trường nhận"):
            transfers.release_pupil(a, pupil, c, reason="Lần nữa", actor=None)
        with pytest.raises(transfers.TransferError, match="trường khác trong Phòng"):
            transfers.release_pupil(a, pupil, a, reason="Chính mình", actor=None)
        db.session.rollback()
    with app.app_context(), all_schools():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(PupilTransfer)) == 1


def test_a_record_that_went_along_is_frozen_at_the_sending_school(app, client, world, no_csrf):
    """Once released with its pupil, the sender can neither cancel nor correct it: the receiving school's
    copy, verified at the transfer, stays the record's true state."""
    from portal.records import workflow

    release(app, client, world)
    with app.app_context(), school_scope(world["a"].id):
        version = db.session.get(RecordVersion, world["ids"]["version"])
        head = db.session.merge(world["a_head"])
        with pytest.raises(workflow.WorkflowError, match="chuyển theo học sinh"):
            workflow.cancel(version, "Nhập sai", actor=head)
        with pytest.raises(workflow.WorkflowError, match="chuyển theo học sinh"):
            workflow.correct(db.session.merge(world["a"]), version, "Nhập sai", actor=head)
        assert version.status == RecordStatus.ISSUED
