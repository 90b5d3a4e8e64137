"""Rating grids through HTTP: who may open and save which grid, saving, per-cell validation, the entry
window, version conflicts, the audit trail, review marks, and the Excel round trip."""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from datetime import date

import pytest
import sqlalchemy as sa
from flask.testing import FlaskClient
from openpyxl import load_workbook

from portal.assessment import review
from portal.assessment.models import (
    Enrolment,
    EnrolmentStatus,
    Period,
    PeriodNote,
    SubjectRating,
    Trait,
    TraitRating,
    YearResult,
)
from portal.audit import AuditEntry
from portal.extensions import db
from portal.grading.services import name_key
from tenants.models import School, User
from tenants.roles import Role
from tenants.scoping import school_scope
from tests.assessment_factory import ClassSetup, make_class, make_year
from tests.conftest import login


@dataclass
class School5A:
    code: str
    school: School
    school_id: int
    setup: ClassSetup
    gvcn: User
    gvbm: User
    principal: User

    def subject_url(self, subject: str, period: str = "CN", class_id: int | None = None) -> str:
        return (f"/s/{self.code}/grading/classes/{class_id or self.setup.class_id}/subjects/"
                f"{self.setup.subject_ids[subject]}/periods/{self.setup.period_ids[period]}")

    def class_url(self, period: str = "CN") -> str:
        return f"/s/{self.code}/grading/classes/{self.setup.class_id}/periods/{self.setup.period_ids[period]}"

    def key(self, n: int, part: str = "") -> str:
        """The record key of the n-th pupil made by the factory."""
        enrolment = self.setup.enrolment_ids[n]
        return f"{enrolment}:{part}" if part else str(enrolment)


@pytest.fixture
def lqd(app, make) -> School5A:
    """Class 5A: GVCN Lê Thị Lan; GVBM Phan Văn Âm teaches Ngoại ngữ 1 (tested at CHK1 and CN) and
    Âm nhạc (never tested); a principal. Every entry window is open."""
    school = make.school("lqd", "Trường Tiểu học Lê Quang Định")
    gvcn = make.user(school, Role.HOMEROOM_TEACHER, full_name="Lê Thị Lan")
    gvbm = make.user(school, Role.SUBJECT_TEACHER, full_name="Phan Văn Âm")
    principal = make.user(school, Role.PRINCIPAL, full_name="Võ Thị Lài")
    year_id = make_year(app, school)
    setup = make_class(app, school, year_id, "5A", homeroom_id=gvcn.id,
                       teachers={"ngoai_ngu_1": gvbm.id, "am_nhac": gvbm.id})
    return School5A("lqd", school, school.id, setup, gvcn, gvbm, principal)


def grid_url(class_id: int, subject_id: int, period_id: int) -> str:
    return f"/s/lqd/grading/classes/{class_id}/subjects/{subject_id}/periods/{period_id}"


def signed_in(app, user: User) -> FlaskClient:
    client = app.test_client()
    login(client, user)
    return client


def grid_config(client: FlaskClient, url: str) -> dict:
    page = client.get(url)
    assert page.status_code == 200
    match = re.search(r'id="grid-config">(.*?)</script>', page.get_data(as_text=True), re.S)
    assert match, "the grid page carries its configuration"
    return json.loads(match.group(1))


def save(client: FlaskClient, url: str, rows: list[dict], token: str | None = None):
    token = token or grid_config(client, url)["csrf"]
    return client.post(url + "/save", json={"rows": rows}, headers={"X-CSRFToken": token})


def ratings(app, school_id: int) -> dict[int, SubjectRating]:
    with app.app_context(), school_scope(school_id):
        rows = db.session.scalars(sa.select(SubjectRating)).all()
        for row in rows:
            db.session.expunge(row)
        return {row.enrolment_id: row for row in rows}


def audit_entries(app, action: str) -> list[AuditEntry]:
    with app.app_context():
        entries = db.session.scalars(sa.select(AuditEntry).where(AuditEntry.action == action)
                                     .order_by(AuditEntry.id)).all()
        for entry in entries:
            db.session.expunge(entry)
        return entries


# --- "Lớp của tôi" -----------------------------------------------------------------------------------


def test_each_teacher_sees_the_grids_she_may_open(app, lqd):
    page = signed_in(app, lqd.gvbm).get("/s/lqd/grading/").get_data(as_text=True)
    assert "Lớp 5A" in page and "Ngoại ngữ 1" in page and "Âm nhạc" in page
    assert "Toán" not in page and "Phẩm chất, năng lực" not in page and "chỉ xem" not in page

    page = signed_in(app, lqd.gvcn).get("/s/lqd/grading/").get_data(as_text=True)
    assert all(name in page for name in ("Toán", "Tiếng Việt", "Khoa học", "Âm nhạc", "Phẩm chất, năng lực"))
    assert "Tự nhiên và Xã hội" not in page  # not taught in grade 5
    assert "Chủ nhiệm" in page and "chỉ xem" not in page

    principal = signed_in(app, lqd.principal)
    page = principal.get("/s/lqd/grading/").get_data(as_text=True)
    assert "Toán" in page and "Phẩm chất, năng lực" in page and "chỉ xem" in page
    assert 'href="/s/lqd/grading/"' in principal.get("/s/lqd/").get_data(as_text=True)


def test_progress_counts_the_pupils_rated_in_the_chosen_period(app, lqd):
    gvbm = signed_in(app, lqd.gvbm)
    assert save(gvbm, lqd.subject_url("am_nhac", "GHK1"), [
        {"key": lqd.key(0), "version": 0, "cells": {"level": "T"}},
        {"key": lqd.key(1), "version": 0, "cells": {"comment": "Hát hay"}},  # no level yet: not counted
    ]).status_code == 200
    ghk1 = lqd.setup.period_ids["GHK1"]
    page = gvbm.get(f"/s/lqd/grading/?period_id={ghk1}").get_data(as_text=True)
    assert re.search(r"Âm nhạc\)</a>\s*</td>\s*<td class=\"num\">1/5</td>", page)
    assert "0/5" in gvbm.get(f"/s/lqd/grading/?period_id={lqd.setup.period_ids['CN']}").get_data(as_text=True)


