"""Subject results exchanged with CSDL ngành: one workbook per grade and period (the MOET shape).

A row per pupil: Mã học sinh, Họ tên, Lớp, then for each subject of the grade in catalogue order
"<Môn> - Mức đạt được" (T/H/C) and, where the subject is tested in that period, "<Môn> - Điểm KTĐK".
Importing is a dry run first and writes only on confirmation; a blank cell never erases a rating.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from xml.etree.ElementTree import ParseError

import sqlalchemy as sa
from flask_babel import gettext as _
from openpyxl import Workbook
from sqlalchemy.orm import selectinload

from portal import audit, spreadsheets, uploads
from portal.assessment import review

# The pupil-list parser's file checks (not .xlsx, too big, zip bomb, damaged) and cell reading are
# reused on purpose: both imports must refuse the same files with the same words.
from portal.assessment.csdl import (
    ImportFileError,
    _code,
    _corrupt_message,
    _find_header,
    _header_key,
    _open_workbook,
    _position,
    _text,
)
from portal.assessment.csdl import limits as csdl_limits
from portal.assessment.models import (
    Enrolment,
    Period,
    Pupil,
    SchoolClass,
    SchoolYear,
    Subject,
    SubjectRating,
    YearResult,
)
from portal.extensions import db
from portal.pupils.services import RowAction, fold, name_key
from tenants.models import School, User
from tenants.roles import N_

if TYPE_CHECKING:
    from openpyxl.worksheet._read_only import ReadOnlyWorksheet

LEVEL, SCORE = "level", "score"
HEADERS = {LEVEL: N_("Mức đạt được"), SCORE: N_("Điểm KTĐK")}  # the file's words: never translated there
FIRST_HEADERS = ("Mã học sinh", "Họ tên", "Lớp")
MAX_ROWS = 5_000  # a whole grade of the largest school, several times over
LEVELS = {"t": "T", "h": "H", "c": "C", "hoan thanh tot": "T", "hoan thanh": "H", "chua hoan thanh": "C"}
_SUBJECT_HEADER = re.compile(r"^(?P<subject>.+?)\s*[-–—:]\s*(?P<kind>mức đạt được|điểm ktđk)$")


@dataclass(frozen=True)
class Column:
    subject: Subject
    kind: str

    @property
    def header(self) -> str:
        return f"{self.subject.name} - {HEADERS[self.kind]}"


def columns_for(year: SchoolYear, grade: int, period: Period) -> list[Column]:
    """The subject columns of a grade and period, in catalogue order."""
    columns = []
    for subject in year.subjects:
        spec = subject.for_grade(grade)
        if spec is None:
            continue
        columns.append(Column(subject, LEVEL))
        if spec.is_tested(period.code):
            columns.append(Column(subject, SCORE))
    return columns


def period_of(year: SchoolYear, code: str) -> Period | None:
    return next((p for p in year.periods if p.code == code), None)


def grade_enrolments(year: SchoolYear, grade: int) -> list[Enrolment]:
    """Every enrolment of the grade in that year, by class then by name."""
    enrolments = db.session.scalars(
        sa.select(Enrolment).join(SchoolClass, SchoolClass.id == Enrolment.class_id)
        .where(Enrolment.school_year_id == year.id, SchoolClass.grade == grade)
        .options(selectinload(Enrolment.pupil), selectinload(Enrolment.school_class))).all()
    return sorted(enrolments, key=lambda e: (e.school_class.name, name_key(e.pupil.full_name)))


def _ratings(year: SchoolYear, period: Period) -> dict[tuple[int, int], SubjectRating]:
    rows = db.session.scalars(sa.select(SubjectRating).join(Enrolment, Enrolment.id == SubjectRating.enrolment_id)
                              .where(Enrolment.school_year_id == year.id, SubjectRating.period_id == period.id))
    return {(r.enrolment_id, r.subject_id): r for r in rows}


# --- export ---------------------------------------------------------------------------------------

def results_xlsx(year: SchoolYear, grade: int, period: Period) -> bytes:
    columns = columns_for(year, grade, period)
    ratings = _ratings(year, period)
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(f"Khối {grade} - {period.code}")
    sheet.append(spreadsheets.row(sheet, [*FIRST_HEADERS, *(c.header for c in columns)]))
    for enrolment in grade_enrolments(year, grade):
        cells: list[Any] = [enrolment.pupil.pupil_code, enrolment.pupil.full_name, enrolment.school_class.name]
        for column in columns:
            rating = ratings.get((enrolment.id, column.subject.id))
            cells.append(getattr(rating, column.kind) if rating else None)
        sheet.append(spreadsheets.row(sheet, cells))
    return spreadsheets.to_bytes(workbook)


def export_filename(year: SchoolYear, grade: int, period: Period) -> str:
    return f"ket-qua-khoi-{grade}-{period.code}-{year.name}.xlsx"


# --- reading a file -------------------------------------------------------------------------------

@dataclass
class ResultRow:
    """One pupil line: the level and score read per subject id (None where the cell is blank)."""

    line: int
    pupil_code: str
    full_name: str
    class_name: str
    values: dict[int, dict[str, Any]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def parse_results(filename: str, data: bytes, *, year: SchoolYear, grade: int, period: Period) -> list[ResultRow]:
    """The rows of a results workbook for that grade and period, each with its problems filled in."""
    workbook = _open_workbook(filename, data)
    try:
        sheet, header_line, header = _find_header(workbook)
        shown = [_text(v) for v in next(sheet.iter_rows(min_row=header_line, max_row=header_line, values_only=True))]
        positions = _subject_positions(header, shown, year)
        fixed = {name: _position(header, name) for name in ("pupil_code", "full_name", "class_code")}
        used = [*positions, *(i for i in fixed.values() if i is not None)]
        rows = [_result_row(line, cells, fixed, positions, grade=grade, period=period)
                for line, cells in _body(sheet, header_line, used)]
    except ImportFileError:
        raise
    except uploads.UploadRefused as exc:  # too many rows or cells, or too slow
        raise ImportFileError(str(exc)) from exc
    except (ParseError, KeyError, OSError, ValueError, zipfile.BadZipFile) as exc:  # cells are read lazily
        raise ImportFileError(_corrupt_message()) from exc
    finally:
        workbook.close()
    if not rows:
        raise ImportFileError(_("Tệp không có dòng học sinh nào."))
    _mark_duplicates(rows)
    return rows


def _subject_positions(header: list[str], shown: list[str], year: SchoolYear) -> dict[int, Column]:
    """Which column holds which subject's level or score; `shown` is the header as written, for messages."""
    subjects = {_header_key(s.name): s for s in year.subjects}
    positions: dict[int, Column] = {}
    for i, key in enumerate(header):
        match = _SUBJECT_HEADER.match(key)
        if match is None:
            continue  # STT, Ghi chú, and the like
        subject = subjects.get(_header_key(match["subject"]))
        if subject is None:
            raise ImportFileError(_("Cột “%(c)s” không ứng với môn học nào của năm học %(y)s.", c=shown[i],
                                    y=year.name))
        column = Column(subject, LEVEL if match["kind"] == "mức đạt được" else SCORE)
        if column in positions.values():
            raise ImportFileError(_("Cột “%(c)s” bị lặp.", c=column.header))
        positions[i] = column
    if not positions:
        raise ImportFileError(_("Tệp không có cột kết quả môn học nào (ví dụ “Toán - Mức đạt được”)."))
    return positions


