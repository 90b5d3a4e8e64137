"""Record versions: generate drafts from the assessment data, find them, read their files.

Generating is idempotent: a pupil whose data did not change since their live version keeps it; changed
data supersede an unsigned (or partly signed) version with a new one; an issued record is never
replaced here, only corrected on purpose (a new version with a reason, in the signing workflow).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm
from flask import current_app
from flask_babel import gettext as _

from portal import audit
from portal.assessment.classification import Outcome
from portal.assessment.models import Enrolment, Pupil, SchoolClass, SchoolYear, YearResult
from portal.extensions import db, utcnow
from portal.records import exporters, pdf
from portal.records.models import OPEN_STATUSES, RecordStatus, RecordVersion
from portal.records.snapshot import build_content
from portal.results.services import ACTIVE_STATUSES, pupil_sort_key
from portal.storage import storage
from tenants.models import School, User
from tenants.roles import N_

# Crockford's base32 without I, L, O, U: nothing to misread when a code is typed from paper.
CODE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_PREFIX = "HB"
CODE_RANDOM_LENGTH = 10  # 50 bits: with rate-limited lookups, guessing a live code is hopeless


class RecordError(ValueError):
    """A record cannot be generated or changed as asked; the message says why, in Vietnamese."""


class GenerationOutcome(StrEnum):
    """What generating did for one pupil."""

    CREATED = "created"
    UNCHANGED = "unchanged"
    HELD = "held"  # waiting for something (a supplementary assessment, the principal's decision)
    FAILED = "failed"

    @property
    def label(self) -> str:
        return _(GENERATION_LABELS[self])


GENERATION_LABELS = {
    GenerationOutcome.CREATED: N_("Đã tạo bản mới"),
    GenerationOutcome.UNCHANGED: N_("Không thay đổi"),
    GenerationOutcome.HELD: N_("Tạm hoãn"),
    GenerationOutcome.FAILED: N_("Không tạo được"),
}


@dataclass
class Generated:
    pupil: Pupil
    outcome: GenerationOutcome
    reason: str = ""
    version: RecordVersion | None = None


def new_code() -> str:
    return CODE_PREFIX + "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_RANDOM_LENGTH))


def normalise_code(typed: str) -> str:
    """A code as printed or typed ("hb7q-2m4k 9xtr", O for 0, I/L for 1) in its stored form."""
    cleaned = "".join(ch for ch in typed.upper() if ch.isalnum())
    return cleaned.translate(str.maketrans({"O": "0", "I": "1", "L": "1"}))


def verify_url(code: str) -> str:
    return f"{current_app.config['PUBLIC_URL']}/verify/{code}"


# --- reading -----------------------------------------------------------------------------------------


def get_version(school: School, version_id: int) -> RecordVersion | None:
    return db.session.scalar(sa.select(RecordVersion).where(RecordVersion.id == version_id,
                                                            RecordVersion.school_id == school.id))


def versions_of(pupil: Pupil) -> list[RecordVersion]:
    """Every version of the pupil's record, newest first."""
    return list(db.session.scalars(sa.select(RecordVersion).where(RecordVersion.pupil_id == pupil.id)
                                   .order_by(RecordVersion.number.desc())))


def latest_versions(pupil_ids: list[int]) -> dict[int, RecordVersion]:
    """{pupil id: their newest version} in one query."""
    if not pupil_ids:
        return {}
    newest = (sa.select(RecordVersion.pupil_id, sa.func.max(RecordVersion.number).label("number"))
              .where(RecordVersion.pupil_id.in_(pupil_ids)).group_by(RecordVersion.pupil_id).subquery())
    # Lists need the status, not the content (tens of kilobytes each): it loads only when read.
    rows = db.session.scalars(sa.select(RecordVersion).options(sa.orm.defer(RecordVersion.content)).join(
        newest, sa.and_(newest.c.pupil_id == RecordVersion.pupil_id, newest.c.number == RecordVersion.number)))
    return {v.pupil_id: v for v in rows}


def class_pupils(school_class: SchoolClass) -> list[Pupil]:
    """The class's active pupils in class-list order."""
    pupils = db.session.scalars(sa.select(Pupil).join(Enrolment, Enrolment.pupil_id == Pupil.id)
                                .where(Enrolment.class_id == school_class.id,
                                       Enrolment.status.in_(ACTIVE_STATUSES)))
    return sorted(pupils, key=pupil_sort_key)


def read_file(digest: str) -> bytes:
    return storage().read(digest)


# --- generating --------------------------------------------------------------------------------------


def source_hash(content: dict[str, Any]) -> str:
    """The hash of what the record says about the pupil, leaving out the version's own part."""
    return hashlib.sha256(exporters.canonical_json({k: v for k, v in content.items() if k != "record"})).hexdigest()


