"""The hash-chained audit trail: chains, tampering named, signed checkpoints, offline checks, archives."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import time
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask

from portal import audit
from portal.audit import AuditChainHead, AuditEntry
from portal.extensions import db
from portal.signing import demo_ca, engine, pki
from portal.signing import services as signing_services
from portal.storage import storage
from portal.trail import services
from portal.trail.models import AuditArchive, AuditCheckpoint
from tenants.certificates import KeyKind
from tenants.models import District, School
from tenants.roles import Role
from tenants.scoping import all_schools
from tests.conftest import Factory
from tests.tools import require

PASSPHRASE = "p12-Matkhau"


@pytest.fixture
def district_certificate(app: Flask, make: Factory) -> pki.IssuedCertificate:
    """The district office's organisation certificate, from the demo CA (its root is the trust root)."""
    district = make.district()
    ca = demo_ca(app)
    issued = ca.issue_organisation(district.name, locality=district.city)
    upload = signing_services.Upload(data=issued.pkcs12(PASSPHRASE, kdf_rounds=1000), key_kind=KeyKind.PKCS12,
                                     passphrase=PASSPHRASE)
    with app.app_context():
        signing_services.register_district_certificate(db.session.get(District, district.id), upload, actor=None)
        db.session.commit()
    return issued


def write(app: Flask, school: School | None, count: int, action: str = "test.change") -> None:
    with app.app_context():
        for n in range(count):
            audit.record(action, actor=None, school_id=school.id if school else None, summary=f"{action} {n}",
                         changes={"n": n})
            db.session.commit()


def entries(chain: str) -> list[AuditEntry]:
    return list(db.session.scalars(sa.select(AuditEntry).where(AuditEntry.chain == chain).order_by(AuditEntry.seq)))


def run_cli(app: Flask, *args: str):
    return app.test_cli_runner().invoke(args=["audit", *args])


def superuser_sql(*statements: str) -> None:
    """Change the trail as someone who controls the database would: raw SQL, past the ORM and the trigger."""
    with db.engine.begin() as connection:
        postgres = connection.dialect.name == "postgresql"
        if postgres:
            connection.execute(sa.text("ALTER TABLE audit_entries DISABLE TRIGGER audit_entries_append_only"))
        for statement in statements:
            connection.execute(sa.text(statement))
        if postgres:
            connection.execute(sa.text("ALTER TABLE audit_entries ENABLE TRIGGER audit_entries_append_only"))


# --- the chain --------------------------------------------------------------------------------------------


def test_each_school_and_the_district_have_one_chain_linked_entry_to_entry(app: Flask, make: Factory) -> None:
    school_a, school_b = make.school(), make.school()
    write(app, school_a, 3)
    write(app, school_b, 2)
    write(app, None, 2)
    with app.app_context():
        a = entries(audit.chain_of(school_a.id))
        assert [e.seq for e in a] == [1, 2, 3]
        assert a[0].prev_hash == audit.GENESIS
        assert [e.prev_hash for e in a[1:]] == [e.entry_hash for e in a[:-1]]
        assert all(e.entry_hash == audit.hash_fields(e.chained_fields()) for e in a)
        assert [e.seq for e in entries(audit.chain_of(school_b.id))] == [1, 2]
        assert [e.seq for e in entries(audit.DISTRICT_CHAIN)] == [1, 2]
        head = db.session.get(AuditChainHead, audit.chain_of(school_a.id))
        assert (head.seq, head.head_hash, head.last_entry_id) == (3, a[-1].entry_hash, a[-1].id)
        reports = services.verify_chains()
    assert [r.chain for r in reports] == ["district", f"school:{school_a.id}", f"school:{school_b.id}"]
    assert all(r.ok for r in reports)


