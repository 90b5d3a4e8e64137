"""The stand-in city system ("Hệ thống Học bạ số ngành GD&ĐT Thành phố"): contract v1 over real HTTP.

A small Flask app of its own, started with `python -m standins.city --port 5100 --data <folder>` (or
`./dev.sh city`). It authenticates the district's API key, validates what it receives, answers with
receipt numbers, keeps everything in its data folder across restarts, logs every request, serves the
returned-records feed, and can be told to fail, slow down, answer 500 on a fraction of requests or
reject (`POST /_standin/behaviour`) so the portal's client can be shown to cope. The contract it
speaks is docs/city-contract.md.
"""

from __future__ import annotations

import hmac
import json
import random
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from flask import Flask, Response, current_app, jsonify, request

from standins.city import validation
from standins.city.errors import CityError, error
from standins.city.store import Store, now_iso

CONTRACT_VERSION = 1
DEFAULT_BEHAVIOUR: dict[str, Any] = {
    "down": False,            # every API request answers 503
    "down_requests": 0,       # the next N API requests answer 503, then it is up again
    "delay_seconds": 0.0,     # every API request waits this long before it is handled
    "error_rate": 0.0,        # this fraction of API requests answers 500 before doing anything
    "lose_response_rate": 0.0,  # this fraction of uploads is stored, then answered 500 (the answer is lost)
    "duplicate_receipt_rate": 0.0,  # this fraction of new uploads is answered with an older receipt number
    "reject": None,           # {"record_codes": [...] or null for all, "code", "message", "action"}
    "seed": None,
}
UPLOAD_FIELDS = ("record_code", "version_number", "school_moet_code", "pupil_code", "school_year", "grade", "sha256")


