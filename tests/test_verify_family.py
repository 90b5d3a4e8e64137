"""Family access codes: issued by the school (object-level), rotated, revoked; the family's pages and logging."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from portal.audit import AuditEntry
from portal.extensions import db
from portal.records.models import RecordStatus
from portal.verify.models import FamilyAccessCode, LookupKind, LookupOutcome, PublicLookup
from tenants.roles import Role
from tenants.scoping import all_schools
from tests import verify_factory as vf
from tests.conftest import csrf_token, login
from tests.records_factory import assessed_class, generate

SLIP_CODE = re.compile(r'data-code="([0-9A-Z]{16})"')


@pytest.fixture
def world(app, make, tmp_path, monkeypatch):
    monkeypatch.setitem(app.config, "TRUST_ROOTS", (vf.write_root(tmp_path, vf.trusted_ca()),))
    school = make.school("lqd", vf.SCHOOL_NAME)
    principal = make.user(school, Role.PRINCIPAL)
    gvcn = make.user(school, Role.HOMEROOM_TEACHER, full_name=vf.GVCN_NAME)
    other_gvcn = make.user(school, Role.HOMEROOM_TEACHER)
    assessed = assessed_class(app, school, gvcn, pupils=2, years=1)
    drafts = generate(app, school, assessed.setup.class_id, gvcn)
    issued = vf.issue(app, school, drafts[0].id)
    return {"app": app, "school": school, "principal": principal, "gvcn": gvcn, "other_gvcn": other_gvcn,
            "class_id": assessed.setup.class_id, "issued": issued, "draft": drafts[1],
            "pupil_id": issued.pupil_id, "other_pupil_id": drafts[1].pupil_id}


def class_page(world) -> str:
    return f"/s/lqd/family-access/classes/{world['class_id']}"


def rotate(client, world, pupil_id) -> str:
    """Issue (or rotate) one pupil's code through the page; the code printed on the slip."""
    token = csrf_token(client, class_page(world))
    response = client.post(f"/s/lqd/family-access/pupils/{pupil_id}/rotate", data={"csrf_token": token})
    assert response.status_code == 200, response.status_code
    assert response.headers["Cache-Control"] == "no-store"
    codes = SLIP_CODE.findall(response.get_data(as_text=True))
    assert len(codes) == 1
    return codes[0]


def family_open(client, code: str, **environ):
    token = csrf_token(client, "/family")
    return client.post("/family", data={"csrf_token": token, "code": code}, environ_base=environ or {})


def code_rows(app, pupil_id=None):
    with app.app_context(), all_schools():
        query = sa.select(FamilyAccessCode).order_by(FamilyAccessCode.id)
        if pupil_id:
            query = query.where(FamilyAccessCode.pupil_id == pupil_id)
        rows = db.session.scalars(query).all()
        for row in rows:
            db.session.expunge(row)
        return list(rows)


def actions(app, prefix):
    with app.app_context():
        return [e.action for e in db.session.scalars(sa.select(AuditEntry).where(AuditEntry.action.startswith(prefix))
                                                     .order_by(AuditEntry.id))]


def test_the_gvcn_prints_codes_for_the_class_and_only_the_hash_is_kept(app, client, world):
    login(client, world["gvcn"])
    assert client.get("/s/lqd/family-access/").status_code == 200
    token = csrf_token(client, class_page(world))
    response = client.post(f"{class_page(world)}/issue", data={"csrf_token": token})
    assert response.status_code == 200
    codes = SLIP_CODE.findall(response.get_data(as_text=True))
    assert len(codes) == 2 and len(set(codes)) == 2
    rows = code_rows(app)
    assert len(rows) == 2 and all(r.active for r in rows)
    stored = " ".join(f"{r.code_hash}" for r in rows)
    assert not any(code in stored for code in codes) and all(len(r.code_hash) == 64 for r in rows)
    # Again: everyone has a code, nothing new is printed.
    again = client.post(f"{class_page(world)}/issue", data={"csrf_token": token})
    assert again.status_code == 302 and len(code_rows(app)) == 2
    assert actions(app, "family_code.") == ["family_code.issued"] * 2


def test_family_sees_and_downloads_issued_records_and_every_step_is_logged(app, client, world):
    login(client, world["gvcn"])
    code = rotate(client, world, world["pupil_id"])
    family = app.test_client()
    typed = "-".join(code[i:i + 4] for i in range(0, 16, 4)).lower()  # as printed, typed on a phone
    response = family_open(family, typed)
    assert response.status_code == 302 and response.location.endswith("/family/records")
    page = family.get("/family/records")
    text = page.get_data(as_text=True)
    issued = world["issued"]
    assert page.status_code == 200 and issued.content["pupil"]["full_name"] in text
    assert f'data-code="{issued.code}"' in text and world["draft"].code not in text  # drafts stay hidden
    pdf = family.get(f"/family/records/{issued.code}/hoc-ba.pdf")
    assert pdf.status_code == 200 and pdf.data == vf.signed_file(app, issued)
    assert "attachment" in pdf.headers["Content-Disposition"]
    # Another pupil's record cannot be fetched with this code, even by its code.
    assert family.get(f"/family/records/{world['draft'].code}/hoc-ba.pdf").status_code == 404
    assert actions(app, "family.") == ["family.opened", "family.viewed", "family.downloaded"]
    with app.app_context():
        entries = db.session.scalars(sa.select(AuditEntry).where(AuditEntry.action.startswith("family."))).all()
        assert {e.school_id for e in entries} == {world["school"].id}
        assert all(e.address and len(e.address) == 16 and "127.0.0.1" not in e.address for e in entries)
        assert all(code not in str(e.changes) + e.summary for e in entries)
    # Leaving ends the family's session.
    family.post("/family/logout", data={"csrf_token": csrf_token(family, "/family/records")})
    assert family.get("/family/records").status_code == 302


