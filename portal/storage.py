"""Files (exports, generated and signed PDFs, uploads) addressed by the SHA-256 of their content.

One small interface, two stores: the instance folder (default, one machine), or a table in the
database that every web process and worker shares (several machines). Storing the same bytes twice
is a no-op, which makes jobs that store files safe to run twice.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, Protocol

import sqlalchemy as sa
from flask import Flask, current_app
from sqlalchemy.orm import Mapped, mapped_column

from portal.extensions import UTCDateTime, db, utcnow

CHUNK = 1024 * 1024


class FileMissing(LookupError):
    """No file with that digest is stored."""


class Storage(Protocol):
    def put(self, data: bytes) -> str: ...
    def exists(self, digest: str) -> bool: ...
    def read(self, digest: str) -> bytes: ...
    def stream(self, digest: str) -> Iterator[bytes]: ...


def digest_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _check_digest(digest: str) -> str:
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise FileMissing(digest)
    return digest


class LocalStorage:
    """Files under <instance>/files/ab/cdef..., written atomically."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, digest: str) -> Path:
        digest = _check_digest(digest)
        return self.root / digest[:2] / digest[2:]

    def put(self, data: bytes) -> str:
        digest = digest_of(data)
        path = self._path(digest)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)
        return digest

    def exists(self, digest: str) -> bool:
        return self._path(digest).exists()

    def read(self, digest: str) -> bytes:
        return b"".join(self.stream(digest))

    def stream(self, digest: str) -> Iterator[bytes]:
        path = self._path(digest)
        try:
            handle: BinaryIO = path.open("rb")
        except FileNotFoundError as exc:
            raise FileMissing(digest) from exc
        with handle:
            while chunk := handle.read(CHUNK):
                yield chunk


class StoredFile(db.Model):
    """The shared store: file bytes kept in the database every machine already reaches."""

    __tablename__ = "stored_files"

    digest: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    size: Mapped[int]
    data: Mapped[bytes] = mapped_column(sa.LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    def __repr__(self) -> str:
        return f"<StoredFile {self.digest[:12]} {self.size}>"


class DatabaseStorage:
    """Files in the `stored_files` table, written in their own short transaction."""

    def put(self, data: bytes) -> str:
        digest = digest_of(data)
        with db.engine.begin() as connection:
            exists = connection.scalar(sa.select(StoredFile.digest).where(StoredFile.digest == digest))
            if exists is None:
                connection.execute(sa.insert(StoredFile).values(
                    digest=digest, size=len(data), data=data, created_at=utcnow()))
        return digest

    def exists(self, digest: str) -> bool:
        with db.engine.connect() as connection:
            found = connection.scalar(sa.select(StoredFile.digest).where(StoredFile.digest == digest))
        return found is not None

    def read(self, digest: str) -> bytes:
        with db.engine.connect() as connection:
            data = connection.scalar(sa.select(StoredFile.data).where(StoredFile.digest == _check_digest(digest)))
        if data is None:
            raise FileMissing(digest)
        return bytes(data)

    def stream(self, digest: str) -> Iterator[bytes]:
        data = self.read(digest)
        for start in range(0, len(data), CHUNK):
            yield data[start : start + CHUNK]


def init_app(app: Flask) -> None:
    if app.config["STORAGE_BACKEND"] == "database":
        app.extensions["portal_storage"] = DatabaseStorage()
    else:
        app.extensions["portal_storage"] = LocalStorage(Path(app.instance_path) / "files")


def storage() -> Storage:
    return current_app.extensions["portal_storage"]
