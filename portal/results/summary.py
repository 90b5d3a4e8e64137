"""The class summary (Bảng tổng hợp kết quả đánh giá giáo dục của lớp) of one period, as a page and as Excel.

Counted in the database with a fixed handful of grouped queries, whatever the class size. The page and
the workbook are both written from `summary_tables`, so they always show the same numbers.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import sqlalchemy as sa
from flask_babel import gettext as _
from openpyxl import Workbook
from openpyxl.styles import Font

from portal import spreadsheets
from portal.assessment.classification import Outcome
from portal.assessment.models import (
    Award,
    Enrolment,
    Period,
    SchoolClass,
    SubjectRating,
    TraitKind,
    TraitRating,
    YearResult,
)
from portal.extensions import db
from portal.results.services import (
    ACTIVE_STATUSES,
    EXCELLENT_TITLE,
    EXEMPLARY_TITLE,
    YEAR_END_TITLES,
    class_catalogue,
    outcome_label,
)

SUBJECT_LEVELS = ("T", "H", "C")
TRAIT_LEVELS = ("T", "Đ", "C")
SCORES = tuple(range(10, 0, -1))
XLSX_MIMETYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
NOT_APPLICABLE = "—"


@dataclass
class SubjectCounts:
    code: str
    name: str
    optional: bool
    tested: bool
    levels: Counter[str] = field(default_factory=Counter)
    scores: Counter[int] = field(default_factory=Counter)
    taking: int = 0  # pupils counted: the class, or for an optional subject those rated in it

    @property
    def unrated(self) -> int:
        return self.taking - sum(self.levels[level] for level in SUBJECT_LEVELS)

    @property
    def unscored(self) -> int:
        return self.taking - sum(self.scores.values())


@dataclass
class TraitCounts:
    code: str
    name: str
    kind: TraitKind
    levels: Counter[str] = field(default_factory=Counter)
    taking: int = 0

    @property
    def unrated(self) -> int:
        return self.taking - sum(self.levels[level] for level in TRAIT_LEVELS)


@dataclass
class YearEndCounts:
    outcomes: Counter[str] = field(default_factory=Counter)  # confirmed outcome -> pupils
    promoted: Counter[bool | None] = field(default_factory=Counter)  # Chưa hoàn thành pupils by decision
    titles: Counter[str] = field(default_factory=Counter)
    adhoc_awards: int = 0
    adhoc_pupils: int = 0


@dataclass
class ClassSummary:
    school_class: SchoolClass
    period: Period
    pupils: int
    subjects: list[SubjectCounts]
    traits: list[TraitCounts]
    year_end: YearEndCounts | None


@dataclass
class SummaryTable:
    """One table of the summary: the page renders it, the workbook writes it, cell for cell."""

    key: str
    title: str
    header: list[str]
    rows: list[list[str | int]]


def build_class_summary(school_class: SchoolClass, period: Period) -> ClassSummary:
    """Count the period's ratings (and at year end, results and awards) of the class's active pupils."""
    subjects, traits = class_catalogue(school_class)
    pupils = db.session.scalar(sa.select(sa.func.count()).select_from(Enrolment).where(*_active(school_class))) or 0
    subject_rows = {s.id: SubjectCounts(s.code, s.name, spec.optional, spec.is_tested(period.code),
                                        taking=0 if spec.optional else pupils) for s, spec in subjects}
    for subject_id, level, score, count in _subject_counts(school_class, period):
        row = subject_rows.get(subject_id)
        if row is None or (level is None and score is None):
            continue  # a subject no longer taught in this grade, or an empty cell
        if level:
            row.levels[level] += count
        if row.tested and score is not None:
            row.scores[score] += count
        if row.optional:
            row.taking += count
    trait_rows = {t.id: TraitCounts(t.code, t.name, t.kind, taking=pupils) for t in traits}
    for trait_id, level, count in _trait_counts(school_class, period):
        if trait_id in trait_rows and level:
            trait_rows[trait_id].levels[level] += count
    year_end = _year_end_counts(school_class) if period.is_year_end else None
    return ClassSummary(school_class, period, pupils, list(subject_rows.values()), list(trait_rows.values()),
                        year_end)


def _active(school_class: SchoolClass) -> tuple[sa.ColumnElement[bool], ...]:
    return Enrolment.class_id == school_class.id, Enrolment.status.in_(ACTIVE_STATUSES)


def _subject_counts(school_class: SchoolClass, period: Period) -> list[tuple[int, str | None, int | None, int]]:
    query = (sa.select(SubjectRating.subject_id, SubjectRating.level, SubjectRating.score, sa.func.count())
             .join(Enrolment, Enrolment.id == SubjectRating.enrolment_id)
             .where(*_active(school_class), SubjectRating.period_id == period.id)
             .group_by(SubjectRating.subject_id, SubjectRating.level, SubjectRating.score))
    return list(db.session.execute(query))


def _trait_counts(school_class: SchoolClass, period: Period) -> list[tuple[int, str | None, int]]:
    query = (sa.select(TraitRating.trait_id, TraitRating.level, sa.func.count())
             .join(Enrolment, Enrolment.id == TraitRating.enrolment_id)
             .where(*_active(school_class), TraitRating.period_id == period.id)
             .group_by(TraitRating.trait_id, TraitRating.level))
    return list(db.session.execute(query))


def _year_end_counts(school_class: SchoolClass) -> YearEndCounts:
    counts = YearEndCounts()
    results = (sa.select(YearResult.outcome, YearResult.promoted, sa.func.count())
               .join(Enrolment, Enrolment.id == YearResult.enrolment_id)
               .where(*_active(school_class), YearResult.outcome.is_not(None))
               .group_by(YearResult.outcome, YearResult.promoted))
    for outcome, promoted, count in db.session.execute(results):
        counts.outcomes[outcome] += count
        if outcome == Outcome.NOT_COMPLETED.value:
            counts.promoted[promoted] += count
    is_title = sa.and_(Award.awarded_on.is_(None), Award.title.in_(YEAR_END_TITLES)).label("is_title")
    awards = (sa.select(Award.title, is_title, sa.func.count())
              .join(Enrolment, Enrolment.id == Award.enrolment_id)
              .where(*_active(school_class))
              .group_by(Award.title, is_title))
    for title, title_flag, count in db.session.execute(awards):
        if title_flag:
            counts.titles[title] += count
        else:
            counts.adhoc_awards += count
    if counts.adhoc_awards:
        counts.adhoc_pupils = _adhoc_pupils(school_class)
    return counts


def _adhoc_pupils(school_class: SchoolClass) -> int:
    """Pupils with an ad-hoc award, each counted once however many awards they got."""
    query = (sa.select(sa.func.count(sa.distinct(Award.enrolment_id)))
             .join(Enrolment, Enrolment.id == Award.enrolment_id)
             .where(*_active(school_class), sa.not_(sa.and_(Award.awarded_on.is_(None),
                                                            Award.title.in_(YEAR_END_TITLES)))))
    return db.session.scalar(query) or 0


# --- presentation ------------------------------------------------------------------------------------


def summary_tables(summary: ClassSummary) -> list[SummaryTable]:
    """The summary as tables of plain cells (numbers stay numbers), in page order."""
    tables = [_subject_table(summary)]
    if any(s.tested for s in summary.subjects):
        tables.append(_score_table(summary))
    for kind, key, title in ((TraitKind.QUALITY, "qualities", _("Phẩm chất")),
                             (TraitKind.GENERAL, "general", _("Năng lực chung")),
                             (TraitKind.SPECIFIC, "specific", _("Năng lực đặc thù"))):
        rows = [t for t in summary.traits if t.kind is kind]
        if rows:
            tables.append(SummaryTable(key, title, [title, _("Tốt (T)"), _("Đạt (Đ)"), _("Cần cố gắng (C)"),
                                                    _("Chưa đánh giá")],
                                       [[t.name, *(t.levels[lv] for lv in TRAIT_LEVELS), t.unrated] for t in rows]))
    if summary.year_end is not None:
        tables += _year_end_tables(summary)
    return tables


def _subject_table(summary: ClassSummary) -> SummaryTable:
    rows: list[list[str | int]] = []
    for s in summary.subjects:
        name = f"{s.name} ({_('tự chọn')})" if s.optional else s.name
        rows.append([name, *(s.levels[lv] for lv in SUBJECT_LEVELS), NOT_APPLICABLE if s.optional else s.unrated])
    return SummaryTable("subjects", _("Môn học và hoạt động giáo dục"),
                        [_("Môn học và hoạt động giáo dục"), _("Hoàn thành tốt (T)"), _("Hoàn thành (H)"),
                         _("Chưa hoàn thành (C)"), _("Chưa đánh giá")], rows)


def _score_table(summary: ClassSummary) -> SummaryTable:
    rows: list[list[str | int]] = [[s.name, *(s.scores[n] for n in SCORES), s.unscored]
                                   for s in summary.subjects if s.tested]
    return SummaryTable("scores", _("Điểm kiểm tra định kì"),
                        [_("Môn học"), *(str(n) for n in SCORES), _("Chưa có điểm")], rows)


def _year_end_tables(summary: ClassSummary) -> list[SummaryTable]:
    counts = summary.year_end
    assert counts is not None
    confirmed = sum(counts.outcomes.values())
    outcome_rows: list[list[str | int]] = [[outcome_label(o), counts.outcomes[o.value]] for o in Outcome]
    outcome_rows.append([_("Chưa xác nhận kết quả"), summary.pupils - confirmed])
    completing = sum(counts.outcomes[o.value] for o in Outcome if o is not Outcome.NOT_COMPLETED)
    completion = (_("Hoàn thành chương trình tiểu học") if summary.school_class.grade == 5
                  else _("Hoàn thành chương trình lớp học"))
    completion_rows: list[list[str | int]] = [
        [completion, completing],
        [_("Được lên lớp (sau đánh giá bổ sung)"), counts.promoted[True]],
        [_("Chưa được lên lớp"), counts.promoted[False]],
        [_("Chờ quyết định của Hiệu trưởng"), counts.promoted[None]],
    ]
    award_rows: list[list[str | int]] = [
        [_("Học sinh Xuất sắc"), counts.titles[EXCELLENT_TITLE]],
        [_("Học sinh Tiêu biểu hoàn thành tốt trong học tập và rèn luyện"), counts.titles[EXEMPLARY_TITLE]],
        [_("Khen thưởng đột xuất (số học sinh)"), counts.adhoc_pupils],
        [_("Khen thưởng đột xuất (số lượt)"), counts.adhoc_awards],
    ]
    return [
        SummaryTable("outcomes", _("Kết quả giáo dục cuối năm"), [_("Kết quả giáo dục"), _("Số học sinh")],
                     outcome_rows),
        SummaryTable("completion", _("Hoàn thành chương trình, lên lớp"), [_("Nội dung"), _("Số học sinh")],
                     completion_rows),
        SummaryTable("awards", _("Khen thưởng"), [_("Danh hiệu, khen thưởng"), _("Số lượng")], award_rows),
    ]


def summary_title() -> str:
    return _("Bảng tổng hợp kết quả đánh giá giáo dục của lớp")


def summary_workbook(summary: ClassSummary, school_name: str) -> bytes:
    """The summary as an .xlsx: a heading, then each table (title, header, rows) with a blank row between."""
    workbook = Workbook()
    sheet = workbook.active
    sheet.title = _("Tổng hợp")[:31]
    bold = Font(bold=True)
    school_class = summary.school_class
    heading = [
        [school_name],
        [summary_title()],
        [_("Lớp %(c)s · Năm học %(y)s · %(p)s", c=school_class.name, y=school_class.school_year.name,
           p=summary.period.name)],
        [_("Sĩ số"), summary.pupils],
        [],
    ]
    for row in heading:
        sheet.append(row)
    sheet["A2"].font = bold
    for table in summary_tables(summary):
        sheet.append([table.title])
        sheet.cell(sheet.max_row, 1).font = bold
        sheet.append(table.header)
        for cell in sheet[sheet.max_row]:
            cell.font = bold
        for row in table.rows:
            sheet.append(row)
        sheet.append([])
    sheet.column_dimensions["A"].width = 48
    return spreadsheets.to_bytes(workbook)
