"""Issuing a grade: render, three signatures and validation per record, and the same with stock tools.

    .venv/bin/python benchmarks/issue_pipeline.py [--records 200] [--workers 2] [--stock-runs 3] [--level B-LTA]
    .venv/bin/python benchmarks/issue_pipeline.py --smoke     (a tiny run: does it still work?)

For `--records` distinct 5-year records (one school's grade 5):

- ours: the XML export, `portal.records.pdf.render_pdf` (XML embedded), the three signatures through
  `portal.signing.engine` with one `SigningSession` per key for the batch (each .p12 opened once), and
  `validate_pdf` before issuing (what `portal.records.workflow` does at the seal);
- as in a real school, a grade-5 pupil's first four year pages were laid out when last year's records
  were issued: they are rendered first (untimed) into a section store shared by the processes, as the
  portal's own store is (`portal.records.sections`); `--cold` also times records with nothing cached;
- per step medians in one process, then the whole grade again split over `--workers` processes (what
  that many `python worker.py` give), printed as records per minute and as the time to issue a
  1,000-pupil school at that pace (target <= 5 minutes on 2 cores), once for the whole pipeline and once
  for signing and issuing alone (the drafts are generated before anyone signs);
- stock, for one 5-year record: xhtml2pdf on the same HTML in one pass (with its page count) plus
  pyHanko as documented (the .p12 loaded per signature, the full stamp font): our whole pipeline
  against it as a ratio (target <= 0.35x).

`--level` (default B-B, the signatures alone) signs at a PAdES level as issuing does: B-T timestamps each
signature, B-LT/B-LTA end the seal with the validation data (and the document timestamp), all through the
demo CA's services (standins/pki) on loopback in this process; the level of each file is read back
(`engine.check_level`, timed with the validation). `benchmarks/long_term.py` isolates that extra cost.
"""

from __future__ import annotations

import argparse
import multiprocessing
import shutil
import statistics
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from flask import Flask
from record_render import pupil
from record_render import stock as stock_render
from signing import PASSPHRASE, SCHOOL, people, stock_sign

from benchmarks import common
from portal.app import create_app
from portal.records import exporters, pdf
from portal.records.content import SIGNATURE_FIELDS
from portal.signing import engine, pki
from portal.signing.build_stamp_font import SOURCES
from portal.signing.stamp import stamp_for_field
from portal.signing.validate import validate_pdf

TARGET_RATIO = 0.35
TARGET_SCHOOL_MINUTES = 5
SCHOOL_PUPILS = 1000


def _keys(service_url: str | None = None,
          folder: Path | None = None) -> tuple[pki.DemoCA, dict[str, bytes], dict[str, engine.StampText]]:
    if service_url and folder:  # certificates naming the loopback OCSP/CRL service
        ca = pki.create_demo_ca(folder, service_url=service_url)
        issued = {"gvcn": ca.issue_person("Nguyễn Thị Thu Hương", title="Giáo viên chủ nhiệm", organisation=SCHOOL),
                  "hieu_truong": ca.issue_person("Võ Thị Lài", title="Hiệu trưởng", organisation=SCHOOL),
                  "con_dau": ca.issue_organisation(SCHOOL)}
    else:
        ca, issued = people()
    p12 = {f: issued[f].pkcs12(PASSPHRASE) for f in SIGNATURE_FIELDS}
    stamps = {f: stamp_for_field(f, pki.describe(issued[f].certificate).common_name, school_name=SCHOOL)
              for f in SIGNATURE_FIELDS}
    return ca, p12, stamps


def _app(store: str | None) -> Flask:
    """An app of its own (the renderer reads its templates), and the section store to use: set after the app,
    whose start-up points the renderer at the app's own store."""
    app = create_app(instance_path=tempfile.mkdtemp(prefix="issue-bench-"))
    pdf.use_section_store(pdf.FileSectionStore(Path(store)) if store else None)
    pdf.clear_cache()
    return app


def earlier_years(indexes: list[int], folder: str) -> None:
    """Lay out the pupils' first four year pages, as last year's records did, into the shared store."""
    with _app(folder).app_context():
        for index in indexes:
            content = pupil(index)
            pdf.render_pdf({**content, "years": content["years"][:4], "history": content["history"][:4]})
    pdf.clear_cache()


LEVEL = {"level": "B-B", "url": None}  # set by --level; passed to the worker processes


def _session(p12: bytes, root: list, level: dict) -> engine.SigningSession:
    key = engine.Pkcs12Key(p12, PASSPHRASE)
    if level["level"] == "B-B":
        return engine.SigningSession(key).__enter__()
    return engine.SigningSession(key, timestamp_url=f"{level['url']}{pki.TSA_PATH}", trust_roots=root,
                                 level=level["level"]).__enter__()


