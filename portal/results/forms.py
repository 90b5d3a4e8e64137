from __future__ import annotations

from flask_babel import lazy_gettext as _l
from wtforms import BooleanField, HiddenField, RadioField, SelectField, SelectMultipleField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, InputRequired, Length, Optional, ValidationError

from portal.assessment.classification import Outcome
from portal.forms import PortalForm
from portal.results.services import MAX_AWARD_TITLE, OUTCOME_LABELS
from portal.schoolyear.forms import VnDateField


class ActionForm(PortalForm):
    """A button that changes something; `back` says which page to return to ("pupil" or the class)."""

    back = HiddenField()


class SelectionForm(PortalForm):
    """Several pupils of the class ticked in the results table, for one action on all of them."""

    pupil_ids = SelectMultipleField(coerce=int, validate_choice=False)


class OutcomeForm(ActionForm):
    """The GVCN's own result for a pupil with a personal education plan: chosen, never defaulted."""

    outcome = SelectField(_l("Kết quả giáo dục"), validators=[DataRequired(message=_l("Cần chọn kết quả."))])

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.outcome.choices = [SelectChoice("", "—")] + [SelectChoice(o.value, _l(OUTCOME_LABELS[o])) for o in Outcome]

    def validate_outcome(self, field: SelectField) -> None:
        if field.data not in {o.value for o in Outcome}:
            raise ValidationError(_l("Cần chọn kết quả."))


class ExemplaryForm(ActionForm):
    recognised = BooleanField(_l("Lớp công nhận Học sinh Tiêu biểu hoàn thành tốt trong học tập và rèn luyện"))


class AwardForm(ActionForm):
    awarded_on = VnDateField(_l("Ngày khen thưởng"), validators=[InputRequired(message=_l("Cần nhập ngày."))])
    title = StringField(_l("Nội dung khen thưởng"), validators=[DataRequired(), Length(max=MAX_AWARD_TITLE)])


class SupplementaryForm(ActionForm):
    """The supplementary assessment (Điều 11): when, what was assessed, and whether the pupil now completes."""

    assessed_on = VnDateField(_l("Ngày đánh giá bổ sung"), validators=[Optional()])
    note = TextAreaField(_l("Kết quả đánh giá bổ sung"), validators=[DataRequired(), Length(max=4000)])
    passed = RadioField(_l("Kết quả sau đánh giá bổ sung"), validators=[Optional()],
                        choices=[SelectChoice("1", _l("Hoàn thành chương trình (lên lớp)")),
                                 SelectChoice("0", _l("Chưa hoàn thành: chờ quyết định của Hiệu trưởng"))])

    def validate_passed(self, field: RadioField) -> None:
        if (field.data in ("0", "1")) != (self.assessed_on.data is not None):
            raise ValidationError(_l("Ghi cả ngày đánh giá bổ sung và kết quả, hoặc để trống cả hai."))


class PromotionForm(ActionForm):
    promoted = RadioField(_l("Quyết định của Hiệu trưởng"),
                          choices=[SelectChoice("1", _l("Được lên lớp")), SelectChoice("0", _l("Chưa được lên lớp"))],
                          validators=[InputRequired(message=_l("Cần chọn một quyết định."))])
