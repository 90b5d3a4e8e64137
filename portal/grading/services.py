"""Rating grids of Thông tư 27: which grids a teacher may open, reading a grid, saving changed rows.

Two kinds of grid, both one row per pupil enrolled in a class (studying or transferred in):
- a subject grid (class x subject x period): level T/H/C, the periodic test score where the subject is
  tested in that grade and period, and a comment -- one `SubjectRating` per pupil;
- the class assessment (class x period, the GVCN's): level T/Đ/C and a comment per quality and
  competency -- one `TraitRating` per pupil and trait -- plus height, weight and days absent -- one
  `PeriodNote` per pupil.

Each of those database rows is a *record* of the grid, addressed by a key ("12" for pupil 12's subject
rating, "12:t5" for trait 5, "12:note"), and carries a `version`. A save names the version each record
was loaded at; a record changed meanwhile is a conflict, and then nothing is written (a save is all or
nothing), so that the teacher chooses, cell by cell, whose value stays.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter, namedtuple
from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import cache, cached_property
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from flask_babel import gettext as _
from sqlalchemy.orm import joinedload

from portal import audit, collation
from portal.assessment import review
from portal.assessment.models import (
    Enrolment,
    EnrolmentStatus,
    Period,
    PeriodNote,
    Pupil,
    SchoolClass,
    SchoolYear,
    Subject,
    SubjectRating,
    TeachingAssignment,
    Trait,
    TraitKind,
    TraitRating,
)
from portal.audit import AuditEntry
from portal.extensions import db, utcnow
from portal.grading.models import UnsavedCell
from portal.i18n import remembered_gettext
from portal.schoolyear.services import get_class, subjects_of_class
from tenants.models import School, User
from tenants.roles import Permission


def N_(text: str) -> str:
    """Marks a Vietnamese source string for translation; it is translated where it is shown."""
    return text


SUGGESTIONS_FILE = Path(__file__).with_name("data") / "comment_suggestions.json"
ACTIVE = (EnrolmentStatus.STUDYING, EnrolmentStatus.TRANSFERRED_IN)
SUBJECT_LEVELS = ("T", "H", "C")
TRAIT_LEVELS = ("T", "Đ", "C")
MAX_COMMENT = 1000
MAX_ROWS_PER_SAVE = 2000
SAVE_ACTION = "grading.saved"

# Whole words a teacher may type or paste instead of the letter (compared case-insensitively).
LEVEL_WORDS = {
    "level": {"hoàn thành tốt": "T", "hoàn thành": "H", "chưa hoàn thành": "C", "htt": "T", "ht": "H",
              "cht": "C"},
    "trait_level": {"tốt": "T", "đạt": "Đ", "cần cố gắng": "C", "d": "Đ", "ccg": "C"},
}

FIELD_LABELS = {
    "level": N_("Mức đạt được"),
    "score": N_("Điểm KTĐK"),
    "comment": N_("Nhận xét"),
    "height_cm": N_("Chiều cao (cm)"),
    "weight_kg": N_("Cân nặng (kg)"),
    "absent_excused": N_("Nghỉ có phép"),
    "absent_unexcused": N_("Nghỉ không phép"),
}
SECTION_LABELS = {
    TraitKind.QUALITY.value: N_("Phẩm chất"),
    TraitKind.GENERAL.value: N_("Năng lực chung"),
    TraitKind.SPECIFIC.value: N_("Năng lực đặc thù"),
    "health": N_("Thể chất, chuyên cần"),
}
SECTIONS = tuple(SECTION_LABELS)
KIND_ORDER = {TraitKind.QUALITY: 0, TraitKind.GENERAL: 1, TraitKind.SPECIFIC: 2}
NOTE_FIELDS = ("height_cm", "weight_kg", "absent_excused", "absent_unexcused")
# Bounds of the measurements: wide enough for any primary pupil, narrow enough to catch a typo.
HEIGHT_CM = (50, 200)
WEIGHT_KG = (10.0, 100.0)
ABSENT_DAYS = (0, 200)


class GridClosed(PermissionError):
    """The period's entry window is closed: the grid can only be read."""


class BadChanges(ValueError):
    """The saved data is not shaped as the grid's API expects (not a user's typing mistake)."""


class CellInvalid(ValueError):
    """One cell's value cannot be accepted; the message is for the teacher."""


