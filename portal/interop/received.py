"""Records issued by another school, received here: from the city after admissions (the returned-records
feed, pulled as a job) or with a pupil transferred inside the district.

Each one is checked before it is attached to a pupil: the file is the one announced (SHA-256), it carries
the record's XML and that XML says what the metadata says, and the signature policy passes
(`portal.signing.validate`): all three signatures valid at their timestamps' time, at the required level,
nothing changed after the seal, and, for a record this portal issued, signed by the registered holders of
the three roles (`portal.signing.policy`). A record failing any check is kept, refused, with the reason, and attached
to no one. What the issuing school signed is never changed (see `ReceivedRecord`).
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from flask import current_app
from flask_babel import gettext as _

from portal import audit
from portal.assessment.models import Pupil
from portal.extensions import db, utcnow
from portal.interop.city_client import CityClient, CityError
from portal.interop.models import CityFeedCursor, ReceivedRecord, ReceivedSource, ReceivedState
from portal.storage import storage
from tenants.models import School
from tenants.scoping import all_schools, school_scope

XML_ATTACHMENT = "hocba.xml"


@dataclass
class Verdict:
    accepted: bool
    reason: str = ""
    content: dict[str, Any] | None = None
    report: dict[str, Any] = field(default_factory=dict)


def trust_roots(config: dict[str, Any] | None = None) -> list[Any]:
    """The roots a received record's signatures must chain to: CITY_TRUST_ROOTS when set, else the ones
    every signature of the portal is checked against (TRUST_ROOTS, or the demo CA's root)."""
    from portal import signing
    from portal.signing import pki

    config = config or current_app.config
    paths = [p.strip() for p in str(config.get("CITY_TRUST_ROOTS") or "").split(",") if p.strip()]
    return pki.load_trust_roots(paths) if paths else signing.trust_roots()


def embedded_xml(pdf: bytes) -> bytes | None:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        attachments = PdfReader(io.BytesIO(pdf)).attachments
    except (PdfReadError, ValueError, KeyError, TypeError):
        return None
    found = attachments.get(XML_ATTACHMENT) or next(
        (files for name, files in sorted(attachments.items()) if name.lower().endswith(".xml")), None)
    return found[0] if found else None


def verify_record(pdf: bytes, expected: dict[str, Any], roots: list[Any]) -> Verdict:
    """Check a signed record PDF against what it was announced as; the first problem found is the reason."""
    sha256 = hashlib.sha256(pdf).hexdigest()
    if expected.get("sha256") and expected["sha256"] != sha256:
        return Verdict(False, _("Tệp nhận được không đúng tệp đã thông báo (mã băm SHA-256 khác)."))
    xml = embedded_xml(pdf)
    if xml is None:
        return Verdict(False, _("Tệp PDF không chứa dữ liệu XML của học bạ."))
    from portal.records import exporters

    try:
        content = exporters.parse_xml(xml)
    except exporters.RecordSchemaError as exc:
        return Verdict(False, _("Dữ liệu XML của học bạ không đúng lược đồ: %(e)s", e=str(exc)[:200]))
    record, pupil = content.get("record") or {}, content.get("pupil") or {}
    for key, value in (("record_code", record.get("code")), ("pupil_code", pupil.get("pupil_code"))):
        if expected.get(key) and str(expected[key]) != str(value):
            return Verdict(False, _("Thông tin kèm theo không khớp với dữ liệu XML của học bạ (%(k)s).", k=key),
                           content)
    return _signatures(pdf, roots, content)


def _signatures(pdf: bytes, roots: list[Any], content: dict[str, Any]) -> Verdict:
    from portal import signing
    from portal.signing import policy
    from portal.signing.validate import level_at_least, validate_pdf

    if not roots:
        return Verdict(False, _("Chưa cấu hình chứng thư gốc tin cậy (CITY_TRUST_ROOTS): không thể xác minh chữ ký."),
                       content)
    # A record the portal issued itself (a transfer inside the district, or one the city hands back) is
    # judged against the portal's registry of who signs; one from elsewhere by its signatures alone.
    signers = policy.policy_for_code((content.get("record") or {}).get("code"))
    if signers is None and _names_a_school_here(content):
        return Verdict(False, _("Học bạ ghi là do %(school)s cấp nhưng mã học bạ không có trong sổ đăng ký của cổng.",
                                school=(content.get("school") or {}).get("name") or "?"), content)
    report = validate_pdf(pdf, roots, required_level=signing.signature_level(), signers=signers,
                          allow_fetching=signing.fetch_revocation())
    summary = {"signatures": [_summary(s) for s in report.signatures], "problems": list(report.problems),
               "level": report.level, "signers_checked": report.signers_checked}
    if report.ok:
        return Verdict(True, "", content, summary)
    if not report.all_fields_signed:
        reason = _("Học bạ không có đủ ba chữ ký số (giáo viên chủ nhiệm, Hiệu trưởng, con dấu số).")
    elif not all(s.intact and s.valid for s in report.signatures):
        reason = _("Chữ ký số không hợp lệ: tệp đã bị thay đổi sau khi ký.")
    elif report.changed_after_seal or report.unexpected_signatures:
        reason = _("Tài liệu đã bị thay đổi sau khi ban hành.")
    elif any(s.signer_matches is False for s in report.signatures):
        reason = _("Có ô chữ ký không do người có thẩm quyền ký (không khớp chứng thư số đã đăng kí).")
    elif not all(s.trusted and s.certificate_valid_at_signing for s in report.signatures):
        reason = _("Chứng thư số đã ký không thuộc tổ chức chứng thực được tin cậy, hoặc đã hết hạn hay bị thu hồi "
                   "vào thời điểm ký.")
    elif not level_at_least(report.level, report.required_level):
        reason = _("Chữ ký số chưa đạt mức lưu trữ dài hạn bắt buộc (%(level)s).", level=report.required_level)
    else:
        reason = _("Chữ ký số không còn hiệu lực với nội dung hiện tại của tệp.")
    detail = "; ".join(report.problems[:3])
    return Verdict(False, f"{reason} ({detail})" if detail else reason, content, summary)


def _names_a_school_here(content: dict[str, Any]) -> bool:
    """The record says it comes from a school of this portal (by its MOET code)."""
    moet_code = (content.get("school") or {}).get("moet_code")
    if not moet_code:
        return False
    with all_schools():
        return db.session.scalar(sa.select(sa.func.count()).select_from(School)
                                 .where(School.moet_code == str(moet_code))) > 0


def _summary(signature: Any) -> dict[str, Any]:
    return {"field": signature.field, "signer": signature.signer_name or "", "intact": signature.intact,
            "valid": signature.valid, "trusted": signature.trusted, "bottom_line": signature.bottom_line,
            "expected_signer": signature.expected_signer, "signer_matches": signature.signer_matches,
            "timestamp_time": signature.timestamp_time.isoformat() if signature.timestamp_time else None,
            "revocation": signature.revocation, "level": signature.level}


def receive(school: School, *, source: ReceivedSource, external_ref: str, pdf: bytes, expected: dict[str, Any],
            roots: list[Any], transfer_id: int | None = None, actor: Any = None) -> ReceivedRecord:
    """Verify one record and keep it at `school`, attached to the pupil with its code when accepted.
    Receiving the same thing twice (same reference) returns the first row."""
    existing = db.session.scalar(sa.select(ReceivedRecord).where(ReceivedRecord.school_id == school.id,
                                                                 ReceivedRecord.external_ref == external_ref))
    if existing is not None:
        return existing
    verdict = verify_record(pdf, expected, roots)
    content = verdict.content or {}
    issuing = content.get("school") or {}
    years = content.get("years") or [{}]
    pupil_code = (content.get("pupil") or {}).get("pupil_code") or expected.get("pupil_code") or ""
    pupil = db.session.scalar(sa.select(Pupil).where(Pupil.school_id == school.id, Pupil.pupil_code == pupil_code))
    row = ReceivedRecord(
        school_id=school.id, source=source, external_ref=external_ref,
        pupil_id=pupil.id if (pupil is not None and verdict.accepted) else None, pupil_code=pupil_code,
        record_code=(content.get("record") or {}).get("code") or expected.get("record_code") or "",
        version_number=(content.get("record") or {}).get("number") or expected.get("version_number"),
        school_year=years[-1].get("school_year") or expected.get("school_year") or "",
        grade=years[-1].get("grade") or expected.get("grade"),
        issuing_school_name=issuing.get("name") or expected.get("issuing_school_name") or "",
        issuing_school_moet_code=issuing.get("moet_code") or expected.get("issuing_school_moet_code") or "",
        pdf_digest=storage().put(pdf), state=ReceivedState.ACCEPTED if verdict.accepted else ReceivedState.REFUSED,
        reason=verdict.reason, report=verdict.report, transfer_id=transfer_id)
    db.session.add(row)
    db.session.flush()
    audit.record("exchange.received" if verdict.accepted else "exchange.refused", actor=actor, school_id=school.id,
                 obj=row, summary=(_("Nhận học bạ %(code)s của %(school)s", code=row.record_code,
                                     school=row.issuing_school_name) if verdict.accepted else
                                   _("Từ chối học bạ %(code)s: %(reason)s", code=row.record_code,
                                     reason=verdict.reason)),
                 changes={"source": source.value, "state": row.state.value, "pupil_code": pupil_code,
                          "reason": verdict.reason})
    return row


def attach_waiting(school: School, pupil: Pupil) -> int:
    """Attach accepted records that arrived before their pupil existed here (matched by pupil code)."""
    rows = db.session.scalars(sa.select(ReceivedRecord).where(
        ReceivedRecord.school_id == school.id, ReceivedRecord.pupil_id.is_(None),
        ReceivedRecord.state == ReceivedState.ACCEPTED, ReceivedRecord.pupil_code == pupil.pupil_code))
    count = 0
    for row in rows:
        row.pupil_id = pupil.id
        count += 1
    return count


@dataclass
class PullOutcome:
    items: int = 0
    accepted: int = 0
    refused: int = 0
    unknown_school: list[str] = field(default_factory=list)


def pull_returned(district_id: int, client: CityClient, roots: list[Any], *, batch: int = 100) -> PullOutcome:
    """Read the city's returned-records feed from where the district left off; file each record at the
    school that admitted the pupil. Each record commits on its own, the cursor after each batch."""
    outcome = PullOutcome()
    with all_schools():
        schools = {s.moet_code: s for s in db.session.scalars(sa.select(School).where(
            School.district_id == district_id, School.moet_code.is_not(None)))}
        cursor = db.session.get(CityFeedCursor, district_id) or CityFeedCursor(district_id=district_id, after=0)
        db.session.add(cursor)
        db.session.commit()
    while True:
        items, next_after = client.returned(cursor.after, batch)
        for item in items:
            outcome.items += 1
            school = schools.get(str(item.get("admitted_school_moet_code")))
            if school is None:
                outcome.unknown_school.append(str(item.get("admitted_school_moet_code")))
                continue
            try:
                pdf = client.returned_file(int(item["return_id"]))
            except CityError as exc:
                if exc.retryable:
                    raise  # the cursor stays before this item: the next pull takes it again
                pdf = b""
            with school_scope(school.id):
                row = receive(school, source=ReceivedSource.CITY, external_ref=f"city:{item['return_id']}", pdf=pdf,
                              expected=item, roots=roots)
                db.session.commit()
            outcome.accepted += row.state == ReceivedState.ACCEPTED
            outcome.refused += row.state == ReceivedState.REFUSED
        with all_schools():
            cursor = db.session.get(CityFeedCursor, district_id)
            assert cursor is not None
            cursor.after, cursor.pulled_at = max(cursor.after, next_after), utcnow()
            db.session.commit()
        if len(items) < batch:
            return outcome


def received_list(school: School, *, pupil_id: int | None = None) -> list[ReceivedRecord]:
    query = sa.select(ReceivedRecord).where(ReceivedRecord.school_id == school.id)
    if pupil_id is not None:
        query = query.where(ReceivedRecord.pupil_id == pupil_id)
    return list(db.session.scalars(query.order_by(ReceivedRecord.received_at.desc(), ReceivedRecord.id.desc())))


def get_received(school: School, received_id: int) -> ReceivedRecord | None:
    return db.session.scalar(sa.select(ReceivedRecord).where(ReceivedRecord.id == received_id,
                                                             ReceivedRecord.school_id == school.id))


def received_year_pages(pupil: Pupil) -> list[dict[str, Any]]:
    """The year pages of the accepted records received for this pupil (oldest first, one per school year,
    the newest version's), marked `source: received`: for the study history to continue in new records."""
    return [page for page, _history in received_years(pupil)]


def received_years(pupil: Pupil) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Each school year of the accepted records received for this pupil, oldest first: its page (the newest
    version's, marked `source: received`) and the study-history rows the issuing school wrote for it."""
    from portal.records import exporters

    years: dict[str, tuple[int, dict[str, Any], list[dict[str, Any]]]] = {}
    for row in db.session.scalars(sa.select(ReceivedRecord).where(
            ReceivedRecord.pupil_id == pupil.id, ReceivedRecord.state == ReceivedState.ACCEPTED)
            .order_by(ReceivedRecord.id)):
        xml = embedded_xml(storage().read(row.pdf_digest or ""))
        if xml is None:
            continue
        content = exporters.parse_xml(xml)
        for page in content.get("years") or []:
            number = row.version_number or 0
            if page["school_year"] not in years or years[page["school_year"]][0] < number:
                history = [h for h in content.get("history") or [] if h.get("school_year") == page["school_year"]]
                years[page["school_year"]] = (number, {**page, "source": "received"}, history)
    return [(page, history) for _n, page, history in sorted(years.values(), key=lambda item: item[1]["school_year"])]
