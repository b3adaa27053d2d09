"""The public files the fleet's commands write (a CSR, a certificate) as the last step of a
commit elsewhere (a key into the vault, a certificate into the ledger): a file that cannot be
written leaves nothing committed, and an existing file is not replaced without --force, as
`vault export --out` (review 1 of the fleet desk: `agent enroll --csr-out` into a missing
directory left a key in the vault, and over an existing CSR replaced it in silence). Real
processes, a real vault and ledger."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from policy.fleet_registry import FleetRegistry
from tests.fleet.fleetkit import run_desk
from vault import KeyFileSource, open_vault


def _keys(tmp_path: Path, vault: str) -> list[str]:
    with open_vault(tmp_path / vault, KeyFileSource(tmp_path / "vault.key")) as opened:
        return [e.entry_id for e in opened.entries(kind="private-key")]


def _enroll(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_desk(["agent", "enroll", "--host", "web05", "--vault", str(tmp_path / "h.sqlite3"),
                 *extra], tmp_path)


def test_enroll_stores_no_key_when_its_csr_cannot_be_written(tmp_path: Path) -> None:
    assert _enroll(tmp_path, "--csr-out", str(tmp_path / "first.csr")).returncode == 0
    keys = _keys(tmp_path, "h.sqlite3")
    missing = tmp_path / "no-such-dir" / "web05.csr"
    done = _enroll(tmp_path, "--csr-out", str(missing))
    assert done.returncode == 37, done.stderr
    assert f"{missing}: cannot write: directory {missing.parent} does not exist" in done.stderr
    assert "nothing was stored" in done.stderr
    assert "client_key" not in done.stdout + done.stderr
    assert _keys(tmp_path, "h.sqlite3") == keys  # no orphan key


def test_enroll_into_a_missing_directory_makes_no_vault_either(tmp_path: Path) -> None:
    done = _enroll(tmp_path, "--csr-out", str(tmp_path / "no-such-dir" / "web05.csr"))
    assert done.returncode == 37, done.stderr
    assert not (tmp_path / "h.sqlite3").exists()
    assert not (tmp_path / "vault.key").exists()


def test_enroll_never_replaces_a_csr_without_force(tmp_path: Path) -> None:
    csr = tmp_path / "web05.csr"
    assert _enroll(tmp_path, "--csr-out", str(csr)).returncode == 0
    first, keys = csr.read_bytes(), _keys(tmp_path, "h.sqlite3")
    again = _enroll(tmp_path, "--csr-out", str(csr))
    assert again.returncode == 29, again.stderr
    assert f"{csr} exists; use --force to overwrite it" in again.stderr
    assert csr.read_bytes() == first
    assert _keys(tmp_path, "h.sqlite3") == keys
    forced = _enroll(tmp_path, "--csr-out", str(csr), "--force")
    assert forced.returncode == 0, forced.stderr
    assert csr.read_bytes() != first
    assert len(_keys(tmp_path, "h.sqlite3")) == len(keys) + 1
    assert oct(csr.stat().st_mode & 0o777) == oct(0o644)  # public
    assert not [p for p in tmp_path.iterdir() if ".staged-" in p.name]


def test_fleet_sign_registers_nothing_when_its_certificate_cannot_be_written(
        tmp_path: Path) -> None:
    """A registered certificate nobody can hand out supersedes the host's working one."""
    made = run_desk(["fleet", "ca", "init", "--vault", str(tmp_path / "desk.sqlite3"), "--out",
                 str(tmp_path / "ca.pem")], tmp_path)
    assert made.returncode == 0, made.stderr
    assert _enroll(tmp_path, "--csr-out", str(tmp_path / "web05.csr")).returncode == 0
    ledger = tmp_path / "ledger.sqlite3"
    (tmp_path / "taken.pem").write_text("the host's certificate\n")
    for out, code in ((tmp_path / "no-such-dir" / "web05.pem", 37),
                      (tmp_path / "taken.pem", 29)):
        done = run_desk(["fleet", "sign", str(tmp_path / "web05.csr"), "--host", "web05",
                     "--vault", str(tmp_path / "desk.sqlite3"), "--ledger", str(ledger),
                     "--out", str(out)], tmp_path)
        assert done.returncode == code, done.stderr
        assert "nothing was stored or registered" in done.stderr
        if ledger.exists():
            with FleetRegistry.open(str(ledger)) as registry:
                assert registry.enrolled("web05") is None
    assert (tmp_path / "taken.pem").read_text() == "the host's certificate\n"


