"""Records signed as an attacker or the issuing pipeline would sign them, in-process: PAdES B-B to B-LTA.

A test PKI that keeps both CA keys (so that it can publish CRLs for the issuing CA and for its leaves), a
timestamp authority under the same root (pyHanko's `DummyTimeStamper`, no HTTP), CRLs made with
`cryptography`, and `sign_record(...)`, which signs a record's three fields the way the portal does
(certifying GVCN signature, fill-forms DocMDP, each field locked to itself) with or without timestamps and
validation data, then optionally adds the DSS and a document timestamp (B-LTA). Forgeries start from here.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from io import BytesIO

from asn1crypto import crl as asn1_crl
from asn1crypto import keys as asn1_keys
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID
from pyhanko.pdf_utils.generic import pdf_name
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.sign import fields, signers, timestamps
from pyhanko.sign.signers.pdf_cms import PdfCMSSignedAttributes
from pyhanko.sign.timestamps.dummy_client import DummyTimeStamper
from pyhanko.sign.validation.dss import DocumentSecurityStore
from pyhanko_certvalidator import ValidationContext
from pyhanko_certvalidator.registry import SimpleCertificateStore

from portal.signing import pki
from portal.signing.stamp import stamp_for_field, stamp_style

FIELDS = ("gvcn", "hieu_truong", "con_dau")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _asn1(certificate: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(certificate.public_bytes(serialization.Encoding.DER))


def _key_info(key: pki.PrivateKey) -> asn1_keys.PrivateKeyInfo:
    return asn1_keys.PrivateKeyInfo.load(key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


@dataclass(frozen=True)
class TestPki:
    """A root and issuing CA (both keys kept), a timestamp authority, and what they issue."""

    root_key: pki.PrivateKey
    ca: pki.DemoCA
    tsa: pki.IssuedCertificate
    revoked: dict[int, dt.datetime] = field(default_factory=dict)  # serial -> revocation time

    @property
    def root(self) -> x509.Certificate:
        return self.ca.root

    def person(self, name: str, *, title: str, school: str, **options: object) -> pki.IssuedCertificate:
        return self.ca.issue_person(name, title=title, organisation=school, **options)

    def seal(self, school: str, **options: object) -> pki.IssuedCertificate:
        return self.ca.issue_organisation(school, **options)

    def revoke(self, issued: pki.IssuedCertificate, at: dt.datetime) -> None:
        self.revoked[issued.certificate.serial_number] = at

    def crls(self, *, at: dt.datetime | None = None) -> list[asn1_crl.CertificateList]:
        """The issuing CA's CRL (listing what was revoked) and the root's (for the issuing CA), as of `at`."""
        moment = at or utcnow()
        return [_crl(self.ca.issuing, self.ca.issuing_key, self.revoked, moment),
                _crl(self.ca.root, self.root_key, {}, moment)]

    def timestamper(self, *, at: dt.datetime | None = None) -> DummyTimeStamper:
        return DummyTimeStamper(_asn1(self.tsa.certificate), _key_info(self.tsa.key),
                                certs_to_embed=SimpleCertificateStore.from_certs([_asn1(self.ca.root)]),
                                fixed_dt=at)

    def context(self, *, at: dt.datetime | None = None) -> ValidationContext:
        """What the signing pipeline validates (and embeds) with: the root, the CRLs, no fetching."""
        return ValidationContext(trust_roots=[_asn1(self.root)], crls=self.crls(at=at),
                                 other_certs=[_asn1(self.ca.issuing)], allow_fetching=False,
                                 revocation_mode="require", moment=at)


def _crl(issuer: x509.Certificate, key: pki.PrivateKey, revoked: dict[int, dt.datetime],
         moment: dt.datetime) -> asn1_crl.CertificateList:
    builder = (x509.CertificateRevocationListBuilder().issuer_name(issuer.subject)
               .last_update(moment - dt.timedelta(minutes=5)).next_update(moment + dt.timedelta(days=7))
               .add_extension(x509.CRLNumber(int(moment.timestamp())), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False))
    for serial, when in revoked.items():
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when).build())
    der = builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)
    return asn1_crl.CertificateList.load(der)


def _tsa(root: x509.Certificate, root_key: pki.PrivateKey) -> pki.IssuedCertificate:
    key = pki.new_key("rsa")  # pyHanko's DummyTimeStamper signs with RSA only
    start = utcnow() - dt.timedelta(days=3 * 365)
    certificate = (x509.CertificateBuilder()
                   .subject_name(pki._name("TSA thử nghiệm Học bạ số", organisation="KHÔNG DÙNG THẬT"))
                   .issuer_name(root.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(start).not_valid_after(start + dt.timedelta(days=3650))
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()),
                                  critical=False)
                   .sign(root_key, hashes.SHA256()))
    return pki.IssuedCertificate(key, certificate, (root,))


def make_pki() -> TestPki:
    """A fresh test PKI (its root is what a test configures as TRUST_ROOTS)."""
    root_key, issuing_key = pki.new_key(), pki.new_key()
    start = utcnow() - dt.timedelta(days=3 * 365)
    root_subject = pki._name("CA gốc thử nghiệm (KHÔNG DÙNG THẬT)", organisation="Học bạ số")
    root = (pki._builder(root_subject, root_subject, root_key.public_key(), start, start + dt.timedelta(days=7300))
            .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
            .add_extension(pki._ca_usage(), critical=True).sign(root_key, hashes.SHA256()))
    issuing_subject = pki._name("CA cấp chứng thư thử nghiệm (KHÔNG DÙNG THẬT)", organisation="Học bạ số")
    issuing = (pki._builder(issuing_subject, root_subject, issuing_key.public_key(), start,
                            start + dt.timedelta(days=3650))
               .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
               .add_extension(pki._ca_usage(), critical=True)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()),
                              critical=False)
               .sign(root_key, hashes.SHA256()))
    return TestPki(root_key, pki.DemoCA(root, issuing, issuing_key), _tsa(root, root_key), {})


@cache
def shared_pki() -> TestPki:
    """One test PKI per run (tests that revoke make their own)."""
    return make_pki()


def root_pem(test_pki: TestPki) -> bytes:
    return test_pki.root.public_bytes(serialization.Encoding.PEM)


# --- signing ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Signature:
    """Who signs one field, and how."""

    field: str
    issued: pki.IssuedCertificate
    name: str  # on the stamp
    claimed_time: dt.datetime | None = None  # the signer's own /M and signingTime (a forger backdates it)


def _signer(issued: pki.IssuedCertificate) -> signers.SimpleSigner:
    return signers.SimpleSigner(signing_cert=_asn1(issued.certificate), signing_key=_key_info(issued.key),
                                cert_registry=SimpleCertificateStore.from_certs([_asn1(c) for c in issued.chain]))


def _sign(pdf: bytes, signature: Signature, *, certify: bool, timestamper: timestamps.TimeStamper | None,
          context: ValidationContext | None, school_name: str, existing_only: bool = True) -> bytes:
    meta = signers.PdfSignatureMetadata(
        field_name=signature.field, md_algorithm="sha256", subfilter=fields.SigSeedSubFilter.PADES,
        certify=certify, docmdp_permissions=fields.MDPPerm.FILL_FORMS,
        embed_validation_info=context is not None, validation_context=context)
    pdf_signer = signers.PdfSigner(meta, _signer(signature.issued), timestamper=timestamper,
                                   stamp_style=stamp_style())
    writer = IncrementalPdfFileWriter(BytesIO(pdf), strict=False)
    if certify:
        for name, value, ref in fields.enumerate_sig_fields(writer.prev, filled_status=False):
            field_dict = ref.get_object()
            if value is None and "/Lock" not in field_dict:
                lock = fields.FieldMDPSpec(fields.FieldMDPAction.INCLUDE, [name]).as_sig_field_lock()
                field_dict[pdf_name("/Lock")] = writer.add_object(lock)
                writer.update_container(field_dict)
    stamp = stamp_for_field(signature.field, signature.name, school_name=school_name)
    output = BytesIO()

    async def run() -> None:
        session = pdf_signer.init_signing_session(writer, existing_fields_only=existing_only)
        session.system_time = signature.claimed_time or utcnow()
        validation_info = await session.perform_presign_validation(writer)
        reserved = await session.estimate_signature_container_size(validation_info, tight=False)
        tbs = session.prepare_tbs_document(validation_info=validation_info, bytes_reserved=reserved,
                                           appearance_text_params=stamp.params(session.system_time))
        digest, out = tbs.digest_tbs_document(output=output)
        attributes = PdfCMSSignedAttributes(
            signing_time=session.system_time,
            adobe_revinfo_attr=None if validation_info is None else validation_info.adobe_revinfo_attr)
        post = await tbs.perform_signature(digest.document_digest, attributes)
        await post.post_signature_processing(out)

    asyncio.run(run())
    return output.getvalue()


def add_lta(pdf: bytes, test_pki: TestPki) -> bytes:
    """The DSS with the validation data of the signatures (the CAs' current CRLs and certificates), then a
    document timestamp over it all (B-LT -> B-LTA), as the seal step ends."""
    writer = IncrementalPdfFileWriter(BytesIO(pdf), strict=False)
    DocumentSecurityStore.supply_dss_in_writer(writer, None, certs=[_asn1(test_pki.ca.issuing), _asn1(test_pki.root)],
                                               crls=test_pki.crls())
    output = BytesIO()
    signers.PdfTimeStamper(test_pki.timestamper()).timestamp_pdf(
        writer, "sha256", validation_context=test_pki.context(), output=output)
    return output.getvalue()


def sign_record(pdf: bytes, signatures: Sequence[Signature], test_pki: TestPki, *, timestamps_on: bool = True,
                validation_data: bool = True, lta: bool = True, school_name: str = "") -> bytes:
    """Sign `signatures` in order (the first certifies); B-LTA unless told otherwise.

    In a thread of its own: pyHanko runs an event loop, and a test may already run one.
    """
    def run() -> bytes:
        data = pdf
        for n, signature in enumerate(signatures):
            # A forger who backdates the claim validates (and embeds) as of that claimed time.
            context = test_pki.context(at=signature.claimed_time) if validation_data else None
            data = _sign(data, signature, certify=n == 0, school_name=school_name, context=context,
                         timestamper=test_pki.timestamper() if timestamps_on else None)
        if lta:
            data = add_lta(data, test_pki)
        return data

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(run).result()


def titled_record_pdf(code: str) -> bytes:
    """A small record-like PDF titled with its record code (as every record PDF is), with the three
    empty signature fields, each locked to itself once signed."""
    from reportlab.pdfgen import canvas

    from portal.signing.engine import signature_field_spec

    buffer = BytesIO()
    page = canvas.Canvas(buffer)
    page.setTitle(f"Học bạ số {code}")
    page.drawString(72, 760, f"Hoc ba so {code}")
    page.showPage()
    page.save()
    writer = IncrementalPdfFileWriter(BytesIO(buffer.getvalue()))
    for i, name in enumerate(FIELDS):
        fields.append_signature_field(writer, signature_field_spec(name, page=0, box=(40 + i * 180, 80, 210 + i * 180,
                                                                                    150)))
    output = BytesIO()
    writer.write(output)
    return output.getvalue()


# --- what an attacker appends after the seal ------------------------------------------------------------------


def _append(pdf: bytes, change: Callable[[IncrementalPdfFileWriter], object]) -> bytes:
    writer = IncrementalPdfFileWriter(BytesIO(pdf), strict=False)
    change(writer)
    output = BytesIO()
    writer.write(output)
    return output.getvalue()


def add_empty_field(pdf: bytes) -> bytes:
    return _append(pdf, lambda w: fields.append_signature_field(
        w, fields.SigFieldSpec("xac_nhan_them", on_page=0, box=(40, 200, 210, 260))))


def add_annotation(pdf: bytes) -> bytes:
    from pyhanko.pdf_utils import generic

    def change(writer: IncrementalPdfFileWriter) -> None:
        page_ref = writer.root["/Pages"]["/Kids"][0]
        page = page_ref.get_object()
        note = generic.DictionaryObject({
            pdf_name("/Type"): pdf_name("/Annot"), pdf_name("/Subtype"): pdf_name("/FreeText"),
            pdf_name("/Rect"): generic.ArrayObject([generic.NumberObject(n) for n in (72, 600, 400, 640)]),
            pdf_name("/Contents"): generic.TextStringObject("Hoàn thành xuất sắc"),
            pdf_name("/DA"): generic.pdf_string("/Helv 12 Tf 0 g")})
        annots = page.get("/Annots")
        annots = generic.ArrayObject(list(annots.get_object()) if annots is not None else [])
        annots.append(writer.add_object(note))
        page[pdf_name("/Annots")] = annots
        writer.update_container(page)

    return _append(pdf, change)


def add_page(pdf: bytes) -> bytes:
    from pyhanko.pdf_utils import generic

    def change(writer: IncrementalPdfFileWriter) -> None:
        content = generic.StreamObject(stream_data=b"BT /F1 12 Tf 72 760 Td (Trang them) Tj ET")
        page = generic.DictionaryObject({
            pdf_name("/Type"): pdf_name("/Page"),
            pdf_name("/MediaBox"): generic.ArrayObject([generic.NumberObject(n) for n in (0, 0, 595, 842)]),
            pdf_name("/Contents"): writer.add_object(content), pdf_name("/Resources"): generic.DictionaryObject()})
        writer.insert_page(page)

    return _append(pdf, change)


def add_signature(pdf: bytes, signature: Signature, test_pki: TestPki) -> bytes:
    """A fourth, perfectly valid signature in a new field after the seal."""
    def run() -> bytes:
        meta = signers.PdfSignatureMetadata(field_name=signature.field, md_algorithm="sha256",
                                            subfilter=fields.SigSeedSubFilter.PADES)
        writer = IncrementalPdfFileWriter(BytesIO(pdf), strict=False)
        output = BytesIO()
        signers.PdfSigner(meta, _signer(signature.issued), timestamper=test_pki.timestamper(),
                          new_field_spec=fields.SigFieldSpec(signature.field, on_page=0, box=(40, 300, 210, 360))
                          ).sign_pdf(writer, output=output)
        return output.getvalue()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(run).result()


def strip_document_timestamps(pdf: bytes) -> bytes:
    """The file cut just before its first document timestamp's revision (and everything after it)."""
    from pyhanko.pdf_utils.reader import PdfFileReader

    reader = PdfFileReader(BytesIO(pdf), strict=False)
    first = next(s for s in reader.embedded_signatures if s.sig_object_type == "/DocTimeStamp")
    hole_start = first.sig_object["/ByteRange"][1]
    end = pdf.rindex(b"%%EOF", 0, hole_start)
    return pdf[:end + 5] + b"\n"