def issue(indexes: list[int], p12: dict[str, bytes], stamps: dict, root_pem: bytes,
          folder: str | None = None, level: dict | None = None) -> dict[str, list[float]]:
    """Our pipeline over the given pupils; the time of each step of each record, in ms."""
    level = level or LEVEL
    root = pki.read_certificates(root_pem)
    times: dict[str, list[float]] = {"render": [], **{f: [] for f in SIGNATURE_FIELDS}, "validate": [],
                                     "record": []}
    with _app(folder).app_context():
        sessions = {f: _session(p12[f], root, level) for f in SIGNATURE_FIELDS}
        for index in indexes:
            content = pupil(index)
            began = time.perf_counter()
            document = pdf.render_pdf(content, xml=exporters.export_xml(content))
            times["render"].append((time.perf_counter() - began) * 1000)
            for n, field in enumerate(SIGNATURE_FIELDS):
                start = time.perf_counter()
                document = sessions[field].sign_field(document, field, certify=n == 0, stamp=stamps[field],
                                                      final=field == "con_dau")
                times[field].append((time.perf_counter() - start) * 1000)
            start = time.perf_counter()
            engine.check_level(document, level["level"])
            report = validate_pdf(document, root)
            times["validate"].append((time.perf_counter() - start) * 1000)
            assert report.ok, report.problems
            times["record"].append((time.perf_counter() - began) * 1000)
        for session in sessions.values():
            session.__exit__(None, None, None)
    return times


def _sign_only(args: tuple[list[int], dict[str, bytes], dict, bytes, str, dict]) -> tuple[int, float]:
    """Render the records first (untimed: the drafts exist before anyone signs), then time the three
    signatures and the validation of all of them."""
    indexes, p12, stamps, root_pem, folder, level = args
    root = pki.read_certificates(root_pem)
    with _app(folder).app_context():
        drafts = [pdf.render_pdf(c, xml=exporters.export_xml(c)) for c in map(pupil, indexes)]
        sessions = {f: _session(p12[f], root, level) for f in SIGNATURE_FIELDS}
        began = time.perf_counter()
        for document in drafts:
            for n, field in enumerate(SIGNATURE_FIELDS):
                document = sessions[field].sign_field(document, field, certify=n == 0, stamp=stamps[field],
                                                      final=field == "con_dau")
            engine.check_level(document, level["level"])
            assert validate_pdf(document, root).ok
        elapsed = time.perf_counter() - began
        for session in sessions.values():
            session.__exit__(None, None, None)
    return len(drafts), elapsed


def _worker(args: tuple[list[int], dict[str, bytes], dict, bytes, str, dict]) -> int:
    issue(*args)
    return len(args[0])


