"""The end-of-year result of Điều 9, Thông tư 27/2020, computed from the CN ratings and CN test scores.

Pure functions over plain values: no database, no Flask. The result is a proposal the GVCN confirms;
`classify` says why a pupil did not reach each higher level, in Vietnamese, so the page can show it.
Every message here is user-facing Vietnamese text (the UI is Vietnamese-first).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

TraitKind = Literal["quality", "competency"]
MIN_SCORE = 1
MAX_SCORE = 10
PERSONAL_PLAN_REASON = (
    "Học sinh học theo kế hoạch giáo dục cá nhân: giáo viên chủ nhiệm đánh giá kết quả giáo dục "
    "theo kế hoạch đó, phần mềm không tự xếp loại."
)


class SubjectLevel(StrEnum):
    """The rating of a subject or activity: Hoàn thành tốt, Hoàn thành, Chưa hoàn thành."""

    T = "T"
    H = "H"
    C = "C"

    @property
    def label(self) -> str:
        return _SUBJECT_LABELS[self]


class TraitLevel(StrEnum):
    """The rating of a quality (phẩm chất) or competency (năng lực): Tốt, Đạt, Cần cố gắng."""

    T = "T"
    D = "Đ"
    C = "C"

    @property
    def label(self) -> str:
        return _TRAIT_LABELS[self]


class Outcome(StrEnum):
    """The year-end result (đánh giá kết quả giáo dục); `rank` orders it, higher is better."""

    EXCELLENT = "hoan_thanh_xuat_sac"
    GOOD = "hoan_thanh_tot"
    COMPLETED = "hoan_thanh"
    NOT_COMPLETED = "chua_hoan_thanh"

    @property
    def label(self) -> str:
        return _OUTCOME_LABELS[self]

    @property
    def rank(self) -> int:
        return _OUTCOME_RANKS[self]


_SUBJECT_LABELS = {SubjectLevel.T: "Hoàn thành tốt", SubjectLevel.H: "Hoàn thành", SubjectLevel.C: "Chưa hoàn thành"}
_TRAIT_LABELS = {TraitLevel.T: "Tốt", TraitLevel.D: "Đạt", TraitLevel.C: "Cần cố gắng"}
_OUTCOME_LABELS = {
    Outcome.EXCELLENT: "Hoàn thành xuất sắc",
    Outcome.GOOD: "Hoàn thành tốt",
    Outcome.COMPLETED: "Hoàn thành",
    Outcome.NOT_COMPLETED: "Chưa hoàn thành",
}
_OUTCOME_RANKS = {Outcome.NOT_COMPLETED: 0, Outcome.COMPLETED: 1, Outcome.GOOD: 2, Outcome.EXCELLENT: 3}
_TRAIT_KIND_LABELS: dict[str, str] = {"quality": "phẩm chất", "competency": "năng lực"}


def _check_score(value: object, what: str) -> None:
    # bool is an int in Python, and a float 9.0 is still a decimal score: both are refused.
    if type(value) is not int or not MIN_SCORE <= value <= MAX_SCORE:
        raise ValueError(f"{what}: điểm phải là số nguyên từ {MIN_SCORE} đến {MAX_SCORE}, nhận được {value!r}")


@dataclass(frozen=True)
class SubjectResult:
    """A subject's CN rating and, where the subject has a CN test, its score (the last re-test)."""

    code: str
    name: str
    level: SubjectLevel | None
    score: int | None
    score_required: bool

    def __post_init__(self) -> None:
        if self.level is not None:
            # Accepts the stored string ("T") as well as the enum, and refuses anything else.
            object.__setattr__(self, "level", SubjectLevel(self.level))
        if self.score is None:
            return
        if not self.score_required:
            raise ValueError(f"{self.name}: môn này không có bài kiểm tra cuối năm, không được nhập điểm")
        _check_score(self.score, self.name)


@dataclass(frozen=True)
class TraitResult:
    """A quality's or competency's CN rating."""

    code: str
    name: str
    kind: TraitKind
    level: TraitLevel | None

    def __post_init__(self) -> None:
        if self.kind not in _TRAIT_KIND_LABELS:
            raise ValueError(f"{self.name}: loại phải là 'quality' hoặc 'competency', nhận được {self.kind!r}")
        if self.level is not None:
            object.__setattr__(self, "level", TraitLevel(self.level))

    @property
    def title(self) -> str:
        """The name with its kind, e.g. "năng lực Tin học" (Tin học is also a subject)."""
        return f"{_TRAIT_KIND_LABELS[self.kind]} {self.name}"


@dataclass(frozen=True)
class Thresholds:
    """Minimum CN scores per level; kept per school year because the last one is unconfirmed."""

    excellent_min_score: int = 9
    good_min_score: int = 7
    completed_min_score: int = 5

    def __post_init__(self) -> None:
        for name in ("excellent_min_score", "good_min_score", "completed_min_score"):
            _check_score(getattr(self, name), name)
        # A higher level must never ask less than a lower one, or a better pupil could rank lower.
        if not self.completed_min_score <= self.good_min_score <= self.excellent_min_score:
            raise ValueError("Ngưỡng điểm phải tăng dần: Hoàn thành <= Hoàn thành tốt <= Hoàn thành xuất sắc")


@dataclass(frozen=True)
class YearEndInput:
    """Everything Điều 9 looks at for one pupil and one school year."""

    subjects: tuple[SubjectResult, ...]
    traits: tuple[TraitResult, ...]
    personal_plan: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "subjects", tuple(self.subjects))
        object.__setattr__(self, "traits", tuple(self.traits))
        for what, items in (("môn học", self.subjects), ("phẩm chất, năng lực", self.traits)):
            codes = [item.code for item in items]
            if len(set(codes)) == len(codes):
                continue
            duplicates = sorted({code for code in codes if codes.count(code) > 1})
            if duplicates:
                raise ValueError(f"Mã {what} bị trùng: {', '.join(duplicates)}")


