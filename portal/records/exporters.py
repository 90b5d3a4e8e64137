"""The structured forms of a record version: our versioned XML (hocba 1.0) and canonical JSON.

Both read only the content dict of `portal.records.content`. Every form sits behind one small interface,
`Exporter`, in one registry, so that the Ministry's official schema, once published, is one more class
beside `HocBaXmlV1` (see docs/record-schema.md, "Versioning").

- XML: namespace `urn:hocbaso:hocba:1`, root `<hocBa version="1.0">`, validated against the XSD shipped
  in `schema/` on every export and every import; `parse_xml(export_xml(c)) == c` for every valid content.
- Canonical JSON: UTF-8, NFC, keys sorted, no insignificant whitespace, numbers as RFC 8785 (JCS) writes
  them, so the same content always gives the same bytes and the same SHA-256 (`content_hash`).

Pure: no database, no Flask. The parsed XSD is cached (one per thread: an lxml validator keeps its error
log on itself, so it is not shared between threads).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import threading
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import Enum
from importlib import resources
from typing import Any, Protocol, runtime_checkable

from lxml import etree

from portal.records.content import CONTENT_FORMAT

XML_NAMESPACE = "urn:hocbaso:hocba:1"
XML_VERSION = "1.0"
XML_ROOT = "hocBa"
SCHEMA_FILE = "hocba-1.0.xsd"
MAX_XML_BYTES = 20 * 1024 * 1024  # a five-year record is ~60 KB; anything near this is not a record


# --- errors ------------------------------------------------------------------------------------------


class RecordSchemaError(ValueError):
    """A record does not fit the schema. The message is Vietnamese; `element` is the XML path when known
    (e.g. "years/year[1]/subjects/subject[3]/score"), `field` the content path ("years[0].subjects[2].score"),
    `detail` the validator's own words (English, for logs)."""

    def __init__(self, message: str, *, element: str | None = None, field: str | None = None,
                 detail: str | None = None) -> None:
        super().__init__(message)
        self.element = element
        self.field = field
        self.detail = detail


class RecordExportError(RecordSchemaError):
    """A content dict cannot be exported: a value is missing, of the wrong type or not allowed."""


class RecordXmlError(RecordSchemaError):
    """An XML document is not a valid record: malformed, another namespace or version, or invalid."""


class UnknownExporter(LookupError):
    """No exporter has that name."""


# --- the interface -----------------------------------------------------------------------------------


@runtime_checkable
class Exporter(Protocol):
    """One structured form of a record version."""

    name: str  # registry key, stable: it may be stored beside the files it produced
    label: str  # shown to people (Vietnamese)
    media_type: str
    extension: str  # file name extension, without the dot

    def export(self, content: Mapping[str, Any]) -> bytes: ...


# --- the content <-> XML mapping, declared once for both directions ----------------------------------


class Kind(Enum):
    TEXT = "text"  # xs:string types: the text exactly as it is
    TOKEN = "token"  # types whose whitespace the XSD collapses (dates, timestamps): read back stripped
    INT = "int"
    DECIMAL = "decimal"
    BOOL = "bool"
    GROUP = "group"  # a nested dict
    LIST = "list"  # a list of dicts, each one `item` element


@dataclass(frozen=True)
class Field:
    key: str
    kind: Kind
    optional: bool = False
    fields: tuple[Field, ...] = ()  # of a GROUP, or of each item of a LIST
    item: str = ""  # element name of a LIST's items
    tag: str = dataclasses.field(init=False)  # the element name: the key in camelCase
    keys: frozenset[str] = dataclasses.field(init=False)  # the keys of `fields`, to find unknown ones

    def __post_init__(self) -> None:
        head, *rest = self.key.split("_")
        object.__setattr__(self, "tag", head + "".join(part.capitalize() for part in rest))
        object.__setattr__(self, "keys", frozenset(f.key for f in self.fields))


def _f(key: str, kind: Kind = Kind.TEXT, *, optional: bool = False) -> Field:
    return Field(key, kind, optional)


