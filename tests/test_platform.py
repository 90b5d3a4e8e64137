"""The shared plumbing: settings, language and time, the audit trail, file storage, the demo district."""

from __future__ import annotations

import hashlib
import os
import stat
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from portal import audit
from portal.app import create_app
from portal.audit import AppendOnly, AuditEntry
from portal.config import ConfigError, cookie_secure, load_settings, resolve_secret_key
from portal.demo import DEMO_PASSWORD, build_demo
from portal.extensions import UTCDateTime, db
from portal.i18n import format_date, format_datetime, parse_date
from portal.storage import CHUNK, DatabaseStorage, FileMissing, LocalStorage, StoredFile
from tenants.models import Membership, MembershipRole, School, User
from tenants.roles import Role
from tenants.scoping import all_schools
from tests.conftest import csrf_token, login

# --- settings -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("key", "value"), [
    ("LOGIN_THROTTLE_MINUTES", "abc"),
    ("SESSION_HOURS", "0"),
    ("TIMEZONE", "Mars/Base"),
    ("DEFAULT_LOCALE", "fr"),
    ("DATABASE_URL", "mysql://x"),
    ("STORAGE_BACKEND", "s3"),
])
def test_a_bad_setting_is_refused_naming_its_variable(key, value):
    with pytest.raises(ConfigError, match=key) as refused:
        load_settings({key: value})
    assert repr(value) in str(refused.value)


def test_a_bad_setting_stops_the_app_from_starting(monkeypatch, tmp_path):
    monkeypatch.setenv("TIMEZONE", "Mars/Base")
    with pytest.raises(ConfigError, match="TIMEZONE"):
        create_app(instance_path=str(tmp_path / "instance"))


def test_settings_have_defaults_and_read_the_environment():
    defaults = load_settings({})
    assert (defaults["LOGIN_THROTTLE_MINUTES"], defaults["DEFAULT_LOCALE"], defaults["TIMEZONE"]) == (
        15, "vi", "Asia/Ho_Chi_Minh")
    read = load_settings({"LOGIN_THROTTLE_MINUTES": "30", "DATABASE_URL": "postgres://u@db/hocba"})
    assert read["LOGIN_THROTTLE_MINUTES"] == 30
    assert read["DATABASE_URL"] == "postgresql+psycopg://u@db/hocba"  # the driver we ship
    assert load_settings({"DATABASE_URL": "postgres://u@db/x"}, {"DATABASE_URL": "sqlite://"})["DATABASE_URL"] == (
        "sqlite://")  # overrides (tests) win


def test_secret_key_is_generated_once_and_kept_private(tmp_path):
    instance = tmp_path / "fresh-instance"
    key = resolve_secret_key(instance, "")
    assert len(key) >= 32
    assert resolve_secret_key(instance, "") == key
    assert stat.S_IMODE(os.stat(instance / "secret_key").st_mode) == 0o600
    assert resolve_secret_key(instance, "configured-key") == "configured-key"
    assert resolve_secret_key(tmp_path / "another", "") != key


def test_secure_cookies_follow_the_database_in_auto_mode():
    assert cookie_secure("auto", "") is False
    assert cookie_secure("auto", "postgresql+psycopg://u@db/hocba") is True
    assert cookie_secure("false", "postgresql+psycopg://u@db/hocba") is False
    assert cookie_secure("true", "") is True
    with pytest.raises(ConfigError, match="SESSION_COOKIE_SECURE"):
        cookie_secure("maybe", "")


# --- language and time ----------------------------------------------------------------------------


def test_interface_is_vietnamese_by_default_and_switches_to_english(client):
    page = client.get("/login").get_data(as_text=True)
    assert '<html lang="vi">' in page and "Đăng nhập" in page

    assert client.post("/language/en", data={"next": "/login"}).status_code == 400  # CSRF is required
    assert client.post("/language/fr", data={"csrf_token": csrf_token(client, "/login")}).status_code == 404
    response = client.post("/language/en", data={"csrf_token": csrf_token(client, "/login"), "next": "/login"})
    assert response.status_code == 302 and response.location.endswith("/login")

    page = client.get("/login").get_data(as_text=True)
    assert '<html lang="en">' in page and "Sign in" in page
    assert "Đăng nhập" not in page


def test_language_switch_never_redirects_off_site(client):
    response = client.post("/language/en", data={"csrf_token": csrf_token(client, "/login"),
                                                 "next": "https://evil.example/"})
    assert response.status_code == 302 and "evil.example" not in response.location


