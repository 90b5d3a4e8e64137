"""Validating a record PDF against the signature policy, in plain Vietnamese.

`validate_pdf(data, trust_roots, ...)` never raises: a file that is not a PDF, is empty, encrypted or
broken gives a report that says so. It is the one policy the portal applies wherever a record's
signatures are judged: before the seal (issuing), when a record is received from another school, and on
public upload. For each signature:

- **When.** The signing time is the time of the signature's RFC 3161 timestamp, never the signer's own
  claim (`/M`, signingTime), which anyone can backdate. A signature without a timestamp has no trusted
  time: it is judged at the validation time (now), and the report says the timestamp is missing.
- **Certificate at that time.** The chain must end at a trust root (`TRUST_ROOTS`) and every certificate
  in it be valid and not revoked at that time, judged from the validation data the file carries (the DSS,
  the signature's revocation attribute) and, only where `VERIFY_FETCH_REVOCATION` allows, from the CA's
  OCSP/CRL services. Expired, not yet valid, revoked: invalid, with the date.
- **Who.** Given a `SignerPolicy` (the portal's registry of certificates, `portal.signing.policy`), each
  field must be signed by the certificate registered to the person who holds that role for this record.
- **Level.** PAdES B-B (signature only), B-T (+ signature timestamp), B-LT (+ revocation data embedded),
  B-LTA (+ a document timestamp over it all). Below the required level (`SIGNATURE_LEVEL`): invalid.
- **Nothing after the seal** but validation data (DSS) and document timestamps: an added field,
  annotation, page or signature makes the file invalid. Before the seal, only the next signatures.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path
from typing import Any, Protocol

from asn1crypto import cms, crl, ocsp, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pyhanko.pdf_utils.decode_limits import DecodePurpose
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign import fields
from pyhanko.sign.validation import async_validate_pdf_signature, async_validate_pdf_timestamp
from pyhanko.sign.validation.dss import DocumentSecurityStore, NoDSSFoundError
from pyhanko.sign.validation.pdf_embedded import EmbeddedPdfSignature
from pyhanko.sign.validation.status import ModificationLevel, PdfSignatureStatus, SignatureCoverageLevel
from pyhanko_certvalidator import ValidationContext

from portal.records.content import SIGNATURE_FIELDS
from portal.signing import hex_strings, pki
from portal.signing.stamp import ROLE_LABELS

hex_strings.install()  # signatures' /Contents read in one pass (see hex_strings)
log = logging.getLogger(__name__)
SEAL_ROLE = "Con dấu số"
SEAL_FIELD = "con_dau"
FIELD_ROLES = {**ROLE_LABELS, SEAL_FIELD: SEAL_ROLE}
LEVELS = ("B-B", "B-T", "B-LT", "B-LTA")
DEFAULT_LEVEL = "B-LTA"


def N_(text: str) -> str:
    """Marks a Vietnamese source sentence for translation; it is translated where it is shown."""
    return text


def level_at_least(level: str | None, required: str | None) -> bool:
    if not required:
        return True
    return level in LEVELS and LEVELS.index(level) >= LEVELS.index(required)


# --- who may sign ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignerCheck:
    """The registry's answer for one field: who was expected, who signed, and whether they are the same."""

    matches: bool
    expected: str  # "Giáo viên chủ nhiệm lớp 5A: Nguyễn Thị Mai"
    found: str  # who the certificate is registered to, or that it is registered to no one


class SignerPolicy(Protocol):
    """Who may sign which field of one record (the portal's registry, `portal.signing.policy`)."""

    def check(self, field: str, certificate: asn1_x509.Certificate, at: datetime) -> SignerCheck: ...


