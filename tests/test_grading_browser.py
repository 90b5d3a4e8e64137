"""The rating grid in a real browser: keyboard entry, pasting from Excel, fill down, saving, and a
failed save that loses nothing. Playwright drives Debian's Chromium against the portal on a local port."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from werkzeug.exceptions import ServiceUnavailable

from portal.assessment.models import SchoolClass, SubjectRating
from portal.extensions import db
from portal.grading import services
from tenants.roles import Role
from tenants.scoping import school_scope
from tests.assessment_factory import make_class, make_year
from tests.conftest import PASSWORD
from tests.test_grading import save, signed_in

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def english_class(app, make):
    """Class 5A with five pupils; "gv.anh" teaches Ngoại ngữ 1, tested at year end (CN)."""
    school = make.school("lequangdinh", "Trường Tiểu học Lê Quang Định")
    teacher = make.user(school, Role.SUBJECT_TEACHER, username="gv.anh", full_name="Phan Văn Âm")
    year_id = make_year(app, school)
    setup = make_class(app, school, year_id, "5A", teachers={"ngoai_ngu_1": teacher.id})
    url = (f"/s/lequangdinh/grading/classes/{setup.class_id}/subjects/{setup.subject_ids['ngoai_ngu_1']}"
           f"/periods/{setup.period_ids['CN']}")
    return school, setup, url


def _sign_in(browser, live_url: str):
    page = browser.new_context().new_page()
    page.set_default_timeout(15_000)
    page.on("dialog", lambda dialog: dialog.accept())  # "leave the page with unsaved cells?" on reload
    page.goto(f"{live_url}/login")
    page.fill("#username", "gv.anh")
    page.fill("#password", PASSWORD)
    page.click("main button.primary")
    page.wait_for_url(f"{live_url}/s/lequangdinh/")
    return page


def _cell(page, row: int, field: str):
    return page.locator("#rating-grid tbody tr").nth(row).locator(f".cell[data-field={field}]")


def _stored(app, school_id: int) -> dict[int, tuple]:
    with app.app_context(), school_scope(school_id):
        rows = db.session.scalars(sa.select(SubjectRating)).all()
        return {r.enrolment_id: (r.level, r.score, r.comment) for r in rows}


def _paste(page, text: str) -> None:
    """What the browser does on Ctrl+V of cells copied in Excel: a paste event carrying tab-separated text."""
    page.evaluate("""text => {
        const data = new DataTransfer();
        data.setData("text/plain", text);
        document.activeElement.dispatchEvent(new ClipboardEvent("paste", {clipboardData: data, bubbles: true,
                                                                            cancelable: true}));
    }""", text)


def test_a_subject_teacher_fills_the_grid_with_the_keyboard_and_a_paste(browser, live_url, app, english_class):
    school, _setup, url = english_class
    page = _sign_in(browser, live_url)
    page.click("text=Lớp của tôi")
    page.click("nav.pager >> text=Cuối năm học")
    page.click("text=Ngoại ngữ 1")
    page.wait_for_url(f"{live_url}{url}")
    assert "5A" in page.inner_text("h1")

    # Row 1 by keys: level, right to the score, Tab to the comment.
    _cell(page, 0, "level").click()
    page.keyboard.press("t")
    assert _cell(page, 0, "level").input_value() == "T"
    page.keyboard.press("ArrowRight")
    page.keyboard.type("9")
    page.keyboard.press("Tab")
    page.keyboard.type("Phát âm rõ ràng.")
    # Enter goes down a row; arrows come back to the level column.
    page.keyboard.press("Enter")
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("h")
    page.keyboard.press("x")  # not a level: refused, with a hint
    assert _cell(page, 1, "level").input_value() == "H"
    assert "chỉ nhận T, H, C" in page.inner_text("#grid-status")
    page.keyboard.press("ArrowRight")
    page.keyboard.type("7")

    # Rows 3 and 4 pasted from Excel, starting at the focused level cell.
    _cell(page, 2, "level").click()
    _paste(page, "Hoàn thành tốt\t10\tĐọc hiểu tốt.\r\nc\t4\t\"Cần luyện\tthêm\"\r\n")
    assert [_cell(page, 2, f).input_value() for f in ("level", "score", "comment")] == ["T", "10", "Đọc hiểu tốt."]
    assert [_cell(page, 3, f).input_value() for f in ("level", "score", "comment")] == ["C", "4", "Cần luyện thêm"]

    # Ctrl+D on row 5 copies the level above.
    _cell(page, 4, "level").click()
    page.keyboard.press("Control+d")
    assert _cell(page, 4, "level").input_value() == "C"
    assert page.locator("#rating-grid .cell.dirty").count() == 12

    page.click("#grid-save")
    page.wait_for_selector("#rating-grid .cell.dirty", state="detached")  # no eval: the page's CSP forbids it
    assert "Đã lưu" in page.inner_text("#grid-status")

    page.reload()
    assert [_cell(page, 0, f).input_value() for f in ("level", "score", "comment")] == ["T", "9", "Phát âm rõ ràng."]
    assert [_cell(page, r, "level").input_value() for r in range(5)] == ["T", "H", "T", "C", "C"]
    assert page.locator("#rating-grid .cell.dirty").count() == 0
    stored = _stored(app, school.id)
    assert sorted(stored.values(), key=str) == sorted([
        ("T", 9, "Phát âm rõ ràng."), ("H", 7, ""), ("T", 10, "Đọc hiểu tốt."), ("C", 4, "Cần luyện thêm"),
        ("C", None, "")], key=str)


def test_a_failed_save_keeps_every_typed_value_after_a_reload(browser, live_url, app, english_class, monkeypatch):
    school, _setup, url = english_class

    def server_down(*args, **kwargs):
        raise ServiceUnavailable()

    monkeypatch.setattr(services, "save_grid", server_down)
    page = _sign_in(browser, live_url)
    page.goto(f"{live_url}{url}")
    _cell(page, 0, "level").click()
    page.keyboard.press("c")
    page.keyboard.press("Tab")
    page.keyboard.type("5")
    page.keyboard.press("Tab")
    page.keyboard.type("Cần cố gắng hơn ở phần nghe.")
    page.click("#grid-save")
    page.wait_for_selector("#grid-status.bad")
    assert "Không lưu được" in page.inner_text("#grid-status")
    assert "vẫn được giữ trên máy này" in page.inner_text("#grid-status")
    assert _stored(app, school.id) == {}

    page.reload()  # still failing: the typed values come back from this computer's storage
    assert [_cell(page, 0, f).input_value() for f in ("level", "score", "comment")] == [
        "C", "5", "Cần cố gắng hơn ở phần nghe."]
    assert page.locator("#rating-grid .cell.dirty").count() == 3
    assert "Đã khôi phục 3 ô chưa lưu" in page.inner_text("#grid-notice")

    monkeypatch.undo()  # the server is back
    # Typing on saves by itself after a pause, the restored cells with the new one.
    _cell(page, 1, "level").click()
    page.keyboard.press("h")
    page.wait_for_selector("#rating-grid .cell.dirty", state="detached")  # no eval: the page's CSP forbids it
    assert sorted(_stored(app, school.id).values(), key=str) == [
        ("C", 5, "Cần cố gắng hơn ở phần nghe."), ("H", None, "")]
    page.reload()
    assert page.locator("#grid-notice").is_hidden()
    assert _cell(page, 0, "comment").input_value() == "Cần cố gắng hơn ở phần nghe."


def test_a_conflict_is_resolved_cell_by_cell_in_a_dialog(browser, live_url, app, make, english_class):
    school, setup, url = english_class
    page = _sign_in(browser, live_url)
    page.goto(f"{live_url}{url}")
    keys = [_cell(page, row, "level").get_attribute("data-key") for row in (0, 1)]
    # The GVCN (who may enter every subject of her class) saves both rows after the page was loaded.
    gvcn = make.user(school, Role.HOMEROOM_TEACHER, full_name="Lê Thị Lan")
    with app.app_context(), school_scope(school.id):
        db.session.get(SchoolClass, setup.class_id).homeroom_teacher_id = gvcn.id
        db.session.commit()
    assert save(signed_in(app, gvcn), url, [{"key": key, "version": 0, "cells": {"level": "H"}}
                                            for key in keys]).status_code == 200

    for row in (0, 1):
        _cell(page, row, "level").click()
        page.keyboard.press("t")
    page.click("#grid-save")
    page.wait_for_selector("#conflict-dialog[open]")
    items = page.locator("#conflict-list li")
    assert items.count() == 2
    assert "Lê Thị Lan sửa lúc" in items.nth(0).inner_text() and "Bạn nhập: T" in items.nth(0).inner_text()
    items.nth(0).locator("button.keep").click()  # row 1: mine
    page.locator("#conflict-list li button.take").click()  # row 2: theirs; the last choice saves
    page.wait_for_selector("#rating-grid .cell.dirty", state="detached")  # no eval: the page's CSP forbids it
    assert not page.locator("#conflict-dialog").is_visible()
    assert [_cell(page, row, "level").input_value() for row in (0, 1)] == ["T", "H"]
    with app.app_context(), school_scope(school.id):
        levels = dict(db.session.execute(sa.select(SubjectRating.enrolment_id, SubjectRating.level)).all())
    assert [levels[int(key)] for key in keys] == ["T", "H"]


def test_an_invalid_cell_does_not_block_a_valid_one_and_stays_marked_after_a_reload(browser, live_url, app,
                                                                                    english_class):
    school, _setup, url = english_class
    page = _sign_in(browser, live_url)
    page.goto(f"{live_url}{url}")
    _cell(page, 0, "score").click()
    page.keyboard.type("0")  # out of range: refused
    _cell(page, 2, "level").click()
    page.keyboard.press("h")  # valid, in another row
    page.click("#grid-save")
    page.locator("#grid-status.bad").wait_for()  # a locator, not wait_for_function: the CSP forbids eval
    assert "Đã lưu 1 ô. Chưa lưu 1 ô" in page.inner_text("#grid-status")
    assert "Điểm KTĐK phải là số nguyên" in page.inner_text("#grid-errors")
    first, third = (int(_cell(page, r, "level").get_attribute("data-key")) for r in (0, 2))
    assert _stored(app, school.id) == {third: ("H", None, "")}

    page.reload()  # the server kept what was refused: marked, listed, still as typed, nothing lost
    assert _cell(page, 0, "score").input_value() == "0"
    assert "error" in _cell(page, 0, "score").get_attribute("class")
    assert "error" not in (_cell(page, 2, "level").get_attribute("class") or "")
    assert _cell(page, 2, "level").input_value() == "H"
    assert "Điểm KTĐK phải là số nguyên" in page.inner_text("#grid-errors")
    assert "1 ô chưa hợp lệ chưa được lưu" in page.inner_text("#grid-status")

    _cell(page, 0, "score").fill("8")  # corrected: saved, the mark and the list go
    page.keyboard.press("Tab")
    page.click("#grid-save")
    # Saved: nothing left to send, nothing refused.
    page.locator("#rating-grid .cell.dirty, #rating-grid .cell.error").first.wait_for(state="detached")
    assert page.locator("#grid-errors").is_hidden()
    assert _stored(app, school.id) == {first: (None, 8, ""), third: ("H", None, "")}
