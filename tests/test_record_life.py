"""A record's whole life across two schools: the years taught at an earlier school enter the next school's
record from the record that school issued and signed, which stays verifiable."""

from __future__ import annotations

import copy

import pytest
import sqlalchemy as sa

from portal.assessment.models import Enrolment, Pupil, SchoolClass, SchoolYear, YearResult
from portal.extensions import db
from portal.interop.models import ReceivedSource, ReceivedState
from portal.interop.received import receive, verify_record
from portal.records import services
from portal.storage import storage
from tenants.scoping import school_scope
from tests.assessment_factory import make_class, make_year
from tests.city_helpers import metadata_for, signed_record
from tests.record_factory import sample_content
from tests.results_factory import rate
from tests.signing_factory import make_demo_pki

pytestmark = pytest.mark.slow  # a real record of school A, rendered and signed; one of school B rendered

PUPIL_CODE = "7978640123"  # sample_content's pupil


def _record_of_school_a(name: str) -> dict:
    """What school A issued when the pupil left after grade 2: two year pages, two history rows."""
    content = copy.deepcopy(sample_content(5, code="HB00000000A2"))
    content["school"]["name"] = name
    content["years"] = content["years"][:2]
    content["history"] = content["history"][:2]
    for row in (*content["years"], *content["history"]):
        row["school_name"] = name
    content["record"]["scope_grade"] = 2
    return content


def test_two_years_at_a_and_three_at_b_make_one_five_year_record_at_b(app, make):
    demo = make_demo_pki()
    a = make.school("truonga", "Trường Tiểu học Lê Quang Định")
    b = make.school("truongb", "Trường Tiểu học Hiệp Phước")
    original = _record_of_school_a(a.name)
    pdf = signed_record(original, demo)

    # At B: grades 3, 4 and 5 (2022-2023 to 2024-2025), each year's result confirmed.
    year_ids = [make_year(app, b, name=name) for name in ("2022-2023", "2023-2024", "2024-2025")]
    first = make_class(app, b, year_ids[0], "3A", pupils=1)
    with app.app_context(), school_scope(b.id):
        b = db.session.merge(b)
        pupil_id = first.pupil_ids[0]
        db.session.get(Pupil, pupil_id).pupil_code = PUPIL_CODE
        classes = [db.session.get(SchoolClass, first.class_id)]
        for year_id, name in zip(year_ids[1:], ("4A", "5A"), strict=True):
            school_class = SchoolClass(school_id=b.id, school_year_id=year_id, name=name, grade=int(name[0]))
            db.session.add(school_class)
            db.session.flush()
            db.session.add(Enrolment(school_id=b.id, pupil_id=pupil_id, school_year_id=year_id,
                                     class_id=school_class.id))
            classes.append(school_class)
        db.session.flush()
        for enrolment in db.session.scalars(sa.select(Enrolment).where(Enrolment.pupil_id == pupil_id)):
            grade = 5 if enrolment.class_id == classes[-1].id else 4
            db.session.add(YearResult(school_id=b.id, enrolment_id=enrolment.id, outcome="hoan_thanh",
                                      reasons=[], supplementary_note="",
                                      completion="Hoàn thành chương trình tiểu học" if grade == 5
                                      else "Hoàn thành chương trình lớp học"))
        # A's record arrives with the transfer, verified against the trusted roots, attached to the pupil.
        received = receive(b, source=ReceivedSource.TRANSFER, external_ref="transfer:1:HB00000000A2", pdf=pdf,
                           expected=metadata_for(original, pdf), roots=demo.roots)
        assert received.state == ReceivedState.ACCEPTED and received.pupil_id == pupil_id
        db.session.commit()

        pupil = db.session.get(Pupil, pupil_id)
        generated = services.generate_record(b, classes[-1], pupil, actor=None)
        content = generated.version.content
        db.session.commit()

        years = [(p["school_year"], p["grade"], p["school_name"], p["source"]) for p in content["years"]]
        assert years == [
            ("2020-2021", 1, a.name, "received"), ("2021-2022", 2, a.name, "received"),
            ("2022-2023", 3, b.name, "this_school"), ("2023-2024", 4, b.name, "this_school"),
            ("2024-2025", 5, b.name, "this_school")]
        # The received pages are A's as A signed them, ratings and all.
        assert content["years"][:2] == [{**page, "source": "received"} for page in original["years"]]
        history = [(row["school_year"], row["class_name"], row["school_name"]) for row in content["history"]]
        assert history == [("2020-2021", "1A", a.name), ("2021-2022", "2A", a.name), ("2022-2023", "3A", b.name),
                           ("2023-2024", "4A", b.name), ("2024-2025", "5A", b.name)]
        # A's original stays with B, unchanged, and still verifies.
        kept = storage().read(received.pdf_digest)
        assert kept == pdf
        assert verify_record(kept, metadata_for(original, pdf), demo.roots).accepted


