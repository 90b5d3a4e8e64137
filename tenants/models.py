"""The district, its schools (the tenants), accounts, and each account's roles per school."""

from __future__ import annotations

import secrets
from datetime import datetime

import sqlalchemy as sa
from flask_login import UserMixin
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.extensions import UTCDateTime, db, str_enum, utcnow
from tenants.roles import DISTRICT_ROLES, Role
from tenants.scoping import TenantScoped


class District(db.Model):
    __tablename__ = "districts"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(sa.String(32), unique=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    city: Mapped[str] = mapped_column(sa.String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    schools: Mapped[list[School]] = relationship(back_populates="district", order_by="School.name")

    def __repr__(self) -> str:
        return f"<District {self.code}>"


class School(db.Model):
    """A primary school: the tenant. Its `code` is the URL segment of its pages, /s/<code>/."""

    __tablename__ = "schools"

    id: Mapped[int] = mapped_column(primary_key=True)
    district_id: Mapped[int] = mapped_column(sa.ForeignKey("districts.id"), index=True)
    code: Mapped[str] = mapped_column(sa.String(64), unique=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    moet_code: Mapped[str | None] = mapped_column(sa.String(32))
    commune: Mapped[str] = mapped_column(sa.String(200), default="")
    address: Mapped[str] = mapped_column(sa.String(300), default="")
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    district: Mapped[District] = relationship(back_populates="schools")

    def __repr__(self) -> str:
        return f"<School {self.code}>"


class SchoolDataVersion(db.Model):
    """A school's data version: a new random value each time a transaction that wrote the school's rows commits
    (portal/pagecache.py keeps rendered rows per version). A table of its own, written only as the last
    statement of a transaction, so that its row lock is never part of a deadlock. No row-level security:
    it holds a random number, none of the school's data."""

    __tablename__ = "school_data_versions"

    school_id: Mapped[int] = mapped_column(sa.ForeignKey("schools.id", ondelete="CASCADE"), primary_key=True)
    version: Mapped[int] = mapped_column(sa.BigInteger)


class User(UserMixin, db.Model):
    """An account of the district deployment. School roles live in `Membership`."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    district_id: Mapped[int] = mapped_column(sa.ForeignKey("districts.id"), index=True)
    username: Mapped[str] = mapped_column(sa.String(80), unique=True)
    full_name: Mapped[str] = mapped_column(sa.String(200))
    email: Mapped[str | None] = mapped_column(sa.String(200))
    phone: Mapped[str | None] = mapped_column(sa.String(32))
    password_hash: Mapped[str] = mapped_column(sa.String(256))
    district_role: Mapped[Role | None] = mapped_column(str_enum(Role))
    active: Mapped[bool] = mapped_column(default=True)
    must_change_password: Mapped[bool] = mapped_column(default=False)
    locale: Mapped[str | None] = mapped_column(sa.String(8))
    # Rotated on every password change or deactivation, so that older sessions stop working.
    session_token: Mapped[str] = mapped_column(sa.String(64), default=lambda: secrets.token_hex(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        sa.CheckConstraint(
            sa.or_(sa.column("district_role").is_(None),
                   sa.column("district_role").in_([r.value for r in DISTRICT_ROLES])),
            name="district_role_is_district",
        ),
    )

    def get_id(self) -> str:
        return f"{self.id}:{self.session_token}"

    @property
    def is_active(self) -> bool:
        return self.active

    @property
    def is_district_staff(self) -> bool:
        return self.district_role is not None

    def __repr__(self) -> str:
        return f"<User {self.username}>"


class Membership(TenantScoped, db.Model):
    """A person's place in one school's staff; deactivating it closes that school to them."""

    __tablename__ = "memberships"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"), index=True)
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    user: Mapped[User] = relationship()
    school: Mapped[School] = relationship()
    roles: Mapped[list[MembershipRole]] = relationship(
        back_populates="membership", cascade="all, delete-orphan", order_by="MembershipRole.role"
    )

    __table_args__ = (sa.UniqueConstraint("school_id", "user_id"),)

    @property
    def role_set(self) -> frozenset[Role]:
        return frozenset(r.role for r in self.roles)

    def __repr__(self) -> str:
        return f"<Membership user={self.user_id} school={self.school_id}>"


class MembershipRole(TenantScoped, db.Model):
    """One role held by a member of a school; a person may hold several."""

    __tablename__ = "membership_roles"

    id: Mapped[int] = mapped_column(primary_key=True)
    membership_id: Mapped[int] = mapped_column(sa.ForeignKey("memberships.id", ondelete="CASCADE"), index=True)
    role: Mapped[Role] = mapped_column(str_enum(Role))

    membership: Mapped[Membership] = relationship(back_populates="roles")

    __table_args__ = (sa.UniqueConstraint("membership_id", "role"),)

    def __repr__(self) -> str:
        return f"<MembershipRole {self.role} membership={self.membership_id}>"
