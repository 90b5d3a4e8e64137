"""Creating and listing the district's schools."""

from __future__ import annotations

import re

import sqlalchemy as sa
from flask_babel import gettext as _

from portal import audit
from portal.extensions import db
from portal.school.services import nfc
from tenants.models import District, Membership, School, User

SCHOOL_CODE_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")


class SchoolError(ValueError):
    """A school that cannot be created as asked; the message is for the user."""


def get_district() -> District:
    """The district this deployment serves."""
    district = db.session.scalar(sa.select(District).order_by(District.id))
    if district is None:
        raise LookupError("no district: run `flask demo` or `flask create-district` first")
    return district


def school_overview() -> list[tuple[School, int]]:
    """Every school with its number of active staff accounts (needs the all-schools scope)."""
    staff_count = (sa.select(sa.func.count(Membership.id))
                   .where(Membership.school_id == School.id, Membership.active.is_(True))
                   .scalar_subquery())
    return [(school, count) for school, count in db.session.execute(
        sa.select(School, staff_count).order_by(School.name))]


def get_school(code: str) -> School | None:
    return db.session.scalar(sa.select(School).where(School.code == code))


def create_school(district: District, *, code: str, name: str, moet_code: str | None, commune: str,
                  address: str, actor: User) -> School:
    """Add a school (a new tenant) to the district."""
    code = code.strip().lower()
    if not SCHOOL_CODE_PATTERN.match(code):
        raise SchoolError(_("Mã trường chỉ gồm chữ thường không dấu, số và dấu gạch ngang (2-63 ký tự)."))
    if get_school(code) is not None:
        raise SchoolError(_("Mã trường %(c)s đã được dùng.", c=code))
    if not nfc(name):
        raise SchoolError(_("Thiếu tên trường."))
    if db.session.scalar(sa.select(School.id).where(School.name == nfc(name))) is not None:
        raise SchoolError(_("Đã có trường mang tên này."))
    school = School(district=district, code=code, name=nfc(name), moet_code=(moet_code or "").strip() or None,
                    commune=nfc(commune), address=nfc(address))
    db.session.add(school)
    db.session.flush()
    audit.record("school.created", actor=actor, school_id=school.id, obj=school, summary=school.name,
                 changes={"code": code, "name": school.name, "moet_code": school.moet_code,
                          "commune": school.commune, "address": school.address})
    return school
