"""The visible stamp of a signature: role, name and signing time, in Vietnamese.

    Hiệu trưởng
    Võ Thị Lài
    Ký ngày 28/05/2025 10:12 (GMT+7)

The font is `static/fonts/stamp-serif.ttf`, built once by `build_stamp_font.py` (rescaled to 1000
units per em and cut down to Vietnamese; see there why). A process parses it once, and the subset each
stamp embeds is made once per set of glyphs (`_StampFont`): a batch's stamps differ only in the time.
The same font size goes to the font engine and to the text box, and the leading is 1.5x the size: with
less, stacked diacritics (ỗ, Ậ) touch the line above.
"""

from __future__ import annotations

import threading
import unicodedata
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from io import BytesIO
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import uharfbuzz as hb
from fontTools import subset, ttLib
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.font.api import FontEngine
from pyhanko.pdf_utils.font.opentype import (
    CIDFontType2,
    GlyphAccumulator,
    GlyphAccumulatorFactory,
    _read_ps_name,
)
from pyhanko.pdf_utils.generic import pdf_name
from pyhanko.pdf_utils.text import TextBoxStyle
from pyhanko.pdf_utils.writer import BasePdfFileWriter
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


# Characters whose glyphs every subset of the stamp font holds, used or not: the stamp's time line differs
# from one record of a batch to the next only in its digits, so the records of a batch (same role, same name)
# share one subset, and its font program is built once (`_StampFont.program`) instead of at every signature.
ALWAYS_IN_SUBSET = "0123456789"
PROGRAM_CACHE_SIZE = 64  # font programs kept per process (~10 KB each), one per distinct set of glyphs


class _StampFont:
    """The stamp font parsed once per process, and the font programs of its subsets, by set of glyphs.

    pyHanko's `GlyphAccumulator` parses the font for every stamp, then subsets it in place and writes the
    subset out (about a quarter of a signature's CPU). Here the parsed font is shared read-only (shaping,
    widths, the font descriptor's metrics) and each subset's program is made from a fresh copy of the font,
    with pyHanko's own subsetting options, once per set of glyphs. A program depends only on the font file
    and the set of glyphs, which is its key.
    """

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.tt = ttLib.TTFont(BytesIO(data))
        if "glyf" not in self.tt:
            raise ValueError("the stamp font must have TrueType outlines (glyf)")
        for table in ("head", "hhea", "hmtx", "OS/2", "post", "name", "cmap", "glyf"):
            self.tt[table]  # decompiled now, so that later readers only read
        glyf = self.tt["glyf"]
        for name in self.tt.getGlyphOrder():
            glyf[name]  # each glyph expanded now too (fontTools expands on first read, which is no place for threads)
        self.hb_font = hb.Font(hb.Face(data))
        self.glyph_set = self.tt.getGlyphSet(preferCFF=True)
        self.ps_name = _read_ps_name(self.tt)
        self.units_per_em = self.tt["head"].unitsPerEm
        self.reverse_cmap = self.tt["cmap"].buildReversed()
        cmap = self.tt.getBestCmap()
        self.always = frozenset(self.tt.getGlyphID(cmap[ord(c)]) for c in ALWAYS_IN_SUBSET if ord(c) in cmap)
        self._programs: OrderedDict[frozenset[int], bytes] = OrderedDict()
        self._lock = threading.Lock()
        self.builds = 0  # subsets made so far (the tests count them)

    def program(self, glyphs: Iterable[int]) -> bytes:
        """The Flate-encoded font program of a subset holding `glyphs` (and `ALWAYS_IN_SUBSET`)."""
        key = frozenset(glyphs) | self.always
        with self._lock:
            if key in self._programs:
                self._programs.move_to_end(key)
                return self._programs[key]
            program = self._build(key)
            self._programs[key] = program
            if len(self._programs) > PROGRAM_CACHE_SIZE:
                self._programs.popitem(last=False)
            return program

    def _build(self, glyphs: frozenset[int]) -> bytes:
        # As `GlyphAccumulator._extract_subset` and `CIDFontType2.set_font_file` do it, on a copy of the font.
        options = subset.Options(layout_closure=False)
        options.drop_tables += ["GPOS", "GDEF", "GSUB"]
        options.retain_gids = True  # the content streams' CIDs are the font's glyph ids
        font = ttLib.TTFont(BytesIO(self.data))
        subsetter = subset.Subsetter(options=options)
        subsetter.populate(gids=sorted(glyphs))
        subsetter.subset(font)
        saved = BytesIO()
        font.save(saved)
        stream = generic.StreamObject(stream_data=saved.getvalue())
        stream.compress()
        self.builds += 1
        return stream.encoded_data


