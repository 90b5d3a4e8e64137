"""Year-end results of a class: computed, explained, confirmed or set by the GVCN, awards, completion,
the principal's promotion decision, review marks, stale results, and who may do what."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from portal.assessment.models import Award, Enrolment, SchoolClass, SchoolYear, YearResult
from portal.audit import AuditEntry
from portal.extensions import db
from portal.results import services
from tenants.roles import Role
from tenants.scoping import school_scope
from tests.assessment_factory import make_class, make_year
from tests.conftest import csrf_token, login
from tests.results_factory import change_subject, rate

EXCELLENT, GOOD, COMPLETED, NOT_COMPLETED = "hoan_thanh_xuat_sac", "hoan_thanh_tot", "hoan_thanh", "chua_hoan_thanh"
EXEMPLARY = "Học sinh Tiêu biểu hoàn thành tốt trong học tập và rèn luyện"


@pytest.fixture
def world(app, make):
    """School lqd, year 2024-2025, class 5A of six pupils (the last on a personal plan), its GVCN."""
    school = make.school("lqd")
    gvcn = make.user(school, Role.HOMEROOM_TEACHER, full_name="Lê Thị Lan")
    year_id = make_year(app, school)
    setup = make_class(app, school, year_id, "5A", homeroom_id=gvcn.id, pupils=6, personal_plan=(5,))
    rate(app, school, setup, 0, subjects={"tieng_dtts": ("T", None)})  # an optional subject, taken
    rate(app, school, setup, 1, subjects={"toan": ("T", 8)})
    rate(app, school, setup, 2, subjects={"dao_duc": ("H", None)})
    rate(app, school, setup, 3, subjects={"toan": ("C", 3)})
    rate(app, school, setup, 4, subjects={"khoa_hoc": None})
    rate(app, school, setup, 5)
    return {"school": school, "gvcn": gvcn, "year_id": year_id, "setup": setup, "make": make, "app": app}


def _url(world: dict[str, Any], tail: str = "") -> str:
    return f"/s/lqd/results/classes/{world['setup'].class_id}{tail}"


def _pupil_url(world: dict[str, Any], index: int, tail: str = "") -> str:
    return _url(world, f"/pupils/{world['setup'].pupil_ids[index]}{tail}")


def _post(client, url: str, **data: Any):
    data.setdefault("csrf_token", csrf_token(client, "/s/lqd/"))
    return client.post(url, data=data)


def _row(page: str, pupil_id: int) -> str:
    """The class table's row of one pupil."""
    start = page.index(f'<tr id="pupil-{pupil_id}"')
    return page[start:page.index("</tr>", start)]


def _results(app, school) -> dict[int, YearResult]:
    """{pupil_id: YearResult}, detached for reading."""
    with app.app_context(), school_scope(school.id):
        rows = db.session.execute(sa.select(Enrolment.pupil_id, YearResult)
                                  .join(YearResult, YearResult.enrolment_id == Enrolment.id)).all()
        for _pupil, result in rows:
            db.session.expunge(result)
        return {pupil: result for pupil, result in rows}


def _awards(app, school) -> list[tuple[int, str, str | None]]:
    with app.app_context(), school_scope(school.id):
        rows = db.session.execute(sa.select(Enrolment.pupil_id, Award.title, Award.awarded_on)
                                  .join(Award, Award.enrolment_id == Enrolment.id).order_by(Award.id)).all()
        return [(p, t, d.strftime("%d/%m/%Y") if d else None) for p, t, d in rows]


def _actions(app, school) -> list[AuditEntry]:
    with app.app_context():
        entries = db.session.scalars(sa.select(AuditEntry).where(AuditEntry.school_id == school.id)
                                     .order_by(AuditEntry.id)).all()
        for entry in entries:
            db.session.expunge(entry)
        return list(entries)


