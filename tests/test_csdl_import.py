"""Reading the CSDL ngành pupil-list export: messy but genuine workbooks, and files that are refused."""

from __future__ import annotations

import io
import unicodedata
import zipfile
from datetime import date, timedelta

import pytest
from openpyxl import Workbook
from openpyxl.utils.datetime import CALENDAR_MAC_1904

from portal.assessment import csdl
from portal.assessment.csdl import NOT_XLSX, ImportFileError, PupilRow, parse_pupil_list

TODAY = date(2025, 1, 15)
CORRUPT = "Tệp Excel bị hỏng hoặc không đúng định dạng .xlsx. Hãy xuất lại danh sách từ CSDL ngành."
HEADER = ["Mã học sinh", "Họ tên", "Ngày sinh", "Mã lớp"]


def nfd(text: str) -> str:
    return unicodedata.normalize("NFD", text)


def xlsx(*sheets: tuple[str, list[list[object]]], epoch: object = None) -> bytes:
    """A workbook with the given sheets; an empty list is a blank row."""
    workbook = Workbook()
    workbook.remove(workbook.active)
    if epoch is not None:
        workbook.epoch = epoch
    for title, rows in sheets:
        sheet = workbook.create_sheet(title)
        for row in rows:
            sheet.append(row)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def pupils(*rows: list[object], header: list[str] = HEADER) -> bytes:
    return xlsx(("Danh sách", [header, *rows]))


def parse(data: bytes, filename: str = "danh_sach.xlsx") -> list[PupilRow]:
    return parse_pupil_list(filename, data, today=TODAY)


