"""Record versions: generation from the assessment data (bulk, idempotent), content, preview, downloads."""

from __future__ import annotations

import io
import json
import subprocess
import zipfile

import pytest
import sqlalchemy as sa
from pypdf import PdfReader

from portal import jobs
from portal.assessment.models import Enrolment, SubjectRating, YearResult
from portal.audit import AuditEntry
from portal.extensions import db
from portal.records import exporters, services
from portal.records.models import RecordStatus, RecordVersion
from portal.storage import storage
from tenants.roles import Role
from tenants.scoping import school_scope
from tests.conftest import csrf_token, finish_jobs, login
from tests.records_factory import assessed_class, generate
from tests.tools import needs


@pytest.fixture
def world(app, make):
    """School lqd: three grade-5 pupils assessed and confirmed in 2023-2024 (4A) and 2024-2025 (5A)."""
    school = make.school("lqd", "Trường Tiểu học Lê Quang Định")
    principal = make.user(school, Role.PRINCIPAL, full_name="Võ Thị Lài")
    gvcn = make.user(school, Role.HOMEROOM_TEACHER, full_name="Nguyễn Thị Ánh Tuyết")
    other_gvcn = make.user(school, Role.HOMEROOM_TEACHER, full_name="Trần Văn Khác")
    assessed = assessed_class(app, school, gvcn, pupils=3, years=2)
    return {"app": app, "school": school, "principal": principal, "gvcn": gvcn, "other_gvcn": other_gvcn,
            "assessed": assessed, "class_id": assessed.setup.class_id, "pupils": assessed.setup.pupil_ids}


def _versions(app, school) -> list[RecordVersion]:
    with app.app_context(), school_scope(school.id):
        rows = db.session.scalars(sa.select(RecordVersion).order_by(RecordVersion.pupil_id, RecordVersion.number)).all()
        for row in rows:
            db.session.expunge(row)
        return list(rows)


def _run_generation(client, app, url: str) -> jobs.JobRun:
    response = client.post(url, data={"csrf_token": csrf_token(client, "/s/lqd/records/")})
    assert response.status_code == 302, response.get_data(as_text=True)
    run_id = response.location.rsplit("/", 1)[-1]
    finish_jobs(app, [run_id])
    with app.app_context():
        run = db.session.get(jobs.JobRun, run_id)
        db.session.expunge(run)
        return run


def test_a_class_is_generated_in_one_job_and_again_only_where_data_changed(client, world):
    app, school = world["app"], world["school"]
    login(client, world["gvcn"])
    url = f"/s/lqd/records/classes/{world['class_id']}/generate"
    run = _run_generation(client, app, url)
    assert run.state == jobs.JobState.FINISHED, run.error
    assert [item["outcome"] for item in run.result["items"]] == ["created"] * 3
    first = _versions(app, school)
    assert [(v.number, v.status) for v in first] == [(1, RecordStatus.DRAFT)] * 3
    assert len({v.code for v in first}) == 3 and all(v.code.startswith("HB") and len(v.code) == 12 for v in first)

    # The job page lists every pupil with what happened.
    page = client.get(f"/s/lqd/jobs/{run.id}").get_data(as_text=True)
    assert page.count('class="job-item job-item-created"') == 3

    # Again, nothing changed: no new version.
    again = _run_generation(client, app, url)
    assert [item["outcome"] for item in again.result["items"]] == ["unchanged"] * 3
    assert len(_versions(app, school)) == 3

    # A score changes (and the GVCN confirms again): that pupil alone gets version 2, replacing the draft.
    changed = world["pupils"][1]
    with app.app_context(), school_scope(school.id):
        rating = db.session.scalar(sa.select(SubjectRating).join(Enrolment, Enrolment.id == SubjectRating.enrolment_id)
                                   .where(Enrolment.pupil_id == changed, Enrolment.class_id == world["class_id"],
                                          SubjectRating.score.is_not(None)).limit(1))
        rating.score, rating.comment = 9, "Tiến bộ rõ rệt trong học kì II."
        db.session.commit()
    third = _run_generation(client, app, url)
    outcomes = {item["pupil_id"]: item["outcome"] for item in third.result["items"]}
    assert outcomes == {world["pupils"][0]: "unchanged", changed: "created", world["pupils"][2]: "unchanged"}
    versions = [v for v in _versions(app, school) if v.pupil_id == changed]
    assert [(v.number, v.status) for v in versions] == [(1, RecordStatus.SUPERSEDED), (2, RecordStatus.DRAFT)]
    assert versions[1].replaces_id == versions[0].id and versions[1].content["record"]["replaces"] == versions[0].code
    assert "Tiến bộ rõ rệt trong học kì II." in str(versions[1].content["years"][-1]["subjects"])
    # The old version's content never changed.
    assert versions[0].content == first[1].content


