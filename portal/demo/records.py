"""The demo's records at the first demo school: for every year that is over, grade 5's records issued and
queued for the city system, so that each shows a record's real shape (an issued 2025-2026 record carries
the pupil's 2024-2025 grade-4 page and her 2025-2026 grade-5 page); in the latest such year one class's
records are left at each step of the signing workflow, so that every signing page has something to show.
One grade-4 pupil of this year came from another demo school, with the record it issued for her last year,
verified and kept: her next record here continues from its pages.

Issuing is the slow part of the demo (three signatures per record), so only this school's grade 5 is
issued, and before the latest year only the first few pupils of one class: the other schools' past
records are not made. Safe to run again: generation keeps unchanged
records and signing skips what is already signed.
"""

from __future__ import annotations

from datetime import date, timedelta

import sqlalchemy as sa

from portal.assessment.models import Enrolment, EnrolmentStatus, SchoolClass, SchoolYear, YearResult
from portal.demo.signing import DEMO_SIGNING_PIN
from portal.extensions import db
from portal.interop.uploads import queue_uploads
from portal.records import services, workflow
from portal.records.models import RecordStatus, RecordVersion
from portal.records.snapshot import principal_of
from tenants.models import School
from tenants.scoping import all_schools, school_scope

RECORD_SCHOOL = "lequangdinh"
TRANSFER_FROM = "hiepphuoc"  # the school a pupil of the record school's grade 4 came from this year
TRANSFER_REASON = "Gia đình chuyển nơi ở về Thị trấn Nhà Bè"
LEFT_FOR_THE_PRINCIPAL = 4  # signed by the GVCN only
LEFT_FOR_THE_SEAL = 3  # signed by the GVCN and the principal
EARLIER_YEAR_RECORDS = 6  # issued in each year before the latest: each record costs seconds to make and sign


def build_records_demo(today: date, school_code: str = RECORD_SCHOOL) -> dict[str, dict[str, int]]:
    """Generate, sign and issue grade 5 of every year over by `today`; returns, per "year class", how many
    records are at each status."""
    school = db.session.scalar(sa.select(School).where(School.code == school_code))
    if school is None:
        return {}
    summary: dict[str, dict[str, int]] = {}
    with school_scope(school.id):
        years = list(db.session.scalars(sa.select(SchoolYear).where(SchoolYear.ends_on < today)
                                        .order_by(SchoolYear.starts_on)))
        for year in years:
            grade_5 = [c for c in year.classes if c.grade == 5 and c.homeroom_teacher is not None]
            latest = year is years[-1]
            if not latest:
                grade_5 = grade_5[:1]  # a few records of one class tell an earlier year's story
            for school_class in grade_5:
                # The latest year's second class stops partway, for the signing pages.
                _issue(school, school_class, partway=latest and school_class is not grade_5[0],
                       limit=None if latest else EARLIER_YEAR_RECORDS)
            queue_uploads(school, grade=5, school_year_id=year.id)
            db.session.commit()
            for school_class in grade_5:
                counts = dict(db.session.execute(sa.select(RecordVersion.status, sa.func.count())
                                                 .where(RecordVersion.class_id == school_class.id)
                                                 .group_by(RecordVersion.status)).all())
                summary[f"{year.name} {school_class.name}"] = {RecordStatus(k).value: n for k, n in counts.items()}
    transferred = _transfer_in(school, today)
    if transferred:
        summary[transferred] = {"received": 1}
    return summary


