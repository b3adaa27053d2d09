"""What ``agent run --once`` says it did, and that a warm run says the same as a cold one.

Real certbot stores, real ``certescrow`` processes, the real persisted read index. The
operator reads the journal's counts literally: "2 certificate(s) with notify" must be two
certificates (certbot keeps each in four files), "reported" one line per run, "read" the files
parsed (none when nothing changed) beside the files scanned, each counted once. And a second
``--once``, whose unchanged files come from the read index, must give the same answer as the
first: rows depend on the rest of their directory (chain placement, key pairing), so a file
served from the index must be placed with its directory exactly as a freshly read one.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.agent.certbot_store import (
    AT,
    certbot_store,
    leaf_beside_expired_chain,
    make_intermediate,
)
from tests.agent.daemon_helpers import debian_ssl
from tests.certfactory import make_cert, shared_key
from tests.clirun import agent_config, certescrow

AT_TEXT = AT.isoformat().replace("+00:00", "Z")
_config = agent_config


def _run(config: Path, *args: str, home: Path) -> subprocess.CompletedProcess[str]:
    return certescrow("--config", str(config), "agent", "run", "--once", "--log-format", "json",
                      *args, home=home, at=AT_TEXT, COLUMNS="100")


def _log(done: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]



def _expired_intermediate_beside_leaf(base: Path) -> Path:
    """Only ``cert.pem`` and ``chain.pem``, the intermediate expired (the reviewer's store)."""
    return leaf_beside_expired_chain(base, slot=43)


def _certbot_expired_intermediate(base: Path) -> Path:
    intermediate = make_intermediate(not_after=datetime(2026, 1, 20, tzinfo=UTC), slot=44)
    leaf = make_cert(not_before=AT - timedelta(days=30), lifetime=timedelta(days=90),
                     sans=("example.jp",), issuer=intermediate)
    return certbot_store(base, leaf=leaf, intermediate=intermediate).root  # with fullchain.pem


def _certbot_mismatched_key(base: Path) -> Path:
    return certbot_store(base, key_pem=make_cert(key=shared_key("ec", 12)).key_pem()).root


STORES: dict[str, Callable[[Path], Path]] = {
    "expired-intermediate-beside-leaf": _expired_intermediate_beside_leaf,
    "certbot-expired-intermediate-with-fullchain": _certbot_expired_intermediate,
    "certbot-mismatched-key": _certbot_mismatched_key,
}


def _answer(summary: dict[str, Any]) -> dict[str, Any]:
    """Everything the operator reads in the summary but the read counts."""
    return {k: v for k, v in summary.items() if k != "files_read"}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(STORES))
def test_a_warm_once_answers_as_the_first(tmp_path: Path, name: str) -> None:
    root = STORES[name](tmp_path)
    config = _config(tmp_path, root)
    first = _run(config, "--json", "--exit-status", home=tmp_path)
    assert (tmp_path / "state" / "read-index.sqlite3").exists()
    warm = _run(config, "--json", "--exit-status", home=tmp_path)
    cold, again = json.loads(first.stdout), json.loads(warm.stdout)
    assert again["files_read"] == 0  # every file came from the read index
    assert cold["files_read"] >= cold["files"] > 0
    assert warm.returncode == first.returncode, (first.stdout, warm.stdout)
    assert _answer(again) == _answer(cold)
    if "expired-intermediate" in name:
        assert first.returncode == 2  # CRITICAL, both times
        roles = {(c["path"].rsplit("/", 1)[-1], c["role"]) for c in again["certificates"]}
        assert ("chain.pem", "intermediate") in roles
        assert any(f["code"] == "chain-expired"
                   for c in again["certificates"] for f in c["findings"])


