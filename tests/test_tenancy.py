"""Tenant isolation, walked over every route and checked below the routes.

Every school page (/s/<school_code>/...) answers 403 to a member of another school and 404 to another
school's object ids; every district page answers 403 to school staff. Below the routes, the ORM scoping
refuses tenant queries with no school in scope and rows of another school, and on PostgreSQL row-level
security keeps raw SQL inside the school too. The audit trail is append-only in the ORM and, on
PostgreSQL, in the database.

The walkers read `app.url_map`, so a route added later is walked without anyone touching this file;
a route with a URL parameter this file cannot fill fails until its mapping is added here.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.routing import Rule

from portal import audit
from portal.assessment.models import Award
from portal.audit import AppendOnly, AuditEntry
from portal.compliance.models import EvidenceStatus, Milestone, Scope
from portal.extensions import db
from portal.jobs import JobRun, JobState
from portal.storage import storage
from tenants.models import Membership, School, User
from tenants.roles import SCHOOL_ROLES, Role
from tenants.scoping import TenantRequired, TenantScoped, WrongTenant, all_schools, school_scope
from tests.assessment_factory import make_class, make_year
from tests.city_helpers import exchange_objects
from tests.compliance_factory import make_evidence, make_milestone, make_training
from tests.conftest import Factory, login
from tests.records_factory import insert_version
from tests.signing_factory import certificate_row

SCHOOL_PREFIX = "/s/<school_code>"
DISTRICT_PREFIX = "/district"
WALKED_METHODS = ("GET", "POST")
# URL parameters that name no object: held at one valid value in every request, never varied.
PLAIN_PARAMS: dict[str, object] = {"active": 1, "grade": 5, "kind": "json"}
# Floors for the walkers, so that a broken rule filter cannot make them walk nothing and pass.
MIN_SCHOOL_REQUESTS = 50  # (rule, method) pairs under /s/<school_code>
MIN_SCHOOL_OBJECT_REQUESTS = 30  # of which name at least one object
MIN_DISTRICT_REQUESTS = 8
HOW_TO_MAP = ("add it to the object ids built per school in `_tenant` (tests/test_tenancy.py), "
              "or to PLAIN_PARAMS there if it names no object")


@dataclass(frozen=True)
class Tenant:
    school: School
    ids: dict[str, object]  # URL parameter name -> the id of one object of this school


@dataclass(frozen=True)
class World:
    walker: User  # holds every school role in school A, and nothing in school B
    a: Tenant
    b: Tenant


def _job_run(app: Flask, school_id: int | None, owner_id: int) -> str:
    """A finished job with a downloadable result, so that its pages open for its owner."""
    with app.app_context():
        digest = storage().put(f"kết quả {uuid.uuid4().hex}".encode())
        run = JobRun(id=uuid.uuid4().hex, school_id=school_id, kind="audit.export", title="Xuất nhật ký",
                     created_by_id=owner_id, state=JobState.FINISHED, progress=100,
                     result={"digest": digest, "filename": "nhat-ky.csv", "mimetype": "text/csv"})
        db.session.add(run)
        db.session.commit()
        return run.id


def _signing_batch(app: Flask, school_id: int, signer_id: int) -> str:
    """A batch of two signing requests waiting for the signer's USB token at this school."""
    import hashlib

    from cryptography.hazmat.primitives import serialization

    from portal.signing import pki
    from portal.signing import requests as signing_requests

    issued = pki.create_ca().issue_person("Người Ký", title="Giáo viên chủ nhiệm", organisation="Trường")
    items = [signing_requests.RequestItem(subject_id=n, step="gvcn", prepared_digest="0" * 64,
                                          digest=hashlib.sha256(f"{school_id}-{n}".encode()).hexdigest(),
                                          description=f"Học sinh Số {n} · 5A") for n in (1, 2)]
    with app.app_context(), all_schools():
        created = signing_requests.create_requests(
            school_id, signer_id=signer_id, kind="usb", purpose="record_step", items=items, actor=None,
            certificate_der=issued.certificate.public_bytes(serialization.Encoding.DER))
        db.session.commit()
        return created[0].batch_id


