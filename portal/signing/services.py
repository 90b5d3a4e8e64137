"""Registering certificates and turning a registered certificate into a key the engine can sign with."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from flask import current_app

from portal import audit
from portal.collation import name_key
from portal.extensions import db, utcnow
from portal.signing import engine, pki, trust_roots
from portal.storage import storage
from tenants.certificates import (
    CertificateFields,
    KeyKind,
    PersonCertificate,
    SealCertificate,
    SecretUnreadable,
    open_secret,
    seal_secret,
)
from tenants.models import Membership, School, User


class CertificateRefused(ValueError):
    """The certificate cannot be registered; the message is a Vietnamese sentence for the user."""


@dataclass(frozen=True)
class Upload:
    """What a registration form hands over: a .p12/.pfx with its passphrase, or a certificate file."""

    data: bytes
    key_kind: KeyKind
    passphrase: str = ""
    keep_passphrase_on_server: bool = True
    csc_provider: str = ""
    csc_credential_id: str = ""
    pkcs11_module: str = ""
    pkcs11_token: str = ""
    pkcs11_key_label: str = ""
    pkcs11_pin: str = ""


@dataclass(frozen=True)
class _Read:
    certificate: x509.Certificate
    chain: list[x509.Certificate]


def _read_upload(upload: Upload) -> _Read:
    try:
        if upload.key_kind == KeyKind.PKCS12:
            bundle = pki.read_pkcs12(upload.data, upload.passphrase)
            return _Read(bundle.certificate, list(bundle.chain))
        certificates = pki.read_certificates(upload.data)
    except pki.CertificateError as exc:
        raise CertificateRefused(str(exc)) from exc
    return _Read(certificates[0], certificates[1:])


def _check_usable(read: _Read, at: datetime) -> None:
    try:
        engine.check_certificate(read.certificate, read.chain, trust_roots=trust_roots(), at=at)
    except engine.CertificateNotUsable as exc:
        hint = "" if read.chain or read.certificate.not_valid_after_utc < at else (
            " Nếu tệp chỉ có chứng thư của bạn, hãy tải tệp có kèm chuỗi chứng thực của tổ chức cấp.")
        raise CertificateRefused(str(exc) + hint) from exc


def _fill(row: CertificateFields, upload: Upload, read: _Read, actor: Any) -> None:
    info = pki.describe(read.certificate)
    secret = current_app.config["SECRET_KEY"]
    row.common_name, row.subject, row.issuer = info.common_name[:200], info.subject[:1000], info.issuer[:1000]
    row.serial, row.fingerprint = info.serial[:80], info.fingerprint
    row.not_before, row.not_after = info.not_before, info.not_after
    row.certificate = read.certificate.public_bytes(serialization.Encoding.DER)
    row.chain_pem = pki.certificates_pem(read.chain)
    row.key_kind = upload.key_kind
    row.created_by_id = getattr(actor, "id", None)
    if upload.key_kind == KeyKind.PKCS12:
        row.pkcs12_digest = storage().put(upload.data)
        row.passphrase_sealed = seal_secret(upload.passphrase, secret) if upload.keep_passphrase_on_server else None
    elif upload.key_kind == KeyKind.PKCS11:
        row.pkcs11_module, row.pkcs11_token = upload.pkcs11_module, upload.pkcs11_token
        row.pkcs11_key_label = upload.pkcs11_key_label or None
        row.pin_sealed = seal_secret(upload.pkcs11_pin, secret)
    elif upload.key_kind == KeyKind.CSC:
        row.csc_provider, row.csc_credential_id = upload.csc_provider or None, upload.csc_credential_id or None


def register_person_certificate(user: User, upload: Upload, *, school: School | None, actor: Any,
                                at: datetime | None = None) -> PersonCertificate:
    """Register `user`'s certificate; it replaces (deactivates) the ones registered before."""
    read = _read_upload(upload)
    _check_usable(read, at or utcnow())
    fingerprint = pki.describe(read.certificate).fingerprint
    existing = db.session.scalar(sa.select(PersonCertificate).where(
        PersonCertificate.user_id == user.id, PersonCertificate.fingerprint == fingerprint))
    if existing is not None and existing.active:
        raise CertificateRefused("Chứng thư số này đã được đăng kí.")
    row = existing or PersonCertificate(user_id=user.id)
    _fill(row, upload, read, actor)
    row.school_id, row.active = (school.id if school else None), True
    for older in person_certificates(user):
        if older is not row:
            older.active = False
    db.session.add(row)
    db.session.flush()
    audit.record("certificate.registered", actor=actor, school_id=row.school_id, obj=row,
                 summary=f"{row.common_name} ({row.serial})",
                 changes={"user_id": user.id, "key_kind": row.key_kind.value, "issuer": row.issuer,
                          "not_after": row.not_after, "passphrase_on_server": row.passphrase_sealed is not None})
    return row


def register_seal_certificate(school: School, upload: Upload, *, actor: Any,
                              at: datetime | None = None) -> SealCertificate:
    """Register the school's seal certificate; it replaces the one registered before."""
    read = _read_upload(upload)
    _check_usable(read, at or utcnow())
    fingerprint = pki.describe(read.certificate).fingerprint
    existing = db.session.scalar(sa.select(SealCertificate).where(SealCertificate.fingerprint == fingerprint))
    if existing is not None and existing.active:
        raise CertificateRefused("Chứng thư số này đã được đăng kí.")
    row = existing or SealCertificate(school_id=school.id)
    _fill(row, upload, read, actor)
    row.active = True
    for older in db.session.scalars(sa.select(SealCertificate).where(SealCertificate.active.is_(True))):
        if older is not row:
            older.active = False
    db.session.add(row)
    db.session.flush()
    audit.record("seal_certificate.registered", actor=actor, school_id=school.id, obj=row,
                 summary=f"{row.common_name} ({row.serial})",
                 changes={"key_kind": row.key_kind.value, "issuer": row.issuer, "not_after": row.not_after})
    return row


