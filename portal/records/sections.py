"""Where laid-out record sections are kept between processes, so that a year page issued last year is
laid out once for good (see `portal.records.pdf`).

With files in the instance folder (one machine), a folder beside them. With the shared database store
(several machines), the section bytes go to that store, addressed by their hash as every file is, and
Redis, which every web process and worker already shares, maps a section's key to that hash. Records
are rendered inside the app (a job or a request), so the store uses the current app's file store.
"""

from __future__ import annotations

from pathlib import Path

from flask import Flask, current_app

from portal.records import pdf
from portal.storage import FileMissing, storage

KEY_PREFIX = "portal:record-section:"
MAPPING_TTL_SECONDS = 400 * 86400  # a year page is reused the next school year; later it is laid out again


class SharedSectionStore:
    """Sections in the portal's file store; their keys mapped to content hashes in Redis."""

    def get(self, key: str) -> bytes | None:
        digest = current_app.extensions["portal_jobs"].connection.get(KEY_PREFIX + key)
        if digest is None:
            return None
        try:
            return storage().read(digest.decode())
        except FileMissing:
            return None

    def put(self, key: str, data: bytes) -> None:
        current_app.extensions["portal_jobs"].connection.set(KEY_PREFIX + key, storage().put(data),
                                                             ex=MAPPING_TTL_SECONDS)


def init_app(app: Flask) -> None:
    if app.config["STORAGE_BACKEND"] == "local":
        pdf.use_section_store(pdf.FileSectionStore(Path(app.instance_path) / "record-sections"))
    else:
        pdf.use_section_store(SharedSectionStore())
