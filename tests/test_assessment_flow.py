"""One class through the whole assessment flow over HTTP: set up, assign, enter, compute, confirm, review."""

from __future__ import annotations

import json
import re
from datetime import date, timedelta

import sqlalchemy as sa

from portal.assessment.models import Enrolment, Pupil, SchoolClass, SchoolYear, Subject, Trait, YearResult
from portal.extensions import db
from tenants.roles import Role
from tenants.scoping import school_scope
from tests.conftest import csrf_token, login


def _grid_token(client, url):
    page = client.get(url)
    assert page.status_code == 200, url
    config = re.search(r'id="grid-config">(.*?)</script>', page.get_data(as_text=True), re.S)
    return json.loads(config.group(1))["csrf"]


def test_one_class_from_set_up_to_reviewed_results(app, make):
    school = make.school("lqd", "Trường Tiểu học Lê Quang Định")
    principal = make.user(school, Role.PRINCIPAL)
    gvcn = make.user(school, Role.HOMEROOM_TEACHER, full_name="Lê Thị Lan")
    office = app.test_client()
    login(office, principal)

    # The principal sets up the year, opens the year-end window, creates 1A and names its GVCN.
    token = csrf_token(office, "/s/lqd/years")
    office.post("/s/lqd/years", data={"name": "2024-2025", "starts_on": "05/09/2024", "ends_on": "31/05/2025",
                                      "copy_from": 0, "csrf_token": token})
    with app.app_context(), school_scope(school.id):
        year = db.session.scalar(sa.select(SchoolYear))
        year_id, cn = year.id, next(p for p in year.periods if p.code == "CN").id
    today = date.today()
    office.post(f"/s/lqd/years/{year_id}", data={
        "csrf_token": token, f"opens_{cn}": (today - timedelta(days=3)).strftime("%d/%m/%Y"),
        f"closes_{cn}": (today + timedelta(days=3)).strftime("%d/%m/%Y")})
    office.post(f"/s/lqd/years/{year_id}/classes", data={"csrf_token": token, "classes-names": "1A"})
    with app.app_context(), school_scope(school.id):
        class_id = db.session.scalar(sa.select(SchoolClass.id))
        pupil = Pupil(school_id=school.id, pupil_code="7900000001", full_name="Nguyễn Thị Ánh Tuyết",
                      gender="Nữ", birth_date=date(2018, 3, 1))
        db.session.add(pupil)
        db.session.flush()
        enrolment = Enrolment(school_id=school.id, pupil_id=pupil.id, school_year_id=year_id, class_id=class_id)
        db.session.add(enrolment)
        db.session.commit()
        pupil_id, enrolment_id = pupil.id, enrolment.id
        subjects = [(s.id, s.for_grade(1)) for s in db.session.scalars(sa.select(Subject)) if s.for_grade(1)]
        subjects = [(sid, spec.is_tested("CN")) for sid, spec in subjects if not spec.optional]
        traits = [t.id for t in db.session.scalars(sa.select(Trait).where(Trait.from_grade <= 1))]
    assigned = office.post(f"/s/lqd/classes/{class_id}/teachers", data={"csrf_token": token, "homeroom": gvcn.id})
    assert assigned.status_code == 302

    # The GVCN enters every subject and every quality and competency at year end.
    teacher = app.test_client()
    login(teacher, gvcn)
    for subject_id, tested in subjects:
        url = f"/s/lqd/grading/classes/{class_id}/subjects/{subject_id}/periods/{cn}"
        cells = {"level": "T", "comment": "Hoàn thành tốt nội dung môn học."} | ({"score": 10} if tested else {})
        saved = teacher.post(url + "/save", json={"rows": [{"key": str(enrolment_id), "version": 0, "cells": cells}]},
                             headers={"X-CSRFToken": _grid_token(teacher, url)})
        assert saved.status_code == 200, saved.get_data(as_text=True)
    url = f"/s/lqd/grading/classes/{class_id}/periods/{cn}"
    rows = [{"key": f"{enrolment_id}:t{trait_id}", "version": 0, "cells": {"level": "T"}} for trait_id in traits]
    saved = teacher.post(url + "/save", json={"rows": rows}, headers={"X-CSRFToken": _grid_token(teacher, url)})
    assert saved.status_code == 200, saved.get_data(as_text=True)

    # The portal computes Hoàn thành xuất sắc; the GVCN confirms it and marks the results reviewed.
    page = teacher.get(f"/s/lqd/results/classes/{class_id}").get_data(as_text=True)
    assert "Hoàn thành xuất sắc" in page
    token = csrf_token(teacher, f"/s/lqd/results/classes/{class_id}")
    assert teacher.post(f"/s/lqd/results/classes/{class_id}/confirm", data={"csrf_token": token}).status_code == 302
    reviewed = teacher.post(f"/s/lqd/results/classes/{class_id}/pupils/{pupil_id}/review",
                            data={"csrf_token": token})
    assert reviewed.status_code == 302
    with app.app_context(), school_scope(school.id):
        result = db.session.scalar(sa.select(YearResult).where(YearResult.enrolment_id == enrolment_id))
        assert result.outcome == "hoan_thanh_xuat_sac"
        assert result.completion == "Hoàn thành chương trình lớp học"
        assert result.results_reviewed_at is not None and result.confirmed_by_id == gvcn.id
