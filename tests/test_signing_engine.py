"""The signing engine: GVCN -> Hiệu trưởng -> con dấu on one PDF, every kind of key, and validation.

Each signed document is checked twice: with our `validate_pdf` (pyHanko) and with poppler's `pdfsig`
(NSS underneath), an independent validator.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from io import BytesIO
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader

from portal.app import PROJECT_ROOT
from portal.records.content import SIGNATURE_FIELDS
from portal.signing import engine, pki
from portal.signing import stamp as stamp_module
from portal.signing.build_stamp_font import stamp_characters
from portal.signing.stamp import STAMP_FONT, StampText
from portal.signing.validate import validate_pdf
from tests.signing_factory import (
    PASSPHRASE,
    SCHOOL_NAME,
    DemoPki,
    flip_byte,
    local_tsa,
    make_demo_pki,
    record_pdf,
    softhsm_token,
    stamp,
)
from tests.tools import require


@pytest.fixture(scope="session")
def demo_pki() -> DemoPki:
    return make_demo_pki("ec")


@pytest.fixture(scope="session")
def rsa_pki() -> DemoPki:
    return make_demo_pki("rsa")


def p12_key(issued: pki.IssuedCertificate) -> engine.Pkcs12Key:
    return engine.Pkcs12Key(issued.pkcs12(PASSPHRASE), PASSPHRASE)


def sign_all(pdf: bytes, keys: DemoPki, **options: object) -> bytes:
    for i, field in enumerate(SIGNATURE_FIELDS):
        issued = keys.by_field(field)
        pdf = engine.sign_field(pdf, field, p12_key(issued), certify=i == 0, stamp=stamp(field, issued),
                                **options)  # type: ignore[arg-type]
    return pdf


@pytest.fixture(scope="session")
def signed_record(demo_pki: DemoPki) -> bytes:
    return sign_all(record_pdf(), demo_pki)


def pdfsig(data: bytes, folder: Path) -> str:
    require("pdfsig")
    path = folder / "record.pdf"
    path.write_bytes(data)
    result = subprocess.run(["pdfsig", str(path)], capture_output=True, text=True, timeout=60)
    return result.stdout


def test_three_sequential_signatures_all_stay_valid(signed_record: bytes, demo_pki: DemoPki, tmp_path: Path) -> None:
    report = validate_pdf(signed_record, demo_pki.roots)
    assert report.ok, report.problems
    assert report.problems == []
    assert [s.field for s in report.signatures] == list(SIGNATURE_FIELDS)
    gvcn, principal, seal = report.signatures
    assert (gvcn.signer_name, gvcn.role) == ("Nguyễn Thị Thu Hương", "Giáo viên chủ nhiệm")
    assert (principal.signer_name, principal.role) == ("Võ Thị Lài", "Hiệu trưởng")
    assert (seal.signer_name, seal.organisation) == (SCHOOL_NAME, SCHOOL_NAME)
    assert [s.certifying for s in report.signatures] == [True, False, False]
    # Earlier signatures see only the later ones' form filling; the last covers the whole file.
    assert [s.modification_level for s in report.signatures] == ["form_filling", "form_filling", "none"]
    assert seal.coverage == "entire_file"
    for signature in report.signatures:
        assert signature.intact and signature.valid and signature.trusted and signature.docmdp_ok
        assert signature.certificate_valid_at_signing
        assert signature.signing_time is not None and signature.signing_time.utcoffset() == timedelta(0)
        assert abs(datetime.now(UTC) - signature.signing_time) < timedelta(minutes=5)

    # The independent validator agrees (its NSS store does not hold the demo root, hence trust aside).
    out = pdfsig(signed_record, tmp_path)
    assert out.count("Signature Validation: Signature is Valid.") == 3, out
    assert "Signature Field Name: con_dau" in out and "Total document signed" in out


def test_each_field_locks_itself_and_the_first_certifies(signed_record: bytes) -> None:
    reader = PdfFileReader(BytesIO(signed_record))
    signatures = {s.field_name: s for s in reader.embedded_signatures}
    assert signatures["gvcn"].docmdp_level.value == 2  # "fill forms"
    for name, signature in signatures.items():
        lock = signature.sig_field["/Lock"]
        assert lock["/Action"] == "/Include" and list(lock["/Fields"]) == [name]


def test_stamp_shows_role_name_and_local_time_in_vietnamese(signed_record: bytes, tmp_path: Path) -> None:
    path = tmp_path / "record.pdf"
    path.write_bytes(signed_record)
    require("pdffonts", "pdftotext")
    fonts = subprocess.run(["pdffonts", str(path)], capture_output=True, text=True).stdout
    assert fonts.count("LiberationSerif") == 3  # one embedded subset per stamp, no fallback font
    text = subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True).stdout
    for expected in ("Giáo viên chủ nhiệm", "Nguyễn Thị Thu Hương", "Hiệu trưởng", "Võ Thị Lài",
                     f"Con dấu số của {SCHOOL_NAME}"):
        assert expected in text
    signed_at = validate_pdf(signed_record, []).signatures[0].signing_time
    assert signed_at is not None
    local = signed_at.astimezone(__import__("zoneinfo").ZoneInfo("Asia/Ho_Chi_Minh"))
    assert f"Ký ngày {local:%d/%m/%Y %H:%M} (GMT+7)" in text


def test_stamp_glyph_widths_are_in_thousandths_of_an_em(signed_record: bytes) -> None:
    """With a 2048-unit font pyHanko 0.38 writes widths twice too large (wide letter spacing)."""
    reader = PdfFileReader(BytesIO(signed_record))
    signature = next(s for s in reader.embedded_signatures if s.field_name == "gvcn")
    appearance = signature.sig_field["/AP"]["/N"]
    font = appearance["/Resources"]["/Font"]
    descendant = font["/F1"]["/DescendantFonts"][0]
    widths = [w for entry in descendant["/W"] if isinstance(entry, list) for w in entry]
    assert widths and max(widths) <= 1000 and min(widths) > 0


def test_stamp_font_is_rescaled_and_cut_to_vietnamese() -> None:
    from fontTools.ttLib import TTFont

    font = TTFont(str(STAMP_FONT))
    assert font["head"].unitsPerEm == 1000
    cmap = font.getBestCmap()
    assert all(ord(c) in cmap for c in stamp_characters())
    assert ord("ỗ") in cmap and ord("Đ") in cmap and len(cmap) < 400  # a subset, not the whole font
    assert STAMP_FONT.stat().st_size < 80_000


def test_stamp_text_normalises_and_formats_local_time() -> None:
    nfd = "Vo\u0303 Thi\u0323 La\u0300i"
    lines = StampText("Hiệu trưởng", nfd).lines(datetime(2025, 5, 28, 3, 12, tzinfo=UTC))
    assert lines == ["Hiệu trưởng", "Võ Thị Lài", "Ký ngày 28/05/2025 10:12 (GMT+7)"]


def _appearance(pdf: bytes, field: str) -> tuple[bytes, generic.DictionaryObject]:
    reader = PdfFileReader(BytesIO(pdf))
    signature = next(s for s in reader.embedded_signatures if s.field_name == field)
    appearance = signature.sig_field["/AP"]["/N"]
    return appearance.data, appearance["/Resources"]["/Font"]["/F1"]


def test_a_batch_makes_the_stamp_font_subset_once(demo_pki: DemoPki, monkeypatch: pytest.MonkeyPatch) -> None:
    """The records of a batch differ in their stamps only in the time's digits, which every subset holds."""
    from fontTools import subset

    stamp_module.stamp_font.cache_clear()
    made = []
    real = subset.Subsetter.subset
    monkeypatch.setattr(subset.Subsetter, "subset", lambda self, font: made.append(1) or real(self, font))
    start = datetime.now(UTC).replace(second=0, microsecond=0)
    issued = demo_pki.gvcn
    signed = []
    with engine.SigningSession(p12_key(issued)) as session:
        moments = (start, start + timedelta(days=33, hours=5, minutes=7), start + timedelta(days=64, minutes=29))
        for moment in moments:
            monkeypatch.setattr(engine, "_utcnow", lambda moment=moment: moment)
            signed.append(session.sign_field(record_pdf(), "gvcn", certify=True, stamp=stamp("gvcn", issued)))
    assert len(made) == 1
    programs = {_appearance(pdf, "gvcn")[1]["/DescendantFonts"][0]["/FontDescriptor"]["/FontFile2"].data
                for pdf in signed}
    assert len(programs) == 1  # the same font program in each file, each file its own font objects
    require("pdftotext")
    for pdf, moment in zip(signed, moments, strict=True):
        local = moment.astimezone(ZoneInfo("Asia/Ho_Chi_Minh"))
        text = subprocess.run(["pdftotext", "-", "-"], input=pdf, capture_output=True, check=True).stdout.decode()
        assert f"Ký ngày {local:%d/%m/%Y %H:%M} (GMT+7)" in text


