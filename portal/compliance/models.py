"""The roll-out plan as data, the evidence and training schools record, progress history, reminders.

The plan belongs to the district (one set of milestones per school-year label, e.g. "2024-2025");
everything a school records against it is tenant-owned.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.extensions import UTCDateTime, db, str_enum, utcnow
from tenants.roles import N_
from tenants.scoping import TenantScoped


class Scope(StrEnum):
    """Whom a milestone counts: every pupil, grade 5, grades 1-4, or the staff."""

    ALL = "all"
    GRADE_5 = "grade5"
    GRADES_1_4 = "grades1_4"
    STAFF = "staff"

    @property
    def label(self) -> str:
        from flask_babel import gettext

        return gettext(SCOPE_LABELS[self])


SCOPE_LABELS = {
    Scope.ALL: N_("Toàn trường"),
    Scope.GRADE_5: N_("Lớp 5"),
    Scope.GRADES_1_4: N_("Lớp 1-4"),
    Scope.STAFF: N_("Cán bộ, giáo viên"),
}


class EvidenceStatus(StrEnum):
    SUBMITTED = "submitted"
    ACCEPTED = "accepted"
    RETURNED = "returned"

    @property
    def label(self) -> str:
        from flask_babel import gettext

        return gettext(EVIDENCE_LABELS[self])


EVIDENCE_LABELS = {
    EvidenceStatus.SUBMITTED: N_("Chờ Phòng duyệt"),
    EvidenceStatus.ACCEPTED: N_("Phòng đã chấp nhận"),
    EvidenceStatus.RETURNED: N_("Phòng trả lại"),
}


class Milestone(db.Model):
    """One line of a district's plan for a school year: phase, title, deadline, scope and measure."""

    __tablename__ = "plan_milestones"

    id: Mapped[int] = mapped_column(primary_key=True)
    district_id: Mapped[int] = mapped_column(sa.ForeignKey("districts.id"), index=True)
    year_label: Mapped[str] = mapped_column(sa.String(16))  # "2024-2025", the SchoolYear.name of the schools
    position: Mapped[int]
    phase: Mapped[int]
    title: Mapped[str] = mapped_column(sa.String(300))
    deadline: Mapped[date]
    scope: Mapped[Scope] = mapped_column(str_enum(Scope, 16))
    measure: Mapped[str] = mapped_column(sa.String(32))  # a key of measures.REGISTRY
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        sa.UniqueConstraint("district_id", "year_label", "position"),
        sa.CheckConstraint("phase between 1 and 9", name="phase_1_to_9"),
    )

    def __repr__(self) -> str:
        return f"<Milestone {self.year_label} #{self.position} {self.measure}>"


class Evidence(TenantScoped, db.Model):
    """A school's decision or minutes for a milestone done outside the software, and the district's verdict.

    A returned piece stays as it was; the school answers with a new one, and the newest counts.
    """

    __tablename__ = "compliance_evidence"

    id: Mapped[int] = mapped_column(primary_key=True)
    milestone_id: Mapped[int] = mapped_column(sa.ForeignKey("plan_milestones.id"), index=True)
    done_on: Mapped[date]
    note: Mapped[str] = mapped_column(sa.Text, default="")
    filename: Mapped[str] = mapped_column(sa.String(200))
    mimetype: Mapped[str] = mapped_column(sa.String(100))
    digest: Mapped[str] = mapped_column(sa.String(64))
    status: Mapped[EvidenceStatus] = mapped_column(str_enum(EvidenceStatus, 16), default=EvidenceStatus.SUBMITTED)
    submitted_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    submitted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    reviewed_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    reviewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    review_comment: Mapped[str] = mapped_column(sa.Text, default="")

    milestone: Mapped[Milestone] = relationship()
    submitted_by = relationship("User", foreign_keys=[submitted_by_id])
    reviewed_by = relationship("User", foreign_keys=[reviewed_by_id])

    def __repr__(self) -> str:
        return f"<Evidence milestone={self.milestone_id} {self.status}>"


class TrainingSession(TenantScoped, db.Model):
    """A training session a school held for its staff (buổi tập huấn)."""

    __tablename__ = "training_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    held_on: Mapped[date]
    topic: Mapped[str] = mapped_column(sa.String(300))
    trainer: Mapped[str] = mapped_column(sa.String(200))
    created_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    attendances: Mapped[list[TrainingAttendance]] = relationship(back_populates="session",
                                                                 cascade="all, delete-orphan")

    def __repr__(self) -> str:
        return f"<TrainingSession {self.held_on} {self.topic[:20]}>"


class TrainingAttendance(TenantScoped, db.Model):
    __tablename__ = "training_attendances"

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(sa.ForeignKey("training_sessions.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"), index=True)

    session: Mapped[TrainingSession] = relationship(back_populates="attendances")
    user = relationship("User")

    __table_args__ = (sa.UniqueConstraint("session_id", "user_id"),)

    def __repr__(self) -> str:
        return f"<TrainingAttendance session={self.session_id} user={self.user_id}>"


class ProgressSnapshot(TenantScoped, db.Model):
    """How far a school was on a milestone on a day: the history behind charts and forecasts.

    Today's row is also the board's count: a refresh rewrites it (see services.refresh_counts), so the
    last refresh of a day stays as that day's snapshot.
    """

    __tablename__ = "progress_snapshots"

    id: Mapped[int] = mapped_column(primary_key=True)
    milestone_id: Mapped[int] = mapped_column(sa.ForeignKey("plan_milestones.id", ondelete="CASCADE"), index=True)
    taken_on: Mapped[date] = mapped_column(index=True)
    done: Mapped[int]
    total: Mapped[int]
    last_done_on: Mapped[date | None]  # when the last of them was done, once all are
    forecast_on: Mapped[date | None]  # when all will be done at the pace of the last days, as counted then
    counted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (sa.UniqueConstraint("school_id", "milestone_id", "taken_on"),)

    def __repr__(self) -> str:
        return f"<ProgressSnapshot {self.taken_on} {self.done}/{self.total}>"


class Notice(TenantScoped, db.Model):
    """A reminder from the district, shown to the school's principal until they mark it read."""

    __tablename__ = "compliance_notices"

    id: Mapped[int] = mapped_column(primary_key=True)
    milestone_id: Mapped[int | None] = mapped_column(sa.ForeignKey("plan_milestones.id", ondelete="SET NULL"))
    message: Mapped[str] = mapped_column(sa.Text)
    created_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    read_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))

    milestone: Mapped[Milestone | None] = relationship()
    created_by = relationship("User", foreign_keys=[created_by_id])

    def __repr__(self) -> str:
        return f"<Notice school={self.school_id} read={self.read_at is not None}>"
