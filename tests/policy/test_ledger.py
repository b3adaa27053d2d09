"""The ledger file: creation, refusal of foreign or newer files, append-only journal, intake."""

from __future__ import annotations

import os
import sqlite3
import stat
from datetime import timedelta
from pathlib import Path

import pytest

from policy.errors import ContractStateError, LedgerError, UnknownContractError
from policy.events import AnswerReceived, CertificateObserved, NoticeSent
from policy.intake import Binding, Observation
from policy.ledger import APPLICATION_ID, SCHEMA_VERSION, Ledger
from policy.rules.art6 import Answer
from tests.policy.ledger_fixtures import T0, accepted, bound, facts

UNBOUND = Binding()


# `ledger`: tests/policy/conftest.py, once per backend (SQLite, PostgreSQL).


def _obs(cert_tag: str = "a", *, location: str = "/etc/ssl/site.pem", index: int = 0,
         binding: Binding = UNBOUND, sans: tuple[str, ...] = ("www.example.jp",),
         is_ca: bool = False) -> Observation:
    return Observation(facts=facts(tag=cert_tag, sans=sans, is_ca=is_ca), host="web1",
                       location=location, index=index, observed_at_utc=T0, binding=binding)


# ---------------------------------------------------------------- the file


def test_ledger_file_is_created_0600_in_a_0700_directory(tmp_path: Path) -> None:
    path = tmp_path / "new" / "dir" / "ledger.sqlite3"
    with Ledger.open(path) as led:
        led.append(accepted())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    for sidecar in path.parent.glob("ledger.sqlite3-*"):
        assert stat.S_IMODE(sidecar.stat().st_mode) & 0o077 == 0


def test_ledger_is_sqlite_in_wal_mode_with_application_id_and_version(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite3"
    Ledger.open(path).close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        conn.close()


def test_ledger_refuses_a_file_that_is_not_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"certificate notes, definitely not a database\n" * 100)
    with pytest.raises(LedgerError, match=r"notes\.txt: not a certescrow ledger"):
        Ledger.open(path)
    assert path.read_bytes().startswith(b"certificate notes")


