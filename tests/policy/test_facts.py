"""CertificateFacts refuses what would make a rule silently wrong: a bad identity, naive times."""

from __future__ import annotations

import hashlib
from datetime import datetime

import pytest

from policy.facts import CertificateFacts
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