def test_a_school_without_a_year_says_so(app, make):
    school = make.school("trong")
    page = signed_in(app, make.user(school, Role.HOMEROOM_TEACHER)).get("/s/trong/grading/").get_data(True)
    assert "chưa thiết lập năm học" in page


# --- the subject grid --------------------------------------------------------------------------------


def test_the_grid_lists_enrolled_pupils_in_class_list_order(app, lqd):
    with app.app_context(), school_scope(lqd.school_id):
        db.session.get(Enrolment, lqd.setup.enrolment_ids[2]).status = EnrolmentStatus.TRANSFERRED_OUT
        db.session.get(Enrolment, lqd.setup.enrolment_ids[3]).status = EnrolmentStatus.TRANSFERRED_IN
        db.session.commit()
    page = signed_in(app, lqd.gvbm).get(lqd.subject_url("ngoai_ngu_1")).get_data(as_text=True)
    names = re.findall(r'<th scope="row" class="name">([^<]+)</th>', page)
    # By given name (Anh, Khoa, Trâm, Tuyết); Lê Ngọc Hân moved away.
    assert names == ["Phạm Đức Anh", "Trần Minh Khoa", "Huỳnh Bảo Trâm", "Nguyễn Thị Ánh Tuyết"]
    assert "Điểm KTĐK" in page and 'data-field="score"' in page


def test_vietnamese_alphabetical_order():
    names = ["Đỗ Văn Đạt", "Lê Văn Dũng", "Trần Thị Ánh", "Phạm An", "Hồ Thị Ân", "Bùi Văn Ăn", "Vũ Ý", "Lý Y"]
    assert sorted(names, key=name_key) == ["Phạm An", "Trần Thị Ánh", "Bùi Văn Ăn", "Hồ Thị Ân", "Lê Văn Dũng",
                                           "Đỗ Văn Đạt", "Lý Y", "Vũ Ý"]


def test_a_subject_teacher_saves_her_grid(app, lqd):
    gvbm = signed_in(app, lqd.gvbm)
    url = lqd.subject_url("ngoai_ngu_1")
    config = grid_config(gvbm, url)
    assert config["editable"] is True and config["versions"][lqd.key(0)] == 0
    response = save(gvbm, url, [
        {"key": lqd.key(0), "version": 0, "cells": {"level": "t", "score": "9", "comment": "  Phát âm   tốt. "}},
        {"key": lqd.key(1), "version": 0, "cells": {"level": "H", "score": 6}},
    ], config["csrf"])
    assert response.status_code == 200, response.get_json()
    answer = response.get_json()
    assert answer["ok"] and answer["versions"] == {lqd.key(0): 1, lqd.key(1): 1}
    assert answer["values"][lqd.key(0)] == {"level": "T", "score": "9", "comment": "Phát âm tốt."}
    assert answer["changed_cells"] == 5 and "Đã lưu 5 ô" in answer["message"]
    stored = ratings(app, lqd.school_id)
    first = stored[lqd.setup.enrolment_ids[0]]
    assert (first.level, first.score, first.comment, first.version, first.updated_by_id) == (
        "T", 9, "Phát âm tốt.", 1, lqd.gvbm.id)

    # Saved again from the version it now has: the version grows; an unchanged cell is not a change.
    again = save(gvbm, url, [{"key": lqd.key(0), "version": 1, "cells": {"level": "H", "score": "9"}}],
                 config["csrf"]).get_json()
    assert again["versions"] == {lqd.key(0): 2} and again["changed_cells"] == 1
    page = gvbm.get(url).get_data(as_text=True)
    assert re.search(rf'data-key="{lqd.key(0)}" data-field="level"[^>]*value="H"', page)


def test_every_save_writes_one_audit_entry_with_old_and_new_values(app, lqd):
    gvbm = signed_in(app, lqd.gvbm)
    url = lqd.subject_url("am_nhac", "GHK1")
    save(gvbm, url, [{"key": lqd.key(0), "version": 0, "cells": {"level": "H", "comment": "Hát đúng nhịp."}},
                     {"key": lqd.key(1), "version": 0, "cells": {"level": "T"}}])
    save(gvbm, url, [{"key": lqd.key(0), "version": 1, "cells": {"level": "T"}}])
    save(gvbm, url, [{"key": lqd.key(0), "version": 2, "cells": {"level": "T"}}])  # no change: no entry
    entries = audit_entries(app, "grading.saved")
    assert len(entries) == 2
    first, second = entries
    assert first.actor_id == lqd.gvbm.id and first.object_type == "SchoolClass"
    assert first.summary == "5A · Nghệ thuật (Âm nhạc) · Giữa học kì I"
    assert first.changes["subject"] == "am_nhac" and first.changes["period"] == "GHK1"
    row = first.changes["rows"][lqd.key(0)]
    assert row["pupil"].endswith("Nguyễn Thị Ánh Tuyết")
    assert row["cells"] == {"level": [None, "H"], "comment": ["", "Hát đúng nhịp."]}
    assert second.changes["rows"] == {lqd.key(0): {"pupil": row["pupil"], "cells": {"level": ["H", "T"]}}}