@pytest.mark.slow
def test_the_journal_counts_certificates_files_and_reports_once(tmp_path: Path) -> None:
    """Two stores: a certbot store (two generations: two certificates in six certificate files
    besides their chains, keys and READMEs) and a site with one certificate."""
    letsencrypt = certbot_store(tmp_path).root
    site = tmp_path / "site"
    site.mkdir()
    (site / "site.pem").write_bytes(
        make_cert(not_before=AT - timedelta(days=30), lifetime=timedelta(days=90),
                  sans=("site.example.jp",)).pem)
    config = _config(tmp_path, letsencrypt, site)
    first = _run(config, home=tmp_path)
    assert first.returncode == 0, first.stderr
    log = _log(first)
    files = sum(1 for p in [*letsencrypt.rglob("*"), site / "site.pem"] if not p.is_dir())
    assert files == 15  # archive 8, live 4 links, 2 READMEs, the site
    blocked = [e for e in log if e.get("code") == "renewal-blocked"]
    assert len(blocked) == 1  # one line per kind
    # the two certbot generations and the site: three certificates, found in seven files
    assert (blocked[0]["count"], blocked[0]["files"]) == (3, 7)
    assert blocked[0]["message"].startswith("initial scan: 3 certificate(s) with "
                                            "renewal-blocked")
    assert "in 7 file(s)" in blocked[0]["message"]
    # 90-day certificates: Art.6(1) puts their notice on the day they are first observed,
    # due today and not overdue, so no warning (it was "overdue" from their second day)
    assert [e for e in log if e.get("action") == "notify"] == []
    expired = [e for e in log if e.get("code") == "expired"]
    assert [(e["count"], e["files"]) for e in expired] == [(1, 2)]  # generation 1
    # 2 generations x (cert, chain, fullchain x 2) + live's 4 (cert, chain, fullchain x 2) + site
    reported = [e for e in log if e["event"] == "reported"]
    assert [e["observations"] for e in reported] == [2 * 4 + 4 + 1]  # once, both stores
    (scanned,) = [e for e in log if e["event"] == "scanned"]
    assert (scanned["files"], scanned["read"]) == (files, files)
    assert f"{files} file(s) scanned, {files} read;" in first.stdout

    warm = _run(config, home=tmp_path)
    log = _log(warm)
    (scanned,) = [e for e in log if e["event"] == "scanned"]
    assert (scanned["files"], scanned["read"]) == (files, 0)
    assert not [e for e in log if e["event"] == "reported"]  # nothing new to report
    assert f"{files} file(s) scanned, 0 read;" in warm.stdout


@pytest.mark.slow
def test_a_set_read_again_while_it_settles_is_scanned_once(tmp_path: Path) -> None:
    """A key that never matches its certificate: ``--once`` re-reads the set after each quiet
    period; its files are still scanned once each (the reviewer saw 74 "read" for 24)."""
    root = _certbot_mismatched_key(tmp_path)
    first = _run(_config(tmp_path, root), "--json", home=tmp_path)
    summary = json.loads(first.stdout)
    files = sum(1 for p in root.rglob("*") if not p.is_dir())
    assert summary["files"] == files == 14
    live = root / "live" / "example.jp"
    re_read = sum(1 for _ in live.iterdir()) * 10  # the set, after each of 10 quiet periods
    assert summary["files_read"] == files + re_read
    (scanned,) = [e for e in _log(first) if e["event"] == "scanned"]
    assert (scanned["files"], scanned["read"]) == (files, files + re_read)


