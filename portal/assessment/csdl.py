"""Reading the pupil list exported from CSDL ngành (the Ministry sector database) as an Excel workbook.

Pure parsing: no database and no Flask. The caller turns the rows into pupils and classes; here each
row only carries what was read and, in `problems`, why it cannot be used as it is (in Vietnamese, for
the user). A file that cannot be read at all raises `ImportFileError`.
"""

from __future__ import annotations

import io
import re
import unicodedata
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING
from xml.etree.ElementTree import ParseError

from openpyxl.utils.datetime import from_excel

from portal import uploads

if TYPE_CHECKING:
    from openpyxl.workbook.workbook import Workbook
    from openpyxl.worksheet._read_only import ReadOnlyWorksheet

# Header texts accepted per field; the first one names the column in messages. Compared after
# `_header_key`, so case, Unicode form, line breaks and a "(*)" mark of a required column do not matter.
COLUMNS: dict[str, tuple[str, ...]] = {
    "class_code": ("Mã lớp", "Lớp"),
    "pupil_code": ("Mã học sinh", "Mã HS"),
    "full_name": ("Họ tên", "Họ và tên"),
    "birth_date": ("Ngày sinh",),
    "gender": ("Giới tính",),
    "status": ("Trạng thái HS", "Trạng thái học sinh", "Trạng thái"),
    # When the status began: for a pupil transferred in, the day she joined (kept as the enrolment's date).
    "status_date": ("Ngày nhập trạng thái", "Ngày trạng thái"),
    "ethnicity": ("Dân tộc",),
    "disability": ("Loại khuyết tật", "Khuyết tật"),
    "personal_id": ("Số định danh cá nhân", "Mã định danh cá nhân", "Số định danh"),
}
REQUIRED = ("pupil_code", "full_name", "birth_date", "class_code")

MAX_BYTES = 15 * 1024 * 1024
MAX_ROWS = 20_000
# A zip bomb is small on disk: bound what openpyxl would inflate too (a full 20,000-pupil export is ~30 MB).
MAX_UNPACKED_BYTES = 200 * 1024 * 1024
HEADER_SEARCH_ROWS = 15
# Primary pupils are 6 to 10 years old; late starters, repeaters and pupils with disabilities stay
# within these bounds, and anything outside is almost surely a typing error.
OLDEST_AGE = 16
YOUNGEST_AGE = 5

NOT_XLSX = "Chỉ nhận tệp Excel .xlsx xuất từ CSDL ngành."
_ZIP_SIGNATURE = b"PK\x03\x04"
_TEXT_DATE = re.compile(r"(\d{1,2})([/.-])(\d{1,2})\2(\d{4})")
_GENDERS = {"nam": "Nam", "nữ": "Nữ", "nu": "Nữ"}
_PERSONAL_ID_DIGITS = 12


class ImportFileError(ValueError):
    """The whole file is refused; the message, in Vietnamese, is meant for the user."""


@dataclass
class PupilRow:
    """One pupil line of the export, as read; `problems` lists why it cannot be imported as it is."""

    line: int
    class_code: str
    pupil_code: str
    full_name: str
    birth_date: date | None
    gender: str | None = None
    status: str | None = None
    status_date: date | None = None
    ethnicity: str | None = None
    disability: str | None = None
    personal_id: str | None = None
    problems: list[str] = field(default_factory=list)


def parse_pupil_list(filename: str, data: bytes, *, today: date) -> list[PupilRow]:
    """The pupil rows of a CSDL ngành export, with their Excel row numbers and problems filled in."""
    workbook = _open_workbook(filename, data)
    try:
        sheet, header_line, header = _find_header(workbook)
        positions = _column_positions(header)
        rows = [
            _pupil_row(line, cells, today=today, epoch=workbook.epoch)
            for line, cells in _data_rows(sheet, header_line, positions)
        ]
    except ImportFileError:
        raise
    except uploads.UploadRefused as exc:  # too many rows or cells, or too slow
        raise ImportFileError(str(exc)) from exc
    except (ParseError, KeyError, OSError, ValueError, zipfile.BadZipFile) as exc:  # cells are read lazily
        raise ImportFileError(_corrupt_message()) from exc
    finally:
        workbook.close()
    if not rows:
        raise ImportFileError("Tệp không có dòng học sinh nào.")
    _mark_duplicates(rows)
    return rows


