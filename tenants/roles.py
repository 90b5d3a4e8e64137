"""The roles of the portal and what each may do: the one place where permissions are written."""

from __future__ import annotations

import unicodedata
from enum import StrEnum

from flask_babel import gettext


def N_(text: str) -> str:
    """Marks a Vietnamese source string for translation; it is translated where it is shown."""
    return text


class Role(StrEnum):
    DISTRICT_ADMIN = "district_admin"
    DISTRICT_OFFICER = "district_officer"
    PRINCIPAL = "principal"
    VICE_PRINCIPAL = "vice_principal"
    SCHOOL_IT = "school_it"
    HOMEROOM_TEACHER = "homeroom_teacher"
    SUBJECT_TEACHER = "subject_teacher"

    @property
    def label(self) -> str:
        return gettext(ROLE_LABELS[self])

    @property
    def is_district_role(self) -> bool:
        return self in DISTRICT_ROLES


class Permission(StrEnum):
    VIEW_DISTRICT = "district.view"
    MANAGE_SCHOOLS = "district.manage_schools"
    VIEW_DISTRICT_AUDIT = "district.view_audit"
    VIEW_SCHOOL = "school.view"
    VIEW_STAFF = "school.view_staff"
    MANAGE_STAFF = "school.manage_staff"
    ASSIGN_MANAGEMENT_ROLES = "school.assign_management_roles"
    VIEW_SCHOOL_AUDIT = "school.view_audit"

    @property
    def label(self) -> str:
        return gettext(PERMISSION_LABELS[self])


ROLE_LABELS = {
    Role.DISTRICT_ADMIN: N_("Quản trị Phòng GD&ĐT"),
    Role.DISTRICT_OFFICER: N_("Chuyên viên Phòng GD&ĐT (chỉ xem)"),
    Role.PRINCIPAL: N_("Hiệu trưởng"),
    Role.VICE_PRINCIPAL: N_("Phó hiệu trưởng"),
    Role.SCHOOL_IT: N_("Nhân viên CNTT"),
    Role.HOMEROOM_TEACHER: N_("Giáo viên chủ nhiệm"),
    Role.SUBJECT_TEACHER: N_("Giáo viên bộ môn"),
}

PERMISSION_LABELS = {
    Permission.VIEW_DISTRICT: N_("Xem danh sách trường và tiến độ toàn Phòng"),
    Permission.MANAGE_SCHOOLS: N_("Tạo trường, tạo tài khoản Hiệu trưởng và Nhân viên CNTT"),
    Permission.VIEW_DISTRICT_AUDIT: N_("Xem nhật ký hoạt động của mọi trường"),
    Permission.VIEW_SCHOOL: N_("Vào trang của trường"),
    Permission.VIEW_STAFF: N_("Xem danh sách cán bộ, giáo viên"),
    Permission.MANAGE_STAFF: N_("Tạo tài khoản, phân quyền, khóa, đặt lại mật khẩu, nhập danh sách"),
    Permission.ASSIGN_MANAGEMENT_ROLES: N_("Giao vai trò Hiệu trưởng, Phó hiệu trưởng, Nhân viên CNTT"),
    Permission.VIEW_SCHOOL_AUDIT: N_("Xem và xuất nhật ký hoạt động của trường"),
}

DISTRICT_ROLES = frozenset({Role.DISTRICT_ADMIN, Role.DISTRICT_OFFICER})
SCHOOL_ROLES = tuple(role for role in Role if role not in DISTRICT_ROLES)
# Roles that only a principal (or the district) may hand out: they carry the school's administration.
MANAGEMENT_ROLES = frozenset({Role.PRINCIPAL, Role.VICE_PRINCIPAL, Role.SCHOOL_IT})

P = Permission
ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.DISTRICT_ADMIN: frozenset({P.VIEW_DISTRICT, P.MANAGE_SCHOOLS, P.VIEW_DISTRICT_AUDIT}),
    Role.DISTRICT_OFFICER: frozenset({P.VIEW_DISTRICT, P.VIEW_DISTRICT_AUDIT}),
    Role.PRINCIPAL: frozenset(
        {P.VIEW_SCHOOL, P.VIEW_STAFF, P.MANAGE_STAFF, P.ASSIGN_MANAGEMENT_ROLES, P.VIEW_SCHOOL_AUDIT}
    ),
    Role.VICE_PRINCIPAL: frozenset({P.VIEW_SCHOOL, P.VIEW_STAFF}),
    Role.SCHOOL_IT: frozenset({P.VIEW_SCHOOL, P.VIEW_STAFF, P.MANAGE_STAFF}),
    Role.HOMEROOM_TEACHER: frozenset({P.VIEW_SCHOOL}),
    Role.SUBJECT_TEACHER: frozenset({P.VIEW_SCHOOL}),
}


def permissions_for(roles: set[Role] | frozenset[Role]) -> frozenset[Permission]:
    """Everything the given roles allow together."""
    granted: set[Permission] = set()
    for role in roles:
        granted |= ROLE_PERMISSIONS[role]
    return frozenset(granted)


def parse_role(text: str) -> Role | None:
    """A role from its code or its Vietnamese label (as typed in an import file), or None."""
    wanted = " ".join(unicodedata.normalize("NFC", text).split()).casefold()
    aliases = {"gvcn": Role.HOMEROOM_TEACHER, "gvbm": Role.SUBJECT_TEACHER, "ht": Role.PRINCIPAL,
               "pht": Role.VICE_PRINCIPAL, "cntt": Role.SCHOOL_IT}
    if wanted in aliases:
        return aliases[wanted]
    for role in Role:
        if wanted in {role.value, ROLE_LABELS[role].casefold()}:
            return role
    return None

