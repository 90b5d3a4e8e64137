"""Security headers: every HTML page, for every kind of user, carries them; the pages still work under the CSP."""

from __future__ import annotations

import re
from collections import deque
from urllib.parse import urljoin, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient

from portal.headers import CSP
from tests.conftest import PASSWORD, Factory, finish_jobs
from tests.test_fuzz import make_people


@pytest.fixture
def people(app: Flask, make: Factory) -> dict[str, FlaskClient]:
    return make_people(app, make)


LINK = re.compile(r'href="(/[^"#]*)"')
PAGES_PER_PERSON = 120


def _crawl(client: FlaskClient, start: str) -> dict[str, object]:
    """Every page reachable by links from `start` (GET only, same site, no downloads), up to a bound."""
    seen: dict[str, object] = {}
    queue = deque([start])
    while queue and len(seen) < PAGES_PER_PERSON:
        url = queue.popleft()
        if url in seen or url.startswith(("/static/", "/logout")) or url.endswith((".pdf", ".xlsx", ".zip")):
            continue
        response = client.get(url)
        response.close()  # a file sent from disk stays open until its response is closed; the body stays readable
        seen[url] = response
        if response.status_code in (301, 302, 303) and response.location:
            queue.append(urljoin(url, response.location))
        if response.mimetype == "text/html" and response.status_code == 200:
            for link in LINK.findall(response.get_data(as_text=True)):
                target = urljoin(url, link.replace("&amp;", "&"))
                if urlsplit(target).path not in {urlsplit(u).path for u in seen}:
                    queue.append(target)
    return seen


def assert_protected(url: str, response) -> None:
    headers = response.headers
    assert headers.get("Content-Security-Policy") == CSP, url
    assert "frame-ancestors 'none'" in CSP and "script-src 'self';" in CSP and "unsafe-eval" not in CSP
    assert (headers.get("X-Frame-Options"), headers.get("X-Content-Type-Options")) == ("DENY", "nosniff"), url
    assert headers.get("Referrer-Policy") == "same-origin", url


@pytest.mark.slow
def test_every_html_page_reachable_by_each_person_carries_the_headers(app: Flask, people: dict[str, FlaskClient]):
    pages = 0
    for who, client in people.items():
        for url, response in _crawl(client, "/").items():
            if response.mimetype == "text/html":
                pages += 1
                assert_protected(f"{who} {url}", response)
            else:
                assert response.headers.get("X-Content-Type-Options") == "nosniff", url
    assert pages > 60, pages


def test_no_template_runs_inline_script():
    from pathlib import Path

    for path in Path("templates").rglob("*.html"):
        text = path.read_text(encoding="utf-8")
        inline = [s for s in re.findall(r"<script\b([^>]*)>", text)
                  if "src=" not in s and 'type="application/json"' not in s]
        assert not inline, f"{path}: inline <script>"
        assert not re.search(r"\son[a-z]+\s*=", text), f"{path}: an on...= handler"
        assert "javascript:" not in text, path


def test_hsts_only_when_cookies_are_secure(app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch):
    assert "Strict-Transport-Security" not in client.get("/login").headers
    monkeypatch.setitem(app.config, "SESSION_COOKIE_SECURE", True)
    assert client.get("/login").headers["Strict-Transport-Security"].startswith("max-age=31536000")


# --- in a real browser ---------------------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.slow
def test_pages_work_under_the_policy_without_a_single_violation(browser, live_url, app, make):
    from tenants.roles import Role
    from tests.assessment_factory import make_class, make_year

    school = make.school("lequangdinh", "Trường Tiểu học Lê Quang Định")
    teacher = make.user(school, Role.SUBJECT_TEACHER, username="gv.anh", full_name="Phan Văn Âm")
    make.user(school, Role.PRINCIPAL, username="ht.lqd", full_name="Trần Văn Hiệu")
    year_id = make_year(app, school)
    setup = make_class(app, school, year_id, "5A", teachers={"ngoai_ngu_1": teacher.id})
    grid = (f"/s/lequangdinh/grading/classes/{setup.class_id}/subjects/{setup.subject_ids['ngoai_ngu_1']}"
            f"/periods/{setup.period_ids['CN']}")
    violations: list[str] = []

    def sign_in(username: str):
        page = browser.new_context().new_page()
        page.set_default_timeout(15_000)
        page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
        page.on("dialog", lambda dialog: dialog.accept())
        page.add_init_script("""document.addEventListener("securitypolicyviolation",
            e => console.error("Content Security Policy violation: " + e.violatedDirective + " " + e.blockedURI));""")
        page.goto(f"{live_url}/login")
        page.fill("#username", username)
        page.fill("#password", PASSWORD)
        page.click("main button.primary")
        page.wait_for_url(f"{live_url}/s/lequangdinh/")
        return page

    # The rating grid's script runs: a typed level is accepted, shown as changed, and saved.
    page = sign_in("gv.anh")
    page.goto(f"{live_url}{grid}")
    cell = page.locator("#rating-grid tbody tr").nth(0).locator(".cell[data-field=level]")
    cell.click()
    page.keyboard.press("t")
    assert cell.input_value() == "T"
    page.click("#grid-save")
    page.wait_for_selector("#rating-grid .cell.dirty", state="detached")  # no eval: the page's CSP forbids it
    assert "Đã lưu" in page.inner_text("#grid-status")

    # The job page's progress bar is driven by portal.js until the export is done.
    page = sign_in("ht.lqd")
    page.goto(f"{live_url}/s/lequangdinh/audit")
    page.click("form[action$='/audit/export'] button")
    page.wait_for_url("**/jobs/*")
    finish_jobs(app, [page.url.rsplit("/", 1)[-1]], timeout=120)  # on Redis, a `worker.py --burst` works it
    page.wait_for_selector(".job[data-state=finished]", timeout=30_000)  # shown by portal.js polling
    assert page.locator(".job progress").evaluate("p => p.value") == 100
    assert page.locator(".job-download").is_visible()
    assert not violations, violations
