"""The ministry bundle: every current issued record (PDF + XML) of a school or the district for a school
year, and a manifest of ids, versions and SHA-256 hashes; streamed over HTTP, and written by the CLI."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile

import sqlalchemy as sa

from portal.audit import AuditEntry
from portal.extensions import db
from portal.records.models import RecordStatus, RecordVersion
from tenants.roles import Role
from tenants.scoping import all_schools, school_scope
from tests.assessment_factory import make_year
from tests.city_helpers import issue_correction, issued_class
from tests.conftest import login


def read(data: bytes) -> tuple[dict, dict[str, bytes]]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.testzip() is None
        files = {name: archive.read(name) for name in archive.namelist()}
    return json.loads(files.pop("manifest.json")), files


def check_manifest(manifest: dict, files: dict[str, bytes]) -> None:
    paths = set()
    for entry in manifest["records"]:
        for kind in ("pdf", "xml"):
            item = entry[kind]
            assert hashlib.sha256(files[item["path"]]).hexdigest() == item["sha256"] and item["size"] > 0
            paths.add(item["path"])
    assert paths == set(files) and manifest["count"] == len(manifest["records"])


def test_school_bundle_holds_the_current_issued_records(app, make, client, no_csrf):
    school = make.school("lqd", "Trường Tiểu học Lê Quang Định")
    made = issued_class(app, school, pupils=4)
    correction = issue_correction(app, school, made.version_ids[0], "Điều chỉnh cân nặng")
    with app.app_context(), school_scope(school.id):
        db.session.get(RecordVersion, made.version_ids[1]).status = RecordStatus.CANCELLED
        db.session.commit()
    login(client, make.user(school, Role.PRINCIPAL))
    response = client.post("/s/lqd/exchange/bundle", data={"school_year": "2024-2025"})
    assert response.status_code == 200 and response.mimetype == "application/zip" and response.is_streamed
    assert "hoc-ba-so_lqd_2024-2025.zip" in response.headers["Content-Disposition"]
    manifest, files = read(response.get_data())
    check_manifest(manifest, files)
    codes = sorted(e["code"] for e in manifest["records"])
    assert codes == sorted([correction, *made.codes[2:]])  # not the superseded one, nor the cancelled one
    entry = next(e for e in manifest["records"] if e["code"] == correction)
    assert entry["number"] == 2 and entry["replaces_id"] == made.version_ids[0] and entry["school_code"] == "lqd"
    assert manifest["school_year"] == "2024-2025" and manifest["scope"] == "lqd"
    with app.app_context(), all_schools():
        assert db.session.scalar(sa.select(AuditEntry).where(AuditEntry.action == "exchange.bundle")) is not None


def test_district_bundle_by_command_and_page(app, make, client, tmp_path, no_csrf):
    schools = [make.school(code, f"Trường Tiểu học {code}") for code in ("truonga", "truongb")]
    codes = [c for s in schools for c in issued_class(app, s, pupils=2, code_prefix=f"H{s.id}").codes]
    other_year = issued_class(app, schools[0], pupils=1, name="4A", code_prefix="HX",
                              year_id=make_year(app, schools[0], name="2023-2024"))  # left out below
    output = tmp_path / "bo.zip"
    result = app.test_cli_runner().invoke(args=["interop", "bundle", "--year", "2024-2025", "--output", str(output)])
    assert result.exit_code == 0, result.output
    manifest, files = read(output.read_bytes())
    check_manifest(manifest, files)
    assert manifest["scope"] == "phong" and {e["school_code"] for e in manifest["records"]} == {"truonga", "truongb"}
    assert sorted(codes) == sorted(e["code"] for e in manifest["records"])
    assert other_year.codes[0] not in files and manifest["count"] == 4
    login(client, make.user(None, district_role=Role.DISTRICT_ADMIN))
    page = client.post("/district/exchange/bundle", data={"school_year": "2024-2025"})
    assert page.status_code == 200
    assert sorted(e["code"] for e in read(page.get_data())[0]["records"]) == sorted(codes)
    one = app.test_cli_runner().invoke(args=["interop", "bundle", "--year", "2024-2025", "--school", "truongb",
                                             "--output", str(tmp_path / "b.zip")])
    assert one.exit_code == 0
    assert {e["school_code"] for e in read((tmp_path / "b.zip").read_bytes())[0]["records"]} == {"truongb"}
