"""Signing speed: time per visible signature, stock pyHanko against the engine, and validation time.

    .venv/bin/python benchmarks/signing.py [--runs 15]

Each run signs one record PDF three times (GVCN with certification, Hiệu trưởng, con dấu) with EC P-256
PKCS#12 keys and a visible Vietnamese stamp:

- stock: pyHanko as documented: `SimpleSigner.load_pkcs12_data` per signature, the stamp font given as
  the full Liberation Serif (`GlyphAccumulatorFactory`), `sign_pdf`;
- engine: `portal.signing.engine` with one `SigningSession` per key (the .p12 opened once per batch)
  and the pre-subset 1000-unit stamp font;
- interrupted: `prepare_signature` + a raw signature + `finish_signature` (USB token / remote signing);
- validation: `validate_pdf` of the finished three-signature record (target <= 300 ms).

The record is the real renderer's output for the sample record when `portal.records.pdf` is there,
else a one-page PDF with the three fields.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from io import BytesIO
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from pyhanko.pdf_utils.font.opentype import GlyphAccumulatorFactory
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.text import TextBoxStyle
from pyhanko.sign import fields, signers
from pyhanko.stamp import TextStampStyle

from benchmarks import common
from portal.records.content import SIGNATURE_FIELDS
from portal.signing import engine, pki
from portal.signing.build_stamp_font import SOURCES
from portal.signing.stamp import FONT_SIZE, LEADING, STAMP_TEMPLATE, stamp_for_field
from portal.signing.validate import validate_pdf

PASSPHRASE = "benchmark"
SCHOOL = "Trường Tiểu học Lê Quang Định"
TARGET_VALIDATION_MS = 300


def record_pdf() -> tuple[bytes, str]:
    try:
        from portal.records.pdf import render_pdf
        from tests.record_factory import sample_content

        return render_pdf(sample_content()), "the renderer's sample record"
    except ImportError:
        from tests.signing_factory import record_pdf as small

        return small(), "a one-page PDF with the three fields"


def people() -> tuple[pki.DemoCA, dict[str, pki.IssuedCertificate]]:
    ca = pki.create_ca()
    return ca, {
        "gvcn": ca.issue_person("Nguyễn Thị Thu Hương", title="Giáo viên chủ nhiệm", organisation=SCHOOL),
        "hieu_truong": ca.issue_person("Võ Thị Lài", title="Hiệu trưởng", organisation=SCHOOL),
        "con_dau": ca.issue_organisation(SCHOOL),
    }


def timed(times: list[float], action: Callable[[], bytes]) -> bytes:
    start = time.perf_counter()
    result = action()
    times.append((time.perf_counter() - start) * 1000)
    return result


def stock_sign(pdf: bytes, field: str, p12: bytes, text: dict[str, str], font: str) -> bytes:
    signer = signers.SimpleSigner.load_pkcs12_data(p12, other_certs=None, passphrase=PASSPHRASE.encode())
    style = TextStampStyle(stamp_text=STAMP_TEMPLATE, text_box_style=TextBoxStyle(
        font=GlyphAccumulatorFactory(font, font_size=FONT_SIZE), font_size=FONT_SIZE, leading=LEADING))
    meta = signers.PdfSignatureMetadata(field_name=field, md_algorithm="sha256", certify=field == "gvcn",
                                        subfilter=fields.SigSeedSubFilter.PADES,
                                        docmdp_permissions=fields.MDPPerm.FILL_FORMS)
    output = signers.PdfSigner(meta, signer, stamp_style=style).sign_pdf(
        IncrementalPdfFileWriter(BytesIO(pdf), strict=False), appearance_text_params=text)
    return output.getvalue()


def median(values: list[float]) -> float:
    return statistics.median(values)


def p95(values: list[float]) -> float:
    return sorted(values)[max(0, round(0.95 * len(values)) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = common.parse_args(parser, smoke={'runs': 1})
    import warnings

    warnings.simplefilter("ignore", ResourceWarning)  # pyHanko's stock font factory leaves its file open
    pdf, what = record_pdf()
    ca, keys = people()
    p12 = {field: issued.pkcs12(PASSPHRASE) for field, issued in keys.items()}
    stamps = {f: stamp_for_field(f, pki.describe(keys[f].certificate).common_name, school_name=SCHOOL)
              for f in SIGNATURE_FIELDS}
    full_font = str(next(p for p in SOURCES if p.exists()))
    print(f"Signing {what} ({len(pdf) / 1024:.0f} KiB), {args.runs} runs of three visible signatures each")

    stock: list[float] = []
    for _ in range(args.runs):
        signed = pdf
        for field in SIGNATURE_FIELDS:
            text = stamps[field].params(engine._utcnow())
            signed = timed(stock, lambda f=field, s=signed, t=text: stock_sign(s, f, p12[f], t, full_font))
    assert validate_pdf(signed, [ca.root]).ok

    ours: list[float] = []
    sessions = {f: engine.SigningSession(engine.Pkcs12Key(p12[f], PASSPHRASE)).__enter__() for f in SIGNATURE_FIELDS}
    records = []
    for _ in range(args.runs):
        signed = pdf
        for i, field in enumerate(SIGNATURE_FIELDS):
            session = sessions[field]
            signed = timed(ours, lambda s=session, f=field, d=signed, c=i == 0: s.sign_field(
                d, f, certify=c, stamp=stamps[f]))
        records.append(signed)
    for session in sessions.values():
        session.__exit__(None, None, None)

    interrupted: list[float] = []
    for _ in range(max(3, args.runs // 3)):
        signed = pdf
        for i, field in enumerate(SIGNATURE_FIELDS):
            def remote(d: bytes = signed, f: str = field, c: bool = i == 0) -> bytes:
                issued = keys[f]
                prepared = engine.prepare_signature(d, f, issued.certificate, ca.chain, certify=c, stamp=stamps[f])
                raw = issued.key.sign(prepared.to_be_signed, ec.ECDSA(hashes.SHA256()))  # type: ignore[union-attr]
                return engine.finish_signature(prepared, raw)
            signed = timed(interrupted, remote)
    assert validate_pdf(signed, [ca.root]).ok

    validation: list[float] = []
    for record in records:
        report = timed(validation, lambda r=record: validate_pdf(r, [ca.root]))  # type: ignore[arg-type,return-value]
        assert report.ok, report.problems  # type: ignore[attr-defined]

    print(f"  stock pyHanko, per signature:      median {median(stock):6.0f} ms   p95 {p95(stock):6.0f} ms")
    print(f"  engine (session), per signature:   median {median(ours):6.0f} ms   p95 {p95(ours):6.0f} ms"
          f"   ({median(ours) / median(stock):.2f}x stock)")
    print(f"  engine, three signatures:          median {3 * median(ours):6.0f} ms")
    print(f"  interrupted (prepare + finish):    median {median(interrupted):6.0f} ms")
    verdict = "OK" if median(validation) <= TARGET_VALIDATION_MS else "OVER TARGET"
    print(f"  validate_pdf, 3-signature record:  median {median(validation):6.0f} ms   p95 {p95(validation):6.0f} ms"
          f"   target <= {TARGET_VALIDATION_MS} ms: {verdict}")


if __name__ == "__main__":
    main()