def test_invalid_cells_are_answered_one_by_one_and_kept_while_the_valid_ones_are_saved(app, lqd):
    gvbm = signed_in(app, lqd.gvbm)
    url = lqd.subject_url("ngoai_ngu_1")
    response = save(gvbm, url, [
        {"key": lqd.key(0), "version": 0, "cells": {"level": "T", "score": 8}},  # valid: written
        {"key": lqd.key(1), "version": 0, "cells": {"level": "X", "score": "7.5"}},
        {"key": lqd.key(2), "version": 0, "cells": {"score": 0, "comment": "x" * 1001}},
        {"key": lqd.key(3), "version": 0, "cells": {"score": 11, "level": "Đ"}},
        {"key": lqd.key(4), "version": 0, "cells": {"score": "mười"}},
    ])
    assert response.status_code == 422
    answer = response.get_json()
    assert not answer["ok"] and "Đã lưu 2 ô. Chưa lưu 7 ô chưa hợp lệ" in answer["message"]
    errors = {(e["key"], e["field"]): e["message"] for e in answer["errors"]}
    assert errors == {
        (lqd.key(1), "level"): "Mức đạt được chỉ nhận T, H hoặc C.",
        (lqd.key(1), "score"): "Điểm KTĐK phải là số nguyên từ 1 đến 10.",
        (lqd.key(2), "score"): "Điểm KTĐK phải là số nguyên từ 1 đến 10.",
        (lqd.key(2), "comment"): "Nhận xét dài 1001 ký tự, tối đa 1000 ký tự.",
        (lqd.key(3), "score"): "Điểm KTĐK phải là số nguyên từ 1 đến 10.",
        (lqd.key(3), "level"): "Mức đạt được chỉ nhận T, H hoặc C.",
        (lqd.key(4), "score"): "Điểm KTĐK phải là số nguyên từ 1 đến 10.",
    }
    where = next(e["where"] for e in answer["errors"] if e["key"] == lqd.key(1) and e["field"] == "level")
    assert where == "3. Trần Minh Khoa · Mức đạt được"
    stored = ratings(app, lqd.school_id)  # every valid cell; the other rows hold only refused cells
    assert list(stored) == [lqd.setup.enrolment_ids[0]]
    assert (stored[lqd.setup.enrolment_ids[0]].level, stored[lqd.setup.enrolment_ids[0]].score) == ("T", 8)
    assert answer["versions"][lqd.key(0)] == 1 and len(audit_entries(app, "grading.saved")) == 1

    # The server keeps the refused cells as typed: a reload shows them, marked and listed, not lost.
    config = grid_config(gvbm, url)
    unsaved = {(u["key"], u["field"]): u["raw"] for u in config["unsaved"]}
    assert unsaved[(lqd.key(1), "score")] == "7.5" and unsaved[(lqd.key(3), "level")] == "Đ" and len(unsaved) == 7
    page = gvbm.get(url).get_data(as_text=True)
    assert 'value="7.5"' in page and "Điểm KTĐK phải là số nguyên từ 1 đến 10." in page

    # Corrected (or put back), a cell is saved and no longer kept as refused.
    save(gvbm, url, [{"key": lqd.key(1), "version": 0, "cells": {"level": "H", "score": 7}}])
    assert {(u["key"], u["field"]) for u in grid_config(gvbm, url)["unsaved"]} == {
        (lqd.key(2), "score"), (lqd.key(2), "comment"), (lqd.key(3), "score"), (lqd.key(3), "level"),
        (lqd.key(4), "score")}


def test_rows_and_columns_outside_the_grid_are_refused(app, lqd):
    gvbm = signed_in(app, lqd.gvbm)
    url = lqd.subject_url("ngoai_ngu_1")
    answer = save(gvbm, url, [{"key": "999999", "version": 0, "cells": {"level": "T"}},
                              {"key": lqd.key(0), "version": 0, "cells": {"height_cm": 120}},
                              {"key": lqd.key(1, "note"), "version": 0, "cells": {"height_cm": 120}}]).get_json()
    assert [(e["key"], e["field"]) for e in answer["errors"]] == [("999999", ""), (lqd.key(0), "height_cm"),
                                                                  (lqd.key(1, "note"), "")]
    token = grid_config(gvbm, url)["csrf"]
    for body in ({"rows": "T"}, {"rows": [{"key": lqd.key(0), "version": "1", "cells": {}}]}, [1, 2]):
        response = gvbm.post(url + "/save", json=body, headers={"X-CSRFToken": token})
        assert response.status_code == 400 and "không đúng dạng" in response.get_json()["message"]


def test_saving_needs_the_csrf_token(app, lqd):
    gvbm = signed_in(app, lqd.gvbm)
    response = gvbm.post(lqd.subject_url("am_nhac") + "/save",
                         json={"rows": [{"key": lqd.key(0), "version": 0, "cells": {"level": "T"}}]})
    assert response.status_code == 400 and ratings(app, lqd.school_id) == {}


def test_a_score_is_refused_where_the_subject_is_not_tested(app, lqd):
    gvbm = signed_in(app, lqd.gvbm)
    message = "Môn này không có bài kiểm tra định kì ở kì này: để trống ô điểm."
    # Âm nhạc is never tested; Ngoại ngữ 1 in grade 5 is tested at CHK1 and CN, not at GHK1.
    for url in (lqd.subject_url("am_nhac", "CN"), lqd.subject_url("ngoai_ngu_1", "GHK1")):
        page = gvbm.get(url).get_data(as_text=True)
        assert "Điểm KTĐK" not in page and "không có bài kiểm tra định kì" in page
        response = save(gvbm, url, [{"key": lqd.key(0), "version": 0, "cells": {"level": "T", "score": 9}}])
        assert response.status_code == 422
        assert response.get_json()["errors"] == [{"key": lqd.key(0), "field": "score", "message": message,
                                                  "where": "5. Nguyễn Thị Ánh Tuyết · Điểm KTĐK"}]
        assert save(gvbm, url, [{"key": lqd.key(0), "version": 0, "cells": {"score": ""}}]).status_code == 200
    assert save(gvbm, lqd.subject_url("ngoai_ngu_1", "CHK1"),
                [{"key": lqd.key(0), "version": 0, "cells": {"score": 9}}]).status_code == 200