# --- what a grid is ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    part: str  # "" a subject rating, "t<trait id>" a trait rating, "note" the period note
    field: str
    kind: str  # level | trait_level | score | text | int | decimal
    label_source: str  # the Vietnamese source text of the header
    group: str = ""  # the trait's name in the class assessment
    section: str = ""  # quality / general / specific / health in the class assessment

    @property
    def id(self) -> str:
        return f"{self.part}.{self.field}" if self.part else self.field

    @property
    def label(self) -> str:
        # Remembered: the grid asks for every column's label several times (headers, messages).
        return remembered_gettext(self.label_source)

    @property
    def title(self) -> str:
        """The header text in one line, in the reader's language (messages)."""
        return f"{self.group} – {self.label}" if self.group else self.label

    @property
    def source_title(self) -> str:
        """The header text in Vietnamese, the language of the record (Excel files)."""
        return f"{self.group} – {self.label_source}" if self.group else self.label_source


@dataclass(frozen=True)
class PupilRow:
    number: int  # STT
    enrolment_id: int
    pupil_code: str
    full_name: str


@dataclass
class Grid:
    kind: str  # "subject" or "class"
    school_class: SchoolClass
    period: Period
    columns: list[Column]
    subject: Subject | None = None
    tested: bool = False
    traits: list[Trait] = field(default_factory=list)

    @cached_property
    def pupils(self) -> list[PupilRow]:
        """The class's pupils, read when first asked for (a page whose rows are kept rendered never asks)."""
        return _pupils(self.school_class)

    @property
    def key(self) -> str:
        if self.subject is not None:
            return f"subject-{self.school_class.id}-{self.subject.id}-{self.period.id}"
        return f"class-{self.school_class.id}-{self.period.id}"

    @property
    def title(self) -> str:
        what = self.subject.name if self.subject is not None else _("Phẩm chất, năng lực")
        return f"{self.school_class.name} · {what} · {self.period.name}"

    @property
    def parts(self) -> list[str]:
        if self.kind == "subject":
            return [""]
        return [f"t{t.id}" for t in self.traits] + ["note"]

    def pupil(self, enrolment_id: int) -> PupilRow | None:
        return self._by_enrolment.get(enrolment_id)

    @cached_property
    def _by_enrolment(self) -> dict[int, PupilRow]:
        return {p.enrolment_id: p for p in self.pupils}

    def column(self, part: str, field_name: str) -> Column | None:
        """The column of a record's field; an untested subject's score too (it exists, to be refused)."""
        found = next((c for c in self.columns if c.part == part and c.field == field_name), None)
        if found is None and self.kind == "subject" and not part and field_name == "score":
            return Column("", "score", "score", FIELD_LABELS["score"])
        return found

    def trait(self, part: str) -> Trait | None:
        return next((t for t in self.traits if f"t{t.id}" == part), None)

    def section_columns(self, section: str) -> list[Column]:
        return [c for c in self.columns if c.section == section]


@dataclass
class Record:
    """The current state of one record of a grid (version 0: never saved)."""

    key: str
    version: int = 0
    values: dict[str, Any] = field(default_factory=dict)


def record_key(enrolment_id: int, part: str) -> str:
    return f"{enrolment_id}:{part}" if part else str(enrolment_id)


def split_key(key: str) -> tuple[int, str] | None:
    """(enrolment id, part) of a record key, or None when it is not one."""
    match = re.fullmatch(r"(\d{1,12})(?::(t\d{1,12}|note))?", key)
    if match is None:
        return None
    return int(match.group(1)), match.group(2) or ""


# --- finding grids -----------------------------------------------------------------------------------


def _period_of(school_class: SchoolClass, period_id: int) -> Period | None:
    return next((p for p in school_class.school_year.periods if p.id == period_id), None)


def subject_grid(school: School, class_id: int, subject_id: int, period_id: int) -> Grid | None:
    """The subject grid, or None when the ids do not make one in this school."""
    school_class = get_class(school, class_id)
    if school_class is None:
        return None
    subject = db.session.scalar(sa.select(Subject).where(Subject.id == subject_id, Subject.school_id == school.id,
                                                         Subject.school_year_id == school_class.school_year_id)
                                .options(joinedload(Subject.grades)))
    period = _period_of(school_class, period_id)
    spec = subject.for_grade(school_class.grade) if subject is not None else None
    if spec is None or period is None:
        return None
    tested = spec.is_tested(period.code)
    columns = [Column("", "level", "level", FIELD_LABELS["level"])]
    if tested:
        columns.append(Column("", "score", "score", FIELD_LABELS["score"]))
    columns.append(Column("", "comment", "text", FIELD_LABELS["comment"]))
    return Grid("subject", school_class, period, columns, subject=subject, tested=tested)


