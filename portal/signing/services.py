"""Registering certificates and turning a registered certificate into a key the engine can sign with."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from flask import current_app

from portal import audit, uploads
from portal.collation import name_key
from portal.extensions import db, utcnow
from portal.signing import engine, pki, trust_roots
from portal.storage import storage
from tenants.certificates import (
    PIN_KDF_LOG2,
    CertificateFields,
    DistrictCertificate,
    KeyKind,
    PersonCertificate,
    SealCertificate,
    SecretUnreadable,
    WrongPin,
    is_pin_wrapped,
    open_secret,
    reseal,
    seal_secret,
    unwrap_with_pin,
    wrap_with_pin,
)
from tenants.models import District, Membership, School, User


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
    signing_pin: str = ""  # a person's key: the PIN that locks its passphrase (kept on the server) for its holder
    pin_kdf_log2: int = PIN_KDF_LOG2  # the cost of that lock (only the demo lowers it)


PIN_MIN_LENGTH = 6
PIN_MAX_FAILURES = 5


def wrapping_keys() -> list[str]:
    """The keys that seal stored secrets: WRAPPING_KEYS (the first seals) and, to open what was sealed before
    the portal had a key of its own, SECRET_KEY."""
    return [*current_app.config["WRAPPING_KEYS"], current_app.config["SECRET_KEY"]]


def signing_pin_problems(pin: str) -> list[str]:
    """Why a signing PIN is refused (Vietnamese); empty when it is acceptable."""
    if len(pin) < PIN_MIN_LENGTH:
        return [f"Mã PIN ký số phải có ít nhất {PIN_MIN_LENGTH} ký tự."]
    runs = "0123456789012345678909876543210"
    if len(set(pin)) <= 2 or (pin.isdigit() and pin in runs):
        return ["Mã PIN ký số quá dễ đoán (như 111111, 123456): hãy chọn dãy khác."]
    return []


@dataclass(frozen=True)
class _Read:
    certificate: x509.Certificate
    chain: list[x509.Certificate]


def _read_upload(upload: Upload) -> _Read:
    try:
        uploads.check_certificate_file(upload.data)
    except uploads.UploadRefused as exc:
        raise CertificateRefused(str(exc)) from exc
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


def _fill(row: CertificateFields, upload: Upload, read: _Read, actor: Any, *, personal: bool) -> None:
    info = pki.describe(read.certificate)
    keys = wrapping_keys()
    row.common_name, row.subject, row.issuer = info.common_name[:200], info.subject[:1000], info.issuer[:1000]
    row.serial, row.fingerprint = info.serial[:80], info.fingerprint
    row.not_before, row.not_after = info.not_before, info.not_after
    row.certificate = read.certificate.public_bytes(serialization.Encoding.DER)
    row.chain_pem = pki.certificates_pem(read.chain)
    row.key_kind = upload.key_kind
    row.created_by_id = getattr(actor, "id", None)
    if upload.key_kind == KeyKind.PKCS12:
        row.pkcs12_digest = storage().put(upload.data)
        row.passphrase_sealed = (_kept(upload.passphrase, upload, keys, personal=personal)
                                 if upload.keep_passphrase_on_server else None)
    elif upload.key_kind == KeyKind.PKCS11:
        row.pkcs11_module, row.pkcs11_token = upload.pkcs11_module, upload.pkcs11_token
        row.pkcs11_key_label = upload.pkcs11_key_label or None
        row.pin_sealed = _kept(upload.pkcs11_pin, upload, keys, personal=personal)
    elif upload.key_kind == KeyKind.CSC:
        row.csc_provider, row.csc_credential_id = upload.csc_provider or None, upload.csc_credential_id or None


def _kept(secret: str, upload: Upload, keys: list[str], *, personal: bool) -> str:
    """How the key's secret is kept: locked with its holder's signing PIN for a person, sealed for a school."""
    if not personal:
        return seal_secret(secret, keys)
    problems = signing_pin_problems(upload.signing_pin)
    if problems:
        raise CertificateRefused(" ".join(problems))
    return wrap_with_pin(secret, upload.signing_pin, keys, log2=upload.pin_kdf_log2)


def _register(model: Any, owner: Sequence[Any], new_row: Any, upload: Upload, *, actor: Any, at: datetime | None,
              personal: bool) -> Any:
    """Read and check the upload, then make it the owner's active certificate of `model` (`owner`: the
    filters naming whose it is); the same certificate twice is refused, the earlier ones are deactivated."""
    read = _read_upload(upload)
    _check_usable(read, at or utcnow())
    fingerprint = pki.describe(read.certificate).fingerprint
    existing = db.session.scalar(sa.select(model).where(*owner, model.fingerprint == fingerprint))
    if existing is not None and existing.active:
        raise CertificateRefused("Chứng thư số này đã được đăng kí.")
    row = existing or new_row
    _fill(row, upload, read, actor, personal=personal)
    row.active = True
    for older in db.session.scalars(sa.select(model).where(*owner, model.active.is_(True))):
        if older is not row:
            older.active = False
    db.session.add(row)
    db.session.flush()
    return row


def register_person_certificate(user: User, upload: Upload, *, school: School | None, actor: Any,
                                at: datetime | None = None) -> PersonCertificate:
    """Register `user`'s certificate; it replaces (deactivates) the ones registered before."""
    row = _register(PersonCertificate, [PersonCertificate.user_id == user.id], PersonCertificate(user_id=user.id),
                    upload, actor=actor, at=at, personal=True)
    row.school_id, row.pin_failures = (school.id if school else None), 0
    db.session.flush()
    audit.record("certificate.registered", actor=actor, school_id=row.school_id, obj=row,
                 summary=f"{row.common_name} ({row.serial})",
                 changes={"user_id": user.id, "key_kind": row.key_kind.value, "issuer": row.issuer,
                          "not_after": row.not_after, "signing_pin": row.needs_signing_pin})
    return row


