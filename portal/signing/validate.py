"""Validating a record PDF: every signature, the document as a whole, in plain Vietnamese.

`validate_pdf(data, trust_roots)` never raises: a file that is not a PDF, is empty, encrypted or broken
gives a report that says so. Each signature is checked with pyHanko against the given trust roots
(`TRUST_ROOTS` in the configuration: the national root and the government CA root in production):
intact (the signed bytes are unchanged), valid (the cryptographic signature), trusted (the chain ends
at a trust root and every certificate in it was valid at the signing time), what changed after it
(only the later signatures' form filling is allowed), and DocMDP.

Certificates are judged at the time of signing: the RFC 3161 timestamp's time when there is one, else
the signing time the signature states. A record signed in 2025 thus stays valid after the teacher's
certificate expires in 2028, as a paper record stays valid after its signer retires.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from io import BytesIO
from pathlib import Path
from typing import Any

from asn1crypto import cms, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign import fields
from pyhanko.sign.validation import async_validate_pdf_signature
from pyhanko.sign.validation.pdf_embedded import EmbeddedPdfSignature
from pyhanko.sign.validation.status import ModificationLevel, SignatureCoverageLevel
from pyhanko_certvalidator import ValidationContext

from portal.records.content import SIGNATURE_FIELDS
from portal.signing import pki
from portal.signing.stamp import ROLE_LABELS

log = logging.getLogger(__name__)
SEAL_ROLE = "Con dấu số"
FIELD_ROLES = {**ROLE_LABELS, "con_dau": SEAL_ROLE}


def N_(text: str) -> str:
    """Marks a Vietnamese source sentence for translation; it is translated where it is shown."""
    return text


@dataclass(frozen=True)
class SignatureReport:
    """One signature: who, when, and each check with its answer."""

    field: str
    signer_name: str | None = None
    role: str | None = None
    organisation: str | None = None
    signing_time: datetime | None = None  # UTC, as the signature states it
    timestamp_time: datetime | None = None  # UTC, from the RFC 3161 timestamp, when there is one
    timestamp_valid: bool | None = None
    intact: bool = False
    valid: bool = False
    trusted: bool = False
    certificate_valid_at_signing: bool = False
    certifying: bool = False
    coverage: str = ""  # entire_file, entire_revision, contiguous_block, unclear
    modification_level: str = ""  # none, lta_updates, form_filling, annotations, other
    docmdp_ok: bool | None = None
    bottom_line: bool = False
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ValidationReport:
    """The whole document: readable, encrypted, its signatures and every problem found."""

    readable: bool
    encrypted: bool = False
    signatures: list[SignatureReport] = field(default_factory=list)
    expected_fields: tuple[str, ...] = SIGNATURE_FIELDS
    problems: list[str] = field(default_factory=list)

    @property
    def signature_count(self) -> int:
        return len(self.signatures)

    @property
    def signed_fields(self) -> list[str]:
        return [s.field for s in self.signatures]

    @property
    def missing_fields(self) -> list[str]:
        return [f for f in self.expected_fields if f not in self.signed_fields]

    @property
    def all_fields_signed(self) -> bool:
        return not self.missing_fields

    @property
    def all_valid(self) -> bool:
        """Every signature intact, valid, trusted, and nothing changed after it but allowed form filling."""
        return bool(self.signatures) and all(s.bottom_line for s in self.signatures)

    @property
    def ok(self) -> bool:
        """The bottom line for a record: readable, all expected fields signed, every signature good."""
        return self.readable and not self.encrypted and self.all_fields_signed and self.all_valid

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(signature_count=self.signature_count, missing_fields=self.missing_fields,
                    all_fields_signed=self.all_fields_signed, ok=self.ok)
        return data


def trust_roots_from(paths: Sequence[str]) -> list[x509.Certificate]:
    """The configured trust roots (`TRUST_ROOTS`: paths of PEM or DER files)."""
    return pki.load_trust_roots([p for p in paths if p and Path(p).exists()])


def validate_pdf(data: bytes, trust_roots: Sequence[x509.Certificate],
                 expected_fields: Sequence[str] = SIGNATURE_FIELDS) -> ValidationReport:
    """Check every signature of `data` against `trust_roots`; never raises."""
    expected = tuple(expected_fields)
    if not data:
        return ValidationReport(readable=False, expected_fields=expected, problems=[N_("Tệp rỗng.")])
    if not data.lstrip()[:5].startswith(b"%PDF"):
        return ValidationReport(readable=False, expected_fields=expected,
                                problems=[N_("Tệp không phải là tệp PDF.")])
    try:
        reader = PdfFileReader(BytesIO(data), strict=False)
        if reader.encrypted:
            return ValidationReport(readable=True, encrypted=True, expected_fields=expected,
                                    problems=[N_("Tệp PDF được mã hóa nên không kiểm tra được chữ ký.")])
        # Document timestamps (/DocTimeStamp, added by long-term archiving) sign nobody's name: not listed.
        embedded = [s for s in reader.embedded_signatures if s.sig_object_type == "/Sig"]
        empty_fields = [name for name, value, _ in fields.enumerate_sig_fields(reader, filled_status=False)]
    except Exception:  # a broken file may fail in any part of the parser
        log.info("unreadable PDF", exc_info=True)
        return ValidationReport(readable=False, expected_fields=expected,
                                problems=[N_("Tệp PDF bị hỏng, không đọc được.")])
    roots = [_asn1(r) for r in trust_roots]
    signatures = [_check(sig, roots) for sig in embedded]
    problems = [p for s in signatures for p in s.problems]
    if not signatures:
        problems.append(N_("Tệp PDF không có chữ ký số nào."))
    signed = {s.field for s in signatures}
    for name in expected:
        if name not in signed:
            label = FIELD_ROLES.get(name, name)
            if name in empty_fields:
                problems.append(N_("Chưa có chữ ký ở ô “%(role)s”.") % {"role": label})
            else:
                problems.append(N_("Tệp PDF không có ô chữ ký “%(role)s”.") % {"role": label})
    return ValidationReport(readable=True, signatures=signatures, expected_fields=expected, problems=problems)


def _asn1(certificate: x509.Certificate | asn1_x509.Certificate) -> asn1_x509.Certificate:
    if isinstance(certificate, asn1_x509.Certificate):
        return certificate
    return asn1_x509.Certificate.load(certificate.public_bytes(serialization.Encoding.DER))


def _timestamp_time(sig: EmbeddedPdfSignature) -> datetime | None:
    """The genTime of the signature's RFC 3161 timestamp token, if it carries one."""
    unsigned = sig.signer_info["unsigned_attrs"]
    if not unsigned:
        return None
    for attribute in unsigned:
        if attribute["type"].native == "signature_time_stamp_token":
            token: cms.ContentInfo = attribute["values"][0]
            info = token["content"]["encap_content_info"]["content"].parsed
            if isinstance(info, tsp.TSTInfo):
                return info["gen_time"].native
    return None


