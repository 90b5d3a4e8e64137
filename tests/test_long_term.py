"""Long-term validation of issued records: PAdES B-LTA through the stand-in TSA/OCSP/CRL service.

The session's stand-in (`pki_service` in conftest) serves the demo CA of the test instance folder on a
loopback port; `issuing_level` raises the level from the suite's fast B-B to the default B-LTA.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import subprocess
import urllib.request
from pathlib import Path

import pytest
import sqlalchemy as sa
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.ades.report import AdESPassed
from pyhanko.sign.validation.ades import simulate_future_ades_lta_validation
from pyhanko.sign.validation.dss import DocumentSecurityStore
from pyhanko.sign.validation.policy_decl import (
    PdfSignatureValidationSpec,
    RevinfoOnlineFetchingRule,
    RevocationInfoGatheringSpec,
    SignatureValidationSpec,
)
from pyhanko_certvalidator.context import CertValidationPolicySpec
from pyhanko_certvalidator.policy_decl import REQUIRE_REVINFO, CertRevTrustPolicy, FreshnessReqType
from pyhanko_certvalidator.registry import SimpleTrustManager

from portal.extensions import db
from portal.records import services, workflow
from portal.records.models import RecordStatus, RecordVersion
from portal.signing import engine, pki, pki_folder
from portal.signing.validate import validate_pdf
from tenants.certificates import PersonCertificate
from tenants.models import School, User
from tenants.scoping import school_scope
from tests import test_signing_workflow as flow
from tests.test_record_pdf import pdfa_problems
from tests.tools import require

pytestmark = pytest.mark.slow  # each issued record asks the stand-in for ~10 timestamps and OCSP answers

ca = flow.ca
world = flow.world


def _behave(url: str, **changes: object) -> dict:
    request = urllib.request.Request(f"{url}/_standin/behaviour", data=json.dumps(changes).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())


def _sign(app, world, version_id: int, step: str) -> workflow.Signed:
    with app.app_context(), school_scope(world["school"].id):
        here = db.session.get(School, world["school"].id)
        signer = db.session.get(User, (world["gvcn"] if step == "gvcn" else world["principal"]).id)
        secret = {"gvcn": flow.GVCN_PIN, "hieu_truong": flow.PASSPHRASE}.get(step)
        [result] = workflow.sign_batch(here, workflow.STEPS[step], [version_id], signer=signer, secret=secret)
        return result


def _file(app, world, version_id: int) -> tuple[RecordStatus, bytes]:
    with app.app_context(), school_scope(world["school"].id):
        version = db.session.get(RecordVersion, version_id)
        return version.status, services.read_file(version.current_digest)


def _future_validation(pdf: bytes, root, years: int = 8) -> list:
    """pyHanko's AdES long-term validation at a later time, from what the file embeds alone (no fetching)."""
    policy = CertValidationPolicySpec(
        trust_manager=SimpleTrustManager.build(trust_roots=[engine._asn1(root)]),
        revinfo_policy=CertRevTrustPolicy(revocation_checking_policy=REQUIRE_REVINFO,
                                          freshness_req_type=FreshnessReqType.MAX_DIFF_REVOCATION_VALIDATION))
    # Nothing fetched: what a validator finds in the file, once the demo services are long gone.
    spec = PdfSignatureValidationSpec(SignatureValidationSpec(
        cert_validation_policy=policy,
        revinfo_gathering_policy=RevocationInfoGatheringSpec(online_fetching_rule=RevinfoOnlineFetchingRule.LOCAL_ONLY)))
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=365 * years)
    reader = PdfFileReader(__import__("io").BytesIO(pdf), strict=False)
    logging.getLogger("pyhanko").setLevel(logging.CRITICAL)  # it logs every path it tries
    return [(sig, asyncio.run(simulate_future_ades_lta_validation(sig, spec, future_validation_time=later)))
            for sig in reader.embedded_regular_signatures]


