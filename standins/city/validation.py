"""What the stand-in checks in an upload: the hash, the embedded XML, its schema, the metadata, the signatures.

Schema and signature checks use the portal's own record exporter and signature validator when they are
installed next to the stand-in, so the stand-in judges records exactly as the contract says the city does.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from standins.city.errors import CityError, error

CHECKS = ("hash", "xml", "schema", "metadata", "signatures")


def embedded_xml(pdf: bytes) -> bytes | None:
    """The first embedded .xml file of a PDF, or None."""
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(pdf))
        attachments = reader.attachments
    except (PdfReadError, ValueError, KeyError, TypeError):
        return None
    for name in sorted(attachments):
        if name.lower().endswith(".xml") and attachments[name]:
            return attachments[name][0]
    return None


def check_upload(pdf: bytes, metadata: dict[str, Any], *, checks: Iterable[str], trust_roots: list[Any]) -> None:
    """Raise a CityError naming the first thing wrong with an upload; return quietly when it is acceptable."""
    checks = set(checks)
    if "hash" in checks and hashlib.sha256(pdf).hexdigest() != metadata.get("sha256"):
        raise error("HASH_MISMATCH")
    xml = embedded_xml(pdf) if checks & {"xml", "schema", "metadata"} else None
    if checks & {"xml", "schema", "metadata"} and xml is None:
        raise error("XML_MISSING")
    content = _parsed(xml, validate="schema" in checks) if xml is not None else None
    if "metadata" in checks and xml is not None:
        _check_metadata(xml, content, metadata)
    if "signatures" in checks:
        check_signatures(pdf, trust_roots)


def _parsed(xml: bytes, *, validate: bool) -> dict[str, Any] | None:
    try:
        from portal.records import exporters
    except ImportError:
        if validate:
            _well_formed(xml)
        return None
    try:
        return exporters.parse_xml(xml)
    except Exception as exc:  # whatever the parser's complaint, the answer is the same: not our schema
        raise error("SCHEMA_INVALID", str(exc)[:300]) from exc


def _well_formed(xml: bytes) -> None:
    from lxml import etree

    try:
        etree.fromstring(xml)
    except etree.XMLSyntaxError as exc:
        raise error("SCHEMA_INVALID", str(exc)[:300]) from exc


def _check_metadata(xml: bytes, content: dict[str, Any] | None, metadata: dict[str, Any]) -> None:
    if content is None:  # no parser at hand: the record code must at least appear in the XML
        if str(metadata.get("record_code", "")).encode() not in xml:
            raise error("METADATA_MISMATCH", "record_code")
        return
    expected = {"record_code": content["record"]["code"], "version_number": content["record"]["number"],
                "pupil_code": content["pupil"]["pupil_code"], "school_moet_code": content["school"]["moet_code"]}
    for key, value in expected.items():
        if value is not None and str(metadata.get(key)) != str(value):
            raise error("METADATA_MISMATCH", key)


def check_signatures(pdf: bytes, trust_roots: list[Any]) -> None:
    """All three signatures present, intact, valid and chained to a configured trust root."""
    try:
        from portal.signing.validate import validate_pdf
    except ImportError as exc:
        raise error("INTERNAL", "signature validation is not installed") from exc
    report = validate_pdf(pdf, trust_roots)
    detail = "; ".join(report.problems[:3])[:300]
    if report.ok:
        return
    if not report.readable or not report.all_fields_signed:
        raise error("SIGNATURE_MISSING", detail)
    if not all(s.intact and s.valid for s in report.signatures):
        raise error("SIGNATURE_INVALID", detail)
    if not all(s.trusted for s in report.signatures):
        raise error("SIGNATURE_UNTRUSTED", detail)
    raise error("SIGNATURE_INVALID", detail)


def load_trust_roots(paths: Iterable[str]) -> list[Any]:
    """Certificates (PEM bundles or DER files) to trust, as the signature validator takes them."""
    from cryptography import x509

    roots: list[Any] = []
    for path in paths:
        data = Path(path).read_bytes()
        if b"-----BEGIN CERTIFICATE-----" in data:
            roots.extend(x509.load_pem_x509_certificates(data))
        else:
            roots.append(x509.load_der_x509_certificate(data))
    return roots


def reject_with(settings: dict[str, Any]) -> CityError:
    """The rejection the stand-in was told to answer with (POST /_standin/behaviour)."""
    base = error(settings.get("code") or "REJECTED_BY_CITY")
    return CityError(base.code, base.status, settings.get("message") or base.message,
                     settings.get("action") or base.action, base.retry)