def _checkpoint(app: Flask, school_id: int | None) -> int:
    """A sealed checkpoint of the school's audit chain (the district's with None), its files stored."""
    from portal import audit
    from portal.trail.models import AuditCheckpoint

    with app.app_context():
        checkpoint = AuditCheckpoint(chain=audit.chain_of(school_id), school_id=school_id, seq=1, last_entry_id=1,
                                     head_hash=audit.GENESIS, document_digest=storage().put(b'{"seq":1}'),
                                     signature_digest=storage().put(uuid.uuid4().bytes),
                                     certificate_fingerprint="0" * 64)
        db.session.add(checkpoint)
        db.session.commit()
        return checkpoint.id


def _tenant(app: Flask, make: Factory, school: School, *, teacher: User, run_owner: User) -> Tenant:
    """One object of every kind a school URL names, in `school`; `teacher` is GVCN and GVBM of its class."""
    staff = make.user(school, Role.SUBJECT_TEACHER)
    year_id = make_year(app, school)
    setup = make_class(app, school, year_id, "5A", homeroom_id=teacher.id, teachers={"toan": teacher.id}, pupils=2)
    with app.app_context(), school_scope(school.id):
        award = Award(school_id=school.id, enrolment_id=setup.enrolment_ids[0], title="Khen thưởng đột xuất",
                      awarded_on=date(2025, 1, 10))
        db.session.add(award)
        db.session.commit()
        award_id = award.id
    milestone_id = _plan_milestone(app)
    version_id = insert_version(app, school, setup)
    return Tenant(school, {
        **exchange_objects(app, make, school, version_id),  # upload_id, received_id, transfer_id
        "user_id": staff.id,
        # The run's owner is the walker in both schools: job pages also 404 for a run of someone else,
        # and the school check must be what refuses school B's run, not the owner check.
        "run_id": _job_run(app, school.id, run_owner.id),
        "checkpoint_id": _checkpoint(app, school.id),
        "batch_id": _signing_batch(app, school.id, teacher.id),
        "year_id": year_id,
        "class_id": setup.class_id,
        "period_id": setup.period_ids["CN"],
        "subject_id": setup.subject_ids["toan"],
        "pupil_id": setup.pupil_ids[0],
        "award_id": award_id,
        "version_id": version_id,
        "evidence_id": make_evidence(app, school, milestone_id, EvidenceStatus.SUBMITTED, date(2025, 3, 20)),
        "training_id": make_training(app, school, date(2025, 4, 20), [staff.id]),
        # A person's certificate is theirs, not the school's: the walker's own in A, B's teacher's in B.
        "certificate_id": certificate_row(app, teacher, school.id),
    })


def _plan_milestone(app: Flask) -> int:
    """The district's one plan line the schools send evidence for (made once, shared by both schools)."""
    with app.app_context():
        existing = db.session.scalar(sa.select(Milestone.id))
    return existing or make_milestone(app, measure="evidence", scope=Scope.STAFF, deadline=date(2025, 3, 28))


@pytest.fixture
def world(app: Flask, make: Factory) -> World:
    """Schools A and B with one object of every kind each, and the walker: every school role in A."""
    school_a, school_b = make.school("truong-a"), make.school("truong-b")
    walker = make.user(school_a, *SCHOOL_ROLES, username="dukhach")
    b_teacher = make.user(school_b, Role.HOMEROOM_TEACHER, Role.SUBJECT_TEACHER)
    a = _tenant(app, make, school_a, teacher=walker, run_owner=walker)
    b = _tenant(app, make, school_b, teacher=b_teacher, run_owner=walker)
    _district_certificate(app)
    return World(walker, a, b)


