"""The signing engine: one way to sign a record's pre-made signature field, whatever holds the key.

Three kinds of key:

1. on the server: `Pkcs12Key` (an encrypted .p12 and its passphrase) or `Pkcs11Key` (an HSM or any
   PKCS#11 token reachable from the server). `sign_field(...)` signs one field in one call;
   `SigningSession` keeps the key open (parsed once, one PKCS#11 session) across a batch of records.
2. and 3. elsewhere (a USB token at the signer's computer, a remote signing service): interrupted
   signing. `prepare_signature(...)` writes the signature's place into the PDF and returns the PDF to
   store, a JSON-able state, and the SHA-256 digest of the signed attributes to send out;
   `finish_signature(...)` takes the raw signature that comes back, in any process, later.

What keeps three sequential signatures valid (GVCN -> Hiệu trưởng -> con dấu): all three fields exist
before the first signature; the first is a certification signature with DocMDP "fill forms" (P=2);
each field locks itself (FieldMDP INCLUDE its own name). The signing time is the server's clock in
UTC.

Long-term validation, by PAdES level (`level=`; see `LEVELS`):

- B-B: the signature alone.
- B-T: every signature carries an RFC 3161 signature timestamp from the authority at `timestamp_url`.
- B-LT: B-T, and the last signature of the document (`final=True`: the school's seal) ends with the
  validation data of every signature and of their timestamps (certificates, OCSP responses or CRLs,
  fetched now; `hard-fail`: an unreachable revocation source stops the signing) in the document's DSS.
- B-LTA: B-LT, and a document timestamp over the whole file, so that the validation data itself is
  proven to exist at that time (renewed later by `renew_archive_timestamp`).

Sealing a batch in one `SigningSession`, the records share one HTTP client and each certificate's
revocation answers (for `REVOCATION_REUSE`): the seal, principal and timestamp authority certificates are the
same for the whole batch, and each GVCN's for their class. Each file's DSS still holds only the answers for
its own certificates.

`signature_level(pdf)` reads back which level a file reaches: issuing checks the produced file, it does
not trust that the steps ran. Up to B-T, `check_level` takes it from what the engine read of the exact bytes
it has just produced (every earlier signature of the file, and the container with the timestamp token it
wrote), rather than parsing the file again (`_ConfirmedOutputs`). Without `level` the engine does what it
did before levels existed: a timestamp when a TSA URL is given, validation info (soft-fail) when trust roots
are given.

Errors a user may see are `SigningError`s with a Vietnamese message.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from io import BytesIO
from typing import Any, Protocol

from asn1crypto import algos, cms, tsp
from asn1crypto import crl as asn1_crl
from asn1crypto import keys as asn1_keys
from asn1crypto import ocsp as asn1_ocsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from pyhanko.pdf_utils.generic import pdf_name
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.misc import PdfReadError
from pyhanko.sign import fields, signers
from pyhanko.sign.attributes import CMSAttributeProvider, SigningCertificateV2Provider
from pyhanko.sign.general import as_signing_certificate_v2
from pyhanko.sign.signers.pdf_byterange import PreparedByteRangeDigest
from pyhanko.sign.signers.pdf_cms import PdfCMSSignedAttributes
from pyhanko.sign.timestamps import HTTPTimeStamper
from pyhanko.sign.timestamps.common_utils import TimestampRequestError
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator.errors import (
    ExpiredError,
    PathBuildingError,
    PathValidationError,
    RevokedError,
    ValidationError,
)
from pyhanko_certvalidator.fetchers.api import CRLFetcher, Fetchers, OCSPFetcher
from pyhanko_certvalidator.registry import SimpleCertificateStore
from pyhanko_certvalidator.util import issuer_serial

from portal.signing import hex_strings, pki
from portal.signing.stamp import StampText, stamp_style

hex_strings.install()  # signatures' /Contents read in one pass (see hex_strings)
MD_ALGORITHM = "sha256"
STATE_FORMAT = 1
LEVELS = ("B-B", "B-T", "B-LT", "B-LTA")
ARCHIVE_TIMESTAMP_FIELD = "luu_tru"  # the document timestamps' field names start with this


def level_at_least(level: str, minimum: str) -> bool:
    return LEVELS.index(level) >= LEVELS.index(minimum)


class SigningError(Exception):
    """Signing could not be done; the message is a Vietnamese sentence the user can act on."""


class CertificateNotUsable(SigningError):
    """The signer's certificate is expired, not yet valid, or does not chain to a trusted root."""


class FieldProblem(SigningError):
    """The PDF has no empty signature field of that name."""


class WrongSignature(SigningError):
    """The raw signature sent back does not verify against the signer's certificate."""


class ServiceUnavailable(SigningError):
    """The timestamp authority or a revocation source (OCSP, CRL) did not answer: worth trying again later."""


class BelowLevel(SigningError):
    """The produced file does not reach the configured PAdES level."""


# --- keys on the server --------------------------------------------------------------------------------


class ServerKey(Protocol):
    """A key the server can use itself. `open()` yields a pyHanko signer for as long as it is open."""

    def open(self) -> AbstractContextManager[signers.Signer]: ...


class _CertificateAttribute(CMSAttributeProvider):
    """The signing-certificate-v2 attribute, made once per key (`_ParsedKeySigner`)."""

    attribute_type = "signing_certificate_v2"

    def __init__(self, value: Any) -> None:
        self.value = value

    async def build_attr_value(self, dry_run: bool = False) -> Any:
        return self.value


