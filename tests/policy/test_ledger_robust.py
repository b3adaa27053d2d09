"""Hostile input in the ledger (issue 9): file names that are not UTF-8, certificates at the
ends of ``datetime``'s range, an event that cannot be read, sightings that are history."""

from __future__ import annotations

import os
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from policy.errors import ContractStateError
from policy.events import CertificateBound
from policy.facts import CertificateFacts
from policy.intake import Binding, Observation
from policy.ledger import Ledger
from policy.rules.art6 import NO_WELL_DEFINED_EXPIRATION_UTC
from policy.state import facts_evaluable
from tests.policy.ledger_fixtures import T0, accepted, bound, facts, utc

NOW = utc(2026, 6, 1)
NOT_UTF8 = os.fsdecode(b"/etc/ssl/caf\xe9-\xff.pem")
"""A Latin-1 file name as the agent carries it: os.fsdecode'd, two lone surrogates."""


# `ledger`: tests/policy/conftest.py, once per backend (SQLite, PostgreSQL).


def _obs(location: str, *, tag: str = "a", index: int = 0,
         binding: Binding = Binding()) -> Observation:  # noqa: B008 - frozen value
    return Observation(facts=facts(tag=tag), host="web1", location=location, index=index,
                       observed_at_utc=T0, binding=binding)


# ---------------------------------------------------------------- file names


def test_a_file_name_that_is_not_utf8_round_trips_through_the_ledger(ledger: Ledger) -> None:
    assert "\udce9" in NOT_UTF8
    assert ledger.report([_obs(NOT_UTF8)], at=T0).recorded == 1
    [entry] = ledger.unbound_observations()
    assert entry.event.location == NOT_UTF8  # type: ignore[union-attr]
    assert os.fsencode(entry.event.location) == b"/etc/ssl/caf\xe9-\xff.pem"  # type: ignore[union-attr]
    assert ledger.open_sightings("web1") == [(NOT_UTF8, 0, facts(tag="a").sha256)]
    assert ledger.report([_obs(NOT_UTF8)], at=T0 + timedelta(hours=1)).unchanged == 1
    # A different name that merely looks like its escape is another place.
    lookalike = "/etc/ssl/caf\\xe9-\\xff.pem"
    assert ledger.report([_obs(lookalike)], at=T0).recorded == 1
    assert ledger.report_gone("web1", NOT_UTF8, at=T0 + timedelta(hours=2)) == 1
    assert [e.event.location for e in ledger.unbound_observations()] == [  # type: ignore[union-attr]
        lookalike]


def test_a_bound_file_name_that_is_not_utf8_is_kept(ledger: Ledger) -> None:
    ledger.append(accepted(), now=NOW)
    ledger.append(CertificateBound(contract_id="c1", at_utc=T0, facts=facts(), source=NOT_UTF8),
                  now=NOW)
    [_, entry] = ledger.journal("c1")
    assert entry.event.source == NOT_UTF8  # type: ignore[union-attr]


# ---------------------------------------------------------------- datetime's range ends


def _extreme(not_before: datetime, not_after: datetime, tag: str) -> CertificateFacts:
    return facts(tag=tag, not_before=not_before, not_after=not_after)


YEAR_ONE = _extreme(datetime(1, 1, 1, tzinfo=UTC), utc(2026, 12, 31), "year-one")
PAST_9999_OFFSET = _extreme(utc(2026, 1, 1), datetime(9999, 12, 31, 15, tzinfo=UTC), "9999+9h")


def test_certificates_at_the_ends_of_the_range_are_not_evaluable_but_rfc5280s_is() -> None:
    assert not facts_evaluable(YEAR_ONE)
    assert not facts_evaluable(PAST_9999_OFFSET)
    assert facts_evaluable(_extreme(utc(2026, 1, 1), NO_WELL_DEFINED_EXPIRATION_UTC, "rfc"))
    assert facts_evaluable(facts())


def test_intake_refuses_what_the_rules_cannot_evaluate(ledger: Ledger) -> None:
    extreme = Observation(facts=PAST_9999_OFFSET, host="web1", location="/x.pem", index=0,
                          observed_at_utc=T0)
    receipt = ledger.report([extreme, _obs("/ok.pem")], at=T0)
    assert (receipt.recorded, receipt.refused, receipt.contracts) == (1, 1, (None, None))
    assert ledger.count() == 1


