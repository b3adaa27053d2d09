"""What the fleet's commands say when their output fails after they committed (session 15):
`fleet sign > /dev/full` said "what was written is incomplete" of a certificate already
signed and registered, so the operator believed nothing had happened; `fleet ca init` that
failed after making its vault and key file left both, and a re-run refused ("this vault
already holds a fleet CA"). A new vault is now made whole or not at all; a commit that stays
(a registered certificate, a CA in a vault that existed) is said, with the way on. Real
processes, /dev/full, a closed pipe, a real vault and ledger."""

from __future__ import annotations

import os
import re
import threading
import time
from pathlib import Path

import pytest

from policy.fleet_registry import FleetRegistry
from tests.fleet.fleetkit import run_desk
from vault import KeyFileSource, open_vault

FULL = "/dev/full"
needs_full = pytest.mark.skipif(not os.path.exists(FULL), reason="no /dev/full here")
SIGNED = re.compile(r"^Error: the client certificate for web05 \(serial ([0-9a-f]+), valid until "
                    r"\S+\) was signed and registered in the ledger (\S+)")


def _desk(tmp_path: Path) -> list[str]:
    """A desk with its CA, and web05's CSR; returns `fleet sign`'s arguments."""
    made = run_desk(["fleet", "ca", "init", "--vault", str(tmp_path / "desk.sqlite3"), "--out",
                     str(tmp_path / "ca.pem")], tmp_path)
    assert made.returncode == 0, made.stderr
    enrolled = run_desk(["agent", "enroll", "--host", "web05", "--vault",
                         str(tmp_path / "host.sqlite3"), "--csr-out",
                         str(tmp_path / "web05.csr")], tmp_path)
    assert enrolled.returncode == 0, enrolled.stderr
    return ["fleet", "sign", str(tmp_path / "web05.csr"), "--host", "web05", "--vault",
            str(tmp_path / "desk.sqlite3"), "--ledger", str(tmp_path / "ledger.sqlite3")]


def _accepted(tmp_path: Path, serial: str) -> bool:
    with FleetRegistry.open(str(tmp_path / "ledger.sqlite3")) as registry:
        return registry.refusal(host="web05", serial=serial) is None


@needs_full
def test_fleet_sign_to_a_full_stdout_says_the_certificate_was_signed_and_registered(
        tmp_path: Path) -> None:
    sign = _desk(tmp_path)
    with open(FULL, "wb") as full:
        done = run_desk(sign, tmp_path, stdout=full)
    assert done.returncode == 36, done.stderr  # standard output could not be written
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    found = SIGNED.match(lines[0])
    assert found is not None, done.stderr
    serial = found.group(1)
    assert "but standard output could not be written (ENOSPC: No space left on device)" \
        in lines[0]
    assert "incomplete" not in done.stderr
    assert "sign the CSR again with --out FILE" in lines[0]
    assert _accepted(tmp_path, serial)  # what the message says is so
    # and its way on works: the CSR signs again, into a file
    again = run_desk([*sign, "--out", str(tmp_path / "web05.pem")], tmp_path)
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "web05.pem").read_text().startswith("-----BEGIN CERTIFICATE-----")


def test_fleet_sign_into_a_pipe_nobody_reads_says_the_certificate_was_registered(
        tmp_path: Path) -> None:
    """`fleet sign CSR | ssh host 'cat > …'` whose ssh failed ended quietly with exit 0, the
    only copy of a registered certificate lost (the convention for `… | head`)."""
    sign = _desk(tmp_path)
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = run_desk(sign, tmp_path, stdout=write_end)
    finally:
        os.close(write_end)
    assert done.returncode == 36, done.stderr
    found = SIGNED.match(done.stderr)
    assert found is not None, done.stderr
    assert "(EPIPE: Broken pipe)" in done.stderr
    assert _accepted(tmp_path, found.group(1))


