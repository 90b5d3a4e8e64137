"""The record PDF and its preview: every field printed exactly, the serif embedded, the XML attached, the QR
readable, the signature fields in place, nothing cut off or outside the page, the text as the reference renders.

Text is extracted with pypdf and with poppler (`pdftotext -layout`); whitespace is collapsed (long values wrap)
before a value is looked for.
"""

from __future__ import annotations

import copy
import html
import io
import os
import re
import subprocess
import unicodedata
from pathlib import Path
from typing import Any

import pytest
from pyhanko.pdf_utils.reader import PdfFileReader
from pypdf import PdfReader

from portal.assessment.classification import Outcome, SubjectLevel, TraitLevel
from portal.records import pdf as record_pdf
from portal.records.content import SIGNATURE_FIELDS
from tests.record_factory import longest_content, sample_content
from tests.tools import needs

FIXTURES = Path(__file__).parent / "fixtures" / "records"
XML = ('<?xml version="1.0" encoding="UTF-8"?>\n'
       '<hocBa xmlns="urn:example:hocba" version="1"><ten>Học bạ</ten></hocBa>\n').encode()
PAGE_W, PAGE_H = record_pdf.PAGE_WIDTH, record_pdf.PAGE_HEIGHT
M = record_pdf.MARGINS

pytestmark = needs("pdftotext", "pdffonts")


# --------------------------------------------------------------------------- helpers


def squash(text: str) -> str:
    return re.sub(r"\s+", " ", unicodedata.normalize("NFC", text)).strip()


def pypdf_text(data: bytes) -> list[str]:
    return [page.extract_text() for page in PdfReader(io.BytesIO(data)).pages]


def poppler(tool: str, data: bytes, *args: str, tmp: Path) -> str:
    path = tmp / "record.pdf"
    path.write_bytes(data)
    return subprocess.run([tool, *args, str(path), "-"], capture_output=True, text=True, check=True).stdout


def poppler_pages(data: bytes, tmp: Path) -> list[str]:
    return poppler("pdftotext", data, "-layout", tmp=tmp).split("\f")[:-1]


def words(data: bytes, tmp: Path) -> list[list[tuple[float, float, float, float, str]]]:
    """Each page's words as (x0, y0, x1, y1, text) in PDF coordinates (origin bottom left)."""
    xml = poppler("pdftotext", data, "-bbox", tmp=tmp)
    pages = []
    for page in xml.split("<page ")[1:]:
        found = re.findall(r'<word xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" yMax="([\d.]+)">(.*?)</word>',
                           page)
        pages.append([(float(a), PAGE_H - float(d), float(c), PAGE_H - float(b), html.unescape(t))
                      for a, b, c, d, t in found])
    return pages


def dmy(iso: str | None) -> str:
    if not iso:
        return ""
    y, m, d = iso[:10].split("-")
    return f"{d}/{m}/{y}"


