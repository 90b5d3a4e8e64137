"""Who may do what: every role against every protected action, the outcome derived from ROLE_PERMISSIONS.

The table `ACTIONS` below says which permissions each action needs; `tenants.roles.ROLE_PERMISSIONS`
says which permissions each role holds. A role may do an action exactly when it holds all it needs,
and the pages must do just that: success (and its effect) when allowed, 403 (and no effect) when
refused. Change either table and the expectations follow.

The matrix is walked inside one test rather than one test per cell: every role gets a fresh account
and fresh objects to act on, and the test reports every cell that disagrees. (Each test pays for
emptying the database, which on PostgreSQL costs more than a whole pass over the matrix.)
"""

from __future__ import annotations

import html
import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from html.parser import HTMLParser

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from portal import jobs
from portal.extensions import db
from tenants.models import Membership, School, User
from tenants.roles import (
    MANAGEMENT_ROLES,
    PERMISSION_LABELS,
    ROLE_LABELS,
    ROLE_PERMISSIONS,
    SCHOOL_ROLES,
    Permission,
    Role,
    permissions_for,
)
from tenants.scoping import all_schools
from tests.conftest import PASSWORD, Factory, finish_jobs

P = Permission
SCHOOL = "lqd"


@pytest.fixture
def school(make: Factory) -> School:
    return make.school(SCHOOL, "Trường Tiểu học Lê Quang Định")


def sign_in(client: FlaskClient, user: User) -> None:
    """Sign in through the login form; CSRF is off in these tests (see `no_csrf`)."""
    response = client.post("/login", data={"username": user.username, "password": PASSWORD})
    assert response.status_code == 302 and "/login" not in response.location, "login failed"


def holder_of(make: Factory, school: School, roles: Iterable[Role], username: str) -> User:
    """A user holding `roles`: a district role on the account, school roles in the school."""
    district = [r for r in roles if r.is_district_role]
    in_school = [r for r in roles if not r.is_district_role]
    assert len(district) <= 1
    return make.user(school if in_school else None, *in_school, username=username,
                     district_role=district[0] if district else None)


# --- reading the database after a request ----------------------------------------------------------

def user_named(app: Flask, username: str) -> User | None:
    with app.app_context(), all_schools():
        return db.session.scalar(sa.select(User).where(User.username == username))


def roles_of(app: Flask, user_id: int) -> set[Role]:
    with app.app_context(), all_schools():
        membership = db.session.scalar(sa.select(Membership).where(Membership.user_id == user_id))
        return set(membership.role_set) if membership else set()


def settle_jobs(app: Flask) -> list[str]:
    """The ids of the queued jobs, taken off the queue so that none outlives the test."""
    with app.app_context(), all_schools():
        runs = list(db.session.scalars(sa.select(jobs.JobRun.id)))
    backend = app.extensions["portal_jobs"]
    if backend.in_process:
        finish_jobs(app, runs)  # the job thread is quick; only let it end before the tables are emptied
    else:
        for run_id in runs:  # a job's own working is tested in test_jobs; a worker here would cost seconds
            job = backend.queue.fetch_job(run_id)
            if job is not None:
                job.delete()
    return runs


# --- the objects one round of actions works on ------------------------------------------------------

@dataclass(frozen=True)
class Round:
    """Fresh objects for one pass over the actions, so that no action disturbs another."""

    school: School
    tag: str
    actor: User  # who acts in this round
    edited: User | None  # a subject teacher whose roles are changed
    locked: User | None  # ... who is locked
    reset: User | None  # ... whose password is reset


def new_round(app: Flask, make: Factory, school: School, roles: Iterable[Role], tag: str,
              actions: Iterable[Action]) -> tuple[Round, FlaskClient]:
    """Fresh objects for the actions, and a client signed in as a fresh holder of `roles`."""
    paths = " ".join(action.path for action in actions)

    def teacher(what: str) -> User | None:
        if f"{{{what}}}" not in paths:
            return None  # no action of this round needs them
        return make.user(school, Role.SUBJECT_TEACHER, username=f"gv.{what}{tag}")
    actor = holder_of(make, school, roles, f"actor{tag}")
    client = app.test_client()
    sign_in(client, actor)
    return Round(school, tag, actor, teacher("edited"), teacher("locked"), teacher("reset")), client


def _created(username: str, role: Role) -> Callable[[Flask, Round], bool]:
    def check(app: Flask, r: Round) -> bool:
        user = user_named(app, username.format(tag=r.tag))
        return user is not None and role in roles_of(app, user.id)
    return check


