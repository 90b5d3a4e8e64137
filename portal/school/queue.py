"""What waits for each person: the work queues of the home pages, each count with the page that clears it.

Plain functions over the database; the caller gives the person, their permissions and the day. A queue
item names an endpoint and its arguments, not a URL, so that services stay free of the request.
"""

from __future__ import annotations

from collections.abc import Set
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import sqlalchemy as sa
from flask_babel import gettext as _

from portal.assessment import words
from portal.assessment.models import SchoolClass, SchoolYear
from portal.extensions import db, utcnow
from tenants.models import District, School, User
from tenants.roles import Permission

DEADLINE_DAYS = 14  # plan deadlines this close show on the principal's home
CERTIFICATE_DAYS = 30  # certificates expiring this soon show too


@dataclass
class WorkItem:
    kind: str  # a stable name, for the page and its tests
    text: str  # what waits, with its count, in the user's language
    count: int
    endpoint: str
    args: dict[str, Any] = field(default_factory=dict)
    anchor: str = ""
    detail: str = ""  # e.g. the reason a record was sent back


@dataclass
class ClassQueue:
    school_class: SchoolClass
    homeroom: bool
    items: list[WorkItem] = field(default_factory=list)


def current_year(school: School, today: date) -> SchoolYear | None:
    """The year containing `today`, else the latest."""
    years = list(db.session.scalars(sa.select(SchoolYear).where(SchoolYear.school_id == school.id)
                                    .order_by(SchoolYear.starts_on.desc())))
    return next((y for y in years if y.starts_on <= today <= y.ends_on), years[0] if years else None)


# --- the teacher --------------------------------------------------------------------------------------


def teacher_queue(school: School, user: User, permissions: Set[Permission], today: date) -> list[ClassQueue]:
    """Her classes (homeroom first) and, per class, what waits for her now."""
    from portal.grading import services as grading

    year = current_year(school, today)
    if year is None or Permission.ENTER_RATINGS not in permissions:
        return []
    open_now = [p for p in year.periods if p.is_open(today)]
    period = open_now[-1] if open_now else None  # windows may overlap: the latest is the one being filled
    counted = period or grading.default_period(year, today)
    if counted is None:
        return []
    # Only her own grids: reading every grid (management) is not work waiting for her.
    cards = grading.my_grids(school, year, counted, user.id, set(permissions) - {Permission.VIEW_ALL_RATINGS})
    queues = []
    for card in cards:
        queue = ClassQueue(card.school_class, card.homeroom)
        if period is not None:
            queue.items += _empty_cells(card, period)
        if card.homeroom:
            queue.items += _homeroom_items(school, card.school_class, permissions)
        queues.append(queue)
    return queues


def _empty_cells(card: Any, period: Any) -> list[WorkItem]:
    items = []
    for link in card.links:
        missing = link.total - link.filled
        if not link.editable or missing <= 0:
            continue
        name = words.catalogue(link.subject.name) if link.subject else _("Phẩm chất, năng lực")
        args = {"class_id": card.school_class.id, "period_id": period.id}
        if link.subject:
            args["subject_id"] = link.subject.id
        items.append(WorkItem("empty_cells", _("%(s)s: %(n)d học sinh chưa có đánh giá (%(p)s)", s=name, n=missing,
                                               p=words.catalogue(period.name)), missing,
                              "grading.subject_grid" if link.subject else "grading.class_grid", args))
    return items