def stock_record(index: int, p12: dict[str, bytes], stamps: dict, font: str) -> float:
    content = pupil(index)
    start = time.perf_counter()
    document = stock_render(content)
    for field in SIGNATURE_FIELDS:
        document = stock_sign(document, field, p12[field], stamps[field].params(engine._utcnow()), font)
    return (time.perf_counter() - start) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--stock-runs", type=int, default=3)
    parser.add_argument("--single", type=int, default=40, help="records timed step by step in one process")
    parser.add_argument("--cold", type=int, default=10, help="records timed with nothing cached (0: skip)")
    parser.add_argument("--level", choices=engine.LEVELS, default="B-B",
                        help="PAdES level to sign at, through loopback TSA/OCSP/CRL services")
    args = common.parse_args(parser, smoke={"records": 2, "single": 1, "cold": 0, "stock_runs": 1, "workers": 1})
    warnings.simplefilter("ignore", ResourceWarning)  # pyHanko's stock font factory leaves its file open
    service = None
    if args.level != "B-B":
        from long_term import _Quiet
        from werkzeug.serving import make_server

        from standins.pki import create_app as pki_app

        pki_folder = Path(tempfile.mkdtemp(prefix="issue-bench-pki-"))
        service = make_server("127.0.0.1", 0, pki_app(pki_folder), threaded=True, request_handler=_Quiet)
        LEVEL.update(level=args.level, url=f"http://127.0.0.1:{service.server_port}")
        threading.Thread(target=service.serve_forever, daemon=True).start()
        print(f"Signing at {args.level} through the PKI stand-in on {LEVEL['url']}")
        ca, p12, stamps = _keys(LEVEL["url"], pki_folder)
    else:
        ca, p12, stamps = _keys()
    root_pem = pki.certificates_pem([ca.root]).encode()

    cold: dict[str, list[float]] = {}
    if args.cold:
        print(f"Nothing cached, one process, {args.cold} distinct 5-year records:")
        cold = issue(list(range(100_000, 100_000 + args.cold)), p12, stamps, root_pem)
        _print_steps(cold)
    folder = tempfile.mkdtemp(prefix="record-sections-")
    single_set = list(range(args.single))
    grade = list(range(args.single, args.single + args.records))  # other pupils: nothing of theirs is cached yet
    began = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
        pool.starmap(earlier_years, [(chunk, folder) for chunk in _split(single_set + grade, args.workers)])
    print(f"(Laid out the earlier four years of {len(single_set) + len(grade)} pupils, as last year's records, "
          f"in {time.perf_counter() - began:.0f} s, untimed below.)")
    print(f"Earlier four years laid out last year, one process, {args.single} distinct 5-year records "
          "(render + 3 signatures + validation):")
    began = time.perf_counter()
    times = issue(single_set, p12, stamps, root_pem, folder)
    single = time.perf_counter() - began
    _print_steps(times)
    print(f"  total        {single:7.1f} s   ({args.single / single * 60:.0f} records per minute)")

    began = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
        done = sum(pool.map(_worker, [(chunk, p12, stamps, root_pem, folder, dict(LEVEL))
                                      for chunk in _split(grade, args.workers)]))
    parallel = time.perf_counter() - began
    per_minute = done / parallel * 60
    minutes = SCHOOL_PUPILS / per_minute
    verdict = "OK" if minutes <= TARGET_SCHOOL_MINUTES else "OVER TARGET"
    print(f"{args.workers} worker processes: {done} records in {parallel:.1f} s = {per_minute:.0f} records per minute;"
          f" a {SCHOOL_PUPILS:,}-pupil school in {minutes:.1f} min (target <= {TARGET_SCHOOL_MINUTES}): {verdict}")

    # Signing and issuing alone: in the portal the drafts are generated before anyone signs.
    with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
        timed = pool.map(_sign_only, [(chunk, p12, stamps, root_pem, folder, dict(LEVEL))
                                      for chunk in _split(grade, args.workers)])
    signed_per_minute = sum(n for n, _s in timed) / max(s for _n, s in timed) * 60
    minutes = SCHOOL_PUPILS / signed_per_minute
    verdict = "OK" if minutes <= TARGET_SCHOOL_MINUTES else "OVER TARGET"
    print(f"{args.workers} worker processes, signing and issuing the drafts (3 signatures + validation): "
          f"{signed_per_minute:.0f} records per minute; a {SCHOOL_PUPILS:,}-pupil school in {minutes:.1f} min "
          f"(target <= {TARGET_SCHOOL_MINUTES}): {verdict}")
    shutil.rmtree(folder, ignore_errors=True)

    font = str(next(p for p in SOURCES if p.exists()))
    with _app(None).app_context():
        stock_ms = statistics.median(stock_record(10_000 + n, p12, stamps, font) for n in range(args.stock_runs))
    ours_ms = statistics.median(times["record"])
    ours_without_validation = statistics.median(
        r - v for r, v in zip(times["record"], times["validate"], strict=True))
    ratio = ours_without_validation / stock_ms
    verdict = "OK" if ratio <= TARGET_RATIO else "OVER TARGET"
    print(f"One 5-year record, stock xhtml2pdf + stock pyHanko (3 visible signatures): median {stock_ms:.0f} ms")
    print(f"  ours, same work (render + 3 signatures): median {ours_without_validation:.0f} ms = {ratio:.2f}x stock "
          f"(target <= {TARGET_RATIO}x): {verdict}; with validation: {ours_ms:.0f} ms = {ours_ms / stock_ms:.2f}x")
    if cold:
        cold_ms = statistics.median(r - v for r, v in zip(cold["record"], cold["validate"], strict=True))
        print(f"  ours with nothing cached (a pupil's first record): median {cold_ms:.0f} ms = "
              f"{cold_ms / stock_ms:.2f}x stock")
    if service is not None:
        service.shutdown()


def _split(items: list[int], parts: int) -> list[list[int]]:
    return [items[n::parts] for n in range(parts)]


def _print_steps(times: dict[str, list[float]]) -> None:
    for step, values in times.items():
        print(f"  {step:<12} median {statistics.median(values):7.0f} ms   p95 "
              f"{sorted(values)[max(0, round(0.95 * len(values)) - 1)]:7.0f} ms")


if __name__ == "__main__":
    main()
