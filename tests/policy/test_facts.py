"""CertificateFacts refuses what would make a rule silently wrong: a bad identity, naive times."""

from __future__ import annotations

import hashlib
from datetime import datetime

import pytest

from policy.facts import FACT_LIST_LIMIT, FACT_TEXT_LIMIT, SAN_LIMIT, CertificateFacts, storable
from tests.policy.factsutil import utc

GOOD = hashlib.sha256(b"x").hexdigest()


def test_lowercase_64_hex_digit_sha256_is_accepted() -> None:
    facts = CertificateFacts(sha256=GOOD, not_before_utc=utc(2026, 1, 1),
                             not_after_utc=utc(2026, 4, 1))
    assert facts.sha256 == GOOD


@pytest.mark.parametrize("bad", [GOOD.upper(), GOOD[:-1], GOOD + "0", GOOD + "\n",
                                 GOOD[:-1] + "g", "", "sha256:" + GOOD])
def test_any_other_sha256_is_refused_with_the_value(bad: str) -> None:
    with pytest.raises(ValueError, match="64 lowercase hex digits") as info:
        CertificateFacts(sha256=bad, not_before_utc=utc(2026, 1, 1),
                         not_after_utc=utc(2026, 4, 1))
    assert repr(bad) in str(info.value)


def test_naive_instants_are_refused_naming_the_field() -> None:
    with pytest.raises(ValueError, match="not_after_utc must be timezone-aware"):
        CertificateFacts(sha256=GOOD, not_before_utc=utc(2026, 1, 1),
                         not_after_utc=datetime(2026, 4, 1))  # noqa: DTZ001


# ---------------------------------------------------------------- storable (hostile text)
def _with(**fields: object) -> CertificateFacts:
    return CertificateFacts(sha256=GOOD, not_before_utc=utc(2026, 1, 1),
                            not_after_utc=utc(2026, 4, 1), **fields)  # type: ignore[arg-type]


def test_ordinary_facts_are_storable_as_they_are() -> None:
    facts = _with(subject="CN=www.example.jp", issuer="CN=R3,O=Let's Encrypt,C=US",
                  issuer_org="Let's Encrypt", issuer_cn="R3", sans=("www.example.jp",),
                  subject_cn="証明書.example.jp", policy_oids=("2.23.140.1.2.1",))
    assert storable(facts) == (facts, ())
    assert storable(facts)[0] is facts


@pytest.mark.parametrize(("length", "kept"), [(SAN_LIMIT, True), (SAN_LIMIT + 1, False)])
def test_a_san_is_kept_up_to_the_longest_dns_name(length: int, kept: bool) -> None:
    san = "a" * length
    out, altered = storable(_with(sans=("ok.example.jp", san)))
    assert out.sans[0] == "ok.example.jp"
    if kept:
        assert (out.sans[1], altered) == (san, ())
    else:
        assert altered == ("sans",)
        assert len(out.sans[1]) == SAN_LIMIT
        assert out.sans[1].endswith("\u2026")


@pytest.mark.parametrize(("length", "kept"), [(FACT_TEXT_LIMIT, True),
                                              (FACT_TEXT_LIMIT + 1, False)])
def test_a_text_field_is_kept_up_to_its_limit(length: int, kept: bool) -> None:
    out, altered = storable(_with(subject="x" * length))
    assert altered == (() if kept else ("subject",))
    assert len(out.subject) == min(length, FACT_TEXT_LIMIT)


@pytest.mark.parametrize(("count", "kept"), [(FACT_LIST_LIMIT, True),
                                             (FACT_LIST_LIMIT + 1, False)])
def test_sans_are_kept_up_to_the_list_limit(count: int, kept: bool) -> None:
    sans = tuple(f"h{n}.example.jp" for n in range(count))
    out, altered = storable(_with(sans=sans))
    assert altered == (() if kept else ("sans",))
    assert out.sans == sans[:FACT_LIST_LIMIT]


def test_nul_is_escaped_as_rfc_4514_writes_it_and_surrogates_replaced() -> None:
    out, altered = storable(_with(issuer_org="Evil\x00Org", sans=("a\x00b.example.jp",),
                                  subject_cn="a\udc80b"))
    assert altered == ("subject_cn", "issuer_org", "sans")
    assert (out.issuer_org, out.sans, out.subject_cn) == (
        "Evil\\00Org", ("a\\00b.example.jp",), "a\ufffdb")
    assert storable(out) == (out, ())  # once is enough
    assert (out.sha256, out.not_after_utc) == (GOOD, utc(2026, 4, 1))
