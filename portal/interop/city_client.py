"""The client of the city system's API, contract v1 (docs/city-contract.md), on the standard library alone.

Every call either returns the city's answer or raises `CityError` with the contract's error code, the
city's Vietnamese reason and what to do, and what kind of failure it is:

- `transport`: a connection refused, a time-out, a 5xx or a 429, an answer outside the contract: tried
  again later with backoff;
- `configuration`: the city refused our key (401/403) or the TLS connection failed (certificate, trust):
  nothing is wrong with the record, so it waits until someone fixes the setting and is then sent;
- `content`: the city looked at the record and refused it (422, 409, 400): final, with the city's action.

Every failed call is logged as a warning line (system, method, path, code, status).
"""

from __future__ import annotations

import http.client
import json
import logging
import ssl
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

CONTRACT_VERSION = 1
USER_AGENT = "hocba-portal/1 (city contract v1)"

# Reasons for failures that never reach the city's own error body (the network, a broken answer).
TRANSPORT_REASONS = {
    "UNREACHABLE": ("Không kết nối được tới hệ thống Thành phố.", "Không cần làm gì: hệ thống sẽ tự gửi lại sau."),
    "TIMEOUT": ("Hệ thống Thành phố không trả lời kịp thời.", "Không cần làm gì: hệ thống sẽ tự gửi lại sau."),
    "BAD_ANSWER": ("Hệ thống Thành phố trả lời không đúng hợp đồng trao đổi.",
                   "Không cần làm gì: hệ thống sẽ tự gửi lại sau; nếu kéo dài, báo cho Sở GD&ĐT."),
    "TLS_FAILED": ("Không thiết lập được kết nối bảo mật (TLS) tới hệ thống Thành phố: chứng thư của máy chủ "
                   "không được tin cậy hoặc cấu hình sai.",
                   "Quản trị hệ thống kiểm tra CITY_URL và chứng thư tin cậy; học bạ sẽ tự gửi khi đã sửa."),
    "RECEIPT_UNCONFIRMED": ("Hệ thống Thành phố trả biên nhận nhưng khi hỏi lại chưa xác nhận đã lưu học bạ.",
                            "Không cần làm gì: hệ thống sẽ hỏi lại sau."),
}
TRANSPORT, CONFIGURATION, CONTENT = "transport", "configuration", "content"
CONFIGURATION_ACTION = ("Quản trị hệ thống kiểm tra cấu hình kết nối (CITY_API_KEY, CITY_URL); học bạ đang chờ "
                        "sẽ tự gửi khi đã sửa, không cần ký lại.")


@dataclass
class CityError(Exception):
    code: str
    message: str
    action: str
    retryable: bool
    status: int | None = None
    detail: str = ""
    kind: str = ""

    def __post_init__(self) -> None:
        if not self.kind:
            self.kind = TRANSPORT if self.retryable else CONTENT

    @property
    def final(self) -> bool:
        """Only the city's refusal of the record's content ends an upload."""
        return self.kind == CONTENT

    def __str__(self) -> str:
        return f"{self.code} ({self.status}): {self.message}" + (f" [{self.detail}]" if self.detail else "")


@dataclass(frozen=True)
class Receipt:
    record_code: str
    receipt_number: str
    status: str
    duplicate: bool
    sha256: str | None = None
    received_at: str | None = None