def _district_certificate(app: Flask) -> None:
    """The district office's certificate, that schools download to check their trail's checkpoints."""
    from portal.signing import pki, pki_folder
    from portal.signing import services as signing_services
    from tenants.certificates import KeyKind
    from tenants.models import District

    issued = pki.create_demo_ca(pki_folder(app)).issue_organisation("Phòng Giáo dục và Đào tạo")
    with app.app_context():
        signing_services.register_district_certificate(
            db.session.scalar(sa.select(District)), signing_services.Upload(
                data=issued.pkcs12("p", kdf_rounds=1000), key_kind=KeyKind.PKCS12, passphrase="p"), actor=None)
        db.session.commit()


# --- walking the URL map -----------------------------------------------------------------------------


def _rules(app: Flask, prefix: str) -> list[Rule]:
    return sorted((r for r in app.url_map.iter_rules() if r.rule.startswith(prefix)), key=lambda r: r.rule)


def _methods(rule: Rule) -> list[str]:
    return [m for m in WALKED_METHODS if m in (rule.methods or ())]


def _unmapped(rules: list[Rule], known: set[str]) -> list[str]:
    return [f"{rule.rule}: <{name}>" for rule in rules for name in sorted(rule.arguments - known)]


def _object_params(rule: Rule) -> list[str]:
    return sorted(rule.arguments - {"school_code"} - set(PLAIN_PARAMS))


def _url(rule: Rule, values: Mapping[str, object]) -> str:
    built = rule.build({k: v for k, v in values.items() if k in rule.arguments}, append_unknown=False)
    assert built is not None, f"cannot build {rule.rule} from {values}"
    return built[1]


def _status(client: FlaskClient, method: str, url: str) -> int:
    return client.open(url, method=method).status_code


class Expectations:
    """Collects every wrong answer of a walk, so that one run lists them all."""

    def __init__(self, client: FlaskClient) -> None:
        self.client = client
        self.wrong: list[str] = []

    def expect(self, method: str, url: str, wanted: int, why: str) -> None:
        status = _status(self.client, method, url)
        if status != wanted:
            self.wrong.append(f"{method} {url} -> {status}, expected {wanted} ({why})")

    def check(self) -> None:
        assert not self.wrong, f"{len(self.wrong)} wrong answer(s):\n" + "\n".join(self.wrong)


def test_school_pages_refuse_other_schools_people_and_objects(app: Flask, client: FlaskClient, world: World,
                                                              no_csrf: None) -> None:
    rules = _rules(app, SCHOOL_PREFIX)
    unmapped = _unmapped(rules, {"school_code", *PLAIN_PARAMS, *world.a.ids})
    assert not unmapped, f"school routes with a URL parameter the walker cannot fill; {HOW_TO_MAP}:\n" + "\n".join(
        unmapped)
    login(client, world.walker)
    a_code, b_code = world.a.school.code, world.b.school.code
    walk = Expectations(client)
    requests = object_requests = 0
    for rule in rules:
        params = _object_params(rule)
        for method in _methods(rule):
            requests += 1
            walk.expect(method, _url(rule, {**PLAIN_PARAMS, **world.b.ids, "school_code": b_code}), 403,
                        "a member of school A with every role, at school B's address")
            if method == "GET":
                walk.expect(method, _url(rule, {**PLAIN_PARAMS, **world.a.ids, "school_code": a_code}), 200,
                            "control: school A's member opens A's page with A's objects, so the 403s and 404s "
                            "here come from the school")
            if not params:
                continue
            object_requests += 1
            walk.expect(method, _url(rule, {**PLAIN_PARAMS, **world.b.ids, "school_code": a_code}), 404,
                        "school B's objects at school A's address")
            for name in params if len(params) > 1 else ():
                mixed = {**PLAIN_PARAMS, **world.a.ids, name: world.b.ids[name], "school_code": a_code}
                walk.expect(method, _url(rule, mixed), 404, f"school A's objects but school B's <{name}>")
    walk.check()
    assert requests >= MIN_SCHOOL_REQUESTS, f"the walker sent only {requests} requests: are the rules found?"
    assert object_requests >= MIN_SCHOOL_OBJECT_REQUESTS, f"only {object_requests} requests named an object"