def test_a_shared_subset_stamp_is_pyhankos_own_stamp(demo_pki: DemoPki, monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path) -> None:
    """The same appearance, widths, text map and glyph outlines as pyHanko's font engine gives, and the same
    pixels, whatever the stamp font subsets made before."""
    from fontTools.ttLib import TTFont
    from pyhanko.pdf_utils.font.opentype import GlyphAccumulator, GlyphAccumulatorFactory
    from pyhanko.pdf_utils.text import TextBoxStyle
    from pyhanko.stamp import TextStampStyle

    class PyhankoFont(GlyphAccumulatorFactory):  # pyHanko's own engine, the font read from memory
        def create_font_engine(self, writer, obj_stream=None):  # type: ignore[no-untyped-def]
            return GlyphAccumulator(writer=writer, font_handle=BytesIO(STAMP_FONT.read_bytes()),
                                    font_size=self.font_size, obj_stream=obj_stream or (
                                        writer.prepare_object_stream() if writer.stream_xrefs else None))

    moment = datetime.now(UTC).replace(second=0, microsecond=0)
    monkeypatch.setattr(engine, "_utcnow", lambda: moment)
    issued = demo_pki.principal
    text = StampText("Hiệu trưởng", "Đỗ Thị Ngọc Huyền")
    key = p12_key(issued)
    ours = engine.sign_field(record_pdf(), "hieu_truong", key, certify=False, stamp=text)
    stock_style = TextStampStyle(stamp_text=stamp_module.STAMP_TEMPLATE, border_width=1, background=None,
                                 text_box_style=TextBoxStyle(font=PyhankoFont(
                                     str(STAMP_FONT), font_size=stamp_module.FONT_SIZE),
                                     font_size=stamp_module.FONT_SIZE, leading=stamp_module.LEADING))
    monkeypatch.setattr(engine, "stamp_style", lambda: stock_style)
    stock = engine.sign_field(record_pdf(), "hieu_truong", key, certify=False, stamp=text)

    (our_content, our_font), (stock_content, stock_font) = _appearance(ours, "hieu_truong"), _appearance(stock,
                                                                                                       "hieu_truong")
    assert our_content == stock_content
    assert our_font["/ToUnicode"].data == stock_font["/ToUnicode"].data
    our_cid, stock_cid = our_font["/DescendantFonts"][0], stock_font["/DescendantFonts"][0]
    assert list(our_cid["/W"]) == list(stock_cid["/W"])
    our_descriptor, stock_descriptor = our_cid["/FontDescriptor"], stock_cid["/FontDescriptor"]
    for entry in ("/Ascent", "/Descent", "/FontBBox", "/Flags", "/StemV", "/ItalicAngle", "/CapHeight"):
        assert our_descriptor[entry] == stock_descriptor[entry]
    our_program = TTFont(BytesIO(our_descriptor["/FontFile2"].data))
    stock_program = TTFont(BytesIO(stock_descriptor["/FontFile2"].data))
    widths_by_run = list(our_cid["/W"])
    used = [gid for start, widths in zip(widths_by_run[::2], widths_by_run[1::2], strict=True)
            for gid in range(start, start + len(widths))]
    for gid in used:
        name = stock_program.getGlyphName(gid)
        assert our_program.getGlyphName(gid) == name
        assert our_program["glyf"][name].getCoordinates(our_program["glyf"])[0] == \
            stock_program["glyf"][name].getCoordinates(stock_program["glyf"])[0]
        assert our_program["hmtx"][name] == stock_program["hmtx"][name]

    require("pdftoppm")
    pixels = []
    for label, pdf in (("ours", ours), ("stock", stock)):
        (tmp_path / f"{label}.pdf").write_bytes(pdf)
        subprocess.run(["pdftoppm", "-r", "150", "-gray", str(tmp_path / f"{label}.pdf"), str(tmp_path / label)],
                       check=True, timeout=60)
        pixels.append((tmp_path / f"{label}-1.pgm").read_bytes())
    assert pixels[0] == pixels[1]


