"""School years, entry windows, classes and teaching assignments of one school."""

from __future__ import annotations

import re
from datetime import date

import sqlalchemy as sa
from flask_babel import gettext as _
from sqlalchemy.orm import joinedload

from portal import audit
from portal.assessment.catalogue import build_year
from portal.assessment.models import Period, SchoolClass, SchoolYear, Subject, TeachingAssignment
from portal.collation import name_key
from portal.extensions import db
from tenants.models import Membership, MembershipRole, School, User
from tenants.roles import Role

YEAR_NAME = re.compile(r"^(\d{4})-(\d{4})$")
CLASS_NAME = re.compile(r"^([1-5])[A-Z0-9]{1,3}$")


def school_year_start(day: date) -> int:
    """The calendar year in which the school year holding `day` began: a school year runs from
    September to the summer's end, so January to August belong to the year begun the September before."""
    return day.year if day.month >= 9 else day.year - 1


def year_label(start: int) -> str:
    """ 2026 -> "2026-2027"."""
    return f"{start}-{start + 1}"


def school_year_label(day: date) -> str:
    """The label of the school year holding `day` ("2026-2027" on 06/12/2026)."""
    return year_label(school_year_start(day))


class SetupError(ValueError):
    """A set-up change that cannot be made; the message is for the user."""


def list_years(school: School) -> list[SchoolYear]:
    return list(db.session.scalars(sa.select(SchoolYear).where(SchoolYear.school_id == school.id)
                                   .order_by(SchoolYear.starts_on.desc())))


def current_year(school: School, today: date) -> SchoolYear | None:
    """The year that contains `today`, else the latest one."""
    years = list_years(school)
    return next((y for y in years if y.starts_on <= today <= y.ends_on), years[0] if years else None)


def get_year(school: School, year_id: int) -> SchoolYear | None:
    return db.session.scalar(sa.select(SchoolYear).where(SchoolYear.id == year_id, SchoolYear.school_id == school.id))


def get_class(school: School, class_id: int) -> SchoolClass | None:
    """The school's class with its school year and the year's periods, in one query (the class pages show them)."""
    return db.session.scalar(sa.select(SchoolClass).where(SchoolClass.id == class_id,
                                                          SchoolClass.school_id == school.id)
                             .options(joinedload(SchoolClass.school_year).joinedload(SchoolYear.periods)))


def create_year(school: School, name: str, starts_on: date, ends_on: date, *, actor: User,
                copy_from: SchoolYear | None = None) -> SchoolYear:
    """A new school year with its four periods and the catalogue (from the programme, or copied)."""
    name = name.strip()
    match = YEAR_NAME.match(name)
    if not match or int(match.group(2)) != int(match.group(1)) + 1:
        raise SetupError(_("Tên năm học phải có dạng 2024-2025."))
    if starts_on >= ends_on:
        raise SetupError(_("Ngày bắt đầu phải trước ngày kết thúc năm học."))
    if any(y.name == name for y in list_years(school)):
        raise SetupError(_("Năm học %(n)s đã có.", n=name))
    year = build_year(school.id, name, starts_on, ends_on, copy_from=copy_from)
    db.session.add(year)
    db.session.flush()
    audit.record("school_year.created", actor=actor, school_id=school.id, obj=year, summary=name,
                 changes={"starts_on": starts_on, "ends_on": ends_on,
                          "copied_from": copy_from.name if copy_from else None})
    return year


def set_entry_window(school: School, period: Period, opens_on: date | None, closes_on: date | None, *,
                     actor: User) -> None:
    """When teachers may enter this period's ratings; both dates or neither (closed)."""
    if (opens_on is None) != (closes_on is None):
        raise SetupError(_("%(p)s: cần cả ngày mở và ngày đóng, hoặc để trống cả hai.", p=period.name))
    if opens_on and closes_on and opens_on > closes_on:
        raise SetupError(_("%(p)s: ngày mở phải trước ngày đóng.", p=period.name))
    before = {"opens_on": period.entry_opens_on, "closes_on": period.entry_closes_on}
    period.entry_opens_on, period.entry_closes_on = opens_on, closes_on
    changes = audit.diff(before, {"opens_on": opens_on, "closes_on": closes_on})
    if changes:
        audit.record("period.window_set", actor=actor, school_id=school.id, obj=period, summary=period.name,
                     changes=changes)


