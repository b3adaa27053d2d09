"""The fleet's wire format: what an agent sends ``policy serve``, checked field by field.

Every body is hostile until proven otherwise. The reader here refuses, with a message naming
the field, anything that is not exactly the documented shape: an unknown field (a typo or a
newer agent must not be half-understood), a wrong type, a string or list past its bound. It
never recurses on the input (the nesting is fixed), and every bound is checked before a value
is used. Strings are otherwise kept verbatim: the ledger stores them as SQL parameters, never
as SQL.

**Text is Unicode, file names are bytes.** JSON's ``\\ud800`` escapes decode to lone surrogates,
which no database column and no UTF-8 encoder takes. A file name that is not UTF-8 reaches the
agent as ``os.fsdecode`` text (each byte that is not UTF-8 a lone surrogate U+DC80..U+DCFF) and is
sent as such; so a *location* may hold those surrogates, and only when the text is exactly what
``os.fsdecode`` gives for some bytes (it round-trips through ``surrogateescape``). Every other
string (certificate facts, bindings, host, inventory) must be valid Unicode text. Anything else
is refused here, with the field's name, before it reaches the ledger.

Both directions live here so the agent and the service cannot drift: ``report_body`` /
``heartbeat_body`` build what :func:`read_report` / :func:`read_heartbeat` accept.
"""

from __future__ import annotations

import dataclasses
import json
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

try:
    import orjson
except ImportError:  # pragma: no cover - a platform orjson has no wheel for (see pyproject)
    orjson = None  # type: ignore[assignment]

from .category import Category
from .decisions import SEVERITY_TEXT
from .events import facts_to_json, instant_to_text, text_to_instant
from .facts import FACT_LIST_LIMIT, FACT_TEXT_LIMIT, SAN_LIMIT, CertificateFacts
from .intake import Binding, Observation
from .tiers import Tier

__all__ = [
    "MAX_STRING",
    "UNBOUND",
    "Gone",
    "Heartbeat",
    "PeerIdentity",
    "ReportBatch",
    "TimeRefusal",
    "Unassigned",
    "WireError",
    "assigned_only",
    "assignments",
    "binding_to_wire",
    "bindings_body",
    "heartbeat_body",
    "identity_from_peercert",
    "observation_to_wire",
    "parse_body",
    "read_bindings",
    "read_heartbeat",
    "read_renewal",
    "read_report",
    "report_body",
    "time_refusal",
]