def test_a_later_modification_breaks_every_signature(signed_record: bytes, demo_pki: DemoPki) -> None:
    writer = IncrementalPdfFileWriter(BytesIO(signed_record))
    name = generic.pdf_name
    page = generic.DictionaryObject({
        name("/Type"): name("/Page"), name("/Resources"): generic.DictionaryObject(),
        name("/MediaBox"): generic.ArrayObject(map(generic.NumberObject, (0, 0, 595, 842)))})
    writer.insert_page(page)  # "add a page" after issuing
    output = BytesIO()
    writer.write(output)
    report = validate_pdf(output.getvalue(), demo_pki.roots)
    assert report.readable and not report.ok
    assert not any(s.bottom_line for s in report.signatures)
    assert all(s.intact and s.valid for s in report.signatures)  # the signed bytes are untouched...
    assert any("đã bị thay đổi sau khi ký" in p for p in report.problems)  # ...but the document was changed


def test_a_flipped_byte_is_detected(signed_record: bytes, demo_pki: DemoPki) -> None:
    # A byte early in the file, covered by every signature (a letter of the producer's comment line).
    tampered = flip_byte(signed_record, signed_record.index(b"ReportLab Generated") + 2)
    report = validate_pdf(tampered, demo_pki.roots)
    assert not report.ok
    assert [s.intact for s in report.signatures] == [False, False, False]
    assert any("nội dung đã bị sửa sau khi ký" in p for p in report.problems)