def _section_6(html: str) -> str:
    """The text of section 6 of the (single) year page, tags dropped."""
    import re

    part = html.split("6. Hoàn thành chương trình lớp học/chương trình tiểu học", 1)[1]
    part = part.split('<table class="hb-sign', 1)[0]
    return " ".join(re.sub(r"<[^>]+>", " ", part).split())


def test_completion_after_the_supplementary_assessment_or_the_principals_decision(app, make):
    """Điều 11 in grade 5: two pupils not completing at year end; one passes the supplementary assessment
    and completes primary school, the other does not and the principal decides. Neither result is edited."""
    from datetime import date

    from portal.records.pdf import render_html
    from portal.results import services as results
    from tenants.roles import Role

    school = make.school("truonga", "Trường Tiểu học Lê Quang Định")
    teacher, principal = make.user(school, Role.HOMEROOM_TEACHER), make.user(school, Role.PRINCIPAL)
    year_id = make_year(app, school, name="2024-2025")
    setup = make_class(app, school, year_id, "5A", pupils=2)
    for index in (0, 1):
        rate(app, school, setup, index, subjects={"toan": ("C", 3)})  # Chưa hoàn thành in Toán
    with app.app_context(), school_scope(school.id):
        school = db.session.merge(school)
        teacher, principal = db.session.merge(teacher), db.session.merge(principal)
        school_class = db.session.get(SchoolClass, setup.class_id)
        for enrolment_id in setup.enrolment_ids:  # the GVCN's confirmed first result: Chưa hoàn thành
            db.session.add(YearResult(school_id=school.id, enrolment_id=enrolment_id, outcome="chua_hoan_thanh",
                                      computed_outcome="chua_hoan_thanh", reasons=[], supplementary_note=""))
        db.session.commit()
        passing, failing = (results.pupil_result(school_class, pupil_id) for pupil_id in setup.pupil_ids)
        assert results.record_supplementary(school, school_class, passing, on=date(2025, 8, 12),
                                            note="Ôn tập Toán và Tiếng Việt trong hè; làm lại bài kiểm tra",
                                            passed=True, actor=teacher)
        assert results.record_supplementary(school, school_class, failing, on=date(2025, 8, 12),
                                            note="Ôn tập Toán trong hè; làm lại bài kiểm tra", passed=False,
                                            actor=teacher)
        # A pupil who completed needs no decision; the other waits for it before her record is made.
        with pytest.raises(results.ResultsError):
            results.decide_promotion(school, school_class, passing, True, actor=principal)
        assert services.readiness(failing.pupil, school_class) is not None
        assert services.readiness(passing.pupil, school_class) is None
        results.decide_promotion(school, school_class, failing, False, actor=principal)
        db.session.commit()
        pages = {}
        for entry in (passing, failing):
            generated = services.generate_record(school, school_class, entry.pupil, actor=teacher)
            pages[entry.pupil.id] = generated.version.content
        db.session.commit()
        stored = {r.enrolment_id: r for r in db.session.scalars(sa.select(YearResult))}
    # The first result stays what it was, for both.
    assert {r.outcome for r in stored.values()} == {"chua_hoan_thanh"}
    done, not_done = (pages[pupil_id] for pupil_id in setup.pupil_ids)
    assert done["years"][0]["completion"] == "Hoàn thành chương trình tiểu học"
    assert done["years"][0]["outcome"] == "chua_hoan_thanh" and done["years"][0]["promoted"] is None
    assert _section_6(render_html(done)) == (
        "Hoàn thành chương trình tiểu học Đánh giá bổ sung: Ngày 12/08/2025: Ôn tập Toán và Tiếng Việt trong hè; "
        "làm lại bài kiểm tra. Kết quả: Hoàn thành.")
    assert not_done["years"][0]["completion"] is None and not_done["years"][0]["promoted"] is False
    assert _section_6(render_html(not_done)) == (
        "Chưa hoàn thành chương trình tiểu học Đánh giá bổ sung: Ngày 12/08/2025: Ôn tập Toán trong hè; "
        "làm lại bài kiểm tra. Kết quả: Chưa hoàn thành.")


