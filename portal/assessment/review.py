"""Review marks (rà soát): a pupil's identity data and year results, marked as checked by the GVCN.

A later change to reviewed data clears the mark, and the audit entry says so; the principal's
progress page and the district board count these marks.
"""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa

from portal import audit
from portal.assessment.models import Enrolment, Pupil, YearResult
from portal.extensions import db, utcnow


def mark_identity_reviewed(pupil: Pupil, *, actor: object) -> None:
    pupil.identity_reviewed_at, pupil.identity_reviewed_by_id = utcnow(), getattr(actor, "id", None)
    audit.record("pupil.identity_reviewed", actor=actor, school_id=pupil.school_id, obj=pupil, summary=pupil.full_name)


def clear_identity_review(pupil: Pupil, *, actor: object, reason: str) -> bool:
    """Clear the identity mark after a change; True when there was one to clear."""
    if pupil.identity_reviewed_at is None:
        return False
    pupil.identity_reviewed_at = pupil.identity_reviewed_by_id = None
    audit.record("pupil.identity_review_cleared", actor=actor, school_id=pupil.school_id, obj=pupil,
                 summary=pupil.full_name, changes={"reason": reason})
    return True


def result_for(enrolment: Enrolment) -> YearResult:
    """The enrolment's year-result row, created empty when missing."""
    result = db.session.scalar(sa.select(YearResult).where(YearResult.enrolment_id == enrolment.id))
    if result is None:
        result = YearResult(school_id=enrolment.school_id, enrolment_id=enrolment.id)
        db.session.add(result)
    return result


def mark_results_reviewed(enrolment: Enrolment, *, actor: object) -> None:
    result = result_for(enrolment)
    result.results_reviewed_at, result.results_reviewed_by_id = utcnow(), getattr(actor, "id", None)
    audit.record("results.reviewed", actor=actor, school_id=enrolment.school_id, obj=enrolment,
                 summary=enrolment.pupil.full_name)


def clear_results_review(enrolment_ids: Iterable[int], *, actor: object, reason: str) -> list[int]:
    """Clear the results marks of these enrolments after a change; returns those that had one."""
    ids = list(enrolment_ids)
    if not ids:
        return []
    reviewed = db.session.scalars(sa.select(YearResult).where(
        YearResult.enrolment_id.in_(ids), YearResult.results_reviewed_at.is_not(None))).all()
    for result in reviewed:
        result.results_reviewed_at = result.results_reviewed_by_id = None
        audit.record("results.review_cleared", actor=actor, school_id=result.school_id, object_type="Enrolment",
                     object_id=result.enrolment_id, changes={"reason": reason})
    return [r.enrolment_id for r in reviewed]
