"""Pupil lists, the identity page, who sees the personal ID, editing, and the identity review (rà soát)."""

from __future__ import annotations

import html
import re
import unicodedata
from datetime import UTC, date, datetime
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from portal.assessment.models import Enrolment, EnrolmentStatus, Pupil, YearResult
from portal.audit import AuditEntry
from portal.extensions import db
from tenants.roles import Role
from tenants.scoping import school_scope
from tests.assessment_factory import make_class, make_year
from tests.conftest import Factory, csrf_token, login

PERSONAL_ID = "079215001234"


def page(response: TestResponse) -> str:
    return html.unescape(response.get_data(as_text=True))


def text_of(response: TestResponse, element_id: str) -> str:
    """The text of the element with that id, tags removed and spaces collapsed."""
    match = re.search(rf'<(\w+)[^>]*\bid="{element_id}"[^>]*>(.*?)</\1>', page(response), re.S)
    assert match, f"no #{element_id} on the page"
    return " ".join(re.sub(r"<[^>]+>", " ", match.group(2)).split())


def post(client: FlaskClient, url: str, data: dict[str, object], *, form_url: str) -> TestResponse:
    return client.post(url, data={**data, "csrf_token": csrf_token(client, form_url)})


def actions(app, *names: str) -> list[AuditEntry]:
    with app.app_context():
        query = sa.select(AuditEntry).order_by(AuditEntry.id)
        if names:
            query = query.where(AuditEntry.action.in_(names))
        entries = db.session.scalars(query).all()
        for entry in entries:
            db.session.expunge(entry)
        return entries


def pupil_row(app, school, pupil_id: int) -> Pupil:
    with app.app_context(), school_scope(school.id):
        pupil = db.session.get(Pupil, pupil_id)
        db.session.expunge(pupil)
        return pupil


def set_pupil(app, school, pupil_id: int, **values: object) -> None:
    with app.app_context(), school_scope(school.id):
        pupil = db.session.get(Pupil, pupil_id)
        for name, value in values.items():
            setattr(pupil, name, value)
        db.session.commit()


@pytest.fixture
def school(make: Factory):
    return make.school("lqd", "Trường Tiểu học Lê Quang Định")


@pytest.fixture
def s(app, make: Factory, school) -> SimpleNamespace:
    """A year with classes 5A (4 pupils, GVCN Lan) and 5B (3 pupils, GVCN Minh, Toán taught by Âm)."""
    principal = make.user(school, Role.PRINCIPAL, username="ht.lqd", full_name="Trần Văn Hiệu")
    lan = make.user(school, Role.HOMEROOM_TEACHER, username="gv.lan", full_name="Lê Thị Lan")
    minh = make.user(school, Role.HOMEROOM_TEACHER, username="gv.minh", full_name="Phạm Văn Minh")
    am = make.user(school, Role.SUBJECT_TEACHER, username="gv.am", full_name="Phan Văn Âm")
    year_id = make_year(app, school)
    a = make_class(app, school, year_id, "5A", homeroom_id=lan.id, pupils=4)
    b = make_class(app, school, year_id, "5B", homeroom_id=minh.id, teachers={"toan": am.id}, pupils=3,
                   code_prefix="7900000B")
    return SimpleNamespace(principal=principal, lan=lan, minh=minh, am=am, year_id=year_id, a=a, b=b)


def as_user(app, user) -> FlaskClient:
    client = app.test_client()
    login(client, user)
    return client


# --- lists ----------------------------------------------------------------------------------------