def test_a_signed_in_users_language_is_kept_on_the_account_and_audited(app, make):
    school = make.school()
    teacher = make.user(school, Role.HOMEROOM_TEACHER)
    first = app.test_client()
    login(first, teacher)
    response = first.post("/language/en", data={"csrf_token": csrf_token(first, "/roles")})
    assert response.status_code == 302
    with app.app_context():
        assert db.session.get(User, teacher.id).locale == "en"
        entry = db.session.scalar(sa.select(AuditEntry).where(AuditEntry.action == "auth.locale_changed"))
        assert entry is not None and entry.actor_id == teacher.id
        assert entry.changes == {"locale": [None, "en"]}

    second = app.test_client()  # another browser: Vietnamese until the account is known
    assert '<html lang="vi">' in second.get("/login").get_data(as_text=True)
    login(second, teacher)
    assert '<html lang="en">' in second.get("/roles").get_data(as_text=True)


def test_dates_are_dd_mm_yyyy_in_vietnam_time(ctx):
    evening_utc = datetime(2025, 5, 30, 20, 30, tzinfo=UTC)
    assert format_datetime(evening_utc) == "31/05/2025 03:30"
    assert format_date(evening_utc) == "31/05/2025"
    assert format_date(date(2025, 6, 1)) == "01/06/2025"
    assert format_date(None) == "" and format_datetime(None) == ""


def test_dates_are_typed_day_first():
    assert parse_date("30/05/2025") == date(2025, 5, 30)
    assert parse_date(" 1/6/2025 ") == date(2025, 6, 1)
    assert parse_date("30.05.2025") == date(2025, 5, 30)
    for wrong in ("2025-05-30", "05/30/2025", "31/02/2025", ""):
        with pytest.raises(ValueError):
            parse_date(wrong)


def test_timestamps_are_stored_in_utc_and_never_naive(app):
    column = UTCDateTime()
    with app.app_context():
        dialect = db.engine.dialect
    with pytest.raises(ValueError):
        column.process_bind_param(datetime(2025, 5, 30, 20, 30), dialect)
    back = column.process_result_value(datetime(2025, 5, 30, 20, 30), dialect)
    assert back == datetime(2025, 5, 30, 20, 30, tzinfo=UTC) and back.tzinfo == UTC

    with app.app_context():
        entry = audit.record("test.time", actor=None, school_id=None)
        entry.at = datetime(2025, 5, 31, 3, 30, tzinfo=ZoneInfo("Asia/Ho_Chi_Minh"))
        db.session.commit()
        entry_id = entry.id
    with app.app_context():
        stored = db.session.get(AuditEntry, entry_id).at
        assert stored == datetime(2025, 5, 30, 20, 30, tzinfo=UTC) and stored.utcoffset().total_seconds() == 0
        audit.record("test.naive", actor=None, school_id=None).at = datetime(2025, 5, 30, 20, 30)
        with pytest.raises(sa.exc.StatementError, match="naive"):
            db.session.commit()
        db.session.rollback()


# --- audit trail ----------------------------------------------------------------------------------


def test_audit_entries_are_append_only(app):
    with app.app_context():
        entry = audit.record("school.renamed", actor=None, school_id=None, summary="Đổi tên trường")
        db.session.commit()
        entry_id = entry.id
        entry.summary = "Sửa lén"
        with pytest.raises(AppendOnly):
            db.session.flush()
        db.session.rollback()
        db.session.delete(entry)
        with pytest.raises(AppendOnly):
            db.session.flush()
        db.session.rollback()
        if db.engine.dialect.name == "postgresql":  # the database refuses it too, whatever connects
            with pytest.raises(sa.exc.DBAPIError, match="append-only"):
                db.session.execute(sa.text("UPDATE audit_entries SET summary = 'Sửa lén'"))
            db.session.rollback()
    with app.app_context():
        assert db.session.get(AuditEntry, entry_id).summary == "Đổi tên trường"


def test_audit_diff_keeps_only_changed_fields():
    before = {"full_name": "Võ Thị Lài", "phone": "0901", "email": None, "active": True}
    after = {"full_name": "Võ Thị Lài", "phone": "0902", "active": False, "roles": ["principal"]}
    assert audit.diff(before, after) == {"phone": ["0901", "0902"], "active": [True, False],
                                         "roles": [None, ["principal"]]}
    assert audit.diff(before, dict(before)) == {}


