"""The one door every uploaded file goes through: its type is read from its content, its size bounded.

An .xlsx is a zip of XML: a 2 MB file can inflate to gigabytes (a zip bomb) and a sheet can claim a
million empty rows sixteen thousand cells wide. Before openpyxl sees a workbook, `check_zip` bounds the
archive's size on disk, the members' declared sizes and compression ratio, and then inflates every
member in small chunks to count what it really holds (Python's zipfile never yields more than a
member declares, but a reader must not rely on one library's habit). While a sheet is read,
`sheet_rows` bounds the rows, the cells and the time spent. Other files (evidence, the record PDF a
visitor checks, a certificate) are known by their first bytes, never by their name or the browser's
word. Every refusal is an `UploadRefused` whose message, in the interface language, says why.

Pure functions: no database, no request. `gettext` falls back to the Vietnamese source outside a request.
"""

from __future__ import annotations

import io
import time
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flask import has_request_context
from flask_babel import gettext
from openpyxl import load_workbook

from portal.inputs import clean

if TYPE_CHECKING:
    from openpyxl.workbook.workbook import Workbook

MB = 1024 * 1024
_CHUNK = 256 * 1024


def _(text: str, **values: Any) -> str:
    """Translated inside a request; the Vietnamese source (with its values) in a job or a test."""
    if has_request_context():
        return gettext(text, **values)
    return text % values if values else text


class UploadRefused(ValueError):
    """The file is refused; the message says why, for the user."""


class UnreadableUpload(UploadRefused):
    """Refused because it is damaged or not the kind of file it claims to be (a reader may say it its own way)."""


@dataclass(frozen=True)
class Limits:
    """What one kind of upload may weigh, inflate to, hold and cost."""

    max_bytes: int = 5 * MB
    max_unpacked: int = 50 * MB  # all members inflated together
    max_ratio: int = 100  # a member's inflated size over its compressed size
    max_members: int = 500
    max_rows: int = 25_000  # rows scanned on one sheet, blank ones included
    max_cells: int = 1_000_000  # cells scanned in the whole workbook
    max_seconds: float = 20.0


# A generated sheet of repeated values compresses well, but real spreadsheets stay far below this
# ratio (our own exports: 5-15); a deflate bomb sits near the format's limit (about 1000).
RATIO_FLOOR = 1 * MB  # members smaller than this are never refused for their ratio


# --- what a file is -------------------------------------------------------------------------------

PDF, PNG, JPEG, GIF, WEBP, TIFF, HEIC, OFFICE_ZIP, OFFICE_OLE = (
    "pdf", "png", "jpeg", "gif", "webp", "tiff", "heic", "office", "office-legacy")
MIMETYPES = {
    PDF: "application/pdf", PNG: "image/png", JPEG: "image/jpeg", GIF: "image/gif", WEBP: "image/webp",
    TIFF: "image/tiff", HEIC: "image/heic", OFFICE_OLE: "application/octet-stream",
}
_OFFICE_ZIP_TYPES = {  # the content type the package declares for its main part -> its mimetype
    "wordprocessingml.document": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "spreadsheetml.sheet": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "presentationml.presentation": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
}
_ODF = "application/vnd.oasis.opendocument."
def is_evidence_mimetype(mimetype: str) -> bool:
    """Whether a stored type is one `check_evidence` gives (rows from before it may hold anything)."""
    return mimetype in MIMETYPES.values() or mimetype in _OFFICE_ZIP_TYPES.values() or mimetype.startswith(_ODF)


EVIDENCE_KINDS = frozenset({PDF, PNG, JPEG, GIF, WEBP, TIFF, HEIC, OFFICE_ZIP, OFFICE_OLE})
EVIDENCE_LIMITS = Limits(max_bytes=20 * MB, max_unpacked=200 * MB, max_members=5000)


def sniff(data: bytes) -> str | None:
    """The kind of file its first bytes show, or None for anything else (HTML, scripts, text...)."""
    head = data[:16]
    if head.startswith(b"%PDF-"):
        return PDF
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if head.startswith(b"\xff\xd8\xff"):
        return JPEG
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return GIF
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return WEBP
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return TIFF
    if head[4:8] == b"ftyp" and head[8:12] in (b"heic", b"heix", b"mif1", b"msf1", b"heif"):
        return HEIC
    if head.startswith(b"PK\x03\x04"):
        return OFFICE_ZIP
    if head.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"):  # OLE2: .doc, .xls, .ppt of old
        return OFFICE_OLE
    return None


def check_evidence(data: bytes) -> str:
    """The mimetype to store evidence under: a PDF, an image or an office document, by content."""
    if not data:
        raise UploadRefused(_("Tệp trống."))
    if len(data) > EVIDENCE_LIMITS.max_bytes:
        raise UploadRefused(too_large(EVIDENCE_LIMITS))
    kind = sniff(data)
    if kind not in EVIDENCE_KINDS:
        raise UploadRefused(_("Chỉ nhận minh chứng là tệp PDF, ảnh (JPEG, PNG...) hoặc văn bản Word, Excel, "
                              "PowerPoint, OpenDocument. Tệp này không thuộc loại nào trong số đó."))
    if kind == OFFICE_ZIP:
        return _office_mimetype(data)
    return MIMETYPES[kind]


def _office_mimetype(data: bytes) -> str:
    check_zip(data, EVIDENCE_LIMITS)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        names = set(archive.namelist())
        if "mimetype" in names:
            declared = archive.read("mimetype")[:100].decode("ascii", "replace").strip()
            if declared.startswith(_ODF):
                return declared
        if "[Content_Types].xml" in names:
            types = archive.read("[Content_Types].xml")[:65536].decode("utf-8", "replace")
            for marker, mimetype in _OFFICE_ZIP_TYPES.items():
                if marker in types:
                    return mimetype
    raise UploadRefused(_("Tệp nén này không phải văn bản Word, Excel, PowerPoint hay OpenDocument."))