class _SubsetProgramCIDFont(CIDFontType2):
    """A CIDFontType2 whose font program is given (`_StampFont.program`), not written from its parsed font."""

    program: bytes = b""

    def set_font_file(self, writer: BasePdfFileWriter) -> generic.IndirectObject:
        stream = generic.StreamObject({pdf_name("/Filter"): pdf_name("/FlateDecode")}, encoded_data=self.program)
        reference = writer.add_object(stream)
        self._font_descriptor[pdf_name("/FontFile2")] = reference
        return reference


class _StampFontEngine(GlyphAccumulator):
    """pyHanko's `GlyphAccumulator` on the shared `_StampFont`: the same shaping, widths, ToUnicode map and
    PDF objects, with the subset's font program taken from the font's cache."""

    def __init__(self, writer: BasePdfFileWriter, font: _StampFont, font_size: int, obj_stream: Any = None) -> None:
        # What `GlyphAccumulator.__init__` sets up (pyHanko 0.38), without parsing the font again.
        FontEngine.__init__(self, writer, font.ps_name, embedded_subset=True, obj_stream=obj_stream,
                            font_size=font_size)
        self.font = font
        self.hb_font = font.hb_font
        self.tt = font.tt
        self._font_ref = writer.allocate_placeholder()
        self.cff_charset = None
        self.use_raw_gids = True
        self.cidfont_obj = _SubsetProgramCIDFont(font.tt, font.ps_name, self.subset_prefix)
        self.features = None
        self.units_per_em = font.units_per_em
        self._glyphs: dict[int, tuple[int, int]] = {}
        self._glyph_set = font.glyph_set
        self._cid_to_unicode: dict[int, str] = {}
        self.ot_language_tag = self.ot_script_tag = self.writing_direction = self.bcp47_lang_code = None
        self._subset_created = True  # the shared font is never subset in place
        self._write_prepared = False

    @property
    def _reverse_cmap(self) -> dict[str, set[int]]:
        return self.font.reverse_cmap

    def prepare_write(self) -> None:
        if not self._write_prepared:
            self.cidfont_obj.program = self.font.program(self._glyphs)
        super().prepare_write()


@cache
def stamp_font(path: str) -> _StampFont:
    return _StampFont(Path(path).read_bytes())


@dataclass(frozen=True)
class _SharedFontFactory(GlyphAccumulatorFactory):
    """Stamps set in the process's one parsed copy of the font, their subsets' programs made once per set of
    glyphs (pyHanko's factory opens, parses and subsets the font file at every stamp)."""

    def create_font_engine(self, writer: BasePdfFileWriter, obj_stream: Any = None) -> GlyphAccumulator:
        if obj_stream is None and writer.stream_xrefs and self.create_objstream_if_needed:
            obj_stream = writer.prepare_object_stream()
        return _StampFontEngine(writer, stamp_font(self.font_file), self.font_size, obj_stream=obj_stream)


@cache
def stamp_style(font_path: Path = STAMP_FONT) -> TextStampStyle:
    """The stamp style, built once per process (its font factory only holds the font's path)."""
    font = _SharedFontFactory(str(font_path), font_size=FONT_SIZE)
    box = TextBoxStyle(font=font, font_size=FONT_SIZE, leading=LEADING)
    return TextStampStyle(stamp_text=STAMP_TEMPLATE, text_box_style=box, border_width=1,
                          background=None)
