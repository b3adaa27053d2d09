"""classify_certificate's memo of certificates of one shape (issue 12): a certificate served
from the memo is classified exactly as one computed afresh, at every day boundary the rules
count, and the memo is used where a store's certificates share a shape."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from policy import classification
from policy.catalogue import load_catalogue
from policy.category import Category
from policy.classification import PolicySettings, classify_certificate
from policy.facts import CertificateFacts
from policy.forecast import MaxValiditySchedule, ScheduleStep, embedded_schedule
from policy.intake import Binding
from policy.periods import PeriodRule
from policy.tiers import Tier
from policy.timeparse import format_instant
from tests.policy.factsutil import ONE_SECOND, facts, utc

CATALOGUE = load_catalogue()
DAY = timedelta(days=1)
NINE_HOURS = timedelta(hours=9)
OV, DV, EV = "2.23.140.1.2.2", "2.23.140.1.2.1", "2.23.140.1.1"

BINDINGS = (
    Binding(),
    Binding(category=Category.III),
    Binding(category=Category.III, tier=Tier.SIX_MONTHS, contract_id="C-6M"),
    Binding(category=Category.III, tier=Tier.ONE_YEAR),
    Binding(item="byo", tier=Tier.TWO_YEARS, contract_id="C-2Y"),
    Binding(item="globalsign-ov", tier=Tier.SIX_MONTHS),
    Binding(item="secure-server-id", tier=Tier.ONE_YEAR, contract_id="C-1"),
    Binding(category=Category.I),
    # no tier: exceeds-item-periods and its NON_COMPLIANT; item-mismatch (session 17)
    Binding(item="globalsign-ov", contract_id="C-OV"),
)
SETTINGS = (PolicySettings(), PolicySettings(notice_lead_days=30, answer_deadline_days=10))
ISSUERS = (
    (None, None, ()),
    ("Let's Encrypt", "R11", ()),
    ("GlobalSign nv-sa", "GlobalSign GCC R3 OV TLS CA 2024", (OV,)),
    ("GlobalSign nv-sa", "GlobalSign GCC R3 DV TLS CA 2024", (DV,)),
    ("DigiCert Inc", "DigiCert Global G2 TLS RSA SHA256 2020 CA1", (OV,)),
    ("DigiCert Inc", "DigiCert EV RSA CA G2", (EV,)),
    ("Cybertrust Japan Co., Ltd.", "Cybertrust Japan SureServer CA G4", (OV,)),
)
# lengths at the tiers' and the proviso's edges, to the second
LENGTHS = tuple(
    timedelta(days=days) + extra
    for days in (1, 30, 89, 90, 91, 181, 182, 183, 184, 185, 199, 365, 366, 367, 397, 398, 730,
                 731, 732, 1095, 1096, 1097, 3650)
    for extra in (-ONE_SECOND, timedelta(0), ONE_SECOND, timedelta(hours=12))
)
# one step that starts in the middle of a Tokyo and of a UTC day, for the BR finding
MIDDAY_STEPS = MaxValiditySchedule(
    ballot="test", passed=date(2026, 1, 1), day_seconds=86_400,
    steps=(ScheduleStep(start_utc=None, max_days=398),
           ScheduleStep(start_utc=utc(2026, 3, 15, 6), max_days=100)),
    public_organisations=("Let's Encrypt",))
SCHEDULES = (embedded_schedule(), MIDDAY_STEPS)
CHANGES = ("longer", "shorter", "ca", "sans", "wildcard", "org", "cn", "oids", "binding", "at",
           "observed", "settings", "schedule")
"""What may differ between the certificate that fills the memo and the one served: the
second's length, CA flag, SANs or issuer facts, or the arguments the first was classified
with."""
# Tokyo times of day: midnight, a second either side, a UTC midnight, and any
TIMES = st.one_of(st.sampled_from([0, 1, 86_399, 9 * 3600, 9 * 3600 - 1, 15 * 3600]),
                  st.integers(0, 86_399))


def _tokyo_day_start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC) - NINE_HOURS


def _cert(day: date, seconds: int, length: timedelta, issuer: tuple[Any, ...], *,
          is_ca: bool, sans: tuple[str, ...]) -> CertificateFacts:
    org, cn, oids = issuer
    not_before = _tokyo_day_start(day) + timedelta(seconds=seconds)
    return facts(not_before, lifetime=length, issuer_org=org, issuer_cn=cn,
                 policy_oids=oids, is_ca=is_ca, sans=sans)


def _fresh(cert: CertificateFacts, **kw: Any) -> dict[str, Any]:
    classification._SHAPES.clear()
    out = classify_certificate(cert, CATALOGUE, **kw).to_json()
    classification._SHAPES.clear()
    return out


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(
    day=st.one_of(st.dates(min_value=date(1953, 1, 2), max_value=date(2200, 12, 31)),
                  st.dates(min_value=date(2026, 3, 13), max_value=date(2026, 3, 17))),
    schedule=st.sampled_from(SCHEDULES),
    change=st.sampled_from(["none"] * 8 + list(CHANGES)),
    first_time=TIMES, second_time=TIMES,
    length=st.sampled_from(LENGTHS),
    issuer=st.sampled_from(ISSUERS),
    binding=st.sampled_from(BINDINGS),
    policy=st.sampled_from(SETTINGS),
    is_ca=st.booleans(),
    sans=st.sampled_from([("www.example.jp",), ("*.example.jp",), ()]),
    at_fraction=st.one_of(st.sampled_from([0.0, 1.0, -0.5, 1.5]), st.floats(-1.0, 2.0)),
    first_observed=st.sampled_from([None, "at", "before"]),
)
def test_a_certificate_from_the_memo_is_classified_as_one_computed_afresh(
        day: date, schedule: MaxValiditySchedule, change: str, first_time: int,
        second_time: int, length: timedelta, issuer: tuple[Any, ...], binding: Binding,
        policy: PolicySettings, is_ca: bool, sans: tuple[str, ...], at_fraction: float,
        first_observed: str | None) -> None:
    """Two certificates issued on one Tokyo day at any times of that day, most alike, some
    differing in one thing the rules read (:data:`CHANGES`), the first classified with the
    same arguments or other ones: whenever the second is served from the memo the first
    filled, every field of its classification (findings and actions in both languages) is
    what it gets alone."""
    first = _cert(day, first_time, length, issuer, is_ca=is_ca, sans=sans)
    org, cn, oids = issuer
    second = _cert(
        day, second_time,
        length + {"longer": ONE_SECOND, "shorter": -ONE_SECOND}.get(change, timedelta(0)),
        (org if change != "org" else (org or "") + " Ltd",
         cn if change != "cn" else (cn or "") + " 2",
         oids if change != "oids" else ((DV,) if oids != (DV,) else (OV,))),
        is_ca=is_ca != (change == "ca"),
        sans={"sans": () if sans else ("www.example.jp",),
              "wildcard": ("www.example.jp",) if sans == ("*.example.jp",)
              else ("*.example.jp",)}.get(change, sans))
    lo, hi = second.not_before_utc, second.not_after_utc
    at = lo + (hi - lo) * at_fraction  # before, within or after its validity
    at = (at.replace(microsecond=0) if at_fraction != 1.0 else hi) + timedelta(
        seconds=at_fraction > 1.0)
    observed = {None: None, "at": (at + NINE_HOURS).date(),
                "before": (lo + NINE_HOURS).date()}[first_observed]
    kw: dict[str, Any] = dict(binding=binding, at=at, settings=policy, schedule=schedule,
                              first_observed=observed)
    before = dict(kw)  # what the first is classified with
    if change == "binding":
        before["binding"] = BINDINGS[(BINDINGS.index(binding) + 1) % len(BINDINGS)]
    elif change == "at":
        before["at"] = max(at - DAY, first.not_before_utc)
    elif change == "observed":
        before["first_observed"] = (at + NINE_HOURS).date() if observed is None else None
    elif change == "settings":
        before["settings"] = SETTINGS[(SETTINGS.index(policy) + 1) % len(SETTINGS)]
    elif change == "schedule":
        before["schedule"] = SCHEDULES[(SCHEDULES.index(schedule) + 1) % len(SCHEDULES)]
    shape = [classification._shape_key(cert, CATALOGUE, args["binding"], args["at"], None,
                                       args["settings"], args["schedule"],
                                       args["first_observed"])
             for cert, args in ((first, before), (second, kw))]
    assume(shape[0] is not None and shape[1] is not None)
    event("served from the memo" if shape[0] == shape[1] else "computed")
    classification._SHAPES.clear()
    classify_certificate(first, CATALOGUE, **before)
    served = classify_certificate(second, CATALOGUE, **kw).to_json()
    for action in served["actions"]:  # the decisions of session 17 are among those compared
        if action["action"] in ("notice-missed", "item-mismatch") or (
                action["action"] == "non-compliant" and action["computed"]["contracted"] is None):
            event(f"{action['action']} ({'memo' if shape[0] == shape[1] else 'fresh'})")
    assert served == _fresh(second, **kw)


def test_a_br_step_that_starts_mid_day_separates_the_certificates_either_side() -> None:
    """A schedule step at 15:00 JST: two certificates issued on that Tokyo (and UTC) day, at
    10:00 and 16:00 JST, are of different shapes; only the later exceeds its BR maximum."""
    classification._SHAPES.clear()
    kw: dict[str, Any] = dict(binding=Binding(), at=utc(2026, 4, 1), schedule=MIDDAY_STEPS)
    early, late = (facts(utc(2026, 3, 15, hour), lifetime=200 * DAY,
                         issuer_org="Let's Encrypt", issuer_cn="R11") for hour in (1, 7))
    said = [[f.code for f in classify_certificate(c, CATALOGUE, **kw).findings]
            for c in (early, late)]
    assert "public-max-validity-exceeded" not in said[0]
    assert "public-max-validity-exceeded" in said[1]


def test_certificates_of_one_shape_are_classified_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A store's certificates issued on one day, one length, by one issuer: the rules run for
    the first only; each of the others is told with its own SHA-256 and instants."""
    classification._SHAPES.clear()
    computed: list[str] = []
    real = classification._classify

    def counting(cert: CertificateFacts, *args: Any, **kw: Any) -> Any:
        computed.append(cert.sha256)
        return real(cert, *args, **kw)

    monkeypatch.setattr(classification, "_classify", counting)
    at = utc(2026, 3, 1)
    certs = [facts(utc(2026, 1, 10, 1) + timedelta(minutes=n), lifetime=90 * DAY,
                   issuer_org="Let's Encrypt", issuer_cn="R11") for n in range(50)]
    unbound = Binding()
    results = [classify_certificate(c, CATALOGUE, binding=unbound, at=at) for c in certs]
    assert computed == [certs[0].sha256]
    for cert, result in zip(certs, results, strict=True):
        assert result.facts is cert
        assert result.actions
        assert all(a.facts["sha256"] == cert.sha256 for a in result.actions)
        assert {a.facts["not_before"] for a in result.actions} == {
            cert.not_before_utc.isoformat().replace("+00:00", "Z")}


