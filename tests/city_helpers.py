"""The stand-in city server on 127.0.0.1 port 0 for tests, and issued record versions to send it.

The versions built here are real `RecordVersion` rows in the `issued` state whose "signed" PDF is a small
PDF carrying the version's XML (the real exporter's, schema-valid) as hocba.xml. They exercise the
transport, the contract's checks of hash, XML, schema and metadata, and the fault handling; the tests
that need real signatures sign records with the signing engine instead.
"""

from __future__ import annotations

import io
import json
import threading
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask
from werkzeug.serving import BaseWSGIServer, make_server

from portal.extensions import db, utcnow
from portal.records import exporters
from portal.records.models import RecordStatus, RecordVersion
from portal.storage import storage
from standins.city import create_app as create_city_app
from tenants.models import School
from tenants.scoping import school_scope
from tests.assessment_factory import make_class, make_year
from tests.record_factory import sample_content

API_KEY = "khoa-thu-nghiem-cua-phong"
NO_SIGNATURES = ("hash", "xml", "schema", "metadata")


@dataclass
class Standin:
    url: str
    server: BaseWSGIServer
    app: Flask
    data: Path

    def behave(self, **settings: Any) -> dict[str, Any]:
        return _json(self.url + "/_standin/behaviour", settings)

    def log(self) -> list[dict[str, Any]]:
        return _json(self.url + "/_standin/log")

    def records(self) -> list[dict[str, Any]]:
        return _json(self.url + "/_standin/records")

    def stored(self) -> Counter[str]:
        """How many times each record code was stored: the log's proof that nothing was stored twice."""
        return Counter(e["record_code"] for e in self.log() if e["outcome"].startswith("stored"))

    def posts(self) -> Counter[str]:
        """How many uploads (POST /api/v1/records) were sent per record code."""
        return Counter(e["record_code"] for e in self.log() if e["method"] == "POST" and e["path"] == "/api/v1/records")


def _json(url: str, body: dict[str, Any] | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method="POST" if body is not None else "GET",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as response:
        return json.loads(response.read())


@contextmanager
def standin(folder: Path, *, checks: tuple[str, ...] = NO_SIGNATURES, trust_roots: list[Any] | None = None
            ) -> Iterator[Standin]:
    """The stand-in served over real HTTP on a free loopback port, in a thread, for the block."""
    app = create_city_app(folder, api_keys={API_KEY: "nhabe"}, checks=checks, trust_roots=trust_roots)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="city-standin", daemon=True)
    thread.start()
    try:
        yield Standin(f"http://127.0.0.1:{server.server_port}", server, app, folder)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
        app.extensions["city"]["store"].close()


def record_pdf(xml: bytes | None) -> bytes:
    """A one-page PDF carrying `xml` as hocba.xml (no XML at all with None)."""
    from pypdf import PdfWriter

    writer = PdfWriter()
    writer.add_blank_page(width=595, height=842)
    if xml is not None:
        writer.add_attachment("hocba.xml", xml)
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def content_for(code: str, pupil_code: str, *, moet_code: str = "79786401", number: int = 1) -> dict[str, Any]:
    content = sample_content(code=code, number=number)
    content["pupil"]["pupil_code"] = pupil_code
    content["school"]["moet_code"] = moet_code
    return content


def metadata_for(content: dict[str, Any], pdf: bytes) -> dict[str, Any]:
    import hashlib

    return {"record_code": content["record"]["code"], "version_number": content["record"]["number"],
            "school_moet_code": content["school"]["moet_code"], "pupil_code": content["pupil"]["pupil_code"],
            "school_year": content["years"][-1]["school_year"], "grade": content["record"]["scope_grade"],
            "issuing_school_name": content["school"]["name"], "sha256": hashlib.sha256(pdf).hexdigest()}


@dataclass(frozen=True)
class IssuedClass:
    school: School
    year_id: int
    class_id: int
    version_ids: list[int]
    codes: list[str]


def issued_class(app: Flask, school: School, *, pupils: int, name: str = "5A", year_id: int | None = None,
                 code_prefix: str = "HB") -> IssuedClass:
    """A class of `pupils` pupils, each with one issued version whose PDF carries its XML."""
    year_id = year_id or make_year(app, school)
    setup = make_class(app, school, year_id, name, pupils=pupils)
    ids, codes = [], []
    with app.app_context(), school_scope(school.id):
        for n, pupil_id in enumerate(setup.pupil_ids):
            code = f"{code_prefix}{school.id:02d}{setup.class_id:03d}{n:04d}"[:16]
            pupil_code = f"P{school.id:02d}{setup.class_id:03d}{n:04d}"
            from portal.assessment.models import Pupil

            db.session.get(Pupil, pupil_id).pupil_code = pupil_code
            content = content_for(code, pupil_code, moet_code=school.moet_code or "79786401")
            xml = exporters.export_xml(content)
            pdf = record_pdf(xml)
            version = RecordVersion(school_id=school.id, pupil_id=pupil_id, school_year_id=year_id,
                                    class_id=setup.class_id, grade=int(name[0]), number=1, code=code,
                                    status=RecordStatus.ISSUED, content=content, source_hash="0" * 64,
                                    content_hash=exporters.content_hash(content), draft_digest=storage().put(pdf),
                                    xml_digest=storage().put(xml), signed_digest=storage().put(pdf),
                                    issued_at=utcnow())
            db.session.add(version)
            db.session.flush()
            ids.append(version.id)
            codes.append(code)
        db.session.commit()
    return IssuedClass(school, year_id, setup.class_id, ids, codes)


