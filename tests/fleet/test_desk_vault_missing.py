"""The desk's commands that read keys from a vault (`policy serve`, `fleet sign`, `fleet
server-cert`) never make one (review 1 of the fleet desk): a mistyped vault path made a new
vault and a new master key file, and `fleet sign` then advised `fleet ca init`, a second CA
that no host or service trusts. Only `fleet ca init` and `agent enroll` create a vault. Each
through the real CLI, in a process of its own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.fleet.fleetkit import make_fleet

REPO = Path(__file__).resolve().parents[2]


def _run(args: list[str], cwd: Path, **env_extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CERTESCROW_", "XDG_"))}
    env["PYTHONPATH"] = str(REPO)
    env["HOME"] = str(cwd)
    env.update(env_extra)
    return subprocess.run([sys.executable, "-m", "agent.main", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=120, check=False)


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


def test_policy_serve_with_a_mistyped_vault_makes_no_vault_and_no_key(tmp_path: Path) -> None:
    fleet = make_fleet(tmp_path / "desk")
    config = fleet.config()
    typo = tmp_path / "typo"
    typo.mkdir(mode=0o700)
    config.write_text(config.read_text()
                      .replace(str(fleet.vault_path), str(typo / "vault.sqlite3"))
                      .replace(str(fleet.vault_key), str(typo / "keys" / "desk.key")))
    before = _files(tmp_path)
    served = _run(["policy", "serve", "--config", str(config)], tmp_path)
    assert served.returncode == 21, served.stderr
    assert f"no vault at {typo / 'vault.sqlite3'}" in served.stderr
    assert f"[vault] path in {config}" in served.stderr
    assert "Traceback" not in served.stderr
    assert _files(tmp_path) == before  # no vault, no key file, no directory


def test_fleet_sign_and_server_cert_with_a_mistyped_vault_say_so(tmp_path: Path) -> None:
    key = tmp_path / "keys" / "desk.key"
    made = _run(["agent", "enroll", "--host", "web04", "--vault", str(tmp_path / "h.sqlite3"),
                 "--key-file", str(tmp_path / "h.key"), "--csr-out", str(tmp_path / "w.csr")],
                tmp_path)
    assert made.returncode == 0, made.stderr
    before = _files(tmp_path)
    missing = tmp_path / "typo" / "vault.sqlite3"
    for args in (["fleet", "sign", str(tmp_path / "w.csr"), "--host", "web04",
                  "--ledger", str(tmp_path / "ledger.sqlite3")],
                 ["fleet", "server-cert", "127.0.0.1", "--out", str(tmp_path / "s.pem")]):
        done = _run([*args, "--vault", str(missing), "--key-file", str(key)], tmp_path)
        assert done.returncode == 21, done.stderr
        assert f"no vault at {missing}" in done.stderr
        assert "ca init" not in done.stderr  # never advice to make a second fleet CA
        assert _files(tmp_path) == before


def test_a_vault_without_a_fleet_ca_asks_whether_it_is_the_desks(tmp_path: Path) -> None:
    """An existing vault that is not the desk's (the per-user one): the first advice is the
    vault, not a new CA."""
    made = _run(["agent", "enroll", "--host", "web04", "--vault", str(tmp_path / "h.sqlite3"),
                 "--key-file", str(tmp_path / "h.key"), "--csr-out", str(tmp_path / "w.csr")],
                tmp_path)
    assert made.returncode == 0, made.stderr
    done = _run(["fleet", "sign", str(tmp_path / "w.csr"), "--host", "web04", "--ledger",
                 str(tmp_path / "ledger.sqlite3"), "--vault", str(tmp_path / "h.sqlite3"),
                 "--key-file", str(tmp_path / "h.key")], tmp_path)
    assert done.returncode == 41, done.stderr
    assert f"the vault {tmp_path / 'h.sqlite3'} holds no fleet CA: is it the desk's vault" \
        in done.stderr


def test_the_services_file_given_to_the_root_config_names_the_options_that_take_it(
        tmp_path: Path) -> None:
    """docs/fleet.md said to give the service's file to the root --config for `fleet ca
    init`; that was refused as "serve: unknown key" (its [vault] would be taken and its
    [serve] ledger not). The refusal names the options that read it; those work."""
    serve = tmp_path / "policy-serve.toml"
    serve.write_text(f'[serve]\nledger = "{tmp_path / "ledger.sqlite3"}"\n'
                     f'[vault]\npath = "{tmp_path / "desk.sqlite3"}"\nkey_source = "key-file"\n'
                     f'key_file = "{tmp_path / "desk.key"}"\n')
    serve.chmod(0o600)
    before = _files(tmp_path)
    refused = _run(["--config", str(serve), "fleet", "ca", "init", "--out",
                    str(tmp_path / "fleet-ca.pem")], tmp_path)
    assert refused.returncode == 31, refused.stderr
    assert f"{serve}: serve: a [serve] table is the service's configuration" in refused.stderr
    assert "--serve-config" in refused.stderr
    assert "--vault and --key-file" in refused.stderr
    assert _files(tmp_path) == before
    made = _run(["fleet", "ca", "init", "--out", str(tmp_path / "fleet-ca.pem"), "--vault",
                 str(tmp_path / "desk.sqlite3"), "--key-file", str(tmp_path / "desk.key")],
                tmp_path)
    assert made.returncode == 0, made.stderr
