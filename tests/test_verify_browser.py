"""On a phone: open a record's code URL (what scanning its QR does), then upload the file to check it."""

from __future__ import annotations

import pytest

from tenants.roles import Role
from tests import verify_factory as vf
from tests.records_factory import assessed_class, generate

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 3, "is_mobile": True, "has_touch": True,
         "locale": "vi-VN"}


def fits_the_screen(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def test_a_phone_opens_the_code_url_then_checks_the_file(browser, live_url, app, make, tmp_path, monkeypatch):
    monkeypatch.setitem(app.config, "TRUST_ROOTS", (vf.write_root(tmp_path, vf.trusted_ca()),))
    school = make.school("lqd", vf.SCHOOL_NAME)
    gvcn = make.user(school, Role.HOMEROOM_TEACHER, full_name=vf.GVCN_NAME)
    assessed = assessed_class(app, school, gvcn, pupils=1, years=1)
    issued = vf.issue(app, school, generate(app, school, assessed.setup.class_id, gvcn)[0].id)
    pdf_path = tmp_path / "hoc-ba.pdf"
    pdf_path.write_bytes(vf.signed_file(app, issued))

    context = browser.new_context(**PHONE)
    page = context.new_page()
    page.set_default_timeout(15_000)

    # The QR holds PUBLIC_URL/verify/<code>: opening it is what a scan does.
    page.goto(f"{live_url}/verify/{issued.code}")
    status = page.locator("#record-status")
    assert status.get_attribute("data-state") == "current"
    assert "Đã ban hành, là bản hiện hành" in status.inner_text()
    assert page.inner_text("#pupil-name") == "N. T. Á. Tuyết"
    assert page.inner_text("#sha256") == issued.signed_digest
    assert vf.PRINCIPAL_NAME in page.inner_text("ol.signers")
    assert fits_the_screen(page), "the code page scrolls sideways on a phone"

    # From there to the upload check, and the file just downloaded.
    page.click("text=Kiểm tra một tệp PDF học bạ số")
    page.set_input_files("#file", str(pdf_path))
    page.click("#upload-form button.primary")
    verdict = page.locator("#file-verdict")
    verdict.wait_for()
    assert verdict.get_attribute("data-verdict") == "registered_current"
    assert page.locator(".signature").count() == 3
    assert page.locator(".check-bad").count() == 0
    assert page.locator("#registry").get_attribute("data-found") == "yes"
    assert fits_the_screen(page), "the file check scrolls sideways on a phone"

    # A file that is not a PDF gets an answer on the same page, not an error page.
    other = tmp_path / "anh.jpg"
    other.write_bytes(b"\xff\xd8\xff\xe0 not a pdf")
    page.set_input_files("#file", str(other))
    page.click("#upload-form button.primary")
    page.locator("#file-verdict[data-verdict='unreadable']").wait_for()
    assert "không phải là tệp PDF" in page.inner_text("#file-verdict")
    context.close()
