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

from agent.config import Config, config_from_raw, nested_stores
from agent.daemon import Daemon
from agent.readindex import READ_INDEX_NAME
from policy.events import CertificateObserved
from policy.ledger import Ledger
from tests.agent.daemon_helpers import RecordingIntake, SteppingClock, make_daemon, store_config
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


def _reported(intake: RecordingIntake) -> list[tuple[str, str]]:
    """``(location, contract)`` of what the daemon reported, ``unbound`` for no contract."""
    return sorted((o.location, o.binding.contract_id or "unbound") for o in intake.reported)


def _reloading(tmp_path: Path, first: Config,
               *reloads: Config) -> tuple[Daemon, RecordingIntake]:
    """A daemon started on ``first`` (its read index kept on disk), each SIGHUP loading the next
    of ``reloads``, its first scan done and its ledger calls cleared."""
    following = list(reloads)
    daemon, intake = make_daemon(first, tmp_path, config_loader=lambda _: following.pop(0),
                                 read_index_path=tmp_path / "state" / READ_INDEX_NAME)
    daemon.full_scan()
    intake.clear()
    return daemon, intake


def test_a_store_added_by_reload_inside_another_takes_the_files_already_read(
        tmp_path: Path) -> None:
    """`live` watched; SIGHUP adds `live/ex` bound to C-9. The file under it had been read as
    `live`'s (unbound) and stayed so: not read again, not reported, the ledger kept it unbound
    although the innermost store wins. It is reported once, with C-9."""
    live, inner = _stores(tmp_path)
    daemon, intake = _reloading(
        tmp_path, store_config([{"path": str(live)}]),
        store_config([{"path": str(live)}, {"path": str(inner), "contract": "C-9"}]))
    try:
        assert daemon.reload() is True
        assert _reported(intake) == [(str(inner / "cert.pem"), "C-9")]
        with Ledger.open(tmp_path / "state" / "ledger.sqlite3", create=False) as ledger:
            observed = [(e.event.location, e.event.contract_id)
                        for e in ledger.unbound_observations()
                        if isinstance(e.event, CertificateObserved)]
        # the ledger took the new binding: its last observation of the file is C-9's
        assert observed[-1] == (str(inner / "cert.pem"), "C-9")
        intake.clear()
        daemon.full_scan()  # the next resync: nothing to say again
        assert intake.reported == []
    finally:
        daemon.shutdown()


def test_a_store_removed_by_reload_from_inside_another_gives_its_files_back(
        tmp_path: Path) -> None:
    """`live` and `live/ex` (C-9) watched; SIGHUP removes `live/ex`. Its file stayed bound to
    C-9 for good (the outer store's walk found it unchanged in the index). It is reported once,
    with the outer store's binding; so is it when that binding changed by the same reload (not
    once by the scan and again as rebound)."""
    live, inner = _stores(tmp_path)
    both = store_config([{"path": str(live)}, {"path": str(inner), "contract": "C-9"}])
    daemon, intake = _reloading(tmp_path, both, store_config([{"path": str(live)}]), both,
                                store_config([{"path": str(live), "tier": "1y"}]))
    try:
        assert daemon.reload() is True
        assert _reported(intake) == [(str(inner / "cert.pem"), "unbound")]
        with Ledger.open(tmp_path / "state" / "ledger.sqlite3", create=False) as ledger:
            (last,) = [e.event for e in ledger.unbound_observations()
                       if isinstance(e.event, CertificateObserved)
                       and e.event.location == str(inner / "cert.pem")][-1:]
        assert last.contract_id is None
        assert daemon.reload() is True  # back again: C-9 once more
        assert _reported(intake) == [(str(inner / "cert.pem"), "C-9"),
                                     (str(inner / "cert.pem"), "unbound")]
        intake.clear()
        assert daemon.reload() is True  # removed, and the outer store bound to a tier
        assert sorted((o.location, o.binding.tier and o.binding.tier.value)
                      for o in intake.reported) == [
            (str(inner / "cert.pem"), "1y"), (str(live / "outer.pem"), "1y")]
    finally:
        daemon.shutdown()


def test_a_store_removed_from_inside_another_while_stopped_gives_its_files_back(
        tmp_path: Path) -> None:
    """The same, between two runs: the read index skipped the unchanged file, and the outer
    store's binding had not changed, so nothing re-checked it: it stayed C-9's."""
    live, inner = _stores(tmp_path)
    first, _ = _reloading(tmp_path, store_config([{"path": str(live)},
                                                  {"path": str(inner), "contract": "C-9"}]))
    first.shutdown()
    second, intake = make_daemon(store_config([{"path": str(live)}]), tmp_path,
                                 read_index_path=tmp_path / "state" / READ_INDEX_NAME)
    try:
        second.full_scan()
        assert _reported(intake) == [(str(inner / "cert.pem"), "unbound")]
    finally:
        second.shutdown()


def test_a_store_added_by_reload_that_links_into_another_takes_its_files_once(
        tmp_path: Path) -> None:
    """`certs` watched; SIGHUP adds `shoplink` -> `certs/shop`, bound to C-9. The links were
    resolved once, at the start: `certs` kept reporting `certs/shop/s.pem` unbound beside the
    new store's `shoplink/s.pem`. It is the linked store's now, and the old place is gone."""
    certs = tmp_path / "certs"
    (certs / "shop").mkdir(parents=True)
    (certs / "shop" / "s.pem").write_bytes(make_cert(sans=("shop.example.jp",)).pem)
    link = tmp_path / "shoplink"
    link.symlink_to(certs / "shop", target_is_directory=True)
    daemon, intake = _reloading(
        tmp_path, store_config([{"path": str(certs)}]),
        store_config([{"path": str(certs)}, {"path": str(link), "contract": "C-9"}]))
    try:
        assert daemon.reload() is True
        daemon.full_scan()  # and the resync after it
        assert _reported(intake) == [(str(link / "s.pem"), "C-9")]
        assert intake.gone == [str(certs / "shop" / "s.pem")]
        assert [s[0] for s in intake.ledger.open_sightings("web1")] == [str(link / "s.pem")]
    finally:
        daemon.shutdown()
