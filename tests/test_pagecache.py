"""The grid and year-end rows kept rendered per school data version (portal/pagecache.py): a page seen again
is served from what was kept, and any write to the school's rows, however it is made, shows at once."""

from __future__ import annotations

import re
import threading
import time

import pytest
import sqlalchemy as sa
from flask import g

from portal import pagecache
from portal.assessment.models import Pupil, TraitRating
from portal.extensions import db
from tenants.models import School, SchoolDataVersion, User
from tenants.roles import Role
from tenants.scoping import all_schools, school_scope
from tests.assessment_factory import make_class, make_year
from tests.results_factory import rate
from tests.test_grading import grid_config, save, signed_in
from tests.test_page_queries import counted

PUPILS = 4


@pytest.fixture
def school5a(app, make):
    school = make.school("lqd", "Trường Tiểu học Lê Quang Định")
    gvcn = make.user(school, Role.HOMEROOM_TEACHER, full_name="Lê Thị Lan")
    principal = make.user(school, Role.PRINCIPAL, full_name="Võ Thị Lài")
    year_id = make_year(app, school)
    setup = make_class(app, school, year_id, "5A", homeroom_id=gvcn.id, pupils=PUPILS)
    rate(app, school, setup, range(PUPILS), period="CN", level="T", score=9)
    return school, setup, gvcn, principal


def grid_url(setup) -> str:
    return f"/s/lqd/grading/classes/{setup.class_id}/periods/{setup.period_ids['CN']}"


def results_url(setup) -> str:
    return f"/s/lqd/results/classes/{setup.class_id}"


def version_of(app, school_id: int) -> int | None:
    with app.app_context():
        return db.session.scalar(sa.select(SchoolDataVersion.version).where(SchoolDataVersion.school_id == school_id))


def reads_of(statements: list[str], table: str) -> int:
    return sum(1 for s in statements if re.search(rf"\bFROM {table}\b", s, re.I))


def served_kept(app, client, url: str) -> str:
    """The page, asserting that it came from what was kept (none of its rows read again)."""
    with counted(app) as statements:
        page = client.get(url)
    assert page.status_code == 200
    assert reads_of(statements, "trait_ratings") == reads_of(statements, "year_results") == 0, "\n".join(statements)
    return page.get_data(as_text=True)


def trait_levels(page: str) -> list[str]:
    return re.findall(r'data-field="level" data-kind="trait_level"[^>]*value="([^"]*)"', page)


def test_a_page_seen_again_is_served_from_what_was_kept(app, school5a):
    _school, setup, gvcn, _principal = school5a
    client = signed_in(app, gvcn)
    for url, table in ((grid_url(setup), "trait_ratings"), (results_url(setup), "year_results")):
        first = client.get(url)
        with counted(app) as statements:
            again = client.get(url)
        assert again.status_code == 200
        assert reads_of(statements, table) == 0, "\n".join(statements)
        # The same rows; only the form token of the moment may differ.
        strip = re.compile(r'(name="csrf_token"[^>]*value="|"csrf": ")[^"]*')
        assert strip.sub("", again.get_data(as_text=True)) == strip.sub("", first.get_data(as_text=True))


def test_a_save_through_the_grid_shows_at_once(app, school5a):
    _school, setup, gvcn, _principal = school5a
    client = signed_in(app, gvcn)
    client.get(grid_url(setup))
    served_kept(app, client, grid_url(setup))
    config = grid_config(client, grid_url(setup))
    key = next(k for k in config["versions"] if k.startswith(f"{setup.enrolment_ids[0]}:t"))
    response = save(client, grid_url(setup), [{"key": key, "version": config["versions"][key],
                                               "cells": {"level": "C"}}], token=config["csrf"])
    assert response.status_code == 200
    again = grid_config(client, grid_url(setup))
    assert again["versions"][key] == config["versions"][key] + 1
    assert "C" in trait_levels(client.get(grid_url(setup)).get_data(as_text=True))
    # A refused cell is kept with its reason, and shows on the next load too.
    save(client, grid_url(setup), [{"key": key, "version": again["versions"][key], "cells": {"level": "X"}}],
         token=again["csrf"])
    assert [u["raw"] for u in grid_config(client, grid_url(setup))["unsaved"]] == ["X"]


