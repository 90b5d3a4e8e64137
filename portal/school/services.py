"""A school's staff: accounts, roles, deactivation, password resets and imports.

Every function runs inside the caller's tenant scope (the school), writes its audit entries, and
leaves the commit to the caller, so that a view, a job or an import commits once.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

import sqlalchemy as sa
from flask_babel import gettext as _

from portal import audit
from portal.auth import services as auth
from portal.auth.services import normalise_username
from portal.collation import name_key
from portal.extensions import db
from tenants.models import Membership, MembershipRole, School, User
from tenants.roles import MANAGEMENT_ROLES, Role, outranks
from tenants.scoping import all_schools

USERNAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{2,79}$")
EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class StaffError(ValueError):
    """A staff change that cannot be made; the message is for the user."""


def nfc(text: str | None) -> str:
    return " ".join(unicodedata.normalize("NFC", text or "").split())


def list_staff(school: School) -> list[Membership]:
    """Every member of the school's staff, active first, by name."""
    members = db.session.scalars(sa.select(Membership).join(User, Membership.user_id == User.id)
                                 .where(Membership.school_id == school.id))
    return sorted(members, key=lambda m: (not m.active, name_key(m.user.full_name)))


def get_member(school: School, user_id: int) -> Membership | None:
    """The membership of that user in this school, or None (also for another school's user)."""
    return db.session.scalar(
        sa.select(Membership).where(Membership.school_id == school.id, Membership.user_id == user_id)
    )


def check_new_account(username: str, full_name: str, email: str | None, roles: set[Role]) -> list[str]:
    """Why an account cannot be created with these values; empty when it can."""
    problems = []
    username = normalise_username(username)
    if not USERNAME_PATTERN.match(username):
        problems.append(_("Tên đăng nhập chỉ gồm chữ không dấu, số, dấu chấm, gạch ngang; 3-80 ký tự."))
    elif db.session.scalar(sa.select(User.id).where(User.username == username)) is not None:
        problems.append(_("Tên đăng nhập %(u)s đã có người dùng.", u=username))
    if not nfc(full_name):
        problems.append(_("Thiếu họ và tên."))
    if email and not EMAIL_PATTERN.match(email.strip()):
        problems.append(_("Địa chỉ email không hợp lệ."))
    if not roles:
        problems.append(_("Cần chọn ít nhất một vai trò."))
    if any(role.is_district_role for role in roles):
        problems.append(_("Vai trò của Phòng GD&ĐT không giao trong trường."))
    return problems


def check_role_grant(roles: set[Role], *, may_assign_management: bool) -> list[str]:
    if not may_assign_management and roles & MANAGEMENT_ROLES:
        return [_("Chỉ Hiệu trưởng hoặc Phòng GD&ĐT được giao vai trò Hiệu trưởng, Phó hiệu trưởng, "
                  "Nhân viên CNTT.")]
    return []


def roles_here(user: User, school: School) -> frozenset[Role]:
    """What `user` holds when acting in this school: their active roles there plus any district role."""
    roles = set(db.session.scalars(sa.select(MembershipRole.role).join(Membership).where(
        Membership.school_id == school.id, Membership.user_id == user.id, Membership.active.is_(True))))
    if user.district_role is not None:
        roles.add(user.district_role)
    return frozenset(roles)


def roles_anywhere(user: User) -> frozenset[Role]:
    """Every role `user` holds in any school, plus any district role: a password is the whole account's."""
    with all_schools():
        roles = set(db.session.scalars(sa.select(MembershipRole.role).join(Membership).where(
            Membership.user_id == user.id, Membership.active.is_(True))))
    if user.district_role is not None:
        roles.add(user.district_role)
    return frozenset(roles)


def may_manage(school: School, actor: User, target: User) -> bool:
    """Whether `actor`, acting in this school, holds more authority than `target` has anywhere."""
    return actor.id != target.id and outranks(roles_here(actor, school), roles_anywhere(target))


def check_authority(school: School, actor: User, target: User) -> None:
    if not may_manage(school, actor, target):
        raise StaffError(_("Bạn không thể đặt lại mật khẩu, khóa, mở khóa hay đổi vai trò của người có "
                           "thẩm quyền ngang hoặc cao hơn bạn."))


def _role_names(roles: set[Role] | frozenset[Role]) -> str:
    return ", ".join(role.label for role in sorted(roles)) or "—"


@dataclass
class NewAccount:
    user: User
    link_token: str  # the holder sets their own password with it; shown once to whoever created the account


def create_staff(school: School, *, username: str, full_name: str, email: str | None,
                 roles: set[Role], actor: User, may_assign_management: bool) -> NewAccount:
    """Create an account with a temporary password and make it a member of the school."""
    problems = check_new_account(username, full_name, email, roles)
    problems += check_role_grant(roles, may_assign_management=may_assign_management)
    if problems:
        raise StaffError(" ".join(problems))
    user = User(district_id=school.district_id, username=normalise_username(username),
                full_name=nfc(full_name), email=(email or "").strip() or None,
                password_hash=auth.UNUSABLE_PASSWORD_HASH)
    db.session.add(user)
    membership = Membership(school_id=school.id, user=user,
                            roles=[MembershipRole(school_id=school.id, role=r) for r in sorted(roles)])
    db.session.add(membership)
    db.session.flush()
    audit.record("staff.created", actor=actor, school_id=school.id, obj=user, summary=user.full_name,
                 changes={"username": user.username, "full_name": user.full_name, "email": user.email,
                          "roles": sorted(roles)})
    return NewAccount(user, auth.issue_password_link(user, purpose="new", actor=actor))


