"""No input makes a 500: every route of the app, with hostile values, as a stranger and as each kind of user."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from urllib.parse import quote, urlencode

import pytest
from flask import Flask
from flask.testing import FlaskClient
from flask_wtf import FlaskForm
from wtforms.fields.core import UnboundField

from portal import inputs
from tenants.roles import Role
from tests.assessment_factory import make_class, make_year
from tests.conftest import Factory, login

BIG_ID = "99999999999999999999"  # 20 digits: beyond any database integer
TEXTS = [
    "a\x00b",  # NUL: PostgreSQL refuses it in text
    "x" * 5_000,
    BIG_ID,
    "-1",
    "\u202egnp.exe\u200b\ufeff\ufffe e\u0301 \U0001f4a9",
    "31/02/99999",
    "' OR 1=1 --<script>",
]
QUERY_NAMES = ("grade", "m", "next", "page", "part", "period_id", "phase", "scope", "sort", "state", "year", "q")
SKIPPED = {"static", "auth.logout"}  # logging out would end the session the rest of the walk needs


def _field_names() -> list[str]:
    """The name of every field of every form of the app: what a hostile POST fills in."""
    names: set[str] = {"username", "password", "code", "token", "pin"}

    def walk(cls: type) -> None:
        for sub in cls.__subclasses__():
            names.update(n for n, v in vars(sub).items() if isinstance(v, UnboundField))
            walk(sub)

    walk(FlaskForm)
    return sorted(names)


def _urls(rule, school_code: str) -> Iterator[str]:
    """The rule's path with hostile values: a 20-digit id, a negative one, then a real-looking one; hostile text."""
    def fill(int_value: str, text_value: str) -> str:
        def one(match: re.Match[str]) -> str:
            converter, name = match.group(1) or "default", match.group(2)
            if converter == "int":
                return int_value
            if name == "school_code":
                return school_code
            return quote(text_value, safe="")
        return re.sub(r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>", one, rule.rule)

    yield fill(BIG_ID, "a\x00b")
    if rule.arguments - {"school_code"}:
        yield fill("-1", "x" * 3000)
        yield fill("1", "\u202e\U0001f4a9")


def _requests(rule, school_code: str, fields: list[str]) -> Iterator[tuple[str, str, dict]]:
    for n, url in enumerate(_urls(rule, school_code)):
        if "GET" in rule.methods:
            query = urlencode({name: TEXTS[(n + i) % len(TEXTS)][:200] for i, name in enumerate(QUERY_NAMES)})
            yield "GET", f"{url}?{query}", {}
        if "POST" in rule.methods:
            yield "POST", url, {"data": {name: TEXTS[(n + i) % len(TEXTS)] for i, name in enumerate(fields)}}
            if n == 0 and rule.rule.startswith("/api/"):
                yield "POST", url, {"data": "{not json", "content_type": "application/json"}
                yield "POST", url, {"json": {"a": "\x00", "id": int(BIG_ID), "signature": "\x00" * 10,
                                             "items": [{"id": -1}] * 3}}


@pytest.fixture
def people(app: Flask, make: Factory) -> dict[str, FlaskClient]:
    return make_people(app, make)


def make_people(app: Flask, make: Factory) -> dict[str, FlaskClient]:
    """A school with a class of pupils; a signed-in client per kind of user, and one for a stranger."""
    school = make.school("lqd", "Trường Tiểu học Lê Quang Định")
    homeroom = make.user(school, Role.HOMEROOM_TEACHER, username="gvcn.lqd")
    year = make_year(app, school)
    make_class(app, school, year, "5A", homeroom_id=homeroom.id, pupils=3)
    users = {
        "district": make.user(None, username="pgd.admin", district_role=Role.DISTRICT_ADMIN),
        "principal": make.user(school, Role.PRINCIPAL, username="ht.lqd"),
        "it": make.user(school, Role.SCHOOL_IT, username="it.lqd"),
        "homeroom": homeroom,
    }
    clients = {"anonymous": app.test_client()}
    for name, user in users.items():
        clients[name] = app.test_client()
        login(clients[name], user)
    return clients


@pytest.mark.slow
def test_no_route_answers_5xx_to_hostile_input(app: Flask, people: dict[str, FlaskClient], no_csrf: None):
    rules = sorted((r for r in app.url_map.iter_rules() if r.endpoint not in SKIPPED), key=lambda r: r.rule)
    fields = _field_names()
    failures: list[str] = []
    sent = 0
    started = time.monotonic()
    for who, client in people.items():
        for rule in rules:
            for method, url, kwargs in _requests(rule, "lqd", fields):
                sent += 1
                try:
                    response = client.open(url, method=method, **kwargs)
                    status = response.status_code
                    response.close()  # a file sent from disk stays open until its response is closed
                except Exception as exc:  # the test app propagates what would be a 500
                    failures.append(f"{who} {method} {url[:120]!r}: {type(exc).__name__}: {str(exc)[:160]}")
                    continue
                if status >= 500:
                    failures.append(f"{who} {method} {url[:120]!r}: {status}")
    assert sent > 1000, sent
    assert not failures, f"{len(failures)} of {sent} requests failed ({time.monotonic() - started:.0f} s):\n" + \
        "\n".join(failures[:60])


def test_ids_beyond_the_database_integer_match_no_route(app: Flask, people: dict[str, FlaskClient]):
    principal = people["principal"]
    assert principal.get(f"/s/lqd/pupils/{BIG_ID}").status_code == 404
    assert principal.get(f"/s/lqd/pupils/{inputs.DB_INT_MAX + 1}").status_code == 404
    assert principal.get(f"/s/lqd/pupils/{inputs.DB_INT_MAX}").status_code == 404  # in range: simply not found


def test_nul_and_control_characters_are_removed_from_what_views_read(app: Flask, no_csrf: None):
    from flask import request

    with app.test_request_context("/login?q=a%00b%07c", method="POST", data={"f": "x\x00y\tz\r\n"}):
        app.preprocess_request()
        assert (request.args["q"], request.form["f"]) == ("abc", "xy\tz\r\n")
    with app.test_request_context("/api/agent/session", method="POST", json={"k\x00": ["v\x00", {"w": "\x1b[31m"}]}):
        app.preprocess_request()
        assert request.get_json() == {"k": ["v", {"w": "[31m"}]}
