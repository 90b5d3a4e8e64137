"""Commands meant for cron and for operators answer in one clear line and the right exit code."""

from __future__ import annotations

import socket

from tests.city_helpers import API_KEY, standin


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_create_admin_refuses_an_existing_username_in_one_line(app, make):
    make.district()
    runner = app.test_cli_runner()
    args = ["create-admin", "--username", "phong.admin", "--full-name", "Trần Thị Mai", "--password",
            "Ngay-hoc-bay-mau-2026"]
    first = runner.invoke(args=args)
    assert first.exit_code == 0, first.output
    second = runner.invoke(args=args)
    assert second.exit_code == 1
    expected = "Error: an account named 'phong.admin' already exists; nothing changed"
    assert second.output.strip().splitlines() == [expected]
    assert "Traceback" not in second.output


def test_interop_pull_with_the_city_unreachable_says_so_in_one_line(app, make, monkeypatch):
    make.district()
    monkeypatch.setitem(app.config, "CITY_URL", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.setitem(app.config, "CITY_TIMEOUT_SECONDS", 2)
    result = app.test_cli_runner().invoke(args=["interop", "pull"])
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: the city system did not answer"), result.output
    assert "UNREACHABLE" in lines[0]


def test_interop_pull_prints_a_human_summary(app, make, monkeypatch, tmp_path):
    make.district()
    with standin(tmp_path / "city") as city:
        monkeypatch.setitem(app.config, "CITY_URL", city.url)
        monkeypatch.setitem(app.config, "CITY_API_KEY", API_KEY)
        result = app.test_cli_runner().invoke(args=["interop", "pull"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "0 returned record(s) read: 0 accepted, 0 refused."
