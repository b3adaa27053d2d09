"""``fleet hosts --at`` and ``fleet hosts --at --json`` say the same thing: what the registry
could tell at --at. The registry keeps only a host's last request and last heartbeat, so a value
recorded after --at says nothing of --at: the table shows ``after --at`` and ``-`` for it, and
--json showed the newer last request, inventory and client certificate (a reviewer's finding at
b9f2d26). Now --json has ``null`` there and names the fields in ``after_at``. Real processes,
a real ledger."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from policy.events import text_to_instant
from policy.fleet_registry import FleetRegistry, IssuedRecord
from policy.ledger import Ledger
from policy.timeparse import format_instant
from tests.fleet.fleetkit import run_desk

ENROLLED = datetime(2024, 1, 1, tzinfo=UTC)
BEFORE = datetime(2024, 2, 1, tzinfo=UTC)
AT = "2024-03-01T00:00:00Z"
AFTER = datetime(2024, 4, 1, tzinfo=UTC)
FIRST_UNTIL = datetime(2024, 6, 1, tzinfo=UTC)
RENEWED_UNTIL = datetime(2024, 9, 1, tzinfo=UTC)
BEFORE_INVENTORY = {"certificates": 3, "errors": 0, "by_severity": {"ok": 2, "critical": 1}}
AFTER_INVENTORY = {"certificates": 9, "errors": 4, "by_severity": {"warning": 9}}


def _ledger(path: Path) -> str:
    ledger = str(path)
    Ledger.open(ledger).close()
    with FleetRegistry.open(ledger) as registry:
        for host in ("web01", "web02", "web03"):
            registry.record_certificate(IssuedRecord(
                host=host, serial=f"{host}-1", not_before_utc=ENROLLED,
                not_after_utc=FIRST_UNTIL), at=ENROLLED)
            registry.seen(host=host, serial=f"{host}-1", client_not_after=FIRST_UNTIL,
                          at=BEFORE, inventory=BEFORE_INVENTORY)
        # web01: a heartbeat before --at, a report after it with a renewed certificate
        registry.seen(host="web01", serial="web01-2", client_not_after=RENEWED_UNTIL, at=AFTER)
        # web02: a heartbeat after --at, with another inventory and a renewed certificate
        registry.seen(host="web02", serial="web02-2", client_not_after=RENEWED_UNTIL, at=AFTER,
                      inventory=AFTER_INVENTORY)
    return ledger


def _table(stdout: str) -> dict[str, list[str]]:
    """The table's rows by host, cells split at runs of two spaces or more."""
    import re

    head, *lines = stdout.splitlines()
    assert head.split() == ["HOST", "LAST", "SEEN", "CERTS", "CRIT", "WARN", "ERRORS",
                            "CLIENT", "CERT", "UNTIL", "STATE"]
    return {cells[0]: cells[1:] for cells in (re.split(r" {2,}", line.strip())
                                              for line in lines)}


def _instant(text: str | None, otherwise: str) -> str:
    return otherwise if text is None else format_instant(text_to_instant(text))


def _as_table(host: dict[str, Any]) -> list[str]:
    """What the table says of a host, from its --json entry (docs/fleet.md)."""
    after = host["after_at"]
    inventory = host["inventory"]
    by = (inventory or {}).get("by_severity")
    return [
        "after --at" if "last_seen" in after else _instant(host["last_seen"], "never"),
        "-" if inventory is None else str(inventory.get("certificates", "-")),
        "-" if by is None else str(by.get("critical", 0)),
        "-" if by is None else str(by.get("warning", 0)),
        "-" if inventory is None else str(inventory.get("errors", "-")),
        "after --at" if "client_certificate_not_after" in after
        else _instant(host["client_certificate_not_after"], "-"),
        host["state"]]


def test_hosts_at_a_past_instant_says_the_same_in_the_table_and_in_json(
        tmp_path: Path) -> None:
    ledger = _ledger(tmp_path / "ledger.sqlite3")
    listed = run_desk(["fleet", "hosts", "--json", "--at", AT, "--ledger", ledger], tmp_path)
    assert listed.returncode == 0, listed.stderr
    hosts = {h["host"]: h for h in json.loads(listed.stdout)["hosts"]}
    web01, web02, web03 = hosts["web01"], hosts["web02"], hosts["web03"]
    # nothing recorded after --at shows through
    assert "2024-04-01" not in listed.stdout
    assert "2024-09-01" not in listed.stdout
    assert (web01["last_seen"], web01["client_certificate_not_after"]) == (None, None)
    assert web01["after_at"] == ["client_certificate_not_after", "last_seen"]
    assert web01["heartbeat"].startswith("2024-02-01T00:00:00")  # its last one was before
    assert web01["inventory"] == BEFORE_INVENTORY
    assert web01["state"] == "LATER"
    assert (web02["last_seen"], web02["heartbeat"], web02["inventory"],
            web02["client_certificate_not_after"]) == (None, None, None, None)
    assert web02["after_at"] == ["client_certificate_not_after", "heartbeat", "inventory",
                                 "last_seen"]
    assert web03["after_at"] == []
    assert web03["last_seen"].startswith("2024-02-01T00:00:00")
    assert web03["client_certificate_not_after"].startswith("2024-06-01T00:00:00")

    table = run_desk(["fleet", "hosts", "--at", AT, "--ledger", ledger], tmp_path)
    assert table.returncode == 0, table.stderr
    rows = _table(table.stdout)
    assert {name: _as_table(host) for name, host in hosts.items()} == rows
    assert rows["web02"] == ["after --at", "-", "-", "-", "-", "after --at", "LATER"]
    assert rows["web01"][1:5] == ["3", "1", "0", "0"]

    # at a later instant both say everything, the newer values included
    now = run_desk(["fleet", "hosts", "--json", "--ledger", ledger, "--at",
                    (AFTER + timedelta(days=1)).isoformat()], tmp_path)
    later = {h["host"]: h for h in json.loads(now.stdout)["hosts"]}
    assert later["web02"]["inventory"] == AFTER_INVENTORY
    assert later["web02"]["after_at"] == []
    assert later["web01"]["client_certificate_not_after"].startswith("2024-09-01T00:00:00")
