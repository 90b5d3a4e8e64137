"""What signing tests need: a demo PKI, record-like PDFs with the three empty signature fields, a
SoftHSM token holding a key, and a local RFC 3161 timestamp authority (certomancer, over real HTTP)."""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.sign import fields
from reportlab.pdfgen import canvas

from portal.records.content import SIGNATURE_FIELDS
from portal.signing import pki
from portal.signing.engine import signature_field_spec
from portal.signing.stamp import StampText, stamp_for_field
from tests.tools import require_softhsm

SCHOOL_NAME = "Trường Tiểu học Lê Quang Định"
PASSPHRASE = "mat-khau-p12"


@dataclass(frozen=True)
class DemoPki:
    ca: pki.DemoCA
    gvcn: pki.IssuedCertificate
    principal: pki.IssuedCertificate
    seal: pki.IssuedCertificate

    @property
    def roots(self) -> list:
        return [self.ca.root]

    def by_field(self, field: str) -> pki.IssuedCertificate:
        return {"gvcn": self.gvcn, "hieu_truong": self.principal, "con_dau": self.seal}[field]


def make_demo_pki(key_type: pki.KeyType = "ec") -> DemoPki:
    ca = pki.create_ca(key_type=key_type)
    return DemoPki(
        ca,
        ca.issue_person("Nguyễn Thị Thu Hương", title="Giáo viên chủ nhiệm", organisation=SCHOOL_NAME,
                        key_type=key_type),
        ca.issue_person("Võ Thị Lài", title="Hiệu trưởng", organisation=SCHOOL_NAME, key_type=key_type),
        ca.issue_organisation(SCHOOL_NAME, locality="Nhà Bè", key_type=key_type),
    )


def stamp(field: str, issued: pki.IssuedCertificate) -> StampText:
    return stamp_for_field(field, pki.describe(issued.certificate).common_name, school_name=SCHOOL_NAME)


def record_pdf(*, locked_fields: bool = False, pages: int = 1) -> bytes:
    """A small record-like PDF with the three empty signature fields on its last page."""
    buffer = BytesIO()
    page = canvas.Canvas(buffer)
    for number in range(pages):
        page.drawString(72, 760, f"Hoc ba so - trang {number + 1}")
        page.showPage()
    page.save()
    writer = IncrementalPdfFileWriter(BytesIO(buffer.getvalue()))
    for i, name in enumerate(SIGNATURE_FIELDS):
        box = (40 + i * 180, 80, 210 + i * 180, 150)
        spec = (signature_field_spec(name, page=pages - 1, box=box) if locked_fields
                else fields.SigFieldSpec(name, on_page=pages - 1, box=box))
        fields.append_signature_field(writer, spec)
    output = BytesIO()
    writer.write(output)
    return output.getvalue()


def flip_byte(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1:]


def certificate_row(app, user, school_id: int | None = None) -> int:
    """A person's .p12 certificate as a bare row (for pages that read the row only, never the key); its id."""
    from datetime import UTC, datetime, timedelta

    from portal.extensions import db
    from tenants.certificates import KeyKind, PersonCertificate

    now = datetime.now(UTC)
    with app.app_context():
        row = PersonCertificate(user_id=user.id, school_id=school_id, common_name=user.full_name,
                                subject=f"CN={user.full_name}", issuer="CN=CA", serial="01", fingerprint="0" * 64,
                                not_before=now - timedelta(days=1), not_after=now + timedelta(days=300),
                                certificate=b"der", key_kind=KeyKind.PKCS12, pkcs12_digest="0" * 64)
        db.session.add(row)
        db.session.commit()
        return row.id


# --- SoftHSM ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SoftHsmToken:
    module: str
    label: str
    pin: str
    key_label: str


