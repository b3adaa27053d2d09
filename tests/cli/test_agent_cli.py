"""``certescrow agent run --once`` and ``certescrow agent check-config``, through the real root
command (so exit codes are the ones a shell sees)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.main import main
from policy.ledger import Ledger
from tests.agent.daemon_helpers import Certbot
from tests.certfactory import make_cert

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def detach_log_handlers() -> Iterator[None]:
    """`agent run` points the agent's (and watchdog's) loggers at this test's captured
    stderr; detach them so later tests never write to a closed capture."""
    yield
    for name in ("certescrow.agent", "watchdog"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.propagate = True


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(argv)
    out, err = capsys.readouterr()
    code = info.value.code
    return (code if isinstance(code, int) else 1), out, err


def write_config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(body, encoding="utf-8")
    return path


def test_check_config_prints_the_effective_configuration(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, f'[agent]\nhost = "web1"\n[[agent.stores]]\n'
                                    f'path = "{tmp_path}/le/live"\n')
    code, out, err = run(["agent", "check-config", str(config)], capsys)
    assert code == 0
    assert "(valid)" in out
    assert 'host = "web1"' in out
    assert f'follow_links_into = ["{tmp_path}/le/archive"]' in out
    assert "quiet_period_ms = 100" in out
    assert f"store {tmp_path}/le/live does not exist" in err
    # What it prints is itself a valid configuration an operator can copy (TOML has no null).
    effective = tmp_path / "effective.toml"
    effective.write_text(out)
    effective.chmod(0o600)
    code, again, _ = run(["agent", "check-config", str(effective)], capsys)
    assert code == 0
    assert again.splitlines()[1:] == out.splitlines()[1:]


def test_check_config_says_when_it_left_a_dsn_password_out(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, '[policy]\nledger = "postgresql://desk:pw-secret@db/l"\n')
    config.chmod(0o600)
    code, out, _ = run(["agent", "check-config", str(config)], capsys)
    assert code == 0
    assert "pw-secret" not in out
    assert 'ledger = "postgresql://desk@db/l"' in out
    assert "but for the ledger DSN's password (left out)" in out.splitlines()[1]


def test_check_config_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, '[agent]\nobserver = "polling"\n')
    code, out, _ = run(["agent", "check-config", "--json", str(config)], capsys)
    assert code == 0
    data = json.loads(out)
    assert data["agent"]["observer"] == "polling"
    assert data["agent"]["stores"][0]["path"] == "/etc/letsencrypt/live"
    assert data["vault"]["key_source"] == "keyring"
    assert data["source"] == str(config)


def test_check_config_error_names_file_and_key_and_exits_31(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, '[[agent.stores]]\npath = "/srv"\ntier = "7m"\n')
    code, _, err = run(["agent", "check-config", str(config)], capsys)
    assert code == 31
    assert err.strip() == (f'Error: {config}: agent.stores[0].tier: unknown tier "7m": '
                           "expected one of 6m, 1y, 2y, 3y, unlimited")


def test_run_once_reports_to_the_ledger_and_prints_json(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    certbot = Certbot(tmp_path / "le")
    issued = certbot.install()
    ledger = tmp_path / "ledger.sqlite3"
    config = write_config(tmp_path, f'[policy]\nledger = "{ledger}"\n[agent]\nhost = "web1"\n'
                                    f'[[agent.stores]]\npath = "{tmp_path}/le/live"\n')
    code, out, _ = run(["agent", "run", "--once", "--json", "--config", str(config),
                        "--at", "2026-02-01T12:00:00+09:00"], capsys)
    assert code == 0
    data = json.loads(out)
    rows = {(c["path"], c["index"]): c for c in data["certificates"]}
    cert = rows[(str(certbot.live / "cert.pem"), 0)]
    assert cert["sha256"] == issued.sha256
    assert cert["key_matches"] is True
    assert cert["category"] == "III"
    assert cert["renewable"] is False
    assert data["errors"] == []
    with Ledger.open(ledger) as opened:
        locations = {e.event.location for e in opened.unbound_observations()}  # type: ignore[attr-defined]
    assert str(certbot.live / "cert.pem") in locations


def test_run_once_table_and_exit_status(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "certs"
    store.mkdir()
    (store / "ok.pem").write_bytes(make_cert().pem)
    (store / "cut.pem").write_bytes(b"-----BEGIN CERTIFICATE-----\nMIIB\n")
    config = write_config(tmp_path, f'[policy]\nledger = "{tmp_path}/l.sqlite3"\n'
                                    f'[[agent.stores]]\npath = "{store}"\n')
    code, out, err = run(["agent", "run", "--once", "--exit-status", "--config", str(config),
                          "--at", "2026-02-01"], capsys)
    # The 90-day BYO certificate's overdue renewal notice is the contract desk's; the file that
    # looks like a certificate and cannot be read makes the run UNKNOWN (3).
    assert code == 3
    assert out.startswith("SEVERITY")  # the same table as `certescrow scan`
    assert f"{store / 'ok.pem'}#0" in out
    assert f"{store / 'cut.pem'}: truncated" in " ".join(out.split())
    assert "UNKNOWN: 1 file(s) or certificate(s) could not be read" in err
    code, _, _ = run(["agent", "run", "--once", "--exit-status=contract", "--config",
                      str(config), "--at", "2026-02-01"], capsys)
    assert code == 3


def test_run_once_of_a_store_that_does_not_exist_is_unknown_with_the_reason(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, f'[policy]\nledger = "{tmp_path}/l.sqlite3"\n'
                                    f'[[agent.stores]]\npath = "{tmp_path}/nowhere"\n')
    code, _, err = run(["agent", "run", "--once", "--exit-status", "--config", str(config)],
                         capsys)
    assert code == 3
    assert f"UNKNOWN: store {tmp_path}/nowhere does not exist" in err
    (tmp_path / "empty").mkdir()
    config = write_config(tmp_path, f'[policy]\nledger = "{tmp_path}/l.sqlite3"\n'
                                    f'[[agent.stores]]\npath = "{tmp_path}/empty"\n')
    code, _, err = run(["agent", "run", "--once", "--exit-status", "--config", str(config)],
                         capsys)
    assert code == 3
    assert f"store {tmp_path}/empty holds no certificate" in err
    config = write_config(tmp_path, f'[policy]\nledger = "{tmp_path}/l.sqlite3"\n'
                                    "[agent]\nstores = []\n")
    code, _out, err = run(["agent", "run", "--once", "--exit-status", "--config", str(config)],
                         capsys)
    assert code == 3
    assert "no store is configured" in err


def test_check_config_output_reads_back_as_the_same_configuration(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import tomllib

    from agent.config import config_from_raw, load_config

    for body in ("[agent]\nstores = []\n",
                 '[policy]\nnotice_lead_days = 60\ncatalogue = ""\n[policy.prices]\n'
                 'change_fee = 500\n[policy.prices.items."globalsign-ov"]\n'
                 'initial = { "1y" = 50000 }\nagency = 3000\n'
                 '[agent]\nhost = "web 1"\nexpiry_warning_days = 30\n'
                 f'[[agent.stores]]\npath = "{tmp_path}/le/live"\ntier = "1y"\n'
                 'escrow = true\n[[agent.stores]]\npath = "/srv/東京/ssl"\n'
                 'follow_links_into = []\ncategory = "II"\n',
                 ""):
        config = write_config(tmp_path, body)
        code, out, _ = run(["agent", "check-config", str(config)], capsys)
        assert code == 0
        original = load_config(config)
        again = config_from_raw(tomllib.loads(out), source=config)
        assert again.to_json() == original.to_json()
        if "stores = []" in body:
            assert "stores = []" in out


def test_real_subprocess_check_config(tmp_path: Path) -> None:
    config = write_config(tmp_path, "[agent]\nmax_file_size = 0\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([str(Path(sys.executable).parent / "certescrow"), "agent",
                           "check-config", str(config)], capture_output=True, text=True,
                          env=env, timeout=60, check=False)
    assert done.returncode == 31
    assert "agent.max_file_size: must be at least 1" in done.stderr


def test_run_once_escrows_with_the_systemd_credential_and_logs_json(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """What the unit does: the vault key arrives as $CREDENTIALS_DIRECTORY/<credential>."""
    import base64
    import secrets

    from vault import CredentialSource, open_vault

    credentials = tmp_path / "credentials"
    credentials.mkdir(mode=0o700)
    key = credentials / "certescrow-vault-key"
    key.write_text(base64.b64encode(secrets.token_bytes(32)).decode() + "\n")
    key.chmod(0o400)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    certbot = Certbot(tmp_path / "le")
    issued = certbot.install()
    vault_path = tmp_path / "state" / "vault.sqlite3"
    config = write_config(tmp_path, f"""
