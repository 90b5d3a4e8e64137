"""Signing certificates: each person's own, each school's seal (organisation) certificate, and the
district office's organisation certificate (it signs the audit trail's checkpoints).

A person's certificate belongs to the account (a teacher keeps it when moving school); `school_id`
only records where it was registered. A school's seal certificate is tenant-owned. Both keep the
certificate and its chain, what the pages show (subject, issuer, serial, validity), and where the key
lives (`KeyKind`):

- pkcs12: an encrypted .p12 file in the file store, and its passphrase. For a person's certificate the
  passphrase is locked with a signing PIN only its holder knows (`wrap_with_pin`): no administrator, no
  password reset and no database dump plus server keys opens it without that PIN, so nobody signs as
  someone else. Batch signing asks the PIN once per batch. A holder who does not want even that types the
  .p12 passphrase each time instead (then `passphrase_sealed` is empty). A school's seal certificate is the
  organisation's: its passphrase is sealed with the portal's wrapping key so that sealing runs unattended,
  and only those holding the APPLY_SEAL permission start it, after the two personal signatures.
- pkcs11: a key on an HSM the server reaches (module, token label, key label; its PIN kept as above).
- usb: a USB token at the person's computer, used through the signing agent: only the certificate.
- csc: a remote signing service (provider and credential id): only the certificate.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Sequence
from datetime import datetime, timedelta
from enum import StrEnum

import sqlalchemy as sa
from cryptography import x509
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy.orm import Mapped, declared_attr, mapped_column, relationship

from portal.extensions import UTCDateTime, db, str_enum, utcnow
from tenants.models import School, User
from tenants.scoping import TenantScoped

EXPIRY_WARNING_DAYS = 30


class KeyKind(StrEnum):
    PKCS12 = "pkcs12"
    PKCS11 = "pkcs11"
    USB = "usb"
    CSC = "csc"


class SecretUnreadable(RuntimeError):
    """A sealed secret does not open with any of the portal's wrapping keys."""


class WrongPin(SecretUnreadable):
    """The signing PIN typed does not open the holder's key."""


# The outer layer of every stored secret: keys from the WRAPPING_KEYS setting, the first one sealing, the
# others (older keys during a rotation, and the SECRET_KEY that sealed secrets before there was a key of
# their own) only opening. `flask keys rotate` seals everything again with the first.
Keys = Sequence[str] | str


def _fernet(secret_key: str) -> Fernet:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"hocba-signing-secrets",
               info=b"pkcs12 passphrase / pkcs11 pin").derive(secret_key.encode())
    return Fernet(base64.urlsafe_b64encode(key))


def _multi(keys: Keys) -> MultiFernet:
    keys = [keys] if isinstance(keys, str) else list(keys)
    return MultiFernet([_fernet(key) for key in keys if key])


def seal_secret(value: str, keys: Keys) -> str:
    """`value` encrypted (and authenticated) with the first wrapping key."""
    return _multi(keys).encrypt(value.encode()).decode()


def open_secret(sealed: str, keys: Keys) -> str:
    try:
        return _multi(keys).decrypt(sealed.encode()).decode()
    except InvalidToken as exc:
        raise SecretUnreadable("sealed with a key the portal no longer has") from exc


# --- the holder's signing PIN -----------------------------------------------------------------------------

PIN_PREFIX = "pin1$"
# scrypt makes every guess of a PIN cost ~50 ms and 16 MB (n = 2**14); the wrapping key outside makes a dump
# alone useless. The cost is stored with each lock (the demo's certificates use a lower one, as their .p12
# files use fewer KDF rounds).
PIN_KDF_LOG2 = 14
_PIN_KDF_RANGE = range(10, 17)


def _pin_fernet(pin: str, salt: bytes, log2: int) -> Fernet:
    if log2 not in _PIN_KDF_RANGE:
        raise SecretUnreadable(f"unexpected PIN cost 2**{log2}")
    key = hashlib.scrypt(pin.encode(), salt=salt, n=2**log2, r=8, p=1, dklen=32, maxmem=2 * 128 * 8 * 2**log2)
    return Fernet(base64.urlsafe_b64encode(key))


def wrap_with_pin(value: str, pin: str, keys: Keys, *, log2: int = PIN_KDF_LOG2) -> str:
    """`value` locked with the holder's PIN, then sealed with the wrapping key: `pin1$<cost>$<salt>$<sealed>`."""
    salt = os.urandom(16)
    inner = _pin_fernet(pin, salt, log2).encrypt(value.encode()).decode()
    return f"{PIN_PREFIX}{log2}${base64.urlsafe_b64encode(salt).decode()}${seal_secret(inner, keys)}"


def _pin_parts(wrapped: str) -> tuple[int, str, str]:
    log2, _sep, rest = wrapped.removeprefix(PIN_PREFIX).partition("$")
    salt, _sep, sealed = rest.partition("$")
    return int(log2), salt, sealed


def unwrap_with_pin(wrapped: str, pin: str, keys: Keys) -> str:
    """The value locked by `wrap_with_pin`; `WrongPin` for a wrong PIN."""
    log2, salt, sealed = _pin_parts(wrapped)
    inner = open_secret(sealed, keys)
    try:
        return _pin_fernet(pin, base64.urlsafe_b64decode(salt), log2).decrypt(inner.encode()).decode()
    except InvalidToken as exc:
        raise WrongPin("wrong signing PIN") from exc


def is_pin_wrapped(sealed: str | None) -> bool:
    return bool(sealed) and sealed.startswith(PIN_PREFIX)  # type: ignore[union-attr]


