"""Resolving the tenant from the URL once per request, and checking who may do what there.

School pages live under /s/<school_code>/...: the school is loaded once, put on `g.school`, and made
the tenant scope for the whole request. District pages live under /district/... and read across
schools explicitly. Both refuse anyone without the right role, failing closed.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import sqlalchemy as sa
from flask import Blueprint, Flask, abort, current_app, g
from flask_login import current_user
from sqlalchemy.orm import joinedload

from portal.extensions import db
from tenants.models import Membership, School, SchoolDataVersion
from tenants.roles import Permission, Role, permissions_for
from tenants.scoping import (
    Scope,
    clear_settings,
    enter_request_scope,
    enter_school_scope,
    leave_request_scope,
    school_settings,
    settings_in_statement,
)

F = TypeVar("F", bound=Callable[..., Any])


def school_blueprint(name: str, import_name: str) -> Blueprint:
    """A blueprint whose every page belongs to one school and requires membership in it."""
    bp = Blueprint(name, import_name, url_prefix="/s/<school_code>")
    bp.url_value_preprocessor(_enter_school)
    bp.before_request(_require_school_member)
    return bp


def district_blueprint(name: str, import_name: str, url_prefix: str = "/district") -> Blueprint:
    """A blueprint of district-wide pages, for district staff only; reads across schools."""
    bp = Blueprint(name, import_name, url_prefix=url_prefix)
    bp.before_request(_enter_district)
    return bp


def init_app(app: Flask) -> None:
    app.url_defaults(_fill_school_code)
    app.teardown_request(_leave_scope)
    app.jinja_env.globals.update(can=can, Permission=Permission)


def _enter_school(endpoint: str | None, values: dict[str, Any] | None) -> None:
    code = (values or {}).pop("school_code", None)
    # The school's data version comes with it, before any of its data is read (portal/pagecache.py).
    query = (sa.select(School, SchoolDataVersion.version)
             .outerjoin(SchoolDataVersion, SchoolDataVersion.school_id == School.id)
             .where(School.code == code, School.active.is_(True)))
    # On PostgreSQL the query that finds the school also hands it to row-level security (one round trip,
    # not a second one for the settings), in the transaction every later query of the request runs in.
    # If that query begins the transaction, the settings are not also sent before it (one round trip
    # fewer on every school page); when it finds no school they are handed over on their own.
    postgres = db.session.get_bind().dialect.name == "postgresql"
    if postgres:
        query = query.add_columns(*school_settings(School.id))
        with settings_in_statement():
            row = db.session.execute(query).first()
        if row is None:
            clear_settings()
    else:
        row = db.session.execute(query).first()
    if row is None:
        abort(404)
    g.school = school = row[0]
    g.school_version = row[1]
    g.tenant_token = enter_school_scope(school.id, handed_over=postgres)


def _require_school_member() -> Any:
    if not current_user.is_authenticated:
        return current_app.login_manager.unauthorized()  # type: ignore[attr-defined]
    membership = db.session.scalar(
        sa.select(Membership).where(Membership.user_id == current_user.id, Membership.active.is_(True))
        .options(joinedload(Membership.roles))  # read on every page: one round trip, not two
    )
    if membership is None:
        abort(403)
    g.membership = membership
    g.roles = membership.role_set
    return None


def _enter_district() -> Any:
    if not current_user.is_authenticated:
        return current_app.login_manager.unauthorized()  # type: ignore[attr-defined]
    if Permission.VIEW_DISTRICT not in current_permissions():
        abort(403)
    g.tenant_token = enter_request_scope(Scope(all_schools=True))
    return None


def _fill_school_code(endpoint: str, values: dict[str, Any]) -> None:
    if "school_code" in values or "school" not in g:
        return
    if current_app.url_map.is_endpoint_expecting(endpoint, "school_code"):
        values["school_code"] = g.school.code


def _leave_scope(exc: BaseException | None) -> None:
    token = g.pop("tenant_token", None)
    if token is not None:
        leave_request_scope(token)


def current_roles() -> frozenset[Role]:
    """The roles of the signed-in user here: the district role plus the roles in the current school."""
    if not current_user.is_authenticated:
        return frozenset()
    roles = set(g.get("roles", frozenset()))
    if current_user.district_role is not None:
        roles.add(current_user.district_role)
    return frozenset(roles)


def current_permissions() -> frozenset[Permission]:
    return permissions_for(current_roles())


def can(permission: Permission) -> bool:
    return permission in current_permissions()


def require(*permissions: Permission) -> Callable[[F], F]:
    """View decorator: 403 unless the signed-in user holds every listed permission here."""

    def decorator(view: F) -> F:
        @wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if not current_user.is_authenticated:
                return current_app.login_manager.unauthorized()  # type: ignore[attr-defined]
            granted = current_permissions()
            if not all(p in granted for p in permissions):
                abort(403)
            return view(*args, **kwargs)

        wrapped.required_permissions = permissions  # type: ignore[attr-defined]
        return wrapped  # type: ignore[return-value]

    return decorator
