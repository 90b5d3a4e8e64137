"""The one door for spreadsheets going out: typed text never opens as a formula; numbers and dates stay typed."""

from __future__ import annotations

import io
from datetime import date, datetime

import pytest
from openpyxl import Workbook, load_workbook

from portal import spreadsheets

HOSTILE = ['=HYPERLINK("http://x","y")', "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)", "\t=1+1", "\r=1+1"]
PLAIN = ["Nguyễn Văn An", "Hoàn thành tốt", "a=b", "", "1A"]
TYPED = [7, -3, 2.5, date(2017, 9, 5), datetime(2025, 5, 2, 8, 30), True]


def read_back(data: bytes) -> list[tuple[object, str, bool]]:
    sheet = load_workbook(io.BytesIO(data)).worksheets[0]
    return [(c.value, c.data_type, c.quotePrefix) for c in next(sheet.iter_rows(min_row=1, max_row=1))]


@pytest.mark.parametrize("write_only", [False, True])
def test_formula_looking_text_is_text_and_everything_else_is_untouched(write_only: bool):
    workbook = Workbook(write_only=write_only)
    sheet = workbook.create_sheet("x") if write_only else workbook.active
    values = [*HOSTILE, *PLAIN, *TYPED]
    if write_only:
        sheet.append(spreadsheets.row(sheet, values))
    else:
        sheet.append(values)
        sheet.cell(row=1, column=len(values) + 1, value="=1+1")  # written cell by cell, not appended
    cells = read_back(spreadsheets.to_bytes(workbook))
    for text, (value, kind, quoted) in zip(HOSTILE, cells, strict=False):
        assert (value, kind, quoted) == (text, "s", True)
    assert [v for v, _, _ in cells[len(HOSTILE):len(HOSTILE) + len(PLAIN)]] == [t or None for t in PLAIN]
    typed = cells[len(HOSTILE) + len(PLAIN):len(HOSTILE) + len(PLAIN) + len(TYPED)]
    assert [k for _, k, _ in typed] == ["n", "n", "n", "d", "d", "b"]
    assert typed[3][0] == datetime(2017, 9, 5) and typed[0][0] == 7 and typed[1][0] == -3
    assert all(kind != "f" for _, kind, _ in cells)
