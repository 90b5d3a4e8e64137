"""A rating grid as an Excel workbook, and the same workbook read back as the changes it makes.

The exported file has the grid's shape (one row per pupil, one column per cell of the page) and a
hidden sheet naming the grid and the version of every record at export time, so that an import
knows which rows someone else changed after the file was made. Rows are matched by the pupil code
and columns by their header text (written in Vietnamese, the language of the record, whatever the
page's language): a teacher may sort the rows or move the columns.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from typing import Any

from flask_babel import gettext as _
from openpyxl import Workbook
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.datavalidation import DataValidation

from portal import spreadsheets, uploads
from portal.grading.services import (
    TRAIT_LEVELS,
    CellInvalid,
    Column,
    Grid,
    Record,
    RowChange,
    normalise,
    record_key,
)
from tenants.models import School

META_SHEET = "hocba"
MAGIC = "hocba-grid/1"
HEADER_ROW = 4
FIRST_COLUMNS = ("STT", "Mã học sinh", "Họ và tên")
MAX_ROWS = 200
# What an uploaded grid may weigh and hold: one class's file is a few dozen KB.
LIMITS = uploads.Limits(max_bytes=5 * uploads.MB, max_unpacked=50 * uploads.MB, max_rows=5_000, max_cells=500_000)
WIDTHS = {"level": 9, "trait_level": 9, "score": 9, "text": 48, "int": 11, "decimal": 11}


class GridFileError(ValueError):
    """The file cannot be read as this grid; the message is for the teacher."""


def export_grid(school: School, grid: Grid, records: dict[str, Record]) -> bytes:
    """The grid as an .xlsx file: title lines, a header row, one row per pupil; versions hidden."""
    workbook = Workbook()
    sheet = workbook.active
    sheet.title = _("Bảng đánh giá")[:31]
    sheet["A1"] = school.name
    sheet["A1"].font = Font(bold=True)
    sheet["A2"] = f"{grid.title} · {_('Năm học')} {grid.school_class.school_year.name}"
    sheet["A3"] = _("Không sửa cột Mã học sinh và dòng tiêu đề. Mức đạt được: %(levels)s.",
                    levels=", ".join(TRAIT_LEVELS if grid.kind == "class" else ("T", "H", "C")))
    sheet["A3"].font = Font(italic=True, color="5D6B7A")
    headers = [*FIRST_COLUMNS, *(c.source_title for c in grid.columns)]
    for index, title in enumerate(headers, start=1):
        cell = sheet.cell(row=HEADER_ROW, column=index, value=title)
        cell.font = Font(bold=True)
        cell.fill = PatternFill("solid", fgColor="EEF2F6")
        cell.alignment = Alignment(wrap_text=True, vertical="top")
    for offset, pupil in enumerate(grid.pupils, start=1):
        row = HEADER_ROW + offset
        sheet.cell(row=row, column=1, value=pupil.number)
        sheet.cell(row=row, column=2, value=pupil.pupil_code).number_format = "@"
        sheet.cell(row=row, column=3, value=pupil.full_name)
        for index, column in enumerate(grid.columns, start=4):
            value = records[record_key(pupil.enrolment_id, column.part)].values.get(column.field)
            cell = sheet.cell(row=row, column=index, value=value if value != "" else None)
            if column.kind == "text":
                cell.alignment = Alignment(wrap_text=True, vertical="top")
    _layout(sheet, grid)
    _validations(sheet, grid)
    _meta(workbook, grid, records)
    return spreadsheets.to_bytes(workbook)


def _layout(sheet: Any, grid: Grid) -> None:
    for letter, width in (("A", 6), ("B", 14), ("C", 28)):
        sheet.column_dimensions[letter].width = width
    for index, column in enumerate(grid.columns, start=4):
        sheet.column_dimensions[get_column_letter(index)].width = WIDTHS[column.kind]
    sheet.freeze_panes = sheet.cell(row=HEADER_ROW + 1, column=4)


def _validations(sheet: Any, grid: Grid) -> None:
    """Excel's own checks, so that a wrong letter is caught while typing (the import checks again)."""
    last = HEADER_ROW + max(len(grid.pupils), 1)
    rules = {
        "level": DataValidation(type="list", formula1='"T,H,C"', allow_blank=True),
        "trait_level": DataValidation(type="list", formula1='"T,Đ,C"', allow_blank=True),
        "score": DataValidation(type="whole", operator="between", formula1="1", formula2="10", allow_blank=True),
    }
    messages = {"level": _("Mức đạt được chỉ nhận T, H hoặc C."),
                "trait_level": _("Mức đạt được chỉ nhận T, Đ hoặc C."),
                "score": _("Điểm KTĐK phải là số nguyên từ 1 đến 10.")}
    used = set()
    for index, column in enumerate(grid.columns, start=4):
        rule = rules.get(column.kind)
        if rule is None:
            continue
        letter = get_column_letter(index)
        rule.add(f"{letter}{HEADER_ROW + 1}:{letter}{last}")
        used.add(column.kind)
    for kind in used:
        rules[kind].error, rules[kind].showErrorMessage = messages[kind], True
        sheet.add_data_validation(rules[kind])


def _meta(workbook: Workbook, grid: Grid, records: dict[str, Record]) -> None:
    meta = workbook.create_sheet(META_SHEET)
    meta.sheet_state = "hidden"
    meta.append([MAGIC])
    meta.append(["grid", grid.key])
    meta.append(["title", grid.title])
    meta.append(["key", "version"])
    for key, record in records.items():
        meta.append([key, record.version])


