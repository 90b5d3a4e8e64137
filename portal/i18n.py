"""Language and time: Vietnamese first, English second; dates dd/mm/yyyy; times shown in the
configured zone (Asia/Ho_Chi_Minh) and stored in UTC.

The Vietnamese wording is the source text of every message; `portal/translations/en` translates it.
"""

from __future__ import annotations

import weakref
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from flask import Flask, current_app, has_request_context, session
from flask.globals import _cv_app
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


def request_memo(name: str) -> dict[Any, Any] | None:
    """A dict that lives as long as the application context (one per request), or None outside one.

    Read straight from the context variable: through the `g` proxy each look-up cost more than the
    dict look-up it guards, and a class page asks hundreds of times."""
    ctx = _cv_app.get(None)
    if ctx is None:
        return None
    values = ctx.g.__dict__
    memo = values.get(name)
    if memo is None:
        memo = values[name] = {}
    return memo


# Per catalogue (flask_babel loads one per locale and keeps it): {message: translation} and
# {message: Markup(translation)}. A catalogue does not change once loaded, so what was looked up in it
# holds for every later request in that locale; a catalogue loaded again is a new key.
_CATALOGUE_MEMOS: weakref.WeakKeyDictionary[Any, tuple[dict[str, str], dict[str, Markup]]] = (
    weakref.WeakKeyDictionary())


def _translation_memos() -> tuple[dict[str, str], dict[str, Markup]] | None:
    """The memos of the current catalogue, found once per request (None outside an application context)."""
    ctx = _cv_app.get(None)
    if ctx is None:
        return None
    values = ctx.g.__dict__
    memos = values.get("translation_memos")
    if memos is None:
        translations = get_translations()
        try:
            memos = _CATALOGUE_MEMOS.get(translations)
            if memos is None:
                memos = _CATALOGUE_MEMOS[translations] = ({}, {})
        except TypeError:  # a catalogue that cannot be a weak key: remembered for this request only
            memos = ({}, {})
        values["translation_memos"] = memos
    return memos


def remembered_gettext(message: str) -> str:
    """The templates' `_()` (and a class page's labels): a message looked up once, then remembered.

    A grid or a class list asks for the same labels once per row or cell, and flask_babel finds the
    request's locale and catalogue again at every call; that lookup cost more than the row itself. The
    request's catalogue is found once (the locale cannot change within a request: flask_babel keeps the
    first one it finds), and a message is looked up in it once for all requests.
    """
    memos = _translation_memos()
    if memos is None:  # no application context: flask_babel translates nothing either
        return message
    translated = memos[0].get(message)
    if translated is None:
        translated = memos[0][message] = get_translations().ugettext(message)
    return translated


@pass_eval_context
def template_gettext(eval_ctx: EvalContext, message: str, **variables: Any) -> str:
    """The templates' `_()`, as Jinja's i18n extension makes it (translated, marked safe where the template
    escapes, then formatted with the variables, which are escaped), but called directly: the extension
    reaches it through the template context at every call, which on a page with a row per pupil cost
    more than the rows' own work. A message without variables and without `%` is returned as it is
    (formatting it with no variables would give the same text), and its safe form is remembered too."""
    if not eval_ctx.autoescape:
        translated = remembered_gettext(message)
        return translated % variables if variables or "%" in translated else translated
    memos = _translation_memos()
    if memos is None:
        return Markup(message) % variables
    markup = memos[1].get(message)
    if markup is None:
        markup = memos[1][message] = Markup(remembered_gettext(message))
    return markup % variables if variables or "%" in markup else markup


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