def test_the_year_end_of_one_class_from_computation_to_review(client, world):
    app, school, setup = world["app"], world["school"], world["setup"]
    pupils = setup.pupil_ids
    login(client, world["gvcn"])

    page = client.get(_url(world)).get_data(as_text=True)
    assert "Chưa đạt Hoàn thành xuất sắc: Toán được 8 điểm (cần từ 9)" in page
    assert "Chưa đạt Hoàn thành tốt: Đạo đức mức Hoàn thành" in page
    assert "Toán mức Chưa hoàn thành" in page and "Toán được 3 điểm (cần từ 5)" in page
    assert "Khoa học: thiếu mức đạt được" in page and "Khoa học: thiếu điểm kiểm tra cuối năm" in page
    assert "kế hoạch giáo dục cá nhân" in page
    assert "4 học sinh có kết quả tính được đang chờ xác nhận" in page

    # All complete ones at once: the missing one and the personal-plan one are left alone.
    assert _post(client, _url(world, "/confirm")).status_code == 302
    results = _results(app, school)
    assert {p: results[p].outcome for p in results} == {
        pupils[0]: EXCELLENT, pupils[1]: GOOD, pupils[2]: COMPLETED, pupils[3]: NOT_COMPLETED}
    assert results[pupils[0]].completion == "Hoàn thành chương trình tiểu học"
    assert results[pupils[3]].completion is None
    assert results[pupils[1]].computed_outcome == GOOD and results[pupils[1]].confirmed_by_id == world["gvcn"].id
    assert "Chưa đạt Hoàn thành xuất sắc: Toán được 8 điểm (cần từ 9)" in results[pupils[1]].reasons
    assert _awards(app, school) == [(pupils[0], "Học sinh Xuất sắc", None)]

    # The incomplete pupil cannot be confirmed; the personal-plan pupil's result is chosen, not computed.
    response = _post(client, _pupil_url(world, 4, "/confirm"), back="pupil")
    assert "Chưa thể xác nhận kết quả" in client.get(response.location).get_data(as_text=True)
    assert pupils[4] not in _results(app, school)
    _post(client, _pupil_url(world, 5, "/confirm"))
    assert pupils[5] not in _results(app, school)
    response = _post(client, _pupil_url(world, 5, "/outcome"), outcome="", back="pupil")
    assert response.location.endswith(_pupil_url(world, 5))
    assert "Cần chọn kết quả." in client.get(response.location).get_data(as_text=True)
    _post(client, _pupil_url(world, 5, "/outcome"), outcome=GOOD)
    assert _results(app, school)[pupils[5]].outcome == GOOD
    assert _results(app, school)[pupils[5]].computed_outcome is None

    # Awards: the class recognises a Hoàn thành tốt pupil; a Hoàn thành pupil cannot be; ad-hoc awards.
    _post(client, _pupil_url(world, 1, "/exemplary"), recognised="y")
    response = _post(client, _pupil_url(world, 2, "/exemplary"), recognised="y", back="pupil")
    assert "chỉ dành cho học sinh có kết quả Hoàn thành tốt" in client.get(response.location).get_data(True)
    _post(client, _pupil_url(world, 2, "/awards"), awarded_on="20/11/2024", title="Giải Nhì hội thi kể chuyện")
    response = _post(client, _pupil_url(world, 2, "/awards"), awarded_on="20/11/2023", title="Ngoài năm học",
                     back="pupil")
    assert "Ngày khen thưởng phải trong năm học 2024-2025." in client.get(response.location).get_data(True)
    _post(client, _pupil_url(world, 2, "/awards"), awarded_on="09/01/2025", title="Viết chữ đẹp")
    assert _awards(app, school) == [(pupils[0], "Học sinh Xuất sắc", None), (pupils[1], EXEMPLARY, None),
                                    (pupils[2], "Giải Nhì hội thi kể chuyện", "20/11/2024"),
                                    (pupils[2], "Viết chữ đẹp", "09/01/2025")]
    with app.app_context(), school_scope(school.id):
        mistaken = db.session.scalar(sa.select(Award.id).where(Award.title == "Viết chữ đẹp"))
        excellent = db.session.scalar(sa.select(Award.id).where(Award.title == "Học sinh Xuất sắc"))
    _post(client, _url(world, f"/awards/{mistaken}/delete"))
    _post(client, _url(world, f"/awards/{excellent}/delete"))  # a year-end title follows the result
    assert [a[1] for a in _awards(app, school)] == ["Học sinh Xuất sắc", EXEMPLARY, "Giải Nhì hội thi kể chuyện"]
    page = client.get(_pupil_url(world, 2)).get_data(as_text=True)
    assert "20/11/2024: Giải Nhì hội thi kể chuyện" in page

    # Chưa hoàn thành: the GVCN's supplementary assessment, then the principal's decision.
    principal = world["make"].user(school, Role.PRINCIPAL, full_name="Trần Văn Hiệu")
    assert _post(client, _pupil_url(world, 3, "/promotion"), promoted="1").status_code == 403
    _post(client, _pupil_url(world, 1, "/supplementary"), note="Không áp dụng")  # not a Chưa hoàn thành pupil
    assert _results(app, school)[pupils[1]].supplementary_note == ""
    principal_client = app.test_client()
    login(principal_client, principal)
    response = _post(principal_client, _pupil_url(world, 3, "/promotion"), promoted="1", back="pupil")
    assert "Cần có kết quả đánh giá bổ sung" in principal_client.get(response.location).get_data(True)
    assert _results(app, school)[pupils[3]].promoted is None
    _post(client, _pupil_url(world, 3, "/supplementary"), note="Đã ôn tập trong hè; kiểm tra lại Toán được 6.")
    _post(principal_client, _pupil_url(world, 3, "/promotion"), promoted="1")
    page = principal_client.get(_pupil_url(world, 3)).get_data(as_text=True)
    assert "Được lên lớp" in page and "Trần Văn Hiệu" in page
    result = _results(app, school)[pupils[3]]
    assert result.promoted is True and result.decided_by_id == principal.id and result.decided_at is not None
    assert result.supplementary_note.startswith("Đã ôn tập trong hè") and result.completion is None

    # Review: only confirmed results; the page lists who is left.
    _post(client, _pupil_url(world, 4, "/review"))
    for index in (0, 1, 2):
        _post(client, _pupil_url(world, index, "/review"))
    results = _results(app, school)
    assert pupils[4] not in results
    assert {p for p, r in results.items() if r.results_reviewed_at} == {pupils[0], pupils[1], pupils[2]}
    page = client.get(_url(world)).get_data(as_text=True)
    left = page[page.index('id="review-left"'):]
    assert "Chưa rà soát kết quả (3)" in left
    assert all(f'data-pupil="{pupils[i]}"' in left for i in (3, 4, 5))
    assert f'data-pupil="{pupils[0]}"' not in left

    actions = [e.action for e in _actions(app, school)]
    for action in ("results.confirmed", "results.set", "award.added", "award.removed",
                   "results.supplementary_note_set", "results.promotion_decided", "results.reviewed"):
        assert action in actions, action
    entries = _actions(app, school)
    confirmed = [e for e in entries if e.action == "results.confirmed"]
    assert {tuple(e.changes["outcome"]) for e in confirmed} == {
        (None, EXCELLENT), (None, GOOD), (None, COMPLETED), (None, NOT_COMPLETED)}
    decided = next(e for e in entries if e.action == "results.promotion_decided")
    assert decided.changes == {"promoted": [None, True]} and decided.actor_id == principal.id
    removed = next(e for e in entries if e.action == "award.removed")
    assert removed.changes["title"] == ["Viết chữ đẹp", None]


