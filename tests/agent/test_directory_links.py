"""Directory links in a watched store behave as real directories do: a file that appears in a
linked directory's target is observed under the link's path (the path the store shows), and a
link retargeted out of the allowed roots, or removed, reports gone everything seen under it.

inotify never follows a link: the events come from the target (watched as a
``follow_links_into`` root) or name the link itself in its parent directory. Real observers,
real files, a real SQLite ledger; the waits are generous bounds on event delivery, never
timing assertions."""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.daemon import Daemon
from agent.watch import DirectoryLinks
from policy.ledger import Ledger
from tests.agent.daemon_helpers import (
    AT,
    Certbot,
    RecordingIntake,
    SteppingClock,
    make_daemon,
    store_config,
)
from tests.agent.polling import logged_events, wait_until
from tests.certfactory import Issued, make_cert

QUIET_MS = 100
WAIT_S = 15.0


def _wait_s(predicate: Callable[[], bool], timeout: float = WAIT_S) -> bool:
    return wait_until(predicate, timeout)





def _cert(name: str) -> Issued:
    return make_cert(sans=(f"{name}.example.jp",))


@dataclass
class Layout:
    """``le/live`` (the store, allowed into ``le/archive``), ``le/archive/ex`` and
    ``le/outside``; ``live/linked/arch -> ../../archive/ex``."""

    root: Path

    @property
    def live(self) -> Path:
        return self.root / "live"

    @property
    def archive(self) -> Path:
        return self.root / "archive"

    @property
    def link(self) -> Path:
        return self.live / "linked" / "arch"

    @property
    def outside(self) -> Path:
        return self.root / "outside"


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    le = Layout(tmp_path / "le")
    (le.archive / "ex").mkdir(parents=True)
    (le.live / "linked").mkdir(parents=True)
    le.outside.mkdir()
    os.symlink("../../archive/ex", le.link)
    return le


@dataclass
class Watching:
    daemon: Daemon
    ledger_path: Path

    def open_sightings(self) -> set[tuple[str, int, str]]:
        with Ledger.open(self.ledger_path, create=False) as ledger:
            return set(ledger.open_sightings("web1"))

    def sees(self, path: Path, sha256: str) -> bool:
        return (str(path), 0, sha256) in self.open_sightings()

    def locations_under(self, path: Path) -> set[str]:
        prefix = str(path) + "/"
        return {loc for loc, _, _ in self.open_sightings() if loc.startswith(prefix)}


@pytest.fixture
def watching(tmp_path: Path, caplog: pytest.LogCaptureFixture
             ) -> Iterator[Callable[..., Watching]]:
    """A real ``Daemon.run()`` (inotify unless told) over ``le/live``, allowed into
    ``le/archive``."""
    started: list[tuple[Daemon, threading.Thread]] = []

    def start(le: Layout, observer: str = "inotify") -> Watching:
        config = store_config([{"path": str(le.live), "follow_links_into": [str(le.archive)]}],
                              quiet_period_ms=QUIET_MS, observer=observer)
        ledger_path = tmp_path / "state" / "ledger.sqlite3"
        intake = RecordingIntake(Ledger.open(ledger_path))
        daemon = Daemon(config, intake=intake, clock=lambda: AT)
        thread = threading.Thread(target=daemon.run, name="daemon-under-test")
        started.append((daemon, thread))
        thread.start()
        assert _wait_s(lambda: bool(logged_events(caplog, "ready")))
        return Watching(daemon, ledger_path)

    caplog.set_level(logging.DEBUG, logger="certescrow.agent")
    try:
        yield start
    finally:
        for daemon, thread in started:
            daemon.request_stop()
            thread.join(10)


# ---------------------------------------------------------------------------- watch mode


@pytest.mark.parametrize("observer", ["inotify", "polling"])
def test_a_certificate_copied_into_a_linked_directory_is_observed_under_the_link(
        layout: Layout, watching: Callable[..., Watching], observer: str) -> None:
    first = _cert("first")
    (layout.archive / "ex" / "cert1.pem").write_bytes(first.pem)
    run = watching(layout, observer)
    assert run.sees(layout.link / "cert1.pem", first.sha256)  # the first scan: as before

    new = _cert("new")
    (layout.archive / "ex" / "new.pem").write_bytes(new.pem)
    assert _wait_s(lambda: run.sees(layout.link / "new.pem", new.sha256))
    # observed where the store shows it, never at the target's own path
    assert not [loc for loc, _, _ in run.open_sightings() if "/archive/" in loc]