def test_outside_the_entry_window_the_grid_is_read_only_on_the_server(app, make):
    school = make.school("lqd")
    gvbm = make.user(school, Role.SUBJECT_TEACHER)
    year_id = make_year(app, school, open_all=False)
    setup = make_class(app, school, year_id, "4A", teachers={"toan": gvbm.id})
    with app.app_context(), school_scope(school.id):
        period = db.session.get(Period, setup.period_ids["GHK1"])
        period.entry_opens_on, period.entry_closes_on = date(2024, 11, 1), date(2024, 11, 15)
        db.session.commit()
    client = signed_in(app, gvbm)
    url = grid_url(setup.class_id, setup.subject_ids["toan"], setup.period_ids["GHK1"])
    page = client.get(url).get_data(as_text=True)
    assert "Kì Giữa học kì I chỉ nhập được từ 01/11/2024 đến 15/11/2024. Bảng chỉ xem được." in page
    assert 'id="grid-save"' not in page and "readonly" in page
    config = grid_config(client, url)
    assert config["editable"] is False
    response = save(client, url, [{"key": str(setup.enrolment_ids[0]), "version": 0, "cells": {"level": "T"}}],
                    config["csrf"])
    assert response.status_code == 403
    assert response.get_json()["message"].startswith("Kì Giữa học kì I chỉ nhập được từ 01/11/2024")
    cn = url.replace(f"/periods/{setup.period_ids['GHK1']}", f"/periods/{setup.period_ids['CN']}")
    assert "Kì Cuối năm học chưa được mở để nhập đánh giá." in client.get(cn).get_data(as_text=True)
    upload = client.post(url + "/import", data={"csrf_token": config["csrf"], "file": (io.BytesIO(b"x"), "a.xlsx")},
                         follow_redirects=True)
    assert "chỉ nhập được từ 01/11/2024" in upload.get_data(as_text=True)
    assert ratings(app, school.id) == {}


# --- conflicts ---------------------------------------------------------------------------------------


def test_two_teachers_saving_the_same_row_get_a_conflict_not_a_silent_overwrite(app, lqd):
    url = lqd.subject_url("ngoai_ngu_1")
    gvbm, gvcn = signed_in(app, lqd.gvbm), signed_in(app, lqd.gvcn)  # the GVCN may enter every subject
    loaded_by_gvbm = grid_config(gvbm, url)
    loaded_by_gvcn = grid_config(gvcn, url)
    assert save(gvcn, url, [{"key": lqd.key(0), "version": 0, "cells": {"level": "T", "comment": "Rất chăm."}}],
                loaded_by_gvcn["csrf"]).status_code == 200

    # The GVBM's page still holds version 0 of that row.
    response = save(gvbm, url, [
        {"key": lqd.key(0), "version": loaded_by_gvbm["versions"][lqd.key(0)], "cells": {"level": "H"}},
        {"key": lqd.key(1), "version": 0, "cells": {"level": "T"}},
    ], loaded_by_gvbm["csrf"])
    assert response.status_code == 409
    answer = response.get_json()
    assert "1 dòng đã được người khác sửa" in answer["message"]
    [conflict] = answer["conflicts"]
    assert conflict["key"] == lqd.key(0) and conflict["version"] == 1 and conflict["by"] == "Lê Thị Lan"
    assert re.fullmatch(r"\d\d/\d\d/\d{4} \d\d:\d\d", conflict["at"])
    assert conflict["cells"] == [{"field": "level", "label": "Mức đạt được", "mine": "H", "theirs": "T",
                                  "where": "5. Nguyễn Thị Ánh Tuyết · Mức đạt được"}]
    assert conflict["current"] == {"level": "T", "score": "", "comment": "Rất chăm."}
    stored = ratings(app, lqd.school_id)
    assert stored[lqd.setup.enrolment_ids[0]].level == "T"
    assert stored[lqd.setup.enrolment_ids[1]].level == "T"  # the other row does not wait for the choice
    assert answer["versions"] == {lqd.key(1): 1} and answer["changed_cells"] == 1

    # "Keep mine": the page resends with the version it was told about.
    kept = save(gvbm, url, [{"key": lqd.key(0), "version": 1, "cells": {"level": "H"}}], loaded_by_gvbm["csrf"])
    assert kept.status_code == 200 and kept.get_json()["versions"] == {lqd.key(0): 2}
    stored = ratings(app, lqd.school_id)
    assert stored[lqd.setup.enrolment_ids[0]].level == "H"
    assert stored[lqd.setup.enrolment_ids[0]].comment == "Rất chăm."  # the GVCN's comment stays


def test_the_same_value_saved_twice_is_no_conflict(app, lqd):
    url = lqd.subject_url("am_nhac")
    gvbm, gvcn = signed_in(app, lqd.gvbm), signed_in(app, lqd.gvcn)
    assert save(gvcn, url, [{"key": lqd.key(0), "version": 0, "cells": {"level": "T"}}]).status_code == 200
    # E.g. a save whose answer was lost on the way, sent again from the draft: nothing to choose.
    answer = save(gvbm, url, [{"key": lqd.key(0), "version": 0, "cells": {"level": "T"}}]).get_json()
    assert answer["ok"] and answer["versions"] == {lqd.key(0): 1} and answer["changed_cells"] == 0


def test_measurement_conflicts_name_who_saved_from_the_trail(app, lqd):
    url = lqd.class_url("GHK1")
    gvcn = signed_in(app, lqd.gvcn)
    first = save(gvcn, url, [{"key": lqd.key(0, "note"), "version": 0, "cells": {"height_cm": "121"}}])
    assert first.status_code == 200
    answer = save(gvcn, url, [{"key": lqd.key(0, "note"), "version": 0, "cells": {"height_cm": "125"}}]).get_json()
    [conflict] = answer["conflicts"]
    assert conflict["by"] == "Lê Thị Lan" and conflict["cells"][0]["theirs"] == "121"