def class_grid(school: School, class_id: int, period_id: int) -> Grid | None:
    """The class assessment grid (qualities, competencies, measurements), or None."""
    school_class = get_class(school, class_id)
    if school_class is None:
        return None
    period = _period_of(school_class, period_id)
    if period is None:
        return None
    traits = sorted((t for t in school_class.school_year.traits if t.from_grade <= school_class.grade),
                    key=lambda t: (KIND_ORDER[t.kind], t.position))
    columns = []
    for trait in traits:
        part, section = f"t{trait.id}", trait.kind.value
        columns.append(Column(part, "level", "trait_level", N_("Mức"), group=trait.name, section=section))
        columns.append(Column(part, "comment", "text", FIELD_LABELS["comment"], group=trait.name,
                              section=section))
    kinds = {"height_cm": "int", "weight_kg": "decimal", "absent_excused": "int", "absent_unexcused": "int"}
    columns += [Column("note", name, kinds[name], FIELD_LABELS[name], section="health") for name in NOTE_FIELDS]
    return Grid("class", school_class, period, columns, traits=traits)


def _pupils(school_class: SchoolClass) -> list[PupilRow]:
    rows = db.session.execute(
        sa.select(Enrolment.id, Pupil.pupil_code, Pupil.full_name).join(Pupil, Pupil.id == Enrolment.pupil_id)
        .where(Enrolment.class_id == school_class.id, Enrolment.status.in_(ACTIVE))).all()
    ordered = sorted(rows, key=lambda r: (name_key(r.full_name), r.pupil_code))
    return [PupilRow(n, r.id, r.pupil_code, r.full_name) for n, r in enumerate(ordered, start=1)]


# Vietnamese alphabetical order (a ă â b c d đ e ê ...), tones second: the order of a class list.
# Vietnamese order (by given name) lives with the shared plumbing: every list of names sorts the same way.
name_key = collation.name_key


# --- a teacher's grids -------------------------------------------------------------------------------


def default_period(year: SchoolYear, today: date) -> Period | None:
    """The period open today, else the latest one whose window has opened, else the first."""
    periods = list(year.periods)
    if not periods:
        return None
    open_now = next((p for p in periods if p.is_open(today)), None)
    started = [p for p in periods if p.entry_opens_on is not None and p.entry_opens_on <= today]
    return open_now or (started[-1] if started else periods[0])


@dataclass
class GridLink:
    school_class: SchoolClass
    subject: Subject | None  # None: the class assessment
    editable: bool  # hers to fill in (the window may still be closed)
    filled: int = 0
    total: int = 0


@dataclass
class ClassCard:
    school_class: SchoolClass
    homeroom: bool
    links: list[GridLink] = field(default_factory=list)


def my_grids(school: School, year: SchoolYear, period: Period, user_id: int,
             permissions: Set[Permission]) -> list[ClassCard]:
    """The grids the user may open in the year: her class's, her assigned subjects', or all (read-only)."""
    enters = Permission.ENTER_RATINGS in permissions
    cards: dict[int, ClassCard] = {}
    for school_class in year.classes:
        if enters and school_class.homeroom_teacher_id == user_id:
            card = cards[school_class.id] = ClassCard(school_class, homeroom=True)
            card.links = [GridLink(school_class, s, True) for s in subjects_of_class(school_class)]
            card.links.append(GridLink(school_class, None, Permission.CONFIRM_RESULTS in permissions))
    if enters:
        assignments = db.session.scalars(
            sa.select(TeachingAssignment).join(SchoolClass, SchoolClass.id == TeachingAssignment.class_id)
            .where(TeachingAssignment.teacher_id == user_id, SchoolClass.school_year_id == year.id,
                   TeachingAssignment.school_id == school.id)).all()
        for assignment in assignments:
            school_class = assignment.school_class
            card = cards.setdefault(school_class.id, ClassCard(school_class, homeroom=False))
            if not card.homeroom:
                card.links.append(GridLink(school_class, assignment.subject, True))
    if Permission.VIEW_ALL_RATINGS in permissions:
        for school_class in year.classes:
            card = cards.setdefault(school_class.id, ClassCard(school_class, homeroom=False))
            shown = {link.subject.id if link.subject else None for link in card.links}
            card.links += [GridLink(school_class, s, False) for s in subjects_of_class(school_class)
                           if s.id not in shown]
            if None not in shown:
                card.links.append(GridLink(school_class, None, False))
    ordered = sorted(cards.values(), key=lambda c: (not c.homeroom, c.school_class.grade, c.school_class.name))
    for card in ordered:
        card.links.sort(key=lambda link: link.subject.position if link.subject else 10_000)
    _count_progress(ordered, period)
    return ordered


