"""Who may hand out family access codes for which pupils (object-level, failing closed)."""

from __future__ import annotations

from collections.abc import Set

from portal.assessment.access import is_homeroom_teacher
from portal.assessment.models import SchoolClass
from tenants.roles import Permission


def can_manage_family_access(user_id: int, permissions: Set[Permission], school_class: SchoolClass | None) -> bool:
    """The principal and IT staff (who see every class's records) for every pupil; a GVCN for their own class."""
    if Permission.MANAGE_FAMILY_ACCESS not in permissions:
        return False
    if Permission.VIEW_ALL_RECORDS in permissions:
        return True
    return school_class is not None and is_homeroom_teacher(user_id, school_class)