def _opt(key: str, kind: Kind = Kind.TEXT) -> Field:
    return Field(key, kind, optional=True)


TRAIT_FIELDS = (_f("code"), _f("name"), _opt("level"), _f("comment"))
YEAR_FIELDS = (
    _f("school_year"), _f("class_name"), _f("grade", Kind.INT), _f("school_name"), _f("source"),
    _opt("homeroom_teacher"), _opt("principal"), _opt("height_cm", Kind.INT), _opt("weight_kg", Kind.DECIMAL),
    _f("absent_excused", Kind.INT), _f("absent_unexcused", Kind.INT),
    Field("subjects", Kind.LIST, item="subject",
          fields=(_f("code"), _f("name"), _opt("level"), _opt("score", Kind.INT), _f("comment"))),
    Field("qualities", Kind.LIST, item="quality", fields=TRAIT_FIELDS),
    Field("general_competencies", Kind.LIST, item="competency", fields=TRAIT_FIELDS),
    Field("specific_competencies", Kind.LIST, item="competency", fields=TRAIT_FIELDS),
    _opt("outcome"), _opt("outcome_label"),
    Field("awards", Kind.LIST, item="award", fields=(_f("title"), _opt("awarded_on", Kind.TOKEN))),
    _opt("completion"), _opt("promoted", Kind.BOOL), _f("supplementary_note"), _opt("place"),
    _opt("dated_on", Kind.TOKEN),
)
DOCUMENT_FIELDS = (
    Field("record", Kind.GROUP, fields=(
        _f("code"), _f("number", Kind.INT), _opt("replaces"), _f("created_at", Kind.TOKEN),
        _f("scope_grade", Kind.INT), _f("verify_url", Kind.TOKEN))),
    Field("school", Kind.GROUP, fields=(
        _f("name"), _opt("moet_code"), _opt("commune"), _opt("district"), _opt("city"), _opt("principal"))),
    Field("pupil", Kind.GROUP, fields=(
        _f("pupil_code"), _f("full_name"), _opt("gender"), _opt("birth_date", Kind.TOKEN),
        *(_opt(key) for key in ("ethnicity", "nationality", "birth_place", "hometown", "address", "father_name",
                                "mother_name", "guardian_name", "register_number")),
        _f("personal_plan", Kind.BOOL), _opt("disability"))),
    Field("history", Kind.LIST, item="entry", fields=(
        _f("school_year"), _f("class_name"), _f("school_name"), _opt("enrolled_on", Kind.TOKEN),
        _opt("confirmed_by"))),
    Field("years", Kind.LIST, item="year", fields=YEAR_FIELDS),
)

DOCUMENT_KEYS = frozenset(f.key for f in DOCUMENT_FIELDS)

