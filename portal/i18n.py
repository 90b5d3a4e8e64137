"""Language and time: Vietnamese first, English second; dates dd/mm/yyyy; times shown in the
configured zone (Asia/Ho_Chi_Minh) and stored in UTC.

The Vietnamese wording is the source text of every message; `portal/translations/en` translates it.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from flask import Flask, current_app, g, has_request_context, session
from flask_babel import get_locale, get_translations
from flask_login import current_user
from jinja2 import pass_eval_context
from jinja2.nodes import EvalContext
from markupsafe import Markup

from portal.extensions import babel

LOCALES = ("vi", "en")


def select_locale() -> str:
    if not has_request_context():
        return current_app.config["DEFAULT_LOCALE"]
    if current_user.is_authenticated and current_user.locale in LOCALES:
        return current_user.locale
    chosen = session.get("locale")
    if chosen in LOCALES:
        return chosen
    return current_app.config["DEFAULT_LOCALE"]


def local_zone() -> ZoneInfo:
    return ZoneInfo(current_app.config["TIMEZONE"])


def format_date(value: date | datetime | None) -> str:
    """dd/mm/yyyy; a datetime is first moved to the local zone."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        value = value.astimezone(local_zone()).date()
    return value.strftime("%d/%m/%Y")


def format_datetime(value: datetime | None) -> str:
    """dd/mm/yyyy HH:MM in the local zone."""
    if value is None:
        return ""
    return value.astimezone(local_zone()).strftime("%d/%m/%Y %H:%M")


def parse_date(text: str) -> date:
    """A date typed as dd/mm/yyyy (also d/m/yyyy, with - or . between); ValueError otherwise."""
    cleaned = text.strip().replace("-", "/").replace(".", "/")
    return datetime.strptime(cleaned, "%d/%m/%Y").date()


def remembered_gettext(message: str) -> str:
    """The templates' `_()`: a message is translated once per request, then remembered.

    A grid or a class list asks for the same labels once per row or cell, and flask_babel finds the
    request's locale and catalogue again at every call; that lookup cost more than the row itself. The
    locale cannot change within a request (flask_babel keeps the first one it finds), so neither can
    the translations remembered here.
    """
    if not g:  # no application context: flask_babel translates nothing either
        return message
    memo = g.get("translated_messages")
    if memo is None:
        memo = g.translated_messages = {}
    translated = memo.get(message)
    if translated is None:
        translated = memo[message] = get_translations().ugettext(message)
    return translated


@pass_eval_context
def template_gettext(eval_ctx: EvalContext, message: str, **variables: Any) -> str:
    """The templates' `_()`, as Jinja's i18n extension makes it (translated, marked safe where the template
    escapes, then formatted with the variables, which are escaped), but called directly: the extension
    reaches it through the template context at every call, which on a page with a row per pupil cost
    more than the rows' own work."""
    translated = remembered_gettext(message)
    if eval_ctx.autoescape:
        translated = Markup(translated)
    return translated % variables


def init_app(app: Flask) -> None:
    babel.init_app(app, locale_selector=select_locale, timezone_selector=lambda: app.config["TIMEZONE"],
                   default_translation_directories="translations")
    app.jinja_env.install_gettext_callables(
        gettext=remembered_gettext,
        ngettext=lambda s, p, n: get_translations().ungettext(s, p, n),
        pgettext=lambda c, s: get_translations().upgettext(c, s),
        npgettext=lambda c, s, p, n: get_translations().unpgettext(c, s, p, n),
        newstyle=True)
    app.jinja_env.globals.update(_=template_gettext, gettext=template_gettext)
    app.jinja_env.filters["date_vn"] = format_date
    app.jinja_env.filters["datetime_vn"] = format_datetime
    app.jinja_env.globals.update(LOCALES=LOCALES, get_locale=lambda: str(get_locale()))