def test_completion_text_follows_the_grade(client, app, make):
    school = make.school("lqd")
    gvcn = make.user(school, Role.HOMEROOM_TEACHER)
    year_id = make_year(app, school)
    grade4 = make_class(app, school, year_id, "4A", homeroom_id=gvcn.id, pupils=1)
    grade5 = make_class(app, school, year_id, "5B", homeroom_id=gvcn.id, pupils=1)
    for setup in (grade4, grade5):
        rate(app, school, setup, 0, subjects={"toan": ("H", 6)})
    login(client, gvcn)
    for setup in (grade4, grade5):
        _post(client, f"/s/lqd/results/classes/{setup.class_id}/confirm")
    results = _results(app, school)
    assert results[grade4.pupil_ids[0]].outcome == COMPLETED
    assert results[grade4.pupil_ids[0]].completion == "Hoàn thành chương trình lớp học"
    assert results[grade5.pupil_ids[0]].completion == "Hoàn thành chương trình tiểu học"
    page = client.get(f"/s/lqd/results/classes/{grade4.class_id}").get_data(as_text=True)
    assert "Hoàn thành chương trình lớp học" in page


def test_a_rating_change_after_confirmation_is_flagged_and_confirmed_again(client, world):
    app, school, setup = world["app"], world["school"], world["setup"]
    pupils = setup.pupil_ids
    login(client, world["gvcn"])
    _post(client, _url(world, "/confirm"))
    _post(client, _pupil_url(world, 0, "/review"))
    assert "Đánh giá đã thay đổi" not in client.get(_url(world)).get_data(as_text=True)

    change_subject(app, school, setup, 0, "toan", level="T", score=8)  # Hoàn thành xuất sắc no more
    change_subject(app, school, setup, 1, "toan", level="T", score=7)  # still Hoàn thành tốt, other reasons
    page = client.get(_url(world)).get_data(as_text=True)
    row0, row1 = _row(page, pupils[0]), _row(page, pupils[1])
    assert 'class="bad"' in row0 and "Không còn khớp với kết quả tính lại" in row0
    assert "Đánh giá đã thay đổi sau khi xác nhận" in row1 and "Không còn khớp" not in row1
    assert "2 học sinh có kết quả tính được đang chờ xác nhận" in page
    assert _results(app, school)[pupils[0]].outcome == EXCELLENT  # nothing rewritten behind the GVCN's back

    _post(client, _url(world, "/confirm"))
    results = _results(app, school)
    assert results[pupils[0]].outcome == GOOD and results[pupils[0]].results_reviewed_at is None
    assert "Chưa đạt Hoàn thành tốt" not in " ".join(results[pupils[1]].reasons)
    assert "Toán được 7 điểm (cần từ 9)" in " ".join(results[pupils[1]].reasons)
    assert "Học sinh Xuất sắc" not in [title for _p, title, _d in _awards(app, school)]
    actions = [(e.action, e.changes) for e in _actions(app, school)]
    assert ("results.confirmed", {"completion": ["Hoàn thành chương trình tiểu học"] * 2}) not in actions
    reconfirmed = [c for a, c in actions if a == "results.confirmed" and c.get("outcome") == [EXCELLENT, GOOD]]
    assert len(reconfirmed) == 1 and reconfirmed[0]["computed_outcome"] == [EXCELLENT, GOOD]
    assert "results.review_cleared" in [a for a, _c in actions]
    assert "Đánh giá đã thay đổi" not in client.get(_url(world)).get_data(as_text=True)
    # Confirming again without a change writes nothing more.
    count = len(_actions(app, school))
    _post(client, _url(world, "/confirm"))
    assert len(_actions(app, school)) == count


