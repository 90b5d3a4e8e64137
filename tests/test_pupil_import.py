"""Exchange with CSDL ngành: the pupil list (dry run, confirm, idempotent, round trip) and results per grade/period."""

from __future__ import annotations

import html
import io
import re
import unicodedata
import zipfile
from datetime import UTC, date, datetime
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from flask.testing import FlaskClient
from openpyxl import Workbook, load_workbook
from werkzeug.test import TestResponse

from portal.assessment import csdl
from portal.assessment.models import Enrolment, EnrolmentStatus, Pupil, SubjectRating, YearResult
from portal.audit import AuditEntry
from portal.extensions import db
from portal.pupils import results_exchange
from portal.storage import digest_of
from tenants.roles import Role
from tenants.scoping import school_scope
from tests.assessment_factory import make_class, make_year
from tests.conftest import Factory, csrf_token, login

CSDL_HEADERS = [names[0] for names in csdl.COLUMNS.values()]
CHANGE_ACTIONS = ("pupil.created", "pupil.updated", "pupil.imported", "pupil.identity_review_cleared",
                  "ratings.imported", "results.imported", "results.review_cleared")


# --- helpers --------------------------------------------------------------------------------------

def nfd(text: str) -> str:
    return unicodedata.normalize("NFD", text)


def page(response: TestResponse) -> str:
    return html.unescape(response.get_data(as_text=True))


def text_of(response: TestResponse, element_id: str) -> str:
    match = re.search(rf'<(\w+)[^>]*\bid="{element_id}"[^>]*>(.*?)</\1>', page(response), re.S)
    assert match, f"no #{element_id} on the page"
    return " ".join(re.sub(r"<[^>]+>", " ", match.group(2)).split())


def xlsx(*sheets: tuple[str, list[list[object]]]) -> bytes:
    workbook = Workbook()
    workbook.remove(workbook.active)
    for title, rows in sheets:
        sheet = workbook.create_sheet(title)
        for row in rows:
            sheet.append(row)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def read_xlsx(data: bytes) -> list[list[object]]:
    workbook = load_workbook(io.BytesIO(data))  # not read-only: rows padded to the sheet's width
    return [list(row) for row in workbook.worksheets[0].iter_rows(values_only=True)]


def upload(client: FlaskClient, data: bytes, year_id: int, filename: str = "danh_sach_hs.xlsx") -> TestResponse:
    token = csrf_token(client, "/s/lqd/pupils/import")
    return client.post("/s/lqd/pupils/import", content_type="multipart/form-data", data={
        "csrf_token": token, "year_id": year_id, "file": (io.BytesIO(data), filename)})


def confirm(client: FlaskClient, data: bytes, year_id: int, filename: str = "danh_sach_hs.xlsx") -> TestResponse:
    """Post the dry-run page's confirmation for that file, as its button does."""
    token = csrf_token(client, "/s/lqd/pupils/import")
    return client.post("/s/lqd/pupils/import/confirm", data={
        "csrf_token": token, "digest": digest_of(data), "filename": filename, "year_id": year_id})


def entries(app, *names: str) -> list[AuditEntry]:
    with app.app_context():
        found = db.session.scalars(sa.select(AuditEntry).where(AuditEntry.action.in_(names or CHANGE_ACTIONS))
                                   .order_by(AuditEntry.id)).all()
        for entry in found:
            db.session.expunge(entry)
        return found


def snapshot(app, school) -> dict[str, tuple]:
    """Every pupil's identity, enrolments and ratings, to show that nothing changed."""
    with app.app_context(), school_scope(school.id):
        pupils = {p.pupil_code: (tuple(p.identity().items()), p.identity_reviewed_at, p.updated_at)
                  for p in db.session.scalars(sa.select(Pupil))}
        enrolments = sorted((e.pupil_id, e.class_id, e.status) for e in db.session.scalars(sa.select(Enrolment)))
        ratings = sorted((r.enrolment_id, r.subject_id, r.period_id, r.level, r.score, r.version)
                         for r in db.session.scalars(sa.select(SubjectRating)))
        return {"pupils": tuple(sorted(pupils.items())), "enrolments": tuple(enrolments), "ratings": tuple(ratings)}


