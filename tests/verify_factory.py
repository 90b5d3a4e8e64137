"""Issued records for the verification tests: drafts made by the records pipeline, signed three times.

The signing keys come from a demo CA made once per test run (`trusted_ca`); `untrusted_ca` is another CA
that no configuration trusts. `issue(...)` signs a draft's three fields with the engine, stores the file
and marks the version issued, as the signing workflow does at its end.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from flask import Flask

from portal.extensions import db
from portal.records import services as records
from portal.records.models import RecordStatus, RecordVersion
from portal.signing import engine, pki
from portal.signing.stamp import stamp_for_field
from portal.storage import storage
from tenants.models import School
from tenants.scoping import school_scope
from tests.registry_factory import register_signers

GVCN_NAME = "Nguyễn Thị Mai"
PRINCIPAL_NAME = "Võ Thị Lài"
PASSPHRASE = "hocbaso"


@dataclass(frozen=True)
class Signers:
    ca: pki.DemoCA
    keys: dict[str, engine.Pkcs12Key]  # field -> key
    names: dict[str, str]  # field -> the name on its stamp


@cache
def _signers(label: str, school_name: str) -> Signers:
    ca = pki.create_ca()
    people = {
        "gvcn": ca.issue_person(GVCN_NAME, title="Giáo viên chủ nhiệm", organisation=school_name),
        "hieu_truong": ca.issue_person(PRINCIPAL_NAME, title="Hiệu trưởng", organisation=school_name),
        "con_dau": ca.issue_organisation(school_name),
    }
    keys = {f: engine.Pkcs12Key(p.pkcs12(PASSPHRASE), PASSPHRASE) for f, p in people.items()}
    names = {"gvcn": GVCN_NAME, "hieu_truong": PRINCIPAL_NAME, "con_dau": school_name}
    return Signers(ca, keys, names)


SCHOOL_NAME = "Trường Tiểu học Lê Quang Định"


def trusted_ca() -> Signers:
    return _signers("trusted", SCHOOL_NAME)


def untrusted_ca() -> Signers:
    return _signers("untrusted", SCHOOL_NAME)


def write_root(folder: Path, signers: Signers) -> str:
    path = folder / "trusted-root.pem"
    path.write_bytes(signers.ca.root.public_bytes(serialization.Encoding.PEM))
    return str(path)


def sign_three(pdf: bytes, signers: Signers) -> bytes:
    """The draft PDF with its three fields signed in order: GVCN (certifying), Hiệu trưởng, con dấu.

    In a thread of its own: the engine runs an event loop, and Playwright's sync API (browser tests)
    already runs one in the test's thread.
    """
    def run(pdf: bytes) -> bytes:
        for n, field in enumerate(("gvcn", "hieu_truong", "con_dau")):
            stamp = stamp_for_field(field, signers.names[field], school_name=SCHOOL_NAME)
            pdf = engine.sign_field(pdf, field, signers.keys[field], certify=n == 0, stamp=stamp)
        return pdf

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(run, pdf).result()


def issue(app: Flask, school: School, version_id: int, signers: Signers | None = None, *,
          register: bool = True) -> RecordVersion:
    """Sign the version's draft three times, store it, and mark the version issued (detached copy back).

    `register`: the three certificates are registered to the class's homeroom teacher, the school's
    principal and the school's seal first, as the signing workflow requires of real signers.
    """
    signers = signers or trusted_ca()
    if register:
        with app.app_context(), school_scope(school.id):
            class_id = db.session.get(RecordVersion, version_id).class_id
        register_signers(app, school.id, class_id, {f: k.bundle().certificate for f, k in signers.keys.items()})
    with app.app_context(), school_scope(school.id):
        version = db.session.get(RecordVersion, version_id)
        signed = sign_three(storage().read(version.draft_digest), signers)
        version.signed_digest = storage().put(signed)
        records.set_status(version, RecordStatus.ISSUED, actor=None)
        db.session.commit()
        db.session.refresh(version)
        db.session.expunge(version)
        return version


def set_status(app: Flask, school: School, version_id: int, status: RecordStatus, reason: str = "") -> None:
    with app.app_context(), school_scope(school.id):
        version = db.session.get(RecordVersion, version_id)
        records.set_status(version, status, actor=None, reason=reason)
        db.session.commit()


def signed_file(app: Flask, version: RecordVersion) -> bytes:
    with app.app_context():
        return storage().read(version.signed_digest)


def correction(app: Flask, school: School, version: RecordVersion) -> RecordVersion:
    """A new draft version replacing `version` (same content, number + 1), as a correction starts."""
    with app.app_context(), school_scope(school.id):
        old = db.session.get(RecordVersion, version.id)
        code = records.new_code()
        content = {**old.content, "record": {**old.content["record"], "code": code, "number": old.number + 1,
                                             "replaces": old.code}}
        number = db.session.scalar(sa.select(sa.func.max(RecordVersion.number))
                                   .where(RecordVersion.pupil_id == old.pupil_id)) + 1
        new = RecordVersion(school_id=school.id, pupil_id=old.pupil_id, school_year_id=old.school_year_id,
                            class_id=old.class_id, grade=old.grade, number=number, code=code,
                            replaces_id=old.id, status=RecordStatus.DRAFT, content=content,
                            source_hash=old.source_hash, content_hash=old.content_hash,
                            draft_digest=old.draft_digest, xml_digest=old.xml_digest)
        db.session.add(new)
        db.session.commit()
        db.session.refresh(new)
        db.session.expunge(new)
        return new