def test_the_content_holds_every_year_and_the_identity_page(world):
    app, school = world["app"], world["school"]
    version = generate(app, school, world["class_id"], world["gvcn"])[0]
    content = version.content
    assert [y["school_year"] for y in content["years"]] == ["2023-2024", "2024-2025"]
    assert [y["class_name"] for y in content["years"]] == ["4A", "5A"]
    assert [h["class_name"] for h in content["history"]] == ["4A", "5A"]
    assert content["school"]["name"] == "Trường Tiểu học Lê Quang Định"
    assert content["school"]["principal"] == "Võ Thị Lài"
    last = content["years"][-1]
    assert last["homeroom_teacher"] == "Nguyễn Thị Ánh Tuyết" and last["grade"] == 5
    assert last["outcome"] == "hoan_thanh_xuat_sac" and last["outcome_label"] == "Hoàn thành xuất sắc"
    assert last["completion"] == "Hoàn thành chương trình tiểu học"
    assert {s["code"] for s in last["subjects"]} >= {"tieng_viet", "toan", "khoa_hoc"}
    assert next(s for s in last["subjects"] if s["code"] == "toan")["score"] == 10
    assert next(s for s in last["subjects"] if s["code"] == "dao_duc")["score"] is None
    assert "personal_id" not in content["pupil"]  # never printed on the record
    assert content["record"]["verify_url"].endswith(f"/verify/{version.code}")
    # The stored files are the PDF (with the XML inside) and the XML of exactly this content.
    with app.app_context():
        assert services.read_file(version.draft_digest).startswith(b"%PDF")
        assert services.read_file(version.xml_digest) == exporters.export_xml(content)
        assert exporters.parse_xml(services.read_file(version.xml_digest)) == content


def test_pupils_not_ready_are_held_back_with_a_reason(client, world):
    app, school = world["app"], world["school"]
    held = world["pupils"][2]
    with app.app_context(), school_scope(school.id):
        result = db.session.scalar(sa.select(YearResult).join(Enrolment, Enrolment.id == YearResult.enrolment_id)
                                   .where(Enrolment.pupil_id == held, Enrolment.class_id == world["class_id"]))
        result.outcome, result.promoted = "chua_hoan_thanh", None
        db.session.commit()
    login(client, world["principal"])
    run = _run_generation(client, app, "/s/lqd/records/grades/5/generate")
    items = {item["pupil_id"]: item for item in run.result["items"]}
    assert items[held]["outcome"] == "held" and "quyết định lên lớp" in items[held]["reason"]
    assert [items[p]["outcome"] for p in world["pupils"][:2]] == ["created", "created"]
    assert {v.pupil_id for v in _versions(app, school)} == set(world["pupils"][:2])