def pupil_by_code(app, school, code: str) -> tuple[Pupil, list[tuple[str, EnrolmentStatus]]] | None:
    with app.app_context(), school_scope(school.id):
        pupil = db.session.scalar(sa.select(Pupil).where(Pupil.pupil_code == code))
        if pupil is None:
            return None
        placed = [(e.school_class.name, e.status) for e in pupil.enrolments]
        db.session.expunge(pupil)
        return pupil, placed


@pytest.fixture
def school(make: Factory):
    return make.school("lqd", "Trường Tiểu học Lê Quang Định")


@pytest.fixture
def s(app, make: Factory, school) -> SimpleNamespace:
    """Year 2024-2025 with 5A (3 pupils, codes 7900001A00..02) and an empty 4A."""
    principal = make.user(school, Role.PRINCIPAL, username="ht.lqd", full_name="Trần Văn Hiệu")
    year_id = make_year(app, school)
    a = make_class(app, school, year_id, "5A", pupils=3, code_prefix="7900001A")
    four = make_class(app, school, year_id, "4A", pupils=0)
    client = app.test_client()
    login(client, principal)
    return SimpleNamespace(principal=principal, year_id=year_id, a=a, four=four, client=client)


def messy_export(*rows: list[object]) -> bytes:
    """The CSDL ngành pupil list as it comes: title lines, headers with line breaks, a catalogue sheet."""
    header = ["STT", "Mã\nhọc sinh", "Họ và\ntên", "Ngày\nsinh", "Giới\ntính", "Mã lớp", "Dân tộc",
              "Trạng thái\nHS", "Số định danh\ncá nhân", "Loại khuyết\ntật"]
    return xlsx(("Danh sách học sinh", [["DANH SÁCH HỌC SINH NĂM HỌC 2024-2025"], [], header, *rows]),
                ("Danh mục", [["Dân tộc"], ["Kinh"], ["Tày"]]))


def first_file() -> bytes:
    return messy_export(
        # 4: a new pupil, name in NFD, personal ID stored as a number (its leading zero lost)
        [1, "7900001A10", nfd("Ngô  Bảo Châu"), "15/08/2015", "Nữ", "4a", "Kinh", "Đang học", 79215005678, None],
        # 5: pupil 0 of 5A: ethnicity corrected and moved to 4A
        [2, "7900001A00", "Nguyễn Thị Ánh Tuyết", date(2014, 3, 1), "Nữ", "4A", "Tày", "Đang học", None, None],
        # 6: pupil 1 of 5A exactly as the portal holds it
        [3, "7900001A01", "Trần Minh Khoa", "02/03/2014", "Nam", "5A", "Kinh", "Đang học", None, None],
        # 7: a class the year does not have
        [4, "7900001A20", "Lý Thu Thảo", "03/04/2014", "Nữ", "5X", "Kinh", "Đang học", None, None],
        # 8: a damaged date and gender
        [5, "7900001A21", "Mai Văn Tài", "31/02/2014", "Trai", "5A", "Kinh", "Đang học", None, None],
        # 9: a status nobody knows
        [6, "7900001A22", "Đinh Gia Bảo", "04/05/2014", "Nam", "5A", "Kinh", "Lưu ban", None, None],
        # 10: the same pupil code again
        [7, "7900001A10", "Ngô Bảo Châu", "15/08/2015", "Nữ", "4A", "Kinh", "Đang học", None, None],
    )


# --- the pupil list: dry run, confirm, again ------------------------------------------------------

def test_dry_run_shows_each_row_and_writes_nothing(app, school, s):
    with app.app_context(), school_scope(school.id):
        db.session.get(Pupil, s.a.pupil_ids[0]).identity_reviewed_at = datetime(2025, 5, 1, tzinfo=UTC)
        db.session.commit()
    before = snapshot(app, school)
    response = upload(s.client, first_file(), s.year_id)
    assert response.status_code == 200
    assert text_of(response, "import-summary") == (
        "Năm học 2024-2025 · Tạo mới: 1 · Cập nhật: 1 · Không đổi: 1 · Bị từ chối: 4")
    created = text_of(response, "line-4")
    assert "Tạo mới" in created and "Họ và tên: Ngô Bảo Châu" in created and "Ngày sinh: 15/08/2015" in created
    assert "Lớp: 4A" in created and "Trạng thái: Đang học" in created
    assert "Số định danh cá nhân: 079215005678" in created  # the principal may see it
    updated = text_of(response, "line-5")
    assert "Cập nhật Dân tộc: Kinh → Tày Lớp: 5A → 4A" in updated
    assert "dấu “đã rà soát” sẽ bị bỏ" in updated
    assert 'id="line-6"' not in page(response)  # unchanged rows are only counted
    assert "Lớp 5X chưa có trong năm học 2024-2025" in text_of(response, "line-7")
    damaged = text_of(response, "line-8")
    assert "Ngày sinh không hợp lệ: 31/02/2014" in damaged and "Giới tính không hợp lệ: Trai" in damaged
    assert "Trạng thái HS không rõ: Lưu ban" in text_of(response, "line-9")
    assert "Trùng Mã học sinh với dòng 4" in text_of(response, "line-10")
    assert "Xác nhận nhập: tạo mới 1, cập nhật 1 học sinh" in page(response)

    assert snapshot(app, school) == before
    assert entries(app) == []