def test_an_untrusted_root_gives_trusted_false(signed_record: bytes) -> None:
    other = pki.create_ca()
    report = validate_pdf(signed_record, [other.root])
    assert not report.ok
    assert all(s.intact and s.valid and not s.trusted for s in report.signatures)
    assert any("không do tổ chức chứng thực được tin cậy" in p for p in report.problems)


def _reaches_pyhanko(start: object) -> bool:
    """Whether anything of pyHanko (its parsed PDF objects, readers, signatures) is reachable from `start`."""
    import gc

    seen, stack = set(), [start]
    while stack:
        item = stack.pop()
        if id(item) in seen or isinstance(item, type):
            continue
        seen.add(id(item))
        if type(item).__module__.startswith("pyhanko"):
            return True
        stack.extend(gc.get_referents(item))
    return False


def test_a_report_keeps_nothing_of_the_parsed_file(signed_record: bytes, demo_pki: DemoPki) -> None:
    # The parsed file is garbage as soon as the validation ends, freed in one young collection, not kept
    # alive by the report into the older generations (where it cost each web process a 150-200 ms pause).
    report = validate_pdf(signed_record, demo_pki.roots)
    assert report.ok and not _reaches_pyhanko(report)
    assert [type(s.field) for s in report.signatures] == [str, str, str]


def test_a_process_is_warmed_and_its_start_up_heap_frozen(app) -> None:
    import gc

    from portal.app import prepare_process

    try:
        prepare_process(app)
        assert gc.get_freeze_count() > 10_000
    finally:
        gc.unfreeze()


def test_missing_signatures_are_named(demo_pki: DemoPki) -> None:
    issued = demo_pki.gvcn
    pdf = engine.sign_field(record_pdf(), "gvcn", p12_key(issued), certify=True, stamp=stamp("gvcn", issued))
    report = validate_pdf(pdf, demo_pki.roots)
    assert report.all_valid and not report.all_fields_signed and not report.ok
    assert report.missing_fields == ["hieu_truong", "con_dau"]
    assert "Chưa có chữ ký ở ô “Hiệu trưởng”." in report.problems


@pytest.mark.parametrize("data, problem", [
    (b"", "Tệp rỗng."),
    (b"PK\x03\x04 not a pdf", "Tệp không phải là tệp PDF."),
    (b"%PDF-1.7\n%garbage without objects", "Tệp PDF bị hỏng, không đọc được."),
])
def test_bad_input_gives_a_report_not_an_error(data: bytes, problem: str) -> None:
    report = validate_pdf(data, [])
    assert not report.readable and not report.ok and report.problems == [problem]


