"""The stand-in of a certification authority's public services, for the demo CA: RFC 3161 timestamps,
OCSP and CRLs over real HTTP.

A small Flask app, started with `python -m standins.pki --folder instance/pki --port 5200` (`./dev.sh demo`
starts it beside the portal). It serves the demo CA of that folder (`portal/signing/pki.py` creates it,
naming this service's address in every certificate it issues):

    POST /tsa                 RFC 3161 timestamp (application/timestamp-query -> -reply), by the demo TSA
    POST /ocsp, GET /ocsp/..  OCSP (RFC 6960) for certificates of the issuing CA and of the root
    GET  /crl/issuing.crl     the issuing CA's CRL;  /crl/root.crl the root's (covering the issuing CA)
    GET  /certs/issuing.cer   the CA certificates (Authority Information Access "CA issuers")

The folder is read when asked, not at start-up: the service may start before the portal creates the CA.
A certificate marked with `portal.signing.pki.revoke` is answered revoked from then on. Status "good" is
given for any other serial of the CA (the stand-in keeps no register of what the CA issued).

`POST /_standin/behaviour {"down": true}` makes every service answer 503 (and `{"down": false}` brings
them back): how the portal's handling of an unreachable authority is shown.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import threading
from pathlib import Path
from typing import Any

from asn1crypto import tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509 import ocsp
from flask import Flask, Response, jsonify, request

from portal.signing import pki

NEXT_UPDATE = dt.timedelta(days=7)
HASHES = {"sha1": hashes.SHA1, "sha256": hashes.SHA256, "sha384": hashes.SHA384, "sha512": hashes.SHA512}


class Authority:
    """The demo CA of a folder, reloaded when its files change (the portal may create it after we start)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._lock = threading.Lock()
        self._stamp: float | None = None
        self.ca: pki.DemoCA | None = None
        self.tsa: pki.IssuedCertificate | None = None
        self.stamper: _Stamper | None = None  # the TSA's signing set-up, made once per loaded key
        self.down = False
        self.served: dict[str, int] = {}  # requests per service (tsa, ocsp, crl), for tests and the curious

    def load(self) -> pki.DemoCA | None:
        key_file = self.folder / pki.ISSUING_KEY_FILE
        with self._lock:
            stamp = key_file.stat().st_mtime if key_file.exists() else None
            if stamp != self._stamp:
                self.ca = pki.load_demo_ca(self.folder) if stamp is not None else None
                self.tsa = pki.load_demo_tsa(self.folder) if stamp is not None else None
                self.stamper = _Stamper(self.tsa) if self.tsa is not None else None
                self._stamp = stamp
            return self.ca


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _key_hash(certificate: x509.Certificate, algorithm: hashes.HashAlgorithm) -> bytes:
    digest = hashes.Hash(algorithm)
    digest.update(asn1_x509.Certificate.load(certificate.public_bytes(serialization.Encoding.DER))
                  .public_key["public_key"].contents[1:])  # the BIT STRING's bytes, without its unused-bits byte
    return digest.finalize()


