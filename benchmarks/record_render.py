"""Benchmark: rendering the record PDF (portal.records.pdf) against stock xhtml2pdf on the same HTML.

    .venv/bin/python benchmarks/record_render.py [--runs 5] [--class-runs 3] [--pupils 40]

Needs no database: the record contents come from tests/record_factory.py. For each case it prints the median
over the runs of the render time per record, in milliseconds:

- 1-year and 5-year records, cold: the section cache emptied before each run, so every section is laid out;
- 5-year, "next year": the four earlier year pages were rendered before (as when last year's records were
  issued), the current year, the identity page and the study history are laid out;
- 5-year, new version of unchanged content (another code and number): only footers and QR codes change;
- a class of 40 different pupils (5 years each): cold, "next year", and a re-run where nothing changed;
- stock: one `pisa.CreatePDF` of the whole record as one HTML document (`document_html`, the same
  content, a footer frame with <pdf:pagenumber>/<pdf:pagecount>), for the 1-year, 5-year and class cases.

and the ratio stock / ours for each case; then the file size of ours against stock for the 1-year and 5-year
records and a pupil of the class (and ours as issued, its XML attached), with the number of embedded font
programs; target: ours no larger than 1.2x stock. Single process: rendering is pure Python, so a machine issues a
school's records with as many worker processes as it has cores.
"""

from __future__ import annotations

import argparse
import copy
import io
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))
from xhtml2pdf import pisa  # noqa: E402

from benchmarks import common  # noqa: E402
from portal.records import pdf as record_pdf  # noqa: E402
from portal.records.exporters import export_xml  # noqa: E402
from tests.record_factory import sample_content  # noqa: E402

NAMES = ["Nguyễn Thị Ánh Tuyết", "Trần Minh Khôi", "Lê Hoàng Bảo Ngọc", "Phạm Quốc Huy", "Võ Thị Mỹ Duyên"]
COMMENTS = ["Tích cực phát biểu xây dựng bài; viết chữ đẹp.", "Cần luyện đọc diễn cảm thêm ở nhà.",
            "Làm toán nhanh, trình bày sạch sẽ; hay giúp đỡ bạn.", "Hoàn thành tốt các bài tập được giao."]


def pupil(index: int, years: int = 5) -> dict[str, Any]:
    """A distinct pupil of the class: another name, code and comments, so no section is shared."""
    content = sample_content(years, code=f"HB{index:04d}TEST{index % 97:02d}")
    content["pupil"]["full_name"] = f"{NAMES[index % len(NAMES)]} {index:02d}"
    content["pupil"]["pupil_code"] = f"79786401{index:02d}"
    for page in content["years"]:
        for n, row in enumerate(page["subjects"]):
            row["comment"] = f"{COMMENTS[(index + n) % len(COMMENTS)]} ({index})"
    return content


def stock(content: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    status = pisa.CreatePDF(record_pdf.document_html(content), dest=out, encoding="utf-8",
                            resource_policy=record_pdf._resource_policy())
    if status.err:
        raise RuntimeError("xhtml2pdf failed")
    return out.getvalue()


SIZE_TARGET = 1.2  # ours / stock, file size


def font_programs(data: bytes) -> int:
    """How many embedded font programs (FontFile, FontFile2, FontFile3) the PDF carries."""
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(data))
    found = set()
    for page in reader.pages:
        stack = [page["/Resources"]]
        while stack:
            resources = stack.pop().get_object()
            for font in (resources.get("/Font") or {}).values():
                font = font.get_object()
                for described in [font, *(d.get_object() for d in font.get("/DescendantFonts", []))]:
                    descriptor = described.get("/FontDescriptor")
                    for key in ("/FontFile", "/FontFile2", "/FontFile3"):
                        if descriptor is not None and key in descriptor.get_object():
                            found.add(descriptor.get_object().raw_get(key).idnum)
            stack += [x.get_object()["/Resources"] for x in (resources.get("/XObject") or {}).values()
                      if "/Resources" in x.get_object()]
    return len(found)