def test_an_issued_record_is_never_regenerated(world):
    app, school = world["app"], world["school"]
    version = generate(app, school, world["class_id"], world["gvcn"])[0]
    with app.app_context(), school_scope(school.id):
        stored = db.session.get(RecordVersion, version.id)
        services.set_status(stored, RecordStatus.ISSUED, actor=None)
        rating = db.session.scalar(sa.select(SubjectRating).join(Enrolment, Enrolment.id == SubjectRating.enrolment_id)
                                   .where(Enrolment.pupil_id == version.pupil_id,
                                          Enrolment.class_id == world["class_id"]).limit(1))
        rating.comment = "Sửa sau khi ban hành."
        db.session.commit()
    again = generate(app, school, world["class_id"], world["gvcn"])
    assert next(v for v in again if v.pupil_id == version.pupil_id).id == version.id
    issued = [v for v in _versions(app, school) if v.pupil_id == version.pupil_id]
    assert [(v.number, v.status) for v in issued] == [(1, RecordStatus.ISSUED)]


def test_preview_and_downloads_are_logged_and_streamed(client, world):
    app, school = world["app"], world["school"]
    versions = generate(app, school, world["class_id"], world["gvcn"])
    login(client, world["gvcn"])
    version = versions[0]
    page = client.get(f"/s/lqd/records/{version.id}")
    assert page.status_code == 200
    assert version.content["pupil"]["full_name"] in page.get_data(as_text=True)
    assert version.code in page.get_data(as_text=True)

    pdf = client.get(f"/s/lqd/records/{version.id}/hoc-ba.pdf", buffered=False)
    assert pdf.is_streamed  # handed out piece by piece from the store, not read into memory first
    assert pdf.status_code == 200 and pdf.mimetype == "application/pdf" and pdf.data.startswith(b"%PDF")
    xml = client.get(f"/s/lqd/records/{version.id}/hoc-ba.xml")
    assert xml.data == exporters.export_xml(version.content)
    data = client.get(f"/s/lqd/records/{version.id}/hoc-ba.json")
    assert data.mimetype == "application/json" and data.data == exporters.canonical_json(version.content)
    assert json.loads(data.data) == version.content
    assert f'hoc-ba-{version.content["pupil"]["pupil_code"]}-{version.code}-v1.json' in data.headers[
        "Content-Disposition"]

    archive = client.get(f"/s/lqd/records/classes/{world['class_id']}/hoc-ba.zip", buffered=False)
    assert archive.status_code == 200 and archive.is_streamed
    with zipfile.ZipFile(io.BytesIO(archive.data)) as zipped:
        assert zipped.testzip() is None
        names = sorted(zipped.namelist())
        assert len(names) == 6 and sum(n.endswith(".pdf") for n in names) == 3
        assert zipped.read(next(n for n in names if version.code in n and n.endswith(".xml"))) == xml.data

    with app.app_context():
        logged = db.session.scalars(sa.select(AuditEntry.changes).where(AuditEntry.action == "record.downloaded",
                                                                         AuditEntry.object_id == str(version.id)))
        assert sorted(c["kind"] for c in logged) == ["json", "pdf", "xml", "zip"]


def test_who_sees_which_records(client, world, make):
    app, school = world["app"], world["school"]
    version = generate(app, school, world["class_id"], world["gvcn"])[0]
    subject_teacher = make.user(school, Role.SUBJECT_TEACHER)
    for user, expected in ((world["other_gvcn"], 403), (subject_teacher, 403), (world["principal"], 200),
                           (world["gvcn"], 200)):
        visitor = app.test_client()
        login(visitor, user)
        assert visitor.get(f"/s/lqd/records/{version.id}").status_code == expected, user.username
        assert visitor.get(f"/s/lqd/records/{version.id}/hoc-ba.pdf").status_code == expected, user.username
    # A GVCN generates their own class only, and not a whole grade.
    login(client, world["other_gvcn"])
    token = csrf_token(client, "/s/lqd/")
    assert client.post(f"/s/lqd/records/classes/{world['class_id']}/generate",
                       data={"csrf_token": token}).status_code == 403
    assert client.post("/s/lqd/records/grades/5/generate", data={"csrf_token": token}).status_code == 403
    # The index lists only the classes a GVCN holds.
    assert f'data-class="{world["class_id"]}"' not in client.get("/s/lqd/records/").get_data(as_text=True)
    mine = app.test_client()
    login(mine, world["gvcn"])
    assert f'data-class="{world["class_id"]}"' in mine.get("/s/lqd/records/").get_data(as_text=True)