def person_certificates(user: User) -> list[PersonCertificate]:
    """Every certificate `user` registered, the newest first."""
    return list(db.session.scalars(sa.select(PersonCertificate).where(PersonCertificate.user_id == user.id)
                                   .order_by(PersonCertificate.created_at.desc(), PersonCertificate.id.desc())))


def current_person_certificate(user_id: int, at: datetime | None = None) -> PersonCertificate | None:
    """The person's active certificate valid at `at` (now), or None."""
    moment = at or utcnow()
    return db.session.scalar(sa.select(PersonCertificate).where(
        PersonCertificate.user_id == user_id, PersonCertificate.active.is_(True),
        PersonCertificate.not_before <= moment, PersonCertificate.not_after >= moment)
        .order_by(PersonCertificate.id.desc()).limit(1))


def seal_certificates(school: School) -> list[SealCertificate]:
    return list(db.session.scalars(sa.select(SealCertificate).where(SealCertificate.school_id == school.id)
                                   .order_by(SealCertificate.created_at.desc(), SealCertificate.id.desc())))


def current_seal_certificate(school_id: int, at: datetime | None = None) -> SealCertificate | None:
    """The school's active seal certificate valid at `at` (now), or None."""
    moment = at or utcnow()
    return db.session.scalar(sa.select(SealCertificate).where(
        SealCertificate.school_id == school_id, SealCertificate.active.is_(True),
        SealCertificate.not_before <= moment, SealCertificate.not_after >= moment)
        .order_by(SealCertificate.id.desc()).limit(1))


@dataclass(frozen=True)
class StaffCertificate:
    membership: Membership
    certificate: PersonCertificate | None  # the active one, valid or not

    @property
    def valid(self) -> bool:
        return self.certificate is not None and self.certificate.valid_at(utcnow())


def staff_certificates(school: School) -> list[StaffCertificate]:
    """Each active member of the school with their active certificate (or None), by name."""
    members = db.session.scalars(sa.select(Membership).join(Membership.user).where(
        Membership.school_id == school.id, Membership.active.is_(True))).all()
    members = sorted(members, key=lambda m: name_key(m.user.full_name))
    ids = [m.user_id for m in members]
    active = {c.user_id: c for c in db.session.scalars(sa.select(PersonCertificate).where(
        PersonCertificate.user_id.in_(ids), PersonCertificate.active.is_(True)).order_by(PersonCertificate.id))}
    return [StaffCertificate(m, active.get(m.user_id)) for m in members]


def staff_with_valid_certificate(school_ids: list[int] | None = None, at: datetime | None = None) -> dict[int, int]:
    """{school id: how many active staff hold a valid certificate}, for the district board."""
    moment = at or utcnow()
    query = (sa.select(Membership.school_id, sa.func.count(sa.distinct(Membership.user_id)))
             .join(PersonCertificate, PersonCertificate.user_id == Membership.user_id)
             .where(Membership.active.is_(True), PersonCertificate.active.is_(True),
                    PersonCertificate.not_before <= moment, PersonCertificate.not_after >= moment)
             .group_by(Membership.school_id))
    if school_ids is not None:
        query = query.where(Membership.school_id.in_(school_ids))
    return {school_id: count for school_id, count in db.session.execute(query)}


def schools_with_valid_seal(at: datetime | None = None) -> set[int]:
    """The schools (in scope) whose seal certificate is registered and valid."""
    moment = at or utcnow()
    return set(db.session.scalars(sa.select(SealCertificate.school_id).where(
        SealCertificate.active.is_(True), SealCertificate.not_before <= moment, SealCertificate.not_after >= moment)))


def server_key(certificate: CertificateFields, *, passphrase: str | None = None) -> engine.ServerKey:
    """The engine key for a certificate whose key the server holds (pkcs12 or pkcs11).

    `passphrase` is needed when its holder keeps it (`passphrase_held_by_user`); `SigningError` when the
    key is not on the server or the sealed secret no longer opens.
    """
    secret = current_app.config["SECRET_KEY"]
    try:
        if certificate.key_kind == KeyKind.PKCS12 and certificate.pkcs12_digest:
            if passphrase is None:
                if certificate.passphrase_sealed is None:
                    raise engine.SigningError("Cần nhập mật khẩu của tệp chứng thư số để ký.")
                passphrase = open_secret(certificate.passphrase_sealed, secret)
            return engine.Pkcs12Key(storage().read(certificate.pkcs12_digest), passphrase)
        if certificate.key_kind == KeyKind.PKCS11 and certificate.pkcs11_module and certificate.pin_sealed:
            return engine.Pkcs11Key(certificate.pkcs11_module, certificate.pkcs11_token or "",
                                    open_secret(certificate.pin_sealed, secret),
                                    key_label=certificate.pkcs11_key_label, chain=tuple(certificate.chain()))
    except SecretUnreadable as exc:
        raise engine.SigningError("Không mở được khóa đã lưu (khóa bí mật của hệ thống đã đổi): "
                                  "hãy đăng kí lại chứng thư số.") from exc
    raise engine.SigningError("Khóa của chứng thư số này không nằm trên máy chủ.")
