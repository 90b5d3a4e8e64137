"""Registering signers in the portal's registry for tests that bring their own signed files.

The signature policy (`portal.signing.policy`) asks the registry who signs each field of a record: the
class's homeroom teacher, the school's principal and the school's seal, each by the certificate registered
to them. `register_signers(...)` puts a test PKI's three certificates there: the homeroom teacher of the
class (made if the class has none), a principal of the school (made if it has none), and the seal.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from flask import Flask

from portal.assessment.models import SchoolClass
from portal.extensions import db, utcnow
from portal.signing import pki
from tenants.certificates import KeyKind, PersonCertificate, SealCertificate
from tenants.models import Membership, MembershipRole, School, User
from tenants.roles import Role
from tenants.scoping import all_schools, school_scope


def _fill(row: PersonCertificate | SealCertificate, certificate: x509.Certificate, at: datetime) -> None:
    info = pki.describe(certificate)
    row.common_name, row.subject, row.issuer = info.common_name, info.subject, info.issuer
    row.serial, row.fingerprint, row.not_before, row.not_after = info.serial, info.fingerprint, info.not_before, \
        info.not_after
    row.certificate = certificate.public_bytes(serialization.Encoding.DER)
    row.chain_pem, row.key_kind, row.created_at = "", KeyKind.USB, at


def _user(school: School, full_name: str, username: str, role: Role) -> User:
    user = User(district_id=school.district_id, username=username, full_name=full_name, password_hash="!")
    db.session.add(user)
    db.session.flush()
    membership = Membership(school_id=school.id, user_id=user.id)
    db.session.add(membership)
    db.session.flush()
    db.session.add(MembershipRole(school_id=school.id, membership_id=membership.id, role=role))
    return user


def register_person(app: Flask, user_id: int, certificate: x509.Certificate, *,
                    school_id: int | None = None, at: datetime | None = None) -> None:
    """Register `certificate` to the user (once; `at`: when, a day ago by default)."""
    fingerprint = pki.describe(certificate).fingerprint
    with app.app_context(), all_schools():
        if db.session.scalar(sa.select(PersonCertificate.id).where(PersonCertificate.user_id == user_id,
                                                                   PersonCertificate.fingerprint == fingerprint)):
            return
        row = PersonCertificate(user_id=user_id, school_id=school_id)
        _fill(row, certificate, at or utcnow() - timedelta(days=1))
        db.session.add(row)
        db.session.commit()


def register_seal(app: Flask, school_id: int, certificate: x509.Certificate, *, at: datetime | None = None) -> None:
    """Register `certificate` as the school's seal (once)."""
    fingerprint = pki.describe(certificate).fingerprint
    with app.app_context(), school_scope(school_id):
        if db.session.scalar(sa.select(SealCertificate.id).where(SealCertificate.school_id == school_id,
                                                                 SealCertificate.fingerprint == fingerprint)):
            return
        row = SealCertificate(school_id=school_id)
        _fill(row, certificate, at or utcnow() - timedelta(days=1))
        db.session.add(row)
        db.session.commit()


def principal_of(app: Flask, school_id: int, *, full_name: str = "Võ Thị Lài") -> int:
    """A principal of the school (made, with a membership, when it has none); their user id."""
    with app.app_context(), school_scope(school_id):
        found = db.session.scalar(sa.select(Membership.user_id).join(MembershipRole).where(
            Membership.school_id == school_id, MembershipRole.role == Role.PRINCIPAL).limit(1))
        if found is not None:
            return found
        school = db.session.get(School, school_id)
        user = _user(school, full_name, f"ht.{school.code}.{school_id}", Role.PRINCIPAL)
        db.session.commit()
        return user.id


def homeroom_of(app: Flask, school_id: int, class_id: int, *, full_name: str = "Nguyễn Thị Mai") -> int:
    """The class's homeroom teacher (made and assigned when it has none); their user id."""
    with app.app_context(), school_scope(school_id):
        school_class = db.session.get(SchoolClass, class_id)
        if school_class.homeroom_teacher_id is None:
            school = db.session.get(School, school_id)
            user = _user(school, full_name, f"gvcn.{school.code}.{class_id}", Role.HOMEROOM_TEACHER)
            school_class.homeroom_teacher_id = user.id
            db.session.commit()
        return school_class.homeroom_teacher_id


def register_signers(app: Flask, school_id: int, class_id: int, certificates: dict[str, x509.Certificate], *,
                     at: datetime | None = None) -> dict[str, int | None]:
    """Register `certificates` (field -> certificate) to the people who sign those fields of the class's
    records; {field: user id (None for the seal)}."""
    holders: dict[str, int | None] = {}
    for field, certificate in certificates.items():
        if field == "con_dau":
            register_seal(app, school_id, certificate, at=at)
            holders[field] = None
            continue
        user_id = homeroom_of(app, school_id, class_id) if field == "gvcn" else principal_of(app, school_id)
        register_person(app, user_id, certificate, school_id=school_id, at=at)
        holders[field] = user_id
    return holders
