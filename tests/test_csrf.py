"""CSRF: every state-changing POST of the app is refused without the form's token, and works with it.

The walk below reads the app's own URL map, so a new POST route is checked the day it is added; a
route whose URL needs an object the walk cannot build fails the walk until `url_values` learns it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.routing import BuildError, Rule

from portal.assessment.models import Award
from portal.compliance.models import EvidenceStatus, Scope
from portal.extensions import csrf, db
from portal.i18n import LOCALES
from portal.jobs import JobRun
from tenants.models import Membership, School, User
from tenants.roles import SCHOOL_ROLES, Role
from tenants.scoping import all_schools, school_scope
from tests.assessment_factory import make_class, make_year
from tests.city_helpers import exchange_objects
from tests.compliance_factory import make_evidence, make_milestone, make_training
from tests.conftest import PASSWORD, Factory, csrf_token, finish_jobs, login
from tests.records_factory import insert_version
from tests.signing_factory import certificate_row
from tests.test_tenancy import _signing_batch

SCHOOL = "lqd"
# POST routes without a CSRF token on purpose: used by other systems, with no cookie and no session.
CSRF_EXEMPT = {"/api/verify/file",
               # the signing agent's bearer-token API: tests/test_signing_agent.py shows a cookie alone fails
               "/api/agent/session", "/api/agent/signatures"}
# What a careless or forged form would send: enough for most forms to pass validation with a token.
FORM_DATA = {"username": "csrf.moi", "full_name": "Giả Mạo", "email": "", "roles": Role.PRINCIPAL.value,
             "role": Role.PRINCIPAL.value, "code": "csrfmoi", "name": "Trường Giả Mạo", "commune": "",
             "address": "", "moet_code": "", "current": PASSWORD, "new": "Matkhaugia2025",
             "confirm": "Matkhaugia2025", "password": PASSWORD, "next": "/"}


@dataclass(frozen=True)
class World:
    school: School
    actor: User  # every role there is: no page refuses them for want of a permission
    target: User
    url_values: dict[str, object]


@pytest.fixture
def world(app: Flask, make: Factory) -> World:
    school = make.school(SCHOOL, "Trường Tiểu học Lê Quang Định")
    actor = make.user(school, *SCHOOL_ROLES, username="toan.quyen", district_role=Role.DISTRICT_ADMIN)
    target = make.user(school, Role.SUBJECT_TEACHER, username="gv.target")
    return World(school, actor, target, {"school_code": school.code, "code": school.code, "user_id": target.id,
                                         "active": 0, "locale": "en", "run_id": "0" * 32, "token": "unknown-link",
                                         "certificate_id": certificate_row(app, actor)})


@pytest.fixture
def full_world(app: Flask, world: World) -> World:
    """The world with a school year, a class of one pupil and an award: every id a URL may carry."""
    school, actor = world.school, world.actor
    year_id = make_year(app, school)
    setup = make_class(app, school, year_id, homeroom_id=actor.id, pupils=1)
    with app.app_context(), school_scope(school.id):
        award = Award(school_id=school.id, enrolment_id=setup.enrolment_ids[0], title="Học sinh Tiêu biểu",
                      awarded_on=date(2025, 5, 20))
        db.session.add(award)
        db.session.commit()
        award_id = award.id
    values = {"year_id": year_id, "class_id": setup.class_id, "pupil_id": setup.pupil_ids[0], "award_id": award_id,
              "period_id": setup.period_ids["CN"], "subject_id": setup.subject_ids["toan"],
              "version_id": insert_version(app, school, setup), "grade": 5}
    milestone_id = make_milestone(app, measure="evidence", scope=Scope.STAFF, deadline=date(2025, 3, 28))
    values.update(milestone_id=milestone_id, training_id=make_training(app, school, date(2025, 4, 20), [actor.id]),
                  evidence_id=make_evidence(app, school, milestone_id, EvidenceStatus.SUBMITTED, date(2025, 3, 20)))
    values.update(exchange_objects(app, Factory(app), school, values["version_id"]))  # upload, received, transfer
    values["batch_id"] = _signing_batch(app, school.id, actor.id)  # the actor's own batch: its pages open
    return World(school, actor, world.target, {**world.url_values, **values})


def snapshot(app: Flask) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table: what "nothing changed" compares."""
    with app.app_context(), all_schools():
        return {table.name: sorted(map(tuple, db.session.execute(sa.select(table)).all()), key=repr)
                for table in db.metadata.sorted_tables}


def post_rules(app: Flask) -> list[Rule]:
    return sorted((r for r in app.url_map.iter_rules() if "POST" in (r.methods or ())), key=lambda r: r.rule)


def signed_in(client: FlaskClient) -> bool:
    response = client.get("/")
    return not (response.status_code == 302 and "/login" in response.location)