def issue_correction(app: Flask, school: School, version_id: int, reason: str) -> str:
    """Supersede an issued version by an issued correction (number + 1); the correction's code."""
    with app.app_context(), school_scope(school.id):
        old = db.session.get(RecordVersion, version_id)
        code = (old.code[:-1] + "C")[:16]
        content = content_for(code, old.content["pupil"]["pupil_code"], moet_code=old.content["school"]["moet_code"],
                              number=old.number + 1)
        content["record"]["replaces"] = old.code
        xml = exporters.export_xml(content)
        pdf = record_pdf(xml)
        db.session.add(RecordVersion(school_id=school.id, pupil_id=old.pupil_id, school_year_id=old.school_year_id,
                                     class_id=old.class_id, grade=old.grade, number=old.number + 1, code=code,
                                     replaces_id=old.id, status=RecordStatus.ISSUED, content=content,
                                     source_hash="1" * 64, content_hash=exporters.content_hash(content),
                                     draft_digest=storage().put(pdf), xml_digest=storage().put(xml),
                                     signed_digest=storage().put(pdf), issued_at=utcnow()))
        old.status, old.status_reason = RecordStatus.SUPERSEDED, reason
        db.session.commit()
        return code


def signed_record(content: dict[str, Any], demo: Any) -> bytes:
    """The record's real PDF (its XML attached), signed by the GVCN, the principal and the school's seal."""
    from portal.records.pdf import render_pdf
    from portal.signing.engine import Pkcs12Key, sign_field
    from tests.signing_factory import PASSPHRASE, stamp

    pdf = render_pdf(content, xml=exporters.export_xml(content))
    for n, field in enumerate(("gvcn", "hieu_truong", "con_dau")):
        issued = demo.by_field(field)
        key = Pkcs12Key(issued.pkcs12(PASSPHRASE, kdf_rounds=1), PASSPHRASE)
        pdf = sign_field(pdf, field, key, certify=n == 0, stamp=stamp(field, issued))
    return pdf


def tampered(pdf: bytes) -> bytes:
    """The signed PDF with one byte of its signed content changed, its XML still readable."""
    from portal.interop.received import embedded_xml

    start = len(pdf) // 5
    for at in range(start, start + 4000, 97):
        if pdf[at:at + 1].isalnum():
            changed = pdf[:at] + (b"0" if pdf[at:at + 1] != b"0" else b"1") + pdf[at + 1:]
            xml = embedded_xml(changed)
            if xml is not None and xml == embedded_xml(pdf):
                return changed
    raise AssertionError("no byte to change found")


def returned_to(url: str, pdf: bytes, metadata: dict[str, Any]) -> int:
    """Put a record into the stand-in's returned feed; its return id."""
    from portal.interop.city_client import _multipart

    body, content_type = _multipart({"metadata": json.dumps(metadata, ensure_ascii=False)},
                                    {"file": ("hocba.pdf", "application/pdf", pdf)})
    req = urllib.request.Request(url + "/_standin/returned", data=body, method="POST",
                                 headers={"Content-Type": content_type})
    with urllib.request.urlopen(req, timeout=10) as response:
        return int(json.loads(response.read())["return_id"])


def roots_file(folder: Path, roots: list[Any]) -> str:
    from portal.signing import pki

    path = folder / "roots.pem"
    path.write_text(pki.certificates_pem(roots))
    return str(path)


def exchange_objects(app: Flask, make: Any, school: School, version_id: int) -> dict[str, int]:
    """One object of every kind an exchange URL names, of `school`: an upload of the given version, a
    received record, and a transfer to `school` from a school of its own (for the URL walkers)."""
    from portal.assessment.models import Pupil
    from portal.interop.models import CityUpload, PupilTransfer, ReceivedRecord, ReceivedSource, ReceivedState

    sender = make.school(f"gui-{school.code}", f"Trường Tiểu học gửi {school.code}")
    with app.app_context(), school_scope(sender.id):
        pupil = Pupil(school_id=sender.id, pupil_code=f"CT{school.id:04d}", full_name="Trần Minh Khoa")
        db.session.add(pupil)
        db.session.flush()
        transfer = PupilTransfer(school_id=sender.id, pupil_id=pupil.id, to_school_id=school.id,
                                 pupil_code=pupil.pupil_code, pupil_name=pupil.full_name, reason="Chuyển nơi ở")
        db.session.add(transfer)
        db.session.commit()
        transfer_id = transfer.id
    with app.app_context(), school_scope(school.id):
        version = db.session.get(RecordVersion, version_id)
        upload = CityUpload(school_id=school.id, record_version_id=version.id, record_code=version.code,
                            school_year_id=version.school_year_id, grade=version.grade, payload={},
                            pdf_digest=version.signed_digest or version.draft_digest)
        received = ReceivedRecord(school_id=school.id, source=ReceivedSource.CITY, external_ref=f"city:{school.id}",
                                  pupil_code="7978640123", record_code="HB0000000001", state=ReceivedState.REFUSED,
                                  reason="Chữ ký số không hợp lệ.", pdf_digest=storage().put(record_pdf(None)))
        db.session.add_all([upload, received])
        db.session.commit()
        return {"upload_id": upload.id, "received_id": received.id, "transfer_id": transfer_id}
