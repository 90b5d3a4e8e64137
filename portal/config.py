"""Every setting of the portal, declared once with its default, read from the environment.

A setting's environment variable has the same name as its key. A bad value stops the start-up
with a message that names the variable, so a typo never turns into a silent default.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


class ConfigError(RuntimeError):
    """A setting has a value the portal cannot use."""


def _boolean(raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ValueError("expected true or false")


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value <= 0:
        raise ValueError("expected a whole number above 0")
    return value


def _positive_float(raw: str) -> float:
    value = float(raw)
    if value <= 0:
        raise ValueError("expected a number above 0")
    return value


def _timezone(raw: str) -> str:
    try:
        ZoneInfo(raw)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError("unknown time zone") from exc
    return raw


def _one_of(*choices: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return raw

    return parse


def _existing_files(raw: str) -> tuple[str, ...]:
    """Comma-separated paths, each of which must name a readable file: a typo must not mean "trust nothing"."""
    paths = tuple(p.strip() for p in raw.split(",") if p.strip())
    missing = [p for p in paths if not Path(p).is_file() or not os.access(p, os.R_OK)]
    if missing:
        raise ValueError(f"no readable file at {', '.join(missing)}")
    return paths


def _database_url(raw: str) -> str:
    # Accept the short PostgreSQL spelling and point it at psycopg 3, the driver we ship.
    for prefix in ("postgres://", "postgresql://"):
        if raw.startswith(prefix):
            return "postgresql+psycopg://" + raw[len(prefix) :]
    if raw and not raw.startswith(("sqlite:", "postgresql+psycopg://")):
        raise ValueError("expected a sqlite: or postgresql:// URL")
    return raw


@dataclass(frozen=True)
class Setting:
    key: str
    default: str
    parse: Callable[[str], Any]
    help: str


SETTINGS: tuple[Setting, ...] = (
    Setting("DATABASE_URL", "", _database_url,
            "SQLAlchemy URL; empty means SQLite in the instance folder"),
    Setting("REDIS_URL", "", str,
            "Redis for the RQ job queues; empty means jobs run in-process without Redis"),
    Setting("SECRET_KEY", "", str,
            "signs sessions and CSRF tokens; empty means one generated into the instance folder"),
    Setting("DATABASE_ALLOW_SUPERUSER", "false", _boolean,
            "start even when the PostgreSQL role is a superuser or has BYPASSRLS (never in production: such a "
            "role walks through row-level security, the second wall between schools)"),
    Setting("SESSION_COOKIE_SECURE", "auto", str,
            "send cookies over HTTPS only: true, false, or auto (true whenever DATABASE_URL is set)"),
    Setting("SESSION_HOURS", "12", _positive_int, "how long a login lasts"),
    Setting("PASSWORD_HASH_METHOD", "scrypt", str,
            "werkzeug password hash method (scrypt by default)"),
    Setting("PASSWORD_MIN_LENGTH", "8", _positive_int, "shortest password accepted"),
    Setting("LOGIN_MAX_FAILURES_PER_ACCOUNT", "5", _positive_int,
            "failed logins on one account within the window before it is throttled"),
    Setting("LOGIN_MAX_FAILURES_PER_ADDRESS", "20", _positive_int,
            "failed logins from one address within the window before it is throttled"),
    Setting("LOGIN_THROTTLE_MINUTES", "15", _positive_int, "the throttling window, in minutes"),
    Setting("DEFAULT_LOCALE", "vi", _one_of("vi", "en"), "interface language for new visitors"),
    Setting("TIMEZONE", "Asia/Ho_Chi_Minh", _timezone, "time zone in which times are shown"),
    Setting("JOB_QUEUE", "portal", str, "name of the RQ queue the portal's jobs go to"),
    Setting("JOB_TIMEOUT_SECONDS", "1800", _positive_int, "longest a single job may run"),
    Setting("JOB_HEARTBEAT_SECONDS", "15", _positive_float,
            "how often a running job writes its heartbeat between checkpoints"),
    Setting("JOB_HEARTBEAT_TIMEOUT_SECONDS", "90", _positive_float,
            "a running job silent for this long has lost its worker and is marked interrupted"),
    Setting("JOB_RECONCILE_SECONDS", "30", _positive_float,
            "how often each worker reconciles the job rows with the queue (also `flask jobs reconcile`)"),
    Setting("JOB_AUTO_RESUMES", "1", int,
            "how many times an interrupted resumable job is put back on the queue by itself"),
    Setting("JOB_ROW_WAIT_SECONDS", "5", _positive_float,
            "how long a worker waits for the row of a job queued inside a commit that has not ended yet"),
    Setting("LOG_FORMAT", "json", _one_of("json", "text"),
            "json: one JSON object per log line (request id, user, school, route, status, duration); text: plain"),
    Setting("LOG_LEVEL", "INFO", _one_of("DEBUG", "INFO", "WARNING", "ERROR"), "the lowest level logged"),
    Setting("STORAGE_BACKEND", "local", _one_of("local", "database"),
            "where files live: the instance folder, or the database every machine shares"),
    Setting("STORAGE_GC_GRACE_HOURS", "48", _positive_float,
            "`flask storage gc` leaves files younger than this alone (an import awaiting its confirmation)"),
    Setting("MAX_UPLOAD_MB", "20", _positive_int, "largest upload accepted"),
    Setting("TRUST_ROOTS", "", _existing_files,
            "root certificates (PEM or DER files, comma-separated) that signatures must chain to: the national "
            "root and the government CA root in production; empty means the demo CA in the instance folder"),
    Setting("TIMESTAMP_URL", "", str,
            "RFC 3161 timestamp authority added to every signature; empty means no timestamp"),
    Setting("AGENT_TOKEN_HOURS", "12", _positive_int,
            "how long the signing agent's sign-in (bearer token) lasts"),
    Setting("CSC_BASE_URL", "", lambda raw: raw.rstrip("/"),
            "remote signing service (Cloud Signature Consortium API), e.g. https://csc.example.vn; empty: none"),
    Setting("CSC_CLIENT_ID", "", str, "the portal's OAuth2 client id at the remote signing service"),
    Setting("CSC_CLIENT_SECRET", "", str, "the portal's OAuth2 client secret at the remote signing service"),
    Setting("CSC_HTTP_TIMEOUT_SECONDS", "20", _positive_int,
            "longest wait for one answer of the remote signing service"),
    Setting("CSC_APPROVAL_TIMEOUT_SECONDS", "300", _positive_int,
            "how long a remote signing batch waits for the signer's approval on the phone"),
    Setting("CSC_POLL_SECONDS", "2", _positive_int,
            "first interval between checks for the phone approval (it doubles up to 30 s)"),
    Setting("PROXY_HOPS", "0", int,
            "reverse proxies in front of the portal whose X-Forwarded-* headers are trusted (0: none)"),
    Setting("PUBLIC_URL", "http://127.0.0.1:5000", lambda raw: raw.rstrip("/"),
            "address the public reaches the portal at: printed in every record's QR code"),
    Setting("CITY_URL", "http://127.0.0.1:5100", lambda raw: raw.rstrip("/"),
            "the city system's API (contract v1, docs/city-contract.md); the demo's stand-in by default"),
    Setting("CITY_API_KEY", "demo-district-key-nhabe", str,
            "the district's API key at the city system (sent as X-District-Key); the default is the demo's"),
    Setting("CITY_TIMEOUT_SECONDS", "20", _positive_float,
            "longest wait for one answer of the city system before the upload is retried later"),
    Setting("CITY_MAX_ATTEMPTS", "8", _positive_int,
            "attempts per record before an upload is shown as stuck for someone to look at"),
    Setting("CITY_RETRY_SECONDS", "30", _positive_float,
            "wait before the second attempt; it doubles with every attempt after that"),
    Setting("CITY_RETRY_MAX_SECONDS", "1800", _positive_float, "longest wait between two attempts"),
    Setting("CITY_STUCK_MINUTES", "60", _positive_int,
            "an upload still waiting or sent after this long with no answer is shown as stuck"),
    Setting("CITY_TRUST_ROOTS", "", lambda raw: ",".join(_existing_files(raw)),
            "root certificates (PEM files, comma-separated) that returned records must chain to; "
            "empty: the signing package's configured roots"),
    Setting("VERIFY_WINDOW_MINUTES", "10", _positive_int,
            "the window, in minutes, over which public verification requests are counted per address"),
    Setting("VERIFY_LOOKUPS_PER_ADDRESS", "60", _positive_int,
            "verification-code lookups (page and API) one address may make within the window"),
    Setting("VERIFY_UPLOADS_PER_ADDRESS", "20", _positive_int,
            "uploaded files one address may have checked within the window"),
    Setting("VERIFY_MAX_UPLOAD_MB", "10", _positive_int,
            "largest PDF accepted for verification by upload"),
    Setting("FAMILY_WINDOW_MINUTES", "15", _positive_int,
            "the window, in minutes, over which wrong family access codes are counted per address"),
    Setting("FAMILY_FAILURES_PER_ADDRESS", "10", _positive_int,
            "wrong family access codes one address may type within the window before it is refused"),
    Setting("FAMILY_SESSION_MINUTES", "30", _positive_int,
            "how long a family stays signed in with an access code"),
    Setting("LOOKUP_LOG_DAYS", "90", _positive_int,
            "how long the public lookup log (hashed addresses, outcomes) is kept; `flask verify purge-log`"),
)


def load_settings(environ: Mapping[str, str], overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Parse every declared setting from `environ`; `overrides` (tests) win and are taken as given."""
    overrides = dict(overrides or {})
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        if setting.key in overrides:
            values[setting.key] = overrides.pop(setting.key)
            continue
        raw = environ.get(setting.key, setting.default)
        try:
            values[setting.key] = setting.parse(raw)
        except ValueError as exc:
            raise ConfigError(f"{setting.key}={raw!r} is not valid: {exc} ({setting.help})") from exc
    values.update(overrides)  # extra Flask keys such as TESTING
    return values


def resolve_secret_key(instance_path: Path, configured: str) -> str:
    """The configured key, or one generated once into the instance folder and kept there."""
    if configured:
        return configured
    path = instance_path / "secret_key"
    if not path.exists():
        instance_path.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


def cookie_secure(value: Any, database_url: str) -> bool:
    if isinstance(value, bool):
        return value
    if value == "auto":
        return bool(database_url)
    try:
        return _boolean(value)
    except ValueError as exc:
        raise ConfigError(f"SESSION_COOKIE_SECURE={value!r} is not valid: expected true, false or auto") from exc
