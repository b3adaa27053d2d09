"""A damaged projection row is a cache miss, never an error (review 12, defect 2).

The projection is derived from the journal (docs/ledger.md "The projection"): a row that
cannot be read (bytes that are not UTF-8, which SQLite stores as given; JSON that does not
decode to what the ledger wrote, on either backend) must not stop `contract list`,
`policy forecast` or `policy actions`. They answer as with a healthy row (the contract's
journal is folded), `policy verify` names the contract without quoting what is stored, and
`--repair` rewrites the row.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.test_policy_cli import _projection_ledger, _sql, run

# c2's last event (the notice) was recorded on 2026-04-25 (Tokyo): its cached decisions hold
# that day, so the first time reads them; on the second they have expired (the state is read).
TIMES = ("2026-04-25T13:00", "2026-06-01")
READERS = (("contract", "list"), ("contract", "list", "--json"), ("policy", "forecast"),
           ("policy", "actions"), ("policy", "actions", "--json"))
STORED = ("globalsign", "accepted_on", '"contract"')
"""Text the stored row holds: no message may quote it."""


def _answers(location: str) -> dict[tuple[str, ...], tuple[int, str]]:
    out = {}
    for at in TIMES:
        for reader in READERS:
            code, stdout, _ = run(*reader, "--at", at, "--ledger", location)
            out[(*reader, at)] = (code, stdout)
    return out


def _bad_utf8(location: str, column: str) -> None:
    """One byte that is not UTF-8 in c2's ``column`` (what a bit flip on disk does)."""
    _sql(location, f"UPDATE projection SET {column} = "  # noqa: S608 (the test's own names)
                   f"CAST(substr({column}, 1, 5) || x'ff' || substr({column}, 6) AS TEXT) "
                   "WHERE contract_id = 'c2'")


def _verify_then_repair(location: str, problem: str) -> None:
    code, out, err = run("policy", "verify", "--at", TIMES[1], "--ledger", location)
    assert code == 18, err
    assert f"c2: {problem}" in out
    assert not any(text in out + err for text in STORED)
    code, out, err = run("policy", "verify", "--json", "--at", TIMES[1], "--ledger", location)
    assert code == 18
    assert {"contract": "c2", "problem": problem} in json.loads(out)["mismatches"]
    code, out, err = run("policy", "verify", "--repair", "--at", TIMES[1],
                         "--ledger", location)
    assert code == 0, out + err
    assert "it now matches the fold" in out
    code, out, _ = run("policy", "verify", "--at", TIMES[1], "--ledger", location)
    assert code == 0
    assert "0 mismatch(es)" in out


@pytest.mark.parametrize("column", ["state", "decisions", "last_at", "fold_key", "problems"])
def test_a_projection_row_that_is_not_utf8_is_folded_reported_and_repaired_sqlite(
        column: str, tmp_path: Path) -> None:
    with _projection_ledger("sqlite", tmp_path) as location:
        if column == "problems":  # c2 has none: give it some, then damage them
            _sql(location, "UPDATE projection SET problems = '[[null, \"x\"]]' "
                           "WHERE contract_id = 'c2'")
        healthy = _answers(location) if column != "problems" else None
        _bad_utf8(location, column)
        damaged = _answers(location)
        assert all(code == 0 for code, _ in damaged.values()), damaged
        if healthy is not None:
            assert damaged == healthy
        _verify_then_repair(location, f"its projection row cannot be read ({column}): "
                                      "readers fold the journal until it is repaired")
        if healthy is not None:
            assert _answers(location) == healthy