def _roles_changed(app: Flask, r: Round) -> bool:
    return roles_of(app, r.edited.id) == {Role.HOMEROOM_TEACHER}


def _locked(app: Flask, r: Round) -> bool:
    with app.app_context(), all_schools():
        return not db.session.scalar(sa.select(Membership.active).where(Membership.user_id == r.locked.id))


def _password_reset(app: Flask, r: Round) -> bool:
    """A set-password link was issued for the user (a reset never changes or shows a password)."""
    from portal.auth.models import PasswordLink

    with app.app_context():
        return db.session.scalar(sa.select(PasswordLink.id).where(PasswordLink.user_id == r.reset.id,
                                                                  PasswordLink.purpose == "reset")) is not None


def _school_created(app: Flask, r: Round) -> bool:
    with app.app_context():
        return db.session.scalar(sa.select(School.id).where(School.code == f"truongmoi{r.tag}")) is not None


def _export_queued(of_school: bool) -> Callable[[Flask, Round], bool]:
    """Whether the round's actor queued an export of the school's trail (else of the district's)."""
    def check(app: Flask, r: Round) -> bool:
        with app.app_context():
            query = sa.select(jobs.JobRun.school_id).where(jobs.JobRun.kind == "audit.export",
                                                           jobs.JobRun.created_by_id == r.actor.id)
            return (r.school.id if of_school else None) in set(db.session.scalars(query))
    return check


def _training_recorded(app: Flask, r: Round) -> bool:
    from portal.compliance.models import TrainingSession

    with app.app_context(), all_schools():
        return db.session.scalar(sa.select(TrainingSession.id).where(TrainingSession.topic == f"Tập huấn {r.tag}")
                                 ) is not None


def _milestone_added(app: Flask, r: Round) -> bool:
    from portal.compliance.models import Milestone

    with app.app_context():
        return db.session.scalar(sa.select(Milestone.id).where(Milestone.title == f"Mốc {r.tag}")) is not None


# --- the table: each protected action and the permissions it needs ---------------------------------

@dataclass(frozen=True)
class Action:
    name: str
    endpoint: str
    requires: frozenset[Permission]
    method: str
    path: str  # {school}, {edited}, {locked}, {reset} are filled in from the round
    success: int  # the status of an allowed request
    data: dict[str, object] | None = None  # {tag} in a value is filled in from the round
    effect: Callable[[Flask, Round], bool] | None = None  # did the change happen?

    def url(self, r: Round) -> str:
        ids = {name: user.id for name, user in [("edited", r.edited), ("locked", r.locked), ("reset", r.reset)]
               if user is not None}
        return self.path.format(school=r.school.code, **ids)

    def form(self, r: Round) -> dict[str, object]:
        return {k: v.format(tag=r.tag) if isinstance(v, str) else v for k, v in (self.data or {}).items()}


def _needs(*permissions: Permission) -> frozenset[Permission]:
    return frozenset(permissions)