def expected_values(content: dict[str, Any]) -> list[str]:
    """Every value of the content as it must be printed, computed here independently of the renderer."""
    school, pupil, record = content["school"], content["pupil"], content["record"]
    code = record["code"]
    grouped = "-".join(code[i:i + 4] for i in range(0, len(code), 4))
    values = [school["name"], school["commune"], school["district"], school["city"], school["principal"],
              f"Mã tra cứu: {grouped}", record["verify_url"], f"Bản số {record['number']}",
              f"Mã tra cứu: {grouped} · Bản số {record['number']}"]
    for key in ("full_name", "pupil_code", "gender", "ethnicity", "nationality", "birth_place", "hometown",
                "address", "father_name", "mother_name", "guardian_name", "register_number", "disability"):
        if pupil.get(key):
            values.append(pupil[key])
    values.append(f"Ngày sinh: {dmy(pupil['birth_date'])}")
    for row in content["history"]:
        values += [row["school_year"], row["class_name"], row["school_name"], row["confirmed_by"]]
        if row["enrolled_on"]:
            values.append(dmy(row["enrolled_on"]))
    for year in content["years"]:
        values += [f"NĂM HỌC {year['school_year']}", f"Lớp: {year['class_name']}", year["school_name"],
                   f"Chiều cao: {year['height_cm']} cm", f"Cân nặng: {str(year['weight_kg']).replace('.', ',')} kg",
                   f"có phép {year['absent_excused']}, không phép {year['absent_unexcused']}",
                   year["homeroom_teacher"], year["principal"],
                   f"Đánh giá kết quả giáo dục: {Outcome(year['outcome']).label}", year["completion"]]
        for row in year["subjects"]:
            values += [row["name"], row["comment"]]
            score = "" if row["score"] is None else f" {row['score']}"
            values.append(f"{SubjectLevel(row['level']).label}{score}")
        for group in ("qualities", "general_competencies", "specific_competencies"):
            for row in year[group]:
                values += [row["name"], TraitLevel(row["level"]).label, row["comment"]]
        for award in year["awards"]:
            values.append(f"{award['title']} ({dmy(award['awarded_on'])})")
        if year["supplementary_note"]:
            values.append(year["supplementary_note"])
        y, m, d = year["dated_on"].split("-")
        month = m if int(m) < 3 else str(int(m))
        values.append(f"{year['place']}, ngày {d} tháng {month} năm {y}")
    return [squash(value) for value in values if value]


@pytest.fixture(scope="module")
def renders() -> dict[str, tuple[dict[str, Any], bytes]]:
    record_pdf.clear_cache()
    out = {}
    for name, content in (("one", sample_content(1)), ("five", sample_content(5)), ("longest", longest_content())):
        out[name] = (content, record_pdf.render_pdf(content, xml=XML))
    return out


# --------------------------------------------------------------------------- every value, exactly


@pytest.mark.slow
@pytest.mark.parametrize("name", ["one", "five", "longest"])
@pytest.mark.parametrize("extractor", ["pypdf", "pdftotext"])
def test_every_field_value_is_printed_exactly(renders, name, extractor, tmp_path):
    content, data = renders[name]
    pages = pypdf_text(data) if extractor == "pypdf" else poppler_pages(data, tmp_path)
    text = squash(" ".join(pages))
    missing = [value for value in expected_values(content) if value not in text]
    assert not missing, missing
    assert unicodedata.normalize("NFC", text) == text


@pytest.mark.slow
@pytest.mark.parametrize("name", ["one", "longest"])
def test_every_page_has_the_footer(renders, name, tmp_path):
    content, data = renders[name]
    pages = poppler_pages(data, tmp_path)
    grouped = record_pdf.format_code(content["record"]["code"])
    for number, page in enumerate(pages, start=1):
        page = squash(page)
        assert f"Trang {number}/{len(pages)}" in page
        assert f"Mã tra cứu: {grouped} · Bản số 1" in page
        assert f"{content['school']['name']} · Học sinh: {content['pupil']['full_name']}" in page


def test_nfd_input_prints_as_nfc(tmp_path):
    content = sample_content(1)
    nfd = record_pdf.nfc(content)  # a copy
    nfd["pupil"]["full_name"] = unicodedata.normalize("NFD", "Nguyễn Thị Ánh Tuyết")
    nfd["years"][0]["subjects"][0]["comment"] = unicodedata.normalize("NFD", "Đọc diễn cảm, viết đẹp.")
    assert nfd["pupil"]["full_name"] != "Nguyễn Thị Ánh Tuyết"
    text = squash(" ".join(poppler_pages(record_pdf.render_pdf(nfd), tmp_path)))
    assert "Nguyễn Thị Ánh Tuyết" in text and "Đọc diễn cảm, viết đẹp." in text


def test_dates_follow_the_official_style():
    assert record_pdf.date_line("Nhà Bè", "2025-05-28") == "Nhà Bè, ngày 28 tháng 5 năm 2025"
    assert record_pdf.date_line("Nhà Bè", "2025-02-05") == "Nhà Bè, ngày 05 tháng 02 năm 2025"
    assert record_pdf.date_line("Nhà Bè", "2024-12-01") == "Nhà Bè, ngày 01 tháng 12 năm 2024"
    assert record_pdf.date_line("Nhà Bè", None) == "Nhà Bè, ngày ..... tháng ..... năm ......."
    assert record_pdf.date_vn("2014-09-02") == "02/09/2014"
    assert record_pdf.format_code("HB7Q2M4K9XTR") == "HB7Q-2M4K-9XTR"


