"""The demo district: Nhà Bè with twelve primary schools and their staff, living in the school year of
the day it is built. The builders of this package add the rest, each safe to run again:
`assessment` (every school year from 2024-2025 to today's, pupils, ratings, results), `compliance` (the
district's plan of each year and the schools' progress), `signing` (demo certificates), `records`
(grade 5's records of the years that are over, signed and issued).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date

import sqlalchemy as sa

from portal import audit
from portal.auth.services import hash_password
from portal.extensions import db
from tenants.models import District, Membership, MembershipRole, School, User
from tenants.roles import Role
from tenants.scoping import all_schools

DEMO_PASSWORD = "hocbaso2025"
DISTRICT = {"code": "nhabe", "name": "Phòng Giáo dục và Đào tạo huyện Nhà Bè", "city": "Thành phố Hồ Chí Minh"}

# (code, name, commune); the first is the school whose plan this project started from.
SCHOOLS = [
    ("lequangdinh", "Trường Tiểu học Lê Quang Định", "Thị trấn Nhà Bè"),
    ("nguyenbinh", "Trường Tiểu học Nguyễn Bình", "Xã Phú Xuân"),
    ("buivanba", "Trường Tiểu học Bùi Văn Ba", "Xã Phước Kiển"),
    ("levanluong", "Trường Tiểu học Lê Văn Lương", "Xã Phước Kiển"),
    ("phuxuan", "Trường Tiểu học Phú Xuân", "Xã Phú Xuân"),
    ("nguyentruc", "Trường Tiểu học Nguyễn Trực", "Xã Long Thới"),
    ("duongvanlich", "Trường Tiểu học Dương Văn Lịch", "Xã Nhơn Đức"),
    ("trangtankhuong", "Trường Tiểu học Trang Tấn Khương", "Xã Phước Lộc"),
    ("tauyen", "Trường Tiểu học Tạ Uyên", "Xã Nhơn Đức"),
    ("nguyenviethong", "Trường Tiểu học Nguyễn Việt Hồng", "Xã Hiệp Phước"),
    ("leloi", "Trường Tiểu học Lê Lợi", "Xã Long Thới"),
    ("hiepphuoc", "Trường Tiểu học Hiệp Phước", "Xã Hiệp Phước"),
]

FAMILY = ["Nguyễn", "Trần", "Lê", "Phạm", "Huỳnh", "Võ", "Phan", "Trương", "Đặng", "Bùi", "Đỗ", "Hồ"]
MIDDLE = ["Thị", "Văn", "Ngọc", "Minh", "Thanh", "Hoàng", "Thu", "Quốc", "Mỹ", "Đức"]
GIVEN = ["Lài", "Tuyết", "Hùng", "Hương", "Dũng", "Lan", "Phúc", "Ánh", "Khoa", "Trâm", "Nghĩa", "Yến",
         "Quân", "Thảo", "Tâm", "Hạnh", "Vy", "Sơn", "Ngân", "Thắng"]

# Each school's staff: (username prefix, roles). One teacher is both a GVCN and a GVBM.
STAFF = [
    ("ht", {Role.PRINCIPAL}),
    ("pht", {Role.VICE_PRINCIPAL}),
    ("cntt", {Role.SCHOOL_IT}),
    ("gvcn1", {Role.HOMEROOM_TEACHER}),
    ("gvcn2", {Role.HOMEROOM_TEACHER}),
    ("gvcn3", {Role.HOMEROOM_TEACHER, Role.SUBJECT_TEACHER}),
    ("gvcn4", {Role.HOMEROOM_TEACHER}),
    ("gvcn5", {Role.HOMEROOM_TEACHER}),
    ("gvbm1", {Role.SUBJECT_TEACHER}),
    ("gvbm2", {Role.SUBJECT_TEACHER}),
]


@dataclass(frozen=True)
class DemoLogin:
    username: str
    full_name: str
    roles: str
    school: str


def _names() -> itertools.cycle[str]:
    combos = [f"{f} {m} {g}" for g in GIVEN for f in FAMILY[:7] for m in MIDDLE[:4]]
    return itertools.cycle(combos[i * 37 % len(combos)] for i in range(len(combos)))


def build_demo(today: date | None = None, *, created: dict[str, int] | None = None) -> list[DemoLogin]:
    """Create (or complete) the demo district; returns the logins to print.

    The assessment data is built as of `today` (default: the real today); what it added is put into
    `created` when given (pupils, classes, ratings...).
    """
    today = today or date.today()
    from portal.demo.assessment import build_assessment_demo  # it builds on this module's schools and staff
    from portal.demo.compliance import build_compliance_demo

    password_hash = hash_password(DEMO_PASSWORD)  # one hash for every demo account keeps this fast
    names = _names()
    logins: list[DemoLogin] = []
    with all_schools():
        district = demo_district()
        for username, full_name, role in (("phong.admin", "Trần Minh Quân", Role.DISTRICT_ADMIN),
                                          ("phong.chuyenvien", "Lê Thu Hạnh", Role.DISTRICT_OFFICER)):
            _user(district, username, full_name, password_hash, district_role=role)
            logins.append(DemoLogin(username, full_name, role.label, district.name))
        for code, name, commune in SCHOOLS:
            school, staff = school_with_staff(district, code, name, commune, password_hash, names)
            logins.extend(DemoLogin(user.username, user.full_name, ", ".join(r.label for r in sorted(roles)),
                                    school.name)
                          for user, roles in staff if code == "lequangdinh" or Role.PRINCIPAL in roles)
        assessment = build_assessment_demo(today)
        if created is not None:
            created.update(assessment)
        created_compliance = build_compliance_demo(district, today)
        if created is not None:
            created.update(created_compliance)
        audit.record("demo.built", actor=None, school_id=None, obj=district, summary=district.name,
                     changes={"schools": len(SCHOOLS)})
        db.session.commit()
    return logins


def demo_district() -> District:
    """The demo district's row, created when missing."""
    district = db.session.scalar(sa.select(District).where(District.code == DISTRICT["code"]))
    if district is None:
        district = District(**DISTRICT)
        db.session.add(district)
        db.session.flush()
    return district


