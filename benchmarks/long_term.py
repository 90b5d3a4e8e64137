"""What long-term validation costs per issued record: PAdES B-B against B-T, B-LT and B-LTA.

    .venv/bin/python benchmarks/long_term.py [--records 10] [--smoke]

The demo CA's services (standins/pki: timestamp authority, OCSP, CRLs) run in this process on a loopback
port, as in the tests. For each level, `--records` records (the renderer's sample record) are signed
GVCN -> Hiệu trưởng -> con dấu with one `SigningSession` per key, as `portal.records.workflow` does, the
seal ending with the validation data and the document timestamp at B-LT/B-LTA, and the produced file's
level read back (`engine.check_level`, what issuing checks). Printed: the median time per record at each
level and the extra time over B-B, i.e. what timestamps (B-T) and revocation data and the document
timestamp (B-LT, B-LTA) add; and the extra bytes per record.

Then the seal alone at B-LTA, as `portal.records.workflow` applies it to a batch of records the GVCN and the
principal signed: one `SigningSession` for the batch, each record's seal with its validation data and
document timestamp, the signature policy at the required level (`validate_pdf`, what `check_issuable` runs)
and the archive timestamp read back (`engine.last_archive_timestamp`). Printed: CPU time of this thread per
seal (the services' threads left out, as they run elsewhere in production) for the first record of the
batch and the median of the others, split into signing and checking, and the load average.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from signing import PASSPHRASE, SCHOOL, record_pdf
from werkzeug.serving import WSGIRequestHandler, make_server

from benchmarks import common
from portal.records.content import SIGNATURE_FIELDS
from portal.signing import engine, pki
from portal.signing.stamp import stamp_for_field
from portal.signing.validate import validate_pdf
from standins.pki import create_app


class _Quiet(WSGIRequestHandler):
    def log_request(self, *args: object, **kwargs: object) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10)
    args = common.parse_args(parser, smoke={"records": 1})
    with tempfile.TemporaryDirectory(prefix="bench-pki-") as folder:  # the demo CA's keys go with it
        run(args, Path(folder))


def run(args: argparse.Namespace, folder: Path) -> None:
    server = make_server("127.0.0.1", 0, create_app(folder), threaded=True, request_handler=_Quiet)
    url = f"http://127.0.0.1:{server.server_port}"
    ca = pki.create_demo_ca(folder, service_url=url)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    issued = {"gvcn": ca.issue_person("Nguyễn Thị Thu Hương", title="Giáo viên chủ nhiệm", organisation=SCHOOL),
              "hieu_truong": ca.issue_person("Võ Thị Lài", title="Hiệu trưởng", organisation=SCHOOL),
              "con_dau": ca.issue_organisation(SCHOOL)}
    stamps = {f: stamp_for_field(f, pki.describe(issued[f].certificate).common_name, school_name=SCHOOL)
              for f in SIGNATURE_FIELDS}
    source, what = record_pdf()
    print(f"{args.records} record(s) per level: {what}; services on {url}")
    results: dict[str, tuple[float, float, int]] = {}
    for level in engine.LEVELS:
        sessions = {f: engine.SigningSession(engine.Pkcs12Key(issued[f].pkcs12(PASSPHRASE), PASSPHRASE),
                                             timestamp_url=f"{url}{pki.TSA_PATH}", trust_roots=[ca.root],
                                             level=level) for f in SIGNATURE_FIELDS}
        for session in sessions.values():
            session.__enter__()
        times, cpu, sizes = [], [], []
        try:
            for _ in range(args.records):
                start, start_cpu = time.perf_counter(), time.process_time()
                pdf = source
                for index, field in enumerate(SIGNATURE_FIELDS):
                    pdf = sessions[field].sign_field(pdf, field, certify=index == 0, stamp=stamps[field],
                                                     final=field == "con_dau")
                engine.check_level(pdf, level)
                times.append(time.perf_counter() - start)
                cpu.append(time.process_time() - start_cpu)
                sizes.append(len(pdf))
        finally:
            for session in sessions.values():
                session.__exit__(None, None, None)
        results[level] = (statistics.median(times), statistics.median(cpu), int(statistics.median(sizes)))
    # CPU time counts this process only, the services (threads here) included: on a loaded machine it says
    # more than the wall clock.
    _table(results)
    seals(args.records, url, ca, issued, stamps, source)
    server.shutdown()


def _table(results: dict[str, tuple[float, float, int]]) -> None:
    base_time, base_cpu, base_size = results["B-B"]
    print(f"{'level':<6} {'ms/record':>10} {'extra ms':>9} {'CPU ms':>7} {'extra CPU':>10} {'KB':>5} {'extra KB':>9}")
    for level, (seconds, cpu_seconds, size) in results.items():
        print(f"{level:<6} {seconds * 1000:>10.0f} {(seconds - base_time) * 1000:>9.0f} {cpu_seconds * 1000:>7.0f} "
              f"{(cpu_seconds - base_cpu) * 1000:>10.0f} {size / 1024:>5.0f} {(size - base_size) / 1024:>9.0f}")


def seals(records: int, url: str, ca: pki.DemoCA, issued: dict, stamps: dict, source: bytes) -> None:
    """The seal step at B-LTA over a batch of `records` + 1 records: CPU time of this thread per seal."""

    def session(field: str) -> engine.SigningSession:
        return engine.SigningSession(engine.Pkcs12Key(issued[field].pkcs12(PASSPHRASE), PASSPHRASE),
                                     timestamp_url=f"{url}{pki.TSA_PATH}", trust_roots=[ca.root], level="B-LTA")

    drafts = []
    with session("gvcn") as gvcn, session("hieu_truong") as principal:
        for _ in range(records + 1):
            pdf = gvcn.sign_field(source, "gvcn", certify=True, stamp=stamps["gvcn"])
            drafts.append(principal.sign_field(pdf, "hieu_truong", certify=False, stamp=stamps["hieu_truong"]))
    signing, checking, wall = [], [], []
    with session("con_dau") as seal:
        for pdf in drafts:
            start, start_cpu = time.perf_counter(), time.thread_time()
            sealed = seal.sign_field(pdf, "con_dau", certify=False, stamp=stamps["con_dau"], final=True)
            signed_cpu = time.thread_time()
            report = validate_pdf(sealed, [ca.root], required_level="B-LTA")
            assert report.ok, report.problems
            assert engine.last_archive_timestamp(sealed) is not None
            checking.append((time.thread_time() - signed_cpu) * 1000)
            signing.append((signed_cpu - start_cpu) * 1000)
            wall.append((time.perf_counter() - start) * 1000)
    later = slice(1, None) if records else slice(0, None)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"the seal at B-LTA, a batch of {len(drafts)} records (CPU ms of this thread per seal; load average {load}):")
    print(f"  first record   {signing[0] + checking[0]:6.0f}  (signing with validation data and document timestamp "
          f"{signing[0]:.0f}, policy check and read-back {checking[0]:.0f}); wall {wall[0]:.0f} ms")
    total = statistics.median([a + b for a, b in zip(signing[later], checking[later], strict=True)])
    print(f"  later, median  {total:6.0f}"
          f"  (signing {statistics.median(signing[later]):.0f}, checking {statistics.median(checking[later]):.0f}); "
          f"wall median {statistics.median(wall[later]):.0f} ms")


if __name__ == "__main__":
    main()