def register_seal_certificate(school: School, upload: Upload, *, actor: Any,
                              at: datetime | None = None) -> SealCertificate:
    """Register the school's seal certificate; it replaces the one registered before."""
    row = _register(SealCertificate, [SealCertificate.school_id == school.id], SealCertificate(school_id=school.id),
                    upload, actor=actor, at=at, personal=False)
    audit.record("seal_certificate.registered", actor=actor, school_id=school.id, obj=row,
                 summary=f"{row.common_name} ({row.serial})",
                 changes={"key_kind": row.key_kind.value, "issuer": row.issuer, "not_after": row.not_after})
    return row


def register_district_certificate(district: District, upload: Upload, *, actor: Any,
                                  at: datetime | None = None) -> DistrictCertificate:
    """Register the district office's organisation certificate (it signs the audit checkpoints)."""
    row = _register(DistrictCertificate, [DistrictCertificate.district_id == district.id],
                    DistrictCertificate(district_id=district.id), upload, actor=actor, at=at, personal=False)
    audit.record("district_certificate.registered", actor=actor, school_id=None, obj=row,
                 summary=f"{row.common_name} ({row.serial})",
                 changes={"key_kind": row.key_kind.value, "issuer": row.issuer, "not_after": row.not_after,
                          "fingerprint": row.fingerprint})
    return row


def current_district_certificate(district_id: int, at: datetime | None = None) -> DistrictCertificate | None:
    """The district's active organisation certificate valid at `at` (now), or None."""
    moment = at or utcnow()
    return db.session.scalar(sa.select(DistrictCertificate).where(
        DistrictCertificate.district_id == district_id, DistrictCertificate.active.is_(True),
        DistrictCertificate.not_before <= moment, DistrictCertificate.not_after >= moment)
        .order_by(DistrictCertificate.id.desc()).limit(1))


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


def set_signing_pin(certificate: PersonCertificate, passphrase: str, pin: str, *, actor: User,
                    kdf_log2: int = PIN_KDF_LOG2) -> None:
    """The holder (re)sets the signing PIN of their .p12, proving with its passphrase that they hold the key.

    A forgotten PIN is recovered this way or by registering a new certificate; nobody else can do it.
    """
    if actor is None or actor.id != certificate.user_id:
        raise CertificateRefused("Chỉ người giữ chứng thư số được đặt mã PIN ký số của mình.")
    if certificate.key_kind != KeyKind.PKCS12 or not certificate.pkcs12_digest:
        raise CertificateRefused("Chỉ đặt mã PIN cho chứng thư số dạng tệp .p12 trên hệ thống.")
    try:
        pki.read_pkcs12(storage().read(certificate.pkcs12_digest), passphrase)
    except pki.CertificateError as exc:
        raise CertificateRefused("Mật khẩu tệp .p12/.pfx không đúng.") from exc
    problems = signing_pin_problems(pin)
    if problems:
        raise CertificateRefused(" ".join(problems))
    certificate.passphrase_sealed = wrap_with_pin(passphrase, pin, wrapping_keys(), log2=kdf_log2)
    certificate.pin_failures = 0
    audit.record("certificate.pin_set", actor=actor, school_id=certificate.school_id, obj=certificate,
                 summary=f"{certificate.common_name} ({certificate.serial})")


