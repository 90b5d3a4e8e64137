"""The visible stamp of a signature: role, name and signing time, in Vietnamese.

    Hiệu trưởng
    Võ Thị Lài
    Ký ngày 28/05/2025 10:12 (GMT+7)

The font is `static/fonts/stamp-serif.ttf`, built once by `build_stamp_font.py` (rescaled to 1000
units per em and cut down to Vietnamese; see there why). The same font size goes to the font engine
and to the text box, and the leading is 1.5x the size: with less, stacked diacritics (ỗ, Ậ) touch the
line above.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from io import BytesIO
from pathlib import Path
from zoneinfo import ZoneInfo

from pyhanko.pdf_utils.font.opentype import GlyphAccumulator, GlyphAccumulatorFactory
from pyhanko.pdf_utils.text import TextBoxStyle
from pyhanko.stamp import TextStampStyle

from portal.signing.build_stamp_font import TARGET as STAMP_FONT

FONT_SIZE = 10
LEADING = 15  # 1.5 x FONT_SIZE
DISPLAY_TIMEZONE = "Asia/Ho_Chi_Minh"
ROLE_LABELS = {"gvcn": "Giáo viên chủ nhiệm", "hieu_truong": "Hiệu trưởng"}
SEAL_LABEL = "Con dấu số của {school}"
# The template pyHanko fills in; the values are passed as `appearance_text_params`.
STAMP_TEMPLATE = "%(role)s\n%(name)s\n%(signed)s"


@dataclass(frozen=True)
class StampText:
    """What a stamp says apart from the time, which the engine takes from the signing time itself."""

    role: str
    name: str
    timezone: str = DISPLAY_TIMEZONE

    def params(self, signed_at: datetime) -> dict[str, str]:
        """The template values; `signed_at` is shown in the stamp's time zone as dd/mm/yyyy HH:MM."""
        local = signed_at.astimezone(ZoneInfo(self.timezone)) if signed_at.tzinfo else signed_at.replace(
            tzinfo=UTC).astimezone(ZoneInfo(self.timezone))
        return {"role": _clean(self.role), "name": _clean(self.name),
                "signed": f"Ký ngày {local:%d/%m/%Y %H:%M} ({gmt_offset(local)})"}

    def lines(self, signed_at: datetime) -> list[str]:
        values = self.params(signed_at)
        return [values["role"], values["name"], values["signed"]]


def gmt_offset(moment: datetime) -> str:
    """The zone of an aware time as a reader of a printed record knows it: GMT+7, GMT+5:30, GMT."""
    offset = moment.utcoffset()
    minutes = int(offset.total_seconds() // 60) if offset is not None else 0
    if minutes == 0:
        return "GMT"
    sign, minutes = ("+" if minutes > 0 else "-"), abs(minutes)
    return f"GMT{sign}{minutes // 60}" + (f":{minutes % 60:02d}" if minutes % 60 else "")


def _clean(text: str) -> str:
    # NFC (NFD input renders with colliding diacritics), on one line.
    return " ".join(unicodedata.normalize("NFC", text).split())


def stamp_for_field(field: str, name: str, *, school_name: str = "") -> StampText:
    """The stamp of one of the record's fields: gvcn, hieu_truong (a person), con_dau (the school)."""
    if field in ROLE_LABELS:
        return StampText(ROLE_LABELS[field], name)
    return StampText(SEAL_LABEL.format(school=school_name or name), name)


@cache
def _font_bytes(path: str) -> bytes:
    return Path(path).read_bytes()


@dataclass(frozen=True)
class _InMemoryFontFactory(GlyphAccumulatorFactory):
    """pyHanko's factory opens the font file at every stamp and never closes it; this one reads it once."""

    def create_font_engine(self, writer: object, obj_stream: object = None) -> GlyphAccumulator:
        if obj_stream is None and writer.stream_xrefs and self.create_objstream_if_needed:  # type: ignore[attr-defined]
            obj_stream = writer.prepare_object_stream()  # type: ignore[attr-defined]
        return GlyphAccumulator(writer=writer, font_handle=BytesIO(_font_bytes(self.font_file)),
                                font_size=self.font_size, ot_script_tag=self.ot_script_tag,
                                ot_language_tag=self.ot_language_tag, writing_direction=self.writing_direction,
                                bcp47_lang_code=self.bcp47_lang_code, obj_stream=obj_stream)


@cache
def stamp_style(font_path: Path = STAMP_FONT) -> TextStampStyle:
    """The stamp style, built once per process (its font factory only holds the font's path)."""
    font = _InMemoryFontFactory(str(font_path), font_size=FONT_SIZE)
    box = TextBoxStyle(font=font, font_size=FONT_SIZE, leading=LEADING)
    return TextStampStyle(stamp_text=STAMP_TEMPLATE, text_box_style=box, border_width=1,
                          background=None)