def test_the_year_end_title_comes_first_and_undated_ad_hoc_awards_last():
    from datetime import date

    from portal.assessment.models import Award
    from portal.records.snapshot import award_order

    awards = [Award(id=1, title="Giải Nhì Hội thi Viết chữ đẹp", awarded_on=date(2025, 3, 8)),
              Award(id=2, title="Giấy khen phong trào Kế hoạch nhỏ", awarded_on=None),  # came without a date
              Award(id=3, title="Học sinh Xuất sắc", awarded_on=None),
              Award(id=4, title="Giải Ba Olympic Tiếng Anh", awarded_on=date(2024, 12, 20))]
    assert [a.id for a in sorted(awards, key=award_order)] == [3, 4, 1, 2]


def test_each_history_row_names_the_principal_of_its_own_year(app, make):
    """The 2023-2024 row keeps the principal who confirmed that year on the record issued then; the new
    year is confirmed by today's principal."""
    from portal.records.models import RecordStatus, RecordVersion
    from portal.records.snapshot import build_content
    from tenants.roles import Role

    school = make.school("truongb", "Trường Tiểu học Hiệp Phước")
    old_year, new_year = (make_year(app, school, name=name) for name in ("2023-2024", "2024-2025"))
    setup = make_class(app, school, old_year, "4A", pupils=1)
    make.user(school, Role.PRINCIPAL, full_name="Trần Thị Mới")
    with app.app_context(), school_scope(school.id):
        school = db.session.merge(school)
        pupil = db.session.get(Pupil, setup.pupil_ids[0])
        fifth = SchoolClass(school_id=school.id, school_year_id=new_year, name="5A", grade=5)
        db.session.add(fifth)
        db.session.flush()
        db.session.add(Enrolment(school_id=school.id, pupil_id=pupil.id, school_year_id=new_year, class_id=fifth.id))
        issued_then = {"years": [{"school_year": "2023-2024", "source": "this_school",
                                  "principal": "Nguyễn Văn Cũ"}]}
        db.session.add(RecordVersion(school_id=school.id, pupil_id=pupil.id, school_year_id=old_year,
                                     class_id=setup.class_id, grade=4, number=1, code="HB00000000P1",
                                     status=RecordStatus.ISSUED, content=issued_then, source_hash="0" * 64,
                                     content_hash="0" * 64, draft_digest="0" * 64, xml_digest="0" * 64))
        db.session.flush()
        content = build_content(school, pupil, db.session.get(SchoolYear, new_year), record={})
        db.session.rollback()
    assert [(row["school_year"], row["confirmed_by"]) for row in content["history"]] == [
        ("2023-2024", "Nguyễn Văn Cũ"), ("2024-2025", "Trần Thị Mới")]
    assert [page["principal"] for page in content["years"]] == ["Nguyễn Văn Cũ", "Trần Thị Mới"]