def test_truncated_and_encrypted_files_give_a_report(signed_record: bytes) -> None:
    truncated = validate_pdf(signed_record[: len(signed_record) // 2], [])
    assert not truncated.ok and truncated.problems
    from pyhanko.pdf_utils.writer import copy_into_new_writer

    writer = copy_into_new_writer(PdfFileReader(BytesIO(record_pdf())))
    writer.encrypt("chu", "nguoi-doc")
    output = BytesIO()
    writer.write(output)
    encrypted = validate_pdf(output.getvalue(), [])
    assert encrypted.encrypted and not encrypted.ok
    assert encrypted.problems == ["Tệp PDF được mã hóa nên không kiểm tra được chữ ký."]


def test_fields_made_locked_by_the_renderer_sign_the_same(demo_pki: DemoPki) -> None:
    report = validate_pdf(sign_all(record_pdf(locked_fields=True, pages=2), demo_pki), demo_pki.roots)
    assert report.ok, report.problems


def test_rsa_keys_sign_and_validate_too(rsa_pki: DemoPki) -> None:
    report = validate_pdf(sign_all(record_pdf(), rsa_pki), rsa_pki.roots)
    assert report.ok, report.problems


def test_a_field_is_never_signed_twice(signed_record: bytes, demo_pki: DemoPki) -> None:
    with pytest.raises(engine.FieldProblem, match="đã được ký"):
        engine.sign_field(signed_record, "gvcn", p12_key(demo_pki.gvcn), certify=False,
                          stamp=stamp("gvcn", demo_pki.gvcn))
    with pytest.raises(engine.FieldProblem, match="không có ô chữ ký"):
        engine.sign_field(record_pdf(), "hieu_truong_2", p12_key(demo_pki.principal), certify=False,
                          stamp=stamp("hieu_truong", demo_pki.principal))


def test_an_expired_or_untrusted_certificate_is_refused_before_signing(demo_pki: DemoPki) -> None:
    now = datetime.now(UTC)
    expired = demo_pki.ca.issue_person("Trần Văn Cũ", title="Giáo viên chủ nhiệm", organisation=SCHOOL_NAME,
                                       not_before=now - timedelta(days=800), not_after=now - timedelta(days=1))
    with pytest.raises(engine.CertificateNotUsable, match="đã hết hạn ngày"):
        engine.sign_field(record_pdf(), "gvcn", p12_key(expired), certify=True, stamp=stamp("gvcn", expired))
    stranger = pki.create_ca().issue_person("Người Lạ", title="Hiệu trưởng", organisation=SCHOOL_NAME)
    with pytest.raises(engine.CertificateNotUsable, match="không do một tổ chức chứng thực được tin cậy"):
        engine.sign_field(record_pdf(), "gvcn", p12_key(stranger), certify=True, stamp=stamp("gvcn", stranger),
                          trust_roots=demo_pki.roots)


def test_wrong_pkcs12_passphrase_says_so_in_vietnamese(demo_pki: DemoPki) -> None:
    key = engine.Pkcs12Key(demo_pki.gvcn.pkcs12(PASSPHRASE), "sai-mat-khau")
    with pytest.raises(pki.WrongPassphrase, match="Mật khẩu của tệp chứng thư số không đúng"):
        engine.sign_field(record_pdf(), "gvcn", key, certify=True, stamp=stamp("gvcn", demo_pki.gvcn))


def test_a_session_parses_the_key_once_for_a_batch(demo_pki: DemoPki, monkeypatch: pytest.MonkeyPatch) -> None:
    opened = []
    real = pki.read_pkcs12
    monkeypatch.setattr(pki, "read_pkcs12", lambda *a: opened.append(1) or real(*a))
    key = p12_key(demo_pki.gvcn)
    with engine.SigningSession(key, trust_roots=demo_pki.roots) as session:
        signed = [session.sign_field(record_pdf(), "gvcn", certify=True, stamp=stamp("gvcn", demo_pki.gvcn))
                  for _ in range(3)]
    assert len(opened) == 1
    assert all(validate_pdf(pdf, demo_pki.roots).signatures[0].bottom_line for pdf in signed)


def test_a_session_makes_what_the_cms_takes_from_the_certificate_once(demo_pki: DemoPki,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from pyhanko.sign import attributes

    made = []
    for module in (attributes, engine):
        real = module.as_signing_certificate_v2
        monkeypatch.setattr(module, "as_signing_certificate_v2",
                            lambda cert, *args, _real=real: made.append(1) or _real(cert, *args))
    issued = demo_pki.gvcn
    with engine.SigningSession(p12_key(issued)) as session:
        signed = [session.sign_field(record_pdf(), "gvcn", certify=True, stamp=stamp("gvcn", issued))
                  for _ in range(3)]
    assert len(made) == 1
    for pdf in signed:
        assert validate_pdf(pdf, demo_pki.roots).signatures[0].bottom_line


@pytest.mark.parametrize("key_type", ["ec", "rsa"])
def test_the_cms_made_once_per_key_is_pyhankos_byte_for_byte(demo_pki: DemoPki, rsa_pki: DemoPki,
                                                             key_type: str) -> None:
    """The signed attributes and the signer info, apart from the signature value, as pyHanko makes them."""
    import asyncio

    from pyhanko.sign import signers
    from pyhanko.sign.signers.pdf_cms import PdfCMSSignedAttributes

    issued = (demo_pki if key_type == "ec" else rsa_pki).gvcn
    p12 = issued.pkcs12(PASSPHRASE)
    stock = signers.SimpleSigner.load_pkcs12_data(p12, other_certs=None, passphrase=PASSPHRASE.encode())
    settings = PdfCMSSignedAttributes(signing_time=datetime(2026, 5, 28, 3, 12, tzinfo=UTC))
    digest = bytes(range(32))

    async def made(signer: signers.Signer) -> tuple[bytes, bytes, bytes]:
        attrs = await signer.signed_attrs(digest, "sha256", attr_settings=settings, use_pades=True)
        info = signer.signer_info("sha256", attrs, b"signature")
        container = await signer.async_sign_prescribed_attributes("sha256", attrs)
        assert container["content"]["signer_infos"][0]["sid"].dump() == info["sid"].dump()
        return attrs.dump(), info.dump(), container["content"]["certificates"].dump()

    with engine.Pkcs12Key(p12, PASSPHRASE).open() as ours:
        for _ in range(2):  # and the second time, from what was made once
            assert asyncio.run(made(ours)) == asyncio.run(made(stock))


# --- PKCS#11 ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key_type", ["ec", "rsa"])
def test_pkcs11_token_signs_in_sequence_with_pkcs12_keys(demo_pki: DemoPki, rsa_pki: DemoPki, key_type: str,
                                                         tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    keys = demo_pki if key_type == "ec" else rsa_pki
    monkeypatch.setenv("SOFTHSM2_CONF", "")  # restored after the test; softhsm_token sets its own
    token = softhsm_token(tmp_path, keys.seal, label="con-dau")
    seal_key = engine.Pkcs11Key(token.module, token.label, token.pin, key_label=token.key_label,
                                chain=keys.ca.chain)
    pdf = record_pdf()
    pdf = engine.sign_field(pdf, "gvcn", p12_key(keys.gvcn), certify=True, stamp=stamp("gvcn", keys.gvcn))
    pdf = engine.sign_field(pdf, "hieu_truong", p12_key(keys.principal), certify=False,
                            stamp=stamp("hieu_truong", keys.principal))
    with engine.SigningSession(seal_key, trust_roots=keys.roots) as session:
        pdf = session.sign_field(pdf, "con_dau", certify=False, stamp=stamp("con_dau", keys.seal))
    report = validate_pdf(pdf, keys.roots)
    assert report.ok, report.problems
    assert report.signatures[2].signer_name == SCHOOL_NAME
    out = pdfsig(pdf, tmp_path)
    assert out.count("Signature Validation: Signature is Valid.") == 3, out


def test_pkcs11_wrong_pin_is_a_clear_error(demo_pki: DemoPki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOFTHSM2_CONF", "")
    token = softhsm_token(tmp_path, demo_pki.seal, label="sai-pin")
    key = engine.Pkcs11Key(token.module, token.label, "000000", key_label=token.key_label)
    with pytest.raises(engine.SigningError, match="Không mở được thiết bị ký số"):
        engine.sign_field(record_pdf(), "gvcn", key, certify=True, stamp=stamp("con_dau", demo_pki.seal))


# --- interrupted signing -----------------------------------------------------------------------------------------


def raw_signature(issued: pki.IssuedCertificate, to_be_signed: bytes) -> bytes:
    """What a USB token or a remote service returns: a raw signature made outside pyHanko."""
    if isinstance(issued.key, rsa.RSAPrivateKey):
        return issued.key.sign(to_be_signed, padding.PKCS1v15(), hashes.SHA256())
    return issued.key.sign(to_be_signed, ec.ECDSA(hashes.SHA256()))


FINISH_IN_ANOTHER_PROCESS = """
import base64, json, sys
from portal.signing.engine import PreparedSignature, finish_signature
job = json.load(sys.stdin)
prepared = PreparedSignature.from_state(job["state"], base64.b64decode(job["pdf"]))
sys.stdout.write(base64.b64encode(finish_signature(prepared, base64.b64decode(job["raw"]))).decode())
"""


@pytest.mark.parametrize("key_type", ["ec", "rsa"])
def test_interrupted_signing_prepares_now_and_finishes_in_another_process(
        demo_pki: DemoPki, rsa_pki: DemoPki, key_type: str) -> None:
    keys = demo_pki if key_type == "ec" else rsa_pki
    pdf = record_pdf()
    for i, field in enumerate(SIGNATURE_FIELDS):
        issued = keys.by_field(field)
        prepared = engine.prepare_signature(pdf, field, issued.certificate, keys.ca.chain, certify=i == 0,
                                            stamp=stamp(field, issued), trust_roots=keys.roots)
        state = json.loads(json.dumps(prepared.state()))  # what the workflow stores
        assert state["digest"] == prepared.digest.hex() and len(prepared.digest) == 32
        # The key holder signs the signed attributes (or, equivalently, their SHA-256 digest).
        raw = raw_signature(issued, prepared.to_be_signed)
        if field != "con_dau":  # later, from what was stored
            pdf = engine.finish_signature(engine.PreparedSignature.from_state(state, prepared.pdf), raw)
            continue
        # ... and in another process, as a job working the answer of a USB token or a remote service would.
        job = json.dumps({"state": state, "pdf": base64.b64encode(prepared.pdf).decode(),
                          "raw": base64.b64encode(raw).decode()})
        result = subprocess.run([sys.executable, "-c", FINISH_IN_ANOTHER_PROCESS], input=job, capture_output=True,
                                text=True, cwd=PROJECT_ROOT, env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
                                timeout=120, check=True)
        pdf = base64.b64decode(result.stdout)
    report = validate_pdf(pdf, keys.roots)
    assert report.ok, report.problems


def test_finishing_twice_gives_the_same_document_and_a_wrong_answer_changes_nothing(demo_pki: DemoPki) -> None:
    issued = demo_pki.gvcn
    prepared = engine.prepare_signature(record_pdf(), "gvcn", issued.certificate, demo_pki.ca.chain, certify=True,
                                        stamp=stamp("gvcn", issued))
    raw = raw_signature(issued, prepared.to_be_signed)
    first = engine.finish_signature(prepared, raw)
    again = engine.finish_signature(engine.PreparedSignature.from_state(prepared.state(), prepared.pdf), raw)
    assert first == again
    assert validate_pdf(first, demo_pki.roots).signatures[0].bottom_line

    wrong = raw_signature(demo_pki.principal, prepared.to_be_signed)  # another person's key
    with pytest.raises(engine.WrongSignature, match="không khớp với chứng thư số"):
        engine.finish_signature(prepared, wrong)
    with pytest.raises(engine.SigningError, match="không khớp"):
        engine.PreparedSignature.from_state(prepared.state(), flip_byte(prepared.pdf, 100))


def test_interrupted_signing_accepts_a_plain_r_s_ecdsa_value(demo_pki: DemoPki) -> None:
    """PKCS#11 CKM_ECDSA (what USB tokens give) returns r||s, not DER."""
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, decode_dss_signature

    issued = demo_pki.seal
    prepared = engine.prepare_signature(record_pdf(), "gvcn", issued.certificate, demo_pki.ca.chain, certify=True,
                                        stamp=stamp("con_dau", issued))
    r, s = decode_dss_signature(issued.key.sign(prepared.digest, ec.ECDSA(Prehashed(hashes.SHA256()))))
    signed = engine.finish_signature(prepared, r.to_bytes(32, "big") + s.to_bytes(32, "big"))
    assert validate_pdf(signed, demo_pki.roots).signatures[0].bottom_line


def test_a_plain_r_s_value_that_begins_like_der_is_still_accepted(demo_pki: DemoPki) -> None:
    """Once in 256 signatures r begins with 0x30, DER's first byte: such an r || s was refused as a wrong DER
    signature, by the engine and by the signing requests alike (a USB token's signature failing at random)."""
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, decode_dss_signature

    from portal.signing import requests

    issued = demo_pki.seal
    prepared = engine.prepare_signature(record_pdf(), "gvcn", issued.certificate, demo_pki.ca.chain, certify=True,
                                        stamp=stamp("con_dau", issued))
    for _attempt in range(5000):  # ECDSA's nonce is random: about 256 tries find one
        r, s = decode_dss_signature(issued.key.sign(prepared.digest, ec.ECDSA(Prehashed(hashes.SHA256()))))
        plain = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        if plain[:1] == b"\x30":
            break
    assert plain[:1] == b"\x30"
    signed = engine.finish_signature(prepared, plain)
    assert validate_pdf(signed, demo_pki.roots).signatures[0].bottom_line
    certificate = issued.certificate.public_bytes(serialization.Encoding.DER)
    assert requests.der_signature(certificate, requests.ECDSA_SHA256, prepared.digest.hex(), plain) \
        == engine.ecdsa_der_candidates(issued.certificate.public_key(), plain)[-1]
    assert requests.der_signature(certificate, requests.ECDSA_SHA256, prepared.digest.hex(), plain[::-1]) is None


# --- timestamps ----------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_signatures_carry_a_timestamp_from_the_configured_authority(demo_pki: DemoPki, tmp_path: Path) -> None:
    with local_tsa(tmp_path) as tsa:
        pdf = sign_all(record_pdf(), demo_pki, timestamp_url=tsa.url)
        # An interrupted signature gets its token when it is finished.
        issued = demo_pki.gvcn
        prepared = engine.prepare_signature(record_pdf(), "gvcn", issued.certificate, demo_pki.ca.chain,
                                            certify=True, stamp=stamp("gvcn", issued), timestamp_url=tsa.url)
        remote = engine.finish_signature(prepared, raw_signature(issued, prepared.to_be_signed))
    roots = [*demo_pki.roots, tsa.root]
    report = validate_pdf(pdf, roots)
    assert report.ok, report.problems
    for signature in report.signatures:
        assert signature.timestamp_valid is True and signature.timestamp_time is not None
        assert abs(signature.timestamp_time - signature.signing_time) < timedelta(minutes=1)
    stamped = validate_pdf(remote, roots).signatures[0]
    assert stamped.bottom_line and stamped.timestamp_valid
    # Without the TSA's root the timestamp is not trusted, and the report says so.
    assert any("dấu thời gian" in p for p in validate_pdf(pdf, demo_pki.roots).problems)


def test_the_timestamp_level_of_a_file_just_signed_is_known_without_reading_it_again(
        demo_pki: DemoPki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    read = []
    real = engine.signature_level
    monkeypatch.setattr(engine, "signature_level", lambda pdf: read.append(1) or real(pdf))
    with local_tsa(tmp_path) as tsa:
        signed = record_pdf()
        for i, field in enumerate(SIGNATURE_FIELDS[:2]):
            issued = demo_pki.by_field(field)
            with engine.SigningSession(p12_key(issued), timestamp_url=tsa.url, level="B-T") as session:
                signed = session.sign_field(signed, field, certify=i == 0, stamp=stamp(field, issued))
            engine.check_level(signed, "B-T")  # what the workflow checks after each of the first two
            assert read == []
            assert real(signed).level == "B-T"  # what reading the file would have said
        # Any other bytes are read: the same file with a byte changed after its signatures, say.
        changed = signed.replace(b"%%EOF", b"%%EOF\n", 1)
        engine.check_level(changed, "B-T")
        assert len(read) == 1
        # A level above B-T is always read from the file.
        with pytest.raises(engine.BelowLevel):
            engine.check_level(signed, "B-LT")


def test_a_timestamped_signature_over_an_untimestamped_one_is_still_below_b_t(demo_pki: DemoPki,
                                                                              tmp_path: Path) -> None:
    """What the engine knows of a file it signed covers the signatures that were already in it."""
    gvcn = engine.sign_field(record_pdf(), "gvcn", p12_key(demo_pki.gvcn), certify=True,
                             stamp=stamp("gvcn", demo_pki.gvcn), level="B-B")
    with local_tsa(tmp_path) as tsa:
        signed = engine.sign_field(gvcn, "hieu_truong", p12_key(demo_pki.principal), certify=False,
                                   stamp=stamp("hieu_truong", demo_pki.principal), timestamp_url=tsa.url,
                                   level="B-T")
    with pytest.raises(engine.BelowLevel, match="gvcn"):
        engine.check_level(signed, "B-T")


@pytest.mark.slow
def test_validation_info_is_embedded_when_trust_roots_are_given(demo_pki: DemoPki) -> None:
    pdf = sign_all(record_pdf(), demo_pki, trust_roots=demo_pki.roots)
    reader = PdfFileReader(BytesIO(pdf))
    assert "/DSS" in reader.root
    report = validate_pdf(pdf, demo_pki.roots)
    assert report.ok, report.problems


@pytest.mark.slow
def test_real_record_pdf_takes_three_signatures(demo_pki: DemoPki) -> None:
    render = pytest.importorskip("portal.records.pdf").render_pdf
    from tests.record_factory import sample_content

    pdf = sign_all(render(sample_content()), demo_pki)
    report = validate_pdf(pdf, demo_pki.roots)
    assert report.ok, report.problems
