from __future__ import annotations

from datetime import date

from flask_babel import lazy_gettext as _l
from flask_wtf.file import FileField, FileRequired
from wtforms import BooleanField, HiddenField, IntegerField, SelectField, SelectMultipleField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, Optional, ValidationError
from wtforms.widgets import HiddenInput

from portal.forms import PortalForm
from portal.schoolyear.forms import VnDateField

PERSONAL_ID_DIGITS = 12


class PupilForm(PortalForm):
    """The identity page's fields (the Mã học sinh comes from CSDL ngành and is not edited here)."""

    full_name = StringField(_l("Họ và tên"), validators=[DataRequired(), Length(max=200)])
    gender = SelectField(_l("Giới tính"), choices=[SelectChoice("", "—"), SelectChoice("Nam", _l("Nam")),
                                                   SelectChoice("Nữ", _l("Nữ"))])
    birth_date = VnDateField(_l("Ngày sinh"), validators=[Optional()])
    ethnicity = StringField(_l("Dân tộc"), validators=[Length(max=64)])
    nationality = StringField(_l("Quốc tịch"), validators=[Length(max=64)])
    birth_place = StringField(_l("Nơi sinh"), validators=[Length(max=300)])
    hometown = StringField(_l("Quê quán"), validators=[Length(max=300)])
    address = StringField(_l("Nơi ở hiện nay"), validators=[Length(max=300)])
    father_name = StringField(_l("Họ tên cha"), validators=[Length(max=200)])
    mother_name = StringField(_l("Họ tên mẹ"), validators=[Length(max=200)])
    guardian_name = StringField(_l("Họ tên người giám hộ"), validators=[Length(max=200)])
    register_number = StringField(_l("Số đăng bộ"), validators=[Length(max=32)])
    disability = StringField(_l("Loại khuyết tật"), validators=[Length(max=120)])
    personal_plan = BooleanField(_l("Học theo kế hoạch giáo dục cá nhân"))
    # Removed from the form for anyone who may not see personal IDs (see the view).
    personal_id = StringField(_l("Số định danh cá nhân"), validators=[Optional()])

    def validate_birth_date(self, field: VnDateField) -> None:
        if field.data and field.data > date.today():
            raise ValidationError(_l("Ngày sinh không thể ở tương lai."))

    def validate_personal_id(self, field: StringField) -> None:
        value = "".join((field.data or "").split())
        if not (value.isascii() and value.isdigit() and len(value) == PERSONAL_ID_DIGITS):
            raise ValidationError(_l("Số định danh cá nhân phải gồm 12 chữ số."))


class ReviewForm(PortalForm):
    """The GVCN ticks the pupils whose identity she has checked against the birth certificate."""

    pupil_ids = SelectMultipleField(coerce=int, validate_choice=True)


class ReviewOneForm(PortalForm):
    """The button that marks one pupil; `back` says which page to return to."""

    back = HiddenField(default="review")


class PupilImportForm(PortalForm):
    year_id = SelectField(_l("Năm học"), coerce=int)
    file = FileField(_l("Tệp danh sách học sinh xuất từ CSDL ngành (.xlsx)"), validators=[FileRequired()])


class ConfirmPupilImportForm(PortalForm):
    digest = HiddenField(validators=[DataRequired()])
    filename = HiddenField(validators=[DataRequired()])
    year_id = IntegerField(widget=HiddenInput(), validators=[DataRequired()])


GRADES = [SelectChoice(g, _l("Khối %(g)d", g=g)) for g in range(1, 6)]


class ResultsChoiceForm(PortalForm):
    year_id = SelectField(_l("Năm học"), coerce=int)
    grade = SelectField(_l("Khối"), coerce=int, choices=GRADES)
    period = SelectField(_l("Kì đánh giá"))


class ResultsImportForm(ResultsChoiceForm):
    file = FileField(_l("Tệp kết quả (.xlsx)"), validators=[FileRequired()])


class ConfirmResultsImportForm(PortalForm):
    digest = HiddenField(validators=[DataRequired()])
    filename = HiddenField(validators=[DataRequired()])
    year_id = IntegerField(widget=HiddenInput(), validators=[DataRequired()])
    grade = IntegerField(widget=HiddenInput(), validators=[DataRequired()])
    period = HiddenField(validators=[DataRequired()])
