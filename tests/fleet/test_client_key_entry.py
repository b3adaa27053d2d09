"""`[report] client_key` naming no entry of the agent's vault (review 1 of the fleet desk): the
agent stopped with the vault's own "no entry 'ffffffffffffffff' in vault …" (exit 26), naming
neither the key nor the file. It is the configuration's error now (exit 31, naming the file
and `[report] client_key`), unless a key enrolled in that vault matches the client
certificate, which is used (the fallback a renewal relies on) with a warning saying which id
to set. Real processes: enrolment, signing, `agent run --once`."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.fleet.fleetkit import run_desk


def _host(tmp_path: Path) -> dict[str, str]:
    """web08 enrolled into vault a (its CSR signed) and, once more, into vault b (a key
    that matches no certificate); returns the ids."""
    tmp_path.chmod(0o700)
    ids = {}
    for name in ("a", "b"):
        done = run_desk(["agent", "enroll", "--host", "web08", "--vault",
                     str(tmp_path / f"{name}.sqlite3"), "--csr-out",
                     str(tmp_path / f"{name}.csr")], tmp_path)
        assert done.returncode == 0, done.stderr
        found = re.search(r'client_key = "([0-9a-f]+)"', done.stdout)
        assert found is not None
        ids[name] = found.group(1)
    for args in (["fleet", "ca", "init", "--vault", str(tmp_path / "desk.sqlite3"), "--out",
                  str(tmp_path / "ca.pem")],
                 ["fleet", "sign", str(tmp_path / "a.csr"), "--host", "web08", "--vault",
                  str(tmp_path / "desk.sqlite3"), "--ledger", str(tmp_path / "fleet.sqlite3"),
                  "--out", str(tmp_path / "client.pem")]):
        done = run_desk(args, tmp_path)
        assert done.returncode == 0, done.stderr
    (tmp_path / "store").mkdir()
    return ids


def _config(tmp_path: Path, vault: str, client_key: str) -> Path:
    config = tmp_path / f"config-{vault}.toml"
    config.write_text(
        f'[policy]\nledger = "{tmp_path / vault}-state/ledger.sqlite3"\n'
        f'[vault]\npath = "{tmp_path / vault}.sqlite3"\nkey_source = "key-file"\n'
        f'key_file = "{tmp_path / "vault.key"}"\n'
        f'[agent]\nhost = "web08"\nquiet_period_ms = 1\n'
        f'[[agent.stores]]\npath = "{tmp_path / "store"}"\n'
        f'[report]\nserver = "https://127.0.0.1:9"\ntimeout_s = 1\n'
        f'client_certificate = "{tmp_path / "client.pem"}"\nclient_key = "{client_key}"\n'
        f'ca_bundle = "{tmp_path / "ca.pem"}"\n')
    return config


def test_a_client_key_the_vault_lacks_is_the_configurations_error(tmp_path: Path) -> None:
    _host(tmp_path)
    config = _config(tmp_path, "b", "ffffffffffffffff")  # no key in b matches the certificate
    done = run_desk(["--config", str(config), "agent", "run", "--once"], tmp_path)
    assert done.returncode == 31, done.stderr
    assert f"{config}: [report] client_key 'ffffffffffffffff': no such entry in the vault " \
        f"{tmp_path / 'b.sqlite3'}" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_client_key_the_vault_lacks_falls_back_to_the_matching_key_with_a_warning(
        tmp_path: Path) -> None:
    ids = _host(tmp_path)
    config = _config(tmp_path, "a", "ffffffffffffffff")
    done = run_desk(["--config", str(config), "agent", "run", "--once", "--log-format", "json"],
                tmp_path)
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    [warned] = [e for e in events if e.get("event") == "client-key-missing"]
    assert f'set client_key = "{ids["a"]}"' in warned["message"]