def test_several_entries_of_one_transaction_chain_in_the_order_they_were_recorded(app: Flask, make: Factory) -> None:
    school = make.school()
    with app.app_context():
        for n in range(4):
            audit.record("test.batch", actor=None, school_id=school.id, summary=str(n))
        audit.record("test.other", actor=None, school_id=None)
        db.session.commit()
        chain = entries(audit.chain_of(school.id))
        assert [e.summary for e in chain] == ["0", "1", "2", "3"]
        assert [e.id for e in chain] == sorted(e.id for e in chain)
        assert all(r.ok for r in services.verify_chains())


def test_a_rolled_back_entry_leaves_no_gap(app: Flask, make: Factory) -> None:
    school = make.school()
    write(app, school, 1)
    with app.app_context():
        audit.record("test.undone", actor=None, school_id=school.id)
        db.session.flush()
        db.session.rollback()
    write(app, school, 1)
    with app.app_context():
        assert [e.seq for e in entries(audit.chain_of(school.id))] == [1, 2]
        assert all(r.ok for r in services.verify_chains())


def test_verify_names_a_deleted_an_edited_and_two_reordered_entries(app: Flask, make: Factory) -> None:
    school, untouched = make.school(), make.school()
    write(app, school, 8)
    write(app, untouched, 3)
    with app.app_context():
        chain = audit.chain_of(school.id)
        ids = {e.seq: e.id for e in entries(chain)}
    result = run_cli(app, "verify")
    assert result.exit_code == 0, result.output
    with app.app_context():
        superuser_sql(
            f"DELETE FROM audit_entries WHERE id = {ids[2]}",
            f"UPDATE audit_entries SET summary = 'sửa lén' WHERE id = {ids[4]}",
            # re-order positions 6 and 7 (through a free position: (chain, seq) is unique)
            f"UPDATE audit_entries SET seq = 1000 WHERE id = {ids[6]}",
            f"UPDATE audit_entries SET seq = 6 WHERE id = {ids[7]}",
            f"UPDATE audit_entries SET seq = 7 WHERE id = {ids[6]}",
        )
    result = run_cli(app, "verify")
    assert result.exit_code == 1
    lines = result.output.splitlines()
    broken = next(line for line in lines if line.startswith(f"{chain}:"))
    assert f"BROKEN, first at entry #{ids[3]}" in broken
    assert f"entry #{ids[3]} (position 3): missing" in result.output  # the deleted one's successor
    assert f"entry #{ids[4]} (position 4): changed" in result.output
    assert f"entry #{ids[7]} (position 6): link" in result.output  # moved up
    assert f"entry #{ids[6]} (position 7): order" in result.output  # moved down
    assert f"school:{untouched.id}: 3 entries, 0 checkpoints: OK" in result.output


def test_verify_names_entries_removed_from_the_end(app: Flask, make: Factory) -> None:
    school = make.school()
    write(app, school, 3)
    with app.app_context():
        last = entries(audit.chain_of(school.id))[-1].id
        superuser_sql(f"DELETE FROM audit_entries WHERE id = {last}")
        report = services.verify_chains(chain=audit.chain_of(school.id))[0]
    assert not report.ok and report.first_break.kind == "head"


# --- checkpoints ------------------------------------------------------------------------------------------


def checkpoint_files(checkpoint: AuditCheckpoint, folder: Path) -> tuple[Path, Path]:
    document, signature = folder / "checkpoint.json", folder / "checkpoint.p7s"
    document.write_bytes(storage().read(checkpoint.document_digest))
    signature.write_bytes(storage().read(checkpoint.signature_digest))
    return document, signature


