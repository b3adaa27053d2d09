"""The fleet registry, on SQLite and on PostgreSQL: revocation, batches, hosts' view."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from policy.fleet_registry import FleetRegistry, IssuedRecord
from tests.pgdb import postgres_schema

AT = datetime(2026, 11, 27, 3, 0, tzinfo=UTC)


def _issued(host: str, serial: str) -> IssuedRecord:
    return IssuedRecord(host=host, serial=serial, not_before_utc=AT,
                        not_after_utc=AT + timedelta(days=30))


def test_only_registered_live_certificates_of_their_own_host_pass(ledger_location: str) -> None:
    with FleetRegistry.open(ledger_location) as registry:
        registry.record_certificate(_issued("web01", "a1"), at=AT)
        registry.record_certificate(_issued("web01", "a2"), at=AT)
        assert registry.refusal(host="web01", serial="a1") is None
        assert "not registered" in (registry.refusal(host="web01", serial="ff") or "")
        assert "another host" in (registry.refusal(host="web02", serial="a1") or "")
        assert registry.revoke_host("web01", at=AT) == 2
        assert registry.revoke_host("web01", at=AT) == 0
        assert "revoked" in (registry.refusal(host="web01", serial="a2") or "")
        registry.record_certificate(_issued("web01", "a3"), at=AT + timedelta(hours=1))
        assert registry.refusal(host="web01", serial="a3") is None


def test_last_revoked_is_the_latest_revocation_of_the_host(ledger_location: str) -> None:
    with FleetRegistry.open(ledger_location) as registry:
        assert registry.last_revoked("web01") is None  # never signed
        registry.record_certificate(_issued("web01", "b1"), at=AT)
        assert registry.last_revoked("web01") is None  # signed, live
        registry.revoke_host("web01", at=AT + timedelta(minutes=1))
        registry.record_certificate(_issued("web01", "b2"), at=AT + timedelta(minutes=2))
        registry.revoke_host("web01", at=AT + timedelta(minutes=3))
        assert registry.last_revoked("web01") == AT + timedelta(minutes=3)
        assert registry.last_revoked("web02") is None


def test_batches_are_remembered_per_host_and_outbox(ledger_location: str) -> None:
    from policy.ledger import Ledger

    def batch(host: str, outbox: str, sequence: int) -> tuple[int, bool]:
        receipt = ledger.record_batch(host=host, outbox=outbox, sequence=sequence,
                                      observations=[], gone=[], at=AT, now=AT)
        return receipt.recorded, receipt.replay

    with FleetRegistry.open(ledger_location), Ledger.open(ledger_location) as ledger:
        assert batch("h", "o", 1) == (0, False)
        assert batch("h", "o", 1) == (0, True)
        assert batch("h", "o2", 1) == (0, False)
        assert batch("h2", "o", 1) == (0, False)
        assert batch("h", "o", 2) == (0, False)


def test_hosts_last_seen_inventory_and_silence(ledger_location: str) -> None:
    with FleetRegistry.open(ledger_location) as registry:
        registry.record_certificate(_issued("quiet", "q1"), at=AT)
        registry.record_certificate(_issued("busy", "b1"), at=AT)
        registry.seen(host="busy", serial="b1", client_not_after=AT + timedelta(days=30),
                      at=AT + timedelta(minutes=10), inventory={"certificates": 4})
        # An older request arriving late never moves last_seen backwards.
        registry.seen(host="busy", serial="b1", client_not_after=AT + timedelta(days=30),
                      at=AT + timedelta(minutes=5))
        registry.assign(host="busy", store="/etc/ssl", binding={"contract_id": "C-1"})
        hosts = {h.host: h for h in registry.hosts(at=AT + timedelta(minutes=14),
                                                   silent_after=timedelta(minutes=5))}
        assert set(hosts) == {"busy", "quiet"}
        assert hosts["busy"].last_seen_utc == AT + timedelta(minutes=10)
        assert hosts["busy"].inventory == {"certificates": 4}
        assert hosts["busy"].silent is False  # 4 minutes: not yet (bound exclusive)
        assert hosts["quiet"].silent is True  # never heard from
        assert hosts["quiet"].client_not_after_utc == AT + timedelta(days=30)
        later = {h.host: h for h in registry.hosts(at=AT + timedelta(minutes=15, seconds=1),
                                                   silent_after=timedelta(minutes=5))}
        assert later["busy"].silent is True
        assert registry.bindings("busy") == [{"store": "/etc/ssl",
                                              "binding": {"contract_id": "C-1"}}]
        assert registry.bindings("quiet") == []


def test_hostile_strings_are_stored_verbatim(ledger_location: str) -> None:
    nasty = "x'); DROP TABLE fleet_certs; --%s?\\"
    with FleetRegistry.open(ledger_location) as registry:
        registry.record_certificate(_issued(nasty, "n1"), at=AT)
        assert registry.refusal(host=nasty, serial="n1") is None
        assert [h.host for h in registry.hosts(at=AT, silent_after=timedelta(1))] == [nasty]


def test_an_unreachable_postgres_fails_when_required_and_skips_otherwise(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CERTESCROW_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:9/none")
    monkeypatch.setenv("CERTESCROW_REQUIRE_POSTGRES", "1")
    with pytest.raises(pytest.fail.Exception, match="required"), postgres_schema():
        pass
    monkeypatch.delenv("CERTESCROW_REQUIRE_POSTGRES")
    with pytest.raises(pytest.skip.Exception), postgres_schema():
        pass