def test_a_result_leaving_chua_hoan_thanh_drops_the_decision(client, world):
    app, school, setup = world["app"], world["school"], world["setup"]
    principal = world["make"].user(school, Role.PRINCIPAL)
    login(client, world["gvcn"])
    _post(client, _url(world, "/confirm"))
    _post(client, _pupil_url(world, 3, "/supplementary"), note="Kiểm tra lại")
    other = app.test_client()
    login(other, principal)
    _post(other, _pupil_url(world, 3, "/promotion"), promoted="0")
    assert _results(app, school)[setup.pupil_ids[3]].promoted is False
    change_subject(app, school, setup, 3, "toan", level="H", score=6)  # a corrected rating
    page = client.get(_pupil_url(world, 3)).get_data(as_text=True)
    assert "Không còn khớp" in page
    _post(client, _pupil_url(world, 3, "/confirm"))
    result = _results(app, school)[setup.pupil_ids[3]]
    assert (result.outcome, result.promoted, result.decided_by_id, result.supplementary_note) == (
        COMPLETED, None, None, "")
    assert result.completion == "Hoàn thành chương trình tiểu học"


def test_who_may_see_and_do_what(client, world):
    app, make, school, setup = world["app"], world["make"], world["school"], world["setup"]
    other_gvcn = make.user(school, Role.HOMEROOM_TEACHER)
    other_class = make_class(app, school, world["year_id"], "5C", homeroom_id=other_gvcn.id, pupils=1)
    rate(app, school, other_class, 0)
    principal = make.user(school, Role.PRINCIPAL)
    vice = make.user(school, Role.VICE_PRINCIPAL)
    subject_teacher = make.user(school, Role.SUBJECT_TEACHER)
    elsewhere = make.school("ntmk")
    stranger = make.user(elsewhere, Role.HOMEROOM_TEACHER, Role.PRINCIPAL)
    posts = ["/confirm", "/pupils/{p}/confirm", "/pupils/{p}/outcome", "/pupils/{p}/exemplary",
             "/pupils/{p}/awards", "/pupils/{p}/supplementary", "/pupils/{p}/review"]
    pupil = setup.pupil_ids[0]

    login(client, other_gvcn)
    assert client.get(_url(world)).status_code == 403
    assert client.get(_pupil_url(world, 0)).status_code == 403
    for tail in posts:
        assert _post(client, _url(world, tail.format(p=pupil)), outcome=GOOD).status_code == 403, tail

    principal_client = app.test_client()
    login(principal_client, principal)
    page = principal_client.get(_url(world)).get_data(as_text=True)
    assert "Xác nhận tất cả" not in page and "Bạn đang xem" in page
    assert principal_client.get(_pupil_url(world, 3)).status_code == 200
    for tail in posts:
        assert _post(principal_client, _url(world, tail.format(p=pupil))).status_code == 403, tail
    vice_client = app.test_client()
    login(vice_client, vice)
    assert vice_client.get(_url(world)).status_code == 200
    assert _post(vice_client, _pupil_url(world, 3, "/promotion"), promoted="1").status_code == 403
    teacher_client = app.test_client()
    login(teacher_client, subject_teacher)
    assert teacher_client.get(_url(world)).status_code == 403
    stranger_client = app.test_client()
    login(stranger_client, stranger)
    assert stranger_client.get(_url(world)).status_code == 403  # not a member of lqd
    assert stranger_client.get(f"/s/ntmk/results/classes/{setup.class_id}").status_code == 404
    assert stranger_client.get(f"/s/ntmk/results/classes/{setup.class_id}/summary/"
                               f"{setup.period_ids['CN']}").status_code == 404
    assert _post(stranger_client, f"/s/ntmk/results/classes/{setup.class_id}/confirm",
                 csrf_token=csrf_token(stranger_client, "/s/ntmk/")).status_code == 404
    assert _results(app, school) == {}  # nobody changed anything of 5A

    gvcn_client = app.test_client()
    login(gvcn_client, world["gvcn"])
    assert gvcn_client.get(_url(world, "/pupils/999999")).status_code == 404
    assert gvcn_client.get(_url(world, f"/pupils/{other_class.pupil_ids[0]}")).status_code == 404
    assert _post(gvcn_client, _url(world, f"/pupils/{other_class.pupil_ids[0]}/confirm")).status_code == 404
    other_client = app.test_client()
    login(other_client, other_gvcn)
    _post(other_client, f"/s/lqd/results/classes/{other_class.class_id}/confirm")
    with app.app_context(), school_scope(school.id):
        other_award = db.session.scalar(sa.select(Award.id))  # the other class's Học sinh Xuất sắc
    assert _post(gvcn_client, _url(world, f"/awards/{other_award}/delete")).status_code == 404
    assert _post(gvcn_client, _url(world, "/pupils/999999/confirm")).status_code == 404
    assert _post(gvcn_client, _url(world, "/awards/999999/delete")).status_code == 404
    assert gvcn_client.post(_url(world, "/confirm")).status_code == 400  # no CSRF token


