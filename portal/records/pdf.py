"""The official printable PDF of a record version (mẫu học bạ) and its HTML preview, from the content dict alone.

    render_pdf(content, xml=...)   the PDF: identity page, study history, one page per school year, footers,
                                   QR codes, three empty signature fields, the XML attached (an associated
                                   file), made as PDF/A-3b (XMP identification, sRGB output intent, every
                                   font embedded, no encryption): the archival copy and the printable one
    render_html(content)           the same content and page structure as an HTML fragment, for the preview
    signature_boxes(pdf)           where the signature fields are: {field: (page index, (x0, y0, x1, y1))}
    signature_areas(content)       the printed blank boxes those fields sit in, on the last year page
    use_section_store(store)       share laid-out sections between processes (FileSectionStore, or your own)

How it is made fast (see benchmarks/record_render.py for the figures):

- Each section (identity page, study history, each school year) is laid out on its own with ReportLab's
  platypus, built straight from the content (no HTML, no xhtml2pdf: see "laying out with platypus"), and
  the resulting pages are cached under a hash of exactly what that section prints (plus a fingerprint of
  the templates, fonts and this module), in memory (an LRU per process) and, when a store is set with
  `use_section_store`, in a store shared by the workers. A year page issued last year does not change, so a
  new version of a record, or a re-run of a class's generation, lays out only the sections that changed.
- One font per style for the whole document, as a single layout would give: a section's text is written as
  two-byte Unicode codes of three shared fonts, with no font subset of its own (and the Helvetica that
  ReportLab names but never draws with is removed); the document gets one subset per style holding the
  glyphs all its sections and its footers use (see "one font per style").
- Nothing that varies per version is laid out: the footer (school, pupil, code, version, "Trang x/y") and
  the QR codes are written afterwards as one small form per page, in the shared fonts' codes, drawn over
  the page. This replaces xhtml2pdf's `<pdf:pagecount>`, which costs a second layout pass of the whole
  document.
- The fonts and the paragraph styles are set up once per process.

The output is deterministic for the same content: ReportLab's invariant mode fixes dates and ids inside
each section, and the document's dates and /ID are derived from the content.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import struct
import threading
import unicodedata
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache, lru_cache
from pathlib import Path
from typing import Any, Protocol
from xml.sax.saxutils import escape

import jinja2
import segno
from markupsafe import Markup
from pypdf import PdfReader, PdfWriter
from pypdf.generic import (
    ArrayObject,
    BooleanObject,
    ByteStringObject,
    DictionaryObject,
    EncodedStreamObject,
    FloatObject,
    IndirectObject,
    NameObject,
    NumberObject,
    StreamObject,
    TextStringObject,
)
from reportlab import rl_config
from reportlab.lib.colors import Color, black
from reportlab.lib.enums import TA_CENTER, TA_LEFT
from reportlab.lib.pagesizes import A4
from reportlab.lib.rl_accel import fp_str
from reportlab.lib.styles import ParagraphStyle
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont, TTFontFace
from reportlab.platypus import (
    BaseDocTemplate,
    Flowable,
    Frame,
    KeepTogether,
    PageTemplate,
    Paragraph,
    Spacer,
    Table,
    TableStyle,
)
from reportlab.platypus.paragraph import cleanBlockQuotedText

from portal.assessment.classification import Outcome, SubjectLevel, TraitLevel
from portal.records.content import SIGNATURE_FIELDS

PROJECT_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_DIR = PROJECT_ROOT / "templates"
FONT_DIR = PROJECT_ROOT / "static" / "fonts"
FONT_FILES = {"regular": "LiberationSerif-Regular.ttf", "bold": "LiberationSerif-Bold.ttf",
              "italic": "LiberationSerif-Italic.ttf"}
XML_ATTACHMENT_NAME = "hocba.xml"

PAGE_WIDTH, PAGE_HEIGHT = A4
# Page margins in points; the bottom one keeps the footer zone free, the identity page's also the QR zone.
MARGINS = {"top": 42.5, "right": 42.5, "bottom": 68.0, "left": 70.9}
IDENTITY_BOTTOM_MARGIN = 196.0
CONTENT_WIDTH = PAGE_WIDTH - MARGINS["left"] - MARGINS["right"]
FOOTER_TOP = 54.0  # the footer's rule; nothing of the body goes below MARGINS["bottom"]
# The blank space left for signing in each signature box, and the signature fields placed in it.
SIGNATURE_BLANK = 132.0
FIELD_WIDTH, FIELD_HEIGHT = 180.0, 60.0
_BOX_INSET = 8.0  # horizontal room between a box and its column's edge
# What _find_signature_boxes follows in a content stream: graphics state saves/restores, translations (the
# only transformations platypus uses around text) and the start of a text block in the hints' colour.
_NUMBER = rb"-?[\d.]+"
_STREAM_TOKENS = re.compile(
    rb"(?m)^(?:(?P<push>q)|(?P<pop>Q))$"
    rb"|^1 0 0 1 (?P<e>" + _NUMBER + rb") (?P<f>" + _NUMBER + rb") cm"
    rb"|(?P<before>\.003922 \.007843 \.011765 rg\s+)?BT 1 0 0 1 (?P<tx>" + _NUMBER + rb") (?P<ty>" + _NUMBER + rb") Tm"
    rb" (?:(?P<dx>" + _NUMBER + rb") 0 Td )?(?P<after>" + _NUMBER + rb" TL \.003922 \.007843 \.011765 rg)?")

PRODUCER = "Cổng Học bạ số"
CACHE_LIMIT_BYTES = 32 * 1024 * 1024  # of PDF bytes; the parsed objects kept with them take a few times more

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in points, origin bottom left


# --------------------------------------------------------------------------- public interface


def render_pdf(content: dict[str, Any], *, xml: bytes | None = None) -> bytes:
    """The record version's PDF; with `xml`, that XML rides along as the attached file hocba.xml."""
    content = nfc(content)
    if not content.get("years"):
        raise ValueError("a record version has at least one school year page")
    doc = _document(content)
    sections = [_render_section(section) for section in _sections(doc)]
    writer = PdfWriter()
    with _reader_lock:  # cached readers resolve objects lazily from one stream: one copier at a time
        for rendered in sections:
            for page in rendered.reader.pages:
                writer.add_page(page)
    last_year = sections[-1]
    last_page = len(writer.pages) - 1
    used: dict[str, set[int]] = {}
    for rendered in sections:
        for style, codes in rendered.fonts.items():
            used.setdefault(style, set()).update(codes)
    _stamp(writer, doc, used)
    boxes = {field: (last_page, box) for field, box in last_year.boxes.items()}
    _add_signature_fields(writer, _field_rects(boxes))
    if xml is not None:
        _attach_xml(writer, xml, content["record"]["created_at"])
    _set_metadata(writer, doc, content)
    _make_pdfa(writer, doc, content)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def render_html(content: dict[str, Any]) -> str:
    """The preview: the same sections and content as the PDF, as an HTML fragment (Markup: safe to embed)."""
    content = nfc(content)
    doc = _document(content)
    qr = segno.make(doc["record"]["verify_url"], error="m")
    svg = qr.svg_inline(scale=4, border=2, dark="#000", light="#fff", title=doc["record"]["code_words"])
    return Markup(_environment().get_template("records/document.html").render(
        mode="screen", doc=doc, sections=_sections(doc), qr_svg=svg, font_url=_font_url()))


def document_html(content: dict[str, Any]) -> str:
    """The whole record as one xhtml2pdf document, footer frame with <pdf:pagecount>, QR as an image.

    What a plain single-pass render would lay out: the benchmark's baseline, not used to issue records.
    """
    doc = _document(nfc(content))
    qr = segno.make(doc["record"]["verify_url"], error="m").png_data_uri(scale=6, border=2)
    return _environment().get_template("records/document.html").render(
        mode="stock", doc=doc, sections=_sections(doc), qr_png=qr, font_dir=FONT_DIR.as_posix(), margins=MARGINS)


def signature_boxes(pdf: bytes) -> dict[str, tuple[int, Box]]:
    """Each signature field's page (0-based) and rectangle (x0, y0, x1, y1 in points) in `pdf`."""
    reader = PdfReader(io.BytesIO(pdf))
    page_of = {page.indirect_reference.idnum: index for index, page in enumerate(reader.pages)}
    found: dict[str, tuple[int, Box]] = {}
    for ref in reader.trailer["/Root"].get("/AcroForm", {}).get("/Fields", []):
        field = ref.get_object()
        if field.get("/FT") != "/Sig":
            continue
        x0, y0, x1, y1 = (float(v) for v in field["/Rect"])
        found[str(field["/T"])] = (page_of[field.raw_get("/P").idnum], (x0, y0, x1, y1))
    return found