@pytest.mark.parametrize("case", ["previous", "elapsed", "inverted"])
def test_what_is_counted_in_seconds_is_never_served_from_the_memo(
        case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A carried-over allowance is counted in seconds, ``elapsed`` counts instants, and a
    certificate that ends before it starts is told with both: each is computed."""
    classification._SHAPES.clear()
    calls: list[int] = []
    real = classification._classify
    monkeypatch.setattr(classification, "_classify",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    start = utc(2026, 1, 10, 1)
    kw: dict[str, Any] = dict(binding=Binding(), at=utc(2026, 2, 1))
    if case == "elapsed":
        kw["settings"] = PolicySettings(period_rule=PeriodRule.ELAPSED)
    if case == "previous":
        kw["previous"] = facts(utc(2025, 11, 1), lifetime=90 * DAY)
    certs = [facts(start + timedelta(minutes=n),
                   **({"not_after": start - DAY} if case == "inverted"
                      else {"lifetime": 90 * DAY})) for n in range(3)]
    for cert in certs:
        classify_certificate(cert, CATALOGUE, **kw)
    assert len(calls) == 3


@pytest.mark.parametrize(("case", "at"), [("expired", utc(2026, 6, 1)),
                                          ("not-yet-valid", utc(2026, 1, 1))])
def test_an_expired_or_not_yet_valid_certificate_names_its_own_instant(
        case: str, at: datetime, monkeypatch: pytest.MonkeyPatch) -> None:
    """Certificates of one shape that expired (or are not yet valid) at ``at``: one is
    computed, and each of the others says its own notAfter (notBefore) in that finding."""
    classification._SHAPES.clear()
    calls: list[int] = []
    real = classification._classify
    monkeypatch.setattr(classification, "_classify",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    unbound = Binding()
    certs = [facts(utc(2026, 1, 10, 1) + timedelta(minutes=n), lifetime=90 * DAY)
             for n in range(3)]
    said = [[f for f in classify_certificate(c, CATALOGUE, binding=unbound, at=at).findings
             if f.code == case] for c in certs]
    assert len(calls) == 1
    expected = []
    for cert in certs:
        if case == "expired":
            ago = ((at + NINE_HOURS).date() - (cert.not_after_utc + NINE_HOURS).date()).days
            expected.append([f"expired on {format_instant(cert.not_after_utc)} ({ago} day(s) "
                             "ago, Asia/Tokyo)"])
        else:
            expected.append([f"not valid before {format_instant(cert.not_before_utc)}"])
    assert [[f.message for f in found] for found in said] == expected
