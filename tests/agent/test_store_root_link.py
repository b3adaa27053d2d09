"""A store whose root is a symbolic link, retargeted (``ln -sfn d2 link``) while the daemon
runs or while it is stopped: the files under the root are the new target's from the next full
scan on (a resync, a reload, a start), the old target's are gone.

The reviewer's case: the root's resolution was cached for the life of the process, so every file
of ``d2`` read as "a link outside the store's allowed roots (d1)", and that error stayed in the
read index, kept by every restart, until the index was deleted. Real files, the real reader and
SQLite ledger and read index; the restart is two real ``agent run --once`` processes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from agent.readindex import READ_INDEX_NAME
from policy.ledger import Ledger
from tests.agent.daemon_helpers import make_daemon, store_config
from tests.certfactory import Issued, make_cert
from tests.clirun import certescrow

AT_TEXT = "2026-02-01T03:00:00Z"


def _retarget(link: Path, target: Path) -> None:
    """``ln -sfn target link``: a new link renamed over the old one."""
    staged = link.with_name(link.name + ".new")
    staged.symlink_to(target, target_is_directory=True)
    os.replace(staged, link)


def _two_targets(tmp_path: Path) -> tuple[Path, Issued, Issued]:
    """``link -> d1``; ``d1/x/cert.pem`` and ``d2/y/cert.pem``."""
    one, two = make_cert(sans=("one.example.jp",)), make_cert(sans=("two.example.jp",))
    (tmp_path / "d1" / "x").mkdir(parents=True)
    (tmp_path / "d2" / "y").mkdir(parents=True)
    (tmp_path / "d1" / "x" / "cert.pem").write_bytes(one.pem)
    (tmp_path / "d2" / "y" / "cert.pem").write_bytes(two.pem)
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "d1", target_is_directory=True)
    return link, one, two


def test_a_store_root_retargeted_while_running_is_read_at_its_new_target(
        tmp_path: Path) -> None:
    link, one, two = _two_targets(tmp_path)
    config = store_config([{"path": str(link)}])
    daemon, intake = make_daemon(config, tmp_path, config_loader=lambda _: config,
                                 read_index_path=tmp_path / "state" / READ_INDEX_NAME)
    try:
        daemon.full_scan()
        assert intake.ledger.open_sightings("web1") == [
            (str(link / "x" / "cert.pem"), 0, one.sha256)]
        intake.clear()

        _retarget(link, tmp_path / "d2")
        daemon.full_scan()  # the resync (an observer restart ends in one too)
        assert intake.locations() == [str(link / "y" / "cert.pem")]
        assert intake.gone == [str(link / "x" / "cert.pem")]
        assert intake.ledger.open_sightings("web1") == [
            (str(link / "y" / "cert.pem"), 0, two.sha256)]

        intake.clear()
        _retarget(link, tmp_path / "d1")
        assert daemon.reload() is True  # SIGHUP: back to d1
        assert intake.locations() == [str(link / "x" / "cert.pem")]
        assert intake.gone == [str(link / "y" / "cert.pem")]
    finally:
        daemon.shutdown()


def test_a_store_root_linked_inside_another_store_follows_its_retarget(
        tmp_path: Path) -> None:
    """The nested variant: ``certs`` watched, and ``link -> certs/shop`` bound to C-9, then
    retargeted to ``certs/other``: ``other``'s file is observed under the link, bound to C-9,
    and ``shop``'s is ``certs``' again (unbound)."""
    certs = tmp_path / "certs"
    (certs / "shop").mkdir(parents=True)
    (certs / "other").mkdir()
    shop, other = make_cert(sans=("shop.example.jp",)), make_cert(sans=("other.example.jp",))
    (certs / "shop" / "s.pem").write_bytes(shop.pem)
    (certs / "other" / "o.pem").write_bytes(other.pem)
    link = tmp_path / "link"
    link.symlink_to(certs / "shop", target_is_directory=True)
    config = store_config([{"path": str(certs)}, {"path": str(link), "contract": "C-9"}])
    daemon, intake = make_daemon(config, tmp_path, config_loader=lambda _: config,
                                 read_index_path=tmp_path / "state" / READ_INDEX_NAME)
    try:
        daemon.full_scan()
        intake.clear()
        _retarget(link, certs / "other")
        assert daemon.reload() is True
        assert sorted((o.location, o.binding.contract_id or "unbound")
                      for o in intake.reported) == [
            (str(certs / "shop" / "s.pem"), "unbound"), (str(link / "o.pem"), "C-9")]
        assert sorted(intake.gone) == [str(certs / "other" / "o.pem"), str(link / "s.pem")]
        assert sorted(intake.ledger.open_sightings("web1")) == [
            (str(certs / "shop" / "s.pem"), 0, shop.sha256),
            (str(link / "o.pem"), 0, other.sha256)]
    finally:
        daemon.shutdown()


def test_a_restart_after_the_root_was_retargeted_while_stopped_reads_the_new_target(
        tmp_path: Path) -> None:
    """``link -> d1`` and ``d1/cert.pem -> ../d2/cert.pem``: ``link/cert.pem`` lies outside the
    store (an error, indexed at that file's identity). Stopped, ``link`` is retargeted to
    ``d2``: the same path is inside now, the same file, unchanged. The restart kept the error
    and observed nothing; it reads the file again and observes the certificate."""
    link, _, two = _two_targets(tmp_path)
    (tmp_path / "d2" / "y" / "cert.pem").rename(tmp_path / "d2" / "cert.pem")
    (tmp_path / "d1" / "cert.pem").symlink_to("../d2/cert.pem")
    config = tmp_path / "config.toml"
    config.write_text(f'[policy]\nledger = "{tmp_path}/state/ledger.sqlite3"\n'
                      f'[agent]\nhost = "web1"\nquiet_period_ms = 1\n'
                      f'[[agent.stores]]\npath = "{link}"\n')

    def run_once() -> list[tuple[str, int, str]]:
        done = certescrow("--config", str(config), "agent", "run", "--once",
                          home=tmp_path, at=AT_TEXT)
        assert done.returncode in (0, 1), done.stderr  # (1: the file error of the first run)
        with Ledger.open(tmp_path / "state" / "ledger.sqlite3", create=False) as ledger:
            return sorted(ledger.open_sightings("web1"))

    assert str(link / "cert.pem") not in {loc for loc, _, _ in run_once()}
    assert (tmp_path / "state" / READ_INDEX_NAME).exists()
    _retarget(link, tmp_path / "d2")
    assert run_once() == [(str(link / "cert.pem"), 0, two.sha256)]


def test_links_that_still_resolve_outside_are_neither_read_nor_logged_again_at_a_resync(
        tmp_path: Path, caplog: Any) -> None:
    """`/etc/ssl/certs` links into `/usr/share/ca-certificates`, outside the store: a first cut
    of the fix above read every such file again at every full scan, a warning each (1,000 links,
    1,000 warnings a resync: the re-review of session 15). Only a file whose link now resolves
    inside is read again."""
    import logging

    store = tmp_path / "certs"
    outside = tmp_path / "outside"
    store.mkdir()
    outside.mkdir()
    for n in range(5):
        (outside / f"ca{n}.pem").write_bytes(make_cert(sans=(f"ca{n}.example.jp",)).pem)
        (store / f"ca{n}.pem").symlink_to(outside / f"ca{n}.pem")
    config = store_config([{"path": str(store)}])
    daemon, _intake = make_daemon(config, tmp_path, config_loader=lambda _: config,
                                  read_index_path=tmp_path / "state" / READ_INDEX_NAME)
    try:
        with caplog.at_level(logging.WARNING, logger="certescrow"):
            daemon.full_scan()
        first = [r for r in caplog.records if "outside the store's allowed roots" in
                 r.getMessage()]
        assert len(first) == 5
        caplog.clear()
        before = daemon.sync.files_read
        with caplog.at_level(logging.WARNING, logger="certescrow"):
            daemon.full_scan()  # a resync: nothing changed
        assert daemon.sync.files_read == before
        assert not [r for r in caplog.records if "outside the store's allowed roots" in
                    r.getMessage()]
        # One link retargeted inside the store: read again, observed.
        inside = make_cert(sans=("inside.example.jp",))
        (store / "real.pem").write_bytes(inside.pem)
        os.replace(store / "ca0.pem", tmp_path / "old-link")
        (store / "ca0.pem").symlink_to(store / "real.pem")
        daemon.full_scan()
        assert daemon.sync.files_read > before
    finally:
        daemon.shutdown()
