"""Forms of the exchange pages."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from wtforms import SelectField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length

from portal.forms import PortalForm

GRADES = [SelectChoice("", _l("Mọi khối")), *[SelectChoice(str(g), _l("Khối %(g)d", g=g)) for g in range(1, 6)]]


class ActionForm(PortalForm):
    """A button that changes something: carries only the CSRF token."""


class UploadForm(PortalForm):
    school_year = SelectField(_l("Năm học"), validators=[DataRequired()])
    grade = SelectField(_l("Khối"), choices=GRADES)


class BundleForm(PortalForm):
    school_year = SelectField(_l("Năm học"), validators=[DataRequired()])


class ReleaseForm(PortalForm):
    pupil_id = SelectField(_l("Học sinh"), coerce=int, validators=[DataRequired()])
    to_school_id = SelectField(_l("Chuyển đến trường"), coerce=int, validators=[DataRequired()])
    reason = TextAreaField(_l("Lý do"), validators=[DataRequired(), Length(max=500)])
