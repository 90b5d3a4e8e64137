"""Real-browser tests: Playwright driving Debian's Chromium against the portal on a local port."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from portal.extensions import db
from tenants.models import Membership, User
from tenants.roles import Role
from tenants.scoping import all_schools
from tests.conftest import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_principal_logs_in_and_manages_staff(browser, live_url, make, app):
    school = make.school("lequangdinh", "Trường Tiểu học Lê Quang Định")
    make.user(school, Role.PRINCIPAL, username="ht.lqd", full_name="Võ Thị Lài")
    make.user(school, Role.SUBJECT_TEACHER, username="gv.cu", full_name="Trần Văn Cũ")
    page = browser.new_page()
    page.set_default_timeout(15_000)

    page.goto(f"{live_url}/login")
    assert page.locator("h1").inner_text() == "Đăng nhập"
    page.fill("#username", "ht.lqd")
    page.fill("#password", PASSWORD)
    page.click("main button.primary")
    page.wait_for_url(f"{live_url}/s/lequangdinh/")
    assert "Trường Tiểu học Lê Quang Định" in page.inner_text("h1")

    # Create a homeroom teacher who also teaches a subject.
    page.click("text=Cán bộ, giáo viên")
    page.click("text=Thêm tài khoản")
    page.fill("#username", "gvcn.moi")
    page.fill("#full_name", "Nguyễn Thị Ánh Tuyết")
    page.check("input[value=homeroom_teacher]")
    page.check("input[value=subject_teacher]")
    page.click("main button.primary")
    link = page.get_attribute("#set-password-link", "href")
    assert "/account/set-password/" in link and page.locator("#temporary-password").count() == 0

    # Deactivate the old subject teacher, confirming the browser's dialog.
    page.click("text=Về danh sách")
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("tr[data-username='gv.cu'] button", has_text="Khóa").click()
    page.wait_for_selector("tr[data-username='gv.cu'].inactive")
    row = page.inner_text("tr[data-username='gvcn.moi']")
    assert "Giáo viên chủ nhiệm" in row and "Giáo viên bộ môn" in row

    with app.app_context(), all_schools():
        created = db.session.scalar(sa.select(User).where(User.username == "gvcn.moi"))
        assert created is not None
        old = db.session.scalar(sa.select(Membership).join(User).where(User.username == "gv.cu"))
        assert old is not None and not old.active

    # The new teacher opens her link, chooses her own password (nobody else sees it) and signs in with it.
    other = browser.new_context().new_page()
    other.goto(link)
    other.fill("#new", "Tuyet-Hoa-Sen-2026")
    other.fill("#confirm", "Tuyet-Hoa-Sen-2026")
    other.click("main button.primary")
    other.wait_for_url(f"{live_url}/login")
    other.fill("#username", "gvcn.moi")
    other.fill("#password", "Tuyet-Hoa-Sen-2026")
    other.click("main button.primary")
    other.wait_for_url(f"{live_url}/s/lequangdinh/")