@pytest.mark.parametrize("cert", [YEAR_ONE, PAST_9999_OFFSET], ids=["year-one", "9999+9h"])
def test_binding_what_the_rules_cannot_evaluate_is_refused(ledger: Ledger,
                                                          cert: CertificateFacts) -> None:
    ledger.append(accepted(), now=NOW)
    with pytest.raises(ContractStateError, match="cannot evaluate"):
        ledger.append(bound(cert=cert), now=NOW)
    assert ledger.count() == 1


# ---------------------------------------------------------------- one bad event


def _plant_bad_events(ledger: Ledger, path: Path) -> None:
    """An old journal's extreme certificate (written before intake refused them) and a row
    that is not JSON at all (a damaged or hand-edited file)."""
    ledger.append(accepted("bad"), now=NOW)
    ledger.append(accepted("good"), now=NOW)
    ledger.append(bound("good"), now=NOW)
    ledger._write(lambda: ledger._insert(bound("bad", cert=PAST_9999_OFFSET), None))
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO journal (contract_id, kind, at_utc, payload, recorded_utc) "
                 "VALUES ('bad', 'notice-sent', '2026-01-16T00:00:00.000000Z', "
                 "'{not json', '2026-01-16T00:00:00.000000Z')")
    conn.commit()
    conn.close()


def test_reading_a_journal_never_fails_because_of_one_event(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    with Ledger.open(path) as ledger:
        _plant_bad_events(ledger, path)
    with Ledger.open(path, create=False) as ledger:
        states = {s.contract_id: s for s in ledger.states(at=NOW)}
        assert set(states) == {"bad", "good"}
        assert states["good"].certificate is not None
        assert states["bad"].certificate is None  # its unevaluable certificate was skipped
        assert len(ledger.journal("bad")) == 2  # the accepted and the extreme bind: read
        messages = [str(p) for p in ledger.problems]
    assert any("cannot be read (not valid JSON); skipped" in m and "contract bad" in m
               for m in messages), messages
    assert any("certificate-bound" in m and "cannot evaluate" in m for m in messages), messages


# ---------------------------------------------------------------- what is deployed now


def test_sightings_reported_gone_or_replaced_are_history(ledger: Ledger) -> None:
    ledger.report([_obs("/a.pem", tag="a"), _obs("/b.pem", tag="b")], at=T0)
    ledger.report([_obs("/a.pem", tag="a2")], at=T0 + timedelta(hours=1))  # replaced
    ledger.report_gone("web1", "/b.pem", at=T0 + timedelta(hours=2))  # gone
    current = ledger.unbound_observations()
    assert [(e.event.location, e.event.facts.sha256) for e in current] == [  # type: ignore[union-attr]
        ("/a.pem", facts(tag="a2").sha256)]
    earlier = ledger.unbound_observations(at=T0 + timedelta(minutes=30))
    assert len(earlier) == 2  # as of then, both were there


def test_a_place_taken_over_by_an_unbound_certificate_leaves_the_contracts_locations(
        ledger: Ledger) -> None:
    ledger.append(accepted(), now=NOW)
    ledger.report([_obs("/srv/site.pem", tag="c1", binding=Binding(contract_id="c1"))], at=T0)
    assert ledger.state("c1", at=NOW).locations == ("web1:/srv/site.pem",)
    ledger.report([_obs("/srv/site.pem", tag="stray")], at=T0 + timedelta(hours=1))
    assert ledger.state("c1", at=NOW).locations == ()
    assert [e.event.facts.sha256 for e in ledger.unbound_observations()] == [  # type: ignore[union-attr]
        facts(tag="stray").sha256]


def test_sqlite_messages_never_reach_a_ledger_error(tmp_path: Path) -> None:
    """sqlite3 quotes stored bytes in some messages ("Could not decode to UTF-8 column …
    with text '…'"), and a ledger error printed SQLite's text as it was ("SQLite says: file
    is not a database")."""
    import sqlite3

    from policy.errors import LedgerError
    from policy.ledger import Ledger
    from policy.sqlitetext import sqlite_reason

    leak = sqlite3.OperationalError(
        "Could not decode to UTF-8 column 'payload' with text '\x1b[2Jevil'")
    assert "evil" not in sqlite_reason(leak)
    assert sqlite_reason(sqlite3.OperationalError("some new SQLite sentence")) == \
        "an SQLite error (OperationalError)"
    bogus = tmp_path / "bogus.sqlite3"
    bogus.write_bytes(b"\x00not sqlite at all" * 64)
    with pytest.raises(LedgerError) as info:
        Ledger.open(bogus)
    assert str(info.value) == f"{bogus}: not a certescrow ledger (it is not an SQLite database)"
