"""The journal's event vocabulary survives the trip to JSON and back, exactly."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from policy.category import Category
from policy.events import (
    EVENT_KINDS,
    AnswerReceived,
    ApplicationAccepted,
    CancellationArrived,
    CertificateBound,
    CertificateGone,
    CertificateObserved,
    ContractChanged,
    Event,
    NoticeSent,
    RenewalMade,
    Terminated,
    event_from_json,
    event_to_json,
    instant_to_text,
    text_to_instant,
)
from policy.facts import CertificateFacts
from policy.rules.art6 import Answer
from policy.tiers import Tier
from tests.policy.ledger_fixtures import T0, facts, utc

RICH_FACTS = CertificateFacts(
    sha256="ab" * 32, not_before_utc=T0, not_after_utc=utc(9999, 12, 31, 23, 59, 59),
    subject="CN=www.example.jp", subject_cn="www.example.jp", issuer="CN=CA,O=GlobalSign nv-sa",
    issuer_org="GlobalSign nv-sa", issuer_cn="GlobalSign GCC R3 OV TLS CA 2024", serial="0a1b",
    sans=("www.example.jp", "*.example.jp", "192.0.2.1"), policy_oids=("2.23.140.1.2.2",),
    is_ca=False, self_signed=False, key_type="ec", key_size=256,
    signature_algorithm="ecdsa-with-SHA256", extra=(("note", "日本語"),))

EVERY_EVENT: list[Event] = [
    ApplicationAccepted(contract_id="c1", at_utc=T0, item="secure-server-id-cloud",
                        category=Category.II, tier=Tier.ONE_YEAR, organisation_country="JP",
                        migrating_from_outside=False, designated_service="IIJ GIO"),
    ApplicationAccepted(contract_id="c2", at_utc=T0, item="byo", category=Category.III,
                        tier=None),
    CertificateBound(contract_id="c1", at_utc=T0, facts=RICH_FACTS, source="/etc/ssl/a.pem"),
    NoticeSent(contract_id="c1", at_utc=T0, certificate_sha256="ab" * 32),
    AnswerReceived(contract_id="c1", at_utc=T0, answer=Answer.DONT_RENEW),
    CancellationArrived(contract_id="c1", at_utc=T0, arrived=date(2026, 1, 14),
                        requested=date(2026, 3, 31)),
    CancellationArrived(contract_id="c1", at_utc=T0, arrived=date(2026, 1, 14)),
    ContractChanged(contract_id="c1", at_utc=T0, service="IIJ GIO P2"),
    CertificateObserved(contract_id=None, at_utc=T0, facts=facts(), host="web1",
                        location="/etc/ssl/a.pem", index=2, key_matches=True,
                        binding_category=Category.III, binding_item="byo",
                        binding_tier=Tier.SIX_MONTHS, match_by_san=True),
    CertificateGone(contract_id="c1", at_utc=T0, host="web1", location="/etc/ssl/a.pem",
                    sha256s=("ab" * 32,)),
    RenewalMade(contract_id="c1", at_utc=T0, by_default=True, designated=date(2026, 2, 1),
                certificate_sha256="ab" * 32),
    Terminated(contract_id="c1", at_utc=T0, effective=date(2026, 4, 1), clause="Art.8",
               reason="product ended"),
]


def test_every_event_kind_is_covered_by_the_round_trip_list() -> None:
    assert {e.KIND for e in EVERY_EVENT} == set(EVENT_KINDS)


@pytest.mark.parametrize("event", EVERY_EVENT, ids=lambda e: e.KIND)
def test_event_json_round_trip_is_exact(event: Event) -> None:
    text = json.dumps(event_to_json(event), ensure_ascii=False)
    assert event_from_json(json.loads(text)) == event


def test_unknown_event_kind_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown event kind 'teleported'"):
        event_from_json({"kind": "teleported", "contract": "c1", "at": instant_to_text(T0)})


def test_malformed_event_names_its_kind() -> None:
    with pytest.raises(ValueError, match="malformed answer-received event"):
        event_from_json({"kind": "answer-received", "contract": "c1",
                         "at": instant_to_text(T0), "answer": "maybe"})


def test_events_refuse_naive_instants() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        NoticeSent(contract_id="c1", at_utc=T0.replace(tzinfo=None))


_INSTANTS = st.datetimes(min_value=datetime(1970, 1, 1),  # noqa: DTZ001 - hypothesis bounds
                        max_value=datetime(9999, 12, 31, 23, 59, 59),  # noqa: DTZ001
                        timezones=st.just(UTC))


@given(_INSTANTS, _INSTANTS)
def test_instant_text_sorts_like_time_and_round_trips(a: datetime, b: datetime) -> None:
    assert text_to_instant(instant_to_text(a)) == a
    assert (instant_to_text(a) < instant_to_text(b)) == (a < b)
    assert len(instant_to_text(a)) == len(instant_to_text(b))


@pytest.mark.parametrize("observed", [
    *(e for e in EVERY_EVENT if isinstance(e, CertificateObserved)),
    CertificateObserved(contract_id="c1", at_utc=utc(2026, 2, 1, 12, 0, 0), facts=RICH_FACTS,
                        host="web2", location="/srv/\udcff.pem", index=0, key_matches=None),
    CertificateObserved(contract_id=None, at_utc=T0, facts=facts(), host="web1",
                        location="/etc/ssl/b.pem", index=1, key_matches=False,
                        binding_category=Category.II, binding_tier=Tier.ONE_YEAR),
])
def test_an_observation_payload_keeps_the_journal_s_keys_in_order_and_round_trips(
        observed: CertificateObserved) -> None:
    """An observation's payload (intake's kind, written as one literal) keeps the journal's
    keys in the order journals written before it have them, and reads back as the event."""
    written = event_to_json(observed)
    assert list(written) == ["kind", "contract", "at", "facts", "host", "location", "index",
                             "key_matches", "binding"]
    assert list(written["binding"]) == ["category", "item", "tier", "match_by_san"]
    assert event_from_json(json.loads(json.dumps(written))) == observed
