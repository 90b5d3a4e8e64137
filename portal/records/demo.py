"""The demo's records: one grade-5 class of the first demo school generated, signed and issued, with a
few records left at each earlier step, so that every page of the signing workflow has something to show.

Safe to run again: generation keeps unchanged records and signing skips what is already signed.
"""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa

from portal.assessment.models import SchoolClass
from portal.extensions import db
from portal.records import services, workflow
from portal.records.models import RecordStatus, RecordVersion
from portal.records.snapshot import principal_of
from portal.results import services as results
from portal.results.services import visible_classes
from portal.signing.demo import DEMO_SIGNING_PIN
from tenants.models import School
from tenants.scoping import school_scope

LEFT_FOR_THE_PRINCIPAL = 4  # signed by the GVCN only
LEFT_FOR_THE_SEAL = 3  # signed by the GVCN and the principal


def build_records_demo(school_code: str, today: date | None = None, *, pin: str = DEMO_SIGNING_PIN
                       ) -> dict[str, int | str]:
    """Generate and sign the demo class (the demo people's signing PIN typed for them); returns how many
    records are at each status."""
    school = db.session.scalar(sa.select(School).where(School.code == school_code))
    if school is None:
        return {}
    with school_scope(school.id):
        _year, classes = visible_classes(school, today or date.today())
        school_class: SchoolClass | None = next((c for c in classes if c.grade == 5), None)
        if school_class is None or school_class.homeroom_teacher is None:
            return {}
        # The year is over in the demo: the GVCN confirms the computed results (pupils on a personal plan,
        # or not completing and waiting for the principal's decision, stay held back and are listed).
        results.confirm_all(school, school_class, actor=school_class.homeroom_teacher)
        db.session.commit()
        for pupil in services.class_pupils(school_class):
            services.generate_record(school, school_class, pupil, actor=school_class.homeroom_teacher)
            db.session.commit()
        principal = principal_of(school)
        drafts = [v.id for v in workflow.waiting_for(school, workflow.STEPS["gvcn"], [school_class.id])]
        workflow.sign_batch(school, workflow.STEPS["gvcn"], drafts, signer=school_class.homeroom_teacher,
                           secret=pin)
        signed = [v.id for v in workflow.waiting_for(school, workflow.STEPS["hieu_truong"], [school_class.id])]
        workflow.sign_batch(school, workflow.STEPS["hieu_truong"], signed[LEFT_FOR_THE_PRINCIPAL:], signer=principal,
                           secret=pin)
        ready = [v.id for v in workflow.waiting_for(school, workflow.STEPS["con_dau"], [school_class.id])]
        workflow.sign_batch(school, workflow.STEPS["con_dau"], ready[LEFT_FOR_THE_SEAL:], signer=principal)
        counts = dict(db.session.execute(sa.select(RecordVersion.status, sa.func.count())
                                         .where(RecordVersion.class_id == school_class.id)
                                         .group_by(RecordVersion.status)).all())
    return {RecordStatus(k).value: n for k, n in counts.items()} | {"class": school_class.name}

