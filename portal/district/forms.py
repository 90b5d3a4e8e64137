from __future__ import annotations

from flask_babel import lazy_gettext as _l
from wtforms import EmailField, RadioField, StringField
from wtforms.validators import DataRequired, Length, Optional

from portal.forms import PortalForm
from tenants.roles import Role


class SchoolForm(PortalForm):
    name = StringField(_l("Tên trường"), validators=[DataRequired(), Length(max=200)])
    code = StringField(_l("Mã trường (dùng trong địa chỉ trang)"), validators=[DataRequired(), Length(max=63)])
    moet_code = StringField(_l("Mã trường trên CSDL ngành"), validators=[Optional(), Length(max=32)])
    commune = StringField(_l("Xã / thị trấn"), validators=[Optional(), Length(max=200)])
    address = StringField(_l("Địa chỉ"), validators=[Optional(), Length(max=300)])


class SchoolAdminForm(PortalForm):
    """An account that runs a school: its principal or its IT staff member."""

    role = RadioField(_l("Vai trò"), default=Role.PRINCIPAL.value, validators=[DataRequired()])
    username = StringField(_l("Tên đăng nhập"), validators=[DataRequired(), Length(min=3, max=80, message=_l(
        "Tên đăng nhập chỉ gồm chữ không dấu, số, dấu chấm, gạch ngang; 3-80 ký tự."))])
    full_name = StringField(_l("Họ và tên"), validators=[DataRequired(), Length(max=200)])
    email = EmailField(_l("Email"), validators=[Optional(), Length(max=200)])

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.role.choices = [(r.value, r.label) for r in (Role.PRINCIPAL, Role.SCHOOL_IT)]
