"""``fleet assign`` and ``fleet unassign`` repeat the store path the desk typed: escaped as the
``fleet assignments`` table escapes it (:func:`untrusted.text.for_terminal`). A path with a
newline or a bidi override reached the terminal as it was (a reviewer's finding at b9f2d26): a
forged second line, or a name drawn backwards."""

from __future__ import annotations

import json
from pathlib import Path

from policy.ledger import Ledger
from tests.fleet.fleetkit import run_desk

STORE = "/etc/ssl/a\nb\u202egnp.pem"
SHOWN = "/etc/ssl/a\\nb\\u202egnp.pem"


def test_assign_and_unassign_escape_the_store_path(tmp_path: Path) -> None:
    ledger = str(tmp_path / "ledger.sqlite3")
    Ledger.open(ledger).close()
    assigned = run_desk(["fleet", "assign", "web01", STORE, "--tier", "1y", "--force",
                         "--ledger", ledger], tmp_path)
    assert assigned.returncode == 0, assigned.stderr
    assert assigned.stdout == f"web01: {SHOWN} assigned\n"
    listed = run_desk(["fleet", "assignments", "web01", "--json", "--ledger", ledger], tmp_path)
    assert [a["store"] for a in json.loads(listed.stdout)["assignments"]] == [STORE]
    table = run_desk(["fleet", "assignments", "web01", "--ledger", ledger], tmp_path)
    assert SHOWN in table.stdout  # the table and the command say it alike
    unassigned = run_desk(["fleet", "unassign", "web01", STORE, "--ledger", ledger], tmp_path)
    assert unassigned.returncode == 0, unassigned.stderr
    assert unassigned.stdout == f"web01: {SHOWN} unassigned\n"
    never = run_desk(["fleet", "unassign", "web01", STORE + "x", "--ledger", ledger],
                     tmp_path)
    assert never.returncode != 0
    assert f"Error: web01: no assignment for {SHOWN}x" in never.stderr
    # once removed, there is no assignment left to remove (it said "unassigned" again)
    again = run_desk(["fleet", "unassign", "web01", STORE, "--ledger", ledger], tmp_path)
    assert again.returncode == never.returncode
    assert f"Error: web01: no assignment for {SHOWN}\n" in again.stderr
    for said in (assigned, table, unassigned, never):
        assert "\u202e" not in said.stdout + said.stderr