def test_the_class_list_shows_only_what_the_user_may_open(client, world):
    app, make, school = world["app"], world["make"], world["school"]
    other_gvcn = make.user(school, Role.HOMEROOM_TEACHER)
    make_class(app, school, world["year_id"], "5C", homeroom_id=other_gvcn.id, pupils=1)
    login(client, world["gvcn"])
    assert "Kết quả cuối năm, bảng tổng hợp" in client.get("/s/lqd/").get_data(as_text=True)
    page = client.get("/s/lqd/results").get_data(as_text=True)
    assert "5A" in page and "5C" not in page
    principal_client = app.test_client()
    login(principal_client, make.user(school, Role.PRINCIPAL))
    page = principal_client.get("/s/lqd/results").get_data(as_text=True)
    assert "5A" in page and "5C" in page


def test_bad_year_thresholds_are_reported_not_crashed_on(client, world):
    app, school = world["app"], world["school"]
    with app.app_context(), school_scope(school.id):
        year = db.session.get(SchoolYear, world["year_id"])
        year.completed_min_score = 8  # above the Hoàn thành tốt threshold (7)
        db.session.commit()
    login(client, world["gvcn"])
    response = client.get(_url(world))
    assert response.status_code == 409
    assert "Ngưỡng điểm của năm học 2024-2025 không hợp lệ" in response.get_data(as_text=True)