@pytest.mark.parametrize("how", ["orm", "bulk in the school", "bulk across schools"])
def test_rows_written_outside_the_page_show_at_once(app, school5a, how):
    school, setup, gvcn, _principal = school5a
    client = signed_in(app, gvcn)
    client.get(grid_url(setup))
    assert set(trait_levels(served_kept(app, client, grid_url(setup)))) == {"T"}
    with app.app_context():
        if how == "orm":
            with school_scope(school.id):
                for rating in db.session.scalars(sa.select(TraitRating)):
                    rating.level = "C"
        elif how == "bulk in the school":
            with school_scope(school.id):
                db.session.execute(sa.update(TraitRating).values(level="C"))
        else:
            with all_schools():
                db.session.execute(sa.update(TraitRating).values(level="C"))
        db.session.commit()
    assert set(trait_levels(client.get(grid_url(setup)).get_data(as_text=True))) == {"C"}


def test_a_renamed_pupil_shows_on_both_pages(app, school5a):
    school, setup, gvcn, _principal = school5a
    client = signed_in(app, gvcn)
    for url in (grid_url(setup), results_url(setup)):
        client.get(url)
        assert "Nguyễn Văn Mới" not in served_kept(app, client, url)
    with app.app_context(), school_scope(school.id):
        db.session.get(Pupil, setup.pupil_ids[0]).full_name = "Nguyễn Văn Mới"
        db.session.commit()
    for url in (grid_url(setup), results_url(setup)):
        assert "Nguyễn Văn Mới" in client.get(url).get_data(as_text=True)


def test_the_version_changes_with_each_committed_write_to_the_school_and_only_then(app, make, school5a):
    school, setup, _gvcn, _principal = school5a
    other = make.school("hiepphuoc")
    before, other_before = version_of(app, school.id), version_of(app, other.id)
    with app.app_context(), school_scope(school.id):
        db.session.scalars(sa.select(TraitRating)).all()
        db.session.commit()  # read only
    assert version_of(app, school.id) == before
    with app.app_context(), school_scope(school.id):
        db.session.get(Pupil, setup.pupil_ids[0]).full_name = "Không lưu"
        db.session.flush()
        db.session.rollback()
    assert version_of(app, school.id) == before
    with app.app_context(), school_scope(school.id):
        db.session.get(Pupil, setup.pupil_ids[0]).full_name = "Đã lưu"
        db.session.commit()
    after = version_of(app, school.id)
    assert after is not None and after != before
    assert version_of(app, other.id) == other_before


def test_each_reader_gets_her_own_rows_and_her_own_form_token(app, school5a):
    _school, setup, gvcn, principal = school5a
    teacher, head = signed_in(app, gvcn), signed_in(app, principal)
    for _ in range(2):  # the second time from what was kept
        mine = teacher.get(grid_url(setup)).get_data(as_text=True)
        theirs = head.get(grid_url(setup)).get_data(as_text=True)
        assert "readonly" not in re.search(r'<textarea[^>]*>', mine).group(0)
        assert "readonly" in re.search(r'<textarea[^>]*>', theirs).group(0)
        mine = teacher.get(results_url(setup)).get_data(as_text=True)
        theirs = head.get(results_url(setup)).get_data(as_text=True)
        assert 'name="pupil_ids"' in mine and 'name="pupil_ids"' not in theirs
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', mine).group(1)
    assert token != re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', theirs).group(1)
    # The teacher's token from a page served from what was kept is hers: her confirmation goes through.
    assert "đã xác nhận kết quả: 0" in mine
    response = teacher.post(f"/s/lqd/results/classes/{setup.class_id}/confirm", data={"csrf_token": token})
    assert response.status_code == 302
    assert f"đã xác nhận kết quả: {PUPILS}" in teacher.get(results_url(setup)).get_data(as_text=True)


def test_each_language_gets_its_own_rows(app, school5a):
    _school, setup, gvcn, _principal = school5a
    client = signed_in(app, gvcn)
    client.get(results_url(setup))
    vietnamese = served_kept(app, client, results_url(setup))
    assert "Hoàn thành xuất sắc" in vietnamese or "Hoàn thành tốt" in vietnamese
    with app.app_context():
        db.session.get(User, gvcn.id).locale = "en"
        db.session.commit()
    english = client.get(results_url(setup)).get_data(as_text=True)
    assert "Hoàn thành xuất sắc" not in english and "Hoàn thành tốt" not in english


