"""Signing certificates: each person's own, each school's seal (organisation) certificate, and the
district office's organisation certificate (it signs the audit trail's checkpoints).

A person's certificate belongs to the account (a teacher keeps it when moving school); `school_id`
only records where it was registered. A school's seal certificate is tenant-owned. Both keep the
certificate and its chain, what the pages show (subject, issuer, serial, validity), and where the key
lives (`KeyKind`):

- pkcs12: an encrypted .p12 file in the file store. Its passphrase is kept sealed with a key derived
  from the portal's SECRET_KEY, so that batch signing jobs can open it with nobody at the keyboard
  (the reason small schools choose a server-held key at all). A database dump alone opens nothing; the
  dump and the SECRET_KEY together would, the same exposure as every other server-held secret. A
  person who does not accept that ticks "giữ mật khẩu" and types the passphrase each time they sign:
  then `passphrase_sealed` is empty. Changing SECRET_KEY makes the sealed passphrases unreadable:
  their holders register the file again.
- pkcs11: a key on an HSM the server reaches (module, token label, key label; the PIN sealed as above).
- usb: a USB token at the person's computer, used through the signing agent: only the certificate.
- csc: a remote signing service (provider and credential id): only the certificate.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime, timedelta
from enum import StrEnum

import sqlalchemy as sa
from cryptography import x509
from cryptography.fernet import Fernet, InvalidToken
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
    """A sealed secret does not open with the current SECRET_KEY."""


def _fernet(secret_key: str) -> Fernet:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"hocba-signing-secrets",
               info=b"pkcs12 passphrase / pkcs11 pin").derive(secret_key.encode())
    return Fernet(base64.urlsafe_b64encode(key))


def seal_secret(value: str, secret_key: str) -> str:
    """`value` encrypted (and authenticated) with a key derived from the portal's SECRET_KEY."""
    return _fernet(secret_key).encrypt(value.encode()).decode()


def open_secret(sealed: str, secret_key: str) -> str:
    try:
        return _fernet(secret_key).decrypt(sealed.encode()).decode()
    except InvalidToken as exc:
        raise SecretUnreadable("sealed with another SECRET_KEY") from exc


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
        return self.key_kind == KeyKind.PKCS12 and self.passphrase_sealed is None

    @staticmethod
    def fingerprint_of(der: bytes) -> str:
        return hashlib.sha256(der).hexdigest()


class PersonCertificate(CertificateFields, db.Model):
    """A teacher's or principal's personal signing certificate."""

    __tablename__ = "person_certificates"

    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"), index=True)
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
