"""The plan, the counting behind the board, evidence, training, reminders and snapshots.

The board counts every school in a handful of GROUP BY queries, whatever the number of schools: one
over the pupils in scope (per school and grade), one over the staff, one over the newest evidence,
one over the snapshots the forecasts need. Services take the district or school and the acting user
as arguments and never read the request.
"""

from __future__ import annotations

import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from flask_babel import gettext as _
from sqlalchemy.orm import contains_eager

from portal import audit, uploads
from portal.assessment.models import Enrolment, EnrolmentStatus, Pupil, SchoolClass, SchoolYear, YearResult
from portal.audit import AuditEntry
from portal.collation import name_key
from portal.compliance.measures import REGISTRY, Cell, CellState, Counts, cell_status
from portal.compliance.models import (
    Evidence,
    EvidenceStatus,
    Milestone,
    Notice,
    ProgressSnapshot,
    Scope,
    TrainingAttendance,
    TrainingSession,
)
from portal.extensions import db, utcnow
from portal.i18n import local_zone
from portal.interop.models import CityUpload, UploadKind, UploadState
from portal.records.models import RecordStatus, RecordVersion
from portal.storage import storage
from tenants.models import District, Membership, MembershipRole, School, User
from tenants.roles import N_, Role

# Pupils the plan counts: those in the school this year (not those who left or moved away).
COUNTED_ENROLMENTS = (EnrolmentStatus.STUDYING, EnrolmentStatus.TRANSFERRED_IN)
# "Cán bộ quản lí, giáo viên": managers, homeroom and subject teachers (not the IT staff member).
STAFF_ROLES = (Role.PRINCIPAL, Role.VICE_PRINCIPAL, Role.HOMEROOM_TEACHER, Role.SUBJECT_TEACHER)
GRADES = {Scope.ALL: (1, 2, 3, 4, 5), Scope.GRADE_5: (5,), Scope.GRADES_1_4: (1, 2, 3, 4)}
PUPIL_MEASURES = ("identity_reviewed", "results_reviewed", "imported", "records_issued", "records_uploaded")


class PlanError(ValueError):
    """A plan change that cannot be made as asked; the message is for the user."""


def nfc(text: str | None) -> str:
    return unicodedata.normalize("NFC", " ".join((text or "").split()))


def today_local() -> date:
    return datetime.now(local_zone()).date()


def _local_date(value: datetime | date | None) -> date | None:
    """The local calendar day of a stored timestamp (dates pass through)."""
    if not isinstance(value, datetime):
        return value
    if value.tzinfo is None:  # stored in UTC; an aggregate may come back without the column's zone
        value = value.replace(tzinfo=UTC)
    return value.astimezone(local_zone()).date()


# --- the plan ---------------------------------------------------------------------------------------------

# The 2024-2025 plan (domain brief §6): phase, title, deadline, scope, measure.
PLAN_2024_2025: tuple[tuple[int, str, date, Scope, str], ...] = (
    (1, N_("Xây dựng kế hoạch, thành lập Ban chỉ đạo và tổ giúp việc"), date(2025, 3, 28), Scope.STAFF, "evidence"),
    (1, N_("Rà soát hạ tầng CNTT, chữ ký số, nhân sự, kinh phí"), date(2025, 4, 18), Scope.STAFF, "evidence"),
    (2, N_("Lựa chọn và triển khai phần mềm học bạ số"), date(2025, 4, 25), Scope.STAFF, "evidence"),
    (2, N_("Ban hành quy chế quản lí, sử dụng học bạ số của trường"), date(2025, 5, 2), Scope.STAFF, "evidence"),
    (2, N_("Tập huấn cán bộ quản lí, giáo viên (100%)"), date(2025, 5, 2), Scope.STAFF, "staff_trained"),
    (2, N_("Cán bộ quản lí, giáo viên có chứng thư số (100%)"), date(2025, 5, 2), Scope.STAFF, "staff_certificates"),
    (2, N_("Đăng kí chứng thư số của trường (con dấu số)"), date(2025, 5, 2), Scope.STAFF, "seal_registered"),
    (3, N_("Rà soát thông tin nhân thân của học sinh trên CSDL ngành"), date(2025, 5, 16), Scope.ALL,
     "identity_reviewed"),
    (3, N_("Rà soát kết quả học tập của học sinh trên CSDL ngành"), date(2025, 5, 19), Scope.ALL, "results_reviewed"),
    (3, N_("Chuyển dữ liệu từ CSDL ngành vào hệ thống"), date(2025, 5, 26), Scope.ALL, "imported"),
    (3, N_("Khởi tạo, ký số, ban hành học bạ số"), date(2025, 5, 30), Scope.GRADE_5, "records_issued"),
    (3, N_("Rà soát, hủy bỏ, điều chỉnh học bạ số đã ban hành"), date(2025, 6, 15), Scope.GRADE_5,
     "records_reviewed"),
    (3, N_("Đẩy học bạ số lên hệ thống của Thành phố"), date(2025, 6, 20), Scope.GRADE_5, "records_uploaded"),
    (3, N_("Thành phố trả học bạ số về trường tiếp nhận"), date(2025, 8, 15), Scope.GRADE_5, "records_returned"),
    (3, N_("Khởi tạo, ký số, ban hành học bạ số"), date(2025, 7, 25), Scope.GRADES_1_4, "records_issued"),
    (3, N_("Rà soát, hủy bỏ, điều chỉnh học bạ số đã ban hành"), date(2025, 7, 30), Scope.GRADES_1_4,
     "records_reviewed"),
    (3, N_("Đẩy toàn bộ học bạ số lên hệ thống của Thành phố"), date(2025, 8, 15), Scope.GRADES_1_4,
     "records_uploaded"),
)


def plan_years(district: District) -> list[str]:
    """The school-year labels the district has a plan for, newest first."""
    return list(db.session.scalars(sa.select(Milestone.year_label).where(Milestone.district_id == district.id)
                                   .distinct().order_by(Milestone.year_label.desc())))


def running_years(district: District, day: date) -> list[str]:
    """The years worth a snapshot on `day`: the school year holding `day` when it has a plan, and any year
    whose plan still has a deadline within 60 days before `day` or later."""
    from portal.schoolyear.services import school_year_label

    late = set(db.session.scalars(sa.select(Milestone.year_label).where(Milestone.district_id == district.id)
                                  .group_by(Milestone.year_label)
                                  .having(sa.func.max(Milestone.deadline) >= day - timedelta(days=60))))
    current = school_year_label(day)
    if current in plan_years(district):
        late.add(current)
    return sorted(late)


