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


def _non_negative_float(raw: str) -> float:
    value = float(raw)
    if value < 0:
        raise ValueError("expected a number of 0 or more")
    return value


def _timezone(raw: str) -> str:
    try:
        ZoneInfo(raw)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError("unknown time zone") from exc
    return raw


def _clock_time(raw: str) -> str:
    hours, _, minutes = raw.partition(":")
    if not (hours.isdigit() and minutes.isdigit() and int(hours) < 24 and int(minutes) < 60):
        raise ValueError("expected HH:MM")
    return f"{int(hours):02d}:{int(minutes):02d}"


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
    Setting("PRODUCTION", "auto", str,
            "true refuses unsafe settings at start-up (weak keys); auto: true whenever DATABASE_URL is set "
            "(except in tests); false for a development machine"),
    Setting("SECRET_KEY", "", str,
            "signs sessions and CSRF tokens (at least 32 random bytes); empty means one generated into the "
            "instance folder, which production refuses"),
    Setting("WRAPPING_KEYS", "", lambda raw: tuple(k.strip() for k in raw.split(",") if k.strip()),
            "keys that encrypt the secrets kept in the database (seal passphrases, HSM PINs, the outer layer of "
            "signing-PIN locks), comma-separated, newest first: the first seals, the others only open (during a "
            "rotation, see `flask keys rotate`); empty means one generated into the instance folder, which "
            "production refuses"),
    Setting("DATABASE_ALLOW_SUPERUSER", "false", _boolean,
            "start even when the PostgreSQL role is a superuser or has BYPASSRLS (never in production: such a "
            "role walks through row-level security, the second wall between schools)"),
    Setting("SESSION_COOKIE_SECURE", "auto", str,
            "send cookies over HTTPS only: true, false, or auto (true whenever DATABASE_URL is set)"),
    Setting("SESSION_HOURS", "12", _positive_int, "how long a login lasts without activity (hours)"),
    Setting("SESSION_ABSOLUTE_HOURS", "24", _positive_int,
            "longest a login lasts however active it is (hours); then the user signs in again"),
    Setting("PASSWORD_HASH_METHOD", "scrypt", str,
            "werkzeug password hash method (scrypt by default)"),
    Setting("PASSWORD_MIN_LENGTH", "8", _positive_int, "shortest password accepted"),
    Setting("PASSWORD_LINK_HOURS", "72", _positive_int,
            "how long a set-password link (a reset or a new account) stays usable"),
    Setting("LOGIN_FREE_FAILURES", "5", _positive_int,
            "failed logins of one account from one address within the window before each try must wait"),
    Setting("LOGIN_FIRST_DELAY_SECONDS", "30", _positive_int,
            "the first wait after the free failures; it doubles with every further failure of that pair"),
    Setting("LOGIN_MAX_DELAY_MINUTES", "15", _positive_int, "the longest wait between two tries"),
    Setting("LOGIN_MAX_ACCOUNTS_PER_ADDRESS", "30", _positive_int,
            "accounts one address may fail on within the window before it waits too (password spraying); "
            "accounts that signed in from that address before are not held back"),
    Setting("LOGIN_THROTTLE_MINUTES", "15", _positive_int, "the window over which failures count, in minutes"),
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
    Setting("PAGE_CACHE_BYTES", str(32 * 1024 * 1024), int,
            "how much each web process keeps of rendered grid and year-end rows (portal/pagecache.py); 0: none"),
    Setting("PAGE_CACHE_SECONDS", "600", _positive_float,
            "longest a rendered part is kept (a change made outside the portal shows after this at the latest)"),
    Setting("TRUST_ROOTS", "", _existing_files,
            "root certificates (PEM or DER files, comma-separated) that signatures must chain to: the national "
            "root and the government CA root in production; empty means the demo CA in the instance folder"),
    Setting("TIMESTAMP_URL", "", str,
            "RFC 3161 timestamp authority for every signature and document timestamp (a real TSA in production, "
            "its root in TRUST_ROOTS); empty: the demo stand-in at DEMO_PKI_URL when TRUST_ROOTS is empty, else none"),
    Setting("SIGNATURE_LEVEL", "B-LTA", _one_of("B-B", "B-T", "B-LT", "B-LTA"),
            "PAdES level every issued record must reach: B-T timestamps each signature, B-LT also embeds the "
            "validation data (certificates, OCSP/CRL) at the seal, B-LTA also ends with a document timestamp; "
            "the produced file is checked and nothing below it is issued"),
    Setting("DEMO_PKI_URL", "http://127.0.0.1:5200", lambda raw: raw.rstrip("/"),
            "the demo CA's timestamp, OCSP and CRL service (python -m standins.pki; ./dev.sh demo starts it), "
            "written into the demo certificates when the demo CA is created"),
    Setting("SIGNING_SERVICE_ATTEMPTS", "3", _positive_int,
            "attempts per record when the timestamp authority or a revocation source does not answer"),
    Setting("SIGNING_SERVICE_RETRY_SECONDS", "5", _non_negative_float,
            "wait before the second attempt (it doubles with every attempt after that); 0: no wait"),
    Setting("TIMESTAMP_RENEWAL_MARGIN_DAYS", "365", _positive_int,
            "an issued record's archive timestamp is renewed when its authority's certificate expires within "
            "this many days (`flask records renew-timestamps`)"),
    Setting("TIMESTAMP_RETIRED_DIGESTS", "md5,sha1", lambda raw: tuple(p.strip() for p in raw.split(",") if p.strip()),
            "digest algorithms no longer trusted: a last archive timestamp made with one is renewed"),
    Setting("TIMESTAMP_RENEWAL_BATCH", "200", _positive_int, "records renewed per run at most"),
    Setting("TIMESTAMP_RENEWAL_AT", "02:30", _clock_time,
            "when the scheduled renewal runs each day (HH:MM in TIMEZONE; what cron is set to), shown to operators"),
    Setting("VERIFY_FETCH_REVOCATION", "false", _boolean,
            "let validation fetch OCSP/CRL answers a file does not carry (from the CA's services named in the "
            "certificates); off: certificates are judged from the validation data embedded in the file only"),
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