def test_an_issued_record_is_b_lta_and_still_validates_years_later_from_its_own_data(world, issuing_level,
                                                                                    tmp_path: Path):
    app = world["app"]
    version_id = world["versions"][0].id
    for step in ("gvcn", "hieu_truong", "con_dau"):
        result = _sign(app, world, version_id, step)
        assert result.outcome == "signed", result
    status, pdf = _file(app, world, version_id)
    assert status == RecordStatus.ISSUED
    assert engine.signature_level(pdf).level == "B-LTA"

    report = validate_pdf(pdf, [world["ca"].root])
    assert report.ok, report.problems
    for signature in report.signatures:  # each signature timestamped by the authority, within seconds
        assert signature.timestamp_valid is True
        assert abs(signature.timestamp_time - signature.signing_time) < dt.timedelta(minutes=2)

    reader = PdfFileReader(__import__("io").BytesIO(pdf), strict=False)
    assert [s.sig_object_type for s in reader.embedded_signatures] == ["/Sig"] * 3 + ["/DocTimeStamp"]
    dss = DocumentSecurityStore.read_dss(reader)
    assert len(dss.ocsps) >= 4 and len(dss.crls) >= 1  # three signers and the TSA by OCSP; the issuing CA by CRL

    # pyHanko, eight years on (the signers' and the TSA's certificates long expired; the demo issuing CA lasts
    # ten), from the embedded data alone.
    for signature, result in _future_validation(pdf, world["ca"].root):
        assert result.ades_subindic == AdESPassed.OK, (signature.field_name, result.ades_subindic)
        assert result.api_status.intact and result.api_status.valid

    # poppler: three valid signatures and the document timestamp last.
    require("pdfsig")
    path = tmp_path / "record.pdf"
    path.write_bytes(pdf)
    out = subprocess.run(["pdfsig", "-nocert", str(path)], capture_output=True, text=True, timeout=60).stdout
    assert out.count("Signature is Valid") == 3, out
    assert out.count("Signature Field Name:") == 4 and "Signature Field Name: luu_tru_1" in out, out

    # Still the archival PDF/A-3b it was rendered as: the signatures' stamps embed their font too.
    assert pdfa_problems(pdf, tmp_path) == []


def test_issuing_retries_then_fails_clearly_when_the_timestamp_authority_does_not_answer(world, issuing_level,
                                                                                        pki_service):
    app = world["app"]
    ids = [v.id for v in world["versions"]]
    before = _behave(pki_service, down=True)["served"].get("tsa", 0)
    try:
        with app.app_context(), school_scope(world["school"].id):
            results = workflow.sign_batch(db.session.get(School, world["school"].id), workflow.STEPS["gvcn"], ids,
                                          signer=db.session.get(User, world["gvcn"].id), secret=flow.GVCN_PIN)
    finally:
        after = _behave(pki_service, down=False)["served"].get("tsa", 0)
    assert [r.outcome for r in results] == ["failed"] * 3
    for result in results:
        assert "Máy chủ dấu thời gian" in result.reason and "Đã thử 3 lần" in result.reason, result.reason
    # Asked again in the job for the first record, not given up at the first silence; the rest of the batch
    # is not made to wait as long again.
    assert after - before == 3
    assert {_file(app, world, i)[0] for i in ids} == {RecordStatus.DRAFT}
    assert _sign(app, world, ids[0], "gvcn").outcome == "signed"  # the authority is back


def test_nothing_is_issued_below_the_configured_level(world, app):
    version_id = world["versions"][0].id
    for step in ("gvcn", "hieu_truong"):  # signed at B-B: no timestamps
        assert _sign(app, world, version_id, step).outcome == "signed"
    app.config["SIGNATURE_LEVEL"] = "B-LTA"
    try:
        result = _sign(app, world, version_id, "con_dau")
    finally:
        app.config["SIGNATURE_LEVEL"] = "B-B"
    # The signature policy at the seal names the level and why: no signature timestamp.
    assert result.outcome == "failed" and "thấp hơn mức B-LTA" in result.reason, result.reason
    assert "thiếu dấu thời gian" in result.reason
    assert _file(app, world, version_id)[0] == RecordStatus.SIGNED_PRINCIPAL


