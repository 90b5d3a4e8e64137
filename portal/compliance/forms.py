from __future__ import annotations

from flask_babel import gettext
from flask_babel import lazy_gettext as _l
from flask_wtf.file import FileField, FileRequired
from wtforms import HiddenField, IntegerField, RadioField, SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional, Regexp

from portal.compliance.measures import REGISTRY
from portal.compliance.models import Scope
from portal.forms import PortalForm
from portal.school.forms import MultiCheckboxField
from portal.schoolyear.forms import VnDateField

YEAR_PATTERN = r"^\d{4}-\d{4}$"


class MilestoneForm(PortalForm):
    phase = IntegerField(_l("Giai đoạn"), validators=[InputRequired(), NumberRange(min=1, max=9)])
    title = StringField(_l("Nội dung"), validators=[DataRequired(), Length(max=300)])
    deadline = VnDateField(_l("Thời hạn"), validators=[DataRequired()])
    scope = SelectField(_l("Phạm vi"), validators=[DataRequired()])
    measure = SelectField(_l("Cách đo"), validators=[DataRequired()])

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.scope.choices = [SelectChoice(s.value, s.label) for s in Scope]
        self.measure.choices = [SelectChoice(m.key, gettext(m.name)) for m in REGISTRY.values()]


class CopyPlanForm(PortalForm):
    source = HiddenField(validators=[DataRequired(), Regexp(YEAR_PATTERN)])
    target = StringField(_l("Sang năm học"), validators=[DataRequired(), Regexp(YEAR_PATTERN, message=_l(
        "Năm học phải có dạng 2025-2026."))])
    # The deadlines move to the same days of the target year; then by these days more (or fewer).
    shift_days = IntegerField(_l("Dời thêm các thời hạn (ngày, sau khi chuyển sang cùng ngày của năm học mới)"),
                              default=0, validators=[InputRequired(), NumberRange(min=-365, max=365)])


class ShiftPlanForm(PortalForm):
    days = IntegerField(_l("Dời mọi thời hạn của năm học này (ngày, âm là lùi về trước)"),
                        validators=[InputRequired(), NumberRange(min=-365, max=365)])


class EvidenceForm(PortalForm):
    milestone_id = HiddenField(validators=[DataRequired()])
    done_on = VnDateField(_l("Ngày thực hiện (ngày của quyết định, biên bản)"), validators=[DataRequired()])
    note = TextAreaField(_l("Ghi chú"), validators=[Optional(), Length(max=2000)])
    file = FileField(_l("Tệp minh chứng (PDF, ảnh chụp, văn bản)"), validators=[FileRequired()])


class ReviewEvidenceForm(PortalForm):
    verdict = RadioField(_l("Kết luận"), validators=[DataRequired()],
                         choices=[SelectChoice("accept", _l("Chấp nhận")), SelectChoice("return", _l("Trả lại"))])
    comment = TextAreaField(_l("Nhận xét (bắt buộc khi trả lại)"), validators=[Optional(), Length(max=2000)])


class ReminderForm(PortalForm):
    milestone_id = SelectField(_l("Về mốc"), coerce=int, default=0)
    message = TextAreaField(_l("Nội dung nhắc việc"), validators=[DataRequired(), Length(max=2000)])


class TrainingForm(PortalForm):
    held_on = VnDateField(_l("Ngày tập huấn"), validators=[DataRequired()])
    topic = StringField(_l("Nội dung"), validators=[DataRequired(), Length(max=300)])
    trainer = StringField(_l("Người hướng dẫn"), validators=[DataRequired(), Length(max=200)])
    attendees = MultiCheckboxField(_l("Người tham dự"), coerce=int)
