"""The wire format: what the agent writes is exactly what the service reads back (property
test), and the reader refuses every shape it does not document."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policy.category import Category
from policy.facts import CertificateFacts
from policy.fleet_wire import (
    MAX_STRING,
    TooManyError,
    WireError,
    observation_to_wire,
    read_heartbeat,
    read_report,
    report_body,
)
from policy.intake import Binding, Observation
from policy.tiers import Tier

AT = datetime(2026, 11, 27, 3, 0, tzinfo=UTC)
text = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)),
               max_size=40)
instants = st.datetimes(min_value=datetime(2000, 1, 1),  # noqa: DTZ001 - naive bounds, UTC below
                        max_value=datetime(2100, 1, 1),  # noqa: DTZ001
                        timezones=st.just(UTC))


@st.composite
def observations(draw: st.DrawFn) -> Observation:
    facts = CertificateFacts(
        sha256=draw(st.text("0123456789abcdef", min_size=64, max_size=64)),
        not_before_utc=draw(instants), not_after_utc=draw(instants),
        subject=draw(text), subject_cn=draw(st.none() | text), issuer=draw(text),
        issuer_org=draw(st.none() | text), issuer_cn=draw(st.none() | text),
        serial=draw(st.text("0123456789abcdef", max_size=40)),
        sans=tuple(draw(st.lists(text, max_size=4))),
        policy_oids=tuple(draw(st.lists(st.sampled_from(["2.23.140.1.2.1", "1.2.3"]),
                                        max_size=2))),
        is_ca=draw(st.booleans()), self_signed=draw(st.booleans()),
        key_type=draw(st.sampled_from(["ec", "rsa", ""])),
        key_size=draw(st.none() | st.integers(0, 16384)),
        signature_algorithm=draw(text),
        extra=tuple(sorted(draw(st.lists(st.tuples(text, text), max_size=3)))))
    binding = Binding(contract_id=draw(st.none() | text),
                      category=draw(st.none() | st.sampled_from(list(Category))),
                      item=draw(st.none() | text),
                      tier=draw(st.none() | st.sampled_from(list(Tier))),
                      match_by_san=draw(st.booleans()))
    return Observation(facts=facts, host="web01", location=draw(text),
                       index=draw(st.integers(0, 1000)), observed_at_utc=draw(instants),
                       binding=binding, key_matches=draw(st.none() | st.booleans()))


@settings(max_examples=60, deadline=None)
@given(st.lists(observations(), min_size=1, max_size=5))
def test_what_the_agent_sends_the_service_reads_back_exactly(sent: list[Observation]) -> None:
    body = report_body(host="web01", outbox="o", sequence=7, at=AT,
                       observations=[observation_to_wire(o) for o in sent], gone=[])
    batch = read_report(body, max_observations=5)
    assert list(batch.observations) == sent
    assert (batch.host, batch.outbox, batch.sequence, batch.at_utc) == ("web01", "o", 7, AT)


def _body(**changes: object) -> dict[str, object]:
    obs = Observation(facts=CertificateFacts(sha256="a" * 64, not_before_utc=AT,
                                             not_after_utc=AT + timedelta(days=1)),
                      host="web01", location="/a.pem", index=0, observed_at_utc=AT)
    body = report_body(host="web01", outbox="o", sequence=1, at=AT,
                       observations=[observation_to_wire(obs)], gone=[])
    body.update(changes)
    return body


def test_bounds_on_both_sides() -> None:
    assert read_report(_body(observations=[], gone=[{"location": "/x", "at": "2026-01-01"}]),
                       max_observations=1).gone[0].location == "/x"
    with pytest.raises(TooManyError):
        read_report(_body(gone=[{"location": "/x", "at": "2026-01-01"}]), max_observations=1)
    assert read_report(_body(host="h" * 253), max_observations=5).host == "h" * 253
    with pytest.raises(WireError, match="longer than"):
        read_report(_body(host="h" * 254), max_observations=5)
    long_location = _body()
    long_location["observations"][0]["location"] = "x" * MAX_STRING  # type: ignore[index]
    read_report(long_location, max_observations=5)
    long_location["observations"][0]["location"] = "x" * (MAX_STRING + 1)  # type: ignore[index]
    with pytest.raises(WireError, match="location"):
        read_report(long_location, max_observations=5)
    with pytest.raises(WireError, match="expected an object"):
        read_report([], max_observations=5)
    with pytest.raises(WireError, match="sequence"):
        read_report(_body(sequence=True), max_observations=5)


def test_heartbeat_inventory_is_checked() -> None:
    beat = read_heartbeat({"host": "h", "at": "2026-11-27T00:00:00Z",
                           "inventory": {"certificates": 3, "by_severity": {"ok": 3}}})
    assert beat.inventory == {"certificates": 3, "by_severity": {"ok": 3}}
    for inventory in ({"certificates": -1}, {"certificates": "3"}, {"surprise": 1},
                      {"by_severity": {"ok": "many"}}, {"by_severity": [1]}):
        with pytest.raises(WireError):
            read_heartbeat({"host": "h", "at": "2026-11-27T00:00:00Z", "inventory": inventory})


# ---------------------------------------------------------------------- issue 13 review
@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=40).filter(lambda b: b"\x00" not in b))
def test_any_file_name_round_trips_as_the_agent_sends_it(name: bytes) -> None:
    import json
    import os

    location = os.fsdecode(b"/" + name)
    body = _body()
    body["observations"][0]["location"] = location  # type: ignore[index]
    wire = json.loads(json.dumps(body, ensure_ascii=True))  # what the agent sends
    read = read_report(wire, max_observations=5)
    assert os.fsencode(read.observations[0].location) == b"/" + name


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=8), st.integers(0xD800, 0xDFFF), st.text(max_size=8))
def test_a_lone_surrogate_outside_a_file_name_is_refused(before: str, code: int,
                                                         after: str) -> None:
    body = _body()
    body["observations"][0]["facts"]["subject"] = before + chr(code) + after  # type: ignore[index]
    with pytest.raises(WireError, match=r"body\.observations\[0\]\.facts\.subject"):
        read_report(body, max_observations=5)


def test_time_refusal_is_bounded_by_now_and_enrolment() -> None:
    from policy.fleet_wire import time_refusal

    skew = timedelta(minutes=5)
    batch = read_report(_body(), max_observations=5)  # everything at AT
    assert time_refusal(batch, now=AT, skew=skew, enrolled=AT) is None
    assert time_refusal(batch, now=AT - timedelta(minutes=4), skew=skew, enrolled=None) is None
    late = time_refusal(batch, now=AT - timedelta(minutes=6), skew=skew, enrolled=None)
    assert late is not None
    assert not late.too_early
    assert "body.at" in late.message
    early = time_refusal(batch, now=AT, skew=skew, enrolled=AT + timedelta(minutes=6))
    assert early is not None
    assert early.too_early


def test_only_the_desks_binding_for_the_innermost_store_is_kept() -> None:
    from policy.fleet_wire import UNBOUND, assigned_only

    def obs(location: str, contract: str | None) -> Observation:
        return Observation(facts=CertificateFacts(sha256="a" * 64, not_before_utc=AT,
                                                  not_after_utc=AT), host="web01",
                           location=location, index=0, observed_at_utc=AT,
                           binding=Binding(contract_id=contract))

    assigned = {"/srv/": Binding(contract_id="C-SRV"), "/srv/shop": Binding(contract_id="C-SHOP"),
                "/": Binding(contract_id="C-ROOT")}
    sent = [obs("/srv/shop/a.pem", "C-SHOP"), obs("/srv/shop/b.pem", "C-SRV"),
            obs("/srv/x.pem", "C-SRV"), obs("/etc/y.pem", "C-ROOT"), obs("/srv/z.pem", None),
            obs("/srv/shopping/c.pem", "C-SHOP")]
    kept, refused = assigned_only(sent, assigned)
    assert [o.binding.contract_id for o in kept] == ["C-SHOP", None, "C-SRV", "C-ROOT", None,
                                                     None]
    assert [(r.location, r.contract_id) for r in refused] == [
        ("/srv/shop/b.pem", "C-SRV"), ("/srv/shopping/c.pem", "C-SHOP")]
    assert assigned_only(sent[:1], {})[0][0].binding == UNBOUND


# ---------------------------------------------------------------- the body's JSON

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(st.characters(), max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_a_body_reads_as_the_json_module_reads_it(value: object) -> None:
    """orjson reads bodies for speed; whatever it refuses or reads otherwise (lone surrogates,
    integers beyond 64 bits) must come out as the json module's answer."""
    import json

    from policy.fleet_wire import parse_body

    raw = json.dumps(value).encode()
    assert repr(parse_body(raw)) == repr(json.loads(raw))


@pytest.mark.parametrize("raw", [b'{"location": "/etc/ssl/\\udcff.pem"}', b'{"index": NaN}',
                                 b'{"index": 123456789012345678901234567890}',
                                 b'\xef\xbb\xbf{"a": 1}', b'{"a": 1, "a": 2}'])
def test_bodies_orjson_refuses_or_reads_otherwise_read_as_json_does(raw: bytes) -> None:
    import json

    from policy.fleet_wire import parse_body

    assert repr(parse_body(raw)) == repr(json.loads(raw))


@pytest.mark.parametrize("raw", [b"", b"{", b'{"a": [1, 2}', b"\xff", b"[" * 100_000])
def test_a_body_that_is_not_json_is_a_value_error(raw: bytes) -> None:
    from policy.fleet_wire import parse_body

    with pytest.raises((ValueError, RecursionError)):
        parse_body(raw)
