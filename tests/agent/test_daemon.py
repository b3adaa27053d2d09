"""The daemon's worker, driven without watchdog: paths are enqueued by hand and the clock is
stepped, so each trap is tested deterministically with real certificates, the real reader and
the real SQLite ledger."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from agent.certset import MAX_SET_ATTEMPTS
from agent.records import FileError, FileResult
from tests.agent.daemon_helpers import (
    Certbot,
    CountingReader,
    OpeningVault,
    SteppingClock,
    debian_ssl,
    make_daemon,
    store_config,
)
from tests.certfactory import fresh_key, make_cert


def test_initial_scan_reports_certbot_live_through_archive_links(tmp_path: Path) -> None:
    certbot = Certbot(tmp_path / "le")
    issued = certbot.install()
    config = store_config([{"path": str(tmp_path / "le" / "live")}])
    daemon, intake = make_daemon(config, tmp_path)

    summary = daemon.full_scan(collect=True)

    by_location = {(o.location, o.index): o for o in intake.reported}
    cert = by_location[(str(certbot.live / "cert.pem"), 0)]
    assert cert.facts.sha256 == issued.sha256
    assert cert.key_matches is True
    assert cert.host == "web1"
    full = by_location[(str(certbot.live / "fullchain.pem"), 0)]
    assert full.facts.sha256 == issued.sha256
    assert full.key_matches is True
    assert by_location[(str(certbot.live / "fullchain.pem"), 1)].key_matches is None  # CA
    assert summary.errors == []
    # The ledger has them, unbound (no binding in the store's configuration).
    seen = {e.event.location for e in intake.ledger.unbound_observations()}  # type: ignore[attr-defined]
    assert str(certbot.live / "cert.pem") in seen


def test_certbot_one_file_at_a_time_update_never_reports_a_mismatched_pair(
        tmp_path: Path) -> None:
    certbot = Certbot(tmp_path / "le")
    certbot.install()
    clock = SteppingClock()
    daemon, intake = make_daemon(store_config([{"path": str(tmp_path / "le" / "live")}]),
                                 tmp_path, clock=clock)
    daemon.full_scan()
    intake.clear()

    renewed = certbot.write_generation()
    # certbot relinks cert.pem first: for a moment it disagrees with privkey.pem.
    daemon.enqueue(str(certbot.link("cert")))
    clock.advance(0.2)
    assert daemon.process_due() == 0  # still inside the quiet period
    clock.advance(0.2)
    daemon.process_due()
    assert intake.reported == []  # key and certificate disagree: nothing reported yet
    # The set is re-checked after another quiet period; meanwhile certbot carries on.
    for kind in ("chain", "fullchain", "privkey"):
        daemon.enqueue(str(certbot.link(kind)))
        clock.advance(0.05)
    clock.advance(0.35)
    daemon.process_due()

    new = [o for o in intake.reported if o.facts.sha256 == renewed.sha256]
    assert {o.location for o in new} == {str(certbot.live / "cert.pem"),
                                         str(certbot.live / "fullchain.pem")}
    assert all(o.key_matches is True for o in new)
    assert not any(o.key_matches is False for o in intake.reported)


def test_certbot_set_that_keeps_disagreeing_is_reported_as_mismatched(tmp_path: Path) -> None:
    certbot = Certbot(tmp_path / "le")
    certbot.install()
    clock = SteppingClock()
    daemon, intake = make_daemon(store_config([{"path": str(tmp_path / "le" / "live")}]),
                                 tmp_path, clock=clock)
    daemon.full_scan()
    intake.clear()
    renewed = certbot.write_generation()
    daemon.enqueue(str(certbot.link("cert")))  # and certbot dies before the other links
    for _ in range(MAX_SET_ATTEMPTS):
        clock.advance(0.31)
        daemon.process_due()
        if intake.reported:
            break
    assert intake.reported == []  # still waiting after MAX-1 quiet periods
    clock.advance(0.31)
    daemon.process_due()
    (obs,) = [o for o in intake.reported if o.facts.sha256 == renewed.sha256]
    assert obs.key_matches is False


def test_certbot_file_vanishing_mid_read_is_retried_not_reported_gone(tmp_path: Path) -> None:
    certbot = Certbot(tmp_path / "le")
    certbot.install()
    clock = SteppingClock()
    vanish_once = {"armed": True}
    real = CountingReader()

    def flaky_reader(path: Path, **kwargs: Any) -> FileResult:
        if vanish_once["armed"] and path.name == "privkey.pem":
            vanish_once["armed"] = False
            return FileResult(path=str(path), error=FileError(
                path=str(path), code="vanished", message="replaced while reading"))
        return real(path, **kwargs)

    daemon, intake = make_daemon(store_config([{"path": str(tmp_path / "le" / "live")}]),
                                 tmp_path, clock=clock, reader=flaky_reader)
    daemon.full_scan()  # privkey.pem "vanishes" during the initial read of the set
    assert intake.reported == []
    assert intake.gone == []
    clock.advance(0.31)
    daemon.process_due()
    assert {o.location for o in intake.reported} >= {str(certbot.live / "cert.pem")}
    assert all(o.key_matches in (True, None) for o in intake.reported)
    assert intake.gone == []


def test_unchanged_files_are_not_read_again_and_one_change_reads_one_file(
        tmp_path: Path) -> None:
    store = tmp_path / "certs"
    store.mkdir()
    for i in range(60):
        (store / f"site{i:03}.pem").write_bytes(make_cert(sans=(f"s{i}.example.jp",)).pem)
    reader = CountingReader()
    clock = SteppingClock()
    daemon, intake = make_daemon(store_config([{"path": str(store)}]), tmp_path,
                                 clock=clock, reader=reader)
    daemon.full_scan()
    assert len(reader.calls) == 60
    assert len(intake.reported) == 60

    reader.calls.clear()
    intake.clear()
    daemon.full_scan()  # the periodic resync: nothing changed, nothing read
    assert reader.calls == []
    assert intake.reported == []

    replacement = make_cert(sans=("s7.example.jp",), serial=77)
    (store / "site007.pem").write_bytes(replacement.pem)
    daemon.enqueue(str(store / "site007.pem"))
    clock.advance(0.31)
    daemon.process_due()
    assert reader.calls == [str(store / "site007.pem")]
    assert [o.facts.sha256 for o in intake.reported] == [replacement.sha256]


def test_deleted_file_and_removed_directory_are_reported_gone(tmp_path: Path) -> None:
    store = tmp_path / "certs"
    (store / "sub").mkdir(parents=True)
    (store / "a.pem").write_bytes(make_cert().pem)
    (store / "sub" / "b.pem").write_bytes(make_cert(sans=("b.example.jp",)).pem)
    clock = SteppingClock()
    daemon, intake = make_daemon(store_config([{"path": str(store)}]), tmp_path, clock=clock)
    daemon.full_scan()

    (store / "a.pem").unlink()
    (store / "sub" / "b.pem").unlink()
    (store / "sub").rmdir()
    daemon.enqueue(str(store / "a.pem"))
    daemon.enqueue(str(store / "sub"))
    clock.advance(0.31)
    daemon.process_due()
    assert sorted(intake.gone) == [str(store / "a.pem"), str(store / "sub" / "b.pem")]
    assert len(daemon.index) == 0


def test_new_directory_is_followed(tmp_path: Path) -> None:
    store = tmp_path / "certs"
    store.mkdir()
    clock = SteppingClock()
    daemon, intake = make_daemon(store_config([{"path": str(store)}]), tmp_path, clock=clock)
    daemon.full_scan()
    (store / "new" / "deeper").mkdir(parents=True)
    issued = make_cert(sans=("new.example.jp",))
    (store / "new" / "deeper" / "c.pem").write_bytes(issued.pem)
    daemon.enqueue(str(store / "new"))  # inotify reports the directory, not what is in it
    clock.advance(0.31)
    daemon.process_due()
    assert [o.facts.sha256 for o in intake.reported] == [issued.sha256]


def test_link_outside_the_store_is_a_per_file_error_not_a_report(tmp_path: Path) -> None:
    store = tmp_path / "certs"
    store.mkdir()
    outside = tmp_path / "elsewhere.pem"
    outside.write_bytes(make_cert().pem)
    os.symlink(outside, store / "sneaky.pem")
    daemon, intake = make_daemon(store_config([{"path": str(store)}]), tmp_path)
    summary = daemon.full_scan(collect=True)
    assert intake.reported == []
    assert [(e.path, e.code) for e in summary.errors] == [
        (str(store / "sneaky.pem"), "link-outside-root")]


def test_missing_store_root_is_a_warning_not_a_crash(tmp_path: Path) -> None:
    daemon, intake = make_daemon(store_config([{"path": str(tmp_path / "not-yet")}]), tmp_path)
    summary = daemon.full_scan(collect=True)
    assert summary.missing_stores == [str(tmp_path / "not-yet")]
    (tmp_path / "not-yet").mkdir()
    (tmp_path / "not-yet" / "c.pem").write_bytes(make_cert().pem)
    daemon.full_scan()  # the periodic resync picks it up once it exists
    assert len(intake.reported) == 1


def test_store_binding_reaches_the_ledger(tmp_path: Path) -> None:
    store = tmp_path / "certs"
    store.mkdir()
    (store / "c.pem").write_bytes(make_cert().pem)
    config = store_config([{"path": str(store), "category": "III", "tier": "6m",
                            "item": "byo"}])
    daemon, intake = make_daemon(config, tmp_path)
    summary = daemon.full_scan(collect=True)
    (obs,) = intake.reported
    assert obs.binding.tier is not None
    assert obs.binding.tier.value == "6m"
    (seen,) = summary.certificates
    assert seen.classification.item == "byo"
    assert seen.classification.renewable is False  # 90-day BYO: Art.6(3) proviso


def test_reload_refuses_a_bad_configuration_and_keeps_the_old(tmp_path: Path) -> None:
    first, second = tmp_path / "one", tmp_path / "two"
    first.mkdir()
    second.mkdir()
    (first / "a.pem").write_bytes(make_cert().pem)
    (second / "b.pem").write_bytes(make_cert(sans=("b.example.jp",)).pem)
    config_file = tmp_path / "config.toml"
    config_file.write_text(f'[agent]\nhost = "web1"\n[[agent.stores]]\npath = "{first}"\n')
    from agent.config import load_config

    daemon, intake = make_daemon(load_config(config_file), tmp_path, config_path=config_file)
    daemon.full_scan()
    assert intake.locations() == [str(first / "a.pem")]

    config_file.write_text('[agent]\nquiet_period_ms = "soon"\n')
    assert daemon.reload() is False
    assert daemon.config.agent.stores[0].path == first

    config_file.write_text(f'[agent]\nhost = "web1"\n[[agent.stores]]\npath = "{second}"\n')
    assert daemon.reload() is True
    assert daemon.config.agent.stores[0].path == second
    assert str(second / "b.pem") in intake.locations()
    daemon.stop_watching()


def test_art4_7_escrow_puts_key_and_certificate_into_a_real_vault(tmp_path: Path) -> None:

    certbot = Certbot(tmp_path / "le")
    issued = certbot.install()
    key_file = tmp_path / "keys" / "vault.key"
    key_file.parent.mkdir(mode=0o700)
    vault_path = tmp_path / "vault" / "vault.sqlite3"
    factory = OpeningVault(vault_path, key_file)
    opened = factory.opened

    config = store_config([{"path": str(tmp_path / "le" / "live"), "escrow": True,
                            "contract": "C-42"}])
    daemon, _ = make_daemon(config, tmp_path, vault_factory=factory)
    summary = daemon.full_scan(collect=True)

    kinds = {(e.kind, e.path) for e in summary.escrowed}
    assert ("private-key", str(certbot.live / "privkey.pem")) in kinds
    assert ("certificate", str(certbot.live / "cert.pem")) in kinds
    cert_seen = next(c for c in summary.certificates
                     if c.record.path == str(certbot.live / "cert.pem"))
    (finding,) = [f for f in cert_seen.findings if f.code == "escrowed"]
    assert finding.clause == "Art.4(7)"
    vault = opened[0]
    key_entry = next(e.entry_id for e in summary.escrowed if e.kind == "private-key")
    cert_entry = next(e.entry_id for e in summary.escrowed
                      if e.kind == "certificate" and e.path.endswith("cert.pem"))
    assert vault.get(key_entry) == issued.key_pem()
    assert vault.get(cert_entry) == issued.der
    daemon.shutdown()

    # A second daemon run escrows nothing twice (put is idempotent).
    again, _ = make_daemon(config, tmp_path, vault_factory=factory)
    second = again.full_scan(collect=True)
    assert second.escrowed
    assert not any(e.created for e in second.escrowed)
    again.shutdown()


def test_stop_requested_during_a_scan_ends_it_without_reporting_anything_gone(
        tmp_path: Path) -> None:
    store = tmp_path / "certs"
    for d in range(3):
        (store / f"d{d}").mkdir(parents=True)
        (store / f"d{d}" / "c.pem").write_bytes(make_cert(sans=(f"d{d}.example.jp",)).pem)
    reader = CountingReader()
    daemon, intake = make_daemon(store_config([{"path": str(store)}]), tmp_path, reader=reader)
    daemon.full_scan()
    assert len(daemon.index) == 3
    for d in range(3):
        (store / f"d{d}" / "c.pem").write_bytes(make_cert(sans=(f"n{d}.example.jp",)).pem)
    reader.calls.clear()
    real = reader.__call__

    def stop_after_first(path: Path, **kwargs: Any) -> FileResult:
        daemon.request_stop()  # SIGTERM arrives while the scan is reading
        return real(path, **kwargs)

    daemon.sync.reader = stop_after_first
    daemon.full_scan()
    assert len(reader.calls) == 1  # the scan stopped after the file it was reading
    assert intake.gone == []
    assert len(daemon.index) == 3


def test_unstartable_inotify_observer_withholds_the_watchdog_ping(
        tmp_path: Path, monkeypatch: Any) -> None:
    import errno

    from agent import watch

    def exhausted() -> Any:
        raise OSError(errno.EMFILE, "inotify instance limit reached")

    monkeypatch.setattr(watch, "_inotify_observer", exhausted)
    store = tmp_path / "certs"
    store.mkdir()
    daemon, _ = make_daemon(store_config([{"path": str(store)}], observer="inotify"), tmp_path)
    monkeypatch.setattr(daemon.notifier, "watchdog", lambda: True)
    assert daemon.start_watching() is False  # logged as watch-failed, no crash
    assert daemon.heartbeat() is False


def test_in_place_change_in_the_allowed_archive_rereads_the_live_link(tmp_path: Path) -> None:
    certbot = Certbot(tmp_path / "le")
    first = certbot.install()
    clock = SteppingClock()
    daemon, intake = make_daemon(store_config([{"path": str(tmp_path / "le" / "live")}]),
                                 tmp_path, clock=clock)
    daemon.full_scan()
    intake.clear()
    rewritten = make_cert(sans=(certbot.name,), key=first.key, serial=4242)
    target = certbot.archive / "cert1.pem"
    target.write_bytes(rewritten.pem)  # not certbot's way, but operators do it
    daemon.enqueue(str(target))  # the event arrives on the archive file, not the link
    clock.advance(0.31)
    daemon.process_due()
    clock.advance(0.31)
    daemon.process_due()
    (obs,) = [o for o in intake.reported if o.facts.sha256 == rewritten.sha256]
    assert obs.location == str(certbot.live / "cert.pem")
    assert obs.key_matches is True


def test_pkcs12_password_from_the_vault_opens_the_store_file(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.serialization import BestAvailableEncryption, pkcs12

    from vault import KeyFileSource, open_vault

    key_file = tmp_path / "keys" / "vault.key"
    key_file.parent.mkdir(mode=0o700)
    vault_path = tmp_path / "vault" / "vault.sqlite3"
    with open_vault(vault_path, KeyFileSource(key_file), create=True) as vault:
        entry = vault.put("document", b"s3cret\n", label="p12 password").entry_id
    issued = make_cert(sans=("p12.example.jp",))
    store = tmp_path / "certs"
    store.mkdir()
    (store / "site.p12").write_bytes(pkcs12.serialize_key_and_certificates(
        b"site", issued.key, issued.cert, None, BestAvailableEncryption(b"s3cret")))  # type: ignore[arg-type]
    config = store_config([{"path": str(store), "pkcs12_password_vault_ids": [entry]}])
    daemon, intake = make_daemon(
        config, tmp_path, vault_factory=lambda: open_vault(vault_path, KeyFileSource(key_file)))
    summary = daemon.full_scan(collect=True)
    assert summary.errors == []
    assert [o.facts.sha256 for o in intake.reported] == [issued.sha256]
    daemon.shutdown()


def test_directory_of_several_sites_with_one_key_missing_is_reported_at_once(
        tmp_path: Path) -> None:
    store = tmp_path / "ssl"
    store.mkdir()
    a = make_cert(sans=("a.example.jp",), key=fresh_key())
    b = make_cert(sans=("b.example.jp",), key=fresh_key())
    (store / "a.crt").write_bytes(a.pem)
    (store / "a.key").write_bytes(a.key_pem())
    (store / "b.crt").write_bytes(b.pem)  # b's key lives elsewhere
    daemon, intake = make_daemon(store_config([{"path": str(store)}]), tmp_path)
    daemon.full_scan()
    matches = {Path(o.location).name: o.key_matches for o in intake.reported}
    assert matches == {"a.crt": True, "b.crt": False}


def test_reload_without_a_file_at_start_picks_up_one_created_later(
        tmp_path: Path, isolated_environment: Path) -> None:
    from agent.config import load_config

    store = tmp_path / "certs"
    store.mkdir()
    (store / "c.pem").write_bytes(make_cert().pem)
    config = load_config(None)  # no file anywhere: built-in defaults
    assert config.source is None
    daemon, intake = make_daemon(config, tmp_path, config_path=config.source)
    created = isolated_environment / ".config" / "certescrow" / "config.toml"
    created.parent.mkdir(parents=True)
    created.write_text(f'[[agent.stores]]\npath = "{store}"\n')
    assert daemon.reload() is True
    assert daemon.config.source == created
    assert intake.locations() == [str(store / "c.pem")]
    daemon.shutdown()


def test_art4_7_escrow_follows_a_certbot_renewal_and_keeps_no_key_in_memory(
        tmp_path: Path) -> None:
    from vault import KeyFileSource, open_vault

    certbot = Certbot(tmp_path / "le")
    certbot.install()
    key_file = tmp_path / "keys" / "vault.key"
    key_file.parent.mkdir(mode=0o700)
    vault_path = tmp_path / "vault" / "vault.sqlite3"
    clock = SteppingClock()
    config = store_config([{"path": str(tmp_path / "le" / "live"), "escrow": True}])
    daemon, intake = make_daemon(
        config, tmp_path, clock=clock,
        vault_factory=lambda: open_vault(vault_path, KeyFileSource(key_file), create=True))
    daemon.full_scan()
    for path in daemon.index.paths():
        cached = daemon.index.get(path)
        assert cached is not None
        assert all(k.pem is None for k in cached.keys)

    renewed = certbot.write_generation()
    for kind in ("cert", "chain", "fullchain", "privkey"):
        daemon.enqueue(str(certbot.link(kind)))
    clock.advance(0.31)
    daemon.process_due()
    new_entries = {(e.kind, e.path): e.entry_id for e in daemon.escrow_log if e.created}
    key_id = new_entries[("private-key", str(certbot.live / "privkey.pem"))]
    cert_id = [v for (kind, path), v in new_entries.items()
               if kind == "certificate" and path == str(certbot.live / "cert.pem")][-1]
    vault = daemon.escrow.vault
    assert vault is not None
    assert vault.get(key_id) == renewed.key_pem()
    assert vault.get(cert_id) == renewed.der
    assert any(o.facts.sha256 == renewed.sha256 and o.key_matches for o in intake.reported)
    daemon.shutdown()


def test_art3_proviso_renewal_is_classified_against_the_certificate_it_replaced(
        tmp_path: Path, caplog: Any) -> None:
    """GlobalSign's "1 year" of 366 + 31 days complies only as the renewal of a certificate it
    overlaps by 31 days or more: the daemon passes the replaced certificate as ``previous``."""
    import logging
    from datetime import UTC, datetime, timedelta

    from tests.certfactory import OV_OID

    store = tmp_path / "certs"
    store.mkdir()
    org = "GlobalSign nv-sa"
    first = make_cert(not_before=datetime(2025, 3, 1, 3, tzinfo=UTC),
                      lifetime=timedelta(days=366), issuer_org=org,
                      issuer_cn="GlobalSign GCC R3 OV TLS CA 2020", policy_oids=(OV_OID,))
    renewal = make_cert(not_before=first.cert.not_valid_after_utc - timedelta(days=40),
                        lifetime=timedelta(days=397), issuer_org=org,
                        issuer_cn="GlobalSign GCC R3 OV TLS CA 2020", policy_oids=(OV_OID,))
    (store / "site.pem").write_bytes(first.pem)
    config = store_config([{"path": str(store), "item": "globalsign-ov", "tier": "1y"}])
    clock = SteppingClock()
    daemon, _ = make_daemon(config, tmp_path, clock=clock)
    daemon.full_scan()
    # (the first certificate itself, 366 days with no predecessor, exceeds a 365-day year:
    # CA lengths apply to a renewal that carries days over, session 15)
    caplog.clear()
    (store / "site.pem").write_bytes(renewal.pem)
    daemon.enqueue(str(store / "site.pem"))
    clock.advance(0.31)
    with caplog.at_level(logging.WARNING, logger="certescrow.agent"):
        daemon.process_due()
    assert not any(_says_non_compliant(r) for r in caplog.records)

    # The same certificate seen with no predecessor exceeds the contracted year.
    caplog.clear()
    fresh, _ = make_daemon(config, tmp_path / "fresh")
    with caplog.at_level(logging.WARNING, logger="certescrow.agent"):
        fresh.full_scan()
    assert any(_says_non_compliant(r) for r in caplog.records)


def _says_non_compliant(record: Any) -> bool:
    fields = getattr(record, "fields", {})
    return "non-compliant" in (fields.get("code"), fields.get("action"))


def test_bundle_losing_a_certificate_and_file_turning_to_garbage(tmp_path: Path) -> None:
    store = tmp_path / "certs"
    store.mkdir()
    a, b = make_cert(sans=("a.example.jp",)), make_cert(sans=("b.example.jp",))
    (store / "bundle.pem").write_bytes(a.pem + b.pem)
    clock = SteppingClock()
    daemon, intake = make_daemon(store_config([{"path": str(store)}]), tmp_path, clock=clock)
    daemon.full_scan()
    assert [(o.index, o.facts.sha256) for o in intake.reported] == [(0, a.sha256),
                                                                    (1, b.sha256)]
    intake.clear()
    (store / "bundle.pem").write_bytes(a.pem)
    daemon.enqueue(str(store / "bundle.pem"))
    clock.advance(0.31)
    daemon.process_due()
    assert intake.gone == [str(store / "bundle.pem")]
    assert [(o.index, o.facts.sha256) for o in intake.reported] == [(0, a.sha256)]
    intake.clear()
    (store / "bundle.pem").write_bytes(b"overwritten by mistake")
    daemon.enqueue(str(store / "bundle.pem"))
    clock.advance(0.31)
    daemon.process_due()
    assert intake.gone == [str(store / "bundle.pem")]
    assert intake.reported == []


def test_dangling_link_in_a_certbot_set_settles_as_a_per_file_error(tmp_path: Path) -> None:
    certbot = Certbot(tmp_path / "le")
    certbot.install()
    (certbot.archive / "chain1.pem").unlink()  # chain.pem now dangles, for good
    clock = SteppingClock()
    daemon, intake = make_daemon(store_config([{"path": str(tmp_path / "le" / "live")}]),
                                 tmp_path, clock=clock)
    daemon.full_scan()
    for _ in range(MAX_SET_ATTEMPTS + 1):
        clock.advance(0.31)
        daemon.process_due()
    assert len(daemon.queue) == 0  # no endless retry loop
    assert str(certbot.live / "cert.pem") in intake.locations()
    cached = daemon.index.get(str(certbot.live / "chain.pem"))
    assert cached is not None
    assert cached.error is not None
    assert cached.error.code == "not-found"


def test_dangling_link_in_a_plain_store_is_not_retried_forever(tmp_path: Path) -> None:
    store = tmp_path / "certs"
    store.mkdir()
    os.symlink(store / "nowhere.pem", store / "dangling.pem")
    clock = SteppingClock()
    daemon, _ = make_daemon(store_config([{"path": str(store)}]), tmp_path, clock=clock)
    daemon.enqueue(str(store / "dangling.pem"))
    for _ in range(MAX_SET_ATTEMPTS + 1):
        clock.advance(0.31)
        daemon.process_due()
    assert len(daemon.queue) == 0
    cached = daemon.index.get(str(store / "dangling.pem"))
    assert cached is not None
    assert cached.error is not None


def test_lost_events_request_an_immediate_resync(tmp_path: Path) -> None:
    import logging

    store = tmp_path / "certs"
    store.mkdir()
    daemon, _ = make_daemon(store_config([{"path": str(store)}]), tmp_path)
    daemon.start_watching()
    try:
        logging.getLogger("watchdog.observers.inotify_c").warning(
            "Inotify queue overflowed; filesystem events were lost")
        assert daemon._resync.is_set()
    finally:
        daemon.shutdown()


def test_watchdog_is_pinged_during_a_long_initial_scan(tmp_path: Path) -> None:
    store = tmp_path / "certs"
    store.mkdir()
    for i in range(4):  # one flat directory: the pings must come between files
        (store / f"c{i}.pem").write_bytes(make_cert(sans=(f"c{i}.example.jp",)).pem)
    clock = SteppingClock()
    real = CountingReader()

    def slow_reader(path: Path, **kwargs: Any) -> FileResult:
        clock.advance(0.6)  # each file takes 0.6 s
        return real(path, **kwargs)

    pings: list[float] = []
    daemon, _ = make_daemon(store_config([{"path": str(store)}]), tmp_path, clock=clock,
                            reader=slow_reader)
    daemon.notifier.watchdog = lambda: pings.append(clock.now) or True  # type: ignore[method-assign]
    daemon._ping_every = 1.0  # WATCHDOG_USEC=2000000
    daemon._next_ping = clock.now
    daemon.full_scan()
    assert len(pings) >= 2  # 2.4 s of scanning, a ping at least every second


def test_art4_7_escrow_pairs_a_certificate_with_a_key_in_another_directory_read_later(
        tmp_path: Path) -> None:
    """Debian's layout: /etc/ssl/certs/site.pem and /etc/ssl/private/site.key. ``certs`` is
    read before ``private``: the certificate had no escrowed key yet and was never escrowed
    (a known limit of session 12: pairing across directories depended on the walk order)."""

    ssl = debian_ssl(tmp_path)
    store, issued, key_path, key_file = ssl.store, ssl.issued, ssl.key, ssl.vault_key_file
    key_file.parent.mkdir(mode=0o700)
    factory = OpeningVault(tmp_path / "vault.sqlite3", key_file)
    opened = factory.opened

    config = store_config([{"path": str(store), "escrow": True, "contract": "C-7"}])
    daemon, _ = make_daemon(config, tmp_path, vault_factory=factory)
    summary = daemon.full_scan(collect=True)
    escrowed = {(e.kind, e.path): e.entry_id for e in summary.escrowed}
    assert ("private-key", str(key_path)) in escrowed
    cert_entry = escrowed[("certificate", str(store / "certs" / "site.pem"))]
    assert opened[0].get(cert_entry) == issued.der
    daemon.shutdown()


def test_art4_7_a_key_that_arrives_later_brings_its_waiting_certificate_not_a_removed_one(
        tmp_path: Path) -> None:
    from tests.agent.daemon_helpers import SteppingClock

    store = tmp_path / "ssl"
    (store / "certs").mkdir(parents=True)
    (store / "private").mkdir(mode=0o700)
    kept, removed = make_cert(sans=("kept.example.jp",)), make_cert(sans=("gone.example.jp",))
    (store / "certs" / "kept.pem").write_bytes(kept.pem)
    (store / "certs" / "gone.pem").write_bytes(removed.pem)
    key_file = tmp_path / "keys" / "vault.key"
    key_file.parent.mkdir(mode=0o700)
    factory = OpeningVault(tmp_path / "vault.sqlite3", key_file)

    clock = SteppingClock()
    config = store_config([{"path": str(store), "escrow": True}])
    daemon, _ = make_daemon(config, tmp_path, clock=clock, vault_factory=factory)
    assert daemon.full_scan(collect=True).escrowed == []  # no key anywhere yet
    (store / "certs" / "gone.pem").unlink()
    daemon.enqueue(str(store / "certs" / "gone.pem"))
    for name, issued in (("kept.key", kept), ("gone.key", removed)):
        key_path = store / "private" / name
        key_path.write_bytes(issued.key_pem())
        key_path.chmod(0o600)
        daemon.enqueue(str(key_path))
    clock.advance(1.0)
    daemon.process_due()
    escrowed = {(r.kind, r.path) for r in daemon.escrow.records}
    assert ("certificate", str(store / "certs" / "kept.pem")) in escrowed
    assert ("private-key", str(store / "private" / "gone.key")) in escrowed
    assert ("certificate", str(store / "certs" / "gone.pem")) not in escrowed
    daemon.shutdown()


def test_art4_7_an_escrow_that_failed_is_tried_again_at_the_next_full_scan(
        tmp_path: Path) -> None:
    """`vault init`, then a reload (or the hourly resync): the reload's scan read nothing
    again, so the key whose escrow failed and the certificate waiting for it stayed out of the
    vault until a restart (the re-review of session 13)."""
    from agent.errors import AgentError
    from vault import KeyFileSource, open_vault

    ssl = debian_ssl(tmp_path)
    store, key_path, key_file = ssl.store, ssl.key, ssl.vault_key_file
    key_file.parent.mkdir(mode=0o700)
    ready = [False]

    def factory() -> Any:
        if not ready[0]:
            raise AgentError("no vault yet")
        return open_vault(tmp_path / "vault.sqlite3", KeyFileSource(key_file), create=True)

    config = store_config([{"path": str(store), "escrow": True}])
    daemon, _ = make_daemon(config, tmp_path, vault_factory=factory)
    assert daemon.full_scan(collect=True).escrowed == []
    ready[0] = True
    escrowed = {(e.kind, e.path) for e in daemon.full_scan(collect=True).escrowed}
    assert escrowed == {("private-key", str(key_path)),
                        ("certificate", str(store / "certs" / "site.pem"))}
    daemon.shutdown()


def test_art4_7_waiting_certificates_are_bounded_said_once_and_dropped_when_escrow_is_off(
        tmp_path: Path, monkeypatch: Any, caplog: Any) -> None:
    """The cap on certificates waiting for a key elsewhere was silent, and a reload that turned
    a store's escrow off still escrowed its waiting certificate when the key came (the
    re-review of session 13)."""
    import logging

    from agent import escrow as escrow_module

    monkeypatch.setattr(escrow_module, "WAITING_MAX", 1)
    store = tmp_path / "ssl"
    (store / "certs").mkdir(parents=True)
    first, second = make_cert(sans=("a.example.jp",)), make_cert(sans=("b.example.jp",))
    (store / "certs" / "a.pem").write_bytes(first.pem)
    (store / "certs" / "b.pem").write_bytes(second.pem)
    key_file = tmp_path / "keys" / "vault.key"
    key_file.parent.mkdir(mode=0o700)

    factory = OpeningVault(tmp_path / "vault.sqlite3", key_file)

    config = store_config([{"path": str(store), "escrow": True}])
    daemon, _ = make_daemon(config, tmp_path, vault_factory=factory)
    with caplog.at_level(logging.WARNING, logger="certescrow"):
        daemon.full_scan()
    full = [r for r in caplog.records if getattr(r, "event", "") == "escrow-wait-full"]
    assert len(full) == 1
    assert daemon.escrow.to_read_again() == [str(store / "certs" / "a.pem")]
    daemon.escrow.keep_waiting(set())  # the reload's new configuration: no store escrows
    assert daemon.escrow.to_read_again() == []
    daemon.shutdown()


def test_a_long_full_scan_says_how_far_it_got(tmp_path: Path, caplog: Any) -> None:
    """`agent run --once` on a large store drew nothing while it worked, and `systemctl
    status` said only "initial scan" (the review of session 13): every few seconds of a full
    scan, one `scan-progress` line with the files read so far."""
    import logging

    from agent.daemon import PROGRESS_EVERY_S
    from tests.agent.daemon_helpers import SteppingClock

    store = tmp_path / "certs"
    store.mkdir()
    for n in range(6):
        (store / f"c{n}.pem").write_bytes(make_cert(sans=(f"c{n}.example.jp",)).pem)
    clock = SteppingClock()

    def slow_reader(path: Path, **kwargs: Any) -> FileResult:
        clock.advance(PROGRESS_EVERY_S / 2)  # each file takes half the interval
        from agent.reader import read_file

        return read_file(path, **kwargs)

    daemon, _ = make_daemon(store_config([{"path": str(store)}]), tmp_path, clock=clock,
                            reader=slow_reader)
    with caplog.at_level(logging.INFO, logger="certescrow"):
        daemon.full_scan()
    progress = [r for r in caplog.records if getattr(r, "event", "") == "scan-progress"]
    assert 1 <= len(progress) <= 3
    assert all(r.getMessage().startswith("scanning: ") for r in progress)
    reads = [r.fields["read"] for r in progress]  # type: ignore[attr-defined]
    assert reads == sorted(reads)
    assert reads[-1] <= 6
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="certescrow"):
        clock.advance(3 * PROGRESS_EVERY_S)
        daemon.tick()  # no scan running: nothing to say
    assert not [r for r in caplog.records if getattr(r, "event", "") == "scan-progress"]
    daemon.shutdown()