def test_another_school_never_sees_the_kept_rows(app, make, school5a):
    _school, setup, gvcn, _principal = school5a
    assert signed_in(app, gvcn).get(results_url(setup)).status_code == 200  # kept now
    other = make.school("hiepphuoc")
    stranger = signed_in(app, make.user(other, Role.PRINCIPAL))
    for url in (grid_url(setup), results_url(setup)):
        assert stranger.get(url.replace("/s/lqd/", "/s/hiepphuoc/")).status_code == 404
        assert stranger.get(url).status_code == 403


def test_a_page_made_in_a_request_that_writes_is_not_kept(app, school5a):
    school, _setup, _gvcn, _principal = school5a
    made = []

    def make_part():
        made.append(1)
        return "rows"

    with app.test_request_context("/s/lqd/", method="POST"):
        g.school, g.school_version = db.session.get(School, school.id), 1
        pagecache.kept("test", (), make_part, len)
        pagecache.kept("test", (), make_part, len)
    with app.test_request_context("/s/lqd/", method="GET"):
        g.school, g.school_version = db.session.get(School, school.id), 1
        with school_scope(school.id):
            db.session.add(Pupil(full_name="Đang ghi", pupil_code="X1"))
            pagecache.kept("test", (), make_part, len)
            pagecache.kept("test", (), make_part, len)
            db.session.rollback()
        pagecache.kept("test", (), make_part, len)
        pagecache.kept("test", (), make_part, len)
    assert len(made) == 5  # twice on POST, twice while writing, once when nothing was written


def test_the_kept_parts_are_bounded_and_expire(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(pagecache.time, "monotonic", lambda: now[0])
    parts = pagecache.Fragments(max_bytes=100, max_age=60)
    parts.put("a", "A", 40)
    parts.put("b", "B", 40)
    assert parts.get("a") == "A"  # now the most recently used
    parts.put("c", "C", 40)  # over 100 bytes: the least recently used goes
    assert (parts.get("a"), parts.get("b"), parts.get("c")) == ("A", None, "C")
    parts.put("huge", "H", 101)
    assert parts.get("huge") is None
    now[0] += 61
    assert parts.get("a") is None and len(parts) == 1


def test_a_school_edit_and_a_save_in_the_same_school_cannot_deadlock_on_the_version(app, school5a):
    """The version is written last, into a row nothing else locks: a transaction holding the school's row while
    it waits for the audit chain, and one holding the chain while it commits a write, both go through. (Had the
    version lived in `schools`, the second would wait for the first's row: a deadlock PostgreSQL breaks by
    failing one of them.)"""
    from portal import audit

    school, setup, _gvcn, _principal = school5a
    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            pytest.skip("SQLite has one writer at a time: no two transactions hold locks at once")
    edit_holds_school, save_holds_chain = threading.Event(), threading.Event()
    failures: list[BaseException] = []

    def school_edit() -> None:
        try:
            with app.app_context(), school_scope(school.id):
                db.session.get(School, school.id).name = "Trường Tiểu học Lê Quang Định (mới)"
                db.session.flush()  # the school's row is locked until the commit
                edit_holds_school.set()
                assert save_holds_chain.wait(30)
                audit.record("test.school_edit", actor=None, school_id=school.id)
                db.session.commit()  # waits for the chain until the save commits
        except BaseException as exc:  # reported by the test below
            failures.append(exc)
            edit_holds_school.set()

    def save() -> None:
        try:
            with app.app_context(), school_scope(school.id):
                assert edit_holds_school.wait(30)
                audit.record("test.save", actor=None, school_id=school.id)
                db.session.get(Pupil, setup.pupil_ids[1]).full_name = "Trần Văn Lưu"
                db.session.flush()  # the audit chain's head is locked until the commit
                save_holds_chain.set()
                time.sleep(0.5)  # the edit is waiting for the chain by now
                db.session.commit()  # writes the new version last
        except BaseException as exc:  # reported by the test below
            failures.append(exc)
            save_holds_chain.set()

    before = version_of(app, school.id)
    threads = [threading.Thread(target=school_edit), threading.Thread(target=save)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not failures, failures
    assert version_of(app, school.id) not in (None, before)
    with app.app_context():
        assert db.session.get(School, school.id).name.endswith("(mới)")