def _count_progress(cards: list[ClassCard], period: Period) -> None:
    class_ids = [c.school_class.id for c in cards]
    if not class_ids:
        return
    active = (Enrolment.class_id.in_(class_ids), Enrolment.status.in_(ACTIVE))
    totals = dict(db.session.execute(sa.select(Enrolment.class_id, sa.func.count()).where(*active)
                                     .group_by(Enrolment.class_id)).all())
    rated = db.session.execute(
        sa.select(Enrolment.class_id, SubjectRating.subject_id, sa.func.count())
        .join(Enrolment, Enrolment.id == SubjectRating.enrolment_id)
        .where(*active, SubjectRating.period_id == period.id, SubjectRating.level.is_not(None))
        .group_by(Enrolment.class_id, SubjectRating.subject_id)).all()
    subject_counts = {(class_id, subject_id): n for class_id, subject_id, n in rated}
    per_pupil = db.session.execute(
        sa.select(Enrolment.class_id, TraitRating.enrolment_id, sa.func.count())
        .join(Enrolment, Enrolment.id == TraitRating.enrolment_id)
        .where(*active, TraitRating.period_id == period.id, TraitRating.level.is_not(None))
        .group_by(Enrolment.class_id, TraitRating.enrolment_id)).all()
    for card in cards:
        school_class = card.school_class
        wanted = sum(1 for t in school_class.school_year.traits if t.from_grade <= school_class.grade)
        complete = sum(1 for class_id, _e, n in per_pupil if class_id == school_class.id and n >= wanted)
        for link in card.links:
            link.total = totals.get(school_class.id, 0)
            link.filled = (subject_counts.get((school_class.id, link.subject.id), 0) if link.subject else complete)


# --- reading a grid ----------------------------------------------------------------------------------


def _values_of(part: str, row: Any) -> dict[str, Any]:
    if part == "note":
        if row is None:
            return {"height_cm": None, "weight_kg": None, "absent_excused": 0, "absent_unexcused": 0}
        return {name: getattr(row, name) for name in NOTE_FIELDS}
    if row is None:
        values: dict[str, Any] = {"level": None, "comment": ""}
    else:
        values = {"level": row.level, "comment": row.comment or ""}
    if not part:
        values["score"] = row.score if row is not None else None
    return values


# What a grid shows of each kind of record (besides the enrolment and the trait it belongs to).
SUBJECT_COLUMNS = ("level", "score", "comment", "version")
TRAIT_COLUMNS = ("trait_id", "level", "comment", "version")
NOTE_COLUMNS = (*NOTE_FIELDS, "version")


def _record_queries(grid: Grid, ids: list[int]) -> list[tuple[Any, tuple[str, ...], Any, tuple[Any, ...]]]:
    """Per kind of record of the grid: its model, the columns shown, its record key, and the criteria that
    select the rows of these pupils."""
    if grid.subject is not None:
        kinds = [(SubjectRating, SUBJECT_COLUMNS, lambda r: record_key(r.enrolment_id, ""),
                  (SubjectRating.subject_id == grid.subject.id,))]
    else:
        kinds = [(TraitRating, TRAIT_COLUMNS, lambda r: record_key(r.enrolment_id, f"t{r.trait_id}"),
                  (TraitRating.trait_id.in_([t.id for t in grid.traits]),)),
                 (PeriodNote, NOTE_COLUMNS, lambda r: record_key(r.enrolment_id, "note"), ())]
    return [(model, columns, key_of, (*criteria, model.period_id == grid.period.id, model.enrolment_id.in_(ids)))
            for model, columns, key_of, criteria in kinds]


def _load_rows(grid: Grid, enrolment_ids: Iterable[int], *, lock: bool) -> dict[str, Any]:
    """The grid's database rows of these pupils (ORM objects, to be written), by record key; locked for the
    save when `lock`."""
    ids = list(enrolment_ids)
    if not ids:
        return {}
    rows: dict[str, Any] = {}
    for model, _columns, key_of, where in _record_queries(grid, ids):
        query = sa.select(model).where(*where)
        if lock:
            # Locked until the transaction ends: a concurrent save of the same rows waits, then sees
            # the version this one wrote (PostgreSQL; SQLite serialises writers anyway).
            query = query.with_for_update().execution_options(populate_existing=True)
        for row in db.session.scalars(query):
            rows[key_of(row)] = row
    return rows


