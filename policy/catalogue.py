"""The catalogue of Art.1 / Appendix 1: items, their CAs and permitted tiers, loaded from data.

The terms are amended from time to time (items added, products ended), so the items are a TOML
file, not code: the embedded ``policy/data/catalogue.toml`` encodes the terms as of 2024-06-01,
and an operator can point ``load_catalogue`` at an amended copy. Everything is validated on load
and every error names the file and the key, because a catalogue mistake silently misclassifies
every certificate after it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .category import Category
from .datafile import DATA_FILE_MAX, DataFileError, read_data_file
from .errors import CatalogueError, UnknownItemError
from .tiers import TIERS_ASCENDING, Tier
from .tomlparse import TomlSyntaxError, parse_toml

__all__ = [
    "EMBEDDED_CATALOGUE",
    "VALIDATION_LEVELS",
    "Catalogue",
    "CertificateAuthority",
    "Item",
    "load_catalogue",
    "parse_catalogue",
]

EMBEDDED_CATALOGUE = "policy/data/catalogue.toml"
"""How the embedded catalogue is named in error messages and JSON output."""

VALIDATION_LEVELS = ("ev", "ov", "dv")
CATALOGUE_FORMAT = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class CertificateAuthority:
    """A CA of the catalogue, as far as the contract and the matchers care."""

    key: str
    """``digicert`` | ``cybertrust`` | ``globalsign`` | ``any`` (category III)."""
    name: str
    organisations: tuple[str, ...]
    """Issuer ``O=`` values that identify the CA (compared case-insensitively)."""
    transition_allowance_days: int | None
    """Art.3 proviso: the cap on the overlap a renewal may carry over; ``None`` = no allowance."""
    allowance_from: date | None = None
    """First Asia/Tokyo day (inclusive) of the allowance window; ``None`` = open."""
    allowance_until: date | None = None
    """Last Asia/Tokyo day (inclusive) of the allowance window; ``None`` = open."""
    issuer_cn_patterns: tuple[str, ...] = ()
    """Regular expressions for the CA's TLS issuing-CA common names (full match)."""
    vendor_policy_oids: Mapping[str, str] = field(default_factory=dict)
    """The CA's own policy OIDs → validation level; a cross-check only."""
    tier_days: Mapping[Tier, int] = field(default_factory=dict)
    """The CA's own length of a tier during its transition period, in days of 86,400 s
    (GlobalSign: "6 months" = 183 days, "1 year" = 366 days). A renewal carrying days over (an
    allowance above 0, so inside the window) also complies when its validity period is at most
    this plus that allowance (366 + 31 = 397 days); without a carry-over the tier's period alone
    decides (CONTRACT.md Art.3). Empty = calendar tiers only."""
    _patterns: tuple[re.Pattern[str], ...] = field(init=False, repr=False, compare=False)
    _orgs: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Compiled once: the matchers run for every certificate of a 100,000-contract sweep.
        object.__setattr__(self, "vendor_policy_oids",
                           MappingProxyType(dict(self.vendor_policy_oids)))
        object.__setattr__(self, "_patterns",
                           tuple(re.compile(p) for p in self.issuer_cn_patterns))
        object.__setattr__(self, "_orgs", frozenset(o.casefold() for o in self.organisations))
        object.__setattr__(self, "tier_days", MappingProxyType(dict(self.tier_days)))

    def allowance_open_on(self, day: date) -> bool:
        """Whether the CA's transition window contains ``day`` (both ends inclusive)."""
        if self.transition_allowance_days is None:
            return False
        if self.allowance_from is not None and day < self.allowance_from:
            return False
        return not (self.allowance_until is not None and day > self.allowance_until)

    def recognises_org(self, organisation: str | None) -> bool:
        if not organisation:
            return False
        return organisation.strip().casefold() in self._orgs

    def recognises_issuer_cn(self, common_name: str | None) -> bool:
        if not common_name:
            return False
        name = common_name.strip()
        return any(p.fullmatch(name) for p in self._patterns)

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "name": self.name,
            "organisations": list(self.organisations),
            "transition_allowance_days": self.transition_allowance_days,
            "allowance_from": self.allowance_from,
            "allowance_until": self.allowance_until,
            "issuer_cn_patterns": list(self.issuer_cn_patterns),
            "vendor_policy_oids": dict(self.vendor_policy_oids),
            "tier_days": {tier.value: days for tier, days in self.tier_days.items()},
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Item:
    """One item of Art.1 (one contract per item, Art.2)."""

    handle: str
    name_ja: str
    name_en: str
    category: Category
    ca: str
    """Key of the issuing :class:`CertificateAuthority` (``any`` for BYO)."""
    tiers: tuple[Tier, ...]
    """Permitted validity periods (Appx1.1), ascending."""
    validation: str | None
    """``ev`` | ``ov`` | ``dv``; ``None`` when the item does not fix it (BYO)."""
    wildcard: bool = False
    product_end: date | None = None
    """Art.8: the Asia/Tokyo day from which the CA no longer provides the product (inclusive)."""

    @property
    def owes_agency_fee(self) -> bool:
        """Appx1.3: categories I and II owe an application agency fee per acquisition/renewal."""
        return self.category.provider_issued

    monthly_fee_yen = 0
    """Appx1.2: the monthly fee is 0 yen for every item."""

    def to_json(self) -> dict[str, Any]:
        return {
            "handle": self.handle,
            "name_ja": self.name_ja,
            "name_en": self.name_en,
            "category": self.category.value,
            "ca": self.ca,
            "tiers": [t.value for t in self.tiers],
            "validation": self.validation,
            "wildcard": self.wildcard,
            "product_end": self.product_end,
            "fees": {
                "initial": "shown separately (price list)",
                "agency": "shown separately (price list)" if self.owes_agency_fee else None,
                "monthly_yen": self.monthly_fee_yen,
            },
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Catalogue:
    """The items and CAs of one set of terms."""

    terms_date: date
    items: Mapping[str, Item]
    cas: Mapping[str, CertificateAuthority]
    source: str = EMBEDDED_CATALOGUE
    """Where it was loaded from (a path, or the embedded name), for explanations."""

    _by_org: Mapping[str, CertificateAuthority] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "items", MappingProxyType(dict(self.items)))
        object.__setattr__(self, "cas", MappingProxyType(dict(self.cas)))
        by_org: dict[str, CertificateAuthority] = {}
        for ca in self.cas.values():
            for org in ca.organisations:
                by_org.setdefault(org.casefold(), ca)
        object.__setattr__(self, "_by_org", MappingProxyType(by_org))

    def item(self, handle: str) -> Item:
        """The item named ``handle``; an unknown handle lists the valid ones."""
        try:
            return self.items[handle]
        except KeyError:
            valid = ", ".join(self.items)
            raise UnknownItemError(
                f"unknown item {handle!r}: the catalogue ({self.source}) has {valid}"
            ) from None

    def ca_of(self, item: Item) -> CertificateAuthority:
        return self.cas[item.ca]

    def ca_for_issuer(self, issuer_org: str | None) -> CertificateAuthority | None:
        """The catalogue CA whose organisations include ``issuer_org`` (``None`` if none)."""
        if not issuer_org:
            return None
        return self._by_org.get(issuer_org.strip().casefold())

    def byo_item(self) -> Item:
        """The category III item (``byo`` in the embedded catalogue)."""
        if "byo" in self.items:
            return self.items["byo"]
        for item in self.items.values():
            if item.category is Category.III:
                return item
        raise CatalogueError(f"{self.source}: the catalogue has no category III item")

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "terms_date": self.terms_date,
            "cas": [ca.to_json() for ca in self.cas.values()],
            "items": [item.to_json() for item in self.items.values()],
        }