def plan(district: District, year_label: str) -> list[Milestone]:
    return list(db.session.scalars(sa.select(Milestone).where(
        Milestone.district_id == district.id, Milestone.year_label == year_label).order_by(Milestone.position)))


def get_milestone(district: District, milestone_id: int) -> Milestone | None:
    milestone = db.session.get(Milestone, milestone_id)
    return milestone if milestone is not None and milestone.district_id == district.id else None


def seed_plan(district: District, *, actor: Any, year_label: str = "2024-2025") -> int:
    """Create the 2024-2025 plan of the domain brief for the district, unless it has one; returns lines added."""
    if plan(district, year_label):
        return 0
    for position, (phase, title, deadline, scope, measure) in enumerate(PLAN_2024_2025, start=1):
        db.session.add(Milestone(district_id=district.id, year_label=year_label, position=position, phase=phase,
                                 title=_(title), deadline=deadline, scope=scope, measure=measure))
    audit.record("plan.seeded", actor=actor, school_id=None, obj=district, summary=year_label,
                 changes={"year": year_label, "milestones": len(PLAN_2024_2025)})
    db.session.flush()
    return len(PLAN_2024_2025)


def _check_line(scope: Scope, measure: str) -> None:
    known = REGISTRY.get(measure)
    if known is None:
        raise PlanError(_("Không có cách đo này."))
    if known.counts is Counts.STAFF and scope is not Scope.STAFF:
        raise PlanError(_("Cách đo này đếm cán bộ, giáo viên: phạm vi phải là cán bộ, giáo viên."))
    if known.counts is Counts.PUPILS and scope is Scope.STAFF:
        raise PlanError(_("Cách đo này đếm học sinh: hãy chọn phạm vi học sinh."))


def add_milestone(district: District, year_label: str, *, phase: int, title: str, deadline: date, scope: Scope,
                  measure: str, actor: Any) -> Milestone:
    """Add a line at the end of the year's plan."""
    _check_line(scope, measure)
    last = db.session.scalar(sa.select(sa.func.max(Milestone.position)).where(
        Milestone.district_id == district.id, Milestone.year_label == year_label)) or 0
    milestone = Milestone(district_id=district.id, year_label=year_label, position=last + 1, phase=phase,
                          title=nfc(title), deadline=deadline, scope=scope, measure=measure)
    db.session.add(milestone)
    db.session.flush()
    audit.record("plan.milestone_added", actor=actor, school_id=None, obj=milestone, summary=milestone.title,
                 changes=_line(milestone))
    return milestone


def _line(milestone: Milestone) -> dict[str, Any]:
    return {"year": milestone.year_label, "phase": milestone.phase, "title": milestone.title,
            "deadline": milestone.deadline.isoformat(), "scope": milestone.scope.value, "measure": milestone.measure}


def update_milestone(milestone: Milestone, *, phase: int, title: str, deadline: date, scope: Scope, measure: str,
                     actor: Any) -> None:
    _check_line(scope, measure)
    before = _line(milestone)
    milestone.phase, milestone.title, milestone.deadline = phase, nfc(title), deadline
    milestone.scope, milestone.measure = scope, measure
    changes = audit.diff(before, _line(milestone))
    if changes:
        audit.record("plan.milestone_changed", actor=actor, school_id=None, obj=milestone,
                     summary=milestone.title, changes=changes)


def delete_milestone(milestone: Milestone, *, actor: Any) -> None:
    """Remove a line; refused once a school has sent evidence for it (the evidence must stay)."""
    if db.session.scalar(sa.select(sa.func.count()).select_from(Evidence).where(
            Evidence.milestone_id == milestone.id)):
        raise PlanError(_("Các trường đã nộp minh chứng cho mốc này: không thể xóa."))
    db.session.execute(sa.update(Notice).where(Notice.milestone_id == milestone.id).values(milestone_id=None))
    db.session.execute(sa.delete(ProgressSnapshot).where(ProgressSnapshot.milestone_id == milestone.id))
    audit.record("plan.milestone_deleted", actor=actor, school_id=None, obj=milestone, summary=milestone.title,
                 changes=_line(milestone))
    db.session.delete(milestone)


def next_year_label(label: str) -> str:
    """ "2024-2025" -> "2025-2026"."""
    start, _sep, end = label.partition("-")
    if not (start.isdigit() and end.isdigit()):
        raise PlanError(_("Năm học phải có dạng 2024-2025."))
    return f"{int(start) + 1}-{int(end) + 1}"


def moved_by_years(day: date, years: int) -> date:
    """The same day `years` later (29/02 becomes 28/02 outside leap years)."""
    try:
        return day.replace(year=day.year + years)
    except ValueError:
        return day.replace(year=day.year + years, day=28)


def copy_plan(district: District, source: str, target: str, *, shift_days: int = 0, shift_years: int = 0,
              actor: Any) -> int:
    """Copy a year's plan to another year, every deadline moved by `shift_years` calendar years (the same
    day of the month) and `shift_days`; returns lines copied."""
    lines = plan(district, source)
    if not lines:
        raise PlanError(_("Năm học %(y)s chưa có kế hoạch.", y=source))
    if plan(district, target):
        raise PlanError(_("Năm học %(y)s đã có kế hoạch.", y=target))
    for line in lines:
        db.session.add(Milestone(district_id=district.id, year_label=target, position=line.position,
                                 phase=line.phase, title=line.title, scope=line.scope, measure=line.measure,
                                 deadline=moved_by_years(line.deadline, shift_years) + timedelta(days=shift_days)))
    audit.record("plan.copied", actor=actor, school_id=None, obj=district, summary=f"{source} -> {target}",
                 changes={"from": source, "to": target, "shift_days": shift_days, "shift_years": shift_years,
                          "milestones": len(lines)})
    db.session.flush()
    return len(lines)


def shift_plan(district: District, year_label: str, *, days: int, actor: Any) -> int:
    """Move every deadline of a year's plan by `days`."""
    lines = plan(district, year_label)
    for line in lines:
        line.deadline += timedelta(days=days)
    if lines:
        audit.record("plan.shifted", actor=actor, school_id=None, obj=district, summary=year_label,
                     changes={"year": year_label, "days": days, "milestones": len(lines)})
    return len(lines)