def rewrite(data: bytes, part: str, old: bytes, new: bytes) -> bytes:
    """The workbook with one replacement in the XML of one part, as other programs write it."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            content = source.read(info)
            if info.filename == part:
                assert old in content
                content = content.replace(old, new)
            target.writestr(info, content)
    return out.getvalue()


def refused(data: bytes, filename: str = "danh_sach.xlsx") -> str:
    with pytest.raises(ImportFileError) as caught:
        parse(data, filename)
    return str(caught.value)


def test_a_messy_export_is_read_exactly():
    header = [
        "STT", "Mã\nhọc sinh", "Họ và\ntên", "Ngày\r\nsinh", "Giới\ntính", "Lớp", "Dân tộc",
        "Trạng thái\nHS", "Số định danh\ncá nhân", "Loại khuyết\n tật", "Ghi chú",
    ]  # fmt: skip
    sheet = [
        ["DANH SÁCH HỌC SINH NĂM HỌC 2024-2025"],
        ["Trường Tiểu học Kim Đồng", None, None, "Mã học sinh: do CSDL ngành cấp"],
        [],
        header,
        [1, 7912345678, nfd("Nguyễn  Văn An "), "05/09/2017", "Nam", "1a", "Kinh", nfd("Đang học"),
         79217001234, None, "x"],
        [2, "0112345678", nfd("Trần Thị\nBình"), date(2016, 3, 14), "nữ", " 2A", nfd("Tày"), "Đang học",
         "001216005678", nfd("Khuyết tật nhìn"), None],
        [],
        [3, 7912345679.0, "Lê Hoàng Cường", 42005, "NAM", "4B", "Kinh", "Chuyển đến", 1215001234, None, None],
        [4, "7912345678", "Phạm Thị Dung", "31/02/2015", "Nu", "3B", "Kinh", "Đang học", "12345", None, None],
        [None, None, None, None, None, None, None, None, None, None, None],
        [5, "7912345680", "Hoàng Văn Em", "1.6.2005", "Trai", " 5c ", None, None, None, None, None],
        [6, None, "Vũ Thị Giang", "2-3-2021", "NỮ", "1B", None, None, None, None, None],
        [7, None, None, None, None, None, None, None, None, None, "ghi chú cuối bảng"],
        [8, "7912345681", "   ", None, None, None, None, None, None, None, None],
    ]  # fmt: skip
    catalogue = [["Mã dân tộc", "Tên dân tộc"], ["01", "Kinh"], ["02", "Tày"]]

    rows = parse(xlsx(("Học sinh", sheet), ("Danh mục dân tộc", catalogue)))

    assert rows == [
        PupilRow(line=5, class_code="1A", pupil_code="7912345678", full_name="Nguyễn Văn An",
                 birth_date=date(2017, 9, 5), gender="Nam", status="Đang học", ethnicity="Kinh",
                 disability=None, personal_id="079217001234", problems=[]),
        PupilRow(line=6, class_code="2A", pupil_code="0112345678", full_name="Trần Thị Bình",
                 birth_date=date(2016, 3, 14), gender="Nữ", status="Đang học", ethnicity="Tày",
                 disability="Khuyết tật nhìn", personal_id="001216005678", problems=[]),
        PupilRow(line=8, class_code="4B", pupil_code="7912345679", full_name="Lê Hoàng Cường",
                 birth_date=date(2015, 1, 1), gender="Nam", status="Chuyển đến", ethnicity="Kinh",
                 disability=None, personal_id="001215001234", problems=[]),
        PupilRow(line=9, class_code="3B", pupil_code="7912345678", full_name="Phạm Thị Dung",
                 birth_date=None, gender="Nữ", status="Đang học", ethnicity="Kinh", disability=None,
                 personal_id="12345",
                 problems=["Ngày sinh không hợp lệ: 31/02/2015", "Số định danh cá nhân phải gồm 12 chữ số: 12345",
                           "Trùng Mã học sinh với dòng 5"]),
        PupilRow(line=11, class_code="5C", pupil_code="7912345680", full_name="Hoàng Văn Em",
                 birth_date=date(2005, 6, 1), gender=None, status=None, ethnicity=None, disability=None,
                 personal_id=None,
                 problems=["Ngày sinh 01/06/2005 không phù hợp với học sinh tiểu học (trên 16 tuổi)",
                           "Giới tính không hợp lệ: Trai (chỉ nhận Nam hoặc Nữ)"]),
        PupilRow(line=12, class_code="1B", pupil_code="", full_name="Vũ Thị Giang", birth_date=date(2021, 3, 2),
                 gender="Nữ", status=None, ethnicity=None, disability=None, personal_id=None,
                 problems=["Thiếu Mã học sinh",
                           "Ngày sinh 02/03/2021 không phù hợp với học sinh tiểu học (dưới 5 tuổi)"]),
        PupilRow(line=14, class_code="", pupil_code="7912345681", full_name="", birth_date=None,
                 problems=["Thiếu Họ tên", "Thiếu Mã lớp", "Thiếu Ngày sinh"]),
    ]  # fmt: skip
    for row in rows:
        for value in (row.full_name, row.status, row.ethnicity, row.disability):
            assert value is None or unicodedata.is_normalized("NFC", value)


@pytest.mark.parametrize("stored", [b"7912345678.0", b"7.912345678E9", b"7912345678"])
def test_a_code_stored_as_a_number_reads_as_its_digits(stored: bytes):
    data = rewrite(pupils([1234567890, "Đỗ An", "05/09/2017", "1A"]), "xl/worksheets/sheet1.xml",
                   b"<v>1234567890</v>", b"<v>" + stored + b"</v>")  # fmt: skip
    assert parse(data)[0].pupil_code == "7912345678"


def test_a_required_mark_and_either_name_of_a_column_are_accepted():
    header = ["Mã học sinh (*)", "HỌ TÊN", "Ngày sinh*", "Lớp", "Mã lớp"]
    [row] = parse(pupils(["7912345678", "Đỗ An", "5/9/2017", "Lớp 1A", "1a"], header=header))
    read = (row.pupil_code, row.full_name, row.birth_date, row.class_code)
    assert read == ("7912345678", "Đỗ An", date(2017, 9, 5), "1A")  # "Mã lớp" wins over "Lớp"


def test_an_excel_1904_workbook_reads_serial_numbers_on_its_own_calendar():
    data = xlsx(("Danh sách", [HEADER, ["7912345678", "Đỗ An", 40543, "1A"]]), epoch=CALENDAR_MAC_1904)
    assert parse(data)[0].birth_date == date(2015, 1, 1)


@pytest.mark.parametrize(
    ("born", "problem"),
    [
        (date(2009, 1, 15), None),
        (date(2009, 1, 14), "Ngày sinh 14/01/2009 không phù hợp với học sinh tiểu học (trên 16 tuổi)"),
        (date(2020, 1, 15), None),
        (date(2020, 1, 16), "Ngày sinh 16/01/2020 không phù hợp với học sinh tiểu học (dưới 5 tuổi)"),
        (TODAY + timedelta(days=1), "Ngày sinh 16/01/2025 không phù hợp với học sinh tiểu học (dưới 5 tuổi)"),
    ],
)
def test_birth_dates_outside_primary_school_ages_are_problems(born: date, problem: str | None):
    [row] = parse(pupils(["7912345678", "Đỗ An", born.strftime("%d/%m/%Y"), "1A"]))
    assert row.birth_date == born
    assert row.problems == ([problem] if problem else [])


def test_the_age_bounds_hold_on_29_february():
    data = pupils(["7912345678", "Đỗ An", "28/02/2019", "1A"], ["7912345679", "Đỗ Bình", "01/03/2019", "1A"])
    rows = parse_pupil_list("ds.xlsx", data, today=date(2024, 2, 29))  # 2019 has no 29 February
    assert [row.problems for row in rows] == [
        [], ["Ngày sinh 01/03/2019 không phù hợp với học sinh tiểu học (dưới 5 tuổi)"],
    ]  # fmt: skip


@pytest.mark.parametrize("text", ["2015-01-01", "1/1/15", "01/13/2015", "00/01/2015", "31-01.2015", "hôm qua"])
def test_unreadable_date_texts_are_problems(text: str):
    [row] = parse(pupils(["7912345678", "Đỗ An", text, "1A"]))
    assert (row.birth_date, row.problems) == (None, [f"Ngày sinh không hợp lệ: {text}"])


def test_the_header_is_found_on_another_sheet_when_the_first_has_none():
    guide = [["Hướng dẫn"], ["Không sửa tên các cột."]]
    data = xlsx(("Hướng dẫn", guide), ("Danh sách", [[], HEADER, ["7912345678", "Đỗ An", "05/09/2017", "1A"]]))
    [row] = parse(data)
    assert (row.line, row.pupil_code) == (3, "7912345678")


def test_the_first_sheet_wins_when_several_have_the_header():
    first = [HEADER, ["7912345678", "Đỗ An", "05/09/2017", "1A"]]
    second = [HEADER, ["7999999999", "Mẫu", "01/01/2017", "9Z"]]
    assert [row.pupil_code for row in parse(xlsx(("Danh sách", first), ("Mẫu", second)))] == ["7912345678"]


@pytest.mark.parametrize(("data", "filename"), [(b"hello", "x.xlsx"), (pupils(), "danh_sach.csv"),
                                                (b"Ma hoc sinh,Ho ten\n1,A\n", "danh_sach.csv"),
                                                (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "cu.xlsx")])  # fmt: skip
def test_anything_but_an_xlsx_file_is_refused(data: bytes, filename: str):
    assert refused(data, filename) == NOT_XLSX == "Chỉ nhận tệp Excel .xlsx xuất từ CSDL ngành."


def test_a_broken_or_foreign_zip_is_refused():
    whole = pupils(["7912345678", "Đỗ An", "05/09/2017", "1A"])
    assert refused(whole[: len(whole) // 2]) == CORRUPT
    foreign = io.BytesIO()
    with zipfile.ZipFile(foreign, "w") as archive:
        archive.writestr("word/document.xml", "<document/>")
    assert refused(foreign.getvalue()) == CORRUPT


def test_a_sheet_with_broken_xml_is_refused():
    data = pupils(["7912345678", "Đỗ An", "05/09/2017", "1A"])
    assert refused(rewrite(data, "xl/worksheets/sheet1.xml", b"</sheetData>", b"</sheetDat>")) == CORRUPT


def test_missing_required_columns_are_named():
    data = pupils(["7912345678", "Đỗ An"], header=["Mã học sinh", "Họ và tên", "Giới tính"])
    assert refused(data) == "Tệp thiếu cột bắt buộc: Ngày sinh, Mã lớp."


def test_a_header_below_the_first_15_rows_is_not_looked_for():
    above = [[f"Dòng {i}"] for i in range(1, 15)]
    [row] = parse(xlsx(("Danh sách", [*above, HEADER, ["7912345678", "Đỗ An", "05/09/2017", "1A"]])))
    assert row.line == 16
    data = xlsx(("Danh sách", [["Dòng 0"], *above, HEADER, ["7912345678", "Đỗ An", "05/09/2017", "1A"]]))
    assert refused(data) == (
        "Không tìm thấy dòng tiêu đề có cột “Mã học sinh” trong 15 dòng đầu của danh sách. "
        "Hãy dùng tệp xuất nguyên vẹn từ CSDL ngành."
    )


def test_a_list_without_pupils_is_refused():
    assert refused(pupils([], [None, None, None, None])) == "Tệp không có dòng học sinh nào."


def test_too_many_rows_are_refused(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(csdl, "MAX_ROWS", 2)
    two = [["7912345678", "Đỗ An", "05/09/2017", "1A"], [], ["7912345679", "Đỗ Bình", "05/09/2017", "1A"]]
    assert len(parse(pupils(*two))) == 2  # blank rows do not count
    huge = refused(pupils(*two, ["7912345670", "Đỗ Chi", "05/09/2017", "1A"]))
    assert huge == "Tệp quá lớn: mỗi lần chỉ nhận tối đa 2 học sinh và 15 MB."


def test_too_many_bytes_are_refused(monkeypatch: pytest.MonkeyPatch):
    data = pupils(["7912345678", "Đỗ An", "05/09/2017", "1A"])
    monkeypatch.setattr(csdl, "MAX_BYTES", len(data) - 1)
    assert refused(data).startswith("Tệp quá lớn:")
    monkeypatch.setattr(csdl, "MAX_BYTES", len(data))
    monkeypatch.setattr(csdl, "MAX_UNPACKED_BYTES", 1000)  # inflated, every workbook is bigger than this
    assert refused(data).startswith("Tệp quá lớn:")


def test_the_default_limits_are_those_of_the_brief():
    assert (csdl.MAX_ROWS, csdl.MAX_BYTES) == (20_000, 15 * 1024 * 1024)
    assert csdl._huge_message() == "Tệp quá lớn: mỗi lần chỉ nhận tối đa 20.000 học sinh và 15 MB."
