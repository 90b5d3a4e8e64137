"""The demo CA's stand-in (`standins.pki`): its timestamp authority answers valid RFC 3161 tokens, signed with
a key it holds loaded, as a real authority does (not parsed again for every token)."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest
from asn1crypto import tsp
from cryptography.hazmat.primitives import serialization
from pyhanko.sign.timestamps.api import TimeStamper
from pyhanko.sign.timestamps.common_utils import handle_tsp_response
from pyhanko.sign.validation.generic_cms import validate_tst_signed_data
from pyhanko_certvalidator import ValidationContext

from portal.signing import engine, pki
from standins.pki import create_app


def test_timestamps_are_valid_tokens_signed_without_parsing_the_key_again(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "pki"
    ca = pki.create_demo_ca(folder, service_url="http://127.0.0.1:9")
    client = create_app(folder).test_client()
    imprint = hashlib.sha256(b"hoc ba so").digest()

    def timestamp() -> object:
        nonce, asked = TimeStamper().request_cms(imprint, "sha256")
        answer = client.post("/tsa", data=asked.dump(), content_type="application/timestamp-query")
        assert answer.status_code == 200 and answer.mimetype == "application/timestamp-reply"
        return handle_tsp_response(tsp.TimeStampResp.load(answer.data), nonce)  # granted, our nonce

    timestamp()  # the first request loads the CA's folder
    parsed: list[str] = []
    for name in ("load_der_private_key", "load_pem_private_key"):
        real = getattr(serialization, name)
        monkeypatch.setattr(serialization, name,
                            lambda *args, _real=real, _name=name, **kwargs: parsed.append(_name) or _real(*args,
                                                                                                          **kwargs))
    tokens = [timestamp() for _ in range(3)]
    assert parsed == []

    context = ValidationContext(trust_roots=[engine._asn1(ca.root)])
    for token in tokens:
        status = asyncio.run(validate_tst_signed_data(token["content"], context, lambda _algorithm: imprint))
        assert status["intact"] and status["valid"] and status["trust_problem_indic"] is None
        assert status["signing_cert"].subject.native["common_name"] == pki.DEMO_TSA_NAME


def test_a_request_that_is_not_rfc_3161_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "pki"
    pki.create_demo_ca(folder, service_url="http://127.0.0.1:9")
    client = create_app(folder).test_client()
    assert client.post("/tsa", data=b"not a request").status_code == 400
