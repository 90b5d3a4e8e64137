"""Files (exports, generated and signed PDFs, uploads) addressed by the SHA-256 of their content.

One small interface, two stores: the instance folder (default, one machine), or a table in the
database that every web process and worker shares (several machines). Storing the same bytes twice
is a no-op, which makes jobs that store files safe to run twice.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO, Protocol

import click
import sqlalchemy as sa
from flask import Flask, current_app
from flask.cli import AppGroup
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
    def digests(self) -> Iterator[tuple[str, int, datetime]]: ...
    def delete(self, digest: str) -> None: ...


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


    def digests(self) -> Iterator[tuple[str, int, datetime]]:
        """Every stored file: its digest, size and when it was written."""
        if not self.root.exists():
            return
        for folder in sorted(self.root.iterdir()):
            if not folder.is_dir() or len(folder.name) != 2:
                continue
            for path in folder.iterdir():
                digest = folder.name + path.name
                if len(digest) == 64 and all(c in "0123456789abcdef" for c in digest):
                    stat = path.stat()
                    yield digest, stat.st_size, datetime.fromtimestamp(stat.st_mtime, UTC)

    def delete(self, digest: str) -> None:
        self._path(digest).unlink(missing_ok=True)


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
        """Chunk by chunk from the database: a large bundle is never held whole in a web worker's memory."""
        digest = _check_digest(digest)
        with db.engine.connect() as connection:
            size = connection.scalar(sa.select(StoredFile.size).where(StoredFile.digest == digest))
        if size is None:
            raise FileMissing(digest)
        for start in range(0, size, CHUNK):
            with db.engine.connect() as connection:
                # substr counts from 1, on PostgreSQL's bytea and SQLite's blob alike.
                part = connection.scalar(sa.select(sa.func.substr(StoredFile.data, start + 1, CHUNK))
                                         .where(StoredFile.digest == digest))
            yield bytes(part or b"")

    def digests(self) -> Iterator[tuple[str, int, datetime]]:
        with db.engine.connect() as connection:
            yield from connection.execute(sa.select(StoredFile.digest, StoredFile.size, StoredFile.created_at)).all()

    def delete(self, digest: str) -> None:
        with db.engine.begin() as connection:
            connection.execute(sa.delete(StoredFile).where(StoredFile.digest == _check_digest(digest)))


def init_app(app: Flask) -> None:
    if app.config["STORAGE_BACKEND"] == "database":
        app.extensions["portal_storage"] = DatabaseStorage()
    else:
        app.extensions["portal_storage"] = LocalStorage(Path(app.instance_path) / "files")
    app.cli.add_command(storage_cli)


storage_cli = AppGroup("storage", help="The file store.")


@storage_cli.command("gc")
@click.option("--dry-run", is_flag=True, help="count what would go, remove nothing")
def gc_command(dry_run: bool) -> None:
    """Remove stored files no row points at (intermediate PDFs, finished imports), older than
    STORAGE_GC_GRACE_HOURS; audited. For a schedule, e.g. a daily timer."""
    outcome = collect_garbage(grace_hours=float(current_app.config["STORAGE_GC_GRACE_HOURS"]), dry_run=dry_run)
    click.echo(("would remove" if dry_run else "removed") + f" {outcome['removed']} file(s), {outcome['bytes']} "
               f"bytes; kept {outcome['kept']}.")


def storage() -> Storage:
    return current_app.extensions["portal_storage"]


def storage_usage() -> dict[str, int]:
    """How many files the store holds and how many bytes (for the operations page)."""
    count = size = 0
    for _digest, length, _at in storage().digests():
        count, size = count + 1, size + int(length)
    return {"files": count, "bytes": size}


# --- removing what nothing points at -----------------------------------------------------------------------

# Digests kept in these columns are history, not files anyone reads: the PDF before and after one signature
# (the issued PDF holds every signature's revision). They are not reasons to keep a file.
HISTORY_COLUMNS = {("record_signatures", "input_digest"), ("record_signatures", "output_digest")}


def referenced_digests() -> set[str]:
    """Every digest a row points at: each `*digest` column of every table (record versions, uploads, returned
    records, certificates, evidence ...), the files of job results, and the record sections Redis caches."""
    from portal.jobs import JobRun
    from portal.records.sections import KEY_PREFIX

    keep: set[str] = set()
    with db.engine.begin() as connection:  # one transaction: the setting below ends with it
        if connection.dialect.name == "postgresql":
            connection.execute(sa.text("select set_config('app.all_schools', 'on', true)"))
        for table in db.metadata.sorted_tables:
            if table.name == StoredFile.__tablename__:
                continue
            for column in table.columns:
                if column.name.endswith("digest") and (table.name, column.name) not in HISTORY_COLUMNS:
                    keep.update(d for d in connection.scalars(sa.select(column).where(column.is_not(None))) if d)
        for result in connection.scalars(sa.select(JobRun.result).where(JobRun.result.is_not(None))):
            if isinstance(result, dict) and isinstance(result.get("digest"), str):
                keep.add(result["digest"])
        keep |= _waiting_signatures(connection)
    redis = current_app.extensions["portal_jobs"].connection
    for key in redis.scan_iter(match=KEY_PREFIX + "*"):
        value = redis.get(key)
        if value:
            keep.add(value.decode())
    return keep


def _waiting_signatures(connection: sa.Connection) -> set[str]:
    """The prepared PDFs (and their sources) of signatures still asked of a USB token or a phone: a request's
    state file names them inside its JSON, where no column shows them, and finishing needs them for days."""
    from portal.signing.requests import OPEN_STATES, SigningRequest

    keep: set[str] = set()
    for digest in connection.scalars(sa.select(SigningRequest.prepared_digest)
                                     .where(SigningRequest.state.in_(OPEN_STATES))):
        try:
            state = json.loads(storage().read(digest))
        except (FileMissing, ValueError):
            continue
        if isinstance(state, dict):
            keep.update(v for k, v in state.items() if k in {"pdf", "source"} and isinstance(v, str))
    return keep


def collect_garbage(*, grace_hours: float, dry_run: bool = False) -> dict[str, int]:
    """Remove the stored files no row points at and older than the grace period (a file just written for a
    row whose transaction has not committed yet, an import waiting for its confirmation, is younger)."""
    from portal import audit

    keep = referenced_digests()
    cutoff = utcnow() - timedelta(hours=grace_hours)
    store = storage()
    removed = freed = kept = 0
    for digest, size, written in list(store.digests()):
        if digest in keep or written > cutoff:
            kept += 1
            continue
        if not dry_run:
            store.delete(digest)
        removed, freed = removed + 1, freed + int(size)
    outcome = {"removed": removed, "bytes": freed, "kept": kept}
    if not dry_run:
        audit.record("storage.collected", actor=None, school_id=None, object_type="StoredFile",
                     summary=f"flask storage gc: {removed} files, {freed} bytes removed", changes=outcome)
        db.session.commit()
    return outcome
