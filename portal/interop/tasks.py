"""The exchange's jobs: uploads of one school (started by the school) or of every school (by the district),
and pulling the returned-records feed. Each reloads what it needs and is safe to run twice."""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa
from flask import current_app

from portal import jobs
from portal.assessment.models import SchoolYear
from portal.extensions import db, utcnow
from portal.interop import received, uploads
from portal.interop.uploads import RetryPolicy, SendOutcome
from tenants.models import District, School
from tenants.scoping import school_scope


def _progress(run: jobs.JobRun, total: int) -> Any:
    def report(outcome: SendOutcome) -> None:
        run.report(total - outcome.open if outcome.open else min(outcome.attempts, total), total or 1,
                   f"{outcome.attempts} lần gửi; còn {outcome.open} bản chờ")
    return report


@jobs.task("interop.upload", resumable=True)
def upload_school(run: jobs.JobRun, grade: int | None = None, school_year_id: int | None = None) -> dict[str, Any]:
    """Queue the school's issued versions (of a grade and year) and send them, retrying with backoff."""
    school = db.session.get(School, run.school_id)
    assert school is not None
    queued = uploads.queue_uploads(school, grade=grade, school_year_id=school_year_id)
    db.session.commit()
    total = sum(uploads.counts(school.id, grade=grade, school_year_id=school_year_id).values())
    outcome = uploads.send_pending(school.id, uploads.client_from_config(), RetryPolicy.from_config(), grade=grade,
                                   school_year_id=school_year_id,
                                   max_wait=float(current_app.config["CITY_JOB_MAX_WAIT_SECONDS"]),
                                   progress=_progress(run, total))
    return {"queued": queued, "attempts": outcome.attempts, "open": outcome.open, "states": outcome.states,
            "back": ["interop.index", {}]}


@jobs.task("interop.upload_district", resumable=True)
def upload_district(run: jobs.JobRun, grade: int | None = None, school_year: str | None = None) -> dict[str, Any]:
    """Every school's issued versions (of a grade and a year name), school after school, in rounds."""
    policy, client = RetryPolicy.from_config(), uploads.client_from_config()
    schools = list(db.session.scalars(sa.select(School).where(School.active.is_(True)).order_by(School.code)))
    years: dict[int, int | None] = {}
    for school in schools:
        with school_scope(school.id):
            years[school.id] = _year_id(school.id, school_year)
            if school_year is None or years[school.id] is not None:
                uploads.queue_uploads(school, grade=grade, school_year_id=years[school.id])
            db.session.commit()
    deadline = time.monotonic() + float(current_app.config["CITY_JOB_MAX_WAIT_SECONDS"])
    attempts = 0
    while True:
        open_total, earliest = 0, None
        for n, school in enumerate(schools, start=1):
            if school_year is not None and years[school.id] is None:
                continue
            with school_scope(school.id):
                outcome = uploads.send_pending(school.id, client, policy, grade=grade,
                                               school_year_id=years[school.id])
                attempts += outcome.attempts
                still, due = uploads.open_uploads(school.id, policy, grade=grade, school_year_id=years[school.id])
            open_total += still
            earliest = due if earliest is None or (due is not None and due < earliest) else earliest
            run.report(n, len(schools), f"{school.name}: còn {still} bản chờ")
        wait = 0.0 if earliest is None else max((earliest - utcnow()).total_seconds(), 0.05)
        if open_total == 0 or time.monotonic() + wait > deadline:
            break
        time.sleep(min(wait, 5.0))
    return {"schools": len(schools), "attempts": attempts, "open": open_total, "states": uploads.counts(None),
            "back": ["district_interop.district_index", {}]}


def _year_id(school_id: int, name: str | None) -> int | None:
    if name is None:
        return None
    return db.session.scalar(sa.select(SchoolYear.id).where(SchoolYear.school_id == school_id,
                                                            SchoolYear.name == name))


@jobs.task("interop.pull_returned", resumable=True)
def pull_returned(run: jobs.JobRun) -> dict[str, Any]:
    """Read the city's returned-records feed and file each record at the school that admitted the pupil."""
    if run.school_id is not None:
        school = db.session.get(School, run.school_id)
        assert school is not None
        district_id = school.district_id
    else:
        district_id = db.session.scalar(sa.select(District.id).order_by(District.id))
    outcome = received.pull_returned(district_id, uploads.client_from_config(), received.trust_roots())
    back = ["interop.received_list", {}] if run.school_id is not None else ["district_interop.district_index", {}]
    return {"returned": outcome.items, "accepted": outcome.accepted, "refused": outcome.refused,
            "unknown_schools": sorted(set(outcome.unknown_school)), "back": back}