def test_district_pages_refuse_school_staff(app: Flask, make: Factory, no_csrf: None) -> None:
    school_a, school_b = make.school(), make.school()
    principal = make.user(school_a, *SCHOOL_ROLES)
    officer = make.user(None, district_role=Role.DISTRICT_OFFICER)
    params = {"run_id": _job_run(app, None, principal.id), "code": school_a.code, "milestone_id": 1,
              "evidence_id": 1, "checkpoint_id": _checkpoint(app, None), "kind": "json",
              "user_id": principal.id, "active": 0}
    rules = _rules(app, DISTRICT_PREFIX)
    unmapped = _unmapped(rules, set(params))
    assert not unmapped, ("district routes with a URL parameter the walker cannot fill; add it to `params` in "
                          "test_district_pages_refuse_school_staff:\n" + "\n".join(unmapped))

    client = app.test_client()
    login(client, principal)
    walk = Expectations(client)
    requests = 0
    for rule in rules:
        for method in _methods(rule):
            requests += 1
            walk.expect(method, _url(rule, params), 403, "a principal holding every school role, on a district page")
    walk.check()
    assert requests >= MIN_DISTRICT_REQUESTS, f"the district walker sent only {requests} requests"

    officer_client = app.test_client()
    login(officer_client, officer)
    page = officer_client.get("/district/")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert school_a.name in text and school_b.name in text, "the district page reads across every school"


# --- the ORM scoping ---------------------------------------------------------------------------------


def test_orm_fails_closed_without_a_school(app: Flask, make: Factory) -> None:
    school_a, school_b = make.school(), make.school()
    make.user(school_a, Role.PRINCIPAL)
    make.user(school_a, Role.SUBJECT_TEACHER)
    make.user(school_b, Role.PRINCIPAL)
    with app.app_context():
        with all_schools():
            every = db.session.scalars(sa.select(Membership)).all()
            a_ids = {m.id for m in every if m.school_id == school_a.id}
        assert len(every) == 3 and len(a_ids) == 2
        db.session.remove()  # a fresh session: nothing already loaded in the identity map
        with pytest.raises(TenantRequired):
            db.session.scalars(sa.select(Membership)).all()
        with pytest.raises(TenantRequired):
            db.session.get(Membership, next(iter(a_ids)))
        with school_scope(school_a.id):
            assert {m.id for m in db.session.scalars(sa.select(Membership))} == a_ids
            # An explicit filter on another school does not get around the scope.
            assert db.session.scalars(sa.select(Membership).where(Membership.school_id == school_b.id)).all() == []
        with all_schools():
            assert {m.id for m in db.session.scalars(sa.select(Membership))} == {m.id for m in every}


def test_orm_refuses_rows_of_another_school(app: Flask, make: Factory) -> None:
    school_a, school_b = make.school(), make.school()
    member_b = make.user(school_b, Role.SUBJECT_TEACHER)
    outsider = make.user(None)
    with app.app_context():
        with school_scope(school_a.id):
            db.session.add(Membership(school_id=school_b.id, user_id=outsider.id))
            with pytest.raises(WrongTenant):
                db.session.flush()
        db.session.rollback()

        with all_schools():
            membership_b = db.session.scalar(sa.select(Membership).where(Membership.user_id == member_b.id))
        with school_scope(school_a.id):
            membership_b.active = False
            with pytest.raises(WrongTenant):
                db.session.flush()
        db.session.rollback()

        db.session.add(Membership(user_id=outsider.id))  # no school given, none in scope
        with pytest.raises(TenantRequired):
            db.session.flush()
        db.session.rollback()

        with all_schools():
            assert db.session.scalar(sa.select(Membership).where(Membership.user_id == outsider.id)) is None
            assert db.session.scalar(sa.select(Membership.active).where(Membership.user_id == member_b.id)) is True

        with school_scope(school_a.id):  # a new row with no school given takes the one in scope
            membership = Membership(user_id=outsider.id)
            db.session.add(membership)
            db.session.commit()
            assert membership.school_id == school_a.id


