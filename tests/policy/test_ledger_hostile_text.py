"""A certificate's text is the attacker's: a NUL in a name, a SAN of kilobytes. Before, such
facts reached PostgreSQL, which refused the whole batch (text holds no NUL; an index entry a
few kilobytes), and the daemon retried that batch for ever while SQLite stored it: one crafted
certificate stopped a host's reporting. Now the ledger, on both backends, refuses such an
observation alone and records the rest; the reader's storable form is recorded everywhere."""

from __future__ import annotations

from dataclasses import replace

import pytest

from policy.errors import ContractStateError
from policy.facts import storable
from policy.intake import Binding, Observation
from policy.ledger import Ledger
from tests.policy.ledger_fixtures import T0, accepted, bound, facts

HOSTILE = [
    pytest.param({"issuer_org": "Evil\x00Org"}, id="nul-in-issuer-org"),
    pytest.param({"sans": ("a\x00b.example.jp",)}, id="nul-in-san"),
    pytest.param({"sans": ("x" * 8192 + ".example.jp",)}, id="8k-san"),
    pytest.param({"subject_cn": "a\udc80b"}, id="lone-surrogate"),
]


def _obs(tag: str, location: str, **changes: object) -> Observation:
    return Observation(facts=replace(facts(tag=tag), **changes), host="web1",  # type: ignore[arg-type]
                       location=location, index=0, observed_at_utc=T0,
                       binding=Binding(match_by_san=True))


@pytest.mark.parametrize("hostile", HOSTILE)
def test_a_hostile_observation_is_refused_alone_and_its_batch_recorded(
        ledger: Ledger, hostile: dict[str, object]) -> None:
    good = [_obs("a", "/etc/ssl/a.pem"), _obs("c", "/etc/ssl/c.pem")]
    receipt = ledger.report([good[0], _obs("b", "/etc/ssl/b.pem", **hostile), good[1]], at=T0)
    assert (receipt.recorded, receipt.refused) == (2, 1)
    assert sorted(ledger.open_sightings("web1")) == sorted(
        (o.location, 0, o.facts.sha256) for o in good)


@pytest.mark.parametrize("hostile", HOSTILE)
def test_the_storable_form_is_recorded_and_matched_by_san_on_both_backends(
        ledger: Ledger, hostile: dict[str, object]) -> None:
    raw = replace(facts(tag="b"), **hostile)  # type: ignore[arg-type]
    cert, altered = storable(raw)
    assert altered  # the reader records this form, with a certificate-text-altered finding
    ledger.append(accepted("c1"))
    ledger.append(bound("c1", cert=cert))  # contract bind: its SANs become index keys
    receipt = ledger.report([Observation(
        facts=cert, host="web1", location="/etc/ssl/b.pem", index=0, observed_at_utc=T0,
        binding=Binding(match_by_san=True))], at=T0)
    assert (receipt.recorded, receipt.refused) == (1, 0)
    assert receipt.contracts == ("c1",)  # the same SANs, escaped alike: still its contract
    [seen] = [e.event for e in ledger.journal("c1") if e.event.KIND == "certificate-observed"]
    assert seen.facts == cert  # type: ignore[attr-defined]


@pytest.mark.parametrize("hostile", HOSTILE)
def test_binding_a_hostile_certificate_as_given_is_refused_with_the_fields(
        ledger: Ledger, hostile: dict[str, object]) -> None:
    ledger.append(accepted("c1"))
    with pytest.raises(ContractStateError, match="not recorded") as info:
        ledger.append(bound("c1", cert=replace(facts(tag="b"), **hostile)))  # type: ignore[arg-type]
    assert next(iter(hostile)) in str(info.value)
    assert "\x00" not in str(info.value)
    assert "Evil" not in str(info.value)
    assert [e.event.KIND for e in ledger.journal("c1")] == ["application-accepted"]
