"""Fixtures for real-browser tests: Debian's Chromium driven by Playwright, the portal on a local port."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator

import pytest
from flask import Flask
from werkzeug.serving import make_server

from tests.tools import strict

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def require_browser() -> None:
    """Skip without Chromium, except in CI or with PORTAL_REQUIRE_BROWSER, where its absence fails."""
    if not os.path.exists(CHROMIUM):
        message = "needs chromium: apt-get install chromium"
        (pytest.fail if strict() or os.environ.get("PORTAL_REQUIRE_BROWSER") else pytest.skip)(message)
# As root Chromium needs --no-sandbox; the rest keeps it off a network this machine does not have.
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield instance
        instance.close()


@pytest.fixture
def live_url(app: Flask) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=5)