# --------------------------------------------------------------------------- fonts, metadata, attachment, QR


@pytest.mark.slow
def test_only_the_embedded_serif_is_used(renders, tmp_path):
    _, data = renders["five"]
    path = tmp_path / "r.pdf"
    path.write_bytes(data)
    rows = subprocess.run(["pdffonts", str(path)], capture_output=True, text=True, check=True).stdout.splitlines()[2:]
    assert rows
    for row in rows:
        assert "LiberationSerif" in row.split()[0], row
        assert row.split()[-5:-3] == ["yes", "yes"], row  # emb, sub
    names = sorted(row.split()[0].split("+")[-1] for row in rows)
    # one font per style for the whole record, though each section was laid out on its own
    assert names == ["LiberationSerif", "LiberationSerif-Bold", "LiberationSerif-Italic"]


def font_programs(data: bytes) -> dict[str, tuple[set[str], bytes]]:
    """Each embedded font's name -> (the characters its widths cover, its font program), from every page and the
    footer forms."""
    reader = PdfReader(io.BytesIO(data))
    found = {}
    resources = [page["/Resources"] for page in reader.pages]
    resources += [x.get_object()["/Resources"] for r in list(resources) for x in r.get("/XObject", {}).values()]
    for res in resources:
        for font in res.get("/Font", {}).values():
            [cid] = font["/DescendantFonts"]
            widths, chars = cid["/W"], set()
            for first, run in zip(widths[::2], widths[1::2], strict=True):
                chars.update(chr(first + i) for i in range(len(run)))
            found[str(font["/BaseFont"])] = (chars, cid["/FontDescriptor"]["/FontFile2"].get_data())
    return found


def test_every_page_inherits_one_set_of_resources(renders):
    """The shared fonts hang off the page tree's root, reached through one path each: a validator's difference
    analysis walks every path from the catalogue to each font at every signed revision (one per page, and one
    more per page's footer form, before)."""
    _, data = renders["five"]
    reader = PdfFileReader(io.BytesIO(data))
    root = reader.root["/Pages"]
    assert sorted(root["/Resources"]["/Font"]) == ["/HBB", "/HBI", "/HBR"]
    assert all("/Resources" not in kid.get_object() for kid in root["/Kids"])
    assert "/XObject" not in root["/Resources"]  # nothing else leads to them: no footer form per page
    # Readers that resolve inheritance give every page the fonts.
    pages = PdfReader(io.BytesIO(data)).pages
    assert all(sorted(page["/Resources"]["/Font"]) == ["/HBB", "/HBI", "/HBR"] for page in pages)


@pytest.mark.slow
def test_the_fonts_hold_just_the_characters_printed(renders, tmp_path):
    """One subset per style, with the glyphs of every character any section or the footer prints, and no more."""
    _, data = renders["longest"]
    fonts = font_programs(data)
    assert len(fonts) == 3
    assert len({program for _chars, program in fonts.values()}) == 3
    covered = set().union(*(chars for chars, _program in fonts.values()))
    printed = set(poppler("pdftotext", data, "-raw", tmp=tmp_path)) - {"\n", "\f"}
    assert printed <= covered
    assert covered - printed <= {" "}
    for name, (chars, _program) in fonts.items():
        assert {"ư", "ơ", "đ"} <= chars or name.endswith("Italic"), name  # Vietnamese, in its own font


