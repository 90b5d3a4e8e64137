"""The demo district's roll-out progress: a plan for every demo year (2024-2025 the domain brief's, each
later one copied from the year before with its deadlines a year on), training sessions, evidence, and a
first count of every year.

Safe to run again, on any later day: a year that has its plan is left as it is; a new year gets its plan
copied, its evidence and its count.
"""

from __future__ import annotations

from datetime import date, timedelta

import sqlalchemy as sa

from portal.compliance import services
from portal.compliance.models import Evidence, EvidenceStatus, Milestone, TrainingAttendance, TrainingSession
from portal.demo.assessment import demo_years
from portal.extensions import db
from portal.storage import storage
from tenants.models import District, School

# Per school, in name order, how far along it is: share of staff trained and the fate of its evidence in
# a year that is over.
PROFILES = (
    (1.0, ("accepted", "accepted", "accepted", "accepted")),
    (1.0, ("accepted", "accepted", "submitted", "none")),
    (0.8, ("accepted", "returned", "accepted", "submitted")),
    (0.5, ("late", "accepted", "none", "none")),
    (1.0, ("accepted", "accepted", "accepted", "returned")),
    (0.0, ("none", "none", "none", "none")),
)
# In the year under way, before the deadlines: some schools are ahead (evidence sent early, some already
# accepted), others have not begun.
UNDER_WAY = (
    ("accepted", "accepted", "submitted"),
    ("accepted", "submitted"),
    ("submitted",),
    (),
    ("accepted", "accepted", "accepted", "submitted"),
    (),
)
TRAINING_DAYS = (date(2025, 4, 12), date(2025, 4, 26))
RETURN_COMMENT = "Biên bản chưa có chữ ký của Hiệu trưởng, đề nghị bổ sung."


def build_compliance_demo(district: District, today: date) -> dict[str, int]:
    """Plan each demo year that has none yet (seeded or copied) with some progress; count every school."""
    created = {"plans": 0, "training_sessions": 0, "evidence": 0}
    years = demo_years(today)
    schools = list(db.session.scalars(sa.select(School).where(School.district_id == district.id)
                                      .order_by(School.name)))
    for previous, label in zip([None, *years], years, strict=False):
        if services.plan(district, label):
            continue
        if previous is None:
            services.seed_plan(district, actor=None, year_label=label)
            for number, school in enumerate(schools):
                created["training_sessions"] += _training(school, PROFILES[number % len(PROFILES)][0])
        else:
            services.copy_plan(district, previous, label, shift_years=1, actor=None)
        created["plans"] += 1
        evidence_lines = [m for m in services.plan(district, label) if m.measure == "evidence"]
        over = evidence_lines[-1].deadline < today if evidence_lines else True
        for number, school in enumerate(schools):
            if over:
                fates = PROFILES[number % len(PROFILES)][1]
                created["evidence"] += sum(_evidence(school, line, fate, today)
                                           for line, fate in zip(evidence_lines, fates, strict=False))
            else:
                fates = UNDER_WAY[number % len(UNDER_WAY)]
                created["evidence"] += sum(_evidence(school, line, fate, today, early=len(fates) - index)
                                           for index, (line, fate) in enumerate(zip(evidence_lines, fates,
                                                                                    strict=False)))
        db.session.flush()
        services.refresh_counts(district, label, today)
    return created


def _training(school: School, share: float) -> int:
    staff = services.staff_members(school)
    chosen = staff[: round(len(staff) * share)]
    if not chosen:
        return 0
    half = len(chosen) // 2 or len(chosen)
    for held_on, group in zip(TRAINING_DAYS, (chosen[:half], chosen[half:]), strict=True):
        if group:
            db.session.add(TrainingSession(
                school_id=school.id, held_on=held_on, topic="Quản lí và sử dụng học bạ số, ký số học bạ",
                trainer="Phòng GD&ĐT huyện Nhà Bè",
                attendances=[TrainingAttendance(school_id=school.id, user_id=user.id) for user in group]))
    return 2 if len(chosen) > half else 1


def _evidence(school: School, line: Milestone, fate: str, today: date, *, early: int = 0) -> int:
    """One piece of evidence; `early` (weeks before today) for a year whose deadlines are still ahead."""
    if fate == "none":
        return 0
    if early:
        done_on = min(line.deadline, today) - timedelta(days=7 * early)
    else:
        done_on = line.deadline + timedelta(days=10 if fate == "late" else -5)
    if done_on > today:
        return 0
    text = f"{school.name}\n{line.title}\nNgày {done_on.strftime('%d/%m/%Y')}\n"
    status = {"accepted": EvidenceStatus.ACCEPTED, "late": EvidenceStatus.ACCEPTED,
              "returned": EvidenceStatus.RETURNED}.get(fate, EvidenceStatus.SUBMITTED)
    db.session.add(Evidence(
        school_id=school.id, milestone_id=line.id, done_on=done_on, note="Bản chụp quyết định",
        filename="quyet-dinh.txt", mimetype="text/plain", digest=storage().put(text.encode()), status=status,
        review_comment=RETURN_COMMENT if status is EvidenceStatus.RETURNED else ""))
    return 1