def test_principal_sees_the_classes_of_the_year_and_each_roster(app, school, s):
    client = as_user(app, s.principal)
    overview = client.get("/s/lqd/pupils")
    assert overview.status_code == 200
    assert "5A 5 Lê Thị Lan 4" in text_of(overview, "classes")
    assert "5B 5 Phạm Văn Minh 3" in text_of(overview, "classes")

    roster = text_of(client.get(f"/s/lqd/pupils?year_id={s.year_id}&class_id={s.a.class_id}"), "pupils")
    # Ordered by given name, as Vietnamese class lists are: Anh, Hân, Khoa, Tuyết.
    assert re.findall(r"(Phạm Đức Anh|Lê Ngọc Hân|Trần Minh Khoa|Nguyễn Thị Ánh Tuyết)", roster) == [
        "Phạm Đức Anh", "Lê Ngọc Hân", "Trần Minh Khoa", "Nguyễn Thị Ánh Tuyết"]
    assert "Đang học" in roster and "01/03/2014" in roster
    # The short form typed by people works too.
    assert "Phạm Đức Anh" in page(client.get(f"/s/lqd/pupils?year={s.year_id}&class={s.a.class_id}"))
    assert client.get("/s/lqd/pupils?year_id=abc").status_code == 200  # junk is ignored, never a 500


def test_home_page_links_to_pupils(app, s):
    assert "/s/lqd/pupils" in page(as_user(app, s.lan).get("/s/lqd/"))


def test_teachers_see_only_the_classes_they_teach(app, s):
    lan = as_user(app, s.lan)
    classes = text_of(lan.get("/s/lqd/pupils"), "classes")
    assert "5A" in classes and "5B" not in classes
    assert lan.get(f"/s/lqd/pupils?class_id={s.b.class_id}").status_code == 403
    assert lan.get(f"/s/lqd/pupils/{s.b.pupil_ids[0]}").status_code == 403
    assert lan.get(f"/s/lqd/pupils/{s.a.pupil_ids[0]}").status_code == 200

    am = as_user(app, s.am)  # teaches Toán in 5B only
    assert am.get(f"/s/lqd/pupils?class_id={s.b.class_id}").status_code == 200
    assert am.get(f"/s/lqd/pupils?class_id={s.a.class_id}").status_code == 403


# --- the identity page and the personal ID ------------------------------------------------------

def test_the_identity_page_shows_the_record_fields_and_the_enrolment(app, school, s):
    set_pupil(app, school, s.a.pupil_ids[0], birth_place="Bệnh viện Hùng Vương, TP. Hồ Chí Minh",
              father_name="Nguyễn Văn Ba", register_number="12/2019", personal_plan=True)
    with app.app_context(), school_scope(school.id):
        enrolment = db.session.scalar(sa.select(Enrolment).where(Enrolment.pupil_id == s.a.pupil_ids[0]))
        enrolment.status, enrolment.enrolled_on = EnrolmentStatus.TRANSFERRED_IN, date(2024, 10, 7)
        db.session.commit()
    response = as_user(app, s.principal).get(f"/s/lqd/pupils/{s.a.pupil_ids[0]}")
    identity = text_of(response, "identity")
    for expected in ("Họ và tên Nguyễn Thị Ánh Tuyết", "Giới tính Nữ", "Ngày sinh 01/03/2014", "Dân tộc Kinh",
                     "Quốc tịch Việt Nam", "Nơi sinh Bệnh viện Hùng Vương", "Họ tên cha Nguyễn Văn Ba",
                     "Họ tên mẹ —", "Họ tên người giám hộ —", "Số đăng bộ 12/2019",
                     "Học theo kế hoạch giáo dục cá nhân Có"):
        assert expected in identity, expected
    assert "2024-2025 5A Chuyển đến 07/10/2024" in text_of(response, "enrolments")
    assert "Chưa rà soát" in text_of(response, "identity-review")


@pytest.mark.parametrize(("role", "shown"), [
    (Role.PRINCIPAL, True), (Role.VICE_PRINCIPAL, True), (Role.SCHOOL_IT, True), (Role.HOMEROOM_TEACHER, False)])
def test_the_personal_id_is_shown_only_to_those_allowed(app, make, school, s, role, shown):
    set_pupil(app, school, s.a.pupil_ids[0], personal_id=PERSONAL_ID)
    user = s.lan if role is Role.HOMEROOM_TEACHER else make.user(school, role)
    response = as_user(app, user).get(f"/s/lqd/pupils/{s.a.pupil_ids[0]}")
    assert response.status_code == 200
    assert (PERSONAL_ID in page(response)) is shown
    assert ("Số định danh cá nhân" in page(response)) is shown