def _ocsp_answer(authority: Authority, der: bytes) -> Response:
    ca = authority.load()
    try:
        asked = ocsp.load_der_ocsp_request(der)
    except ValueError:
        return _ocsp_error(ocsp.OCSPResponseStatus.MALFORMED_REQUEST)
    if ca is None:
        return _ocsp_error(ocsp.OCSPResponseStatus.TRY_LATER)
    algorithm = asked.hash_algorithm
    # The CA that issued the certificate asked about answers for it, signing the answer itself.
    issuers = [(ca.issuing, ca.issuing_key)] + ([(ca.root, ca.root_key)] if ca.root_key is not None else [])
    found = next(((cert, key) for cert, key in issuers if _key_hash(cert, algorithm) == asked.issuer_key_hash),
                 None)
    if found is None:
        return _ocsp_error(ocsp.OCSPResponseStatus.UNAUTHORIZED)
    issuer, key = found
    revoked = pki.revoked_serials(authority.folder).get(asked.serial_number)
    now = _now()
    builder = ocsp.OCSPResponseBuilder().add_response_by_hash(
        issuer_name_hash=asked.issuer_name_hash, issuer_key_hash=asked.issuer_key_hash,
        serial_number=asked.serial_number, algorithm=algorithm,
        cert_status=ocsp.OCSPCertStatus.REVOKED if revoked else ocsp.OCSPCertStatus.GOOD,
        this_update=now, next_update=now + NEXT_UPDATE, revocation_time=revoked,
        revocation_reason=x509.ReasonFlags.unspecified if revoked else None,
    ).responder_id(ocsp.OCSPResponderEncoding.HASH, issuer)
    try:
        nonce = asked.extensions.get_extension_for_class(x509.OCSPNonce).value
        builder = builder.add_extension(nonce, critical=False)
    except x509.ExtensionNotFound:
        pass
    answer = builder.sign(key, hashes.SHA256())  # type: ignore[arg-type]
    return Response(answer.public_bytes(serialization.Encoding.DER), mimetype="application/ocsp-response")


def _ocsp_error(status: ocsp.OCSPResponseStatus) -> Response:
    answer = ocsp.OCSPResponseBuilder.build_unsuccessful(status)
    return Response(answer.public_bytes(serialization.Encoding.DER), mimetype="application/ocsp-response")


def _crl(authority: Authority, which: str) -> Response:
    ca = authority.load()
    if ca is None:
        return Response("the demo CA does not exist yet", status=503)
    if which == "root":
        if ca.root_key is None:
            return Response("the root's key is not kept in this folder", status=404)
        issuer, key, covers = ca.root, ca.root_key, {ca.issuing.serial_number}
    else:
        issuer, key, covers = ca.issuing, ca.issuing_key, None
    now = _now()
    builder = (x509.CertificateRevocationListBuilder().issuer_name(issuer.subject)
               .last_update(now).next_update(now + NEXT_UPDATE)
               .add_extension(x509.CRLNumber(int(now.timestamp())), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()),  # type: ignore[arg-type]
                              critical=False))
    for serial, moment in pki.revoked_serials(authority.folder).items():
        # One register for the folder: each CRL lists only what its CA issued (the root: the issuing CA).
        if covers is not None and serial not in covers:
            continue
        if covers is None and serial == ca.issuing.serial_number:
            continue
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(moment).build())
    crl = builder.sign(key, hashes.SHA256())  # type: ignore[arg-type]
    return Response(crl.public_bytes(serialization.Encoding.DER), mimetype="application/pkix-crl")


class _Stamper:
    """The demo TSA's signing set-up, made once per loaded key. A real authority keeps its key loaded (in an
    HSM); pyHanko's `DummyTimeStamper` parses it again for every token, which cost ~30 ms of CPU per timestamp
    (the RSA key's consistency checks), more than the portal's whole signature it stamps."""

    def __init__(self, tsa: pki.IssuedCertificate) -> None:
        if not isinstance(tsa.key, rsa.RSAPrivateKey):
            raise ValueError("the demo timestamp authority signs with RSA")
        self.key = tsa.key
        self.certificate = asn1_x509.Certificate.load(tsa.certificate.public_bytes(serialization.Encoding.DER))
        self.chain = [asn1_x509.Certificate.load(c.public_bytes(serialization.Encoding.DER)) for c in tsa.chain]

    def answer(self, asked: tsp.TimeStampReq) -> tsp.TimeStampResp:
        stamper = _loaded_key_stamper()(self, tsa_cert=self.certificate, tsa_key=None, certs_to_embed=self.chain,
                                        fixed_dt=dt.datetime.now(dt.UTC))
        return stamper.request_tsa_response(asked)


