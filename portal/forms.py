"""The base of every form in the portal: WTForms' own messages in the interface language.

WTForms ships no Vietnamese catalogue, and Flask-WTF looks for the 'wtforms' domain only among
WTForms' own catalogues, so a Vietnamese page would say "This field is required." `PortalForm`
reads that domain from our catalogues instead (`portal/translations/vi/LC_MESSAGES/wtforms.po`,
compiled by `./dev.sh setup`). English has no 'wtforms' catalogue of ours, so it gets WTForms'
source strings, which are English. Each catalogue is loaded once per process, not per request.
"""

from __future__ import annotations

from functools import cache
from gettext import NullTranslations
from pathlib import Path

from babel.support import Translations
from flask_babel import get_locale
from flask_wtf import FlaskForm
from wtforms import Form

TRANSLATIONS_DIR = Path(__file__).parent / "translations"


@cache
def wtforms_translations(locale: str) -> NullTranslations:
    """The 'wtforms' catalogue for `locale`; WTForms' source strings (English) when there is none."""
    return Translations.load(str(TRANSLATIONS_DIR), [locale], domain="wtforms")


class PortalForm(FlaskForm):
    """A FlaskForm whose built-in validation messages follow the interface language."""

    class Meta(FlaskForm.Meta):
        def get_translations(self, form: Form) -> NullTranslations:
            locale = get_locale()  # None outside a request and app context
            return wtforms_translations(str(locale)) if locale else NullTranslations()