def school_with_staff(district: District, code: str, name: str, commune: str, password_hash: str,
                      names: Iterator[str] | None = None) -> tuple[School, list[tuple[User, set[Role]]]]:
    """A demo school (created when missing) and its staff, each a member with the roles of `STAFF`; their
    names drawn from `names` (the demo's draw when not given)."""
    names = names if names is not None else _names()
    school = db.session.scalar(sa.select(School).where(School.code == code))
    if school is None:
        school = School(district=district, code=code, name=name, commune=commune,
                        address=f"{commune}, huyện Nhà Bè, Thành phố Hồ Chí Minh")
        db.session.add(school)
        db.session.flush()
    staff = []
    for prefix, roles in STAFF:
        full_name = "Võ Thị Lài" if (code, prefix) == ("lequangdinh", "ht") else next(names)
        user = _user(district, f"{prefix}.{code}", full_name, password_hash)
        _membership(school, user, roles)
        staff.append((user, roles))
    return school, staff


def _user(district: District, username: str, full_name: str, password_hash: str,
          district_role: Role | None = None) -> User:
    user = db.session.scalar(sa.select(User).where(User.username == username))
    if user is None:
        user = User(district_id=district.id, username=username, full_name=full_name,
                    password_hash=password_hash, district_role=district_role)
        db.session.add(user)
        db.session.flush()
    return user


def _membership(school: School, user: User, roles: set[Role]) -> None:
    membership = db.session.scalar(sa.select(Membership).where(
        Membership.school_id == school.id, Membership.user_id == user.id))
    if membership is None:
        membership = Membership(school_id=school.id, user_id=user.id)
        db.session.add(membership)
    for role in sorted(roles - membership.role_set):
        membership.roles.append(MembershipRole(school_id=school.id, role=role))
