"""Production refuses unsafe settings: weak or missing keys stop the start-up, naming the variable."""

from __future__ import annotations

import pytest

from portal.app import create_app
from portal.config import ConfigError, is_production, load_settings

STRONG = "Vq3-8hZr_2mXp9LwTc4YbN7dKs1FgJ6eHa5u"
STRONG_WRAPPING = "Wk7-2nRt_9pLq4ZsXc8VbM3hJd6GfY1eUa0i"


def start(tmp_path, **settings: object):
    """Start the app in production mode on SQLite (no database is touched before the keys are checked)."""
    overrides = {"PRODUCTION": "true", "DATABASE_URL": f"sqlite:///{tmp_path / 'p.sqlite'}", "REDIS_URL": "",
                 "SECRET_KEY": STRONG, "WRAPPING_KEYS": (STRONG_WRAPPING,), **settings}
    return create_app(overrides, instance_path=str(tmp_path / "instance"))


@pytest.mark.parametrize(("settings", "named", "why"), [
    pytest.param({"SECRET_KEY": "dev"}, "SECRET_KEY", "known or guessable", id="dev"),
    pytest.param({"SECRET_KEY": ""}, "SECRET_KEY", "is not set", id="missing"),
    pytest.param({"SECRET_KEY": "a8Kd02-Lmq7Zx3Rt9"}, "SECRET_KEY", "too short", id="short"),
    pytest.param({"SECRET_KEY": "changeme"}, "SECRET_KEY", "known or guessable", id="changeme"),
    pytest.param({"SECRET_KEY": "a" * 64}, "SECRET_KEY", "known or guessable", id="one-letter"),
    pytest.param({"WRAPPING_KEYS": ()}, "WRAPPING_KEYS", "is not set", id="no-wrapping-key"),
    pytest.param({"WRAPPING_KEYS": ("short-key-1",)}, "WRAPPING_KEYS", "too short", id="short-wrapping-key"),
    pytest.param({"WRAPPING_KEYS": (STRONG,)}, "WRAPPING_KEYS", "must differ from SECRET_KEY", id="same-key"),
])
def test_production_refuses_a_weak_key_naming_the_variable(tmp_path, settings, named, why):
    with pytest.raises(ConfigError, match=named) as refused:
        start(tmp_path, **settings)
    assert why in str(refused.value)
    assert not (tmp_path / "instance" / "secret_key").exists()  # nothing generated silently


def test_production_starts_with_strong_keys(tmp_path):
    app = start(tmp_path)
    assert app.config["PRODUCTION"] is True and app.config["WRAPPING_KEYS"] == (STRONG_WRAPPING,)


def test_the_environment_is_read_too(tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'env.sqlite'}")  # production, by DATABASE_URL
    monkeypatch.setenv("SECRET_KEY", "dev")
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        create_app(instance_path=str(tmp_path / "instance"))


def test_production_is_when_asked_or_when_a_database_is_set_outside_the_tests():
    assert not is_production(load_settings({}))  # the embedded default: generated keys are fine
    assert is_production(load_settings({"DATABASE_URL": "postgres://u@db/hocba"}))
    assert not is_production(load_settings({"DATABASE_URL": "postgres://u@db/hocba"}, {"TESTING": True}))
    assert not is_production(load_settings({"DATABASE_URL": "postgres://u@db/hocba", "PRODUCTION": "false"}))
    assert is_production(load_settings({"PRODUCTION": "true"}))
    with pytest.raises(ConfigError, match="PRODUCTION"):
        is_production(load_settings({"PRODUCTION": "maybe"}))


def test_the_embedded_default_generates_its_keys(tmp_path):
    app = create_app({"REDIS_URL": "", "DATABASE_URL": "", "SECRET_KEY": ""}, instance_path=str(tmp_path / "instance"))
    assert app.config["PRODUCTION"] is False
    assert len(app.config["SECRET_KEY"]) >= 32 and len(app.config["WRAPPING_KEYS"][0]) >= 32
    assert app.config["WRAPPING_KEYS"][0] != app.config["SECRET_KEY"]  # two keys, two files