def test_editing_the_identity_is_audited_and_clears_the_review(app, school, s):
    pupil_id = s.a.pupil_ids[1]
    set_pupil(app, school, pupil_id, identity_reviewed_at=datetime(2025, 5, 10, tzinfo=UTC),
              identity_reviewed_by_id=s.lan.id, personal_id=PERSONAL_ID)
    client = as_user(app, s.principal)
    url = f"/s/lqd/pupils/{pupil_id}/edit"
    form = page(client.get(url))
    assert PERSONAL_ID in form and "dấu “đã rà soát” sẽ bị bỏ" in form
    data = {"full_name": unicodedata.normalize("NFD", "Trần  Minh Khoa "), "gender": "Nam", "birth_date": "02/03/2014",
            "ethnicity": "Kinh", "nationality": "Việt Nam", "birth_place": "Nhà Bè, TP. Hồ Chí Minh",
            "mother_name": "Võ Thị Mai", "personal_id": "079215009999", "personal_plan": "y"}
    response = post(client, url, data, form_url=url)
    assert response.status_code == 302
    shown = page(client.get(response.location))
    assert "Đã lưu thông tin nhân thân." in shown and "giáo viên chủ nhiệm cần rà soát lại" in shown

    pupil = pupil_row(app, school, pupil_id)
    assert pupil.full_name == "Trần Minh Khoa" and unicodedata.is_normalized("NFC", pupil.full_name)
    assert pupil.birth_place == "Nhà Bè, TP. Hồ Chí Minh" and pupil.personal_plan is True
    assert pupil.personal_id == "079215009999" and pupil.identity_reviewed_at is None
    [entry] = actions(app, "pupil.updated")
    assert entry.actor_id == s.principal.id and entry.object_id == str(pupil_id)
    # The name typed in NFD with stray spaces is the same name: not a change.
    assert set(entry.changes) == {"birth_place", "mother_name", "personal_id", "personal_plan"}
    assert entry.changes["birth_place"] == [None, "Nhà Bè, TP. Hồ Chí Minh"]
    assert entry.changes["personal_id"] == ["(ẩn)", "(ẩn)"]  # the trail never holds the ID itself
    assert PERSONAL_ID not in str(entry.changes) and "079215009999" not in str(entry.changes)
    assert [e.changes["reason"] for e in actions(app, "pupil.identity_review_cleared")] == ["Sửa thông tin nhân thân"]

    again = post(client, url, data, form_url=url)  # the same values again: nothing to record
    assert "Không có thay đổi nào." in page(client.get(again.location))
    assert len(actions(app, "pupil.updated")) == 1


def test_bad_identity_input_is_refused(app, school, s):
    client = as_user(app, s.principal)
    url = f"/s/lqd/pupils/{s.a.pupil_ids[0]}/edit"
    response = post(client, url, {"full_name": "", "birth_date": "31/02/2014", "personal_id": "12345"}, form_url=url)
    assert response.status_code == 200
    assert "Số định danh cá nhân phải gồm 12 chữ số." in page(response)
    assert pupil_row(app, school, s.a.pupil_ids[0]).full_name == "Nguyễn Thị Ánh Tuyết"
    assert actions(app, "pupil.updated") == []


def test_teachers_cannot_edit_identity(app, s):
    client = as_user(app, s.lan)
    url = f"/s/lqd/pupils/{s.a.pupil_ids[0]}/edit"
    assert client.get(url).status_code == 403
    token = csrf_token(client, f"/s/lqd/pupils/{s.a.pupil_ids[0]}")
    assert client.post(url, data={"csrf_token": token, "full_name": "X"}).status_code == 403
    assert "Sửa thông tin nhân thân" not in page(client.get(f"/s/lqd/pupils/{s.a.pupil_ids[0]}"))


