#!/usr/bin/env python3
"""Chương trình ký số học bạ bằng USB token — the Học bạ số signing agent.

A teacher or principal runs it on their own computer, with their USB token plugged in. It signs in to
the portal, fetches the documents waiting for this person's signature, shows what it will sign, asks
for the token PIN once for the whole batch, signs every hash on the token through PKCS#11, sends the
signatures back (the portal checks each one and finishes the PDFs), and prints a summary.

Standard library plus python-pkcs11 only, so that it can be packaged on its own. See agent/README.md.

    python hocba_agent.py --portal https://hocba.example.vn --username gv.lan
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import getpass
import json
import os
import platform
import ssl
import sys
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TextIO

VERSION = "1.0"
# DER of the DigestInfo prefix for SHA-256 (RFC 8017, 9.2 note 1): CKM_RSA_PKCS signs DigestInfo || hash.
SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")
MODULE_CANDIDATES = (
    "/usr/lib/softhsm/libsofthsm2.so",  # SoftHSM (Debian, Ubuntu): for trying it out
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
    "/usr/lib/libeps2003csp11.so",  # Feitian ePass2003, common for VNPT-CA / Viettel-CA tokens
    "/usr/lib/libeTPkcs11.so",  # SafeNet eToken
    r"C:\Windows\System32\eps2003csp11.dll",
    r"C:\Windows\System32\eTPKCS11.dll",
    "/Library/OpenSC/lib/opensc-pkcs11.so",
    "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so",
)


class AgentError(Exception):
    """Something the user must be told; the message is Vietnamese."""


# --- talking to the portal ---------------------------------------------------------------------------

class Portal:
    """The portal's /api/agent/ endpoints, over HTTPS (or HTTP on this computer for trying it out)."""

    def __init__(self, base_url: str, *, ca_file: str | None = None, timeout: float = 60) -> None:
        self.base_url = base_url.rstrip("/")
        self.context = ssl.create_default_context(cafile=ca_file) if ca_file else None
        self.timeout = timeout
        self.token: str | None = None

    def _call(self, method: str, path: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        headers = {"Accept": "application/json", "User-Agent": f"hocba-agent/{VERSION}"}
        data = None
        if payload is not None:
            data = json.dumps(payload).encode()
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(self.base_url + "/api/agent" + path, data=data, headers=headers,
                                         method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout, context=self.context) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            try:
                message = json.loads(exc.read() or b"{}").get("error")
            except (json.JSONDecodeError, OSError, AttributeError):
                message = None
            raise AgentError(message or f"Cổng học bạ số trả lời lỗi {exc.code}.") from exc
        except urllib.error.URLError as exc:
            raise AgentError(f"Không kết nối được cổng học bạ số {self.base_url}: {exc.reason}") from exc
        except TimeoutError as exc:
            raise AgentError(f"Cổng học bạ số {self.base_url} không trả lời.") from exc

    def sign_in(self, username: str, password: str) -> dict[str, Any]:
        answer = self._call("POST", "/session", {"username": username, "password": password,
                                                  "agent": f"hocba-agent {VERSION} ({platform.system()})"})
        self.token = answer["token"]
        return answer

    def pending(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/requests").get("requests", []))

    def send(self, signatures: list[tuple[int, bytes]]) -> dict[str, Any]:
        return self._call("POST", "/signatures", {"signatures": [
            {"id": request_id, "signature": base64.b64encode(signature).decode()}
            for request_id, signature in signatures]})

    def sign_out(self) -> None:
        if self.token:
            with contextlib.suppress(AgentError):  # the token expires by itself
                self._call("DELETE", "/session")
            self.token = None


# --- signing on the token ----------------------------------------------------------------------------

def default_module() -> str | None:
    configured = os.environ.get("HOCBA_PKCS11_MODULE")
    if configured:
        return configured
    return next((path for path in MODULE_CANDIDATES if os.path.exists(path)), None)


def _der_integer(value: bytes) -> bytes:
    value = value.lstrip(b"\x00") or b"\x00"
    if value[0] & 0x80:
        value = b"\x00" + value
    return b"\x02" + _der_length(len(value)) + value


def _der_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    encoded = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(encoded)]) + encoded


def ecdsa_der(raw: bytes) -> bytes:
    """PKCS#11 gives an ECDSA signature as r || s; CMS wants the DER SEQUENCE of two INTEGERs."""
    half = len(raw) // 2
    body = _der_integer(raw[:half]) + _der_integer(raw[half:])
    return b"\x30" + _der_length(len(body)) + body


