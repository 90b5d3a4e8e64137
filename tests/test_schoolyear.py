"""Setting up a school year: catalogue, entry windows, classes, GVCN and GVBM assignments."""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa

from portal.assessment.models import Period, SchoolClass, SchoolYear, TeachingAssignment
from portal.audit import AuditEntry
from portal.extensions import db
from tenants.roles import Role
from tenants.scoping import school_scope
from tests.conftest import csrf_token, login


def _create_year(client, code, name="2024-2025", starts="05/09/2024", ends="31/05/2025", copy_from=0):
    token = csrf_token(client, f"/s/{code}/years")
    return client.post(f"/s/{code}/years", data={"name": name, "starts_on": starts, "ends_on": ends,
                                                 "copy_from": copy_from, "csrf_token": token})


def test_it_staff_creates_a_year_with_the_programme_catalogue(client, make, app):
    school = make.school("lqd")
    login(client, make.user(school, Role.SCHOOL_IT))
    response = _create_year(client, "lqd")
    assert response.status_code == 302
    with app.app_context(), school_scope(school.id):
        year = db.session.scalar(sa.select(SchoolYear))
        assert year.name == "2024-2025" and year.starts_on == date(2024, 9, 5)
        assert [p.code for p in year.periods] == ["GHK1", "CHK1", "GHK2", "CN"]
        subjects = {s.code: s for s in year.subjects}
        assert subjects["toan"].for_grade(4).tested_periods == ["GHK1", "CHK1", "GHK2", "CN"]
        assert subjects["toan"].for_grade(2).tested_periods == ["CHK1", "CN"]
        assert subjects["dao_duc"].for_grade(5).tested_periods == []
        assert subjects["khoa_hoc"].for_grade(3) is None
        assert subjects["ngoai_ngu_1"].for_grade(1).optional
        traits = {t.code: t for t in year.traits}
        assert len(traits) == 15 and traits["tin_hoc"].from_grade == 3
        assert "school_year.created" in db.session.scalars(sa.select(AuditEntry.action)).all()


def test_bad_year_input_is_refused_in_vietnamese(client, make):
    school = make.school("lqd")
    login(client, make.user(school, Role.PRINCIPAL))
    assert "Tên năm học phải có dạng 2024-2025." in _create_year(client, "lqd", name="2024-2026").get_data(True)
    page = _create_year(client, "lqd", starts="31/05/2025", ends="05/09/2024").get_data(True)
    assert "Ngày bắt đầu phải trước ngày kết thúc năm học." in page
    assert _create_year(client, "lqd").status_code == 302
    assert "Năm học 2024-2025 đã có." in _create_year(client, "lqd").get_data(True)


def test_a_new_year_copies_the_previous_catalogue(client, make, app):
    school = make.school("lqd")
    login(client, make.user(school, Role.PRINCIPAL))
    _create_year(client, "lqd")
    with app.app_context(), school_scope(school.id):
        first = db.session.scalar(sa.select(SchoolYear))
        first.completed_min_score = 6  # the unconfirmed threshold, changed by the school
        db.session.commit()
        first_id = first.id
    _create_year(client, "lqd", name="2025-2026", starts="05/09/2025", ends="31/05/2026", copy_from=first_id)
    with app.app_context(), school_scope(school.id):
        second = db.session.scalar(sa.select(SchoolYear).where(SchoolYear.name == "2025-2026"))
        assert second.completed_min_score == 6 and len(second.subjects) == 14


def test_entry_windows_and_classes(client, make, app):
    school = make.school("lqd")
    login(client, make.user(school, Role.SCHOOL_IT))
    _create_year(client, "lqd")
    with app.app_context(), school_scope(school.id):
        year_id = db.session.scalar(sa.select(SchoolYear.id))
        periods = db.session.scalars(sa.select(Period).order_by(Period.position)).all()
        ids = [p.id for p in periods]
    token = csrf_token(client, f"/s/lqd/years/{year_id}")
    data = {"csrf_token": token, f"opens_{ids[0]}": "01/11/2024", f"closes_{ids[0]}": "15/11/2024"}
    assert client.post(f"/s/lqd/years/{year_id}", data=data).status_code == 302
    data = {"csrf_token": token, f"opens_{ids[1]}": "20/01/2025", f"closes_{ids[1]}": "10/01/2025"}
    assert "ngày mở phải trước ngày đóng" in client.post(f"/s/lqd/years/{year_id}", data=data).get_data(True)
    client.post(f"/s/lqd/years/{year_id}/classes", data={"csrf_token": token, "classes-names": "1a 1B 5A"})
    response = client.post(f"/s/lqd/years/{year_id}/classes", data={"csrf_token": token, "classes-names": "6A 1A"},
                           follow_redirects=True)
    assert "Tên lớp không hợp lệ: 6A" in response.get_data(True)
    with app.app_context(), school_scope(school.id):
        first = db.session.get(Period, ids[0])
        assert first.is_open(date(2024, 11, 15)) and not first.is_open(date(2024, 11, 16))
        assert db.session.get(Period, ids[1]).entry_opens_on is None
        classes = db.session.scalars(sa.select(SchoolClass).order_by(SchoolClass.name)).all()
        assert [(c.name, c.grade) for c in classes] == [("1A", 1), ("1B", 1), ("5A", 5)]


def test_assigning_the_homeroom_and_subject_teachers(client, make, app):
    school = make.school("lqd")
    principal = make.user(school, Role.PRINCIPAL)
    gvcn = make.user(school, Role.HOMEROOM_TEACHER, full_name="Lê Thị Lan")
    gvbm = make.user(school, Role.SUBJECT_TEACHER, full_name="Phan Văn Âm")
    login(client, principal)
    _create_year(client, "lqd")
    with app.app_context(), school_scope(school.id):
        year = db.session.scalar(sa.select(SchoolYear))
        year_id, music = year.id, next(s.id for s in year.subjects if s.code == "am_nhac")
        science = next(s.id for s in year.subjects if s.code == "khoa_hoc")
    token = csrf_token(client, f"/s/lqd/years/{year_id}")
    client.post(f"/s/lqd/years/{year_id}/classes", data={"csrf_token": token, "classes-names": "2A"})
    with app.app_context(), school_scope(school.id):
        class_id = db.session.scalar(sa.select(SchoolClass.id))
    page = client.get(f"/s/lqd/classes/{class_id}/teachers").get_data(True)
    assert "Khoa học" not in page  # not taught in grade 2
    response = client.post(f"/s/lqd/classes/{class_id}/teachers", data={
        "csrf_token": token, "homeroom": gvcn.id, f"subject_{music}": gvbm.id})
    assert response.status_code == 302
    refused = client.post(f"/s/lqd/classes/{class_id}/teachers", data={
        "csrf_token": token, "homeroom": principal.id})
    assert refused.status_code == 200  # the principal is no GVCN: not a valid choice
    assert science
    with app.app_context(), school_scope(school.id):
        school_class = db.session.get(SchoolClass, class_id)
        assert school_class.homeroom_teacher_id == gvcn.id
        assert db.session.scalars(sa.select(TeachingAssignment.teacher_id)).all() == [gvbm.id]
        actions = db.session.scalars(sa.select(AuditEntry.action)).all()
        assert {"class.created", "class.homeroom_set", "class.subject_teacher_set"} <= set(actions)


def test_teachers_cannot_set_up_years(client, make):
    school = make.school("lqd")
    login(client, make.user(school, Role.HOMEROOM_TEACHER, Role.SUBJECT_TEACHER))
    assert client.get("/s/lqd/years").status_code == 403
