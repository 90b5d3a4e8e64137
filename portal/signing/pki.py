"""The demo PKI, and reading the certificates and PKCS#12 files people bring.

The demo PKI is a root CA and an issuing CA whose names say "KHÔNG DÙNG THẬT" (not for real use): the
demo command creates it once in the instance folder, and issues from it a personal certificate for
every demo teacher and principal and an organisation (seal) certificate for every demo school. Tests
use the same functions. Keys are EC P-256 by default: generating one takes microseconds where an
RSA 2048 key takes ~60 ms (the demo issues ~130 of them); RSA remains available (`key_type="rsa"`),
being what Vietnamese CAs issue on USB tokens today, and the signing engine handles both.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
KeyType = Literal["ec", "rsa"]

DEMO_MARK = "KHÔNG DÙNG THẬT – CA thử nghiệm Học bạ số"
# X.520 limits a name to 64 bytes of UTF-8: the mark is the common name, the CA's level its unit.
DEMO_ROOT_NAME = DEMO_MARK
DEMO_ISSUING_NAME = DEMO_MARK
DEMO_ROOT_UNIT = "CA gốc (root)"
DEMO_ISSUING_UNIT = "CA cấp chứng thư (issuing)"
ROOT_FILE = "demo-root-ca.pem"
ROOT_KEY_FILE = "demo-root-ca-key.pem"
ISSUING_FILE = "demo-issuing-ca.pem"
ISSUING_KEY_FILE = "demo-issuing-ca-key.pem"
TSA_FILE = "demo-tsa.pem"
TSA_KEY_FILE = "demo-tsa-key.pem"
SERVICE_URL_FILE = "demo-service-url.txt"
REVOKED_FILE = "demo-revoked.txt"
DEMO_TSA_NAME = "KHÔNG DÙNG THẬT – Dấu thời gian thử nghiệm"
# Where the demo CA's services answer, relative to its service address (standins/pki serves them).
OCSP_PATH = "/ocsp"
TSA_PATH = "/tsa"
ROOT_CRL_PATH = "/crl/root.crl"
ISSUING_CRL_PATH = "/crl/issuing.crl"
ROOT_CERT_PATH = "/certs/root.cer"
ISSUING_CERT_PATH = "/certs/issuing.cer"
ROLE_TITLES = {"gvcn": "Giáo viên chủ nhiệm", "hieu_truong": "Hiệu trưởng"}


class CertificateError(ValueError):
    """A file is not a certificate (or PKCS#12) the portal can use; the message is Vietnamese."""


class WrongPassphrase(CertificateError):
    """The PKCS#12 file did not open with the passphrase given."""


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_key(key_type: KeyType = "ec") -> PrivateKey:
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


def _fit(text: str, limit: int = 64) -> str:
    """`text` cut to at most `limit` bytes of UTF-8, on a character boundary."""
    return text.encode()[:limit].decode(errors="ignore")


def _name(common_name: str, *, organisation: str | None = None, title: str | None = None,
          locality: str | None = None, unit: str | None = None) -> x509.Name:
    parts = [x509.NameAttribute(NameOID.COUNTRY_NAME, "VN")]
    if locality:
        parts.append(x509.NameAttribute(NameOID.LOCALITY_NAME, locality))
    if organisation:
        parts.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, _fit(organisation)))
    if unit:
        parts.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, _fit(unit)))
    if title:
        parts.append(x509.NameAttribute(NameOID.TITLE, _fit(title)))
    parts.append(x509.NameAttribute(NameOID.COMMON_NAME, _fit(common_name)))
    return x509.Name(parts)


def _builder(subject: x509.Name, issuer: x509.Name, public_key: object, not_before: dt.datetime,
             not_after: dt.datetime) -> x509.CertificateBuilder:
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
            .public_key(public_key).serial_number(x509.random_serial_number())  # type: ignore[arg-type]
            .not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False))  # type: ignore[arg-type]


def _ca_usage() -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                         encipher_only=False, decipher_only=False)


def _revocation_pointers(builder: x509.CertificateBuilder, service_url: str | None, *, crl_path: str,
                         issuer_path: str, ocsp: bool = True) -> x509.CertificateBuilder:
    """Where a relying party finds the certificate's revocation status (OCSP, CRL) and its issuer.

    Without them a validator cannot tell a revoked certificate from a good one, and long-term validation
    (PAdES B-LT) has nothing to embed. A CA certificate names only its issuer's CRL, as public CAs do.
    """
    if not service_url:
        return builder
    base = service_url.rstrip("/")
    access = [x509.AccessDescription(AuthorityInformationAccessOID.OCSP,
                                     x509.UniformResourceIdentifier(base + OCSP_PATH))] if ocsp else []
    access.append(x509.AccessDescription(AuthorityInformationAccessOID.CA_ISSUERS,
                                         x509.UniformResourceIdentifier(base + issuer_path)))
    points = [x509.DistributionPoint([x509.UniformResourceIdentifier(base + crl_path)], None, None, None)]
    return (builder.add_extension(x509.AuthorityInformationAccess(access), critical=False)
            .add_extension(x509.CRLDistributionPoints(points), critical=False))


