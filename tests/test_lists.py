"""Lists a person can use: pupil search, the audit trail in words, Vietnamese order of names."""

from __future__ import annotations

from portal import audit
from portal.assessment.models import Pupil
from portal.collation import name_key
from portal.extensions import db
from portal.pupils.search import folded
from tenants.roles import Role
from tenants.scoping import school_scope
from tests.assessment_factory import make_class, make_year
from tests.conftest import login


def test_names_sort_in_vietnamese_order_by_given_name():
    names = ["Trần Văn Huỳnh", "Lê Thị Hồ", "Phạm Đức", "Nguyễn Dũng", "Võ Zô", "Bùi An", "Hà Ân", "Đỗ Ăn"]
    assert sorted(names, key=name_key) == ["Bùi An", "Đỗ Ăn", "Hà Ân", "Nguyễn Dũng", "Phạm Đức", "Lê Thị Hồ",
                                           "Trần Văn Huỳnh", "Võ Zô"]
    assert folded("  Huỳnh   ĐỨC ") == "huynh duc"


def test_a_pupil_is_found_by_name_without_diacritics_or_by_code(client, app, make):
    school = make.school("lqd")
    gvcn = make.user(school, Role.HOMEROOM_TEACHER)
    other = make.user(school, Role.HOMEROOM_TEACHER)
    year_id = make_year(app, school)
    mine = make_class(app, school, year_id, "5A", homeroom_id=gvcn.id, pupils=3)
    theirs = make_class(app, school, year_id, "5B", homeroom_id=other.id, pupils=2)
    with app.app_context(), school_scope(school.id):
        db.session.get(Pupil, mine.pupil_ids[0]).full_name = "Huỳnh Đức Trí"
        db.session.get(Pupil, theirs.pupil_ids[0]).full_name = "Huỳnh Thị Lan"
        code = db.session.get(Pupil, mine.pupil_ids[1]).pupil_code
        db.session.commit()
    login(client, gvcn)
    home = client.get("/s/lqd/").get_data(as_text=True)
    assert 'action="/s/lqd/pupils/search"' in home  # the search box is on every school page
    page = client.get("/s/lqd/pupils/search?q=huynh duc").get_data(as_text=True)
    assert "Huỳnh Đức Trí" in page and f"/s/lqd/pupils/{mine.pupil_ids[0]}" in page
    assert f"/s/lqd/results/classes/{mine.class_id}/pupils/{mine.pupil_ids[0]}" in page
    assert "Huỳnh Thị Lan" not in client.get("/s/lqd/pupils/search?q=huynh").get_data(as_text=True)  # not hers
    assert f'data-pupil="{mine.pupil_ids[1]}"' in client.get(f"/s/lqd/pupils/search?q={code}").get_data(True)


def test_the_audit_trail_speaks_words_and_filters(client, app, make):
    school = make.school("lqd")
    principal = make.user(school, Role.PRINCIPAL)
    with app.app_context():
        audit.record("exchange.acknowledged", actor=None, school_id=school.id, object_type="CityUpload", object_id=63,
                     summary="Thành phố tiếp nhận học bạ của Hồ Văn An")
        audit.record("pupil.updated", actor=None, school_id=school.id, object_type="Pupil", object_id=7,
                     summary="Sửa ngày sinh của Huỳnh Thị Bé")
        db.session.commit()
    login(client, principal)
    page = client.get("/s/lqd/audit").get_data(as_text=True)
    assert "Thành phố đã tiếp nhận học bạ" in page and "Lần gửi" in page
    assert 'data-action="exchange.acknowledged"' in page
    assert ">exchange.acknowledged<" not in page and "CityUpload 63" not in page
    pupils = client.get("/s/lqd/audit?group=pupil").get_data(as_text=True)
    assert "Huỳnh Thị Bé" in pupils and "Hồ Văn An" not in pupils
    found = client.get("/s/lqd/audit?q=Hồ Văn").get_data(as_text=True)
    assert "Hồ Văn An" in found and "Huỳnh Thị Bé" not in found