# --- counting -------------------------------------------------------------------------------------------


@dataclass
class Tally:
    done: int = 0
    total: int = 0
    last: datetime | date | None = None  # when the latest of the done ones was done
    forecast_on: date | None = None  # stored with a count: when all will be done at the pace then

    def add(self, done: int, total: int, last: datetime | date | None) -> None:
        self.done += done
        self.total += total
        if last is not None and (self.last is None or _comparable(last) > _comparable(self.last)):
            self.last = last


def _comparable(value: datetime | date) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=local_zone())
    return datetime(value.year, value.month, value.day, tzinfo=local_zone())


def _pupil_query(year_label: str, school_ids: Sequence[int] | None) -> sa.Select[Any]:
    """Per school and grade: pupils in scope, and per pupil measure how many are done and when the last was."""
    imported_rows = sa.select(AuditEntry.school_id, AuditEntry.object_id, sa.func.min(AuditEntry.at).label("at")).where(
        AuditEntry.action == "pupil.created", AuditEntry.object_type == "Pupil")
    if school_ids is not None:
        imported_rows = imported_rows.where(AuditEntry.school_id.in_(school_ids))
    imported = imported_rows.group_by(AuditEntry.school_id, AuditEntry.object_id).subquery("imported")
    columns = [
        Enrolment.school_id, SchoolClass.grade, sa.func.count().label("total"),
        sa.func.count(Pupil.identity_reviewed_at).label("identity_reviewed"),
        sa.func.max(Pupil.identity_reviewed_at).label("identity_reviewed_last"),
        sa.func.count(YearResult.results_reviewed_at).label("results_reviewed"),
        sa.func.max(YearResult.results_reviewed_at).label("results_reviewed_last"),
        sa.func.count(imported.c.at).label("imported"),
        sa.func.max(imported.c.at).label("imported_last"),
    ]
    query = (sa.select(*columns).select_from(Enrolment)
             .join(SchoolYear, SchoolYear.id == Enrolment.school_year_id)
             .join(SchoolClass, SchoolClass.id == Enrolment.class_id)
             .join(Pupil, Pupil.id == Enrolment.pupil_id)
             .outerjoin(YearResult, YearResult.enrolment_id == Enrolment.id)
             .outerjoin(imported, sa.and_(imported.c.school_id == Enrolment.school_id,
                                          imported.c.object_id == sa.cast(Pupil.id, sa.String)))
             .where(SchoolYear.name == year_label, Enrolment.status.in_(COUNTED_ENROLMENTS))
             .group_by(Enrolment.school_id, SchoolClass.grade))
    issued_rows = sa.select(RecordVersion.pupil_id, RecordVersion.school_year_id,
                            sa.func.min(RecordVersion.issued_at).label("at")).where(
        RecordVersion.status == RecordStatus.ISSUED)
    if school_ids is not None:
        issued_rows = issued_rows.where(RecordVersion.school_id.in_(school_ids))
    issued = issued_rows.group_by(RecordVersion.pupil_id, RecordVersion.school_year_id).subquery("issued")
    query = (query.outerjoin(issued, sa.and_(issued.c.pupil_id == Enrolment.pupil_id,
                                             issued.c.school_year_id == Enrolment.school_year_id))
             .add_columns(sa.func.count(issued.c.at).label("records_issued"),
                          sa.func.max(issued.c.at).label("records_issued_last")))
    uploaded_rows = (sa.select(RecordVersion.pupil_id, RecordVersion.school_year_id,
                               sa.func.min(CityUpload.acknowledged_at).label("at"))
                     .join(CityUpload, CityUpload.record_version_id == RecordVersion.id)
                     .where(CityUpload.kind == UploadKind.UPLOAD, CityUpload.state == UploadState.ACKNOWLEDGED))
    if school_ids is not None:
        uploaded_rows = uploaded_rows.where(RecordVersion.school_id.in_(school_ids))
    uploaded = uploaded_rows.group_by(RecordVersion.pupil_id, RecordVersion.school_year_id).subquery("uploaded")
    query = (query.outerjoin(uploaded, sa.and_(uploaded.c.pupil_id == Enrolment.pupil_id,
                                               uploaded.c.school_year_id == Enrolment.school_year_id))
             .add_columns(sa.func.count(uploaded.c.at).label("records_uploaded"),
                          sa.func.max(uploaded.c.at).label("records_uploaded_last")))
    if school_ids is not None:
        query = query.where(Enrolment.school_id.in_(school_ids))
    return query


@contextmanager
def _hash_joins(whole_district: bool = True) -> Iterator[None]:
    """On PostgreSQL, plan the block's queries over every school without nested loops.

    The row-level security policy (`current_setting(...) = 'on' OR school_id = ...`) is opaque to the
    planner, which then estimates one row per tenant table and picks nested loops: measured at minutes
    for 60,000 pupils, where hash joins take tens of milliseconds. Transaction-local, restored after.
    One school's queries keep the planner's choice: index lookups suit a few thousand rows.
    """
    connection = db.session.connection()
    if not whole_district or connection.dialect.name != "postgresql":
        yield
        return
    before = connection.execute(sa.text("select current_setting('enable_nestloop')")).scalar()
    connection.execute(sa.text("select set_config('enable_nestloop', 'off', true)"))
    try:
        yield
    finally:
        connection.execute(sa.text("select set_config('enable_nestloop', :v, true)"), {"v": before})


def pupil_tallies(year_label: str, school_ids: Sequence[int] | None = None) -> dict[tuple[int, str, Scope], Tally]:
    """(school id, measure key, scope) -> tally, for every pupil measure the portal can count."""
    tallies: dict[tuple[int, str, Scope], Tally] = defaultdict(Tally)
    with _hash_joins(school_ids is None or len(school_ids) > 1):
        rows = db.session.execute(_pupil_query(year_label, school_ids)).mappings().all()
    for row in rows:
        for scope, grades in GRADES.items():
            if row["grade"] not in grades:
                continue
            for key in PUPIL_MEASURES:
                if key in row:
                    tallies[(row["school_id"], key, scope)].add(row[key], row["total"], row[f"{key}_last"])
    return tallies