def test_a_revoked_certificate_stops_the_seal(world, issuing_level):
    app = world["app"]
    version_id = world["versions"][0].id
    for step in ("gvcn", "hieu_truong"):
        assert _sign(app, world, version_id, step).outcome == "signed"
    with app.app_context(), school_scope(world["school"].id):
        principal_cert = db.session.query(PersonCertificate).filter_by(user_id=world["principal"].id).one().x509()
        pki.revoke(pki_folder(app), principal_cert)
    result = _sign(app, world, version_id, "con_dau")
    assert result.outcome == "failed" and "đã bị thu hồi" in result.reason, result.reason
    assert "Võ Thị Lài" in result.reason


# --- renewing archive timestamps -----------------------------------------------------------------------------------


def test_a_renewal_run_adds_a_timestamp_to_the_records_due_and_a_second_run_adds_nothing(world, issuing_level,
                                                                                       client, make):
    from portal.records import archive
    from portal.records.models import ArchiveRenewal

    app = world["app"]
    ids = [v.id for v in world["versions"][:2]]
    for version_id in ids:
        for step in ("gvcn", "hieu_truong", "con_dau"):
            assert _sign(app, world, version_id, step).outcome == "signed"
    due_id, fresh_id = ids
    with app.app_context():
        with school_scope(world["school"].id):
            version = db.session.get(RecordVersion, due_id)
            # Issuing noted the file's last timestamp (the demo TSA's certificate lasts five years).
            expires = version.archive_expires_at
            assert expires is not None and expires > dt.datetime.now(dt.UTC) + dt.timedelta(days=4 * 365)
            assert version.archive_digest_algorithm == "sha256"
            # Years later: the authority's certificate behind the last timestamp expires next month.
            version.archive_expires_at = dt.datetime.now(dt.UTC) + dt.timedelta(days=30)
            db.session.commit()
        before = {i: _file(app, world, i)[1] for i in ids}
        assert archive.due_count() == 1
        first = archive.renew_due()
        assert (first.renewed, first.failed, first.still_due) == (1, 0, 0)

        after = {i: _file(app, world, i)[1] for i in ids}
        assert after[fresh_id] == before[fresh_id]  # not due: untouched
        renewed = after[due_id]
        assert renewed.startswith(before[due_id])  # an incremental update: the earlier file is untouched inside
        reader = PdfFileReader(__import__("io").BytesIO(renewed), strict=False)
        assert [s.field_name for s in reader.embedded_timestamp_signatures] == ["luu_tru_1", "luu_tru_2"]
        assert engine.signature_level(renewed).level == "B-LTA"
        assert validate_pdf(renewed, [world["ca"].root]).ok
        with school_scope(world["school"].id):
            [row] = db.session.scalars(sa.select(ArchiveRenewal)).all()
            assert row.record_version_id == due_id and row.new_digest == db.session.get(
                RecordVersion, due_id).signed_digest
            assert services.read_file(row.previous_digest) == before[due_id]  # the earlier copy is kept
        from portal.audit import AuditEntry

        actions = list(db.session.scalars(sa.select(AuditEntry.action).where(AuditEntry.action.like("record%"))))
        assert "record.archive_timestamp_renewed" in actions and archive.RUN_ACTION in actions

        second = archive.renew_due()
        assert (second.renewed, second.failed) == (0, 0)
        assert _file(app, world, due_id)[1] == renewed

    # Operators see the count and the next run on the district page.
    from tenants.roles import Role

    admin = make.user(None, district_role=Role.DISTRICT_ADMIN)
    flow.login(client, admin)
    page = client.get("/district/").get_data(as_text=True)
    assert "Học bạ đến hạn gia hạn dấu thời gian lưu trữ: 0." in page
    assert "Lần gia hạn tự động tiếp theo:" in page and "02:30" in page


