"""Running the installed ``certescrow`` command as a user would, for the tests that need the
real process (its exit status, its stderr, its persisted state).

The child's environment drops the caller's ``CERTESCROW_*`` and ``XDG_*`` variables so that a
developer's own configuration, vault key or test clock never leaks into a test, and gets a
``HOME`` of the test's own.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

__all__ = ["CERTESCROW", "agent_config", "certescrow", "clean_env"]

CERTESCROW = Path(sys.executable).with_name("certescrow")


def clean_env(home: Path, *, at: str | None = None, **extra: str) -> dict[str, str]:
    """The environment a test's child runs in; ``at`` sets the test-only clock."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CERTESCROW_", "XDG_"))}
    env["HOME"] = str(home)
    if at is not None:
        env["CERTESCROW_TESTONLY_NOW"] = at
    env.update(extra)
    return env


def certescrow(*args: str, home: Path, at: str | None = None, cwd: Path | None = None,
               timeout: float = 120, **extra: str) -> subprocess.CompletedProcess[str]:
    """Run ``certescrow ARGS`` to completion; a non-zero exit is the test's to judge."""
    return subprocess.run([str(CERTESCROW), *args], capture_output=True, text=True,
                          env=clean_env(home, at=at, **extra), timeout=timeout, check=False,
                          cwd=cwd)


def agent_config(directory: Path, *roots: Path) -> Path:
    """A daemon configuration watching ``roots``, its ledger (and read index) under
    ``directory/state``, with a 1 ms quiet period so that ``--once`` does not wait."""
    config = directory / "config.toml"
    config.write_text(f'[policy]\nledger = "{directory}/state/ledger.sqlite3"\n'
                      '[agent]\nquiet_period_ms = 1\n'
                      + "".join(f'[[agent.stores]]\npath = "{root}"\n' for root in roots))
    return config