def test_fleet_sign_whose_out_file_appears_meanwhile_says_it_registered_the_certificate(
        tmp_path: Path) -> None:
    """The name is taken between staging and publishing (another process): the file is left
    as it is, and the error says the certificate was registered all the same."""
    sign = _desk(tmp_path)
    out = tmp_path / "web05.pem"
    stop = threading.Event()

    def take_the_name() -> None:  # as soon as the certificate is staged beside it
        while not stop.is_set():
            if any(p.name.startswith(".web05.pem.staged-") for p in tmp_path.iterdir()):
                out.write_text("another process's file\n")
                return
            time.sleep(0.001)

    racer = threading.Thread(target=take_the_name)
    racer.start()
    try:
        done = run_desk([*sign, "--out", str(out)], tmp_path)
    finally:
        stop.set()
        racer.join()
    assert done.returncode == 29, done.stderr
    assert f"{out} appeared meanwhile; it was left as it is" in done.stderr
    found = re.search(r"the client certificate for web05 \(serial ([0-9a-f]+), valid until "
                      r"\S+\) was signed and registered in the ledger", done.stderr)
    assert found is not None, done.stderr
    assert _accepted(tmp_path, found.group(1))
    assert out.read_text() == "another process's file\n"


def test_fleet_server_cert_whose_out_fails_after_storing_says_what_the_vault_holds(
        tmp_path: Path) -> None:
    """The name becomes a directory between staging and publishing (`--force`: the rename
    fails). The key and certificate stay in the vault, which existed: the error said only
    "cannot write", and exit 37 means nothing was stored unless the message says so."""
    sign = _desk(tmp_path)
    vault = sign[sign.index("--vault") + 1]
    out = tmp_path / "server.pem"
    stop = threading.Event()

    def take_the_name() -> None:  # as soon as the certificate is staged beside it
        while not stop.is_set():
            if any(p.name.startswith(".server.pem.staged-") for p in tmp_path.iterdir()):
                out.mkdir()
                return
            time.sleep(0.001)

    racer = threading.Thread(target=take_the_name)
    racer.start()
    try:
        done = run_desk(["fleet", "server-cert", "127.0.0.1", "--vault", vault, "--out",
                         str(out), "--force"], tmp_path)
    finally:
        stop.set()
        racer.join()
    assert done.returncode == 37, done.stderr
    found = re.search(r"the service's key and certificate were stored in the vault \S+ \(key = "
                      r'"([0-9a-f]+)"; its certificate is entry ([0-9a-f]+)\); `certescrow '
                      r"vault export \2 --vault \S+ --out FILE` writes the certificate",
                      done.stderr)
    assert found is not None, done.stderr
    assert out.is_dir()
    with open_vault(Path(vault), KeyFileSource(tmp_path / "vault.key")) as opened:
        assert opened.info(found.group(1)).kind == "private-key"
        assert opened.info(found.group(2)).kind == "certificate"


@needs_full
def test_fleet_ca_init_that_fails_after_making_its_vault_leaves_nothing_it_made(
        tmp_path: Path) -> None:
    """The certificate goes to a full standard output after the vault, its key file and two
    directories were made: all four are removed, what was there before is not, and a re-run
    makes the CA (it refused: "this vault already holds a fleet CA")."""
    desk = tmp_path / "desk"
    desk.mkdir(mode=0o700)
    kept = desk / "notes.txt"
    kept.write_text("the desk's own file\n")
    vault, key = desk / "new" / "deeper" / "v.sqlite3", desk / "keys" / "v.key"
    argv = ["fleet", "ca", "init", "--vault", str(vault), "--key-file", str(key)]
    with open(FULL, "wb") as full:
        done = run_desk(argv, tmp_path, stdout=full)
    assert done.returncode == 36, done.stderr
    assert f"removed the vault {vault} and the key file {key}" in done.stderr
    assert sorted(p.name for p in desk.iterdir()) == ["notes.txt"]
    assert kept.read_text() == "the desk's own file\n"
    again = run_desk([*argv, "--out", str(tmp_path / "ca.pem")], tmp_path)
    assert again.returncode == 0, again.stderr


def test_fleet_ca_init_that_fails_after_writing_its_key_file_removes_it(
        tmp_path: Path) -> None:
    """The key file is written, then the vault cannot be (its path is the key file's, a slip):
    the key file and the directory made for it are removed, not left as a "damaged vault"
    every re-run trips on."""
    vault = tmp_path / "desk" / "x"
    done = run_desk(["fleet", "ca", "init", "--vault", str(vault), "--key-file", str(vault),
                     "--out", str(tmp_path / "ca.pem")], tmp_path)
    assert done.returncode != 0
    assert not (tmp_path / "desk").exists(), done.stderr
    assert not (tmp_path / "ca.pem").exists()
    assert not [p for p in tmp_path.iterdir() if ".staged-" in p.name]