def _open_workbook(filename: str, data: bytes) -> Workbook:
    if not filename.lower().endswith(".xlsx") or not data.startswith(_ZIP_SIGNATURE):
        raise ImportFileError(NOT_XLSX)
    if len(data) > MAX_BYTES:
        raise ImportFileError(_huge_message())
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
    except zipfile.BadZipFile as exc:
        raise ImportFileError(_corrupt_message()) from exc
    if unpacked > MAX_UNPACKED_BYTES:
        raise ImportFileError(_huge_message())
    try:  # the ratio, what the members really inflate to, the time: the checks every upload passes
        return uploads.open_workbook(data, limits())
    except uploads.UnreadableUpload as exc:
        raise ImportFileError(_corrupt_message()) from exc
    except uploads.UploadRefused as exc:
        raise ImportFileError(str(exc)) from exc


def limits() -> uploads.Limits:
    """The upload limits of a CSDL ngành workbook (read when called: tests lower the constants)."""
    return uploads.Limits(max_bytes=MAX_BYTES, max_unpacked=MAX_UNPACKED_BYTES, max_members=2_000,
                          max_rows=3 * MAX_ROWS + 1_000, max_cells=(3 * MAX_ROWS + 1_000) * 60, max_seconds=60)


def _find_header(workbook: Workbook) -> tuple[ReadOnlyWorksheet, int, list[str]]:
    """The sheet, the row number and the header keys; the first sheet unless only another has the header."""
    for sheet in workbook.worksheets:
        sheet.reset_dimensions()  # some exporters write a wrong <dimension>, which would cut rows short
        top = sheet.iter_rows(min_row=1, max_row=HEADER_SEARCH_ROWS, values_only=True)
        for line, cells in enumerate(top, start=1):
            header = [_header_key(value) for value in cells]
            if _position(header, "pupil_code") is not None:
                return sheet, line, header
    raise ImportFileError(
        f"Không tìm thấy dòng tiêu đề có cột “{COLUMNS['pupil_code'][0]}” trong {HEADER_SEARCH_ROWS} dòng đầu "
        "của danh sách. Hãy dùng tệp xuất nguyên vẹn từ CSDL ngành."
    )


def _column_positions(header: list[str]) -> dict[str, int]:
    positions = {name: i for name in COLUMNS if (i := _position(header, name)) is not None}
    missing = [COLUMNS[name][0] for name in REQUIRED if name not in positions]
    if missing:
        raise ImportFileError(f"Tệp thiếu cột bắt buộc: {', '.join(missing)}.")
    return positions


def _position(header: list[str], name: str) -> int | None:
    """Where the field's column is; an earlier accepted text wins ("Mã lớp" over "Lớp")."""
    for text in COLUMNS[name]:
        key = _header_key(text)
        if key in header:
            return header.index(key)
    return None


def _data_rows(
    sheet: ReadOnlyWorksheet, header_line: int, positions: dict[str, int]
) -> Iterator[tuple[int, dict[str, object]]]:
    """(Excel row number, value per field) for every non-blank row below the header."""
    width = max(positions.values()) + 1  # columns further right are not read at all
    count = 0
    body = uploads.Budget(limits()).rows(sheet, min_row=header_line + 1, max_col=width)
    for line, values in enumerate(body, start=header_line + 1):
        cells = {name: values[i] for name, i in positions.items()}
        if all(_text(value) == "" for value in cells.values()):
            continue
        count += 1
        if count > MAX_ROWS:
            raise ImportFileError(_huge_message())
        yield line, cells


def _pupil_row(line: int, cells: dict[str, object], *, today: date, epoch: datetime) -> PupilRow:
    problems: list[str] = []
    row = PupilRow(
        line=line,
        class_code=_text(cells["class_code"]).upper(),
        pupil_code=_code(cells["pupil_code"]),
        full_name=_text(cells["full_name"]),
        birth_date=_birth_date(cells["birth_date"], epoch, today, problems),
        gender=_gender(cells.get("gender"), problems),
        status=_text(cells.get("status")) or None,
        status_date=_status_date(cells.get("status_date"), epoch, problems),
        ethnicity=_text(cells.get("ethnicity")) or None,
        disability=_text(cells.get("disability")) or None,
        personal_id=_personal_id(cells.get("personal_id"), problems),
    )
    required = {"pupil_code": row.pupil_code, "full_name": row.full_name, "class_code": row.class_code}
    missing = [f"Thiếu {COLUMNS[name][0]}" for name, value in required.items() if not value]
    if _text(cells["birth_date"]) == "":
        missing.append(f"Thiếu {COLUMNS['birth_date'][0]}")
    row.problems = missing + problems
    return row


