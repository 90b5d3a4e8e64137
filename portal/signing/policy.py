"""Who may sign which field of a record: the portal's registry of people, roles and certificates.

A valid signature by the wrong person is a forgery (domain brief §4). For a record version this module
answers, per field, which certificates may sign it at a given time:

- gvcn: a certificate registered (by then) to the homeroom teacher of the pupil's class: the class's
  homeroom teacher, or the person the signing workflow recorded as the GVCN who signed this version;
- hieu_truong: a certificate registered (by then) to a principal of the school (anyone holding the role
  there, or recorded by the workflow as the principal who signed), or to a vice principal the school
  recorded as signing in the principal's place at that time (`SigningDelegation`);
- con_dau: a seal certificate the school registered (by then).

"Registered by then": a certificate registered after the signing time did not belong to the role when the
signature was made (`REGISTRATION_SLACK` absorbs the clocks of the TSA and the portal). A certificate
replaced since still speaks for what it signed before. The registry is the portal's own: a record the
portal does not hold cannot be checked here (`policy_for_code` answers None).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from asn1crypto import x509 as asn1_x509

from portal import audit
from portal.assessment.models import SchoolClass
from portal.extensions import db
from portal.records.models import RecordSignature, RecordVersion
from portal.signing.models import SigningDelegation
from portal.signing.validate import N_, SignerCheck
from tenants.certificates import PersonCertificate, SealCertificate
from tenants.models import Membership, MembershipRole, School, User
from tenants.roles import Role
from tenants.scoping import all_schools, school_scope

REGISTRATION_SLACK = timedelta(minutes=10)


@dataclass(frozen=True)
class _Registered:
    holder_id: int | None  # a user, or None for a school's seal
    name: str
    registered_at: datetime


@dataclass
class RegistryPolicy:
    """The registry's rule for one record version (everything loaded at once: a few queries per check)."""

    school_id: int
    school_name: str
    class_name: str
    homeroom: dict[int, str]  # user id -> name
    principals: dict[int, str]
    delegations: list[tuple[int, str, datetime, datetime | None]]  # vice principal id, name, from, until
    person_certificates: dict[str, list[_Registered]] = field(default_factory=dict)  # fingerprint -> holders
    seal_certificates: dict[str, _Registered] = field(default_factory=dict)

    def check(self, field_name: str, certificate: asn1_x509.Certificate, at: datetime) -> SignerCheck:
        fingerprint = hashlib.sha256(certificate.dump()).hexdigest()
        expected = self.expected(field_name, at)
        if field_name == "con_dau":
            seal = self.seal_certificates.get(fingerprint)
            if seal is not None and seal.registered_at <= at + REGISTRATION_SLACK:
                return SignerCheck(True, expected, seal.name)
        else:
            allowed = self._allowed_people(field_name, at)
            for holder in self.person_certificates.get(fingerprint, []):
                if holder.holder_id in allowed and holder.registered_at <= at + REGISTRATION_SLACK:
                    return SignerCheck(True, expected, holder.name)
        return SignerCheck(False, expected, who_holds(certificate, at))

    def _allowed_people(self, field_name: str, at: datetime) -> set[int]:
        if field_name == "gvcn":
            return set(self.homeroom)
        allowed = set(self.principals)
        allowed.update(user_id for user_id, _name, start, end in self.delegations
                       if start <= at and (end is None or at <= end))
        return allowed

    def expected(self, field_name: str, at: datetime) -> str:
        """Who should have signed, in words."""
        if field_name == "gvcn":
            names = ", ".join(sorted(self.homeroom.values())) or "?"
            return N_("chứng thư số đã đăng kí của giáo viên chủ nhiệm lớp %(cls)s (%(names)s)") % {
                "cls": self.class_name, "names": names}
        if field_name == "hieu_truong":
            names = sorted(self.principals.values()) + sorted(
                N_("%(name)s, Phó hiệu trưởng được giao ký thay") % {"name": name}
                for user_id, name, start, end in self.delegations if start <= at and (end is None or at <= end))
            return N_("chứng thư số đã đăng kí của Hiệu trưởng %(school)s (%(names)s)") % {
                "school": self.school_name, "names": "; ".join(names) or "?"}
        return N_("chứng thư số con dấu đã đăng kí của %(school)s") % {"school": self.school_name}


def who_holds(certificate: asn1_x509.Certificate, at: datetime) -> str:
    """Whoever the registry knows as this certificate's holder, else the name the certificate states."""
    fingerprint = hashlib.sha256(certificate.dump()).hexdigest()
    subject = certificate.subject.native
    stated = subject.get("common_name") or certificate.subject.human_friendly
    with all_schools():
        person = db.session.execute(
            sa.select(User.full_name, School.name).select_from(PersonCertificate)
            .join(User, User.id == PersonCertificate.user_id)
            .outerjoin(School, School.id == PersonCertificate.school_id)
            .where(PersonCertificate.fingerprint == fingerprint).limit(1)).first()
        seal = db.session.scalar(sa.select(School.name).join(SealCertificate, SealCertificate.school_id == School.id)
                                 .where(SealCertificate.fingerprint == fingerprint).limit(1))
    if person is not None:
        return (N_("%(name)s (chứng thư số đăng kí tại %(school)s)") % {"name": person[0], "school": person[1]}
                if person[1] else person[0])
    if seal is not None:
        return N_("con dấu số của %(school)s") % {"school": seal}
    organisation = subject.get("organization_name")
    holder = f"{stated}, {organisation}" if organisation and organisation != stated else stated
    return N_("%(holder)s (chứng thư số không được đăng kí trên cổng)") % {"holder": holder}