def reseal(sealed: str, keys: Keys) -> str:
    """The same secret sealed with the first wrapping key (a PIN-locked one keeps its PIN lock)."""
    if is_pin_wrapped(sealed):
        log2, salt, outer = _pin_parts(sealed)
        return f"{PIN_PREFIX}{log2}${salt}${reseal(outer, keys)}"
    try:
        return _multi(keys).rotate(sealed.encode()).decode()
    except InvalidToken as exc:
        raise SecretUnreadable("sealed with a key the portal no longer has") from exc


class CertificateFields:
    """The columns both kinds of certificate share."""

    id: Mapped[int] = mapped_column(primary_key=True)
    common_name: Mapped[str] = mapped_column(sa.String(200))
    subject: Mapped[str] = mapped_column(sa.String(1000))
    issuer: Mapped[str] = mapped_column(sa.String(1000))
    serial: Mapped[str] = mapped_column(sa.String(80))
    fingerprint: Mapped[str] = mapped_column(sa.String(64))  # SHA-256 of the DER, hex
    not_before: Mapped[datetime] = mapped_column(UTCDateTime)
    not_after: Mapped[datetime] = mapped_column(UTCDateTime)
    certificate: Mapped[bytes] = mapped_column(sa.LargeBinary)  # DER
    chain_pem: Mapped[str] = mapped_column(sa.Text, default="")  # issuing CA(s) up to the root
    key_kind: Mapped[KeyKind] = mapped_column(str_enum(KeyKind, 16))
    pkcs12_digest: Mapped[str | None] = mapped_column(sa.String(64))  # the .p12 in the file store
    passphrase_sealed: Mapped[str | None] = mapped_column(sa.Text)
    pkcs11_module: Mapped[str | None] = mapped_column(sa.String(300))
    pkcs11_token: Mapped[str | None] = mapped_column(sa.String(100))
    pkcs11_key_label: Mapped[str | None] = mapped_column(sa.String(100))
    pin_sealed: Mapped[str | None] = mapped_column(sa.Text)
    csc_provider: Mapped[str | None] = mapped_column(sa.String(100))
    csc_credential_id: Mapped[str | None] = mapped_column(sa.String(200))
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @declared_attr
    def created_by_id(cls) -> Mapped[int | None]:
        return mapped_column(sa.ForeignKey("users.id"))

    def x509(self) -> x509.Certificate:
        return x509.load_der_x509_certificate(self.certificate)

    def chain(self) -> list[x509.Certificate]:
        return x509.load_pem_x509_certificates(self.chain_pem.encode()) if self.chain_pem.strip() else []

    def valid_at(self, moment: datetime) -> bool:
        return self.not_before <= moment <= self.not_after

    def expires_within(self, moment: datetime, days: int = EXPIRY_WARNING_DAYS) -> bool:
        """Valid at `moment` but not `days` later: the pages warn."""
        return self.valid_at(moment) and self.not_after < moment + timedelta(days=days)

    @property
    def passphrase_held_by_user(self) -> bool:
        """The holder types the .p12 passphrase itself each time they sign."""
        return self.key_kind == KeyKind.PKCS12 and self.passphrase_sealed is None

    @property
    def key_secret_sealed(self) -> str | None:
        """What unlocks the server-held key, as stored: the .p12 passphrase or the HSM PIN."""
        return self.passphrase_sealed if self.key_kind == KeyKind.PKCS12 else self.pin_sealed

    @property
    def needs_signing_pin(self) -> bool:
        """The key opens only with its holder's signing PIN."""
        return self.key_kind in (KeyKind.PKCS12, KeyKind.PKCS11) and is_pin_wrapped(self.key_secret_sealed)

    @property
    def secret_to_ask(self) -> str | None:
        """What a signer must type to sign with this key: "pin", "passphrase", or None (nothing)."""
        if self.needs_signing_pin:
            return "pin"
        if self.key_kind in (KeyKind.PKCS12, KeyKind.PKCS11) and self.key_secret_sealed is None:
            return "passphrase"
        return None

    @staticmethod
    def fingerprint_of(der: bytes) -> str:
        return hashlib.sha256(der).hexdigest()


class PersonCertificate(CertificateFields, db.Model):
    """A teacher's or principal's personal signing certificate."""

    __tablename__ = "person_certificates"

    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"), index=True)
    # Wrong signing PINs in a row; at PIN_MAX_FAILURES the PIN stops working until its holder sets it again.
    pin_failures: Mapped[int] = mapped_column(default=0, server_default="0")
    # Where it was registered (for the trail); the certificate belongs to the person, not the school.
    school_id: Mapped[int | None] = mapped_column(sa.ForeignKey("schools.id"), index=True)

    user: Mapped[User] = relationship(foreign_keys=[user_id])
    school: Mapped[School | None] = relationship()

    __table_args__ = (sa.UniqueConstraint("user_id", "fingerprint"),)

    def __repr__(self) -> str:
        return f"<PersonCertificate user={self.user_id} {self.serial}>"


class SealCertificate(TenantScoped, CertificateFields, db.Model):
    """A school's organisation certificate: its seal (con dấu số)."""

    __tablename__ = "seal_certificates"

    __table_args__ = (sa.UniqueConstraint("school_id", "fingerprint"),)

    def __repr__(self) -> str:
        return f"<SealCertificate school={self.school_id} {self.serial}>"


class DistrictCertificate(CertificateFields, db.Model):
    """The district office's organisation certificate: it signs the audit trail's checkpoints."""

    __tablename__ = "district_certificates"

    district_id: Mapped[int] = mapped_column(sa.ForeignKey("districts.id"), index=True)

    __table_args__ = (sa.UniqueConstraint("district_id", "fingerprint"),)

    def __repr__(self) -> str:
        return f"<DistrictCertificate district={self.district_id} {self.serial}>"