def readiness(pupil: Pupil, school_class: SchoolClass) -> str | None:
    """Why the pupil's record cannot be generated yet (None when it can)."""
    result = db.session.scalar(sa.select(YearResult).join(Enrolment, Enrolment.id == YearResult.enrolment_id)
                               .where(Enrolment.pupil_id == pupil.id, Enrolment.class_id == school_class.id))
    if result is None or not result.outcome:
        return _("Chưa có kết quả cuối năm được giáo viên chủ nhiệm xác nhận.")
    if result.outcome == Outcome.NOT_COMPLETED and result.promoted is None and not result.supplementary_passed:
        return _("Chờ đánh giá bổ sung và quyết định lên lớp của Hiệu trưởng.")
    return None


def generate_record(school: School, school_class: SchoolClass, pupil: Pupil, *, actor: User | None,
                    now: datetime | None = None) -> Generated:
    """Create a new draft version of the pupil's record if their data changed; say what happened."""
    held = readiness(pupil, school_class)
    if held:
        return Generated(pupil, GenerationOutcome.HELD, held)
    year: SchoolYear = school_class.school_year
    code = new_code()
    latest = latest_versions([pupil.id]).get(pupil.id)
    record = {"code": code, "number": (latest.number + 1) if latest else 1, "replaces": None,
              "created_at": (now or utcnow()).strftime("%Y-%m-%dT%H:%M:%SZ"), "scope_grade": school_class.grade,
              "verify_url": verify_url(code)}
    content = build_content(school, pupil, year, record=record)
    digest = source_hash(content)
    live = latest if latest is not None and latest.school_year_id == year.id else None
    # A returned version goes back to the GVCN to be made again, even when the data did not change.
    if live is not None and live.source_hash == digest and live.status not in (
            RecordStatus.CANCELLED, RecordStatus.SUPERSEDED, RecordStatus.RETURNED):
        return Generated(pupil, GenerationOutcome.UNCHANGED, version=live)
    if live is not None and live.status == RecordStatus.ISSUED:
        return Generated(pupil, GenerationOutcome.HELD, _("Học bạ đã ban hành; dữ liệu đã thay đổi: hãy điều chỉnh "
                                                 "(tạo bản điều chỉnh có lý do) thay vì tạo lại."), live)
    replaced = live if live is not None and live.status in OPEN_STATUSES else None
    if replaced is not None:
        record["replaces"] = replaced.code
    version = _store_version(school, school_class, pupil, content, digest, replaced, actor=actor)
    if replaced is not None:
        set_status(replaced, RecordStatus.SUPERSEDED, actor=actor,
                   reason=_("Dữ liệu thay đổi trước khi ban hành; thay bằng bản %(n)s.", n=version.number))
    return Generated(pupil, GenerationOutcome.CREATED, version=version)


def correction_of(school: School, issued: RecordVersion, reason: str, *, actor: User | None) -> RecordVersion:
    """A new draft from today's data that corrects an issued version (which stays issued until it is)."""
    school_class = issued.school_class
    pupil = issued.pupil
    code = new_code()
    record = {"code": code, "number": latest_versions([pupil.id])[pupil.id].number + 1, "replaces": issued.code,
              "created_at": utcnow().strftime("%Y-%m-%dT%H:%M:%SZ"), "scope_grade": school_class.grade,
              "verify_url": verify_url(code)}
    content = build_content(school, pupil, school_class.school_year, record=record)
    version = _store_version(school, school_class, pupil, content, source_hash(content), issued, actor=actor)
    version.correction_reason = reason
    return version


def _store_version(school: School, school_class: SchoolClass, pupil: Pupil, content: dict[str, Any],
                   digest: str, replaced: RecordVersion | None, *, actor: User | None) -> RecordVersion:
    xml = exporters.export_xml(content)
    document = pdf.render_pdf(content, xml=xml)
    files = storage()
    version = RecordVersion(
        school_id=school.id, pupil_id=pupil.id, school_year_id=school_class.school_year_id, class_id=school_class.id,
        grade=school_class.grade, number=content["record"]["number"], code=content["record"]["code"],
        replaces_id=replaced.id if replaced else None, status=RecordStatus.DRAFT, content=content,
        source_hash=digest, content_hash=exporters.content_hash(content), draft_digest=files.put(document),
        xml_digest=files.put(xml), created_by_id=actor.id if actor else None)
    db.session.add(version)
    db.session.flush()
    audit.record("record.generated", actor=actor, school_id=school.id, obj=version,
                 summary=_("Tạo bản học bạ số %(code)s (bản %(n)s) của %(name)s", code=version.code,
                           n=version.number, name=pupil.full_name),
                 changes={"code": version.code, "number": version.number, "class": school_class.name,
                          "replaces": replaced.code if replaced else None})
    return version


def set_status(version: RecordVersion, status: RecordStatus, *, actor: User | None, reason: str = "") -> None:
    """Move a version to a new status, audited; the one place statuses change."""
    before = version.status
    version.status, version.status_reason, version.status_changed_at = status, reason, utcnow()
    if status == RecordStatus.ISSUED:
        version.issued_at = version.status_changed_at
    audit.record("record.status", actor=actor, school_id=version.school_id, obj=version,
                 summary=_("Học bạ %(code)s: %(a)s → %(b)s", code=version.code, a=before.label, b=status.label),
                 changes={"status": [before.value, status.value], "reason": reason})