def test_each_year_page_prints_that_years_principal_and_school_name(app, make, monkeypatch):
    """A pupil whose 2023-2024 record was never issued still gets that year's principal and school name, as
    the school printed them on that year's records (a classmate's), not today's. When the principal changes,
    re-rendering lays out only what names today's principal: the identity page, the study history and the
    current year page; the 2023-2024 page is the one already laid out."""
    from portal.records import pdf as record_pdf
    from portal.records.models import RecordStatus, RecordVersion
    from portal.records.snapshot import build_content
    from tenants.models import Membership
    from tenants.roles import Role

    school = make.school("truongb", "Trường Tiểu học Hiệp Phước")
    old_year, new_year = (make_year(app, school, name=name) for name in ("2023-2024", "2024-2025"))
    setup = make_class(app, school, old_year, "4A", pupils=2)
    first_principal = make.user(school, Role.PRINCIPAL, full_name="Trần Thị Mới")
    with app.app_context(), school_scope(school.id):
        pupil_id, classmate_id = setup.pupil_ids
        fifth = SchoolClass(school_id=school.id, school_year_id=new_year, name="5A", grade=5)
        db.session.add(fifth)
        db.session.flush()
        db.session.add(Enrolment(school_id=school.id, pupil_id=pupil_id, school_year_id=new_year, class_id=fifth.id))
        printed_then = {"years": [{"school_year": "2023-2024", "source": "this_school", "principal": "Nguyễn Văn Cũ",
                                   "school_name": "Trường Tiểu học Phước Kiển"}]}
        db.session.add(RecordVersion(school_id=school.id, pupil_id=classmate_id, school_year_id=old_year,
                                     class_id=setup.class_id, grade=4, number=1, code="HB00000000C1",
                                     status=RecordStatus.ISSUED, content=printed_then, source_hash="0" * 64,
                                     content_hash="0" * 64, draft_digest="0" * 64, xml_digest="0" * 64))
        db.session.commit()

    record = {"code": "HB00000000P2", "number": 1, "replaces": None, "created_at": "2025-05-28T03:12:00Z",
              "scope_grade": 5, "verify_url": "http://127.0.0.1:5000/verify/HB00000000P2"}

    def content_now() -> dict:
        with app.app_context(), school_scope(school.id):
            return build_content(db.session.merge(school), db.session.get(Pupil, pupil_id),
                                 db.session.get(SchoolYear, new_year), record=record)

    before = content_now()
    assert [(page["principal"], page["school_name"]) for page in before["years"]] == [
        ("Nguyễn Văn Cũ", "Trường Tiểu học Phước Kiển"), ("Trần Thị Mới", "Trường Tiểu học Hiệp Phước")]
    assert [(row["confirmed_by"], row["school_name"]) for row in before["history"]] == [
        ("Nguyễn Văn Cũ", "Trường Tiểu học Phước Kiển"), ("Trần Thị Mới", "Trường Tiểu học Hiệp Phước")]

    laid_out = []
    layout = record_pdf._layout
    monkeypatch.setattr(record_pdf, "_layout", lambda section: laid_out.append(section["title"]) or layout(section))
    monkeypatch.setattr(record_pdf, "_store", [None])
    record_pdf.clear_cache()
    record_pdf.render_pdf(before)
    assert len(laid_out) == 4
    laid_out.clear()

    with app.app_context(), school_scope(school.id):  # a new principal takes over
        db.session.scalar(sa.select(Membership).where(Membership.user_id == first_principal.id)).active = False
        db.session.commit()
    make.user(school, Role.PRINCIPAL, full_name="Lê Văn Sau")
    after = content_now()
    assert [page["principal"] for page in after["years"]] == ["Nguyễn Văn Cũ", "Lê Văn Sau"]
    record_pdf.render_pdf(after)
    assert laid_out == ["Thông tin học sinh", "Quá trình học tập", "Năm học 2024-2025"]
