"""The exchange's jobs: uploads of one school (started by the school) or of every school (by the district),
and pulling the returned-records feed. Each reloads what it needs and is safe to run twice.

An upload job makes one pass over what is due and ends; it never sleeps waiting for a retry. The rows
still waiting are counted in its result and its last message, and are retried when due by the scheduled
reconciler (`schedule_retries`, run by every worker and by `flask jobs reconcile`) or by
`flask interop upload`.
"""

from __future__ import annotations

from datetime import UTC
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from flask import current_app
from flask_babel import gettext as _

from portal import jobs
from portal.assessment.models import SchoolYear
from portal.extensions import db
from portal.interop import received, uploads
from portal.interop.uploads import RetryPolicy, SendOutcome
from tenants.models import District, School
from tenants.scoping import all_schools, school_scope


def _summary(outcome: SendOutcome) -> str:
    if not outcome.open:
        return _("%(n)d lần gửi; không còn bản nào chờ.", n=outcome.attempts)
    if outcome.next_attempt_at is None:
        return _("%(n)d lần gửi; còn %(w)d bản chờ.", n=outcome.attempts, w=outcome.open)
    zone = ZoneInfo(current_app.config["TIMEZONE"])
    return _("%(n)d lần gửi; còn %(w)d bản chờ, sẽ tự gửi lại từ %(at)s.", n=outcome.attempts, w=outcome.open,
             at=outcome.next_attempt_at.astimezone(UTC).astimezone(zone).strftime("%H:%M %d/%m/%Y"))


def _progress(run: jobs.JobRun, total: int) -> Any:
    def report(outcome: SendOutcome) -> None:
        run.report(max(total - outcome.open, 0), total or 1, _summary(outcome))
    return report


@jobs.task("interop.upload", resumable=True)
def upload_school(run: jobs.JobRun, grade: int | None = None, school_year_id: int | None = None,
                  queue_new: bool = True, fresh: bool = False) -> dict[str, Any]:
    """Queue the school's issued versions (of a grade and year) unless only the waiting ones are to go, and
    make one pass over what is due. `fresh`: someone pressed send, so the waits start over."""
    school = db.session.get(School, run.school_id)
    assert school is not None
    queued = uploads.queue_uploads(school, grade=grade, school_year_id=school_year_id) if queue_new else {}
    if fresh:
        uploads.make_due(school.id, grade=grade, school_year_id=school_year_id)
    db.session.commit()
    total = sum(uploads.counts(school.id, grade=grade, school_year_id=school_year_id).values())
    outcome = uploads.send_pending(school.id, uploads.client_from_config(), RetryPolicy.from_config(), grade=grade,
                                   school_year_id=school_year_id, progress=_progress(run, total))
    return {"queued": queued, "attempts": outcome.attempts, "open": outcome.open, "states": outcome.states,
            "next_attempt_at": outcome.next_attempt_at.isoformat() if outcome.next_attempt_at else None,
            "back": ["interop.index", {}]}


@jobs.task("interop.upload_district", resumable=True)
def upload_district(run: jobs.JobRun, grade: int | None = None, school_year: str | None = None,
                    queue_new: bool = True, fresh: bool = False) -> dict[str, Any]:
    """Every school's issued versions (of a grade and a year name), school after school, one pass each.
    With `queue_new` false only what already waits is sent (the scheduled command)."""
    policy, client = RetryPolicy.from_config(), uploads.client_from_config()
    schools = list(db.session.scalars(sa.select(School).where(School.active.is_(True)).order_by(School.code)))
    attempts, waiting, earliest = 0, 0, None
    for n, school in enumerate(schools, start=1):
        with school_scope(school.id):
            year_id = _year_id(school.id, school_year)
            if school_year is not None and year_id is None:
                continue
            if queue_new:
                uploads.queue_uploads(school, grade=grade, school_year_id=year_id)
            if fresh:
                uploads.make_due(school.id, grade=grade, school_year_id=year_id)
            db.session.commit()
            outcome = uploads.send_pending(school.id, client, policy, grade=grade, school_year_id=year_id)
        attempts += outcome.attempts
        waiting += outcome.open
        if outcome.next_attempt_at is not None and (earliest is None or outcome.next_attempt_at < earliest):
            earliest = outcome.next_attempt_at
        run.report(n, len(schools), f"{school.name}: " + _summary(outcome))
    total = SendOutcome(attempts=attempts, open=waiting, next_attempt_at=earliest)
    if schools:
        run.report(len(schools), len(schools), _summary(total))
    return {"schools": len(schools), "attempts": attempts, "open": waiting, "states": uploads.counts(None),
            "next_attempt_at": earliest.isoformat() if earliest else None,
            "back": ["district_interop.district_index", {}]}


def _year_id(school_id: int, name: str | None) -> int | None:
    if name is None:
        return None
    return db.session.scalar(sa.select(SchoolYear.id).where(SchoolYear.school_id == school_id,
                                                            SchoolYear.name == name))


def schedule_retries() -> dict[str, int]:
    """For the reconciler: an upload job (owned by the system) for every school whose retry is due and that
    has none queued or running, sending only what waits."""
    policy = RetryPolicy.from_config()
    due = uploads.schools_due(policy)
    if not due:
        return {"upload_retries": 0}
    with all_schools():
        open_states = [jobs.JobState.QUEUED, jobs.JobState.RUNNING]
        busy = set(db.session.scalars(sa.select(jobs.JobRun.school_id).where(
            jobs.JobRun.kind == "interop.upload", jobs.JobRun.state.in_(open_states))))
        started = 0
        for school_id in sorted(set(due) - busy):
            jobs.enqueue("interop.upload", school_id=school_id, actor=None, owner=jobs.SYSTEM_OWNER,
                         title=_("Gửi lại lên Thành phố (tự động)"), queue_new=False)
            started += 1
        db.session.commit()
    return {"upload_retries": started}


jobs.RECONCILE_HOOKS.append(schedule_retries)


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
