"""Object-level checks for assessment: a teacher acts on her own class and her assigned subjects.

Role permissions (tenants.roles) say what kind of thing a user may do in the school; these
functions narrow that to particular classes and subjects. They fail closed.
"""

from __future__ import annotations

from collections.abc import Set

import sqlalchemy as sa

from portal.assessment.models import SchoolClass, TeachingAssignment
from portal.extensions import db
from tenants.roles import Permission


def is_homeroom_teacher(user_id: int, school_class: SchoolClass) -> bool:
    return school_class.homeroom_teacher_id == user_id


def teaches(user_id: int, school_class: SchoolClass, subject_id: int | None = None) -> bool:
    """The user is the subject teacher of that subject (of any subject, when None) in the class."""
    query = sa.select(TeachingAssignment.id).where(TeachingAssignment.class_id == school_class.id,
                                                   TeachingAssignment.teacher_id == user_id)
    if subject_id is not None:
        query = query.where(TeachingAssignment.subject_id == subject_id)
    return db.session.scalar(query.limit(1)) is not None


def can_view_class(user_id: int, permissions: Set[Permission], school_class: SchoolClass) -> bool:
    if Permission.VIEW_ALL_RATINGS in permissions:
        return True
    return Permission.ENTER_RATINGS in permissions and (
        is_homeroom_teacher(user_id, school_class) or teaches(user_id, school_class))


def can_enter_subject(user_id: int, permissions: Set[Permission], school_class: SchoolClass,
                      subject_id: int) -> bool:
    """GVBM of that subject in that class, or the class's GVCN."""
    return Permission.ENTER_RATINGS in permissions and (
        is_homeroom_teacher(user_id, school_class) or teaches(user_id, school_class, subject_id))


def can_assess_class(user_id: int, permissions: Set[Permission], school_class: SchoolClass) -> bool:
    """Qualities, competencies, measurements, year-end results and review: the class's GVCN."""
    return Permission.CONFIRM_RESULTS in permissions and is_homeroom_teacher(user_id, school_class)