# PKCS#11 errors that mean the token is gone (pulled out, or the reader lost it); SoftHSM and some drivers
# answer a vanished token with a plain general error.
GONE = {"TokenNotPresent", "DeviceRemoved", "SessionHandleInvalid", "SessionClosed", "SlotIDInvalid",
        "TokenNotRecognised", "DeviceError", "GeneralError", "CryptokiNotInitialised", "ObjectHandleInvalid"}


class TokenGone(AgentError):
    """The token stopped answering (pulled out): the batch stops, what was signed before is still sent."""


def token_failure(exc: BaseException, label: str) -> AgentError:
    """A PKCS#11 error as a sentence for the signer (never a Python class name)."""
    name = type(exc).__name__
    if name in GONE:
        return TokenGone(f"USB token «{label}» không còn kết nối (đã rút ra?). Hãy cắm lại USB token rồi chạy "
                          "lại chương trình; các tài liệu chưa ký vẫn đang chờ bạn trên cổng.")
    if name == "PinIncorrect":
        return AgentError("Mã PIN không đúng. Lưu ý: nhập sai nhiều lần liên tiếp sẽ khóa USB token.")
    if name in {"PinLocked", "PinExpired"}:
        return AgentError("USB token đã bị khóa do nhập sai mã PIN quá nhiều lần.")
    if name in {"PinLenRange", "PinInvalid"}:
        return AgentError("Mã PIN không hợp lệ (độ dài hoặc ký tự không đúng).")
    return AgentError(f"USB token «{label}» báo lỗi khi ký. Hãy rút ra, cắm lại rồi chạy lại chương trình.")


def describe_certificate(request: dict[str, Any]) -> str:
    name, serial = request.get("certificate_name"), request.get("certificate_serial")
    if name and serial:
        return f"«{name}», số sê-ri {serial}"
    return "đã đăng kí trên cổng"


