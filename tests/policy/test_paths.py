"""Where the ledger and an amended catalogue are found: option, configuration, default."""

from __future__ import annotations

from pathlib import Path

import pytest

from policy.errors import CatalogueError, LedgerError
from policy.paths import catalogue_path, default_ledger_path, ledger_path


def test_default_ledger_lives_under_xdg_state_home(monkeypatch: pytest.MonkeyPatch,
                                                   tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert default_ledger_path() == tmp_path / "state" / "certescrow" / "ledger.sqlite3"


def test_relative_or_missing_xdg_state_home_falls_back_to_home(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_STATE_HOME", "relative/dir")
    expected = tmp_path / ".local" / "state" / "certescrow" / "ledger.sqlite3"
    assert default_ledger_path() == expected
    monkeypatch.delenv("XDG_STATE_HOME")
    assert default_ledger_path() == expected


def test_ledger_option_beats_configuration_beats_default(tmp_path: Path) -> None:
    assert ledger_path(tmp_path / "a.db", {"ledger": "/x/b.db"}) == tmp_path / "a.db"
    assert ledger_path(None, {"ledger": "/x/b.db"}) == Path("/x/b.db")
    assert ledger_path(None, {"ledger": ""}) == default_ledger_path()
    assert ledger_path(None, {}) == default_ledger_path()
    assert ledger_path(None, {"ledger": "~/l.db"}) == Path.home() / "l.db"
    with pytest.raises(LedgerError, match=r"policy\.ledger"):
        ledger_path(None, {"ledger": 5})


def test_catalogue_option_beats_configuration_and_empty_means_embedded(tmp_path: Path) -> None:
    assert catalogue_path(tmp_path / "c.toml", {"catalogue": "/x.toml"}) == tmp_path / "c.toml"
    assert catalogue_path(None, {"catalogue": "/x.toml"}) == Path("/x.toml")
    assert catalogue_path(None, {"catalogue": ""}) is None
    assert catalogue_path(None, {}) is None
    with pytest.raises(CatalogueError, match=r"policy\.catalogue"):
        catalogue_path(None, {"catalogue": ["a"]})


def test_a_ledger_name_is_repeated_escaped_and_shortened(tmp_path: Path) -> None:
    """A name the user typed (or a script built from a file name) comes back in the error
    without its control characters acting on the terminal, and 5,000 characters as 200."""
    from tests.clirun import certescrow

    directory = tmp_path / "d\x1b[31m"
    directory.mkdir()
    ran = certescrow("policy", "actions", "--ledger", str(directory), home=tmp_path)
    assert ran.returncode == 2
    assert "d\\u001b[31m: is a directory, not a ledger file" in ran.stderr
    assert "\x1b" not in ran.stderr
    ran = certescrow("policy", "actions", "--ledger", "n" * 5000, home=tmp_path)
    assert ran.returncode == 2
    assert "(5000 characters)" in ran.stderr
    assert "n" * 201 not in ran.stderr
