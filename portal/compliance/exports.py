"""The board as an Excel workbook, to send to the Sở GD&ĐT."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from flask_babel import gettext as _
from markupsafe import Markup, escape
from openpyxl import Workbook
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter

from portal import spreadsheets
from portal.compliance.measures import Cell, CellState
from portal.compliance.models import Milestone
from portal.compliance.services import Board
from tenants.models import School

FILLS = {
    CellState.DONE_ON_TIME: "C8E6C9", CellState.DONE_LATE: "FFF3C4", CellState.IN_PROGRESS: "DCEBFA",
    CellState.OVERDUE: "F8C9C4", CellState.NOT_STARTED: "EEEEEE", CellState.NOT_MEASURABLE: "FFFFFF",
    CellState.NO_ONE_IN_SCOPE: "FFFFFF", CellState.NOT_COUNTED: "FFFFFF",
}


def cell_text(cell: Cell) -> str:
    """The words of a cell, as the board prints them."""
    state = cell.state
    if state is CellState.DONE_ON_TIME:
        return _("Đúng hạn %(d)s", d=cell.completed_on.strftime("%d/%m/%Y") if cell.completed_on else "")
    if state is CellState.DONE_LATE:
        return _("Trễ %(n)d ngày (%(d)s)", n=cell.days_late,
                 d=cell.completed_on.strftime("%d/%m/%Y") if cell.completed_on else "")
    if state is CellState.IN_PROGRESS:
        if cell.awaiting_review:
            return _("Chờ Phòng duyệt minh chứng")
        text = f"{cell.percent}%"
        if cell.forecast_on:
            text += " · " + _("dự kiến %(d)s", d=cell.forecast_on.strftime("%d/%m/%Y"))
        return text
    if state is CellState.OVERDUE:
        return _("Quá hạn") + (f" · {cell.percent}%" if cell.total > 1 else "")
    return state.label


def cell_words() -> dict[object, str]:
    """Every word a cell may use, translated once per page (a page shows hundreds of cells)."""
    words: dict[object, str] = {state: state.label for state in CellState}
    # Without arguments gettext hands back the translated pattern; each cell fills it in.
    # Keys that no state's value can equal (a CellState is a str: "overdue" would replace its label).
    words.update({"+late": _("trễ %(n)d ngày"), "+overdue": _("quá %(n)d ngày"), "+forecast": _("dự kiến %(d)s"),
                  "+awaiting": _("chờ Phòng duyệt minh chứng"), "+no_forecast": _("chưa đủ dữ liệu dự báo"),
                  "+returned": _("minh chứng bị trả lại")})
    return words


def cell_html(cell: Cell, words: dict[object, str], href: str | None = None,
              missing_href: str | None = None) -> Markup:
    """A board cell as HTML: plain string building, as the board shows hundreds (a macro costs 10x)."""
    state = cell.state
    label = escape(words[state])
    head = f'<a href="{escape(href)}">{label}</a>' if href else str(label)
    percent = "" if cell.percent is None else f"{cell.percent}%"
    if percent and missing_href:
        percent = f'<a href="{escape(missing_href)}">{percent}</a>'
    small: list[str] = []
    if state is CellState.DONE_ON_TIME:
        small = [_fmt(cell.completed_on)]
    elif state is CellState.DONE_LATE:
        small = [_fmt(cell.completed_on), escape(words["+late"] % {"n": cell.days_late})]
    elif state is CellState.IN_PROGRESS and cell.awaiting_review:
        small = [escape(words["+awaiting"])]
    elif state is CellState.IN_PROGRESS:
        when = (words["+forecast"] % {"d": _fmt(cell.forecast_on)} + (" ⚠" if cell.at_risk else "")
                if cell.forecast_on else words["+no_forecast"])
        small = [percent, escape(when)]
    elif state is CellState.OVERDUE:
        small = ([percent] if cell.total > 1 else []) + [escape(words["+overdue"] % {"n": cell.days_late})]
        small += [escape(words["+returned"])] if cell.returned else []
    elif state is CellState.NOT_STARTED and cell.returned:
        small = [escape(words["+returned"])]
    tail = f"<small>{' · '.join(small)}</small>" if small else ""
    return Markup(f'<span class="cell st-{state.value}" data-state="{state.value}">{head}{tail}</span>')


def _fmt(day: date | None) -> str:
    return day.strftime("%d/%m/%Y") if day else ""


def board_workbook(board: Board, milestones: Sequence[Milestone], schools: Sequence[School]) -> bytes:
    book = Workbook()
    sheet = book.active
    sheet.title = _("Tiến độ")[:31]
    sheet.append([_("Tiến độ triển khai học bạ số, năm học %(y)s, ngày %(d)s", y=board.year_label,
                    d=board.today.strftime("%d/%m/%Y"))])
    sheet["A1"].font = Font(bold=True, size=13)
    sheet.append([_("Trường")] + [f"{m.phase}. {m.title} ({m.scope.label}) — {m.deadline.strftime('%d/%m/%Y')}"
                                   for m in milestones])
    for column in range(1, len(milestones) + 2):
        header = sheet.cell(row=2, column=column)
        header.font, header.alignment = Font(bold=True), Alignment(wrap_text=True, vertical="top")
        sheet.column_dimensions[get_column_letter(column)].width = 38 if column == 1 else 22
    for school in schools:
        cells = [board.cell(school, m) for m in milestones]
        sheet.append([school.name] + [cell_text(c) for c in cells])
        for column, cell in enumerate(cells, start=2):
            target = sheet.cell(row=sheet.max_row, column=column)
            target.fill = PatternFill("solid", fgColor=FILLS[cell.state])
    sheet.freeze_panes = "B3"
    return spreadsheets.to_bytes(book)
