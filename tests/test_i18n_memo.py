"""Translations remembered across rows and requests: the class pages' labels still follow each reader's
language, a message is looked up in its catalogue once, and `_()` formats exactly as before."""

from __future__ import annotations

from typing import Any

import pytest
from flask import render_template_string

from portal import i18n
from portal.assessment import words
from tenants.roles import Role
from tests.assessment_factory import make_class, make_year
from tests.conftest import csrf_token, login
from tests.results_factory import rate


@pytest.fixture
def world(app, make) -> dict[str, Any]:
    """Class 5A of three pupils (one missing a rating) and its GVCN, signed in."""
    school = make.school("lqd")
    gvcn = make.user(school, Role.HOMEROOM_TEACHER)
    year_id = make_year(app, school)
    setup = make_class(app, school, year_id, "5A", homeroom_id=gvcn.id, pupils=3)
    rate(app, school, setup, 0)
    rate(app, school, setup, 1, subjects={"toan": ("C", 3)})
    rate(app, school, setup, 2, subjects={"khoa_hoc": None})
    client = app.test_client()
    login(client, gvcn)
    return {"setup": setup, "client": client}


def _speak(world: dict[str, Any], locale: str):
    client = world["client"]
    assert client.post(f"/language/{locale}", data={"csrf_token": csrf_token(client, "/roles")}).status_code == 302
    return client


def _results(client, world: dict[str, Any]) -> str:
    response = client.get(f"/s/lqd/results/classes/{world['setup'].class_id}")
    assert response.status_code == 200
    return response.get_data(as_text=True)


def test_the_results_page_follows_the_readers_language_request_after_request(world):
    pages = {}
    for name in ("vi", "en", "vi", "en"):  # alternately: nothing remembered in one language shows in the other
        pages[name] = _results(_speak(world, name), world)
        if name == "vi":
            assert "Kết quả cuối năm" in pages[name] and "End-of-year result" not in pages[name]
        else:
            assert "End-of-year result" in pages[name] and "Kết quả cuối năm" not in pages[name]
    assert "Còn thiếu" in pages["vi"] and "Still missing" not in pages["vi"]
    assert "Still missing" in pages["en"] and "Còn thiếu" not in pages["en"]


def test_the_class_grid_labels_follow_the_readers_language(world):
    url = f"/s/lqd/grading/classes/{world['setup'].class_id}/periods/{world['setup'].period_ids['CN']}"
    for _round in range(2):
        vi = _speak(world, "vi").get(url).get_data(as_text=True)
        assert ">Mức</th>" in vi and ">Level</th>" not in vi
        en = _speak(world, "en").get(url).get_data(as_text=True)
        assert ">Level</th>" in en and ">Mức</th>" not in en


def test_a_message_is_looked_up_once_then_remembered_for_later_requests(world, monkeypatch):
    _results(world["client"], world)  # every message of the page looked up once
    calls = []
    real = i18n.get_translations
    monkeypatch.setattr(i18n, "get_translations", lambda: calls.append(1) or real())
    _results(world["client"], world)
    assert len(calls) <= 1  # the request's catalogue, found once; no message looked up again


def test_a_reason_is_worked_out_once_per_request(app):
    seen = []
    with app.test_request_context():
        shown = [words._remembered("test_words", lambda t: seen.append(t) or t.upper(), "abc") for _ in range(5)]
    assert shown == ["ABC"] * 5 and seen == ["abc"]
    with app.test_request_context():  # another request works it out again
        words._remembered("test_words", lambda t: seen.append(t) or t, "abc")
    assert seen == ["abc", "abc"]


@pytest.mark.parametrize(("source", "expected"), [
    ('{{ _("Đã xong 100%% các mục") }}', "Đã xong 100% các mục"),  # `%%` is still formatted without variables
    ('{{ _("Sĩ số: %(n)d", n=3) }}', "Sĩ số: 3"),
    ('{{ _("Lớp %(c)s", c="<b>5A</b>") }}', "Lớp &lt;b&gt;5A&lt;/b&gt;"),  # variables still escaped
    ('{{ _("Kết quả cuối năm") }}{{ _("Kết quả cuối năm") }}', "Kết quả cuối nămKết quả cuối năm"),
])
def test_template_gettext_formats_as_before(app, source, expected):
    with app.test_request_context():
        assert render_template_string(source) == expected


def test_every_pupil_link_of_the_results_page_is_the_pupils_page(world, app):
    page = _results(world["client"], world)
    for pupil_id in world["setup"].pupil_ids:
        with app.test_request_context():
            from flask import url_for

            expected = url_for("results.pupil", school_code="lqd", class_id=world["setup"].class_id,
                               pupil_id=pupil_id)
        assert f'<a href="{expected}">' in page
        assert world["client"].get(expected).status_code == 200
