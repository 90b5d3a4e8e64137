"""Issuing one record: the portal's path against what a competent engineer would build with stock tools.

    .venv/bin/python benchmarks/issue_pipeline.py [--runs 9] [--years 5] [--level B-LTA] [--stock-pagecount]
    .venv/bin/python benchmarks/issue_pipeline.py --smoke     (a tiny run: does it still work?)

Both sides issue the same distinct 5-year records (`record_render.pupil`), from the record's content to a
validated file, signed GVCN -> Hiệu trưởng -> con dấu at the same PAdES level (`--level`, default B-LTA:
timestamps on every signature, then the validation data in the DSS and a document timestamp on the seal),
with timestamps, OCSP and CRLs from the PKI stand-in (`standins/pki`, its own process on loopback) and the
same trust root. Each side's keys are opened once for the whole run, as a signing batch opens them.

Ours: what `services.generate_record` and `workflow.sign_batch` do for one version, with the app's own
configuration (an app on a temporary instance folder: its trust roots, timestamp authority, signature level
and file storage):

- render: `exporters.export_xml` and `pdf.render_pdf(content, xml=...)`;
- gvcn, hieu_truong, con_dau: the stamp (`stamp_for_field`), `SigningSession.sign_field` with the options
  `sign_batch` gives it (timestamp URL, trust roots, level; `final` on the seal), and the check
  `commit_signature` makes after the first two (`engine.check_level(..., "B-T")` from B-T up);
- validate: what `workflow.check_issuable` asks before the seal is committed: `validate_pdf` with the
  configured trust roots, the required level and the registry's signer policy (a `policy.RegistryPolicy`
  holding the three registered certificates, built directly instead of from database rows), and the
  archive timestamp taken from that report (`archive.note_archive_timestamp`);
- store: the draft and its XML put in the file storage, each step's input read and its output put.

Left out of ours (they need the database): `build_content`'s queries, the version and signature rows, the
audit entries, the policy's queries. `benchmarks/issue_school.py` measures the real queue with them.

Stock: one `pisa.CreatePDF` of the whole record (`pdf.document_html`); the three visible signature fields
added by pyHanko (`fields.SigFieldSpec` with a box, each locked to itself) in the first signature's
revision; `PdfSigner`s with the shipped stamp font (`static/fonts/stamp-serif.ttf`, already cut down to
Vietnamese) through one `GlyphAccumulatorFactory` and one stamp style built once, `SimpleSigner`s loaded
once, one `HTTPTimeStamper`; at B-LT and above every signature embeds its validation data
(`embed_validation_info`, a fresh validation context per signature with the trust root, fetching from
the stand-in) and at B-LTA the seal adds the document timestamp (`use_pades_lta`; the DSS written as ours
writes it, without VRI and the timestamp's own data before it, so that the file ends with the timestamp
and reaches B-LTA as the portal reads it); then
`validate_pdf_signature` of the three signatures with the same trust root (and it for their timestamps).
The stock footer says "Trang x" without the page count: `<pdf:pagecount>` costs xhtml2pdf a second layout
pass of the whole document, which a rival can do without (`--stock-pagecount` puts it back, as ours
prints "Trang x/y").

Each run issues one record with ours and one with stock, alternately (which goes first alternates too),
so that both see the same machine load; cold (no laid-out section cached: `pdf.clear_cache()`, no section
store) and warm (the pupil's four earlier year pages were laid out last year, into the shared section
store, untimed) are separate series. Printed: median, min-max and CPU time per record, the ratio of the
medians against its target, each side step by step, the requests each made to the stand-in, the issued
file's size and its embedded font programs, and the load average at start and end.
"""

from __future__ import annotations