ACTIONS: tuple[Action, ...] = (
    Action("view school home", "school.home", _needs(P.VIEW_SCHOOL), "GET", "/s/{school}/", 200),
    Action("view staff list", "school.staff", _needs(P.VIEW_STAFF), "GET", "/s/{school}/staff", 200),
    Action("open new staff form", "school.staff_new", _needs(P.MANAGE_STAFF), "GET", "/s/{school}/staff/new", 200),
    Action("create staff", "school.staff_new", _needs(P.MANAGE_STAFF), "POST", "/s/{school}/staff/new", 200,
           {"username": "gv.moi{tag}", "full_name": "Phạm Văn Mới", "email": "",
            "roles": [Role.SUBJECT_TEACHER.value]}, _created("gv.moi{tag}", Role.SUBJECT_TEACHER)),
    # The form opens with VIEW_STAFF; saving it needs MANAGE_STAFF as well.
    Action("edit staff roles", "school.staff_edit", _needs(P.VIEW_STAFF, P.MANAGE_STAFF), "POST",
           "/s/{school}/staff/{edited}", 302,
           {"full_name": "Lê Thị Bộ Môn", "email": "", "roles": [Role.HOMEROOM_TEACHER.value]}, _roles_changed),
    Action("deactivate staff", "school.staff_set_active", _needs(P.MANAGE_STAFF), "POST",
           "/s/{school}/staff/{locked}/active/0", 302, {}, _locked),
    Action("reset password", "school.staff_reset_password", _needs(P.MANAGE_STAFF), "POST",
           "/s/{school}/staff/{reset}/reset-password", 200, {}, _password_reset),
    Action("open staff import", "school.staff_import", _needs(P.MANAGE_STAFF), "GET", "/s/{school}/staff/import",
           200),
    Action("view school audit", "school_trail.school_trail", _needs(P.VIEW_SCHOOL_AUDIT), "GET",
           "/s/{school}/audit", 200),
    Action("export school audit", "school_trail.school_export", _needs(P.VIEW_SCHOOL_AUDIT), "POST",
           "/s/{school}/audit/export", 302, {}, _export_queued(of_school=True)),
    Action("view records", "records.index", _needs(P.VIEW_RECORDS), "GET", "/s/{school}/records/", 200),
    Action("generate a grade's records", "records.generate_grade", _needs(P.GENERATE_RECORDS, P.VIEW_ALL_RECORDS),
           "POST", "/s/{school}/records/grades/5/generate", 302),
    Action("view school's roll-out progress", "compliance.progress", _needs(P.VIEW_SCHOOL_PROGRESS), "GET",
           "/s/{school}/compliance/", 200),
    Action("open training sessions", "compliance.training", _needs(P.MANAGE_TRAINING), "GET",
           "/s/{school}/compliance/training", 200),
    Action("record a training session", "compliance.training", _needs(P.MANAGE_TRAINING), "POST",
           "/s/{school}/compliance/training", 302,
           {"held_on": "20/04/2025", "topic": "Tập huấn {tag}", "trainer": "Phòng GD&ĐT"}, _training_recorded),
    Action("district compliance board", "compliance_board.board", _needs(P.VIEW_DISTRICT), "GET",
           "/district/compliance/", 200),
    Action("add a plan milestone", "compliance_board.plan", _needs(P.VIEW_DISTRICT, P.MANAGE_PLAN), "POST",
           "/district/compliance/plan", 302, {"phase": "1", "title": "Mốc {tag}", "deadline": "28/03/2025",
                                              "scope": "staff", "measure": "evidence"}, _milestone_added),
    Action("district school list", "district.schools", _needs(P.VIEW_DISTRICT), "GET", "/district/", 200),
    # Every district page needs VIEW_DISTRICT first: the district blueprint admits no one else.
    Action("open new school form", "district.school_new", _needs(P.VIEW_DISTRICT, P.MANAGE_SCHOOLS), "GET",
           "/district/schools/new", 200),
    Action("create school", "district.school_new", _needs(P.VIEW_DISTRICT, P.MANAGE_SCHOOLS), "POST",
           "/district/schools/new", 302,
           {"code": "truongmoi{tag}", "name": "Trường Tiểu học Mới {tag}", "moet_code": "", "commune": "",
            "address": ""}, _school_created),
    Action("create principal account", "district.school_detail", _needs(P.VIEW_DISTRICT, P.MANAGE_SCHOOLS),
           "POST", "/district/schools/{school}", 200,
           {"role": Role.PRINCIPAL.value, "username": "ht.moi{tag}", "full_name": "Trần Văn Hiệu", "email": ""},
           _created("ht.moi{tag}", Role.PRINCIPAL)),
    Action("district audit", "district_trail.district_trail", _needs(P.VIEW_DISTRICT, P.VIEW_DISTRICT_AUDIT), "GET",
           "/district/audit/", 200),
    Action("export district audit", "district_trail.district_export",
           _needs(P.VIEW_DISTRICT, P.VIEW_DISTRICT_AUDIT), "POST", "/district/audit/export", 302, {},
           _export_queued(of_school=False)),
    Action("view own certificates", "signing.mine", _needs(P.VIEW_SCHOOL), "GET", "/s/{school}/certificates", 200),
    Action("open certificate registration", "signing.register", _needs(P.VIEW_SCHOOL), "GET",
           "/s/{school}/certificates/new", 200),
    Action("view staff certificates", "signing.staff", _needs(P.VIEW_STAFF), "GET", "/s/{school}/certificates/staff",
           200),
    Action("open seal registration", "signing.seal", _needs(P.MANAGE_SEAL), "GET", "/s/{school}/certificates/seal",
           200),
    # Object-level narrowing (a GVCN: their own class) is tested in test_verify_family; the list opens for all.
    Action("open family access codes", "family_access.staff_index", _needs(P.MANAGE_FAMILY_ACCESS), "GET",
           "/s/{school}/family-access/", 200),
    Action("view city uploads", "interop.index", _needs(P.EXCHANGE_RECORDS), "GET", "/s/{school}/exchange", 200),
    Action("view received records", "interop.received_list", _needs(P.EXCHANGE_RECORDS), "GET",
           "/s/{school}/exchange/received", 200),
    Action("view transfers", "interop.transfers_page", _needs(P.TRANSFER_PUPILS), "GET",
           "/s/{school}/exchange/transfers", 200),
    # An incomplete release re-shows its form (200) to those who may release, and 403 to everyone else.
    Action("release a pupil", "interop.release", _needs(P.TRANSFER_PUPILS), "POST",
           "/s/{school}/exchange/transfers/release", 200, {"reason": ""}),
    Action("district exchange page", "district_interop.district_index", _needs(P.VIEW_DISTRICT), "GET",
           "/district/exchange/", 200),
    # Without a school year the bundle form sends back to the page (302); the refusal comes first.
    Action("district ministry bundle", "district_interop.district_bundle", _needs(P.VIEW_DISTRICT, P.DISTRICT_EXCHANGE),
           "POST", "/district/exchange/bundle", 302, {}),
)


