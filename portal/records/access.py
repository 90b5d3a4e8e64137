"""Who may see and generate which records (object-level, failing closed)."""

from __future__ import annotations

from collections.abc import Set

from portal.assessment.access import is_homeroom_teacher
from portal.assessment.models import SchoolClass
from tenants.roles import Permission


def can_view_records(user_id: int, permissions: Set[Permission], school_class: SchoolClass) -> bool:
    """Management sees every class; a GVCN sees the records of their own class."""
    if Permission.VIEW_ALL_RECORDS in permissions:
        return True
    return Permission.VIEW_RECORDS in permissions and is_homeroom_teacher(user_id, school_class)


def can_generate_records(user_id: int, permissions: Set[Permission], school_class: SchoolClass) -> bool:
    return Permission.GENERATE_RECORDS in permissions and can_view_records(user_id, permissions, school_class)