class Behaviour:
    """What the stand-in was told to do; shared by the request threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.settings = dict(DEFAULT_BEHAVIOUR)
        self.random = random.Random()

    def update(self, changes: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            if changes.get("reset"):
                self.settings = dict(DEFAULT_BEHAVIOUR)
            for key, value in changes.items():
                if key in DEFAULT_BEHAVIOUR:
                    self.settings[key] = value
            if self.settings.get("seed") is not None:
                self.random = random.Random(self.settings["seed"])
            return dict(self.settings)

    def roll(self, key: str) -> bool:
        with self._lock:
            rate = float(self.settings.get(key) or 0)
            return rate > 0 and self.random.random() < rate

    def take_down_request(self) -> bool:
        with self._lock:
            if self.settings["down"]:
                return True
            if self.settings["down_requests"] > 0:
                self.settings["down_requests"] -= 1
                return True
            return False


def create_app(data_dir: str | Path, *, api_keys: dict[str, str], trust_roots: list[Any] | None = None,
               checks: Iterable[str] = validation.CHECKS) -> Flask:
    """The stand-in app; `api_keys` maps each accepted key to the district it belongs to."""
    app = Flask("standins.city")
    app.config["MAX_CONTENT_LENGTH"] = 50 * 1024 * 1024
    app.json.ensure_ascii = False  # type: ignore[attr-defined]  # Vietnamese reasons readable as they are
    folder = Path(data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    app.extensions["city"] = {"store": Store(folder), "behaviour": Behaviour(), "api_keys": dict(api_keys),
                              "trust_roots": list(trust_roots or []), "checks": set(checks)}
    app.register_error_handler(CityError, _answer_error)
    app.before_request(_before)
    app.after_request(_log_request)
    _routes(app)
    return app


def _state() -> dict[str, Any]:
    return current_app.extensions["city"]


def _store() -> Store:
    return _state()["store"]


def _answer_error(exc: CityError) -> Response:
    response = jsonify(exc.body())
    response.status_code = exc.status
    # "stored;response-lost" stays what it is: the log must show the record was stored.
    request.environ.setdefault("city.outcome", f"error:{exc.code}")
    return response


def _before() -> Response | None:
    if not request.path.startswith("/api/"):
        return None
    behaviour: Behaviour = _state()["behaviour"]
    delay = float(behaviour.settings.get("delay_seconds") or 0)
    if delay > 0:
        time.sleep(delay)
    key = request.headers.get("X-District-Key")
    if not key:
        raise error("AUTH_MISSING")
    if not any(hmac.compare_digest(key, known) for known in _state()["api_keys"]):
        raise error("AUTH_INVALID")
    if behaviour.take_down_request():
        raise error("UNAVAILABLE")
    if behaviour.roll("error_rate"):
        raise error("INTERNAL")
    return None


def _log_request(response: Response) -> Response:
    if request.path.startswith("/api/"):
        _store().log(request.method, request.path, request.headers.get("Idempotency-Key"),
                     request.environ.get("city.record_code"), response.status_code,
                     request.environ.get("city.outcome", "ok"))
    return response


def _outcome(text: str, record_code: str | None = None) -> None:
    request.environ["city.outcome"] = text
    if record_code:
        request.environ["city.record_code"] = record_code


def _routes(app: Flask) -> None:
    app.add_url_rule("/api/v1/records", view_func=upload, methods=["POST"])
    app.add_url_rule("/api/v1/records/<code>", view_func=status)
    app.add_url_rule("/api/v1/records/<code>/announcements", view_func=announce, methods=["POST"])
    app.add_url_rule("/api/v1/returned", view_func=returned_feed)
    app.add_url_rule("/api/v1/returned/<int:return_id>/file", view_func=returned_file)
    app.add_url_rule("/_standin/behaviour", view_func=behaviour, methods=["GET", "POST"])
    app.add_url_rule("/_standin/log", view_func=request_log)
    app.add_url_rule("/_standin/records", view_func=received_records)
    app.add_url_rule("/_standin/returned", view_func=add_returned, methods=["POST"])
    app.add_url_rule("/", view_func=home)


# --- the contract ------------------------------------------------------------------------------------


def upload() -> tuple[Response, int]:
    metadata = _upload_metadata()
    code = metadata["record_code"]
    request.environ["city.record_code"] = code
    if request.headers.get("Idempotency-Key") != code:
        raise error("IDEMPOTENCY_KEY_MISMATCH")
    pdf = request.files["file"].read()
    store = _store()
    existing = store.record(code)
    if existing is not None:
        return _duplicate(existing, metadata)
    reject = _state()["behaviour"].settings.get("reject")
    if reject and (reject.get("record_codes") is None or code in reject["record_codes"]):
        raise validation.reject_with(reject)
    validation.check_upload(pdf, metadata, checks=_state()["checks"], trust_roots=_state()["trust_roots"])
    store.put_file(metadata["sha256"], pdf)
    with store.transaction() as db:
        again = db.execute("select 1 from records where record_code = ?", (code,)).fetchone()
        if again is not None:  # another thread stored it meanwhile
            receipt = None
        else:
            receipt = store.next_receipt(db)
            db.execute("insert into records(record_code, receipt_number, sha256, status, metadata, received_at, "
                       "changed_at) values (?, ?, ?, 'accepted', ?, ?, ?)",
                       (code, receipt, metadata["sha256"], json.dumps(metadata, ensure_ascii=False), now_iso(),
                        now_iso()))
    if receipt is None:
        return _duplicate(store.record(code) or {}, metadata)
    behaviour: Behaviour = _state()["behaviour"]
    if behaviour.roll("lose_response_rate"):
        _outcome("stored;response-lost", code)
        raise error("INTERNAL", "stored, answer lost")
    _outcome("stored", code)
    answer = _record_answer(store.record(code) or {})
    if behaviour.roll("duplicate_receipt_rate"):
        older = _older_receipt(code)
        if older:
            answer["receipt_number"] = older
            _outcome("stored;duplicate-receipt", code)
    return jsonify(answer), 201


def _upload_metadata() -> dict[str, Any]:
    if "file" not in request.files or "metadata" not in request.form:
        raise error("BAD_REQUEST", "multipart parts 'file' and 'metadata' are required")
    try:
        metadata = json.loads(request.form["metadata"])
    except ValueError as exc:
        raise error("BAD_REQUEST", "metadata is not JSON") from exc
    missing = [name for name in UPLOAD_FIELDS if metadata.get(name) in (None, "")]
    if not isinstance(metadata, dict) or missing or metadata.get("contract") != CONTRACT_VERSION:
        raise error("BAD_REQUEST", f"missing: {', '.join(missing) or 'contract'}")
    return metadata


def _duplicate(existing: dict[str, Any], metadata: dict[str, Any]) -> tuple[Response, int]:
    if existing.get("sha256") != metadata.get("sha256"):
        raise error("IDEMPOTENCY_CONFLICT")
    _outcome("duplicate", existing.get("record_code"))
    return jsonify({**_record_answer(existing), "duplicate": True}), 200


def _older_receipt(code: str) -> str | None:
    others = [r for r in _store().records() if r["record_code"] != code]
    return others[-1]["receipt_number"] if others else None


def _record_answer(record: dict[str, Any]) -> dict[str, Any]:
    return {"contract": CONTRACT_VERSION, "record_code": record.get("record_code"),
            "receipt_number": record.get("receipt_number"), "status": record.get("status"),
            "received_at": record.get("received_at"), "sha256": record.get("sha256"),
            "replaced_by": record.get("replaced_by"), "duplicate": False}


def status(code: str) -> Response:
    request.environ["city.record_code"] = code
    record = _store().record(code)
    if record is None:
        raise error("RECORD_NOT_FOUND")
    return jsonify(_record_answer(record))


def announce(code: str) -> tuple[Response, int]:
    request.environ["city.record_code"] = code
    body = request.get_json(silent=True) or {}
    kind = body.get("kind")
    if kind not in ("cancelled", "superseded") or not body.get("reason") or (
            kind == "superseded" and not body.get("replaced_by")):
        raise error("BAD_REQUEST", "kind cancelled|superseded, reason, and replaced_by for superseded")
    key = f"{code}:{kind}"
    if request.headers.get("Idempotency-Key") != key:
        raise error("IDEMPOTENCY_KEY_MISMATCH")
    store = _store()
    with store.transaction() as db:
        record = db.execute("select * from records where record_code = ?", (code,)).fetchone()
        if record is None:
            raise error("RECORD_NOT_FOUND")
        done = db.execute("select receipt_number from announcements where key = ?", (key,)).fetchone()
        if done is not None:
            receipt, created = done[0], False
        else:
            receipt, created = store.next_receipt(db), True
            db.execute("insert into announcements(key, record_code, kind, receipt_number, body, at) "
                       "values (?, ?, ?, ?, ?, ?)", (key, code, kind, receipt, json.dumps(body, ensure_ascii=False),
                                                     now_iso()))
            db.execute("update records set status = ?, replaced_by = ?, reason = ?, changed_at = ? "
                       "where record_code = ?", (kind, body.get("replaced_by"), body["reason"], now_iso(), code))
    _outcome("announced" if created else "duplicate", code)
    answer = {"contract": CONTRACT_VERSION, "record_code": code, "status": kind, "receipt_number": receipt,
              "duplicate": not created}
    return jsonify(answer), 201 if created else 200


def returned_feed() -> Response:
    after = request.args.get("after", 0, type=int) or 0
    limit = min(max(request.args.get("limit", 100, type=int) or 100, 1), 500)
    items = _store().returned_after(after, limit)
    _outcome(f"returned:{len(items)}")
    return jsonify({"contract": CONTRACT_VERSION, "items": items,
                    "next_after": items[-1]["return_id"] if items else after})


def returned_file(return_id: int) -> Response:
    item = _store().returned_item(return_id)
    data = _store().read_file(item["sha256"]) if item else None
    if item is None or data is None:
        raise error("RETURN_NOT_FOUND")
    request.environ["city.record_code"] = item["record_code"]
    return Response(data, mimetype="application/pdf")


# --- controls of the stand-in (not part of the contract) ---------------------------------------------


def behaviour() -> Response:
    state = _state()["behaviour"]
    if request.method == "POST":
        return jsonify(state.update(request.get_json(silent=True) or {}))
    return jsonify(state.settings)


def request_log() -> Response:
    return jsonify(_store().requests())


def received_records() -> Response:
    return jsonify(_store().records())


def add_returned() -> tuple[Response, int]:
    """Put a record into the returned feed: an uploaded one (by code) or a new PDF with its metadata."""
    store = _store()
    if request.files.get("file") is not None:
        metadata = json.loads(request.form.get("metadata", "{}"))
        pdf = request.files["file"].read()
        import hashlib

        metadata["sha256"] = hashlib.sha256(pdf).hexdigest()
        store.put_file(metadata["sha256"], pdf)
    else:
        body = request.get_json(silent=True) or {}
        record = store.record(body.get("record_code", ""))
        if record is None:
            raise error("RECORD_NOT_FOUND")
        metadata = {**record["metadata"], "admitted_school_moet_code": body.get("admitted_school_moet_code")}
    admitted = metadata.get("admitted_school_moet_code")
    if not admitted or not metadata.get("record_code"):
        raise error("BAD_REQUEST", "admitted_school_moet_code and record_code are required")
    fields = {k: metadata.get(k) for k in (*UPLOAD_FIELDS, "issuing_school_name")}
    fields["issuing_school_moet_code"] = fields.pop("school_moet_code")
    return_id = store.add_returned(metadata["record_code"], admitted, metadata["sha256"], fields)
    return jsonify({"return_id": return_id}), 201


def home() -> Response:
    return jsonify({"service": "stand-in city system", "contract": CONTRACT_VERSION,
                    "records": len(_store().records())})