def set_thresholds(school: School, year: SchoolYear, *, excellent: int | None = None, good: int | None = None,
                   completed: int | None = None, actor: User | None) -> bool:
    """Change the year's Điều 9 score thresholds (those given); every year-end result is computed with them,
    so confirmed results that no longer match show as stale for the GVCN to confirm again."""
    from portal.assessment.classification import Thresholds

    before = {"excellent": year.excellent_min_score, "good": year.good_min_score,
              "completed": year.completed_min_score}
    after = {"excellent": before["excellent"] if excellent is None else excellent,
             "good": before["good"] if good is None else good,
             "completed": before["completed"] if completed is None else completed}
    try:
        Thresholds(after["excellent"], after["good"], after["completed"])
    except ValueError as exc:
        raise SetupError(_("Ngưỡng điểm không hợp lệ: %(e)s", e=exc)) from exc
    changes = audit.diff(before, after)
    if not changes:
        return False
    year.excellent_min_score, year.good_min_score, year.completed_min_score = (
        after["excellent"], after["good"], after["completed"])
    audit.record("school_year.thresholds_set", actor=actor, school_id=school.id, obj=year, summary=year.name,
                 changes=changes)
    return True


def create_classes(school: School, year: SchoolYear, names: str, *, actor: User) -> list[SchoolClass]:
    """Classes from names such as "1A 1B 2A" (the grade is the first digit)."""
    wanted = [n.strip().upper() for n in re.split(r"[\s,;]+", names) if n.strip()]
    if not wanted:
        raise SetupError(_("Nhập tên lớp, ví dụ: 1A 1B 2A."))
    bad = [n for n in wanted if not CLASS_NAME.match(n)]
    if bad:
        raise SetupError(_("Tên lớp không hợp lệ: %(n)s (dạng 1A ... 5E).", n=", ".join(bad)))
    existing = {c.name for c in year.classes}
    duplicates = sorted({n for n in wanted if n in existing or wanted.count(n) > 1})
    if duplicates:
        raise SetupError(_("Lớp đã có hoặc bị lặp: %(n)s.", n=", ".join(duplicates)))
    created = [SchoolClass(school_id=school.id, school_year=year, name=n, grade=int(n[0])) for n in wanted]
    db.session.add_all(created)
    db.session.flush()
    audit.record("class.created", actor=actor, school_id=school.id, obj=year, summary=" ".join(wanted),
                 changes={"classes": wanted, "school_year": year.name})
    return created


def teachers(school: School, role: Role) -> list[User]:
    """Active members of the school holding `role`, by name."""
    return sorted(db.session.scalars(
        sa.select(User).join(Membership, Membership.user_id == User.id)
        .join(MembershipRole, MembershipRole.membership_id == Membership.id)
        .where(Membership.school_id == school.id, Membership.active.is_(True), MembershipRole.role == role)),
        key=lambda u: name_key(u.full_name))


def _teacher(school: School, user_id: int | None, *roles: Role) -> User | None:
    if user_id is None:
        return None
    allowed = {u.id: u for role in roles for u in teachers(school, role)}
    if user_id not in allowed:
        raise SetupError(_("Người được chọn không phải giáo viên phù hợp của trường."))
    return allowed[user_id]


def set_homeroom_teacher(school: School, school_class: SchoolClass, user_id: int | None, *, actor: User) -> None:
    teacher = _teacher(school, user_id, Role.HOMEROOM_TEACHER)
    before = school_class.homeroom_teacher_id
    if before == user_id:
        return
    school_class.homeroom_teacher_id = teacher.id if teacher else None
    audit.record("class.homeroom_set", actor=actor, school_id=school.id, obj=school_class, summary=school_class.name,
                 changes={"homeroom_teacher": [before, user_id]})


def subjects_of_class(school_class: SchoolClass) -> list[Subject]:
    """The year's subjects taught in the class's grade, in catalogue order."""
    return [s for s in school_class.school_year.subjects if s.for_grade(school_class.grade) is not None]


def set_subject_teacher(school: School, school_class: SchoolClass, subject: Subject, user_id: int | None, *,
                        actor: User) -> None:
    """The GVBM of one subject in one class (None removes the assignment)."""
    if subject.for_grade(school_class.grade) is None:
        raise SetupError(_("Môn %(s)s không học ở khối %(g)d.", s=subject.name, g=school_class.grade))
    teacher = _teacher(school, user_id, Role.SUBJECT_TEACHER, Role.HOMEROOM_TEACHER)
    current = next((a for a in school_class.assignments if a.subject_id == subject.id), None)
    before = current.teacher_id if current else None
    if before == user_id:
        return
    if teacher is None:
        school_class.assignments.remove(current)  # type: ignore[arg-type]
    elif current is None:
        school_class.assignments.append(TeachingAssignment(school_id=school.id, subject_id=subject.id,
                                                           teacher_id=teacher.id))
    else:
        current.teacher_id = teacher.id
    audit.record("class.subject_teacher_set", actor=actor, school_id=school.id, obj=school_class,
                 summary=f"{school_class.name} · {subject.name}", changes={subject.code: [before, user_id]})