# What each element means, in the paper record's words: for error messages (the schema document says more).
ELEMENT_LABELS = {
    "hocBa": "học bạ", "record": "bản học bạ", "code": "mã", "number": "số thứ tự bản",
    "replaces": "mã bản được điều chỉnh", "createdAt": "thời điểm tạo", "scopeGrade": "khối lớp của bản",
    "verifyUrl": "địa chỉ tra cứu", "school": "trường", "name": "tên", "moetCode": "mã trường",
    "commune": "xã / phường", "district": "quận / huyện", "city": "tỉnh / thành phố",
    "principal": "hiệu trưởng", "pupil": "học sinh", "pupilCode": "mã học sinh", "fullName": "họ và tên",
    "gender": "giới tính", "birthDate": "ngày sinh", "ethnicity": "dân tộc", "nationality": "quốc tịch",
    "birthPlace": "nơi sinh", "hometown": "quê quán", "address": "nơi ở hiện nay", "fatherName": "họ tên cha",
    "motherName": "họ tên mẹ", "guardianName": "họ tên người giám hộ", "registerNumber": "số đăng bộ",
    "personalPlan": "học theo kế hoạch giáo dục cá nhân", "disability": "khuyết tật",
    "history": "quá trình học tập", "entry": "dòng quá trình học tập", "schoolYear": "năm học",
    "className": "lớp", "schoolName": "tên trường", "enrolledOn": "ngày nhập học / chuyển đến",
    "confirmedBy": "hiệu trưởng xác nhận", "years": "các năm học", "year": "trang năm học", "grade": "khối lớp",
    "source": "nguồn", "homeroomTeacher": "giáo viên chủ nhiệm", "heightCm": "chiều cao (cm)",
    "weightKg": "cân nặng (kg)", "absentExcused": "số ngày nghỉ có phép",
    "absentUnexcused": "số ngày nghỉ không phép", "subjects": "môn học và hoạt động giáo dục",
    "subject": "môn học / hoạt động giáo dục", "level": "mức đạt được", "score": "điểm KTĐK cuối năm",
    "comment": "nhận xét", "qualities": "phẩm chất", "quality": "phẩm chất",
    "generalCompetencies": "năng lực chung", "specificCompetencies": "năng lực đặc thù", "competency": "năng lực",
    "outcome": "đánh giá kết quả giáo dục", "outcomeLabel": "đánh giá kết quả giáo dục (chữ)",
    "awards": "khen thưởng", "award": "khen thưởng", "title": "nội dung khen thưởng",
    "awardedOn": "ngày khen thưởng", "completion": "hoàn thành chương trình lớp học / tiểu học",
    "promoted": "được lên lớp", "supplementaryNote": "ghi chú đánh giá bổ sung", "place": "nơi ký",
    "datedOn": "ngày ký",
}


def _index_fields(fields: Sequence[Field], into: dict[str, Field]) -> dict[str, Field]:
    for field in fields:
        into.setdefault(field.tag, field)
        _index_fields(field.fields, into)
    return into


_FIELD_BY_TAG = _index_fields(DOCUMENT_FIELDS, {})
_LIST_ITEM_TAGS = {field.item for field in _FIELD_BY_TAG.values() if field.kind is Kind.LIST}


# --- XML: writing --------------------------------------------------------------------------------------


def _q(tag: str) -> str:
    return f"{{{XML_NAMESPACE}}}{tag}"


def _lexical(field: Field, value: Any, path: str) -> str:
    """The XML text of a scalar value; types the XSD cannot see (a "9" for 9) are refused here."""
    kind = field.kind
    if kind in (Kind.TEXT, Kind.TOKEN) and isinstance(value, str):
        return unicodedata.normalize("NFC", value)
    if kind is Kind.BOOL and isinstance(value, bool):
        return "true" if value else "false"
    if kind in (Kind.INT, Kind.DECIMAL) and isinstance(value, int | float) and not isinstance(value, bool):
        # A float in an integer field (7.5, or 9.0) is written as it is, and the XSD refuses it by name.
        return str(value) if isinstance(value, int) else repr(value)
    wanted = {Kind.TEXT: "chuỗi chữ", Kind.TOKEN: "chuỗi chữ", Kind.BOOL: "true/false",
              Kind.INT: "số nguyên", Kind.DECIMAL: "số"}[kind]
    raise _export_error(path, f"giá trị {value!r} sai kiểu, cần {wanted}")