def test_fleet_ca_init_whose_key_file_cannot_be_written_leaves_no_directory(
        tmp_path: Path) -> None:
    """A path under a regular file cannot be made, even as root."""
    (tmp_path / "plain").write_text("a file\n")
    done = run_desk(["fleet", "ca", "init", "--vault", str(tmp_path / "desk" / "v.sqlite3"),
                     "--key-file", str(tmp_path / "plain" / "v.key")], tmp_path)
    assert done.returncode == 27, done.stderr
    assert not (tmp_path / "desk").exists()
    assert (tmp_path / "plain").read_text() == "a file\n"


@needs_full
def test_fleet_ca_init_into_a_vault_that_existed_says_where_the_ca_is(tmp_path: Path) -> None:
    """A vault that existed is not removed: the CA stays in it, and the error names its
    entries and the export that writes the certificate."""
    vault = tmp_path / "desk.sqlite3"
    assert run_desk(["vault", "init", "--vault", str(vault)], tmp_path).returncode == 0
    key_before = (tmp_path / "vault.key").read_bytes()
    with open(FULL, "wb") as full:
        done = run_desk(["fleet", "ca", "init", "--vault", str(vault)], tmp_path, stdout=full)
    assert done.returncode == 36, done.stderr
    found = re.search(r"the fleet CA 'certescrow fleet CA' was made in the vault \S+ \(ca_key = "
                      r'"([0-9a-f]+)"; its certificate is entry ([0-9a-f]+)\), but standard '
                      r"output could not be written \(ENOSPC: .*\); `certescrow vault export "
                      r"\2 --vault \S+ --out FILE` writes the certificate", done.stderr)
    assert found is not None, done.stderr
    assert "incomplete" not in done.stderr
    assert (tmp_path / "vault.key").read_bytes() == key_before
    exported = run_desk(["vault", "export", found.group(2), "--vault", str(vault), "--out",
                         str(tmp_path / "ca.pem")], tmp_path)
    assert exported.returncode == 0, exported.stderr
    with open_vault(vault, KeyFileSource(tmp_path / "vault.key")) as opened:
        assert opened.get(found.group(2)) == (tmp_path / "ca.pem").read_bytes()
        assert opened.info(found.group(1)).kind == "private-key"


@needs_full
def test_agent_enroll_to_a_full_stdout_says_where_its_key_is(tmp_path: Path) -> None:
    vault = tmp_path / "host.sqlite3"
    assert run_desk(["vault", "init", "--vault", str(vault)], tmp_path).returncode == 0
    with open(FULL, "wb") as full:
        done = run_desk(["agent", "enroll", "--host", "web05", "--vault", str(vault)], tmp_path,
                        stdout=full)
    assert done.returncode == 36, done.stderr
    found = re.search(r"the agent's key was stored in the vault \S+ \(client_key = "
                      r'"([0-9a-f]+)"\), but standard output could not be written', done.stderr)
    assert found is not None, done.stderr
    assert f"vault rm --vault {vault} {found.group(1)}" in done.stderr
    with open_vault(vault, KeyFileSource(tmp_path / "vault.key")) as opened:
        assert opened.info(found.group(1)).kind == "private-key"


@pytest.mark.parametrize("target", ["vault.key", "desk.sqlite3", "ledger.sqlite3"])
def test_an_out_naming_the_vault_its_key_file_or_the_ledger_is_refused(
        tmp_path: Path, target: str) -> None:
    """`--out` for `--key-file` (or `--ledger`), with --force, replaced the master key file by
    a certificate after the commit: the vault locked for good."""
    sign = _desk(tmp_path)
    assert run_desk([*sign, "--out", str(tmp_path / "first.pem")], tmp_path).returncode == 0
    before = (tmp_path / target).read_bytes()
    done = run_desk([*sign, "--out", str(tmp_path / target), "--force"], tmp_path)
    assert done.returncode == 37, done.stderr
    assert f"{tmp_path / target} is the " in done.stderr
    assert (tmp_path / target).read_bytes() == before
    fresh = tmp_path / "fresh"
    fresh.mkdir(mode=0o700)
    made = run_desk(["fleet", "ca", "init", "--vault", str(fresh / "v.sqlite3"), "--key-file",
                     str(fresh / "v.key"), "--out", str(fresh / "v.key")], tmp_path)
    assert made.returncode == 37, made.stderr
    assert list(fresh.iterdir()) == []