def test_audit_entries_cannot_be_changed_through_the_orm(app: Flask, make: Factory) -> None:
    school = make.school()
    with app.app_context():
        entry = audit.record("test.entry", actor=None, school_id=school.id, summary="gốc")
        db.session.commit()
        entry_id = entry.id

        entry.summary = "đã sửa"
        with pytest.raises(AppendOnly):
            db.session.flush()
        db.session.rollback()

        db.session.delete(db.session.get(AuditEntry, entry_id))
        with pytest.raises(AppendOnly):
            db.session.flush()
        db.session.rollback()

        db.session.expire_all()
        assert db.session.get(AuditEntry, entry_id).summary == "gốc"


# --- PostgreSQL: row-level security and the audit trigger, the wall behind the ORM -------------------


@pytest.fixture
def pg_engine(app: Flask) -> Iterator[sa.Engine]:
    """A fresh engine on the test database, outside the ORM session and its tenant settings."""
    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            pytest.skip("row-level security and the audit trigger exist on PostgreSQL only")
        engine = sa.create_engine(db.engine.url, poolclass=sa.pool.NullPool)
    yield engine
    engine.dispose()


def _tenant_tables() -> list[str]:
    return sorted(mapper.local_table.name for mapper in db.Model.registry.mappers
                  if issubclass(mapper.class_, TenantScoped))


def test_row_level_security_keeps_raw_sql_inside_the_school(make: Factory, pg_engine: sa.Engine) -> None:
    tables = _tenant_tables()
    assert {"memberships", "membership_roles", "pupils", "classes"} <= set(tables)
    with pg_engine.connect() as conn:
        rows = conn.execute(sa.text(
            "select relname, relrowsecurity, relforcerowsecurity from pg_class "
            "where relkind = 'r' and relname = any(:tables)"), {"tables": tables}).all()
    guarded = {name for name, enabled, forced in rows if enabled and forced}
    assert guarded == set(tables), f"tenant tables without forced row-level security: {set(tables) - guarded}"

    school_a, school_b = make.school(), make.school()
    make.user(school_a, Role.PRINCIPAL)
    teacher_a = make.user(school_a, Role.SUBJECT_TEACHER)
    make.user(school_b, Role.PRINCIPAL)
    count = sa.text("select count(*) from memberships")
    as_school = sa.text("select set_config('app.school_id', :school, true)")
    with pg_engine.connect() as conn:
        assert conn.scalar(count) == 0, "with no tenant settings a tenant table must show no rows"
        conn.rollback()
        with conn.begin():
            conn.execute(as_school, {"school": str(school_a.id)})
            assert conn.scalar(count) == 2
        with conn.begin():
            conn.execute(sa.text("select set_config('app.all_schools', 'on', true)"))
            assert conn.scalar(count) == 3
        with conn.begin():
            assert conn.scalar(count) == 0, "the settings last one transaction only"
        with pytest.raises(sa.exc.DBAPIError, match="row-level security"), conn.begin():
            conn.execute(as_school, {"school": str(school_a.id)})
            conn.execute(sa.text("insert into memberships (user_id, school_id, active, created_at) "
                                 "values (:user, :school, true, now())"),
                         {"user": teacher_a.id, "school": school_b.id})