# A .p12 or a PEM chain is a few KB; a certificate file bigger than this is not one.
CERTIFICATE_BYTES = 256 * 1024


def check_certificate_file(data: bytes) -> None:
    """Refuse a certificate or key file that is empty or too big; its type is checked by parsing it (pki)."""
    if not data:
        raise UploadRefused(_("Tệp trống."))
    if len(data) > CERTIFICATE_BYTES:
        raise UploadRefused(_("Tệp quá lớn để là tệp chứng thư số (tối đa %(kb)d KB).", kb=CERTIFICATE_BYTES // 1024))


# --- zip archives and workbooks ---------------------------------------------------------------------

def too_large(limits: Limits) -> str:
    return _("Tệp quá lớn: mỗi lần chỉ nhận tệp đến %(mb)d MB.", mb=limits.max_bytes // MB)


def _inflates_too_much() -> str:
    return _("Tệp bị từ chối: khi giải nén, nội dung lớn bất thường so với kích thước tệp (có thể là "
             "tệp độc hại kiểu “bom zip”). Hãy mở tệp bằng Excel, lưu lại rồi tải lên.")


def not_readable() -> str:
    return _("Không đọc được tệp Excel. Hãy lưu lại dưới dạng .xlsx rồi thử lại.")


def check_zip(data: bytes, limits: Limits) -> None:
    """Refuse an archive too big on disk, or whose members (declared or really) inflate too much."""
    if len(data) > limits.max_bytes:
        raise UploadRefused(too_large(limits))
    deadline = time.monotonic() + limits.max_seconds
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
            if len(members) > limits.max_members:
                raise UploadRefused(_inflates_too_much())
            if sum(m.file_size for m in members) > limits.max_unpacked or any(_too_dense(m, limits) for m in members):
                raise UploadRefused(_inflates_too_much())
            inflated = 0
            for member in members:
                with archive.open(member) as stream:
                    while chunk := stream.read(_CHUNK):
                        inflated += len(chunk)
                        if inflated > limits.max_unpacked:
                            raise UploadRefused(_inflates_too_much())
                        if time.monotonic() > deadline:
                            raise UploadRefused(_took_too_long())
    except UploadRefused:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, RuntimeError, OSError, ValueError,
            EOFError) as exc:
        # NotImplementedError: an unknown compression; RuntimeError: an encrypted member; OSError/EOFError: truncated
        raise UnreadableUpload(_("Tệp bị hỏng hoặc không phải tệp nén hợp lệ.")) from exc


def _too_dense(member: zipfile.ZipInfo, limits: Limits) -> bool:
    return member.file_size > RATIO_FLOOR and member.file_size > limits.max_ratio * max(member.compress_size, 1)


def _took_too_long() -> str:
    return _("Tệp cần quá nhiều thời gian để đọc. Hãy chia nhỏ tệp rồi tải lên từng phần.")


def open_workbook(data: bytes, limits: Limits) -> Workbook:
    """A read-only workbook of an .xlsx that passed `check_zip`; refused when it is not a workbook."""
    if not data.startswith(b"PK\x03\x04"):
        raise UnreadableUpload(not_readable())
    try:
        check_zip(data, limits)
    except UnreadableUpload as exc:
        raise UnreadableUpload(not_readable()) from exc
    try:
        return load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # a zip without the workbook parts (a .docx renamed), damaged XML: anywhere in openpyxl
        raise UnreadableUpload(not_readable()) from exc


class Budget:
    """Rows, cells and time a whole workbook may cost while it is read; shared by its sheets."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.cells = 0
        self.deadline = time.monotonic() + limits.max_seconds

    def rows(self, sheet: Any, **bounds: Any) -> Iterator[tuple[Any, ...]]:
        """The sheet's rows as values (text without control characters); refused past the rows, cells or time."""
        sheet.reset_dimensions()  # a sheet's <dimension> can lie, either way: read what is there
        for count, row in enumerate(sheet.iter_rows(values_only=True, **bounds), start=1):
            self.cells += len(row)
            if count > self.limits.max_rows or self.cells > self.limits.max_cells:
                raise UploadRefused(_("Tệp có quá nhiều dòng hoặc ô (tối đa %(rows)s dòng mỗi trang tính).",
                                      rows=f"{self.limits.max_rows:,}".replace(",", ".")))
            if count % 500 == 0 and time.monotonic() > self.deadline:
                raise UploadRefused(_took_too_long())
            # A cell may carry NUL or other control characters (`_x0000_` in the XML): never meant, and
            # PostgreSQL refuses NUL in text, so they go here as they go from forms (portal.inputs).
            yield tuple(clean(v) if isinstance(v, str) else v for v in row)


def read_sheets(data: bytes, limits: Limits, names: Iterable[str | int] = (0,)) -> dict[str | int, list[list[Any]]]:
    """The rows of the named sheets (a name, or a position) that the workbook has; all within `limits`."""
    workbook = open_workbook(data, limits)
    budget = Budget(limits)
    try:
        found: dict[str | int, list[list[Any]]] = {}
        for name in names:
            if isinstance(name, int):
                if name >= len(workbook.worksheets):
                    continue
                sheet = workbook.worksheets[name]
            elif name in workbook.sheetnames:
                sheet = workbook[name]
            else:
                continue
            found[name] = [list(row) for row in budget.rows(sheet)]
        return found
    except UploadRefused:
        raise
    except Exception as exc:  # sheets are read lazily: damage inside them shows only here, anywhere in openpyxl
        raise UnreadableUpload(not_readable()) from exc
    finally:
        workbook.close()