def test_the_reported_line_counts_what_the_ledger_refused(tmp_path: Path) -> None:
    """A certificate the ledger refuses (dates where the contract cannot count) was counted
    as reported, with nothing saying it was not recorded (review 4)."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "ok.pem").write_bytes(
        make_cert(not_before=AT - timedelta(days=30), lifetime=timedelta(days=90),
                  sans=("ok.example.jp",)).pem)
    (site / "endless.pem").write_bytes(
        make_cert(not_before=AT - timedelta(days=30),  # a notAfter in the year 9998
                  lifetime=datetime(9998, 6, 1, tzinfo=UTC) - (AT - timedelta(days=30)),
                  sans=("ancient.example.jp",)).pem)
    done = _run(_config(tmp_path, site), home=tmp_path)
    assert done.returncode == 0, done.stderr
    (reported,) = [e for e in _log(done) if e["event"] == "reported"]
    # the refused one is reported twice: by the scan, and again by the reconciliation, which
    # finds no sighting of it in the ledger; both times refused
    assert (reported["recorded"], reported["refused"]) == (1, reported["observations"] - 1)
    assert reported["refused"] >= 1


def test_a_store_bound_to_a_contract_the_ledger_does_not_hold_is_said_once(
        tmp_path: Path) -> None:
    """``contract = "C-1O01"`` (a letter O for a zero): the certificates were recorded under a
    contract nobody can list, and nothing said so (the review of session 13)."""
    root = certbot_store(tmp_path).root
    config = tmp_path / "config.toml"
    config.write_text(f'[policy]\nledger = "{tmp_path}/state/ledger.sqlite3"\n'
                      '[agent]\nquiet_period_ms = 1\n'
                      f'[[agent.stores]]\npath = "{root}"\ncontract = "C-1O01"\n')
    done = _run(config, home=tmp_path)
    assert done.returncode == 0, done.stderr
    unknown = [e for e in _log(done) if e["event"] == "contract-unknown"]
    assert len(unknown) == 1
    assert unknown[0]["level"] == "warning"
    assert unknown[0]["contract"] == "C-1O01"
    assert "certescrow contract unbound" in unknown[0]["message"]
    listed = certescrow("contract", "unbound", "--json", "--ledger",
                        str(tmp_path / "state" / "ledger.sqlite3"), home=tmp_path, at=AT_TEXT)
    assert listed.returncode == 0, listed.stderr
    assert {o["contract"] for o in json.loads(listed.stdout)} == {"C-1O01"}
    # once the contract exists, nothing is said
    added = certescrow("contract", "add", "C-1O01", "--item", "byo", "--tier", "6m",
                       "--ledger", str(tmp_path / "state" / "ledger.sqlite3"), home=tmp_path,
                       at=AT_TEXT)
    assert added.returncode == 0, added.stderr
    again = _run(config, home=tmp_path)
    assert [e for e in _log(again) if e["event"] == "contract-unknown"] == []


def _escrow_config(tmp_path: Path, root: Path, key_file: Path) -> Path:
    config = tmp_path / "config.toml"
    config.write_text(f'[policy]\nledger = "{tmp_path}/state/ledger.sqlite3"\n'
                      f'[vault]\npath = "{tmp_path}/vault/vault.sqlite3"\n'
                      f'key_source = "key-file"\nkey_file = "{key_file}"\n'
                      '[agent]\nquiet_period_ms = 1\n'
                      f'[[agent.stores]]\npath = "{root}"\nescrow = true\n')
    return config


def test_the_daemon_makes_no_master_key_for_a_key_file_that_is_not_there(
        tmp_path: Path) -> None:
    """A mistyped ``key_file``: the daemon wrote a new master key there and a vault around it,
    in silence, and escrowed every key under a key nobody knew to back up (the review of
    session 13). It refuses, naming ``vault init``; with the key there, it creates the vault
    around it and says so."""
    root = certbot_store(tmp_path).root
    key_file = tmp_path / "keys" / "vault.key"
    config = _escrow_config(tmp_path, root, key_file)
    done = _run(config, home=tmp_path)
    log = _log(done)
    failed = [e for e in log if e["event"] == "escrow-failed"]
    assert failed
    assert "certescrow vault init" in failed[0]["message"]
    assert "no usable master key at key file" in failed[0]["message"]
    assert not key_file.exists()
    assert not (tmp_path / "vault" / "vault.sqlite3").exists()
    assert not [e for e in log if e["event"] == "escrowed"]

    key_file.parent.mkdir(mode=0o700)
    key_file.write_bytes(os.urandom(32).hex().encode())
    key_file.chmod(0o600)
    again = _run(config, home=tmp_path)
    log = _log(again)
    (created,) = [e for e in log if e["event"] == "vault-created"]
    assert created["level"] == "warning"
    assert str(key_file) in created["message"]
    assert [e for e in log if e["event"] == "escrowed"]
    assert (tmp_path / "vault" / "vault.sqlite3").exists()
    # the summary counts what this run added: everything, then nothing (puts are idempotent)
    new = len({e["entry"] for e in log if e["event"] == "escrowed"})
    assert new > 0
    assert f"escrow put(s), {new} new;" in again.stdout
    third = _run(config, home=tmp_path)
    assert "escrow put(s), 0 new;" in third.stdout


def test_a_certificate_beside_its_key_elsewhere_is_escrowed_once_the_vault_exists(
        tmp_path: Path) -> None:
    """Escrow failed (no vault yet), `vault init`, run again: the certificate in `certs/`
    whose key is in `private/` was never escrowed, since it waited in memory only and a restart
    re-reads only the directories holding a key (the re-review of session 13)."""
    ssl = debian_ssl(tmp_path)
    store, key_path, key_file = ssl.store, ssl.key, ssl.vault_key_file
    config = _escrow_config(tmp_path, store, key_file)
    first = _run(config, "--exit-status=all", home=tmp_path)
    assert [e for e in _log(first) if e["event"] == "escrow-failed"]
    # a key file has no certificate row to carry it: the run says it, and monitoring counts it
    assert first.returncode == 2, first.stdout
    assert "critical: escrow-failed: 1 file(s) of escrow stores could not be escrowed" \
        in first.stdout
    init = certescrow("--config", str(config), "vault", "init", home=tmp_path, at=AT_TEXT)
    assert init.returncode == 0, init.stderr
    again = _run(config, home=tmp_path)
    escrowed = {(e["kind"], e["path"]) for e in _log(again) if e["event"] == "escrowed"}
    assert ("private-key", str(key_path)) in escrowed
    assert ("certificate", str(store / "certs" / "site.pem")) in escrowed