def test_a_directory_created_in_a_linked_directory_is_walked_under_the_link(
        layout: Layout, watching: Callable[[Layout], Watching]) -> None:
    run = watching(layout)
    staged = layout.root / "staged"
    staged.mkdir()
    deep = _cert("deep")
    (staged / "deep.pem").write_bytes(deep.pem)
    staged.rename(layout.archive / "ex" / "sub")  # a whole directory appears at once
    assert _wait_s(lambda: run.sees(layout.link / "sub" / "deep.pem", deep.sha256))


@pytest.mark.parametrize("observer", ["inotify", "polling"])
def test_a_directory_link_retargeted_out_of_the_allowed_roots_reports_its_files_gone(
        layout: Layout, watching: Callable[..., Watching],
        caplog: pytest.LogCaptureFixture, observer: str) -> None:
    first, second = _cert("first"), _cert("second")
    (layout.archive / "ex" / "cert1.pem").write_bytes(first.pem)
    (layout.archive / "ex" / "cert2.pem").write_bytes(second.pem)
    # the place it is pointed at holds a file of the same name: being there is not enough
    (layout.outside / "cert1.pem").write_bytes(_cert("outside").pem)
    run = watching(layout, observer)
    assert run.locations_under(layout.link) == {str(layout.link / "cert1.pem"),
                                                str(layout.link / "cert2.pem")}

    layout.link.unlink()
    os.symlink("../../outside", layout.link)
    assert _wait_s(lambda: not run.locations_under(layout.link))
    assert _wait_s(lambda: any(r.fields.get("path") == str(layout.link)  # type: ignore[attr-defined]
                             and r.fields.get("code") == "link-outside-root"  # type: ignore[attr-defined]
                             for r in logged_events(caplog, "file-error")))
    gone = {r.fields["path"] for r in logged_events(caplog, "gone")}  # type: ignore[attr-defined]
    assert {str(layout.link / "cert1.pem"), str(layout.link / "cert2.pem")} <= gone
    # nothing is read through the link any more, not even on its target's events
    (layout.outside / "more.pem").write_bytes(_cert("more").pem)
    (layout.archive / "ex" / "cert3.pem").write_bytes(_cert("third").pem)
    time.sleep(5 * QUIET_MS / 1000)
    assert not run.locations_under(layout.link)


def test_a_removed_directory_link_reports_everything_seen_under_it_gone(
        layout: Layout, watching: Callable[[Layout], Watching]) -> None:
    first = _cert("first")
    (layout.archive / "ex" / "sub").mkdir()
    (layout.archive / "ex" / "sub" / "cert1.pem").write_bytes(first.pem)
    run = watching(layout)
    assert run.sees(layout.link / "sub" / "cert1.pem", first.sha256)

    layout.link.unlink()
    assert _wait_s(lambda: not run.locations_under(layout.link))
    assert (layout.archive / "ex" / "sub" / "cert1.pem").exists()  # only the link went


def test_a_directory_link_retargeted_inside_the_allowed_roots_swaps_what_it_shows(
        layout: Layout, watching: Callable[[Layout], Watching]) -> None:
    old, same_name, other = _cert("old"), _cert("renamed"), _cert("other")
    (layout.archive / "ex" / "cert1.pem").write_bytes(old.pem)
    (layout.archive / "ex" / "only-old.pem").write_bytes(_cert("only-old").pem)
    (layout.archive / "ex2").mkdir()
    (layout.archive / "ex2" / "cert1.pem").write_bytes(same_name.pem)
    (layout.archive / "ex2" / "cert9.pem").write_bytes(other.pem)
    run = watching(layout)

    # `ln -sfn` the atomic way: a new link renamed over the old one
    os.symlink("../../archive/ex2", layout.live / "linked" / ".tmp")
    os.rename(layout.live / "linked" / ".tmp", layout.link)
    want = {(str(layout.link / "cert1.pem"), 0, same_name.sha256),
            (str(layout.link / "cert9.pem"), 0, other.sha256)}
    assert _wait_s(lambda: {s for s in run.open_sightings()
                          if s[0].startswith(str(layout.link) + "/")} == want)
    # and the new target is followed from now on, the old one no longer
    newer = _cert("newer")
    (layout.archive / "ex2" / "cert10.pem").write_bytes(newer.pem)
    (layout.archive / "ex" / "late.pem").write_bytes(_cert("late").pem)
    assert _wait_s(lambda: run.sees(layout.link / "cert10.pem", newer.sha256))
    assert str(layout.link / "late.pem") not in run.locations_under(layout.link)