@pytest.mark.slow
def test_stored_sections_carry_no_font_program(tmp_path):
    """A section is kept without fonts of its own: the record gets one subset per style when it is assembled."""
    record_pdf.clear_cache()
    record_pdf.use_section_store(record_pdf.FileSectionStore(tmp_path / "sections"))
    try:
        record_pdf.render_pdf(sample_content(2))
    finally:
        record_pdf.use_section_store(None)
    stored = list((tmp_path / "sections").glob("*/*.pdf"))
    assert len(stored) == 4
    for path in stored:
        reader = PdfReader(path)
        assert all("/Font" not in page["/Resources"] for page in reader.pages), path
        assert b"/FontFile" not in path.read_bytes()


def test_only_the_documents_shared_fonts_are_cut_from_the_font_files(monkeypatch):
    """Sections and the footer overlay are laid out without font programs of their own: a cold render cuts
    exactly one TrueType subset per style, the shared ones the file carries."""
    from reportlab.pdfbase.ttfonts import TTFontFile

    cut: list[int] = []
    make_subset = TTFontFile.makeSubset
    monkeypatch.setattr(TTFontFile, "makeSubset", lambda self, subset: cut.append(len(subset)) or make_subset(
        self, subset))
    record_pdf.clear_cache()
    record_pdf._shared_font.cache_clear()
    record_pdf.render_pdf(sample_content(2))
    assert len(cut) == 3


@pytest.mark.parametrize("text", ["Nguyễn Thị Ánh Tuyết", "  Tốt.\n  Cần  cố gắng ", "", " ", "9",
                                  "PHÒNG GD&ĐT <NHÀ BÈ>", "Tốt ", " Tốt", "a\u00a0b", "a\u2003 b", "a\u200bb",
                                  "a\tb"])
def test_plain_paragraphs_are_what_reportlabs_parser_would_make(text):
    """A plain paragraph skips ReportLab's markup parser but gets the same fragments' text and style."""
    from xml.sax.saxutils import escape

    from reportlab.platypus import Paragraph

    for style in ("plain", "cell_head", "hint", "title"):
        ours = record_pdf._text(text, style)
        parsed = Paragraph(escape(text), record_pdf._styles()[style])
        assert "".join(f.text for f in ours.frags) == "".join(f.text for f in parsed.frags)
        for fragment in ours.frags:
            attributes = {k: v for k, v in fragment.__dict__.items() if k != "text"}
            assert all(attributes == {k: v for k, v in f.__dict__.items() if k != "text"} for f in parsed.frags)


def test_a_paragraph_breaks_its_lines_once_per_width(monkeypatch):
    from reportlab.platypus import Paragraph

    broken: list[list[float]] = []
    break_lines = Paragraph.breakLines
    monkeypatch.setattr(Paragraph, "breakLines", lambda self, widths: broken.append(widths) or break_lines(
        self, widths))
    paragraph = record_pdf._text("Em đọc to, rõ ràng, diễn cảm; viết đúng chính tả, trình bày sạch đẹp. " * 3, "cell")
    first = paragraph.wrap(240, 1000)
    assert paragraph.wrap(240, 50) == first and len(broken) == 1  # the same width: the same lines
    narrower = paragraph.wrap(120, 1000)
    assert narrower[1] > first[1] and len(broken) == 2
    assert paragraph.split(120, 20) == [] and paragraph.wrap(120, 1000) == narrower  # split() dropped its lines
    assert len(broken) == 3
    fresh = Paragraph(paragraph.text, record_pdf._styles()["cell"])
    assert fresh.wrap(120, 1000) == narrower


def _fonts_without_program(data: bytes) -> list[str]:
    missing = []
    for page in PdfReader(io.BytesIO(data)).pages:
        for font in page["/Resources"].get("/Font", {}).values():
            font = font.get_object()
            for part in [font, *(d.get_object() for d in font.get("/DescendantFonts", []))]:
                descriptor = part.get("/FontDescriptor")
                if descriptor is not None and not {"/FontFile", "/FontFile2", "/FontFile3"} & set(
                        descriptor.get_object()):
                    missing.append(str(part["/BaseFont"]))
    return missing