def _read_rows(grid: Grid, ids: list[int]) -> dict[str, Any]:
    """The grid's rows of these pupils by record key, as plain rows of the columns shown: a class's grid
    has some 600 records, and reading them as ORM objects cost more than the rest of the page. Each row is
    made a named tuple, whose fields are read ten times faster than a result row's by name (each is read
    several times: its key, its values, its version)."""
    rows: dict[str, Any] = {}
    for model, columns, key_of, where in _record_queries(grid, ids):
        query = sa.select(model.enrolment_id, *(getattr(model, name) for name in columns)).where(*where)
        make = _plain_row(columns)._make
        for row in db.session.execute(query):
            plain = make(row)
            rows[key_of(plain)] = plain
    return rows


@cache
def _plain_row(columns: tuple[str, ...]) -> type:
    return namedtuple("GridRow", ("enrolment_id", *columns))


def grid_records(grid: Grid) -> dict[str, Record]:
    """Every record of the grid with its values and version (empty records for unsaved ones)."""
    rows = _read_rows(grid, [p.enrolment_id for p in grid.pupils]) if grid.pupils else {}
    records = {}
    parts = grid.parts
    for pupil in grid.pupils:
        for part in parts:
            key = record_key(pupil.enrolment_id, part)
            row = rows.get(key)
            records[key] = Record(key, row.version if row else 0, _values_of(part, row))
    return records


def display(value: Any) -> str:
    """A stored value as the grid shows it (decimals with a comma, as Vietnamese writes them)."""
    if value is None:
        return ""
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else f"{value:.1f}".rstrip("0").replace(".", ",")
    return str(value)


@cache
def comment_suggestions() -> dict[str, dict[str, list[str]]]:
    """Suggested comments per level: {"subject": {"T": [...], ...}, "trait": {...}}."""
    return json.loads(SUGGESTIONS_FILE.read_text(encoding="utf-8"))


# --- checking one cell -------------------------------------------------------------------------------


def normalise(column: Column, raw: Any, *, tested: bool = True) -> Any:
    """The value to store for what was typed or pasted in a cell; CellInvalid says why not."""
    if column.kind in ("level", "trait_level"):
        return _level(column.kind, raw)
    if column.kind == "score":
        value = _whole_number(raw, 1, 10, _("Điểm KTĐK phải là số nguyên từ 1 đến 10."))
        if value is not None and not tested:
            raise CellInvalid(_("Môn này không có bài kiểm tra định kì ở kì này: để trống ô điểm."))
        return value
    if column.kind == "text":
        text = " ".join(unicodedata.normalize("NFC", _text(raw)).split())
        if len(text) > MAX_COMMENT:
            raise CellInvalid(_("Nhận xét dài %(n)d ký tự, tối đa %(max)d ký tự.", n=len(text), max=MAX_COMMENT))
        return text
    if column.kind == "decimal":
        return _weight(raw)
    if column.field == "height_cm":
        return _whole_number(raw, *HEIGHT_CM, _("Chiều cao phải là số nguyên (cm) từ %(a)d đến %(b)d.",
                                                a=HEIGHT_CM[0], b=HEIGHT_CM[1]))
    days = _whole_number(raw, *ABSENT_DAYS, _("Số ngày nghỉ phải là số nguyên từ %(a)d đến %(b)d.",
                                              a=ABSENT_DAYS[0], b=ABSENT_DAYS[1]))
    return days or 0


def _text(raw: Any) -> str:
    if raw is None:
        return ""
    if isinstance(raw, float) and raw.is_integer():
        return str(int(raw))
    return str(raw)


def _level(kind: str, raw: Any) -> str | None:
    allowed = SUBJECT_LEVELS if kind == "level" else TRAIT_LEVELS
    message = (_("Mức đạt được chỉ nhận T, H hoặc C.") if kind == "level"
               else _("Mức đạt được chỉ nhận T, Đ hoặc C."))
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise CellInvalid(message)
    text = " ".join(unicodedata.normalize("NFC", raw).split())
    if not text:
        return None
    word = LEVEL_WORDS[kind].get(text.casefold())
    value = word or text.upper()
    if value not in allowed:
        raise CellInvalid(message)
    return value