def _staff_query(school_ids: Sequence[int] | None) -> sa.Select[Any]:
    query = (sa.select(Membership.school_id, Membership.user_id).join(User, User.id == Membership.user_id)
             .join(MembershipRole, MembershipRole.membership_id == Membership.id)
             .where(Membership.active.is_(True), User.active.is_(True), MembershipRole.role.in_(STAFF_ROLES))
             .distinct())
    if school_ids is not None:
        query = query.where(Membership.school_id.in_(school_ids))
    return query


def _first_training(today: date) -> sa.Subquery:
    """Per school and person: the day of their first training session up to `today`."""
    return (sa.select(TrainingAttendance.school_id, TrainingAttendance.user_id,
                      sa.func.min(TrainingSession.held_on).label("first"))
            .join(TrainingSession, TrainingSession.id == TrainingAttendance.session_id)
            .where(TrainingSession.held_on <= today)
            .group_by(TrainingAttendance.school_id, TrainingAttendance.user_id).subquery("first_training"))


def _first_certificate(today: date) -> sa.Subquery:
    """Per person: when they registered their first certificate that is valid on `today` (any school)."""
    from tenants.certificates import PersonCertificate

    moment = _end_of(today)
    return (sa.select(PersonCertificate.user_id, sa.func.min(PersonCertificate.created_at).label("first"))
            .where(PersonCertificate.active.is_(True), PersonCertificate.not_before <= moment,
                   PersonCertificate.not_after >= moment)
            .group_by(PersonCertificate.user_id).subquery("first_certificate"))


def _end_of(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 23, 59, 59, tzinfo=local_zone())


def _staff_done(staff: sa.Subquery, done: sa.Subquery) -> sa.ColumnElement[bool]:
    """Joins a staff member to their "done" row: per school (training), or per person (certificates)."""
    same_person = done.c.user_id == staff.c.user_id
    return same_person if done.name == "first_certificate" else sa.and_(same_person,
                                                                          done.c.school_id == staff.c.school_id)


def _staff_tallies(done_rows: sa.Subquery, school_ids: Sequence[int] | None) -> dict[int, Tally]:
    staff = _staff_query(school_ids).subquery("staff")
    query = (sa.select(staff.c.school_id, sa.func.count().label("total"), sa.func.count(done_rows.c.first),
                       sa.func.max(done_rows.c.first))
             .select_from(staff).outerjoin(done_rows, _staff_done(staff, done_rows)).group_by(staff.c.school_id))
    with _hash_joins(school_ids is None or len(school_ids) > 1):
        rows = db.session.execute(query).all()
    return {school_id: Tally(done, total, last) for school_id, total, done, last in rows}


def staff_tallies(today: date, school_ids: Sequence[int] | None = None) -> dict[int, Tally]:
    """School id -> staff in scope and how many have attended a training session (and when the last did)."""
    return _staff_tallies(_first_training(today), school_ids)


def certificate_tallies(today: date, school_ids: Sequence[int] | None = None) -> dict[int, Tally]:
    """School id -> staff in scope and how many hold a personal certificate valid today."""
    return _staff_tallies(_first_certificate(today), school_ids)


def seal_tallies(today: date, school_ids: Sequence[int] | None = None) -> dict[int, Tally]:
    """School id -> 1 of 1 when the school has a seal certificate valid today (dated by its registration)."""
    from tenants.certificates import SealCertificate

    moment = _end_of(today)
    query = (sa.select(SealCertificate.school_id, sa.func.min(SealCertificate.created_at))
             .where(SealCertificate.active.is_(True), SealCertificate.not_before <= moment,
                    SealCertificate.not_after >= moment).group_by(SealCertificate.school_id))
    if school_ids is not None:
        query = query.where(SealCertificate.school_id.in_(school_ids))
    return {school_id: Tally(1, 1, first) for school_id, first in db.session.execute(query)}


SCHOOL_TALLIES = {"staff_trained": staff_tallies, "staff_certificates": certificate_tallies,
                  "seal_registered": seal_tallies}


@dataclass(frozen=True)
class EvidenceState:
    status: EvidenceStatus
    done_on: date
    evidence_id: int


def newest_evidence(milestone_ids: Sequence[int], school_ids: Sequence[int] | None = None
                    ) -> dict[tuple[int, int], EvidenceState]:
    """(school id, milestone id) -> the state of the newest evidence sent for it."""
    newest = (sa.select(sa.func.max(Evidence.id)).where(Evidence.milestone_id.in_(milestone_ids))
              .group_by(Evidence.school_id, Evidence.milestone_id))
    if school_ids is not None:
        newest = newest.where(Evidence.school_id.in_(school_ids))
    query = sa.select(Evidence.school_id, Evidence.milestone_id, Evidence.status, Evidence.done_on, Evidence.id).where(
        Evidence.id.in_(newest))
    return {(school_id, milestone_id): EvidenceState(status, done_on, evidence_id)
            for school_id, milestone_id, status, done_on, evidence_id in db.session.execute(query)}


def pace_points(milestone_ids: Sequence[int], today: date, school_ids: Sequence[int] | None = None
                ) -> dict[tuple[int, int], tuple[date, int]]:
    """(school id, milestone id) -> the oldest snapshot of the pace window: all a forecast needs."""
    from portal.compliance.measures import PACE_WINDOW_DAYS

    window = [ProgressSnapshot.milestone_id.in_(milestone_ids),
              ProgressSnapshot.taken_on >= today - timedelta(days=PACE_WINDOW_DAYS), ProgressSnapshot.taken_on < today]
    if school_ids is not None:
        window.append(ProgressSnapshot.school_id.in_(school_ids))
    oldest = (sa.select(ProgressSnapshot.school_id, ProgressSnapshot.milestone_id,
                        sa.func.min(ProgressSnapshot.taken_on).label("taken_on"))
              .where(*window).group_by(ProgressSnapshot.school_id, ProgressSnapshot.milestone_id).subquery())
    query = sa.select(ProgressSnapshot.school_id, ProgressSnapshot.milestone_id, ProgressSnapshot.taken_on,
                      ProgressSnapshot.done).join(oldest, sa.and_(
                          oldest.c.school_id == ProgressSnapshot.school_id,
                          oldest.c.milestone_id == ProgressSnapshot.milestone_id,
                          oldest.c.taken_on == ProgressSnapshot.taken_on))
    with _hash_joins(school_ids is None or len(school_ids) > 1):
        rows = db.session.execute(query).all()
    return {(school_id, milestone_id): (taken_on, done) for school_id, milestone_id, taken_on, done in rows}


