from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf.file import FileField, FileRequired
from wtforms import StringField
from wtforms.validators import DataRequired, Length

from portal.forms import PortalForm


class CodeForm(PortalForm):
    """Typing a verification code: a GET form (it changes nothing), so without a CSRF token."""

    class Meta(PortalForm.Meta):
        csrf = False

    code = StringField(_l("Mã tra cứu in trên học bạ"), validators=[DataRequired(), Length(max=40)])


class UploadForm(PortalForm):
    file = FileField(_l("Tệp học bạ số (PDF)"),
                     validators=[FileRequired(message=_l("Vui lòng chọn tệp PDF cần kiểm tra."))])


class FamilyCodeForm(PortalForm):
    code = StringField(_l("Mã truy cập nhà trường cấp cho gia đình"), validators=[DataRequired(), Length(max=64)])


class ActionForm(PortalForm):
    """A button that changes something: only the CSRF token."""