class _ParsedKeySigner(signers.SimpleSigner):
    """pyHanko's SimpleSigner re-parses the private key at every signature; this one parses it once.

    And what the CMS takes from the certificate alone is made once too, as DER read back: the
    signing-certificate-v2 attribute and the signer identifier. asn1crypto encodes values built from parts
    of a parsed certificate anew at every use (~3 ms each for the issuer's name), and values read from DER
    not at all; the bytes are the same.
    """

    def __init__(self, key: pki.PrivateKey, **kwargs: Any) -> None:
        der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        super().__init__(signing_key=asn1_keys.PrivateKeyInfo.load(der), **kwargs)
        self._parsed_key = key
        certificate = self.signing_cert
        self._certificate_attribute = tsp.SigningCertificateV2.load(as_signing_certificate_v2(certificate).dump())
        self._signer_id = cms.SignerIdentifier.load(cms.SignerIdentifier({
            "issuer_and_serial_number": cms.IssuerAndSerialNumber({
                "issuer": certificate.issuer, "serial_number": certificate.serial_number})}).dump())

    def _signed_attr_providers(self, *args: Any, **kwargs: Any) -> Iterator[CMSAttributeProvider]:
        for provider in super()._signed_attr_providers(*args, **kwargs):
            if type(provider) is SigningCertificateV2Provider and provider.signing_cert is self.signing_cert:
                yield _CertificateAttribute(self._certificate_attribute)
            else:
                yield provider

    def signer_info(self, digest_algorithm: str, signed_attrs: Any, signature: bytes) -> cms.SignerInfo:
        if digest_algorithm == "shake256":  # pyHanko's special case (RFC 8419)
            return super().signer_info(digest_algorithm, signed_attrs, signature)
        return cms.SignerInfo({  # as pyHanko's, with the identifier made once
            "version": "v1", "sid": self._signer_id,
            "digest_algorithm": algos.DigestAlgorithm({"algorithm": digest_algorithm}),
            "signature_algorithm": self.get_signature_mechanism_for_digest(digest_algorithm),
            "signed_attrs": signed_attrs, "signature": signature})

    def sign_raw(self, data: bytes, digest_algorithm: str) -> bytes:
        mechanism = self.get_signature_mechanism_for_digest(digest_algorithm).signature_algo
        algorithm = {"sha256": hashes.SHA256(), "sha384": hashes.SHA384(), "sha512": hashes.SHA512()}.get(
            digest_algorithm)
        if algorithm is not None and mechanism == "rsassa_pkcs1v15" and isinstance(self._parsed_key,
                                                                                   rsa.RSAPrivateKey):
            return self._parsed_key.sign(data, padding.PKCS1v15(), algorithm)
        if algorithm is not None and mechanism == "ecdsa" and isinstance(self._parsed_key,
                                                                         ec.EllipticCurvePrivateKey):
            return self._parsed_key.sign(data, ec.ECDSA(algorithm))
        return super().sign_raw(data, digest_algorithm)


