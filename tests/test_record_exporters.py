"""The structured forms of a record version: hocba 1.0 XML (validated, round trip) and canonical JSON."""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import threading
import unicodedata
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

import portal.records
from portal.assessment.classification import Outcome
from portal.records import exporters
from portal.records.exporters import (
    EXPORTERS,
    CanonicalJson,
    Exporter,
    HocBaXmlV1,
    RecordExportError,
    RecordXmlError,
    UnknownExporter,
    canonical_json,
    content_hash,
    export_xml,
    exporter,
    parse_xml,
)
from tests.record_factory import longest_content, sample_content

NS = "urn:hocbaso:hocba:1"
N = {"h": NS}
XSD_PATH = Path(portal.records.__file__).parent / "schema" / "hocba-1.0.xsd"
DOC_PATH = Path(__file__).resolve().parents[1] / "docs" / "record-schema.md"
# Hypothesis keeps no example database: the suite leaves no .hypothesis/ folder in the work tree.
PROPERTY_SETTINGS = settings(max_examples=100, deadline=None, database=None)

# The element that holds each item of a list (docs/record-schema.md); everything else is the key in camelCase.
ITEM_TAGS = {"history": "entry", "years": "year", "subjects": "subject", "qualities": "quality",
             "general_competencies": "competency", "specific_competencies": "competency", "awards": "award"}


def camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(part.capitalize() for part in rest)


def deep_nfc(value: Any) -> Any:
    if isinstance(value, str):
        return unicodedata.normalize("NFC", value)
    if isinstance(value, dict):
        return {k: deep_nfc(v) for k, v in value.items()}
    if isinstance(value, list):
        return [deep_nfc(v) for v in value]
    return value


def leaves(value: Any, xpath: str = "/h:hocBa", path: tuple = ()) -> Iterator[tuple[tuple, str, Any]]:
    """(content path, XPath of its element, value) of every scalar in a content dict."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "format" and not path:
                continue
            yield from leaves(item, f"{xpath}/h:{camel(key)}", (*path, key))
    elif isinstance(value, list):
        item_tag = ITEM_TAGS[path[-1]]
        for i, item in enumerate(value):
            yield from leaves(item, f"{xpath}/h:{item_tag}[{i + 1}]", (*path, i))
    else:
        yield path, xpath, value


@functools.cache
def schema() -> etree.XMLSchema:
    """The XSD read straight from its file, apart from the exporter's own copy."""
    return etree.XMLSchema(etree.parse(str(XSD_PATH)))


def tree_of(content: dict[str, Any]) -> etree._Element:
    return etree.fromstring(export_xml(content))


