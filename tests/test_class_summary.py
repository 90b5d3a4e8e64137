"""The class summary (bảng tổng hợp) of a period: exact counts, the Excel equal to the page, few queries."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from html.parser import HTMLParser

import pytest
import sqlalchemy as sa
from openpyxl import load_workbook

from portal.assessment.models import Enrolment, EnrolmentStatus, Period, SchoolClass, TeachingAssignment
from portal.audit import AuditEntry
from portal.extensions import db
from portal.results.summary import build_class_summary
from tenants.roles import Role
from tenants.scoping import school_scope
from tests.assessment_factory import make_class, make_year
from tests.conftest import csrf_token, login
from tests.results_factory import rate

EXEMPLARY = "Học sinh Tiêu biểu hoàn thành tốt trong học tập và rèn luyện"


class _Tables(HTMLParser):
    """The summary page's tables: {key: [[cell text, ...], ...]} (header row first)."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.titles: dict[str, str] = {}
        self._title = ""
        self._key: str | None = None
        self._cell: list[str] | None = None
        self._in_h2 = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "h2":
            self._in_h2, self._title = True, ""
        elif tag == "table" and (found.get("id") or "").startswith("summary-"):
            self._key = found["id"].removeprefix("summary-")  # type: ignore[union-attr]
            self.tables[self._key], self.titles[self._key] = [], self._title
        elif tag == "tr" and self._key:
            self.tables[self._key].append([])
        elif tag in ("td", "th") and self._key:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "h2":
            self._in_h2 = False
        elif tag == "table":
            self._key = None
        elif tag in ("td", "th") and self._key and self._cell is not None:
            self.tables[self._key][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._in_h2:
            self._title += data
        if self._cell is not None:
            self._cell.append(data)


def _page_tables(html: str) -> _Tables:
    parser = _Tables()
    parser.feed(html)
    return parser


def _sheet_tables(content: bytes) -> tuple[list[list[object]], list[tuple[str, list[list[str]]]]]:
    """The workbook's heading rows, then its tables as (title, [header, rows...]) with cells as text."""
    sheet = load_workbook(io.BytesIO(content)).active
    rows = [[c for c in row if c is not None] for row in sheet.iter_rows(values_only=True)]
    heading, rest = rows[:5], rows[5:]
    tables: list[tuple[str, list[list[str]]]] = []
    while rest:
        block = []
        while rest and rest[0]:
            block.append(rest.pop(0))
        if block:
            tables.append((str(block[0][0]), [[str(c) for c in row] for row in block[1:]]))
        while rest and not rest[0]:
            rest.pop(0)
    return heading, tables


@pytest.fixture
def summary_class(app, make):
    """Class 5A: six pupils with varied CN ratings (the sixth has left), results confirmed, awards given."""
    school = make.school("lqd")
    gvcn = make.user(school, Role.HOMEROOM_TEACHER)
    year_id = make_year(app, school)
    setup = make_class(app, school, year_id, "5A", homeroom_id=gvcn.id, pupils=6)
    rate(app, school, setup, 0, subjects={"tieng_dtts": ("T", None)})
    rate(app, school, setup, 1, subjects={"toan": ("T", 8)})
    rate(app, school, setup, 2, subjects={"dao_duc": ("H", None), "toan": ("H", 6)}, traits={"cham_chi": "Đ"})
    rate(app, school, setup, 3, subjects={"toan": ("C", 3)}, traits={"trung_thuc": "C"})
    # Pupil 4 has no rating at all; pupil 5 left the school: neither counts but pupil 4 in the class size.
    rate(app, school, setup, 5, level="C", score=1, trait="C")
    rate(app, school, setup, [0, 1], period="GHK1", level="H", score=7)
    with app.app_context(), school_scope(school.id):
        db.session.get(Enrolment, setup.enrolment_ids[5]).status = EnrolmentStatus.LEFT
        db.session.commit()
    return {"school": school, "gvcn": gvcn, "setup": setup, "year_id": year_id}


def _act_as_gvcn(client, app, world) -> None:
    setup = world["setup"]
    login(client, world["gvcn"])
    token = csrf_token(client, "/s/lqd/")
    base = f"/s/lqd/results/classes/{setup.class_id}"
    client.post(f"{base}/confirm", data={"csrf_token": token})
    pupils = setup.pupil_ids
    client.post(f"{base}/pupils/{pupils[1]}/exemplary", data={"csrf_token": token, "recognised": "y"})
    for index, day, title in ((2, "20/11/2024", "Giải Nhì kể chuyện"), (2, "09/01/2025", "Viết chữ đẹp"),
                              (0, "26/03/2025", "Hội khỏe Phù Đổng")):
        client.post(f"{base}/pupils/{pupils[index]}/awards",
                    data={"csrf_token": token, "awarded_on": day, "title": title})


def test_year_end_summary_counts_exactly(client, app, summary_class):
    world, setup = summary_class, summary_class["setup"]
    _act_as_gvcn(client, app, world)
    page = client.get(f"/s/lqd/results/classes/{setup.class_id}/summary/{setup.period_ids['CN']}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Bảng tổng hợp kết quả đánh giá giáo dục của lớp" in html and 'id="pupils">5<' in html
    tables = _page_tables(html).tables
    subjects = {row[0]: row[1:] for row in tables["subjects"][1:]}
    assert tables["subjects"][0] == ["Môn học và hoạt động giáo dục", "Hoàn thành tốt (T)", "Hoàn thành (H)",
                                     "Chưa hoàn thành (C)", "Chưa đánh giá"]
    assert subjects["Tiếng Việt"] == ["4", "0", "0", "1"]
    assert subjects["Toán"] == ["2", "1", "1", "1"]  # T: pupils 0 and 1; H: 2; C: 3; pupil 4 unrated
    assert subjects["Đạo đức"] == ["3", "1", "0", "1"]
    assert subjects["Tiếng dân tộc thiểu số (tự chọn)"] == ["1", "0", "0", "—"]
    assert "Tự nhiên và Xã hội" not in subjects  # not taught in grade 5
    scores = {row[0]: row[1:] for row in tables["scores"][1:]}
    assert tables["scores"][0] == ["Môn học", "10", "9", "8", "7", "6", "5", "4", "3", "2", "1", "Chưa có điểm"]
    assert scores["Toán"] == ["1", "0", "1", "0", "1", "0", "0", "1", "0", "0", "1"]
    assert scores["Khoa học"] == ["4", "0", "0", "0", "0", "0", "0", "0", "0", "0", "1"]
    assert set(scores) == {"Tiếng Việt", "Toán", "Ngoại ngữ 1", "Lịch sử và Địa lí", "Khoa học", "Tin học",
                           "Công nghệ"}
    qualities = {row[0]: row[1:] for row in tables["qualities"][1:]}
    assert qualities["Chăm chỉ"] == ["3", "1", "0", "1"] and qualities["Trung thực"] == ["3", "0", "1", "1"]
    assert qualities["Yêu nước"] == ["4", "0", "0", "1"]
    assert len(tables["general"]) == 1 + 3 and len(tables["specific"]) == 1 + 7  # tin học, công nghệ from grade 3
    assert {row[0]: row[1] for row in tables["outcomes"][1:]} == {
        "Hoàn thành xuất sắc": "1", "Hoàn thành tốt": "1", "Hoàn thành": "1", "Chưa hoàn thành": "1",
        "Chưa xác nhận kết quả": "1"}
    assert {row[0]: row[1] for row in tables["completion"][1:]} == {
        "Hoàn thành chương trình tiểu học": "3", "Được lên lớp (sau đánh giá bổ sung)": "0",
        "Chưa được lên lớp": "0", "Chờ quyết định của Hiệu trưởng": "1"}
    assert {row[0]: row[1] for row in tables["awards"][1:]} == {
        "Học sinh Xuất sắc": "1", EXEMPLARY: "1", "Khen thưởng đột xuất (số học sinh)": "2",
        "Khen thưởng đột xuất (số lượt)": "3"}


def test_the_excel_holds_the_same_numbers_as_the_page(client, app, summary_class):
    world, setup = summary_class, summary_class["setup"]
    _act_as_gvcn(client, app, world)
    for code in ("CN", "GHK1"):
        url = f"/s/lqd/results/classes/{setup.class_id}/summary/{setup.period_ids[code]}"
        parsed = _page_tables(client.get(url).get_data(as_text=True))
        response = client.get(url + ".xlsx")
        assert response.status_code == 200
        assert response.mimetype == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
        assert "attachment" in response.headers["Content-Disposition"]
        with app.app_context():
            assert db.session.scalar(sa.select(sa.func.count()).where(
                AuditEntry.action == "results.summary_exported", AuditEntry.summary.contains(code.lower())))
        heading, sheet_tables = _sheet_tables(response.data)
        assert heading[1] == ["Bảng tổng hợp kết quả đánh giá giáo dục của lớp"]
        assert heading[3] == ["Sĩ số", 5]
        page_tables = [(parsed.titles[key], rows) for key, rows in parsed.tables.items()]
        assert sheet_tables == page_tables, code
    assert [title for title, _rows in sheet_tables] == ["Môn học và hoạt động giáo dục", "Điểm kiểm tra định kì",
                                                        "Phẩm chất", "Năng lực chung", "Năng lực đặc thù"]


def test_a_mid_term_summary_counts_that_period_only(client, app, summary_class):
    setup = summary_class["setup"]
    login(client, summary_class["gvcn"])
    html = client.get(f"/s/lqd/results/classes/{setup.class_id}/summary/{setup.period_ids['GHK1']}").get_data(True)
    tables = _page_tables(html).tables
    subjects = {row[0]: row[1:] for row in tables["subjects"][1:]}
    assert subjects["Toán"] == ["0", "2", "0", "3"] and subjects["Đạo đức"] == ["0", "2", "0", "3"]
    # Grade 5 is tested in Tiếng Việt and Toán only at mid-term I.
    assert {row[0]: row[1:] for row in tables["scores"][1:]} == {
        "Tiếng Việt": ["0", "0", "0", "2", "0", "0", "0", "0", "0", "0", "3"],
        "Toán": ["0", "0", "0", "2", "0", "0", "0", "0", "0", "0", "3"]}
    assert "outcomes" not in tables and "awards" not in tables


@contextmanager
def _statements() -> Iterator[list[str]]:
    """The SQL statements sent to the database inside the block."""
    statements: list[str] = []

    def listener(connection: object, cursor: object, statement: str, *rest: object) -> None:
        statements.append(statement)

    sa.event.listen(db.engine, "before_cursor_execute", listener)
    try:
        yield statements
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", listener)


def test_the_summary_takes_a_handful_of_queries_whatever_the_class_size(app, make):
    school = make.school("lqd")
    year_id = make_year(app, school)
    small = make_class(app, school, year_id, "5A", pupils=3)
    large = make_class(app, school, year_id, "5B", pupils=30)
    for setup in (small, large):
        rate(app, school, setup, range(len(setup.enrolment_ids)))
    counts = []
    with app.app_context(), school_scope(school.id):
        for setup in (small, large):
            school_class = db.session.get(SchoolClass, setup.class_id)
            period = db.session.get(Period, setup.period_ids["CN"])
            school_class.school_year  # noqa: B018 - loaded beforehand, as the page's own lookup does
            with _statements() as statements:
                built = build_class_summary(school_class, period)
            counts.append(len([s for s in statements if s.lstrip().upper().startswith("SELECT")]))
            assert built.pupils == len(setup.enrolment_ids)
            assert built.subjects[0].levels["T"] == len(setup.enrolment_ids)
    assert counts[0] == counts[1] <= 8, counts


def test_who_may_open_a_summary(client, app, make, summary_class):
    setup, school = summary_class["setup"], summary_class["school"]
    url = f"/s/lqd/results/classes/{setup.class_id}/summary/{setup.period_ids['CN']}"
    subject_teacher = make.user(school, Role.SUBJECT_TEACHER)
    other_gvcn = make.user(school, Role.HOMEROOM_TEACHER)
    with app.app_context(), school_scope(school.id):
        db.session.add(TeachingAssignment(school_id=school.id, class_id=setup.class_id,
                                          subject_id=setup.subject_ids["am_nhac"], teacher_id=subject_teacher.id))
        db.session.commit()
    teacher = app.test_client()
    login(teacher, subject_teacher)
    assert teacher.get(url).status_code == 200 and teacher.get(url + ".xlsx").status_code == 200
    other = app.test_client()
    login(other, other_gvcn)
    assert other.get(url).status_code == 403 and other.get(url + ".xlsx").status_code == 403
    principal = app.test_client()
    login(principal, make.user(school, Role.PRINCIPAL))
    assert principal.get(url).status_code == 200
    next_year = make_year(app, school, name="2025-2026")
    with app.app_context(), school_scope(school.id):
        foreign_period = db.session.scalar(sa.select(Period.id).where(Period.school_year_id == next_year))
    assert principal.get(f"/s/lqd/results/classes/{setup.class_id}/summary/{foreign_period}").status_code == 404
    elsewhere = make.school("ntmk")
    stranger = app.test_client()
    login(stranger, make.user(elsewhere, Role.PRINCIPAL))
    assert stranger.get(url).status_code == 403
    assert stranger.get(url.replace("/s/lqd/", "/s/ntmk/")).status_code == 404
    assert stranger.get(url.replace("/s/lqd/", "/s/ntmk/") + ".xlsx").status_code == 404