def may(roles: Iterable[Role], action: Action) -> bool:
    """What the two tables say: the roles together hold every permission the action needs."""
    return action.requires <= permissions_for(frozenset(roles))


def disagreements(app: Flask, make: Factory, school: School, roles: Iterable[Role], actions: Iterable[Action],
                  tag: str) -> list[str]:
    """Run each action once as a holder of `roles`; describe every outcome the tables do not predict."""
    roles = frozenset(roles)
    actions = list(actions)
    r, client = new_round(app, make, school, roles, tag, actions)
    problems = []
    for action in actions:
        allowed = may(roles, action)
        if action.method == "GET":
            response = client.get(action.url(r))
        else:
            response = client.post(action.url(r), data=action.form(r))
        expected = action.success if allowed else 403
        cell = f"{'+'.join(sorted(roles))} / {action.name}"
        if response.status_code != expected:
            problems.append(f"{cell}: {response.status_code}, expected {expected}")
        if action.effect is not None and action.effect(app, r) is not allowed:
            problems.append(f"{cell}: the change {'did not happen' if allowed else 'happened'}")
        if action.effect is not None and "export" in action.name:
            settle_jobs(app)
    return problems


# --- the matrix --------------------------------------------------------------------------------------

def test_role_matrix(app, make, school, no_csrf):
    """Every role against every action: one pass per role, each on fresh objects."""
    problems = []
    for n, role in enumerate(Role):
        problems += disagreements(app, make, school, [role], ACTIONS, tag=str(n))
    assert not problems, "\n".join(problems)


def test_the_action_table_is_honest_and_decisive(app):
    # Each action needs at least what its view's @require asks for, so the table cannot promise more.
    for action in ACTIONS:
        declared = getattr(app.view_functions[action.endpoint], "required_permissions", None)
        assert declared is not None, f"{action.endpoint} has no @require"
        assert set(declared) <= action.requires, f"{action.name}: the view requires {declared}"
    # And the matrix tests both answers of every action: some role may, some role may not.
    for action in ACTIONS:
        verdicts = {may([role], action) for role in Role}
        assert verdicts == {True, False}, f"{action.name}: every role gets {verdicts}"


UNION_ACTIONS = [a for a in ACTIONS if a.name in {"view staff list", "create staff", "view school audit"}]


def test_several_roles_give_the_union(app, make, school, no_csrf):
    # The case that matters most in practice: a homeroom teacher who also runs the school's computers.
    create = next(a for a in ACTIONS if a.name == "create staff")
    assert not may([Role.HOMEROOM_TEACHER], create) and may([Role.HOMEROOM_TEACHER, Role.SCHOOL_IT], create)
    problems = []
    for n, pair in enumerate(itertools.combinations(SCHOOL_ROLES, 2)):
        problems += disagreements(app, make, school, pair, UNION_ACTIONS, tag=str(n))
    # A district officer who also teaches in a school: the district pages and the school's.
    problems += disagreements(app, make, school, [Role.DISTRICT_OFFICER, Role.HOMEROOM_TEACHER], ACTIONS, tag="x")
    assert not problems, "\n".join(problems)


# --- the /roles page is the table ----------------------------------------------------------------------