def test_two_links_to_one_directory_both_show_a_new_file_and_one_removed_leaves_the_other(
        layout: Layout, watching: Callable[[Layout], Watching]) -> None:
    twin = layout.live / "twin"
    os.symlink("../archive/ex", twin)
    run = watching(layout)
    new = _cert("new")
    (layout.archive / "ex" / "new.pem").write_bytes(new.pem)
    assert _wait_s(lambda: run.sees(layout.link / "new.pem", new.sha256)
                 and run.sees(twin / "new.pem", new.sha256))

    twin.unlink()
    assert _wait_s(lambda: not run.locations_under(twin))
    later = _cert("later")
    (layout.archive / "ex" / "later.pem").write_bytes(later.pem)
    assert _wait_s(lambda: run.sees(layout.link / "later.pem", later.sha256))
    assert not run.locations_under(twin)


def test_a_directory_link_created_while_watching_is_followed(
        layout: Layout, watching: Callable[[Layout], Watching]) -> None:
    (layout.archive / "site").mkdir()
    first = _cert("site")
    (layout.archive / "site" / "cert1.pem").write_bytes(first.pem)
    run = watching(layout)
    fresh = layout.live / "fresh"
    os.symlink("../archive/site", fresh)
    assert _wait_s(lambda: run.sees(fresh / "cert1.pem", first.sha256))
    new = _cert("new")
    (layout.archive / "site" / "cert2.pem").write_bytes(new.pem)
    assert _wait_s(lambda: run.sees(fresh / "cert2.pem", new.sha256))


def test_a_directory_link_that_loops_is_refused_as_the_full_scan_refuses_it(
        layout: Layout, watching: Callable[[Layout], Watching],
        caplog: pytest.LogCaptureFixture) -> None:
    top = _cert("top")
    (layout.live / "top.pem").write_bytes(top.pem)
    run = watching(layout)
    os.symlink("..", layout.live / "linked" / "up")  # back to the store root
    assert _wait_s(lambda: any(r.fields.get("path") == str(layout.live / "linked" / "up")  # type: ignore[attr-defined]
                             and r.fields.get("code") == "symlink-loop"  # type: ignore[attr-defined]
                             for r in logged_events(caplog, "file-error")))
    time.sleep(3 * QUIET_MS / 1000)
    assert not run.locations_under(layout.live / "linked" / "up")


def test_certbot_file_links_renewed_while_watching_are_still_observed(
        tmp_path: Path, watching: Callable[[Layout], Watching]) -> None:
    le = Layout(tmp_path / "le")
    certbot = Certbot(le.root)
    first = certbot.install()
    run = watching(le)
    assert run.sees(certbot.live / "cert.pem", first.sha256)
    second = certbot.install()  # new archive files, then the links one at a time
    assert _wait_s(lambda: run.sees(certbot.live / "cert.pem", second.sha256))
    assert not run.sees(certbot.live / "cert.pem", first.sha256)


# ---------------------------------------------------------------------------- full scans