# --- the report ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignatureReport:
    """One signature: who, when, and each check with its answer."""

    field: str
    signer_name: str | None = None
    role: str | None = None
    organisation: str | None = None
    certificate_serial: str | None = None
    certificate_fingerprint: str | None = None
    signing_time: datetime | None = None  # UTC, as the signer claims it (/M, signingTime): never trusted
    timestamp_time: datetime | None = None  # UTC, from the RFC 3161 signature timestamp, when there is one
    timestamp_valid: bool | None = None  # None: no timestamp
    timestamp_authority: str | None = None
    judged_at: datetime | None = None  # the time the certificate was judged at: the timestamp's, else now
    time_trusted: bool = False  # judged_at comes from a valid timestamp
    intact: bool = False
    valid: bool = False
    trusted: bool = False  # chain to a trust root, valid and not revoked at judged_at
    certificate_valid_at_signing: bool = False
    revocation: str = "unknown"  # good (checked), revoked, unknown (no data), not_required
    revoked_at: datetime | None = None
    level: str = ""  # B-B, B-T, B-LT, B-LTA
    expected_signer: str | None = None  # None: no registry to ask (an unknown record)
    found_signer: str | None = None
    signer_matches: bool | None = None
    certifying: bool = False
    coverage: str = ""  # entire_file, entire_revision, contiguous_block, unclear
    modification_level: str = ""  # none, lta_updates, form_filling, annotations, other
    docmdp_ok: bool | None = None
    changed_after: bool = False  # something not allowed after this signature
    bottom_line: bool = False
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what is worth knowing but does not fail the signature


@dataclass(frozen=True)
class DocumentTimestamp:
    time: datetime | None
    authority: str | None
    valid: bool
    # What the token states, checked or not: what issuing notes on the record for archive renewal
    # (`portal.records.archive`), read here so that the file is not parsed again for it. None: unreadable.
    stated_time: datetime | None = None
    certificate_expires_at: datetime | None = None  # the timestamp authority's certificate's notAfter
    digest_algorithm: str | None = None  # of the token's message imprint

    @property
    def archive_facts(self) -> tuple[datetime, datetime, str] | None:
        """(time, expiry of the TSA certificate, digest algorithm), as `engine.last_archive_timestamp` gives
        them; None when the token could not be read."""
        if self.stated_time is None or self.certificate_expires_at is None or self.digest_algorithm is None:
            return None
        return self.stated_time, self.certificate_expires_at, self.digest_algorithm


@dataclass(frozen=True)
class ValidationReport:
    """The whole document: readable, encrypted, its signatures and every problem found."""

    readable: bool
    encrypted: bool = False
    signatures: list[SignatureReport] = field(default_factory=list)
    document_timestamps: list[DocumentTimestamp] = field(default_factory=list)
    expected_fields: tuple[str, ...] = SIGNATURE_FIELDS
    required_level: str | None = None
    signers_checked: bool = False  # a SignerPolicy was given (the record is known to the registry)
    changed_after_seal: bool = False
    unexpected_signatures: list[str] = field(default_factory=list)
    out_of_order: bool = False  # the fields were not signed GVCN, then Hiệu trưởng, then the seal
    validated_at: datetime | None = None
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
    def level(self) -> str | None:
        """The document's PAdES level: its weakest signature's."""
        levels = [s.level for s in self.signatures if s.level in LEVELS]
        return min(levels, key=LEVELS.index) if levels else None

    @property
    def all_valid(self) -> bool:
        """Every signature passes every check of the policy."""
        return bool(self.signatures) and all(s.bottom_line for s in self.signatures)

    @property
    def ok(self) -> bool:
        """The bottom line for a record: readable, all expected fields signed, every signature good, nothing
        signed or changed that should not be, and the required level reached."""
        return (self.readable and not self.encrypted and self.all_fields_signed and self.all_valid
                and not self.changed_after_seal and not self.unexpected_signatures and not self.out_of_order
                and level_at_least(self.level, self.required_level))

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(signature_count=self.signature_count, missing_fields=self.missing_fields,
                    all_fields_signed=self.all_fields_signed, level=self.level, ok=self.ok)
        return data


def trust_roots_from(paths: Sequence[str]) -> list[x509.Certificate]:
    """The configured trust roots (`TRUST_ROOTS`: paths of PEM or DER files)."""
    return pki.load_trust_roots([p for p in paths if p and Path(p).exists()])


# --- validating -----------------------------------------------------------------------------------------------------


