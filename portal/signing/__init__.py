"""Signing: the demo PKI (`pki`), the visible stamp (`stamp`), the signing engine (`engine`), validation
(`validate`), and the pages where people register their certificates (`views`, `services`).

The configuration the rest of the portal reads goes through the helpers below, so that the embedded
default (the demo CA in the instance folder) is decided in one place.
"""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from flask import Flask, current_app

PKI_FOLDER = "pki"


def pki_folder(app: Flask | None = None) -> Path:
    """Where the demo CA lives: <instance>/pki."""
    return Path((app or current_app).instance_path) / PKI_FOLDER


def trust_root_paths(app: Flask | None = None) -> tuple[str, ...]:
    """`TRUST_ROOTS`, or the demo root in the instance folder when none is configured."""
    from portal.signing.pki import ROOT_FILE

    app = app or current_app
    configured = tuple(app.config.get("TRUST_ROOTS") or ())
    return configured or (str(pki_folder(app) / ROOT_FILE),)


def trust_roots(app: Flask | None = None) -> list[x509.Certificate]:
    """The root certificates every signature must chain to (files that do not exist are skipped)."""
    from portal.signing.pki import load_trust_roots

    return load_trust_roots(trust_root_paths(app))


def timestamp_url(app: Flask | None = None) -> str | None:
    """The RFC 3161 timestamp authority to use: `TIMESTAMP_URL`, else the demo's (with the demo CA), else None."""
    app = app or current_app
    if app.config.get("TIMESTAMP_URL"):
        return app.config["TIMESTAMP_URL"]
    if not app.config.get("TRUST_ROOTS") and app.config.get("DEMO_PKI_URL"):
        from portal.signing.pki import TSA_PATH

        return app.config["DEMO_PKI_URL"] + TSA_PATH
    return None


def signature_level(app: Flask | None = None) -> str:
    """The PAdES level issued records must reach (`SIGNATURE_LEVEL`)."""
    return (app or current_app).config.get("SIGNATURE_LEVEL") or "B-LTA"


def demo_ca(app: Flask | None = None):  # type: ignore[no-untyped-def]
    """The demo CA of the instance folder, created on first use naming the demo PKI service (`DEMO_PKI_URL`)."""
    from portal.signing.pki import create_demo_ca

    app = app or current_app
    return create_demo_ca(pki_folder(app), service_url=app.config.get("DEMO_PKI_URL") or None)


def fetch_revocation(app: Flask | None = None) -> bool:
    """Whether validation may fetch revocation data a file does not carry (`VERIFY_FETCH_REVOCATION`)."""
    return bool((app or current_app).config.get("VERIFY_FETCH_REVOCATION"))