@dataclass
class ImportPlan:
    """What a file would change: the rows to save, the file line of each record, rows refused outright."""

    changes: list[RowChange] = field(default_factory=list)
    lines: dict[str, int] = field(default_factory=dict)  # record key -> line in the file
    problems: list[tuple[int, str]] = field(default_factory=list)  # (line, message)
    rows_read: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def _text(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return " ".join(unicodedata.normalize("NFC", "" if value is None else str(value)).split())


def _read(data: bytes) -> tuple[list[list[Any]], list[list[Any]] | None]:
    """The first sheet's rows and the hidden sheet's rows (None when there is none)."""
    try:
        sheets = uploads.read_sheets(data, LIMITS, names=(0, META_SHEET))
    except uploads.UploadRefused as exc:
        raise GridFileError(str(exc)) from exc
    return sheets.get(0, []), sheets.get(META_SHEET)


def _versions(grid: Grid, meta: list[list[Any]] | None) -> dict[str, int]:
    if not meta or not meta[0] or meta[0][0] != MAGIC:
        raise GridFileError(_("Tệp này không phải bảng đánh giá xuất từ Cổng Học bạ số. Hãy bấm “Xuất Excel”, "
                              "điền vào tệp đó rồi tải lên."))
    info = {str(r[0]): r[1] for r in meta[1:4] if len(r) > 1}
    if info.get("grid") != grid.key:
        raise GridFileError(_("Tệp này là bảng “%(file)s”, không phải bảng đang mở (“%(open)s”).",
                              file=info.get("title") or "?", open=grid.title))
    versions = {}
    for row in meta[4:]:
        if len(row) > 1 and isinstance(row[0], str) and isinstance(row[1], int):
            versions[row[0]] = row[1]
    return versions


def _header(grid: Grid, rows: list[list[Any]]) -> tuple[int, dict[str, int], int]:
    """(index of the header row, {column id: position}, position of the pupil code)."""
    index = next((i for i, row in enumerate(rows) if FIRST_COLUMNS[1] in {_text(v) for v in row}), None)
    if index is None:
        raise GridFileError(_("Không tìm thấy dòng tiêu đề (cần cột Mã học sinh)."))
    titles = {_text(v): i for i, v in enumerate(rows[index]) if _text(v)}
    positions = {}
    for column in grid.columns:  # headers in Vietnamese, as exported, or in the reader's language
        found = next((titles[t] for t in (column.source_title, column.title) if t in titles), None)
        if found is not None:
            positions[column.id] = found
    missing = [c.source_title for c in grid.columns if c.id not in positions]
    if missing:
        raise GridFileError(_("Thiếu cột: %(c)s.", c=", ".join(missing)))
    return index, positions, titles[FIRST_COLUMNS[1]]


def read_grid_file(grid: Grid, records: dict[str, Record], filename: str, data: bytes) -> ImportPlan:
    """The changes a filled-in export makes to the grid as it is now (cells equal to the grid are left out)."""
    if not filename.lower().endswith(".xlsx"):
        raise GridFileError(_("Chỉ nhận tệp .xlsx xuất từ bảng đánh giá."))
    rows, meta = _read(data)
    versions = _versions(grid, meta)
    header, positions, code_at = _header(grid, rows)
    by_code = {p.pupil_code: p for p in grid.pupils}
    plan, seen = ImportPlan(), {}
    for line, row in enumerate(rows[header + 1:], start=header + 2):
        if not any(_text(v) for v in row):
            continue
        plan.rows_read += 1
        code = _text(row[code_at]) if code_at < len(row) else ""
        pupil = by_code.get(code)
        if pupil is None:
            plan.problems.append((line, _("Không có học sinh mã “%(c)s” trong lớp %(l)s.", c=code,
                                          l=grid.school_class.name)))
            continue
        if code in seen:
            plan.problems.append((line, _("Học sinh %(n)s có hai dòng (dòng %(a)d và %(b)d).",
                                          n=pupil.full_name, a=seen[code], b=line)))
            continue
        seen[code] = line
        _plan_row(grid, records, versions, plan, pupil.enrolment_id, line, row, positions)
    if plan.rows_read > MAX_ROWS:
        raise GridFileError(_("Tệp có quá nhiều dòng (tối đa %(n)d).", n=MAX_ROWS))
    return plan


def _plan_row(grid: Grid, records: dict[str, Record], versions: dict[str, int], plan: ImportPlan,
              enrolment_id: int, line: int, row: list[Any], positions: dict[str, int]) -> None:
    cells: dict[str, dict[str, Any]] = {}
    for column in grid.columns:
        position = positions[column.id]
        raw = row[position] if position < len(row) else None
        key = record_key(enrolment_id, column.part)
        if _differs(column, raw, records[key].values.get(column.field)):
            cells.setdefault(key, {})[column.field] = raw
    for key, changed in cells.items():
        plan.changes.append(RowChange(key, versions.get(key, 0), changed))
        plan.lines[key] = line


def _differs(column: Column, raw: Any, current: Any) -> bool:
    try:
        return normalise(column, raw) != current
    except CellInvalid:
        return True  # sent as typed, so that the save reports the cell in the teacher's words