@pytest.mark.slow
def test_the_layout_fonts_are_never_lent_to_other_drawings():
    """ReportLab hands one font object to every name registered for a font file's face: the layout's fonts,
    which write no font program, must not be the ones the draft mark or xhtml2pdf then draw with."""
    from xhtml2pdf import pisa

    from portal.records import draft_mark

    content = sample_content(1)
    issued = record_pdf.render_pdf(content)
    assert _fonts_without_program(issued) == []
    assert _fonts_without_program(draft_mark.mark_unissued(issued, "Chờ ký")) == []
    out = io.BytesIO()
    assert not pisa.CreatePDF(record_pdf.document_html(content), dest=out, encoding="utf-8",
                              resource_policy=record_pdf._resource_policy()).err
    assert _fonts_without_program(out.getvalue()) == []


def test_a_section_is_laid_out_in_the_shared_fonts_codes():
    """No font of its own in a laid-out section: its text is shown in /HBR, /HBB, /HBI as Unicode values."""
    content = sample_content(1)
    year = record_pdf._sections(record_pdf._document(record_pdf.nfc(content)))[-1]
    data, shown = record_pdf._layout(year)
    streams = b"".join(page.get_contents().get_data() for page in PdfReader(io.BytesIO(data)).pages)
    drawn = set(re.findall(rb"/(\S+) [\d.]+ Tf (?!\S+ TL ET)", streams))
    assert drawn == {b"HBR", b"HBB", b"HBI"}
    subject = content["years"][0]["subjects"][0]
    assert {ord(char) for char in subject["name"] + subject["comment"]} <= shown["regular"]
    assert {ord(char) for char in "KẾT QUẢ HỌC TẬP"} <= shown["bold"]
    assert {ord(char) for char in "(Ký và ghi rõ họ tên)"} <= shown["italic"]


@pytest.mark.slow
def test_metadata(renders):
    content, data = renders["one"]
    reader = PdfReader(io.BytesIO(data))
    meta = reader.metadata
    assert meta.title == f"Học bạ số – {content['pupil']['full_name']} – HB7Q2M4K9XTR v1"
    assert meta.author == content["school"]["name"]
    assert "HB7Q-2M4K-9XTR" in meta.subject
    assert meta.creator and meta.producer
    assert reader.trailer["/Root"]["/Lang"] == "vi-VN"
    assert all(page.mediabox.width == pytest.approx(PAGE_W, abs=0.5) for page in reader.pages)  # A4
    assert all(page.mediabox.height == pytest.approx(PAGE_H, abs=0.5) for page in reader.pages)


@pytest.mark.slow
def test_the_xml_rides_along(renders):
    _, data = renders["one"]
    reader = PdfReader(io.BytesIO(data))
    assert reader.attachments == {"hocba.xml": [XML]}
    spec = reader.trailer["/Root"]["/AF"][0].get_object()
    assert spec["/AFRelationship"] == "/Alternative"
    assert spec["/EF"]["/F"].get_object()["/Subtype"] == "/application/xml"
    assert PdfReader(io.BytesIO(record_pdf.render_pdf(sample_content(1)))).attachments == {}