@dataclass
class _Document:
    """What every signature's check shares: the reader, the embedded validation data, the roots, the time."""

    reader: PdfFileReader
    roots: list[asn1_x509.Certificate]
    now: datetime
    allow_fetching: bool
    required_level: str | None
    dss: DocumentSecurityStore | None
    doc_timestamps: list[tuple[EmbeddedPdfSignature, DocumentTimestamp]] = field(default_factory=list)

    _embedded: dict[str, list[Any]] | None = None

    def embedded(self) -> dict[str, list[Any]]:
        """The DSS's certificates, CRLs and OCSP responses, parsed once for every context."""
        if self._embedded is None:
            if self.dss is None:
                self._embedded = {"other_certs": [], "crls": [], "ocsps": []}
            else:
                self._embedded = {
                    "other_certs": list(self.dss.load_certs()),
                    "crls": [crl.CertificateList.load(ref.get_object().read_data(DecodePurpose.CRL))
                             for ref in self.dss.crls],
                    "ocsps": [ocsp.OCSPResponse.load(ref.get_object().read_data(DecodePurpose.OCSP_RESPONSE))
                              for ref in self.dss.ocsps]}
        return self._embedded

    def has_revocation_data(self) -> bool:
        return bool(self.embedded()["crls"] or self.embedded()["ocsps"])

    def context(self, moment: datetime, mode: str) -> ValidationContext:
        # Revocation data issued after `moment` still speaks for it (a CRL fetched at the seal that does
        # not list the certificate says it was not revoked when the teacher signed minutes earlier).
        return ValidationContext(trust_roots=self.roots, moment=moment, allow_fetching=self.allow_fetching,
                                 revocation_mode=mode, retroactive_revinfo=True, **self.embedded())

    def first_document_timestamp_after(self, revision: int) -> datetime | None:
        times = [t.time for sig, t in self.doc_timestamps if sig.signed_revision > revision and t.valid and t.time]
        return min(times) if times else None


def validate_pdf(data: bytes, trust_roots: Sequence[x509.Certificate],
                 expected_fields: Sequence[str] = SIGNATURE_FIELDS, *, required_level: str | None = None,
                 signers: SignerPolicy | None = None, allow_fetching: bool = False,
                 now: datetime | None = None) -> ValidationReport:
    """Judge every signature of `data` by the policy (module docstring); never raises.

    `required_level`: the PAdES level an issued record must reach (None: no requirement, for files that
    are not issued records yet). `signers`: the registry's rule of who signs each field (None: unknown).
    """
    enabled = gc.isenabled()
    # No collection in the middle of a validation (a full one triples its time). The parsed file is full of
    # reference cycles; the report keeps nothing of it, so the young collection that follows frees it all.
    gc.disable()
    try:
        return _validate(data, trust_roots, tuple(expected_fields), required_level, signers, allow_fetching,
                         now or datetime.now(UTC))
    finally:
        if enabled:
            gc.enable()


def _validate(data: bytes, trust_roots: Sequence[x509.Certificate], expected: tuple[str, ...],
              required_level: str | None, signers: SignerPolicy | None, allow_fetching: bool,
              now: datetime) -> ValidationReport:
    base: dict[str, Any] = dict(expected_fields=expected, required_level=required_level, validated_at=now)
    if not data:
        return ValidationReport(readable=False, problems=[N_("Tệp rỗng.")], **base)
    if not data.lstrip()[:5].startswith(b"%PDF"):
        return ValidationReport(readable=False, problems=[N_("Tệp không phải là tệp PDF.")], **base)
    try:
        reader = PdfFileReader(BytesIO(data), strict=False)
        if reader.encrypted:
            return ValidationReport(readable=True, encrypted=True, **base,
                                    problems=[N_("Tệp PDF được mã hóa nên không kiểm tra được chữ ký.")])
        embedded = list(reader.embedded_signatures)
        empty_fields = [name for name, value, _ in fields.enumerate_sig_fields(reader, filled_status=False)]
        try:
            dss = DocumentSecurityStore.read_dss(reader)
        except NoDSSFoundError:
            dss = None
    except Exception:  # a broken file may fail in any part of the parser
        log.info("unreadable PDF", exc_info=True)
        return ValidationReport(readable=False, problems=[N_("Tệp PDF bị hỏng, không đọc được.")], **base)
    document = _Document(reader, [_asn1(r) for r in trust_roots], now, allow_fetching, required_level, dss)
    return asyncio.run(_judge(document, embedded, empty_fields, signers, base))