def test_checkpoint_seals_every_moved_chain_and_verifies_with_openssl_and_pyhanko(
        app: Flask, make: Factory, district_certificate: pki.IssuedCertificate, tmp_path: Path) -> None:
    require("openssl")
    school = make.school()
    write(app, school, 3)
    write(app, None, 1)
    result = run_cli(app, "checkpoint")
    assert result.exit_code == 0, result.output
    # The demo CA's timestamp authority (the tests' loopback stand-in) timestamps them: nothing to warn about.
    assert "no timestamp" not in result.output and "TIMESTAMP_URL" not in result.output
    with app.app_context():
        checkpoint = db.session.scalar(sa.select(AuditCheckpoint).where(
            AuditCheckpoint.chain == audit.chain_of(school.id)))
        last = entries(audit.chain_of(school.id))[-1]
        assert (checkpoint.seq, checkpoint.last_entry_id, checkpoint.head_hash) == (3, last.id, last.entry_hash)
        assert checkpoint.timestamped
        document, signature = checkpoint_files(checkpoint, tmp_path)
        content = json.loads(document.read_bytes())
        assert content["chain"] == f"school:{school.id}" and content["seq"] == 3
        assert content["school_code"] == school.code and content["head_hash"] == last.entry_hash
        root = tmp_path / "root.pem"
        root.write_bytes(pki.certificates_pem(list(district_certificate.chain)).encode())
        verified = subprocess.run(["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", str(signature),
                                   "-content", str(document), "-CAfile", str(root), "-out", os.devnull],
                                  capture_output=True, text=True)
        assert verified.returncode == 0 and "Verification successful" in verified.stderr, verified.stderr
        status = engine.validate_detached(document.read_bytes(), signature.read_bytes(),
                                          trust_roots=[district_certificate.chain[-1]],
                                          certificate=district_certificate.certificate)
        assert status["intact"] and status["valid"] and status["trusted"] and status["signer_is_expected"]
        # A changed document no longer verifies.
        document.write_bytes(document.read_bytes().replace(b'"seq":3', b'"seq":2'))
        assert subprocess.run(["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", str(signature),
                               "-content", str(document), "-CAfile", str(root), "-out", os.devnull],
                              capture_output=True).returncode != 0
    # Nothing moved: nothing to seal again; one more entry: only that chain is sealed.
    assert "sealed at its head already" in run_cli(app, "checkpoint").output
    write(app, school, 1)
    result = run_cli(app, "checkpoint")
    assert result.output.startswith(f"school:{school.id}: sealed position 4") and "district" not in result.output
    assert run_cli(app, "verify").exit_code == 0


def test_a_checkpoint_is_timestamped_when_a_timestamp_authority_is_set(
        app: Flask, make: Factory, district_certificate: pki.IssuedCertificate, tmp_path: Path) -> None:
    from tests.signing_factory import local_tsa

    school = make.school()
    write(app, school, 2)
    with local_tsa(tmp_path / "tsa") as tsa:
        app.config["TIMESTAMP_URL"] = tsa.url
        try:
            result = run_cli(app, "checkpoint")
        finally:
            app.config["TIMESTAMP_URL"] = ""
    assert result.exit_code == 0, result.output
    with app.app_context():
        checkpoint = db.session.scalar(sa.select(AuditCheckpoint).where(
            AuditCheckpoint.chain == audit.chain_of(school.id)))
        assert checkpoint.timestamped and checkpoint.status == ""
        status = engine.validate_detached(storage().read(checkpoint.document_digest),
                                          storage().read(checkpoint.signature_digest),
                                          trust_roots=[district_certificate.chain[-1]],
                                          certificate=district_certificate.certificate, timestamp_roots=[tsa.root])
        assert status["valid"] and status["trusted"]
        assert status["timestamp_trusted"] and abs(status["timestamp_at"] - checkpoint.sealed_at) < timedelta(minutes=1)
    assert run_cli(app, "verify").exit_code == 0
    result = offline(unpack_export(app, tmp_path / "export"))  # the timestamp token is checked offline too
    assert result.returncode == 0 and "timestamped" in result.stdout and "by Time Stamping Authority" in result.stdout


