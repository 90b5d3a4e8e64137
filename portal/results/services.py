"""Year-end results of one class (Điều 9): computed from the CN ratings, confirmed or set by the GVCN,
with the year-end titles and ad-hoc awards, completion, the principal's promotion decision for pupils
who do not complete, and the review marks.

The result is recomputed on every read and never rewritten behind the GVCN's back: what she confirmed
is stored with the computed result of that moment, so a later rating change shows as a stale row
that she confirms again.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, NamedTuple

import sqlalchemy as sa
from flask_babel import gettext as _

from portal import audit, collation
from portal.assessment import review
from portal.assessment.classification import (
    Classification,
    Outcome,
    SubjectResult,
    Thresholds,
    TraitResult,
    YearEndInput,
    classify,
    completion_text,
    eligible_award,
)
from portal.assessment.models import (
    Award,
    Enrolment,
    EnrolmentStatus,
    Period,
    Pupil,
    SchoolClass,
    SchoolYear,
    Subject,
    SubjectGrade,
    SubjectRating,
    Trait,
    TraitKind,
    TraitRating,
    YearResult,
)
from portal.extensions import db, utcnow
from portal.i18n import remembered_gettext
from tenants.models import School, User
from tenants.roles import N_

YEAR_END_PERIOD = "CN"
# Pupils who moved away or left have no result in this class; those who moved in have.
ACTIVE_STATUSES = (EnrolmentStatus.STUDYING, EnrolmentStatus.TRANSFERRED_IN)
EXCELLENT_TITLE: str = eligible_award(Outcome.EXCELLENT)  # type: ignore[assignment]
EXEMPLARY_TITLE: str = eligible_award(Outcome.GOOD)  # type: ignore[assignment]
YEAR_END_TITLES = (EXCELLENT_TITLE, EXEMPLARY_TITLE)
OUTCOME_LABELS = {
    Outcome.EXCELLENT: N_("Hoàn thành xuất sắc"),
    Outcome.GOOD: N_("Hoàn thành tốt"),
    Outcome.COMPLETED: N_("Hoàn thành"),
    Outcome.NOT_COMPLETED: N_("Chưa hoàn thành"),
}
MAX_AWARD_TITLE = 300


class ResultsError(ValueError):
    """A year-end change that cannot be made now; the message is for the user."""


def outcome_label(value: str | Outcome | None) -> str:
    """The Vietnamese name of a stored or computed outcome, translated; "" for none.

    Translated once per request (a class's results page shows it two or three times a pupil)."""
    return remembered_gettext(OUTCOME_LABELS[Outcome(value)]) if value else ""


_OUTCOMES = {outcome.value: outcome for outcome in Outcome}


class EnrolmentRow(NamedTuple):
    """What the class page needs of an enrolment (`read_class_results`)."""

    id: int


class PupilRow(NamedTuple):
    """What the class page shows of a pupil."""

    id: int
    full_name: str
    personal_plan: bool


class StoredRow(NamedTuple):
    """What the class page shows of a stored year result."""

    outcome: str | None
    computed_outcome: str | None
    reasons: list[str] | None
    completion: str | None
    supplementary_passed: bool | None
    promoted: bool | None
    results_reviewed_at: datetime | None


class AwardRow(NamedTuple):
    """What the class page shows of an award."""

    id: int
    title: str
    awarded_on: date | None


# A pupil of the class as read, before the result is computed: enrolment, pupil, stored result, awards.
ReadPupil = tuple[Enrolment | EnrolmentRow, Pupil | PupilRow, YearResult | StoredRow | None,
                  list[Award] | list[AwardRow]]


@dataclass
class PupilResult:
    """One pupil's year end: the result computed now, what is stored, and the awards.

    The actions get ORM objects (`class_results`, `pupil_result`), which they change; the class page gets
    plain rows (`read_class_results`), which it only shows."""

    enrolment: Enrolment | EnrolmentRow
    pupil: Pupil | PupilRow
    computed: Classification
    stored: YearResult | StoredRow | None
    awards: list[Award] | list[AwardRow] = field(default_factory=list)

    @property
    def outcome(self) -> Outcome | None:
        """The confirmed (or, for a personal plan, set) result."""
        stored = self.stored
        if stored is None or not stored.outcome:
            return None
        # A dict look-up, not Outcome(...): the page asks this several times per pupil.
        return _OUTCOMES.get(stored.outcome) or Outcome(stored.outcome)

    @property
    def confirmed(self) -> bool:
        return self.outcome is not None

    @property
    def stale(self) -> bool:
        """The ratings changed since the confirmation: the stored computed result is no longer today's."""
        if not self.confirmed:
            return False
        assert self.stored is not None
        now = self.computed.outcome.value if self.computed.outcome else None
        return (self.stored.computed_outcome, list(self.stored.reasons or [])) != (now, list(self.computed.reasons))

    @property
    def mismatch(self) -> bool:
        """The confirmed result differs from the one computed now (a set-by-hand result never does)."""
        return self.confirmed and not self.pupil.personal_plan and self.outcome is not self.computed.outcome

    @property
    def needs_confirmation(self) -> bool:
        """A computed result the GVCN has not confirmed yet, or must confirm again."""
        return (not self.pupil.personal_plan and self.computed.outcome is not None
                and (not self.confirmed or self.stale))

    @property
    def reviewed(self) -> bool:
        return self.stored is not None and self.stored.results_reviewed_at is not None

    @property
    def deciding_reason(self) -> str:
        """The one line that decides the result, first: what is missing, what keeps a Chưa hoàn thành pupil
        from Hoàn thành, or what was achieved (the classifier lists the gaps from the highest level down)."""
        computed = self.computed
        if computed.missing:
            # In the classifier's own (Vietnamese) words, like the reasons: the page translates them all.
            return f"Còn thiếu {len(computed.missing)}: {computed.missing[0]}"
        if not computed.reasons:
            return ""
        if computed.outcome is Outcome.NOT_COMPLETED:
            return computed.reasons[-1]
        return computed.reasons[0]

    @property
    def other_reasons(self) -> list[str]:
        return [r for r in self.computed.reasons if r != self.deciding_reason]

    @property
    def may_review(self) -> bool:
        return self.confirmed and not self.mismatch and not self.reviewed

    @property
    def titles(self) -> list[Award]:
        return [a for a in self.awards if _is_year_end_title(a)]

    @property
    def adhoc_awards(self) -> list[Award]:
        return sorted((a for a in self.awards if not _is_year_end_title(a)), key=lambda a: (a.awarded_on, a.id))

    @property
    def exemplary(self) -> bool:
        return any(a.title == EXEMPLARY_TITLE for a in self.titles)

    @property
    def not_completed(self) -> bool:
        """Confirmed as Chưa hoàn thành, and still so: help, a supplementary assessment and a decision follow."""
        return self.outcome is Outcome.NOT_COMPLETED and not self.mismatch

    @property
    def may_be_exemplary(self) -> bool:
        """Confirmed as Hoàn thành tốt: the class may recognise the pupil as Học sinh Tiêu biểu."""
        return self.outcome is Outcome.GOOD and not self.mismatch

    @property
    def completed_after_supplementary(self) -> bool:
        """Chưa hoàn thành at first, completion confirmed by the supplementary assessment (Điều 11)."""
        return self.outcome is Outcome.NOT_COMPLETED and self.stored is not None and bool(
            self.stored.supplementary_passed)

    @property
    def awaiting_decision(self) -> bool:
        """Chưa hoàn thành, not completing after a supplementary assessment, and no decision of the principal
        yet (signing waits for it, not on it)."""
        return (self.outcome is Outcome.NOT_COMPLETED and self.stored is not None and self.stored.promoted is None
                and not self.stored.supplementary_passed)


def _is_year_end_title(award: Award) -> bool:
    # Year-end titles carry no date (they are given with the result); ad-hoc awards always have one.
    return award.awarded_on is None and award.title in YEAR_END_TITLES


# --- reading -----------------------------------------------------------------------------------------


def get_period(school_class: SchoolClass, period_id: int) -> Period | None:
    """A period of the class's school year."""
    return db.session.scalar(sa.select(Period).where(Period.id == period_id,
                                                     Period.school_year_id == school_class.school_year_id))


def year_end_period(year: SchoolYear) -> Period | None:
    return next((p for p in year.periods if p.code == YEAR_END_PERIOD), None)


def visible_classes(school: School, today: date) -> tuple[SchoolYear | None, list[SchoolClass]]:
    """The current school year (the one containing `today`, else the latest) and its classes."""
    years = list(db.session.scalars(sa.select(SchoolYear).where(SchoolYear.school_id == school.id)
                                    .order_by(SchoolYear.starts_on.desc())))
    year = next((y for y in years if y.starts_on <= today <= y.ends_on), years[0] if years else None)
    return year, list(year.classes) if year else []


def thresholds_of(year: SchoolYear) -> Thresholds:
    try:
        return Thresholds(year.excellent_min_score, year.good_min_score, year.completed_min_score)
    except ValueError as exc:
        raise ResultsError(_("Ngưỡng điểm của năm học %(y)s không hợp lệ: %(e)s", y=year.name, e=exc)) from exc


def class_results(school_class: SchoolClass) -> list[PupilResult]:
    """Every active pupil of the class with the result computed now, in class-list order."""
    return _load(school_class, pupil_id=None)


def pupil_result(school_class: SchoolClass, pupil_id: int) -> PupilResult | None:
    """One pupil of the class (None when the pupil is not an active member of it)."""
    found = _load(school_class, pupil_id=pupil_id)
    return found[0] if found else None


def read_class_results(school_class: SchoolClass) -> list[PupilResult]:
    """`class_results` for showing only (the class page): plain rows rather than ORM objects, and the pupils
    with their stored results and awards read in one query."""
    # The page reads the whole class on every view: loading ORM objects (every column of every pupil) for
    # rows it never changes was the larger part of its cost.
    query = (sa.select(Enrolment.id, Pupil.id, Pupil.full_name, Pupil.personal_plan, YearResult.id, *_STORED_COLUMNS,
                       Award.id, Award.title, Award.awarded_on)
             .join(Pupil, Pupil.id == Enrolment.pupil_id)
             .outerjoin(YearResult, YearResult.enrolment_id == Enrolment.id)
             .outerjoin(Award, Award.enrolment_id == Enrolment.id)
             .where(Enrolment.class_id == school_class.id, Enrolment.status.in_(ACTIVE_STATUSES))
             .order_by(Award.id))
    pupils: dict[int, tuple[EnrolmentRow, PupilRow, StoredRow | None, list[AwardRow]]] = {}
    for row in db.session.execute(query).all():
        # One row per award (or one with none): the pupil and the stored result repeat on each.
        found = pupils.get(row[0])
        if found is None:
            stored = StoredRow(*row[5:12]) if row[4] is not None else None
            found = pupils[row[0]] = (EnrolmentRow(row[0]), PupilRow(*row[1:4]), stored, [])
        if row[12] is not None:
            found[3].append(AwardRow(*row[12:]))
    return _classified(school_class, list(pupils.values()), _active_enrolments(school_class))


_STORED_COLUMNS = (YearResult.outcome, YearResult.computed_outcome, YearResult.reasons, YearResult.completion,
                   YearResult.supplementary_passed, YearResult.promoted, YearResult.results_reviewed_at)


def _load(school_class: SchoolClass, pupil_id: int | None) -> list[PupilResult]:
    # A fixed handful of queries whatever the class size: enrolments, catalogue, ratings, results, awards.
    query = (sa.select(Enrolment, Pupil).join(Pupil, Pupil.id == Enrolment.pupil_id)
             .where(Enrolment.class_id == school_class.id, Enrolment.status.in_(ACTIVE_STATUSES)))
    if pupil_id is not None:
        query = query.where(Enrolment.pupil_id == pupil_id)
    pairs = db.session.execute(query).all()
    if not pairs:
        return []
    enrolments = _active_enrolments(school_class, pupil_id)
    stored = {r.enrolment_id: r for r in db.session.scalars(sa.select(YearResult)
                                                            .where(YearResult.enrolment_id.in_(enrolments)))}
    awards: dict[int, list[Award]] = defaultdict(list)
    for award in db.session.scalars(sa.select(Award).where(Award.enrolment_id.in_(enrolments)).order_by(Award.id)):
        awards[award.enrolment_id].append(award)
    return _classified(school_class, [(e, p, stored.get(e.id), awards[e.id]) for e, p in pairs], enrolments)


def _active_enrolments(school_class: SchoolClass, pupil_id: int | None = None) -> sa.Select[tuple[int]]:
    """The ids of the class's active enrolments (or of one pupil's), to be read inside another query."""
    # Rather than a list of ids: the ORM bound each id again on every read, and the driver parsed the
    # long statement anew (it keeps only statements of at most 50 parameters). Named with its school:
    # in a compound select the session's tenant filter does not reach it.
    query = sa.select(Enrolment.id).where(Enrolment.school_id == school_class.school_id,
                                          Enrolment.class_id == school_class.id, Enrolment.status.in_(ACTIVE_STATUSES))
    return query if pupil_id is None else query.where(Enrolment.pupil_id == pupil_id)


def _classified(school_class: SchoolClass, pupils: Sequence[ReadPupil],
                enrolments: sa.Select[tuple[int]]) -> list[PupilResult]:
    """PupilResults of (enrolment, pupil, stored result, awards), computed now, in class-list order;
    `enrolments` selects the same pupils' enrolment ids, for reading their ratings."""
    if not pupils:
        return []
    year = school_class.school_year
    subjects, traits = year_end_catalogue(school_class)
    subject_ratings, trait_ratings = _year_end_ratings(enrolments, year_end_period(year))
    thresholds = thresholds_of(year)
    results = []
    for enrolment, pupil, stored_result, awards in pupils:
        data = year_end_input(pupil.personal_plan, subjects, traits, subject_ratings[enrolment.id],
                              trait_ratings[enrolment.id])
        results.append(PupilResult(enrolment, pupil, classify(data, thresholds), stored_result, awards))
    return sorted(results, key=lambda r: pupil_sort_key(r.pupil))


def class_catalogue(school_class: SchoolClass) -> tuple[list[tuple[Subject, SubjectGrade]], list[Trait]]:
    """The subjects taught in the class's grade (with their grade settings) and the traits rated in it."""
    subjects = db.session.execute(
        sa.select(Subject, SubjectGrade).join(SubjectGrade, SubjectGrade.subject_id == Subject.id)
        .where(Subject.school_year_id == school_class.school_year_id, SubjectGrade.grade == school_class.grade)
        .order_by(Subject.position)).all()
    traits = db.session.scalars(
        sa.select(Trait).where(Trait.school_year_id == school_class.school_year_id,
                               Trait.from_grade <= school_class.grade).order_by(Trait.position)).all()
    return list(subjects), list(traits)


class Rating(NamedTuple):
    """The two columns of a rating the year end looks at (the page reads ~1,000 of them: no ORM objects)."""

    level: str | None
    score: int | None


def _year_end_ratings(enrolments: sa.Select[tuple[int]], period: Period | None) -> tuple[
        dict[int, dict[int, Rating]], dict[int, dict[int, Rating]]]:
    """{enrolment_id: {subject id: rating}} and {enrolment_id: {trait id: rating}} of the year-end period,
    both read in one query."""
    subjects: dict[int, dict[int, Rating]] = defaultdict(dict)
    traits: dict[int, dict[int, Rating]] = defaultdict(dict)
    if period is None:
        return subjects, traits
    # A compound select escapes the session's tenant filter (tenants/scoping.py): the school is named here.
    query = sa.union_all(
        sa.select(sa.literal(True).label("is_subject"), SubjectRating.enrolment_id,
                  SubjectRating.subject_id.label("item_id"), SubjectRating.level, SubjectRating.score)
        .where(SubjectRating.school_id == period.school_id, SubjectRating.enrolment_id.in_(enrolments),
               SubjectRating.period_id == period.id),
        sa.select(sa.literal(False), TraitRating.enrolment_id, TraitRating.trait_id, TraitRating.level,
                  sa.null().cast(sa.Integer))
        .where(TraitRating.school_id == period.school_id, TraitRating.enrolment_id.in_(enrolments),
               TraitRating.period_id == period.id))
    for is_subject, enrolment_id, item_id, level, score in db.session.execute(query).all():
        (subjects if is_subject else traits)[enrolment_id][item_id] = Rating(level, score)
    return subjects, traits


class SubjectSpec(NamedTuple):
    """What the year end needs of a subject taught in the class's grade."""

    id: int
    code: str
    name: str
    tested: bool  # tested at the year end (CN)
    optional: bool


class TraitSpec(NamedTuple):
    """What the year end needs of a quality or competency rated in the class's grade."""

    id: int
    code: str
    name: str
    kind: str  # "quality" or "competency", as the classifier names them


def year_end_catalogue(school_class: SchoolClass) -> tuple[list[SubjectSpec], list[TraitSpec]]:
    """What the year end needs of the class's catalogue (`class_catalogue`), read once for every pupil, in
    one query and without ORM objects."""
    # A compound select escapes the session's tenant filter (tenants/scoping.py): the school is named here.
    school_id, year_id, grade = school_class.school_id, school_class.school_year_id, school_class.grade
    query = sa.union_all(
        sa.select(sa.literal(True).label("is_subject"), Subject.id, Subject.code, Subject.name, Subject.position,
                  SubjectGrade.optional, SubjectGrade.tested_periods, sa.null().cast(sa.String).label("kind"))
        .join(SubjectGrade, SubjectGrade.subject_id == Subject.id)
        .where(Subject.school_id == school_id, SubjectGrade.school_id == school_id,
               Subject.school_year_id == year_id, SubjectGrade.grade == grade),
        sa.select(sa.literal(False), Trait.id, Trait.code, Trait.name, Trait.position, sa.null().cast(sa.Boolean),
                  sa.null().cast(sa.JSON), Trait.kind)
        .where(Trait.school_id == school_id, Trait.school_year_id == year_id, Trait.from_grade <= grade))
    subjects, traits = [], []
    for is_subject, item_id, code, name, _position, optional, tested_periods, kind in sorted(
            db.session.execute(query).all(), key=lambda row: row.position):
        if is_subject:
            subjects.append(SubjectSpec(item_id, code, name, YEAR_END_PERIOD in tested_periods, optional))
        else:
            traits.append(TraitSpec(item_id, code, name, "quality" if kind == TraitKind.QUALITY else "competency"))
    return subjects, traits


@functools.lru_cache(maxsize=4096)
def _subject_result(subject: SubjectSpec, level: str | None, score: int | None) -> SubjectResult:
    # The same few results (a subject at a level and a score) recur across a class and across classes: each
    # is built and checked once, not once per pupil. They are frozen, so sharing them is safe.
    return SubjectResult(subject.code, subject.name, level, score, score_required=subject.tested)


@functools.lru_cache(maxsize=4096)
def _trait_result(trait: TraitSpec, level: str | None) -> TraitResult:
    return TraitResult(trait.code, trait.name, trait.kind, level)


def year_end_input(personal_plan: bool, subjects: Iterable[SubjectSpec], traits: Iterable[TraitSpec],
                   subject_ratings: Mapping[int, Rating], trait_ratings: Mapping[int, Rating]) -> YearEndInput:
    """What Điều 9 looks at for one pupil: the CN levels and, where the subject is tested at CN, scores."""
    subject_results = []
    for subject in subjects:
        rating = subject_ratings.get(subject.id)
        level = rating.level if rating else None
        score = rating.score if rating and subject.tested else None
        if subject.optional and level is None and score is None:
            continue  # an optional subject the pupil does not take: it counts only when rated
        subject_results.append(_subject_result(subject, level, score))
    trait_results = []
    for trait in traits:
        rating = trait_ratings.get(trait.id)
        trait_results.append(_trait_result(trait, rating.level if rating else None))
    return YearEndInput(tuple(subject_results), tuple(trait_results), personal_plan=personal_plan)


def pupil_sort_key(pupil: Pupil) -> tuple[object, ...]:
    """Class-list order: by given name (the last word), then the whole name, as Vietnamese lists are."""
    return (*collation.name_key(pupil.full_name), pupil.id)


def people_names(user_ids: Iterable[int | None]) -> dict[int, str]:
    """Full names of the given users, in one query (who confirmed, who decided)."""
    wanted = {i for i in user_ids if i}
    if not wanted:
        return {}
    return dict(db.session.execute(sa.select(User.id, User.full_name).where(User.id.in_(wanted))).all())


# --- the GVCN's result -------------------------------------------------------------------------------


def confirm_result(school: School, school_class: SchoolClass, entry: PupilResult, *, actor: User) -> bool:
    """Store the computed result as the pupil's result; False when it was already confirmed as is."""
    if entry.pupil.personal_plan:
        raise ResultsError(_("%(n)s học theo kế hoạch giáo dục cá nhân: hãy chọn kết quả cho học sinh.",
                             n=entry.pupil.full_name))
    outcome = entry.computed.outcome
    if outcome is None:
        raise ResultsError(_("Chưa thể xác nhận kết quả của %(n)s: %(m)s.", n=entry.pupil.full_name,
                             m="; ".join(entry.computed.missing)))
    return _store_outcome(school, school_class, entry, outcome, actor=actor, action="results.confirmed")


def confirm_all(school: School, school_class: SchoolClass, *, actor: User) -> int:
    """Confirm every computed result not yet (or no longer) confirmed; returns how many changed."""
    return sum(confirm_result(school, school_class, entry, actor=actor)
               for entry in class_results(school_class) if entry.needs_confirmation)


def confirm_selected(school: School, school_class: SchoolClass, pupil_ids: Iterable[int], *, actor: User) -> int:
    """Confirm the computed results of the pupils the GVCN ticked (those agreed with); returns how many changed.

    A ticked pupil whose result cannot be confirmed (data missing, personal plan) is left alone: the
    table shows why beside the pupil."""
    chosen = set(pupil_ids)
    return sum(confirm_result(school, school_class, entry, actor=actor)
               for entry in class_results(school_class) if entry.pupil.id in chosen and entry.needs_confirmation)


def review_selected(school: School, school_class: SchoolClass, pupil_ids: Iterable[int], *, actor: User) -> int:
    """Mark the ticked pupils' confirmed, current results as reviewed; returns how many changed."""
    chosen = set(pupil_ids)
    return sum(mark_reviewed(school, school_class, entry, actor=actor)
               for entry in class_results(school_class) if entry.pupil.id in chosen and entry.may_review)


def set_result(school: School, school_class: SchoolClass, entry: PupilResult, outcome: Outcome, *,
               actor: User) -> bool:
    """The GVCN's own result for a pupil with a personal education plan (the software proposes none)."""
    if not entry.pupil.personal_plan:
        raise ResultsError(_("Kết quả của %(n)s được tính từ đánh giá cuối năm: hãy xác nhận kết quả tính được.",
                             n=entry.pupil.full_name))
    return _store_outcome(school, school_class, entry, Outcome(outcome), actor=actor, action="results.set")


def _store_outcome(school: School, school_class: SchoolClass, entry: PupilResult, outcome: Outcome, *,
                   actor: User, action: str) -> bool:
    if entry.stored is None:
        # `_load` read every stored row already: none means none, no need to look again.
        entry.stored = YearResult(school_id=school.id, enrolment_id=entry.enrolment.id, reasons=[],
                                  supplementary_note="")
        db.session.add(entry.stored)
    result = entry.stored
    before = _snapshot(result)
    after = dict(before, outcome=outcome.value, completion=completion_text(outcome, school_class.grade),
                 computed_outcome=entry.computed.outcome.value if entry.computed.outcome else None,
                 reasons=list(entry.computed.reasons))
    if outcome is not Outcome.NOT_COMPLETED:
        # Help, a supplementary assessment and a promotion decision concern only Chưa hoàn thành.
        after.update(supplementary_note="", supplementary_on=None, supplementary_passed=None, promoted=None)
    elif result.supplementary_passed:
        after.update(completion=result.completion)  # what the supplementary assessment confirmed stays
    changes = audit.diff(before, after)
    if not changes:
        return False
    for name, value in after.items():
        setattr(result, name, value)
    result.confirmed_by_id, result.confirmed_at = actor.id, utcnow()
    if "promoted" in changes:
        result.decided_by_id = result.decided_at = None
    audit.record(action, actor=actor, school_id=school.id, obj=entry.enrolment, summary=entry.pupil.full_name,
                 changes=changes)
    _sync_titles(school, entry, outcome, actor=actor)
    _clear_review(entry, actor=actor, reason=action)
    return True


def _snapshot(result: YearResult) -> dict[str, Any]:
    return {"outcome": result.outcome, "computed_outcome": result.computed_outcome,
            "reasons": list(result.reasons or []), "completion": result.completion,
            "supplementary_note": result.supplementary_note or "", "supplementary_on": result.supplementary_on,
            "supplementary_passed": result.supplementary_passed, "promoted": result.promoted}


def _sync_titles(school: School, entry: PupilResult, outcome: Outcome, *, actor: User) -> None:
    """Học sinh Xuất sắc follows Hoàn thành xuất sắc; Học sinh Tiêu biểu stays only with Hoàn thành tốt."""
    wanted_excellent = outcome is Outcome.EXCELLENT
    has_excellent = any(a.title == EXCELLENT_TITLE for a in entry.titles)
    if wanted_excellent and not has_excellent:
        _add_title(school, entry, EXCELLENT_TITLE, actor=actor)
    for award in entry.titles:
        keep = (award.title == EXCELLENT_TITLE and wanted_excellent) or (
            award.title == EXEMPLARY_TITLE and outcome is Outcome.GOOD)
        if not keep:
            _remove_award(school, entry, award, actor=actor, reason=outcome.value)


def _add_title(school: School, entry: PupilResult, title: str, *, actor: User) -> Award:
    award = Award(school_id=school.id, enrolment_id=entry.enrolment.id, title=title, awarded_on=None)
    db.session.add(award)
    db.session.flush()
    entry.awards.append(award)
    audit.record("award.added", actor=actor, school_id=school.id, obj=award,
                 summary=f"{entry.pupil.full_name}: {title}", changes={"title": [None, title]})
    return award


def _remove_award(school: School, entry: PupilResult, award: Award, *, actor: User, reason: str = "") -> None:
    entry.awards.remove(award)
    audit.record("award.removed", actor=actor, school_id=school.id, obj=award,
                 summary=f"{entry.pupil.full_name}: {award.title}",
                 changes={"title": [award.title, None], "awarded_on": [award.awarded_on, None],
                          **({"reason": reason} if reason else {})})
    db.session.delete(award)


def _clear_review(entry: PupilResult, *, actor: User, reason: str) -> None:
    if entry.reviewed:
        review.clear_results_review([entry.enrolment.id], actor=actor, reason=reason)


# --- awards ------------------------------------------------------------------------------------------


def set_exemplary(school: School, school_class: SchoolClass, entry: PupilResult, recognised: bool, *,
                  actor: User) -> bool:
    """The class recognises (or no longer recognises) a Hoàn thành tốt pupil as Học sinh Tiêu biểu."""
    if recognised == entry.exemplary:
        return False
    if recognised and not entry.may_be_exemplary:
        raise ResultsError(_("Danh hiệu Học sinh Tiêu biểu chỉ dành cho học sinh có kết quả Hoàn thành tốt "
                             "đã được xác nhận."))
    if recognised:
        _add_title(school, entry, EXEMPLARY_TITLE, actor=actor)
    else:
        _remove_award(school, entry, next(a for a in entry.titles if a.title == EXEMPLARY_TITLE), actor=actor)
    _clear_review(entry, actor=actor, reason="award")
    return True


def add_award(school: School, school_class: SchoolClass, entry: PupilResult, awarded_on: date, title: str, *,
              actor: User) -> Award:
    """An ad-hoc award during the school year (khen thưởng đột xuất)."""
    title = " ".join(title.split())
    if not title:
        raise ResultsError(_("Cần nhập nội dung khen thưởng."))
    if len(title) > MAX_AWARD_TITLE:
        raise ResultsError(_("Nội dung khen thưởng dài quá %(n)d ký tự.", n=MAX_AWARD_TITLE))
    year = school_class.school_year
    if not year.starts_on <= awarded_on <= year.ends_on:
        raise ResultsError(_("Ngày khen thưởng phải trong năm học %(y)s.", y=year.name))
    award = Award(school_id=school.id, enrolment_id=entry.enrolment.id, title=title, awarded_on=awarded_on)
    db.session.add(award)
    db.session.flush()
    entry.awards.append(award)
    audit.record("award.added", actor=actor, school_id=school.id, obj=award,
                 summary=f"{entry.pupil.full_name}: {title}",
                 changes={"title": [None, title], "awarded_on": [None, awarded_on]})
    _clear_review(entry, actor=actor, reason="award")
    return award


def find_award(entries: Iterable[PupilResult], award_id: int) -> tuple[PupilResult, Award] | None:
    """The award with that id among the class's pupils, with its pupil."""
    return next(((e, a) for e in entries for a in e.awards if a.id == award_id), None)


def remove_award(school: School, school_class: SchoolClass, entry: PupilResult, award: Award, *,
                 actor: User) -> None:
    """Withdraw an ad-hoc award (year-end titles follow the result and the class's recognition)."""
    if _is_year_end_title(award):
        raise ResultsError(_("Danh hiệu cuối năm đi theo kết quả cuối năm, không xóa riêng được."))
    _remove_award(school, entry, award, actor=actor)
    _clear_review(entry, actor=actor, reason="award")


# --- pupils who do not complete ----------------------------------------------------------------------


def _require_not_completed(entry: PupilResult) -> YearResult:
    if not entry.not_completed or entry.stored is None:
        raise ResultsError(_("Chỉ dùng cho học sinh có kết quả Chưa hoàn thành đã được xác nhận."))
    return entry.stored


def set_supplementary_note(school: School, school_class: SchoolClass, entry: PupilResult, note: str, *,
                           actor: User) -> bool:
    """The GVCN's supplementary assessment (đánh giá bổ sung) of a pupil who did not complete."""
    result = _require_not_completed(entry)
    note = note.strip()
    changes = audit.diff({"supplementary_note": result.supplementary_note or ""}, {"supplementary_note": note})
    if not changes:
        return False
    result.supplementary_note = note
    audit.record("results.supplementary_note_set", actor=actor, school_id=school.id, obj=entry.enrolment,
                 summary=entry.pupil.full_name, changes=changes)
    _clear_review(entry, actor=actor, reason="results.supplementary_note_set")
    return True


def record_supplementary(school: School, school_class: SchoolClass, entry: PupilResult, *, on: date, note: str,
                         passed: bool, actor: User) -> bool:
    """The supplementary assessment (Điều 11) of a pupil who did not complete: its date, what was assessed,
    and whether she now completes. Passing confirms completion of the grade (grade 5: of primary school)
    without touching the year-end ratings or the first result; failing leaves the decision to the principal."""
    result = _require_not_completed(entry)
    note = " ".join(note.split())
    if not note:
        raise ResultsError(_("Cần ghi nội dung đánh giá bổ sung."))
    year = school_class.school_year
    if on < year.starts_on:
        raise ResultsError(_("Ngày đánh giá bổ sung phải sau ngày bắt đầu năm học %(y)s.", y=year.name))
    before = _snapshot(result)
    after = dict(before, supplementary_note=note, supplementary_on=on, supplementary_passed=passed,
                 completion=completion_text(Outcome.COMPLETED, school_class.grade) if passed else None)
    if passed:
        after["promoted"] = None  # completing, the pupil moves up: no decision of the principal is needed
    changes = audit.diff(before, after)
    if not changes:
        return False
    for name, value in after.items():
        setattr(result, name, value)
    if passed:
        result.decided_by_id = result.decided_at = None
    audit.record("results.supplementary_recorded", actor=actor, school_id=school.id, obj=entry.enrolment,
                 summary=entry.pupil.full_name, changes=changes)
    _clear_review(entry, actor=actor, reason="results.supplementary_recorded")
    return True


def decide_promotion(school: School, school_class: SchoolClass, entry: PupilResult, promoted: bool, *,
                     actor: User) -> bool:
    """The principal's decision after the supplementary assessment: được lên lớp, or not."""
    result = _require_not_completed(entry)
    if result.supplementary_passed:
        raise ResultsError(_("%(n)s đã hoàn thành sau đánh giá bổ sung: không cần quyết định của Hiệu trưởng.",
                             n=entry.pupil.full_name))
    if not (result.supplementary_note or "").strip():
        raise ResultsError(_("Cần có kết quả đánh giá bổ sung của giáo viên chủ nhiệm trước khi quyết định."))
    changes = audit.diff({"promoted": result.promoted}, {"promoted": promoted})
    if not changes:
        return False
    result.promoted, result.decided_by_id, result.decided_at = promoted, actor.id, utcnow()
    audit.record("results.promotion_decided", actor=actor, school_id=school.id, obj=entry.enrolment,
                 summary=entry.pupil.full_name, changes=changes)
    return True


def promotion_label(promoted: bool | None) -> str:
    if promoted is None:
        return ""
    return _("Được lên lớp") if promoted else _("Chưa được lên lớp")


# --- review ------------------------------------------------------------------------------------------


def mark_reviewed(school: School, school_class: SchoolClass, entry: PupilResult, *, actor: User) -> bool:
    """The GVCN has checked the pupil's year results; only a confirmed, current result can be."""
    if not entry.confirmed:
        raise ResultsError(_("Cần xác nhận kết quả của %(n)s trước khi đánh dấu đã rà soát.", n=entry.pupil.full_name))
    if entry.mismatch:
        raise ResultsError(_("Kết quả đã xác nhận của %(n)s không còn khớp với đánh giá: hãy xác nhận lại trước.",
                             n=entry.pupil.full_name))
    if entry.reviewed:
        return False
    review.mark_results_reviewed(entry.enrolment, actor=actor)
    return True
