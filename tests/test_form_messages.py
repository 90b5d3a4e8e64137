"""WTForms' built-in validation messages follow the interface language (portal/forms.py, the 'wtforms' domain)."""

from __future__ import annotations

import html
from pathlib import Path

import pytest
from babel.messages.pofile import read_po
from flask.testing import FlaskClient
from wtforms.i18n import messages_path

from portal.forms import TRANSLATIONS_DIR, wtforms_translations
from tenants.models import School, User
from tenants.roles import Role
from tests.conftest import Factory, csrf_token, login

NEW_STAFF = "/s/lqd/staff/new"
GOOD = {"username": "gv.moi", "full_name": "Hồ Văn Mới", "email": "", "roles": [Role.HOMEROOM_TEACHER.value]}

# (what is wrong, the Vietnamese message, the English one). The e-mail is checked by the staff service,
# not by a WTForms validator: its English wording happens to be WTForms' own, which must not leak into
# the Vietnamese page either.
BAD_INPUT = [
    pytest.param({"full_name": ""}, "Vui lòng nhập mục này.", "This field is required.", id="empty-name"),
    pytest.param({"full_name": "A" * 201}, "Mục này không được dài quá 200 ký tự.",
                 "Field cannot be longer than 200 characters.", id="name-too-long"),
    pytest.param({"roles": ["khong-co"]}, "'khong-co' không phải là lựa chọn hợp lệ cho mục này.",
                 "'khong-co' is not a valid choice for this field.", id="unknown-role"),
    pytest.param({"email": "khong-phai-email"}, "Địa chỉ email không hợp lệ.", "Invalid email address.",
                 id="bad-email"),
]


@pytest.fixture
def school(make: Factory) -> School:
    return make.school("lqd", "Trường Tiểu học Lê Quang Định")


@pytest.fixture
def principal(make: Factory, school: School) -> User:
    return make.user(school, Role.PRINCIPAL, username="ht.lqd", full_name="Trần Văn Hiệu")


@pytest.fixture
def as_principal(client: FlaskClient, principal: User) -> FlaskClient:
    login(client, principal)
    return client


def submit(client: FlaskClient, change: dict[str, object]) -> str:
    response = client.post(NEW_STAFF, data={**GOOD, **change, "csrf_token": csrf_token(client, NEW_STAFF)})
    assert response.status_code == 200  # the form again, with its errors
    return html.unescape(response.get_data(as_text=True))


@pytest.mark.parametrize(("change", "vietnamese", "english"), BAD_INPUT)
def test_form_messages_are_vietnamese_then_english(as_principal, change, vietnamese, english):
    text = submit(as_principal, change)
    assert vietnamese in text
    assert english not in text

    response = as_principal.post("/language/en", data={"csrf_token": csrf_token(as_principal, NEW_STAFF)})
    assert response.status_code == 302

    text = submit(as_principal, change)
    assert english in text
    assert vietnamese not in text


def test_the_vietnamese_catalogue_covers_every_wtforms_message():
    with open(Path(messages_path()) / "wtforms.pot", "rb") as f:
        template = {m.id for m in read_po(f) if m.id}
    with open(TRANSLATIONS_DIR / "vi" / "LC_MESSAGES" / "wtforms.po", "rb") as f:
        catalogue = read_po(f)
    translated = {m.id for m in catalogue if m.id and not m.fuzzy and all(
        m.string if isinstance(m.string, tuple) else (m.string,))}  # every plural form filled in
    assert template <= translated, f"untranslated after a WTForms upgrade: {sorted(template - translated)}"


def test_catalogues_are_loaded_once_per_locale():
    assert wtforms_translations("vi") is wtforms_translations("vi")
    assert wtforms_translations("vi").gettext("This field is required.") == "Vui lòng nhập mục này."
    assert wtforms_translations("en").gettext("This field is required.") == "This field is required."