def test_a_checkpoint_is_sealed_without_timestamp_when_the_authority_does_not_answer(
        app: Flask, make: Factory, district_certificate: pki.IssuedCertificate) -> None:
    school = make.school()
    write(app, school, 1)
    app.config["TIMESTAMP_URL"] = "http://127.0.0.1:9/tsa"  # the discard port: nothing answers
    try:
        result = run_cli(app, "checkpoint")
    finally:
        app.config["TIMESTAMP_URL"] = ""
    assert result.exit_code == 0, result.output
    with app.app_context():
        checkpoint = db.session.scalar(sa.select(AuditCheckpoint))
        assert not checkpoint.timestamped and checkpoint.status.startswith("Chưa có dấu thời gian")
        assert json.loads(storage().read(checkpoint.document_digest))["timestamp_requested"] is True
    assert run_cli(app, "verify").exit_code == 0


def test_verify_names_a_checkpoint_whose_document_was_replaced(
        app: Flask, make: Factory, district_certificate: pki.IssuedCertificate) -> None:
    school = make.school()
    write(app, school, 2)
    assert run_cli(app, "checkpoint").exit_code == 0
    with app.app_context():
        checkpoint = db.session.scalar(sa.select(AuditCheckpoint))
        document = json.loads(storage().read(checkpoint.document_digest))
        forged = storage().put(audit.canonical_json(document | {"sealed_at": "2020-01-01T00:00:00.000000+00:00"}))
        checkpoint_id = checkpoint.id
        db.session.execute(sa.update(AuditCheckpoint).values(document_digest=forged))
        db.session.commit()
    result = run_cli(app, "verify")
    assert result.exit_code == 1
    assert f"checkpoint #{checkpoint_id}: its signature does not verify" in result.output


def test_checkpoint_refuses_without_a_district_certificate(app: Flask, make: Factory) -> None:
    write(app, make.school(), 1)
    result = run_cli(app, "checkpoint")
    assert result.exit_code != 0 and "organisation certificate" in result.output


def test_a_rewritten_and_rehashed_chain_is_caught_by_its_checkpoint(
        app: Flask, make: Factory, district_certificate: pki.IssuedCertificate) -> None:
    """Whoever edits an entry and recomputes every hash after it still cannot match the signed head."""
    school = make.school()
    write(app, school, 3)
    assert run_cli(app, "checkpoint").exit_code == 0
    with app.app_context():
        chain = audit.chain_of(school.id)
        rows = entries(chain)
        prev, updates = audit.GENESIS, []
        for entry in rows:
            fields = entry.chained_fields() | {"prev_hash": prev}
            if entry.seq == 2:
                fields["summary"] = "sửa lén"
            prev = audit.hash_fields(fields)
            updates.append(f"UPDATE audit_entries SET summary = '{fields['summary']}', prev_hash = "
                           f"'{fields['prev_hash']}', entry_hash = '{prev}' WHERE id = {entry.id}")
        updates.append(f"UPDATE audit_chain_heads SET head_hash = '{prev}' WHERE chain = '{chain}'")
        superuser_sql(*updates)
        report = services.verify_chains(chain=chain)[0]
    assert [b.kind for b in report.breaks] == ["checkpoint"] and report.breaks[0].entry_id == rows[-1].id
    assert run_cli(app, "checkpoint").exit_code == 1  # and it will not seal the rewritten head


# --- offline verification ----------------------------------------------------------------------------------