def signature_areas(content: dict[str, Any]) -> dict[str, Box]:
    """The blank boxes of the last year page's signature block, by field (the seal shares the Hiệu trưởng's)."""
    doc = _document(nfc(content))
    boxes = _render_section(_sections(doc)[-1]).boxes
    return {"gvcn": boxes["gvcn"], "hieu_truong": boxes["hieu_truong"], "con_dau": boxes["hieu_truong"]}


def format_code(code: str) -> str:
    """The verification code as people type it: groups of four, HB7Q2M4K9XTR -> HB7Q-2M4K-9XTR."""
    return "-".join(code[i:i + 4] for i in range(0, len(code), 4))


def nfc(value: Any) -> Any:
    """`value` with every string in it NFC-normalised (dicts and lists copied)."""
    if isinstance(value, str):
        return unicodedata.normalize("NFC", value)
    if isinstance(value, dict):
        return {nfc(k): nfc(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [nfc(v) for v in value]
    return value


class SectionStore(Protocol):
    """A second-level cache of laid-out sections shared between processes (keys are hex digests)."""

    def get(self, key: str) -> bytes | None: ...
    def put(self, key: str, data: bytes) -> None: ...


class FileSectionStore:
    """Laid-out sections as files in a folder (e.g. under the instance folder), one per key."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def get(self, key: str) -> bytes | None:
        try:
            return (self.folder / key[:2] / f"{key}.pdf").read_bytes()
        except FileNotFoundError:
            return None

    def put(self, key: str, data: bytes) -> None:
        path = self.folder / key[:2] / f"{key}.pdf"
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        temporary.write_bytes(data)
        temporary.replace(path)  # atomic: a concurrent reader sees the whole file or none


def use_section_store(store: SectionStore | None) -> None:
    """Share laid-out sections between processes and runs (a year page issued last year is laid out once)."""
    _store[0] = store


def clear_cache() -> None:
    """Forget every cached section (tests and benchmarks measure the cold path with it)."""
    with _cache_lock:
        _cache.clear()
        _cache_size[0] = 0


# --------------------------------------------------------------------------- formatting


def date_vn(iso: str | None) -> str:
    """2025-05-28 -> 28/05/2025; None -> ""."""
    if not iso:
        return ""
    day = date.fromisoformat(iso[:10])
    return f"{day.day:02d}/{day.month:02d}/{day.year}"


def date_line(place: str | None, iso: str | None) -> str:
    """'Nhà Bè, ngày 28 tháng 5 năm 2025': days below 10 and months 1-2 take a leading zero (Nghị định 30)."""
    prefix = f"{place}, " if place else ""
    if not iso:
        return f"{prefix}ngày ..... tháng ..... năm ......."
    day = date.fromisoformat(iso[:10])
    month = f"{day.month:02d}" if day.month < 3 else str(day.month)
    return f"{prefix}ngày {day.day:02d} tháng {month} năm {day.year}"


def _number_vn(value: float | int | None, unit: str) -> str:
    if value is None:
        return ""
    text = f"{value:.1f}".rstrip("0").rstrip(".") if isinstance(value, float) else str(value)
    return f"{text.replace('.', ',')} {unit}"


def _subject_level(code: str | None) -> str:
    return SubjectLevel(code).label if code else ""


def _trait_level(code: str | None) -> str:
    return TraitLevel(code).label if code else ""


def _promoted(value: bool | None) -> str:
    return {True: "Được lên lớp", False: "Chưa được lên lớp"}.get(value, "") if value is not None else ""


def _section_6(page: dict[str, Any]) -> dict[str, str]:
    """Section 6 as Điều 11 has it: completion (at year end or after the supplementary assessment), and
    "Lên lớp" for a completer of grades 1-4; else the principal's decision, which in grade 5 is that the
    pupil has not completed primary school."""
    completion, promoted, grade = page.get("completion") or "", page.get("promoted"), page.get("grade")
    if completion:
        return {"completion": completion, "promoted": "Lên lớp" if grade != 5 else ""}
    if grade == 5 and promoted is False:
        return {"completion": "Chưa hoàn thành chương trình tiểu học", "promoted": ""}
    return {"completion": "", "promoted": f"Lên lớp: {_promoted(promoted)}" if promoted is not None else ""}


# --------------------------------------------------------------------------- the view of the content


def _document(content: dict[str, Any]) -> dict[str, Any]:
    """Everything the templates and the footer print, as display strings."""
    record, school, pupil = content["record"], content["school"], content["pupil"]
    history = content.get("history") or []
    code_words = format_code(record["code"])
    identity_place = school.get("district") or ""
    first_enrolment = next((row.get("enrolled_on") for row in history if row.get("enrolled_on")), None)
    return {
        "title": f"Học bạ số – {pupil['full_name']} – {record['code']} v{record['number']}",
        "record": {"code": record["code"], "code_words": code_words, "number": record["number"],
                   "replaces": format_code(record["replaces"]) if record.get("replaces") else "",
                   "verify_url": record["verify_url"], "created_on": date_vn(record.get("created_at"))},
        "school": {
            "name": school["name"],
            "principal": school.get("principal") or "",
            "authority": f"PHÒNG GD&ĐT {(school.get('district') or '').upper()}".strip(),
            "rows": [("Trường", school["name"]), ("Xã/Phường", school.get("commune") or ""),
                     ("Quận/Huyện", school.get("district") or ""), ("Tỉnh/Thành phố", school.get("city") or "")],
        },
        "pupil": {
            "full_name": pupil["full_name"],
            "register_number": pupil.get("register_number") or "",
            "rows": _pupil_rows(pupil),
        },
        "identity_date_line": date_line(_place_of(identity_place), first_enrolment),
        "history": [{"school_year": row["school_year"], "class_name": row["class_name"],
                     "school_name": row["school_name"], "enrolled_on": date_vn(row.get("enrolled_on")),
                     "confirmed_by": row.get("confirmed_by") or ""} for row in history],
        "years": [_year(page) for page in content["years"]],
        "sig_blank_pt": SIGNATURE_BLANK,
        "qr_caption": _qr_caption(record, code_words),
        "footer_left": f"{school['name']} · Học sinh: {pupil['full_name']}",
        "footer_right": f"Mã tra cứu: {code_words} · Bản số {record['number']}",
    }


def _qr_caption(record: dict[str, Any], code_words: str) -> list[str]:
    """The lines printed beside the identity page's QR code (heading first)."""
    version = f"Bản số {record['number']}, lập ngày {date_vn(record.get('created_at'))}"
    if record.get("replaces"):
        version += f", thay thế bản {format_code(record['replaces'])}"
    return [f"Mã tra cứu: {code_words}", "Quét mã QR hoặc nhập mã tra cứu tại:", record["verify_url"], version]


def _place_of(district: str) -> str:
    """'Huyện Nhà Bè' -> 'Nhà Bè': the place name of a date line."""
    for prefix in ("Huyện ", "Quận ", "Thị xã ", "Thành phố "):
        if district.startswith(prefix):
            return district[len(prefix):]
    return district


def _pupil_rows(pupil: dict[str, Any]) -> list[tuple[str, str]]:
    rows = [
        ("Họ và tên học sinh", pupil["full_name"]),
        ("Mã học sinh", pupil.get("pupil_code") or ""),
        ("Giới tính", pupil.get("gender") or ""),
        ("Ngày sinh", date_vn(pupil.get("birth_date"))),
        ("Dân tộc", pupil.get("ethnicity") or ""),
        ("Quốc tịch", pupil.get("nationality") or ""),
        ("Nơi sinh", pupil.get("birth_place") or ""),
        ("Quê quán", pupil.get("hometown") or ""),
        ("Nơi ở hiện nay", pupil.get("address") or ""),
        ("Họ và tên cha", pupil.get("father_name") or ""),
        ("Họ và tên mẹ", pupil.get("mother_name") or ""),
        ("Người giám hộ", pupil.get("guardian_name") or ""),
        ("Số đăng bộ", pupil.get("register_number") or ""),
    ]
    if pupil.get("personal_plan") or pupil.get("disability"):
        rows.append(("Khuyết tật", pupil.get("disability") or ""))
        rows.append(("Kế hoạch giáo dục cá nhân", "Có" if pupil.get("personal_plan") else "Không"))
    return rows


def _year(page: dict[str, Any]) -> dict[str, Any]:
    def traits(rows: list[dict[str, Any]]) -> list[dict[str, str]]:
        return [{"name": r["name"], "level": _trait_level(r.get("level")), "comment": r.get("comment") or ""}
                for r in rows]

    outcome = page.get("outcome")
    return {
        "school_year": page["school_year"], "class_name": page["class_name"],
        "school_name": page.get("school_name") or "", "received": page.get("source") == "received",
        "height": _number_vn(page.get("height_cm"), "cm"), "weight": _number_vn(page.get("weight_kg"), "kg"),
        "absent_excused": str(page.get("absent_excused") or 0),
        "absent_unexcused": str(page.get("absent_unexcused") or 0),
        "subjects": [{"name": r["name"], "level": _subject_level(r.get("level")),
                      "score": "" if r.get("score") is None else str(r["score"]), "comment": r.get("comment") or ""}
                     for r in page["subjects"]],
        "qualities": traits(page["qualities"]),
        "general_competencies": traits(page["general_competencies"]),
        "specific_competencies": traits(page["specific_competencies"]),
        "outcome": Outcome(outcome).label if outcome else (page.get("outcome_label") or ""),
        "awards": [{"title": a["title"], "date": date_vn(a.get("awarded_on"))} for a in page.get("awards") or []],
        **_section_6(page),
        "note": page.get("supplementary_note") or "",
        "date_line": date_line(page.get("place"), page.get("dated_on")),
        "homeroom_teacher": page.get("homeroom_teacher") or "",
        "principal": page.get("principal") or "",
    }


def _sections(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The document's sections, each with the slice of `doc` its template reads (the cache key)."""
    pupil = {"full_name": doc["pupil"]["full_name"], "register_number": doc["pupil"]["register_number"]}
    sections = [
        {"kind": "identity", "title": "Thông tin học sinh", "bottom": IDENTITY_BOTTOM_MARGIN,
         "doc": {key: doc[key] for key in ("school", "pupil", "identity_date_line")}
         | {"record": {"replaces": doc["record"]["replaces"]}}},
        {"kind": "history", "title": "Quá trình học tập", "bottom": MARGINS["bottom"],
         "doc": {"pupil": pupil, "history": doc["history"]}},
    ]
    for year in doc["years"]:
        sections.append({"kind": "year", "title": f"Năm học {year['school_year']}", "bottom": MARGINS["bottom"],
                         "year": year, "doc": {"pupil": pupil, "sig_blank_pt": doc["sig_blank_pt"]}})
    return sections


# --------------------------------------------------------------------------- laying out with platypus
#
# Each section is built as ReportLab flowables straight from the display strings of `_document`: the layout of
# templates/records/_identity.html, _history.html and _year.html (the preview's), with their sizes, margins and
# paddings, and the line height xhtml2pdf gives "line-height: 1.25" (so pages break where they used to). No
# HTML is written, parsed or styled, which was most of the cost of a section.

_LINE_HEIGHT = 1.257487  # times the font size: xhtml2pdf's leading for line-height 1.25 (13.83 pt at 11 pt)
_HINT_COLOUR = Color(1 / 255, 2 / 255, 3 / 255)  # the signature hints' (#010203): _find_signature_boxes looks for it
_LAYOUT_FONTS = {"regular": "HocBaSerif", "bold": "HocBaSerif-Bold", "italic": "HocBaSerif-Italic"}
_STYLE_OF_LAYOUT_FONT = {name: style for style, name in _LAYOUT_FONTS.items()}
# Table styles: the grid (0.5 pt rules, padding 2 3 1 3), the plain rows (padding right 2), the signature blocks.
_GRID = (("GRID", (0, 0), (-1, -1), 0.5, black), ("LEFTPADDING", (0, 0), (-1, -1), 3),
         ("RIGHTPADDING", (0, 0), (-1, -1), 3), ("TOPPADDING", (0, 0), (-1, -1), 2),
         ("BOTTOMPADDING", (0, 0), (-1, -1), 1), ("VALIGN", (0, 0), (-1, -1), "TOP"),
         ("VALIGN", (0, 0), (-1, 0), "MIDDLE"))
_PLAIN = (("LEFTPADDING", (0, 0), (-1, -1), 0), ("RIGHTPADDING", (0, 0), (-1, -1), 2),
          ("TOPPADDING", (0, 0), (-1, -1), 0), ("BOTTOMPADDING", (0, 0), (-1, -1), 0),
          ("VALIGN", (0, 0), (-1, -1), "TOP"))
_SIGN = (("LEFTPADDING", (0, 0), (-1, -1), 0), ("RIGHTPADDING", (0, 0), (-1, -1), 0),
         ("TOPPADDING", (0, 0), (-1, -1), 0), ("BOTTOMPADDING", (0, 0), (-1, -1), 0),
         ("VALIGN", (0, 0), (-1, -1), "TOP"))


class _LayoutFont(TTFont):
    """One of our serif fonts as the layout draws with it: straight in the document's shared font of its style
    (see "one font per style"), its text shown as two-byte Unicode codes in /HBR, /HBB or /HBI, the codes
    noted in `_shown`. A laid-out section thus has no font of its own: ReportLab's per-section subsets (a
    TrueType subset cut, its widths and maps written, all read back and re-encoded to the shared fonts, then
    dropped) were about a quarter of a cold record."""

    def __init__(self, name: str, filename: str, style: str) -> None:
        super().__init__(name, filename)
        self.style = style
        # ReportLab hands one font object to every name registered for a face: under a face name of its own
        # this font is never lent to anyone else (xhtml2pdf, the draft mark), whose text must be in a font
        # of its own with its program, nor another's font to the layout.
        self.face.name = f"{name}-{self.face.name.decode()}".encode()

    def splitString(self, text: str | bytes, doc: Any, encoding: str = "utf-8") -> list[tuple[int, bytes]]:
        if isinstance(text, bytes):
            text = text.decode(encoding)
        data = text.encode("utf-16-be")
        if len(data) == 2 * len(text):
            codes = struct.unpack(f">{len(text)}H", data)
        else:  # a character beyond the two-byte codes: shown as code 0 (no glyph), as a subset would
            codes = tuple(ord(char) if ord(char) <= 0xFFFF else 0 for char in text)
            data = struct.pack(f">{len(codes)}H", *codes)
        _shown.setdefault(self.style, set()).update(codes)
        return [(0, data)]

    def getSubsetInternalName(self, subset: int, doc: Any) -> str:
        return SHARED_FONTS[self.style]

    def addObjects(self, doc: Any) -> None:
        """Nothing: the document gets the shared fonts when it is assembled."""


_shown: dict[str, set[int]] = {}  # per style, the codes the layout under way has shown (under _layout_lock)


@cache
def _layout_fonts() -> dict[str, str]:
    for style, name in _LAYOUT_FONTS.items():
        if name not in pdfmetrics.getRegisteredFontNames():
            pdfmetrics.registerFont(_LayoutFont(name, str(FONT_DIR / FONT_FILES[style]), style))
    pdfmetrics.registerFontFamily(_LAYOUT_FONTS["regular"], normal=_LAYOUT_FONTS["regular"],
                                  bold=_LAYOUT_FONTS["bold"], italic=_LAYOUT_FONTS["italic"],
                                  boldItalic=_LAYOUT_FONTS["bold"])
    return _LAYOUT_FONTS


@cache
def _styles() -> dict[str, ParagraphStyle]:
    """The paragraph styles of _style.html: body 11 pt; .hb-line, .hb-section, .hb-heading, .hb-small, ..."""
    fonts = _layout_fonts()
    regular, bold, italic = fonts["regular"], fonts["bold"], fonts["italic"]

    def style(name: str, size: float = 11, font: str = regular, centre: bool = False, **extra: Any) -> ParagraphStyle:
        # no shrinking of spaces: a squeezed line would need word spacing, which two-byte codes ignore
        return ParagraphStyle(name, fontName=font, fontSize=size, leading=size * _LINE_HEIGHT,
                              alignment=TA_CENTER if centre else TA_LEFT, spaceShrinkage=0, **extra)

    return {
        "plain": style("plain"), "plain_bold": style("plain_bold", font=bold),
        "line": style("line", spaceAfter=2), "line_italic": style("line_italic", font=italic, spaceAfter=2),
        "line_wide": style("line_wide", spaceAfter=6),
        "heading": style("heading", 12, bold, True, spaceAfter=6),
        "heading_spaced": style("heading_spaced", 12, bold, True, spaceBefore=12, spaceAfter=6),
        "section": style("section", font=bold, spaceBefore=8, spaceAfter=3),
        "title": style("title", 18, bold, True, spaceBefore=15.3),
        "subtitle": style("subtitle", 13, bold, True, spaceAfter=2.4),
        "note": style("note", 9.5, italic, spaceBefore=4),  # its 2 pt below fall within the 10 pt that follow
        "cell": style("cell", 10), "cell_centre": style("cell_centre", 10, centre=True),
        "cell_head": style("cell_head", 10, bold, True),
        "sign_bold": style("sign_bold", font=bold, centre=True, spaceAfter=2),
        "sign_italic": style("sign_italic", font=italic, centre=True, spaceAfter=2),
        "small_centre": style("small_centre", 9.5, centre=True, spaceAfter=2),
        "small_bold": style("small_bold", 9.5, bold, True, spaceAfter=2),
        "small_italic": style("small_italic", 9.5, italic, True, spaceAfter=2),
        "hint": style("hint", 9.5, italic, True, spaceAfter=2, textColor=_HINT_COLOUR),
    }


class _Paragraph(Paragraph):
    """A paragraph that breaks its lines once per width. A table wraps each cell to measure its rows, again
    to draw it, and again for each part when it is split over pages, always at the column's width: ReportLab
    would break the lines anew each time (a tenth of a cold record). The same width gives the same
    lines (the height available is not used), so the first result is kept."""

    def wrap(self, availWidth: float, availHeight: float) -> tuple[float, float]:
        if getattr(self, "_wrapped_at", None) == availWidth and hasattr(self, "blPara"):  # split() may drop it
            return self.width, self.height
        size = super().wrap(availWidth, availHeight)
        self._wrapped_at = availWidth
        return size


def _text(text: str, style: str) -> Paragraph:
    """A paragraph of plain text in one style. ReportLab would parse it as markup (an HTML parser per
    paragraph, a tenth of the layout); it gets instead the one fragment that parse gives: the style's
    fragment with the text, its white space collapsed as the parser's cleaner does."""
    if text.isprintable() and text[:1] != " " and text[-1:] != " " and "  " not in text:
        cleaned = text  # no white space but single spaces between words (the cleaner is a tenth of a layout)
    else:
        cleaned = cleanBlockQuotedText(text)
    if not cleaned:
        return _Paragraph("", _styles()[style])
    return _Paragraph(cleaned, _styles()[style], frags=[_fragment(style).clone(text=cleaned)])


@cache
def _fragment(style: str) -> Any:
    """What ReportLab's parser makes of a one-word paragraph in `style` (font, size, colour, ...)."""
    (fragment,) = Paragraph("x", _styles()[style]).frags
    return fragment


def _marked(markup: str, style: str) -> Paragraph:
    """A paragraph of ReportLab markup (<b>, <i>): every value in it escaped by the caller."""
    return _Paragraph(markup, _styles()[style])


def _widths(*percents: float) -> list[float]:
    return [CONTENT_WIDTH * percent / 100 for percent in percents]


def _grid(header: tuple[str, ...], rows: list[tuple[str, ...]], percents: tuple[float, ...],
          centred: set[int]) -> Table:
    """A ruled table (table.hb-grid) whose header row is repeated on every page it runs over."""
    data = [[_text(title, "cell_head") for title in header]]
    data += [[_text(value, "cell_centre" if column in centred else "cell") for column, value in enumerate(row)]
             for row in rows]
    return Table(data, colWidths=_widths(*percents), repeatRows=1, style=TableStyle(_GRID), hAlign="LEFT")


def _plain(rows: list[list[Any]], percents: tuple[float, ...]) -> Table:
    return Table(rows, colWidths=_widths(*percents), style=TableStyle(_PLAIN), hAlign="LEFT")


def _identity_story(section: dict[str, Any]) -> list[Flowable]:
    doc = section["doc"]
    school, pupil = doc["school"], doc["pupil"]

    def rows(pairs: list[tuple[str, str]], bold: Any) -> Table:
        return _plain([[_text(f"{label}:", "plain"), _text(value, "plain_bold" if bold(index) else "plain")]
                       for index, (label, value) in enumerate(pairs)], (30, 70))

    story: list[Flowable] = [
        _plain([[[_text(school["authority"], "small_centre"), _text(school["name"], "small_bold")],
                 [_text("CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM", "small_bold"),
                  _text("Độc lập - Tự do - Hạnh phúc", "small_bold")]]], (45, 55)),
        _text("HỌC BẠ", "title"),
        _text("TIỂU HỌC", "subtitle"),
        Spacer(0, 4.8),
        rows(school["rows"], lambda index: True),
        _text("THÔNG TIN HỌC SINH", "heading_spaced"),
        rows(pupil["rows"], lambda index: index == 0),
    ]
    if doc["record"]["replaces"]:
        story.append(_text(f"Bản này thay thế bản có mã {doc['record']['replaces']}.", "note"))
    signature = [_text(doc["identity_date_line"], "sign_italic"), _text("HIỆU TRƯỞNG", "sign_bold"),
                 _text("(Ký, ghi rõ họ tên và đóng dấu)", "small_italic"), Spacer(0, 44),
                 _text(school["principal"], "sign_bold")]
    story += [Spacer(0, 10), Table([["", signature]], colWidths=_widths(45, 55), style=TableStyle(_SIGN),
                                   hAlign="LEFT")]
    return story


def _history_story(section: dict[str, Any]) -> list[Flowable]:
    doc = section["doc"]
    return [
        _text("QUÁ TRÌNH HỌC TẬP", "heading"),
        _marked(f"Họ và tên học sinh: <b>{escape(doc['pupil']['full_name'])}</b>", "line"),
        _text(f"Số đăng bộ: {doc['pupil']['register_number']}", "line_wide"),
        _grid(("Năm học", "Lớp", "Tên trường", "Ngày nhập học / chuyển đến", "Hiệu trưởng xác nhận"),
              [(row["school_year"], row["class_name"], row["school_name"], row["enrolled_on"], row["confirmed_by"])
               for row in doc["history"]], (15, 8, 37, 17, 23), {0, 1, 3, 4}),
    ]


def _traits(rows: list[dict[str, str]], first_header: str) -> Table:
    return _grid((first_header, "Mức đạt được", "Nhận xét"), [(r["name"], r["level"], r["comment"]) for r in rows],
                 (30, 16, 54), {1})


def _year_story(section: dict[str, Any]) -> list[Flowable]:
    """One school year's page (may run over two pages); the signature block closes it and is never split."""
    year, doc = section["year"], section["doc"]
    received = " <i>(theo học bạ do trường này cấp)</i>" if year["received"] else ""
    story: list[Flowable] = [
        _text(f"KẾT QUẢ HỌC TẬP VÀ RÈN LUYỆN NĂM HỌC {year['school_year']}", "heading"),
        _marked(f"Họ và tên học sinh: <b>{escape(doc['pupil']['full_name'])}</b>", "line"),
        _plain([[_marked(f"Lớp: <b>{escape(year['class_name'])}</b>", "plain"),
                 _text(f"Năm học: {year['school_year']}", "plain")]], (25, 75)),
        _marked(escape(f"Trường: {year['school_name']}") + received, "line"),
        _plain([[_text(f"Chiều cao: {year['height']}", "plain"), _text(f"Cân nặng: {year['weight']}", "plain"),
                 _text(f"Số ngày nghỉ: có phép {year['absent_excused']}, không phép {year['absent_unexcused']}",
                       "plain")]], (25, 25, 50)),
        _text("1. Môn học và hoạt động giáo dục", "section"),
        _grid(("Môn học và hoạt động giáo dục", "Mức đạt được", "Điểm KTĐK", "Nhận xét"),
              [(row["name"], row["level"], row["score"], row["comment"]) for row in year["subjects"]],
              (24, 16, 9, 51), {1, 2}),
        _text("2. Những phẩm chất chủ yếu", "section"),
        _traits(year["qualities"], "Phẩm chất"),
        _text("3. Những năng lực cốt lõi", "section"),
        _text("3.1. Những năng lực chung", "line_italic"),
        _traits(year["general_competencies"], "Năng lực chung"),
        Spacer(0, 4),
        _text("3.2. Những năng lực đặc thù", "line_italic"),
        _traits(year["specific_competencies"], "Năng lực đặc thù"),
        _marked(f'4. Đánh giá kết quả giáo dục: <font name="{_layout_fonts()["regular"]}">'
                f'{escape(year["outcome"])}</font>', "section"),
    ]
    awards = [f"- {award['title']}" + (f" ({award['date']})" if award["date"] else "")
              for award in year["awards"]] or ["Không"]
    # the heading never sits alone at the bottom of a page: it is kept with its first line
    story.append(KeepTogether([_text("5. Khen thưởng", "section"), _text(awards[0], "line")]))
    story += [_text(award, "line") for award in awards[1:]]
    story += [_text("6. Hoàn thành chương trình lớp học/chương trình tiểu học", "section"),
              _text(year["completion"], "line")]
    if year["promoted"]:
        story.append(_text(year["promoted"], "line"))
    if year["note"]:
        story.append(_text(f"Đánh giá bổ sung: {year['note']}", "line"))

    def column(title: str, hint: str, name: str) -> list[Flowable]:
        # the blank under the hint is the signature box (_find_signature_boxes measures it from the hint)
        return [_text(title, "sign_bold"), _text(hint, "hint"), Spacer(0, doc["sig_blank_pt"] - 0.5),
                _text(name, "sign_bold")]

    block = Table([["", _text(year["date_line"], "sign_italic")],
                   [column("Giáo viên chủ nhiệm", "(Ký và ghi rõ họ tên)", year["homeroom_teacher"]),
                    column("Hiệu trưởng", "(Ký, ghi rõ họ tên và đóng dấu)", year["principal"])]],
                  colWidths=_widths(50, 50), style=TableStyle(_SIGN))
    story.append(KeepTogether([Spacer(0, 6), block]))
    return story


_STORIES = {"identity": _identity_story, "history": _history_story, "year": _year_story}


# --------------------------------------------------------------------------- laying out sections (cached)


@dataclass(frozen=True)
class _Rendered:
    pdf: bytes
    reader: PdfReader  # parsed once: pypdf keeps what it resolved, so later copies do not parse again
    boxes: dict[str, Box]  # the signature block's blank boxes on the section's last page (year pages)
    fonts: dict[str, frozenset[int]]  # per style, the codes its pages show in the shared fonts


_cache: OrderedDict[str, _Rendered] = OrderedDict()
_cache_size = [0]
_cache_lock = threading.Lock()
_store: list[SectionStore | None] = [None]
_reader_lock = threading.Lock()
# ReportLab keeps module-level state (font registry, rl_config): one layout at a time per process.
_layout_lock = threading.Lock()


def _render_section(section: dict[str, Any]) -> _Rendered:
    key = hashlib.sha256(_fingerprint().encode() + json.dumps(section, sort_keys=True, ensure_ascii=False,
                                                              default=list).encode()).hexdigest()
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
            return hit
    store = _store[0]
    pdf = store.get(key) if store is not None else None
    if pdf is None:
        pdf = _shared_font_section(*_layout(section))
        if store is not None:
            store.put(key, pdf)
    reader = PdfReader(io.BytesIO(pdf))
    rendered = _Rendered(pdf, reader, _find_signature_boxes(reader) if section["kind"] == "year" else {},
                         _font_use(reader))
    with _cache_lock:
        if key not in _cache:
            _cache[key] = rendered
            _cache_size[0] += len(pdf)
        while _cache_size[0] > CACHE_LIMIT_BYTES and len(_cache) > 1:
            _, old = _cache.popitem(last=False)
            _cache_size[0] -= len(old.pdf)
    return rendered


def _layout(section: dict[str, Any]) -> tuple[bytes, dict[str, set[int]]]:
    """One section laid out by ReportLab's platypus, straight from the content (see "laying out with platypus"),
    and per style the codes its text shows in the shared fonts."""
    bottom = section["bottom"]
    frame = Frame(MARGINS["left"], bottom, CONTENT_WIDTH, PAGE_HEIGHT - MARGINS["top"] - bottom,
                  leftPadding=0, rightPadding=0, topPadding=0, bottomPadding=0, id="body")
    out = io.BytesIO()
    # invariant: fixed dates and ids, the same section gives the same bytes; no compression: the section's
    # streams are read again at once and compressed then
    template = BaseDocTemplate(out, pagesize=A4, pageTemplates=[PageTemplate("page", [frame])], invariant=1,
                               pageCompression=0, title=section["title"])
    story = _STORIES[section["kind"]](section)
    with _layout_lock:
        saved = rl_config.invariant
        rl_config.invariant = 1
        _shown.clear()
        try:
            template.build(story)
            shown = {style: set(codes) for style, codes in _shown.items()}
        finally:
            rl_config.invariant = saved
    return out.getvalue(), shown


# What ReportLab writes that the sections do not keep: the Helvetica it selects at the top of every page
# without drawing with it, and its font resources (only that Helvetica: the text is in the shared fonts).
_UNUSED_FONT = re.compile(rb"BT /F\d+ [\d.]+ Tf [\d.]+ TL ET")
_OTHER_FONT = re.compile(rb"/(?!HB[RBI] )[^\s/\[\]()<>{}%]+ [\d.]+ Tf")
_WORD_SPACING = re.compile(rb"(?<![^\s])(-?[\d.]+)\s+Tw(?![^\s/\[(<])")


def _shared_font_section(pdf: bytes, shown: dict[str, set[int]]) -> bytes:
    """A laid-out section as it is cached and stored: its pages, compressed, without fonts of their own, and in
    its catalogue the codes they show per style."""
    reader = PdfReader(io.BytesIO(pdf))
    writer = PdfWriter()
    for page in reader.pages:
        stream = page.raw_get("/Contents").get_object()
        data = _UNUSED_FONT.sub(b"", stream.get_data())
        if _OTHER_FONT.search(data):
            raise RuntimeError("a section shows text in a font other than the shared ones")
        if b"Tw" in data and any(float(m[1]) for m in _WORD_SPACING.finditer(data)):
            raise RuntimeError("word spacing (Tw) does not apply to two-byte codes: justified text is not supported")
        stream.pop("/DecodeParms", None)
        stream[NameObject("/Filter")] = NameObject("/FlateDecode")
        stream._data = zlib.compress(data)
        stream.decoded_self = None
        resources = DictionaryObject(page["/Resources"])
        resources.pop("/Font", None)
        page[NameObject("/Resources")] = resources
        writer.add_page(page)
    writer._root_object[NameObject(_FONT_USE_KEY)] = _font_use_object(writer, shown)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def _find_signature_boxes(reader: PdfReader) -> dict[str, Box]:
    """The blank boxes under the signature block's hint lines, on the section's last page.

    The hints are printed in a colour of their own (`.hb-sign-hint`, #010203, black to the eye); their text
    origin is found by following the page's q/Q/cm translations up to the text block in that colour: a
    regular-expression pass over one content stream, far cheaper than extracting the page's text.
    """
    data = reader.pages[-1].get_contents().get_data()
    offsets = [(0.0, 0.0)]
    hints: list[tuple[float, float]] = []
    for m in _STREAM_TOKENS.finditer(data):
        if m["push"]:
            offsets.append(offsets[-1])
        elif m["pop"]:
            offsets.pop()
        elif m["e"] is not None:
            x, y = offsets[-1]
            offsets[-1] = (x + float(m["e"]), y + float(m["f"]))
        elif m["before"] or m["after"]:
            x, y = offsets[-1]
            hints.append((x + float(m["tx"]) + float(m["dx"] or 0), y + float(m["ty"])))
    if len(hints) != 2:
        raise RuntimeError(f"the signature block's two hint lines were not found on the year page ({len(hints)})")
    half = CONTENT_WIDTH / 2
    boxes = {}
    for field, (_, baseline) in zip(("gvcn", "hieu_truong"), sorted(hints), strict=True):
        top = baseline - 5  # below the hint line's descenders
        x0 = MARGINS["left"] + (field == "hieu_truong") * half + _BOX_INSET
        # whole points, rounded inwards: the fields placed in them (at halves at most) stay exact in the file
        boxes[field] = (math.ceil(x0), math.ceil(top - SIGNATURE_BLANK + 8), math.floor(x0 + half - 2 * _BOX_INSET),
                        math.floor(top))
    return boxes


def _field_rects(boxes: dict[str, tuple[int, Box]]) -> dict[str, tuple[int, Box]]:
    """The three fields: GVCN centred in its box; Hiệu trưởng at the top of its box, the seal under it."""
    page, (gx0, gy0, gx1, gy1) = boxes["gvcn"]
    _, (hx0, hy0, hx1, hy1) = boxes["hieu_truong"]
    gx, gy = (gx0 + gx1 - FIELD_WIDTH) / 2, (gy0 + gy1 - FIELD_HEIGHT) / 2
    hx = (hx0 + hx1 - FIELD_WIDTH) / 2
    rects = {
        "gvcn": (gx, gy, gx + FIELD_WIDTH, gy + FIELD_HEIGHT),
        "hieu_truong": (hx, hy1 - FIELD_HEIGHT, hx + FIELD_WIDTH, hy1),
        "con_dau": (hx, hy0, hx + FIELD_WIDTH, hy0 + FIELD_HEIGHT),
    }
    return {field: (page, rects[field]) for field in SIGNATURE_FIELDS}


# --------------------------------------------------------------------------- one font per style in the document
#
# Each section is laid out on its own; so that the document still carries one font subset per style (regular,
# bold, italic), a section's text is written in codes that mean the same in every section: two-byte codes equal
# to the characters' Unicode values (Identity-H), shown in the fonts /HBR, /HBB and /HBI (`_LayoutFont`), and the
# section keeps no font of its own. The document then gets, per style, one CID font whose program holds the
# glyphs of every character its sections and its footers use, and whose CIDToGIDMap sends each Unicode value to
# its glyph in that subset.

SHARED_FONTS = {"regular": "/HBR", "bold": "/HBB", "italic": "/HBI"}
_FONT_USE_KEY = "/HBFontUse"  # in a laid-out section's catalogue: per style, the codes its pages show (JSON)


def _font_use_object(writer: PdfWriter, used: dict[str, set[int]]) -> IndirectObject:
    """The codes as one compressed JSON stream: read back at every load of the section, which an array of
    PDF numbers per code made cost as much as parsing the rest of the section."""
    data = json.dumps({style: sorted(codes) for style, codes in used.items()}, sort_keys=True).encode()
    return writer._add_object(_flate(zlib.compress(data)))


def _font_use(reader: PdfReader) -> dict[str, frozenset[int]]:
    use = reader.trailer["/Root"].get(_FONT_USE_KEY)
    if use is None:
        return {}
    return {style: frozenset(codes) for style, codes in json.loads(use.get_object().get_data()).items()}


def _add_shared_fonts(writer: PdfWriter, used: dict[str, set[int]]) -> DictionaryObject:
    """One Type 0 font per style used, each holding exactly the glyphs of the codes the document shows."""
    fonts = DictionaryObject()
    for style in SHARED_FONTS:
        if not used.get(style):
            continue
        font = _shared_font(style, tuple(sorted(used[style])))
        descriptor = DictionaryObject(font.descriptor)
        descriptor[NameObject("/FontFile2")] = writer._add_object(
            _flate(font.program, {"/Length1": NumberObject(font.program_length)}))
        descendant = DictionaryObject(font.descendant)
        descendant[NameObject("/FontDescriptor")] = writer._add_object(descriptor)
        descendant[NameObject("/W")] = font.widths.clone(writer)
        descendant[NameObject("/CIDToGIDMap")] = writer._add_object(_flate(font.cid_to_gid))
        fonts[NameObject(SHARED_FONTS[style])] = writer._add_object(DictionaryObject({
            NameObject("/Type"): NameObject("/Font"), NameObject("/Subtype"): NameObject("/Type0"),
            NameObject("/BaseFont"): font.name, NameObject("/Encoding"): NameObject("/Identity-H"),
            NameObject("/DescendantFonts"): ArrayObject([writer._add_object(descendant)]),
            NameObject("/ToUnicode"): writer._add_object(_flate(font.to_unicode)),
        }))
    return fonts


@dataclass(frozen=True)
class _SharedFont:
    name: NameObject
    program: bytes  # compressed, as are the two maps
    program_length: int
    cid_to_gid: bytes
    to_unicode: bytes
    widths: ArrayObject
    descriptor: DictionaryObject  # without its /FontFile2
    descendant: DictionaryObject  # without /FontDescriptor, /W, /CIDToGIDMap


@lru_cache(maxsize=64)
def _shared_font(style: str, codes: tuple[int, ...]) -> _SharedFont:
    """The parts of the Type 0 font of `style` for the characters `codes` (kept: the next version of a record,
    or a classmate's, mostly shows the same characters).

    The font program is ReportLab's own subset of the TrueType file, as in every section, with the glyphs in
    the order of `codes`; CIDToGIDMap sends each code to its glyph there; the widths are ReportLab's, those
    the text was laid out with.
    """
    face = _faces()[style]
    program = face.makeSubset(list(codes))
    glyph_of = _subset_glyphs(program)
    cid_to_gid = bytearray(2 * (codes[-1] + 1))
    for index, code in enumerate(codes):
        cid_to_gid[2 * code:2 * code + 2] = glyph_of[index].to_bytes(2, "big")
    tag = "".join(chr(65 + b % 26) for b in hashlib.sha256(repr((style, codes)).encode()).digest()[:6])
    name = NameObject(f"/{tag}+{face.name.decode()}")
    widths = ArrayObject()
    for code in codes:
        width = FloatObject(fp_str(face.getCharWidth(code)))
        if widths and int(widths[-2]) + len(widths[-1]) == code:
            widths[-1].append(width)
        else:
            widths += [NumberObject(code), ArrayObject([width])]
    descriptor = DictionaryObject({
        NameObject("/Type"): NameObject("/FontDescriptor"), NameObject("/FontName"): name,
        NameObject("/Flags"): NumberObject((face.flags & ~(1 << 5)) | (1 << 2)),  # symbolic, as ReportLab says
        NameObject("/FontBBox"): ArrayObject(FloatObject(fp_str(v)) for v in face.bbox),
        NameObject("/ItalicAngle"): FloatObject(fp_str(face.italicAngle)),
        NameObject("/Ascent"): FloatObject(fp_str(face.ascent)),
        NameObject("/Descent"): FloatObject(fp_str(face.descent)),
        NameObject("/CapHeight"): FloatObject(fp_str(face.capHeight)),
        NameObject("/StemV"): NumberObject(face.stemV),
    })
    descendant = DictionaryObject({
        NameObject("/Type"): NameObject("/Font"), NameObject("/Subtype"): NameObject("/CIDFontType2"),
        NameObject("/BaseFont"): name,
        NameObject("/CIDSystemInfo"): DictionaryObject({NameObject("/Registry"): TextStringObject("Adobe"),
                                                        NameObject("/Ordering"): TextStringObject("Identity"),
                                                        NameObject("/Supplement"): NumberObject(0)}),
        NameObject("/DW"): FloatObject(fp_str(face.defaultWidth)),
    })
    return _SharedFont(name, zlib.compress(program), len(program), zlib.compress(bytes(cid_to_gid)),
                       zlib.compress(_to_unicode(codes)), widths, descriptor, descendant)


def _subset_glyphs(program: bytes) -> list[int]:
    """The glyph of each code of a ReportLab subset, read from its cmap (format 6: code i -> glyph)."""
    (tables,) = struct.unpack_from(">H", program, 4)
    for i in range(tables):
        tag, _checksum, offset, _length = struct.unpack_from(">4sLLL", program, 12 + 16 * i)
        if tag == b"cmap":
            (subtable,) = struct.unpack_from(">L", program, offset + 8)
            fmt, _len, _lang, first, count = struct.unpack_from(">5H", program, offset + subtable)
            if fmt != 6 or first != 0:
                break
            return list(struct.unpack_from(f">{count}H", program, offset + subtable + 10))
    raise RuntimeError("the font subset has no format 6 cmap")


def _to_unicode(codes: tuple[int, ...]) -> bytes:
    """The ToUnicode CMap of the shared fonts: each two-byte code is its own Unicode value."""
    lines = ["/CIDInit /ProcSet findresource begin", "12 dict begin", "begincmap",
             "/CIDSystemInfo << /Registry (Adobe) /Ordering (UCS) /Supplement 0 >> def",
             "/CMapName /Adobe-Identity-UCS def", "/CMapType 2 def",
             "1 begincodespacerange", "<0000> <FFFF>", "endcodespacerange"]
    for start in range(0, len(codes), 100):
        chunk = codes[start:start + 100]
        lines.append(f"{len(chunk)} beginbfchar")
        lines += [f"<{code:04X}> <{code:04X}>" for code in chunk]
        lines.append("endbfchar")
    lines += ["endcmap", "CMapName currentdict /CMap defineresource pop", "end", "end"]
    return "\n".join(lines).encode()


def _flate(compressed: bytes, extra: dict[str, Any] | None = None) -> EncodedStreamObject:
    stream = EncodedStreamObject()
    stream._data = compressed
    stream[NameObject("/Filter")] = NameObject("/FlateDecode")
    for key, value in (extra or {}).items():
        stream[NameObject(key)] = value
    return stream


@cache
def _faces() -> dict[str, TTFontFace]:
    return {style: TTFontFace(str(FONT_DIR / FONT_FILES[style])) for style in SHARED_FONTS}


# --------------------------------------------------------------------------- after layout: footer, QR, fields


def _stamp(writer: PdfWriter, doc: dict[str, Any], used: dict[str, set[int]]) -> None:
    """Footer and page number on every page, the QR code on the first and last: one content stream per page,
    drawn over it; then the shared fonts, for the codes of `used` (the sections') and the footers', in every page's
    resources. The stamps are written directly in the shared fonts' codes (no overlay document to lay
    out, parse and re-encode)."""
    total = len(writer.pages)
    regular, bold = _overlay_fonts()
    qr = segno.make(doc["record"]["verify_url"], error="m")
    stamps = []
    for number in range(1, total + 1):
        canvas = _StampCanvas(used)
        qr_room = 0.0
        if number == total:
            qr_room = 50.0
            _draw_qr(canvas, qr, PAGE_WIDTH - MARGINS["right"] - 44, 7, 44)
        _draw_footer(canvas, doc, number, total, regular, bold, qr_room)
        if number == 1:
            _draw_identity_qr(canvas, doc, qr, regular, bold)
        stamps.append(canvas.content())
    fonts = _add_shared_fonts(writer, used)
    # Each stamp is one more content stream of its page, drawn after the page's own content in a graphics state
    # of its own: unlike pypdf's merge_page this never parses the (large) content streams of the laid-out pages.
    # Not a form XObject: every path from the catalogue to the shared fonts is walked again by a validator's
    # difference analysis at each signed revision, and a form per page doubles those paths.
    before = writer._add_object(_stream(b"q\n"))
    after = writer._add_object(_stream(b"\nQ\n"))
    for page, content in zip(writer.pages, stamps, strict=True):
        stamp = writer._add_object(_flate(zlib.compress(b"q\n" + content + b"\nQ\n")))
        resources = DictionaryObject(page["/Resources"])
        page_fonts = DictionaryObject(resources.get("/Font", DictionaryObject()))
        page_fonts.update(fonts)
        resources[NameObject("/Font")] = page_fonts
        page[NameObject("/Resources")] = resources
        contents = page.raw_get("/Contents")
        own = list(contents.get_object()) if isinstance(contents.get_object(), ArrayObject) else [contents]
        page[NameObject("/Contents")] = ArrayObject([before, *own, after, stamp])
    _inherit_resources(writer)


def _inherit_resources(writer: PdfWriter) -> None:
    """Pages whose resources are all the same (the three shared fonts) inherit them from the page tree's root:
    one dictionary instead of one per page. A validator's difference analysis walks every path from the
    catalogue to each font at every signed revision; through the root there is one path, not one per page."""
    pages = list(writer.pages)
    shared = pages[0]["/Resources"]
    if any(page["/Resources"] != shared for page in pages[1:]):
        return
    writer.root_object["/Pages"].get_object()[NameObject("/Resources")] = shared
    for page in pages:
        del page["/Resources"]


class _StampCanvas:
    """The little of ReportLab's Canvas the footer and the QR codes draw with, writing a content stream whose
    text is in the shared fonts' two-byte codes (Unicode values) and noting the codes it shows in `used`."""

    def __init__(self, used: dict[str, set[int]]) -> None:
        self.ops: list[str] = []
        self.used = used
        self.font, self.size = "", 0.0

    def content(self) -> bytes:
        return "\n".join(self.ops).encode("latin-1")

    def setLineWidth(self, width: float) -> None:  # the names of ReportLab.s Canvas
        self.ops.append(f"{fp_str(width)} w")

    def line(self, x0: float, y0: float, x1: float, y1: float) -> None:
        self.ops.append(f"{fp_str(x0, y0)} m {fp_str(x1, y1)} l S")

    def setFont(self, name: str, size: float) -> None:
        self.font, self.size = name, size

    def drawString(self, x: float, y: float, text: str) -> None:
        style = _STYLE_OF_LAYOUT_FONT[self.font]
        codes = [ord(char) if ord(char) <= 0xFFFF else 0 for char in text]
        self.used.setdefault(style, set()).update(codes)
        shown = "".join(f"{code:04X}" for code in codes)
        self.ops.append(f"BT {SHARED_FONTS[style]} {fp_str(self.size)} Tf 1 0 0 1 {fp_str(x, y)} Tm <{shown}> Tj ET")

    def drawRightString(self, x: float, y: float, text: str) -> None:
        self.drawString(x - pdfmetrics.stringWidth(text, self.font, self.size), y, text)

    def setFillColorRGB(self, r: float, g: float, b: float) -> None:
        self.ops.append(f"{fp_str(r, g, b)} rg")

    def rect(self, x: float, y: float, width: float, height: float, stroke: int = 0, fill: int = 1) -> None:
        self.ops.append(f"{fp_str(x, y, width, height)} re {'f' if fill else 'n'}")

    def beginPath(self) -> _QRPath:
        return _QRPath()

    def drawPath(self, path: list[str], stroke: int = 0, fill: int = 1) -> None:
        self.ops += path
        self.ops.append("f" if fill else "n")


class _QRPath(list):
    def rect(self, x: float, y: float, width: float, height: float) -> None:
        self.append(f"{x:.3f} {y:.3f} {width:.3f} {height:.3f} re")


def _draw_footer(canvas: _StampCanvas, doc: dict[str, Any], number: int, total: int, regular: str, bold: str,
                 qr_room: float) -> None:
    left, right = MARGINS["left"], PAGE_WIDTH - MARGINS["right"] - qr_room
    canvas.setLineWidth(0.5)
    canvas.line(MARGINS["left"], FOOTER_TOP, PAGE_WIDTH - MARGINS["right"], FOOTER_TOP)
    page_text = f"Trang {number}/{total}"
    canvas.setFont(bold, 9)
    canvas.drawRightString(right, 30, page_text)
    room = right - left
    _fit_text(canvas, doc["footer_left"], left, 42, room, regular, 8.5)
    _fit_text(canvas, doc["footer_right"], left, 30, room - pdfmetrics.stringWidth(page_text, bold, 9) - 12,
              regular, 8.5)


def _fit_text(canvas: _StampCanvas, text: str, x: float, y: float, width: float, font: str, size: float) -> None:
    """Draw `text` on one line, in a smaller size when it would not fit (never cut)."""
    while size > 5 and pdfmetrics.stringWidth(text, font, size) > width:
        size -= 0.25
    canvas.setFont(font, size)
    canvas.drawString(x, y, text)


def _draw_identity_qr(canvas: _StampCanvas, doc: dict[str, Any], qr: segno.QRCode, regular: str, bold: str) -> None:
    size, x, y = 96.0, MARGINS["left"], 80.0
    _draw_qr(canvas, qr, x, y, size)
    text_x = x + size + 14
    room = PAGE_WIDTH - MARGINS["right"] - text_x
    heading, *lines = doc["qr_caption"]
    _fit_text(canvas, heading, text_x, y + 66, room, bold, 12.5)
    for offset, line in zip((48, 35, 17), lines, strict=True):
        _fit_text(canvas, line, text_x, y + offset, room, regular, 10)


def _draw_qr(canvas: _StampCanvas, qr: segno.QRCode, x: float, y: float, size: float) -> None:
    """The QR code as filled rectangles (one per run of dark modules), with a quiet zone of 2 modules."""
    rows = [list(row) for row in qr.matrix]
    module = size / (len(rows) + 4)
    canvas.setFillColorRGB(1, 1, 1)
    canvas.rect(x, y, size, size, stroke=0, fill=1)
    canvas.setFillColorRGB(0, 0, 0)
    path = canvas.beginPath()
    for r, row in enumerate(rows):
        top = y + size - (r + 2) * module
        c = 0
        while c < len(row):
            if row[c]:
                start = c
                while c < len(row) and row[c]:
                    c += 1
                path.rect(x + (start + 2) * module, top - module, (c - start) * module, module)
            else:
                c += 1
    canvas.drawPath(path, stroke=0, fill=1)


def _add_signature_fields(writer: PdfWriter, fields: dict[str, tuple[int, Box]]) -> None:
    """Empty, printable signature fields (widget merged into the field), for pyHanko to fill in order."""
    refs = ArrayObject()
    for name in SIGNATURE_FIELDS:
        index, rect = fields[name]
        page = writer.pages[index]
        field = DictionaryObject({
            NameObject("/FT"): NameObject("/Sig"),
            NameObject("/T"): TextStringObject(name),
            NameObject("/Type"): NameObject("/Annot"),
            NameObject("/Subtype"): NameObject("/Widget"),
            NameObject("/F"): NumberObject(4),  # print
            NameObject("/Rect"): ArrayObject(FloatObject(round(v, 2)) for v in rect),
            NameObject("/P"): page.indirect_reference,
        })
        ref = writer._add_object(field)
        annots = page.get("/Annots")
        if annots is None:
            page[NameObject("/Annots")] = annots = ArrayObject()
        annots.get_object().append(ref)
        refs.append(ref)
    writer._root_object[NameObject("/AcroForm")] = DictionaryObject({NameObject("/Fields"): refs})


def _attach_xml(writer: PdfWriter, xml: bytes, created_at: str) -> None:
    attachment = writer.add_attachment(XML_ATTACHMENT_NAME, xml)
    attachment.subtype = NameObject("/application/xml")  # written as /application#2Fxml
    attachment.associated_file_relationship = NameObject("/Alternative")
    attachment.description = TextStringObject("Học bạ số dạng XML (cùng nội dung với bản PDF)")
    moment = _moment(created_at)
    attachment.creation_date = moment
    attachment.modification_date = moment
    attachment.size = NumberObject(len(xml))
    attachment.checksum = ByteStringObject(hashlib.md5(xml).digest())
    spec = attachment.pdf_object
    spec[NameObject("/UF")] = TextStringObject(XML_ATTACHMENT_NAME)
    writer._root_object[NameObject("/AF")] = ArrayObject([spec.indirect_reference])


def _set_metadata(writer: PdfWriter, doc: dict[str, Any], content: dict[str, Any]) -> None:
    moment = _moment(content["record"]["created_at"]).strftime("D:%Y%m%d%H%M%S+00'00'")
    writer.metadata = {
        "/Title": doc["title"],
        "/Author": content["school"]["name"],
        "/Subject": f"Học bạ số cấp tiểu học của học sinh {content['pupil']['full_name']}, "
                    f"mã tra cứu {doc['record']['code_words']}, bản số {content['record']['number']}",
        "/Keywords": f"học bạ số; {content['record']['code']}",
        "/Creator": PRODUCER,
        "/Producer": f"{PRODUCER} (ReportLab, pypdf)",
        "/CreationDate": moment,
        "/ModDate": moment,
    }
    writer._root_object[NameObject("/Lang")] = TextStringObject("vi-VN")
    writer._root_object[NameObject("/ViewerPreferences")] = DictionaryObject(
        {NameObject("/DisplayDocTitle"): BooleanObject(True)})
    # A stable /ID: the same content gives the same file (pypdf would otherwise draw a random one).
    digest = hashlib.md5(json.dumps(content, sort_keys=True, ensure_ascii=False).encode()).digest()
    writer._ID = ArrayObject([ByteStringObject(digest), ByteStringObject(digest)])


PDFA_XMP = """<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about="" xmlns:pdfaid="http://www.aiim.org/pdfa/ns/id/">
   <pdfaid:part>3</pdfaid:part>
   <pdfaid:conformance>B</pdfaid:conformance>
  </rdf:Description>
  <rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/">
   <dc:format>application/pdf</dc:format>
   <dc:title><rdf:Alt><rdf:li xml:lang="x-default">{title}</rdf:li></rdf:Alt></dc:title>
   <dc:creator><rdf:Seq><rdf:li>{author}</rdf:li></rdf:Seq></dc:creator>
   <dc:description><rdf:Alt><rdf:li xml:lang="x-default">{subject}</rdf:li></rdf:Alt></dc:description>
  </rdf:Description>
  <rdf:Description rdf:about="" xmlns:pdf="http://ns.adobe.com/pdf/1.3/">
   <pdf:Producer>{producer}</pdf:Producer>
   <pdf:Keywords>{keywords}</pdf:Keywords>
  </rdf:Description>
  <rdf:Description rdf:about="" xmlns:xmp="http://ns.adobe.com/xap/1.0/">
   <xmp:CreatorTool>{creator}</xmp:CreatorTool>
   <xmp:CreateDate>{date}</xmp:CreateDate>
   <xmp:ModifyDate>{date}</xmp:ModifyDate>
   <xmp:MetadataDate>{date}</xmp:MetadataDate>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
<?xpacket end="w"?>"""


@cache
def srgb_profile() -> bytes:
    """An sRGB ICC profile (Pillow's littleCMS), the output intent every page's DeviceRGB colour refers to."""
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _make_pdfa(writer: PdfWriter, doc: dict[str, Any], content: dict[str, Any]) -> None:
    """What PDF/A-3b asks of the file beyond what it already is (fonts embedded, no encryption, /ID set, the
    XML an associated file): XMP metadata saying part 3, conformance B, matching the document information,
    and an sRGB output intent for the device colours ReportLab draws with."""
    from xml.sax.saxutils import escape

    info = writer.metadata or {}
    moment = _moment(content["record"]["created_at"]).strftime("%Y-%m-%dT%H:%M:%SZ")
    xmp = PDFA_XMP.format(title=escape(str(info["/Title"])), author=escape(str(info["/Author"])),
                          subject=escape(str(info["/Subject"])), producer=escape(str(info["/Producer"])),
                          keywords=escape(str(info["/Keywords"])), creator=escape(str(info["/Creator"])),
                          date=moment)
    metadata = _stream(xmp.encode())
    metadata[NameObject("/Type")] = NameObject("/Metadata")
    metadata[NameObject("/Subtype")] = NameObject("/XML")
    writer._root_object[NameObject("/Metadata")] = writer._add_object(metadata)
    profile = _stream(srgb_profile())
    profile[NameObject("/N")] = NumberObject(3)
    intent = DictionaryObject({
        NameObject("/Type"): NameObject("/OutputIntent"),
        NameObject("/S"): NameObject("/GTS_PDFA1"),
        NameObject("/OutputConditionIdentifier"): TextStringObject("sRGB IEC61966-2.1"),
        NameObject("/RegistryName"): TextStringObject("http://www.color.org"),
        NameObject("/Info"): TextStringObject("sRGB IEC61966-2.1"),
        NameObject("/DestOutputProfile"): writer._add_object(profile),
    })
    writer._root_object[NameObject("/OutputIntents")] = ArrayObject([writer._add_object(intent)])


def _stream(data: bytes) -> StreamObject:
    stream = StreamObject()
    stream.set_data(data)
    return stream


def _moment(iso: str) -> datetime:
    return datetime.fromisoformat(iso.replace("Z", "+00:00"))


# --------------------------------------------------------------------------- set up once per process


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)), autoescape=True,
                              auto_reload=False, undefined=jinja2.StrictUndefined)