def test_entering_a_school_page_hands_that_school_to_the_database(app: Flask, make: Factory) -> None:
    """The query that finds the school from the URL also sets the transaction's settings (PostgreSQL): raw SQL
    of the request then sees that school's rows and no other's, exactly as when they were set apart."""
    from flask import g
    from werkzeug.exceptions import NotFound

    from tenants import access
    from tenants.scoping import current_scope, leave_request_scope

    school_a, school_b = make.school(), make.school()
    make.user(school_a, Role.PRINCIPAL)
    make.user(school_a, Role.SUBJECT_TEACHER)
    make.user(school_b, Role.PRINCIPAL)
    with app.test_request_context(f"/s/{school_a.code}/grading/"):
        access._enter_school(None, {"school_code": school_a.code})
        try:
            assert g.school.id == school_a.id and current_scope().school_id == school_a.id
            if db.engine.dialect.name == "postgresql":
                settings = db.session.execute(sa.text("select current_setting('app.school_id', true), "
                                                      "current_setting('app.all_schools', true)")).one()
                assert tuple(settings) == (str(school_a.id), "off")
                assert db.session.scalar(sa.text("select count(*) from memberships")) == 2
                assert db.session.scalar(sa.text("select count(*) from memberships where school_id = :b"),
                                         {"b": school_b.id}) == 0
        finally:
            leave_request_scope(g.pop("tenant_token"))
            db.session.rollback()
    with app.test_request_context("/s/nowhere/grading/"), pytest.raises(NotFound):
        access._enter_school(None, {"school_code": "nowhere"})


def test_a_school_page_sends_the_tenant_with_the_school_query_or_on_its_own_when_none_is_found(
        app: Flask, make: Factory) -> None:
    """PostgreSQL: the school's query begins the transaction and sets its settings, with no `set_config` round
    trip before it; an unknown school leaves no transaction without them (they are sent on their own)."""
    from flask import g
    from werkzeug.exceptions import NotFound

    from tenants import access
    from tenants.scoping import leave_request_scope

    with app.app_context():
        engine = db.engine
    if engine.dialect.name != "postgresql":
        pytest.skip("the tenant settings are PostgreSQL's")
    school = make.school()
    statements: list[str] = []
    listener = lambda conn, cursor, statement, *rest: statements.append(statement)  # noqa: E731
    sa.event.listen(engine, "before_cursor_execute", listener)
    try:
        with app.test_request_context(f"/s/{school.code}/grading/"):
            db.session.rollback()
            statements.clear()
            access._enter_school(None, {"school_code": school.code})
            try:
                assert len(statements) == 1 and "FROM schools" in statements[0]
                settings = db.session.execute(sa.text("select current_setting('app.school_id', true), "
                                                      "current_setting('app.all_schools', true)")).one()
                assert tuple(settings) == (str(school.id), "off")
            finally:
                leave_request_scope(g.pop("tenant_token"))
                db.session.rollback()
        with app.test_request_context("/s/nowhere/grading/"):
            db.session.rollback()
            with pytest.raises(NotFound):
                access._enter_school(None, {"school_code": "nowhere"})
            settings = db.session.execute(sa.text("select current_setting('app.school_id', true), "
                                                  "current_setting('app.all_schools', true)")).one()
            assert tuple(settings) == ("", "off")
            db.session.rollback()
    finally:
        sa.event.remove(engine, "before_cursor_execute", listener)


def test_database_refuses_to_change_audit_entries(app: Flask, make: Factory, pg_engine: sa.Engine) -> None:
    school = make.school()
    with app.app_context():
        audit.record("test.entry", actor=None, school_id=school.id, summary="gốc")
        db.session.commit()
    for statement in ("update audit_entries set summary = 'đã sửa'", "delete from audit_entries"):
        with pytest.raises(sa.exc.DBAPIError, match="append-only"), pg_engine.begin() as conn:
            conn.execute(sa.text(statement))
    with pg_engine.connect() as conn:
        assert conn.execute(sa.text("select summary from audit_entries")).scalars().all() == ["gốc"]