def pdfa_problems(data: bytes, folder: Path) -> list[str]:
    """What can be checked here of PDF/A-3b (no full PDF/A validator is available): XMP identification,
    the sRGB output intent, every font embedded, no encryption, qpdf's structure check, the XML as an
    associated file. An empty list when all hold."""
    import xml.etree.ElementTree as ET

    from tests.tools import require

    require("qpdf", "pdffonts")
    problems = []
    reader = PdfReader(io.BytesIO(data))
    root = reader.trailer["/Root"]
    if reader.is_encrypted:
        problems.append("encrypted")
    xmp = ET.fromstring(root["/Metadata"].get_object().get_data())
    pdfaid = "{http://www.aiim.org/pdfa/ns/id/}"

    def xmp_values(name: str) -> list[str | None]:  # an element, or an attribute of rdf:Description (pyHanko's way)
        return [e.text for e in xmp.iter(pdfaid + name)] + [
            e.get(pdfaid + name) for e in xmp.iter() if e.get(pdfaid + name) is not None]

    if xmp_values("part") != ["3"] or xmp_values("conformance") != ["B"]:
        problems.append(f"XMP does not say PDF/A-3B: {ET.tostring(xmp)[:2000]!r}")
    [intent] = [i.get_object() for i in root["/OutputIntents"]]
    profile = intent["/DestOutputProfile"].get_object()
    if intent["/S"] != "/GTS_PDFA1" or profile["/N"] != 3 or profile.get_data()[36:40] != b"acsp":
        problems.append("no sRGB output intent with an ICC profile")
    path = folder / "pdfa.pdf"
    path.write_bytes(data)
    rows = subprocess.run(["pdffonts", str(path)], capture_output=True, text=True, check=True).stdout.splitlines()[2:]
    problems += [f"font not embedded: {row}" for row in rows if row.split()[-5] != "yes"]
    checked = subprocess.run(["qpdf", "--check", str(path)], capture_output=True, text=True)
    if checked.returncode != 0:
        problems.append(f"qpdf --check: {checked.stdout}{checked.stderr}")
    specs = [s.get_object() for s in root.get("/AF", [])]
    if not any(s["/AFRelationship"] in ("/Alternative", "/Data") and s["/F"] == "hocba.xml" for s in specs):
        problems.append("hocba.xml is not an associated file")
    return problems


@pytest.mark.slow
def test_the_record_is_pdfa_3b_as_far_as_can_be_checked(renders, tmp_path):
    _, data = renders["five"]
    assert pdfa_problems(data, tmp_path) == []
    xmp = PdfReader(io.BytesIO(data)).trailer["/Root"]["/Metadata"].get_object().get_data().decode()
    content, _ = renders["five"]
    assert content["pupil"]["full_name"] in xmp  # the XMP repeats the document information (PDF/A asks it)


@pytest.mark.slow
@needs("zbarimg", "pdftoppm")
@pytest.mark.parametrize("which", ["first", "last"])
def test_the_qr_code_opens_the_verification_page(renders, which, tmp_path):
    content, data = renders["five"]
    path = tmp_path / "r.pdf"
    path.write_bytes(data)
    page = "1" if which == "first" else str(len(PdfReader(io.BytesIO(data)).pages))
    subprocess.run(["pdftoppm", "-r", "150" if which == "first" else "300", "-f", page, "-l", page, "-png",
                    str(path), str(tmp_path / "p")], check=True)
    png = next(tmp_path.glob("p-*.png"))
    decoded = subprocess.run(["zbarimg", "--quiet", "--raw", str(png)], capture_output=True, text=True).stdout
    assert decoded.strip() == content["record"]["verify_url"]


# --------------------------------------------------------------------------- signature fields


@pytest.mark.slow
@pytest.mark.parametrize("name", ["one", "five", "longest"])
def test_signature_fields_sit_in_the_last_year_pages_boxes(renders, name, tmp_path):
    content, data = renders[name]
    fields = record_pdf.signature_boxes(data)
    areas = record_pdf.signature_areas(content)
    last = len(PdfReader(io.BytesIO(data)).pages) - 1
    assert tuple(fields) == SIGNATURE_FIELDS
    page_words = words(data, tmp_path)[last]
    for field, (page, (x0, y0, x1, y1)) in fields.items():
        assert page == last
        assert x1 - x0 >= 179.99 and y1 - y0 >= 59.99, field
        assert M["left"] <= x0 < x1 <= PAGE_W - M["right"] and M["bottom"] <= y0 < y1 <= PAGE_H - M["top"]
        bx0, by0, bx1, by1 = areas[field]
        assert bx0 <= x0 and by0 <= y0 and x1 <= bx1 and y1 <= by1, (field, areas[field])
    gx, hx = areas["gvcn"], areas["hieu_truong"]
    assert gx[2] <= hx[0]  # GVCN left, Hiệu trưởng right
    for box in (gx, hx):
        overlapping = [w for w in page_words if w[0] < box[2] and w[2] > box[0] and w[1] < box[3] and w[3] > box[1]]
        assert not overlapping, overlapping
    hy0, hy1 = fields["hieu_truong"][1][1::2]
    sy0, sy1 = fields["con_dau"][1][1::2]
    assert sy1 <= hy0 or hy1 <= sy0  # the seal beside, not over, the principal's signature
    gvcn = squash(" ".join(w[4] for w in page_words if w[0] < gx[2] and w[1] < gx[1]))
    assert content["years"][-1]["homeroom_teacher"] in gvcn  # the name printed under the GVCN box