def resolve_secret_key(instance_path: Path, configured: str, name: str = "secret_key") -> str:
    """The configured key, or one generated once into the instance folder and kept there."""
    if configured:
        return configured
    path = instance_path / name
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


def is_production(settings: Mapping[str, Any]) -> bool:
    """Production refuses unsafe settings: explicitly, or whenever DATABASE_URL is set outside the tests."""
    value = settings.get("PRODUCTION", "auto")
    if isinstance(value, bool):
        return value
    if value == "auto":
        return bool(settings.get("DATABASE_URL")) and not settings.get("TESTING")
    try:
        return _boolean(value)
    except ValueError as exc:
        raise ConfigError(f"PRODUCTION={value!r} is not valid: expected true, false or auto") from exc


MIN_KEY_BYTES = 32
# Values seen in tutorials, examples and this project's own tests: never a production key.
KNOWN_WEAK_KEYS = frozenset({
    "dev", "development", "secret", "secret-key", "secret_key", "secretkey", "changeme", "change-me", "change_me",
    "please-change-me", "test", "testing", "test-secret-key", "bench", "default", "password", "hocbaso",
    "hocbaso2025", "your-secret-key", "your-secret-key-here", "super-secret", "supersecret", "not-secret",
    "replace-me", "xxx", "...",
})


def key_problem(name: str, value: str) -> str | None:
    """Why `value` is not a safe production key for the setting `name`, or None."""
    generate = "python -c 'import secrets; print(secrets.token_urlsafe(48))'"
    if not value:
        return f"{name} is not set: production needs a long random value of its own ({generate})"
    if value.strip().lower() in KNOWN_WEAK_KEYS or len(set(value)) < 10:
        return f"{name} is a known or guessable value: set a long random one ({generate})"
    if len(value.encode()) < MIN_KEY_BYTES:
        return f"{name} is too short ({len(value.encode())} bytes, at least {MIN_KEY_BYTES}): {generate}"
    return None


def check_production_keys(secret_key: str, wrapping_keys: tuple[str, ...]) -> None:
    """Stop a production start-up on a missing, short or weak key, naming the variable."""
    problem = key_problem("SECRET_KEY", secret_key)
    if problem is None:
        problem = key_problem("WRAPPING_KEYS", wrapping_keys[0] if wrapping_keys else "")
    if problem is None and secret_key in wrapping_keys:
        problem = "WRAPPING_KEYS must differ from SECRET_KEY: the session key and the key of stored secrets are two"
    if problem:
        raise ConfigError(problem)
