"""The programs the suite drives besides Python, and the Debian package each comes from.

Outside CI a test whose program is missing skips, naming the package to install; with CI=true (or
PORTAL_REQUIRE_BROWSER for the browser) a missing program fails the test: CI must run everything.
"""

from __future__ import annotations

import glob
import os
import shutil

import pytest

# program -> Debian package (README: "What the tests need")
PACKAGES = {
    "chromium": "chromium",
    "pdfsig": "poppler-utils",
    "pdftotext": "poppler-utils",
    "pdffonts": "poppler-utils",
    "pdftoppm": "poppler-utils",
    "zbarimg": "zbar-tools",
    "softhsm2-util": "softhsm2",
    "pkcs11-tool": "opensc",
    "qpdf": "qpdf",
    "openssl": "openssl",
}

# SoftHSM's PKCS#11 module lives in a different folder on each distribution: search the usual ones.
SOFTHSM_PATTERNS = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/*/softhsm/libsofthsm2.so",
    "/usr/lib64/softhsm/libsofthsm2.so",
    "/usr/lib64/pkcs11/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
    "/opt/homebrew/lib/softhsm/libsofthsm2.so",
)


def strict() -> bool:
    """In CI a missing program is a failure, not a skip."""
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def missing(programs: tuple[str, ...]) -> list[str]:
    return [p for p in programs if shutil.which(p) is None]


def reason(programs: list[str]) -> str:
    packages = sorted({PACKAGES.get(p, p) for p in programs})
    return f"needs {', '.join(programs)}: apt-get install {' '.join(packages)}"


def require(*programs: str) -> None:
    """Skip (or, in CI, fail) the calling test unless every program is on PATH."""
    absent = missing(programs)
    if absent:
        (pytest.fail if strict() else pytest.skip)(reason(absent))


def needs(*programs: str) -> pytest.MarkDecorator:
    """A mark for a test or module: skipped without the programs, except in CI, where it runs and fails."""
    absent = missing(programs)
    return pytest.mark.skipif(bool(absent) and not strict(), reason=reason(absent) if absent else "")


def softhsm_module() -> str | None:
    """The SoftHSM PKCS#11 module, wherever this distribution put it (SOFTHSM2_MODULE overrides)."""
    configured = os.environ.get("SOFTHSM2_MODULE")
    if configured:
        return configured if os.path.exists(configured) else None
    for pattern in SOFTHSM_PATTERNS:
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    return None


def require_softhsm() -> str:
    """The SoftHSM module and its tools, or skip (fail in CI) naming the packages."""
    absent = missing(("softhsm2-util", "pkcs11-tool"))
    module = softhsm_module()
    if module is None and "softhsm2-util" not in absent:
        absent.append("libsofthsm2.so")
    if absent:
        (pytest.fail if strict() else pytest.skip)(reason(absent).replace("libsofthsm2.so", "softhsm2"))
    assert module is not None
    return module