def test_the_reviewers_reproduction_through_the_real_command(tmp_path: Path) -> None:
    """`contract list` printed an sqlite3 traceback quoting the row; `verify --repair`
    exited 13 and repaired nothing."""
    from tests.clirun import certescrow

    ledger = str(tmp_path / "r.sqlite3")
    add = certescrow("contract", "add", "R1", "--item", "byo", "--tier", "1y", "--at",
                     "2025-01-01", "--ledger", ledger, home=tmp_path)
    assert add.returncode == 0, add.stderr
    _sql(ledger, "UPDATE projection SET state = CAST(substr(state, 1, 20) || x'ff' "
                 "|| substr(state, 21) AS TEXT)")
    listed = certescrow("contract", "list", "--ledger", ledger, home=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "R1" in listed.stdout
    assert "Traceback" not in listed.stderr
    repaired = certescrow("policy", "verify", "--repair", "--ledger", ledger, home=tmp_path)
    assert repaired.returncode == 0, repaired.stderr
    assert "R1: its projection row cannot be read (state)" in repaired.stdout
    assert '"contract"' not in repaired.stdout + repaired.stderr
    assert certescrow("policy", "verify", "--ledger", ledger, home=tmp_path).returncode == 0


def test_a_projection_row_whose_contract_id_is_not_utf8_is_reported_and_removed_sqlite(
        tmp_path: Path) -> None:
    with _projection_ledger("sqlite", tmp_path) as location:
        _sql(location, "UPDATE projection SET contract_id = CAST('c' || x'ff' AS TEXT) "
                       "WHERE contract_id = 'c2'")
        for reader in READERS:
            code, _, err = run(*reader, "--at", TIMES[1], "--ledger", location)
            assert code == 0, err
        code, out, _ = run("policy", "verify", "--at", TIMES[1], "--ledger", location)
        assert code == 18
        assert "*: 1 projection row(s) whose contract id cannot be read" in out
        assert "c2: no projection row" in out
        code, out, _ = run("policy", "verify", "--repair", "--at", TIMES[1],
                           "--ledger", location)
        assert code == 0, out


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
@pytest.mark.parametrize(("column", "stored", "problem"), [
    ("state", "[]", "differs from the fold: state"),
    ("state", '{"contract": "c2"}', "differs from the fold: state"),
    ("state", "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
              "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
     * 200, "differs from the fold: state"),
    ("decisions", "{}", "differs from the fold: decisions"),
    ("decisions", '[{"contract": "c2"}]', "differs from the fold: decisions"),
    ("decisions", "not json", "differs from the fold: decisions"),
    ("problems", '{"x": 1}', "differs from the fold: problems"),
])
def test_a_projection_row_of_the_wrong_shape_is_folded_reported_and_repaired(
        backend: str, column: str, stored: str, problem: str, tmp_path: Path) -> None:
    """PostgreSQL's TEXT is always UTF-8, but what it holds may still not be what the ledger
    wrote: both backends read such a row as a cache miss."""
    with _projection_ledger(backend, tmp_path) as location:
        healthy = _answers(location)
        _sql(location, f"UPDATE projection SET {column} = '{stored}' "  # noqa: S608
                       "WHERE contract_id = 'c2'")
        assert _answers(location) == healthy
        _verify_then_repair(location, problem)
        assert _answers(location) == healthy


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
@pytest.mark.parametrize("damage", [
    "UPDATE projection SET contract_id = 'c9' WHERE contract_id = 'c2'",
    "DELETE FROM projection WHERE contract_id = 'c2'",
    "UPDATE projection SET contract_id = 'c2x' WHERE contract_id = 'c2'",
])
def test_a_contract_whose_row_is_renamed_or_gone_does_not_drop_out_of_what_the_desk_reads(
        backend: str, damage: str, tmp_path: Path) -> None:
    """The readers listed the projection's rows: a row whose key was rewritten, or deleted,
    made its contract vanish from `contract list` and `policy actions` (an overdue notice
    with it), exit 0 (the re-review of review 12). The projection is then out of step: the
    readers fold the journal until `policy verify --repair`."""
    with _projection_ledger(backend, tmp_path) as location:
        healthy = _answers(location)
        _sql(location, damage)
        assert _answers(location) == healthy
        code, out, _ = run("policy", "verify", "--at", TIMES[1], "--ledger", location)
        assert code == 18, out
        code, out, err = run("policy", "verify", "--repair", "--at", TIMES[1],
                             "--ledger", location)
        assert code == 0, out + err
        assert _answers(location) == healthy


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_cached_actions_under_another_contract_id_do_not_stand_for_a_contract(
        backend: str, tmp_path: Path) -> None:
    """A cached action's contract id rewritten: `policy actions` showed a phantom contract
    and left out the real one (the second re-review). The projection is then out of step."""
    with _projection_ledger(backend, tmp_path) as location:
        healthy = _answers(location)
        _sql(location, "UPDATE projection_actions SET contract_id = 'c9' "
                       "WHERE contract_id = 'c2'")
        assert _answers(location) == healthy