class Token:
    """The USB token that holds the registered certificate, and one PKCS#11 session on it for the batch."""

    def __init__(self, module: str, certificates: Iterable[bytes], *, label: str | None = None,
                 wanted: str = "đã đăng kí trên cổng") -> None:
        try:
            import pkcs11
        except ImportError as exc:
            raise AgentError("Thiếu thư viện python-pkcs11: pip install python-pkcs11") from exc
        self.pkcs11 = pkcs11
        try:
            self.lib = pkcs11.lib(module)
        except (RuntimeError, OSError) as exc:
            raise AgentError(f"Không nạp được thư viện PKCS#11 của USB token: {module}") from exc
        self.session: Any = None
        self._keys: dict[bytes, Any] = {}
        self.token = self._find(set(certificates), label, wanted)

    @property
    def label(self) -> str:
        return str(self.token.label)

    def _find(self, certificates: set[bytes], label: str | None, wanted: str) -> Any:
        """The token holding one of the certificates (read without the PIN: certificates are public)."""
        try:
            tokens = [slot.get_token() for slot in self.lib.get_slots(token_present=True)]
            # An empty reader slot (SoftHSM always offers one) holds no initialised token: not a candidate.
            initialised = self.pkcs11.TokenFlag.TOKEN_INITIALIZED
            tokens = [t for t in tokens if initialised in t.flags]
        except self.pkcs11.exceptions.PKCS11Error as exc:
            raise token_failure(exc, label or "?") from exc
        if label:
            tokens = [t for t in tokens if t.label == label]
        if not tokens:
            raise AgentError("Không tìm thấy USB token. Hãy cắm USB token vào máy rồi thử lại."
                             if not label else f"Không tìm thấy USB token có nhãn «{label}».")
        without_certificates = []
        for token in tokens:
            held = self._certificates_on(token)
            if held & certificates:
                return token
            if not held:
                without_certificates.append(token)
        if len(tokens) == 1 and without_certificates:
            return tokens[0]  # a token keeping its key without the certificate: the portal checks the signature
        labels = ", ".join(f"«{t.label}»" for t in tokens)
        raise AgentError(f"Không USB token nào đang cắm ({labels}) chứa chứng thư số {wanted} của bạn. Hãy cắm "
                         "đúng USB token mang chứng thư số này, hoặc đăng kí trên cổng chứng thư số có trên token.")

    def _certificates_on(self, token: Any) -> set[bytes]:
        attribute, object_class = self.pkcs11.Attribute, self.pkcs11.ObjectClass
        try:
            with token.open() as session:
                found = session.get_objects({attribute.CLASS: object_class.CERTIFICATE})
                return {bytes(c[attribute.VALUE]) for c in found}
        except self.pkcs11.exceptions.PKCS11Error as exc:
            raise token_failure(exc, str(token.label)) from exc

    def open(self, pin: str) -> None:
        try:
            self.session = self.token.open(user_pin=pin)
        except self.pkcs11.exceptions.PKCS11Error as exc:
            raise token_failure(exc, self.label) from exc

    def close(self) -> None:
        if self.session is not None:
            with contextlib.suppress(self.pkcs11.exceptions.PKCS11Error):  # a token pulled out cannot close
                self.session.close()
            self.session = None

    def _key_for(self, certificate: bytes) -> Any:
        if certificate in self._keys:
            return self._keys[certificate]
        attribute, object_class = self.pkcs11.Attribute, self.pkcs11.ObjectClass
        key = None
        # One search at a time per session (PKCS#11): read the certificates out before the next search.
        for cert in list(self.session.get_objects({attribute.CLASS: object_class.CERTIFICATE})):
            if cert[attribute.VALUE] == certificate:
                keys = list(self.session.get_objects({attribute.CLASS: object_class.PRIVATE_KEY,
                                                      attribute.ID: cert[attribute.ID]}))
                key = keys[0] if keys else None
                break
        if key is None:
            keys = list(self.session.get_objects({attribute.CLASS: object_class.PRIVATE_KEY}))
            if len(keys) != 1:
                raise AgentError("USB token không chứa khóa của chứng thư số đã đăng kí trên cổng cho người ký này.")
            key = keys[0]  # a token with one key and no certificate object: the portal checks the signature
        self._keys[certificate] = key
        return key

    def sign(self, certificate: bytes, algorithm: str, digest: bytes) -> bytes:
        mechanism = self.pkcs11.Mechanism
        try:
            key = self._key_for(certificate)
            if algorithm == "rsa_pkcs1v15_sha256":
                return bytes(key.sign(SHA256_DIGEST_INFO + digest, mechanism=mechanism.RSA_PKCS))
            if algorithm == "ecdsa_sha256":
                return ecdsa_der(bytes(key.sign(digest, mechanism=mechanism.ECDSA)))
        except self.pkcs11.exceptions.PKCS11Error as exc:
            # Drivers report a pulled-out token in many ways (a general error, an invalid handle): ask it.
            if not self._still_there():
                raise token_failure(self.pkcs11.exceptions.TokenNotPresent(), self.label) from exc
            if type(exc).__name__ in {"GeneralError", "MechanismInvalid", "KeyTypeInconsistent",
                                      "KeyFunctionNotPermitted"}:
                # The token answers, but not with this key: a key of another kind than the certificate's.
                raise AgentError(f"USB token «{self.label}» không ký được bằng khóa nó chứa: khóa trên token "
                                 "không phải của chứng thư số đã đăng kí trên cổng.") from exc
            raise token_failure(exc, self.label) from exc
        raise AgentError(f"Thuật toán ký chưa được hỗ trợ: {algorithm}")

    def _still_there(self) -> bool:
        """Whether the token is still plugged in (drivers report both a pulled-out token and a refused key
        as a general error, and may keep answering new sessions from memory: ask the slot list)."""
        try:
            slots = self.lib.get_slots(token_present=True)
            return any(slot.get_token().serial == self.token.serial for slot in slots)
        except self.pkcs11.exceptions.PKCS11Error:
            return False


# --- the conversation --------------------------------------------------------------------------------