def _body(sheet: ReadOnlyWorksheet, header_line: int, used: list[int]) -> Iterator[tuple[int, tuple[Any, ...]]]:
    width = max(used) + 1
    count = 0
    body = uploads.Budget(csdl_limits()).rows(sheet, min_row=header_line + 1, max_col=width)
    for line, values in enumerate(body, start=header_line + 1):
        padded = (*values, *([None] * (width - len(values))))
        if all(_text(padded[i]) == "" for i in used):
            continue
        count += 1
        if count > MAX_ROWS:
            raise ImportFileError(_("Tệp quá lớn: mỗi lần chỉ nhận tối đa %(n)d học sinh.", n=MAX_ROWS))
        yield line, padded


def _result_row(line: int, cells: tuple[Any, ...], fixed: dict[str, int | None], positions: dict[int, Column], *,
                grade: int, period: Period) -> ResultRow:
    def cell(name: str) -> Any:
        i = fixed[name]
        return None if i is None else cells[i]

    row = ResultRow(line, _code(cell("pupil_code")), _text(cell("full_name")), _text(cell("class_code")).upper())
    if not row.pupil_code:
        row.problems.append(_("Thiếu Mã học sinh"))
    for i, column in positions.items():
        text = _text(cells[i])
        if text == "":
            continue
        value = _read_cell(column, cells[i], text, grade=grade, period=period, problems=row.problems)
        if value is not None:
            row.values.setdefault(column.subject.id, {})[column.kind] = value
    return row


