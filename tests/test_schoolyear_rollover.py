"""Starting the next school year from the last: classes proposed a grade up, pupils placed by their result
and the principal's decision (TT27 Điều 11), transfers dropped; a dry run first that changes nothing."""

from __future__ import annotations

import sqlalchemy as sa

from portal.assessment.models import Enrolment, EnrolmentStatus, Period, SchoolClass, SchoolYear, YearResult
from portal.audit import AuditEntry
from portal.extensions import db
from tenants.scoping import school_scope
from tests.assessment_factory import make_class, make_year


def test_starting_2027_2028_from_2026_2027_promotes_keeps_and_drops_the_right_pupils(app, make):
    school = make.school("lqd")
    year_id = make_year(app, school, name="2026-2027")
    first = make_class(app, school, year_id, "1A", pupils=2)
    fourth = make_class(app, school, year_id, "4A", pupils=3)
    fifth = make_class(app, school, year_id, "5A", pupils=2)
    results = {  # enrolment -> (first result, supplementary passed, principal's decision)
        fourth.enrolment_ids[0]: ("hoan_thanh", None, None),  # up to 5A
        fourth.enrolment_ids[1]: ("chua_hoan_thanh", True, None),  # completed in the summer: up to 5A
        fourth.enrolment_ids[2]: ("chua_hoan_thanh", False, False),  # kept in 4A
        fifth.enrolment_ids[0]: ("hoan_thanh_tot", None, None),  # completes primary school: leaves
        fifth.enrolment_ids[1]: ("chua_hoan_thanh", False, False),  # kept in 5A
        first.enrolment_ids[1]: ("hoan_thanh", None, None),  # but moved to another school: dropped
    }  # first.enrolment_ids[0]: no result yet, waiting
    with app.app_context(), school_scope(school.id):
        for enrolment_id, (outcome, passed, promoted) in results.items():
            db.session.add(YearResult(school_id=school.id, enrolment_id=enrolment_id, outcome=outcome, reasons=[],
                                      supplementary_note="", supplementary_passed=passed, promoted=promoted))
        db.session.get(Enrolment, first.enrolment_ids[1]).status = EnrolmentStatus.TRANSFERRED_OUT
        periods = db.session.scalars(sa.select(Period).where(Period.school_year_id == year_id)).all()
        for period in periods:
            period.entry_opens_on = period.entry_opens_on.replace(year=2026)
            period.entry_closes_on = period.entry_closes_on.replace(year=2026)
        db.session.commit()

    runner = app.test_cli_runner()
    dry = runner.invoke(args=["schoolyear", "start-next", "--school", "lqd"])
    assert dry.exit_code == 0, dry.output
    assert "Dry run: 2027-2028 from 2026-2027" in dry.output and "Nothing changed" in dry.output
    assert "2 promoted" in dry.output and "2 kept in their grade" in dry.output and "1 leaving" in dry.output
    assert "1 dropped" in dry.output and "1 waiting" in dry.output
    with app.app_context(), school_scope(school.id):
        assert db.session.scalar(sa.select(sa.func.count()).select_from(SchoolYear)) == 1

    done = runner.invoke(args=["schoolyear", "start-next", "--school", "lqd", "--apply"])
    assert done.exit_code == 0, done.output
    assert "Started 2027-2028 from 2026-2027" in done.output
    with app.app_context(), school_scope(school.id):
        year = db.session.scalar(sa.select(SchoolYear).where(SchoolYear.name == "2027-2028"))
        assert (year.starts_on.isoformat(), year.ends_on.isoformat()) == ("2027-09-05", "2028-05-31")
        assert {p.code: p.entry_opens_on.year for p in year.periods} == {"GHK1": 2027, "CHK1": 2027, "GHK2": 2027,
                                                                          "CN": 2027}
        placed = db.session.execute(sa.select(SchoolClass.name, Enrolment.pupil_id).join(
            Enrolment, Enrolment.class_id == SchoolClass.id).where(SchoolClass.school_year_id == year.id)).all()
        classes = {c.name: c.homeroom_teacher_id for c in year.classes}
        audit = db.session.scalar(sa.select(AuditEntry).where(AuditEntry.action == "school_year.started_from"))
    assert classes == {"1A": None, "2A": None, "4A": None, "5A": None}  # teachers to assign
    assert sorted(placed) == sorted([
        ("5A", fourth.pupil_ids[0]), ("5A", fourth.pupil_ids[1]), ("4A", fourth.pupil_ids[2]),
        ("5A", fifth.pupil_ids[1])])
    assert audit.changes["undecided"] == [first.pupil_ids[0]]

    again = runner.invoke(args=["schoolyear", "start-next", "--school", "lqd", "--from", "2026-2027", "--apply"])
    assert again.exit_code != 0 and "2027-2028" in again.output  # a year is started once