def compare_sizes(cases: list[tuple[str, dict[str, Any]]]) -> None:
    """File size of ours and of stock on the same content, ratio and target; ours as issued (its XML attached)
    for information."""
    print(f"\nRecord PDF size, ours against stock (same content); target ours <= {SIZE_TARGET}x stock")
    print(f"{'case':30} {'ours KB':>8} {'+XML KB':>8} {'stock KB':>8} {'ratio':>6} {'font programs':>14}", flush=True)
    for label, content in cases:
        record_pdf.clear_cache()
        ours, theirs = record_pdf.render_pdf(content), stock(content)
        issued = record_pdf.render_pdf(content, xml=export_xml(content))
        ratio = len(ours) / len(theirs)
        verdict = "OK" if ratio <= SIZE_TARGET else "OVER"
        print(f"{label:30} {len(ours) / 1024:8.0f} {len(issued) / 1024:8.0f} {len(theirs) / 1024:8.0f} {ratio:5.2f}x "
              f"{font_programs(ours):6} / {font_programs(theirs):<5} {verdict}", flush=True)


def timed(action: Callable[[], object], prepare: Callable[[], object] = lambda: None) -> float:
    prepare()
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def compare(label: str, runs: int, ours: Callable[[], float], stock_run: Callable[[], float], per: int = 1) -> None:
    """Median of `runs` runs of ours and of stock, interleaved so that both see the same machine load."""
    mine, theirs = [], []
    for _ in range(runs):
        mine.append(ours())
        theirs.append(stock_run())
    a, b = statistics.median(mine) * 1000 / per, statistics.median(theirs) * 1000 / per
    print(f"{label:46} {a:9.0f} {b:9.0f} {b / a:9.1f}x", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs of each single-record measure")
    parser.add_argument("--class-runs", type=int, default=3, help="runs of each whole-class measure")
    parser.add_argument("--pupils", type=int, default=40, help="pupils in the class")
    args = common.parse_args(parser, smoke={'runs': 1, 'class_runs': 1, 'pupils': 2})
    one, five = sample_content(1), sample_content(5)
    record_pdf.render_pdf(one)
    stock(one)  # warm up: fonts registered, templates compiled, modules imported

    def earlier_years_cached(contents: list[dict[str, Any]]) -> Callable[[], None]:
        def prepare() -> None:
            record_pdf.clear_cache()
            for content in contents:  # last year's issue: the same pupils' first four year pages
                last_year = copy.deepcopy(content)
                last_year["years"] = last_year["years"][:-1]
                last_year["history"] = last_year["history"][:-1]
                record_pdf.render_pdf(last_year)
        return prepare

    def new_version(content: dict[str, Any]) -> dict[str, Any]:
        return content | {"record": content["record"] | {"code": "HBNEWVERSION", "number": 2}}

    def warm(content: dict[str, Any]) -> Callable[[], None]:
        return lambda: record_pdf.render_pdf(content)

    cold = record_pdf.clear_cache
    print(f"load average {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    print(f"Record PDF render time per record, median of {args.runs} runs ({args.class_runs} for the class)")
    print(f"{'case':46} {'ours ms':>9} {'stock ms':>9} {'stock/ours':>10}", flush=True)
    compare("1 year, cold", args.runs, lambda: timed(lambda: record_pdf.render_pdf(one), cold),
            lambda: timed(lambda: stock(one)))
    compare("5 years, cold", args.runs, lambda: timed(lambda: record_pdf.render_pdf(five), cold),
            lambda: timed(lambda: stock(five)))
    compare("5 years, next year (4 year pages cached)", args.runs,
            lambda: timed(lambda: record_pdf.render_pdf(five), earlier_years_cached([five])),
            lambda: timed(lambda: stock(five)))
    compare("5 years, new version of the same content", args.runs,
            lambda: timed(lambda: record_pdf.render_pdf(new_version(five)), warm(five)),
            lambda: timed(lambda: stock(five)))

    klass = [pupil(i) for i in range(args.pupils)]
    n = len(klass)

    def render_class() -> None:
        for content in klass:
            record_pdf.render_pdf(content)

    def stock_class() -> float:
        return timed(lambda: [stock(content) for content in klass])

    compare(f"class of {n}, 5 years, cold", args.class_runs, lambda: timed(render_class, cold), stock_class, n)
    compare(f"class of {n}, 5 years, next year", args.class_runs,
            lambda: timed(render_class, earlier_years_cached(klass)), stock_class, n)
    compare(f"class of {n}, 5 years, re-run, nothing changed", args.class_runs,
            lambda: timed(render_class, render_class), stock_class, n)
    compare_sizes([("1 year", one), ("5 years", five), ("5 years, a pupil of the class", klass[-1])])
    print(f"load average {' '.join(f'{v:.1f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