# --- review ---------------------------------------------------------------------------------------

def test_the_homeroom_teacher_marks_pupils_reviewed_one_by_one_and_all_checked(app, school, s):
    client = as_user(app, s.lan)
    review_url = f"/s/lqd/pupils/review/{s.a.class_id}"
    assert "Đã rà soát 0/4 học sinh" in text_of(client.get(review_url), "review-count")
    first = s.a.pupil_ids[0]
    response = post(client, f"{review_url}/{first}", {"back": "pupil"}, form_url=f"/s/lqd/pupils/{first}")
    assert response.status_code == 302 and response.location.endswith(f"/s/lqd/pupils/{first}")
    assert "Đã rà soát ngày" in text_of(client.get(f"/s/lqd/pupils/{first}"), "identity-review")

    response = post(client, review_url, {"pupil_ids": s.a.pupil_ids[1:3]}, form_url=review_url)
    assert response.status_code == 302
    assert "Đã đánh dấu rà soát thông tin nhân thân của 2 học sinh." in page(client.get(review_url))
    assert "Đã rà soát 3/4 học sinh" in text_of(client.get(review_url), "review-count")
    reviewed = [pupil_row(app, school, pid) for pid in s.a.pupil_ids]
    assert [p.identity_reviewed_at is not None for p in reviewed] == [True, True, True, False]
    assert {p.identity_reviewed_by_id for p in reviewed[:3]} == {s.lan.id}

    post(client, f"{review_url}/{first}", {}, form_url=review_url)  # marking twice records once
    assert len(actions(app, "pupil.identity_reviewed")) == 3


def test_only_the_classs_own_homeroom_teacher_may_mark(app, school, s):
    review_url = f"/s/lqd/pupils/review/{s.a.class_id}"
    minh = as_user(app, s.minh)  # GVCN of 5B
    token = csrf_token(minh, "/s/lqd/pupils")
    assert minh.get(review_url).status_code == 403
    assert minh.post(f"{review_url}/{s.a.pupil_ids[0]}", data={"csrf_token": token}).status_code == 403
    assert minh.post(review_url, data={"csrf_token": token, "pupil_ids": s.a.pupil_ids}).status_code == 403

    principal = as_user(app, s.principal)  # sees the review page, but the GVCN does the review
    assert principal.get(review_url).status_code == 200
    token = csrf_token(principal, review_url)
    assert principal.post(f"{review_url}/{s.a.pupil_ids[0]}", data={"csrf_token": token}).status_code == 403

    lan = as_user(app, s.lan)
    token = csrf_token(lan, review_url)
    # A pupil of 5B through 5A's page: not one of this class.
    assert lan.post(f"{review_url}/{s.b.pupil_ids[0]}", data={"csrf_token": token}).status_code == 404
    assert lan.post(review_url, data={"csrf_token": token, "pupil_ids": [s.b.pupil_ids[0]]}).status_code == 400
    assert all(pupil_row(app, school, pid).identity_reviewed_at is None for pid in s.a.pupil_ids + s.b.pupil_ids)
    assert actions(app, "pupil.identity_reviewed") == []