MAX_STRING = FACT_TEXT_LIMIT
"""Longest string anywhere in a body (a path, a subject): what the ledger stores of a fact."""
MAX_LIST = FACT_LIST_LIMIT
"""Longest list inside one observation (SANs, policy OIDs, extra pairs)."""
MAX_COUNT = 1 << 40
"""Largest count a heartbeat's inventory may claim (files, certificates, each severity's)."""
MAX_BINDINGS = 10_000
"""Most store bindings one host is assigned (``GET /v1/bindings``)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerIdentity:
    """Who is calling, from a client certificate the fleet CA issued."""

    host: str
    serial: str
    """Lowercase hex, no leading zeros."""
    not_after_utc: datetime
    not_before_utc: datetime | None = None
    """When the desk (or a renewal) issued it: the host observed nothing before it was
    enrolled, so an observation dated earlier is refused (:func:`observation_time_refusal`)."""


def identity_from_peercert(peercert: Mapping[str, Any] | None) -> PeerIdentity | None:
    """The identity in ``ssl.SSLSocket.getpeercert()``'s dictionary (a certificate OpenSSL
    already verified against the fleet CA), or ``None`` when it names no single host."""
    if not peercert:
        return None
    names = [value for rdn in peercert.get("subject", ()) for key, value in rdn
             if key == "commonName"]
    serial = peercert.get("serialNumber")
    not_after = peercert.get("notAfter")
    not_before = peercert.get("notBefore")
    if len(names) != 1 or not isinstance(serial, str) or not isinstance(not_after, str) \
            or not isinstance(not_before, str):
        return None
    try:
        expiry = datetime.fromtimestamp(ssl.cert_time_to_seconds(not_after), tz=UTC)
        start = datetime.fromtimestamp(ssl.cert_time_to_seconds(not_before), tz=UTC)
        serial_text = format(int(serial, 16), "x")
    except ValueError:
        return None
    return PeerIdentity(host=str(names[0]), serial=serial_text, not_after_utc=expiry,
                        not_before_utc=start)


class WireError(ValueError):
    """A body that is not the documented shape; the message names the field."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Gone:
    location: str
    at_utc: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportBatch:
    """One outbox batch: observations and places found empty, in the agent's order."""

    host: str
    outbox: str
    sequence: int
    at_utc: datetime
    observations: tuple[Observation, ...]
    gone: tuple[Gone, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Heartbeat:
    host: str
    at_utc: datetime
    inventory: Mapping[str, Any]


# ---------------------------------------------------------------------- writing (agent side)
def binding_to_wire(binding: Binding) -> dict[str, Any]:
    return {"contract_id": binding.contract_id,
            "category": None if binding.category is None else binding.category.value,
            "item": binding.item,
            "tier": None if binding.tier is None else binding.tier.value,
            "match_by_san": binding.match_by_san}


def observation_to_wire(obs: Observation) -> dict[str, Any]:
    """An observation as the agent sends it (no host: the service takes it from the
    certificate)."""
    return {"location": obs.location, "index": obs.index,
            "observed_at": instant_to_text(obs.observed_at_utc),
            "key_matches": obs.key_matches, "binding": binding_to_wire(obs.binding),
            "facts": facts_to_json(obs.facts)}


def report_body(*, host: str, outbox: str, sequence: int, at: datetime,
                observations: Sequence[Mapping[str, Any]],
                gone: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    return {"host": host, "outbox": outbox, "sequence": sequence, "at": instant_to_text(at),
            "observations": list(observations), "gone": list(gone)}


def heartbeat_body(*, host: str, at: datetime, inventory: Mapping[str, Any]) -> dict[str, Any]:
    return {"host": host, "at": instant_to_text(at), "inventory": dict(inventory)}


def bindings_body(*, host: str, stores: Mapping[str, Binding]) -> dict[str, Any]:
    """``GET /v1/bindings``'s answer (the service's side), by store path."""
    return {"host": host, "stores": [{"store": store, "binding": binding_to_wire(binding)}
                                     for store, binding in sorted(stores.items())]}


# ---------------------------------------------------------------------- reading (service side)
def parse_body(raw: bytes) -> Any:
    """A request body's JSON, exactly as ``json.loads`` reads it; ``ValueError`` (or
    ``RecursionError``) when it is not JSON. orjson reads a report of 100 observations in a
    fifth of the time; what it refuses (a lone surrogate escape, which a file name that is
    not UTF-8 needs; NaN; a byte order mark) or reads otherwise (an integer beyond 64 bits,
    which it makes a float) goes to the json module, so the answer is the json module's."""
    if orjson is not None:
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
        else:
            if not _has_float(value):
                return value
    return json.loads(raw)


def _has_float(value: Any) -> bool:
    """Whether a float is anywhere in ``value`` (no recursion: a stack of containers). The
    wire has no floats; one here is an integer orjson could not hold, or a real float."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float):
            return True
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _object(value: Any, where: str, required: Sequence[str],
            optional: Sequence[str] = ()) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise WireError(f"{where}: expected an object")
    unknown = sorted(set(value) - set(required) - set(optional))
    if unknown:
        raise WireError(f"{where}: unknown field {str(unknown[0])[:64]!r}")
    missing = [k for k in required if k not in value]
    if missing:
        raise WireError(f"{where}: missing field {missing[0]!r}")
    return value


def _string(value: Any, where: str, *, null: bool = False, limit: int = MAX_STRING,
            file_name: bool = False) -> Any:
    if value is None and null:
        return None
    if not isinstance(value, str):
        raise WireError(f"{where}: expected a string")
    if len(value) > limit:
        raise WireError(f"{where}: longer than {limit} characters")
    if "\x00" in value:
        raise WireError(f"{where}: contains a NUL character")
    if not value.isascii() and not _text_ok(value, file_name=file_name):
        raise WireError(f"{where}: not valid Unicode text (a lone surrogate)"
                        if not file_name else
                        f"{where}: a lone surrogate that is not a byte of a file name")
    return value


def _text_ok(value: str, *, file_name: bool) -> bool:
    """Whether ``value`` holds no lone surrogate, or (a file name) only those ``os.fsdecode``
    makes of bytes that are not UTF-8, in a sequence it would make."""
    try:
        value.encode("utf-8")
        return True
    except UnicodeEncodeError:
        if not file_name:
            return False
    try:
        raw = value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return False
    return raw.decode("utf-8", "surrogateescape") == value


def _integer(value: Any, where: str, *, low: int, high: int, null: bool = False) -> Any:
    if value is None and null:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise WireError(f"{where}: expected an integer")
    if not low <= value <= high:
        raise WireError(f"{where}: out of range {low}..{high}")
    return value


def _boolean(value: Any, where: str, *, null: bool = False) -> Any:
    if value is None and null:
        return None
    if not isinstance(value, bool):
        raise WireError(f"{where}: expected true or false")
    return value


def _instant(value: Any, where: str) -> datetime:
    text = _string(value, where, limit=64)
    try:
        return text_to_instant(text)
    except ValueError:
        raise WireError(f"{where}: not an ISO 8601 instant") from None


def _strings(value: Any, where: str, *, limit: int = MAX_STRING) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise WireError(f"{where}: expected a list")
    if len(value) > MAX_LIST:
        raise WireError(f"{where}: more than {MAX_LIST} entries")
    return tuple(_string(v, f"{where}[{i}]", limit=limit) for i, v in enumerate(value))


_FACT_FIELDS = ("sha256", "not_before", "not_after", "subject", "subject_cn", "issuer",
                "issuer_org", "issuer_cn", "serial", "sans", "policy_oids", "is_ca",
                "self_signed", "key_type", "key_size", "signature_algorithm", "extra")


def _facts(value: Any, where: str) -> CertificateFacts:
    raw = _object(value, where, ("sha256", "not_before", "not_after"), _FACT_FIELDS)
    extra_raw = raw.get("extra", [])
    if not isinstance(extra_raw, list) or len(extra_raw) > MAX_LIST:
        raise WireError(f"{where}.extra: expected a list of at most {MAX_LIST} pairs")
    extra = []
    for i, pair in enumerate(extra_raw):
        if not isinstance(pair, list) or len(pair) != 2:
            raise WireError(f"{where}.extra[{i}]: expected a [name, value] pair")
        extra.append((_string(pair[0], f"{where}.extra[{i}]"),
                      _string(pair[1], f"{where}.extra[{i}]")))
    try:
        return CertificateFacts(
            sha256=_string(raw["sha256"], f"{where}.sha256", limit=64),
            not_before_utc=_instant(raw["not_before"], f"{where}.not_before"),
            not_after_utc=_instant(raw["not_after"], f"{where}.not_after"),
            subject=_string(raw.get("subject", ""), f"{where}.subject"),
            subject_cn=_string(raw.get("subject_cn"), f"{where}.subject_cn", null=True),
            issuer=_string(raw.get("issuer", ""), f"{where}.issuer"),
            issuer_org=_string(raw.get("issuer_org"), f"{where}.issuer_org", null=True),
            issuer_cn=_string(raw.get("issuer_cn"), f"{where}.issuer_cn", null=True),
            serial=_string(raw.get("serial", ""), f"{where}.serial", limit=256),
            sans=_strings(raw.get("sans", []), f"{where}.sans", limit=SAN_LIMIT),
            policy_oids=_strings(raw.get("policy_oids", []), f"{where}.policy_oids"),
            is_ca=_boolean(raw.get("is_ca", False), f"{where}.is_ca"),
            self_signed=_boolean(raw.get("self_signed", False), f"{where}.self_signed"),
            key_type=_string(raw.get("key_type", ""), f"{where}.key_type", limit=64),
            key_size=_integer(raw.get("key_size"), f"{where}.key_size", low=0, high=1 << 20,
                              null=True),
            signature_algorithm=_string(raw.get("signature_algorithm", ""),
                                        f"{where}.signature_algorithm", limit=256),
            extra=tuple(sorted(extra)))
    except WireError:
        raise
    except ValueError:
        raise WireError(f"{where}.sha256: expected 64 lowercase hex digits") from None


def _binding(value: Any, where: str) -> Binding:
    raw = _object(value, where, (), ("contract_id", "category", "item", "tier",
                                     "match_by_san"))
    category = _string(raw.get("category"), f"{where}.category", null=True, limit=16)
    tier = _string(raw.get("tier"), f"{where}.tier", null=True, limit=16)
    try:
        return Binding(
            contract_id=_string(raw.get("contract_id"), f"{where}.contract_id", null=True,
                                limit=256),
            category=None if category is None else Category(category),
            item=_string(raw.get("item"), f"{where}.item", null=True, limit=256),
            tier=None if tier is None else Tier(tier),
            match_by_san=_boolean(raw.get("match_by_san", False), f"{where}.match_by_san"))
    except WireError:
        raise
    except ValueError:
        raise WireError(f"{where}: unknown category or tier") from None


def _observation(value: Any, where: str, host: str) -> Observation:
    raw = _object(value, where, ("location", "index", "observed_at", "facts"),
                  ("key_matches", "binding"))
    return Observation(
        facts=_facts(raw["facts"], f"{where}.facts"), host=host,
        location=_string(raw["location"], f"{where}.location", file_name=True),
        index=_integer(raw["index"], f"{where}.index", low=0, high=1 << 20),
        observed_at_utc=_instant(raw["observed_at"], f"{where}.observed_at"),
        binding=_binding(raw.get("binding", {}), f"{where}.binding"),
        key_matches=_boolean(raw.get("key_matches"), f"{where}.key_matches", null=True))


def read_report(value: Any, *, max_observations: int) -> ReportBatch:
    """A report body, checked; raises :class:`WireError`. ``ValueError`` subclasses only."""
    raw = _object(value, "body", ("host", "outbox", "sequence", "at", "observations", "gone"))
    host = _string(raw["host"], "body.host", limit=253)
    outbox = _string(raw["outbox"], "body.outbox", limit=64)
    observations, gone = raw["observations"], raw["gone"]
    if not isinstance(observations, list) or not isinstance(gone, list):
        raise WireError("body.observations and body.gone: expected lists")
    if len(observations) + len(gone) > max_observations:
        raise TooManyError(f"a batch carries at most {max_observations} observations and "
                           "places; split it")
    return ReportBatch(
        host=host, outbox=outbox,
        sequence=_integer(raw["sequence"], "body.sequence", low=1, high=(1 << 62)),
        at_utc=_instant(raw["at"], "body.at"),
        observations=tuple(_observation(o, f"body.observations[{i}]", host)
                           for i, o in enumerate(observations)),
        gone=tuple(_gone(g, f"body.gone[{i}]") for i, g in enumerate(gone)))


class TooManyError(WireError):
    """A batch past the configured cap (HTTP 413)."""


def _gone(value: Any, where: str) -> Gone:
    raw = _object(value, where, ("location", "at"))
    return Gone(location=_string(raw["location"], f"{where}.location", file_name=True),
                at_utc=_instant(raw["at"], f"{where}.at"))


def read_bindings(value: Any, *, host: str) -> dict[str, Binding]:
    """``GET /v1/bindings``'s answer as the agent reads it (the service is trusted no more
    than an agent is): store path -> binding; raises :class:`WireError`. A body for another
    host than ``host`` is refused too."""
    raw = _object(value, "body", ("host", "stores"))
    if _string(raw["host"], "body.host", limit=253) != host:
        raise WireError("body.host: the bindings of another host")
    stores = raw["stores"]
    if not isinstance(stores, list) or len(stores) > MAX_BINDINGS:
        raise WireError(f"body.stores: expected a list of at most {MAX_BINDINGS} entries")
    out: dict[str, Binding] = {}
    for i, entry in enumerate(stores):
        where = f"body.stores[{i}]"
        item = _object(entry, where, ("store", "binding"))
        store = _string(item["store"], f"{where}.store", file_name=True)
        if store in out:
            raise WireError(f"{where}.store: listed twice")
        out[store] = _binding(item["binding"], f"{where}.binding")
    return out


_INVENTORY_COUNTS = ("certificates", "files", "errors", "stores", "outbox_pending")


def read_heartbeat(value: Any) -> Heartbeat:
    raw = _object(value, "body", ("host", "at", "inventory"))
    inventory = _object(raw["inventory"], "body.inventory", (),
                        (*_INVENTORY_COUNTS, "by_severity", "agent_version"))
    clean: dict[str, Any] = {}
    for name in _INVENTORY_COUNTS:
        if name in inventory:
            clean[name] = _integer(inventory[name], f"body.inventory.{name}", low=0,
                                   high=MAX_COUNT)
    if "agent_version" in inventory:
        clean["agent_version"] = _string(inventory["agent_version"],
                                         "body.inventory.agent_version", limit=64)
    if "by_severity" in inventory:
        clean["by_severity"] = _by_severity(inventory["by_severity"], clean.get("certificates"))
    return Heartbeat(host=_string(raw["host"], "body.host", limit=253),
                     at_utc=_instant(raw["at"], "body.at"), inventory=clean)


def _by_severity(value: Any, certificates: int | None) -> dict[str, int]:
    """A heartbeat's certificates counted by their worst severity, as the agent counts them
    (``agent.fleet_client.inventory_of``): keys only the severities' names, each certificate
    counted once, so the counts add up to no more than the ``certificates`` sent with them.
    A key of any other text was stored and shown by ``fleet hosts`` (a terminal escape, say)."""
    where = "body.inventory.by_severity"
    if not isinstance(value, dict):
        raise WireError(f"{where}: expected an object of counts")
    for key in value:
        if _string(key, where, limit=32) not in SEVERITY_TEXT:
            raise WireError(f"{where}: a key other than {', '.join(SEVERITY_TEXT)}")
    counts = {key: _integer(count, f"{where}.{key}", low=0, high=MAX_COUNT)
              for key, count in value.items()}
    if certificates is not None and sum(counts.values()) > certificates:
        raise WireError(f"{where}: counts more certificates than body.inventory.certificates")
    return counts


def read_renewal(value: Any, *, max_csr: int) -> tuple[str, str]:
    """``POST /v1/renew``'s body: ``(host, csr_pem)``; raises :class:`WireError`."""
    raw = _object(value, "body", ("host", "csr"))
    return (_string(raw["host"], "body.host", limit=253),
            _string(raw["csr"], "body.csr", limit=max_csr))


# ---------------------------------------------------------------------- what a host may claim
@dataclass(frozen=True, slots=True, kw_only=True)
class TimeRefusal:
    """Why a batch's instants are refused: the message names the field."""

    message: str
    too_early: bool
    """Earlier than the enrolment given: the caller may look the host's first enrolment up
    (a certificate renewed since is younger than what its outbox still holds) and ask again."""


def time_refusal(batch: ReportBatch, *, now: datetime, skew: timedelta,
                 enrolled: datetime | None) -> TimeRefusal | None:
    """Whether ``batch`` dates anything outside what its host can have seen: later than the
    service's ``now`` (plus ``skew`` for clocks that differ a little), or earlier than the host
    was enrolled (``enrolled``: its first client certificate's notBefore; minus ``skew``).
    A host dating events in 1970 or 2099 would otherwise move contract deadlines at will."""
    latest = now + skew
    earliest = None if enrolled is None else enrolled - skew
    instants = [("body.at", batch.at_utc)]
    instants += [(f"body.observations[{i}].observed_at", o.observed_at_utc)
                 for i, o in enumerate(batch.observations)]
    instants += [(f"body.gone[{i}].at", g.at_utc) for i, g in enumerate(batch.gone)]
    for where, instant in instants:
        if instant > latest:
            return TimeRefusal(message=f"{where}: {instant_to_text(instant)} is later than the "
                                       f"service's clock ({instant_to_text(now)}) allows",
                               too_early=False)
        if earliest is not None and instant < earliest:
            return TimeRefusal(message=f"{where}: {instant_to_text(instant)} is earlier than "
                                       f"this host was enrolled ({instant_to_text(enrolled)})"
                                       if enrolled is not None else where, too_early=True)
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class Unassigned:
    """An observation whose binding the desk did not assign to its host's store."""

    location: str
    contract_id: str | None

    def to_json(self) -> dict[str, Any]:
        return {"location": self.location, "contract_id": self.contract_id}


UNBOUND = Binding()


def _store_of(location: str, stores: Sequence[str]) -> str | None:
    """The innermost assigned store holding ``location`` (the store itself, or under it)."""
    best: str | None = None
    best_length = -1
    for store in stores:
        root = store.rstrip("/") or "/"
        prefix = "/" if root == "/" else root + "/"
        if (location == root or location.startswith(prefix)) and len(root) > best_length:
            best, best_length = store, len(root)
    return best


def assigned_only(observations: Sequence[Observation], assigned: Mapping[str, Binding]
                  ) -> tuple[tuple[Observation, ...], tuple[Unassigned, ...]]:
    """The observations with every binding the desk did not assign made unbound, and which.

    The contract desk decides which store of which host belongs to which contract
    (``certescrow fleet assign``); an agent only repeats it. A binding an agent claims for a
    store the desk did not assign it (another customer's contract, say) would let any enrolled
    host attach certificates to, and terminate, any contract. Such an observation is still
    recorded, unbound (the certificate was seen), and named in the acknowledgement: refusing
    the batch would only leave it at the head of the agent's outbox."""
    kept: list[Observation] = []
    refused: list[Unassigned] = []
    stores = tuple(assigned)
    for obs in observations:
        if obs.binding == UNBOUND:
            kept.append(obs)
            continue
        store = _store_of(obs.location, stores)
        if store is not None and assigned[store] == obs.binding:
            kept.append(obs)
            continue
        refused.append(Unassigned(location=obs.location, contract_id=obs.binding.contract_id))
        kept.append(dataclasses.replace(obs, binding=UNBOUND))
    return tuple(kept), tuple(refused)


def assignments(rows: Sequence[Mapping[str, Any]]) -> dict[str, Binding]:
    """The registry's rows of one host's assigned bindings, read as bindings (a row that is not
    a binding any more assigns nothing)."""
    out: dict[str, Binding] = {}
    for row in rows:
        try:
            out[str(row["store"])] = _binding(row["binding"], "binding")
        except (WireError, KeyError):
            continue
    return out