import argparse
import collections
import copy
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import types
import urllib.request
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402
from pyhanko.pdf_utils.font.opentype import GlyphAccumulatorFactory  # noqa: E402
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter  # noqa: E402
from pyhanko.pdf_utils.reader import PdfFileReader  # noqa: E402
from pyhanko.pdf_utils.text import TextBoxStyle  # noqa: E402
from pyhanko.sign import fields, signers, timestamps  # noqa: E402
from pyhanko.sign.signers.pdf_signer import DSSContentSettings, TimestampDSSContentSettings  # noqa: E402
from pyhanko.sign.validation import validate_pdf_signature  # noqa: E402
from pyhanko.stamp import TextStampStyle  # noqa: E402
from pyhanko_certvalidator import ValidationContext  # noqa: E402
from pypdf import PdfReader  # noqa: E402
from pypdf.generic import ArrayObject, DictionaryObject, IndirectObject  # noqa: E402
from xhtml2pdf import pisa  # noqa: E402

from benchmarks import common  # noqa: E402
from benchmarks.record_render import pupil  # noqa: E402
from portal import signing  # noqa: E402
from portal.app import create_app  # noqa: E402
from portal.records import archive, exporters, pdf  # noqa: E402
from portal.records.content import SIGNATURE_FIELDS  # noqa: E402
from portal.signing import engine, pki, policy  # noqa: E402
from portal.signing.stamp import FONT_SIZE, LEADING, STAMP_FONT, STAMP_TEMPLATE, StampText, stamp_for_field  # noqa: E402
from portal.signing.validate import validate_pdf  # noqa: E402
from portal.storage import storage  # noqa: E402

TARGET_COLD = 0.5  # ours / stock, medians
TARGET_WARM = 0.3
TARGET_SIZE = 1.2
PASSPHRASE = "benchmark"
SCHOOL = "Trường Tiểu học Lê Quang Định"
CLASS_NAME = "5A"
PEOPLE = {"gvcn": (1, "Nguyễn Thị Thu Hương", "Giáo viên chủ nhiệm"), "hieu_truong": (2, "Võ Thị Lài", "Hiệu trưởng")}
# Stock's validation data as ours writes it: no VRI dictionaries, and the document timestamp's own data
# before it, so that the file ends with the timestamp over everything (B-LTA as the portal reads it).
DSS_SETTINGS = DSSContentSettings(include_vri=False, next_ts_settings=TimestampDSSContentSettings(
    include_vri=False, update_before_ts=True))
STEPS = ("render", *SIGNATURE_FIELDS, "validate", "store")


@dataclass
class Keys:
    """The three signers' certificates from the demo CA of the app's instance folder, as .p12 files."""

    root: x509.Certificate
    p12: dict[str, bytes]
    certificates: dict[str, x509.Certificate]
    stamps: dict[str, StampText]


@dataclass
class Series:
    """One side's records in one condition: wall and CPU ms, sizes, steps, requests to the stand-in."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    steps: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STEPS})
    requests: collections.Counter[str] = field(default_factory=collections.Counter)  # to the stand-in
    last: bytes = b""


# --- the PKI stand-in and the app -----------------------------------------------------------------------------------


def start_pki_standin(folder: Path) -> tuple[subprocess.Popen[str], str]:
    """`python -m standins.pki` on a free loopback port, in its own process like a real authority."""
    process = subprocess.Popen([sys.executable, "-m", "standins.pki", "--folder", str(folder), "--port", "0"],
                               cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    if "http://" not in line:
        process.kill()
        raise RuntimeError(f"the PKI stand-in did not start: {line!r}")
    return process, line.strip().rsplit(" ", 1)[-1]


def make_keys() -> Keys:
    """In an app context: the demo CA (created naming the stand-in), the GVCN, the principal and the seal."""
    ca = signing.demo_ca()
    issued = {field: ca.issue_person(name, title=title, organisation=SCHOOL)
              for field, (_id, name, title) in PEOPLE.items()}
    issued["con_dau"] = ca.issue_organisation(SCHOOL)
    return Keys(root=ca.root, p12={f: issued[f].pkcs12(PASSPHRASE) for f in SIGNATURE_FIELDS},
                certificates={f: issued[f].certificate for f in SIGNATURE_FIELDS},
                stamps={f: stamp_for_field(f, pki.describe(issued[f].certificate).common_name, school_name=SCHOOL)
                        for f in SIGNATURE_FIELDS})


def registry_policy(keys: Keys) -> policy.RegistryPolicy:
    """The registry's rule for the record, as `policy.policy_for_version` builds it from the database rows."""
    registered = datetime(2025, 1, 1, tzinfo=UTC)

    def fingerprint(field: str) -> str:
        return hashlib.sha256(keys.certificates[field].public_bytes(serialization.Encoding.DER)).hexdigest()

    people = {fingerprint(f): [policy._Registered(user_id, name, registered)] for f, (user_id, name, _t) in
              PEOPLE.items()}
    seal = {fingerprint("con_dau"): policy._Registered(None, SCHOOL, registered)}
    return policy.RegistryPolicy(
        school_id=1, school_name=SCHOOL, class_name=CLASS_NAME, homeroom={1: PEOPLE["gvcn"][1]},
        principals={2: PEOPLE["hieu_truong"][1]}, delegations=[], person_certificates=people,
        seal_certificates=seal)


