"""The pupil list written back in the shape CSDL ngành exports, so it loads there and here alike."""

from __future__ import annotations

from openpyxl import Workbook

from portal import spreadsheets
from portal.assessment.csdl import COLUMNS
from portal.assessment.models import Enrolment, SchoolYear
from portal.pupils.services import STATUS_LABELS, name_key

SHEET_TITLE = "Danh sách học sinh"
SERIAL_HEADER = "STT"


def pupil_list_xlsx(enrolments: list[Enrolment], *, with_personal_id: bool) -> bytes:
    """One row per enrolment under the parser's first header names; codes and dates written as text."""
    fields = [name for name in COLUMNS if with_personal_id or name != "personal_id"]
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(SHEET_TITLE)
    # STT (số thứ tự) first, as the ministry's lists have it; the parser reads columns by name and skips it.
    sheet.append(spreadsheets.row(sheet, [SERIAL_HEADER, *(COLUMNS[name][0] for name in fields)]))
    ordered = sorted(enrolments, key=lambda e: (e.school_class.grade, e.school_class.name, name_key(e.pupil.full_name)))
    for number, enrolment in enumerate(ordered, start=1):
        values = _values(enrolment)
        sheet.append(spreadsheets.row(sheet, [number, *(values[name] or None for name in fields)]))  # blank, not ""
    return spreadsheets.to_bytes(workbook)


def _values(enrolment: Enrolment) -> dict[str, str]:
    pupil = enrolment.pupil
    return {
        "class_code": enrolment.school_class.name,
        "pupil_code": pupil.pupil_code,
        "full_name": pupil.full_name,
        "birth_date": pupil.birth_date.strftime("%d/%m/%Y") if pupil.birth_date else "",
        "gender": pupil.gender or "",
        # The CSDL words themselves, not the translated labels: this file is read by machines.
        "status": STATUS_LABELS[enrolment.status],
        "status_date": enrolment.enrolled_on.strftime("%d/%m/%Y") if enrolment.enrolled_on else "",
        "ethnicity": pupil.ethnicity or "",
        "disability": pupil.disability or "",
        "personal_id": pupil.personal_id or "",
    }


def export_filename(year: SchoolYear, class_name: str | None) -> str:
    return f"danh-sach-hoc-sinh-{year.name}{'-' + class_name if class_name else ''}.xlsx"
