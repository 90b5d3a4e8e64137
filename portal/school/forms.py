from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import EmailField, HiddenField, SelectMultipleField, StringField, widgets
from wtforms.validators import DataRequired, Length, Optional, StopValidation

from portal.forms import PortalForm
from tenants.roles import SCHOOL_ROLES


class MultiCheckboxField(SelectMultipleField):
    widget = widgets.ListWidget(prefix_label=False)
    option_widget = widgets.CheckboxInput()


def _role_choices() -> list[tuple[str, str]]:
    return [(role.value, role.label) for role in SCHOOL_ROLES]


def _at_least_one(form: FlaskForm, field: SelectMultipleField) -> None:
    # Not DataRequired: that renders `required` on every checkbox, and the browser would then
    # insist that all of them be ticked.
    if not field.data:
        raise StopValidation(str(_l("Cần chọn ít nhất một vai trò.")))


class _UsernameFirst(PortalForm):
    username = StringField(_l("Tên đăng nhập"), validators=[DataRequired(), Length(min=3, max=80, message=_l(
        "Tên đăng nhập chỉ gồm chữ không dấu, số, dấu chấm, gạch ngang; 3-80 ký tự."))])


class StaffEditForm(PortalForm):
    full_name = StringField(_l("Họ và tên"), validators=[DataRequired(), Length(max=200)])
    email = EmailField(_l("Email"), validators=[Optional(), Length(max=200)])
    roles = MultiCheckboxField(_l("Vai trò"), validators=[_at_least_one])

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.roles.choices = _role_choices()


class StaffCreateForm(_UsernameFirst, StaffEditForm):
    """The edit form plus the username, which is shown first (fields keep their declaration order)."""


class StaffImportForm(PortalForm):
    file = FileField(_l("Tệp danh sách (.xlsx hoặc .csv)"), validators=[FileRequired()])


class ConfirmImportForm(PortalForm):
    digest = HiddenField(validators=[DataRequired()])
    filename = HiddenField(validators=[DataRequired()])


class ActionForm(PortalForm):
    """A button that changes something: carries only the CSRF token."""