@pytest.mark.parametrize(("stored", "area", "place"), [
    ("Phòng Giáo dục và Đào tạo huyện Nhà Bè", "Huyện Nhà Bè", "Nhà Bè"),
    ("Phòng GD&ĐT Quận 7", "Quận 7", "Quận 7"),
    ("Huyện Cần Giờ", "Huyện Cần Giờ", "Cần Giờ"),
    ("Thành phố Thủ Đức", "Thành phố Thủ Đức", "Thủ Đức"),
])
def test_the_district_and_the_place_of_the_date_line(stored, area, place):
    from types import SimpleNamespace

    from portal.records.snapshot import district_area, place_of

    school = SimpleNamespace(district=SimpleNamespace(name=stored))
    assert district_area(school) == area and place_of(school) == place


def test_laid_out_sections_are_shared_through_the_file_store_and_redis(ctx, monkeypatch):
    """Several machines: a section laid out by one worker is found by the next, not laid out again."""
    from portal.records import pdf
    from portal.records.sections import KEY_PREFIX, SharedSectionStore
    from tests.record_factory import sample_content

    store = SharedSectionStore()
    previous = pdf._store[0]
    pdf.use_section_store(store)
    try:
        pdf.clear_cache()
        content = sample_content(2)
        first = pdf.render_pdf(content)
        pdf.clear_cache()  # another process: nothing in its memory
        calls: list[str] = []
        original = store.get
        monkeypatch.setattr(store, "get", lambda key: calls.append(key) or original(key))
        monkeypatch.setattr(pdf, "_layout", lambda section: pytest.fail("laid out again"))
        assert pdf.render_pdf(content) == first
        assert len(calls) == 4  # identity, history, two years: all found
        redis = ctx.extensions["portal_jobs"].connection
        assert all(redis.exists(KEY_PREFIX + key) and original(key) for key in calls)
    finally:
        pdf.use_section_store(previous)
        pdf.clear_cache()


@pytest.mark.slow
@needs("pdftotext", "pdftoppm", "zbarimg")
def test_an_unissued_record_downloads_marked_as_a_draft_without_its_qr_code(client, world, tmp_path):
    app, school = world["app"], world["school"]
    version = generate(app, school, world["class_id"], world["gvcn"])[0]
    login(client, world["gvcn"])
    marked = client.get(f"/s/lqd/records/{version.id}/hoc-ba.pdf").data
    with app.app_context():
        stored = storage().read(version.current_digest)
    assert marked != stored  # the stored file, the one signed later, is left as it is
    for name, data in (("marked", marked), ("stored", stored)):
        (tmp_path / f"{name}.pdf").write_bytes(data)
        subprocess.run(["pdftoppm", "-r", "150", "-f", "1", "-l", "1", "-png", str(tmp_path / f"{name}.pdf"),
                        str(tmp_path / name)], check=True)
    text = subprocess.run(["pdftotext", str(tmp_path / "marked.pdf"), "-"], capture_output=True, text=True).stdout
    pages = text.split("\f")[:-1]
    assert pages and all("BẢN NHÁP - CHƯA CÓ GIÁ TRỊ" in page for page in pages)

    def qr(name: str) -> str:
        png = next(tmp_path.glob(f"{name}-*.png"))
        return subprocess.run(["zbarimg", "--quiet", "--raw", str(png)], capture_output=True, text=True).stdout

    assert version.code in qr("stored") and qr("marked").strip() == ""
    archive = client.get(f"/s/lqd/records/classes/{world['class_id']}/hoc-ba.zip").data
    with zipfile.ZipFile(io.BytesIO(archive)) as zipped:
        pdf_names = [n for n in zipped.namelist() if n.endswith(".pdf")]
        assert len(pdf_names) == 3 and all("BẢN NHÁP - CHƯA CÓ GIÁ TRỊ" in PdfReader(
            io.BytesIO(zipped.read(n))).pages[0].extract_text() for n in pdf_names)
