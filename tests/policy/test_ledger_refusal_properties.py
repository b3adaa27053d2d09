"""Properties of the ledger's refusals over random event sequences: whatever a desk enters, in
whatever order, a certificate is renewed (and billed) at most once, a refusal writes nothing,
and a category III certificate within 90 days is never renewed."""

from __future__ import annotations

import tempfile
from datetime import date, timedelta
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policy.category import Category
from policy.errors import ContractStateError
from policy.events import (
    AnswerReceived,
    CertificateBound,
    Event,
    NoticeSent,
    RenewalMade,
)
from policy.ledger import Ledger
from policy.rules.art6 import Answer
from policy.tiers import Tier
from policy.tokyo import tokyo_midnight_utc
from tests.policy.ledger_fixtures import accepted, facts, utc

NOW = utc(2028, 1, 1)
START = date(2026, 2, 1)
CERTS = [facts(tag=f"c{i}", not_before=tokyo_midnight_utc(START + timedelta(days=60 * i)),
               lifetime=timedelta(days=days))
         for i, days in enumerate((90, 300, 91, 200))]

step = st.tuples(
    st.sampled_from(["bind", "notify", "renew", "renew-default", "answer-renew",
                     "answer-dont"]),
    st.integers(min_value=0, max_value=600),
    st.integers(min_value=0, max_value=len(CERTS) - 1),
)


def _event(kind: str, day: int, cert: int) -> Event:
    at = tokyo_midnight_utc(START + timedelta(days=day)) + timedelta(hours=12)
    match kind:
        case "bind":
            return CertificateBound(contract_id="c1", at_utc=at, facts=CERTS[cert])
        case "notify":
            return NoticeSent(contract_id="c1", at_utc=at)
        case "renew" | "renew-default":
            return RenewalMade(contract_id="c1", at_utc=at, by_default=kind == "renew-default")
        case _:
            return AnswerReceived(contract_id="c1", at_utc=at, answer=(
                Answer.RENEW if kind == "answer-renew" else Answer.DONT_RENEW))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(category=st.sampled_from([Category.I, Category.III]),
       steps=st.lists(step, min_size=1, max_size=14))
def test_whatever_is_entered_one_certificate_is_renewed_at_most_once(
        category: Category, steps: list[tuple[str, int, int]]) -> None:
    with tempfile.TemporaryDirectory() as tmp, \
            Ledger.open(Path(tmp) / "l.sqlite3") as ledger:
        item = "byo" if category is Category.III else "globalsign-ov"
        ledger.append(accepted(at=tokyo_midnight_utc(START) - timedelta(days=1), item=item,
                               category=category, tier=Tier.ONE_YEAR), now=NOW)
        for kind, day, cert in steps:
            before = ledger.count()
            try:
                ledger.append(_event(kind, day, cert), now=NOW)
            except ContractStateError:
                assert ledger.count() == before  # a refusal writes nothing
            else:
                assert ledger.count() == before + 1
        state = ledger.state("c1", at=NOW)
        renewed = [r.certificate_sha256 for r in state.renewals]
        assert len(renewed) == len(set(renewed))  # one renewal, one fee
        if category is Category.III:
            assert not any(r.by_default for r in state.renewals)
            assert CERTS[0].sha256 not in renewed  # 90 days: Art.6(3) proviso
        for renewal in state.renewals:
            assert renewal.certificate_sha256 is not None