@dataclass
class Io:
    """Where the agent reads answers and writes messages (a terminal, or pipes when scripted)."""

    stdin: TextIO
    out: TextIO

    def say(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def ask(self, prompt: str) -> str:
        self.out.write(prompt)
        self.out.flush()
        line = self.stdin.readline()
        if not line:
            raise AgentError("Không nhận được câu trả lời (hết dữ liệu vào).")
        if not self.stdin.isatty():
            self.out.write("\n")  # what the terminal's echo would have ended the line with
        return line.rstrip("\r\n")

    def ask_secret(self, prompt: str) -> str:
        if self.stdin is sys.stdin and sys.stdin.isatty():
            return getpass.getpass(prompt, stream=self.out)
        return self.ask(prompt)  # scripted: one line of standard input per secret


def describe(requests: list[dict[str, Any]], io: Io, *, limit: int = 15) -> None:
    """What will be signed: how many, for which school and role, and the documents (pupils, classes)."""
    io.say(f"Có {len(requests)} tài liệu đang chờ bạn ký:")
    groups = Counter((r["school"]["name"], r["step_label"]) for r in requests)
    for (school, step), count in sorted(groups.items()):
        io.say(f"  • {school} — ký với vai trò {step}: {count} học bạ")
    for request in requests[:limit]:
        io.say(f"    - {request['description'] or request['purpose']}")
    if len(requests) > limit:
        io.say(f"    ... và {len(requests) - limit} học bạ khác")


def sign_all(token: Token, requests: Iterable[dict[str, Any]]
             ) -> tuple[list[tuple[int, bytes]], list[str], AgentError | None]:
    """Sign each request; a document the token cannot sign is noted and the batch goes on, but a token that
    stops answering ends the batch there (what was signed before is still sent)."""
    signed, problems = [], []
    for request in requests:
        try:
            certificate = base64.b64decode(request["certificate"])
            signed.append((request["id"], token.sign(certificate, request["algorithm"],
                                                     bytes.fromhex(request["digest"]))))
        except AgentError as exc:
            if isinstance(exc, TokenGone):
                return signed, problems, exc
            problems.append(f"{request['description'] or request['id']}: {exc}")
    return signed, problems, None


def run(args: argparse.Namespace, io: Io) -> int:
    portal = Portal(args.portal, ca_file=args.ca_file)
    username = args.username or io.ask("Tên đăng nhập: ")
    password = os.environ.get("HOCBA_PASSWORD") or io.ask_secret(f"Mật khẩu cổng học bạ số của {username}: ")
    who = portal.sign_in(username, password)["user"]
    try:
        io.say(f"Đã đăng nhập: {who['full_name']} ({who['username']})")
        requests = portal.pending()
        if not requests:
            io.say("Không có tài liệu nào đang chờ bạn ký.")
            return 0
        describe(requests, io)
        if not args.yes and io.ask(f"Ký {len(requests)} tài liệu này? [c/k]: ").strip().lower() not in {"c", "có", "y"}:
            io.say("Đã dừng, chưa ký tài liệu nào.")
            return 0
        module = args.module or default_module()
        if not module:
            raise AgentError("Không tìm thấy thư viện PKCS#11 của USB token: hãy chỉ rõ bằng --module.")
        certificates = {base64.b64decode(r["certificate"]) for r in requests}
        token = Token(module, certificates, label=args.token_label, wanted=describe_certificate(requests[0]))
        pin = io.ask_secret(f"Nhập mã PIN của USB token «{token.label}» (một lần cho cả {len(requests)} "
                            "tài liệu): ")
        token.open(pin)
        try:
            signed, problems, stopped = sign_all(token, requests)
        finally:
            token.close()
        answer = portal.send(signed) if signed else {"accepted": 0, "refused": 0, "results": []}
        code = summary(io, requests, answer, problems)
        if stopped is not None:
            raise stopped  # after the summary: what was signed before has reached the portal
        return code
    finally:
        portal.sign_out()


def summary(io: Io, requests: list[dict[str, Any]], answer: dict[str, Any], problems: list[str]) -> int:
    by_id = {r["id"]: r for r in requests}
    io.say(f"Kết quả: cổng đã nhận {answer['accepted']}/{len(requests)} chữ ký.")
    for result in answer["results"]:
        if not result["accepted"]:
            request = by_id.get(result["id"], {})
            io.say(f"  ✗ {request.get('description') or result['id']}: {result['error']}")
    for problem in problems:
        io.say(f"  ✗ {problem}")
    if answer["accepted"] == len(requests):
        io.say("Hoàn tất. Cổng học bạ số đang gắn chữ ký vào các tệp PDF.")
        return 0
    return 1


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Ký số học bạ bằng USB token (chương trình ký của cổng Học bạ số).")
    p.add_argument("--portal", default=os.environ.get("HOCBA_PORTAL_URL"),
                   required="HOCBA_PORTAL_URL" not in os.environ, help="địa chỉ cổng học bạ số, ví dụ https://hocba.example.vn")
    p.add_argument("--username", default=os.environ.get("HOCBA_USERNAME"), help="tên đăng nhập cổng")
    p.add_argument("--module", help="thư viện PKCS#11 của USB token (.so / .dll); mặc định: tự tìm")
    p.add_argument("--token-label", help="nhãn USB token khi cắm nhiều token")
    p.add_argument("--ca-file", help="tệp chứng chỉ gốc để kiểm tra HTTPS của cổng (nếu cần)")
    p.add_argument("--yes", action="store_true", help="không hỏi lại trước khi ký")
    p.add_argument("--version", action="version", version=f"hocba-agent {VERSION}")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    io = Io(sys.stdin, sys.stdout)
    try:
        return run(args, io)
    except AgentError as exc:
        io.say(f"Lỗi: {exc}")
        return 2
    except KeyboardInterrupt:
        io.say("\nĐã dừng.")
        return 130
    except Exception:  # whatever a driver throws: a sentence, never a traceback or a class name
        io.say("Lỗi: chương trình ký số gặp sự cố không mong đợi. Hãy chạy lại; nếu vẫn lỗi, báo cho nhân viên "
               "CNTT của trường.")
        return 2


if __name__ == "__main__":
    sys.exit(main())
