"""Public verification (by code, by file) and family access: the rules, without the web.

What the public may learn about a record is the minimum (domain brief §4): its status in the registry,
the school, the school year and grade, the pupil's name masked to initials plus the last given name, the
year of birth, the signers and the SHA-256 of the issued file. Only versions that were issued are public;
a draft, or a version still being signed, answers exactly as an unknown code does. Nothing is ever found
by name.

Every lookup is logged (`PublicLookup`: kind, outcome, a keyed hash of the address) and counted against
per-address limits held in the database, so that every web process shares them. A lookup that finds a
record is also written to that school's audit trail.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import secrets
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from cryptography import x509
from flask import current_app
from flask_babel import gettext as _

from portal import audit, signing
from portal.assessment.models import Enrolment, Pupil, SchoolClass, SchoolYear
from portal.extensions import db, utcnow
from portal.i18n import format_datetime
from portal.records.content import SIGNATURE_FIELDS
from portal.records.models import RecordSignature, RecordStatus, RecordVersion
from portal.records.pdf import format_code
from portal.records.services import normalise_code
from portal.signing import policy, trust_root_paths
from portal.signing.requests import STEP_LABELS
from portal.signing.validate import (
    SignatureReport,
    ValidationReport,
    level_at_least,
    trust_roots_from,
    validate_pdf,
)
from portal.storage import FileMissing, digest_of, storage
from portal.verify.models import CodeEnd, FamilyAccessCode, LookupKind, LookupOutcome, PublicLookup
from tenants.models import School, User
from tenants.roles import N_
from tenants.scoping import all_schools, school_scope

API_VERSION = 1
# Crockford's base32 without I, L, O, U (as the verification codes): nothing to misread on paper.
FAMILY_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
FAMILY_CODE_LENGTH = 16  # 80 random bits
RECORD_CODE = re.compile(r"HB[0-9A-HJKMNP-TV-Z]{10}")


# --- addresses and limits --------------------------------------------------------------------------------


def address_key(address: str | None) -> str:
    """A keyed, truncated hash of a client address: counts requests without keeping the address.

    IPv6 clients are counted per /64 network, the block one household or phone usually holds.
    """
    text = (address or "unknown").strip()
    try:
        parsed = ipaddress.ip_address(text)
        if parsed.version == 6:
            text = str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    except ValueError:
        pass
    key = current_app.config["SECRET_KEY"].encode()
    return hmac.new(key, b"lookup:" + text.encode(), hashlib.sha256).hexdigest()[:16]


@dataclass(frozen=True)
class Limit:
    max_setting: str
    window_setting: str
    counted: tuple[LookupOutcome, ...] | None  # None: every lookup but the refused-as-limited ones


LIMITS = {
    LookupKind.CODE: Limit("VERIFY_LOOKUPS_PER_ADDRESS", "VERIFY_WINDOW_MINUTES", None),
    LookupKind.FILE: Limit("VERIFY_UPLOADS_PER_ADDRESS", "VERIFY_WINDOW_MINUTES", None),
    LookupKind.FAMILY: Limit("FAMILY_FAILURES_PER_ADDRESS", "FAMILY_WINDOW_MINUTES", (LookupOutcome.WRONG,)),
}


def window_minutes(kind: LookupKind) -> int:
    return int(current_app.config[LIMITS[kind].window_setting])


def is_limited(kind: LookupKind, key: str, *, now: datetime | None = None) -> bool:
    """True when the address (its key) has used up its lookups of this kind within the window."""
    limit = LIMITS[kind]
    since = (now or utcnow()) - timedelta(minutes=window_minutes(kind))
    query = sa.select(sa.func.count()).select_from(PublicLookup).where(
        PublicLookup.address_hash == key, PublicLookup.kind == kind, PublicLookup.at >= since)
    if limit.counted is None:
        query = query.where(PublicLookup.outcome != LookupOutcome.LIMITED)
    else:
        query = query.where(PublicLookup.outcome.in_(limit.counted))
    return db.session.scalar(query) >= current_app.config[limit.max_setting]


def log_lookup(kind: LookupKind, outcome: LookupOutcome, key: str) -> None:
    db.session.add(PublicLookup(kind=kind, outcome=outcome, address_hash=key))


def limited_message(kind: LookupKind) -> str:
    minutes = window_minutes(kind)
    if kind == LookupKind.FAMILY:
        return _("Mã truy cập đã bị nhập sai quá nhiều lần từ địa chỉ này. Vui lòng thử lại sau %(m)d phút.",
                 m=minutes)
    return _("Bạn đã tra cứu quá nhiều lần trong thời gian ngắn. Vui lòng thử lại sau %(m)d phút.", m=minutes)


def purge_lookups(*, now: datetime | None = None) -> int:
    """Forget lookups older than LOOKUP_LOG_DAYS; the number removed."""
    before = (now or utcnow()) - timedelta(days=current_app.config["LOOKUP_LOG_DAYS"])
    result = db.session.execute(sa.delete(PublicLookup).where(PublicLookup.at < before))
    return int(result.rowcount or 0)


# --- what the public sees of a record ----------------------------------------------------------------------


def mask_name(full_name: str | None) -> str:
    """'Nguyễn Thị Ánh Tuyết' -> 'N. T. Á. Tuyết': initials, then the last given name in full."""
    words = unicodedata.normalize("NFC", full_name or "").split()
    if not words:
        return ""
    return " ".join([f"{word[0].upper()}." for word in words[:-1]] + [words[-1]])


def is_public(version: RecordVersion) -> bool:
    """Issued, or cancelled or superseded after being issued: what the registry shows anyone."""
    if version.status == RecordStatus.ISSUED:
        return True
    return version.status in (RecordStatus.CANCELLED, RecordStatus.SUPERSEDED) and version.issued_at is not None


@dataclass(frozen=True)
class Signer:
    name: str
    role: str
    signed_at: datetime | None


@dataclass(frozen=True)
class PublicRecord:
    """One issued version as the public sees it."""

    code: str
    number: int
    state: str  # current, superseded, cancelled
    state_label: str
    changed_at: datetime | None  # when it was superseded or cancelled
    reason: str
    successor_code: str | None
    successor_number: int | None
    school_name: str
    school_place: str
    school_year: str
    grade: int
    pupil_name: str  # masked
    birth_year: str | None
    issued_at: datetime | None
    sha256: str | None
    signers: list[Signer] = field(default_factory=list)

    @property
    def code_words(self) -> str:
        return format_code(self.code)

    @property
    def current(self) -> bool:
        return self.state == "current"

    def as_dict(self, url_of: Any = None) -> dict[str, Any]:
        """JSON-able, with ISO times in UTC; `url_of(code)` builds the public URL of a code."""
        iso = _iso
        successor = None
        if self.successor_code:
            successor = {"code": self.successor_code, "number": self.successor_number,
                         "url": url_of(self.successor_code) if url_of else None}
        return {
            "code": self.code, "number": self.number, "status": self.state, "status_label": self.state_label,
            "status_changed_at": iso(self.changed_at) if not self.current else None,
            "status_reason": self.reason if not self.current else "",
            "superseded_by": successor,
            "school": {"name": self.school_name, "place": self.school_place},
            "school_year": self.school_year, "grade": self.grade,
            "pupil": {"name_masked": self.pupil_name, "birth_year": self.birth_year},
            "signers": [{"name": s.name, "role": s.role, "signed_at": iso(s.signed_at)} for s in self.signers],
            "issued_at": iso(self.issued_at), "sha256": self.sha256,
            "url": url_of(self.code) if url_of else None,
        }


STATE_LABELS = {
    "current": N_("Đã ban hành, là bản hiện hành"),
    "superseded": N_("Đã được thay thế bằng bản điều chỉnh"),
    "cancelled": N_("Đã bị hủy"),
}


def find_public_version(typed_code: str) -> RecordVersion | None:
    """The public version with this code (as typed or printed), else None: drafts stay unknown."""
    code = normalise_code(typed_code or "")
    if not RECORD_CODE.fullmatch(code):
        return None
    with all_schools():
        version = db.session.scalar(sa.select(RecordVersion).where(RecordVersion.code == code))
    return version if version is not None and is_public(version) else None


def successor_of(version: RecordVersion) -> RecordVersion | None:
    """The public version that replaced this one (following drafts in between), if any."""
    current = version
    with all_schools():
        for _step in range(100):
            newer = db.session.scalar(sa.select(RecordVersion).where(RecordVersion.replaces_id == current.id)
                                      .order_by(RecordVersion.number.desc()).limit(1))
            if newer is None:
                return None
            if is_public(newer):
                return newer
            current = newer
    return None


def describe(version: RecordVersion, report: ValidationReport | None = None) -> PublicRecord:
    """What the registry tells anyone about an issued version (`report`: its signed file's, when at hand)."""
    content = version.content
    state = {RecordStatus.ISSUED: "current", RecordStatus.SUPERSEDED: "superseded"}.get(version.status, "cancelled")
    successor = successor_of(version) if state == "superseded" else None
    school = content.get("school") or {}
    years = content.get("years") or [{}]
    birth = (content.get("pupil") or {}).get("birth_date")
    place = ", ".join(p for p in (school.get("district"), school.get("city")) if p)
    return PublicRecord(
        code=version.code, number=version.number, state=state, state_label=_(STATE_LABELS[state]),
        changed_at=version.status_changed_at, reason=version.status_reason or "",
        successor_code=successor.code if successor else None, successor_number=successor.number if successor else None,
        school_name=school.get("name") or "", school_place=place, school_year=years[-1].get("school_year") or "",
        grade=version.grade, pupil_name=mask_name((content.get("pupil") or {}).get("full_name")),
        birth_year=birth[:4] if birth else None, issued_at=version.issued_at, sha256=version.signed_digest,
        signers=signers_of(version, report))


def signers_of(version: RecordVersion, report: ValidationReport | None = None) -> list[Signer]:
    """Who signed the issued file, in signing order: the signing workflow's rows, else the file's signatures."""
    if not version.signed_digest:
        return []
    if report is None:
        with school_scope(version.school_id):
            rows = db.session.scalars(sa.select(RecordSignature)
                                      .where(RecordSignature.record_version_id == version.id)).all()
        if rows:
            order = {step: n for n, step in enumerate(SIGNATURE_FIELDS)}
            return [Signer(r.signer_name, _(STEP_LABELS.get(r.step, r.step)), r.signed_at)
                    for r in sorted(rows, key=lambda r: order.get(r.step, len(order)))]
    report = report or _stored_file_report(version.signed_digest)
    return [Signer(s.signer_name or "", s.role or "", s.timestamp_time or s.signing_time) for s in report.signatures]


@lru_cache(maxsize=256)
def _stored_file_report(digest: str) -> ValidationReport:
    # A stored file never changes (its name is its hash): its signatures are read once per process.
    try:
        data = storage().read(digest)
    except FileMissing:
        return ValidationReport(readable=False)
    return validate_pdf(data, configured_trust_roots())


@dataclass(frozen=True)
class CodeLookup:
    limited: bool
    record: PublicRecord | None = None


def lookup_code(typed_code: str, *, address_hash: str) -> CodeLookup:
    """Look a verification code up for the public: rate limited, logged, audited when found."""
    if is_limited(LookupKind.CODE, address_hash):
        log_lookup(LookupKind.CODE, LookupOutcome.LIMITED, address_hash)
        return CodeLookup(limited=True)
    version = find_public_version(typed_code)
    log_lookup(LookupKind.CODE, LookupOutcome.FOUND if version else LookupOutcome.UNKNOWN, address_hash)
    if version is None:
        return CodeLookup(limited=False)
    audit.record("verify.code", actor=None, school_id=version.school_id, obj=version, address=address_hash,
                 summary=_("Tra cứu công khai học bạ %(code)s (bản %(n)s) bằng mã", code=version.code,
                           n=version.number))
    return CodeLookup(limited=False, record=describe(version))


# --- checking an uploaded file -------------------------------------------------------------------------------


def configured_trust_roots() -> list[x509.Certificate]:
    """TRUST_ROOTS, or the demo CA's root in the instance folder when none is configured."""
    return list(_roots(tuple((p, _mtime(p)) for p in trust_root_paths())))


def _mtime(path: str) -> float:
    try:
        return Path(path).stat().st_mtime
    except OSError:
        return 0.0


@lru_cache(maxsize=8)
def _roots(paths: tuple[tuple[str, float], ...]) -> tuple[x509.Certificate, ...]:
    # Keyed by path and modification time: a replaced root file is read again.
    return tuple(trust_roots_from([p for p, _mtime in paths]))


CHECK_LABELS = {
    "intact": N_("Nội dung được ký còn nguyên vẹn"),
    "valid": N_("Chữ ký số hợp lệ (kiểm tra mật mã)"),
    "signer": N_("Người ký và vai trò"),
    "signer_role": N_("Đúng người có thẩm quyền ký ô này (đối chiếu sổ đăng ký chứng thư số)"),
    "trusted": N_("Chứng thư số thuộc chuỗi của tổ chức chứng thực được tin cậy"),
    "certificate_valid": N_("Chứng thư số còn hiệu lực vào thời điểm ký"),
    "revocation": N_("Chứng thư số chưa bị thu hồi vào thời điểm ký"),
    "timestamp": N_("Dấu thời gian"),
    "level": N_("Mức chữ ký (PAdES)"),
    "unchanged": N_("Tài liệu không bị sửa đổi sau chữ ký (ngoài các chữ ký tiếp theo)"),
}
REVOCATION_LABELS = {
    "good": N_("chưa bị thu hồi (theo dữ liệu thu hồi kèm theo tệp)"),
    "revoked": N_("đã bị thu hồi"),
    "unknown": N_("không có dữ liệu thu hồi (OCSP/CRL) hợp lệ kèm theo tệp"),
    "not_required": N_("không kiểm tra (không bắt buộc ở mức chữ ký đã cấu hình)"),
}


@dataclass(frozen=True)
class CheckItem:
    key: str
    label: str
    passed: bool | None  # None: nothing to judge (information, or a timestamp that is absent)
    detail: str = ""


def _when(moment: datetime | None) -> str:
    return format_datetime(moment) if moment else ""


def checklist(signature: SignatureReport, *, required_level: str | None = None) -> list[CheckItem]:
    """The checks of one signature, in the order the page lists them."""
    who = ", ".join(p for p in (signature.signer_name, signature.role, signature.organisation) if p)
    if signature.timestamp_time is None:
        stamp = CheckItem("timestamp", _(CHECK_LABELS["timestamp"]),
                          False if level_at_least(required_level, "B-T") else None, _("Không có dấu thời gian"))
    else:
        stamp = CheckItem("timestamp", _(CHECK_LABELS["timestamp"]), bool(signature.timestamp_valid),
                          _("%(time)s, do %(tsa)s cấp", time=_when(signature.timestamp_time),
                            tsa=signature.timestamp_authority or "?"))
    if signature.signer_matches is None:
        role = CheckItem("signer_role", _(CHECK_LABELS["signer_role"]), None,
                         _("Không đối chiếu được: học bạ không có trong sổ đăng ký của cổng"))
    else:
        role = CheckItem("signer_role", _(CHECK_LABELS["signer_role"]), signature.signer_matches,
                         _("cần: %(expected)s; đã ký: %(found)s", expected=signature.expected_signer or "",
                           found=signature.found_signer or ""))
    revocation = {"good": True, "revoked": False, "unknown": False}.get(signature.revocation)
    revoked = _(REVOCATION_LABELS.get(signature.revocation, signature.revocation))
    if signature.revocation == "revoked" and signature.revoked_at:
        revoked = _("đã bị thu hồi từ %(time)s", time=_when(signature.revoked_at))
    judged = (_("xét tại thời điểm của dấu thời gian: %(time)s", time=_when(signature.judged_at))
              if signature.time_trusted else
              _("không có thời điểm ký tin cậy, xét tại thời điểm kiểm tra: %(time)s", time=_when(signature.judged_at)))
    level_detail = signature.level or "?"
    if required_level:
        level_detail = _("%(level)s (bắt buộc: %(required)s)", level=level_detail, required=required_level)
    return [
        CheckItem("intact", _(CHECK_LABELS["intact"]), signature.intact),
        CheckItem("valid", _(CHECK_LABELS["valid"]), signature.valid),
        CheckItem("signer", _(CHECK_LABELS["signer"]), None, who or _("Không đọc được")),
        role,
        CheckItem("trusted", _(CHECK_LABELS["trusted"]), signature.trusted),
        CheckItem("certificate_valid", _(CHECK_LABELS["certificate_valid"]), signature.certificate_valid_at_signing,
                  judged),
        CheckItem("revocation", _(CHECK_LABELS["revocation"]), revocation, revoked),
        stamp,
        CheckItem("level", _(CHECK_LABELS["level"]), level_at_least(signature.level, required_level)
                  if signature.level else False, level_detail),
        CheckItem("unchanged", _(CHECK_LABELS["unchanged"]), signature.intact and not signature.changed_after),
    ]


@dataclass
class FileCheck:
    """The answer about one uploaded file."""

    sha256: str
    size: int
    refused: str | None = None  # why the file could not be checked at all (empty, too large)
    report: ValidationReport | None = None
    registry: PublicRecord | None = None  # the issued version this exact file is
    claimed_code: str | None = None  # the record code the file names, when it is not a registered file
    claimed: PublicRecord | None = None  # ... and what the registry says about that code

    @property
    def signatures_ok(self) -> bool:
        return self.report is not None and self.report.ok

    @property
    def verdict(self) -> str:
        """registered_current, registered_old, valid_unregistered, invalid, unreadable."""
        if self.refused or self.report is None or not self.report.readable or self.report.encrypted:
            return "unreadable"
        if self.registry is not None and self.signatures_ok:
            return "registered_current" if self.registry.current else "registered_old"
        if self.signatures_ok:
            return "valid_unregistered"
        return "invalid"

    @property
    def problems(self) -> list[str]:
        if self.refused:
            return [self.refused]
        return list(self.report.problems) if self.report else []

    def signature_checks(self) -> list[tuple[SignatureReport, list[CheckItem]]]:
        signatures = self.report.signatures if self.report else []
        required = self.report.required_level if self.report else None
        return [(s, checklist(s, required_level=required)) for s in signatures]

    def as_dict(self, url_of: Any = None) -> dict[str, Any]:
        report = self.report
        return {
            "api_version": API_VERSION, "sha256": self.sha256, "size": self.size,
            "checkable": self.refused is None, "verdict": self.verdict,
            "readable": bool(report and report.readable), "encrypted": bool(report and report.encrypted),
            "ok": self.signatures_ok, "problems": self.problems,
            "signatures": [_signature_dict(s, items) for s, items in self.signature_checks()],
            "level": report.level if report else None,
            "required_level": report.required_level if report else None,
            "signers_checked": bool(report and report.signers_checked),
            "changed_after_seal": bool(report and report.changed_after_seal),
            "document_timestamps": [{"time": _iso(t.time), "authority": t.authority, "valid": t.valid}
                                    for t in (report.document_timestamps if report else [])],
            "missing_fields": list(report.missing_fields) if report and report.readable else [],
            "registry": {
                "found": self.registry is not None,
                "current": bool(self.registry and self.registry.current),
                "record": self.registry.as_dict(url_of) if self.registry else None,
                "claimed_code": self.claimed_code,
                "claimed_record": self.claimed.as_dict(url_of) if self.claimed else None,
            },
        }


def _signature_dict(s: SignatureReport, items: list[CheckItem]) -> dict[str, Any]:
    return {
        "field": s.field, "signer_name": s.signer_name, "role": s.role, "organisation": s.organisation,
        "certificate_serial": s.certificate_serial,
        "role_expected": s.expected_signer, "role_found": s.found_signer, "signer_matches": s.signer_matches,
        "signing_time": _iso(s.signing_time), "timestamp_time": _iso(s.timestamp_time),
        "timestamp": {"time": _iso(s.timestamp_time), "authority": s.timestamp_authority, "valid": s.timestamp_valid},
        "judged_at": _iso(s.judged_at), "time_source": "timestamp" if s.time_trusted else "validation_time",
        "revocation": {"status": s.revocation, "revoked_at": _iso(s.revoked_at)}, "level": s.level,
        "checks": {item.key: item.passed for item in items if item.key != "signer"},
        "bottom_line": s.bottom_line, "problems": list(s.problems), "notes": list(s.notes)}


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment else None


def max_upload_bytes() -> int:
    return int(current_app.config["VERIFY_MAX_UPLOAD_MB"]) * 1024 * 1024


def too_large_message() -> str:
    return _("Tệp lớn hơn %(mb)d MB, quá giới hạn kiểm tra. Tệp học bạ số thường chỉ vài trăm KB: hãy kiểm tra "
             "lại xem đã chọn đúng tệp chưa.", mb=current_app.config["VERIFY_MAX_UPLOAD_MB"])


def check_file(data: bytes, *, address_hash: str) -> FileCheck | None:
    """Check an uploaded file's signatures and find it in the registry; None when the address is limited."""
    if is_limited(LookupKind.FILE, address_hash):
        log_lookup(LookupKind.FILE, LookupOutcome.LIMITED, address_hash)
        return None
    sha256 = digest_of(data)
    if len(data) > max_upload_bytes():
        log_lookup(LookupKind.FILE, LookupOutcome.REFUSED, address_hash)
        return FileCheck(sha256, len(data), refused=too_large_message())
    if not data:
        log_lookup(LookupKind.FILE, LookupOutcome.REFUSED, address_hash)
        return FileCheck(sha256, 0, refused=_("Tệp rỗng (0 byte): không có gì để kiểm tra."))
    version = _registered_version(sha256)
    code = None if version is not None else claimed_code(data)
    # The registry's rule of who signs: for the issued version this file is, else for the public record
    # the file names (a draft's code stays as unknown as elsewhere).
    named = version or (find_public_version(code) if code else None)
    result = FileCheck(sha256, len(data), report=validate_file(data, named))
    if version is not None:
        result.registry = describe(version, result.report)
        audit.record("verify.file", actor=None, school_id=version.school_id, obj=version, address=address_hash,
                     summary=_("Kiểm tra công khai tệp học bạ %(code)s (bản %(n)s)", code=version.code,
                               n=version.number))
    elif result.report is not None and result.report.readable and not result.report.encrypted:
        result.claimed_code = code
        result.claimed = describe(named) if named else None
    log_lookup(LookupKind.FILE, LookupOutcome.FOUND if version else LookupOutcome.CHECKED, address_hash)
    return result


def validate_file(data: bytes, version: RecordVersion | None) -> ValidationReport:
    """The signature policy on an issued record's file: the configured roots and level, and, for a record the
    registry holds, who must have signed each field."""
    signers = policy.policy_for_version(version) if version is not None else None
    return validate_pdf(data, configured_trust_roots(), required_level=signing.signature_level(), signers=signers,
                        allow_fetching=signing.fetch_revocation())


def _registered_version(sha256: str) -> RecordVersion | None:
    with all_schools():
        versions = db.session.scalars(sa.select(RecordVersion).where(RecordVersion.signed_digest == sha256)).all()
    return next((v for v in versions if is_public(v)), None)


def claimed_code(data: bytes) -> str | None:
    """The record code a PDF names: in its title (every record PDF has one), else in its embedded XML."""
    from io import BytesIO

    from pyhanko.pdf_utils.reader import PdfFileReader

    try:
        info = PdfFileReader(BytesIO(data), strict=False).trailer_view.get("/Info")
        title = str(info.get_object().get("/Title", "")) if info is not None else ""
    except Exception:  # any damage: the file simply names no code
        return None
    match = RECORD_CODE.search(title)
    if match:
        return match.group(0)
    from portal.interop.received import embedded_xml

    xml = embedded_xml(data) or b""
    record = xml.find(b"<record")
    match = RECORD_CODE.search(xml[record:record + 2000].decode("utf-8", "replace")) if record >= 0 else None
    return match.group(0) if match else None


# --- family access codes (staff side) ----------------------------------------------------------------------


def new_family_code() -> str:
    return "".join(secrets.choice(FAMILY_ALPHABET) for _ in range(FAMILY_CODE_LENGTH))


def format_family_code(code: str) -> str:
    return "-".join(code[i:i + 4] for i in range(0, len(code), 4))


def hash_family_code(typed: str) -> str:
    """The stored form of an access code, from the code as printed or typed."""
    return hashlib.sha256(b"family-access:" + normalise_code(typed or "").encode()).hexdigest()


def pupil_class(pupil: Pupil) -> SchoolClass | None:
    """The class of the pupil's latest school year (the one whose GVCN looks after the family's code)."""
    return db.session.scalar(sa.select(SchoolClass).join(Enrolment, Enrolment.class_id == SchoolClass.id)
                             .join(SchoolYear, SchoolYear.id == SchoolClass.school_year_id)
                             .where(Enrolment.pupil_id == pupil.id)
                             .order_by(SchoolYear.starts_on.desc(), Enrolment.id.desc()).limit(1))


def get_pupil(school: School, pupil_id: int) -> Pupil | None:
    return db.session.scalar(sa.select(Pupil).where(Pupil.id == pupil_id, Pupil.school_id == school.id))


def active_code(pupil: Pupil) -> FamilyAccessCode | None:
    return db.session.scalar(sa.select(FamilyAccessCode).where(FamilyAccessCode.pupil_id == pupil.id,
                                                               FamilyAccessCode.ended_at.is_(None)))


def active_codes(pupil_ids: list[int]) -> dict[int, FamilyAccessCode]:
    """{pupil id: their active code row} in one query."""
    if not pupil_ids:
        return {}
    rows = db.session.scalars(sa.select(FamilyAccessCode).where(FamilyAccessCode.pupil_id.in_(pupil_ids),
                                                                FamilyAccessCode.ended_at.is_(None)))
    return {row.pupil_id: row for row in rows}


def _end(row: FamilyAccessCode, reason: CodeEnd, actor: User | None) -> None:
    row.ended_at, row.ended_by_id, row.end_reason = utcnow(), actor.id if actor else None, reason


def issue_code(school: School, pupil: Pupil, *, actor: User | None) -> str:
    """A new access code for the pupil's family (ending the one they had); the code, shown this once."""
    previous = active_code(pupil)
    if previous is not None:
        _end(previous, CodeEnd.ROTATED, actor)
        db.session.flush()
    code = new_family_code()
    row = FamilyAccessCode(school_id=school.id, pupil_id=pupil.id, code_hash=hash_family_code(code),
                           issued_by_id=actor.id if actor else None)
    db.session.add(row)
    db.session.flush()
    action = "family_code.rotated" if previous else "family_code.issued"
    summary = (_("Đổi mã truy cập học bạ cho gia đình học sinh %(code)s", code=pupil.pupil_code) if previous
               else _("Cấp mã truy cập học bạ cho gia đình học sinh %(code)s", code=pupil.pupil_code))
    audit.record(action, actor=actor, school_id=school.id, obj=row, summary=summary,
                 changes={"pupil_id": pupil.id, "replaces": previous.id if previous else None})
    return code


def revoke_code(school: School, pupil: Pupil, *, actor: User | None) -> bool:
    """Take the family's code back; False when they had none."""
    row = active_code(pupil)
    if row is None:
        return False
    _end(row, CodeEnd.REVOKED, actor)
    audit.record("family_code.revoked", actor=actor, school_id=school.id, obj=row,
                 summary=_("Thu hồi mã truy cập học bạ của gia đình học sinh %(code)s", code=pupil.pupil_code),
                 changes={"pupil_id": pupil.id})
    return True


# --- family access codes (family side) ------------------------------------------------------------------------


@dataclass(frozen=True)
class FamilyOpening:
    limited: bool
    access_id: int | None = None  # an id, not the row: the row is out of reach once the transaction ends


def open_with_code(typed: str, *, address_hash: str) -> FamilyOpening:
    """The active access code the family typed, else None; wrong codes count against the address."""
    if is_limited(LookupKind.FAMILY, address_hash):
        log_lookup(LookupKind.FAMILY, LookupOutcome.LIMITED, address_hash)
        return FamilyOpening(limited=True)
    digest = hash_family_code(typed)
    with all_schools():
        row = db.session.scalar(sa.select(FamilyAccessCode).where(FamilyAccessCode.code_hash == digest))
        if row is None or not row.active:
            log_lookup(LookupKind.FAMILY, LookupOutcome.WRONG, address_hash)
            return FamilyOpening(limited=False)
        row.last_used_at = utcnow()
        log_lookup(LookupKind.FAMILY, LookupOutcome.FOUND, address_hash)
        audit.record("family.opened", actor=None, school_id=row.school_id, obj=row, address=address_hash,
                     summary=_("Gia đình mở học bạ bằng mã truy cập"), changes={"pupil_id": row.pupil_id})
        db.session.flush()
    return FamilyOpening(limited=False, access_id=row.id)


def family_access(access_id: int | None) -> FamilyAccessCode | None:
    """The access code row of a family's session, while it is still active."""
    if not access_id:
        return None
    with all_schools():
        row = db.session.get(FamilyAccessCode, access_id)
    return row if row is not None and row.active else None


def family_records(access: FamilyAccessCode) -> list[RecordVersion]:
    """The pupil's versions that were issued, newest first."""
    with school_scope(access.school_id):
        versions = db.session.scalars(sa.select(RecordVersion).where(RecordVersion.pupil_id == access.pupil_id)
                                      .order_by(RecordVersion.number.desc())).all()
    return [v for v in versions if is_public(v)]


def family_record(access: FamilyAccessCode, code: str) -> RecordVersion | None:
    """One of the pupil's issued versions by its code; another pupil's code finds nothing."""
    wanted = normalise_code(code)
    return next((v for v in family_records(access) if v.code == wanted and v.status == RecordStatus.ISSUED), None)


@dataclass(frozen=True)
class FamilyPage:
    pupil_name: str
    school_name: str
    versions: list[RecordVersion]


def family_page(access: FamilyAccessCode) -> FamilyPage:
    """What the family's page shows: the pupil, the school, the issued versions."""
    with school_scope(access.school_id):
        pupil = db.session.get(Pupil, access.pupil_id)
        school = db.session.get(School, access.school_id)
        versions = family_records(access)
    return FamilyPage(pupil.full_name if pupil else "", school.name if school else "", versions)


def log_family_view(access: FamilyAccessCode, *, address_hash: str) -> None:
    audit.record("family.viewed", actor=None, school_id=access.school_id, obj=access, address=address_hash,
                 summary=_("Gia đình xem danh sách học bạ"), changes={"pupil_id": access.pupil_id})


def log_family_download(access: FamilyAccessCode, version: RecordVersion, *, address_hash: str) -> None:
    audit.record("family.downloaded", actor=None, school_id=access.school_id, obj=version, address=address_hash,
                 summary=_("Gia đình tải học bạ %(code)s (bản %(n)s)", code=version.code, n=version.number),
                 changes={"access_id": access.id, "digest": version.signed_digest})