@dataclass(frozen=True)
class Classification:
    """The computed result, or None with what is missing or why the GVCN must decide.

    `needs_teacher_decision` is True only when the software cannot propose a result (personal
    education plan); a computed outcome is still a proposal that the GVCN confirms.
    """

    outcome: Outcome | None
    reasons: tuple[str, ...]
    missing: tuple[str, ...]
    needs_teacher_decision: bool


def classify(data: YearEndInput, thresholds: Thresholds = Thresholds()) -> Classification:
    """Propose the Điều 9 result for one pupil and explain it; None while data is missing."""
    missing = tuple(_missing(data))
    if data.personal_plan:
        # The ratings still go into the record, so what is missing is reported all the same.
        return Classification(None, (PERSONAL_PLAN_REASON,), missing, needs_teacher_decision=True)
    if missing:
        return Classification(None, (), missing, needs_teacher_decision=False)
    levels = (Outcome.EXCELLENT, Outcome.GOOD, Outcome.COMPLETED)
    gaps = {level: _gaps(data, level, thresholds) for level in levels}
    outcome = next((level for level in levels if not gaps[level]), Outcome.NOT_COMPLETED)
    reasons = [_achieved_reason(data, outcome, thresholds)] if outcome is not Outcome.NOT_COMPLETED else []
    reasons += [f"Chưa đạt {level.label}: {'; '.join(gaps[level])}" for level in levels if level.rank > outcome.rank]
    return Classification(outcome, tuple(reasons), (), needs_teacher_decision=False)


def _missing(data: YearEndInput) -> list[str]:
    missing = []
    if not data.subjects:
        missing.append("Chưa có môn học và hoạt động giáo dục nào")
    for subject in data.subjects:
        if subject.level is None:
            missing.append(f"{subject.name}: thiếu mức đạt được")
        if subject.score_required and subject.score is None:
            missing.append(f"{subject.name}: thiếu điểm kiểm tra cuối năm")
    for kind, label in _TRAIT_KIND_LABELS.items():
        if not any(trait.kind == kind for trait in data.traits):
            missing.append(f"Chưa có {label} nào được đánh giá")
    missing += [f"{_capitalise(t.title)}: thiếu mức đạt được" for t in data.traits if t.level is None]
    return missing


def _gaps(data: YearEndInput, level: Outcome, thresholds: Thresholds) -> list[str]:
    """What keeps a pupil with complete data from `level` (an empty list means it is reached)."""
    if level is Outcome.COMPLETED:
        subject_ok, trait_ok = {SubjectLevel.T, SubjectLevel.H}, {TraitLevel.T, TraitLevel.D}
    else:
        subject_ok, trait_ok = {SubjectLevel.T}, {TraitLevel.T}
    min_score = _min_score(level, thresholds)
    gaps = [f"{s.name} mức {s.level.label}" for s in data.subjects if s.level not in subject_ok]
    gaps += [f"{t.title} mức {t.level.label}" for t in data.traits if t.level not in trait_ok]
    gaps += [
        f"{s.name} được {s.score} điểm (cần từ {min_score})"
        for s in data.subjects
        if s.score_required and s.score < min_score
    ]
    return gaps


def _min_score(level: Outcome, thresholds: Thresholds) -> int:
    return {
        Outcome.EXCELLENT: thresholds.excellent_min_score,
        Outcome.GOOD: thresholds.good_min_score,
        Outcome.COMPLETED: thresholds.completed_min_score,
    }[level]


def _achieved_reason(data: YearEndInput, outcome: Outcome, thresholds: Thresholds) -> str:
    if outcome is Outcome.COMPLETED:
        parts = ["các môn học đều mức Hoàn thành trở lên", "các phẩm chất và năng lực đều mức Đạt trở lên"]
    else:
        parts = ["các môn học đều mức Hoàn thành tốt", "các phẩm chất và năng lực đều mức Tốt"]
    if any(s.score_required for s in data.subjects):
        parts.append(f"điểm kiểm tra cuối năm đều từ {_min_score(outcome, thresholds)}")
    return f"Đạt {outcome.label}: {', '.join(parts)}"


def _capitalise(text: str) -> str:
    return text[:1].upper() + text[1:]


def completion_text(outcome: Outcome, grade: int) -> str | None:
    """The record's completion line for the three upper results; None for Chưa hoàn thành."""
    if type(grade) is not int or not 1 <= grade <= 5:
        raise ValueError(f"Khối lớp phải từ 1 đến 5, nhận được {grade!r}")
    if Outcome(outcome) is Outcome.NOT_COMPLETED:
        # The principal decides "được lên lớp" after help and a supplementary assessment.
        return None
    return "Hoàn thành chương trình tiểu học" if grade == 5 else "Hoàn thành chương trình lớp học"


def eligible_award(outcome: Outcome) -> str | None:
    """The award the result makes a pupil eligible for, or None.

    "Học sinh Xuất sắc" follows from Hoàn thành xuất sắc. For Hoàn thành tốt the title "Học sinh
    Tiêu biểu hoàn thành tốt trong học tập và rèn luyện" is only a candidate: it also needs an
    outstanding subject or clear progress, recognised by the class, so a person decides, not this
    function.
    """
    outcome = Outcome(outcome)
    if outcome is Outcome.EXCELLENT:
        return "Học sinh Xuất sắc"
    if outcome is Outcome.GOOD:
        return "Học sinh Tiêu biểu hoàn thành tốt trong học tập và rèn luyện"
    return None
