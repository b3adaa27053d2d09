"""The test clock hook, for subprocess tests.

``CERTESCROW_TESTONLY_NOW`` pins the clock of a real ``certescrow`` process, and the process says
so on stderr (a stray export in production must not go unnoticed). Tests that assert an otherwise
silent stderr remove that one line with :func:`without_clock_warning`.
"""

from __future__ import annotations

import os

__all__ = ["CLOCK_ENV", "pinned_env", "without_clock_warning"]

CLOCK_ENV = "CERTESCROW_TESTONLY_NOW"
_PREFIX = f"warning: {CLOCK_ENV} is set"


def pinned_env(at: str, **extra: str) -> dict[str, str]:
    """``os.environ`` with the clock pinned at ``at`` (ISO 8601), plus ``extra``."""
    return {**os.environ, CLOCK_ENV: at, **extra}


def without_clock_warning(stderr: str) -> str:
    """``stderr`` without the pinned-clock warning line(s)."""
    return "".join(line for line in stderr.splitlines(keepends=True)
                   if not line.startswith(_PREFIX))