def test_ledger_refuses_an_sqlite_database_of_another_application(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE customers (id INTEGER)")
    conn.commit()
    conn.close()
    with pytest.raises(LedgerError, match="another application"):
        Ledger.open(path)


def test_ledger_refuses_a_foreign_application_id(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA application_id = 1234")
    conn.execute("CREATE TABLE t (id INTEGER)")
    conn.commit()
    conn.close()
    with pytest.raises(LedgerError, match="application_id"):
        Ledger.open(path)


def test_ledger_refuses_a_newer_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite3"
    with Ledger.open(path) as led:
        led.append(accepted())
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    with pytest.raises(LedgerError, match="newer certescrow"):
        Ledger.open(path)


def test_ledger_refuses_a_directory(tmp_path: Path) -> None:
    with pytest.raises(LedgerError, match="is a directory"):
        Ledger.open(tmp_path)


def test_ledger_open_without_create_does_not_create_a_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.sqlite3"
    with pytest.raises(LedgerError, match="no ledger here"):
        Ledger.open(path, create=False)
    assert not path.exists()


def test_ledger_events_survive_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite3"
    with Ledger.open(path) as led:
        led.append(accepted())
        led.append(bound())
    with Ledger.open(path) as led:
        assert led.contract_ids() == ["c1"]
        assert [e.event.KIND for e in led.journal("c1")] == ["application-accepted",
                                                             "certificate-bound"]


# ---------------------------------------------------------------- append-only


@pytest.mark.parametrize("statement", [
    "UPDATE journal SET payload = '{}'",
    "UPDATE journal SET at_utc = '2000-01-01T00:00:00.000000Z' WHERE seq = 1",
    "DELETE FROM journal",
    "DELETE FROM journal WHERE seq = 1",
])
def test_ledger_journal_is_append_only(tmp_path: Path, statement: str) -> None:
    path = tmp_path / "l.sqlite3"
    with Ledger.open(path) as led:
        led.append(accepted())
    conn = sqlite3.connect(path)
    try:
        before = conn.execute("SELECT seq, payload, at_utc FROM journal").fetchall()
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute(statement)
        conn.rollback()
        assert conn.execute("SELECT seq, payload, at_utc FROM journal").fetchall() == before
    finally:
        conn.close()


def test_ledger_refused_event_records_nothing(ledger: Ledger) -> None:
    ledger.append(accepted())
    count = ledger.count()
    with pytest.raises(ContractStateError, match="no certificate yet"):
        ledger.append(AnswerReceived(contract_id="c1", at_utc=T0 + timedelta(days=1),
                                     answer=Answer.RENEW))
    assert ledger.count() == count


def test_ledger_duplicate_contract_id_is_refused(ledger: Ledger) -> None:
    ledger.append(accepted())
    with pytest.raises(ContractStateError, match="already exists"):
        ledger.append(accepted(at=T0 + timedelta(days=3)))
    with pytest.raises(ContractStateError, match="already exists"):
        ledger.append(accepted(at=T0 - timedelta(days=3)))  # even "before" the first one
    assert ledger.count() == 1


def test_ledger_event_for_an_unknown_contract_is_refused(ledger: Ledger) -> None:
    with pytest.raises(UnknownContractError, match="no contract 'ghost'"):
        ledger.append(NoticeSent(contract_id="ghost", at_utc=T0))


def test_ledger_event_before_the_contract_was_accepted_is_refused(ledger: Ledger) -> None:
    ledger.append(accepted())
    with pytest.raises(ContractStateError, match="before contract 'c1' was accepted"):
        ledger.append(bound(at=T0 - timedelta(seconds=1)))
    assert ledger.count() == 1
    ledger.append(bound(at=T0))  # the same instant is not before


def test_ledger_dedup_key_makes_append_idempotent(ledger: Ledger) -> None:
    ledger.append(accepted())
    first = ledger.append(bound(), dedup_key="bind-1")
    again = ledger.append(bound(), dedup_key="bind-1")
    assert first == again
    assert ledger.count() == 2


# ---------------------------------------------------------------- idempotent intake


def test_intake_same_observation_twice_changes_nothing(ledger: Ledger) -> None:
    first = ledger.report([_obs()], at=T0)
    count = ledger.count()
    second = ledger.report([_obs()], at=T0 + timedelta(hours=1))
    assert (first.recorded, first.unchanged) == (1, 0)
    assert (second.recorded, second.unchanged) == (0, 1)
    assert ledger.count() == count


def test_intake_one_batch_is_numbered_in_intake_order_and_the_last_at_a_place_wins(
        ledger: Ledger) -> None:
    """A batch's rows are written a table at a time (PostgreSQL: one statement each): the
    journal keeps intake order, and a place seen twice in one batch holds the later one, as
    if each observation had been written on its own."""
    ledger.append(accepted())
    seen = [_obs("a", location="/etc/ssl/x.pem"), _obs("b", location="/etc/ssl/y.pem"),
            _obs("c", location="/etc/ssl/x.pem"),
            _obs("d", location="/etc/ssl/z.pem", binding=Binding(contract_id="c1"),
                 sans=("batch.example.jp",))]
    receipt = ledger.report(seen, at=T0)
    assert receipt.recorded == 4
    current = {(e.event.location, e.event.facts.sha256): e.seq  # type: ignore[union-attr]
               for e in ledger.unbound_observations()}
    assert current == {("/etc/ssl/y.pem", seen[1].facts.sha256): 3,
                       ("/etc/ssl/x.pem", seen[2].facts.sha256): 4}
    assert sorted(ledger.open_sightings("web1")) == [
        ("/etc/ssl/x.pem", 0, seen[2].facts.sha256), ("/etc/ssl/y.pem", 0, seen[1].facts.sha256),
        ("/etc/ssl/z.pem", 0, seen[3].facts.sha256)]
    assert [e.seq for e in ledger.journal("c1")] == [1, 5]
    # The SAN of the bound observation was recorded with it: a later match_by_san finds c1.
    later = ledger.report([_obs("e", location="/etc/ssl/w.pem", sans=("batch.example.jp",),
                                binding=Binding(match_by_san=True))], at=T0)
    assert later.contracts == ("c1",)
    # The next write continues the numbering.
    assert ledger.append(NoticeSent(contract_id="c1", at_utc=T0,
                                    certificate_sha256=seen[3].facts.sha256)) == 7


def test_intake_one_batch_of_several_hosts_writes_the_rows_of_one_at_a_time(
        tmp_path: Path) -> None:
    """A batch's place keys (each host's made once a batch) and its observations' payloads
    (written as one literal) are the rows written an observation at a time: the same journal
    and the same sightings, byte for byte."""
    def seen() -> list[Observation]:
        out = []
        for n, (host, location) in enumerate([
                ("web1", "/etc/ssl/x.pem"), ("web2", "/etc/ssl/x.pem"),
                ("web1", "/etc/ssl/y.pem"), ("web2", "/srv/\udcff.pem"),
                ("web1", "/etc/ssl/x.pem"), ("web3", "/etc/ssl/z.pem")]):
            out.append(Observation(facts=facts(tag=f"t{n}"), host=host, location=location,
                                   index=n % 2, observed_at_utc=T0, key_matches=n % 3 == 0,
                                   binding=Binding(contract_id="c1") if n == 2 else UNBOUND))
        return out

    def rows(path: Path) -> list[list[tuple[object, ...]]]:
        with sqlite3.connect(path) as db:
            return [db.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()  # noqa: S608
                    for table in ("journal", "sightings", "bound_sans")]

    written = []
    for name, batches in (("batch", [seen()]), ("alone", [[o] for o in seen()])):
        with Ledger.open(tmp_path / f"{name}.sqlite3") as led:
            led.append(accepted())
            for batch in batches:
                led.report(batch, at=T0)
        written.append(rows(tmp_path / f"{name}.sqlite3"))
    assert written[0] == written[1]
    assert len(written[0][0]) == 1 + 6
    assert len(written[0][1]) == 5  # web1's x.pem seen twice at two indexes: both kept


def test_intake_new_certificate_at_the_same_place_is_recorded(ledger: Ledger) -> None:
    ledger.report([_obs("a")], at=T0)
    receipt = ledger.report([_obs("b")], at=T0 + timedelta(days=1))
    assert receipt.recorded == 1
    assert ledger.count() == 2


def test_intake_gone_then_seen_again_is_recorded_again(ledger: Ledger) -> None:
    ledger.report([_obs("a", index=0), _obs("ca", index=1, is_ca=True)], at=T0)
    assert ledger.report_gone("web1", "/etc/ssl/site.pem", at=T0 + timedelta(hours=1)) == 2
    assert ledger.report_gone("web1", "/etc/ssl/site.pem", at=T0 + timedelta(hours=2)) == 0
    receipt = ledger.report([_obs("a")], at=T0 + timedelta(hours=3))
    assert receipt.recorded == 1
    # The journal keeps all three observations; what is deployed now is the one seen again.
    assert ledger.count() == 3 + 1  # three observations, one certificate-gone
    current = ledger.unbound_observations()
    assert [(e.event.index, e.seq) for e in current] == [(0, 4)]  # type: ignore[union-attr]


def test_intake_unbound_observations_are_kept_and_listable(ledger: Ledger) -> None:
    receipt = ledger.report([_obs("a"), _obs("b", location="/etc/ssl/other.pem")], at=T0)
    assert receipt.contracts == (None, None)
    unbound = ledger.unbound_observations()
    assert len(unbound) == 2
    event = unbound[0].event
    assert isinstance(event, CertificateObserved)
    assert event.contract_id is None
    assert event.location == "/etc/ssl/site.pem"


def test_intake_binding_contract_id_attributes_the_observation(ledger: Ledger) -> None:
    ledger.append(accepted())
    receipt = ledger.report([_obs(binding=Binding(contract_id="c1"))], at=T0)
    assert receipt.contracts == ("c1",)
    assert ledger.unbound_observations() == []
    assert [e.event.KIND for e in ledger.journal("c1")][-1] == "certificate-observed"


def test_intake_an_id_the_ledger_does_not_hold_is_unbound_until_that_contract_is_accepted(
        ledger: Ledger) -> None:
    """A store bound to C-9 before the desk added C-9: unbound until the contract's acceptance,
    in a view of the past too (it used today's contracts: the re-review of session 13)."""
    from datetime import timedelta

    ledger.report([_obs(binding=Binding(contract_id="C-9"))], at=T0)
    assert [e.event.contract_id for e in ledger.unbound_observations()] == ["C-9"]
    ledger.append(accepted("C-9", at=T0 + timedelta(days=10)))
    assert ledger.unbound_observations() == []
    before = ledger.unbound_observations(at=T0 + timedelta(days=5))
    assert [e.event.contract_id for e in before] == ["C-9"]


def test_intake_match_by_san_attributes_to_the_contract_whose_bound_cert_shares_a_san(
        ledger: Ledger) -> None:
    ledger.append(accepted("c1"))
    ledger.append(bound("c1", cert=facts(tag="c1", sans=("shop.example.jp", "example.jp"))))
    ledger.append(accepted("c2"))
    ledger.append(bound("c2", cert=facts(tag="c2", sans=("mail.example.jp",))))
    receipt = ledger.report(
        [_obs("renewed", sans=("EXAMPLE.jp",), binding=Binding(match_by_san=True)),
         _obs("other", location="/x.pem", sans=("nobody.example.jp",),
              binding=Binding(match_by_san=True))],
        at=T0 + timedelta(days=1))
    assert receipt.contracts == ("c1", None)


def test_intake_match_by_san_with_two_candidate_contracts_stays_unbound(ledger: Ledger) -> None:
    ledger.append(accepted("c1"))
    ledger.append(bound("c1", cert=facts(tag="c1", sans=("a.example.jp",))))
    ledger.append(accepted("c2"))
    ledger.append(bound("c2", cert=facts(tag="c2", sans=("b.example.jp",))))
    receipt = ledger.report(
        [_obs("both", sans=("a.example.jp", "b.example.jp"), binding=Binding(match_by_san=True))],
        at=T0)
    assert receipt.contracts == (None,)
    assert len(ledger.unbound_observations()) == 1


def test_intake_match_by_san_off_does_not_attribute(ledger: Ledger) -> None:
    ledger.append(accepted("c1"))
    ledger.append(bound("c1", cert=facts(tag="c1", sans=("a.example.jp",))))
    receipt = ledger.report([_obs("x", sans=("a.example.jp",))], at=T0)
    assert receipt.contracts == (None,)


# ---------------------------------------------------------------- --at in the past


def test_state_at_a_past_instant_ignores_later_events(ledger: Ledger) -> None:
    ledger.append(accepted())
    ledger.append(bound(at=T0 + timedelta(days=1)))
    ledger.append(NoticeSent(contract_id="c1", at_utc=T0 + timedelta(days=200)))
    past = ledger.state("c1", at=T0 + timedelta(days=100))
    now = ledger.state("c1", at=T0 + timedelta(days=201))
    assert past.notice_sent is None
    assert past.certificate is not None
    assert now.notice_sent is not None
    assert [e.event.KIND for e in ledger.journal("c1", at=T0 + timedelta(hours=1))] == [
        "application-accepted"]


def test_state_before_the_contract_existed_is_unknown(ledger: Ledger) -> None:
    ledger.append(accepted())
    with pytest.raises(UnknownContractError):
        ledger.state("c1", at=T0 - timedelta(seconds=1))
    assert ledger.state("c1", at=T0).contract_id == "c1"


def test_states_sweep_equals_state_per_contract(ledger: Ledger) -> None:
    for n in range(5):
        ledger.append(accepted(f"c{n}"))
        ledger.append(bound(f"c{n}", cert=facts(tag=str(n))))
    ledger.report([_obs("unbound")], at=T0)
    at = T0 + timedelta(days=10)
    swept = list(ledger.states(at=at))
    assert [s.contract_id for s in swept] == ledger.contract_ids()
    assert swept == [ledger.state(cid, at=at) for cid in ledger.contract_ids()]


def test_ledger_file_mode_not_loosened_by_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        path = tmp_path / "d" / "l.sqlite3"
        Ledger.open(path).close()
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


# ---------------------------------------------------------------- a fleet agent's batch


def _refuse_batch_markers_from(location: str, sequence: int) -> None:
    """Make writing the marker of batch ``sequence`` and later fail, as a fault would."""
    if location.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(location, autocommit=True) as conn:
            conn.execute(f"ALTER TABLE fleet_batches ADD CONSTRAINT fault CHECK (seq < {sequence})")
        return
    conn = sqlite3.connect(location)
    with conn:  # a trigger calling a function that does not exist fails when it fires
        conn.execute(f"CREATE TRIGGER fault BEFORE INSERT ON fleet_batches "
                     f"WHEN NEW.seq >= {sequence} BEGIN SELECT no_such_function(); END")
    conn.close()


def test_a_fleet_batch_and_its_marker_are_one_transaction(ledger_location: str) -> None:
    from policy.fleet_registry import FleetRegistry

    seen = [_obs(str(i), location=f"/c/{i}.pem") for i in range(3)]
    with Ledger.open(ledger_location) as ledger:
        FleetRegistry.open(ledger_location).close()
        first = ledger.record_batch(host="web1", outbox="o", sequence=1, observations=seen,
                                    gone=[], at=T0, now=T0)
        again = ledger.record_batch(host="web1", outbox="o", sequence=1, observations=seen,
                                    gone=[], at=T0, now=T0)
        gone = ledger.record_batch(host="web1", outbox="o", sequence=2, observations=[],
                                   gone=[("/c/0.pem", T0)], at=T0, now=T0)
        assert [(r.recorded, r.replay) for r in (first, again, gone)] == [
            (3, False), (0, True), (1, False)]
        assert ledger.count() == 4
        # A batch whose marker cannot be written records nothing at all: no event, no
        # sighting, and the places it found empty are still occupied.
        _refuse_batch_markers_from(ledger_location, 3)
        with pytest.raises(LedgerError):
            ledger.record_batch(host="web1", outbox="o", sequence=3,
                                observations=[_obs("late", location="/c/late.pem")],
                                gone=[("/c/1.pem", T0)], at=T0, now=T0)
        assert ledger.count() == 4
        assert [loc for loc, _, _ in ledger.open_sightings("web1")] == ["/c/1.pem", "/c/2.pem"]
        # The ledger is still usable afterwards.
        ledger.report([_obs("after", location="/c/after.pem")], at=T0)
        assert ledger.count() == 5


def test_verify_is_not_upset_by_an_observation_bound_to_an_id_no_contract_has(
        ledger: Ledger) -> None:
    """`policy verify` exited 18 ("events written without the projection") after one such
    observation, and readers folded the whole journal until --repair (the re-review of
    session 13)."""
    ledger.append(accepted("c1"))
    ledger.report([_obs(binding=Binding(contract_id="C-1O01"))], at=T0)
    mismatches, checked, _foreign = ledger.verify_projection(at=T0)
    assert mismatches == []
    assert checked == 1
    assert ledger.projection_answers(T0)
