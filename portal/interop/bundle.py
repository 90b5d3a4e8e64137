"""The ministry bundle: every current issued record of a school (or of the district) for a school year,
PDF and XML, with a manifest.json of ids, versions and SHA-256 hashes, written as a ZIP stream.

The ZIP is produced piece by piece (zipfile writes data descriptors to a stream it cannot seek), so a
district's bundle of thousands of records is sent while it is made, never held in memory whole.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa

from portal.assessment.models import Pupil, SchoolYear
from portal.extensions import db, utcnow
from portal.records.models import RecordStatus, RecordVersion
from portal.storage import storage
from tenants.models import School

MANIFEST_FORMAT = 1


class _Pipe:
    """A write-only file whose written bytes are collected for the generator to hand on."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.offset = 0

    def write(self, data: bytes) -> int:
        self.chunks.append(bytes(data))
        self.offset += len(data)
        return len(data)

    def tell(self) -> int:
        return self.offset

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data, self.chunks = b"".join(self.chunks), []
        return data


def bundle_query(school_ids: list[int] | None, school_year: str) -> sa.Select[tuple[RecordVersion, School, str]]:
    """The current issued versions (not cancelled, not superseded) of the given schools for a year name."""
    query = (sa.select(RecordVersion, School, Pupil.pupil_code)
             .join(SchoolYear, SchoolYear.id == RecordVersion.school_year_id)
             .join(School, School.id == RecordVersion.school_id)
             .join(Pupil, Pupil.id == RecordVersion.pupil_id)
             .where(RecordVersion.status == RecordStatus.ISSUED, SchoolYear.name == school_year)
             .order_by(School.code, RecordVersion.grade, Pupil.pupil_code, RecordVersion.number))
    if school_ids is not None:
        query = query.where(RecordVersion.school_id.in_(school_ids))
    return query


def stream_bundle(school_ids: list[int] | None, school_year: str, *, scope: str) -> Iterator[bytes]:
    """The ZIP, chunk by chunk: <school>/<grade>/<pupil>_<code>_v<n>.pdf and .xml, then manifest.json."""
    pipe = _Pipe()
    entries: list[dict[str, Any]] = []
    with zipfile.ZipFile(pipe, "w", compression=zipfile.ZIP_DEFLATED) as archive:  # type: ignore[arg-type]
        for version, school, pupil_code in db.session.execute(bundle_query(school_ids, school_year)):
            base = f"{school.code}/lop-{version.grade}/{pupil_code}_{version.code}_v{version.number}"
            files = {}
            for kind, digest in (("pdf", version.signed_digest), ("xml", version.xml_digest)):
                if not digest:
                    continue
                data = storage().read(digest)
                archive.writestr(f"{base}.{kind}", data)
                files[kind] = {"path": f"{base}.{kind}", "sha256": hashlib.sha256(data).hexdigest(),
                               "size": len(data)}
                yield pipe.take()
            entries.append({"record_version_id": version.id, "code": version.code, "number": version.number,
                            "replaces_id": version.replaces_id, "pupil_id": version.pupil_id,
                            "pupil_code": pupil_code, "school_id": school.id, "school_code": school.code,
                            "school_moet_code": school.moet_code, "grade": version.grade,
                            "issued_at": version.issued_at.isoformat() if version.issued_at else None, **files})
        manifest = {"format": MANIFEST_FORMAT, "generated_at": utcnow().isoformat(), "school_year": school_year,
                    "scope": scope, "count": len(entries), "records": entries}
        archive.writestr("manifest.json", json.dumps(manifest, ensure_ascii=False, indent=1))
    yield pipe.take()


def bundle_name(scope: str, school_year: str) -> str:
    return f"hoc-ba-so_{scope}_{school_year}.zip"
