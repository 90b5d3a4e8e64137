"""The demo's certificates: a demo CA in the instance folder, a PKCS#12 certificate for every demo
person, a seal certificate for every demo school and an organisation certificate for the district
office (it signs the audit trail's checkpoints), all marked "KHÔNG DÙNG THẬT" (not for real use).

Safe to run again: the CA is created once, and whoever already holds an active certificate is skipped.
The .p12 files' passphrase is the demo password. Each person's is locked with the demo signing PIN
(DEMO_SIGNING_PIN, printed by `flask demo`): in the demo, as in real use, a batch is signed by typing the
signer's PIN once. The seals' passphrase is sealed on the server, so that sealing needs no one at the keyboard.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import sqlalchemy as sa
from flask import current_app

from portal.extensions import db
from portal.signing import demo_ca, pki, services
from tenants.certificates import KeyKind, PersonCertificate
from tenants.models import District, Membership, School
from tenants.roles import Role
from tenants.scoping import all_schools, school_scope

DEMO_SIGNING_PIN = "135790"  # demo people only: a real holder chooses their own
DEMO_KDF_ROUNDS = 2000  # demo files only: opening a .p12 then costs ~5 ms instead of ~35 ms
DEMO_PIN_KDF_LOG2 = 10  # demo PIN locks only: ~3 ms instead of ~50 ms, for the district's hundred people
ROLE_TITLES = {Role.PRINCIPAL: "Hiệu trưởng", Role.VICE_PRINCIPAL: "Phó hiệu trưởng",
               Role.SCHOOL_IT: "Nhân viên CNTT", Role.HOMEROOM_TEACHER: "Giáo viên chủ nhiệm",
               Role.SUBJECT_TEACHER: "Giáo viên bộ môn"}
ROLE_ORDER = list(ROLE_TITLES)


def _title(roles: Iterable[Role]) -> str:
    held = [r for r in ROLE_ORDER if r in set(roles)]
    return ROLE_TITLES[held[0]] if held else "Cán bộ"


def build_signing_demo(passphrase: str, *, school_codes: Iterable[str] | None = None,
                       at: datetime | None = None, pin: str = DEMO_SIGNING_PIN) -> dict[str, int]:
    """Create the demo CA and the missing demo certificates; returns how many of each were created."""
    ca = demo_ca(current_app)
    created = {"person_certificates": 0, "seal_certificates": 0, "district_certificates": 0}
    district = db.session.scalar(sa.select(District).order_by(District.id).limit(1))
    if district is not None and services.current_district_certificate(district.id, at) is None:
        # The district office's organisation certificate signs the audit trail's checkpoints.
        issued = ca.issue_organisation(district.name, locality=district.city)
        services.register_district_certificate(district, _upload(issued, passphrase), actor=None, at=at)
        created["district_certificates"] += 1
    with all_schools():
        query = sa.select(School).where(School.active.is_(True)).order_by(School.id)
        if school_codes is not None:
            query = query.where(School.code.in_(list(school_codes)))
        schools = db.session.scalars(query).all()
        active = list(db.session.scalars(sa.select(PersonCertificate).where(PersonCertificate.active.is_(True))))
        holders = {c.user_id for c in active}
        _lock_with_pin([c for c in active if not c.needs_signing_pin], passphrase, pin)
    for school in schools:
        with school_scope(school.id):
            created["person_certificates"] += _people(ca, school, holders, passphrase, pin, at)
            if services.current_seal_certificate(school.id, at) is None:
                issued = ca.issue_organisation(school.name, locality=school.commune)
                services.register_seal_certificate(school, _upload(issued, passphrase), actor=None, at=at)
                created["seal_certificates"] += 1
    db.session.commit()
    return created


def _lock_with_pin(certificates: list[PersonCertificate], passphrase: str, pin: str) -> None:
    """Demo certificates made before signing PINs existed get the demo PIN (their passphrase is the proof)."""
    for certificate in certificates:
        if certificate.key_kind == KeyKind.PKCS12 and certificate.pkcs12_digest:
            try:
                services.set_signing_pin(certificate, passphrase, pin, actor=certificate.user,
                                         kdf_log2=DEMO_PIN_KDF_LOG2)
            except services.CertificateRefused:
                continue  # not a demo file: left to its holder


def _people(ca: pki.DemoCA, school: School, holders: set[int], passphrase: str, pin: str,
            at: datetime | None) -> int:
    count = 0
    members = db.session.scalars(sa.select(Membership).where(Membership.active.is_(True))
                                 .order_by(Membership.id)).all()
    for member in members:
        if member.user_id in holders:
            continue
        issued = ca.issue_person(member.user.full_name, title=_title(member.role_set), organisation=school.name,
                                 locality=school.commune)
        services.register_person_certificate(member.user, _upload(issued, passphrase, pin), school=school,
                                             actor=None, at=at)
        holders.add(member.user_id)
        count += 1
    return count


def _upload(issued: pki.IssuedCertificate, passphrase: str, pin: str = "") -> services.Upload:
    return services.Upload(data=issued.pkcs12(passphrase, kdf_rounds=DEMO_KDF_ROUNDS), key_kind=KeyKind.PKCS12,
                           passphrase=passphrase, keep_passphrase_on_server=True, signing_pin=pin,
                           pin_kdf_log2=DEMO_PIN_KDF_LOG2)



