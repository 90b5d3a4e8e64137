"""The home pages are work queues: each person sees what waits for them, each count linking to its page."""

from __future__ import annotations

import re
from datetime import date, timedelta

from portal.compliance.models import Scope
from tenants.roles import Role
from tests.compliance_factory import make_milestone
from tests.conftest import login
from tests.test_results import world  # noqa: F401 - the fixture


def _links(page: str) -> dict[str, list[tuple[str, str]]]:
    """{data-item: [(href, text)]} of the queue links on a page."""
    found: dict[str, list[tuple[str, str]]] = {}
    for href, kind, text in re.findall(r'<a href="([^"]+)" data-item="([^"]+)">([^<]+)</a>', page):
        found.setdefault(kind, []).append((href.replace("&amp;", "&"), text))
    return found


def test_the_homeroom_teacher_sees_her_class_and_what_waits_in_it(client, world):  # noqa: F811
    login(client, world["gvcn"])
    page = client.get("/s/lqd/").get_data(as_text=True)
    assert "Lớp 5A" in page and "Chủ nhiệm" in page
    links = _links(page)
    [(href, text)] = links["results_to_confirm"]
    assert text == "4 kết quả cuối năm chờ xác nhận"
    assert href == f"/s/lqd/results/classes/{world['setup'].class_id}?show=to_confirm"
    # The optional subject only one pupil takes is still empty for the others in the open window.
    assert any("chưa có đánh giá (Cuối năm học)" in text for _href, text in links["empty_cells"])


def test_the_principal_sees_deadlines_of_the_next_two_weeks(client, app, world):  # noqa: F811
    principal = world["make"].user(world["school"], Role.PRINCIPAL)
    today = date.today()
    soon = make_milestone(app, measure="evidence", scope=Scope.ALL, deadline=today + timedelta(days=5),
                          title="Nộp kế hoạch triển khai", year="2024-2025")
    make_milestone(app, measure="evidence", scope=Scope.ALL, deadline=today + timedelta(days=40),
                   title="Báo cáo sơ kết")
    login(client, principal)
    links = _links(client.get("/s/lqd/").get_data(as_text=True))
    [(href, text)] = links["deadline"]
    assert "Nộp kế hoạch triển khai" in text and (today + timedelta(days=5)).strftime("%d/%m/%Y") in text
    assert href.endswith(f"m={soon}#m{soon}")
    assert "results_to_confirm" not in links  # not his class