def test_fleet_ca_init_never_replaces_a_ca_certificate_file(tmp_path: Path) -> None:
    """A CA made in the wrong vault must not overwrite the fleet's fleet-ca.pem, which the
    service and every agent trust."""
    ca = tmp_path / "fleet-ca.pem"
    ca.write_text("the fleet's CA\n")
    done = run_desk(["fleet", "ca", "init", "--vault", str(tmp_path / "other.sqlite3"), "--out",
                 str(ca)], tmp_path)
    assert done.returncode == 29, done.stderr
    assert ca.read_text() == "the fleet's CA\n"
    assert not (tmp_path / "other.sqlite3").exists()


def test_force_never_replaces_a_link_or_a_device(tmp_path: Path) -> None:
    """``--force`` replaced the name: ``--csr-out /dev/null --force`` as root would have made
    /dev/null a regular file for the whole host, a link kept by configuration management lost
    its target (the re-review of session 14). Refused, with or without --force."""
    target = tmp_path / "kept.csr"
    target.write_bytes(b"kept")
    link = tmp_path / "managed.csr"
    link.symlink_to(target)
    fifo = tmp_path / "pipe.csr"
    os.mkfifo(fifo)
    loop = tmp_path / "loop.csr"  # resolving it, to compare with the vault, was a traceback
    loop.symlink_to(loop)
    assert _enroll(tmp_path, "--csr-out", str(tmp_path / "first.csr")).returncode == 0
    keys = _keys(tmp_path, "h.sqlite3")
    for destination, what in ((link, "a symbolic link"), (fifo, "not a regular file"),
                              (loop, "a symbolic link")):
        done = _enroll(tmp_path, "--csr-out", str(destination), "--force")
        assert done.returncode == 37, done.stderr
        assert f"{destination} is {what}; give the path of a regular file" in done.stderr
    assert link.is_symlink()
    assert target.read_bytes() == b"kept"
    assert fifo.is_fifo()
    assert _keys(tmp_path, "h.sqlite3") == keys


def test_an_out_that_is_a_directory_is_an_output_file_error_not_a_usage_error(
        tmp_path: Path) -> None:
    """An `--out` that names a directory was click's usage error (exit 2, "Invalid value for
    '--out'"), and every other output file that cannot be written exit 31, the configuration
    file's code: both are 37 now, in the command's words, with nothing stored or registered."""
    made = run_desk(["fleet", "ca", "init", "--vault", str(tmp_path / "desk.sqlite3"), "--out",
                     str(tmp_path / "ca.pem")], tmp_path)
    assert made.returncode == 0, made.stderr
    assert _enroll(tmp_path, "--csr-out", str(tmp_path / "web05.csr")).returncode == 0
    keys = _keys(tmp_path, "h.sqlite3")
    directory = tmp_path / "certs"
    directory.mkdir()
    ledger = tmp_path / "ledger.sqlite3"
    for force in ([], ["--force"]):
        done = run_desk(["fleet", "sign", str(tmp_path / "web05.csr"), "--host", "web05",
                         "--vault", str(tmp_path / "desk.sqlite3"), "--ledger", str(ledger),
                         "--out", str(directory), *force], tmp_path)
        assert done.returncode == 37, done.stderr
        assert done.stderr == (f"Error: {directory} is a directory; give the path of a regular "
                               "file to write (nothing was stored or registered)\n")
        if ledger.exists():
            with FleetRegistry.open(str(ledger)) as registry:
                assert registry.enrolled("web05") is None
        enrolled = _enroll(tmp_path, "--csr-out", str(directory), *force)
        assert enrolled.returncode == 37, enrolled.stderr
        assert _keys(tmp_path, "h.sqlite3") == keys
    assert list(directory.iterdir()) == []
