"""The warnings policy: a third-party deprecation is reported and the run goes on; ours fails it.

An inner pytest run with this project's own `filterwarnings` (read from pyproject.toml) and its
reporting plugin, over a stand-in third-party package and a stand-in module of ours.
"""

from __future__ import annotations

import tomllib

import pytest

from portal.app import PROJECT_ROOT


@pytest.fixture
def inner(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    options = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    lines = "\n".join(f"    {value}" for value in options["filterwarnings"])
    pytester.makefile(".ini", pytest=f"[pytest]\nfilterwarnings =\n{lines}\n")
    pytester.mkpydir("thirdparty")
    (pytester.path / "thirdparty" / "__init__.py").write_text(
        "import warnings\nwarnings.warn('old_api() is deprecated', DeprecationWarning, stacklevel=1)\n")
    pytester.mkpydir("portal")
    (pytester.path / "portal" / "legacy.py").write_text(
        "import warnings\nwarnings.warn('our own deprecated helper', DeprecationWarning, stacklevel=1)\n")
    # The inner run finds the reporting plugin in this project, but the stand-in `portal` first (cwd).
    monkeypatch.setenv("PYTHONPATH", str(PROJECT_ROOT))
    return pytester


def test_a_third_party_deprecation_is_reported_and_the_run_passes(inner: pytest.Pytester) -> None:
    inner.makepyfile(test_inner="def test_uses_a_library():\n    import thirdparty\n")
    result = inner.runpytest_subprocess("-p", "tests.warnings_policy")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*third-party DeprecationWarning*from thirdparty: old_api() is deprecated*"])


def test_a_deprecation_raised_in_our_own_code_fails_the_run(inner: pytest.Pytester) -> None:
    inner.makepyfile(test_inner="def test_uses_our_code():\n    import portal.legacy\n")
    result = inner.runpytest_subprocess("-p", "tests.warnings_policy")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*DeprecationWarning: our own deprecated helper*"])
