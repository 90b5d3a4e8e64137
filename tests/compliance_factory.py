"""Builds what the compliance tests need: plan lines, review marks, evidence, training, at known times."""

from __future__ import annotations

from datetime import date, datetime

import sqlalchemy as sa
from flask import Flask

from portal.assessment.models import Pupil, YearResult
from portal.compliance.models import Evidence, EvidenceStatus, Milestone, Scope, TrainingAttendance, TrainingSession
from portal.extensions import db
from tenants.models import District, School
from tenants.scoping import school_scope


def make_milestone(app: Flask, *, measure: str, scope: Scope, deadline: date, phase: int = 3,
                   title: str | None = None, year: str = "2024-2025") -> int:
    with app.app_context():
        district = db.session.scalar(sa.select(District))
        last = db.session.scalar(sa.select(sa.func.max(Milestone.position)).where(
            Milestone.district_id == district.id, Milestone.year_label == year)) or 0
        milestone = Milestone(district_id=district.id, year_label=year, position=last + 1, phase=phase,
                              title=title or f"{measure} {scope.value}", deadline=deadline, scope=scope,
                              measure=measure)
        db.session.add(milestone)
        db.session.commit()
        return milestone.id


def review_identity(app: Flask, school: School, pupil_ids: list[int], at: datetime) -> None:
    with app.app_context(), school_scope(school.id):
        for pupil_id in pupil_ids:
            db.session.get(Pupil, pupil_id).identity_reviewed_at = at
        db.session.commit()


def review_results(app: Flask, school: School, enrolment_ids: list[int], at: datetime) -> None:
    with app.app_context(), school_scope(school.id):
        for enrolment_id in enrolment_ids:
            db.session.add(YearResult(school_id=school.id, enrolment_id=enrolment_id, results_reviewed_at=at))
        db.session.commit()


def make_evidence(app: Flask, school: School, milestone_id: int, status: EvidenceStatus, done_on: date,
                  comment: str = "") -> int:
    from portal.storage import storage

    with app.app_context(), school_scope(school.id):
        digest = storage().put(f"biên bản {school.code} {milestone_id} {status}".encode())
        item = Evidence(school_id=school.id, milestone_id=milestone_id, done_on=done_on, filename="bien-ban.pdf",
                        mimetype="application/pdf", digest=digest, status=status, review_comment=comment)
        db.session.add(item)
        db.session.commit()
        return item.id


def make_training(app: Flask, school: School, held_on: date, user_ids: list[int]) -> int:
    with app.app_context(), school_scope(school.id):
        session = TrainingSession(school_id=school.id, held_on=held_on, topic="Sử dụng học bạ số",
                                  trainer="Phòng GD&ĐT", attendances=[
                                      TrainingAttendance(school_id=school.id, user_id=u) for u in user_ids])
        db.session.add(session)
        db.session.commit()
        return session.id