def _signer_usage() -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=True, content_commitment=True, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                         encipher_only=False, decipher_only=False)


@dataclass(frozen=True)
class IssuedCertificate:
    """A key with its certificate and the chain up to (and including) the root."""

    key: PrivateKey
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...] = field(default=())

    def pkcs12(self, passphrase: str, *, kdf_rounds: int | None = None) -> bytes:
        """The key, certificate and chain as an encrypted PKCS#12 (.p12) file (AES-256, PBKDF2-SHA256).

        `kdf_rounds` below the library's default makes opening the file cheaper, and guessing the
        passphrase too: only for demo and test files.
        """
        if kdf_rounds is None:
            encryption = serialization.BestAvailableEncryption(passphrase.encode())
        else:
            encryption = (serialization.PrivateFormat.PKCS12.encryption_builder().kdf_rounds(kdf_rounds)
                          .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC).hmac_hash(hashes.SHA256())
                          .build(passphrase.encode()))
        return pkcs12.serialize_key_and_certificates(
            name=describe(self.certificate).common_name.encode(), key=self.key, cert=self.certificate,
            cas=list(self.chain), encryption_algorithm=encryption)

    def certificate_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        return self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())


@dataclass(frozen=True)
class DemoCA:
    """The demo root and issuing CA; issues person and organisation (seal) certificates."""

    root: x509.Certificate
    issuing: x509.Certificate
    issuing_key: PrivateKey
    # Kept (demo only) so that the CRL covering the issuing CA can be signed; None when not kept.
    root_key: PrivateKey | None = field(default=None, repr=False)
    # The address of the CA's OCSP, CRL and timestamp service, written into every certificate it issues.
    service_url: str | None = None

    @property
    def chain(self) -> tuple[x509.Certificate, ...]:
        return (self.issuing, self.root)

    def issue(self, subject: x509.Name, *, key_type: KeyType = "ec", days: int = 3 * 365,
              not_before: dt.datetime | None = None, not_after: dt.datetime | None = None,
              key: PrivateKey | None = None) -> IssuedCertificate:
        """A signing certificate (digital signature + non-repudiation) for `subject`."""
        key = key or new_key(key_type)
        start = not_before or _utcnow() - dt.timedelta(hours=1)
        end = not_after or start + dt.timedelta(days=days)
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(self.issuing_key.public_key())
        builder = (_builder(subject, self.issuing.subject, key.public_key(), start, end)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(_signer_usage(), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
                   .add_extension(aki, critical=False)
                   .add_extension(x509.CertificatePolicies([x509.PolicyInformation(
                       x509.ObjectIdentifier("2.25.1337"), [x509.UserNotice(None, DEMO_MARK)])]), critical=False))
        builder = _revocation_pointers(builder, self.service_url, crl_path=ISSUING_CRL_PATH,
                                       issuer_path=ISSUING_CERT_PATH)
        return IssuedCertificate(key, builder.sign(self.issuing_key, hashes.SHA256()), self.chain)

    def issue_tsa(self, *, days: int = 5 * 365, not_before: dt.datetime | None = None,
                  not_after: dt.datetime | None = None) -> IssuedCertificate:
        """A timestamp authority's certificate (extended key usage timeStamping, critical, as RFC 3161 asks).

        RSA: the token signer the stand-in uses (pyHanko's) signs with RSA only.
        """
        key = new_key("rsa")
        start = not_before or _utcnow() - dt.timedelta(hours=1)
        end = not_after or start + dt.timedelta(days=days)
        usage = x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                              data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                              encipher_only=False, decipher_only=False)
        builder = (_builder(_name(DEMO_TSA_NAME, organisation="Học bạ số", unit=DEMO_MARK), self.issuing.subject,
                            key.public_key(), start, end)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(usage, critical=True)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.issuing_key.public_key()),
                                  critical=False))
        builder = _revocation_pointers(builder, self.service_url, crl_path=ISSUING_CRL_PATH,
                                       issuer_path=ISSUING_CERT_PATH)
        return IssuedCertificate(key, builder.sign(self.issuing_key, hashes.SHA256()), self.chain)

    def issue_person(self, full_name: str, *, title: str, organisation: str, locality: str = "",
                     **options: object) -> IssuedCertificate:
        """A personal certificate: CN = the full name, the role (title) and the school in the subject."""
        subject = _name(full_name, organisation=organisation, title=title, locality=locality or None,
                        unit=DEMO_MARK)
        return self.issue(subject, **options)  # type: ignore[arg-type]

    def issue_organisation(self, organisation: str, *, locality: str = "", **options: object) -> IssuedCertificate:
        """An organisation (seal) certificate: CN and O = the school's name."""
        subject = _name(organisation, organisation=organisation, locality=locality or None, unit=DEMO_MARK)
        return self.issue(subject, **options)  # type: ignore[arg-type]


