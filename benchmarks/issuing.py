"""The issuing figures in one run: a whole school through the real queue (`issue_school.py`, cold and warm)
and one record's pipeline against the competent stock rival (`issue_pipeline.py`, cold and warm), each
against its target, then every verdict again in one list at the end.

    .venv/bin/python benchmarks/issuing.py [--smoke]

Each script runs as its own process, one after the other (they must not share the machine's two cores),
each once the load average of the last minute is below `common.QUIET_LOAD` (the school leaves ~2.5 behind it),
waiting `common.QUIET_WAIT_SECONDS` at most; `--smoke` does not wait.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from benchmarks import common  # noqa: E402

SCRIPTS = ("issue_school.py", "issue_pipeline.py")

def main() -> None:
    args = common.parse_args(argparse.ArgumentParser(description=__doc__), {})
    verdicts: list[str] = []
    failed = False
    for script in SCRIPTS:
        command = [sys.executable, str(PROJECT_ROOT / "benchmarks" / script)] + (["--smoke"] if args.smoke else [])
        if not args.smoke:
            common.wait_for_quiet()
        print(f"\n== {script} (load average {os.getloadavg()[0]:.2f})", flush=True)
        with subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True) as process:
            assert process.stdout is not None
            for line in process.stdout:
                print(line, end="", flush=True)
                if "(target" in line:
                    verdicts.append(f"{script}: {line.strip()}")
        failed = failed or process.returncode != 0
    print("\n== Verdicts")
    for verdict in verdicts:
        print(f"  {verdict}")
    if failed:
        raise SystemExit("a benchmark failed (see above)")


if __name__ == "__main__":
    main()
