"""Reading a staff list from an Excel (.xlsx) or CSV file, matching columns by their header text."""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import unicodedata

from flask_babel import gettext as _

from portal import uploads
from portal.school.services import ImportRow, StaffError, nfc
from tenants.roles import Role, parse_role

# Header texts accepted for each column (compared without accents' case or spacing differences).
COLUMNS = {
    "username": ("tên đăng nhập", "tài khoản", "username"),
    "full_name": ("họ và tên", "họ tên", "full name", "name"),
    "email": ("email", "thư điện tử"),
    "roles": ("vai trò", "vai trò (cách nhau bởi dấu phẩy)", "roles", "role"),
}
REQUIRED = ("username", "full_name", "roles")
MAX_ROWS = 2000
# A staff list is a few KB; what it may weigh, inflate to and hold before it is refused unread.
LIMITS = uploads.Limits(max_bytes=5 * uploads.MB, max_unpacked=50 * uploads.MB, max_rows=10_000, max_cells=500_000)


def _key(text: object) -> str:
    return " ".join(unicodedata.normalize("NFC", str(text or "")).split()).casefold()


def read_table(filename: str, data: bytes) -> list[list[str]]:
    """The rows of the first sheet (xlsx) or of the CSV file, as text."""
    if filename.lower().endswith(".xlsx"):
        try:
            rows = uploads.read_sheets(data, LIMITS).get(0, [])
        except uploads.UploadRefused as exc:
            raise StaffError(str(exc)) from exc
        return [["" if v is None else str(v) for v in row] for row in rows]
    if filename.lower().endswith(".csv"):
        if len(data) > LIMITS.max_bytes:
            raise StaffError(uploads.too_large(LIMITS))
        for encoding in ("utf-8-sig", "cp1258"):
            try:
                text = data.decode(encoding)
                break
            except UnicodeDecodeError:
                continue
        else:
            raise StaffError(_("Không đọc được tệp CSV: hãy lưu với bảng mã UTF-8."))
        text = uploads.clean(text)  # NUL and other control characters, as from forms (portal.inputs)
        dialect: type[csv.Dialect] = csv.excel
        with contextlib.suppress(csv.Error):  # one column, or nothing to sniff: plain commas then
            dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
        try:
            rows = list(itertools.islice(csv.reader(io.StringIO(text), dialect), LIMITS.max_rows + 1))
        except csv.Error as exc:  # a field longer than csv allows, say
            raise StaffError(_("Không đọc được tệp CSV: hãy lưu với bảng mã UTF-8.")) from exc
        if len(rows) > LIMITS.max_rows:
            raise StaffError(_("Tệp có quá nhiều dòng (tối đa %(n)d).", n=MAX_ROWS))
        return rows
    raise StaffError(_("Chỉ nhận tệp .xlsx hoặc .csv."))


def parse_staff_file(filename: str, data: bytes) -> list[ImportRow]:
    """Import rows with their line numbers; a row's problems of form are already filled in."""
    table = [row for row in read_table(filename, data)]
    header_index = next((i for i, row in enumerate(table) if any(_key(c) in COLUMNS["username"] for c in row)),
                        None)
    if header_index is None:
        raise StaffError(_("Không tìm thấy dòng tiêu đề (cần các cột: Tên đăng nhập, Họ và tên, Vai trò)."))
    header = [_key(c) for c in table[header_index]]
    positions: dict[str, int] = {}
    for name, accepted in COLUMNS.items():
        for i, text in enumerate(header):
            if text in accepted:
                positions[name] = i
                break
    missing = [name for name in REQUIRED if name not in positions]
    if missing:
        labels = {"username": _("Tên đăng nhập"), "full_name": _("Họ và tên"), "roles": _("Vai trò")}
        raise StaffError(_("Thiếu cột: %(c)s.", c=", ".join(labels[m] for m in missing)))
    rows = []
    for offset, raw in enumerate(table[header_index + 1 :], start=header_index + 2):
        cells = {name: nfc(raw[i]) if i < len(raw) else "" for name, i in positions.items()}
        if not any(cells.values()):
            continue
        row = ImportRow(line=offset, username=cells["username"], full_name=cells["full_name"],
                        email=cells.get("email", ""))
        for part in cells["roles"].replace(";", ",").split(","):
            if not part.strip():
                continue
            role = parse_role(part)
            if role is None:
                row.problems.append(_("Vai trò không rõ: %(r)s.", r=part.strip()))
            else:
                row.roles.add(Role(role))
        rows.append(row)
    if not rows:
        raise StaffError(_("Tệp không có dòng dữ liệu nào."))
    if len(rows) > MAX_ROWS:
        raise StaffError(_("Tệp có quá nhiều dòng (tối đa %(n)d).", n=MAX_ROWS))
    return rows
