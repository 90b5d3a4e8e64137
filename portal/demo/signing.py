"""The demo's certificates: a demo CA in the instance folder, a PKCS#12 certificate for every demo
person and a seal certificate for every demo school, all marked "KHÔNG DÙNG THẬT" (not for real use).

Safe to run again: the CA is created once, and whoever already holds an active certificate is skipped.
The .p12 files' passphrase is the demo password, kept sealed on the server so batch signing works.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import sqlalchemy as sa
from flask import current_app

from portal.extensions import db
from portal.signing import pki, pki_folder, services
from tenants.certificates import KeyKind, PersonCertificate
from tenants.models import Membership, School
from tenants.roles import Role
from tenants.scoping import all_schools, school_scope

DEMO_KDF_ROUNDS = 2000  # demo files only: opening a .p12 then costs ~5 ms instead of ~35 ms
ROLE_TITLES = {Role.PRINCIPAL: "Hiệu trưởng", Role.VICE_PRINCIPAL: "Phó hiệu trưởng",
               Role.SCHOOL_IT: "Nhân viên CNTT", Role.HOMEROOM_TEACHER: "Giáo viên chủ nhiệm",
               Role.SUBJECT_TEACHER: "Giáo viên bộ môn"}
ROLE_ORDER = list(ROLE_TITLES)


def _title(roles: Iterable[Role]) -> str:
    held = [r for r in ROLE_ORDER if r in set(roles)]
    return ROLE_TITLES[held[0]] if held else "Cán bộ"


def build_signing_demo(passphrase: str, *, school_codes: Iterable[str] | None = None,
                       at: datetime | None = None) -> dict[str, int]:
    """Create the demo CA and the missing demo certificates; returns how many of each were created."""
    ca = pki.create_demo_ca(pki_folder(current_app))
    created = {"person_certificates": 0, "seal_certificates": 0}
    with all_schools():
        query = sa.select(School).where(School.active.is_(True)).order_by(School.id)
        if school_codes is not None:
            query = query.where(School.code.in_(list(school_codes)))
        schools = db.session.scalars(query).all()
        holders = set(db.session.scalars(sa.select(PersonCertificate.user_id).where(
            PersonCertificate.active.is_(True))))
    for school in schools:
        with school_scope(school.id):
            created["person_certificates"] += _people(ca, school, holders, passphrase, at)
            if services.current_seal_certificate(school.id, at) is None:
                issued = ca.issue_organisation(school.name, locality=school.commune)
                services.register_seal_certificate(school, _upload(issued, passphrase), actor=None, at=at)
                created["seal_certificates"] += 1
    db.session.commit()
    return created


def _people(ca: pki.DemoCA, school: School, holders: set[int], passphrase: str, at: datetime | None) -> int:
    count = 0
    members = db.session.scalars(sa.select(Membership).where(Membership.active.is_(True))
                                 .order_by(Membership.id)).all()
    for member in members:
        if member.user_id in holders:
            continue
        issued = ca.issue_person(member.user.full_name, title=_title(member.role_set), organisation=school.name,
                                 locality=school.commune)
        services.register_person_certificate(member.user, _upload(issued, passphrase), school=school, actor=None,
                                             at=at)
        holders.add(member.user_id)
        count += 1
    return count


def _upload(issued: pki.IssuedCertificate, passphrase: str) -> services.Upload:
    return services.Upload(data=issued.pkcs12(passphrase, kdf_rounds=DEMO_KDF_ROUNDS), key_kind=KeyKind.PKCS12,
                           passphrase=passphrase, keep_passphrase_on_server=True)



