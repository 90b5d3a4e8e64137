from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import DateField, SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, Optional
from wtforms.widgets import TextInput

from portal.forms import PortalForm


class VnDateField(DateField):
    """A date typed as dd/mm/yyyy in a plain text box (a browser's date picker follows its own locale)."""

    widget = TextInput()

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("format", "%d/%m/%Y")
        render_kw = dict(kwargs.pop("render_kw", None) or {})  # type: ignore[arg-type]
        render_kw.setdefault("placeholder", "dd/mm/yyyy")
        render_kw.setdefault("inputmode", "numeric")
        super().__init__(*args, render_kw=render_kw, **kwargs)  # type: ignore[arg-type]


class YearForm(PortalForm):
    name = StringField(_l("Năm học"), validators=[DataRequired(), Length(max=9)],
                       render_kw={"placeholder": "2025-2026"})
    starts_on = VnDateField(_l("Ngày bắt đầu"), validators=[DataRequired()])
    ends_on = VnDateField(_l("Ngày kết thúc"), validators=[DataRequired()])
    copy_from = SelectField(_l("Danh mục môn học, phẩm chất, năng lực"), coerce=int, default=0)


class ClassesForm(PortalForm):
    names = TextAreaField(_l("Tên các lớp (cách nhau bởi dấu cách)"), validators=[DataRequired()],
                          render_kw={"placeholder": "1A 1B 1C 2A 2B"})


def windows_form(periods: list) -> type[FlaskForm]:
    """A form with an opening and a closing date for each period."""

    class WindowsForm(PortalForm):
        pass

    for period in periods:
        setattr(WindowsForm, f"opens_{period.id}", VnDateField(period.name, validators=[Optional()]))
        setattr(WindowsForm, f"closes_{period.id}", VnDateField(period.name, validators=[Optional()]))
    return WindowsForm


def assignment_form(subjects: list, teacher_choices: list[tuple[int, str]],
                    homeroom_choices: list[tuple[int, str]]) -> type[FlaskForm]:
    """The class's GVCN and one GVBM per subject; 0 means nobody."""

    class AssignmentForm(PortalForm):
        homeroom = SelectField(_l("Giáo viên chủ nhiệm"), coerce=int, choices=_choices(homeroom_choices))

    for subject in subjects:
        setattr(AssignmentForm, f"subject_{subject.id}",
                SelectField(subject.name, coerce=int, choices=_choices(teacher_choices)))
    return AssignmentForm


def _choices(people: list[tuple[int, str]]) -> list[SelectChoice]:
    return [SelectChoice(0, "—"), *(SelectChoice(value, label) for value, label in people)]