def _write(parent: etree._Element, fields: Sequence[Field], keys: frozenset[str], data: Any, path: str) -> None:
    if not isinstance(data, Mapping):
        raise _export_error(path, f"cần một dict, nhận được {type(data).__name__}")
    unknown = sorted(str(key) for key in data.keys() - keys)
    if unknown:
        where = f"{path}." if path else ""
        raise _export_error(where + unknown[0], "trường này không có trong lược đồ hocba 1.0")
    for field in fields:
        here = f"{path}.{field.key}" if path else field.key
        if field.key not in data:
            raise _export_error(here, "thiếu trường này")
        value = data[field.key]
        if value is None:
            if field.optional:
                continue
            raise _export_error(here, "thiếu giá trị bắt buộc")
        element = etree.SubElement(parent, _q(field.tag))
        if field.kind is Kind.GROUP:
            _write(element, field.fields, field.keys, value, here)
        elif field.kind is Kind.LIST:
            if not isinstance(value, list | tuple):
                raise _export_error(here, f"cần một danh sách, nhận được {type(value).__name__}")
            for i, item in enumerate(value):
                _write(etree.SubElement(element, _q(field.item)), field.fields, field.keys, item, f"{here}[{i}]")
        else:
            try:
                element.text = _lexical(field, value, here)
            except ValueError as error:
                if isinstance(error, RecordSchemaError):
                    raise
                problem = "có ký tự XML không cho phép (ký tự điều khiển hoặc mã không hợp lệ)"
                raise _export_error(here, problem) from error


def _export_error(field_path: str, problem: str) -> RecordExportError:
    element = _element_path_of(field_path)
    label = ELEMENT_LABELS.get(element.rsplit("/", 1)[-1].split("[")[0], "")
    named = f"{element} ({label})" if label else element
    return RecordExportError(f"Nội dung học bạ không hợp lệ theo lược đồ hocba {XML_VERSION}: {named}: {problem}.",
                             element=element, field=field_path)


def _element_path_of(field_path: str) -> str:
    """"years[0].subjects[2].score" -> "years/year[1]/subjects/subject[3]/score"."""
    parts = []
    fields: Sequence[Field] = DOCUMENT_FIELDS
    for step in field_path.split("."):
        key, _, index = step.partition("[")
        field = next((f for f in fields if f.key == key), None)
        if field is None:
            parts.append(key)
            break
        parts.append(field.tag)
        if index and field.kind is Kind.LIST:
            parts.append(f"{field.item}[{int(index.rstrip(']')) + 1}]")
        fields = field.fields
    return "/".join(parts)


# --- XML: validation and its messages -------------------------------------------------------------------

_local = threading.local()


def xml_schema() -> etree.XMLSchema:
    """The hocba 1.0 XSD, parsed once per thread from the package folder."""
    schema = getattr(_local, "schema", None)
    if schema is None:
        source = resources.files("portal.records").joinpath("schema", SCHEMA_FILE).read_bytes()
        schema = _local.schema = etree.XMLSchema(etree.fromstring(source))
    return schema


def schema_text() -> bytes:
    """The XSD itself, e.g. to serve it next to the records or hand it to another system."""
    return resources.files("portal.records").joinpath("schema", SCHEMA_FILE).read_bytes()