class Laps:
    """The time spent in each step of one record, in ms: `lap(step)` ends a stretch of that step."""

    def __init__(self) -> None:
        self.spent = dict.fromkeys(STEPS, 0.0)
        self.clock = time.perf_counter()

    def __call__(self, step: str) -> None:
        now = time.perf_counter()
        self.spent[step] += (now - self.clock) * 1000
        self.clock = now

    def add_to(self, steps: dict[str, list[float]]) -> None:
        for step, ms in self.spent.items():
            steps[step].append(ms)


# --- ours -----------------------------------------------------------------------------------------------------------


class Ours:
    """The portal's path for one record version, its keys open for the whole run (one batch per step)."""

    def __init__(self, keys: Keys) -> None:
        self.keys = keys
        self.level = signing.signature_level()
        self.trust_roots = signing.trust_roots()
        self.policy = registry_policy(keys)
        # `workflow.sign_batch`: one session per step's key, with the app's timestamp authority and trust roots.
        self.sessions = {f: engine.SigningSession(engine.Pkcs12Key(keys.p12[f], PASSPHRASE),
                                                  timestamp_url=signing.timestamp_url(),
                                                  trust_roots=self.trust_roots, level=self.level).__enter__()
                         for f in SIGNATURE_FIELDS}

    def close(self) -> None:
        for session in self.sessions.values():
            session.__exit__(None, None, None)

    def issue(self, content: dict[str, Any], steps: dict[str, list[float]]) -> bytes:
        files = storage()
        lap = Laps()
        # services.generate_record -> _store_version
        xml = exporters.export_xml(content)
        document = pdf.render_pdf(content, xml=xml)
        lap("render")
        digest = files.put(document)
        files.put(xml)
        lap("store")
        # workflow.sign_batch -> _sign_one -> commit_signature, for each step
        for index, name in enumerate(SIGNATURE_FIELDS):
            source = files.read(digest)
            lap("store")
            final = name == SIGNATURE_FIELDS[-1]
            stamp = stamp_for_field(name, self.keys.stamps[name].name, school_name=SCHOOL)
            signed = self.sessions[name].sign_field(source, name, certify=index == 0, stamp=stamp, final=final)
            if not final and engine.level_at_least(self.level, "B-T"):
                engine.check_level(signed, "B-T")
            lap(name)
            if final:  # workflow.check_issuable, then archive.note_archive_timestamp
                report = validate_pdf(signed, self.trust_roots, required_level=self.level, signers=self.policy,
                                      allow_fetching=signing.fetch_revocation())
                if not report.ok:
                    raise AssertionError(report.problems)
                archive.note_archive_timestamp(types.SimpleNamespace(), signed, report)  # a row's stand-in
                lap("validate")
            digest = files.put(signed)
            lap("store")
        lap.add_to(steps)
        return signed


# --- stock ----------------------------------------------------------------------------------------------------------