def set_at(content: dict[str, Any], path: tuple, value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(content)
    target = changed
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return changed


# --- XML: valid, complete, faithful -----------------------------------------------------------------------


@pytest.mark.parametrize("content", [sample_content(1), sample_content(5), longest_content(),
                                     sample_content(2, number=2, replaces="HBAAAA2222BB")],
                         ids=["1-year", "5-years", "longest", "correction"])
def test_exported_xml_validates_against_the_shipped_xsd(content: dict[str, Any]) -> None:
    data = export_xml(content)
    assert data.startswith(b"<?xml version='1.0' encoding='UTF-8'?>")
    root = etree.fromstring(data)
    assert schema().validate(root), schema().error_log
    assert root.tag == f"{{{NS}}}hocBa"
    assert root.get("version") == "1.0"
    assert len(root.findall("h:years/h:year", N)) == len(content["years"])


@pytest.mark.parametrize("content", [sample_content(5), longest_content(),
                                     sample_content(2, number=2, replaces="HBAAAA2222BB")],
                         ids=["5-years", "longest", "correction"])
def test_every_value_of_the_content_is_in_its_element(content: dict[str, Any]) -> None:
    root = tree_of(content)
    checked = 0
    for path, xpath, value in leaves(content):
        found = root.getroottree().xpath(xpath, namespaces=N)
        if value is None:
            assert found == [], f"{path}: None must leave the element out"
            continue
        assert len(found) == 1, f"{path}: no element {xpath}"
        text = found[0].text or ""
        if isinstance(value, bool):
            assert text == ("true" if value else "false"), path
        elif isinstance(value, float):
            assert float(text) == value, path
        else:
            assert text == str(value), path
        checked += 1
    assert checked > 200
    # ... and nothing else: as many leaf elements (empty lists left aside) as values that are not None.
    containers = {camel(key) for key in ITEM_TAGS}
    leaf_elements = [e for e in root.iter() if len(e) == 0 and etree.QName(e).localname not in containers]
    assert len(leaf_elements) == checked


@pytest.mark.parametrize("content", [sample_content(1), sample_content(5), longest_content()],
                         ids=["1-year", "5-years", "longest"])
def test_round_trip_gives_the_same_content(content: dict[str, Any]) -> None:
    assert parse_xml(export_xml(content)) == content


def test_round_trip_with_every_optional_missing_and_lists_empty() -> None:
    content = sample_content(3)
    for key in ("replaces",):
        content["record"][key] = None
    for key in ("moet_code", "commune", "district", "city", "principal"):
        content["school"][key] = None
    for key in ("gender", "birth_date", "ethnicity", "nationality", "birth_place", "hometown", "address",
                "father_name", "mother_name", "guardian_name", "register_number", "disability"):
        content["pupil"][key] = None
    content["history"] = []
    for page in content["years"]:
        for key in ("homeroom_teacher", "principal", "height_cm", "weight_kg", "outcome", "outcome_label",
                    "completion", "promoted", "place", "dated_on"):
            page[key] = None
        for row in page["subjects"]:
            row.update(level=None, score=None, comment="")
        for group in ("qualities", "general_competencies", "specific_competencies"):
            for row in page[group]:
                row.update(level=None)
        page["awards"] = []
    page["specific_competencies"] = []
    data = export_xml(content)
    assert b"<awards/>" in data and b"<history/>" in data and b"<comment></comment>" in data
    assert parse_xml(data) == content


def test_the_same_content_gives_the_same_bytes() -> None:
    content = sample_content(5)
    reordered = json.loads(json.dumps(content, sort_keys=True))  # same values, other key order
    assert export_xml(content) == export_xml(copy.deepcopy(content)) == export_xml(reordered)


def test_weights_and_booleans_keep_their_values() -> None:
    content = sample_content(2)
    content["years"][0].update(weight_kg=30, promoted=False)
    content["years"][1].update(weight_kg=27.25, promoted=True)
    content["pupil"]["personal_plan"] = True
    again = parse_xml(export_xml(content))
    assert again["years"][0]["weight_kg"] == 30.0 and isinstance(again["years"][0]["weight_kg"], float)
    assert again["years"][1]["weight_kg"] == 27.25
    assert again["years"][0]["promoted"] is False and again["years"][1]["promoted"] is True
    assert again["pupil"]["personal_plan"] is True


def test_special_characters_survive_the_round_trip() -> None:
    content = sample_content(1)
    content["years"][0]["supplementary_note"] = "Dòng 1\r\nDòng 2\tcó <thẻ> & \"ngoặc\" ]]> 😀 "
    content["pupil"]["address"] = "  Số 5 & 7, <Ấp 3>  "
    assert parse_xml(export_xml(content)) == content


# --- XML: the schema refuses bad values, and export names the element ---------------------------------------

BAD_VALUES = [
    (("years", 0, "subjects", 0, "score"), 0, "score", "nhỏ hơn mức tối thiểu 1"),
    (("years", 0, "subjects", 0, "score"), 11, "score", "lớn hơn mức tối đa 10"),
    (("years", 0, "subjects", 0, "score"), 7.5, "score", "số nguyên từ 1 đến 10"),
    (("years", 0, "subjects", 0, "score"), 9.0, "score", "số nguyên từ 1 đến 10"),
    (("years", 0, "subjects", 1, "level"), "X", "level", "không thuộc các giá trị cho phép"),
    (("years", 0, "qualities", 0, "level"), "H", "level", "không thuộc các giá trị cho phép"),
    (("years", 0, "dated_on"), "2025-02-30", "datedOn", "ngày có thật"),
    (("years", 0, "dated_on"), "28/05/2025", "datedOn", "YYYY-MM-DD"),
    (("pupil", "birth_date"), "2014-09-02+07:00", "birthDate", "YYYY-MM-DD"),
    (("pupil", "gender"), "nam", "gender", "không thuộc các giá trị cho phép"),
    (("years", 0, "outcome"), "gioi", "outcome", "không thuộc các giá trị cho phép"),
    (("years", 0, "grade"), 6, "grade", "lớn hơn mức tối đa 5"),
    (("years", 0, "absent_excused"), -1, "absentExcused", "nhỏ hơn mức tối thiểu 0"),
    (("years", 0, "weight_kg"), 0.0, "weightKg", "phải lớn hơn 0"),
    (("years", 0, "school_year"), "2024", "schoolYear", "sai khuôn dạng"),
    (("record", "created_at"), "2025-05-28 03:12:00", "createdAt", "thời điểm UTC"),
    (("pupil", "full_name"), "", "fullName", "không được để trống"),
    (("years", 0, "completion"), "Hoàn thành chương trình", "completion", "không thuộc các giá trị cho phép"),
]


@pytest.mark.parametrize(("path", "value", "tag", "words"), BAD_VALUES, ids=[f"{p[-1]}={v!r}" for p, v, *_ in
                                                                                BAD_VALUES])
def test_the_xsd_refuses_a_bad_value(path: tuple, value: Any, tag: str, words: str) -> None:
    root = tree_of(sample_content(1))
    element = root.getroottree().xpath(next(x for p, x, _v in leaves(sample_content(1)) if p == path),
                                       namespaces=N)[0]
    element.text = str(value)
    assert not schema().validate(root)
    assert f"}}{tag}'" in str(schema().error_log)


@pytest.mark.parametrize(("path", "value", "tag", "words"), BAD_VALUES, ids=[f"{p[-1]}={v!r}" for p, v, *_ in
                                                                                BAD_VALUES])
def test_export_refuses_a_bad_value_naming_the_element(path: tuple, value: Any, tag: str, words: str) -> None:
    with pytest.raises(RecordExportError) as caught:
        export_xml(set_at(sample_content(1), path, value))
    error = caught.value
    assert error.element is not None and error.element.endswith(tag)
    assert error.field == ".".join(f"[{s}]" if isinstance(s, int) else s for s in path).replace(".[", "[")
    assert error.element in str(error) and words in str(error)
    assert str(error).startswith("Nội dung học bạ không hợp lệ theo lược đồ hocba 1.0: ")


@pytest.mark.parametrize(("change", "field", "words"), [
    (lambda c: c["pupil"].update(full_name=None), "pupil.full_name", "thiếu giá trị bắt buộc"),
    (lambda c: c["pupil"].pop("hometown"), "pupil.hometown", "thiếu trường này"),
    (lambda c: c["pupil"].update(nickname="Tí"), "pupil.nickname", "không có trong lược đồ"),
    (lambda c: c["years"][0]["subjects"][0].update(score="9"), "years[0].subjects[0].score", "sai kiểu"),
    (lambda c: c["years"][0].update(height_cm=True), "years[0].height_cm", "sai kiểu"),
    (lambda c: c["years"][0].update(promoted="yes"), "years[0].promoted", "sai kiểu"),
    (lambda c: c["years"][0].update(awards=None), "years[0].awards", "thiếu giá trị bắt buộc"),
    (lambda c: c["years"][0].update(awards="Học sinh Xuất sắc"), "years[0].awards", "cần một danh sách"),
    (lambda c: c["years"][0]["subjects"][1].update(comment="a\x00b"), "years[0].subjects[1].comment",
     "ký tự XML không cho phép"),
    (lambda c: c["years"][0]["qualities"][1].update(code=c["years"][0]["qualities"][0]["code"]),
     "years[0].qualities[1]", "bị trùng"),
    (lambda c: c.update(years=[]), "years", "thiếu phần tử con year"),
], ids=["required-none", "missing-key", "unknown-key", "string-score", "bool-height", "string-bool", "list-none",
        "list-string", "control-char", "duplicate-code", "no-year"])
def test_export_refuses_content_that_does_not_fit(change: Any, field: str, words: str) -> None:
    content = sample_content(1)
    change(content)
    with pytest.raises(RecordExportError) as caught:
        export_xml(content)
    assert caught.value.field == field
    assert words in str(caught.value)


def test_export_refuses_another_content_format() -> None:
    with pytest.raises(RecordExportError, match="định dạng 2"):
        export_xml({**sample_content(1), "format": 2})


# --- XML: reading documents from elsewhere --------------------------------------------------------------------


def test_parse_reads_another_prefix_and_layout_the_same() -> None:
    content = sample_content(2)
    root = tree_of(content)
    prefixed = etree.Element(f"{{{NS}}}hocBa", nsmap={"hb": NS}, version="1.0")
    prefixed.extend(copy.deepcopy(child) for child in root)
    for element in prefixed.iter():
        element.tail = None
        if len(element):
            element.text = None
    compact = etree.tostring(prefixed, encoding="UTF-8")
    assert b"<hb:record>" in compact and b"\n" not in compact.split(b"?>")[-1]
    assert parse_xml(compact) == content


def test_parse_gives_nfc_for_an_nfd_document() -> None:
    content = sample_content(1)
    nfd = unicodedata.normalize("NFD", export_xml(content).decode()).encode()
    assert nfd != export_xml(content)
    assert parse_xml(nfd) == content


def test_parse_reads_boolean_digits() -> None:
    data = export_xml(sample_content(1)).replace(b"<personalPlan>false</personalPlan>",
                                                 b"<personalPlan>1</personalPlan>")
    assert parse_xml(data)["pupil"]["personal_plan"] is True


GOOD = export_xml(sample_content(1))


@pytest.mark.parametrize(("data", "words"), [
    (b"", "không phải XML hợp lệ"),
    (b"<hocBa", "không phải XML hợp lệ"),
    (b"\xff\xfe rubbish", "không phải XML hợp lệ"),
    (b"<html><body/></html>", "không gian tên '(không có)'"),
    (GOOD.replace(NS.encode(), b"urn:bogd:hocba:1"), "không gian tên 'urn:bogd:hocba:1'"),
    (GOOD.replace(b' xmlns="urn:hocbaso:hocba:1"', b""), "không phải học bạ số"),
    (GOOD.replace(b"<hocBa ", b"<hocBaSo ").replace(b"</hocBa>", b"</hocBaSo>"), "phần tử gốc 'hocBaSo'"),
    (GOOD.replace(b'version="1.0"', b'version="2.0"'), "phiên bản '2.0'"),
    (GOOD.replace(b' version="1.0"', b""), "thiếu thuộc tính version"),
    (GOOD.replace(b"<score>9</score>", b"<score>11</score>", 1), "score (điểm KTĐK cuối năm)"),
    (GOOD.replace(b"<level>T</level>", b"<level>X</level>", 1), "level (mức đạt được)"),
    (GOOD.replace(b"<birthDate>2014-09-02</birthDate>", b"<birthDate>02/09/2014</birthDate>"), "birthDate"),
    (GOOD.replace(b"<fullName>", b"<ghiChu>x</ghiChu><fullName>"), "pupil/ghiChu"),
    (GOOD.replace(b"<pupilCode>7978640123</pupilCode>", b""), "phần tử không đúng chỗ; ở đây cần pupilCode"),
    (b'<?xml version="1.0"?><!DOCTYPE hocBa [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>'
     b'<hocBa xmlns="urn:hocbaso:hocba:1" version="1.0">&b;</hocBa>', "DOCTYPE"),
    (b'<?xml version="1.0"?><!DOCTYPE hocBa [<!ENTITY x SYSTEM "file:///etc/hostname">]>'
     b'<hocBa xmlns="urn:hocbaso:hocba:1" version="1.0">&x;</hocBa>', "DOCTYPE"),
], ids=["empty", "truncated", "binary", "html", "other-namespace", "no-namespace", "other-root", "version-2",
        "no-version", "score", "level", "date", "unknown-element", "missing-element", "entities", "external-entity"])
def test_parse_refuses_what_is_not_a_valid_record(data: bytes, words: str) -> None:
    with pytest.raises(RecordXmlError) as caught:
        parse_xml(data)
    assert words in str(caught.value)
    assert str(caught.value).startswith("Tệp")


def test_parse_refuses_a_huge_file() -> None:
    with pytest.raises(RecordXmlError, match="quá lớn"):
        parse_xml(b" " * (exporters.MAX_XML_BYTES + 1))


def test_parse_wants_bytes() -> None:
    with pytest.raises(TypeError):
        parse_xml(GOOD.decode())  # type: ignore[arg-type]


# --- round trip and canonical JSON on generated contents (NFC and NFD input, missing optionals, 1-5 years) -----

VI_LOWER = "aàảãáạăằẳẵắặâầẩẫấậbcdđeèẻẽéẹêềểễếệghiìỉĩíịklmnoòỏõóọôồổỗốộơờởỡớợpqrstuùủũúụưừửữứựvxyỳỷỹýỵ"
ALPHABET = VI_LOWER + VI_LOWER.upper() + "0123456789 ,.;:-()/&<>'\""


def vi(alphabet: str = ALPHABET, *, min_size: int = 1, max_size: int = 30) -> st.SearchStrategy[str]:
    """Vietnamese text, in NFC or in NFD (as macOS and some Excel files write it)."""
    return st.tuples(st.text(alphabet, min_size=min_size, max_size=max_size), st.sampled_from(["NFC", "NFD"])).map(
        lambda pair: unicodedata.normalize(pair[1], pair[0]))


LINE = vi()
TEXT = vi(ALPHABET + "\n\t\r", min_size=0, max_size=120)
DATE = st.dates(date(2005, 1, 1), date(2040, 12, 31)).map(date.isoformat)
CODE = st.text("abcdefghijklmnopqrstuvwxyz_0123456789", min_size=1, max_size=12)
RECORD_CODE = st.text("0123456789ABCDEFGHJKMNPQRSTVWXYZ", min_size=10, max_size=10).map("HB".__add__)


def opt(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


TRAIT = st.fixed_dictionaries({"code": CODE, "name": LINE, "level": opt(st.sampled_from(["T", "Đ", "C"])),
                               "comment": TEXT})


def traits(max_size: int) -> st.SearchStrategy[list[dict[str, Any]]]:
    return st.lists(TRAIT, max_size=max_size, unique_by=lambda row: row["code"])


OUTCOME = st.sampled_from([None, *Outcome]).map(
    lambda o: {"outcome": o.value if o else None, "outcome_label": o.label if o else None})
YEAR = st.tuples(st.fixed_dictionaries({
    "school_year": st.integers(2015, 2035).map(lambda y: f"{y}-{y + 1}"),
    "class_name": LINE, "grade": st.integers(1, 5), "school_name": LINE,
    "source": st.sampled_from(["this_school", "received"]),
    "homeroom_teacher": opt(LINE), "principal": opt(LINE),
    "height_cm": opt(st.integers(80, 180)),
    "weight_kg": opt(st.floats(10, 90, allow_nan=False) | st.integers(10, 90)),
    "absent_excused": st.integers(0, 366), "absent_unexcused": st.integers(0, 366),
    "subjects": st.lists(st.fixed_dictionaries({
        "code": CODE, "name": LINE, "level": opt(st.sampled_from(["T", "H", "C"])),
        "score": opt(st.integers(1, 10)), "comment": TEXT}), max_size=5, unique_by=lambda row: row["code"]),
    "qualities": traits(5), "general_competencies": traits(3), "specific_competencies": traits(3),
    "awards": st.lists(st.fixed_dictionaries({"title": LINE, "awarded_on": opt(DATE)}), max_size=3),
    "completion": opt(st.sampled_from(["Hoàn thành chương trình lớp học", "Hoàn thành chương trình tiểu học"])),
    "promoted": opt(st.booleans()), "supplementary_note": TEXT, "place": opt(LINE), "dated_on": opt(DATE),
}), OUTCOME).map(lambda pair: {**pair[0], **pair[1]})
CONTENT = st.fixed_dictionaries({
    "format": st.just(1),
    "record": st.fixed_dictionaries({
        "code": RECORD_CODE, "number": st.integers(1, 9), "replaces": opt(RECORD_CODE),
        "created_at": st.datetimes(datetime(2020, 1, 1), datetime(2040, 1, 1)).map(
            lambda d: d.replace(tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")),
        "scope_grade": st.integers(1, 5), "verify_url": RECORD_CODE.map("https://hocba.example.vn/verify/".__add__)}),
    "school": st.fixed_dictionaries({"name": LINE, **{k: opt(LINE) for k in (
        "moet_code", "commune", "district", "city", "principal")}}),
    "pupil": st.fixed_dictionaries({
        "pupil_code": LINE, "full_name": LINE, "gender": opt(st.sampled_from(["Nam", "Nữ"])), "birth_date": opt(DATE),
        **{k: opt(LINE) for k in ("ethnicity", "nationality", "birth_place", "hometown", "address", "father_name",
                                  "mother_name", "guardian_name", "register_number")},
        "personal_plan": st.booleans(), "disability": opt(LINE)}),
    "history": st.lists(st.fixed_dictionaries({
        "school_year": st.integers(2015, 2035).map(lambda y: f"{y}-{y + 1}"), "class_name": LINE,
        "school_name": LINE, "enrolled_on": opt(DATE), "confirmed_by": opt(LINE)}), max_size=5),
    "years": st.lists(YEAR, min_size=1, max_size=5),
})


@pytest.mark.slow
@PROPERTY_SETTINGS
@given(CONTENT)
def test_generated_contents_round_trip_and_give_the_bytes_of_their_nfc_form(content: dict[str, Any]) -> None:
    # Generating the contents is most of the time: one test checks both forms on each of them.
    expected = deep_nfc(content)
    data = export_xml(content)
    assert schema().validate(etree.fromstring(data))
    assert parse_xml(data) == expected
    assert export_xml(expected) == data
    text = canonical_json(content)
    assert text == canonical_json(expected)
    assert unicodedata.is_normalized("NFC", text.decode("utf-8"))
    assert json.loads(text) == expected
    assert content_hash(parse_xml(data)) == content_hash(content)


# --- canonical JSON ------------------------------------------------------------------------------------------


def test_canonical_json_exact_form() -> None:
    value = {"b": [1, 2.5, 30.0, None, True, False], "a": "Nguye\u0302\u0303n", "é": {"z": "", "y": "\n\"\\"}}
    assert canonical_json(value) == ('{"a":"Nguyễn","b":[1,2.5,30,null,true,false],'
                                     '"é":{"y":"\\n\\"\\\\","z":""}}').encode()


def test_canonical_json_is_stable_and_sorted_without_whitespace() -> None:
    content = sample_content(5)
    data = canonical_json(content)
    reordered = json.loads(json.dumps(content, sort_keys=True), object_pairs_hook=lambda p: dict(reversed(p)))
    assert canonical_json(copy.deepcopy(content)) == data == canonical_json(reordered)
    assert data == json.dumps(content, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()
    assert "Nguyễn Thị Ánh Tuyết".encode() in data  # UTF-8, not \u escapes
    assert content_hash(content) == hashlib.sha256(data).hexdigest()
    assert len(content_hash(content)) == 64


def test_an_nfd_content_gives_the_bytes_of_its_nfc_form() -> None:
    content = longest_content()
    nfd = json.loads(unicodedata.normalize("NFD", json.dumps(content, ensure_ascii=False)))
    assert nfd != content
    assert canonical_json(nfd) == canonical_json(content)
    assert content_hash(nfd) == content_hash(content)


@pytest.mark.parametrize(("number", "text"), [
    (0.0, "0"), (-0.0, "0"), (30.0, "30"), (33.5, "33.5"), (1e21, "1e+21"), (1e20, "100000000000000000000"),
    (1e-7, "1e-7"), (0.000001, "0.000001"), (333333333.3333333, "333333333.3333333"), (-1.5e-9, "-1.5e-9"),
    (2**53 - 1, "9007199254740991"), (5e-324, "5e-324"), (1.7976931348623157e308, "1.7976931348623157e+308"),
])
def test_canonical_json_numbers_are_written_as_rfc_8785_says(number: float, text: str) -> None:
    assert canonical_json([number]) == f"[{text}]".encode()


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 2**53, {1: "a"}, {"d": date(2025, 5, 28)}, {"s": {1}},
                                   {"é": 1, "e\u0301": 2}])
def test_canonical_json_refuses_what_json_cannot_say_exactly(value: Any) -> None:
    with pytest.raises((ValueError, TypeError)):
        canonical_json(value)


def test_content_hash_changes_when_any_value_changes() -> None:
    content = sample_content(1)
    seen = {content_hash(content)}
    changed = 0
    for path, _xpath, value in leaves(content):
        if isinstance(value, bool):
            other: Any = not value
        elif isinstance(value, int | float):
            other = value + 1
        elif value is None:
            other = "x"
        else:
            other = value + "."
        digest = content_hash(set_at(content, path, other))
        assert digest not in seen, f"changing {path} did not change the hash"
        seen.add(digest)
        changed += 1
    assert changed > 100
    # Order of rows counts too (the subjects are printed in that order), and so does an NFC-changing edit.
    swapped = copy.deepcopy(content)
    swapped["years"][0]["subjects"].reverse()
    assert content_hash(swapped) not in seen
    assert content_hash(set_at(content, ("pupil", "full_name"), "Nguyễn Thị Ánh Tuyêt")) not in seen


# --- the interface and the registry --------------------------------------------------------------------------


def test_registry_holds_both_forms_behind_one_interface() -> None:
    xml, js = exporter("hocba-xml-1.0"), exporter("canonical-json")
    assert isinstance(xml, HocBaXmlV1) and isinstance(js, CanonicalJson)
    assert set(EXPORTERS) >= {"hocba-xml-1.0", "canonical-json"}
    content = sample_content(1)
    for name, instance in EXPORTERS.items():
        assert isinstance(instance, Exporter)
        assert instance.name == name and instance.label and "/" in instance.media_type
        assert not instance.extension.startswith(".")
        assert instance.export(content) == instance.export(copy.deepcopy(content))
    assert (xml.media_type, xml.extension) == ("application/xml", "xml")
    assert (js.media_type, js.extension) == ("application/json", "json")
    assert xml.export(content) == export_xml(content)
    assert js.export(content) == canonical_json(content)


def test_unknown_exporter_names_the_known_ones() -> None:
    with pytest.raises(UnknownExporter, match=r"hocba-xml-1\.0"):
        exporter("bgd-xml")


def test_a_name_is_registered_once() -> None:
    with pytest.raises(ValueError, match="already registered"):
        exporters.register(CanonicalJson())


def test_the_xsd_is_package_data_parsed_once_per_thread() -> None:
    assert exporters.schema_text() == XSD_PATH.read_bytes()
    assert exporters.xml_schema() is exporters.xml_schema()
    other: list[etree.XMLSchema] = []
    thread = threading.Thread(target=lambda: other.append(exporters.xml_schema()))
    thread.start()
    thread.join()
    assert other[0] is not exporters.xml_schema()


# --- the schema document ------------------------------------------------------------------------------------


def test_the_schema_document_describes_every_element_and_type() -> None:
    doc = DOC_PATH.read_text(encoding="utf-8")
    xsd = etree.parse(str(XSD_PATH))
    xs = {"xs": "http://www.w3.org/2001/XMLSchema"}
    names = set(xsd.xpath("//xs:element/@name | //xs:simpleType/@name | //xs:complexType/@name | //xs:attribute/@name",
                          namespaces=xs))
    missing = sorted(name for name in names if f"`{name}`" not in doc)
    assert not missing, f"not documented in docs/record-schema.md: {missing}"
    for value in xsd.xpath("//xs:enumeration/@value", namespaces=xs):
        assert f"`{value}`" in doc, f"allowed value {value!r} not documented"
    assert NS in doc and 'version="1.0"' in doc