def _homeroom_items(school: School, school_class: SchoolClass, permissions: Set[Permission]) -> list[WorkItem]:
    from portal.records import services as records
    from portal.records import workflow
    from portal.records.models import RecordStatus
    from portal.results import services as results

    items = []
    entries = results.class_results(school_class)
    to_confirm = sum(1 for e in entries if e.needs_confirmation)
    if to_confirm and Permission.CONFIRM_RESULTS in permissions:
        items.append(WorkItem("results_to_confirm", _("%(n)d kết quả cuối năm chờ xác nhận", n=to_confirm), to_confirm,
                              "results.year_end", {"class_id": school_class.id, "show": "to_confirm"}))
    pupils = [e.pupil for e in entries]
    latest = records.latest_versions([p.id for p in pupils])
    confirmed = {e.pupil.id for e in entries if e.confirmed and not e.mismatch}
    to_generate = sum(1 for p in pupils if p.id in confirmed and p.id not in latest)
    if to_generate and Permission.GENERATE_RECORDS in permissions:
        items.append(WorkItem("records_to_generate", _("%(n)d học bạ chưa tạo (đã có kết quả)", n=to_generate),
                              to_generate, "records.class_records", {"class_id": school_class.id}))
    step = workflow.STEPS["gvcn"]
    if step.permission in permissions:
        waiting = workflow.count_waiting(school, step, [school_class.id])
        if waiting:
            items.append(WorkItem("records_to_sign", _("%(n)d học bạ chờ bạn ký", n=waiting), waiting,
                                  "records.index", anchor="signing"))
    returned = [v for v in latest.values() if v.status == RecordStatus.RETURNED]
    names = {p.id: p.full_name for p in pupils}
    for version in sorted(returned, key=lambda v: v.status_changed_at):
        items.append(WorkItem("record_returned", _("Học bạ của %(name)s bị trả lại", name=names[version.pupil_id]), 1,
                              "records.show", {"version_id": version.id}, detail=version.status_reason))
    return items


# --- the principal ------------------------------------------------------------------------------------


def principal_queue(school: School, permissions: Set[Permission], today: date, config: dict[str, Any]
                    ) -> list[WorkItem]:
    """What waits for the school's management: signatures, seal, corrections, uploads, certificates, deadlines."""
    from portal.records import workflow
    from portal.records.models import RecordStatus, RecordVersion

    items: list[WorkItem] = []
    year = current_year(school, today)
    class_ids = [c.id for c in year.classes] if year else []
    step = workflow.STEPS["hieu_truong"]
    if step.permission in permissions and class_ids:
        n = workflow.count_waiting(school, step, class_ids)
        if n:
            items.append(WorkItem("to_sign", _("%(n)d học bạ chờ Hiệu trưởng ký", n=n), n, "records.index",
                                  anchor="signing"))
    step = workflow.STEPS["con_dau"]
    if step.permission in permissions and class_ids:
        n = workflow.count_waiting(school, step, class_ids)
        if n:
            items.append(WorkItem("to_seal", _("%(n)d học bạ chờ đóng dấu số để ban hành", n=n), n, "records.index",
                                  anchor="signing"))
    if Permission.VIEW_ALL_RECORDS in permissions:
        n = db.session.scalar(sa.select(sa.func.count()).select_from(RecordVersion).where(
            RecordVersion.school_id == school.id, RecordVersion.replaces_id.is_not(None),
            RecordVersion.status.in_([RecordStatus.DRAFT, RecordStatus.RETURNED, RecordStatus.SIGNED_HOMEROOM,
                                      RecordStatus.SIGNED_PRINCIPAL]))) or 0
        if n:
            items.append(WorkItem("corrections", _("%(n)d bản điều chỉnh đang chờ ký lại", n=n), n, "records.index"))
    if Permission.EXCHANGE_RECORDS in permissions:
        items += _failing_uploads(school, config)
    if Permission.VIEW_STAFF in permissions or Permission.MANAGE_SEAL in permissions:
        items += _expiring_certificates(school, permissions)
    if Permission.VIEW_SCHOOL_PROGRESS in permissions:
        items += _near_deadlines(school, today)
    return items