@dataclass
class Board:
    """Every school against every milestone of a year's plan, as of `today`."""

    year_label: str
    today: date
    milestones: list[Milestone]
    schools: list[School]
    cells: dict[tuple[int, int], Cell] = field(default_factory=dict)
    evidence: dict[tuple[int, int], EvidenceState] = field(default_factory=dict)
    counted_at: datetime | None = None  # when the pupil and staff counts were made

    def cell(self, school: School, milestone: Milestone) -> Cell:
        return self.cells[(school.id, milestone.id)]

    def counts(self, school: School) -> dict[CellState, int]:
        tally: dict[CellState, int] = defaultdict(int)
        for milestone in self.milestones:
            tally[self.cell(school, milestone).state] += 1
        return tally


def build_board(district: District, year_label: str, today: date, *, schools: Sequence[School] | None = None,
                milestones: Sequence[Milestone] | None = None, live: bool = True) -> Board:
    """Every school (or those given) against the year's plan, in a fixed number of queries.

    `live` counts pupils and staff now, with GROUP BY queries over every pupil of the year (seconds at
    city scale). Otherwise the counts are read from the latest refresh (`refresh_counts`, today's
    snapshot rows); evidence is always read live, so the district's own verdicts show at once.
    """
    lines = list(milestones) if milestones is not None else plan(district, year_label)
    if schools is None:
        schools = list(db.session.scalars(sa.select(School).where(
            School.district_id == district.id, School.active.is_(True)).order_by(School.name)))
    school_ids = [s.id for s in schools]
    only = None if len(school_ids) > 50 else school_ids  # a long IN list costs more than it saves
    counted_lines = [line for line in lines if _counted_measure(line.measure)]
    if live:
        counts = live_counts(counted_lines, school_ids, today, only)
        counted_at = utcnow()
    else:
        counts, counted_at = stored_counts([line.id for line in counted_lines], today, only)
    evidence = newest_evidence([line.id for line in lines if line.measure == "evidence"], only)
    # The pace behind forecasts: read from the snapshots when counting live; a stored count keeps its forecast.
    paces = pace_points([line.id for line in counted_lines], today, only) if live else {}
    board = Board(year_label, today, lines, list(schools), evidence=evidence, counted_at=counted_at)
    plain = [(line.id, line.deadline, _kind(line.measure)) for line in lines]  # ORM attributes read once
    unmeasurable = cell_status(deadline=today, today=today, measurable=False, done=0, total=0)  # one for all
    for school_id in school_ids:
        for line_id, deadline, kind in plain:
            board.cells[(school_id, line_id)] = unmeasurable if kind == "unmeasurable" else _cell(
                school_id, line_id, deadline, kind, today, counts, evidence, paces)
    return board


def _kind(key: str) -> str:
    """How a line's cells are made: "evidence", "counted" (pupils or staff) or "unmeasurable"."""
    measure = REGISTRY.get(key)
    if measure is not None and measure.counts is Counts.EVIDENCE and measure.measurable:
        return "evidence"
    return "counted" if _counted_measure(key) else "unmeasurable"


def _counted_measure(key: str) -> bool:
    """A measure counted by the GROUP BY queries (pupils or staff) that the portal can count now."""
    measure = REGISTRY.get(key)
    return measure is not None and measure.counts is not Counts.EVIDENCE and measure.measurable


def live_counts(lines: Sequence[Milestone], school_ids: Sequence[int], today: date,
                only: Sequence[int] | None) -> dict[tuple[int, int], Tally]:
    """(school id, milestone id) -> the count now, for the given (counted) lines."""
    keys = {line.measure for line in lines}
    pupils = pupil_tallies(lines[0].year_label, only) if keys & set(PUPIL_MEASURES) else {}
    per_school = {key: tally(today, only) for key, tally in SCHOOL_TALLIES.items() if key in keys}
    counts: dict[tuple[int, int], Tally] = {}
    for school_id in school_ids:
        for line in lines:
            if line.measure in per_school:
                empty = Tally(0, 1) if line.measure == "seal_registered" else Tally()
                counts[(school_id, line.id)] = per_school[line.measure].get(school_id, empty)
            else:
                counts[(school_id, line.id)] = pupils.get((school_id, line.measure, line.scope), Tally())
    return counts


def stored_counts(milestone_ids: Sequence[int], today: date, only: Sequence[int] | None = None
                  ) -> tuple[dict[tuple[int, int], Tally], datetime | None]:
    """The counts of the latest refresh up to `today` (one day's rows), and when it was made."""
    if not milestone_ids:
        return {}, None
    where = [ProgressSnapshot.milestone_id.in_(milestone_ids)]
    if only is not None:
        where.append(ProgressSnapshot.school_id.in_(only))
    day = today
    rows = _count_rows(where, day)
    if not rows:  # no count yet today: the latest day that has one
        day = db.session.scalar(sa.select(sa.func.max(ProgressSnapshot.taken_on)).where(
            *where, ProgressSnapshot.taken_on < today))
        rows = _count_rows(where, day) if day is not None else []
    if not rows:
        return {}, None
    counts = {(school_id, milestone_id): Tally(done, total, last_done_on, forecast_on)
              for school_id, milestone_id, done, total, last_done_on, forecast_on in rows}
    # The oldest count of the day, in one aggregate rather than a timestamp converted on every row.
    oldest = db.session.scalar(sa.select(sa.func.min(ProgressSnapshot.counted_at)).where(
        *where, ProgressSnapshot.taken_on == day))
    return counts, oldest


def _count_rows(where: list[sa.ColumnElement[bool]], day: date) -> Sequence[sa.Row[Any]]:
    return db.session.execute(sa.select(
        ProgressSnapshot.school_id, ProgressSnapshot.milestone_id, ProgressSnapshot.done, ProgressSnapshot.total,
        ProgressSnapshot.last_done_on, ProgressSnapshot.forecast_on).where(
        *where, ProgressSnapshot.taken_on == day)).all()