class _TableReader(HTMLParser):
    """The cells of the page's table, row by row, as text."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag in {"th", "td"}:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in {"th", "td"} and self._cell is not None:
            self.rows[-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def test_roles_page_shows_exactly_the_permission_table(client, make, school, no_csrf):
    response = client.get("/roles")
    assert response.status_code == 302 and "/login" in response.location  # for signed-in users only
    sign_in(client, make.user(school, Role.SUBJECT_TEACHER, username="gv.docbang"))
    response = client.get("/roles")
    assert response.status_code == 200
    reader = _TableReader()
    reader.feed(response.get_data(as_text=True))
    header, *body = reader.rows
    assert header[1:] == [ROLE_LABELS[role] for role in Role]
    assert [row[0] for row in body] == [PERMISSION_LABELS[permission] for permission in Permission]
    for permission, row in zip(Permission, body, strict=True):
        expected = ["✓" if permission in ROLE_PERMISSIONS[role] else "–" for role in Role]
        assert row[1:] == expected, permission.value


# --- handing out the roles that run a school --------------------------------------------------------

REFUSED_GRANT = "Chỉ Hiệu trưởng hoặc Phòng GD&ĐT được giao vai trò"


def page(response: TestResponse) -> str:
    return html.unescape(response.get_data(as_text=True))


def edit(client: FlaskClient, user: User, roles: Iterable[Role]) -> TestResponse:
    return client.post(f"/s/{SCHOOL}/staff/{user.id}", data={"full_name": user.full_name, "email": "",
                                                             "roles": [r.value for r in roles]})


def create(client: FlaskClient, username: str, roles: Iterable[Role]) -> TestResponse:
    return client.post(f"/s/{SCHOOL}/staff/new", data={"username": username, "full_name": "Võ Thị Mới",
                                                       "email": "", "roles": [r.value for r in roles]})


def test_it_staff_neither_grants_nor_takes_away_a_management_role(app, client, make, school, no_csrf):
    sign_in(client, holder_of(make, school, [Role.SCHOOL_IT], "cntt"))
    teacher = make.user(school, Role.SUBJECT_TEACHER, username="gv.lqd")
    for role in sorted(MANAGEMENT_ROLES):
        response = create(client, f"ql.{role}", [role])
        assert response.status_code == 200 and REFUSED_GRANT in page(response), role
        assert user_named(app, f"ql.{role}") is None, role
        assert REFUSED_GRANT in page(edit(client, teacher, [Role.SUBJECT_TEACHER, role])), role
        assert roles_of(app, teacher.id) == {Role.SUBJECT_TEACHER}, role
    vice = make.user(school, Role.VICE_PRINCIPAL, username="pht.lqd")
    # The vice principal outranks IT staff: refused before any role is looked at.
    assert "thẩm quyền ngang hoặc cao hơn bạn" in page(edit(client, vice, [Role.SUBJECT_TEACHER]))
    assert roles_of(app, vice.id) == {Role.VICE_PRINCIPAL}
    # ...while the same staff member does hand out the teaching roles.
    assert edit(client, teacher, [Role.HOMEROOM_TEACHER]).status_code == 302
    assert roles_of(app, teacher.id) == {Role.HOMEROOM_TEACHER}


def test_principal_grants_the_management_roles(app, client, make, school, no_csrf):
    sign_in(client, holder_of(make, school, [Role.PRINCIPAL], "ht.lqd"))
    for role in sorted(MANAGEMENT_ROLES):
        teacher = make.user(school, Role.SUBJECT_TEACHER, username=f"gv.{role}")
        assert create(client, f"ql.{role}", [role]).status_code == 200, role
        created = user_named(app, f"ql.{role}")
        assert created is not None and roles_of(app, created.id) == {role}, role
        assert edit(client, teacher, [Role.SUBJECT_TEACHER, role]).status_code == 302, role
        assert roles_of(app, teacher.id) == {Role.SUBJECT_TEACHER, role}, role


def test_principal_cannot_drop_their_own_principal_role(app, client, make, school, no_csrf):
    principal = holder_of(make, school, [Role.PRINCIPAL], "ht.lqd")
    sign_in(client, principal)
    response = edit(client, principal, [Role.HOMEROOM_TEACHER])
    assert "Bạn không thể tự bỏ vai trò Hiệu trưởng của mình." in page(response)
    assert roles_of(app, principal.id) == {Role.PRINCIPAL}
    # Adding a role to oneself while staying principal is fine.
    assert edit(client, principal, [Role.PRINCIPAL, Role.HOMEROOM_TEACHER]).status_code == 302
    assert roles_of(app, principal.id) == {Role.PRINCIPAL, Role.HOMEROOM_TEACHER}
