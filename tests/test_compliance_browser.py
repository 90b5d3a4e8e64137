"""In a real browser: the district officer opens the board, keeps the overdue schools, drills into one."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
import sqlalchemy as sa

from portal.compliance import services
from portal.compliance.models import Scope
from portal.extensions import db
from tenants.models import District
from tenants.roles import Role
from tenants.scoping import all_schools
from tests.assessment_factory import make_class, make_year
from tests.compliance_factory import make_milestone, review_identity
from tests.conftest import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_officer_filters_overdue_schools_and_drills_down(browser, live_url, make, app):
    done = make.school("xong", "Trường Tiểu học Đã Xong")
    late = make.school("cham", "Trường Tiểu học Còn Chậm")
    make.user(None, username="phong.cv", district_role=Role.DISTRICT_OFFICER)
    milestone = make_milestone(app, measure="identity_reviewed", scope=Scope.ALL, deadline=date(2025, 5, 16),
                               title="Rà soát thông tin nhân thân")
    for school in (done, late):
        setup = make_class(app, school, make_year(app, school), "5A", pupils=4)
        reviewed = setup.pupil_ids if school is done else setup.pupil_ids[:1]
        review_identity(app, school, reviewed, datetime(2025, 5, 10, 3, tzinfo=UTC))
    with app.app_context(), all_schools():
        services.refresh_counts(db.session.scalar(sa.select(District)), "2024-2025", services.today_local())
        db.session.commit()

    page = browser.new_page()
    page.set_default_timeout(15_000)
    page.goto(f"{live_url}/login")
    page.fill("#username", "phong.cv")
    page.fill("#password", PASSWORD)
    page.click("main button.primary")
    page.click("header >> text=Tiến độ học bạ số")
    page.wait_for_selector("table.board")
    assert page.locator("tr[data-school]").count() == 2

    page.select_option("#state", "overdue")
    page.click("#filters button")
    page.wait_for_url("**state=overdue**")
    rows = page.locator("tr[data-school]")
    assert rows.count() == 1 and rows.first.get_attribute("data-school") == "cham"
    assert "25%" in rows.first.inner_text()

    rows.first.locator(f"a[href*='m={milestone}']").first.click()
    page.wait_for_selector("h1")
    assert "Trường Tiểu học Còn Chậm" in page.inner_text("h1")
    assert "3 học sinh chưa rà soát thông tin nhân thân" in page.inner_text(f"tr#m{milestone}")