def _mark_duplicates(rows: Sequence[PupilRow]) -> None:
    first_line: dict[str, int] = {}
    for row in rows:
        if not row.pupil_code:
            continue
        if row.pupil_code in first_line:
            row.problems.append(f"Trùng Mã học sinh với dòng {first_line[row.pupil_code]}")
        else:
            first_line[row.pupil_code] = row.line


def _birth_date(value: object, epoch: datetime, today: date, problems: list[str]) -> date | None:
    if _text(value) == "":
        return None
    born = _read_date(value, epoch)
    if born is None:
        problems.append(f"Ngày sinh không hợp lệ: {_text(value)}")
        return None
    shown = born.strftime("%d/%m/%Y")
    if born < _years_before(today, OLDEST_AGE):
        problems.append(f"Ngày sinh {shown} không phù hợp với học sinh tiểu học (trên {OLDEST_AGE} tuổi)")
    elif born > _years_before(today, YOUNGEST_AGE):
        problems.append(f"Ngày sinh {shown} không phù hợp với học sinh tiểu học (dưới {YOUNGEST_AGE} tuổi)")
    return born


def _status_date(value: object, epoch: datetime, problems: list[str]) -> date | None:
    if _text(value) == "":
        return None
    day = _read_date(value, epoch)
    if day is None:
        problems.append(f"{COLUMNS['status_date'][0]} không hợp lệ: {_text(value)}")
    return day


def _read_date(value: object, epoch: datetime) -> date | None:
    """A date cell, an Excel serial number (a date column without date format) or d/m/yyyy text."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value < 1:  # 0 and below are not days; fractions of one are times of day
            return None
        try:
            serial = from_excel(value, epoch=epoch)
        except (OverflowError, ValueError):
            return None
        return serial.date() if isinstance(serial, datetime) else None
    match = _TEXT_DATE.fullmatch(_text(value))
    if match is None:
        return None
    day, _sep, month, year = match.groups()
    try:
        return date(int(year), int(month), int(day))
    except ValueError:  # 31/02/2015
        return None


def _years_before(today: date, years: int) -> date:
    try:
        return today.replace(year=today.year - years)
    except ValueError:  # 29 February, in a year that has none
        return today.replace(year=today.year - years, day=28)


def _gender(value: object, problems: list[str]) -> str | None:
    text = _text(value)
    if not text:
        return None
    gender = _GENDERS.get(text.casefold())
    if gender is None:
        problems.append(f"Giới tính không hợp lệ: {text} (chỉ nhận Nam hoặc Nữ)")
    return gender


def _personal_id(value: object, problems: list[str]) -> str | None:
    code = _code(value)
    if not code:
        return None
    # Every 12-digit number starts with a province code from 001 to 096, so a cell stored as a
    # number has lost one or two leading zeros: put them back.
    if isinstance(value, int | float) and len(code) in (_PERSONAL_ID_DIGITS - 2, _PERSONAL_ID_DIGITS - 1):
        code = code.zfill(_PERSONAL_ID_DIGITS)
    if not (code.isascii() and code.isdigit() and len(code) == _PERSONAL_ID_DIGITS):
        problems.append(f"Số định danh cá nhân phải gồm {_PERSONAL_ID_DIGITS} chữ số: {code}")
    return code


def _code(value: object) -> str:
    """A code as text: 7912345678.0 (a number cell) reads "7912345678"; text keeps its leading zeros."""
    return "".join(_text(value).split())


def _text(value: object) -> str:
    """A cell as NFC text with its whitespace collapsed; whole numbers without a trailing ".0"."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return " ".join(unicodedata.normalize("NFC", str(value)).split())


def _header_key(value: object) -> str:
    """Header text compared without case, Unicode-form, line-break or required-mark differences."""
    key = _text(value).casefold()
    return key.removesuffix("(*)").removesuffix("*").rstrip()


def _huge_message() -> str:
    rows = f"{MAX_ROWS:,}".replace(",", ".")
    return f"Tệp quá lớn: mỗi lần chỉ nhận tối đa {rows} học sinh và {MAX_BYTES // (1024 * 1024)} MB."


def _corrupt_message() -> str:
    return "Tệp Excel bị hỏng hoặc không đúng định dạng .xlsx. Hãy xuất lại danh sách từ CSDL ngành."