# --- who may open and save which grid ----------------------------------------------------------------


def test_authorization_matrix(app, make, lqd):
    other_gvcn = make.user(lqd.school, Role.HOMEROOM_TEACHER, full_name="Trần Thị Bé")
    setup_5b = make_class(app, lqd.school, lqd.setup.year_id, "5B", homeroom_id=other_gvcn.id, code_prefix="79500")
    vice = make.user(lqd.school, Role.VICE_PRINCIPAL)
    it_staff = make.user(lqd.school, Role.SCHOOL_IT)
    rows = [{"key": lqd.key(0), "version": 0, "cells": {"level": "T"}}]

    gvbm = signed_in(app, lqd.gvbm)
    assert gvbm.get(lqd.subject_url("toan")).status_code == 403  # not her subject
    assert save(gvbm, lqd.subject_url("toan"), rows, token=page_token(gvbm)).status_code == 403
    assert gvbm.get(lqd.class_url()).status_code == 403  # the class assessment is the GVCN's
    assert gvbm.get(lqd.subject_url("toan") + "/export.xlsx").status_code == 403

    other = signed_in(app, other_gvcn)
    assert other.get(lqd.subject_url("toan")).status_code == 403  # GVCN of another class
    assert other.get(lqd.class_url()).status_code == 403
    assert save(other, lqd.class_url(), [{"key": lqd.key(0, "note"), "version": 0, "cells": {"height_cm": 120}}],
                token=page_token(other)).status_code == 403

    gvcn = signed_in(app, lqd.gvcn)
    assert gvcn.get(lqd.subject_url("toan")).status_code == 200
    assert gvcn.get(lqd.class_url()).status_code == 200
    assert gvcn.get(lqd.subject_url("toan", class_id=setup_5b.class_id)).status_code == 403

    for reader in (lqd.principal, vice):
        client = signed_in(app, reader)
        config = grid_config(client, lqd.subject_url("toan"))
        assert config["editable"] is False
        page = client.get(lqd.subject_url("toan")).get_data(as_text=True)
        assert "Bạn chỉ được xem bảng này" in page and 'id="grid-save"' not in page
        assert grid_config(client, lqd.class_url())["editable"] is False
        response = save(client, lqd.subject_url("toan"), rows, config["csrf"])
        assert response.status_code == 403 and "chỉ được xem" in response.get_json()["message"]
        assert client.get(lqd.subject_url("toan") + "/export.xlsx").status_code == 200
        assert client.post(lqd.subject_url("toan") + "/import", data={"csrf_token": config["csrf"]}).status_code == 403

    assert signed_in(app, it_staff).get("/s/lqd/grading/").status_code == 403
    assert ratings(app, lqd.school_id) == {}


def page_token(client: FlaskClient) -> str:
    """A valid CSRF token of the session, from any page (the sign-out button carries one)."""
    page = client.get("/s/lqd/").get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def test_another_schools_ids_answer_404(app, make, lqd):
    other = make.school("nhabe2")
    year_id = make_year(app, other)
    foreign = make_class(app, other, year_id, "5A", pupils=1, code_prefix="79999")
    gvcn = signed_in(app, lqd.gvcn)
    mine = lqd.setup
    combos = [
        (foreign.class_id, mine.subject_ids["toan"], mine.period_ids["CN"]),
        (mine.class_id, foreign.subject_ids["toan"], mine.period_ids["CN"]),
        (mine.class_id, mine.subject_ids["toan"], foreign.period_ids["CN"]),
    ]
    for class_id, subject_id, period_id in combos:
        url = grid_url(class_id, subject_id, period_id)
        assert gvcn.get(url).status_code == 404
        assert gvcn.get(url + "/export.xlsx").status_code == 404
        assert gvcn.post(url + "/save", json={"rows": []}, headers={"X-CSRFToken": page_token(gvcn)}).status_code == 404
    assert gvcn.get(f"/s/lqd/grading/classes/{foreign.class_id}/periods/{mine.period_ids['CN']}").status_code == 404
    assert gvcn.get(f"/s/lqd/grading/classes/{mine.class_id}/periods/{foreign.period_ids['CN']}").status_code == 404
    # A subject not taught in the class's grade is no grid either.
    tnxh = grid_url(mine.class_id, mine.subject_ids["tn_xh"], mine.period_ids["CN"])
    assert gvcn.get(tnxh).status_code == 404


# --- the class assessment ----------------------------------------------------------------------------


