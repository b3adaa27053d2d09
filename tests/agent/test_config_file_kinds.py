"""A configuration file is a regular file of at most ``MAX_CONFIG_BYTES``, or an error.

``certescrow --config /dev/zero`` once read until memory ran out, and a FIFO given as
``--config`` (root or ``policy serve``) blocked the command forever. The configuration is now
read as the vault reads its key and password files (``vault.secretfile.read_secret_file``):
opened without blocking, checked on the descriptor, capped. Every refusal is a configuration
error (exit 31) naming the file. The hanging cases run in a real process with a timeout, and
the memory-hungry one under an address-space limit, so a regression fails the test rather than
the machine.
"""

from __future__ import annotations

import os
import resource
import subprocess
from pathlib import Path

import pytest

from agent.config import MAX_CONFIG_BYTES, load_raw_config, read_config_file
from agent.errors import ConfigError
from agent.fleet_cli import load_serve_config
from tests.clirun import CERTESCROW, clean_env

TIMEOUT_S = 30
ADDRESS_SPACE = 3 * 1024 ** 3
"""Room to import everything, not to read /dev/zero for long."""


def _limited() -> None:  # in the child, before exec
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


def _run(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    """``certescrow ARGS``, killed (and the test failed) if it hangs or grows without bound."""
    return subprocess.run([str(CERTESCROW), *args], capture_output=True, text=True,
                          env=clean_env(home), timeout=TIMEOUT_S, check=False,
                          preexec_fn=_limited)  # (setrlimit only: safe between fork/exec)


def _fifo(tmp_path: Path) -> Path:
    fifo = tmp_path / "cfg.fifo"
    os.mkfifo(fifo)
    return fifo


def _oversized(tmp_path: Path) -> Path:
    """Valid TOML (comments only) one byte over the cap: refused for its size, not parsed."""
    path = tmp_path / "big.toml"
    line = "#" * 1023 + "\n"
    path.write_text(line * (MAX_CONFIG_BYTES // len(line)) + "\n", encoding="utf-8")
    path.chmod(0o600)
    assert path.stat().st_size == MAX_CONFIG_BYTES + 1
    return path


# ----------------------------------------------------------------------- the root --config


@pytest.mark.parametrize(("name", "kind"), [("fifo", "is a FIFO (named pipe)"),
                                            ("zero", "is a device"),
                                            ("directory", "is a directory")])
def test_root_config_that_is_not_a_regular_file_is_refused_at_once(
        tmp_path: Path, name: str, kind: str) -> None:
    target = {"fifo": lambda: _fifo(tmp_path), "zero": lambda: Path("/dev/zero"),
              "directory": lambda: tmp_path}[name]()
    (tmp_path / "x.pem").write_text("not a certificate\n")
    done = _run("--config", str(target), "scan", str(tmp_path / "x.pem"), home=tmp_path)
    assert done.returncode == 31, done.stderr
    assert done.stderr == (f"Error: configuration file {target} {kind}; it must be a "
                           "regular file\n")


def test_root_config_over_the_size_cap_is_refused_naming_the_file(tmp_path: Path) -> None:
    big = _oversized(tmp_path)
    done = _run("--config", str(big), "scan", str(tmp_path), home=tmp_path)
    assert done.returncode == 31, done.stderr
    assert done.stderr == (f"Error: configuration file {big} is too large "
                           f"({MAX_CONFIG_BYTES + 1} bytes; at most {MAX_CONFIG_BYTES})\n")


def test_a_fifo_at_the_default_location_is_refused_not_passed_over(tmp_path: Path) -> None:
    """Passing over it would run on /etc/certescrow/config.toml or the built-in defaults:
    another configuration than the one meant to be at ~/.config/certescrow/config.toml."""
    default = tmp_path / ".config" / "certescrow" / "config.toml"
    default.parent.mkdir(parents=True)
    os.mkfifo(default)
    done = _run("agent", "check-config", home=tmp_path)
    assert done.returncode == 31, done.stdout + done.stderr
    assert done.stderr == (f"Error: configuration file {default} is a FIFO (named pipe); it "
                           "must be a regular file\n")


def test_a_regular_file_at_the_cap_is_read(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    text = '[agent]\nhost = "web1"\n'
    path.write_text(text + "#" * (MAX_CONFIG_BYTES - len(text) - 1) + "\n", encoding="utf-8")
    assert path.stat().st_size == MAX_CONFIG_BYTES
    assert load_raw_config(path) == ({"agent": {"host": "web1"}}, path)


def test_oversized_and_directory_refused_by_the_one_reader(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"is too large \(1048577 bytes; at most 1048576\)"):
        read_config_file(_oversized(tmp_path))
    with pytest.raises(ConfigError, match="is a directory; it must be a regular file"):
        read_config_file(tmp_path)


# ------------------------------------------------------------------ policy serve --config


@pytest.mark.parametrize(("name", "kind"), [("fifo", "is a FIFO (named pipe)"),
                                            ("zero", "is a device"),
                                            ("directory", "is a directory")])
def test_policy_serve_config_that_is_not_a_regular_file_is_refused_at_once(
        tmp_path: Path, name: str, kind: str) -> None:
    target = {"fifo": lambda: _fifo(tmp_path), "zero": lambda: Path("/dev/zero"),
              "directory": lambda: tmp_path}[name]()
    done = _run("policy", "serve", "--config", str(target), home=tmp_path)
    assert done.returncode == 31, done.stderr
    assert done.stderr == (f"Error: configuration file {target} {kind}; it must be a "
                           "regular file\n")


def test_policy_serve_config_over_the_size_cap_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"configuration file .*big\.toml is too large"):
        load_serve_config(_oversized(tmp_path))