def _read_cell(column: Column, raw: Any, text: str, *, grade: int, period: Period, problems: list[str]) -> Any:
    subject = column.subject
    spec = subject.for_grade(grade)
    if spec is None:
        problems.append(_("%(s)s không học ở khối %(g)d: không nhận “%(v)s”", s=subject.name, g=grade, v=text))
        return None
    if column.kind == LEVEL:
        level = LEVELS.get(fold(text))
        if level is None:
            problems.append(_("%(s)s: mức đạt được “%(v)s” không hợp lệ (chỉ nhận T, H hoặc C)",
                              s=subject.name, v=text))
        return level
    if not spec.is_tested(period.code):
        problems.append(_("%(s)s không có bài kiểm tra định kì ở %(p)s: không nhận điểm “%(v)s”",
                          s=subject.name, p=period.name, v=text))
        return None
    score = _score(raw, text)
    if score is None:
        problems.append(_("%(s)s: điểm KTĐK “%(v)s” không hợp lệ (số nguyên từ 1 đến 10)", s=subject.name, v=text))
    return score


def _score(raw: Any, text: str) -> int | None:
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int | float):
        number = float(raw)
    elif text.isascii() and text.isdigit():
        number = float(text)
    else:
        return None
    if not number.is_integer() or not 1 <= number <= 10:  # never decimals, never 0
        return None
    return int(number)


def _mark_duplicates(rows: list[ResultRow]) -> None:
    first: dict[str, int] = {}
    for row in rows:
        if row.pupil_code in first:
            row.problems.append(_("Trùng Mã học sinh với dòng %(n)d", n=first[row.pupil_code]))
        elif row.pupil_code:
            first[row.pupil_code] = row.line


# --- dry run and confirmation ---------------------------------------------------------------------

@dataclass
class RatingChange:
    subject: Subject
    kind: str
    old: Any
    new: Any

    @property
    def label(self) -> str:
        return f"{self.subject.name} - {_(HEADERS[self.kind])}"

    @property
    def old_text(self) -> str:
        return "—" if self.old is None else str(self.old)

    @property
    def new_text(self) -> str:
        return "—" if self.new is None else str(self.new)


@dataclass
class PlannedResult:
    row: ResultRow
    action: RowAction
    problems: list[str] = field(default_factory=list)
    enrolment: Enrolment | None = None
    changes: list[RatingChange] = field(default_factory=list)
    clears_review: bool = False


@dataclass
class ResultsPlan:
    year: SchoolYear
    grade: int
    period: Period
    rows: list[PlannedResult]

    def of(self, action: RowAction) -> list[PlannedResult]:
        return [r for r in self.rows if r.action is action]

    @property
    def counts(self) -> dict[str, int]:
        return {action.value: len(self.of(action)) for action in RowAction}

    @property
    def has_changes(self) -> bool:
        return bool(self.of(RowAction.UPDATE))