def test_the_years_score_thresholds_are_changed_by_command_audited_and_checked(app, make):
    school = make.school("lqd")
    make_year(app, school, name="2026-2027")
    runner = app.test_cli_runner()
    shown = runner.invoke(args=["schoolyear", "thresholds", "--school", "lqd", "--year", "2026-2027"])
    assert "Hoàn thành xuất sắc >= 9, Hoàn thành tốt >= 7, Hoàn thành >= 5" in shown.output
    changed = runner.invoke(args=["schoolyear", "thresholds", "--school", "lqd", "--year", "2026-2027",
                                  "--completed", "4"])
    assert changed.exit_code == 0 and "Hoàn thành >= 4" in changed.output
    refused = runner.invoke(args=["schoolyear", "thresholds", "--school", "lqd", "--year", "2026-2027",
                                  "--good", "10"])
    assert refused.exit_code != 0 and "tăng dần" in refused.output
    with app.app_context(), school_scope(school.id):
        year = db.session.scalar(sa.select(SchoolYear))
        entries = db.session.scalars(sa.select(AuditEntry).where(AuditEntry.action == "school_year.thresholds_set"))
        assert (year.excellent_min_score, year.good_min_score, year.completed_min_score) == (9, 7, 4)
        assert [e.changes for e in entries] == [{"completed": [5, 4]}]


def test_the_district_copies_its_plan_to_the_new_year_a_year_on(app, make, client):
    from datetime import date

    from portal.compliance import services
    from portal.compliance.models import Milestone
    from tenants.models import District
    from tenants.roles import Role
    from tenants.scoping import all_schools
    from tests.conftest import csrf_token, login

    admin = make.user(None, username="phong.admin", district_role=Role.DISTRICT_ADMIN)
    with app.app_context(), all_schools():
        services.seed_plan(db.session.scalar(sa.select(District)), actor=None, year_label="2026-2027")
        db.session.commit()
    login(client, admin)
    token = csrf_token(client, "/district/compliance/plan?year=2026-2027")
    response = client.post("/district/compliance/plan/copy", data={
        "csrf_token": token, "source": "2026-2027", "target": "2027-2028", "shift_days": "0"})
    assert response.status_code == 302
    with app.app_context(), all_schools():
        deadlines = dict(db.session.execute(sa.select(Milestone.position, Milestone.deadline).where(
            Milestone.year_label == "2027-2028")).all())
        before = dict(db.session.execute(sa.select(Milestone.position, Milestone.deadline).where(
            Milestone.year_label == "2026-2027")).all())
    # The seed's dates are 2025's; the copy is each of the source's dates, the same day a year later.
    assert deadlines == {n: day.replace(year=day.year + 1) for n, day in before.items()}
    assert deadlines[1] == date(2026, 3, 28)  # seeded as the domain brief's dates


def test_the_principal_sees_the_proposal_then_starts_the_year(app, make, client):
    from tenants.roles import Role
    from tests.conftest import csrf_token, login

    school = make.school("lqd")
    principal = make.user(school, Role.PRINCIPAL)
    year_id = make_year(app, school, name="2026-2027")
    setup = make_class(app, school, year_id, "4A", pupils=2)
    with app.app_context(), school_scope(school.id):
        db.session.add(YearResult(school_id=school.id, enrolment_id=setup.enrolment_ids[0], outcome="hoan_thanh",
                                  reasons=[], supplementary_note=""))
        db.session.commit()
    login(client, principal)
    page = client.get(f"/s/lqd/years/{year_id}/next").get_data(as_text=True)
    assert "2027-2028" in page and "Lên lớp: 1" in page and "chưa xếp lớp: 1" in page
    with app.app_context(), school_scope(school.id):
        assert db.session.scalar(sa.select(sa.func.count()).select_from(SchoolYear)) == 1  # a dry run
    token = csrf_token(client, f"/s/lqd/years/{year_id}/next")
    response = client.post(f"/s/lqd/years/{year_id}/next", data={"csrf_token": token})
    assert response.status_code == 302
    with app.app_context(), school_scope(school.id):
        placed = db.session.execute(sa.select(SchoolClass.name, Enrolment.pupil_id).join(Enrolment).join(
            SchoolYear, SchoolYear.id == SchoolClass.school_year_id).where(SchoolYear.name == "2027-2028")).all()
    assert placed == [("5A", setup.pupil_ids[0])]
    assert client.post(f"/s/lqd/years/{year_id}/next").status_code == 400  # no CSRF token, no change