def test_confirm_writes_the_valid_rows_and_the_same_file_again_changes_nothing(app, school, s):
    with app.app_context(), school_scope(school.id):
        db.session.get(Pupil, s.a.pupil_ids[0]).identity_reviewed_at = datetime(2025, 5, 1, tzinfo=UTC)
        db.session.commit()
    data = first_file()
    upload(s.client, data, s.year_id)
    done = confirm(s.client, data, s.year_id)
    assert done.status_code == 200
    assert text_of(done, "import-summary") == (
        "Năm học 2024-2025 · Tạo mới: 1 · Cập nhật: 1 · Không đổi: 1 · Bị từ chối: 4")
    rejected = text_of(done, "rejected-rows")
    assert "Lớp 5X chưa có trong năm học 2024-2025" in rejected and "Trạng thái HS không rõ" in rejected

    new, placed = pupil_by_code(app, school, "7900001A10")
    assert new.full_name == "Ngô Bảo Châu" and unicodedata.is_normalized("NFC", new.full_name)
    assert (new.birth_date, new.gender, new.personal_id) == (date(2015, 8, 15), "Nữ", "079215005678")
    assert placed == [("4A", EnrolmentStatus.STUDYING)]
    moved, placed = pupil_by_code(app, school, "7900001A00")
    assert moved.ethnicity == "Tày" and moved.identity_reviewed_at is None
    assert placed == [("4A", EnrolmentStatus.STUDYING)]
    assert pupil_by_code(app, school, "7900001A20") is None and pupil_by_code(app, school, "7900001A21") is None

    [summary] = entries(app, "pupil.imported")
    assert summary.changes["create"] == 1 and summary.changes["update"] == 1
    assert summary.changes["reject"] == 4 and summary.changes["rejected_lines"] == [7, 8, 9, 10]
    [created] = entries(app, "pupil.created")
    assert created.changes["personal_id"] == [None, "(ẩn)"] and "079215005678" not in str(created.changes)
    [updated] = entries(app, "pupil.updated")
    assert updated.changes == {"ethnicity": ["Kinh", "Tày"], "class": ["5A", "4A"]}
    assert len(entries(app, "pupil.identity_review_cleared")) == 1

    # The same file once more: nothing to create or update, nothing to confirm, nothing written.
    before, logged = snapshot(app, school), len(entries(app))
    again = upload(s.client, data, s.year_id)
    assert "Tạo mới: 0 · Cập nhật: 0 · Không đổi: 3 · Bị từ chối: 4" in text_of(again, "import-summary")
    assert 'id="nothing-to-do"' in page(again) and "Xác nhận nhập" not in page(again)
    assert confirm(s.client, data, s.year_id).status_code == 200  # a stale confirmation button
    assert snapshot(app, school) == before and len(entries(app)) == logged


def test_an_existing_pupil_without_this_years_enrolment_is_enrolled(app, make, school, s):
    older = make_year(app, school, name="2023-2024")
    make_class(app, school, older, "4B", pupils=1, code_prefix="7900009X")
    data = messy_export([1, "7900009X00", "Nguyễn Thị Ánh Tuyết", "01/03/2015", "Nữ", "5A", "Kinh", None, None, None])
    assert "Cập nhật Lớp: — → 5A Trạng thái: — → Đang học" in text_of(upload(s.client, data, s.year_id), "line-4")
    confirm(s.client, data, s.year_id)
    _pupil, placed = pupil_by_code(app, school, "7900009X00")
    assert sorted(placed) == [("4B", EnrolmentStatus.STUDYING), ("5A", EnrolmentStatus.STUDYING)]


