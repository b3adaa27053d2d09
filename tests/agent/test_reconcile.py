"""The comparison of the ledger's open sightings with what the daemon read (agent/reconcile.py):
each case on both sides of its boundary."""

from __future__ import annotations

from agent.reconcile import plan_reconciliation


def _plan(sightings: list[tuple[str, int, str]], current: dict[str, dict[int, str]], *,
          pending: frozenset[str] = frozenset(), rebind: frozenset[str] = frozenset(),
          ) -> tuple[tuple[str, ...], ...]:
    plan = plan_reconciliation(sightings, current=current,
                               in_scope=lambda loc: loc.startswith("/store/"),
                               pending=lambda loc: loc in pending,
                               rebind=lambda loc: loc in rebind)
    return plan.gone, plan.refresh, plan.report, plan.rebind


def test_what_agrees_needs_nothing() -> None:
    assert _plan([("/store/a", 0, "A")], {"/store/a": {0: "A"}}) == ((), (), (), ())


def test_gone_when_nothing_is_there_now_or_it_holds_no_certificate() -> None:
    assert _plan([("/store/a", 0, "A")], {})[0] == ("/store/a",)
    assert _plan([("/store/a", 0, "A")], {"/store/a": {}})[0] == ("/store/a",)


def test_shrunk_is_refreshed_grown_or_changed_is_reported() -> None:
    two = [("/store/b", 0, "B0"), ("/store/b", 1, "B1")]
    assert _plan(two, {"/store/b": {0: "B0"}})[1] == ("/store/b",)
    assert _plan(two[:1], {"/store/b": {0: "B0", 1: "B1"}})[2] == ("/store/b",)
    assert _plan(two[:1], {"/store/b": {0: "other"}})[2] == ("/store/b",)


def test_a_ledger_that_does_not_show_a_certificate_gets_it_reported() -> None:
    assert _plan([], {"/store/c": {0: "C"}})[2] == ("/store/c",)


def test_other_stores_and_pending_places_are_left_alone() -> None:
    assert _plan([("/elsewhere/x", 0, "X")], {}) == ((), (), (), ())
    assert _plan([("/store/a", 0, "A")], {}, pending=frozenset({"/store/a"})) == ((), (), (), ())
    assert _plan([], {"/store/c": {0: "C"}}, pending=frozenset({"/store/c"})) == ((), (), (), ())


def test_rebind_reports_again_only_what_is_not_already_decided() -> None:
    assert _plan([("/store/a", 0, "A")], {"/store/a": {0: "A"}},
                 rebind=frozenset({"/store/a"}))[3] == ("/store/a",)
    assert _plan([("/store/a", 0, "A")], {"/store/a": {0: "new"}},
                 rebind=frozenset({"/store/a"})) == ((), (), ("/store/a",), ())
    assert _plan([("/store/a", 0, "A")], {}, rebind=frozenset({"/store/a"}))[3] == ()