def _check(sig: EmbeddedPdfSignature, roots: list[asn1_x509.Certificate]) -> SignatureReport:
    name = sig.field_name
    label = FIELD_ROLES.get(name, name)
    try:
        cert = sig.signer_cert
        subject = cert.subject.native
        signer_name = subject.get("common_name")
        role = subject.get("title") or FIELD_ROLES.get(name)
        claimed = sig.self_reported_timestamp
        stamped = _timestamp_time(sig)
        moment = stamped or claimed
        context = ValidationContext(trust_roots=roots, allow_fetching=False, moment=moment)
        status = asyncio.run(async_validate_pdf_signature(sig, context))
    except Exception as exc:  # a malformed signature must give a report, not an error
        log.info("signature %s not checkable", name, exc_info=True)
        return SignatureReport(field=name, problems=[
            N_("Chữ ký ở ô “%(role)s” bị hỏng, không kiểm tra được (%(error)s).")
            % {"role": label, "error": type(exc).__name__}])
    valid_at_signing = moment is not None and cert.not_valid_before <= moment <= cert.not_valid_after
    timestamp_valid = None
    if status.timestamp_validity is not None:
        timestamp_valid = bool(status.timestamp_validity.intact and status.timestamp_validity.valid
                               and status.timestamp_validity.trusted)
    level = status.modification_level
    report = SignatureReport(
        field=name, signer_name=signer_name, role=role, organisation=subject.get("organization_name"),
        signing_time=claimed, timestamp_time=stamped, timestamp_valid=timestamp_valid,
        intact=bool(status.intact), valid=bool(status.valid), trusted=bool(status.trusted),
        certificate_valid_at_signing=valid_at_signing, certifying=sig.docmdp_level is not None,
        coverage=status.coverage.name.lower() if status.coverage else "",
        modification_level=level.name.lower() if level is not None else "",
        docmdp_ok=status.docmdp_ok, bottom_line=bool(status.bottom_line) and valid_at_signing)
    report.problems.extend(_problems(report, status.coverage, level))
    return report


def _problems(report: SignatureReport, coverage: SignatureCoverageLevel | None,
              level: ModificationLevel | None) -> list[str]:
    who = {"role": report.role or report.field, "name": report.signer_name or "?"}
    problems = []
    if not report.intact:
        problems.append(N_("Chữ ký “%(role)s” (%(name)s): nội dung đã bị sửa sau khi ký.") % who)
    elif not report.valid:
        problems.append(N_("Chữ ký “%(role)s” (%(name)s): chữ ký số không hợp lệ.") % who)
    if report.intact and not report.trusted:
        problems.append(N_("Chữ ký “%(role)s” (%(name)s): chứng thư số không do tổ chức chứng thực được tin cậy "
                           "cấp, hoặc không còn hiệu lực khi ký.") % who)
    if not report.certificate_valid_at_signing:
        problems.append(N_("Chữ ký “%(role)s” (%(name)s): chứng thư số không có hiệu lực vào thời điểm ký.") % who)
    if report.timestamp_valid is False:
        problems.append(N_("Chữ ký “%(role)s” (%(name)s): dấu thời gian không hợp lệ.") % who)
    if report.intact and (report.docmdp_ok is False or (
            coverage != SignatureCoverageLevel.ENTIRE_FILE and level is not None
            and level > ModificationLevel.FORM_FILLING)):
        problems.append(N_("Chữ ký “%(role)s” (%(name)s): tài liệu đã bị thay đổi sau khi ký (ngoài việc ký "
                           "tiếp vào các ô chữ ký).") % who)
    return problems
