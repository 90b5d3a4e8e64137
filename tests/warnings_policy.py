"""The suite's warnings policy, second half (the first is `filterwarnings` in pyproject.toml).

Deprecations announced inside third-party packages do not fail the run: each distinct one is listed
in one line of the terminal summary, so that it is seen and handled at the next upgrade. Warnings from
this project's own code stay errors (pyproject.toml).
"""

from __future__ import annotations

import re
import warnings
from collections import Counter
from pathlib import Path

import pytest

DEPRECATIONS = (DeprecationWarning, PendingDeprecationWarning, FutureWarning)
_seen: Counter[tuple[str, str, str]] = Counter()


def package_of(filename: str) -> str:
    """The distribution a warning came from: the folder under site-packages, else the file's folder."""
    parts = Path(filename).parts
    for marker in ("site-packages", "dist-packages"):
        if marker in parts:
            index = parts.index(marker)
            if index + 1 < len(parts):
                return re.sub(r"\.py$", "", parts[index + 1])
    return Path(filename).parent.name if Path(filename).name == "__init__.py" else Path(filename).stem


def pytest_warning_recorded(warning_message: warnings.WarningMessage, when: str, nodeid: str,
                            location: tuple[str, int, str] | None) -> None:
    if issubclass(warning_message.category, DEPRECATIONS):
        message = str(warning_message.message).strip().splitlines()[0][:160] if str(warning_message.message) else ""
        _seen[(package_of(warning_message.filename), warning_message.category.__name__, message)] += 1


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for (package, category, message), count in sorted(_seen.items()):
        terminalreporter.write_line(
            f"third-party {category} (reported, not an error) from {package}: {message} [x{count}]", yellow=True)
