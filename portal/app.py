"""The application factory: configuration, then one `init_app` per part, in order."""

from __future__ import annotations

import gc
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

from flask import Flask, redirect, render_template, url_for
from flask_babel import gettext as _

from portal.config import check_production_keys, cookie_secure, is_production, load_settings, resolve_secret_key

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def create_app(overrides: dict[str, Any] | None = None, *, instance_path: str | None = None) -> Flask:
    app = Flask(
        "portal",
        instance_path=instance_path or os.environ.get("PORTAL_INSTANCE_PATH") or str(PROJECT_ROOT / "instance"),
        template_folder=str(PROJECT_ROOT / "templates"),
        static_folder=str(PROJECT_ROOT / "static"),
    )
    _configure(app, overrides)
    if app.config["PROXY_HOPS"]:
        # Behind a reverse proxy: the client's address (per-address limits, the trail) comes from X-Forwarded-For.
        from werkzeug.middleware.proxy_fix import ProxyFix

        hops = app.config["PROXY_HOPS"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)  # type: ignore[method-assign]

    from portal import cli, extensions, headers, i18n, inputs, jobs, jobs_views, ops, pagecache, storage, transactions
    from portal.auth import views as auth_views
    from portal.compliance import views as compliance_views
    from portal.district import views as district_views
    from portal.grading import views as grading_views
    from portal.interop import views as interop_views
    from portal.pupils import views as pupils_views
    from portal.records import views as records_views
    from portal.results import views as results_views
    from portal.school import views as school_views
    from portal.schoolyear import views as schoolyear_views
    from portal.signing import agent_api as signing_agent_api
    from portal.signing import views as signing_views
    from portal.trail import views as trail_views
    from portal.verify import views as verify_views
    from tenants import access

    inputs.init_app(app)  # first: its converters must be in place before any route is registered
    ops.init_app(app)
    extensions.db.init_app(app)
    extensions.migrate.init_app(app, extensions.db, directory=str(PROJECT_ROOT / "migrations"))
    extensions.csrf.init_app(app)
    headers.init_app(app)
    i18n.init_app(app)
    storage.init_app(app)
    jobs.init_app(app)
    pagecache.init_app(app)  # after jobs: its commit step comes after theirs
    access.init_app(app)
    transactions.init_app(app)  # after access: its end of a request runs before access's (teardowns run last first)
    auth_views.init_app(app)
    district_views.init_app(app)
    school_views.init_app(app)
    schoolyear_views.init_app(app)
    grading_views.init_app(app)
    pupils_views.init_app(app)
    results_views.init_app(app)
    records_views.init_app(app)
    trail_views.init_app(app)
    compliance_views.init_app(app)
    signing_agent_api.init_app(app)
    signing_views.init_app(app)
    interop_views.init_app(app)
    verify_views.init_app(app)
    jobs_views.init_app(app)
    cli.init_app(app)
    _register_error_pages(app)
    # Browsers and PDF viewers still ask for /favicon.ico without looking at the page's <link rel="icon">.
    app.add_url_rule("/favicon.ico", "favicon",
                     lambda: redirect(url_for("static", filename="favicon.svg"), code=301))
    _refuse_a_role_that_bypasses_rls(app)
    return app


def prepare_process(app: Flask, *, jobs: bool = False) -> None:
    """Once a long-running process (a gunicorn worker: `wsgi.py`; an RQ worker: `worker.py`, with `jobs`)
    has its app: warm the signature machinery (and, for a worker, what its jobs load: `portal.jobs.warm_up`),
    then freeze the start-up heap.

    The warm-up (one signature and validation of a built-in sample) pays the first-use costs before the
    first upload check or seal. `gc.freeze()` moves every object alive now (the imported modules, the app,
    the caches warmed) out of the collector's reach: a full collection later scans only what requests made
    since, not the ~300,000 objects of start-up (otherwise a 150-200 ms pause in whichever request
    triggers it). Tests and scripts that build apps of their own do not call it.
    """
    from portal.signing.validate import warm_up

    warm_up()
    if jobs:
        from portal import jobs as job_queue

        job_queue.warm_worker(app)
    gc.collect()
    gc.freeze()


def _refuse_a_role_that_bypasses_rls(app: Flask) -> None:
    """On PostgreSQL, a superuser or BYPASSRLS role would walk through row-level security: refuse to start."""
    if not app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql") or app.config["DATABASE_ALLOW_SUPERUSER"]:
        return
    import logging

    import sqlalchemy as sa

    from portal.config import ConfigError
    from portal.extensions import db
    from tenants.rls import check_database_role

    with app.app_context():
        try:
            with db.engine.connect() as connection:
                problem = check_database_role(connection)
        except sa.exc.OperationalError as exc:  # unreachable now: /healthz will say so; checked at the next start
            logging.getLogger(__name__).warning("database role not checked: %s", str(exc).splitlines()[0])
            return
        finally:
            db.engine.dispose()  # no connection made before a fork (gunicorn's preload, RQ's work horse)
    if problem:
        raise ConfigError(f"DATABASE_URL: {problem}. Connect as an ordinary role that owns the tables "
                          "(see the README's Production section), or set DATABASE_ALLOW_SUPERUSER=true outside "
                          "production.")


def _configure(app: Flask, overrides: dict[str, Any] | None) -> None:
    settings = load_settings(os.environ, overrides)
    app.config.update(settings)
    production = is_production(settings)
    if production:  # before anything is generated into the instance folder: production names its keys
        check_production_keys(settings["SECRET_KEY"], settings["WRAPPING_KEYS"])
    app.config["PRODUCTION"] = production
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    database_url = settings["DATABASE_URL"] or f"sqlite:///{Path(app.instance_path) / 'portal.sqlite'}"
    secure = cookie_secure(settings["SESSION_COOKIE_SECURE"], settings["DATABASE_URL"])
    app.config.update(
        SECRET_KEY=resolve_secret_key(Path(app.instance_path), settings["SECRET_KEY"]),
        WRAPPING_KEYS=settings["WRAPPING_KEYS"] or (resolve_secret_key(Path(app.instance_path), "", "wrapping_key"),),
        SQLALCHEMY_DATABASE_URI=database_url,
        SESSION_COOKIE_SECURE=secure,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        REMEMBER_COOKIE_SECURE=secure,
        REMEMBER_COOKIE_HTTPONLY=True,
        REMEMBER_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=timedelta(hours=settings["SESSION_HOURS"]),
        MAX_CONTENT_LENGTH=settings["MAX_UPLOAD_MB"] * 1024 * 1024,
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the session: a long form must not expire
    )
    if database_url.startswith("sqlite"):
        # Web threads and the job thread share one SQLite file: wait for a lock rather than fail.
        app.config["SQLALCHEMY_ENGINE_OPTIONS"] = {"connect_args": {"timeout": 30}}


def _register_error_pages(app: Flask) -> None:
    messages = {
        400: lambda: _("Yêu cầu không hợp lệ. Nếu bạn vừa gửi biểu mẫu, hãy tải lại trang và thử lại."),
        403: lambda: _("Bạn không có quyền mở trang này."),
        404: lambda: _("Không tìm thấy trang hoặc dữ liệu bạn yêu cầu."),
        413: lambda: _("Tệp tải lên quá lớn."),
        500: lambda: _("Đã có lỗi ở máy chủ. Dữ liệu của bạn chưa bị thay đổi; vui lòng thử lại."),
    }
    for code, message in messages.items():
        def handler(error: Exception, code: int = code, message: Any = message) -> tuple[str, int]:
            return render_template("error.html", code=code, message=message()), code

        app.register_error_handler(code, handler)