def create_ca(*, key_type: KeyType = "ec", root_name: str = DEMO_ROOT_NAME,
              issuing_name: str = DEMO_ISSUING_NAME, service_url: str | None = None) -> DemoCA:
    """A fresh root and issuing CA in memory.

    With `service_url` (where standins/pki answers), the issuing CA and every certificate it issues name
    that service's OCSP responder and CRLs, and the root's key is kept to sign the CRL covering the
    issuing CA; without, certificates carry no revocation pointers (enough below PAdES B-LT).
    """
    root_key, issuing_key = new_key(key_type), new_key(key_type)
    now = _utcnow() - dt.timedelta(days=1)
    root_subject = _name(root_name, organisation="Học bạ số", unit=DEMO_ROOT_UNIT)
    root = (_builder(root_subject, root_subject, root_key.public_key(), now, now + dt.timedelta(days=20 * 365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
            .add_extension(_ca_usage(), critical=True)
            .sign(root_key, hashes.SHA256()))
    issuing_subject = _name(issuing_name, organisation="Học bạ số", unit=DEMO_ISSUING_UNIT)
    issuing = (_builder(issuing_subject, root_subject, issuing_key.public_key(), now,
                        now + dt.timedelta(days=10 * 365))
               .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
               .add_extension(_ca_usage(), critical=True)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()),
                              critical=False))
    issuing = _revocation_pointers(issuing, service_url, crl_path=ROOT_CRL_PATH, issuer_path=ROOT_CERT_PATH,
                                   ocsp=False)
    return DemoCA(root, issuing.sign(root_key, hashes.SHA256()), issuing_key,
                  root_key=root_key if service_url else None, service_url=service_url)


def _write_key(path: Path, key: PrivateKey) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))


def _read_key(path: Path) -> PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey)
    return key


def create_demo_ca(folder: Path, *, key_type: KeyType = "ec", service_url: str | None = None) -> DemoCA:
    """The demo CA of `folder`: created there on the first call, read back on every later one.

    With `service_url` the CA names its OCSP/CRL service in what it issues and gets a timestamp
    authority certificate (`demo-tsa.pem`): what standins/pki serves from this folder.
    """
    folder = Path(folder)
    if (folder / ISSUING_KEY_FILE).exists():
        return load_demo_ca(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ca = create_ca(key_type=key_type, service_url=service_url)
    (folder / ROOT_FILE).write_bytes(ca.root.public_bytes(serialization.Encoding.PEM))
    (folder / ISSUING_FILE).write_bytes(ca.issuing.public_bytes(serialization.Encoding.PEM))
    if service_url:
        assert ca.root_key is not None
        _write_key(folder / ROOT_KEY_FILE, ca.root_key)
        tsa = ca.issue_tsa()
        (folder / TSA_FILE).write_bytes(tsa.certificate_pem())
        _write_key(folder / TSA_KEY_FILE, tsa.key)
        (folder / SERVICE_URL_FILE).write_text(service_url.rstrip("/") + "\n")
    # The issuing key last: its presence is what says the folder holds a complete CA.
    _write_key(folder / ISSUING_KEY_FILE, ca.issuing_key)
    return ca


def load_demo_ca(folder: Path) -> DemoCA:
    folder = Path(folder)
    root_key = _read_key(folder / ROOT_KEY_FILE) if (folder / ROOT_KEY_FILE).exists() else None
    url_file = folder / SERVICE_URL_FILE
    return DemoCA(x509.load_pem_x509_certificate((folder / ROOT_FILE).read_bytes()),
                  x509.load_pem_x509_certificate((folder / ISSUING_FILE).read_bytes()),
                  _read_key(folder / ISSUING_KEY_FILE), root_key=root_key,
                  service_url=url_file.read_text().strip() if url_file.exists() else None)


def load_demo_tsa(folder: Path) -> IssuedCertificate | None:
    """The demo timestamp authority's key and certificate, when the demo CA of `folder` has one."""
    folder = Path(folder)
    if not (folder / TSA_KEY_FILE).exists():
        return None
    ca = load_demo_ca(folder)
    return IssuedCertificate(_read_key(folder / TSA_KEY_FILE),
                             x509.load_pem_x509_certificate((folder / TSA_FILE).read_bytes()), ca.chain)


def revoke(folder: Path, certificate: x509.Certificate, *, at: dt.datetime | None = None) -> None:
    """Mark a certificate of the demo CA revoked: its OCSP answers and CRL say so from then on."""
    moment = (at or _utcnow()).astimezone(dt.UTC).replace(microsecond=0)
    with (Path(folder) / REVOKED_FILE).open("a") as handle:
        handle.write(f"{certificate.serial_number:x} {moment.isoformat()}\n")


def revoked_serials(folder: Path) -> dict[int, dt.datetime]:
    """Serial number -> revocation time, of the certificates `revoke` marked."""
    path = Path(folder) / REVOKED_FILE
    if not path.exists():
        return {}
    found = {}
    for line in path.read_text().splitlines():
        if line.strip():
            serial, moment = line.split()
            found[int(serial, 16)] = dt.datetime.fromisoformat(moment)
    return found


# --- reading what people bring ------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyBundle:
    """What a PKCS#12 file holds: the key, its certificate, and the other certificates (the chain)."""

    key: PrivateKey
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]


