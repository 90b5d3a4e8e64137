from __future__ import annotations

from flask_babel import lazy_gettext as _l
from wtforms import HiddenField, IntegerField, PasswordField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional, ValidationError

from portal.forms import PortalForm


class ActionForm(PortalForm):
    """A button that changes something: only the CSRF token."""


class SignForm(PortalForm):
    """Sign one step for a class, a grade, or the whole school, with the signer's PIN (or the passphrase they keep).

    The field keeps the name `passphrase`: it carries whichever secret the signer's key asks for.
    """

    step = HiddenField()
    class_id = IntegerField(validators=[Optional()])
    grade = IntegerField(validators=[Optional()])
    passphrase = PasswordField(_l("Mật khẩu tệp chứng thư số"), validators=[Optional(), Length(max=200)])

    def validate_step(self, field: HiddenField) -> None:
        from portal.records.workflow import STEPS

        if field.data not in STEPS:
            raise ValidationError(_l("Bước ký không hợp lệ."))


class ReasonForm(PortalForm):
    reason = TextAreaField(_l("Lý do"), validators=[DataRequired(message=_l("Hãy ghi lý do.")), Length(max=1000)])