def test_the_homeroom_teacher_saves_qualities_competencies_and_measurements(app, lqd):
    gvcn = signed_in(app, lqd.gvcn)
    url = lqd.class_url("CHK1")
    with app.app_context(), school_scope(lqd.school_id):
        traits = {t.code: t.id for t in db.session.scalars(sa.select(Trait))}
    page = gvcn.get(url).get_data(as_text=True)
    assert "Yêu nước" in page and "Tin học" not in page  # the default part: qualities
    assert "Tin học" in gvcn.get(url + "?part=specific").get_data(as_text=True)  # grade 5: from grade 3 on
    assert "Chiều cao (cm)" in gvcn.get(url + "?part=health").get_data(as_text=True)
    patriotism = f"t{traits['yeu_nuoc']}"
    response = save(gvcn, url, [
        {"key": lqd.key(0, patriotism), "version": 0, "cells": {"level": "d", "comment": "Yêu quê hương."}},
        {"key": lqd.key(1, patriotism), "version": 0, "cells": {"level": "Tốt"}},
        {"key": lqd.key(0, "note"), "version": 0,
         "cells": {"height_cm": "128", "weight_kg": "25,5", "absent_excused": "2", "absent_unexcused": ""}},
    ])
    assert response.status_code == 200, response.get_json()
    answer = response.get_json()
    assert answer["values"][lqd.key(0, "note")] == {"height_cm": "128", "weight_kg": "25,5", "absent_excused": "2",
                                                   "absent_unexcused": "0"}
    with app.app_context(), school_scope(lqd.school_id):
        levels = dict(db.session.execute(sa.select(TraitRating.enrolment_id, TraitRating.level)).all())
        note = db.session.scalar(sa.select(PeriodNote))
        assert levels == {lqd.setup.enrolment_ids[0]: "Đ", lqd.setup.enrolment_ids[1]: "T"}
        assert (note.height_cm, note.weight_kg, note.absent_excused, note.version) == (128, 25.5, 2, 1)

    refused = save(gvcn, url, [
        {"key": lqd.key(2, patriotism), "version": 0, "cells": {"level": "H"}},
        {"key": lqd.key(2, "note"), "version": 0, "cells": {"height_cm": "12,8", "weight_kg": "300",
                                                            "absent_excused": "-1"}},
    ]).get_json()
    assert {(e["field"], e["message"]) for e in refused["errors"]} == {
        ("level", "Mức đạt được chỉ nhận T, Đ hoặc C."),
        ("height_cm", "Chiều cao phải là số nguyên (cm) từ 50 đến 200."),
        ("weight_kg", "Cân nặng phải là số (kg) từ 10 đến 100, ví dụ 25,5."),
        ("absent_excused", "Số ngày nghỉ phải là số nguyên từ 0 đến 200."),
    }


def test_grade_one_has_no_informatics_competency(app, make, lqd):
    setup = make_class(app, lqd.school, lqd.setup.year_id, "1A", homeroom_id=lqd.gvcn.id, code_prefix="79100")
    with app.app_context(), school_scope(lqd.school_id):
        informatics = db.session.scalar(sa.select(Trait.id).where(Trait.code == "tin_hoc"))
    gvcn = signed_in(app, lqd.gvcn)
    url = f"/s/lqd/grading/classes/{setup.class_id}/periods/{setup.period_ids['CN']}"
    assert "Tin học" not in gvcn.get(url + "?part=specific").get_data(as_text=True)
    answer = save(gvcn, url, [{"key": f"{setup.enrolment_ids[0]}:t{informatics}", "version": 0,
                               "cells": {"level": "T"}}]).get_json()
    assert answer["errors"][0]["field"] == "" and "không thuộc bảng" in answer["errors"][0]["message"]


# --- review marks ------------------------------------------------------------------------------------


def _mark_reviewed(app, lqd: School5A, *numbers: int) -> None:
    with app.app_context(), school_scope(lqd.school_id):
        for n in numbers:
            review.mark_results_reviewed(db.session.get(Enrolment, lqd.setup.enrolment_ids[n]), actor=None)
        db.session.commit()


def _reviewed(app, lqd: School5A) -> set[int]:
    with app.app_context(), school_scope(lqd.school_id):
        return set(db.session.scalars(sa.select(YearResult.enrolment_id)
                                      .where(YearResult.results_reviewed_at.is_not(None))))


def test_changing_year_end_ratings_clears_the_results_review_mark(app, lqd):
    _mark_reviewed(app, lqd, 0, 1)
    gvbm = signed_in(app, lqd.gvbm)
    # Mid-year ratings are not the year's results: the marks stay.
    answer = save(gvbm, lqd.subject_url("am_nhac", "GHK2"), [{"key": lqd.key(0), "version": 0,
                                                              "cells": {"level": "C"}}]).get_json()
    assert answer["review_cleared"] == [] and "review_message" not in answer
    assert _reviewed(app, lqd) == {lqd.setup.enrolment_ids[0], lqd.setup.enrolment_ids[1]}

    answer = save(gvbm, lqd.subject_url("ngoai_ngu_1", "CN"), [
        {"key": lqd.key(0), "version": 0, "cells": {"score": 8}},
        {"key": lqd.key(2), "version": 0, "cells": {"score": 7}},  # never reviewed
    ]).get_json()
    assert answer["ok"] and answer["review_cleared"] == ["Nguyễn Thị Ánh Tuyết"]
    assert "dấu rà soát đã được bỏ" in answer["review_message"] and "Nguyễn Thị Ánh Tuyết" in answer["review_message"]
    assert _reviewed(app, lqd) == {lqd.setup.enrolment_ids[1]}
    [cleared] = audit_entries(app, "results.review_cleared")
    assert cleared.object_id == str(lqd.setup.enrolment_ids[0]) and "Ngoại ngữ 1" in cleared.changes["reason"]

    # The class assessment at year end too (a trait level); measurements are not ratings.
    gvcn = signed_in(app, lqd.gvcn)
    with app.app_context(), school_scope(lqd.school_id):
        trait = db.session.scalar(sa.select(Trait.id).where(Trait.code == "trung_thuc"))
    assert save(gvcn, lqd.class_url("CN"), [{"key": lqd.key(1, "note"), "version": 0,
                                             "cells": {"height_cm": 130}}]).get_json()["review_cleared"] == []
    answer = save(gvcn, lqd.class_url("CN"), [{"key": lqd.key(1, f"t{trait}"), "version": 0,
                                               "cells": {"level": "T"}}]).get_json()
    assert answer["review_cleared"] == ["Trần Minh Khoa"] and _reviewed(app, lqd) == set()


# --- Excel -------------------------------------------------------------------------------------------


def _export(client: FlaskClient, url: str):
    response = client.get(url + "/export.xlsx")
    assert response.status_code == 200
    assert response.mimetype == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    return load_workbook(io.BytesIO(response.data))


