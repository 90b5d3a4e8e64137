"""Irreversible actions ask first, naming what happens and to how many records; dismissing changes nothing."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from portal.extensions import db
from portal.records.models import RecordStatus, RecordVersion
from tenants.scoping import school_scope
from tests.browser import ARGS, CHROMIUM, require_browser
from tests.conftest import PASSWORD
from tests.test_signing_workflow import GVCN_PIN, ca, world  # noqa: F401 - the fixtures

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def browser_after(world):  # noqa: F811
    """Started after the world is built: registering certificates runs its own event loop, which cannot
    start while Playwright's sync API keeps one running in this thread."""
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield instance
        instance.close()


def _sign_in(browser, live_url: str, username: str):
    page = browser.new_context().new_page()
    page.set_default_timeout(15_000)
    page.goto(f"{live_url}/login")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("main button.primary")
    page.wait_for_url(f"{live_url}/s/lqd/")
    return page


def _statuses(app, school) -> dict[int, RecordStatus]:
    with app.app_context(), school_scope(school.id):
        return dict(db.session.execute(sa.select(RecordVersion.id, RecordVersion.status)).all())


def _answer(page, accept: bool) -> list[str]:
    """Answer the next confirmation; the returned list receives its message."""
    asked: list[str] = []

    def handle(dialog) -> None:
        asked.append(dialog.message)
        dialog.accept() if accept else dialog.dismiss()

    page.once("dialog", handle)
    return asked


def test_sign_all_names_the_count_and_dismissing_signs_nothing(world, browser_after, live_url, app):  # noqa: F811
    before = _statuses(app, world["school"])
    page = _sign_in(browser_after, live_url, world["gvcn"].username)
    page.goto(f"{live_url}/s/lqd/records/")
    row = page.locator("#signing tr[data-step='gvcn']")
    row.locator("input[name=passphrase]").fill(GVCN_PIN)  # her signing PIN: the form is complete
    asked = _answer(page, accept=False)
    row.locator("button", has_text="Ký tất cả").click()
    page.wait_for_timeout(300)
    assert asked and "Ký số 3 học bạ" in asked[0] and "5A" in asked[0]
    assert page.url.endswith("/s/lqd/records/")  # nothing was submitted
    assert _statuses(app, world["school"]) == before


def test_cancelling_an_issued_record_asks_first(world, browser_after, live_url, app):  # noqa: F811
    school, version = world["school"], world["versions"][0]
    with app.app_context(), school_scope(school.id):  # issued: signing itself is tested elsewhere
        db.session.get(RecordVersion, version.id).status = RecordStatus.ISSUED
        db.session.commit()
    page = _sign_in(browser_after, live_url, world["principal"].username)
    page.goto(f"{live_url}/s/lqd/records/{version.id}")
    page.locator("summary", has_text="Hủy học bạ đã ban hành").click()
    page.fill("form[action$='/cancel'] textarea[name=reason]", "Nhập nhầm học sinh")
    asked = _answer(page, accept=False)
    page.locator("button", has_text="Hủy học bạ").click()
    page.wait_for_timeout(300)
    assert asked and "Hủy 1 học bạ" in asked[0] and version.code in asked[0]
    assert _statuses(app, school)[version.id] == RecordStatus.ISSUED

    asked = _answer(page, accept=True)
    page.locator("button", has_text="Hủy học bạ").click()
    page.wait_for_selector(".flash-success")
    assert f"Đã hủy học bạ {version.code}" in page.inner_text(".flash-success")
    assert _statuses(app, school)[version.id] == RecordStatus.CANCELLED