async def _judge(document: _Document, embedded: list[EmbeddedPdfSignature], empty_fields: list[str],
                 signers: SignerPolicy | None, base: dict[str, Any]) -> ValidationReport:
    expected: tuple[str, ...] = base["expected_fields"]
    # Document timestamps (/DocTimeStamp, long-term archiving) sign nobody's name: checked, listed apart.
    for sig in embedded:
        if sig.sig_object_type == "/DocTimeStamp":
            document.doc_timestamps.append((sig, await _document_timestamp(sig, document)))
    people = [s for s in embedded if s.sig_object_type == "/Sig"]
    seal_revision = next((s.signed_revision for s in people if s.field_name == SEAL_FIELD), None)
    signatures = [await _check(sig, document, signers, after_seal=seal_revision is not None
                               and sig.signed_revision > seal_revision) for sig in people]
    problems = [p for s in signatures for p in s.problems]
    unexpected = [s.field for s in signatures if s.field not in expected]
    changed_after_seal = any(s.field == SEAL_FIELD and s.changed_after for s in signatures) or (
        seal_revision is not None and any(s.signed_revision > seal_revision for s in people))
    if changed_after_seal:
        problems.append(N_("Tài liệu đã bị thay đổi sau khi ban hành: sau con dấu số chỉ được thêm dữ liệu xác "
                           "thực và dấu thời gian tài liệu."))
    for name in unexpected:
        problems.append(N_("Tệp có chữ ký ở ô “%(field)s”, không phải ô chữ ký nào của học bạ.") % {"field": name})
    order = [expected.index(s.field) for s in signatures if s.field in expected]
    out_of_order = order != sorted(order)
    if out_of_order:
        problems.append(N_("Các chữ ký không theo đúng thứ tự: giáo viên chủ nhiệm, Hiệu trưởng, rồi con dấu số."))
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
    for _sig, stamp in document.doc_timestamps:
        if not stamp.valid:
            problems.append(N_("Dấu thời gian tài liệu (lưu trữ dài hạn) không hợp lệ."))
    report = ValidationReport(readable=True, signatures=signatures,
                              document_timestamps=[t for _s, t in document.doc_timestamps],
                              signers_checked=signers is not None, changed_after_seal=changed_after_seal,
                              unexpected_signatures=unexpected, out_of_order=out_of_order, problems=problems,
                              **base)
    if signatures and not level_at_least(report.level, report.required_level):
        problems.append(N_("Học bạ chỉ đạt mức chữ ký %(level)s, thấp hơn mức %(required)s bắt buộc đối với học bạ "
                           "ban hành.") % {"level": report.level, "required": report.required_level})
    return report


def _asn1(certificate: x509.Certificate | asn1_x509.Certificate) -> asn1_x509.Certificate:
    if isinstance(certificate, asn1_x509.Certificate):
        return certificate
    return asn1_x509.Certificate.load(certificate.public_bytes(serialization.Encoding.DER))


def _timestamp_time(sig: EmbeddedPdfSignature) -> datetime | None:
    """The genTime of the signature's RFC 3161 timestamp token, if it carries one (not yet checked)."""
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


def _common_name(certificate: asn1_x509.Certificate | None) -> str | None:
    if certificate is None:
        return None
    subject = certificate.subject.native
    return subject.get("common_name") or certificate.subject.human_friendly


async def _document_timestamp(sig: EmbeddedPdfSignature, document: _Document) -> DocumentTimestamp:
    try:
        status = await async_validate_pdf_timestamp(sig, document.context(document.now, "soft-fail"))
    except Exception:
        log.info("document timestamp not checkable", exc_info=True)
        return DocumentTimestamp(None, None, False, **_stated(sig, None))
    return DocumentTimestamp(status.timestamp, _common_name(status.signing_cert),
                             bool(status.intact and status.valid and status.trusted),
                             **_stated(sig, status.signing_cert))