def test_the_principal_follows_review_progress_per_class(app, school, s):
    now = datetime(2025, 5, 12, tzinfo=UTC)
    with app.app_context(), school_scope(school.id):
        for pid in s.a.pupil_ids[:3]:
            db.session.get(Pupil, pid).identity_reviewed_at = now
        db.session.add(YearResult(school_id=school.id, enrolment_id=s.a.enrolment_ids[0], results_reviewed_at=now))
        db.session.add(YearResult(school_id=school.id, enrolment_id=s.a.enrolment_ids[3]))  # not reviewed
        db.session.get(Enrolment, s.b.enrolment_ids[2]).status = EnrolmentStatus.LEFT  # not waited for
        db.session.get(Pupil, s.b.pupil_ids[0]).identity_reviewed_at = now
        db.session.commit()
    client = as_user(app, s.principal)
    response = client.get(f"/s/lqd/pupils/review-progress?year_id={s.year_id}")
    assert response.status_code == 200
    body = page(response)
    row = {name: " ".join(re.sub(r"<[^>]+>", " ", cells).split())
           for name, cells in re.findall(r'<tr data-class="([^"]+)">(.*?)</tr>', body, re.S)}
    assert row["5A"] == "5A Lê Thị Lan 4 3 75% 1 25%"
    assert row["5B"] == "5B Phạm Văn Minh 2 1 50% 0 0%"
    assert row["total"] == "Toàn trường 6 4 66% 1 16%"  # rounded down: never 100% before it is
    missing_a = text_of(response, "missing-5A")
    assert "Lớp 5A: 3 học sinh" in missing_a
    assert "Phạm Đức Anh — chưa rà soát nhân thân chưa rà soát kết quả" in missing_a
    assert "Lê Ngọc Hân — chưa rà soát kết quả" in missing_a
    assert "Nguyễn Thị Ánh Tuyết" not in missing_a  # both reviews done
    missing_b = text_of(response, "missing-5B")
    assert "Lê Ngọc Hân" not in missing_b  # left the school

    assert as_user(app, s.lan).get("/s/lqd/pupils/review-progress").status_code == 403


# --- tenancy --------------------------------------------------------------------------------------

def test_another_schools_pupils_classes_and_years_are_not_found(app, make, school, s):
    other = make.school("ntr", "Trường Tiểu học Nguyễn Trãi")
    other_year = make_year(app, other)
    theirs = make_class(app, other, other_year, "5A", pupils=2)
    client = as_user(app, s.principal)
    for url in (f"/s/lqd/pupils/{theirs.pupil_ids[0]}", f"/s/lqd/pupils/{theirs.pupil_ids[0]}/edit",
                f"/s/lqd/pupils?class_id={theirs.class_id}", f"/s/lqd/pupils?year_id={other_year}",
                f"/s/lqd/pupils/review/{theirs.class_id}", f"/s/lqd/pupils/review-progress?year_id={other_year}",
                f"/s/lqd/pupils/export?year_id={other_year}", f"/s/lqd/pupils/export?class_id={theirs.class_id}"):
        assert client.get(url).status_code == 404, url
    token = csrf_token(client, "/s/lqd/pupils")
    assert client.post(f"/s/lqd/pupils/review/{theirs.class_id}/{theirs.pupil_ids[0]}",
                       data={"csrf_token": token}).status_code == 404
    assert client.post(f"/s/lqd/pupils/review/{s.a.class_id}/{theirs.pupil_ids[0]}",
                       data={"csrf_token": token}).status_code == 404
    assert client.post(f"/s/lqd/pupils/{theirs.pupil_ids[0]}/edit",
                       data={"csrf_token": token, "full_name": "X"}).status_code == 404
    assert client.get("/s/ntr/pupils").status_code == 403  # not a member there
    with app.app_context(), school_scope(other.id):
        assert db.session.get(Pupil, theirs.pupil_ids[0]).full_name == "Nguyễn Thị Ánh Tuyết"


def test_every_page_answers_in_a_school_without_years(app, make, school):
    client = as_user(app, make.user(school, Role.PRINCIPAL))
    assert "Trường chưa có năm học nào." in page(client.get("/s/lqd/pupils"))
    assert "Trường chưa có năm học nào" in page(client.get("/s/lqd/pupils/import"))
    assert "Trường chưa có năm học nào." in page(client.get("/s/lqd/pupils/results-exchange"))
    assert "Trường chưa có năm học nào." in page(client.get("/s/lqd/pupils/review-progress"))
    assert client.get("/s/lqd/pupils/export").status_code == 404
    teacher = as_user(app, make.user(school, Role.HOMEROOM_TEACHER))
    assert teacher.get("/s/lqd/pupils").status_code == 200