# ------------------------------------------------------------------------- loading

_CA_KEYS = {
    "name": True, "organisations": True, "transition_allowance_days": False,
    "allowance_from": False, "allowance_until": False, "issuer_cn_patterns": False,
    "vendor_policy_oids": False, "tier_days": False,
}
_ITEM_KEYS = {
    "handle": True, "name_ja": True, "name_en": True, "category": True, "ca": True,
    "tiers": True, "validation": False, "wildcard": False, "product_end": False,
}
_TOP_KEYS = {"format": False, "terms_date": True, "cas": True, "items": True}
_HANDLE = re.compile(r"[a-z0-9][a-z0-9-]*")


def load_catalogue(path: Path | None = None) -> Catalogue:
    """Load and validate a catalogue; ``None`` loads the embedded one.

    Raises :class:`CatalogueError` naming the file and the offending key.
    """
    if path is None:
        text = resources.files("policy").joinpath("data/catalogue.toml").read_text("utf-8")
        return parse_catalogue(text, source=EMBEDDED_CATALOGUE)
    try:
        text = read_data_file(Path(path), max_bytes=DATA_FILE_MAX)
    except DataFileError as exc:
        raise CatalogueError(f"{path}: the catalogue file {exc}") from None
    return parse_catalogue(text, source=str(path))


