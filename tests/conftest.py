"""Test isolation shared by every package's tests.

Every test runs with its own ``HOME`` and XDG directories, no certescrow environment variables,
and a real file-backed keyring inside that ``HOME``, so no test can touch the developer's real
keyring, configuration, ledger or vault.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.certfactory import make_cert

__all__ = ["make_cert"]


@pytest.fixture(autouse=True)
def isolated_environment(tmp_path_factory: pytest.TempPathFactory,
                         monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path_factory.mktemp("home")
    for name in list(os.environ):
        if name.startswith(("CERTESCROW_", "CREDENTIALS_DIRECTORY", "NOTIFY_SOCKET",
                            "WATCHDOG_", "XDG_")):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(home / ".local" / "state"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / ".local" / "share"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    # A real keyring backend that stores under $HOME (keyrings.alt), never the desktop keyring.
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyrings.alt.file.PlaintextKeyring")
    return home


@pytest.fixture(autouse=True)
def keep_the_test_process_dumpable(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests that call ``agent.main.main`` in-process would otherwise set the test process's
    core limit to 0 for good (the hard limit cannot be raised again), and the tests that prove
    a child leaves no core behind would then pass whatever the child did. ``certescrow``
    processes the tests start forbid core dumps for real (tests/cli/test_no_core_dumps.py)."""
    from vault import nocore

    monkeypatch.setattr(nocore, "forbid_core_dumps", lambda: None)