def test_export_then_import_changes_nothing(app, school, s):
    with app.app_context(), school_scope(school.id):
        first = db.session.get(Pupil, s.a.pupil_ids[0])
        first.personal_id, first.disability = "001215000077", "Khuyết tật nhìn"
        db.session.get(Enrolment, s.a.enrolment_ids[2]).status = EnrolmentStatus.TRANSFERRED_OUT
        db.session.commit()
    response = s.client.get(f"/s/lqd/pupils/export?year_id={s.year_id}")
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    assert "danh-sach-hoc-sinh-2024-2025.xlsx" in response.headers["Content-Disposition"]
    rows = read_xlsx(response.data)
    assert rows[0] == ["STT", *CSDL_HEADERS]
    assert [row[0] for row in rows[1:]] == list(range(1, len(rows)))  # numbered in list order
    assert ["5A", "7900001A00", "Nguyễn Thị Ánh Tuyết", "01/03/2014", "Nữ", "Đang học", None, "Kinh",
            "Khuyết tật nhìn", "001215000077"] in [row[1:] for row in rows]
    assert ["5A", "7900001A02", "Lê Ngọc Hân", "03/03/2014", "Nữ", "Chuyển đi", None, "Kinh", None, None] in [
        row[1:] for row in rows]

    before = snapshot(app, school)
    dry_run = upload(s.client, response.data, s.year_id, filename="danh-sach-hoc-sinh-2024-2025.xlsx")
    assert text_of(dry_run, "import-summary") == (
        "Năm học 2024-2025 · Tạo mới: 0 · Cập nhật: 0 · Không đổi: 3 · Bị từ chối: 0")
    confirm(s.client, response.data, s.year_id, filename="danh-sach-hoc-sinh-2024-2025.xlsx")
    assert snapshot(app, school) == before and entries(app) == []

    one_class = s.client.get(f"/s/lqd/pupils/export?year_id={s.year_id}&class_id={s.four.class_id}")
    assert read_xlsx(one_class.data) == [["STT", *CSDL_HEADERS]]
    assert [e.changes["pupils"] for e in entries(app, "pupil.exported")] == [3, 0]


# --- files that are refused -----------------------------------------------------------------------