def _stated(sig: EmbeddedPdfSignature, signing_cert: asn1_x509.Certificate | None) -> dict[str, Any]:
    """What a document timestamp's token states (read as `engine.last_archive_timestamp` reads it); the
    authority's certificate as the validation found it, else from the token."""
    try:
        info = sig.signed_data["encap_content_info"]["content"].parsed
        certificate = signing_cert if signing_cert is not None else sig.signer_cert
        return dict(stated_time=info["gen_time"].native, certificate_expires_at=certificate.not_valid_after,
                    digest_algorithm=info["message_imprint"]["hash_algorithm"]["algorithm"].native)
    except Exception:  # a damaged token: the validation says what is wrong with it
        return {}


def _date(moment: datetime) -> str:
    return f"{moment:%d/%m/%Y}"


async def _status(sig: EmbeddedPdfSignature, document: _Document, moment: datetime, mode: str,
                  ts_moment: datetime) -> PdfSignatureStatus:
    # The difference analysis (what changed after the signature: most of a validation's time) depends on the
    # file alone, not on the validation context: a second judgement of the same signature keeps the first's.
    return await async_validate_pdf_signature(sig, document.context(moment, mode),
                                              ts_validation_context=document.context(ts_moment, "soft-fail"),
                                              skip_diff=sig.diff_result is not None)


async def _check(sig: EmbeddedPdfSignature, document: _Document, signers: SignerPolicy | None, *,
                 after_seal: bool) -> SignatureReport:
    # A plain str: pyHanko's name object holds on to the parsed file, which a report must not keep alive.
    name = str(sig.field_name)
    label = FIELD_ROLES.get(name, name)
    try:
        cert = sig.signer_cert
        subject = cert.subject.native
        claimed = sig.self_reported_timestamp
        stamped = _timestamp_time(sig)
        moment = stamped or document.now
        # The signature timestamp's own certificate is judged when a document timestamp first covered it
        # (that proves the token existed then), else now.
        ts_moment = document.first_document_timestamp_after(sig.signed_revision) or document.now
        required = level_at_least(document.required_level, "B-LT")
        # Judged with revocation data when it is required or the file carries some; else (a B-B/B-T file
        # where nothing more is asked) the chain alone, without a failed first attempt.
        try_revocation = required or document.has_revocation_data()
        # "soft-fail" where revocation is not asked for: certificates that name an OCSP/CRL service are still
        # judged on their chain when the file carries no answer (and still refused when one says revoked).
        status = await _status(sig, document, moment, "require" if try_revocation else "soft-fail", ts_moment)
        with_revocation = try_revocation and (status.trusted or status.revoked)
        if try_revocation and not with_revocation and not required:
            # No revocation data to judge with, and none required: judge the chain without it.
            status = await _status(sig, document, moment, "soft-fail", ts_moment)
    except Exception as exc:  # a malformed signature must give a report, not an error
        log.info("signature %s not checkable", name, exc_info=True)
        return SignatureReport(field=name, problems=[
            N_("Chữ ký ở ô “%(role)s” bị hỏng, không kiểm tra được (%(error)s).")
            % {"role": label, "error": type(exc).__name__}])
    timestamp = status.timestamp_validity
    timestamp_valid = None if timestamp is None else bool(timestamp.intact and timestamp.valid and timestamp.trusted)
    time_trusted = bool(timestamp_valid and stamped is not None)
    valid_then = cert.not_valid_before <= moment <= cert.not_valid_after
    revocation = ("revoked" if status.revoked else "good" if with_revocation
                  else "unknown" if level_at_least(document.required_level, "B-LT") else "not_required")
    level = _level(sig, document, time_trusted, with_revocation and not status.revoked)
    check = signers.check(name, cert, moment) if signers is not None and name in FIELD_ROLES else None
    modification = status.modification_level
    changed_after = _changed_after(name, status.coverage, modification, status.docmdp_ok) or after_seal
    report = SignatureReport(
        field=name, signer_name=subject.get("common_name"), role=subject.get("title") or FIELD_ROLES.get(name),
        organisation=subject.get("organization_name"), certificate_serial=format(cert.serial_number, "X"),
        certificate_fingerprint=hashlib.sha256(cert.dump()).hexdigest(), signing_time=claimed,
        timestamp_time=stamped, timestamp_valid=timestamp_valid,
        timestamp_authority=_common_name(timestamp.signing_cert) if timestamp is not None else None,
        judged_at=moment, time_trusted=time_trusted, intact=bool(status.intact), valid=bool(status.valid),
        trusted=bool(status.trusted), certificate_valid_at_signing=valid_then, revocation=revocation,
        revoked_at=status.revocation_details.revocation_date if status.revocation_details else None, level=level,
        expected_signer=check.expected if check else None, found_signer=check.found if check else None,
        signer_matches=check.matches if check else None, certifying=sig.docmdp_level is not None,
        coverage=status.coverage.name.lower() if status.coverage else "",
        modification_level=modification.name.lower() if modification is not None else "",
        docmdp_ok=status.docmdp_ok, changed_after=changed_after,
        bottom_line=bool(status.intact and status.valid and status.trusted and valid_then
                         and timestamp_valid is not False and not changed_after and (check is None or check.matches)
                         and level_at_least(level, document.required_level)))
    report.problems.extend(_problems(report, cert, document.required_level))
    if stamped is None:
        missing = (N_("Chữ ký “%(role)s” (%(name)s): thiếu dấu thời gian, nên không có thời điểm ký tin cậy; chứng "
                      "thư số được xét tại thời điểm kiểm tra.")
                   % {"role": label, "name": report.signer_name or "?"})
        (report.problems if level_at_least(document.required_level, "B-T") else report.notes).append(missing)
    return report


