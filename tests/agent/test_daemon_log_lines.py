"""The daemon's log lines say what docs/daemon.md says they say (a reviewer's run, as an
operator would: each of these differed):

* one ``reconciled`` line after every full scan, nothing to do included;
* a place that went while the daemon was stopped is ``gone … (found at reconciliation)``, also
  when the start's walk finds it (the read index of the last run knew it);
* after SIGHUP the per-kind lines say ``scan after reload:``, not ``initial scan:``;
* certbot replacing a link (``rm`` then ``ln -s``, while the set is read for another file's
  event) is not a ``gone`` line: the link is back within its quiet period.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import pytest

from agent.logs import EventLog, configure_logging
from agent.readindex import READ_INDEX_NAME
from tests.agent.daemon_helpers import Certbot, SteppingClock, make_daemon, store_config
from tests.certfactory import make_cert

pytestmark = pytest.mark.usefixtures("restored_logger")


def _log() -> tuple[EventLog, io.StringIO]:
    stream = io.StringIO()
    return EventLog(configure_logging("text", stream=stream)), stream


def _events(stream: io.StringIO, event: str) -> list[str]:
    return [line for line in stream.getvalue().splitlines()
            if line.split(" ", 1)[-1].lstrip().startswith(f"{event}: ")]


def _store(root: Path, count: int = 3) -> Path:
    root.mkdir(parents=True)
    for n in range(count):
        (root / f"site{n}.pem").write_bytes(make_cert(sans=(f"s{n}.example.jp",)).pem)
    return root


def test_every_full_scan_ends_with_one_reconciled_line(tmp_path: Path) -> None:
    store = _store(tmp_path / "certs")
    log, stream = _log()
    daemon, _ = make_daemon(store_config([{"path": str(store)}]), tmp_path, log=log)
    daemon.full_scan()  # the start: everything reported, nothing in the ledger to compare
    daemon.full_scan()  # a resync with nothing changed
    lines = _events(stream, "reconciled")
    assert len(lines) == 2, stream.getvalue()
    assert lines[1] == ("info    reconciled: ledger reconciled with the stores: 0 gone, "
                        "0 shrunk, 0 re-reported, 0 re-checked for their binding gone=0 "
                        "shrunk=0 reported=0 rebind=0")
    daemon.shutdown()


def test_what_went_while_stopped_is_gone_found_at_reconciliation(tmp_path: Path) -> None:
    store = _store(tmp_path / "certs")
    index = tmp_path / "state" / READ_INDEX_NAME
    first, _ = make_daemon(store_config([{"path": str(store)}]), tmp_path,
                           read_index_path=index)
    first.full_scan()
    first.shutdown()
    (store / "site1.pem").unlink()  # while the daemon is stopped
    log, stream = _log()
    second, intake = make_daemon(store_config([{"path": str(store)}]), tmp_path,
                                 read_index_path=index, log=log)
    second.full_scan()
    assert intake.gone == [str(store / "site1.pem")]
    (gone,) = _events(stream, "gone")
    assert gone.startswith(f"info    gone: {store / 'site1.pem'}: no longer there "
                           "(found at reconciliation) ")
    # one that goes while it watches is plainly gone
    (store / "site2.pem").unlink()
    second.full_scan()
    assert _events(stream, "gone")[1].startswith(
        f"info    gone: {store / 'site2.pem'}: no longer there path=")
    second.shutdown()


def test_after_a_reload_the_lines_per_kind_say_it_was_the_scan_after_reload(
        tmp_path: Path) -> None:
    store = _store(tmp_path / "certs")
    bound = store_config([{"path": str(store), "tier": "1y"}])
    log, stream = _log()
    daemon, _ = make_daemon(store_config([{"path": str(store)}]), tmp_path, log=log,
                            config_loader=lambda path: bound)
    daemon.full_scan()
    assert [line for line in stream.getvalue().splitlines() if "initial scan: " in line]
    start = len(stream.getvalue())
    assert daemon.reload() is True  # SIGHUP: the store's binding changed
    after = stream.getvalue()[start:].splitlines()
    counted = [line for line in after if " count=" in line]
    assert counted, after
    assert all(": scan after reload: " in line and " scan=reload" in line
               for line in counted), counted
    assert not [line for line in after if "initial scan" in line]
    daemon.shutdown()


def _watched_certbot(tmp_path: Path) -> tuple[Certbot, SteppingClock, Any, Any, Any]:
    """A certbot store, scanned by a daemon logging into a string, its ledger calls cleared."""
    certbot = Certbot(tmp_path / "le")
    certbot.install()
    clock = SteppingClock()
    log, stream = _log()
    daemon, intake = make_daemon(store_config([{"path": str(tmp_path / "le" / "live")}]),
                                 tmp_path, clock=clock, log=log)
    daemon.full_scan()
    intake.clear()
    return certbot, clock, stream, daemon, intake


def test_a_certbot_link_replaced_while_its_set_is_read_is_not_gone(tmp_path: Path) -> None:
    certbot, clock, stream, daemon, intake = _watched_certbot(tmp_path)
    # certbot relinks one file after another (rm, then ln -s): cert.pem's event comes due
    # (quiet period 300 ms) while fullchain.pem is between its rm and its ln -s.
    daemon.enqueue(str(certbot.link("cert")))
    clock.advance(0.2)
    fullchain = certbot.live / "fullchain.pem"
    fullchain.unlink()
    daemon.enqueue(str(fullchain))
    clock.advance(0.15)
    daemon.process_due()  # the set, read for cert.pem, has no fullchain.pem this instant
    os.symlink(f"../../archive/{certbot.name}/fullchain{certbot.generation}.pem", fullchain)
    daemon.enqueue(str(fullchain))
    for _ in range(3):
        clock.advance(0.31)
        daemon.process_due()
    assert intake.gone == []
    assert _events(stream, "gone") == []
    assert str(fullchain) in {location for location, _, _ in
                              intake.ledger.open_sightings("web1")}
    daemon.shutdown()


def test_a_certbot_renewal_logs_no_gone_line(tmp_path: Path) -> None:
    certbot, clock, stream, daemon, intake = _watched_certbot(tmp_path)
    renewed = certbot.write_generation()
    # rm + ln -s, 100 ms apart: cert.pem's event is due (300 ms after its ln -s) the instant
    # fullchain.pem is removed
    for kind in ("cert", "chain", "fullchain", "privkey"):
        link = certbot.live / f"{kind}.pem"
        link.unlink()
        daemon.enqueue(str(link))
        daemon.process_due()
        clock.advance(0.1)
        daemon.enqueue(str(certbot.link(kind)))
        daemon.process_due()
        clock.advance(0.1)
    for _ in range(12):
        clock.advance(0.31)
        daemon.process_due()
    assert intake.gone == []
    assert _events(stream, "gone") == []
    assert {o.location for o in intake.reported if o.facts.sha256 == renewed.sha256} == {
        str(certbot.live / "cert.pem"), str(certbot.live / "fullchain.pem")}
    daemon.shutdown()