def test_audit_record_keeps_names_and_plain_values(app, make):
    school = make.school()
    actor = make.user(school, Role.PRINCIPAL, full_name="Võ Thị Lài")
    with app.app_context():
        changes = {"roles": {Role.PRINCIPAL, Role.SCHOOL_IT}, "at": datetime(2025, 5, 30, tzinfo=UTC)}
        entry = audit.record("staff.updated", actor=actor, school_id=school.id, obj=school, summary="x" * 400,
                             changes=changes)
        db.session.commit()
        assert (entry.actor_name, entry.object_type, entry.object_id) == ("Võ Thị Lài", "School", str(school.id))
        assert len(entry.summary) == 300
        assert entry.changes == {"roles": ["principal", "school_it"], "at": "2025-05-30T00:00:00+00:00"}


# --- file storage ---------------------------------------------------------------------------------


@pytest.fixture(params=["local", "database"])
def store(request, app, tmp_path):
    if request.param == "local":
        yield LocalStorage(tmp_path / "files")
        return
    with app.app_context():
        yield DatabaseStorage()


def _stored_count(store) -> int:
    if isinstance(store, LocalStorage):
        return sum(1 for path in store.root.rglob("*") if path.is_file())
    return db.session.scalar(sa.select(sa.func.count()).select_from(StoredFile))


def test_storage_keeps_files_by_their_sha256(store):
    data = os.urandom(2 * CHUNK + 10)
    digest = store.put(data)
    assert digest == hashlib.sha256(data).hexdigest()
    assert store.put(data) == digest  # the same bytes again: nothing new is written
    assert _stored_count(store) == 1
    assert store.exists(digest)
    assert store.read(digest) == data
    chunks = list(store.stream(digest))
    assert b"".join(chunks) == data and len(chunks) == 3
    assert store.put(b"") == hashlib.sha256(b"").hexdigest() and store.read(hashlib.sha256(b"").hexdigest()) == b""
    assert _stored_count(store) == 2


@pytest.mark.parametrize("digest", ["0" * 64, "A" * 64, "../../secret_key", "abc", ""])
def test_storage_refuses_unknown_or_malformed_digests(store, digest):
    store.put(b"hoc ba")
    with pytest.raises(FileMissing):
        store.read(digest)
    with pytest.raises(FileMissing):
        list(store.stream(digest))


def test_storage_knows_what_it_does_not_hold(store):
    assert store.exists(hashlib.sha256(b"never stored").hexdigest()) is False


# --- the demo district ----------------------------------------------------------------------------


def _demo_counts() -> tuple[int, ...]:
    with all_schools():
        return tuple(db.session.scalar(sa.select(sa.func.count()).select_from(model))
                     for model in (School, User, Membership, MembershipRole))


def test_demo_district_is_built_once_however_often_it_runs(app, client, two_schools):
    with app.app_context():
        logins = build_demo()
        counts = _demo_counts()
        build_demo()
        assert _demo_counts() == counts
    assert "ht.lequangdinh" in {item.username for item in logins}

    with app.app_context(), all_schools():
        schools = db.session.scalars(sa.select(School)).all()
        roles: dict[int, set[Role]] = {}
        for school_id, role in db.session.execute(sa.select(MembershipRole.school_id, MembershipRole.role)):
            roles.setdefault(school_id, set()).add(role)
    assert len(schools) >= 10
    assert "Trường Tiểu học Lê Quang Định" in {school.name for school in schools}
    for school in schools:
        assert {Role.PRINCIPAL, Role.VICE_PRINCIPAL, Role.SCHOOL_IT, Role.HOMEROOM_TEACHER,
                Role.SUBJECT_TEACHER} <= roles.get(school.id, set()), school.name

    login(client, "ht.lequangdinh", DEMO_PASSWORD)
    home = client.get("/", follow_redirects=True).get_data(as_text=True)
    assert "Trường Tiểu học Lê Quang Định" in home and "Võ Thị Lài" in home


def test_flask_demo_command_prints_the_logins(app, two_schools):
    # `flask demo` pushes the app context itself (FlaskGroup); invoking `app.cli` directly does not.
    with app.app_context():
        result = app.test_cli_runner().invoke(args=["demo"])
    assert result.exit_code == 0, result.output
    assert DEMO_PASSWORD in result.output
    assert "Audit trail: " in result.output and " chains sealed under the district's demo certificate" in result.output
    from portal.demo.signing import DEMO_SIGNING_PIN

    assert f"signing PIN of every demo person: {DEMO_SIGNING_PIN}" in result.output
    for username in ("phong.admin", "ht.lequangdinh", "gvcn1.lequangdinh", "ht.nguyenbinh"):
        assert username in result.output