def policy_for_version(version: RecordVersion) -> RegistryPolicy:
    """The registry's rule for `version` (any status: the workflow asks before the seal)."""
    with school_scope(version.school_id):
        school = db.session.get(School, version.school_id)
        school_class = db.session.get(SchoolClass, version.class_id)
        signed = {row.step: row.signer_id for row in db.session.scalars(
            sa.select(RecordSignature).where(RecordSignature.record_version_id == version.id))}
        homeroom_ids = {i for i in (school_class.homeroom_teacher_id if school_class else None,
                                    signed.get("gvcn")) if i}
        principal_ids = set(db.session.scalars(
            sa.select(Membership.user_id).join(MembershipRole, MembershipRole.membership_id == Membership.id)
            .where(Membership.school_id == version.school_id, MembershipRole.role == Role.PRINCIPAL)))
        principal_ids |= {signed["hieu_truong"]} if signed.get("hieu_truong") else set()
        delegation_rows = db.session.scalars(sa.select(SigningDelegation).where(
            SigningDelegation.school_id == version.school_id)).all()
        people = set(homeroom_ids | principal_ids | {d.user_id for d in delegation_rows})
        names = dict(db.session.execute(sa.select(User.id, User.full_name).where(User.id.in_(people))).all())
        certificates: dict[str, list[_Registered]] = {}
        for row in db.session.scalars(sa.select(PersonCertificate).where(PersonCertificate.user_id.in_(people))):
            certificates.setdefault(row.fingerprint, []).append(
                _Registered(row.user_id, names.get(row.user_id, row.common_name), row.created_at))
        seals = {row.fingerprint: _Registered(None, row.common_name, row.created_at) for row in db.session.scalars(
            sa.select(SealCertificate).where(SealCertificate.school_id == version.school_id))}
    return RegistryPolicy(
        school_id=version.school_id, school_name=school.name if school else "",
        class_name=school_class.name if school_class else "",
        homeroom={i: names.get(i, "?") for i in homeroom_ids}, principals={i: names.get(i, "?") for i in principal_ids},
        delegations=[(d.user_id, names.get(d.user_id, "?"), d.starts_at, d.ends_at) for d in delegation_rows],
        person_certificates=certificates, seal_certificates=seals)


def version_by_code(code: str | None) -> RecordVersion | None:
    """The portal's record version with this code, whatever its school and status, else None."""
    if not code:
        return None
    with all_schools():
        return db.session.scalar(sa.select(RecordVersion).where(RecordVersion.code == code))


def policy_for_code(code: str | None) -> RegistryPolicy | None:
    """The registry's rule for the record a file names, or None when the portal does not hold it."""
    version = version_by_code(code)
    return policy_for_version(version) if version is not None else None


class DelegationRefused(ValueError):
    """The delegation cannot be recorded; the message says why, in Vietnamese."""


def delegate_principal_signing(school_id: int, user_id: int, *, starts_at: datetime, ends_at: datetime | None = None,
                               reason: str = "", actor: User | None) -> SigningDelegation:
    """Record that a vice principal of the school signs in the Hiệu trưởng field from `starts_at` (until
    `ends_at`): from then their registered certificate counts as the principal's for the policy."""
    is_vice = db.session.scalar(sa.select(sa.func.count()).select_from(MembershipRole)
                                .join(Membership, Membership.id == MembershipRole.membership_id)
                                .where(Membership.school_id == school_id, Membership.user_id == user_id,
                                       Membership.active.is_(True), MembershipRole.role == Role.VICE_PRINCIPAL))
    if not is_vice:
        raise DelegationRefused(N_("Chỉ giao ký thay Hiệu trưởng cho Phó hiệu trưởng của trường."))
    if ends_at is not None and ends_at <= starts_at:
        raise DelegationRefused(N_("Ngày kết thúc phải sau ngày bắt đầu."))
    row = SigningDelegation(school_id=school_id, user_id=user_id, starts_at=starts_at, ends_at=ends_at,
                            reason=reason.strip(), created_by_id=actor.id if actor else None)
    db.session.add(row)
    db.session.flush()
    audit.record("signing.delegated", actor=actor, school_id=school_id, obj=row,
                 summary=N_("Giao Phó hiệu trưởng ký thay Hiệu trưởng"),
                 changes={"user_id": user_id, "starts_at": starts_at, "ends_at": ends_at, "reason": row.reason})
    return row