# What a value of each type must look like: XSD built-ins and the named types of hocba-1.0.xsd.
_TYPE_WORDS = {
    "int": "số nguyên", "integer": "số nguyên", "decimal": "số thập phân (dấu chấm)", "boolean": "true hoặc false",
    "date": "ngày có thật, dạng YYYY-MM-DD", "dateTime": "thời điểm dạng YYYY-MM-DDThh:mm:ssZ",
    "anyURI": "địa chỉ URL", "Score": "số nguyên từ 1 đến 10", "Grade": "số nguyên từ 1 đến 5",
    "Days": "số nguyên từ 0 đến 366", "HeightCm": "số nguyên (cm) từ 1 đến 300",
    "WeightKg": "số thập phân (kg, dấu chấm) lớn hơn 0, tối đa 300", "VersionNumber": "số nguyên từ 1",
    "Date": "ngày có thật, dạng YYYY-MM-DD", "Timestamp": "thời điểm UTC dạng YYYY-MM-DDThh:mm:ssZ",
    "Url": "địa chỉ URL",
}
_PROBLEMS: tuple[tuple[re.Pattern[str], Callable[[re.Match[str]], str]], ...] = (
    (re.compile(r"\[facet 'maxInclusive'\] The value '(.*)' is greater than the maximum value allowed \('(.*)'\)"),
     lambda m: f"giá trị '{_short(m[1])}' lớn hơn mức tối đa {m[2]}"),
    (re.compile(r"\[facet 'minInclusive'\] The value '(.*)' is less than the minimum value allowed \('(.*)'\)"),
     lambda m: f"giá trị '{_short(m[1])}' nhỏ hơn mức tối thiểu {m[2]}"),
    (re.compile(r"\[facet 'minExclusive'\] The value '(.*)' must be greater than '(.*)'"),
     lambda m: f"giá trị '{_short(m[1])}' phải lớn hơn {m[2]}"),
    (re.compile(r"\[facet 'enumeration'\] The value '(.*)' is not an element of the set \{(.*)\}"),
     lambda m: f"giá trị '{_short(m[1])}' không thuộc các giá trị cho phép: {m[2]}"),
    (re.compile(r"\[facet 'pattern'\] The value '(.*)' is not accepted by the pattern"),
     lambda m: f"giá trị '{_short(m[1])}' sai khuôn dạng"),
    (re.compile(r"\[facet 'minLength'\] The value has a length of '0'"), lambda m: "không được để trống"),
    (re.compile(r"\[facet 'maxLength'\] .* allowed maximum length of '(\d+)'"),
     lambda m: f"quá dài (tối đa {m[1]} ký tự)"),
    (re.compile(r": '(.*)' is not a valid value of the (?:local )?(?:atomic|union|list) type '(?:\{.*\}|xs:)?(\w+)'"),
     lambda m: f"giá trị '{_short(m[1])}' không hợp lệ" + (f", cần {_TYPE_WORDS[m[2]]}" if m[2] in _TYPE_WORDS
                                                            else "")),
    (re.compile(r": '(.*)' is not a valid value of "), lambda m: f"giá trị '{_short(m[1])}' không hợp lệ"),
    (re.compile(r"Missing child element\(s\)\. Expected is (?:one of )?\( (.*) \)"),
     lambda m: f"thiếu phần tử con {_tags(m[1])}"),
    (re.compile(r"This element is not expected\. Expected is (?:one of )?\( (.*) \)"),
     lambda m: f"phần tử không đúng chỗ; ở đây cần {_tags(m[1])}"),
    (re.compile(r"This element is not expected"), lambda m: "phần tử không có trong lược đồ hoặc không đúng chỗ"),
    (re.compile(r"Duplicate key-sequence \['(.*)'\]"), lambda m: f"mã '{_short(m[1])}' bị trùng"),
    (re.compile(r"The attribute '(\w+)' is required but missing"), lambda m: f"thiếu thuộc tính {m[1]}"),
    (re.compile(r"attribute '(\w+)'.*fixed value constraint '(.*)'"),
     lambda m: f"thuộc tính {m[1]} phải là '{m[2]}'"),
    (re.compile(r"Element '.*': Character content other than whitespace is not allowed"),
     lambda m: "không được chứa chữ, chỉ chứa các phần tử con"),
    (re.compile(r"No matching global declaration available for the validation root"),
     lambda m: "phần tử gốc không phải hocBa"),
)


def _short(value: str, limit: int = 60) -> str:
    return value if len(value) <= limit else value[:limit] + "…"


def _tags(expected: str) -> str:
    return ", ".join(t.rsplit("}", 1)[-1] for t in expected.split(", "))


# What a value must look like where the XSD checks a pattern (its message does not say which type).
_PATTERN_WORDS = {
    **dict.fromkeys(("birthDate", "enrolledOn", "awardedOn", "datedOn"), _TYPE_WORDS["Date"]),
    "createdAt": _TYPE_WORDS["Timestamp"], "schoolYear": "năm học dạng 2024-2025",
    "replaces": "mã học bạ gồm chữ in hoa và số", "code": "mã gồm chữ, số và các dấu _ . : -",
}


def _problem(message: str, tag: str) -> str:
    for pattern, say in _PROBLEMS:
        match = pattern.search(message)
        if match:
            problem = say(match)
            if "[facet 'pattern']" in message and tag in _PATTERN_WORDS:
                problem += f", cần {_PATTERN_WORDS[tag]}"
            return problem
    return "không hợp lệ"