def _whole_number(raw: Any, low: int, high: int, message: str) -> int | None:
    if raw is None or isinstance(raw, bool):
        if raw is None:
            return None
        raise CellInvalid(message)
    if isinstance(raw, float):
        if not raw.is_integer():
            raise CellInvalid(message)
        raw = int(raw)
    if isinstance(raw, str):
        text = raw.strip()
        if not text:
            return None
        if not re.fullmatch(r"\d{1,4}", text):
            raise CellInvalid(message)
        raw = int(text)
    if not isinstance(raw, int) or not low <= raw <= high:
        raise CellInvalid(message)
    return raw


def _weight(raw: Any) -> float | None:
    message = _("Cân nặng phải là số (kg) từ %(a)d đến %(b)d, ví dụ 25,5.", a=int(WEIGHT_KG[0]), b=int(WEIGHT_KG[1]))
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    if isinstance(raw, bool):
        raise CellInvalid(message)
    if isinstance(raw, str):
        text = raw.strip().replace(",", ".")
        if not re.fullmatch(r"\d{1,3}(\.\d{1,2})?", text):
            raise CellInvalid(message)
        raw = float(text)
    if not isinstance(raw, int | float) or not WEIGHT_KG[0] <= raw <= WEIGHT_KG[1]:
        raise CellInvalid(message)
    return round(float(raw), 1)


# --- saving ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RowChange:
    """The changed cells of one record, with the version the teacher's page loaded it at."""

    key: str
    version: int
    cells: Mapping[str, Any]


@dataclass(frozen=True)
class CellError:
    key: str
    field: str  # "" when the whole row is refused
    message: str


@dataclass
class Conflict:
    """A record someone else saved after the teacher loaded it: her cells and the current values."""

    key: str
    version: int
    mine: dict[str, Any]
    theirs: dict[str, Any]
    current: dict[str, Any]
    by: str
    at: datetime | None


@dataclass
class SaveResult:
    errors: list[CellError] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)
    versions: dict[str, int] = field(default_factory=dict)  # the records' versions after the save
    values: dict[str, dict[str, Any]] = field(default_factory=dict)  # the records' stored values after it
    changed_cells: int = 0
    changed_rows: int = 0
    diffs: dict[str, dict[str, list[Any]]] = field(default_factory=dict)  # {key: {field: [old, new]}}
    review_cleared: list[str] = field(default_factory=list)  # pupils whose results review mark was cleared
    written: bool = False

    @property
    def ok(self) -> bool:
        return not self.errors and not self.conflicts


def parse_changes(payload: Any) -> list[RowChange]:
    """The rows of a save request ({"rows": [{"key", "version", "cells": {...}}]}); BadChanges if malformed."""
    rows = payload.get("rows") if isinstance(payload, dict) else None
    if not isinstance(rows, list) or len(rows) > MAX_ROWS_PER_SAVE:
        raise BadChanges("rows must be a list")
    changes = []
    for row in rows:
        if not isinstance(row, dict):
            raise BadChanges("each row must be an object")
        key, version, cells = row.get("key"), row.get("version"), row.get("cells")
        if (not isinstance(key, str) or isinstance(version, bool) or not isinstance(version, int) or version < 0
                or not isinstance(cells, dict) or not all(isinstance(k, str) for k in cells)):
            raise BadChanges("a row needs key (text), version (whole number) and cells (object)")
        if not all(v is None or isinstance(v, str | int | float) for v in cells.values()):
            raise BadChanges("cell values are text, numbers or null")
        changes.append(RowChange(key, version, cells))
    return changes