@pytest.fixture
def csrf_refusals(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The reasons of the CSRF check's refusals, so that a 400 is known to come from it."""
    reasons: list[str] = []
    refuse = csrf._error_response

    def spy(reason: str) -> None:
        reasons.append(reason)
        refuse(reason)

    monkeypatch.setattr(csrf, "_error_response", spy)
    return reasons


# --- the walk ------------------------------------------------------------------------------------------

def test_every_post_route_refuses_a_request_without_token(app, client, full_world, csrf_refusals):
    world = full_world
    login(client, world.actor)
    before = snapshot(app)
    adapter = app.url_map.bind("localhost")
    covered, problems = [], []
    for rule in post_rules(app):
        if rule.rule in CSRF_EXEMPT:
            covered.append(rule.rule)
            continue
        missing = sorted(set(rule.arguments) - set(world.url_values))
        if missing:
            problems.append(f"{rule.rule}: the walk has no value for {missing}")
            continue
        try:
            url = adapter.build(rule.endpoint, {a: world.url_values[a] for a in rule.arguments}, method="POST")
        except BuildError as exc:
            problems.append(f"{rule.rule}: {exc}")
            continue
        refused_before = len(csrf_refusals)
        response = client.post(url, data=FORM_DATA)
        if response.status_code != 400:
            problems.append(f"POST {url}: {response.status_code}, not 400")
        elif len(csrf_refusals) != refused_before + 1:
            problems.append(f"POST {url}: 400, but not from the CSRF check")
        if snapshot(app) != before:
            problems.append(f"POST {url} changed the database")
            before = snapshot(app)
        covered.append(rule.rule)
    assert not problems, "\n".join(problems)
    assert covered == [r.rule for r in post_rules(app)]
    # The walk did reach the routes that matter most, with real objects in their URLs.
    assert {"/login", "/logout", "/language/<locale>", "/s/<school_code>/staff/new",
            "/s/<school_code>/staff/<int:user_id>/active/<int:active>", "/district/schools/new"} <= set(covered)
    assert signed_in(client), "the POST to /logout without a token signed the user out"
    # Exactly the routes listed above go without the check.
    views = {r.rule: app.view_functions[r.endpoint] for r in post_rules(app)}
    exempt = {rule for rule, view in views.items() if f"{view.__module__}.{view.__name__}" in csrf._exempt_views}
    assert exempt == CSRF_EXEMPT


def test_the_walk_builds_urls_of_real_objects(app, client, full_world):
    """The ids the walk puts in URLs are real: every page built from them is found, not 404."""
    world = full_world
    login(client, world.actor)
    token = csrf_token(client, f"/s/{SCHOOL}/staff")
    adapter = app.url_map.bind("localhost")
    # no job, static file, checkpoint or set-password link is needed: their 404 is right
    fake = {"run_id", "filename", "checkpoint_id", "token"}
    used: set[str] = set()
    tried: set[frozenset[str]] = set()
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if "GET" not in (rule.methods or ()) or rule.arguments <= {"school_code"} or rule.arguments & fake:
            continue  # pages of the school alone prove nothing about the ids
        if frozenset(rule.arguments) in tried:
            continue  # one page per combination of ids is proof enough
        tried.add(frozenset(rule.arguments))
        url = adapter.build(rule.endpoint, {a: world.url_values[a] for a in rule.arguments})
        assert client.get(url).status_code not in {404, 500}, url
        used |= rule.arguments
    # Only in POST URLs: the award (its deletion below), `active`, the locale (one of the two offered), a grade.
    assert world.url_values["locale"] in LOCALES
    assert used | fake | {"active", "award_id", "locale", "grade"} >= set(world.url_values)
    # The award is real too: deleting it with a token finds it and removes it.
    url = adapter.build("results.delete_award", {a: world.url_values[a] for a in
                                                 ["school_code", "class_id", "award_id"]}, method="POST")
    assert client.post(url, data={"csrf_token": token}).status_code == 302
    with app.app_context(), all_schools():
        assert db.session.get(Award, world.url_values["award_id"]) is None


# --- the same POST, without then with the token ----------------------------------------------------

def _username_exists(username: str) -> Callable[[Flask, World], bool]:
    def check(app: Flask, world: World) -> bool:
        with app.app_context(), all_schools():
            return db.session.scalar(sa.select(User.id).where(User.username == username)) is not None
    return check


def _target_locked(app: Flask, world: World) -> bool:
    with app.app_context(), all_schools():
        return not db.session.scalar(sa.select(Membership.active).where(Membership.user_id == world.target.id))


def _target_password_reset(app: Flask, world: World) -> bool:
    from portal.auth.models import PasswordLink

    with app.app_context(), all_schools():
        return db.session.scalar(sa.select(PasswordLink.id).where(PasswordLink.user_id == world.target.id)) is not None


def _school_created(app: Flask, world: World) -> bool:
    with app.app_context():
        return db.session.scalar(sa.select(School.id).where(School.code == "truongmoi")) is not None


def _export_queued(app: Flask, world: World) -> bool:
    with app.app_context(), all_schools():
        runs = list(db.session.scalars(sa.select(JobRun.id)))
    backend = app.extensions["portal_jobs"]
    if backend.in_process:
        finish_jobs(app, runs)  # the job thread is quick; only let it end before the tables are emptied
    else:
        for run_id in runs:  # no job outlives the test; a worker here would cost seconds
            job = backend.queue.fetch_job(run_id)
            if job is not None:
                job.delete()
    return bool(runs)


def _language_english(app: Flask, world: World) -> bool:
    with app.app_context(), all_schools():
        return db.session.get(User, world.actor.id).locale == "en"


@dataclass(frozen=True)
class Case:
    name: str
    form_page: str  # where the form (and its token) is
    url: str
    data: dict[str, object]
    status: int
    effect: Callable[[Flask, World], bool]


CASES = [
    Case("create staff", "/s/{school}/staff/new", "/s/{school}/staff/new",
         {"username": "gv.moi", "full_name": "Phạm Văn Mới", "email": "", "roles": Role.SUBJECT_TEACHER.value},
         200, _username_exists("gv.moi")),
    Case("lock staff", "/s/{school}/staff", "/s/{school}/staff/{target}/active/0", {}, 302, _target_locked),
    Case("reset password", "/s/{school}/staff/{target}", "/s/{school}/staff/{target}/reset-password", {}, 200,
         _target_password_reset),
    Case("export audit", "/s/{school}/audit", "/s/{school}/audit/export", {}, 302, _export_queued),
    Case("create school", "/district/schools/new", "/district/schools/new",
         {"code": "truongmoi", "name": "Trường Tiểu học Mới", "moet_code": "", "commune": "", "address": ""},
         302, _school_created),
    Case("create principal", "/district/schools/{school}", "/district/schools/{school}",
         {"role": Role.PRINCIPAL.value, "username": "ht.moi", "full_name": "Trần Văn Hiệu", "email": ""},
         200, _username_exists("ht.moi")),
    Case("choose language", "/s/{school}/", "/language/en", {"next": "/roles"}, 302, _language_english),
]


def test_same_post_is_refused_without_token_and_done_with_it(app, client, world, csrf_refusals):
    login(client, world.actor)
    for n, case in enumerate(CASES, start=1):
        url = case.url.format(school=SCHOOL, target=world.target.id)
        before = snapshot(app)
        refused = client.post(url, data=case.data)
        assert refused.status_code == 400 and len(csrf_refusals) == n, case.name
        assert snapshot(app) == before and not case.effect(app, world), case.name
        token = csrf_token(client, case.form_page.format(school=SCHOOL, target=world.target.id))
        done = client.post(url, data={**case.data, "csrf_token": token})
        assert done.status_code == case.status, case.name
        assert case.effect(app, world) and len(csrf_refusals) == n, case.name


def test_logout_needs_the_token(client, world, csrf_refusals):
    login(client, world.actor)
    assert client.post("/logout").status_code == 400 and csrf_refusals
    assert signed_in(client)
    response = client.post("/logout", data={"csrf_token": csrf_token(client, f"/s/{SCHOOL}/")})
    assert response.status_code == 302 and response.location.endswith("/login")
    assert not signed_in(client)


def test_login_form_without_token_is_refused(app, client, world, csrf_refusals):
    before = snapshot(app)
    response = client.post("/login", data={"username": world.actor.username, "password": PASSWORD})
    assert response.status_code == 400 and csrf_refusals
    assert not signed_in(client)
    assert snapshot(app) == before  # no last login stamped, no attempt recorded
    login(client, world.actor)  # the same with the page's token works
    assert signed_in(client)


def test_a_token_of_another_session_or_made_up_is_refused(app, make, world, csrf_refusals):
    other = make.user(world.school, Role.PRINCIPAL, username="ht.khac")
    mallory, victim = app.test_client(), app.test_client()
    login(mallory, other)
    login(victim, world.actor)
    url = f"/s/{SCHOOL}/staff/{world.target.id}/active/0"
    for forged in (csrf_token(mallory, f"/s/{SCHOOL}/staff"), "gia-mao"):
        assert victim.post(url, data={"csrf_token": forged}).status_code == 400, forged
        assert not _target_locked(app, world), forged
    assert len(csrf_refusals) == 2
    # The victim's own token does the same request.
    token = csrf_token(victim, f"/s/{SCHOOL}/staff")
    assert victim.post(url, data={"csrf_token": token}).status_code == 302
    assert _target_locked(app, world)
