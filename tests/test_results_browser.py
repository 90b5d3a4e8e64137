"""The year-end decision table in a real browser: compact for a full class, bulk confirm of the ticked rows."""

from __future__ import annotations

import pytest

from tenants.roles import Role
from tests.assessment_factory import make_class, make_year
from tests.conftest import PASSWORD
from tests.results_factory import rate
from tests.test_results import _results

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_thirty_five_pupils_fit_in_three_screens_and_ticked_rows_are_confirmed(browser, live_url, app, make):
    school = make.school("lqd")
    gvcn = make.user(school, Role.HOMEROOM_TEACHER, full_name="Lê Thị Lan")
    year_id = make_year(app, school)
    setup = make_class(app, school, year_id, "5A", homeroom_id=gvcn.id, pupils=35)
    rate(app, school, setup, range(0, 30), subjects={"toan": ("T", 8)})
    rate(app, school, setup, range(30, 35), subjects={"toan": ("C", 3), "tieng_viet": ("C", 4), "dao_duc": ("C", None)},
         traits={"cham_hoc": "C"})

    page = browser.new_context(viewport={"width": 1366, "height": 768}).new_page()
    page.set_default_timeout(15_000)
    page.goto(f"{live_url}/login")
    page.fill("#username", gvcn.username)
    page.fill("#password", PASSWORD)
    page.click("main button.primary")
    page.goto(f"{live_url}/s/lqd/results/classes/{setup.class_id}")
    assert page.locator("#results tbody tr").count() == 35
    height = page.evaluate("document.documentElement.scrollHeight")
    assert height <= 3 * 768, f"the results page is {height} px tall"

    # Details on demand: the full explanation opens under the deciding reason.
    row = page.locator(f"#pupil-{setup.pupil_ids[30]}")
    assert "Chưa đạt Hoàn thành:" in row.locator("summary").inner_text()
    row.locator("summary").click()
    assert "Chưa đạt Hoàn thành xuất sắc" in row.locator(".more").inner_text()

    for index in (0, 1, 2):
        page.locator(f"#pupil-{setup.pupil_ids[index]} input[name=pupil_ids]").check()
    asked: list[str] = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.accept()))
    page.click("button[value=confirm]")
    page.wait_for_selector(".flash-success")
    assert "3 học sinh đã chọn" in asked[0]
    assert set(_results(app, school)) == {setup.pupil_ids[i] for i in (0, 1, 2)}