@pytest.mark.slow
def test_fields_are_empty_signature_fields_pyhanko_can_fill(renders):
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.fields import enumerate_sig_fields

    _, data = renders["five"]
    found = {name: value for name, value, _ in enumerate_sig_fields(PdfFileReader(io.BytesIO(data)))}
    assert set(found) == set(SIGNATURE_FIELDS)
    assert all(value is None for value in found.values())


@pytest.mark.slow
def test_the_teacher_can_certify_into_the_gvcn_field(renders):
    """The signing issue's first step (certification, DocMDP fill-forms) fills our field, adds none."""
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign import fields, signers
    from pyhanko.sign.fields import enumerate_sig_fields

    _, data = renders["one"]
    signer = _self_signed_signer(signers)
    meta = signers.PdfSignatureMetadata(field_name="gvcn", certify=True,
                                        docmdp_permissions=fields.MDPPerm.FILL_FORMS)
    out = signers.sign_pdf(IncrementalPdfFileWriter(io.BytesIO(data)), meta, signer=signer)
    reader = PdfFileReader(out)
    state = {name: value is not None for name, value, _ in enumerate_sig_fields(reader)}
    assert state == {"gvcn": True, "hieu_truong": False, "con_dau": False}
    assert len(reader.embedded_signatures) == 1 and reader.embedded_signatures[0].field_name == "gvcn"


def _self_signed_signer(signers: Any) -> Any:
    from datetime import UTC, datetime, timedelta

    from asn1crypto import keys as asn1_keys
    from asn1crypto import x509 as asn1_x509
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Nguyễn Thị Ánh Tuyết")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=30)).sign(key, hashes.SHA256()))
    der_key = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return signers.SimpleSigner(
        signing_cert=asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER)),
        signing_key=asn1_keys.PrivateKeyInfo.load(der_key), cert_registry=None)


# --------------------------------------------------------------------------- nothing cut off, nothing outside


@pytest.mark.slow
def test_the_longest_record_stays_inside_the_page(renders, tmp_path):
    content, data = renders["longest"]
    pages = words(data, tmp_path)
    grouped = record_pdf.format_code(content["record"]["code"])
    footer_words = set(squash(f"{content['school']['name']} · Học sinh: {content['pupil']['full_name']} "
                              f"Mã tra cứu: {grouped} · Bản số 1 Trang").split())
    qr_words = set(squash(f"Mã tra cứu: {grouped} Quét mã QR hoặc nhập mã tra cứu tại: "
                          f"{content['record']['verify_url']} Bản số 1, lập ngày 28/05/2025").split())
    for index, page in enumerate(pages):
        assert page, f"page {index + 1} is empty"
        body_bottom = record_pdf.IDENTITY_BOTTOM_MARGIN if index == 0 else M["bottom"]
        for x0, y0, x1, y1, text in page:
            assert M["left"] - 0.5 <= x0 and x1 <= PAGE_W - M["right"] + 0.5, (index + 1, text, x0, x1)
            assert y1 <= PAGE_H - M["top"] + 0.5, (index + 1, text, y1)
            if y0 >= body_bottom - 0.5:
                continue  # body text
            if y1 <= record_pdf.FOOTER_TOP:
                assert text in footer_words or re.fullmatch(r"\d+/\d+", text), (index + 1, text)
            else:
                assert index == 0 and text in qr_words, (index + 1, text, y0)


# --------------------------------------------------------------------------- the reference renders