[policy]
ledger = "{tmp_path}/state/ledger.sqlite3"
[vault]
path = "{vault_path}"
key_source = "credential"
[[agent.stores]]
path = "{tmp_path}/le/live"
escrow = true
contract = "C-7"
""")
    code, out, err = run(["agent", "run", "--once", "--json", "--log-format", "json",
                          "--config", str(config), "--at", "2026-02-01"], capsys)
    assert code == 0, err
    data = json.loads(out)
    escrowed = {(e["kind"], Path(e["path"]).name): e["entry_id"] for e in data["escrowed"]}
    assert {("private-key", "privkey.pem"), ("certificate", "cert.pem")} <= set(escrowed)
    cert = next(c for c in data["certificates"] if c["path"].endswith("/cert.pem"))
    assert any(f["code"] == "escrowed" and f["clause"] == "Art.4(7)" for f in cert["findings"])
    with open_vault(vault_path, CredentialSource()) as vault:
        assert vault.get(escrowed[("private-key", "privkey.pem")]) == issued.key_pem()
        assert vault.get(escrowed[("certificate", "cert.pem")]) == issued.der
    events = [json.loads(line) for line in err.splitlines() if line.strip()]  # all JSON
    assert events
    assert any(e["event"] == "escrowed" for e in events)
    assert "PRIVATE KEY" not in err