def _transfer_in(school: School, today: date) -> str | None:
    """A pupil who moved to the record school this year from another demo school, with the record that
    school issued for her last year: her new school's next record continues from it. Once only."""
    from portal.interop import received, transfers
    from portal.interop.models import PupilTransfer

    sender = db.session.scalar(sa.select(School).where(School.code == TRANSFER_FROM))
    if sender is None:
        return None
    with all_schools():
        if db.session.scalar(sa.select(PupilTransfer.id).where(PupilTransfer.school_id == sender.id,
                                                               PupilTransfer.to_school_id == school.id)):
            return None
    with school_scope(sender.id):
        years = list(db.session.scalars(sa.select(SchoolYear).order_by(SchoolYear.starts_on.desc()).limit(2)))
        if len(years) < 2 or not years[0].starts_on <= today <= years[0].ends_on:
            return None  # only while a year is under way that follows one that is over
        current, last = years
        last_class = next((c for c in last.classes if c.grade == 3 and c.homeroom_teacher is not None), None)
        now_class = next((c for c in current.classes if c.grade == 4), None)
        if last_class is None or now_class is None:
            return None
        moving = set(db.session.scalars(sa.select(Enrolment.pupil_id).where(Enrolment.class_id == now_class.id)))
        pupil = next((p for p in services.class_pupils(last_class) if p.id in moving), None)
        if pupil is None:
            return None
        services.generate_record(sender, last_class, pupil, actor=last_class.homeroom_teacher)
        db.session.commit()
        head = principal_of(sender)
        for step, signer in (("gvcn", last_class.homeroom_teacher), ("hieu_truong", head), ("con_dau", head)):
            waiting = [v.id for v in workflow.waiting_for(sender, workflow.STEPS[step], [last_class.id])]
            workflow.sign_batch(sender, workflow.STEPS[step], waiting, signer=signer,
                                secret=None if step == "con_dau" else DEMO_SIGNING_PIN)
        transfer = transfers.release_pupil(sender, pupil, school, reason=TRANSFER_REASON, actor=head)
        db.session.commit()
        # Plain values: the sender's rows are out of sight (row-level security) in the receiver's scope.
        transfer_id, name, year_name = transfer.id, pupil.full_name, current.name
    with school_scope(school.id):
        arrived = transfers.accept_transfer(school, transfer_id, actor=principal_of(school),
                                            roots=received.trust_roots())
        year = db.session.scalar(sa.select(SchoolYear).where(SchoolYear.name == year_name))
        school_class = next((c for c in year.classes if c.grade == 4), None) if year else None
        if school_class is not None:
            db.session.add(Enrolment(school_id=school.id, pupil_id=arrived.id, school_year_id=year.id,
                                     class_id=school_class.id, status=EnrolmentStatus.TRANSFERRED_IN,
                                     enrolled_on=max(year.starts_on, today - timedelta(days=14))))
        db.session.commit()
        class_name = school_class.name if school_class else ""
    return f"{year_name} {class_name}: {name}"


def _issue(school: School, school_class: SchoolClass, *, partway: bool, limit: int | None) -> None:
    teacher = school_class.homeroom_teacher
    pupils = services.class_pupils(school_class)
    # The pupil who completed primary school after the summer's supplementary assessment is always among them.
    story = set(db.session.scalars(sa.select(Enrolment.pupil_id).join(YearResult).where(
        Enrolment.class_id == school_class.id, YearResult.supplementary_passed.is_(True))))
    for pupil in [p for n, p in enumerate(pupils) if limit is None or n < limit or p.id in story]:
        services.generate_record(school, school_class, pupil, actor=teacher)
        db.session.commit()
    principal = principal_of(school)
    drafts = [v.id for v in workflow.waiting_for(school, workflow.STEPS["gvcn"], [school_class.id])]
    # The demo people's signing PIN is typed for them, as each signer types their own once per batch.
    workflow.sign_batch(school, workflow.STEPS["gvcn"], drafts, signer=teacher, secret=DEMO_SIGNING_PIN)
    signed = [v.id for v in workflow.waiting_for(school, workflow.STEPS["hieu_truong"], [school_class.id])]
    workflow.sign_batch(school, workflow.STEPS["hieu_truong"], signed[LEFT_FOR_THE_PRINCIPAL if partway else 0:],
                        signer=principal, secret=DEMO_SIGNING_PIN)
    ready = [v.id for v in workflow.waiting_for(school, workflow.STEPS["con_dau"], [school_class.id])]
    workflow.sign_batch(school, workflow.STEPS["con_dau"], ready[LEFT_FOR_THE_SEAL if partway else 0:],
                        signer=principal)
