"""Hostile input stops at the door: no URL, form, query string or JSON body can make a 500.

- An id in a URL is bounded by the database's integer (PostgreSQL `integer`, 2^31 - 1): the app's
  `int` converter is replaced before any route is registered, so `/pupils/99999999999999999999` simply
  matches no route (404) on every route at once, instead of overflowing in the driver.
- A URL segment holding a control character matches no route either (PostgreSQL refuses NUL in text, and
  no code, name or username of ours holds one).
- NUL and the other C0 control characters (tab, line feed and carriage return excepted) are removed from
  query strings, form fields, uploaded file names and JSON bodies before any view sees them: they are never
  meaningful in what people type here, and PostgreSQL refuses NUL in text outright.
- What still slips through (an out-of-range number typed into a form field or a query string) is answered
  404 by one error handler, after rolling the failed transaction back.
"""

from __future__ import annotations

import re
from typing import Any

from flask import Flask, current_app, request
from sqlalchemy.exc import DataError
from werkzeug.datastructures import FileStorage, ImmutableMultiDict, MultiDict
from werkzeug.exceptions import BadRequest, NotFound
from werkzeug.routing import IntegerConverter, PathConverter, UnicodeConverter

DB_INT_MAX = 2**31 - 1  # PostgreSQL `integer`, the type of every id here
_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
_NUMERIC_OUT_OF_RANGE = "22003"  # PostgreSQL's SQLSTATE


class DatabaseInt(IntegerConverter):
    """`<int:...>`: a non-negative integer the database can hold; anything longer matches no route."""

    def __init__(self, map: Any, fixed_digits: int = 0, min: int | None = None, max: int | None = DB_INT_MAX,
                 signed: bool = False) -> None:
        super().__init__(map, fixed_digits=fixed_digits, min=min, max=min_of(max, DB_INT_MAX), signed=signed)


def min_of(value: int | None, bound: int) -> int:
    return bound if value is None else min(value, bound)


class CleanString(UnicodeConverter):
    """`<name>` / `<string:name>`: any segment without a slash or a control character."""

    def __init__(self, map: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(map, *args, **kwargs)
        self.regex = self.regex.replace("[^/]", r"[^/\x00-\x1f\x7f]")


class CleanPath(PathConverter):
    regex = r"[^/\x00-\x1f\x7f][^\x00-\x1f\x7f]*?"


def clean(text: str) -> str:
    """The text without NUL and other control characters (tab, line feed, carriage return are kept)."""
    return _CONTROLS.sub("", text)


def clean_value(value: Any) -> Any:
    """A JSON value with every string in it (keys too) cleaned."""
    if isinstance(value, str):
        return clean(value)
    if isinstance(value, list):
        return [clean_value(v) for v in value]
    if isinstance(value, dict):
        return {clean_value(k): clean_value(v) for k, v in value.items()}
    return value


def _clean_multidict(data: MultiDict[str, Any]) -> ImmutableMultiDict[str, Any]:
    items = []
    for key, value in data.items(multi=True):
        if isinstance(value, FileStorage):
            value.filename = clean(value.filename) if value.filename else value.filename
        elif isinstance(value, str):
            value = clean(value)
        items.append((clean(key), value))
    return ImmutableMultiDict(items)


def _clean_request() -> None:
    if request.query_string:
        request.args = _clean_multidict(request.args)  # type: ignore[misc]
    if request.method in ("POST", "PUT", "PATCH", "DELETE"):
        if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
            request.form = _clean_multidict(request.form)  # type: ignore[misc]
            request.files = _clean_multidict(request.files)  # type: ignore[misc]
        elif request.is_json:
            data = request.get_json(silent=True)
            if data is not None:
                cleaned = clean_value(data)
                request._cached_json = (cleaned, cleaned)  # what every later get_json() returns


def _out_of_range(error: Exception) -> Any:
    """A number too big for the database, from a form field or a query string: nothing by that id (404)."""
    from portal.extensions import db

    db.session.rollback()
    if isinstance(error, DataError) and getattr(error.orig, "sqlstate", None) != _NUMERIC_OUT_OF_RANGE:
        return current_app.handle_http_exception(BadRequest())  # another value refused (a text longer than its column)
    return current_app.handle_http_exception(NotFound())


def init_app(app: Flask) -> None:
    """Install the converters (before any route is registered) and the request cleaning."""
    app.url_map.converters.update(int=DatabaseInt, default=CleanString, string=CleanString, path=CleanPath)
    app.before_request_funcs.setdefault(None, []).insert(0, _clean_request)
    app.register_error_handler(OverflowError, _out_of_range)
    app.register_error_handler(DataError, _out_of_range)
