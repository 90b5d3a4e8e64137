"""Every benchmark script still runs, end to end, at its smoke size: none can rot unnoticed.

The figures of a smoke run are not measurements (benchmarks/README.md has those). The scripts run once per
CI, on the production-stack run, where the PostgreSQL-only ones (the compliance board, the teacher pages under
load through gunicorn) can run too. The load benchmark's smoke run uses its Python load generator, so CI needs
no `wrk`.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from portal.app import PROJECT_ROOT

# `issuing.py` only runs two of these one after the other (both run here on their own).
SCRIPTS = sorted(p.name for p in (PROJECT_ROOT / "benchmarks").glob("*.py")
                 if p.name not in {"common.py", "issuing.py"})


def test_the_benchmarks_are_all_listed_in_their_readme():
    readme = (PROJECT_ROOT / "benchmarks" / "README.md").read_text()
    assert [s for s in [*SCRIPTS, "issuing.py"] if f"`{s}`" not in readme] == []


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS)
def test_every_benchmark_runs_at_its_smoke_size(script):
    admin_url = os.environ.get("TEST_DATABASE_URL")
    if not admin_url:
        pytest.skip("the benchmarks run once per CI run, on the production stack (TEST_DATABASE_URL)")
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env["BENCH_DATABASE_URL"] = admin_url
    result = subprocess.run([sys.executable, str(PROJECT_ROOT / "benchmarks" / script), "--smoke"], cwd=PROJECT_ROOT,
                            env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "smoke run" in result.stdout and "Traceback" not in result.stderr