def _readable_path(element: etree._Element) -> str:
    """"years/year[1]/subjects/subject[3]/score" for an element of a record tree (root left out)."""
    parts = []
    while element is not None and element.getparent() is not None:
        name = etree.QName(element).localname
        if name in _LIST_ITEM_TAGS:
            name += f"[{element.getparent().index(element) + 1}]"
        parts.append(name)
        element = element.getparent()
    return "/".join(reversed(parts)) or XML_ROOT


def _field_path(element_path: str) -> str:
    """"years/year[1]/subjects/subject[3]/score" -> "years[0].subjects[2].score"."""
    out: list[str] = []
    for part in element_path.split("/"):
        name, _, index = part.partition("[")
        if index and name in _LIST_ITEM_TAGS and out:
            out[-1] += f"[{int(index.rstrip(']')) - 1}]"
        elif name in _FIELD_BY_TAG:
            out.append(_FIELD_BY_TAG[name].key)
        else:
            out.append(name)
    return ".".join(out)


def _validate(root: etree._Element, error: type[RecordSchemaError], lead: str) -> None:
    schema = xml_schema()
    if schema.validate(root):
        return
    entry = schema.error_log[0]  # the first error: the one that caused the rest
    found = root.getroottree().xpath(entry.path) if entry.path else []
    element = _readable_path(found[0]) if found else None
    tag = etree.QName(found[0]).localname if found else ""
    label = ELEMENT_LABELS.get(tag, "")
    named = f"{element} ({label})" if label else (element or XML_ROOT)
    raise error(f"{lead}: {named}: {_problem(entry.message, tag)}.", element=element,
                field=_field_path(element) if element else None, detail=entry.message)


# --- XML: the exporter and the reader ----------------------------------------------------------------


class HocBaXmlV1:
    """Our own XML schema, version 1.0 (namespace urn:hocbaso:hocba:1)."""

    name = "hocba-xml-1.0"
    label = "XML (lược đồ học bạ số 1.0)"
    media_type = "application/xml"
    extension = "xml"
    namespace = XML_NAMESPACE
    version = XML_VERSION
    content_format = CONTENT_FORMAT

    def tree(self, content: Mapping[str, Any]) -> etree._Element:
        """The validated XML tree of a content dict; `RecordExportError` names what does not fit."""
        if not isinstance(content, Mapping):
            raise RecordExportError(f"Nội dung học bạ phải là một dict, nhận được {type(content).__name__}.")
        if content.get("format") != self.content_format:
            raise RecordExportError(f"Nội dung học bạ có định dạng {content.get('format')!r}; lược đồ hocba "
                                    f"{self.version} nhận định dạng {self.content_format}.", field="format")
        root = etree.Element(_q(XML_ROOT), nsmap={None: self.namespace})
        root.set("version", self.version)
        _write(root, DOCUMENT_FIELDS, DOCUMENT_KEYS, {k: v for k, v in content.items() if k != "format"}, "")
        _validate(root, RecordExportError, f"Nội dung học bạ không hợp lệ theo lược đồ hocba {self.version}")
        return root

    def export(self, content: Mapping[str, Any]) -> bytes:
        return etree.tostring(self.tree(content), xml_declaration=True, encoding="UTF-8", pretty_print=True)

    def from_tree(self, root: etree._Element) -> dict[str, Any]:
        """The content dict of a parsed document of this version (validated here)."""
        for element in root.iter():
            if element.text and not element.text.isascii():
                element.text = unicodedata.normalize("NFC", element.text)
        _validate(root, RecordXmlError, f"Tệp XML không hợp lệ theo lược đồ hocba {self.version}")
        return {"format": self.content_format, **_read(root, DOCUMENT_FIELDS)}