def _columns(sheet) -> dict[str, int]:
    header = next(r for r in sheet.iter_rows(min_row=1, max_row=10) if any(c.value == "Mã học sinh" for c in r))
    return {c.value: c.column for c in header if c.value}


def _row_of(sheet, code: str) -> int:
    return next(r[0].row for r in sheet.iter_rows(min_row=5) if r[1].value == code)


def _upload(client: FlaskClient, url: str, workbook, name: str = "bang.xlsx"):
    buffer = io.BytesIO()
    workbook.save(buffer)
    token = grid_config(client, url)["csrf"]
    return client.post(url + "/import", data={"csrf_token": token, "file": (io.BytesIO(buffer.getvalue()), name)},
                       content_type="multipart/form-data")


def _confirm(client: FlaskClient, url: str, page: str, on_conflict: str = "refuse"):
    form = re.search(rf'<form[^>]*action="{re.escape(url)}/import/confirm".*?value="{on_conflict}".*?</form>',
                     page, re.S)
    assert form, f"a confirm button for {on_conflict}"
    fields = dict(re.findall(r'name="(\w+)" type="hidden" value="([^"]*)"', form.group(0)))
    fields["on_conflict"] = on_conflict
    return client.post(url + "/import/confirm", data=fields, follow_redirects=True)


def _pupil_codes(app, lqd: School5A) -> list[str]:
    from portal.assessment.models import Pupil

    with app.app_context(), school_scope(lqd.school_id):
        return [db.session.get(Pupil, pid).pupil_code for pid in lqd.setup.pupil_ids]


def test_excel_round_trip_with_a_dry_run_first(app, lqd):
    gvbm = signed_in(app, lqd.gvbm)
    url = lqd.subject_url("ngoai_ngu_1", "CHK1")
    save(gvbm, url, [{"key": lqd.key(1), "version": 0, "cells": {"level": "H", "score": 6}}])
    workbook = _export(gvbm, url)
    with app.app_context():  # ratings leaving the portal: who took which grid is kept
        taken = db.session.scalar(sa.select(AuditEntry).where(AuditEntry.action == "grading.exported"))
        assert taken.actor_id == lqd.gvbm.id and taken.changes["subject"] == "ngoai_ngu_1"
    sheet = workbook.worksheets[0]
    columns = _columns(sheet)
    assert list(columns)[:6] == ["STT", "Mã học sinh", "Họ và tên", "Mức đạt được", "Điểm KTĐK", "Nhận xét"]
    assert workbook["hocba"].sheet_state == "hidden"
    codes = _pupil_codes(app, lqd)
    assert sheet.cell(_row_of(sheet, codes[1]), columns["Mức đạt được"]).value == "H"
    assert sheet.cell(_row_of(sheet, codes[1]), columns["Điểm KTĐK"]).value == 6
    first, second = _row_of(sheet, codes[0]), _row_of(sheet, codes[1])
    sheet.cell(first, columns["Mức đạt được"]).value = "T"
    sheet.cell(first, columns["Điểm KTĐK"]).value = 9
    sheet.cell(first, columns["Nhận xét"]).value = "Đọc lưu loát."
    sheet.cell(second, columns["Điểm KTĐK"]).value = 7.0  # Excel's number for a typed 7

    page = _upload(gvbm, url, workbook).get_data(as_text=True)
    assert "4 ô của 2 dòng sẽ thay đổi" in page and "Chưa có gì được ghi" in page
    assert "Điểm KTĐK: 6 → 7" in page and "Mức đạt được: — → T" in page
    assert lqd.setup.enrolment_ids[0] not in ratings(app, lqd.school_id)  # a dry run writes nothing

    done = _confirm(gvbm, url, page).get_data(as_text=True)
    assert "Đã nhập 4 ô từ tệp Excel." in done
    stored = ratings(app, lqd.school_id)
    assert (stored[lqd.setup.enrolment_ids[0]].level, stored[lqd.setup.enrolment_ids[0]].score) == ("T", 9)
    assert stored[lqd.setup.enrolment_ids[0]].comment == "Đọc lưu loát."
    assert (stored[lqd.setup.enrolment_ids[1]].score, stored[lqd.setup.enrolment_ids[1]].version) == (7, 2)
    assert audit_entries(app, "grading.saved")[-1].changes["source"] == "excel"

    # The same file again changes nothing.
    assert "không khác gì bảng đang lưu" in _upload(gvbm, url, _export(gvbm, url)).get_data(as_text=True)


def test_excel_errors_are_listed_per_row_and_nothing_is_written(app, lqd):
    gvbm = signed_in(app, lqd.gvbm)
    url = lqd.subject_url("ngoai_ngu_1", "CN")
    workbook = _export(gvbm, url)
    sheet = workbook.worksheets[0]
    columns = _columns(sheet)
    codes = _pupil_codes(app, lqd)
    sheet.cell(_row_of(sheet, codes[0]), columns["Mức đạt được"]).value = "Giỏi"
    sheet.cell(_row_of(sheet, codes[1]), columns["Điểm KTĐK"]).value = 8.5
    sheet.cell(_row_of(sheet, codes[2]), columns["Mức đạt được"]).value = "T"  # valid
    sheet.append([99, "79999999999", "Người Lạ", "T"])
    page = _upload(gvbm, url, workbook).get_data(as_text=True)
    assert "Tệp có lỗi ở 3 dòng. Chưa có gì được ghi" in page
    assert "Mức đạt được: Mức đạt được chỉ nhận T, H hoặc C." in page
    assert "Điểm KTĐK: Điểm KTĐK phải là số nguyên từ 1 đến 10." in page
    assert "Không có học sinh mã “79999999999” trong lớp 5A." in page
    assert "/import/confirm" not in page
    assert ratings(app, lqd.school_id) == {}


