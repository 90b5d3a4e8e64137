"""Each home is a work queue: a browser follows an item to the page that clears it, clears it, and comes back."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
import sqlalchemy as sa

from portal.compliance.models import Scope
from portal.extensions import db
from portal.records.models import RecordStatus, RecordVersion
from tenants.roles import Role
from tenants.scoping import school_scope
from tests.compliance_factory import make_milestone
from tests.conftest import PASSWORD
from tests.records_factory import assessed_class, generate
from tests.test_results import world  # noqa: F401 - the fixture

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _sign_in(browser, live_url: str, username: str, home: str):
    page = browser.new_context(viewport={"width": 1366, "height": 768}).new_page()
    page.set_default_timeout(15_000)
    page.goto(f"{live_url}/login")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("main button.primary")
    page.wait_for_url(f"{live_url}{home}")
    return page


def test_the_teacher_confirms_the_results_her_home_points_to(browser, live_url, world):  # noqa: F811
    page = _sign_in(browser, live_url, world["gvcn"].username, "/s/lqd/")
    item = page.locator("#my-classes a[data-item=results_to_confirm]")
    assert item.inner_text() == "4 kết quả cuối năm chờ xác nhận"
    item.click()
    assert page.locator("#results tbody tr").count() == 4  # the filter the item asked for
    page.check("input[data-check-all]")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("button[value=confirm]")
    page.wait_for_selector(".flash-success")
    page.click("header a:text('Trang trường')")
    assert page.locator("#my-classes a[data-item=results_to_confirm]").count() == 0
    assert page.locator("#my-classes a[data-item=records_to_generate]").inner_text() == \
        "4 học bạ chưa tạo (đã có kết quả)"


def test_the_principal_sends_a_record_back_and_the_teacher_sees_why(browser, live_url, app, make):
    school = make.school("lqd", "Trường Tiểu học Lê Quang Định")
    principal = make.user(school, Role.PRINCIPAL, full_name="Võ Thị Lài")
    gvcn = make.user(school, Role.HOMEROOM_TEACHER, full_name="Nguyễn Thị Ánh Tuyết")
    assessed = assessed_class(app, school, gvcn, pupils=3, years=1)
    versions = generate(app, school, assessed.setup.class_id, gvcn)
    with app.app_context(), school_scope(school.id):  # signed by the GVCN: signing itself is tested elsewhere
        db.session.execute(sa.update(RecordVersion).values(status=RecordStatus.SIGNED_HOMEROOM))
        db.session.commit()

    page = _sign_in(browser, live_url, principal.username, "/s/lqd/")
    item = page.locator("#waiting a[data-item=to_sign]")
    assert item.inner_text() == "3 học bạ chờ Hiệu trưởng ký"
    item.click()
    assert "3" in page.locator("#signing tr[data-step='hieu_truong']").inner_text()
    page.goto(f"{live_url}/s/lqd/records/{versions[0].id}")
    page.locator("summary", has_text="Trả lại").click()
    page.fill("form[action$='/return'] textarea[name=reason]", "Sai ngày sinh, đề nghị sửa lại")
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("form[action$='/return'] button").click()
    page.wait_for_selector(".flash-success")
    page.click("header a:text('Trang trường')")
    assert page.locator("#waiting a[data-item=to_sign]").inner_text() == "2 học bạ chờ Hiệu trưởng ký"

    teacher = _sign_in(browser, live_url, gvcn.username, "/s/lqd/")
    returned = teacher.locator("#my-classes li", has=teacher.locator("a[data-item=record_returned]"))
    assert "Sai ngày sinh, đề nghị sửa lại" in returned.inner_text()
    returned.locator("a").click()
    teacher.wait_for_url(f"**/records/{versions[0].id}")
    assert "Sai ngày sinh, đề nghị sửa lại" in teacher.inner_text("main")
    teacher.go_back()
    assert teacher.locator("a[data-item=record_returned]").count() == 1


def test_the_district_officer_opens_a_school_behind_plan_and_comes_back(browser, live_url, app, make):
    school = make.school("lqd", "Trường Tiểu học Lê Quang Định")
    make.school("nvc", "Trường Tiểu học Nguyễn Văn Cừ")
    officer = make.user(None, username="phong.cv", district_role=Role.DISTRICT_OFFICER)
    year = f"{date.today().year - 1}-{date.today().year}"
    milestone = make_milestone(app, measure="evidence", scope=Scope.ALL, deadline=date.today() - timedelta(days=3),
                               title="Nộp kế hoạch triển khai", year=year)
    make_milestone(app, measure="evidence", scope=Scope.ALL, deadline=date.today() + timedelta(days=60),
                   title="Báo cáo sơ kết", year=year)

    page = _sign_in(browser, live_url, officer.username, "/district/")
    behind = page.locator("#behind a[data-item=school_behind]")
    assert behind.count() == 2 and "1 mốc quá hạn" in page.inner_text("#behind")
    page.locator("#behind a", has_text=school.name).click()
    assert "Nộp kế hoạch triển khai" in page.inner_text("main")
    assert page.locator(f"tr[data-milestone='{milestone}']").count() == 1
    page.go_back()
    assert page.locator("#behind a[data-item=school_behind]").count() == 2