def _read(parent: etree._Element, fields: Sequence[Field]) -> dict[str, Any]:
    children = {etree.QName(child).localname: child for child in parent}
    data: dict[str, Any] = {}
    for field in fields:
        element = children.get(field.tag)
        if element is None:
            data[field.key] = None
        elif field.kind is Kind.GROUP:
            data[field.key] = _read(element, field.fields)
        elif field.kind is Kind.LIST:
            data[field.key] = [_read(item, field.fields) for item in element]
        else:
            data[field.key] = _value(field.kind, element.text or "")
    return data


def _value(kind: Kind, text: str) -> Any:
    if kind is Kind.TEXT:
        return text
    if kind is Kind.TOKEN:
        return text.strip()
    if kind is Kind.INT:
        return int(text)
    if kind is Kind.DECIMAL:
        return float(text)
    return text.strip() in ("true", "1")


XML_V1 = HocBaXmlV1()
# Readers by (namespace, version attribute): a 1.1 or the Ministry's reader is one more entry.
XML_READERS: dict[tuple[str, str], HocBaXmlV1] = {(XML_NAMESPACE, XML_VERSION): XML_V1}


def parse_xml(data: bytes) -> dict[str, Any]:
    """The content dict of a record XML (ours, any known version), validated; `RecordXmlError` if not one.

    Text is normalised to NFC before validation, so a document typed on a system that writes NFD reads
    the same as its NFC form.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"parse_xml needs bytes, got {type(data).__name__}")
    if len(data) > MAX_XML_BYTES:
        raise RecordXmlError(f"Tệp XML quá lớn ({len(data)} byte; tối đa {MAX_XML_BYTES} byte): không phải học bạ.")
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, remove_comments=True,
                             remove_pis=True, huge_tree=False)
    try:
        tree = etree.fromstring(bytes(data), parser).getroottree()
    except etree.XMLSyntaxError as error:
        raise RecordXmlError(f"Tệp không phải XML hợp lệ (lỗi cú pháp ở dòng {error.lineno}).",
                             detail=str(error)) from error
    if tree.docinfo.doctype or tree.docinfo.internalDTD is not None:
        raise RecordXmlError("Tệp XML có khai báo DOCTYPE/thực thể: học bạ số không dùng, không đọc tệp này.")
    root = tree.getroot()
    name = etree.QName(root)
    if name.namespace not in {namespace for namespace, _version in XML_READERS}:
        raise RecordXmlError(f"Tệp XML không phải học bạ số theo lược đồ của hệ thống: phần tử gốc "
                             f"{name.localname!r} thuộc không gian tên {name.namespace or '(không có)'!r}, "
                             f"cần {XML_NAMESPACE!r}.", element=name.localname)
    if name.localname != XML_ROOT:
        raise RecordXmlError(f"Tệp XML có phần tử gốc {name.localname!r}, cần {XML_ROOT!r}.", element=name.localname)
    version = root.get("version")
    if version is None:
        raise RecordXmlError(f"Tệp XML thiếu thuộc tính version ở phần tử gốc {XML_ROOT!r}.", element=XML_ROOT)
    reader = XML_READERS.get((name.namespace, version))
    if reader is None:
        known = ", ".join(sorted(v for ns, v in XML_READERS if ns == name.namespace))
        raise RecordXmlError(f"Tệp XML là học bạ số phiên bản {version!r}; hệ thống đọc được phiên bản: {known}.",
                             element=XML_ROOT)
    return reader.from_tree(root)


# --- canonical JSON --------------------------------------------------------------------------------------

MAX_SAFE_INTEGER = 2**53 - 1  # beyond this a JSON number means different things to different readers


def _number(value: int | float, path: str) -> str:
    """A number as RFC 8785 (ECMAScript's Number.toString) writes it: 30.0 -> 30, 1e21 -> 1e+21."""
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise ValueError(f"canonical JSON: {path or 'value'}: integer {value} is beyond 2**53 - 1")
        return str(value)
    if not math.isfinite(value):
        raise ValueError(f"canonical JSON: {path or 'value'}: {value!r} is not a JSON number")
    if value == 0:
        return "0"
    sign, digits_tuple, exponent = Decimal(repr(value)).normalize().as_tuple()
    digits = "".join(map(str, digits_tuple))
    k, n = len(digits), len(digits) + int(exponent)  # value = 0.digits * 10**n
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        text = "0." + "0" * -n + digits
    else:
        mantissa = digits[0] + ("." + digits[1:] if k > 1 else "")
        text = f"{mantissa}e{'+' if n - 1 >= 0 else '-'}{abs(n - 1)}"
    return ("-" if sign else "") + text


def _write_json(value: Any, out: list[str], path: str) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(json.dumps(unicodedata.normalize("NFC", value), ensure_ascii=False))
    elif isinstance(value, int | float):
        out.append(_number(value, path))
    elif isinstance(value, Mapping):
        items = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"canonical JSON: {path or 'value'}: key {key!r} is not a string")
            key = unicodedata.normalize("NFC", key)
            if key in items:
                raise ValueError(f"canonical JSON: {path or 'value'}: two keys are {key!r} once in NFC")
            items[key] = item
        out.append("{")
        # RFC 8785 orders keys by their UTF-16 code units (the same as code points below U+10000).
        for i, key in enumerate(sorted(items, key=lambda k: k.encode("utf-16-be"))):
            out.append("," if i else "")
            out.append(json.dumps(key, ensure_ascii=False))
            out.append(":")
            _write_json(items[key], out, f"{path}.{key}" if path else key)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for i, item in enumerate(value):
            out.append("," if i else "")
            _write_json(item, out, f"{path}[{i}]")
        out.append("]")
    else:
        raise TypeError(f"canonical JSON: {path or 'value'}: {type(value).__name__} is not a JSON value")


