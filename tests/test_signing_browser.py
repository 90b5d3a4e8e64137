"""A principal signs a grade in a real browser and watches the job's progress bar finish."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from portal.extensions import db
from portal.records import workflow
from portal.records.models import RecordStatus, RecordVersion
from tenants.models import School, User
from tenants.scoping import school_scope
from tests.browser import ARGS, CHROMIUM, require_browser
from tests.conftest import PASSWORD, finish_jobs
from tests.test_signing_workflow import GVCN_PIN, PASSPHRASE, ca, world  # noqa: F401 - the fixtures

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def signed_by_the_gvcn(app, world):  # noqa: F811
    """The world of the workflow tests with the class signed by its GVCN."""
    school = world["school"]
    with app.app_context(), school_scope(school.id):
        workflow.sign_batch(db.session.get(School, school.id), workflow.STEPS["gvcn"],
                            [v.id for v in world["versions"]], signer=db.session.get(User, world["gvcn"].id),
                            secret=GVCN_PIN)
    return world


@pytest.fixture
def browser_after(signed_by_the_gvcn) -> Iterator[object]:
    """A browser started after the signing above: Playwright's sync API keeps an event loop running in this
    thread while it lives, and the signing engine runs its own (pyHanko is asyncio inside)."""
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield instance
        instance.close()


def test_a_principal_signs_a_grade_and_watches_the_progress_bar(signed_by_the_gvcn, browser_after, live_url, app):
    school = signed_by_the_gvcn["school"]
    page = browser_after.new_page()
    page.set_default_timeout(30_000)
    page.goto(f"{live_url}/login")
    page.fill("#username", signed_by_the_gvcn["principal"].username)
    page.fill("#password", PASSWORD)
    page.click("main button.primary")
    page.wait_for_url(f"{live_url}/s/lqd/")

    page.click("a[href='/s/lqd/records/']")
    row = page.locator("#signing tr[data-step='hieu_truong']")
    assert "3" in row.inner_text()
    # The principal keeps the passphrase of the certificate file: the form asks for it.
    row.locator("input[name=passphrase]").fill(PASSPHRASE)
    page.once("dialog", lambda dialog: dialog.accept())
    row.locator("button", has_text="Ký tất cả").click()

    page.wait_for_url("**/jobs/*")
    finish_jobs(app, [page.url.rsplit("/", 1)[-1]], timeout=120)  # on Redis, a `worker.py --burst` works it
    page.wait_for_selector(".job[data-state=finished]")
    assert page.locator("progress").evaluate("p => p.value") == 100
    page.wait_for_selector(".job-items")  # the page lists each record once the job is done
    assert page.locator(".job-item-signed").count() == 3
    with app.app_context(), school_scope(school.id):
        statuses = set(db.session.scalars(sa.select(RecordVersion.status)))
    assert statuses == {RecordStatus.SIGNED_PRINCIPAL}