def test_a_rotated_code_stops_working_at_once_and_a_revoked_one_too(app, client, world):
    login(client, world["gvcn"])
    first = rotate(client, world, world["pupil_id"])
    family = app.test_client()
    assert family_open(family, first).status_code == 302
    assert family.get("/family/records").status_code == 200
    second = rotate(client, world, world["pupil_id"])
    assert second != first
    # The open session of the old code ends, and the old code is refused.
    assert family.get("/family/records").status_code == 302
    assert "Mã truy cập không đúng" in family_open(family, first).get_data(as_text=True)
    assert family_open(family, second).status_code == 302
    rows = code_rows(app, world["pupil_id"])
    assert [(r.active, r.end_reason) for r in rows] == [(False, "rotated"), (True, None)]
    # Revoked: the family is out until a new code is printed.
    token = csrf_token(client, class_page(world))
    assert client.post(f"/s/lqd/family-access/pupils/{world['pupil_id']}/revoke",
                       data={"csrf_token": token}).status_code == 302
    assert family.get("/family/records").status_code == 302
    assert family.get(f"/family/records/{world['issued'].code}/hoc-ba.pdf").status_code == 302
    assert "Mã truy cập không đúng" in family_open(family, second).get_data(as_text=True)
    assert 'data-has-code="no"' in client.get(class_page(world)).get_data(as_text=True)
    assert actions(app, "family_code.") == ["family_code.issued", "family_code.rotated", "family_code.revoked"]


def test_wrong_codes_are_limited_per_address(app, client, world, monkeypatch):
    monkeypatch.setitem(app.config, "FAMILY_FAILURES_PER_ADDRESS", 3)
    login(client, world["gvcn"])
    code = rotate(client, world, world["pupil_id"])
    family = app.test_client()
    for n in range(3):
        page = family_open(family, f"AAAA-BBBB-CCCC-{n:04d}")
        assert page.status_code == 200 and "Mã truy cập không đúng" in page.get_data(as_text=True)
    limited = family_open(family, code)  # even the right code, while the address is limited
    assert limited.status_code == 429 and "thử lại sau 15 phút" in limited.get_data(as_text=True)
    assert family.get("/family/records").status_code == 302
    # From another address the right code works; right codes never count against anyone.
    other = app.test_client()
    assert family_open(other, code, REMOTE_ADDR="198.51.100.20").status_code == 302
    with app.app_context():
        outcomes = [o for (o,) in db.session.execute(sa.select(PublicLookup.outcome).where(
            PublicLookup.kind == LookupKind.FAMILY).order_by(PublicLookup.id))]
    assert outcomes == [LookupOutcome.WRONG] * 3 + [LookupOutcome.LIMITED, LookupOutcome.FOUND]


def test_superseded_versions_are_listed_but_only_the_current_one_downloads(app, client, world):
    school, old = world["school"], world["issued"]
    new = vf.issue(app, school, vf.correction(app, school, old).id)
    vf.set_status(app, school, old.id, RecordStatus.SUPERSEDED, "Điều chỉnh nhận xét")
    login(client, world["principal"])
    family = app.test_client()
    family_open(family, rotate(client, world, world["pupil_id"]))
    text = family.get("/family/records").get_data(as_text=True)
    assert f'data-code="{new.code}" data-status="issued"' in text
    assert f'data-code="{old.code}" data-status="superseded"' in text and "Điều chỉnh nhận xét" in text
    assert family.get(f"/family/records/{old.code}/hoc-ba.pdf").status_code == 404
    assert family.get(f"/family/records/{new.code}/hoc-ba.pdf").status_code == 200


def test_only_the_class_gvcn_or_management_hand_out_codes(app, make, world, no_csrf):
    pupil = world["pupil_id"]
    other = app.test_client()
    login(other, world["other_gvcn"])
    assert other.get(class_page(world)).status_code == 403
    assert other.post(f"/s/lqd/family-access/pupils/{pupil}/rotate").status_code == 403
    assert other.post(f"{class_page(world)}/issue").status_code == 403
    assert "Bạn không phụ trách lớp nào" in other.get("/s/lqd/family-access/").get_data(as_text=True)
    subject_teacher = app.test_client()
    login(subject_teacher, make.user(world["school"], Role.SUBJECT_TEACHER))
    assert subject_teacher.get("/s/lqd/family-access/").status_code == 403
    assert code_rows(app) == []
    it_staff = app.test_client()
    login(it_staff, make.user(world["school"], Role.SCHOOL_IT))
    assert it_staff.post(f"/s/lqd/family-access/pupils/{pupil}/rotate").status_code == 200
    assert len(code_rows(app)) == 1


def test_another_schools_pupils_and_classes_are_out_of_reach(app, make, world, no_csrf):
    other_school = make.school("khac", "Trường Tiểu học Khác")
    principal_b = make.user(other_school, Role.PRINCIPAL)
    client_b = app.test_client()
    login(client_b, principal_b)
    pupil, class_id = world["pupil_id"], world["class_id"]
    # School A's ids at school B's address: not found; school A's address: not a member.
    assert client_b.get(f"/s/khac/family-access/classes/{class_id}").status_code == 404
    assert client_b.post(f"/s/khac/family-access/pupils/{pupil}/rotate").status_code == 404
    assert client_b.post(f"/s/khac/family-access/pupils/{pupil}/revoke").status_code == 404
    assert client_b.get(f"/s/lqd/family-access/classes/{class_id}").status_code == 403
    assert client_b.post(f"/s/lqd/family-access/pupils/{pupil}/rotate").status_code == 403
    assert code_rows(app) == []