def read_pkcs12(data: bytes, passphrase: str) -> KeyBundle:
    """Open a .p12/.pfx file; `WrongPassphrase` or `CertificateError` (Vietnamese messages) when it cannot."""
    try:
        key, certificate, others = pkcs12.load_key_and_certificates(data, passphrase.encode() or None)
    except ValueError as exc:
        if _looks_like_pkcs12(data):
            raise WrongPassphrase("Mật khẩu của tệp chứng thư số không đúng.") from exc
        raise CertificateError("Tệp không phải là tệp chứng thư số PKCS#12 (.p12, .pfx).") from exc
    if key is None or certificate is None:
        raise CertificateError("Tệp PKCS#12 không chứa khóa bí mật và chứng thư số.")
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise CertificateError("Loại khóa trong tệp chưa được hỗ trợ (chỉ RSA hoặc EC).")
    if key.public_key().public_numbers() != certificate.public_key().public_numbers():  # type: ignore[union-attr]
        raise CertificateError("Khóa bí mật không khớp với chứng thư số trong tệp.")
    return KeyBundle(key, certificate, tuple(others))


def _looks_like_pkcs12(data: bytes) -> bool:
    # A DER SEQUENCE starting with version 3: what every PKCS#12 file begins with.
    return data[:1] == b"\x30" and b"\x02\x01\x03" in data[:8]


def read_certificates(data: bytes) -> list[x509.Certificate]:
    """Every certificate in a PEM bundle or one DER file (.cer, .crt, .pem), the signer's first."""
    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            return x509.load_pem_x509_certificates(data)
        return [x509.load_der_x509_certificate(data)]
    except ValueError as exc:
        raise CertificateError("Tệp không phải là chứng thư số (.cer, .crt, .pem).") from exc


def load_trust_roots(paths: list[str] | tuple[str, ...]) -> list[x509.Certificate]:
    """The certificates in the given PEM/DER files (missing files are skipped)."""
    roots: list[x509.Certificate] = []
    for path in paths:
        try:
            roots.extend(read_certificates(Path(path).read_bytes()))
        except FileNotFoundError:
            continue
    return roots


def certificates_pem(certificates: list[x509.Certificate] | tuple[x509.Certificate, ...]) -> str:
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in certificates)


@dataclass(frozen=True)
class CertificateInfo:
    """What the pages show about a certificate."""

    common_name: str
    subject: str
    issuer: str
    serial: str
    not_before: dt.datetime
    not_after: dt.datetime
    fingerprint: str
    title: str | None
    organisation: str | None

    def valid_at(self, moment: dt.datetime) -> bool:
        return self.not_before <= moment <= self.not_after


def _attribute(name: x509.Name, oid: x509.ObjectIdentifier) -> str | None:
    values = name.get_attributes_for_oid(oid)
    return str(values[0].value) if values else None


def describe(certificate: x509.Certificate) -> CertificateInfo:
    subject = certificate.subject
    return CertificateInfo(
        common_name=_attribute(subject, NameOID.COMMON_NAME) or subject.rfc4514_string(),
        subject=subject.rfc4514_string(), issuer=certificate.issuer.rfc4514_string(),
        serial=format(certificate.serial_number, "X"),
        not_before=certificate.not_valid_before_utc, not_after=certificate.not_valid_after_utc,
        fingerprint=hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).hexdigest(),
        title=_attribute(subject, NameOID.TITLE), organisation=_attribute(subject, NameOID.ORGANIZATION_NAME))
