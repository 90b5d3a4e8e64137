"""Pupils of one school: who may see which class, the identity page, its review, and the CSDL import."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Set
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from flask_babel import gettext as _
from sqlalchemy.orm import selectinload

from portal import audit, collation
from portal.assessment import review
from portal.assessment.access import can_assess_class, is_homeroom_teacher, teaches
from portal.assessment.csdl import PupilRow
from portal.assessment.models import Enrolment, EnrolmentStatus, Pupil, SchoolClass, SchoolYear, YearResult
from portal.extensions import db
from portal.i18n import format_date
from tenants.models import School, User
from tenants.roles import N_, Permission

# Pupils who left or moved away stay on the lists but are not waited for in the review.
ACTIVE_STATUSES = (EnrolmentStatus.STUDYING, EnrolmentStatus.TRANSFERRED_IN)

STATUS_LABELS = {
    EnrolmentStatus.STUDYING: N_("Đang học"),
    EnrolmentStatus.TRANSFERRED_IN: N_("Chuyển đến"),
    EnrolmentStatus.TRANSFERRED_OUT: N_("Chuyển đi"),
    EnrolmentStatus.LEFT: N_("Thôi học"),
}
# The words CSDL ngành and schools use in "Trạng thái HS", folded by `fold`.
_STATUS_WORDS = {
    "dang hoc": EnrolmentStatus.STUDYING,
    "chuyen den": EnrolmentStatus.TRANSFERRED_IN,
    "chuyen di": EnrolmentStatus.TRANSFERRED_OUT,
    "chuyen truong": EnrolmentStatus.TRANSFERRED_OUT,
    "thoi hoc": EnrolmentStatus.LEFT,
    "bo hoc": EnrolmentStatus.LEFT,
    "nghi hoc": EnrolmentStatus.LEFT,
}

FIELD_LABELS = {
    "pupil_code": N_("Mã học sinh"),
    "full_name": N_("Họ và tên"),
    "gender": N_("Giới tính"),
    "birth_date": N_("Ngày sinh"),
    "ethnicity": N_("Dân tộc"),
    "nationality": N_("Quốc tịch"),
    "birth_place": N_("Nơi sinh"),
    "hometown": N_("Quê quán"),
    "address": N_("Nơi ở hiện nay"),
    "father_name": N_("Họ tên cha"),
    "mother_name": N_("Họ tên mẹ"),
    "guardian_name": N_("Họ tên người giám hộ"),
    "register_number": N_("Số đăng bộ"),
    "disability": N_("Loại khuyết tật"),
    "personal_plan": N_("Kế hoạch giáo dục cá nhân"),
    "personal_id": N_("Số định danh cá nhân"),
    "class": N_("Lớp"),
    "status": N_("Trạng thái"),
}
# What a CSDL row carries; an empty cell never erases what the portal holds (a template without
# the column, or a field CSDL does not fill, must not wipe data typed in here).
IMPORTED_FIELDS = ("full_name", "birth_date", "gender", "ethnicity", "disability", "personal_id")
# The audit trail is read by district staff who may not see personal IDs: keep only the fact of a change.
HIDDEN = "(ẩn)"


class PupilError(ValueError):
    """A change that cannot be made; the message is for the user."""


def nfc(text: str | None) -> str:
    return " ".join(unicodedata.normalize("NFC", text or "").split())


def fold(text: str) -> str:
    """Lower case without diacritics, for matching typed words and for sorting."""
    text = unicodedata.normalize("NFD", nfc(text).replace("đ", "d").replace("Đ", "D"))
    return "".join(c for c in text if not unicodedata.combining(c)).casefold()


def name_key(full_name: str) -> tuple[object, ...]:
    """Vietnamese class lists go by given name (the last word), then the whole name."""
    return collation.name_key(nfc(full_name))


def status_label(status: EnrolmentStatus) -> str:
    return _(STATUS_LABELS[status])


def parse_status(text: str) -> EnrolmentStatus | None:
    return _STATUS_WORDS.get(fold(text))


def shown(value: object) -> str:
    """A value as the pages show it: dates dd/mm/yyyy, statuses in words, a dash for nothing."""
    if value is None or value == "":
        return "—"
    if isinstance(value, bool):
        return _("Có") if value else _("Không")
    if isinstance(value, EnrolmentStatus):
        return status_label(value)
    if isinstance(value, date):
        return format_date(value)
    return str(value)


# --- who sees which pupils ------------------------------------------------------------------------

def sees_whole_school(permissions: Set[Permission]) -> bool:
    """Management and IT see every class; teachers only the classes they teach (children's data)."""
    return bool({Permission.MANAGE_PUPILS, Permission.VIEW_ALL_RATINGS, Permission.VIEW_REVIEW_PROGRESS}
                & set(permissions))


def can_view_class_pupils(user_id: int, permissions: Set[Permission], school_class: SchoolClass) -> bool:
    if Permission.VIEW_PUPILS not in permissions:
        return False
    return sees_whole_school(permissions) or is_homeroom_teacher(user_id, school_class) or teaches(
        user_id, school_class)


def can_view_pupil(user_id: int, permissions: Set[Permission], pupil: Pupil) -> bool:
    if Permission.VIEW_PUPILS not in permissions:
        return False
    return sees_whole_school(permissions) or any(
        can_view_class_pupils(user_id, permissions, e.school_class) for e in pupil.enrolments)


def visible_classes(year: SchoolYear, user_id: int, permissions: Set[Permission]) -> list[SchoolClass]:
    return [c for c in year.classes if can_view_class_pupils(user_id, permissions, c)]


# --- reading --------------------------------------------------------------------------------------

def get_pupil(school: School, pupil_id: int) -> Pupil | None:
    return db.session.scalar(sa.select(Pupil).where(Pupil.id == pupil_id, Pupil.school_id == school.id))


def class_roster(school_class: SchoolClass) -> list[Enrolment]:
    """The class's enrolments with their pupils, in the order of a class list."""
    enrolments = db.session.scalars(sa.select(Enrolment).where(Enrolment.class_id == school_class.id)
                                    .options(selectinload(Enrolment.pupil))).all()
    return sorted(enrolments, key=lambda e: name_key(e.pupil.full_name))


def class_sizes(year: SchoolYear) -> dict[int, int]:
    """Enrolled pupils per class id (every status)."""
    rows = db.session.execute(sa.select(Enrolment.class_id, sa.func.count()).where(
        Enrolment.school_year_id == year.id).group_by(Enrolment.class_id))
    return {class_id: count for class_id, count in rows}


def enrolments_of(pupil: Pupil) -> list[Enrolment]:
    """The pupil's study history, latest year first."""
    return sorted(pupil.enrolments, key=lambda e: e.school_class.school_year.starts_on, reverse=True)


def enrolment_in(school_class: SchoolClass, pupil_id: int) -> Enrolment | None:
    return db.session.scalar(sa.select(Enrolment).where(Enrolment.class_id == school_class.id,
                                                        Enrolment.pupil_id == pupil_id))


# --- the identity page ----------------------------------------------------------------------------

@dataclass
class FieldChange:
    field: str
    old: Any
    new: Any

    @property
    def label(self) -> str:
        return _(FIELD_LABELS[self.field])

    @property
    def old_text(self) -> str:
        return shown(self.old)

    @property
    def new_text(self) -> str:
        return shown(self.new)


def _differs(old: Any, new: Any) -> bool:
    if isinstance(old, str) or isinstance(new, str):
        return nfc(old) != nfc(new)
    return old != new


def _audit_changes(changes: Iterable[FieldChange]) -> dict[str, list[Any]]:
    def kept(name: str, value: Any) -> Any:
        if name == "personal_id" and value:
            return HIDDEN
        return value.value if isinstance(value, EnrolmentStatus) else value

    return {c.field: [kept(c.field, c.old), kept(c.field, c.new)] for c in changes}


def update_identity(school: School, pupil: Pupil, values: dict[str, Any], *, actor: User) -> tuple[
        list[FieldChange], bool]:
    """Save the identity page's fields; returns the changes and whether a review mark was cleared."""
    changes = [FieldChange(name, getattr(pupil, name), value) for name, value in values.items()
               if name in Pupil.IDENTITY_FIELDS and _differs(getattr(pupil, name), value)]
    if not changes:
        return [], False
    for change in changes:
        setattr(pupil, change.field, change.new)
    audit.record("pupil.updated", actor=actor, school_id=school.id, obj=pupil, summary=_summary(pupil),
                 changes=_audit_changes(changes))
    cleared = review.clear_identity_review(pupil, actor=actor, reason=_("Sửa thông tin nhân thân"))
    return changes, cleared


def _summary(pupil: Pupil) -> str:
    return f"{pupil.full_name} ({pupil.pupil_code})"


# --- review (rà soát) -----------------------------------------------------------------------------

def mark_identity_reviewed(school: School, pupils: Iterable[Pupil], *, actor: User) -> int:
    """Mark these pupils' identity as checked by the GVCN; returns how many were not marked yet."""
    marked = 0
    for pupil in pupils:
        if pupil.school_id != school.id:
            raise PupilError("pupil of another school")
        if pupil.identity_reviewed_at is None:
            review.mark_identity_reviewed(pupil, actor=actor)
            marked += 1
    return marked


def may_review(user_id: int, permissions: Set[Permission], school_class: SchoolClass) -> bool:
    return can_assess_class(user_id, permissions, school_class)


@dataclass
class MissingPupil:
    pupil: Pupil
    identity: bool
    results: bool


@dataclass
class ClassProgress:
    school_class: SchoolClass | None  # None: the whole school
    pupils: int = 0
    identity_reviewed: int = 0
    results_reviewed: int = 0
    missing: list[MissingPupil] = field(default_factory=list)

    @property
    def identity_percent(self) -> int:
        return _percent(self.identity_reviewed, self.pupils)

    @property
    def results_percent(self) -> int:
        return _percent(self.results_reviewed, self.pupils)


def _percent(part: int, whole: int) -> int:
    # Rounded down: 299 of 300 must not read as 100%.
    return 100 * part // whole if whole else 0


def review_progress(school: School, year: SchoolYear) -> tuple[list[ClassProgress], ClassProgress]:
    """Per class and for the school: pupils still studying, identity and results reviewed, who is missing."""
    rows = db.session.execute(
        sa.select(Enrolment, YearResult.results_reviewed_at)
        .outerjoin(YearResult, YearResult.enrolment_id == Enrolment.id)
        .where(Enrolment.school_year_id == year.id, Enrolment.status.in_(ACTIVE_STATUSES))
        .options(selectinload(Enrolment.pupil))).all()
    per_class = {c.id: ClassProgress(c) for c in year.classes}
    total = ClassProgress(None)
    for enrolment, results_reviewed_at in sorted(rows, key=lambda r: name_key(r[0].pupil.full_name)):
        identity = enrolment.pupil.identity_reviewed_at is not None
        results = results_reviewed_at is not None
        for progress in (per_class[enrolment.class_id], total):
            progress.pupils += 1
            progress.identity_reviewed += identity
            progress.results_reviewed += results
        if not (identity and results):
            per_class[enrolment.class_id].missing.append(MissingPupil(enrolment.pupil, not identity, not results))
    return list(per_class.values()), total


# --- import from CSDL ngành -----------------------------------------------------------------------

class RowAction(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    UNCHANGED = "unchanged"
    REJECT = "reject"


@dataclass
class PlannedPupil:
    """What the import does with one row of the file."""

    row: PupilRow
    action: RowAction
    problems: list[str] = field(default_factory=list)
    changes: list[FieldChange] = field(default_factory=list)
    pupil: Pupil | None = None
    school_class: SchoolClass | None = None
    status: EnrolmentStatus | None = None
    clears_review: bool = False


@dataclass
class PupilImportPlan:
    year: SchoolYear
    rows: list[PlannedPupil]

    def of(self, action: RowAction) -> list[PlannedPupil]:
        return [r for r in self.rows if r.action is action]

    @property
    def counts(self) -> dict[str, int]:
        return {action.value: len(self.of(action)) for action in RowAction}

    @property
    def has_changes(self) -> bool:
        return any(r.action in (RowAction.CREATE, RowAction.UPDATE) for r in self.rows)


def plan_pupil_import(school: School, year: SchoolYear, rows: list[PupilRow]) -> PupilImportPlan:
    """Row by row, what confirming the import would create, update or reject; writes nothing."""
    pupils = {p.pupil_code: p for p in db.session.scalars(sa.select(Pupil).where(Pupil.school_id == school.id))}
    enrolments = {e.pupil_id: e for e in db.session.scalars(
        sa.select(Enrolment).where(Enrolment.school_year_id == year.id).options(selectinload(Enrolment.school_class)))}
    classes = {c.name.upper(): c for c in year.classes}
    planned = []
    for row in rows:
        item = PlannedPupil(row, RowAction.REJECT, problems=list(row.problems))
        item.school_class = classes.get(row.class_code.upper())
        if row.class_code and item.school_class is None:
            item.problems.append(_("Lớp %(c)s chưa có trong năm học %(y)s", c=row.class_code, y=year.name))
        if row.status:
            item.status = parse_status(row.status)
            if item.status is None:
                item.problems.append(_("Trạng thái HS không rõ: %(s)s", s=row.status))
        item.problems += _too_long(row)
        if not item.problems:
            _plan_changes(item, pupils.get(row.pupil_code), enrolments)
        planned.append(item)
    return PupilImportPlan(year, planned)


def _too_long(row: PupilRow) -> list[str]:
    problems = []
    for name in ("pupil_code", *IMPORTED_FIELDS):
        value, limit = getattr(row, name), getattr(Pupil.__table__.c[name].type, "length", None)
        if isinstance(value, str) and limit and len(value) > limit:
            problems.append(_("%(f)s dài quá %(n)d ký tự", f=_(FIELD_LABELS[name]), n=limit))
    return problems


def _row_values(row: PupilRow) -> dict[str, Any]:
    return {name: getattr(row, name) for name in IMPORTED_FIELDS if getattr(row, name) not in (None, "")}


def _plan_changes(item: PlannedPupil, pupil: Pupil | None, enrolments: dict[int, Enrolment]) -> None:
    values, school_class = _row_values(item.row), item.school_class
    assert school_class is not None
    if pupil is None:
        item.action = RowAction.CREATE
        item.changes = [FieldChange(name, None, value) for name, value in values.items()]
        item.changes += [FieldChange("class", None, school_class.name),
                         FieldChange("status", None, item.status or EnrolmentStatus.STUDYING)]
        return
    item.pupil = pupil
    item.changes = [FieldChange(name, getattr(pupil, name), value) for name, value in values.items()
                    if _differs(getattr(pupil, name), value)]
    item.clears_review = bool(item.changes) and pupil.identity_reviewed_at is not None
    enrolment = enrolments.get(pupil.id)
    if enrolment is None:
        item.changes += [FieldChange("class", None, school_class.name),
                         FieldChange("status", None, item.status or EnrolmentStatus.STUDYING)]
    else:
        if enrolment.class_id != school_class.id:
            item.changes.append(FieldChange("class", enrolment.school_class.name, school_class.name))
        if item.status is not None and item.status != enrolment.status:
            item.changes.append(FieldChange("status", enrolment.status, item.status))
    item.action = RowAction.UPDATE if item.changes else RowAction.UNCHANGED


def apply_pupil_import(school: School, plan: PupilImportPlan, *, actor: User, filename: str) -> None:
    """Write every valid row of the plan (rejected rows are skipped) in the caller's transaction."""
    if not plan.has_changes:
        return  # the same file again: nothing written, nothing logged
    enrolments = {e.pupil_id: e for e in db.session.scalars(
        sa.select(Enrolment).where(Enrolment.school_year_id == plan.year.id))}
    for item in plan.rows:
        if item.action is RowAction.CREATE:
            _create_pupil(school, plan.year, item, actor=actor)
        elif item.action is RowAction.UPDATE:
            _update_pupil(school, plan.year, item, enrolments.get(item.pupil.id), actor=actor)  # type: ignore[union-attr]
    counts = plan.counts
    audit.record("pupil.imported", actor=actor, school_id=school.id, obj=plan.year,
                 summary=_("Nhập từ CSDL ngành: %(f)s", f=filename), changes={
                     "school_year": plan.year.name, "file": filename, **counts,
                     "rejected_lines": [r.row.line for r in plan.of(RowAction.REJECT)]})


def _create_pupil(school: School, year: SchoolYear, item: PlannedPupil, *, actor: User) -> None:
    assert item.school_class is not None
    pupil = Pupil(school_id=school.id, pupil_code=item.row.pupil_code, **_row_values(item.row))
    db.session.add(pupil)
    db.session.flush()
    db.session.add(Enrolment(school_id=school.id, pupil_id=pupil.id, school_year_id=year.id,
                             class_id=item.school_class.id, status=item.status or EnrolmentStatus.STUDYING,
                             enrolled_on=item.row.status_date))
    item.pupil = pupil
    audit.record("pupil.created", actor=actor, school_id=school.id, obj=pupil, summary=_summary(pupil),
                 changes=_audit_changes(item.changes))


def _update_pupil(school: School, year: SchoolYear, item: PlannedPupil, enrolment: Enrolment | None, *,
                  actor: User) -> None:
    pupil, school_class = item.pupil, item.school_class
    assert pupil is not None and school_class is not None
    for change in item.changes:
        if change.field in IMPORTED_FIELDS:
            setattr(pupil, change.field, change.new)
    if enrolment is None:
        db.session.add(Enrolment(school_id=school.id, pupil_id=pupil.id, school_year_id=year.id,
                                 class_id=school_class.id, status=item.status or EnrolmentStatus.STUDYING,
                                 enrolled_on=item.row.status_date))
    else:
        enrolment.class_id = school_class.id
        if item.status is not None:
            enrolment.status = item.status
        if item.row.status_date is not None:
            enrolment.enrolled_on = item.row.status_date
    audit.record("pupil.updated", actor=actor, school_id=school.id, obj=pupil, summary=_summary(pupil),
                 changes=_audit_changes(item.changes))
    if item.clears_review:
        review.clear_identity_review(pupil, actor=actor, reason=_("Thông tin nhân thân cập nhật từ CSDL ngành"))