def save_grid(school: School, grid: Grid, changes: Sequence[RowChange], *, actor: User, today: date,
              dry_run: bool = False, overwrite: bool = False, source: str = "grid",
              partial: bool = False) -> SaveResult:
    """Write the changed rows together, or nothing when a cell is invalid or a row was changed meanwhile.

    `partial` (the grid) writes every valid cell of the rows nobody changed meanwhile and keeps each
    refused cell as an `UnsavedCell` with its reason, so that nothing typed is lost or blocks the rest.
    `dry_run` checks and counts without writing; `overwrite` takes every row as loaded at its current
    version (an import the teacher confirmed over the conflicts). Does not commit.
    """
    if not grid.period.is_open(today):
        raise GridClosed(closed_message(grid.period))
    result = SaveResult()
    checked = _check_cells(grid, changes, result)
    rows = _load_rows(grid, {enrolment_id for _c, enrolment_id, _p, _v in checked}, lock=not dry_run)
    planned = []
    for change, enrolment_id, part, values in checked:
        row = rows.get(change.key)
        current, version = _values_of(part, row), (row.version if row is not None else 0)
        diff = {name: [current[name], value] for name, value in values.items() if current[name] != value}
        if version != change.version and not overwrite and diff:
            result.conflicts.append(Conflict(change.key, version, mine=values,
                                             theirs={name: current[name] for name in values}, current=current,
                                             by="", at=row.updated_at if row is not None else None))
            continue
        result.versions[change.key], result.values[change.key] = version, current
        if diff:
            planned.append((change.key, enrolment_id, part, row, version, diff))
            result.diffs[change.key] = diff
    if result.conflicts:
        _name_editors(school, grid, result.conflicts, rows)
    result.changed_rows = len(planned)
    result.changed_cells = sum(len(diff) for *_rest, diff in planned)
    if partial and not dry_run:
        _keep_unsaved(school, grid, changes, result, actor=actor)
    if (not result.ok and not partial) or dry_run or not planned:
        return result
    _write(school, grid, planned, result, actor=actor, source=source)
    return result


def _keep_unsaved(school: School, grid: Grid, changes: Sequence[RowChange], result: SaveResult, *,
                  actor: User) -> None:
    """Remember each refused cell with its reason; forget those that came back valid (saved or unchanged)."""
    refused = {(e.key, e.field): e.message for e in result.errors if e.field}
    answered = {(c.key, name) for c in changes if c.key in result.versions for name in c.cells}
    kept = {(u.record_key, u.field): u for u in db.session.scalars(
        sa.select(UnsavedCell).where(UnsavedCell.grid_key == grid.key))}
    for spot, row in kept.items():
        if spot in answered and spot not in refused:
            db.session.delete(row)
    raw = {(c.key, name): value for c in changes for name, value in c.cells.items()}
    for spot, message in refused.items():
        row = kept.get(spot)
        if row is None:
            row = UnsavedCell(school_id=school.id, grid_key=grid.key, record_key=spot[0], field=spot[1])
            db.session.add(row)
        row.raw = "" if raw.get(spot) is None else str(raw[spot])
        row.message, row.user_id, row.updated_at = message, actor.id, utcnow()


def unsaved_cells(grid: Grid) -> list[UnsavedCell]:
    """The cells of the grid typed but refused, still waiting for a correction."""
    return list(db.session.scalars(sa.select(UnsavedCell).where(UnsavedCell.grid_key == grid.key)
                                   .order_by(UnsavedCell.id)))


def _check_cells(grid: Grid, changes: Sequence[RowChange],
                 result: SaveResult) -> list[tuple[RowChange, int, str, dict[str, Any]]]:
    checked = []
    seen = Counter(change.key for change in changes)
    for change in changes:
        target = split_key(change.key)
        if target is None or grid.pupil(target[0]) is None or target[1] not in grid.parts:
            result.errors.append(CellError(change.key, "", _("Dòng này không thuộc bảng đang mở (học sinh đã chuyển "
                                                              "lớp hoặc bảng đã thay đổi). Hãy tải lại trang.")))
            continue
        if seen[change.key] > 1:
            result.errors.append(CellError(change.key, "", _("Dòng được gửi hai lần trong cùng một lần lưu.")))
            continue
        values = {}
        for name, raw in change.cells.items():
            column = grid.column(target[1], name)
            if column is None:
                result.errors.append(CellError(change.key, name, _("Cột này không thuộc bảng đang mở.")))
                continue
            try:
                values[name] = normalise(column, raw, tested=grid.tested)
            except CellInvalid as exc:
                result.errors.append(CellError(change.key, name, str(exc)))
        checked.append((change, target[0], target[1], values))
    return checked


def _new_row(grid: Grid, school: School, enrolment_id: int, part: str) -> Any:
    common = {"school_id": school.id, "enrolment_id": enrolment_id, "period_id": grid.period.id}
    if part == "note":
        return PeriodNote(**common, absent_excused=0, absent_unexcused=0)
    if part:
        return TraitRating(**common, trait_id=int(part[1:]), comment="")
    assert grid.subject is not None
    return SubjectRating(**common, subject_id=grid.subject.id, comment="")