def _asn1(certificate: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(certificate.public_bytes(serialization.Encoding.DER))


def _registry(chain: Sequence[x509.Certificate]) -> SimpleCertificateStore:
    return SimpleCertificateStore.from_certs([_asn1(c) for c in chain])


@dataclass
class Pkcs12Key:
    """An encrypted PKCS#12 file and its passphrase; opened (decrypted and parsed) once per object."""

    data: bytes = field(repr=False)
    passphrase: str = field(repr=False)
    _signer: _ParsedKeySigner | None = field(default=None, init=False, repr=False)

    def bundle(self) -> pki.KeyBundle:
        return pki.read_pkcs12(self.data, self.passphrase)

    @contextmanager
    def open(self) -> Iterator[signers.Signer]:
        if self._signer is None:
            bundle = self.bundle()
            self._signer = _ParsedKeySigner(bundle.key, signing_cert=_asn1(bundle.certificate),
                                            cert_registry=_registry(bundle.chain))
        yield self._signer


@dataclass
class Pkcs11Key:
    """A key on a PKCS#11 token (an HSM; softhsm2 in the tests), found by token label and key label or id.

    The session is opened by `open()` and closed when it ends: open it inside the job that signs,
    never before a fork. `chain` adds the CA certificates the token may not hold. The raw mechanism
    (hashing in pyHanko, signing on the token) is the default: EC keys on SoftHSM and many USB tokens
    offer no combined hash-and-sign mechanism.
    """

    module: str
    token_label: str
    pin: str = field(repr=False)
    key_label: str | None = None
    key_id: bytes | None = None
    chain: tuple[x509.Certificate, ...] = ()
    use_raw_mechanism: bool = True

    @contextmanager
    def open(self) -> Iterator[signers.Signer]:
        from pyhanko.config.pkcs11 import TokenCriteria
        from pyhanko.sign.pkcs11 import PKCS11Signer, open_pkcs11_session

        try:
            session = open_pkcs11_session(self.module, token_criteria=TokenCriteria(label=self.token_label),
                                          user_pin=self.pin)
        except Exception as exc:  # python-pkcs11 raises many kinds: wrong PIN, no token, bad module
            raise SigningError(f"Không mở được thiết bị ký số (PKCS#11) “{self.token_label}”: "
                               f"{type(exc).__name__}.") from exc
        try:
            yield PKCS11Signer(session, key_label=self.key_label, key_id=self.key_id,
                               ca_chain=[_asn1(c) for c in self.chain], use_raw_mechanism=self.use_raw_mechanism)
        finally:
            session.close()


# --- checks ---------------------------------------------------------------------------------------------


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _date_vn(moment: datetime) -> str:
    return f"{moment:%d/%m/%Y}"


def check_certificate(certificate: asn1_x509.Certificate | x509.Certificate, chain: Sequence[Any] = (), *,
                      trust_roots: Sequence[x509.Certificate] | None = None, at: datetime | None = None) -> None:
    """Refuse (`CertificateNotUsable`) a certificate not valid at `at`, or not chaining to `trust_roots`."""
    asyncio.run(_check_certificate(certificate, chain, trust_roots=trust_roots, at=at))


async def _check_certificate(certificate: asn1_x509.Certificate | x509.Certificate, chain: Sequence[Any] = (), *,
                             trust_roots: Sequence[x509.Certificate] | None = None,
                             at: datetime | None = None) -> None:
    cert = certificate if isinstance(certificate, asn1_x509.Certificate) else _asn1(certificate)
    moment = at or _utcnow()
    name = cert.subject.native.get("common_name", "")
    if moment > cert.not_valid_after:
        raise CertificateNotUsable(f"Chứng thư số của {name} đã hết hạn ngày {_date_vn(cert.not_valid_after)}.")
    if moment < cert.not_valid_before:
        raise CertificateNotUsable(f"Chứng thư số của {name} chỉ có hiệu lực từ ngày "
                                   f"{_date_vn(cert.not_valid_before)}.")
    if trust_roots is None:
        return
    others = [c if isinstance(c, asn1_x509.Certificate) else _asn1(c) for c in chain]
    context = ValidationContext(trust_roots=[_asn1(r) for r in trust_roots], other_certs=others, moment=moment)
    try:
        await CertificateValidator(cert, validation_context=context).async_validate_usage(set())
    except (PathBuildingError, PathValidationError, ValidationError) as exc:
        raise CertificateNotUsable(f"Chứng thư số của {name} không do một tổ chức chứng thực được tin cậy cấp "
                                   "hoặc không còn hiệu lực.") from exc


def _find_empty_field(writer: IncrementalPdfFileWriter, name: str) -> None:
    for field_name, value, _ref in fields.enumerate_sig_fields(writer.prev, filled_status=None):
        if field_name == name:
            if value is not None:
                raise FieldProblem(f"Ô chữ ký “{name}” đã được ký.")
            return
    raise FieldProblem(f"Tệp PDF không có ô chữ ký “{name}”.")


def _lock_fields_to_themselves(writer: IncrementalPdfFileWriter) -> None:
    """Give every empty signature field without a /Lock one that locks the field itself (FieldMDP INCLUDE).

    Only done in the certifying (first) signature's revision: a /Lock added to a field later, after a
    signature, is a change that invalidates the earlier signatures. Renderers should create the
    fields locked already (`signature_field_spec`).
    """
    for name, value, ref in fields.enumerate_sig_fields(writer.prev, filled_status=False):
        field_dict = ref.get_object()
        if value is None and "/Lock" not in field_dict:
            lock = fields.FieldMDPSpec(fields.FieldMDPAction.INCLUDE, [name]).as_sig_field_lock()
            field_dict[pdf_name("/Lock")] = writer.add_object(lock)
            writer.update_container(field_dict)


def signature_field_spec(name: str, *, page: int, box: tuple[int, int, int, int]) -> fields.SigFieldSpec:
    """The spec of an empty signature field that locks itself once signed (for `append_signature_field`)."""
    return fields.SigFieldSpec(name, on_page=page, box=box,
                               field_mdp_spec=fields.FieldMDPSpec(fields.FieldMDPAction.INCLUDE, [name]))


def _writer(pdf: bytes) -> IncrementalPdfFileWriter:
    try:
        writer = IncrementalPdfFileWriter(BytesIO(pdf), strict=False)
    except (PdfReadError, ValueError, IndexError, KeyError) as exc:
        raise SigningError("Tệp PDF bị hỏng, không ký được.") from exc
    if writer.prev.encrypted:
        raise SigningError("Tệp PDF được mã hóa, không ký được.")
    return writer


# --- the shared pipeline -----------------------------------------------------------------------------------


@dataclass
class _Prepared:
    tbs: Any
    digest: PreparedByteRangeDigest
    output: BytesIO
    attributes: PdfCMSSignedAttributes
    post_sign: Any
    earlier_timestamped: bool = False  # every signature already in the file carries a signature timestamp


def _reserved_bytes(signer: signers.Signer) -> int:
    """Room for the CMS container without a dry run (which costs as much as a signature's CMS work).

    The container holds the certificates, the signed attributes (~300 bytes), the raw signature (at most
    512 bytes for RSA 4096) and ASN.1 framing; it is written as hex, hence twice its DER size.
    """
    certificates = sum(len(c.dump()) for c in {signer.signing_cert.dump(): signer.signing_cert,
                                                **{c.dump(): c for c in signer.cert_registry}}.values())
    return 2 * (certificates + 4096)


@functools.lru_cache(maxsize=8)
def _http_timestamper(url: str) -> HTTPTimeStamper:
    # One per authority and process: it keeps the dummy token pyHanko sizes every signature with, which
    # would otherwise cost a second request to the authority per signature. (Without a session of its
    # own it opens and closes one per request, so it is safe across event loops.)
    return HTTPTimeStamper(url)


class _BatchTimestamps:
    """What a batch's signatures share with the timestamp authority (`SigningSession`).

    One HTTP client, bound to the session's event loop: without it, every timestamp request makes a client
    of its own, and with it a TLS context loaded from the certificate bundle (a quarter of a signature's CPU,
    even over plain HTTP). And the room pyHanko measured for the first signature's CMS container with a
    dry run of the whole CMS (a tenth of a signature): the batch's signatures are made by the same key, with
    the same authority's tokens, and the measure keeps pyHanko's 50 % margin for tokens that vary.
    """

    def __init__(self, url: str) -> None:
        from pyhanko_certvalidator.fetchers.aiohttp_fetchers.util import LazySession

        self.http = LazySession()
        self.timestamper = HTTPTimeStamper(url, session=self.http)
        self.reserved: dict[str, int] = {}

    async def close(self) -> None:
        await self.http.close()


def _timestamper(timestamp_url: str | None, level: str | None,
                 batch: _BatchTimestamps | None = None) -> HTTPTimeStamper | None:
    if level is None:
        if not timestamp_url:
            return None
    elif level == "B-B":
        return None
    elif not timestamp_url:
        raise SigningError(f"Mức chữ ký {level} cần một máy chủ dấu thời gian nhưng chưa cấu hình "
                           "(TIMESTAMP_URL).")
    return batch.timestamper if batch is not None else _http_timestamper(timestamp_url)


async def _prepare(pdf: bytes, field_name: str, signer: signers.Signer, *, certify: bool, stamp: StampText,
                   timestamp_url: str | None, trust_roots: Sequence[x509.Certificate] | None,
                   level: str | None = None, timestamps: _BatchTimestamps | None = None) -> _Prepared:
    writer = _writer(pdf)
    _find_empty_field(writer, field_name)
    if certify:
        _lock_fields_to_themselves(writer)
    timestamper = _timestamper(timestamp_url, level, timestamps)
    # The signatures already in the file, read (before this one's field is filled) as `signature_level` reads them.
    earlier = timestamper is not None and all(
        _has_signature_timestamp(s) for s in writer.prev.embedded_signatures if s.sig_object_type == "/Sig")
    validation_context = None
    if trust_roots is not None and level is None:  # with a level, validation data is added by `_complete`
        validation_context = ValidationContext(trust_roots=[_asn1(r) for r in trust_roots], allow_fetching=True)
    meta = signers.PdfSignatureMetadata(
        field_name=field_name, md_algorithm=MD_ALGORITHM, subfilter=fields.SigSeedSubFilter.PADES,
        certify=certify, docmdp_permissions=fields.MDPPerm.FILL_FORMS,
        embed_validation_info=validation_context is not None, validation_context=validation_context)
    pdf_signer = signers.PdfSigner(meta, signer, timestamper=timestamper, stamp_style=stamp_style())
    session = pdf_signer.init_signing_session(writer, existing_fields_only=True)
    session.system_time = _utcnow()  # the server's clock, in UTC (pyHanko would take the local zone)
    validation_info = await session.perform_presign_validation(writer)
    if timestamper is None and validation_info is None:
        reserved = _reserved_bytes(signer)
    elif timestamps is not None and validation_info is None and "token" in timestamps.reserved:
        reserved = timestamps.reserved["token"]  # measured at the batch's first signature
    else:  # a timestamp token or revocation data: let pyHanko measure a dry run
        reserved = await session.estimate_signature_container_size(validation_info, tight=False)
        if timestamps is not None and validation_info is None:
            timestamps.reserved["token"] = reserved
    tbs = session.prepare_tbs_document(validation_info=validation_info, bytes_reserved=reserved,
                                       appearance_text_params=stamp.params(session.system_time))
    digest, output = tbs.digest_tbs_document(output=BytesIO())
    attributes = PdfCMSSignedAttributes(
        signing_time=session.system_time,
        adobe_revinfo_attr=None if validation_info is None else validation_info.adobe_revinfo_attr)
    return _Prepared(tbs, digest, output, attributes, tbs.post_sign_instructions, earlier)


async def _sign(pdf: bytes, field_name: str, signer: signers.Signer, *, final: bool = False,
                batch: _BatchRevocation | None = None, **options: Any) -> bytes:
    level = options.get("level")
    try:
        prepared = await _prepare(pdf, field_name, signer, **options)
        post = await prepared.tbs.perform_signature(prepared.digest.document_digest, prepared.attributes)
        await post.post_signature_processing(prepared.output)
    except TimestampRequestError as exc:
        raise _tsa_down(options.get("timestamp_url"), exc) from exc
    signed = prepared.output.getvalue()
    if final and level is not None and level_at_least(level, "B-LT"):
        return await _complete(signed, level, options["timestamp_url"], options.get("trust_roots") or [], batch,
                               options.get("timestamps"))
    if prepared.earlier_timestamped and post.post_sign_instructions is None and \
            _has_signature_timestamp_cms(post.sig_contents):
        _TIMESTAMPED.add(signed)
    return signed


def _tsa_down(url: str | None, exc: BaseException) -> ServiceUnavailable:
    return ServiceUnavailable(f"Máy chủ dấu thời gian ({url}) không trả lời hoặc trả lời lỗi, nên chưa ký được "
                              f"({type(exc).__name__}).")


# --- long-term validation: validation data and document timestamps ---------------------------------------------


FETCH_TIMEOUT_SECONDS = 10
# How long a signing batch reuses a revocation answer (OCSP, CRL) it fetched for one of its certificates: a
# certificate revoked during a batch stops it at most this much later. Within it, every record of the batch
# carries the same answer (the seal, the GVCN's and the principal's certificates and the timestamp
# authority's are the same for a whole class).
REVOCATION_REUSE = timedelta(minutes=10)


class _ReusedOCSP(OCSPFetcher):
    """One record's OCSP answers, taken from its batch's (`_BatchRevocation`) or fetched and kept there.

    Only what this record asked for is listed as fetched: the record's DSS holds its own certificates'
    answers, not those of the other records of the batch."""

    def __init__(self, batch: _BatchRevocation, fetcher: OCSPFetcher) -> None:
        self._batch, self._fetcher = batch, fetcher
        self._mine: dict[Any, asn1_ocsp.OCSPResponse] = {}

    async def fetch(self, cert: Any, authority: Any) -> asn1_ocsp.OCSPResponse:
        key = issuer_serial(cert)
        response = self._batch.reused(self._batch.ocsp, key)
        if response is None:
            response = await self._fetcher.fetch(cert, authority)
            self._batch.ocsp[key] = (time.monotonic(), response)
        self._mine[key] = response
        return response

    def fetched_responses(self) -> Iterable[asn1_ocsp.OCSPResponse]:
        return list(self._mine.values())

    def fetched_responses_for_cert(self, cert: Any) -> Iterable[asn1_ocsp.OCSPResponse]:
        response = self._mine.get(issuer_serial(cert))
        return [response] if response is not None else []


class _ReusedCRL(CRLFetcher):
    """One record's CRLs, taken from its batch's or fetched and kept there (as `_ReusedOCSP`)."""

    def __init__(self, batch: _BatchRevocation, fetcher: CRLFetcher) -> None:
        self._batch, self._fetcher = batch, fetcher
        self._mine: dict[Any, list[asn1_crl.CertificateList]] = {}

    async def fetch(self, cert: Any, *, use_deltas: Any = None) -> Iterable[asn1_crl.CertificateList]:
        key = (issuer_serial(cert), use_deltas)
        crls = self._batch.reused(self._batch.crl, key)
        if crls is None:
            crls = list(await self._fetcher.fetch(cert, use_deltas=use_deltas))
            self._batch.crl[key] = (time.monotonic(), crls)
        self._mine[key] = crls
        return crls

    def fetched_crls(self) -> Iterable[asn1_crl.CertificateList]:
        unique = {c.dump(): c for crls in self._mine.values() for c in crls}
        return list(unique.values())

    def fetched_crls_for_cert(self, cert: Any) -> Iterable[asn1_crl.CertificateList]:
        wanted = issuer_serial(cert)
        asked = [crls for (key, _deltas), crls in self._mine.items() if key == wanted]
        if not asked:
            raise KeyError(cert)  # as the interface says: nothing was fetched for this certificate
        return [c for crls in asked for c in crls]


class _BatchRevocation:
    """What a `SigningSession` keeps between the long-term steps of its records: one HTTP client (its
    connections and TLS set-up), and each certificate's revocation answers for `REVOCATION_REUSE`."""

    def __init__(self) -> None:
        from pyhanko_certvalidator.fetchers.aiohttp_fetchers import AIOHttpFetcherBackend

        self.backend = AIOHttpFetcherBackend(per_request_timeout=FETCH_TIMEOUT_SECONDS)
        self.ocsp: dict[Any, tuple[float, asn1_ocsp.OCSPResponse]] = {}
        self.crl: dict[Any, tuple[float, list[asn1_crl.CertificateList]]] = {}

    @staticmethod
    def reused(answers: dict[Any, tuple[float, Any]], key: Any) -> Any:
        kept = answers.get(key)
        if kept is None or time.monotonic() - kept[0] > REVOCATION_REUSE.total_seconds():
            return None
        return kept[1]

    def fetchers(self) -> Fetchers:
        """One record's fetchers: a fresh fetch budget and certificate fetcher, the batch's answers."""
        fresh = self.backend.get_fetchers()
        return Fetchers(ocsp_fetcher=_ReusedOCSP(self, fresh.ocsp_fetcher),
                        crl_fetcher=_ReusedCRL(self, fresh.crl_fetcher), cert_fetcher=fresh.cert_fetcher)

    async def close(self) -> None:
        await self.backend.close()


@asynccontextmanager
async def _long_term_context(trust_roots: Sequence[x509.Certificate],
                             batch: _BatchRevocation | None = None) -> AsyncIterator[ValidationContext]:
    """A validation context that fetches revocation data (through `batch`, when signing a batch), its HTTP
    session closed at the end (the batch's, when the batch ends).

    hard-fail: a certificate whose revocation status cannot be learnt stops the operation, rather than
    giving a file that claims long-term validity and lacks what proves it. Retroactive: an answer dated
    after the context was made (the CA's clock a second ahead, or an answer slower than a second to come)
    still speaks for now, as in the validation policy (`portal.signing.validate`).
    """
    roots = [_asn1(r) for r in trust_roots]
    options: dict[str, Any] = dict(trust_roots=roots, allow_fetching=True, revocation_mode="hard-fail",
                                   retroactive_revinfo=True)
    if batch is not None:
        yield ValidationContext(fetchers=batch.fetchers(), **options)
        return
    single = _BatchRevocation()
    try:
        yield ValidationContext(fetcher_backend=single.backend, **options)
    finally:
        await single.close()


def _revinfo_down(name: str, exc: BaseException) -> ServiceUnavailable:
    return ServiceUnavailable(f"Không lấy được thông tin thu hồi (OCSP/CRL) của chứng thư số {name}, hoặc chứng "
                              f"thư số không còn hiệu lực ({type(exc).__name__}: {exc}).")


async def _collect(embedded_signatures: Sequence[Any], context: ValidationContext) -> list[Any]:
    """The validation paths of the given signatures and of their timestamps (revocation data lands in
    `context`)."""
    from pyhanko.sign.validation.dss import collect_validation_info

    paths: list[Any] = []
    for embedded in embedded_signatures:
        name = embedded.signer_cert.subject.native.get("common_name", embedded.field_name)
        try:
            paths.extend(await collect_validation_info(embedded, context))
        except RevokedError as exc:
            raise CertificateNotUsable(f"Chứng thư số của {name} đã bị thu hồi.") from exc
        except ExpiredError as exc:
            raise CertificateNotUsable(f"Chứng thư số của {name} đã hết hạn.") from exc
        except (PathBuildingError, PathValidationError, ValidationError, OSError) as exc:
            raise _revinfo_down(name, exc) from exc
    return paths


async def _stamp_document(writer: IncrementalPdfFileWriter, paths: list[Any], context: ValidationContext,
                          timestamp_url: str | None, timestamps: _BatchTimestamps | None = None) -> bytes:
    """The DSS (with `paths` and what `context` fetched) and, over the whole file, a document timestamp."""
    from pyhanko.sign.signers.pdf_signer import TimestampDSSContentSettings
    from pyhanko.sign.validation.dss import DocumentSecurityStore

    DocumentSecurityStore.supply_dss_in_writer(writer, None, paths=paths, validation_context=context,
                                               embed_roots=False)
    timestamper = _timestamper(timestamp_url, "B-LTA", timestamps)
    assert timestamper is not None
    stamper = signers.PdfTimeStamper(timestamper, field_name=_next_timestamp_field(writer.prev))
    output = BytesIO()
    # The timestamp authority's own validation data goes in before the timestamp, so that the timestamp
    # covers the whole file (nothing unsigned after it).
    settings = TimestampDSSContentSettings(update_before_ts=True, include_vri=False)
    try:
        await stamper.async_timestamp_pdf(writer, MD_ALGORITHM, context, output=output, embed_roots=False,
                                          dss_settings=settings)
    except TimestampRequestError as exc:
        raise _tsa_down(timestamp_url, exc) from exc
    except (PathBuildingError, PathValidationError, ValidationError, OSError) as exc:
        raise _revinfo_down("của máy chủ dấu thời gian", exc) from exc
    return output.getvalue()


async def _complete(pdf: bytes, level: str, timestamp_url: str | None,
                    trust_roots: Sequence[x509.Certificate], batch: _BatchRevocation | None = None,
                    timestamps: _BatchTimestamps | None = None) -> bytes:
    """Add the validation data of every signature to the DSS (B-LT) and a document timestamp (B-LTA)."""
    from pyhanko.sign.validation.dss import DocumentSecurityStore

    async with _long_term_context(trust_roots, batch) as context:
        writer = _writer(pdf)  # the file is parsed once: its signatures are read from the writer's reader
        paths = await _collect(writer.prev.embedded_signatures, context)
        if level == "B-LTA":
            return await _stamp_document(writer, paths, context, timestamp_url, timestamps)
        DocumentSecurityStore.supply_dss_in_writer(writer, None, paths=paths, validation_context=context,
                                                   embed_roots=False)
        output = BytesIO()
        writer.write(output)
        return output.getvalue()


def _next_timestamp_field(reader: Any) -> str:
    taken = {name for name, _value, _ref in fields.enumerate_sig_fields(reader, filled_status=None)}
    number = 1
    while f"{ARCHIVE_TIMESTAMP_FIELD}_{number}" in taken:
        number += 1
    return f"{ARCHIVE_TIMESTAMP_FIELD}_{number}"


def complete_long_term(pdf: bytes, *, level: str, timestamp_url: str | None,
                       trust_roots: Sequence[x509.Certificate]) -> bytes:
    """The final steps of B-LT/B-LTA on a signed PDF (what the seal's signing ends with)."""
    if not level_at_least(level, "B-LT"):
        return pdf
    return asyncio.run(_complete(pdf, level, timestamp_url, trust_roots))


def renew_archive_timestamp(pdf: bytes, *, timestamp_url: str | None,
                            trust_roots: Sequence[x509.Certificate]) -> bytes:
    """A fresh document timestamp, after the validation data of the last one (PAdES B-LTA renewal).

    The last document timestamp's certificate is validated now (its revocation data fetched and embedded),
    then a new timestamp covers the whole file: the chain of proofs goes on past the old TSA certificate's
    expiry or its algorithm's retirement.
    """
    from pyhanko.pdf_utils.reader import PdfFileReader

    async def run() -> bytes:
        async with _long_term_context(trust_roots) as context:
            reader = PdfFileReader(BytesIO(pdf), strict=False)
            previous = reader.embedded_timestamp_signatures[-1:]
            paths = await _collect(previous, context)
            return await _stamp_document(_writer(pdf), paths, context, timestamp_url)

    return asyncio.run(run())


def last_archive_timestamp(pdf: bytes) -> tuple[datetime, datetime, str] | None:
    """(time, expiry of the TSA certificate, digest algorithm) of the file's last document timestamp."""
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.general import extract_certificate_info

    reader = PdfFileReader(BytesIO(pdf), strict=False)
    stamps = reader.embedded_timestamp_signatures
    if not stamps:
        return None
    last = stamps[-1]
    info = last.signed_data["encap_content_info"]["content"].parsed
    certificate = extract_certificate_info(last.signed_data).signer_cert
    return info["gen_time"].native, certificate.not_valid_after, info["message_imprint"]["hash_algorithm"][
        "algorithm"].native


class SigningSession:
    """A server key kept open for a batch: the PKCS#12 parsed once, one PKCS#11 session.

        with SigningSession(key, timestamp_url=url) as session:
            for record in records:
                signed = session.sign_field(pdf, "gvcn", certify=True, stamp=stamp)
    """

    def __init__(self, key: ServerKey, *, timestamp_url: str | None = None,
                 trust_roots: Sequence[x509.Certificate] | None = None, level: str | None = None) -> None:
        self.key = key
        self.level = level
        self.timestamp_url = timestamp_url or None
        self.trust_roots = list(trust_roots) if trust_roots is not None else None
        self._opened: AbstractContextManager[signers.Signer] | None = None
        self._signer: signers.Signer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._revocation: _BatchRevocation | None = None  # made at the first seal of the batch
        self._timestamps: _BatchTimestamps | None = None
        self._chain_checked = False  # the certificate's path to a trust root, validated once per batch

    def __enter__(self) -> SigningSession:
        self._opened = self.key.open()
        self._signer = self._opened.__enter__()
        self._loop = asyncio.new_event_loop()
        self._timestamps = _BatchTimestamps(self.timestamp_url) if self.timestamp_url else None
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._opened is not None and self._loop is not None
        if self._revocation is not None:
            self._loop.run_until_complete(self._revocation.close())
            self._revocation = None
        if self._timestamps is not None:
            self._loop.run_until_complete(self._timestamps.close())
            self._timestamps = None
        self._loop.close()
        self._opened.__exit__(*exc)  # type: ignore[arg-type]
        self._opened = self._signer = self._loop = None

    def sign_field(self, pdf: bytes, field_name: str, *, certify: bool, stamp: StampText,
                   final: bool = False) -> bytes:
        """The PDF with `field_name` signed (an incremental update; earlier signatures stay valid).

        `final`: the document's last signature, which ends with the long-term validation data at B-LT/B-LTA.
        """
        if self._signer is None or self._loop is None:
            raise RuntimeError("use the session inside a `with` block")
        return self._loop.run_until_complete(self._sign(pdf, field_name, certify=certify, stamp=stamp,
                                                        final=final))

    async def _sign(self, pdf: bytes, field_name: str, *, certify: bool, stamp: StampText,
                    final: bool = False) -> bytes:
        signer = self._signer
        assert signer is not None
        if hasattr(signer, "ensure_objects_loaded"):
            await signer.ensure_objects_loaded()  # PKCS#11: the certificate comes from the token
        # Its dates at every record; its chain to a trust root (the same certificates all along) at the first.
        await _check_certificate(signer.signing_cert, list(signer.cert_registry),
                                 trust_roots=None if self._chain_checked else self.trust_roots)
        self._chain_checked = True
        if final and self.level is not None and level_at_least(self.level, "B-LT") and self._revocation is None:
            self._revocation = _BatchRevocation()
        return await _sign(pdf, field_name, signer, certify=certify, stamp=stamp, timestamp_url=self.timestamp_url,
                           trust_roots=self.trust_roots, level=self.level, final=final, batch=self._revocation,
                           timestamps=self._timestamps)


def sign_field(pdf: bytes, field: str, key: ServerKey, *, certify: bool, stamp: StampText,
               timestamp_url: str | None = None, trust_roots: Sequence[x509.Certificate] | None = None,
               level: str | None = None, final: bool = False) -> bytes:
    """Sign one field with a server key (for many records, keep a `SigningSession` open instead)."""
    with SigningSession(key, timestamp_url=timestamp_url, trust_roots=trust_roots, level=level) as session:
        return session.sign_field(pdf, field, certify=certify, stamp=stamp, final=final)


# --- interrupted signing: keys elsewhere -----------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode())


@dataclass(frozen=True)
class PreparedSignature:
    """A signature waiting for its raw value: store `pdf` and `state()`, send `digest` out.

    `digest` is SHA-256 of `to_be_signed` (the DER of the CMS signed attributes): what a remote
    service's signHash takes. A PKCS#11 token signs `to_be_signed` with CKM_SHA256_RSA_PKCS /
    CKM_ECDSA_SHA256, or `digest` with CKM_RSA_PKCS (DigestInfo-wrapped) / CKM_ECDSA.
    """

    pdf: bytes = field(repr=False)
    field_name: str
    document_digest: bytes
    reserved_region_start: int
    reserved_region_end: int
    to_be_signed: bytes = field(repr=False)
    certificate: bytes = field(repr=False)
    chain: tuple[bytes, ...] = field(repr=False)
    timestamp_url: str | None = None

    @property
    def digest(self) -> bytes:
        return hashlib.sha256(self.to_be_signed).digest()

    @property
    def key_algorithm(self) -> str:
        """"rsa" or "ec": which raw signature the key holder must produce."""
        return asn1_x509.Certificate.load(self.certificate).public_key.algorithm

    def state(self) -> dict[str, Any]:
        """Everything but the PDF, JSON-able; the PDF is checked against `pdf_sha256` when finishing."""
        return {"format": STATE_FORMAT, "field": self.field_name, "pdf_sha256": hashlib.sha256(self.pdf).hexdigest(),
                "document_digest": self.document_digest.hex(), "reserved_region_start": self.reserved_region_start,
                "reserved_region_end": self.reserved_region_end, "signed_attributes": _b64(self.to_be_signed),
                "certificate": _b64(self.certificate), "chain": [_b64(c) for c in self.chain],
                "timestamp_url": self.timestamp_url, "digest": self.digest.hex()}

    @classmethod
    def from_state(cls, state: Mapping[str, Any], pdf: bytes) -> PreparedSignature:
        if state.get("format") != STATE_FORMAT:
            raise SigningError("Dữ liệu chờ ký không đúng định dạng.")
        if hashlib.sha256(pdf).hexdigest() != state["pdf_sha256"]:
            raise SigningError("Tệp PDF chờ ký không khớp với dữ liệu đã chuẩn bị.")
        return cls(pdf=pdf, field_name=state["field"], document_digest=bytes.fromhex(state["document_digest"]),
                   reserved_region_start=state["reserved_region_start"],
                   reserved_region_end=state["reserved_region_end"],
                   to_be_signed=_unb64(state["signed_attributes"]), certificate=_unb64(state["certificate"]),
                   chain=tuple(_unb64(c) for c in state["chain"]), timestamp_url=state.get("timestamp_url"))


def _external_signer(certificate: x509.Certificate, chain: Sequence[x509.Certificate],
                     signature_value: bytes | int) -> signers.ExternalSigner:
    return signers.ExternalSigner(signing_cert=_asn1(certificate), cert_registry=_registry(chain),
                                  signature_value=signature_value)


def prepare_signature(pdf: bytes, field: str, signer_cert: x509.Certificate, chain: Sequence[x509.Certificate], *,
                      certify: bool, stamp: StampText, timestamp_url: str | None = None,
                      trust_roots: Sequence[x509.Certificate] | None = None) -> PreparedSignature:
    """Put `field`'s signature in place for a key held elsewhere; nothing is signed yet."""
    check_certificate(signer_cert, chain, trust_roots=trust_roots)
    # The placeholder's length only sizes the space reserved in the PDF: the largest raw signature.
    placeholder = 512 if isinstance(signer_cert.public_key(), rsa.RSAPublicKey) else 160
    signer = _external_signer(signer_cert, chain, placeholder)

    async def run() -> PreparedSignature:
        # No DSS now: validation info is embedded (when asked) after the signature is in place.
        prepared = await _prepare(pdf, field, signer, certify=certify, stamp=stamp, timestamp_url=timestamp_url,
                                  trust_roots=None)
        signed_attrs = await signer.signed_attrs(prepared.digest.document_digest, MD_ALGORITHM,
                                                 attr_settings=prepared.attributes, use_pades=True)
        return PreparedSignature(
            pdf=prepared.output.getvalue(), field_name=field, document_digest=prepared.digest.document_digest,
            reserved_region_start=prepared.digest.reserved_region_start,
            reserved_region_end=prepared.digest.reserved_region_end, to_be_signed=signed_attrs.dump(),
            certificate=signer_cert.public_bytes(serialization.Encoding.DER),
            chain=tuple(c.public_bytes(serialization.Encoding.DER) for c in chain), timestamp_url=timestamp_url)

    return asyncio.run(run())


def ecdsa_der_candidates(public_key: ec.EllipticCurvePublicKey, raw: bytes) -> list[bytes]:
    """The DER signatures an ECDSA value may stand for: itself when it is DER, and r || s made DER when it is two
    halves of the curve's size (what PKCS#11 CKM_ECDSA and some services return). One value can be both: an r || s
    begins with 0x30, DER's first byte, once in 256 signatures. The caller keeps the candidate that verifies."""
    candidates = []
    try:
        r, s = decode_dss_signature(raw)
    except ValueError:
        pass
    else:
        if encode_dss_signature(r, s) == raw:
            candidates.append(raw)
    size = (public_key.curve.key_size + 7) // 8
    if len(raw) == 2 * size:
        candidates.append(encode_dss_signature(int.from_bytes(raw[:size], "big"), int.from_bytes(raw[size:], "big")))
    return candidates


def verify_raw_signature(prepared: PreparedSignature, raw_signature: bytes) -> bytes:
    """The raw signature (DER for ECDSA) if it verifies over the signed attributes, else `WrongSignature`."""
    certificate = x509.load_der_x509_certificate(prepared.certificate)
    public_key = certificate.public_key()
    if isinstance(public_key, rsa.RSAPublicKey):
        candidates = [(raw_signature, (padding.PKCS1v15(), hashes.SHA256()))]
    elif isinstance(public_key, ec.EllipticCurvePublicKey):
        ecdsa = (ec.ECDSA(hashes.SHA256()),)
        candidates = [(value, ecdsa) for value in ecdsa_der_candidates(public_key, raw_signature)]
    else:
        raise WrongSignature("Loại khóa của chứng thư số chưa được hỗ trợ.")
    value = first_that_verifies(public_key, prepared.to_be_signed, candidates)
    if value is None:
        raise WrongSignature("Chữ ký nhận về không khớp với chứng thư số của người ký; tài liệu chưa được ký.")
    return value


def first_that_verifies(public_key: Any, data: bytes, candidates: list[tuple[bytes, tuple[Any, ...]]]) -> bytes | None:
    """The first (signature, verification scheme) candidate whose signature verifies over `data`, else None."""
    for value, scheme in candidates:
        try:
            public_key.verify(value, data, *scheme)
        except (InvalidSignature, ValueError):
            continue
        return value
    return None


def finish_signature(prepared: PreparedSignature, raw_signature: bytes, *,
                     trust_roots: Sequence[x509.Certificate] | None = None, level: str | None = None,
                     final: bool = False) -> bytes:
    """The signed PDF: the raw signature (checked first) put into the prepared PDF.

    Works in any process, any time after `prepare_signature`. Finishing twice with the same answer gives
    the same bytes when no timestamp is asked for (with one, each call embeds its own, equally valid,
    token: keep the first result).
    """
    value = verify_raw_signature(prepared, raw_signature)
    certificate = x509.load_der_x509_certificate(prepared.certificate)
    chain = [x509.load_der_x509_certificate(c) for c in prepared.chain]
    signer = _external_signer(certificate, chain, value)
    timestamper = _timestamper(prepared.timestamp_url, level)

    async def run() -> bytes:
        signed_attrs = cms.CMSAttributes.load(prepared.to_be_signed)
        container = await signer.async_sign_prescribed_attributes(MD_ALGORITHM, signed_attrs=signed_attrs,
                                                                  timestamper=timestamper)
        output = BytesIO(prepared.pdf)
        digest = PreparedByteRangeDigest(prepared.document_digest, prepared.reserved_region_start,
                                         prepared.reserved_region_end)
        try:
            digest.fill_with_cms(output, container)
        except Exception as exc:  # pyHanko raises a bare error when the container does not fit
            raise SigningError("Chữ ký nhận về quá dài so với chỗ đã dành trong tệp PDF.") from exc
        return output.getvalue()

    try:
        signed = asyncio.run(run())
    except TimestampRequestError as exc:
        raise _tsa_down(prepared.timestamp_url, exc) from exc
    if level is not None:
        if final and level_at_least(level, "B-LT"):
            signed = complete_long_term(signed, level=level, timestamp_url=prepared.timestamp_url,
                                        trust_roots=trust_roots or [])
    elif trust_roots is not None:
        signed = embed_validation_info(signed, prepared.field_name, trust_roots)
    return signed


def embed_validation_info(pdf: bytes, field: str, trust_roots: Sequence[x509.Certificate]) -> bytes:
    """Add the signature's certificates (and any revocation data the CA publishes) to the PDF's DSS."""
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import add_validation_info

    reader = PdfFileReader(BytesIO(pdf), strict=False)
    embedded = next((s for s in reader.embedded_signatures if s.field_name == field), None)
    if embedded is None:
        raise FieldProblem(f"Tệp PDF không có chữ ký ở ô “{field}”.")
    context = ValidationContext(trust_roots=[_asn1(r) for r in trust_roots], allow_fetching=True)
    output = BytesIO()
    add_validation_info(embedded, context, in_place=False, output=output)
    return output.getvalue()


# --- what a file reaches ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LevelReport:
    """Which PAdES level a file reaches, and why not the next one (a Vietnamese sentence)."""

    level: str | None  # None: not even B-B (no signature)
    missing: str = ""


def _has_signature_timestamp(embedded: Any) -> bool:
    return _timestamp_in(embedded.signer_info)


def _timestamp_in(signer_info: cms.SignerInfo) -> bool:
    unsigned = signer_info["unsigned_attrs"]
    return bool(unsigned) and any(a["type"].native == "signature_time_stamp_token" for a in unsigned)


def _has_signature_timestamp_cms(contents: bytes) -> bool:
    """Whether the CMS container written into a signature's /Contents (padded) carries a signature timestamp."""
    signer_infos = cms.ContentInfo.load(contents, strict=False)["content"]["signer_infos"]
    return len(signer_infos) > 0 and all(_timestamp_in(info) for info in signer_infos)


class _ConfirmedOutputs:
    """Files this process just signed that reach B-T, by their SHA-256: at signing, the engine read every earlier
    signature of the file (from its parse of the file for signing) and the container it wrote for the new one
    (with the timestamp token the authority gave), which is what `signature_level` reads back for B-T. So the
    check that follows each signature (`check_level(signed, "B-T")` in the workflow) need not parse the whole
    file again; any other bytes are read as before."""

    def __init__(self, size: int = 1024) -> None:
        self._digests: OrderedDict[bytes, None] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def add(self, pdf: bytes) -> None:
        digest = hashlib.sha256(pdf).digest()
        with self._lock:
            self._digests[digest] = None
            if len(self._digests) > self._size:
                self._digests.popitem(last=False)

    def __contains__(self, pdf: bytes) -> bool:
        digest = hashlib.sha256(pdf).digest()
        with self._lock:
            return digest in self._digests


_TIMESTAMPED = _ConfirmedOutputs()


def _covered_by_revinfo(cert: asn1_x509.Certificate, ocsp_serials: set[int], crl_issuers: set[bytes]) -> bool:
    return cert.serial_number in ocsp_serials or cert.issuer.dump() in crl_issuers


def signature_level(pdf: bytes) -> LevelReport:
    """The PAdES baseline level `pdf` reaches, read from the file itself.

    B-T: every signature carries a signature timestamp. B-LT: also the DSS holds revocation data (an OCSP
    response for the certificate, or a CRL of its issuer) for every signer's and every timestamp
    authority's certificate. B-LTA: also the last revision is a document timestamp over the whole file.
    """
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.general import extract_certificate_info
    from pyhanko.sign.validation.dss import DocumentSecurityStore
    from pyhanko.sign.validation.errors import ValidationInfoReadingError
    from pyhanko.sign.validation.generic_cms import extract_tst_data_iter

    reader = PdfFileReader(BytesIO(pdf), strict=False)
    signatures = [s for s in reader.embedded_signatures if s.sig_object_type == "/Sig"]
    if not signatures:
        return LevelReport(None, "Tệp không có chữ ký số.")
    untimed = [s.field_name for s in signatures if not _has_signature_timestamp(s)]
    if untimed:
        return LevelReport("B-B", f"Chữ ký ở ô {', '.join(untimed)} không có dấu thời gian.")
    try:
        dss = DocumentSecurityStore.read_dss(reader)
    except ValidationInfoReadingError:
        return LevelReport("B-T", "Tệp không có kho dữ liệu xác thực (DSS).")
    ocsp_serials: set[int] = set()
    crl_issuers: set[bytes] = set()
    for ref in dss.ocsps:
        basic = asn1_ocsp.OCSPResponse.load(ref.get_object().data).basic_ocsp_response
        ocsp_serials.update(single["cert_id"]["serial_number"].native
                            for single in basic["tbs_response_data"]["responses"])
    for ref in dss.crls:
        crl_issuers.add(asn1_crl.CertificateList.load(ref.get_object().data).issuer.dump())
    for embedded in signatures:
        certs = [embedded.signer_cert]
        for tst in extract_tst_data_iter(embedded.signer_info, signed=False):
            certs.append(extract_certificate_info(tst).signer_cert)
        for cert in certs:
            if not _covered_by_revinfo(cert, ocsp_serials, crl_issuers):
                name = cert.subject.native.get("common_name", "?")
                return LevelReport("B-T", f"Kho dữ liệu xác thực thiếu thông tin thu hồi của chứng thư số {name}.")
    from pyhanko.sign.validation.status import SignatureCoverageLevel

    last = reader.embedded_signatures[-1]
    if last.sig_object_type != "/DocTimeStamp" or \
            last.evaluate_signature_coverage() != SignatureCoverageLevel.ENTIRE_FILE:
        return LevelReport("B-LT", "Tệp không kết thúc bằng một dấu thời gian tài liệu.")
    return LevelReport("B-LTA")


def check_level(pdf: bytes, minimum: str) -> None:
    """`BelowLevel` (a Vietnamese message) unless `pdf` reaches `minimum`.

    Up to B-T, a file this process has just signed is known to reach it (`_ConfirmedOutputs`).
    """
    if not level_at_least(minimum, "B-LT") and pdf in _TIMESTAMPED:
        return
    report = signature_level(pdf)
    if report.level is None or not level_at_least(report.level, minimum):
        raise BelowLevel(f"Tệp đã ký chỉ đạt mức {report.level or 'không có chữ ký'}, chưa đạt mức {minimum} đã "
                         f"cấu hình: {report.missing}")


# --- detached signatures over data (not PDFs) ---------------------------------------------------------------


@dataclass(frozen=True)
class DetachedSignature:
    """A CMS SignedData (DER) over some bytes, without them, and whether a TSA timestamped it."""

    cms: bytes = field(repr=False)
    timestamped: bool


def sign_detached(data: bytes, key: ServerKey, *, timestamp_url: str | None = None,
                  trust_roots: Sequence[x509.Certificate] | None = None) -> DetachedSignature:
    """A detached CMS signature over `data` with a server key (what `openssl cms -verify` and pyHanko check).

    The same keys, certificate checks and timestamp authority as the records' signatures; used for
    documents that are not PDFs, such as the audit trail's checkpoints.
    """
    with key.open() as signer:
        return asyncio.run(_sign_detached(data, signer, timestamp_url=timestamp_url, trust_roots=trust_roots))


async def _sign_detached(data: bytes, signer: signers.Signer, *, timestamp_url: str | None,
                         trust_roots: Sequence[x509.Certificate] | None) -> DetachedSignature:
    if hasattr(signer, "ensure_objects_loaded"):
        await signer.ensure_objects_loaded()
    await _check_certificate(signer.signing_cert, list(signer.cert_registry), trust_roots=trust_roots)
    timestamper = _http_timestamper(timestamp_url) if timestamp_url else None
    try:
        signed = await signer.async_sign_general_data(data, MD_ALGORITHM, detached=True, timestamper=timestamper,
                                                      signed_attr_settings=PdfCMSSignedAttributes(
                                                          signing_time=_utcnow()))
    except TimestampRequestError as exc:
        raise _tsa_down(timestamp_url, exc) from exc
    return DetachedSignature(signed.dump(), timestamper is not None)


def validate_detached(data: bytes, signature: bytes, *, trust_roots: Sequence[x509.Certificate],
                      certificate: x509.Certificate | None = None,
                      timestamp_roots: Sequence[x509.Certificate] | None = None) -> dict[str, Any]:
    """pyHanko's judgement of a detached CMS signature: intact, valid, trusted, and the timestamp's.

    `certificate`, when given, must be the signer's (the district's registered certificate).
    """
    from pyhanko.sign.validation.generic_cms import async_validate_detached_cms

    content = cms.ContentInfo.load(signature)
    roots = [_asn1(r) for r in trust_roots]
    ts_roots = [_asn1(r) for r in (timestamp_roots if timestamp_roots is not None else trust_roots)]
    status = asyncio.run(async_validate_detached_cms(
        data, content["content"], signer_validation_context=ValidationContext(trust_roots=roots),
        ts_validation_context=ValidationContext(trust_roots=ts_roots or roots)))
    signer = status.signing_cert
    same = certificate is None or signer.dump() == certificate.public_bytes(serialization.Encoding.DER)
    timestamp = status.timestamp_validity
    return {"intact": status.intact, "valid": status.valid, "trusted": status.trusted, "signer_is_expected": same,
            "signer": signer.subject.native.get("common_name", ""),
            "timestamp_at": None if timestamp is None else timestamp.timestamp,
            "timestamp_trusted": None if timestamp is None else bool(timestamp.intact and timestamp.valid
                                                                      and timestamp.trusted)}
