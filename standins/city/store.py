"""What the stand-in city server keeps across restarts: one SQLite file and the received files.

    <data>/city.sqlite   received records, announcements, the returned-records feed, the request log
    <data>/files/<sha256>.pdf
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SCHEMA = """
create table if not exists records (
    record_code text primary key,
    receipt_number text not null unique,
    sha256 text not null,
    status text not null,            -- accepted, cancelled, superseded
    metadata text not null,
    received_at text not null,
    changed_at text not null,
    replaced_by text,
    reason text
);
create table if not exists announcements (
    key text primary key,            -- <record code>:<kind>
    record_code text not null,
    kind text not null,
    receipt_number text not null,
    body text not null,
    at text not null
);
create table if not exists returned (
    id integer primary key autoincrement,
    record_code text not null,
    admitted_school_moet_code text not null,
    sha256 text not null,
    metadata text not null,
    returned_at text not null
);
create table if not exists requests (
    id integer primary key autoincrement,
    at text not null,
    method text not null,
    path text not null,
    idempotency_key text,
    record_code text,
    status integer not null,
    outcome text not null
);
create table if not exists counters (name text primary key, value integer not null);
"""


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class Store:
    """A thread-safe wrapper around the stand-in's SQLite file (the dev server answers in threads)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.files = folder / "files"
        self.files.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(folder / "city.sqlite", check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("pragma journal_mode=wal")
        self._db.execute("pragma synchronous=normal")  # WAL keeps it safe across a crash of the process
        self._db.executescript(SCHEMA)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("begin immediate")
            try:
                yield self._db
            except BaseException:
                self._db.execute("rollback")
                raise
            self._db.execute("commit")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- files -------------------------------------------------------------------------------------

    def put_file(self, sha256: str, data: bytes) -> None:
        path = self.files / f"{sha256}.pdf"
        if not path.exists():
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(data)
            tmp.replace(path)

    def read_file(self, sha256: str) -> bytes | None:
        path = self.files / f"{sha256}.pdf"
        return path.read_bytes() if path.exists() else None

    # --- records -----------------------------------------------------------------------------------

    def next_receipt(self, db: sqlite3.Connection) -> str:
        db.execute("insert into counters(name, value) values ('receipt', 1) "
                   "on conflict(name) do update set value = value + 1")
        value = db.execute("select value from counters where name = 'receipt'").fetchone()[0]
        return f"TP-{datetime.now(UTC).year}-{value:07d}"

    def record(self, code: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("select * from records where record_code = ?", (code,)).fetchone()
        return _record_dict(row) if row else None

    def records(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("select * from records order by received_at, record_code").fetchall()
        return [_record_dict(row) for row in rows]

    def last_receipt(self) -> str | None:
        with self._lock:
            row = self._db.execute("select receipt_number from records order by rowid desc limit 1").fetchone()
        return row[0] if row else None

    # --- the request log ---------------------------------------------------------------------------

    def log(self, method: str, path: str, idempotency_key: str | None, record_code: str | None, status: int,
            outcome: str) -> None:
        with self._lock:
            self._db.execute("insert into requests(at, method, path, idempotency_key, record_code, status, outcome) "
                             "values (?, ?, ?, ?, ?, ?, ?)",
                             (now_iso(), method, path, idempotency_key, record_code, status, outcome))

    def requests(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("select * from requests order by id").fetchall()
        return [dict(row) for row in rows]

    # --- the returned-records feed -----------------------------------------------------------------

    def add_returned(self, record_code: str, admitted: str, sha256: str, metadata: dict[str, Any]) -> int:
        with self.transaction() as db:
            cursor = db.execute("insert into returned(record_code, admitted_school_moet_code, sha256, metadata, "
                                "returned_at) values (?, ?, ?, ?, ?)",
                                (record_code, admitted, sha256, json.dumps(metadata, ensure_ascii=False), now_iso()))
            return int(cursor.lastrowid or 0)

    def returned_after(self, after: int, limit: int) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("select * from returned where id > ? order by id limit ?",
                                    (after, limit)).fetchall()
        return [_returned_dict(row) for row in rows]

    def returned_item(self, return_id: int) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("select * from returned where id = ?", (return_id,)).fetchone()
        return _returned_dict(row) if row else None


def _record_dict(row: sqlite3.Row) -> dict[str, Any]:
    data = dict(row)
    data["metadata"] = json.loads(data["metadata"])
    return data


def _returned_dict(row: sqlite3.Row) -> dict[str, Any]:
    metadata = json.loads(row["metadata"])
    return {**metadata, "return_id": row["id"], "record_code": row["record_code"],
            "admitted_school_moet_code": row["admitted_school_moet_code"], "sha256": row["sha256"],
            "returned_at": row["returned_at"]}