class Stock:
    """xhtml2pdf and pyHanko as their documentation shows them, with what a careful engineer sets up once."""

    def __init__(self, keys: Keys, level: str, tsa_url: str, boxes: dict[str, tuple[float, ...]],
                 page_count: bool) -> None:
        self.keys, self.level, self.boxes, self.page_count = keys, level, boxes, page_count
        self.root = engine._asn1(keys.root)
        self.signers = {f: signers.SimpleSigner.load_pkcs12_data(keys.p12[f], other_certs=None,
                                                                 passphrase=PASSPHRASE.encode())
                        for f in SIGNATURE_FIELDS}
        font = GlyphAccumulatorFactory(str(STAMP_FONT), font_size=FONT_SIZE)
        self.style = TextStampStyle(stamp_text=STAMP_TEMPLATE, border_width=1, background=None,
                                    text_box_style=TextBoxStyle(font=font, font_size=FONT_SIZE, leading=LEADING))
        self.timestamper = timestamps.HTTPTimeStamper(tsa_url) if level != "B-B" else None

    def render(self, content: dict[str, Any]) -> bytes:
        html = pdf.document_html(content)
        if not self.page_count:
            without = html.replace("/<pdf:pagecount>", "")
            assert without != html, "the stock template's page count moved: update this benchmark"
            html = without
        out = BytesIO()
        if pisa.CreatePDF(html, dest=out, encoding="utf-8", resource_policy=pdf._resource_policy()).err:
            raise RuntimeError("xhtml2pdf failed")
        return out.getvalue()

    def issue(self, content: dict[str, Any], steps: dict[str, list[float]]) -> bytes:
        lap = Laps()
        document = self.render(content)
        lap("render")
        for index, name in enumerate(SIGNATURE_FIELDS):
            # A context per signature, as each signer signs at their own time (one kept longer than a
            # second or so refuses the authority's fresh answers as "too recent" for its moment).
            context = None
            if engine.level_at_least(self.level, "B-LT"):
                context = ValidationContext(trust_roots=[self.root], allow_fetching=True)
            writer = IncrementalPdfFileWriter(BytesIO(document), strict=False)
            if index == 0:
                for each in SIGNATURE_FIELDS:
                    fields.append_signature_field(writer, fields.SigFieldSpec(
                        each, on_page=-1, box=self.boxes[each],
                        field_mdp_spec=fields.FieldMDPSpec(fields.FieldMDPAction.INCLUDE, [each])))
            meta = signers.PdfSignatureMetadata(
                field_name=name, md_algorithm="sha256", subfilter=fields.SigSeedSubFilter.PADES,
                certify=index == 0, docmdp_permissions=fields.MDPPerm.FILL_FORMS,
                embed_validation_info=context is not None, validation_context=context,
                use_pades_lta=self.level == "B-LTA" and name == SIGNATURE_FIELDS[-1], dss_settings=DSS_SETTINGS)
            pdf_signer = signers.PdfSigner(meta, self.signers[name], timestamper=self.timestamper,
                                           stamp_style=self.style)
            text = self.keys.stamps[name].params(datetime.now(UTC))
            document = pdf_signer.sign_pdf(writer, existing_fields_only=True, appearance_text_params=text).getvalue()
            lap(name)
        self.validate(document)
        lap("validate")
        lap.add_to(steps)
        return document

    def validate(self, document: bytes) -> None:
        reader = PdfFileReader(BytesIO(document), strict=False)
        found = reader.embedded_regular_signatures
        assert [s.field_name for s in found] == list(SIGNATURE_FIELDS), [s.field_name for s in found]
        for embedded in found:
            status = validate_pdf_signature(embedded, ValidationContext(trust_roots=[self.root]),
                                            ts_validation_context=ValidationContext(trust_roots=[self.root]))
            if not status.bottom_line:
                raise AssertionError(f"stock: {embedded.field_name}: {status.summary()}")


# --- measuring ------------------------------------------------------------------------------------------------------