def unpack_export(app: Flask, folder: Path, *args: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "export.zip"
    result = run_cli(app, "export", "-o", str(target), *args)
    assert result.exit_code == 0, result.output
    with zipfile.ZipFile(target) as archive:
        archive.extractall(folder)
    return folder / "nhat-ky"


def offline(folder: Path) -> subprocess.CompletedProcess[str]:
    """The exported script, run by a bare interpreter from the export's own folder (nothing of the portal)."""
    return subprocess.run([sys.executable, "-I", "verify_offline.py", "export.jsonl", "checkpoints"], cwd=folder,
                          capture_output=True, text=True, timeout=60)


def test_an_export_verifies_offline_and_names_what_was_changed(
        app: Flask, make: Factory, district_certificate: pki.IssuedCertificate, tmp_path: Path) -> None:
    school = make.school()
    write(app, school, 4)
    write(app, None, 2)
    assert run_cli(app, "checkpoint").exit_code == 0
    write(app, school, 1)  # after the checkpoint: linked, not yet sealed
    folder = unpack_export(app, tmp_path)
    result = offline(folder)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"chain school:{school.id}: 5 entries" in result.stdout and "everything verifies" in result.stdout
    assert result.stdout.count("signature OK, timestamped") == 2

    lines = (folder / "export.jsonl").read_text().splitlines()
    target = next(i for i, line in enumerate(lines) if json.loads(line)["seq"] == 2
                  and json.loads(line)["chain"] != "district")
    edited = json.loads(lines[target]) | {"summary": "sửa lén"}
    (folder / "export.jsonl").write_text("\n".join([*lines[:target], json.dumps(edited), *lines[target + 1:]]) + "\n")
    result = offline(folder)
    assert result.returncode == 1
    assert f"entry #{edited['id']} (position 2): changed" in result.stdout

    first = next(i for i, line in enumerate(lines) if json.loads(line)["seq"] == 1
                 and json.loads(line)["chain"] != "district")
    (folder / "export.jsonl").write_text("\n".join(lines[:first] + lines[first + 1:]) + "\n")
    result = offline(folder)  # even the very first entry cannot go unnoticed
    assert result.returncode == 1 and "(position 2): missing" in result.stdout

    (folder / "export.jsonl").write_text("\n".join(lines) + "\n")
    checkpoint = next((folder / "checkpoints").glob("school-*.json"))
    checkpoint.write_bytes(checkpoint.read_bytes().replace(b'"seq":4', b'"seq":5'))
    result = offline(folder)
    assert result.returncode == 1 and f"checkpoint {checkpoint.name}: the signed digest" in result.stdout


def test_a_school_exports_only_its_own_chain(app: Flask, make: Factory, district_certificate, tmp_path) -> None:
    school, other = make.school(), make.school()
    write(app, school, 2)
    write(app, other, 2)
    assert run_cli(app, "checkpoint").exit_code == 0
    folder = unpack_export(app, tmp_path, "--school", school.code)
    chains = {json.loads(line)["chain"] for line in (folder / "export.jsonl").read_text().splitlines()}
    assert chains == {f"school:{school.id}"}
    assert [p.name.split("-")[1] for p in (folder / "checkpoints").glob("*.json")] == [str(school.id)]
    assert offline(folder).returncode == 0


# --- archives ---------------------------------------------------------------------------------------------


def test_archived_entries_leave_the_table_and_the_chain_still_verifies(
        app: Flask, make: Factory, district_certificate: pki.IssuedCertificate, tmp_path: Path) -> None:
    school = make.school()
    old = datetime(2020, 1, 1, tzinfo=UTC)
    with app.app_context():
        for n in range(3):
            audit.record("test.old", actor=None, school_id=school.id, summary=str(n)).at = old + timedelta(days=n)
        db.session.commit()
    write(app, school, 2)
    result = run_cli(app, "archive", "--before", "2021-01-01")
    assert result.exit_code == 0, result.output
    assert f"school:{school.id}: 3 entries archived (positions 1-3" in result.output
    with app.app_context():
        chain = audit.chain_of(school.id)
        live = entries(chain)
        assert [e.seq for e in live] == [4, 5, 6] and live[-1].action == "audit.archived"
        archive = db.session.scalar(sa.select(AuditArchive))
        lines = services.archived_entries(archive)
        assert [line["summary"] for line in lines] == ["0", "1", "2"]
        checkpoint = db.session.get(AuditCheckpoint, archive.checkpoint_id)
        assert (checkpoint.seq, checkpoint.head_hash) == (3, archive.last_hash)
        report = services.verify_chains(chain=chain)[0]
        assert report.ok and (report.archived, report.entries) == (3, 3)
    assert run_cli(app, "archive", "--before", "2021-01-01").output.startswith("no entry")
    folder = unpack_export(app, tmp_path, "--school", school.code)
    assert offline(folder).returncode == 0
    # The archive's file is evidence too: a changed file is named.
    with app.app_context():
        archive = db.session.scalar(sa.select(AuditArchive))
        lines = services.archived_entries(archive)
        lines[1]["summary"] = "sửa lén"
        forged = storage().put(b"".join(audit.canonical_json(line) + b"\n" for line in lines))
        db.session.execute(sa.update(AuditArchive).values(file_digest=forged))
        db.session.commit()
        report = services.verify_chains(chain=chain)[0]
    assert [(b.kind, b.seq) for b in report.breaks] == [("changed", 2)]


def test_the_database_refuses_deleting_entries_outside_an_archive(app: Flask, make: Factory) -> None:
    write(app, make.school(), 1)
    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            pytest.skip("the append-only trigger exists on PostgreSQL only")
        with pytest.raises(sa.exc.DBAPIError, match="append-only"):
            db.session.execute(sa.text("DELETE FROM audit_entries"))
        db.session.rollback()
        db.session.execute(sa.text("SELECT set_config('hocba.audit_archive', 'on', true)"))
        with pytest.raises(sa.exc.DBAPIError, match="append-only"):  # updates: never
            db.session.execute(sa.text("UPDATE audit_entries SET summary = 'x'"))
        db.session.rollback()


# --- concurrency ------------------------------------------------------------------------------------------

WRITER = """
import sys
from portal.app import create_app
from portal import audit
from portal.extensions import db

app = create_app()
school_ids = [int(x) for x in sys.argv[2].split(",")]
with app.app_context():
    for n in range(int(sys.argv[1])):
        for school_id in school_ids:
            audit.record("test.parallel", actor=None, school_id=school_id, summary=f"worker {n}")
        audit.record("test.parallel", actor=None, school_id=None)
        db.session.commit()
"""


@pytest.mark.slow
def test_parallel_writers_make_one_unbroken_chain_per_school(app: Flask, make: Factory) -> None:
    """Two worker processes and two threads of the web process write to the same chains at once."""
    if not app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql"):
        pytest.skip("concurrent writers need PostgreSQL (SQLite has one writer at a time)")
    schools = [make.school(), make.school()]
    per_writer = 25
    env = dict(os.environ, DATABASE_URL=app.config["SQLALCHEMY_DATABASE_URI"], SECRET_KEY=app.config["SECRET_KEY"],
               PORTAL_INSTANCE_PATH=app.instance_path, SESSION_COOKIE_SECURE="false", REDIS_URL="", PRODUCTION="false")
    ids = ",".join(str(s.id) for s in schools)
    workers = [subprocess.Popen([sys.executable, "-c", WRITER, str(per_writer), ids], env=env,
                                stderr=subprocess.PIPE) for _ in range(2)]

    def web_thread() -> None:
        with app.app_context():
            for n in range(per_writer):
                for school in schools:
                    audit.record("test.parallel", actor=None, school_id=school.id, summary=f"web {n}")
                db.session.commit()

    with app.app_context():  # start once the workers write, so that all four overlap
        deadline = time.monotonic() + 60
        while not db.session.scalar(sa.select(sa.func.count()).select_from(AuditEntry)) and time.monotonic() < deadline:
            db.session.rollback()
            time.sleep(0.05)
    threads = [threading.Thread(target=web_thread) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    for worker in workers:
        _out, errors = worker.communicate(timeout=120)
        assert worker.returncode == 0, errors.decode()
    with app.app_context(), all_schools():
        for school in schools:
            chain = entries(audit.chain_of(school.id))
            assert [e.seq for e in chain] == list(range(1, 4 * per_writer + 1))
            writers = "".join("w" if e.summary.startswith("worker") else "t" for e in chain)
            assert "wt" in writers and "tw" in writers  # interleaved: they did write at the same time
        assert len(entries(audit.DISTRICT_CHAIN)) == 2 * per_writer
        reports = services.verify_chains()
    assert len(reports) == 3 and all(r.ok for r in reports), [str(b) for r in reports for b in r.breaks]


# --- the pages ----------------------------------------------------------------------------------------------


@pytest.mark.slow  # two verification jobs: on Redis, two worker processes
def test_district_staff_check_the_trail_and_download_each_checkpoint(
        app: Flask, client, make: Factory, district_certificate: pki.IssuedCertificate) -> None:
    from tests.conftest import csrf_token, finish_jobs, login

    school = make.school()
    admin = make.user(None, district_role=Role.DISTRICT_ADMIN)
    write(app, school, 2)
    assert run_cli(app, "checkpoint").exit_code == 0
    login(client, admin)
    page = client.get("/district/audit/integrity")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    with app.app_context():
        checkpoint = db.session.scalar(sa.select(AuditCheckpoint).where(
            AuditCheckpoint.chain == audit.chain_of(school.id)))
        document = storage().read(checkpoint.document_digest)
        fingerprint = checkpoint.certificate_fingerprint
    assert school.name in html and fingerprint in html
    assert client.get(f"/district/audit/checkpoints/{checkpoint.id}.json").data == document
    signature = client.get(f"/district/audit/checkpoints/{checkpoint.id}.p7s")
    assert signature.mimetype == "application/pkcs7-signature"
    assert engine.validate_detached(document, signature.data, trust_roots=[district_certificate.chain[-1]],
                                    certificate=district_certificate.certificate)["valid"]
    pem = client.get("/district/audit/district-certificate.pem").data
    assert district_certificate.certificate_pem() in pem

    response = client.post("/district/audit/integrity/verify",
                           data={"csrf_token": csrf_token(client, "/district/audit/integrity")})
    assert response.status_code == 302
    finish_jobs(app, [response.location.rsplit("/", 1)[-1]])
    html = client.get("/district/audit/integrity").get_data(as_text=True)
    assert "Mọi chuỗi đều nguyên vẹn." in html

    with app.app_context():
        last = entries(audit.chain_of(school.id))[-1].id
        superuser_sql(f"UPDATE audit_entries SET summary = 'sửa lén' WHERE id = {last}")
    response = client.post("/district/audit/integrity/verify",
                           data={"csrf_token": csrf_token(client, "/district/audit/integrity")})
    finish_jobs(app, [response.location.rsplit("/", 1)[-1]])
    html = client.get("/district/audit/integrity").get_data(as_text=True)
    assert "1 chuỗi có chỗ bị phá vỡ." in html and f"Mục #{last} (vị trí 2)" in html
    assert "nội dung đã bị sửa" in html


def test_a_school_sees_and_exports_only_its_own_chain(
        app: Flask, client, make: Factory, district_certificate: pki.IssuedCertificate) -> None:
    from tests.conftest import csrf_token, finish_jobs, login

    school, other = make.school("lqd"), make.school("ntmk")
    principal = make.user(school, Role.PRINCIPAL)
    write(app, school, 2)
    write(app, other, 2)
    write(app, None, 1)
    assert run_cli(app, "checkpoint").exit_code == 0
    with app.app_context():
        by_chain = {c.chain: c.id for c in db.session.scalars(sa.select(AuditCheckpoint))}
    login(client, principal)
    html = client.get("/s/lqd/audit/integrity").get_data(as_text=True)
    own = by_chain[audit.chain_of(school.id)]
    assert f"/s/lqd/audit/checkpoints/{own}.json" in html
    assert client.get(f"/s/lqd/audit/checkpoints/{own}.p7s").status_code == 200
    for foreign in (by_chain[audit.chain_of(other.id)], by_chain["district"]):
        assert client.get(f"/s/lqd/audit/checkpoints/{foreign}.json").status_code == 404
    assert client.get("/s/ntmk/audit/integrity").status_code in (403, 404)
    assert client.get("/district/audit/integrity").status_code in (403, 404)

    response = client.post("/s/lqd/audit/integrity/export",
                           data={"csrf_token": csrf_token(client, "/s/lqd/audit/integrity")})
    run_id = response.location.rsplit("/", 1)[-1]
    finish_jobs(app, [run_id])
    download = client.get(f"/s/lqd/jobs/{run_id}/download")
    assert download.status_code == 200 and download.mimetype == "application/zip"
    with zipfile.ZipFile(io.BytesIO(download.data)) as archive:
        lines = archive.read("nhat-ky/export.jsonl").decode().splitlines()
        names = archive.namelist()
    assert {json.loads(line)["chain"] for line in lines} == {audit.chain_of(school.id)}
    assert "nhat-ky/verify_offline.py" in names and "nhat-ky/checkpoints/district-certificate.pem" in names
    assert [n for n in names if n.endswith(".json")] == [
        f"nhat-ky/checkpoints/school-{school.id}-00000002-{own}.json"]


# --- the migration -------------------------------------------------------------------------------------------


def test_the_migration_chains_the_entries_already_there_in_id_order(app: Flask, make: Factory) -> None:
    from flask_migrate import downgrade, upgrade

    from portal.app import PROJECT_ROOT

    school = make.school()
    migrations = str(PROJECT_ROOT / "migrations")
    rows = [(school.id, "a"), (None, "b"), (school.id, "c"), (school.id, "d"), (None, "e")]
    with app.app_context():
        db.session.remove()
        downgrade(directory=migrations, revision="0008")
        try:
            with db.engine.begin() as connection:
                for school_id, summary in rows:
                    connection.execute(sa.text(
                        "INSERT INTO audit_entries (at, actor_name, school_id, action, object_type, object_id, "
                        "summary, changes, address) VALUES (:at, '', :school, 'old.entry', '', '', :summary, "
                        "'{\"k\": [1, \"á\"]}', NULL)"),
                        {"at": datetime(2024, 9, 5, 1, 2, 3, 456789), "school": school_id, "summary": summary})
        finally:
            upgrade(directory=migrations)
        chain = entries(audit.chain_of(school.id))
        assert [(e.seq, e.summary) for e in chain] == [(1, "a"), (2, "c"), (3, "d")]
        assert [(e.seq, e.summary) for e in entries(audit.DISTRICT_CHAIN)] == [(1, "b"), (2, "e")]
        assert chain[0].changes == {"k": [1, "á"]}
        assert all(r.ok for r in services.verify_chains())
    write(app, school, 1)  # new entries carry on from the migrated head
    with app.app_context():
        assert [e.seq for e in entries(audit.chain_of(school.id))] == [1, 2, 3, 4]
        assert all(r.ok for r in services.verify_chains())


def test_the_district_certificate_is_registered_from_the_command_line(app: Flask, make: Factory,
                                                                       tmp_path: Path) -> None:
    district = make.district()
    issued = demo_ca(app).issue_organisation(district.name)
    p12 = tmp_path / "phong.p12"
    p12.write_bytes(issued.pkcs12(PASSPHRASE, kdf_rounds=1000))
    result = app.test_cli_runner().invoke(args=["audit", "certificate", str(p12)],
                                          env={"AUDIT_CERTIFICATE_PASSPHRASE": PASSPHRASE})
    assert result.exit_code == 0, result.output
    with app.app_context():
        row = signing_services.current_district_certificate(district.id)
        assert row is not None and row.fingerprint in result.output
        assert db.session.scalar(sa.select(AuditEntry.action).where(AuditEntry.chain == "district")) == \
            "district_certificate.registered"
    wrong = app.test_cli_runner().invoke(args=["audit", "certificate", str(p12)],
                                         env={"AUDIT_CERTIFICATE_PASSPHRASE": "sai"})
    assert wrong.exit_code != 0 and "Mật khẩu" in wrong.output