class CanonicalJson:
    """The content as canonical JSON: UTF-8, NFC, sorted keys, no whitespace, RFC 8785 numbers."""

    name = "canonical-json"
    label = "JSON (dạng chuẩn tắc)"
    media_type = "application/json"
    extension = "json"

    def export(self, content: Mapping[str, Any]) -> bytes:
        out: list[str] = []
        _write_json(content, out, "")
        return "".join(out).encode("utf-8")


# --- the registry and the short forms ---------------------------------------------------------------------

EXPORTERS: dict[str, Exporter] = {}


def register(instance: Exporter) -> Exporter:
    """Add an exporter under its name (once: a name means one format forever)."""
    if instance.name in EXPORTERS:
        raise ValueError(f"an exporter named {instance.name!r} is already registered")
    EXPORTERS[instance.name] = instance
    return instance


CANONICAL_JSON = CanonicalJson()
register(XML_V1)
register(CANONICAL_JSON)


def exporter(name: str) -> Exporter:
    """The exporter registered under `name`; `UnknownExporter` names the known ones otherwise."""
    try:
        return EXPORTERS[name]
    except KeyError:
        raise UnknownExporter(f"no exporter named {name!r}; known: {', '.join(EXPORTERS)}") from None


def export_xml(content: Mapping[str, Any]) -> bytes:
    """The record version as XML (hocba 1.0), validated against the XSD."""
    return XML_V1.export(content)


def canonical_json(content: Any) -> bytes:
    """The canonical JSON bytes of a content dict (or any JSON value)."""
    return CANONICAL_JSON.export(content)


def content_hash(content: Any) -> str:
    """SHA-256 (hex) of the canonical JSON: the fingerprint of a record version's content."""
    return hashlib.sha256(canonical_json(content)).hexdigest()


__all__ = [
    "CANONICAL_JSON", "EXPORTERS", "XML_NAMESPACE", "XML_V1", "XML_VERSION", "CanonicalJson", "Exporter",
    "HocBaXmlV1", "RecordExportError", "RecordSchemaError", "RecordXmlError", "UnknownExporter",
    "canonical_json", "content_hash", "export_xml", "exporter", "parse_xml", "register", "schema_text",
    "xml_schema",
]
