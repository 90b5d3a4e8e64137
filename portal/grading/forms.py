"""The Excel import forms of a grid (saving the grid itself is a JSON request, see views.py)."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf.file import FileField, FileRequired
from wtforms import HiddenField
from wtforms.validators import AnyOf, DataRequired

from portal.forms import PortalForm


class GridImportForm(PortalForm):
    file = FileField(_l("Tệp Excel đã điền (.xlsx)"), validators=[FileRequired()])


class ConfirmGridImportForm(PortalForm):
    digest = HiddenField(validators=[DataRequired()])
    filename = HiddenField(validators=[DataRequired()])
    # What to do with rows someone else changed after the export: refuse (nothing written), skip them
    # (write the other rows), or overwrite them with the file's values.
    on_conflict = HiddenField(default="refuse", validators=[AnyOf(("refuse", "skip", "overwrite"))])