def _zip(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return out.getvalue()


BAD_FILES = [
    pytest.param("danh_sach.pdf", b"%PDF-1.4 ...", "Chỉ nhận tệp Excel .xlsx", id="pdf"),
    pytest.param("danh_sach.xls", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(200), "Chỉ nhận tệp Excel .xlsx",
                 id="old-xls"),
    pytest.param("danh_sach.xlsx", b"PK\x03\x04 this is no zip", "Tệp Excel bị hỏng", id="not-a-zip"),
    pytest.param("danh_sach.xlsx", _zip({"word/document.xml": b"<w:document/>"}), "Tệp Excel bị hỏng",
                 id="docx-renamed"),
    pytest.param("danh_sach.xlsx", xlsx(("Điểm", [["Họ tên", "Toán"], ["An", 9]])),
                 "Không tìm thấy dòng tiêu đề có cột “Mã học sinh”", id="wrong-sheet"),
    pytest.param("danh_sach.xlsx", xlsx(("DS", [["Mã học sinh", "Họ tên"], ["1", "An"]])),
                 "Tệp thiếu cột bắt buộc: Ngày sinh, Mã lớp.", id="missing-columns"),
    pytest.param("danh_sach.xlsx", xlsx(("DS", [CSDL_HEADERS])), "Tệp không có dòng học sinh nào.", id="empty"),
]


@pytest.mark.parametrize(("filename", "data", "message"), BAD_FILES)
def test_a_bad_file_gets_a_clear_message_and_writes_nothing(app, school, s, filename, data, message):
    before = snapshot(app, school)
    response = upload(s.client, data, s.year_id, filename=filename)
    assert response.status_code == 200
    assert message in page(response)
    assert 'id="import-summary"' not in page(response)
    assert snapshot(app, school) == before and entries(app) == []


def test_a_huge_file_is_refused(app, school, s, monkeypatch):
    monkeypatch.setattr(csdl, "MAX_ROWS", 2)
    rows = [["5A", f"79000099{n:02d}", "Nguyễn Văn An", "01/01/2014"] for n in range(3)]
    response = upload(s.client, xlsx(("DS", [["Mã lớp", "Mã học sinh", "Họ tên", "Ngày sinh"], *rows])), s.year_id)
    assert "Tệp quá lớn" in page(response)
    monkeypatch.setitem(app.config, "MAX_CONTENT_LENGTH", 2048)
    too_big = upload(s.client, bytes(4096), s.year_id)
    assert too_big.status_code == 413 and "Tệp tải lên quá lớn." in page(too_big)
    assert entries(app) == []


def test_a_confirmation_for_an_unknown_file_or_year_is_not_found(app, make, school, s):
    assert s.client.post("/s/lqd/pupils/import/confirm", data={
        "csrf_token": csrf_token(s.client, "/s/lqd/pupils/import"), "digest": "0" * 64, "filename": "a.xlsx",
        "year_id": s.year_id}).status_code == 404
    other = make.school("ntr")
    data = first_file()
    upload(s.client, data, s.year_id)
    assert confirm(s.client, data, make_year(app, other)).status_code == 404
    assert entries(app) == []


def test_exchange_pages_need_the_manage_pupils_permission(app, make, school, s):
    teacher = make.user(school, Role.HOMEROOM_TEACHER)
    client = app.test_client()
    login(client, teacher)
    for url in ("/s/lqd/pupils/import", f"/s/lqd/pupils/export?year_id={s.year_id}", "/s/lqd/pupils/results-exchange"):
        assert client.get(url).status_code == 403, url
    token = csrf_token(client, "/s/lqd/pupils")
    for url in ("/s/lqd/pupils/import/confirm", "/s/lqd/pupils/results-exchange/export",
                "/s/lqd/pupils/results-exchange/confirm"):
        assert client.post(url, data={"csrf_token": token}).status_code == 403, url


# --- results per grade and period -----------------------------------------------------------------

def rate(app, school, s, enrolment_index: int, period: str, **cells: tuple[str | None, int | None]) -> None:
    with app.app_context(), school_scope(school.id):
        for code, (level, score) in cells.items():
            db.session.add(SubjectRating(school_id=school.id, enrolment_id=s.a.enrolment_ids[enrolment_index],
                                         subject_id=s.a.subject_ids[code], period_id=s.a.period_ids[period],
                                         level=level, score=score))
        db.session.commit()


def export_results(client: FlaskClient, year_id: int, grade: int, period: str) -> TestResponse:
    token = csrf_token(client, "/s/lqd/pupils/results-exchange")
    return client.post("/s/lqd/pupils/results-exchange/export", data={
        "csrf_token": token, "export-year_id": year_id, "export-grade": grade, "export-period": period})


def upload_results(client: FlaskClient, data: bytes, year_id: int, grade: int, period: str,
                   filename: str = "ket_qua.xlsx") -> TestResponse:
    token = csrf_token(client, "/s/lqd/pupils/results-exchange")
    return client.post("/s/lqd/pupils/results-exchange", content_type="multipart/form-data", data={
        "csrf_token": token, "import-year_id": year_id, "import-grade": grade, "import-period": period,
        "import-file": (io.BytesIO(data), filename)})


def confirm_results(client: FlaskClient, data: bytes, year_id: int, grade: int, period: str,
                    filename: str = "ket_qua.xlsx") -> TestResponse:
    token = csrf_token(client, "/s/lqd/pupils/results-exchange")
    return client.post("/s/lqd/pupils/results-exchange/confirm", data={
        "csrf_token": token, "digest": digest_of(data), "filename": filename, "year_id": year_id, "grade": grade,
        "period": period})


def test_the_results_file_has_the_moet_columns_of_the_grade_and_period(app, school, s):
    rate(app, school, s, 0, "CN", toan=("T", 9), tieng_viet=("H", 7), dao_duc=("T", None))
    response = export_results(s.client, s.year_id, 5, "CN")
    assert response.status_code == 200 and "ket-qua-khoi-5-CN-2024-2025.xlsx" in response.headers["Content-Disposition"]
    with app.app_context():
        taken = db.session.scalar(sa.select(AuditEntry).where(AuditEntry.action == "results.exported"))
        assert taken.summary == "ket-qua-khoi-5-CN-2024-2025.xlsx" and taken.actor_id is not None
    header, *rows = read_xlsx(response.data)
    assert [row[0] for row in rows] == ["7900001A02", "7900001A01", "7900001A00"]  # Hân, Khoa, Tuyết
    assert header[:9] == ["Mã học sinh", "Họ tên", "Lớp", "Tiếng Việt - Mức đạt được", "Tiếng Việt - Điểm KTĐK",
                          "Toán - Mức đạt được", "Toán - Điểm KTĐK", "Ngoại ngữ 1 - Mức đạt được",
                          "Ngoại ngữ 1 - Điểm KTĐK"]
    assert "Đạo đức - Mức đạt được" in header and "Đạo đức - Điểm KTĐK" not in header
    assert "Tự nhiên và Xã hội - Mức đạt được" not in header  # grades 1-3 only
    assert rows[2][:7] == ["7900001A00", "Nguyễn Thị Ánh Tuyết", "5A", "H", 7, "T", 9]
    assert rows[0][3:7] == [None, None, None, None]

    mid_term = read_xlsx(export_results(s.client, s.year_id, 5, "GHK1").data)[0]
    assert "Toán - Điểm KTĐK" in mid_term and "Khoa học - Điểm KTĐK" not in mid_term  # tested at CHKI and CN only


def test_results_round_trip_then_an_edited_file_updates_only_what_changed(app, school, s):
    rate(app, school, s, 0, "CN", toan=("T", 9), tieng_viet=("H", 7))
    with app.app_context(), school_scope(school.id):
        db.session.add(YearResult(school_id=school.id, enrolment_id=s.a.enrolment_ids[0],
                                  results_reviewed_at=datetime(2025, 5, 19, tzinfo=UTC)))
        db.session.commit()
    exported = export_results(s.client, s.year_id, 5, "CN").data
    before = snapshot(app, school)
    dry_run = upload_results(s.client, exported, s.year_id, 5, "CN")
    assert "Cập nhật: 0 · Không đổi: 3 · Bị từ chối: 0" in text_of(dry_run, "import-summary")
    confirm_results(s.client, exported, s.year_id, 5, "CN")
    assert snapshot(app, school) == before and entries(app) == []

    header, *rows = read_xlsx(exported)
    khoa, tuyet = rows[1], rows[2]  # lines 3 and 4
    tuyet[header.index("Toán - Mức đạt được")] = "h"
    khoa[header.index("Khoa học - Mức đạt được")] = "Hoàn thành tốt"
    khoa[header.index("Khoa học - Điểm KTĐK")] = 8.0
    edited = xlsx(("Khối 5", [header, *rows]))
    dry_run = upload_results(s.client, edited, s.year_id, 5, "CN")
    assert "Cập nhật: 2 · Không đổi: 1" in text_of(dry_run, "import-summary")
    assert "Toán - Mức đạt được: T → H" in text_of(dry_run, "line-4")
    assert "dấu “đã rà soát kết quả” sẽ bị bỏ" in text_of(dry_run, "line-4")
    assert "Khoa học - Mức đạt được: — → T Khoa học - Điểm KTĐK: — → 8" in text_of(dry_run, "line-3")
    assert "đã rà soát" not in text_of(dry_run, "line-3")
    assert snapshot(app, school) == before

    assert confirm_results(s.client, edited, s.year_id, 5, "CN").status_code == 200
    with app.app_context(), school_scope(school.id):
        ratings = {(r.enrolment_id, r.subject_id): r for r in db.session.scalars(sa.select(SubjectRating))}
        maths = ratings[(s.a.enrolment_ids[0], s.a.subject_ids["toan"])]
        assert (maths.level, maths.score, maths.version, maths.updated_by_id) == ("H", 9, 2, s.principal.id)
        science = ratings[(s.a.enrolment_ids[1], s.a.subject_ids["khoa_hoc"])]
        assert (science.level, science.score, science.version) == ("T", 8, 1)
        assert ratings[(s.a.enrolment_ids[0], s.a.subject_ids["tieng_viet"])].version == 1
        result = db.session.scalar(sa.select(YearResult).where(YearResult.enrolment_id == s.a.enrolment_ids[0]))
        assert result.results_reviewed_at is None
    assert [e.changes for e in entries(app, "ratings.imported")] == [
        {"khoa_hoc.level": [None, "T"], "khoa_hoc.score": [None, 8]}, {"toan.level": ["T", "H"]}]
    assert len(entries(app, "results.imported")) == 1 and len(entries(app, "results.review_cleared")) == 1

    after, logged = snapshot(app, school), len(entries(app))
    again = upload_results(s.client, edited, s.year_id, 5, "CN")
    assert "Cập nhật: 0 · Không đổi: 3" in text_of(again, "import-summary")
    confirm_results(s.client, edited, s.year_id, 5, "CN")
    assert snapshot(app, school) == after and len(entries(app)) == logged


def test_results_rows_with_wrong_values_are_refused_with_reasons(app, school, s):
    c = make_class(app, school, s.year_id, "5C", pupils=5, code_prefix="7900005C")
    make_class(app, school, s.year_id, "4B", pupils=1, code_prefix="7900004B")
    header = ["STT", "Mã học sinh", "Họ tên", "Lớp", "Toán - Mức đạt được", "Toán - Điểm KTĐK",
              "Đạo đức - Mức đạt được", "Đạo đức - Điểm KTĐK", "Tự nhiên và Xã hội - Mức đạt được", "Ghi chú"]
    rows = [
        [1, "7900005C00", "Nguyễn Thị Ánh Tuyết", "5C", "A", 7.5, None, None, None, None],  # line 2
        [2, "7900005C01", "Trần Minh Khoa", "5C", "T", 0, "H", 9, None, None],              # line 3
        [3, "7900005C02", "Lê Ngọc Hân", "5C", "T", 10, None, None, "T", None],             # line 4
        [4, "7999999999", "Không Có Ai", "5C", "T", 8, None, None, None, None],             # line 5
        [5, "7900004B00", "Nguyễn Thị Ánh Tuyết", "4B", "T", 8, None, None, None, None],    # line 6
        [6, "7900005C03", "Phạm Đức Anh", "5B", "H", None, None, None, None, None],         # line 7
        [7, "7900005C04", "Huỳnh Bảo Trâm", "5c", "T", "9", "H", None, None, "tốt"],        # line 8: right
        [8, "7900005C04", "Huỳnh Bảo Trâm", "5C", "H", None, None, None, None, None],       # line 9
    ]
    data = xlsx(("Khối 5", [header, *rows]))
    dry_run = upload_results(s.client, data, s.year_id, 5, "CN")
    assert text_of(dry_run, "import-summary").endswith("Cập nhật: 1 · Không đổi: 0 · Bị từ chối: 7")
    line2 = text_of(dry_run, "line-2")
    assert "Toán: mức đạt được “A” không hợp lệ (chỉ nhận T, H hoặc C)" in line2
    assert "Toán: điểm KTĐK “7.5” không hợp lệ (số nguyên từ 1 đến 10)" in line2
    line3 = text_of(dry_run, "line-3")
    assert "Toán: điểm KTĐK “0” không hợp lệ" in line3
    assert "Đạo đức không có bài kiểm tra định kì ở Cuối năm học: không nhận điểm “9”" in line3
    assert "Tự nhiên và Xã hội không học ở khối 5" in text_of(dry_run, "line-4")
    assert "Không có học sinh mã 7999999999 trong năm học 2024-2025" in text_of(dry_run, "line-5")
    assert "Học sinh học lớp 4B, không thuộc khối 5" in text_of(dry_run, "line-6")
    assert "Học sinh học lớp 5C, không phải lớp 5B" in text_of(dry_run, "line-7")
    assert "Cập nhật Toán - Mức đạt được: — → T Toán - Điểm KTĐK: — → 9" in text_of(dry_run, "line-8")
    assert "Trùng Mã học sinh với dòng 8" in text_of(dry_run, "line-9")
    assert snapshot(app, school)["ratings"] == ()

    done = confirm_results(s.client, data, s.year_id, 5, "CN")
    assert text_of(done, "import-summary").endswith("Cập nhật: 1 · Không đổi: 0 · Bị từ chối: 7")
    assert "Tự nhiên và Xã hội không học ở khối 5" in text_of(done, "rejected-rows")
    with app.app_context(), school_scope(school.id):
        saved = sorted((r.enrolment_id, r.subject_id, r.level, r.score) for r in db.session.scalars(
            sa.select(SubjectRating)))
    assert saved == sorted([(c.enrolment_ids[4], c.subject_ids["toan"], "T", 9),
                            (c.enrolment_ids[4], c.subject_ids["dao_duc"], "H", None)])


RESULTS_BAD_FILES = [
    pytest.param("ket_qua.csv", b"Ma hoc sinh;Toan\r\n", "Chỉ nhận tệp Excel .xlsx", id="csv"),
    pytest.param("ket_qua.xlsx", b"PK\x03\x04 broken", "Tệp Excel bị hỏng", id="broken"),
    pytest.param("ket_qua.xlsx", xlsx(("DS", [["Mã học sinh", "Họ tên", "Tiếng Anh - Mức đạt được"], ["1", "A", "T"]])),
                 "Cột “Tiếng Anh - Mức đạt được” không ứng với môn học nào của năm học 2024-2025.",
                 id="unknown-subject"),
    pytest.param("ket_qua.xlsx", xlsx(("DS", [["Mã học sinh", "Họ tên", "Lớp"], ["1", "A", "5A"]])),
                 "Tệp không có cột kết quả môn học nào", id="no-subject-columns"),
    pytest.param("ket_qua.xlsx", xlsx(("Ghi chú", [["Danh sách lớp"], ["5A"]])), "Không tìm thấy dòng tiêu đề",
                 id="wrong-sheet"),
    pytest.param("ket_qua.xlsx", xlsx(("DS", [["Mã học sinh", "Toán - Mức đạt được", "Toán - mức đạt được"]])),
                 "Cột “Toán - Mức đạt được” bị lặp.", id="repeated-column"),
    pytest.param("ket_qua.xlsx", xlsx(("DS", [["Mã học sinh", "Toán - Mức đạt được"]])),
                 "Tệp không có dòng học sinh nào.", id="empty"),
]


@pytest.mark.parametrize(("filename", "data", "message"), RESULTS_BAD_FILES)
def test_a_bad_results_file_gets_a_clear_message(app, school, s, filename, data, message):
    before = snapshot(app, school)
    response = upload_results(s.client, data, s.year_id, 5, "CN", filename=filename)
    assert response.status_code == 200
    assert message in page(response)
    assert 'id="import-summary"' not in page(response)
    assert snapshot(app, school) == before and entries(app) == []


def test_a_huge_results_file_is_refused(app, school, s, monkeypatch):
    monkeypatch.setattr(results_exchange, "MAX_ROWS", 2)
    rows = [[f"79000099{n:02d}", "T"] for n in range(3)]
    response = upload_results(s.client, xlsx(("DS", [["Mã học sinh", "Toán - Mức đạt được"], *rows])), s.year_id,
                              5, "CN")
    assert "Tệp quá lớn: mỗi lần chỉ nhận tối đa 2 học sinh." in page(response)


def test_results_of_another_schools_year_are_not_found(app, make, school, s):
    other_year = make_year(app, make.school("ntr"))
    refused = export_results(s.client, other_year, 5, "CN")
    assert refused.status_code == 200 and refused.mimetype == "text/html"  # not one of the choices
    assert 'id="import-summary"' not in page(upload_results(s.client, b"x", other_year, 5, "CN"))
    data = export_results(s.client, s.year_id, 5, "CN").data
    upload_results(s.client, data, s.year_id, 5, "CN")
    assert confirm_results(s.client, data, other_year, 5, "CN").status_code == 404
    assert confirm_results(s.client, data, s.year_id, 5, "XX").status_code == 404
    assert confirm_results(s.client, data, s.year_id, 7, "CN").status_code == 404


def test_the_date_a_status_began_is_kept_as_the_enrolment_date(app, school, s):
    """A pupil transferred in on 10/01/2025: "Ngày nhập trạng thái" becomes her enrolment's date, and the
    export writes it back."""
    row = {"class_code": "5A", "pupil_code": "7900009Z00", "full_name": "Phan Thị Mỹ Duyên", "birth_date": "05/06/2014",
           "gender": "Nữ", "status": "Chuyển đến", "status_date": "10/01/2025", "ethnicity": "Kinh"}
    data = xlsx(("Danh sách học sinh", [CSDL_HEADERS, [row.get(name) for name in csdl.COLUMNS]]))
    upload(s.client, data, s.year_id)
    confirm(s.client, data, s.year_id)
    with app.app_context(), school_scope(school.id):
        enrolled = db.session.scalar(sa.select(Enrolment.enrolled_on).join(Pupil).where(
            Pupil.pupil_code == "7900009Z00"))
    assert enrolled == date(2025, 1, 10)
    exported = read_xlsx(s.client.get(f"/s/lqd/pupils/export?year_id={s.year_id}").data)
    assert ["5A", "7900009Z00", "Phan Thị Mỹ Duyên", "05/06/2014", "Nữ", "Chuyển đến", "10/01/2025", "Kinh", None,
            None] in [r[1:] for r in exported]