@functools.cache
def _loaded_key_stamper() -> type:
    """pyHanko's `DummyTimeStamper` (the token's content and form), signing with the key already loaded."""
    from asn1crypto import cms, core
    from pyhanko.sign import general
    from pyhanko.sign.timestamps.dummy_client import DummyTimeStamper

    class LoadedKeyStamper(DummyTimeStamper):
        def __init__(self, setup: _Stamper, **options: Any) -> None:
            super().__init__(**options)  # its `tsa_key` is None: `_sign_tst_info` signs with the set-up's key
            self.setup = setup

        def _sign_tst_info(self, tst_info_data: bytes, md_algorithm: str,
                           moment: dt.datetime) -> tuple[bytes, cms.CMSAttributes]:
            algorithm = HASHES[md_algorithm]()
            digest = hashes.Hash(algorithm)
            digest.update(tst_info_data)
            signed_attrs = cms.CMSAttributes([
                general.simple_cms_attribute("content_type", "tst_info"),
                general.simple_cms_attribute("signing_time", cms.Time({"utc_time": core.UTCTime(moment)})),
                general.simple_cms_attribute("signing_certificate",
                                             general.as_signing_certificate(self.setup.certificate)),
                general.simple_cms_attribute("message_digest", digest.finalize()),
            ])
            return self.setup.key.sign(signed_attrs.dump(), padding.PKCS1v15(), algorithm), signed_attrs

    return LoadedKeyStamper


def _timestamp(authority: Authority, der: bytes) -> Response:
    authority.load()
    stamper = authority.stamper
    if stamper is None:
        return Response("the demo CA has no timestamp authority certificate", status=503)
    try:
        asked = tsp.TimeStampReq.load(der)
        asked.native  # noqa: B018 -- parses every part now, so a malformed request is refused here
    except ValueError:
        return Response("not an RFC 3161 timestamp request", status=400)
    if asked["message_imprint"]["hash_algorithm"]["algorithm"].native not in HASHES:
        return Response("unsupported hash algorithm", status=400)
    return Response(stamper.answer(asked).dump(), mimetype="application/timestamp-reply")


def create_app(folder: Path) -> Flask:
    app = Flask(__name__)
    authority = Authority(folder)
    app.extensions["pki_standin"] = authority

    @app.before_request
    def _down() -> Response | None:
        service = request.path.strip("/").split("/")[0]
        authority.served[service] = authority.served.get(service, 0) + 1
        if authority.down and not request.path.startswith("/_standin/"):
            return Response("the stand-in was told to be down", status=503)
        return None

    @app.post("/tsa")
    def timestamp() -> Response:
        return _timestamp(authority, request.get_data())

    @app.post("/ocsp")
    def ocsp_post() -> Response:
        return _ocsp_answer(authority, request.get_data())

    @app.get("/ocsp/<path:encoded>")
    def ocsp_get(encoded: str) -> Response:
        try:
            der = base64.b64decode(encoded.replace("%2F", "/").replace("%2B", "+").replace("%3D", "="))
        except ValueError:
            return _ocsp_error(ocsp.OCSPResponseStatus.MALFORMED_REQUEST)
        return _ocsp_answer(authority, der)

    @app.get("/crl/<which>.crl")
    def crl(which: str) -> Response:
        if which not in ("root", "issuing"):
            return Response("no such CRL", status=404)
        return _crl(authority, which)

    @app.get("/certs/<which>.cer")
    def certificate(which: str) -> Response:
        ca = authority.load()
        if ca is None or which not in ("root", "issuing"):
            return Response("no such certificate", status=404)
        cert = ca.root if which == "root" else ca.issuing
        return Response(cert.public_bytes(serialization.Encoding.DER), mimetype="application/pkix-cert")

    @app.post("/_standin/behaviour")
    def behaviour() -> Any:
        changes = request.get_json(silent=True) or {}
        if "down" in changes:
            authority.down = bool(changes["down"])
        return jsonify({"down": authority.down, "served": authority.served})

    return app