def _level(sig: EmbeddedPdfSignature, document: _Document, time_trusted: bool, revocation_embedded: bool) -> str:
    if not time_trusted:
        return "B-B"
    if not revocation_embedded:
        return "B-T"
    # B-LTA: a valid document timestamp over a revision that already held the validation data (the DSS).
    for stamp_sig, stamp in document.doc_timestamps:
        if stamp.valid and stamp_sig.signed_revision > sig.signed_revision:
            try:
                root = document.reader.get_historical_root(stamp_sig.signed_revision)
            except Exception:
                continue
            if "/DSS" in root:
                return "B-LTA"
    return "B-LT"


def _changed_after(name: str, coverage: SignatureCoverageLevel | None, level: ModificationLevel | None,
                   docmdp_ok: bool | None) -> bool:
    """Something not allowed followed the signature: after the seal only validation data and document
    timestamps; after the others, also the next signatures' form filling."""
    if docmdp_ok is False:
        return True
    if coverage == SignatureCoverageLevel.ENTIRE_FILE or level is None:
        return False
    allowed = ModificationLevel.LTA_UPDATES if name == SEAL_FIELD else ModificationLevel.FORM_FILLING
    return level > allowed


def _problems(report: SignatureReport, cert: asn1_x509.Certificate, required_level: str | None) -> list[str]:
    who = {"role": FIELD_ROLES.get(report.field, report.role or report.field), "name": report.signer_name or "?"}
    problems = []
    if not report.intact:
        problems.append(N_("Chữ ký “%(role)s” (%(name)s): nội dung đã bị sửa sau khi ký.") % who)
    elif not report.valid:
        problems.append(N_("Chữ ký “%(role)s” (%(name)s): chữ ký số không hợp lệ.") % who)
    if report.timestamp_valid is False:
        problems.append(N_("Chữ ký “%(role)s” (%(name)s): dấu thời gian không hợp lệ.") % who)
    moment = report.judged_at or datetime.now(UTC)
    if moment > cert.not_valid_after:
        problems.append(N_("Chữ ký “%(role)s” (%(name)s): chứng thư số đã hết hạn ngày %(date)s, trước thời điểm ký "
                           "(%(at)s).") % {**who, "date": _date(cert.not_valid_after), "at": _date(moment)})
    elif moment < cert.not_valid_before:
        problems.append(N_("Chữ ký “%(role)s” (%(name)s): chứng thư số chỉ có hiệu lực từ ngày %(date)s, sau thời "
                           "điểm ký (%(at)s).") % {**who, "date": _date(cert.not_valid_before), "at": _date(moment)})
    elif report.revocation == "revoked":
        problems.append(N_("Chữ ký “%(role)s” (%(name)s): chứng thư số đã bị thu hồi từ ngày %(date)s, trước thời "
                           "điểm ký.") % {**who, "date": _date(report.revoked_at or moment)})
    elif report.intact and not report.trusted and report.revocation == "unknown":
        problems.append(N_("Chữ ký “%(role)s” (%(name)s): không xác nhận được chứng thư số do tổ chức chứng thực được "
                           "tin cậy cấp và chưa bị thu hồi vào thời điểm ký (tệp không kèm thông tin thu hồi "
                           "OCSP/CRL hợp lệ).") % who)
    elif report.intact and not report.trusted:
        problems.append(N_("Chữ ký “%(role)s” (%(name)s): chứng thư số không do tổ chức chứng thực được tin cậy "
                           "cấp, hoặc không còn hiệu lực khi ký.") % who)
    if report.signer_matches is False:
        problems.append(N_("Ô “%(role)s” được ký bởi %(found)s, không phải %(expected)s.")
                        % {**who, "found": report.found_signer, "expected": report.expected_signer})
    if report.changed_after and report.field != SEAL_FIELD:
        problems.append(N_("Chữ ký “%(role)s” (%(name)s): tài liệu đã bị thay đổi sau khi ký (ngoài việc ký "
                           "tiếp vào các ô chữ ký).") % who)
    if report.intact and not level_at_least(report.level, required_level) and report.timestamp_time is not None:
        problems.append(N_("Chữ ký “%(role)s” (%(name)s): chỉ đạt mức %(level)s (thiếu thông tin thu hồi chứng thư "
                           "hoặc dấu thời gian tài liệu), thấp hơn mức %(required)s bắt buộc.")
                        % {**who, "level": report.level, "required": required_level})
    return problems