def _cell(school_id: int, line_id: int, deadline: date, kind: str, today: date,
          counts: dict[tuple[int, int], Tally], evidence: dict[tuple[int, int], EvidenceState],
          paces: dict[tuple[int, int], tuple[date, int]]) -> Cell:
    key = (school_id, line_id)
    if kind == "evidence":
        state = evidence.get(key)
        accepted = state is not None and state.status is EvidenceStatus.ACCEPTED
        return cell_status(deadline=deadline, today=today, measurable=True, done=int(accepted), total=1,
                           completed_on=state.done_on if accepted and state else None,
                           awaiting_review=state is not None and state.status is EvidenceStatus.SUBMITTED,
                           returned=state is not None and state.status is EvidenceStatus.RETURNED)
    if kind == "unmeasurable":
        return cell_status(deadline=deadline, today=today, measurable=False, done=0, total=0)
    tally = counts.get(key)
    if tally is None:
        return cell_status(deadline=deadline, today=today, measurable=True, done=0, total=0, counted=False)
    return cell_status(deadline=deadline, today=today, measurable=True, done=tally.done, total=tally.total,
                       completed_on=_local_date(tally.last), history=[paces[key]] if key in paces else (),
                       forecast_on=tally.forecast_on)


def filter_board(board: Board, *, state: str = "", phase: int | None = None, scope: str = "",
                 sort: str = "name") -> tuple[list[Milestone], list[School]]:
    """The milestones (columns) and schools (rows) the filters keep, rows in the order asked."""
    columns = [m for m in board.milestones if (phase is None or m.phase == phase) and (not scope or m.scope == scope)]
    rows = list(board.schools)
    if state:
        rows = [s for s in rows if any(board.cell(s, m).state == state for m in columns)]

    def done_share(school: School) -> int:
        return sum(board.cell(school, m).is_done for m in columns)

    def overdue(school: School) -> int:
        return sum(board.cell(school, m).state is CellState.OVERDUE for m in columns)

    if sort == "overdue":
        rows.sort(key=lambda s: (-overdue(s), s.name))
    elif sort == "done":
        rows.sort(key=lambda s: (done_share(s), s.name))
    return columns, rows


# --- what is missing, school by school -----------------------------------------------------------------


@dataclass(frozen=True)
class MissingGroup:
    """What one class (or the staff) still lacks for a milestone, and where to fix it."""

    label: str  # "5A", or "" for the staff / the school
    class_id: int | None
    people: list[tuple[int, str]]  # (pupil or user id, name)


def _pupil_done_condition(measure: str, year_label: str) -> sa.ColumnElement[bool] | None:
    if measure == "identity_reviewed":
        return Pupil.identity_reviewed_at.is_not(None)
    if measure == "results_reviewed":
        return sa.exists().where(YearResult.enrolment_id == Enrolment.id, YearResult.results_reviewed_at.is_not(None))
    if measure == "imported":
        return sa.exists().where(AuditEntry.action == "pupil.created", AuditEntry.object_type == "Pupil",
                                 AuditEntry.school_id == Enrolment.school_id,
                                 AuditEntry.object_id == sa.cast(Pupil.id, sa.String))
    if measure == "records_issued":
        return sa.exists().where(RecordVersion.pupil_id == Enrolment.pupil_id,
                                 RecordVersion.school_year_id == Enrolment.school_year_id,
                                 RecordVersion.status == RecordStatus.ISSUED)
    if measure == "records_uploaded":
        return sa.exists().where(RecordVersion.pupil_id == Enrolment.pupil_id,
                                 RecordVersion.school_year_id == Enrolment.school_year_id,
                                 CityUpload.record_version_id == RecordVersion.id,
                                 CityUpload.kind == UploadKind.UPLOAD, CityUpload.state == UploadState.ACKNOWLEDGED)
    return None


def missing(school: School, milestone: Milestone, today: date) -> list[MissingGroup]:
    """The exact pupils (per class) or staff still missing for a milestone at one school."""
    measure = REGISTRY.get(milestone.measure)
    if measure is None or not measure.measurable:
        return []
    if not _counted_measure(milestone.measure):
        return []
    if measure.counts is Counts.STAFF:
        return _missing_staff(school, milestone, today)
    if measure.counts is Counts.SCHOOL:
        sealed = seal_tallies(today, [school.id]).get(school.id)
        return [] if sealed else [MissingGroup("", None, [(school.id, school.name)])]
    if measure.counts is Counts.PUPILS:
        return _missing_pupils(school, milestone)
    return []


def _missing_pupils(school: School, milestone: Milestone) -> list[MissingGroup]:
    done = _pupil_done_condition(milestone.measure, milestone.year_label)
    if done is None:
        return []
    rows = db.session.execute(
        sa.select(SchoolClass.id, SchoolClass.name, Pupil.id, Pupil.full_name).select_from(Enrolment)
        .join(SchoolYear, SchoolYear.id == Enrolment.school_year_id)
        .join(SchoolClass, SchoolClass.id == Enrolment.class_id).join(Pupil, Pupil.id == Enrolment.pupil_id)
        .where(Enrolment.school_id == school.id, SchoolYear.name == milestone.year_label,
               Enrolment.status.in_(COUNTED_ENROLMENTS), SchoolClass.grade.in_(GRADES[milestone.scope]), ~done)
        .order_by(SchoolClass.grade, SchoolClass.name))
    groups: dict[int, MissingGroup] = {}
    for class_id, class_name, pupil_id, name in rows:
        groups.setdefault(class_id, MissingGroup(class_name, class_id, [])).people.append((pupil_id, name))
    for group in groups.values():
        group.people.sort(key=lambda person: name_key(person[1]))
    return list(groups.values())


def _missing_staff(school: School, milestone: Milestone, today: date) -> list[MissingGroup]:
    staff = _staff_query([school.id]).subquery("staff")
    done = _first_certificate(today) if milestone.measure == "staff_certificates" else _first_training(today)
    rows = db.session.execute(
        sa.select(User.id, User.full_name).join(staff, staff.c.user_id == User.id)
        .outerjoin(done, _staff_done(staff, done)).where(done.c.first.is_(None)))
    people = sorted(((user_id, name) for user_id, name in rows), key=lambda p: name_key(p[1]))
    return [MissingGroup("", None, people)] if people else []


@dataclass(frozen=True)
class SchoolLine:
    milestone: Milestone
    cell: Cell
    missing: list[MissingGroup]
    evidence: list[Evidence]


def school_progress(district: District, school: School, year_label: str, today: date) -> list[SchoolLine]:
    """The school's own board: every milestone with its cell, what is missing per class, and its evidence."""
    board = build_board(district, year_label, today, schools=[school])
    evidence = evidence_of(school, [m.id for m in board.milestones])
    return [SchoolLine(m, board.cell(school, m), missing(school, m, today) if not board.cell(school, m).is_done else [],
                       evidence.get(m.id, [])) for m in board.milestones]


