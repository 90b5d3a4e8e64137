"""What makes an unissued record look like what it is: every copy handed out before issuing is marked.

A draft, a record waiting for signatures, a returned, cancelled or superseded one has no legal value,
yet its PDF is laid out exactly like the issued one. Each copy downloaded (alone or in a class ZIP) gets,
on every page, a large diagonal "BẢN NHÁP - CHƯA CÓ GIÁ TRỊ" and a line saying why, and its verification
QR codes are covered: before issuing, a QR would lead the reader to "not found".

The stored PDF is never touched (the signatures are made on it); only the copy sent out is marked.
"""

from __future__ import annotations

import io

from pypdf import PdfReader, PdfWriter
from pypdf.errors import PyPdfError
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen.canvas import Canvas

from portal.records.pdf import FONT_DIR, FONT_FILES, MARGINS, PAGE_HEIGHT, PAGE_WIDTH

DRAFT_MARK = "BẢN NHÁP - CHƯA CÓ GIÁ TRỊ"


def mark_unissued(pdf: bytes, status_label: str) -> bytes:
    """`pdf` with the draft mark on every page and its QR codes covered (bytes that are no PDF: as they are)."""
    try:
        reader = PdfReader(io.BytesIO(pdf))
    except PyPdfError:
        return pdf
    writer = PdfWriter(clone_from=reader)
    overlay = PdfReader(io.BytesIO(_overlay(len(writer.pages), status_label)))
    for page, mark in zip(writer.pages, overlay.pages, strict=True):
        page.merge_page(mark)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def _fonts() -> tuple[str, str]:
    names = ("HocBaDraft", "HocBaDraft-Bold")
    for name, file in zip(names, (FONT_FILES["regular"], FONT_FILES["bold"]), strict=True):
        if name not in pdfmetrics.getRegisteredFontNames():
            pdfmetrics.registerFont(TTFont(name, str(FONT_DIR / file)))
    return names


def _overlay(pages: int, status_label: str) -> bytes:
    regular, bold = _fonts()
    out = io.BytesIO()
    canvas = Canvas(out, pagesize=(PAGE_WIDTH, PAGE_HEIGHT), invariant=1)
    why = f"{DRAFT_MARK} · {status_label} · Không dùng để nộp, chuyển trường hay tra cứu."
    for number in range(1, pages + 1):
        canvas.saveState()
        canvas.setFillColorRGB(0.75, 0.1, 0.1)
        canvas.setFillAlpha(0.22)
        canvas.translate(PAGE_WIDTH / 2, PAGE_HEIGHT / 2)
        canvas.rotate(52)
        canvas.setFont(bold, 50)
        canvas.drawCentredString(0, -18, DRAFT_MARK)
        canvas.restoreState()
        canvas.setFillColorRGB(0.7, 0.1, 0.1)
        canvas.setFont(bold, 9)
        canvas.drawCentredString(PAGE_WIDTH / 2, PAGE_HEIGHT - 16, why)
        if number == 1:  # the identity page's QR code and its caption
            _cover(canvas, MARGINS["left"] - 2, 76, PAGE_WIDTH - MARGINS["right"] - MARGINS["left"] + 4, 104)
            canvas.setFont(bold, 12)
            canvas.drawString(MARGINS["left"] + 6, 136, "Bản nháp: chưa có mã QR tra cứu.")
            canvas.setFont(regular, 10)
            canvas.drawString(MARGINS["left"] + 6, 118, "Chỉ học bạ đã được ký đủ và ban hành mới tra cứu được.")
        if number == pages:  # the small QR code beside the last page's footer
            _cover(canvas, PAGE_WIDTH - MARGINS["right"] - 46, 5, 48, 48)
        canvas.showPage()
    canvas.save()
    return out.getvalue()


def _cover(canvas: Canvas, x: float, y: float, width: float, height: float) -> None:
    canvas.saveState()
    canvas.setFillColorRGB(1, 1, 1)
    canvas.setStrokeColorRGB(0.7, 0.1, 0.1)
    canvas.rect(x, y, width, height, stroke=1, fill=1)
    canvas.restoreState()
    canvas.setFillColorRGB(0.7, 0.1, 0.1)
