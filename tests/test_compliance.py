"""The compliance board: the cell status rule, a small district with known data, the pages around it."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa
from flask import Flask
from openpyxl import load_workbook

from portal.assessment.models import Enrolment
from portal.audit import AuditEntry
from portal.compliance import services
from portal.compliance.measures import Cell, CellState, cell_status
from portal.compliance.models import Evidence, EvidenceStatus, Milestone, Notice, ProgressSnapshot, Scope
from portal.extensions import db
from portal.jobs import JobRun
from tenants.models import District, School, User
from tenants.roles import Role
from tenants.scoping import all_schools, school_scope
from tests.assessment_factory import make_class, make_year
from tests.compliance_factory import make_evidence, make_milestone, make_training, review_identity, review_results
from tests.conftest import Factory, csrf_token, finish_jobs, login

DEADLINE = date(2025, 5, 16)
TODAY = date(2025, 5, 20)


# --- the status rule, without a database --------------------------------------------------------------------

def status(**kwargs: object) -> Cell:
    values = {"deadline": DEADLINE, "today": TODAY, "measurable": True, "done": 0, "total": 10}
    return cell_status(**{**values, **kwargs})  # type: ignore[arg-type]


def test_done_on_the_deadline_day_is_on_time_and_a_day_later_is_late():
    on_time = status(done=10, completed_on=DEADLINE)
    assert on_time.state is CellState.DONE_ON_TIME and on_time.completed_on == DEADLINE and on_time.percent == 100
    late = status(done=10, completed_on=DEADLINE + timedelta(days=1))
    assert late.state is CellState.DONE_LATE and late.days_late == 1


def test_a_deadline_in_the_past_with_99_percent_is_overdue_and_never_rounds_up():
    cell = status(done=199, total=200)
    assert cell.state is CellState.OVERDUE and cell.percent == 99 and cell.days_late == 4


def test_the_deadline_day_itself_is_not_yet_overdue():
    assert status(done=5, today=DEADLINE).state is CellState.IN_PROGRESS
    assert status(done=0, today=DEADLINE).state is CellState.NOT_STARTED
    assert status(done=0, today=DEADLINE + timedelta(days=1)).state is CellState.OVERDUE


def test_nobody_in_scope_and_not_measurable_show_no_number():
    empty = status(total=0)
    assert empty.state is CellState.NO_ONE_IN_SCOPE and empty.percent is None
    unknown = status(measurable=False, done=10)
    assert unknown.state is CellState.NOT_MEASURABLE and unknown.percent is None


def test_forecast_at_the_pace_of_the_snapshots():
    # 2 done ten days ago, 6 today: 0.4 a day; 4 left take 10 days.
    cell = status(today=date(2025, 5, 6), done=6, history=[(date(2025, 4, 26), 2), (date(2025, 5, 1), 4)])
    assert cell.state is CellState.IN_PROGRESS and cell.forecast_on == date(2025, 5, 16) and not cell.at_risk
    slower = status(today=date(2025, 5, 6), done=6, history=[(date(2025, 4, 26), 5)])
    assert slower.forecast_on == date(2025, 5, 6) + timedelta(days=40) and slower.at_risk
    assert status(today=date(2025, 5, 6), done=6).forecast_on is None  # no history, no pace
    assert status(today=date(2025, 5, 6), done=6, history=[(date(2025, 5, 1), 6)]).forecast_on is None  # no progress
    # Points older than the pace window are not used.
    assert status(today=date(2025, 5, 6), done=6, history=[(date(2025, 4, 1), 0)]).forecast_on is None


def test_evidence_returned_or_awaiting_review():
    returned = status(total=1, returned=True)
    assert returned.state is CellState.OVERDUE and returned.returned
    waiting = status(total=1, awaiting_review=True)
    assert waiting.state is CellState.IN_PROGRESS and waiting.awaiting_review and waiting.forecast_on is None


# --- a small district with known data ------------------------------------------------------------------------


def local(day: date, hour: int) -> datetime:
    """A moment given in Hồ Chí Minh City time (UTC+7), as stored (UTC)."""
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC) - timedelta(hours=7)


@dataclass
class District3:
    a: School  # reviews done on the deadline day (23:00 local), staff trained, evidence accepted
    b: School  # no pupils at all, evidence returned
    c: School  # 100 pupils in 5A-5D: 99 with reviewed results; evidence waiting for the district
    principal_a: User
    officer: User
    admin: User
    m: dict[str, int]  # milestone ids
    a_missing_result_pupil: int


@pytest.fixture
def district3(app: Flask, make: Factory, monkeypatch: pytest.MonkeyPatch) -> District3:
    monkeypatch.setattr(services, "today_local", lambda: TODAY)
    a, b, c = (make.school("truong-a", "Trường Tiểu học An"), make.school("truong-b", "Trường Tiểu học Bình"),
               make.school("truong-c", "Trường Tiểu học Cần Giờ"))
    principal_a = make.user(a, Role.PRINCIPAL, username="ht.a")
    teacher_a = make.user(a, Role.HOMEROOM_TEACHER, username="gv.a")
    make.user(a, Role.SCHOOL_IT, username="cntt.a")  # not counted as staff to train
    make.user(c, Role.PRINCIPAL, username="ht.c", full_name="Hiệu Trưởng Cần Giờ")
    teacher_c = make.user(c, Role.SUBJECT_TEACHER, username="gv.c")
    officer = make.user(None, username="phong.cv", district_role=Role.DISTRICT_OFFICER)
    admin = make.user(None, username="phong.admin", district_role=Role.DISTRICT_ADMIN)
    m = {
        "evidence": make_milestone(app, measure="evidence", scope=Scope.STAFF, deadline=date(2025, 3, 28), phase=1),
        "trained": make_milestone(app, measure="staff_trained", scope=Scope.STAFF, deadline=date(2025, 5, 2), phase=2),
        "identity": make_milestone(app, measure="identity_reviewed", scope=Scope.ALL, deadline=DEADLINE),
        "results": make_milestone(app, measure="results_reviewed", scope=Scope.GRADE_5, deadline=date(2025, 5, 19)),
        "issued": make_milestone(app, measure="records_issued", scope=Scope.GRADE_5, deadline=date(2025, 5, 30)),
        "uploaded": make_milestone(app, measure="records_uploaded", scope=Scope.GRADE_5, deadline=date(2025, 6, 20)),
        "returned": make_milestone(app, measure="records_returned", scope=Scope.GRADE_5, deadline=date(2025, 8, 15)),
        "issued_1_4": make_milestone(app, measure="records_issued", scope=Scope.GRADES_1_4,
                                     deadline=date(2025, 7, 25)),
    }
    year_a = make_year(app, a)
    class_a = make_class(app, a, year_a, "5A", pupils=4)
    review_identity(app, a, class_a.pupil_ids, local(DEADLINE, 23))  # 16:00 UTC, still the 16th in the city
    review_results(app, a, class_a.enrolment_ids[:3], local(date(2025, 5, 18), 9))
    make_training(app, a, date(2025, 4, 20), [principal_a.id])
    make_training(app, a, date(2025, 4, 29), [principal_a.id, teacher_a.id])
    make_evidence(app, a, m["evidence"], EvidenceStatus.ACCEPTED, date(2025, 3, 20))

    make_year(app, b)  # a year, but no class and no pupil
    make_evidence(app, b, m["evidence"], EvidenceStatus.RETURNED, date(2025, 3, 25), comment="Thiếu chữ ký")

    year_c = make_year(app, c)
    classes_c = [make_class(app, c, year_c, name, pupils=25) for name in ("5A", "5B", "5C", "5D")]
    pupils_c = [p for setup in classes_c for p in setup.pupil_ids]
    review_identity(app, c, pupils_c[:50], local(date(2025, 5, 10), 10))
    review_results(app, c, [e for setup in classes_c for e in setup.enrolment_ids][:99], local(date(2025, 5, 15), 10))
    make_training(app, c, date(2025, 4, 20), [teacher_c.id])
    make_evidence(app, c, m["evidence"], EvidenceStatus.SUBMITTED, date(2025, 3, 27))
    with app.app_context(), all_schools():  # what the scheduled count does, for the board page
        services.refresh_counts(db.session.scalar(sa.select(District)), "2024-2025", TODAY)
        db.session.commit()
    return District3(a, b, c, principal_a, officer, admin, m, class_a.pupil_ids[3])


def board_of(app: Flask) -> services.Board:
    with app.app_context(), all_schools():
        district = db.session.scalar(sa.select(District))
        return services.build_board(district, "2024-2025", TODAY)


def test_every_cell_of_the_small_district(app: Flask, district3: District3) -> None:
    board = board_of(app)
    m, a, b, c = district3.m, district3.a, district3.b, district3.c

    def cell(school: School, key: str) -> Cell:
        return board.cells[(school.id, m[key])]

    # Evidence: accepted (on time, dated by the school's decision), returned (overdue), waiting.
    assert cell(a, "evidence").state is CellState.DONE_ON_TIME and cell(a, "evidence").completed_on == date(2025, 3, 20)
    assert cell(b, "evidence").state is CellState.OVERDUE and cell(b, "evidence").returned
    assert cell(c, "evidence").state is CellState.IN_PROGRESS and cell(c, "evidence").awaiting_review
    # Training: A's two staff by 29/04 (the IT member is not counted); C 1 of 2; B has no staff.
    assert (cell(a, "trained").state, cell(a, "trained").completed_on) == (CellState.DONE_ON_TIME, date(2025, 4, 29))
    assert (cell(c, "trained").state, cell(c, "trained").percent) == (CellState.OVERDUE, 50)
    assert cell(b, "trained").state is CellState.NO_ONE_IN_SCOPE
    # Identity: A done on the deadline day itself (23:00 local is 16:00 UTC); C half; B nobody.
    assert (cell(a, "identity").state, cell(a, "identity").completed_on) == (CellState.DONE_ON_TIME, DEADLINE)
    assert (cell(c, "identity").state, cell(c, "identity").done, cell(c, "identity").total) == (
        CellState.OVERDUE, 50, 100)
    assert cell(b, "identity").state is CellState.NO_ONE_IN_SCOPE and cell(b, "identity").percent is None
    # Results: the deadline passed with 99% at C, 75% at A.
    assert (cell(c, "results").state, cell(c, "results").percent) == (CellState.OVERDUE, 99)
    assert (cell(a, "results").state, cell(a, "results").percent) == (CellState.OVERDUE, 75)
    # Not measurable: never a number.
    assert cell(a, "returned").state is CellState.NOT_MEASURABLE and cell(a, "returned").percent is None
    assert cell(a, "uploaded").state is CellState.NOT_STARTED and cell(a, "uploaded").total == 4
    assert cell(a, "issued").state is CellState.NOT_STARTED and cell(a, "issued").total == 4
    assert cell(a, "issued_1_4").state is CellState.NO_ONE_IN_SCOPE  # grades 1-4: nobody at A


def test_done_a_minute_after_local_midnight_is_a_day_late(app: Flask, district3: District3) -> None:
    with app.app_context(), school_scope(district3.a.id):
        for pupil in db.session.scalars(sa.select(services.Pupil)):
            pupil.identity_reviewed_at = local(DEADLINE + timedelta(days=1), 0) + timedelta(minutes=1)
        db.session.commit()
    cell = board_of(app).cells[(district3.a.id, district3.m["identity"])]
    assert (cell.state, cell.days_late) == (CellState.DONE_LATE, 1)


def test_the_board_costs_the_same_few_queries_for_any_number_of_schools(app: Flask, district3: District3,
                                                                       make: Factory) -> None:
    def queries() -> int:
        statements: list[str] = []

        def count(conn: object, cursor: object, statement: str, *args: object) -> None:
            if "set_config" not in statement and "current_setting" not in statement:  # PostgreSQL settings
                statements.append(statement)

        with app.app_context():
            sa.event.listen(db.engine, "before_cursor_execute", count)
            try:
                board_of(app)
            finally:
                sa.event.remove(db.engine, "before_cursor_execute", count)
        return len(statements)

    few = queries()
    for n in range(5):
        school = make.school(f"them{n}")
        make_class(app, school, make_year(app, school), "3A", pupils=3)
    assert queries() == few <= 8


def test_missing_pupils_and_staff_are_named(app: Flask, district3: District3) -> None:
    with app.app_context(), school_scope(district3.a.id):
        district = db.session.scalar(sa.select(District))
        lines = {line.milestone.id: line for line in services.school_progress(district, district3.a, "2024-2025",
                                                                              TODAY)}
    results = lines[district3.m["results"]].missing
    assert [(g.label, [p[0] for p in g.people]) for g in results] == [("5A", [district3.a_missing_result_pupil])]
    assert lines[district3.m["trained"]].missing == []
    with app.app_context(), school_scope(district3.c.id):
        c_lines = services.school_progress(district, district3.c, "2024-2025", TODAY)
    trained = next(line for line in c_lines if line.milestone.id == district3.m["trained"])
    assert [name for _id, name in trained.missing[0].people] == ["Hiệu Trưởng Cần Giờ"]


# --- pages --------------------------------------------------------------------------------------------------


def test_district_board_filters_exports_and_prints(app: Flask, client, district3: District3) -> None:
    login(client, district3.officer)
    page = client.get("/district/compliance/").get_data(as_text=True)
    assert all(s.name in page for s in (district3.a, district3.b, district3.c))
    assert "Chưa đo được" in page and "99%" in page
    overdue = client.get("/district/compliance/?state=overdue&phase=1").get_data(as_text=True)
    assert 'data-school="truong-b"' in overdue
    assert 'data-school="truong-a"' not in overdue and 'data-school="truong-c"' not in overdue
    workbook = load_workbook(io.BytesIO(client.get("/district/compliance/board.xlsx").data))
    rows = list(workbook.active.iter_rows(values_only=True))
    assert [r[0] for r in rows[2:]] == sorted(s.name for s in (district3.a, district3.b, district3.c))
    assert client.get("/district/compliance/print").status_code == 200
    chart = client.get(f"/district/compliance/milestones/{district3.m['results']}").get_data(as_text=True)
    assert "<svg" in chart and "<polyline" in chart and district3.c.name in chart
    detail = client.get(f"/district/compliance/schools/truong-c?m={district3.m['results']}").get_data(as_text=True)
    assert 'id="missing"' in detail and "5D: 1 học sinh chưa rà soát kết quả" in detail


def test_the_board_page_reads_the_stored_count_and_asks_for_a_new_one(app: Flask, client, make: Factory,
                                                                      district3: District3, monkeypatch) -> None:
    monkeypatch.setattr(services, "LIVE_SCHOOLS", 2)  # a city: too many schools to count on every opening
    late = make.school("truong-moi", "Trường Tiểu học Mới Mở")  # opened after the last count
    login(client, district3.officer)
    page = client.get("/district/compliance/").get_data(as_text=True)
    # A count is missing: the page asks for a new one itself, in the background, and says so.
    assert 'data-school="truong-moi"' in page and 'data-state="not_counted"' in page
    assert "Đang cập nhật số liệu" in page and "data-reload-after" in page
    with app.app_context():
        asked = list(db.session.scalars(sa.select(JobRun.id).where(JobRun.kind == "compliance.snapshot")))
    assert len(asked) == 1
    finish_jobs(app, asked)
    # A's last result is reviewed after the count: counted live at once, on the stored board after a recount.
    with app.app_context(), school_scope(district3.a.id):
        enrolment = db.session.scalar(sa.select(Enrolment.id).where(
            Enrolment.pupil_id == district3.a_missing_result_pupil))
    review_results(app, district3.a, [enrolment], local(TODAY, 8))
    results = (district3.a.id, district3.m["results"])
    assert board_of(app).cells[results].state is CellState.DONE_LATE
    assert stored_board(app).cells[results].state is CellState.OVERDUE
    token = csrf_token(client, "/district/compliance/")
    assert client.post("/district/compliance/refresh", data={"csrf_token": token}).status_code == 302
    with app.app_context():
        runs = list(db.session.scalars(sa.select(JobRun.id).where(JobRun.kind == "compliance.snapshot")))
    assert len(runs) == 2  # the page's own, and the one asked for now
    finish_jobs(app, runs)
    board = stored_board(app)
    assert board.cells[results].state is CellState.DONE_LATE and board.cells[results].days_late == 1
    assert board.cells[(late.id, district3.m["identity"])].state is CellState.NO_ONE_IN_SCOPE
    assert 'data-state="not_counted"' not in client.get("/district/compliance/").get_data(as_text=True)


def stored_board(app: Flask) -> services.Board:
    with app.app_context(), all_schools():
        return services.build_board(db.session.scalar(sa.select(District)), "2024-2025", TODAY, live=False)


def test_school_sees_only_its_own_progress_and_files(app: Flask, client, make: Factory, district3: District3) -> None:
    login(client, district3.principal_a)
    page = client.get("/s/truong-a/compliance/").get_data(as_text=True)
    assert "5A: 1 học sinh chưa rà soát kết quả" in page and district3.c.name not in page
    assert client.get("/s/truong-c/compliance/").status_code == 403
    with app.app_context(), all_schools():
        c_file = db.session.scalar(sa.select(Evidence.id).where(Evidence.school_id == district3.c.id))
        a_file = db.session.scalar(sa.select(Evidence.id).where(Evidence.school_id == district3.a.id))
    assert client.get(f"/s/truong-a/compliance/evidence/{a_file}").status_code == 200
    assert client.get(f"/s/truong-a/compliance/evidence/{c_file}").status_code == 404


def test_evidence_is_sent_returned_with_a_comment_and_sent_again(app: Flask, client, district3: District3) -> None:
    login(client, district3.principal_a)
    token = csrf_token(client, "/s/truong-a/compliance/evidence")
    milestone = make_milestone(app, measure="evidence", scope=Scope.STAFF, deadline=date(2025, 5, 2), phase=2)
    response = client.post("/s/truong-a/compliance/evidence", data={
        "csrf_token": token, "milestone_id": str(milestone), "done_on": "30/04/2025", "note": "Quyết định số 12",
        "file": (io.BytesIO(b"%PDF-1.4 quyet dinh"), "quyet-dinh.pdf")}, content_type="multipart/form-data")
    assert response.status_code == 302
    with app.app_context(), all_schools():
        item = db.session.scalar(sa.select(Evidence).where(Evidence.milestone_id == milestone))
        assert (item.status, item.done_on) == (EvidenceStatus.SUBMITTED, date(2025, 4, 30))
        assert item.note == "Quyết định số 12"
        item_id = item.id
    assert board_of(app).cells[(district3.a.id, milestone)].awaiting_review

    admin = app.test_client()
    login(admin, district3.admin)
    token = csrf_token(admin, "/district/compliance/schools/truong-a")
    assert admin.get(f"/district/compliance/evidence/{item_id}").data == b"%PDF-1.4 quyet dinh"
    # Returning needs a reason.
    admin.post(f"/district/compliance/evidence/{item_id}", data={"csrf_token": token, "verdict": "return"})
    with app.app_context(), all_schools():
        assert db.session.get(Evidence, item_id).status is EvidenceStatus.SUBMITTED
    admin.post(f"/district/compliance/evidence/{item_id}",
               data={"csrf_token": token, "verdict": "return", "comment": "Thiếu dấu"})
    with app.app_context(), all_schools():
        assert db.session.get(Evidence, item_id).status is EvidenceStatus.RETURNED
        actions = set(db.session.scalars(sa.select(AuditEntry.action).where(AuditEntry.object_id == str(item_id))))
    assert {"evidence.submitted", "evidence.returned"} <= actions
    assert "Thiếu dấu" in client.get("/s/truong-a/compliance/evidence").get_data(as_text=True)
    cell = board_of(app).cells[(district3.a.id, milestone)]
    assert cell.returned and cell.state is CellState.OVERDUE


def test_reminder_reaches_the_principal_until_read(app: Flask, client, district3: District3) -> None:
    admin = app.test_client()
    login(admin, district3.admin)
    token = csrf_token(admin, "/district/compliance/schools/truong-a")
    response = admin.post("/district/compliance/schools/truong-a/remind", data={
        "csrf_token": token, "milestone_id": str(district3.m["results"]), "message": "Rà soát nốt lớp 5A"})
    assert response.status_code == 302
    login(client, district3.principal_a)
    home = client.get("/s/truong-a/").get_data(as_text=True)
    assert "Rà soát nốt lớp 5A" in home
    client.post("/s/truong-a/compliance/notices/read", data={"csrf_token": csrf_token(client, "/s/truong-a/")})
    assert "Rà soát nốt lớp 5A" not in client.get("/s/truong-a/").get_data(as_text=True)
    with app.app_context(), all_schools():
        assert db.session.scalar(sa.select(Notice.read_by_id)) == district3.principal_a.id


def test_training_recorded_over_http_counts(app: Flask, client, make: Factory, district3: District3) -> None:
    login(client, district3.principal_a)
    outsider = make.user(district3.c, Role.HOMEROOM_TEACHER, username="gv.khac")
    with app.app_context(), all_schools():
        teacher = db.session.scalar(sa.select(User).where(User.username == "gv.a"))
    token = csrf_token(client, "/s/truong-a/compliance/training")
    data = {"csrf_token": token, "held_on": "02/05/2025", "topic": "Ký số", "trainer": "Sở GD&ĐT"}
    client.post("/s/truong-a/compliance/training", data={**data, "attendees": [str(outsider.id)]})
    with app.app_context(), all_schools():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(services.TrainingSession)) == 3
    assert client.post("/s/truong-a/compliance/training", data={**data, "attendees": [str(teacher.id)]}
                       ).status_code == 302
    with app.app_context(), all_schools():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(services.TrainingSession)) == 4


def test_plan_is_seeded_once_copied_and_shifted(app: Flask, district3: District3) -> None:
    with app.app_context(), all_schools():
        district = db.session.scalar(sa.select(District))
        assert services.seed_plan(district, actor=None, year_label="2023-2024") == 17
        assert services.seed_plan(district, actor=None, year_label="2023-2024") == 0
        assert services.copy_plan(district, "2023-2024", "2025-2026", shift_days=364, actor=None) == 17
        db.session.commit()
        new = services.plan(district, "2025-2026")
        assert new[0].deadline == date(2026, 3, 27) and new[0].title == services.plan(district, "2023-2024")[0].title
        with pytest.raises(services.PlanError):
            services.copy_plan(district, "2023-2024", "2025-2026", shift_days=0, actor=None)
        services.shift_plan(district, "2025-2026", days=1, actor=None)
        assert services.plan(district, "2025-2026")[0].deadline == date(2026, 3, 28)
        with pytest.raises(services.PlanError):  # a staff measure cannot count pupils
            services.add_milestone(district, "2025-2026", phase=2, title="x", deadline=TODAY, scope=Scope.ALL,
                                   measure="staff_trained", actor=None)


def test_snapshots_are_idempotent_and_feed_the_forecast(app: Flask, district3: District3) -> None:
    with app.app_context(), all_schools():
        district = db.session.scalar(sa.select(District))
        early = date(2025, 5, 8)
        first = services.take_snapshot(district, "2024-2025", early)
        again = services.take_snapshot(district, "2024-2025", early)
        db.session.commit()
        assert first == again > 0
        assert db.session.scalar(sa.select(sa.func.count()).select_from(ProgressSnapshot).where(
            ProgressSnapshot.taken_on == early)) == first
        # C had 0 of 100 identities reviewed on 01/05; 50 on 08/05: 50 left at ~7 a day.
        milestone = db.session.get(Milestone, district3.m["identity"])
        db.session.add(ProgressSnapshot(school_id=district3.c.id, milestone_id=milestone.id,
                                        taken_on=date(2025, 5, 1), done=0, total=100))
        db.session.commit()
        board = services.build_board(district, "2024-2025", early)
    cell = board.cells[(district3.c.id, milestone.id)]
    assert cell.state is CellState.IN_PROGRESS and cell.forecast_on == early + timedelta(days=7)


def test_certificates_and_seal_count_when_the_registry_exists(app: Flask, make: Factory, district3: District3) -> None:
    from tenants.certificates import KeyKind, PersonCertificate, SealCertificate

    certs = make_milestone(app, measure="staff_certificates", scope=Scope.STAFF, deadline=date(2025, 5, 2))
    seal = make_milestone(app, measure="seal_registered", scope=Scope.STAFF, deadline=date(2025, 5, 2))
    valid = {"not_before": datetime(2025, 1, 1, tzinfo=UTC), "not_after": datetime(2027, 1, 1, tzinfo=UTC),
             "issuer": "CN=CA", "serial": "01", "certificate": b"der", "key_kind": next(iter(KeyKind)),
             "created_at": local(date(2025, 4, 28), 9)}
    with app.app_context(), all_schools():
        teacher = db.session.scalar(sa.select(User).where(User.username == "gv.a"))
        teacher_name = teacher.full_name
        db.session.add(PersonCertificate(user_id=district3.principal_a.id, school_id=district3.a.id,
                                         common_name="HT", subject="CN=HT", fingerprint="a" * 64, **valid))
        expired = {**valid, "not_after": datetime(2025, 5, 1, tzinfo=UTC)}
        db.session.add(PersonCertificate(user_id=teacher.id, school_id=district3.a.id, common_name="GV",
                                         subject="CN=GV", fingerprint="b" * 64, **expired))
        db.session.add(SealCertificate(school_id=district3.a.id, common_name="Trường An", subject="CN=Trường An",
                                       fingerprint="c" * 64, **valid))
        db.session.commit()
    board = board_of(app)
    a_certs, a_seal = board.cells[(district3.a.id, certs)], board.cells[(district3.a.id, seal)]
    assert (a_certs.state, a_certs.done, a_certs.total) == (CellState.OVERDUE, 1, 2)  # the teacher's has expired
    assert (a_seal.state, a_seal.completed_on) == (CellState.DONE_ON_TIME, date(2025, 4, 28))
    assert board.cells[(district3.c.id, seal)].state is CellState.OVERDUE
    with app.app_context(), school_scope(district3.a.id):
        milestone = db.session.get(Milestone, certs)
        assert [name for _id, name in services.missing(district3.a, milestone, TODAY)[0].people] == [teacher_name]


def test_records_issued_and_acknowledged_by_the_city_are_counted(app: Flask, district3: District3) -> None:
    from portal.interop.models import CityUpload, UploadKind, UploadState
    from portal.records.models import RecordStatus, RecordVersion
    from tests.assessment_factory import ClassSetup
    from tests.records_factory import insert_version

    a = district3.a
    with app.app_context(), school_scope(a.id):
        rows = db.session.execute(sa.select(Enrolment.pupil_id, Enrolment.school_year_id, Enrolment.class_id)
                                  .order_by(Enrolment.pupil_id)).all()
    setup = ClassSetup(a.id, rows[0].school_year_id, rows[0].class_id, {}, {}, [], [r.pupil_id for r in rows])
    issued = [insert_version(app, a, setup, pupil_index=n, status=RecordStatus.ISSUED) for n in (0, 1)]
    with app.app_context(), school_scope(a.id):
        version = db.session.get(RecordVersion, issued[0])
        version.issued_at = local(date(2025, 5, 18), 10)
        db.session.get(RecordVersion, issued[1]).issued_at = local(date(2025, 5, 19), 10)
        db.session.add(CityUpload(school_id=a.id, record_version_id=version.id, kind=UploadKind.UPLOAD,
                                  record_code=version.code, school_year_id=version.school_year_id, grade=5,
                                  state=UploadState.ACKNOWLEDGED, receipt_number="TP-0001",
                                  acknowledged_at=local(date(2025, 5, 19), 15)))
        db.session.commit()
    with app.app_context(), all_schools():
        services.refresh_counts(db.session.scalar(sa.select(District)), "2024-2025", TODAY)
        db.session.commit()
    board = board_of(app)
    issued_cell = board.cells[(a.id, district3.m["issued"])]
    uploaded_cell = board.cells[(a.id, district3.m["uploaded"])]
    assert (issued_cell.state, issued_cell.done, issued_cell.total) == (CellState.IN_PROGRESS, 2, 4)
    assert (uploaded_cell.state, uploaded_cell.done, uploaded_cell.total) == (CellState.IN_PROGRESS, 1, 4)
    with app.app_context(), school_scope(a.id):
        missing = services.missing(db.session.get(School, a.id), db.session.get(Milestone, district3.m["uploaded"]),
                                   TODAY)
    assert sorted(pid for group in missing for pid, _name in group.people) == [r.pupil_id for r in rows[1:]]


def test_evidence_that_is_not_a_pdf_image_or_office_document_is_refused(app: Flask, client,
                                                                       district3: District3) -> None:
    login(client, district3.principal_a)
    token = csrf_token(client, "/s/truong-a/compliance/evidence")
    milestone = make_milestone(app, measure="evidence", scope=Scope.STAFF, deadline=date(2025, 5, 2), phase=2)
    response = client.post("/s/truong-a/compliance/evidence", data={
        "csrf_token": token, "milestone_id": str(milestone), "done_on": "30/04/2025", "note": "",
        "file": (io.BytesIO(b"<!doctype html><script>alert(1)</script>"), "quyet-dinh.pdf")},
        content_type="multipart/form-data")
    assert response.status_code == 200
    assert "Chỉ nhận minh chứng là tệp PDF" in response.get_data(as_text=True)
    with app.app_context(), all_schools():
        assert db.session.scalar(sa.select(Evidence).where(Evidence.milestone_id == milestone)) is None


def test_board_print_and_drill_down_agree_right_after_a_change(app: Flask, client, district3: District3) -> None:
    """A district is counted live on every opening: no stale figure beside a drill-down that says otherwise."""
    login(client, district3.officer)
    with app.app_context(), school_scope(district3.a.id):
        enrolment = db.session.scalar(sa.select(Enrolment.id).where(
            Enrolment.pupil_id == district3.a_missing_result_pupil))
    review_results(app, district3.a, [enrolment], local(TODAY, 8))  # the change, after the last stored count
    line = district3.m["results"]

    board = client.get("/district/compliance/").get_data(as_text=True)
    assert "Đang cập nhật" not in board and "Số liệu học sinh, cán bộ đếm lúc" in board
    order = [int(n) for n in re.findall(r'href="/district/compliance/milestones/(\d+)"', board)]
    row = board[board.index('<tr data-school="truong-a">'):]
    board_state = re.findall(r'data-state="(\w+)"', row[:row.index("</tr>")])[order.index(line)]
    printed = client.get("/district/compliance/print").get_data(as_text=True)
    row = printed[printed.index("<td>Trường Tiểu học An</td>"):]
    printed_cell = re.findall(r'<td class="st-(\w+)">([^<]*)</td>', row[:row.index("</tr>")])[order.index(line)]
    detail = client.get("/district/compliance/schools/truong-a").get_data(as_text=True)
    detail_state = re.search(r'data-state="(\w+)"', detail[detail.index(f'<tr id="m{line}"'):]).group(1)
    assert board_state == printed_cell[0] == detail_state == "done_late"
    assert printed_cell[1].startswith("Trễ 1 ngày") and "số liệu học sinh, cán bộ đếm lúc" in printed