# --- evidence ------------------------------------------------------------------------------------------


class EvidenceError(ValueError):
    """Evidence that cannot be accepted as sent; the message is for the user."""


def evidence_of(school: School, milestone_ids: Iterable[int]) -> dict[int, list[Evidence]]:
    """Milestone id -> the school's evidence for it, newest first."""
    found: dict[int, list[Evidence]] = defaultdict(list)
    for item in db.session.scalars(sa.select(Evidence).where(
            Evidence.school_id == school.id, Evidence.milestone_id.in_(list(milestone_ids)))
            .order_by(Evidence.id.desc())):
        found[item.milestone_id].append(item)
    return found


def get_evidence(evidence_id: int) -> Evidence | None:
    """Evidence by id within the tenant scope in force (another school's answers None)."""
    return db.session.scalar(sa.select(Evidence).where(Evidence.id == evidence_id))


def submit_evidence(school: School, milestone: Milestone, *, data: bytes, filename: str, done_on: date, note: str,
                    actor: Any) -> Evidence:
    """Store the school's decision or minutes for a hand-evidenced milestone; the district reviews it.

    The file's type is read from its content (a PDF, an image or an office document) and stored with it:
    neither its name nor the browser's word is trusted, so an HTML page is never served back as one.
    """
    if milestone.measure != "evidence" or milestone.district_id != school.district_id:
        raise EvidenceError(_("Mốc này không nhận minh chứng."))
    if not data:
        raise EvidenceError(_("Tệp minh chứng trống."))
    try:
        mimetype = uploads.check_evidence(data)
    except uploads.UploadRefused as exc:
        raise EvidenceError(str(exc)) from exc
    pending = db.session.scalar(sa.select(Evidence).where(
        Evidence.school_id == school.id, Evidence.milestone_id == milestone.id).order_by(Evidence.id.desc()).limit(1))
    if pending is not None and pending.status is EvidenceStatus.ACCEPTED:
        raise EvidenceError(_("Phòng đã chấp nhận minh chứng của mốc này."))
    digest = storage().put(data)
    item = Evidence(school_id=school.id, milestone_id=milestone.id, done_on=done_on, note=nfc(note),
                    filename=nfc(filename)[:200] or "minh-chung", mimetype=mimetype,
                    digest=digest, submitted_by_id=getattr(actor, "id", None))
    db.session.add(item)
    db.session.flush()
    audit.record("evidence.submitted", actor=actor, school_id=school.id, obj=item, summary=milestone.title,
                 changes={"milestone": milestone.id, "done_on": done_on.isoformat(), "file": item.filename,
                          "digest": digest, "note": item.note})
    return item


def review_evidence(item: Evidence, *, accept: bool, comment: str, actor: Any) -> None:
    """The district accepts the evidence, or returns it with a comment (a comment is required then)."""
    if item.status is not EvidenceStatus.SUBMITTED:
        raise EvidenceError(_("Minh chứng này đã được xử lí."))
    comment = nfc(comment)
    if not accept and not comment:
        raise EvidenceError(_("Hãy ghi lí do trả lại để trường biết cần bổ sung gì."))
    item.status = EvidenceStatus.ACCEPTED if accept else EvidenceStatus.RETURNED
    item.review_comment, item.reviewed_at, item.reviewed_by_id = comment, utcnow(), getattr(actor, "id", None)
    audit.record("evidence.accepted" if accept else "evidence.returned", actor=actor, school_id=item.school_id,
                 obj=item, summary=item.milestone.title, changes={"comment": comment})


def pending_evidence(district: District, limit: int = 20) -> tuple[list[Evidence], int]:
    """The oldest `limit` pieces of evidence waiting for the district, and how many wait in all."""
    waiting = [Milestone.district_id == district.id, Evidence.status == EvidenceStatus.SUBMITTED]
    count = db.session.scalar(sa.select(sa.func.count()).select_from(Evidence).join(Milestone).where(*waiting)) or 0
    items = list(db.session.scalars(sa.select(Evidence).join(Milestone).where(*waiting)
                                    .options(contains_eager(Evidence.milestone)).order_by(Evidence.id).limit(limit)))
    return items, count


# --- training ------------------------------------------------------------------------------------------


class TrainingError(ValueError):
    """A training session that cannot be recorded as asked; the message is for the user."""


def staff_members(school: School) -> list[User]:
    """The staff the training target counts: active managers, GVCN and GVBM of the school."""
    ids = _staff_query([school.id]).with_only_columns(Membership.user_id).distinct()
    return sorted(db.session.scalars(sa.select(User).where(User.id.in_(ids))), key=lambda u: name_key(u.full_name))


def trainings(school: School) -> list[TrainingSession]:
    return list(db.session.scalars(sa.select(TrainingSession).where(TrainingSession.school_id == school.id)
                                   .order_by(TrainingSession.held_on.desc(), TrainingSession.id.desc())))


def get_training(training_id: int) -> TrainingSession | None:
    return db.session.scalar(sa.select(TrainingSession).where(TrainingSession.id == training_id))


def _attendees(school: School, user_ids: Iterable[int]) -> list[int]:
    allowed = {user.id for user in staff_members(school)}
    chosen = sorted(set(user_ids))
    if not set(chosen) <= allowed:
        raise TrainingError(_("Chỉ chọn được cán bộ, giáo viên đang công tác tại trường."))
    return chosen


def record_training(school: School, *, held_on: date, topic: str, trainer: str, attendee_ids: Iterable[int],
                    actor: Any) -> TrainingSession:
    """Record a training session and who attended it."""
    chosen = _attendees(school, attendee_ids)
    session = TrainingSession(school_id=school.id, held_on=held_on, topic=nfc(topic), trainer=nfc(trainer),
                              created_by_id=getattr(actor, "id", None),
                              attendances=[TrainingAttendance(school_id=school.id, user_id=u) for u in chosen])
    db.session.add(session)
    db.session.flush()
    audit.record("training.recorded", actor=actor, school_id=school.id, obj=session, summary=session.topic,
                 changes={"held_on": held_on.isoformat(), "trainer": session.trainer, "attendees": chosen})
    return session


