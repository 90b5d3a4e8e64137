"""The one door every spreadsheet going out passes: no text someone typed is opened as a formula.

A comment or a name that starts with `=`, `+`, `-`, `@`, a tab or a carriage return would be read by
Excel as a formula (`=HYPERLINK(...)` that leaks data, `=cmd|...` DDE), which is CSV/formula injection
in OWASP's words. OWASP's remedy is a leading apostrophe; in an .xlsx the same is said without changing
the text: the cell is stored as a string (openpyxl would otherwise store it as a formula) and carries
Excel's "quote prefix" style, the hidden apostrophe Excel itself sets when a user types `'=...`, so that
editing the cell later does not turn it into a formula either. The text stays exactly what was typed
(a grid exported and imported again keeps its comments). Numbers, dates and booleans are left alone.

Write-only workbooks stream their rows to disk as they are appended, so their rows go through `row`;
`to_bytes` goes over every cell of an ordinary workbook before saving, whatever wrote them.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from typing import Any

from openpyxl import Workbook
from openpyxl.cell.cell import Cell, WriteOnlyCell

# OWASP, "CSV Injection": the characters that make a spreadsheet read a cell as a formula.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def looks_like_formula(value: object) -> bool:
    return isinstance(value, str) and value.startswith(FORMULA_STARTS)


def _as_text(cell: Cell) -> Cell:
    cell.data_type = "s"
    cell.quotePrefix = True
    return cell


def value(sheet: Any, item: Any) -> Any:
    """What to append for `item` to a write-only sheet: the item itself, or a text cell when it looks like a formula."""
    if looks_like_formula(item):
        return _as_text(WriteOnlyCell(sheet, item))
    if isinstance(item, Cell) and item.data_type == "f":
        return _as_text(item)
    return item


def row(sheet: Any, items: Iterable[Any]) -> list[Any]:
    """A row ready for `sheet.append`: every item that would be read as a formula is made plain text."""
    return [value(sheet, item) for item in items]


def neutralise(workbook: Workbook) -> None:
    """Make every formula-looking cell of an ordinary (not write-only) workbook plain text."""
    for sheet in workbook.worksheets:
        for cells in sheet.iter_rows():
            for cell in cells:
                if cell.data_type == "f" or looks_like_formula(cell.value):
                    _as_text(cell)


def to_bytes(workbook: Workbook) -> bytes:
    """The .xlsx file of `workbook`, with no cell left that a spreadsheet would evaluate."""
    if not workbook.write_only:
        neutralise(workbook)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()
