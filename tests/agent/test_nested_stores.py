"""A store inside another: the innermost store's settings apply to the files under it,
whatever the order of the ``[[agent.stores]]`` blocks, and each file is observed once.

The reviewer's case: ``live`` unbound and ``live/ex`` bound to contract C-9. Outer block first,
the outer store's walk reported ``live/ex/cert.pem`` unbound and the inner store's scan then
found it unchanged; inner block first, the binding was C-9. Real ``certescrow agent run
--once`` processes, the real SQLite ledger.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from agent.config import config_from_raw, nested_stores
from policy.events import CertificateObserved
from policy.ledger import Ledger
from tests.agent.daemon_helpers import SteppingClock, make_daemon, store_config
from tests.certfactory import make_cert
from tests.clirun import certescrow

AT_TEXT = "2026-02-01T03:00:00Z"


def _stores(tmp_path: Path) -> tuple[Path, Path]:
    live = tmp_path / "live"
    inner = live / "ex"
    inner.mkdir(parents=True)
    (live / "outer.pem").write_bytes(make_cert(sans=("outer.example.jp",)).pem)
    (inner / "cert.pem").write_bytes(make_cert(sans=("ex.example.jp",)).pem)
    return live, inner


def _config(tmp_path: Path, live: Path, inner: Path, *, inner_first: bool) -> Path:
    outer_block = f'[[agent.stores]]\npath = "{live}"\n'
    inner_block = f'[[agent.stores]]\npath = "{inner}"\ncontract = "C-9"\n'
    blocks = inner_block + outer_block if inner_first else outer_block + inner_block
    config = tmp_path / "config.toml"
    config.write_text(f'[policy]\nledger = "{tmp_path}/state/ledger.sqlite3"\n'
                      f'[agent]\nhost = "web1"\nquiet_period_ms = 1\n{blocks}')
    return config


def _observed(ledger: Path) -> list[tuple[str, str | None]]:
    """``(location, contract)`` of every observation the ledger recorded, in order."""
    with Ledger.open(ledger, create=False) as opened:
        # C-9 is no contract of this ledger: its observations are listed as unbound too
        entries = {e.seq: e.event for e in opened.journal("C-9")}
        entries.update((e.seq, e.event) for e in opened.unbound_observations())
    return sorted((e.location, e.contract_id) for e in entries.values()
                  if isinstance(e, CertificateObserved))


@pytest.mark.parametrize("inner_first", [False, True], ids=["outer-first", "inner-first"])
def test_innermost_store_binds_its_files_in_either_order(tmp_path: Path,
                                                          inner_first: bool) -> None:
    live, inner = _stores(tmp_path)
    config = _config(tmp_path, live, inner, inner_first=inner_first)
    done = certescrow("--config", str(config), "agent", "run", "--once", "--json",
                      home=tmp_path, at=AT_TEXT)
    assert done.returncode == 0, done.stderr
    assert _observed(tmp_path / "state" / "ledger.sqlite3") == [
        (str(inner / "cert.pem"), "C-9"),  # once, under the inner store
        (str(live / "outer.pem"), None),
    ]
    summary = json.loads(done.stdout)
    stores = {row["path"]: row["store"] for row in summary["certificates"]}
    assert stores == {str(inner / "cert.pem"): str(inner), str(live / "outer.pem"): str(live)}
    assert summary["files"] == 2


def test_check_config_notes_which_store_is_inside_which(tmp_path: Path) -> None:
    live, inner = _stores(tmp_path)
    config = _config(tmp_path, live, inner, inner_first=False)
    done = certescrow("agent", "check-config", str(config), home=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr == (f"note: store {inner} is inside store {live}: the settings of "
                           f"{inner} apply to the files under it (the innermost store wins)\n")
    as_json = certescrow("agent", "check-config", "--json", str(config), home=tmp_path)
    assert json.loads(as_json.stdout)["notes"] == [done.stderr.removeprefix("note: ").strip()]


def test_nested_stores_name_each_pair_and_not_mere_prefixes() -> None:
    config = config_from_raw({"agent": {"stores": [
        {"path": "/x/live/ex/deep"}, {"path": "/x/live"}, {"path": "/x/live2"},
        {"path": "/x/live/ex", "contract": "C-9"}]}})
    pairs = [(str(outer.path), str(inner.path))
             for outer, inner in nested_stores(config.agent.stores)]
    assert pairs == [("/x/live", "/x/live/ex/deep"), ("/x/live/ex", "/x/live/ex/deep"),
                     ("/x/live", "/x/live/ex")]  # /x/live2 is beside /x/live, not in it


def test_a_directory_moved_in_with_a_store_inside_binds_that_store(tmp_path: Path) -> None:
    """The event names only the moved directory: the nested store's files are scanned as the
    nested store's, not left unreported until the next resync."""
    staging = tmp_path / "staging" / "site"
    (staging / "ex").mkdir(parents=True)
    (staging / "outer.pem").write_bytes(make_cert(sans=("outer.example.jp",)).pem)
    (staging / "ex" / "cert.pem").write_bytes(make_cert(sans=("ex.example.jp",)).pem)
    live = tmp_path / "live"
    live.mkdir()
    site = live / "site"
    config = store_config([{"path": str(live)},
                           {"path": str(site / "ex"), "contract": "C-9"}])
    clock = SteppingClock()
    daemon, intake = make_daemon(config, tmp_path, clock=clock)
    try:
        daemon.full_scan()
        staging.rename(site)
        daemon.enqueue(str(site))
        clock.advance(0.31)
        daemon.process_due()
        reported = sorted((o.location, o.binding.contract_id) for o in intake.reported)
    finally:
        daemon.shutdown()
    assert reported == [(str(site / "ex" / "cert.pem"), "C-9"),
                        (str(site / "outer.pem"), None)]


def test_check_config_is_quiet_without_nesting(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "ab"
    a.mkdir()
    b.mkdir()
    config = tmp_path / "config.toml"
    config.write_text(f'[[agent.stores]]\npath = "{a}"\n[[agent.stores]]\npath = "{b}"\n')
    done: subprocess.CompletedProcess[str] = certescrow("agent", "check-config", str(config),
                                                        home=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


def test_a_store_whose_root_links_into_another_store_is_nested_in_it(tmp_path: Path) -> None:
    """`/n/shoplink` -> `/n/certs/shop`, a store bound to C-9, beside the unbound `/n/certs`:
    the file was observed twice, once bound and once not, and check-config said nothing
    (review 11 re-review). It is the linked store's, observed once, under its own path."""
    certs = tmp_path / "certs"
    (certs / "shop").mkdir(parents=True)
    (certs / "outer.pem").write_bytes(make_cert(sans=("outer.example.jp",)).pem)
    (certs / "shop" / "s.pem").write_bytes(make_cert(sans=("shop.example.jp",)).pem)
    link = tmp_path / "shoplink"
    link.symlink_to(certs / "shop", target_is_directory=True)
    config = _config(tmp_path, certs, link, inner_first=False)
    done = certescrow("--config", str(config), "agent", "run", "--once", "--json",
                      home=tmp_path, at=AT_TEXT)
    assert done.returncode == 0, done.stderr
    assert _observed(tmp_path / "state" / "ledger.sqlite3") == [
        (str(certs / "outer.pem"), None),
        (str(link / "s.pem"), "C-9"),
    ]
    checked = certescrow("agent", "check-config", str(config), home=tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert f"note: store {link} is inside store {certs}" in checked.stderr