def update_staff(school: School, membership: Membership, *, full_name: str, email: str | None,
                 roles: set[Role], actor: User, may_assign_management: bool) -> None:
    """Change a member's name, e-mail and roles in this school."""
    if not roles:
        raise StaffError(_("Cần chọn ít nhất một vai trò."))
    if any(role.is_district_role for role in roles):
        raise StaffError(_("Vai trò của Phòng GD&ĐT không giao trong trường."))
    current = membership.role_set
    if membership.user_id != actor.id:
        check_authority(school, actor, membership.user)
    problems = check_role_grant(roles ^ current, may_assign_management=may_assign_management)
    if problems:
        raise StaffError(" ".join(problems))
    if Role.PRINCIPAL in current - roles and membership.user_id == actor.id:
        raise StaffError(_("Bạn không thể tự bỏ vai trò Hiệu trưởng của mình."))
    if membership.user_id == actor.id and not outranks(roles_here(actor, school), roles - current):
        raise StaffError(_("Bạn không thể tự giao cho mình vai trò cao hơn vai trò đang có."))
    if email and not EMAIL_PATTERN.match(email.strip()):
        raise StaffError(_("Địa chỉ email không hợp lệ."))
    user = membership.user
    before = {"full_name": user.full_name, "email": user.email, "roles": sorted(current)}
    user.full_name, user.email = nfc(full_name) or user.full_name, (email or "").strip() or None
    for held in list(membership.roles):
        if held.role not in roles:
            membership.roles.remove(held)
    for role in sorted(roles - current):
        membership.roles.append(MembershipRole(school_id=school.id, role=role))
    after = {"full_name": user.full_name, "email": user.email, "roles": sorted(roles)}
    changes = audit.diff(before, after)
    if changes:
        audit.record("staff.updated", actor=actor, school_id=school.id, obj=user, summary=user.full_name,
                     changes=changes)
    if roles != current:
        auth.notify(user, auth.NOTICE_ROLES, actor=actor, school=school.name, before=_role_names(current),
                    after=_role_names(roles))
    elif changes:
        auth.notify(user, auth.NOTICE_PROFILE, actor=actor, school=school.name)


def set_staff_active(school: School, membership: Membership, active: bool, *, actor: User) -> None:
    """Open or close this school to a member (the account itself stays for their other schools)."""
    if membership.active == active:
        return
    if not active and membership.user_id == actor.id:
        raise StaffError(_("Bạn không thể tự khóa tài khoản của mình."))
    check_authority(school, actor, membership.user)
    membership.active = active  # checked on every request to the school's pages
    audit.record("staff.activated" if active else "staff.deactivated", actor=actor, school_id=school.id,
                 obj=membership.user, summary=membership.user.full_name, changes={"active": [not active, active]})
    auth.notify(membership.user, auth.NOTICE_UNLOCKED if active else auth.NOTICE_LOCKED, actor=actor,
                school=school.name)


def reset_staff_password(school: School, membership: Membership, *, actor: User) -> str:
    """A one-time set-password link for the member (returned once, to hand over); never a password.

    The current password keeps working until the holder uses the link, so a reset cannot lock anyone out.
    """
    check_authority(school, actor, membership.user)
    token = auth.issue_password_link(membership.user, purpose="reset", actor=actor)
    audit.record("staff.password_reset", actor=actor, school_id=school.id, obj=membership.user,
                 summary=membership.user.full_name, changes={"set_password_link": "issued"})
    auth.notify(membership.user, auth.NOTICE_PASSWORD_RESET, actor=actor)
    return token


@dataclass
class ImportRow:
    line: int
    username: str
    full_name: str
    email: str
    roles: set[Role] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)


@dataclass
class ImportResult:
    rows: list[ImportRow]
    created: list[NewAccount] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.rows) and not any(row.problems for row in self.rows)


def import_staff(school: School, rows: list[ImportRow], *, actor: User, may_assign_management: bool,
                 commit: bool) -> ImportResult:
    """Check every row; create all accounts only when every row is right (nothing half-imported)."""
    seen: dict[str, int] = {}
    for row in rows:
        row.problems += check_new_account(row.username, row.full_name, row.email or None, row.roles)
        row.problems += check_role_grant(row.roles, may_assign_management=may_assign_management)
        name = normalise_username(row.username)
        if name in seen:
            row.problems.append(_("Trùng tên đăng nhập với dòng %(n)d.", n=seen[name]))
        seen.setdefault(name, row.line)
    result = ImportResult(rows)
    if not result.ok or not commit:
        return result
    for row in rows:
        result.created.append(create_staff(school, username=row.username, full_name=row.full_name,
                                           email=row.email or None, roles=row.roles, actor=actor,
                                           may_assign_management=may_assign_management))
    audit.record("staff.imported", actor=actor, school_id=school.id, object_type="School",
                 object_id=school.id, summary=_("%(n)d tài khoản", n=len(rows)),
                 changes={"usernames": [account.user.username for account in result.created]})
    return result