def served(url: str) -> collections.Counter[str]:
    """How many requests the stand-in has answered, per service (tsa, ocsp, crl, certs)."""
    request = urllib.request.Request(f"{url}/_standin/behaviour", data=b"{}", method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        counts = json.load(answer)["served"]
    return collections.Counter({k: v for k, v in counts.items() if not k.startswith("_")})


def timed(series: Series, action: Callable[[], bytes], url: str) -> None:
    """One record: wall and CPU time (the stand-in's work is another process's), size, stand-in requests."""
    before = served(url)
    start, start_cpu = time.perf_counter(), time.process_time()
    document = action()
    series.wall.append((time.perf_counter() - start) * 1000)
    series.cpu.append((time.process_time() - start_cpu) * 1000)
    series.requests.update(served(url) - before)
    series.sizes.append(len(document))
    series.last = document


def earlier_years(content: dict[str, Any]) -> dict[str, Any]:
    """Last year's record of the same pupil: the first four of the five year pages."""
    last_year = copy.deepcopy(content)
    last_year["years"], last_year["history"] = last_year["years"][:-1], last_year["history"][:-1]
    return last_year


def run_series(label: str, runs: int, first_pupil: int, years: int, ours: Ours, stock: Stock,
               store: pdf.SectionStore | None, url: str) -> tuple[Series, Series]:
    """`runs` records each, ours and stock alternately; with a store, the earlier years laid out first."""
    mine, theirs = Series(), Series()
    for run in range(runs):
        content = pupil(first_pupil + run, years)

        def ours_record(content: dict[str, Any] = content) -> None:
            pdf.clear_cache()
            pdf.use_section_store(store)
            if store is not None:  # last year, when that record was issued (untimed)
                pdf.render_pdf(earlier_years(content))
                pdf.clear_cache()  # this year it is another process, or long out of its memory
            timed(mine, lambda: ours.issue(content, mine.steps), url)

        def stock_record(content: dict[str, Any] = content) -> None:
            timed(theirs, lambda: stock.issue(content, theirs.steps), url)

        for action in (ours_record, stock_record) if run % 2 == 0 else (stock_record, ours_record):
            action()
        print(f"  {label} run {run + 1}/{runs}: ours {mine.wall[-1]:.0f} ms, stock {theirs.wall[-1]:.0f} ms",
              flush=True)
    return mine, theirs


def font_programs(document: bytes) -> int:
    """Embedded TrueType font programs (FontFile2 streams) reachable in the file's last revision."""
    reader = PdfReader(BytesIO(document))
    seen: set[int] = set()
    programs: set[int] = set()
    stack: list[Any] = [reader.trailer]
    while stack:
        item = stack.pop()
        if isinstance(item, IndirectObject):
            if item.idnum in seen:
                continue
            seen.add(item.idnum)
            item = item.get_object()
        if isinstance(item, DictionaryObject):
            for key, value in dict.items(item):
                if key == "/FontFile2" and isinstance(value, IndirectObject):
                    programs.add(value.idnum)
                stack.append(value)
        elif isinstance(item, ArrayObject):
            stack.extend(list.__iter__(item))
    return len(programs)


def load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def verdict(value: float, target: float) -> str:
    return "OK" if value <= target else "OVER"


def report(label: str, mine: Series, theirs: Series, target: float) -> None:
    print(f"{label}: {len(mine.wall)} records each, ms per record")
    print(f"  {'':6} {'median':>8} {'min-max':>13} {'CPU median':>11}")
    for name, series in (("ours", mine), ("stock", theirs)):
        print(f"  {name:6} {statistics.median(series.wall):8.0f} {min(series.wall):6.0f}-{max(series.wall):<6.0f} "
              f"{statistics.median(series.cpu):11.0f}")
    ratio = statistics.median(mine.wall) / statistics.median(theirs.wall)
    cpu_ratio = statistics.median(mine.cpu) / statistics.median(theirs.cpu)
    print(f"  ours / stock: {ratio:.2f}x (target <= {target}x): {verdict(ratio, target)};"
          f" CPU time {cpu_ratio:.2f}x")
    for name, series in (("ours", mine), ("stock", theirs)):
        print(f"  {name} by step (median ms): " + ", ".join(
            f"{step} {statistics.median(values):.0f}" for step, values in series.steps.items() if any(values)))
    for name, series in (("ours", mine), ("stock", theirs)):
        print(f"  {name} requests to the stand-in per record: " + ", ".join(
            f"{service} {count / len(series.wall):.1f}" for service, count in sorted(series.requests.items())))
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9, help="records of each side, cold and warm each")
    parser.add_argument("--years", type=int, default=5, help="school years in each record (2 to 5)")
    parser.add_argument("--level", choices=engine.LEVELS, default="B-LTA", help="PAdES level of the issued file")
    parser.add_argument("--stock-pagecount", action="store_true",
                        help="stock prints the page count (a second xhtml2pdf layout pass), as ours does")
    args = common.parse_args(parser, smoke={"runs": 1, "years": 2})
    if args.runs < 7 and not args.smoke:
        print(f"(only {args.runs} runs: fewer than 7 give no stable median)")
    warnings.simplefilter("ignore", ResourceWarning)  # pyHanko's stock font factory leaves the font file open
    print(f"Load average at start: {load()}")
    with tempfile.TemporaryDirectory(prefix="issue-bench-") as folder:
        instance = Path(folder) / "instance"
        standin, url = start_pki_standin(instance / signing.PKI_FOLDER)
        try:
            app = create_app({"DATABASE_URL": f"sqlite:///{Path(folder) / 'bench.sqlite'}", "SECRET_KEY": "bench",
                              "REDIS_URL": "", "TESTING": True, "SESSION_COOKIE_SECURE": False,
                              "DEMO_PKI_URL": url, "SIGNATURE_LEVEL": args.level}, instance_path=str(instance))
            with app.app_context():
                measure(args, url)
        finally:
            standin.terminate()
            standin.wait(timeout=10)
    print(f"Load average at end: {load()}")


