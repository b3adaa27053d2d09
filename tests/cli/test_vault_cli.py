"""``certescrow vault …`` through click's CliRunner, plus one real subprocess run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from tests.vault.helpers import PDF, issued, key_pem, sql
from vault.cli import vault_group
from vault.errors import (
    VaultConflictError,
    VaultInputError,
    VaultIntegrityError,
    VaultLockedError,
    VaultPermissionError,
)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, Path]:
    vault_dir = tmp_path / "v"
    return {"vault": vault_dir / "vault.sqlite3", "key": tmp_path / "master.key",
            "tmp": tmp_path}


@pytest.fixture
def keyring_backend(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """The real file-backed keyring under the isolated HOME (keyring caches its backend).
    It is a plaintext file, which the vault accepts only when told to."""
    import keyring
    from keyrings.alt.file import PlaintextKeyring

    monkeypatch.setenv("CERTESCROW_VAULT_ALLOW_PLAINTEXT_KEYRING", "1")

    previous = keyring.get_keyring()
    keyring.set_keyring(PlaintextKeyring())
    try:
        yield keyring.get_keyring()
    finally:
        keyring.set_keyring(previous)


def run(args: list[str], *, config: dict[str, Any] | None = None,
        input: bytes | None = None) -> Result:
    return CliRunner().invoke(vault_group, args, obj={"config": config or {}}, input=input)


def ok(args: list[str], **kwargs: Any) -> Result:
    result = run(args, **kwargs)
    assert result.exception is None, (result.output, result.exception)
    assert result.exit_code == 0
    return result


def common(env: dict[str, Path]) -> list[str]:
    return ["--vault", str(env["vault"]), "--key-file", str(env["key"])]


@pytest.fixture
def initialised(env: dict[str, Path]) -> dict[str, Path]:
    ok(["init", *common(env)])
    return env


def test_init_with_a_new_key_file_creates_it_0600_and_the_vault(env: dict[str, Path]) -> None:
    result = ok(["init", *common(env)])
    assert "Created vault" in result.output
    assert (env["key"].stat().st_mode & 0o777) == 0o600
    assert (env["vault"].stat().st_mode & 0o777) == 0o600
    again = run(["init", *common(env)])
    assert isinstance(again.exception, VaultConflictError)


def test_vault_path_defaults_to_xdg_data_home_then_configuration(env: dict[str, Path]) -> None:
    ok(["init", "--key-file", str(env["key"])])
    default = Path(os.environ["XDG_DATA_HOME"]) / "certescrow" / "vault.sqlite3"
    assert default.is_file()
    configured = env["tmp"] / "conf" / "vault.sqlite3"
    config = {"vault": {"path": str(configured), "key_source": "key-file",
                        "key_file": str(env["key"])}}
    ok(["init"], config=config)
    assert configured.is_file()
    status = json.loads(ok(["status", "--json"], config=config).stdout)
    assert status["path"] == str(configured)
    assert status["locked"] is False


def test_key_file_from_the_environment_serves_every_command(
    env: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # An operator sets it once per shell instead of repeating --key-file on every command.
    monkeypatch.setenv("CERTESCROW_VAULT_KEY_FILE", str(env["key"]))
    ok(["init", "--vault", str(env["vault"])])
    assert (env["key"].stat().st_mode & 0o777) == 0o600
    ok(["put", "--vault", str(env["vault"]), "--kind", "document", "--label", "memo"],
       input=b"hello")
    status = json.loads(ok(["status", "--json", "--vault", str(env["vault"])]).stdout)
    assert status["locked"] is False
    monkeypatch.delenv("CERTESCROW_VAULT_KEY_FILE")
    # Without it the configured source (the OS keyring) is used, which holds no key here.
    assert run(["verify", "--vault", str(env["vault"])]).exit_code != 0


def test_status_reports_a_locked_vault_without_failing(initialised: dict[str, Path]) -> None:
    other = initialised["tmp"] / "other.key"
    ok(["init", "--vault", str(initialised["tmp"] / "x" / "v.sqlite3"), "--key-file", str(other)])
    status = json.loads(ok(["status", "--json", "--vault", str(initialised["vault"]),
                            "--key-file", str(other)]).stdout)
    assert status["locked"] is True
    assert "does not open" in status["lock_reason"]
    text = ok(["status", *common(initialised)]).output
    assert "unlocked" in text
    assert "format version: 1" in text


def test_status_with_the_key_settles_a_killed_rotations_pending_key_without_it_not(
        initialised: dict[str, Path]) -> None:
    """docs/vault.md: which commands remove the `KEY.next` a rotation killed before its
    commit leaves (a reviewer saw `vault status` leave it: run without the key, or while
    another process held the write lock, it cannot tell a dead rotation from a live one)."""
    from vault import KeyFileSource
    from vault.envelope import new_key

    pending = initialised["key"].with_name(initialised["key"].name + ".next")
    KeyFileSource(initialised["key"]).stage(new_key())  # what the killed rotation left
    other = initialised["tmp"] / "other.key"
    ok(["init", "--vault", str(initialised["tmp"] / "x" / "v.sqlite3"), "--key-file", str(other)])
    ok(["status", "--vault", str(initialised["vault"]), "--key-file", str(other)])
    assert pending.exists()  # opened with another key: not this key file's to settle
    ok(["list", "--vault", str(initialised["vault"])])
    assert pending.exists()  # opened without a key
    ok(["status", *common(initialised)])
    assert not pending.exists()


def test_gen_csr_prints_the_csr_and_match_pairs_it_with_its_key(
        initialised: dict[str, Path]) -> None:
    result = ok(["gen-csr", *common(initialised), "--cn", "shop.example.jp", "--san",
                 "shop.example.jp", "--san", "www.shop.example.jp", "--key", "ed25519",
                 "--contract", "C-7"])
    csr = x509.load_pem_x509_csr(result.stdout.encode())
    assert csr.subject.rfc4514_string() == "CN=shop.example.jp"
    entries = json.loads(ok(["list", "--json", "--vault", str(initialised["vault"])]).stdout)
    assert sorted(e["kind"] for e in entries) == ["csr", "private-key"]
    assert {e["contract_id"] for e in entries} == {"C-7"}
    match = json.loads(ok(["match", "--json", *common(initialised)]).stdout)
    assert len(match["groups"]) == 1
    assert len(match["groups"][0]["keys"]) == 1
    assert len(match["groups"][0]["csrs"]) == 1


def test_import_recognises_every_kind_and_asks_passwords_from_a_file(
        initialised: dict[str, Path]) -> None:
    tmp = initialised["tmp"]
    item, chain_other = issued("a.example"), issued("b.example")
    (tmp / "fullchain.pem").write_bytes(item.pem + chain_other.pem)
    (tmp / "enc.key").write_bytes(key_pem(item, b"key-pass"))
    (tmp / "approval.pdf").write_bytes(PDF)
    (tmp / "pass").write_text("key-pass\n")
    (tmp / "pass").chmod(0o644)
    exposed = run(["import", *common(initialised), "--password-file", str(tmp / "pass"),
                   str(tmp / "enc.key")])
    assert isinstance(exposed.exception, VaultPermissionError)
    assert "readable by others (mode 0644): run `chmod 600" in str(exposed.exception)
    (tmp / "pass").chmod(0o600)
    result = ok(["import", *common(initialised), "--contract", "C-1", "--password-file",
                 str(tmp / "pass"), str(tmp / "fullchain.pem"), str(tmp / "enc.key"),
                 str(tmp / "approval.pdf"), "--json"])
    rows = json.loads(result.stdout)
    assert [r["kind"] for r in rows] == ["certificate", "certificate", "private-key", "document"]
    assert all(r["created"] for r in rows)
    again = json.loads(ok(["import", *common(initialised), "--json", str(tmp / "approval.pdf")])
                       .stdout)
    assert again[0]["created"] is False
    listed = json.loads(ok(["list", "--json", "--kind", "certificate", "--contract", "C-1",
                            "--vault", str(initialised["vault"])]).stdout)
    assert len(listed) == 2
    match = json.loads(ok(["match", "--json", *common(initialised)]).stdout)
    assert len(match["groups"]) == 1
    assert match["certificates_without_key"] == [rows[1]["id"]]


def test_import_of_an_encrypted_key_without_a_terminal_or_password_file_is_refused(
        initialised: dict[str, Path]) -> None:
    path = initialised["tmp"] / "enc.key"
    path.write_bytes(key_pem(issued(), b"pw"))
    result = run(["import", *common(initialised), str(path)])
    assert isinstance(result.exception, VaultInputError)
    assert "--password-file" in str(result.exception)


def test_import_is_all_or_nothing(initialised: dict[str, Path]) -> None:
    tmp = initialised["tmp"]
    (tmp / "good.pdf").write_bytes(PDF)
    (tmp / "bad.pem").write_bytes(b"-----BEGIN CERTIFICATE-----\nAAAA\n")
    result = run(["import", *common(initialised), str(tmp / "good.pdf"), str(tmp / "bad.pem")])
    assert isinstance(result.exception, VaultInputError)
    assert "bad.pem" in str(result.exception)
    assert json.loads(ok(["list", "--json", "--vault", str(initialised["vault"])]).stdout) == []


def test_put_from_stdin_and_export_to_a_private_file(initialised: dict[str, Path]) -> None:
    entry = ok(["put", *common(initialised), "--kind", "document", "--label", "contract scan"],
               input=PDF).stdout.strip()
    out = initialised["tmp"] / "out.pdf"
    ok(["export", *common(initialised), entry, "--out", str(out)])
    assert out.read_bytes() == PDF
    assert (out.stat().st_mode & 0o777) == 0o600
    refused = run(["export", *common(initialised), entry, "--out", str(out)])
    assert isinstance(refused.exception, VaultConflictError)
    out.write_bytes(b"old")
    ok(["export", *common(initialised), entry, "--out", str(out), "--force"])
    assert out.read_bytes() == PDF


@pytest.mark.parametrize("own", ["vault", "vault-wal", "key", "key.next", "key-via-link"])
def test_export_and_backup_never_write_over_the_vault_or_its_master_key(
        initialised: dict[str, Path], own: str) -> None:
    """`vault export ID --out <the vault> --force` exited 0 and wrote the certificate over
    the vault (never opened again), and `--out <the key file> --force` replaced the master key
    with a certificate (every secret lost): a slip for --vault or --key-file (the helper
    review of session 15). `vault backup <the key file> --force` replaced the master key with
    the backup. Refused, --force or not, and both still open."""
    tmp = initialised["tmp"]
    entry = ok(["put", *common(initialised), "--kind", "document", "--label", "doc"],
               input=PDF).stdout.strip()
    targets = {"vault": initialised["vault"],
               "vault-wal": initialised["vault"].with_name("vault.sqlite3-wal"),
               "key": initialised["key"], "key.next": tmp / "master.key.next"}
    if own == "key-via-link":
        (tmp / "alias").symlink_to(initialised["key"])
        target = tmp / "alias"
    else:
        target = targets[own]
    before = {p: p.read_bytes() for p in (initialised["vault"], initialised["key"])}
    refused = run(["export", *common(initialised), entry, "--out", str(target), "--force"])
    assert isinstance(refused.exception, VaultConflictError), refused.output
    assert "--force never writes over the vault or its master key" in str(refused.exception)
    assert {p: p.read_bytes() for p in before} == before
    backup = run(["backup", *common(initialised), str(target), "--force"])
    assert isinstance(backup.exception, VaultConflictError), backup.output
    assert {p: p.read_bytes() for p in before} == before
    assert ok(["export", *common(initialised), entry]).stdout_bytes == PDF


def test_export_and_backup_to_a_link_loop_are_no_traceback(initialised: dict[str, Path]) -> None:
    """The check above resolved `--out`: a link to itself raised RuntimeError ("Symlink
    loop"), a traceback, and `vault backup` did so on its own check of the vault's path.
    The loop is not the vault: export refuses it as a link, backup writes the file."""
    tmp = initialised["tmp"]
    loop = tmp / "loop"
    loop.symlink_to(loop)
    entry = ok(["put", *common(initialised), "--kind", "document", "--label", "doc"],
               input=PDF).stdout.strip()
    exported = run(["export", *common(initialised), entry, "--out", str(loop), "--force"])
    assert not isinstance(exported.exception, RuntimeError), exported.exception
    assert exported.exit_code != 0
    assert "symbolic link" in str(exported.exception)
    backup = run(["backup", *common(initialised), str(loop)])
    assert backup.exception is None, backup.exception
    assert not loop.is_symlink()
    assert loop.stat().st_mode & 0o777 == 0o600


def test_export_formats_and_p12_with_a_password(initialised: dict[str, Path]) -> None:
    tmp = initialised["tmp"]
    item = issued()
    (tmp / "site.pem").write_bytes(key_pem(item) + item.pem)
    rows = json.loads(ok(["import", *common(initialised), "--json", str(tmp / "site.pem")])
                      .stdout)
    key_id, cert_id = rows[0]["id"], rows[1]["id"]
    der = ok(["export", *common(initialised), cert_id, "--format", "der"]).stdout_bytes
    assert der == item.der
    (tmp / "p12pass").write_text("export-pass\n")
    (tmp / "p12pass").chmod(0o600)
    ok(["export", *common(initialised), key_id, "--format", "p12", "--out", str(tmp / "s.p12"),
        "--password-file", str(tmp / "p12pass")])
    key, cert, _ = pkcs12.load_key_and_certificates((tmp / "s.p12").read_bytes(), b"export-pass")
    assert key is not None
    assert cert is not None
    assert cert.public_bytes(serialization.Encoding.DER) == item.der


def test_show_and_rm_keep_the_history_in_the_audit_log(initialised: dict[str, Path]) -> None:
    entry = ok(["put", *common(initialised), "--kind", "document"], input=b"tmp").stdout.strip()
    shown = json.loads(ok(["show", "--json", "--vault", str(initialised["vault"]), entry]).stdout)
    assert shown["id"] == entry
    assert [h["action"] for h in shown["history"]] == ["put"]
    assert f"removed document {entry}" in ok(["rm", *common(initialised), entry]).output
    records = json.loads(ok(["audit", "--json", "--vault", str(initialised["vault"])]).stdout)
    assert [r["action"] for r in records] == ["init", "put", "rm"]
    assert records[-1]["entry_id"] == entry


def test_rotate_key_in_place_and_to_a_new_key_file(initialised: dict[str, Path]) -> None:
    entry = ok(["put", *common(initialised), "--kind", "document"], input=b"x").stdout.strip()
    old = initialised["key"].read_bytes()
    rotated = json.loads(ok(["rotate-key", *common(initialised), "--json"]).stdout)
    assert rotated["entries_rewrapped"] == 1
    assert initialised["key"].read_bytes() != old
    new = initialised["tmp"] / "new.key"
    ok(["rotate-key", *common(initialised), "--new-key-file", str(new)])
    locked = run(["export", *common(initialised), entry])
    assert isinstance(locked.exception, VaultLockedError)
    assert ok(["export", "--vault", str(initialised["vault"]), "--key-file", str(new),
               entry]).stdout_bytes == b"x"


def test_verify_passes_then_reports_tampering_with_a_failing_exit(
        initialised: dict[str, Path]) -> None:
    ok(["put", *common(initialised), "--kind", "document"], input=b"x")
    report = json.loads(ok(["verify", "--json", *common(initialised)]).stdout)
    assert report["ok"] is True
    sql(initialised["vault"], "UPDATE entries SET label = 'forged'")
    failed = run(["verify", "--json", *common(initialised)])
    assert isinstance(failed.exception, VaultIntegrityError)
    assert json.loads(failed.stdout)["ok"] is False


def test_backup_and_restore(initialised: dict[str, Path]) -> None:
    entry = ok(["put", *common(initialised), "--kind", "document"], input=b"keep").stdout.strip()
    backup = initialised["tmp"] / "backup.sqlite3"
    ok(["backup", *common(initialised), str(backup)])
    ok(["rm", *common(initialised), entry])
    refused = run(["restore", *common(initialised), str(backup)])
    assert isinstance(refused.exception, VaultConflictError)
    ok(["restore", *common(initialised), str(backup), "--force"])
    assert ok(["export", *common(initialised), entry]).stdout_bytes == b"keep"


def test_the_configured_keyring_source_is_the_default(env: dict[str, Path],
                                                      keyring_backend: object) -> None:
    ok(["init", "--vault", str(env["vault"])])
    entry = ok(["put", "--vault", str(env["vault"]), "--kind", "document"],
               input=b"keyring").stdout.strip()
    assert ok(["export", "--vault", str(env["vault"]), entry]).stdout_bytes == b"keyring"


def test_passphrase_source_reads_the_environment(env: dict[str, Path],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    config = {"vault": {"key_source": "passphrase", "path": str(env["vault"])}}
    monkeypatch.setenv("CERTESCROW_VAULT_PASSPHRASE", "a long passphrase")
    ok(["init"], config=config)
    entry = ok(["put", "--kind", "document"], config=config, input=b"p").stdout.strip()
    monkeypatch.setenv("CERTESCROW_VAULT_PASSPHRASE", "not it")
    assert isinstance(run(["export", entry], config=config).exception, VaultLockedError)


# ------------------------------------------------------------------ a real process

def certescrow(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    exe = Path(sys.executable).parent / "certescrow"
    return subprocess.run([str(exe), *args], input=stdin, capture_output=True, timeout=60,
                          check=False, env=os.environ.copy())


def test_real_certescrow_vault_process(env: dict[str, Path]) -> None:
    opts = ["--vault", str(env["vault"]), "--key-file", str(env["key"])]
    assert certescrow("vault", "init", *opts).returncode == 0
    (env["tmp"] / "cert.pem").write_bytes(issued().pem)
    imported = certescrow("vault", "import", *opts, "--json", str(env["tmp"] / "cert.pem"))
    assert imported.returncode == 0, imported.stderr
    entry = json.loads(imported.stdout)[0]["id"]
    listed = certescrow("vault", "list", "--json", "--vault", str(env["vault"]))
    assert [e["id"] for e in json.loads(listed.stdout)] == [entry]
    assert certescrow("vault", "verify", *opts).returncode == 0
    wrong = env["tmp"] / "wrong.key"
    wrong.write_text("A" * 43 + "=\n")
    wrong.chmod(0o600)
    failed = certescrow("vault", "export", "--vault", str(env["vault"]), "--key-file", str(wrong),
                        entry)
    assert failed.returncode == VaultLockedError.exit_code
    assert failed.stderr.decode().startswith("Error: the master key from the key file")
    assert failed.stdout == b""
    loose = certescrow("vault", "export", *opts, entry, "--out", str(env["tmp"] / "c.pem"))
    assert loose.returncode == 0
    env["key"].chmod(0o644)
    refused = certescrow("vault", "list", "--vault", str(env["vault"]))  # no key needed
    assert refused.returncode == 0
    perm = certescrow("vault", "verify", *opts)
    assert perm.returncode == 25
    assert b"chmod 600" in perm.stderr
    env["key"].chmod(0o600)
    sql(env["vault"], "UPDATE entries SET label = 'forged'")
    tampered = certescrow("vault", "verify", *opts)
    assert tampered.returncode == VaultIntegrityError.exit_code
    assert b"PROBLEM: entry " + entry.encode() in tampered.stdout
    missing = certescrow("vault", "status", "--vault", str(env["tmp"] / "none.sqlite3"))
    assert missing.returncode == 21
    assert missing.stderr.startswith(b"Error: no vault at")


def run_on_terminal(args: list[str], answers: list[tuple[bytes, bytes]],
                    timeout: float = 60) -> tuple[int, bytes]:
    """Run ``certescrow`` on a real pseudo-terminal, answering each prompt as it appears."""
    import pty
    import select
    import time

    exe = Path(sys.executable).parent / "certescrow"
    master, slave = pty.openpty()
    proc = subprocess.Popen([str(exe), *args], stdin=slave, stdout=slave, stderr=slave,
                            env=os.environ.copy(), close_fds=True)
    os.close(slave)
    seen, pending = b"", list(answers)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                seen += chunk
            while pending and pending[0][0] in seen:
                prompt, answer = pending.pop(0)
                seen = seen.replace(prompt, b"<" + prompt + b">", 1)
                os.write(master, answer)
            if proc.poll() is not None and not ready:
                break
        return proc.wait(timeout=10), seen
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()


def test_encrypted_key_import_and_p12_export_ask_on_the_terminal(env: dict[str, Path]) -> None:
    opts = ["--vault", str(env["vault"]), "--key-file", str(env["key"])]
    assert certescrow("vault", "init", *opts).returncode == 0
    item = issued()
    (env["tmp"] / "enc.key").write_bytes(key_pem(item, b"typed-at-the-prompt"))
    (env["tmp"] / "cert.pem").write_bytes(item.pem)
    code, screen = run_on_terminal(
        ["vault", "import", *opts, str(env["tmp"] / "enc.key"), str(env["tmp"] / "cert.pem")],
        [(b"Password for private key in", b"typed-at-the-prompt\n")])
    assert code == 0, screen
    assert b"typed-at-the-prompt" not in screen  # hidden input, never echoed
    entries = json.loads(certescrow("vault", "list", "--json", *opts[:2]).stdout)
    key_id = next(e["id"] for e in entries if e["kind"] == "private-key")
    out = env["tmp"] / "site.p12"
    code, screen = run_on_terminal(
        ["vault", "export", *opts, key_id, "--format", "p12", "--out", str(out)],
        [(b"Password for the PKCS#12 file", b"p12-secret\n"), (b"Repeat", b"p12-secret\n")])
    assert code == 0, screen
    key, cert, _ = pkcs12.load_key_and_certificates(out.read_bytes(), b"p12-secret")
    assert key is not None
    assert cert is not None
    assert (out.stat().st_mode & 0o777) == 0o600


def test_export_refuses_to_print_a_private_key_on_a_terminal_unless_forced(
        env: dict[str, Path]) -> None:
    opts = ["--vault", str(env["vault"]), "--key-file", str(env["key"])]
    assert certescrow("vault", "init", *opts).returncode == 0
    item = issued()
    (env["tmp"] / "site.pem").write_bytes(key_pem(item) + item.pem)
    (env["tmp"] / "notes.txt").write_bytes(b"backup of the key:\n" + key_pem(item))
    imported = certescrow("vault", "import", *opts, "--json", str(env["tmp"] / "site.pem"))
    rows = json.loads(imported.stdout)
    key_id, cert_id = rows[0]["id"], rows[1]["id"]
    doc = certescrow("vault", "import", *opts, "--json", "--kind", "document",
                     str(env["tmp"] / "notes.txt"))
    doc_id = json.loads(doc.stdout)[0]["id"]
    for entry, fmt in ((key_id, []), (key_id, ["--format", "pem"]), (doc_id, [])):
        code, screen = run_on_terminal(["vault", "export", *opts, entry, *fmt], [])
        assert code == VaultInputError.exit_code, screen
        assert b"refusing to print a private key on a terminal" in screen
        assert b"PRIVATE KEY-----" not in screen
    # the other side: a certificate prints; --force prints the key; a pipe is not a terminal
    code, screen = run_on_terminal(["vault", "export", *opts, cert_id], [])
    assert code == 0
    assert b"BEGIN CERTIFICATE" in screen
    code, screen = run_on_terminal(["vault", "export", *opts, key_id, "--force"], [])
    assert code == 0
    assert b"BEGIN PRIVATE KEY" in screen
    piped = certescrow("vault", "export", *opts, key_id)
    assert piped.returncode == 0
    assert piped.stdout.startswith(b"-----BEGIN PRIVATE KEY-----")


def test_label_changes_label_and_contract_as_a_new_version(initialised: dict[str, Path]) -> None:
    entry = ok(["put", *common(initialised), "--kind", "document", "--label", "old",
                "--contract", "C-1"], input=b"x").stdout.strip()
    info = json.loads(ok(["label", *common(initialised), entry, "--contract", "C-2",
                          "--json"]).stdout)
    assert (info["version"], info["label"], info["contract_id"]) == (2, "old", "C-2")
    info = json.loads(ok(["label", *common(initialised), entry, "--label", "", "--json"]).stdout)
    assert (info["version"], info["label"], info["contract_id"]) == (3, None, "C-2")
    assert isinstance(run(["label", *common(initialised), entry]).exception, VaultInputError)
    assert json.loads(ok(["verify", "--json", *common(initialised)]).stdout)["ok"] is True


# ------------------------------------------------------------------ a first run that works

def _readme_vault_block() -> str:
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("### The vault", 1)[1]
    return section.split("```sh\n", 1)[1].split("```", 1)[0]


def _fresh_shell_env(home: Path, **extra: str) -> dict[str, str]:
    """What a new login shell on a fresh machine has: a HOME, a PATH, no keyring."""
    venv_bin = str(Path(sys.executable).parent)
    return {"HOME": str(home), "PATH": f"{venv_bin}:/usr/bin:/bin", "LANG": "C.UTF-8",
            "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring", **extra}


def test_the_readme_vault_block_runs_as_pasted_into_a_fresh_shell(tmp_path: Path) -> None:
    home = tmp_path / "fresh-home"
    home.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    item = issued()
    (work / "server.key").write_bytes(key_pem(item))
    (work / "server.crt").write_bytes(item.pem)
    (work / "ca-documents.pdf").write_bytes(PDF)
    block = _readme_vault_block()
    assert "vault init" in block
    # `ID` is the one placeholder: the id of the certificate just imported.
    pick = (f"ID=$(certescrow vault list --kind certificate --json | {sys.executable} -c "
            "'import json, sys; print(json.load(sys.stdin)[0][\"id\"])')\n")
    lines = [pick + line.replace(" ID ", ' "$ID" ') if " ID " in line else line
             for line in block.splitlines()]
    script = "set -euo pipefail\n" + "\n".join(lines) + "\n"
    done = subprocess.run(["bash", "-c", script], cwd=work, capture_output=True, timeout=120,
                          check=False, env=_fresh_shell_env(home))
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert b"Traceback" not in done.stderr
    key_file = home / ".config" / "certescrow" / "vault.key"
    assert (key_file.stat().st_mode & 0o777) == 0o600
    assert (key_file.parent.stat().st_mode & 0o777) == 0o700
    assert (work / "server.crt.copy").read_bytes() == item.pem


def test_no_os_keyring_says_how_to_use_a_key_file(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    exe = Path(sys.executable).parent / "certescrow"
    done = subprocess.run([str(exe), "vault", "init"], capture_output=True, timeout=60,
                          check=False, env=_fresh_shell_env(home))
    assert done.returncode == VaultLockedError.exit_code
    stderr = done.stderr.decode()
    assert stderr.startswith("Error: no OS keyring is available")
    assert "--key-file" in stderr
    assert "CERTESCROW_VAULT_KEY_FILE" in stderr
    assert "Traceback" not in stderr
    assert not (home / ".local" / "share" / "certescrow" / "vault.sqlite3").exists()


def test_a_plaintext_file_keyring_is_refused_unless_allowed_with_a_warning(
        tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    exe = Path(sys.executable).parent / "certescrow"
    plaintext = {"PYTHON_KEYRING_BACKEND": "keyrings.alt.file.PlaintextKeyring"}
    refused = subprocess.run([str(exe), "vault", "init"], capture_output=True, timeout=60,
                             check=False, env=_fresh_shell_env(home, **plaintext))
    assert refused.returncode == VaultLockedError.exit_code
    assert b"a plaintext file, not an OS keyring" in refused.stderr
    assert b"--key-file" in refused.stderr
    allowed = subprocess.run(
        [str(exe), "vault", "init"], capture_output=True, timeout=60, check=False,
        env=_fresh_shell_env(home, CERTESCROW_VAULT_ALLOW_PLAINTEXT_KEYRING="1", **plaintext))
    assert allowed.returncode == 0, allowed.stderr
    assert b"plaintext file keyring" in allowed.stderr  # the warning


def test_a_fifo_as_key_file_is_a_clear_error_not_a_hang(env: dict[str, Path]) -> None:
    assert certescrow("vault", "init", *common(env)).returncode == 0
    fifo = env["tmp"] / "key.fifo"
    os.mkfifo(fifo, 0o600)
    done = certescrow("vault", "verify", "--vault", str(env["vault"]), "--key-file", str(fifo))
    assert done.returncode == VaultLockedError.exit_code
    assert done.stderr.decode().startswith(f"Error: key file {fifo} is a FIFO")


def test_rotate_key_offers_to_keep_the_old_key_for_older_backups(
        initialised: dict[str, Path]) -> None:
    ok(["put", *common(initialised), "--kind", "document"], input=b"x")
    plain = ok(["rotate-key", *common(initialised)])
    assert "backups made before this rotation open only with the old key" in plain.output
    assert "--keep-old-key" in plain.output
    old = initialised["key"].read_bytes()
    kept = json.loads(ok(["rotate-key", *common(initialised), "--keep-old-key",
                          "--json"]).stdout)
    copy = Path(kept["old_key_kept"])
    assert copy.read_bytes() == old
    assert (copy.stat().st_mode & 0o777) == 0o600
    assert copy.name.startswith("master.key.retired-")


def test_rotate_key_without_a_terminal_refuses_to_destroy_the_key_of_a_recent_backup(
        initialised: dict[str, Path]) -> None:
    backup = initialised["tmp"] / "minutes-ago.sqlite3"
    ok(["backup", *common(initialised), str(backup)])
    old = initialised["key"].read_bytes()
    refused = certescrow("vault", "rotate-key", *common(initialised))
    assert refused.returncode == VaultConflictError.exit_code
    stderr = refused.stderr.decode()
    assert stderr.startswith("Error: 1 backup(s) of this vault were made with the current key")
    assert str(backup) in stderr
    assert "--keep-old-key" in stderr
    assert "--discard-old-key" in stderr
    assert initialised["key"].read_bytes() == old
    both = run(["rotate-key", *common(initialised), "--keep-old-key", "--discard-old-key"])
    assert isinstance(both.exception, VaultInputError)
    # the explicit answers rotate
    kept = json.loads(ok(["rotate-key", *common(initialised), "--keep-old-key", "--json"])
                      .stdout)
    assert Path(kept["old_key_kept"]).read_bytes() == old
    ok(["backup", *common(initialised), str(backup), "--force"])
    discarded = json.loads(ok(["rotate-key", *common(initialised), "--discard-old-key",
                               "--json"]).stdout)
    assert discarded["old_key_kept"] is None
    # no backup since the last rotation: nothing to protect, no answer needed
    ok(["rotate-key", *common(initialised)])


def test_restore_with_a_key_that_does_not_open_the_backup_names_it_and_replaces_nothing(
        initialised: dict[str, Path]) -> None:
    entry = ok(["put", *common(initialised), "--kind", "document"], input=b"x").stdout.strip()
    backup = initialised["tmp"] / "old-backup.sqlite3"
    ok(["backup", *common(initialised), str(backup)])
    ok(["rotate-key", *common(initialised), "--discard-old-key"])
    ok(["rm", *common(initialised), entry])
    failed = certescrow("vault", "restore", *common(initialised), str(backup), "--force")
    assert failed.returncode == VaultLockedError.exit_code
    stderr = failed.stderr.decode()
    assert stderr.startswith(f"Error: backup {backup}: ")
    assert "--keep-old-key" in stderr
    assert "Traceback" not in stderr
    listed = json.loads(ok(["list", "--json", "--vault", str(initialised["vault"])]).stdout)
    assert listed == []  # the live vault was not replaced


def test_verify_reports_damaged_text_as_an_integrity_error_quoting_nothing(
        initialised: dict[str, Path]) -> None:
    ok(["put", *common(initialised), "--kind", "document", "--label", "ok"], input=b"x")
    sql(initialised["vault"],
        "UPDATE entries SET label = CAST(X'544f505345435245545fff' AS TEXT)")  # TOPSECRET_\xff
    done = certescrow("vault", "verify", *common(initialised))
    assert done.returncode == VaultIntegrityError.exit_code
    assert b"not valid UTF-8" in done.stdout
    assert b"TOPSECRET" not in done.stdout + done.stderr
    assert b"Traceback" not in done.stderr
    listed = certescrow("vault", "list", "--vault", str(initialised["vault"]))
    assert listed.returncode == VaultIntegrityError.exit_code
    assert b"TOPSECRET" not in listed.stdout + listed.stderr


def test_import_of_a_fifo_is_refused_naming_it(initialised: dict[str, Path]) -> None:
    import signal

    fifo = initialised["tmp"] / "server.key"
    os.mkfifo(fifo, 0o600)
    signal.alarm(10)  # a regression would block in open() forever
    try:
        refused = run(["import", *common(initialised), str(fifo)])
    finally:
        signal.alarm(0)
    assert isinstance(refused.exception, VaultInputError)
    assert f"file {fifo} is a FIFO" in str(refused.exception)


def test_rotate_key_on_a_terminal_asks_whether_to_keep_the_old_key(env: dict[str, Path]) -> None:
    opts = ["--vault", str(env["vault"]), "--key-file", str(env["key"])]
    assert certescrow("vault", "init", *opts).returncode == 0
    old = env["key"].read_bytes()
    code, screen = run_on_terminal(["vault", "rotate-key", *opts],
                                   [(b"Keep a dated copy of the old key", b"y\n")])
    assert code == 0, screen
    assert b"Backups made before this rotation open only with the old key" in screen
    kept = [p for p in env["key"].parent.iterdir() if p.name.startswith("master.key.retired-")]
    assert len(kept) == 1
    assert kept[0].read_bytes() == old
    assert str(kept[0]).encode() in screen.replace(b"\r\n", b"")


@pytest.mark.parametrize("option", ["--vault", "--key-file"])
def test_a_directory_given_as_a_file_option_is_a_usage_error_naming_it(
        initialised: dict[str, Path], tmp_path: Path, option: str) -> None:
    """docs/vault.md: exit 2, click's words, the option and the path named."""
    directory = tmp_path / "a-directory"
    directory.mkdir()
    args = {"--vault": str(initialised["vault"]), "--key-file": str(initialised["key"]),
            option: str(directory)}
    result = run(["list", *(x for pair in args.items() for x in pair)])
    assert result.exit_code == 2
    assert f"Invalid value for '{option}': File '{directory}' is a directory." in result.output


def test_export_force_never_replaces_a_link_with_a_file_of_secrets(
        initialised: dict[str, Path]) -> None:
    """``--out LINK --force`` took the link's name: the link's target was left as it was and a
    0600 file of the export stood where a link was kept (the re-review of session 14)."""
    entry = ok(["put", *common(initialised), "--kind", "document", "--label", "scan"],
               input=PDF).stdout.strip()
    target = initialised["tmp"] / "target.pdf"
    target.write_bytes(b"old")
    link = initialised["tmp"] / "link.pdf"
    link.symlink_to(target)
    refused = run(["export", *common(initialised), entry, "--out", str(link), "--force"])
    assert refused.exit_code != 0
    assert "is a symbolic link; give the path of a regular file" in str(refused.exception)
    assert link.is_symlink()
    assert target.read_bytes() == b"old"