def server_key(certificate: CertificateFields, *, secret: str | None = None) -> engine.ServerKey:
    """The engine key for a certificate whose key the server holds (pkcs12 or pkcs11).

    `secret` is what its holder types: the signing PIN (`needs_signing_pin`) or, when they keep it, the .p12
    passphrase / HSM PIN. A person's key never opens without it. `SigningError` (in Vietnamese) otherwise.
    """
    if certificate.key_kind == KeyKind.PKCS12 and certificate.pkcs12_digest:
        passphrase = _key_secret(certificate, certificate.passphrase_sealed, secret)
        return engine.Pkcs12Key(storage().read(certificate.pkcs12_digest), passphrase)
    if certificate.key_kind == KeyKind.PKCS11 and certificate.pkcs11_module:
        return engine.Pkcs11Key(certificate.pkcs11_module, certificate.pkcs11_token or "",
                                _key_secret(certificate, certificate.pin_sealed, secret),
                                key_label=certificate.pkcs11_key_label, chain=tuple(certificate.chain()))
    raise engine.SigningError("Khóa của chứng thư số này không nằm trên máy chủ.")


def check_secret(certificate: CertificateFields, secret: str | None) -> None:
    """Before a batch is queued: `SigningError` unless the typed PIN (or passphrase) opens the key's lock."""
    if certificate.key_kind in (KeyKind.PKCS12, KeyKind.PKCS11):
        _key_secret(certificate, certificate.key_secret_sealed, secret)


def _key_secret(certificate: CertificateFields, sealed: str | None, typed: str | None) -> str:
    if sealed is None:  # the holder keeps the passphrase and types it
        if not typed:
            raise engine.SigningError("Cần nhập mật khẩu của tệp chứng thư số để ký.")
        return typed
    try:
        if is_pin_wrapped(sealed):
            return _unlock_with_pin(certificate, sealed, typed)
        if isinstance(certificate, PersonCertificate):
            # Sealed with the server's key alone: anyone with the server could sign as this person.
            raise engine.SigningError("Chứng thư số này chưa có mã PIN ký số: hãy đặt mã PIN (trang Chứng thư "
                                      "số của tôi) hoặc nhập mật khẩu tệp .p12 khi ký.")
        return open_secret(sealed, wrapping_keys())
    except SecretUnreadable as exc:
        raise engine.SigningError("Không mở được khóa đã lưu (khóa mã hóa của hệ thống đã đổi): "
                                  "hãy đăng kí lại chứng thư số.") from exc


def _unlock_with_pin(certificate: CertificateFields, sealed: str, pin: str | None) -> str:
    """Open the key with the holder's PIN; wrong PINs are counted and, past the limit, the PIN is blocked."""
    failures = getattr(certificate, "pin_failures", 0) or 0
    if failures >= PIN_MAX_FAILURES:
        raise engine.SigningError("Mã PIN ký số đã bị khóa vì nhập sai nhiều lần: người giữ chứng thư số hãy "
                                  "đặt lại mã PIN bằng mật khẩu tệp .p12, hoặc đăng kí chứng thư số mới.")
    if not pin:
        raise engine.SigningError("Cần nhập mã PIN ký số của người giữ chứng thư số để ký.")
    try:
        value = unwrap_with_pin(sealed, pin, wrapping_keys())
    except WrongPin as exc:
        _count_pin_failure(certificate)
        left = PIN_MAX_FAILURES - failures - 1
        raise engine.SigningError(f"Mã PIN ký số không đúng (còn {left} lần thử).") from exc
    if failures:
        certificate.pin_failures = 0  # type: ignore[attr-defined]
    return value


def _count_pin_failure(certificate: CertificateFields) -> None:
    """Counted in its own transaction: the failed batch rolls back, the count must stay."""
    if not isinstance(certificate, PersonCertificate):
        return
    db.session.execute(sa.update(PersonCertificate).where(PersonCertificate.id == certificate.id)
                       .values(pin_failures=PersonCertificate.pin_failures + 1))
    audit.record("certificate.pin_wrong", actor=certificate.user, school_id=certificate.school_id, obj=certificate,
                 summary=f"{certificate.common_name} ({certificate.serial})")
    db.session.commit()


@dataclass
class Rotation:
    resealed: int = 0
    unreadable: list[str] = field(default_factory=list)  # "person_certificates/12" for each that did not open


def rotate_wrapped_secrets(*, actor: Any) -> Rotation:
    """Seal every stored secret again with the first wrapping key (every school; commits)."""
    from tenants.scoping import all_schools

    keys, done = wrapping_keys(), Rotation()
    with all_schools():
        for model in (PersonCertificate, SealCertificate, DistrictCertificate):
            for row in db.session.scalars(sa.select(model).order_by(model.id)):
                for column in ("passphrase_sealed", "pin_sealed"):
                    sealed = getattr(row, column)
                    if not sealed:
                        continue
                    try:
                        setattr(row, column, reseal(sealed, keys))
                        done.resealed += 1
                    except SecretUnreadable:
                        done.unreadable.append(f"{model.__tablename__}/{row.id}")
        audit.record("keys.rotated", actor=actor, school_id=None, object_type="WrappingKey",
                     changes={"resealed": done.resealed, "unreadable": done.unreadable})
        db.session.commit()
    return done