def update_training(school: School, session: TrainingSession, *, held_on: date, topic: str, trainer: str,
                    attendee_ids: Iterable[int], actor: Any) -> None:
    chosen = _attendees(school, attendee_ids)
    before = {"held_on": session.held_on.isoformat(), "topic": session.topic, "trainer": session.trainer,
              "attendees": sorted(a.user_id for a in session.attendances)}
    session.held_on, session.topic, session.trainer = held_on, nfc(topic), nfc(trainer)
    present = {a.user_id: a for a in session.attendances}
    for user_id in set(present) - set(chosen):
        session.attendances.remove(present[user_id])
    for user_id in sorted(set(chosen) - set(present)):
        session.attendances.append(TrainingAttendance(school_id=school.id, user_id=user_id))
    after = {"held_on": held_on.isoformat(), "topic": session.topic, "trainer": session.trainer, "attendees": chosen}
    changes = audit.diff(before, after)
    if changes:
        audit.record("training.changed", actor=actor, school_id=school.id, obj=session, summary=session.topic,
                     changes=changes)


def delete_training(school: School, session: TrainingSession, *, actor: Any) -> None:
    audit.record("training.deleted", actor=actor, school_id=school.id, obj=session, summary=session.topic,
                 changes={"held_on": session.held_on.isoformat(),
                          "attendees": sorted(a.user_id for a in session.attendances)})
    db.session.delete(session)


# --- reminders -----------------------------------------------------------------------------------------


def send_reminder(school: School, *, message: str, milestone: Milestone | None, actor: Any) -> Notice:
    """Leave a notice the school's principal sees on the school's home page until it is marked read."""
    message = nfc(message)
    if not message:
        raise PlanError(_("Hãy ghi nội dung nhắc việc."))
    notice = Notice(school_id=school.id, message=message, milestone_id=milestone.id if milestone else None,
                    created_by_id=getattr(actor, "id", None))
    db.session.add(notice)
    db.session.flush()
    audit.record("notice.sent", actor=actor, school_id=school.id, obj=notice, summary=message,
                 changes={"milestone": notice.milestone_id})
    return notice


def open_notices(school: School) -> list[Notice]:
    return list(db.session.scalars(sa.select(Notice).where(Notice.school_id == school.id, Notice.read_at.is_(None))
                                   .order_by(Notice.id.desc())))


def mark_notices_read(school: School, *, actor: Any) -> int:
    notices = open_notices(school)
    for notice in notices:
        notice.read_at, notice.read_by_id = utcnow(), getattr(actor, "id", None)
    if notices:
        audit.record("notice.read", actor=actor, school_id=school.id, summary=str(len(notices)),
                     changes={"notices": [n.id for n in notices]})
    return len(notices)


# --- snapshots -----------------------------------------------------------------------------------------


# How old the board's counts may be before opening the board asks for a new count (in the background).
REFRESH_MINUTES = 5
# Up to this many schools the board counts live on every opening (tens of milliseconds for a district),
# so that it, its printed report and the drill-down always agree; a city's hundreds read the stored count.
LIVE_SCHOOLS = 60


def counts_live(district: District) -> bool:
    """Whether the district is small enough for the board to count live rather than read the stored count."""
    schools = db.session.scalar(sa.select(sa.func.count()).select_from(School).where(
        School.district_id == district.id, School.active.is_(True))) or 0
    return schools <= LIVE_SCHOOLS


def current_board(district: District, year_label: str, today: date, **kwargs: Any) -> Board:
    """The board as fresh as it can be cheaply: live for a district, the stored count for a city."""
    return build_board(district, year_label, today, live=counts_live(district), **kwargs)


def refresh_counts(district: District, year_label: str, today: date) -> int:
    """Count every school now and store it as today's snapshot rows; safe to run twice (rows are rewritten)."""
    board = build_board(district, year_label, today, live=True)
    counted = {line.id for line in board.milestones if _counted_measure(line.measure)}
    existing = {(s.school_id, s.milestone_id): s for s in db.session.scalars(sa.select(ProgressSnapshot).where(
        ProgressSnapshot.taken_on == today, ProgressSnapshot.milestone_id.in_(counted)))}
    now, written = utcnow(), 0
    for (school_id, milestone_id), cell in board.cells.items():
        if milestone_id not in counted:
            continue
        row = existing.get((school_id, milestone_id))
        if row is None:
            row = ProgressSnapshot(school_id=school_id, milestone_id=milestone_id, taken_on=today)
            db.session.add(row)
        row.done, row.total, row.last_done_on, row.counted_at = cell.done, cell.total, cell.completed_on, now
        row.forecast_on = cell.forecast_on
        written += 1
    audit.record("progress.counted", actor=None, school_id=None, obj=district, summary=f"{year_label} {today}",
                 changes={"year": year_label, "day": today.isoformat(), "rows": written})
    return written


take_snapshot = refresh_counts  # the daily snapshot is the day's last refresh


def needs_refresh(board: Board, now: datetime) -> bool:
    """Some count is missing, or older than REFRESH_MINUTES, or from an earlier day."""
    if any(c.state is CellState.NOT_COUNTED for c in board.cells.values()):
        return True
    if board.counted_at is None:
        return False  # nothing to count: no measurable line
    return now - board.counted_at > timedelta(minutes=REFRESH_MINUTES) or _local_date(board.counted_at) < board.today


def refresh_queued() -> bool:
    """A count is already waiting or running (so opening the board again does not queue another)."""
    from portal.jobs import JobRun, JobState

    return db.session.scalar(sa.select(JobRun.id).where(
        JobRun.kind == "compliance.snapshot", JobRun.state.in_([JobState.QUEUED, JobState.RUNNING]),
        JobRun.created_at > utcnow() - timedelta(minutes=30)).limit(1)) is not None


def history(milestone: Milestone, school_ids: Sequence[int] | None = None) -> dict[date, tuple[int, int]]:
    """Day -> (done, total) summed over the schools (or those given), from the snapshots."""
    query = (sa.select(ProgressSnapshot.taken_on, sa.func.sum(ProgressSnapshot.done),
                       sa.func.sum(ProgressSnapshot.total))
             .where(ProgressSnapshot.milestone_id == milestone.id).group_by(ProgressSnapshot.taken_on)
             .order_by(ProgressSnapshot.taken_on))
    if school_ids is not None:
        query = query.where(ProgressSnapshot.school_id.in_(school_ids))
    return {day: (int(done), int(total)) for day, done, total in db.session.execute(query)}
