"""The demo district's roll-out progress: the 2024-2025 plan, training sessions, evidence, a first count."""

from __future__ import annotations

from datetime import date, timedelta

import sqlalchemy as sa

from portal.compliance import services
from portal.compliance.models import Evidence, EvidenceStatus, Milestone, TrainingAttendance, TrainingSession
from portal.extensions import db
from portal.storage import storage
from tenants.models import District, School

YEAR = "2024-2025"
# Per school, in name order, how far along it is: share of staff trained and the fate of its evidence.
PROFILES = (
    (1.0, ("accepted", "accepted", "accepted", "accepted")),
    (1.0, ("accepted", "accepted", "submitted", "none")),
    (0.8, ("accepted", "returned", "accepted", "submitted")),
    (0.5, ("late", "accepted", "none", "none")),
    (1.0, ("accepted", "accepted", "accepted", "returned")),
    (0.0, ("none", "none", "none", "none")),
)
TRAINING_DAYS = (date(2025, 4, 12), date(2025, 4, 26))
RETURN_COMMENT = "Biên bản chưa có chữ ký của Hiệu trưởng, đề nghị bổ sung."


def build_compliance_demo(district: District, today: date) -> dict[str, int]:
    """Seed the plan and some progress (once: nothing is added when the plan exists); count every school."""
    if not services.seed_plan(district, actor=None, year_label=YEAR):
        return {}
    evidence_lines = [m for m in services.plan(district, YEAR) if m.measure == "evidence"]
    schools = list(db.session.scalars(sa.select(School).where(School.district_id == district.id)
                                      .order_by(School.name)))
    created = {"training_sessions": 0, "evidence": 0}
    for number, school in enumerate(schools):
        trained_share, fates = PROFILES[number % len(PROFILES)]
        created["training_sessions"] += _training(school, trained_share)
        for line, fate in zip(evidence_lines, fates, strict=False):
            created["evidence"] += _evidence(school, line, fate)
    db.session.flush()
    services.refresh_counts(district, YEAR, today)
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


def _evidence(school: School, line: Milestone, fate: str) -> int:
    if fate == "none":
        return 0
    done_on = line.deadline + timedelta(days=10 if fate == "late" else -5)
    text = f"{school.name}\n{line.title}\nNgày {done_on.strftime('%d/%m/%Y')}\n"
    status = {"accepted": EvidenceStatus.ACCEPTED, "late": EvidenceStatus.ACCEPTED,
              "returned": EvidenceStatus.RETURNED}.get(fate, EvidenceStatus.SUBMITTED)
    db.session.add(Evidence(
        school_id=school.id, milestone_id=line.id, done_on=done_on, note="Bản chụp quyết định",
        filename="quyet-dinh.txt", mimetype="text/plain", digest=storage().put(text.encode()), status=status,
        review_comment=RETURN_COMMENT if status is EvidenceStatus.RETURNED else ""))
    return 1