def _write(school: School, grid: Grid, planned: list[tuple[str, int, str, Any, int, dict[str, list[Any]]]],
           result: SaveResult, *, actor: User, source: str) -> None:
    now = utcnow()
    trail: dict[str, dict[str, Any]] = {}
    rated: set[int] = set()
    for key, enrolment_id, part, row, version, diff in planned:
        if row is None:
            row = _new_row(grid, school, enrolment_id, part)
            db.session.add(row)
        for name, (_old, new) in diff.items():
            setattr(row, name, new)
        row.version, row.updated_at = version + 1, now
        if part != "note":
            row.updated_by_id = actor.id
            rated.add(enrolment_id)
        result.versions[key] = version + 1
        result.values[key] = _values_of(part, row)
        pupil = grid.pupil(enrolment_id)
        trait = grid.trait(part)
        trail[key] = {"pupil": f"{pupil.pupil_code} {pupil.full_name}" if pupil else str(enrolment_id),
                      **({"trait": trait.name} if trait else {}), "cells": diff}
    db.session.flush()  # a row inserted meanwhile by someone else fails here, inside the service
    written = {(key, name) for key, *_rest, diff in planned for name in diff}
    for kept in unsaved_cells(grid):  # a value saved since (by anyone, or from Excel) replaces a refused one
        if (kept.record_key, kept.field) in written:
            db.session.delete(kept)
    audit.record(SAVE_ACTION, actor=actor, school_id=school.id, obj=grid.school_class, summary=grid.title,
                 changes={"grid": grid.key, "source": source, "period": grid.period.code,
                          "subject": grid.subject.code if grid.subject else None, "rows": trail})
    if grid.period.is_year_end and rated:
        cleared = review.clear_results_review(
            sorted(rated), actor=actor, reason=_("Đánh giá cuối năm thay đổi: %(g)s", g=grid.title))
        result.review_cleared = [p.full_name for p in grid.pupils if p.enrolment_id in set(cleared)]
    result.written = True


def _name_editors(school: School, grid: Grid, conflicts: list[Conflict], rows: Mapping[str, Any]) -> None:
    """Who saved each conflicting record last: from the row, or (measurements) from the audit trail."""
    user_ids = {getattr(rows.get(c.key), "updated_by_id", None) for c in conflicts} - {None}
    names = dict(db.session.execute(sa.select(User.id, User.full_name).where(User.id.in_(user_ids))).all())
    missing = set()
    for conflict in conflicts:
        user_id = getattr(rows.get(conflict.key), "updated_by_id", None)
        conflict.by = names.get(user_id, "") if user_id else ""
        if not conflict.by:
            missing.add(conflict.key)
    if missing:
        for key, name in _editors_from_trail(school, grid, missing).items():
            next(c for c in conflicts if c.key == key).by = name


def _editors_from_trail(school: School, grid: Grid, keys: set[str]) -> dict[str, str]:
    entries = db.session.scalars(
        sa.select(AuditEntry).where(AuditEntry.school_id == school.id, AuditEntry.action == SAVE_ACTION,
                                    AuditEntry.object_type == "SchoolClass",
                                    AuditEntry.object_id == str(grid.school_class.id))
        .order_by(AuditEntry.id.desc()).limit(500))
    found: dict[str, str] = {}
    for entry in entries:
        if (entry.changes or {}).get("grid") != grid.key:
            continue
        for key in keys - set(found):
            if key in (entry.changes or {}).get("rows", {}):
                found[key] = entry.actor_name
        if len(found) == len(keys):
            break
    return found


def closed_message(period: Period) -> str:
    """Why a period's grid is read-only, with its window."""
    if period.entry_opens_on is None or period.entry_closes_on is None:
        return _("Kì %(p)s chưa được mở để nhập đánh giá. Bảng chỉ xem được.", p=period.name)
    return _("Kì %(p)s chỉ nhập được từ %(a)s đến %(b)s. Bảng chỉ xem được.", p=period.name,
             a=period.entry_opens_on.strftime("%d/%m/%Y"), b=period.entry_closes_on.strftime("%d/%m/%Y"))


def describe_cell(grid: Grid, key: str, field_name: str) -> str:
    """"STT 3 · Trần Minh Khoa · Yêu nước – Mức": where a cell is, for messages."""
    target = split_key(key)
    pupil = grid.pupil(target[0]) if target else None
    where = f"{pupil.number}. {pupil.full_name}" if pupil else key
    column = grid.column(target[1], field_name) if target else None
    if column is None:
        trait = grid.trait(target[1]) if target else None
        return f"{where} · {trait.name}" if trait else where
    return f"{where} · {column.title}"
