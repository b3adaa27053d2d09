"""A configuration file that cannot be used is a configuration error (exit 31, ``Error:
<file> …: <reason>``) on every command that takes one, never click's usage error (exit 2).

docs/daemon.md promises exit 31 for a bad configuration file, and systemd's
``Restart=on-failure`` and the operators' scripts tell a bad configuration from a bad command
line by it. ``click.Path``'s own checks (``exists``, ``readable``, ``dir_okay``) used to answer
first on ``agent run --config``, ``agent check-config FILE``, ``policy serve --config``,
``fleet … --serve-config`` and the root ``--config`` (whose message, when the path came from
``$CERTESCROW_CONFIG``, named an option the user never typed): now the project's one reader,
``agent.config.read_config_file``, refuses the file, the same way for each. The same holds for
``contract bind ID CERTFILE``, whose file is refused by the certificate reader (exit 17).

Tests run as root, who may read a mode-0000 file; an unreadable file is simulated where the
code looks: ``os.access`` (what ``click.Path(readable=True)`` asks) and ``os.open`` (what the
reader does) both refuse it.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agent.main import main

ENTRY_POINTS: dict[str, Callable[[Path], list[str]]] = {
    "root --config": lambda cfg: ["--config", str(cfg), "scan", str(cfg.parent)],
    "agent check-config FILE": lambda cfg: ["agent", "check-config", str(cfg)],
    "agent run --config": lambda cfg: ["agent", "run", "--once", "--config", str(cfg)],
    "policy serve --config": lambda cfg: ["policy", "serve", "--config", str(cfg)],
    "fleet hosts --serve-config": lambda cfg: ["fleet", "hosts", "--serve-config", str(cfg)],
}


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as info:
        main(argv)
    code = info.value.code
    return (code if isinstance(code, int) else 1), capsys.readouterr().err


def _unreadable(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``path`` is refused to this process as a mode-0000 file is to a user who is not root."""
    real_access, real_open = os.access, os.open
    denied = os.fsencode(path)

    def access(name: Any, mode: int, *args: Any, **kwargs: Any) -> bool:
        if os.fsencode(name) == denied and mode & os.R_OK:
            return False
        return real_access(name, mode, *args, **kwargs)

    def open_(name: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if os.fsencode(name) == denied:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(name))
        return real_open(name, flags, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)
    monkeypatch.setattr(os, "open", open_)


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_an_unreadable_configuration_file_exits_31_naming_it(
        entry: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[agent]\nhost = "web1"\n')
    _unreadable(config, monkeypatch)
    code, err = _run(ENTRY_POINTS[entry](config), capsys)
    assert (code, err) == (31, f"Error: configuration file {config}: permission denied\n")


def test_an_unreadable_file_in_certescrow_config_exits_31_without_naming_an_option(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[agent]\nhost = "web1"\n')
    _unreadable(config, monkeypatch)
    monkeypatch.setenv("CERTESCROW_CONFIG", str(config))
    code, err = _run(["scan", str(tmp_path)], capsys)
    assert (code, err) == (31, f"Error: configuration file {config}: permission denied\n")
    assert "--config" not in err


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_a_directory_given_as_the_configuration_exits_31(
        entry: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory = tmp_path / "conf.d"
    directory.mkdir()
    code, err = _run(ENTRY_POINTS[entry](directory), capsys)
    assert (code, err) == (31, f"Error: configuration file {directory} is a directory; it "
                               "must be a regular file\n")


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_a_configuration_path_under_a_file_exits_31(
        entry: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "etc").write_text("a file, not a directory\n")
    config = tmp_path / "etc" / "c.toml"
    code, err = _run(ENTRY_POINTS[entry](config), capsys)
    assert (code, err) == (31, f"Error: configuration file {config}: cannot open: "
                               f"{os.strerror(errno.ENOTDIR)}\n")


def test_contract_bind_of_a_directory_is_the_readers_error_17(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """docs/ledger.md: 17, ``contract bind``'s certificate file missing or unreadable."""
    ledger = tmp_path / "ledger.sqlite3"
    code, err = _run(["contract", "add", "C-1", "--item", "byo", "--tier", "1y",
                      "--at", "2026-04-01", "--ledger", str(ledger)], capsys)
    assert code == 0, err
    code, err = _run(["contract", "bind", "C-1", str(tmp_path), "--at", "2026-04-01",
                      "--ledger", str(ledger)], capsys)
    assert (code, err) == (17, f"Error: {tmp_path}: is a directory, not a file\n")