@pytest.mark.slow
@pytest.mark.parametrize("name, years", [("sample_1year", 1), ("sample_5years", 5)])
def test_text_equals_the_reference_render(name, years, tmp_path):
    """The committed text of two reference renders; regenerate with UPDATE_RECORD_FIXTURES=1 after a layout change."""
    text = poppler("pdftotext", record_pdf.render_pdf(sample_content(years), xml=XML), "-layout", tmp=tmp_path)
    fixture = FIXTURES / f"{name}.txt"
    if os.environ.get("UPDATE_RECORD_FIXTURES"):
        fixture.parent.mkdir(parents=True, exist_ok=True)
        fixture.write_text(text, encoding="utf-8")
    assert text == fixture.read_text(encoding="utf-8")


# --------------------------------------------------------------------------- reuse and determinism


@pytest.fixture(autouse=True)
def _no_shared_store():
    """Each test decides on the section store itself (an app sets one up when it is created)."""
    before = record_pdf._store[0]
    record_pdf.use_section_store(None)
    yield
    record_pdf.use_section_store(before)


@pytest.mark.slow
def test_same_content_same_bytes_cold_or_cached():
    content = sample_content(2)
    record_pdf.clear_cache()
    cold = record_pdf.render_pdf(content, xml=XML)
    assert record_pdf.render_pdf(content, xml=XML) == cold
    record_pdf.clear_cache()
    assert record_pdf.render_pdf(copy.deepcopy(content), xml=XML) == cold


@pytest.mark.slow
def test_only_changed_sections_are_laid_out_again(monkeypatch, tmp_path):
    laid_out = []
    layout = record_pdf._layout
    monkeypatch.setattr(record_pdf, "_layout", lambda section: laid_out.append(section["title"]) or layout(section))
    record_pdf.clear_cache()
    first = sample_content(5)
    record_pdf.render_pdf(first)
    assert len(laid_out) == 7  # identity, history, five years
    laid_out.clear()

    correction = sample_content(5, code="HBX9X9X9X9X9", number=2, replaces="HB7Q2M4K9XTR")
    correction["years"][-1]["subjects"][0]["comment"] = "Đọc diễn cảm; cần luyện viết chữ hoa."
    data = record_pdf.render_pdf(correction)
    assert laid_out == ["Thông tin học sinh", "Năm học 2024-2025"]  # the identity page names what it replaces
    text = squash(" ".join(poppler_pages(data, tmp_path)))
    assert "Đọc diễn cảm; cần luyện viết chữ hoa." in text and "Mã tra cứu: HBX9-X9X9-X9X9 · Bản số 2" in text
    assert "thay thế bản HB7Q-2M4K-9XTR" in text


@pytest.mark.slow
def test_a_shared_store_spares_other_processes_the_layout(monkeypatch, tmp_path):
    content = sample_content(1)
    record_pdf.clear_cache()
    record_pdf.use_section_store(record_pdf.FileSectionStore(tmp_path / "sections"))
    try:
        first = record_pdf.render_pdf(content)
        assert len(list((tmp_path / "sections").glob("*/*.pdf"))) == 3
        record_pdf.clear_cache()  # as in another worker process
        monkeypatch.setattr(record_pdf, "_layout", lambda section: pytest.fail("laid out again"))
        assert record_pdf.render_pdf(content) == first
    finally:
        record_pdf.use_section_store(None)


def test_a_record_without_year_pages_is_refused():
    content = sample_content(1)
    content["years"] = []
    with pytest.raises(ValueError):
        record_pdf.render_pdf(content)


# --------------------------------------------------------------------------- the preview


def test_the_preview_has_the_same_content_and_sections():
    content = longest_content(3)
    fragment = record_pdf.render_html(content)
    assert "<html" not in fragment and fragment.lstrip().startswith('<div class="hocba-doc"')
    assert fragment.count('<section class="hocba-page"') == 2 + 3
    assert "<svg" in fragment  # the QR code, inline
    assert "Mã tra cứu: HB7Q-2M4K-9XTR" in fragment and 'lang="vi"' in fragment
    text = squash(html.unescape(re.sub(r"<[^>]+>", " ", re.sub(r"<(style|svg)\b.*?</\1>", " ", fragment, flags=re.S))))
    missing = [value for value in expected_values(content) if value not in text]
    assert not missing, missing