def _failing_uploads(school: School, config: dict[str, Any]) -> list[WorkItem]:
    from portal.interop import uploads
    from portal.interop.models import CityUpload, UploadKind, UploadState

    rejected = db.session.scalar(sa.select(sa.func.count()).select_from(CityUpload).where(
        CityUpload.school_id == school.id, CityUpload.kind == UploadKind.UPLOAD,
        CityUpload.state == UploadState.REJECTED)) or 0
    stuck = len(uploads.stuck_uploads(school.id, config))
    items = []
    if rejected:
        items.append(WorkItem("uploads_rejected", _("%(n)d học bạ bị Thành phố từ chối", n=rejected), rejected,
                              "interop.index", {"state": UploadState.REJECTED.value}))
    if stuck:
        items.append(WorkItem("uploads_stuck", _("%(n)d lần gửi Thành phố bị kẹt", n=stuck), stuck, "interop.index"))
    return items


def _expiring_certificates(school: School, permissions: Set[Permission]) -> list[WorkItem]:
    from tenants.certificates import PersonCertificate, SealCertificate

    now = utcnow()
    soon = now + timedelta(days=CERTIFICATE_DAYS)
    items = []
    if Permission.VIEW_STAFF in permissions:
        n = db.session.scalar(sa.select(sa.func.count()).select_from(PersonCertificate).where(
            PersonCertificate.school_id == school.id, PersonCertificate.not_after >= now,
            PersonCertificate.not_after < soon)) or 0
        if n:
            items.append(WorkItem("certificates_expiring",
                                  _("%(n)d chứng thư số của giáo viên hết hạn trong %(d)d ngày", n=n,
                                    d=CERTIFICATE_DAYS), n, "signing.staff"))
    if Permission.MANAGE_SEAL in permissions:
        n = db.session.scalar(sa.select(sa.func.count()).select_from(SealCertificate).where(
            SealCertificate.school_id == school.id, SealCertificate.not_after >= now,
            SealCertificate.not_after < soon)) or 0
        if n:
            items.append(WorkItem("seal_expiring", _("Chứng thư số của trường hết hạn trong %(d)d ngày",
                                                     d=CERTIFICATE_DAYS), n, "signing.seal"))
    return items


def _near_deadlines(school: School, today: date) -> list[WorkItem]:
    from portal.compliance import services as compliance
    from portal.compliance.models import Milestone

    district = db.session.get(District, school.district_id)
    lines = list(db.session.scalars(sa.select(Milestone).where(
        Milestone.district_id == district.id, Milestone.deadline >= today,
        Milestone.deadline <= today + timedelta(days=DEADLINE_DAYS)).order_by(Milestone.deadline)))
    if not lines:
        return []
    items = []
    for year_label in sorted({m.year_label for m in lines}):
        chosen = [m for m in lines if m.year_label == year_label]
        board = compliance.current_board(district, year_label, today, schools=[school], milestones=chosen)
        for milestone in chosen:
            cell = board.cell(school, milestone)
            if cell.is_done:
                continue
            items.append(WorkItem("deadline", _("Hạn %(d)s: %(t)s", d=milestone.deadline.strftime("%d/%m/%Y"),
                                                t=milestone.title), 1, "compliance.progress",
                                  {"year": year_label, "m": milestone.id}, anchor=f"m{milestone.id}",
                                  detail=cell.state.label))
    return items


# --- the district officer -----------------------------------------------------------------------------


@dataclass
class BehindSchool:
    school: School
    overdue: int
    at_risk: int


def schools_behind(district: District, today: date) -> tuple[str | None, list[BehindSchool]]:
    """The schools with a milestone overdue or forecast late, worst first, counted as the board counts."""
    from portal.compliance import services as compliance
    from portal.compliance.measures import CellState

    years = compliance.running_years(district, today) or compliance.plan_years(district)[:1]
    if not years:
        return None, []
    year_label = years[-1]
    board = compliance.current_board(district, year_label, today)
    behind = []
    for school in board.schools:
        cells = [board.cell(school, m) for m in board.milestones]
        overdue = sum(1 for c in cells if c.state is CellState.OVERDUE)
        at_risk = sum(1 for c in cells if c.at_risk)
        if overdue or at_risk:
            behind.append(BehindSchool(school, overdue, at_risk))
    behind.sort(key=lambda b: (-b.overdue, -b.at_risk, b.school.name))
    return year_label, behind