def test_the_decision_table_filters_and_confirms_the_ticked_rows(client, world):
    app, school, setup = world["app"], world["school"], world["setup"]
    pupils = setup.pupil_ids
    login(client, world["gvcn"])
    page = client.get(_url(world)).get_data(as_text=True)
    # The reason that decides a Chưa hoàn thành comes first, on the pupil's one line.
    row3 = _row(page, pupils[3])
    summary = row3[row3.index("<summary>"):row3.index("</summary>")]
    assert "Chưa đạt Hoàn thành: " in summary and "Toán mức Chưa hoàn thành" in summary
    assert "Còn thiếu 2: Khoa học: thiếu mức đạt được" in _row(page, pupils[4])
    assert 'data-filter="to_confirm"' in page and "Chờ xác nhận (4)" in page and "Chưa hoàn thành (1)" in page

    cht = client.get(_url(world, "?show=cht")).get_data(as_text=True)
    assert f'id="pupil-{pupils[3]}"' in cht and f'id="pupil-{pupils[0]}"' not in cht

    # Two rows ticked (one cannot be confirmed yet): only the agreed, complete one is confirmed.
    response = client.post(_url(world, "/selected"), data={
        "csrf_token": csrf_token(client, _url(world)), "action": "confirm", "show": "to_confirm",
        "pupil_ids": [str(pupils[1]), str(pupils[4])]})
    assert response.status_code == 302 and response.location.endswith("?show=to_confirm")
    assert set(_results(app, school)) == {pupils[1]}
    assert "Đã xác nhận kết quả của 1 học sinh." in client.get(response.location).get_data(as_text=True)
    client.post(_url(world, "/selected"), data={"csrf_token": csrf_token(client, _url(world)), "action": "review",
                                                "pupil_ids": [str(pupils[1]), str(pupils[0])]})
    results = _results(app, school)
    assert results[pupils[1]].results_reviewed_at is not None and pupils[0] not in results

    # Only the class's GVCN acts on it.
    other = world["make"].user(school, Role.HOMEROOM_TEACHER)
    stranger = app.test_client()
    login(stranger, other)
    assert stranger.post(_url(world, "/selected"), data={
        "csrf_token": csrf_token(stranger, "/s/lqd/"), "pupil_ids": [str(pupils[0])]}).status_code == 403


def test_in_english_the_reasons_and_catalogue_names_are_english(client, world):
    login(client, world["gvcn"])
    client.post("/language/en", data={"csrf_token": csrf_token(client, "/s/lqd/")})
    page = client.get(_url(world)).get_data(as_text=True)
    assert "Not Completed with distinction: Mathematics scored 8 (needs 9 or more)" in page
    assert "Mathematics at Not completed" in page and "2 missing: Science: level missing" in page
    assert "Chưa đạt" not in page and "thiếu mức đạt được" not in page


def test_the_page_reads_the_same_results_as_the_actions(client, world):
    """The class page reads plain rows (read_class_results), the actions ORM objects (class_results):
    both must tell the same story of every pupil."""
    app, school, setup = world["app"], world["school"], world["setup"]
    login(client, world["gvcn"])
    _post(client, _url(world, "/confirm"))
    _post(client, _pupil_url(world, 1, "/exemplary"), recognised="y")
    _post(client, _pupil_url(world, 2, "/awards"), awarded_on="09/01/2025", title="Viết chữ đẹp")
    _post(client, _pupil_url(world, 2, "/awards"), awarded_on="20/11/2024", title="Giải Nhì hội thi kể chuyện")
    _post(client, _pupil_url(world, 2, "/review"))
    _post(client, _pupil_url(world, 3, "/supplementary"), note="Kiểm tra lại")
    change_subject(app, school, setup, 0, "toan", level="T", score=8)  # a mismatch
    change_subject(app, school, setup, 1, "toan", level="T", score=7)  # stale only

    def told(entries: list[services.PupilResult]) -> list[tuple[Any, ...]]:
        stored = ("outcome", "computed_outcome", "reasons", "completion", "supplementary_passed", "promoted",
                  "results_reviewed_at")
        return [(e.enrolment.id, e.pupil.id, e.pupil.full_name, e.pupil.personal_plan, e.computed,
                 e.stored and tuple(getattr(e.stored, name) for name in stored),
                 [(a.id, a.title, a.awarded_on) for a in e.awards], [a.id for a in e.titles],
                 [a.id for a in e.adhoc_awards], e.outcome, e.confirmed, e.stale, e.mismatch, e.needs_confirmation,
                 e.reviewed, e.deciding_reason, e.may_review, e.exemplary, e.not_completed, e.awaiting_decision)
                for e in entries]

    with app.app_context(), school_scope(school.id):
        school_class = db.session.get(SchoolClass, setup.class_id)
        read = told(services.read_class_results(school_class))
        assert read == told(services.class_results(school_class))
    assert {row[9] for row in read} >= {EXCELLENT, GOOD, NOT_COMPLETED} and any(row[11] for row in read)