def measure(args: argparse.Namespace, url: str) -> None:
    keys = make_keys()
    shared_store = pdf.FileSectionStore(Path(signing.pki_folder()).parent / "record-sections")
    ours = Ours(keys)
    print(f"{args.years}-year records at {ours.level}, timestamps and revocation data from the PKI stand-in on {url}")
    try:
        # Warm-up (untimed): imports, templates, fonts, the authority's sample token; and both files checked.
        sample = pupil(0, args.years)
        ours_file = ours.issue(sample, {s: [] for s in STEPS})
        boxes = {f: box for f, (_page, box) in pdf.signature_boxes(ours_file).items()}
        stock = Stock(keys, ours.level, f"{url}{pki.TSA_PATH}", boxes, args.stock_pagecount)
        stock_file = stock.issue(sample, {s: [] for s in STEPS})
        for name, document in (("ours", ours_file), ("stock", stock_file)):
            reached = engine.signature_level(document)
            checked = validate_pdf(document, signing.trust_roots(), required_level=ours.level,
                                   signers=ours.policy)
            why = f" ({reached.missing})" if reached.missing else ""
            print(f"  {name}: the file reaches {reached.level}{why}; the portal's policy at {ours.level}: "
                  f"{'passes' if checked.ok else 'fails: ' + '; '.join(checked.problems)}")
        print(f"Ours and stock alternately, {args.runs} runs each (load {load()})", flush=True)
        results = {}
        for label, first, store in (("cold", 1000, None), ("warm", 2000, shared_store)):
            results[label] = run_series(label, args.runs, first, args.years, ours, stock, store, url)
    finally:
        ours.close()
    pdf.use_section_store(None)
    report("Cold (nothing laid out before)", *results["cold"], TARGET_COLD)
    report("Warm (the four earlier year pages laid out last year)", *results["warm"], TARGET_WARM)
    mine, theirs = results["cold"]
    size_ratio = statistics.median(mine.sizes) / statistics.median(theirs.sizes)
    print(f"Issued file: ours {statistics.median(mine.sizes) / 1024:.0f} KiB, stock "
          f"{statistics.median(theirs.sizes) / 1024:.0f} KiB = {size_ratio:.2f}x (target <= {TARGET_SIZE}x): "
          f"{verdict(size_ratio, TARGET_SIZE)}; embedded font programs (FontFile2): ours {font_programs(mine.last)}, "
          f"stock {font_programs(theirs.last)}")


if __name__ == "__main__":
    main()