def plan_results_import(school: School, year: SchoolYear, grade: int, period: Period,
                        rows: list[ResultRow]) -> ResultsPlan:
    """Row by row, which ratings confirming would set (old → new) and which rows are refused; writes nothing."""
    enrolments = {e.pupil.pupil_code: e for e in db.session.scalars(
        sa.select(Enrolment).join(Pupil, Pupil.id == Enrolment.pupil_id).where(Enrolment.school_year_id == year.id)
        .options(selectinload(Enrolment.pupil), selectinload(Enrolment.school_class)))}
    ratings = _ratings(year, period)
    reviewed = set(db.session.scalars(sa.select(YearResult.enrolment_id).join(
        Enrolment, Enrolment.id == YearResult.enrolment_id).where(
        Enrolment.school_year_id == year.id, YearResult.results_reviewed_at.is_not(None))))
    subjects = {s.id: s for s in year.subjects}
    planned = []
    for row in rows:
        item = PlannedResult(row, RowAction.REJECT, problems=list(row.problems))
        enrolment = enrolments.get(row.pupil_code)
        if row.pupil_code and enrolment is None:
            item.problems.append(_("Không có học sinh mã %(c)s trong năm học %(y)s", c=row.pupil_code, y=year.name))
        elif enrolment is not None and enrolment.school_class.grade != grade:
            item.problems.append(_("Học sinh học lớp %(c)s, không thuộc khối %(g)d", c=enrolment.school_class.name,
                                   g=grade))
        elif enrolment is not None and row.class_name and row.class_name != enrolment.school_class.name.upper():
            item.problems.append(_("Học sinh học lớp %(c)s, không phải lớp %(f)s", c=enrolment.school_class.name,
                                   f=row.class_name))
        if not item.problems and enrolment is not None:
            item.enrolment = enrolment
            for subject_id, values in row.values.items():
                rating = ratings.get((enrolment.id, subject_id))
                for kind, new in values.items():
                    old = getattr(rating, kind) if rating else None
                    if new != old:
                        item.changes.append(RatingChange(subjects[subject_id], kind, old, new))
            item.action = RowAction.UPDATE if item.changes else RowAction.UNCHANGED
            item.clears_review = bool(item.changes) and enrolment.id in reviewed
        planned.append(item)
    return ResultsPlan(year, grade, period, planned)


def apply_results_import(school: School, plan: ResultsPlan, *, actor: User, filename: str) -> None:
    """Set the planned ratings (a new version of each changed row), in the caller's transaction."""
    if not plan.has_changes:
        return
    ratings = _ratings(plan.year, plan.period)
    for item in plan.of(RowAction.UPDATE):
        enrolment = item.enrolment
        assert enrolment is not None
        for subject_id in dict.fromkeys(c.subject.id for c in item.changes):
            rating = ratings.get((enrolment.id, subject_id))
            if rating is None:
                rating = SubjectRating(school_id=school.id, enrolment_id=enrolment.id, subject_id=subject_id,
                                       period_id=plan.period.id, version=1, updated_by_id=actor.id)
                db.session.add(rating)
            else:
                rating.version += 1
                rating.updated_by_id = actor.id
            for change in item.changes:
                if change.subject.id == subject_id:
                    setattr(rating, change.kind, change.new)
        audit.record("ratings.imported", actor=actor, school_id=school.id, obj=enrolment,
                     summary=f"{enrolment.pupil.full_name} · {plan.period.name}",
                     changes={f"{c.subject.code}.{c.kind}": [c.old, c.new] for c in item.changes})
    review.clear_results_review([r.enrolment.id for r in plan.rows if r.clears_review and r.enrolment],
                                actor=actor, reason=_("Kết quả môn học cập nhật từ tệp"))
    audit.record("results.imported", actor=actor, school_id=school.id, obj=plan.year,
                 summary=_("Nhập kết quả khối %(g)d, %(p)s: %(f)s", g=plan.grade, p=plan.period.name, f=filename),
                 changes={"school_year": plan.year.name, "grade": plan.grade, "period": plan.period.code,
                          "file": filename, **plan.counts,
                          "rejected_lines": [r.row.line for r in plan.of(RowAction.REJECT)]})