def test_a_resync_after_a_link_left_the_allowed_roots_reports_its_files_gone(
        layout: Layout, tmp_path: Path) -> None:
    """The hourly resync (and a restart) reach the same answer as the events: a name that
    exists where the link leads now is not the store's."""
    first = _cert("first")
    (layout.archive / "ex" / "cert1.pem").write_bytes(first.pem)
    (layout.outside / "cert1.pem").write_bytes(_cert("outside").pem)
    daemon, intake = make_daemon(
        store_config([{"path": str(layout.live), "follow_links_into": [str(layout.archive)]}]),
        tmp_path, clock=SteppingClock())
    daemon.full_scan()
    assert (str(layout.link / "cert1.pem"), 0, first.sha256) in set(
        intake.ledger.open_sightings("web1"))
    layout.link.unlink()
    os.symlink("../../outside", layout.link)  # while nobody watches
    daemon.full_scan()
    assert not [s for s in intake.ledger.open_sightings("web1")
                if s[0].startswith(str(layout.link) + "/")]
    assert str(layout.link / "cert1.pem") in intake.gone
    daemon.shutdown()


def test_events_queued_under_a_link_that_left_are_not_read_through_it(
        layout: Layout, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """An event from the old target waiting in the queue when the link changed is not read
    through the new link (no file-error for it: the link's own line says it once)."""
    first = _cert("first")
    (layout.archive / "ex" / "cert1.pem").write_bytes(first.pem)
    (layout.outside / "cert1.pem").write_bytes(_cert("outside").pem)
    clock = SteppingClock()
    daemon, intake = make_daemon(
        store_config([{"path": str(layout.live), "follow_links_into": [str(layout.archive)]}]),
        tmp_path, clock=clock)
    caplog.set_level(logging.DEBUG, logger="certescrow.agent")
    daemon.full_scan()
    assert (str(layout.link / "cert1.pem"), 0, first.sha256) in set(
        intake.ledger.open_sightings("web1"))
    daemon.enqueue(str(layout.archive / "ex" / "cert1.pem"))
    layout.link.unlink()
    os.symlink("../../outside", layout.link)
    clock.advance(0.01)
    daemon.enqueue(str(layout.link))
    clock.advance(1.0)
    daemon.process_due()
    daemon.writer.check()
    assert not [s for s in intake.ledger.open_sightings("web1")
                if s[0].startswith(str(layout.link) + "/")]
    errors = [r.fields for r in logged_events(caplog, "file-error")]  # type: ignore[attr-defined]
    assert errors == [{"path": str(layout.link), "code": "link-outside-root"}]
    daemon.shutdown()


# ---------------------------------------------------------------------------- the map


def test_directory_links_map_a_target_path_to_every_link_that_reaches_it(
        tmp_path: Path) -> None:
    links = DirectoryLinks()
    links.add("/s/live/a", str(tmp_path / "ex"))
    links.add("/s/live/b", str(tmp_path / "ex"))
    links.add("/s/live/a/deeper", str(tmp_path / "other"))
    assert links.aliases(str(tmp_path / "ex" / "new.pem")) == ["/s/live/a/new.pem",
                                                               "/s/live/b/new.pem"]
    assert links.aliases(str(tmp_path / "ex")) == ["/s/live/a", "/s/live/b"]
    assert links.aliases(str(tmp_path / "other" / "x")) == ["/s/live/a/deeper/x"]
    assert links.aliases(str(tmp_path / "exx" / "x")) == []
    assert links.link_above("/s/live/a/deeper/x") == "/s/live/a/deeper"
    assert links.link_above("/s/live/a") is None
    assert sorted(links.forget("/s/live/a")) == ["/s/live/a", "/s/live/a/deeper"]
    assert links.aliases(str(tmp_path / "ex" / "new.pem")) == ["/s/live/b/new.pem"]
    links.forget("/s/live/b")
    assert (len(links), links.aliases(str(tmp_path / "ex" / "new.pem"))) == (0, [])


def test_an_event_named_through_a_linked_watch_root_is_mapped_by_its_resolved_directory(
        tmp_path: Path) -> None:
    real = tmp_path / "real-archive"
    (real / "ex").mkdir(parents=True)
    os.symlink(real, tmp_path / "archive")  # a root configured (and watched) through a link
    links = DirectoryLinks()
    links.add("/s/live/arch", os.path.realpath(real / "ex"))
    assert links.aliases(str(tmp_path / "archive" / "ex" / "new.pem")) == [
        "/s/live/arch/new.pem"]
    shutil.rmtree(real)