def softhsm_token(folder: Path, issued: pki.IssuedCertificate, *, label: str = "hocba", pin: str = "123456",
                  key_label: str = "signer") -> SoftHsmToken:
    """A fresh SoftHSM token in `folder` holding `issued`'s key and certificate.

    Points SOFTHSM2_CONF at the folder (the caller restores it, e.g. with monkeypatch) and re-initialises
    the module if this process loaded it already, so that it reads the new configuration.
    """
    module = require_softhsm()
    tokens = folder / "tokens"
    tokens.mkdir(parents=True)
    conf = folder / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    run = dict(check=True, capture_output=True, env=dict(os.environ))
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", label, "--pin", pin, "--so-pin", "so-" + pin],
                   **run)
    key_file, cert_file = folder / "key.der", folder / "cert.der"
    key_file.write_bytes(issued.key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
    cert_file.write_bytes(issued.certificate.public_bytes(serialization.Encoding.DER))
    tool = ["pkcs11-tool", "--module", module, "--token-label", label, "--login", "--pin", pin]
    subprocess.run([*tool, "--write-object", str(key_file), "--type", "privkey", "--id", "01", "--label", key_label,
                    "--usage-sign"], **run)
    subprocess.run([*tool, "--write-object", str(cert_file), "--type", "cert", "--id", "01", "--label", key_label],
                   **run)
    key_file.unlink()
    import pkcs11

    loaded = pkcs11._loaded.get(module)  # python-pkcs11 keeps one handle per module
    if loaded is not None and loaded.initialized:
        loaded.reinitialize()
    return SoftHsmToken(module, label, pin, key_label)


# --- a local timestamp authority ------------------------------------------------------------------------------


CERTOMANCER_CONFIG = """
external-url-prefix: "{url}"
keysets:
  tsa-test:
    path-prefix: "{keys}"
    keys:
      root: {{path: root.key.pem}}
      tsa: {{path: tsa.key.pem}}
pki-architectures:
  hocba-tsa:
    keyset: tsa-test
    entity-defaults: {{country-name: VN, organization-name: "KHÔNG DÙNG THẬT - TSA thử nghiệm"}}
    entities:
      root: {{common-name: "TSA Root thử nghiệm"}}
      tsa: {{common-name: "Time Stamping Authority thử nghiệm"}}
    certs:
      root:
        subject: root
        issuer: root
        validity: {{valid-from: "2020-01-01T00:00:00+0000", valid-to: "2100-01-01T00:00:00+0000"}}
        extensions:
          - {{id: basic_constraints, critical: true, value: {{ca: true}}}}
          - id: key_usage
            critical: true
            smart-value: {{schema: key-usage, params: [digital_signature, key_cert_sign, crl_sign]}}
      tsa:
        issuer: root
        validity: {{valid-from: "2020-01-01T00:00:00+0000", valid-to: "2100-01-01T00:00:00+0000"}}
        extensions:
          - id: key_usage
            critical: true
            smart-value: {{schema: key-usage, params: [digital_signature]}}
          - {{id: extended_key_usage, critical: true, value: [time_stamping]}}
    services:
      time-stamping:
        tsa: {{signing-key: tsa, signing-cert: tsa}}
"""


@dataclass(frozen=True)
class LocalTsa:
    url: str
    root: object  # cryptography x509.Certificate


@contextmanager
def local_tsa(folder: Path) -> Iterator[LocalTsa]:
    """certomancer's timestamp authority served over HTTP on 127.0.0.1 for the block's duration."""
    from certomancer.integrations.animator import Animator, AnimatorArchStore
    from certomancer.registry import ArchLabel, CertLabel, CertomancerConfig
    from cryptography import x509
    from werkzeug.serving import make_server

    keys = folder / "keys"
    keys.mkdir(parents=True, exist_ok=True)
    for name in ("root", "tsa"):
        key = pki.new_key("ec")
        (keys / f"{name}.key.pem").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    server = make_server("127.0.0.1", 0, lambda environ, start: app(environ, start), threaded=True)
    base = f"http://127.0.0.1:{server.server_port}"
    config = CertomancerConfig.from_yaml(CERTOMANCER_CONFIG.format(url=base, keys=keys), key_search_dir=str(keys))
    arch = config.get_pki_arch(ArchLabel("hocba-tsa"))
    app = Animator(AnimatorArchStore({ArchLabel("hocba-tsa"): arch}), with_web_ui=False)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        root = x509.load_der_x509_certificate(arch.get_cert(CertLabel("root")).dump())
        yield LocalTsa(f"{base}/hocba-tsa/tsa/tsa", root)
    finally:
        server.shutdown()
        thread.join(timeout=5)


# --- the demo CA's services (standins/pki) -----------------------------------------------------------------------


@contextmanager
def pki_standin(folder: Path) -> Iterator[str]:
    """standins/pki (timestamps, OCSP, CRLs) for the demo CA of `folder`, over HTTP on 127.0.0.1; yields its
    address. The CA is created here, once the address is known, so that its certificates name it."""
    from werkzeug.serving import WSGIRequestHandler, make_server

    from standins.pki import create_app

    class Quiet(WSGIRequestHandler):
        def log_request(self, *args: object, **kwargs: object) -> None:  # ~10 requests per issued record
            pass

    server = make_server("127.0.0.1", 0, create_app(folder), threaded=True, request_handler=Quiet)
    url = f"http://127.0.0.1:{server.server_port}"
    pki.create_demo_ca(folder, service_url=url)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield url
    finally:
        server.shutdown()
        thread.join(timeout=5)
