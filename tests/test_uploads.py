"""The one door for uploaded files: zip bombs, oversized sheets and files of the wrong type are refused early."""

from __future__ import annotations

import io
import os
import time
import tracemalloc
import zipfile
from collections.abc import Callable
from datetime import date
from types import SimpleNamespace

import pytest
from openpyxl import Workbook

from portal import uploads
from portal.assessment import csdl
from portal.grading import excel
from portal.pupils import results_exchange
from portal.school import services as staff_services
from portal.school.staff_import import parse_staff_file

MB = 1024 * 1024


def workbook_bytes(*rows: list[object]) -> bytes:
    workbook = Workbook()
    for row in rows:
        workbook.active.append(row)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def inflate_sheet(data: bytes, target: int, *, pad: int = 0) -> bytes:
    """The workbook with its first sheet swapped for `target` bytes of rows, highly compressed (a zip bomb)."""
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    rows = b'<row><c t="inlineStr"><is><t>0123456789</t></is></c></row>' * 20_000
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for info in source.infolist():
            if info.filename != "xl/worksheets/sheet1.xml":
                archive.writestr(info, source.read(info))
                continue
            with archive.open(info.filename, "w", force_zip64=True) as stream:
                stream.write(b'<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
                             b"<sheetData>")
                for _ in range(target // len(rows)):
                    stream.write(rows)
                stream.write(b"</sheetData></worksheet>")
        if pad:  # an incompressible picture, as a real workbook may carry
            archive.writestr(zipfile.ZipInfo("xl/media/image1.png"), os.urandom(pad), compress_type=zipfile.ZIP_STORED)
    return out.getvalue()


@pytest.fixture(scope="module")
def bomb() -> bytes:
    """A 1.8 MB .xlsx whose sheet inflates to 400 MB."""
    data = inflate_sheet(workbook_bytes(["Mã học sinh", "Họ tên", "Ngày sinh", "Mã lớp"]), 400 * MB, pad=600_000)
    assert 1.5 * MB < len(data) < 2.5 * MB
    assert sum(i.file_size for i in zipfile.ZipFile(io.BytesIO(data)).infolist()) > 400_000_000
    return data


def _grid_import(data: bytes) -> None:
    grid = SimpleNamespace(key="g", title="Bảng", pupils=[], columns=[])
    excel.read_grid_file(grid, {}, "bang.xlsx", data)  # type: ignore[arg-type]


def _staff_import(data: bytes) -> None:
    parse_staff_file("nhan-su.xlsx", data)


def _pupil_import(data: bytes) -> None:
    csdl.parse_pupil_list("hoc-sinh.xlsx", data, today=date(2025, 9, 5))


def _results_import(data: bytes) -> None:
    year = SimpleNamespace(subjects=[], name="2025-2026")
    results_exchange.parse_results("ket-qua.xlsx", data, year=year, grade=1, period=SimpleNamespace(code="CK1"))  # type: ignore[arg-type]


IMPORTS: dict[str, tuple[Callable[[bytes], None], type[Exception]]] = {
    "grid": (_grid_import, excel.GridFileError),
    "staff": (_staff_import, staff_services.StaffError),
    "pupils": (_pupil_import, csdl.ImportFileError),
    "results": (_results_import, csdl.ImportFileError),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", IMPORTS)
def test_a_zip_bomb_is_refused_fast_and_small_by_every_import(bomb: bytes, name: str):
    read, error = IMPORTS[name]
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(error) as refused:
            read(bomb)
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert elapsed < 1.0, f"{name}: {elapsed:.2f} s"
    assert peak < 50 * MB, f"{name}: {peak / MB:.1f} MB"
    assert "Tệp quá lớn" in str(refused.value) or "bom zip" in str(refused.value)


def test_a_member_inflating_far_beyond_its_size_is_refused_even_under_the_total_limit():
    data = inflate_sheet(workbook_bytes(["a"]), 20 * MB)  # 20 MB from ~60 KB: no spreadsheet is that regular
    with pytest.raises(uploads.UploadRefused, match="bom zip"):
        uploads.read_sheets(data, uploads.Limits())
    with pytest.raises(excel.GridFileError, match="bom zip"):
        _grid_import(data)


def test_what_a_member_really_inflates_to_is_counted_not_only_what_it_declares():
    data = workbook_bytes(["Mã học sinh"], ["7912345678"])
    real = sum(i.file_size for i in zipfile.ZipFile(io.BytesIO(data)).infolist())
    limits = uploads.Limits(max_unpacked=real + 1)
    uploads.check_zip(data, limits)
    # Declared sizes that lie low: the stream is cut at the declared size and the checksum fails.
    lying = _declare_sizes_of(data, 10)
    with pytest.raises(uploads.UnreadableUpload):
        uploads.check_zip(lying, limits)


def _declare_sizes_of(data: bytes, size: int) -> bytes:
    """The archive with every central-directory entry claiming `size` inflated bytes."""
    buffer = bytearray(data)
    at = buffer.find(b"PK\x01\x02")
    while at != -1:
        buffer[at + 24:at + 28] = size.to_bytes(4, "little")
        at = buffer.find(b"PK\x01\x02", at + 4)
    return bytes(buffer)


def test_rows_and_cells_are_bounded_even_when_blank():
    sparse = workbook_bytes(["Mã học sinh"])
    workbook = Workbook()
    workbook.active.append(["Mã học sinh"])
    workbook.active.cell(row=30_000, column=1, value="x")  # 29,998 blank rows in between
    buffer = io.BytesIO()
    workbook.save(buffer)
    limits = uploads.Limits(max_rows=1_000)
    assert uploads.read_sheets(sparse, limits)[0] == [["Mã học sinh"]]
    with pytest.raises(uploads.UploadRefused, match="quá nhiều dòng"):
        uploads.read_sheets(buffer.getvalue(), limits)
    wide = Workbook()
    wide.active.cell(row=1, column=16_000, value="x")
    buffer = io.BytesIO()
    wide.save(buffer)
    with pytest.raises(uploads.UploadRefused, match="quá nhiều dòng hoặc ô"):
        uploads.read_sheets(buffer.getvalue(), uploads.Limits(max_cells=10_000))


def test_reading_stops_when_it_takes_too_long():
    rows = [[f"HS{i}", "Nguyễn Văn An"] for i in range(2_000)]
    with pytest.raises(uploads.UploadRefused, match="quá nhiều thời gian"):
        uploads.read_sheets(workbook_bytes(*rows), uploads.Limits(max_seconds=0))


@pytest.mark.parametrize(("data", "mimetype"), [
    (b"%PDF-1.7\n...", "application/pdf"),
    (b"\x89PNG\r\n\x1a\n....", "image/png"),
    (b"\xff\xd8\xff\xe0....", "image/jpeg"),
    (workbook_bytes(["a"]), "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1....", "application/octet-stream"),
])
def test_evidence_kinds_are_known_by_content(data: bytes, mimetype: str):
    assert uploads.check_evidence(data) == mimetype


@pytest.mark.parametrize("data", [
    b"<!doctype html><script>alert(1)</script>",
    b"<svg onload=alert(1)>",
    b"MZ\x90\x00 an executable",
    b"plain text",
    b"",
])
def test_evidence_of_another_kind_is_refused_with_a_reason(data: bytes):
    with pytest.raises(uploads.UploadRefused) as refused:
        uploads.check_evidence(data)
    assert "Chỉ nhận minh chứng" in str(refused.value) or "Tệp trống" in str(refused.value)


def test_a_zip_that_is_not_an_office_document_is_not_evidence():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("index.html", "<script>alert(1)</script>")
    with pytest.raises(uploads.UploadRefused, match="không phải văn bản"):
        uploads.check_evidence(buffer.getvalue())


def test_certificate_files_are_bounded():
    uploads.check_certificate_file(b"-----BEGIN CERTIFICATE-----\nMII...")  # its type: pki parses it
    for data in (b"", b"\x30" * (uploads.CERTIFICATE_BYTES + 1)):
        with pytest.raises(uploads.UploadRefused):
            uploads.check_certificate_file(data)


def test_control_characters_in_an_uploaded_table_are_removed():
    rows = parse_staff_file("nhan-su.csv", "Tên đăng nhập,Họ và tên,Vai trò\ngv\x00.an,Lê\x07 An,Giáo viên chủ nhiệm\n"
                            .encode())
    assert (rows[0].username, rows[0].full_name) == ("gv.an", "Lê An")


def test_only_the_types_the_door_gives_are_served_as_such():
    assert uploads.is_evidence_mimetype("application/pdf") and uploads.is_evidence_mimetype("image/png")
    assert uploads.is_evidence_mimetype("application/vnd.oasis.opendocument.text")
    assert not uploads.is_evidence_mimetype("text/html") and not uploads.is_evidence_mimetype("image/svg+xml")