def test_excel_rows_changed_after_the_export_are_reported_and_the_teacher_chooses(app, lqd):
    gvbm, gvcn = signed_in(app, lqd.gvbm), signed_in(app, lqd.gvcn)
    url = lqd.subject_url("am_nhac", "CN")
    workbook = _export(gvbm, url)
    sheet = workbook.worksheets[0]
    columns = _columns(sheet)
    codes = _pupil_codes(app, lqd)
    sheet.cell(_row_of(sheet, codes[0]), columns["Mức đạt được"]).value = "H"
    sheet.cell(_row_of(sheet, codes[1]), columns["Mức đạt được"]).value = "T"
    save(gvcn, url, [{"key": lqd.key(0), "version": 0, "cells": {"level": "C"}}])  # after the export

    page = _upload(gvbm, url, workbook).get_data(as_text=True)
    assert "1 dòng đã được người khác sửa sau khi bạn xuất tệp" in page
    assert "Đã có người sửa sau khi xuất tệp (Lê Thị Lan," in page and "Hiện đang lưu: Mức đạt được: C." in page
    skipped = _confirm(gvbm, url, page, "skip").get_data(as_text=True)
    assert "Đã nhập 1 ô từ tệp Excel." in skipped
    stored = ratings(app, lqd.school_id)
    assert stored[lqd.setup.enrolment_ids[0]].level == "C" and stored[lqd.setup.enrolment_ids[1]].level == "T"

    page = _upload(gvbm, url, workbook).get_data(as_text=True)
    _confirm(gvbm, url, page, "overwrite")
    assert ratings(app, lqd.school_id)[lqd.setup.enrolment_ids[0]].level == "H"


def test_the_class_assessment_round_trips_through_excel(app, lqd):
    gvcn = signed_in(app, lqd.gvcn)
    url = lqd.class_url("GHK1")
    workbook = _export(gvcn, url)
    sheet = workbook.worksheets[0]
    columns = _columns(sheet)
    assert "Yêu nước – Mức" in columns and "Tin học – Nhận xét" in columns and "Cân nặng (kg)" in columns
    row = _row_of(sheet, _pupil_codes(app, lqd)[3])
    sheet.cell(row, columns["Yêu nước – Mức"]).value = "Đ"
    sheet.cell(row, columns["Cân nặng (kg)"]).value = 24.5
    page = _upload(gvcn, url, workbook).get_data(as_text=True)
    assert "2 ô của 2 dòng sẽ thay đổi" in page
    _confirm(gvcn, url, page)
    with app.app_context(), school_scope(lqd.school_id):
        assert db.session.scalar(sa.select(TraitRating.level)) == "Đ"
        assert db.session.scalar(sa.select(PeriodNote.weight_kg)) == 24.5


def test_a_file_of_another_grid_or_not_from_the_portal_is_refused(app, lqd):
    gvbm = signed_in(app, lqd.gvbm)
    url = lqd.subject_url("am_nhac", "CN")
    other = _export(gvbm, lqd.subject_url("ngoai_ngu_1", "CN"))
    page = _upload(gvbm, url, other).get_data(as_text=True)
    assert page.count("Tệp này là bảng") == 0  # a redirect back to the grid...
    followed = gvbm.get(url).get_data(as_text=True)  # ...where the message is shown
    assert "Tệp này là bảng “5A · Ngoại ngữ 1 · Cuối năm học”, không phải bảng đang mở" in followed
    plain = _export(gvbm, url)
    del plain["hocba"]
    _upload(gvbm, url, plain)
    assert "không phải bảng đánh giá xuất từ Cổng Học bạ số" in gvbm.get(url).get_data(as_text=True)
    token = grid_config(gvbm, url)["csrf"]
    gvbm.post(url + "/import", data={"csrf_token": token, "file": (io.BytesIO(b"PK\x03\x04 broken"), "a.xlsx")})
    assert "Không đọc được tệp Excel" in gvbm.get(url).get_data(as_text=True)


@pytest.mark.parametrize("role", [Role.PRINCIPAL, Role.HOMEROOM_TEACHER, Role.SUBJECT_TEACHER])
def test_every_grading_route_answers_404_for_another_schools_ids(app, make, lqd, no_csrf, role):
    other = make.school("nhabe2")
    foreign = make_class(app, other, make_year(app, other), "5A", pupils=1, code_prefix="79999")
    ids = {"class_id": foreign.class_id, "subject_id": foreign.subject_ids["toan"],
           "period_id": foreign.period_ids["CN"]}
    client = signed_in(app, make.user(lqd.school, role))
    rules = [r for r in app.url_map.iter_rules() if r.endpoint.startswith("grading.") and r.arguments - {"school_code"}]
    assert len(rules) == 10
    for rule in rules:
        url = rule.rule.replace("<school_code>", "lqd")
        for name in rule.arguments - {"school_code"}:
            url = re.sub(rf"<(int:)?{name}>", str(ids[name]), url)
        method = "POST" if "POST" in rule.methods else "GET"
        response = client.open(url, method=method, json={"rows": []} if url.endswith("/save") else None)
        assert response.status_code == 404, (url, method, response.status_code)


def test_a_comment_typed_as_a_formula_is_exported_as_text_and_comes_back_unchanged(app, lqd):
    gvbm = signed_in(app, lqd.gvbm)
    url = lqd.subject_url("ngoai_ngu_1", "CHK1")
    hostile = '=HYPERLINK("http://x","y")'
    save(gvbm, url, [{"key": lqd.key(0), "version": 0, "cells": {"comment": hostile}}])
    workbook = _export(gvbm, url)
    sheet = workbook.worksheets[0]
    cell = sheet.cell(_row_of(sheet, _pupil_codes(app, lqd)[0]), _columns(sheet)["Nhận xét"])
    assert (cell.data_type, cell.value, cell.quotePrefix) == ("s", hostile, True)
    assert "không khác gì bảng đang lưu" in _upload(gvbm, url, workbook).get_data(as_text=True)