@cache
def _fingerprint() -> str:
    """Changes whenever anything that shapes a section's layout changes: templates, fonts, this module."""
    digest = hashlib.sha256()
    paths = sorted((TEMPLATE_DIR / "records").glob("*.html")) + [FONT_DIR / f for f in FONT_FILES.values()]
    for path in [*paths, Path(__file__)]:
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


@cache
def _resource_policy() -> Any:
    from xhtml2pdf.config.resources import ResourceAccessPolicy

    # xhtml2pdf confines reads to the document's folder; the fonts live in static/fonts.
    return ResourceAccessPolicy(base_dir=str(FONT_DIR), extra_roots=[str(FONT_DIR)])


def _overlay_fonts() -> tuple[str, str]:
    fonts = _layout_fonts()
    return fonts["regular"], fonts["bold"]


def _font_url() -> str:
    from flask import has_request_context, url_for

    if has_request_context():
        return url_for("static", filename="fonts/")
    return "/static/fonts/"


def warm_up() -> None:
    """Load what every layout needs once in this process (the fonts and their metrics, the paragraph styles,
    the font faces the shared fonts are cut from): a worker does it before forking its jobs, which then lay
    out without loading any of it again."""
    _fingerprint()
    _layout_fonts()
    _styles()
    _faces()
    _overlay_fonts()