def test_a_seal_signed_elsewhere_ends_at_b_lta_too(app, pki_service):
    """A USB token or a remote service holds the seal's key: the same long-term end once the signature is back."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    from tests.signing_factory import SCHOOL_NAME, record_pdf, stamp

    demo = pki.load_demo_ca(pki_folder(app))
    url = f"{pki_service}{pki.TSA_PATH}"
    people = {"gvcn": demo.issue_person("Nguyễn Thị Thu Hương", title="Giáo viên chủ nhiệm", organisation=SCHOOL_NAME),
              "hieu_truong": demo.issue_person("Võ Thị Lài", title="Hiệu trưởng", organisation=SCHOOL_NAME),
              "con_dau": demo.issue_organisation(SCHOOL_NAME)}
    pdf = record_pdf()
    for index, field in enumerate(("gvcn", "hieu_truong")):
        key = engine.Pkcs12Key(people[field].pkcs12("x", kdf_rounds=1000), "x")
        pdf = engine.sign_field(pdf, field, key, certify=index == 0, stamp=stamp(field, people[field]),
                                timestamp_url=url, trust_roots=[demo.root], level="B-LTA")
    seal = people["con_dau"]
    prepared = engine.prepare_signature(pdf, "con_dau", seal.certificate, seal.chain, certify=False,
                                        stamp=stamp("con_dau", seal), timestamp_url=url, trust_roots=[demo.root])
    raw = seal.key.sign(prepared.to_be_signed, ec.ECDSA(hashes.SHA256()))  # what the token would return
    signed = engine.finish_signature(prepared, raw, trust_roots=[demo.root], level="B-LTA", final=True)
    assert engine.signature_level(signed).level == "B-LTA"
    assert validate_pdf(signed, [demo.root]).ok


# --- a batch of seals ----------------------------------------------------------------------------------------------


def _ocsp_serials(pdf: bytes) -> set[int]:
    from asn1crypto import ocsp

    dss = DocumentSecurityStore.read_dss(PdfFileReader(__import__("io").BytesIO(pdf), strict=False))
    return {single["cert_id"]["serial_number"].native for ref in dss.ocsps
            for single in ocsp.OCSPResponse.load(ref.get_object().data).basic_ocsp_response[
                "tbs_response_data"]["responses"]}


def test_a_seal_batch_asks_once_per_certificate_and_each_file_carries_only_its_own_answers(app, pki_service,
                                                                                          monkeypatch):
    from tests.signing_factory import SCHOOL_NAME, record_pdf, stamp

    ca = pki.load_demo_ca(pki_folder(app))
    teachers = [ca.issue_person(f"Giáo viên {n}", title="Giáo viên chủ nhiệm", organisation=SCHOOL_NAME)
                for n in (1, 2)]
    principal = ca.issue_person("Võ Thị Lài", title="Hiệu trưởng", organisation=SCHOOL_NAME)
    seal = ca.issue_organisation(SCHOOL_NAME)

    def session(issued: pki.IssuedCertificate) -> engine.SigningSession:
        return engine.SigningSession(engine.Pkcs12Key(issued.pkcs12("p", kdf_rounds=1), "p"), level="B-LTA",
                                     timestamp_url=f"{pki_service}{pki.TSA_PATH}", trust_roots=[ca.root])

    drafts = []
    for teacher in (teachers[0], teachers[1], teachers[0], teachers[1]):
        with session(teacher) as gvcn, session(principal) as head:
            pdf = gvcn.sign_field(record_pdf(), "gvcn", certify=True, stamp=stamp("gvcn", teacher))
            drafts.append(head.sign_field(pdf, "hieu_truong", certify=False, stamp=stamp("hieu_truong", principal)))
    before = _behave(pki_service)["served"]
    with session(seal) as batch:
        sealed = [batch.sign_field(pdf, "con_dau", certify=False, stamp=stamp("con_dau", seal), final=True)
                  for pdf in drafts[:3]]
        asked = {k: v - before.get(k, 0) for k, v in _behave(pki_service)["served"].items()}
        # The first record asks for its four certificates (teacher, principal, seal, timestamp authority) and
        # the CRL covering the issuing CA; the second only for its other teacher; the third for nothing.
        assert asked.get("ocsp", 0) == 5 and asked.get("crl", 0) == 1, asked
        # Past the reuse period, the answers are asked for again.
        monkeypatch.setattr(engine, "REVOCATION_REUSE", dt.timedelta(0))
        sealed.append(batch.sign_field(drafts[3], "con_dau", certify=False, stamp=stamp("con_dau", seal),
                                       final=True))
        again = {k: v - before.get(k, 0) for k, v in _behave(pki_service)["served"].items()}
        assert again.get("ocsp", 0) == 9 and again.get("crl", 0) == 2, again
    common = {principal.certificate.serial_number, seal.certificate.serial_number}
    for pdf, teacher in zip(sealed, (teachers[0], teachers[1], teachers[0], teachers[1]), strict=True):
        report = validate_pdf(pdf, [ca.root], required_level="B-LTA")
        assert report.ok and report.level == "B-LTA", report.problems
        serials = _ocsp_serials(pdf)
        # Its own teacher's answer, never the other teacher's (the batch's answers are not all poured in).
        assert common | {teacher.certificate.serial_number} <= serials, serials
        assert ({t.certificate.serial_number for t in teachers} - {teacher.certificate.serial_number}).isdisjoint(
            serials)


def test_a_revocation_answer_dated_a_few_seconds_ahead_does_not_stop_the_seal(app, pki_service, monkeypatch):
    # The CA's clock a little ahead of ours, or an answer that took more than a second to come back (as on
    # a loaded machine): the answer is newer than the moment the seal's check began, and still proves it.
    import standins.pki
    from tests.signing_factory import SCHOOL_NAME, record_pdf, stamp

    ahead = standins.pki._now() + dt.timedelta(seconds=5)
    monkeypatch.setattr(standins.pki, "_now", lambda: ahead)
    ca = pki.load_demo_ca(pki_folder(app))
    pdf = record_pdf()
    for n, field in enumerate(("gvcn", "hieu_truong", "con_dau")):
        issued = (ca.issue_organisation(SCHOOL_NAME) if field == "con_dau"
                  else ca.issue_person(f"Người ký {n}", title="Giáo viên chủ nhiệm", organisation=SCHOOL_NAME))
        pdf = engine.sign_field(pdf, field, engine.Pkcs12Key(issued.pkcs12("p", kdf_rounds=1), "p"), certify=n == 0,
                                stamp=stamp(field, issued), timestamp_url=f"{pki_service}{pki.TSA_PATH}",
                                trust_roots=[ca.root], level="B-LTA", final=field == "con_dau")
    assert engine.signature_level(pdf).level == "B-LTA"
    assert validate_pdf(pdf, [ca.root], required_level="B-LTA").ok


def test_a_signing_batch_shares_one_http_client_and_one_size_measure_with_the_timestamp_authority(
        app, pki_service, monkeypatch):
    from pyhanko.sign.signers.pdf_signer import PdfSigningSession
    from pyhanko_certvalidator.fetchers.aiohttp_fetchers import util

    from tests.signing_factory import SCHOOL_NAME, record_pdf, stamp

    ca = pki.load_demo_ca(pki_folder(app))
    teacher = ca.issue_person("Giáo viên 1", title="Giáo viên chủ nhiệm", organisation=SCHOOL_NAME)
    clients, measures = [], []
    make_client, measure = util._default_session, PdfSigningSession.estimate_signature_container_size

    def counted_client():
        clients.append(1)
        return make_client()

    async def counted_measure(self, *args, **kwargs):
        measures.append(1)
        return await measure(self, *args, **kwargs)

    monkeypatch.setattr(util, "_default_session", counted_client)
    monkeypatch.setattr(PdfSigningSession, "estimate_signature_container_size", counted_measure)
    before = _behave(pki_service)["served"].get("tsa", 0)
    with engine.SigningSession(engine.Pkcs12Key(teacher.pkcs12("p", kdf_rounds=1), "p"), level="B-LTA",
                               timestamp_url=f"{pki_service}{pki.TSA_PATH}", trust_roots=[ca.root]) as batch:
        signed = [batch.sign_field(record_pdf(), "gvcn", certify=True, stamp=stamp("gvcn", teacher))
                  for _ in range(3)]
    asked = _behave(pki_service)["served"].get("tsa", 0) - before
    assert len(clients) == 1 and len(measures) == 1  # not one per signature
    assert asked <= 4  # one token per signature (and at most one sample token to size the first)
    for pdf in signed:
        report = validate_pdf(pdf, [ca.root], expected_fields=("gvcn",))
        assert report.all_valid and engine.signature_level(pdf).level == "B-T", report.problems