class CityClient:
    """One district's connection to the city system: a base URL, the district's API key, a time-out."""

    def __init__(self, base_url: str, api_key: str, *, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout

    # --- the contract's calls --------------------------------------------------------------------

    def upload(self, pdf: bytes, metadata: dict[str, Any]) -> Receipt:
        """POST /api/v1/records: one issued record version; its code is the idempotency key."""
        metadata = {"contract": CONTRACT_VERSION, **metadata}
        body, content_type = _multipart({"metadata": json.dumps(metadata, ensure_ascii=False)},
                                        {"file": (f"{metadata['record_code']}.pdf", "application/pdf", pdf)})
        answer = self._call("POST", "/api/v1/records", body, content_type, idempotency_key=metadata["record_code"])
        return _receipt(answer)

    def status(self, record_code: str) -> Receipt | None:
        """GET /api/v1/records/<code>: what the city holds for this version, or None if nothing."""
        try:
            return _receipt(self._call("GET", f"/api/v1/records/{record_code}"))
        except CityError as exc:
            if exc.code == "RECORD_NOT_FOUND":
                return None
            raise

    def announce(self, record_code: str, kind: str, reason: str, replaced_by: str | None = None) -> Receipt:
        """POST /api/v1/records/<code>/announcements: the version was cancelled or superseded."""
        body = json.dumps({"contract": CONTRACT_VERSION, "kind": kind, "reason": reason,
                           "replaced_by": replaced_by}, ensure_ascii=False).encode()
        answer = self._call("POST", f"/api/v1/records/{record_code}/announcements", body, "application/json",
                            idempotency_key=f"{record_code}:{kind}")
        return _receipt(answer)

    def returned(self, after: int = 0, limit: int = 100) -> tuple[list[dict[str, Any]], int]:
        """GET /api/v1/returned: records returned to the district's schools after `after`; and the next cursor."""
        answer = self._call("GET", f"/api/v1/returned?after={int(after)}&limit={int(limit)}")
        items = answer.get("items")
        if not isinstance(items, list):
            raise _transport("BAD_ANSWER", "items")
        return items, int(answer.get("next_after", after))

    def returned_file(self, return_id: int) -> bytes:
        """GET /api/v1/returned/<id>/file: the signed PDF of one returned record."""
        return self._call("GET", f"/api/v1/returned/{int(return_id)}/file", raw=True)

    # --- transport -----------------------------------------------------------------------------------

    def _call(self, method: str, path: str, body: bytes | None = None, content_type: str | None = None, *,
              idempotency_key: str | None = None, raw: bool = False) -> Any:
        headers = {"X-District-Key": self.api_key, "Accept": "application/json", "User-Agent": USER_AGENT}
        if content_type:
            headers["Content-Type"] = content_type
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        req = urllib.request.Request(self.base_url + path, data=body, method=method, headers=headers)
        try:
            return self._exchange(req, raw)
        except CityError as exc:
            log.warning("city call failed", extra={"system": "city", "method": method, "path": path,
                                                   "code": exc.code, "status": exc.status, "kind": exc.kind,
                                                   "detail": exc.detail[:200]})
            raise

    def _exchange(self, req: urllib.request.Request, raw: bool) -> Any:
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as response:
                data = response.read()
        except urllib.error.HTTPError as exc:
            with exc:
                raise _from_http_error(exc.code, exc.read()) from None
        except TimeoutError as exc:
            raise _transport("TIMEOUT", str(exc)) from exc
        except ssl.SSLError as exc:
            raise _transport("TLS_FAILED", str(exc), kind=CONFIGURATION) from exc
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, ssl.SSLError):
                raise _transport("TLS_FAILED", str(reason), kind=CONFIGURATION) from exc
            raise _transport("UNREACHABLE", str(reason)) from exc
        if raw:
            return data
        try:
            answer = json.loads(data)
        except ValueError as exc:
            raise _transport("BAD_ANSWER", "not JSON") from exc
        if not isinstance(answer, dict):
            raise _transport("BAD_ANSWER", "not an object")
        return answer


def _transport(code: str, detail: str, *, kind: str = TRANSPORT) -> CityError:
    message, action = TRANSPORT_REASONS[code]
    return CityError(code, message, action, retryable=True, detail=detail[:300], kind=kind)


def _from_http_error(status: int, data: bytes) -> CityError:
    try:
        error = json.loads(data)["error"]
        code, message, action = str(error["code"]), str(error["message"]), str(error.get("action", ""))
        retryable = bool(error.get("retry", status >= 500 or status == 429))
    except (ValueError, KeyError, TypeError):
        # Not the contract's error body (a proxy's error page, say): judge by the status alone.
        code = "UNAVAILABLE" if status >= 500 or status == 429 else "BAD_ANSWER"
        message, action = TRANSPORT_REASONS["UNREACHABLE" if status >= 500 else "BAD_ANSWER"]
        retryable = status >= 500 or status == 429
    if status >= 500 or status == 429:
        retryable = True  # whatever the body says, the city may answer differently later
    if status in (401, 403):
        # Our key, not the record: it waits for the fix, then goes as it is.
        return CityError(code, message, action or CONFIGURATION_ACTION, True, status, kind=CONFIGURATION)
    if status == 404 and code == "RECORD_NOT_FOUND":
        retryable = True  # an announcement before its upload arrived: later
    return CityError(code, message, action, retryable, status)


def _receipt(answer: dict[str, Any]) -> Receipt:
    try:
        return Receipt(record_code=str(answer["record_code"]), receipt_number=str(answer["receipt_number"]),
                       status=str(answer["status"]), duplicate=bool(answer.get("duplicate")),
                       sha256=answer.get("sha256"), received_at=answer.get("received_at"))
    except KeyError as exc:
        raise _transport("BAD_ANSWER", f"missing {exc}") from exc


def _multipart(fields: dict[str, str], files: dict[str, tuple[str, str, bytes]]) -> tuple[bytes, str]:
    boundary = f"hocba-{uuid.uuid4().hex}"
    parts: list[bytes] = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n'
                     f"Content-Type: application/json; charset=utf-8\r\n\r\n".encode() + value.encode() + b"\r\n")
    for name, (filename, mimetype, data) in files.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                     f"Content-Type: {mimetype}\r\n\r\n".encode() + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"