def parse_catalogue(text: str, *, source: str) -> Catalogue:
    """Validate catalogue TOML ``text``; ``source`` names it in errors."""
    try:
        raw = parse_toml(text)
    except TomlSyntaxError as exc:
        raise CatalogueError(f"{source}: {exc}") from None
    return _Parser(source).catalogue(raw)


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, reason: str) -> CatalogueError:
        return CatalogueError(f"{self.source}: {key}: {reason}")

    def check_keys(self, table: Mapping[str, Any], allowed: Mapping[str, bool],
                   where: str) -> None:
        for key in table:
            if key not in allowed:
                valid = ", ".join(allowed)
                raise self.fail(f"{where}{key}", f"unknown key (expected one of {valid})")
        for key, required in allowed.items():
            if required and key not in table:
                raise self.fail(f"{where}{key}", "required key is missing")

    def typed(self, value: Any, kind: type | tuple[type, ...], key: str, expected: str) -> Any:
        if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
            raise self.fail(key, f"expected {expected}, got {value!r}")
        if not isinstance(value, kind):
            raise self.fail(key, f"expected {expected}, got {type(value).__name__} {value!r}")
        return value

    def day(self, value: Any, key: str) -> date:
        if isinstance(value, datetime) or not isinstance(value, date):
            raise self.fail(key, f"expected a date such as 2024-06-01, got {value!r}")
        return value

    def strings(self, value: Any, key: str) -> tuple[str, ...]:
        self.typed(value, list, key, "a list of strings")
        for index, element in enumerate(value):
            self.typed(element, str, f"{key}[{index}]", "a string")
        return tuple(value)

    def catalogue(self, raw: Mapping[str, Any]) -> Catalogue:
        self.check_keys(raw, _TOP_KEYS, "")
        fmt = raw.get("format", CATALOGUE_FORMAT)
        self.typed(fmt, int, "format", "an integer")
        if fmt != CATALOGUE_FORMAT:
            raise self.fail("format", f"unsupported catalogue format {fmt} "
                                      f"(this certescrow reads format {CATALOGUE_FORMAT})")
        terms_date = self.day(raw["terms_date"], "terms_date")
        cas_raw = self.typed(raw["cas"], dict, "cas", "a table of CAs")
        cas = {key: self.ca(key, table) for key, table in cas_raw.items()}
        items_raw = self.typed(raw["items"], list, "items", "an array of [[items]] tables")
        items: dict[str, Item] = {}
        for index, table in enumerate(items_raw):
            item = self.item(index, table, cas)
            if item.handle in items:
                raise self.fail(f"items[{index}].handle",
                                f"duplicate handle {item.handle!r}")
            items[item.handle] = item
        if not items:
            raise self.fail("items", "the catalogue has no items")
        return Catalogue(terms_date=terms_date, items=items, cas=cas, source=self.source)

    def ca(self, key: str, table: Any) -> CertificateAuthority:
        where = f"cas.{key}."
        self.typed(table, dict, f"cas.{key}", "a table")
        self.check_keys(table, _CA_KEYS, where)
        name = self.typed(table["name"], str, where + "name", "a string")
        organisations = self.strings(table["organisations"], where + "organisations")
        allowance = table.get("transition_allowance_days")
        if allowance is not None:
            self.typed(allowance, int, where + "transition_allowance_days",
                       "a whole number of days")
            if allowance < 0:
                raise self.fail(where + "transition_allowance_days",
                                f"must not be negative, got {allowance}")
        start = table.get("allowance_from")
        until = table.get("allowance_until")
        start_day = None if start is None else self.day(start, where + "allowance_from")
        until_day = None if until is None else self.day(until, where + "allowance_until")
        if start_day and until_day and until_day < start_day:
            raise self.fail(where + "allowance_until",
                            f"{until_day} is before allowance_from {start_day}")
        patterns = self.strings(table.get("issuer_cn_patterns", []), where + "issuer_cn_patterns")
        for index, pattern in enumerate(patterns):
            try:
                re.compile(pattern)
            except re.error as exc:
                raise self.fail(f"{where}issuer_cn_patterns[{index}]",
                                f"not a valid regular expression: {exc}") from None
        oids = self.typed(table.get("vendor_policy_oids", {}), dict,
                          where + "vendor_policy_oids", "a table of OID = level")
        for oid, level in oids.items():
            okey = f'{where}vendor_policy_oids."{oid}"'
            if not re.fullmatch(r"\d+(\.\d+)+", oid):
                raise self.fail(okey, "not a dotted OID")
            if level not in VALIDATION_LEVELS:
                raise self.fail(okey, f"unknown validation level {level!r} "
                                      f"(expected {', '.join(VALIDATION_LEVELS)})")
        raw_days = self.typed(table.get("tier_days", {}), dict, where + "tier_days",
                              'a table of tier = days, e.g. { "1y" = 366 }')
        tier_days: dict[Tier, int] = {}
        for tier_name, days in raw_days.items():
            dkey = f'{where}tier_days."{tier_name}"'
            try:
                tier = Tier.parse(tier_name)
            except ValueError as exc:
                raise self.fail(dkey, str(exc)) from None
            if tier is Tier.UNLIMITED:
                raise self.fail(dkey, "an unlimited tier has no length")
            self.typed(days, int, dkey, "a whole number of days")
            if days <= 0:
                raise self.fail(dkey, f"must be a positive number of days, got {days}")
            tier_days[tier] = days
        if tier_days and allowance is None:
            raise self.fail(where + "tier_days",
                            "needs transition_allowance_days: the CA's own tier lengths apply "
                            "only inside its transition window")
        return CertificateAuthority(
            key=key, name=name, organisations=organisations,
            transition_allowance_days=allowance, allowance_from=start_day,
            allowance_until=until_day, issuer_cn_patterns=patterns, vendor_policy_oids=oids,
            tier_days=tier_days,
        )

    def item(self, index: int, table: Any,
             cas: Mapping[str, CertificateAuthority]) -> Item:
        self.typed(table, dict, f"items[{index}]", "a table")
        handle_hint = table.get("handle")
        label = f"items[{index}]" + (f" ({handle_hint})" if isinstance(handle_hint, str) else "")
        where = label + "."
        self.check_keys(table, _ITEM_KEYS, where)
        handle = self.typed(table["handle"], str, where + "handle", "a string")
        if not _HANDLE.fullmatch(handle):
            raise self.fail(where + "handle",
                            f"{handle!r} is not a handle (lowercase letters, digits, '-')")
        name_ja = self.typed(table["name_ja"], str, where + "name_ja", "a string")
        name_en = self.typed(table["name_en"], str, where + "name_en", "a string")
        category_text = self.typed(table["category"], str, where + "category", "I, II or III")
        try:
            category = Category.parse(category_text)
        except ValueError as exc:
            raise self.fail(where + "category", str(exc)) from None
        ca = self.typed(table["ca"], str, where + "ca", "a CA key")
        if ca not in cas:
            raise self.fail(where + "ca", f"unknown CA {ca!r} (the catalogue's [cas] has "
                                          f"{', '.join(cas) or 'none'})")
        tier_names = self.strings(table["tiers"], where + "tiers")
        if not tier_names:
            raise self.fail(where + "tiers", "an item needs at least one permitted tier")
        tiers: list[Tier] = []
        for tindex, name in enumerate(tier_names):
            try:
                tier = Tier.parse(name)
            except ValueError as exc:
                raise self.fail(f"{where}tiers[{tindex}]", str(exc)) from None
            if tier in tiers:
                raise self.fail(f"{where}tiers[{tindex}]", f"tier {name!r} listed twice")
            tiers.append(tier)
        validation = table.get("validation")
        if validation is not None:
            self.typed(validation, str, where + "validation", "ev, ov or dv")
            if validation not in VALIDATION_LEVELS:
                raise self.fail(where + "validation", f"unknown validation level "
                                f"{validation!r} (expected {', '.join(VALIDATION_LEVELS)})")
        wildcard = self.typed(table.get("wildcard", False), bool, where + "wildcard",
                              "true or false")
        product_end_raw = table.get("product_end")
        product_end = (None if product_end_raw is None
                       else self.day(product_end_raw, where + "product_end"))
        if product_end is not None and not category.provider_issued:
            raise self.fail(where + "product_end",
                            "Art.8 abolition applies to category I/II items only")
        return Item(
            handle=handle, name_ja=name_ja, name_en=name_en, category=category, ca=ca,
            tiers=tuple(sorted(tiers, key=TIERS_ASCENDING.index)), validation=validation,
            wildcard=wildcard, product_end=product_end,
        )