# --- a process's first validation --------------------------------------------------------------------------------


def warm_up() -> None:
    """Sign and validate a small sample once, when a web or worker process starts.

    A process's first validations are up to half as slow again as the later ones: pyHanko and its
    certificate validator import modules lazily and fill caches of their own on first use. Done at start-up,
    that cost is paid before the first upload is checked or the first seal is applied. The sample (a
    one-page PDF with the record's three fields, signed by a throwaway CA made here) reaches no file,
    database or network.
    """
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from reportlab.pdfgen import canvas

    from portal.signing import engine
    from portal.signing.stamp import stamp_for_field

    buffer = BytesIO()
    page = canvas.Canvas(buffer)
    page.drawString(72, 760, "Hoc ba so")
    page.showPage()
    page.save()
    writer = IncrementalPdfFileWriter(BytesIO(buffer.getvalue()))
    for index, name in enumerate(SIGNATURE_FIELDS):
        fields.append_signature_field(writer, engine.signature_field_spec(
            name, page=0, box=(40 + index * 180, 80, 210 + index * 180, 150)))
    output = BytesIO()
    writer.write(output)
    pdf = output.getvalue()
    ca = pki.create_ca()
    seal = ca.issue_organisation("Học bạ số")
    key = engine.Pkcs12Key(seal.pkcs12("warm-up", kdf_rounds=1), "warm-up")
    with engine.SigningSession(key, trust_roots=[ca.root], level="B-B") as session:
        for index, name in enumerate(SIGNATURE_FIELDS):
            pdf = session.sign_field(pdf, name, certify=index == 0, stamp=stamp_for_field(name, "Học bạ số"),
                                     final=index == len(SIGNATURE_FIELDS) - 1)
    report = validate_pdf(pdf, [ca.root], required_level="B-B")
    if not report.all_valid:  # the machinery itself is broken: say so at start-up, not at the first upload
        raise RuntimeError(f"signature validation does not pass its own sample: {report.problems}")
