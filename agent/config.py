"""The configuration file: one TOML file, every key validated, every default embedded.

A mistyped key is the classic way a daemon silently does the wrong thing for months (``escrw =
true`` escrows nothing), so unknown keys and wrong types are errors that name the file and the
key, e.g. ``config.toml: agent.stores[1].tier: unknown tier "7m": expected one of 6m, 1y, 2y,
3y, unlimited``. Store indexes count from 0, the way TOML arrays are indexed.

Everything runs with no configuration at all: the embedded defaults watch the certbot layout
``/etc/letsencrypt/live`` (following its links into ``/etc/letsencrypt/archive``).
``/etc/ssl/certs`` is deliberately *not* a default store: it is the system's CA trust store,
hundreds of root certificates that are not server certificates under any contract; watching it
would fill the ledger with unbound CA certificates and bury the findings that matter.
"""

from __future__ import annotations

import json
import os
import re
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from policy.category import Category
from policy.errors import LedgerError
from policy.intake import Binding
from policy.paths import LedgerLocation, default_ledger_path, ledger_display, ledger_location
from policy.periods import DEFAULT_PERIOD_RULE, PeriodRule
from policy.settings import PolicySettings
from policy.storage import dsn_has_password
from policy.tiers import Tier
from policy.tomlparse import TomlSyntaxError, parse_toml
from vault.secretfile import SecretFileError, read_secret_file
from vault.store import default_vault_path

from .errors import ConfigError
from .monitoring import ExpiryWindows

__all__ = [
    "CONFIG_KEY",
    "DEFAULT_STORES",
    "MAX_CONFIG_BYTES",
    "OBSERVERS",
    "AgentConfig",
    "Config",
    "PolicyConfig",
    "StoreConfig",
    "VaultConfig",
    "config_from_raw",
    "default_config_paths",
    "default_ledger_path",
    "default_vault_path",
    "load_config",
    "load_raw_config",
    "nested_stores",
    "read_config_file",
    "refuse_readable_secrets",
    "root_config",
    "within_store",
]

LOG_FORMATS = ("text", "json")
OBSERVERS = ("auto", "inotify", "polling")
KEY_SOURCES = ("keyring", "credential", "key-file", "passphrase")
DEFAULT_MAX_FILE_SIZE = 10 * 1024 * 1024
MAX_CONFIG_BYTES = 1024 * 1024
"""A configuration file larger than this is refused, not read: one is a few KiB, and a bound
keeps a wrong ``--config`` (a log file, a disk image) from being read whole into memory."""


def default_config_paths() -> tuple[Path, ...]:
    xdg = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return (Path(xdg) / "certescrow" / "config.toml", Path("/etc/certescrow/config.toml"))


def _first_existing(paths: Sequence[Path]) -> Path | None:
    """The first of ``paths`` that exists, whatever it is: a FIFO or a directory where the
    configuration belongs is refused when it is read (:func:`read_config_file`), not passed
    over, or the agent would run with another configuration than the one meant to be there.
    A directory on the way that cannot be searched (an unreadable ``~/.config``) is an error
    naming it, for the same reason."""
    for candidate in paths:
        try:
            os.stat(candidate)  # (a FIFO is only looked at here, never opened)
        except FileNotFoundError:
            continue
        except NotADirectoryError:
            continue
        except OSError as exc:
            blocked = _first_unsearchable(candidate)
            raise ConfigError(
                f"{blocked}: cannot look for the configuration file {candidate}: "
                f"{exc.strerror}; make it readable (and searchable) for this user, or name a "
                "file with --config or $CERTESCROW_CONFIG") from None
        return candidate
    return None


def _first_unsearchable(path: Path) -> Path:
    """The outermost directory of ``path`` this process may not search (or ``path``)."""
    for parent in reversed(path.parents):
        if os.path.isdir(parent) and not os.access(parent, os.X_OK):
            return parent
    return path


def read_config_file(path: Path) -> dict[str, Any]:
    """The parsed TOML of the configuration file ``path``: the agent's (``--config``, the
    default locations) and the policy service's (``policy serve --config``) alike.

    Read as the vault reads its small files (:func:`vault.secretfile.read_secret_file`): opened
    without blocking and checked on the open descriptor, so ``/dev/zero`` is not read until
    memory runs out and a FIFO does not hang the command; a regular file only, at most
    :data:`MAX_CONFIG_BYTES`. Every failure is a :class:`ConfigError` naming the file:
    unreadable, not a regular file, too large, not UTF-8 (TOML is UTF-8; a Shift_JIS file is a
    realistic mistake here), not TOML."""
    try:
        data = read_secret_file(path, what="configuration file", max_bytes=MAX_CONFIG_BYTES)
    except SecretFileError as exc:  # its message names the file, never its content
        raise ConfigError(str(exc)) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise ConfigError(
            f"{path}: not UTF-8 (byte 0x{data[exc.start]:02x} on line {line}): a configuration "
            "file must be UTF-8; convert it, e.g. `iconv -f SHIFT_JIS -t UTF-8`") from None
    try:
        return parse_toml(text)
    except TomlSyntaxError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def load_raw_config(path: Path | None) -> tuple[dict[str, Any], Path | None]:
    """The parsed TOML of ``path`` (or of the first default path that exists) and the path used;
    ``({}, None)`` when there is no configuration file at all. Failures as
    :func:`read_config_file`."""
    if path is None:
        path = _first_existing(default_config_paths())
        if path is None:
            return {}, None
    return read_config_file(path), path


# ------------------------------------------------------------------------------ typed values


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreConfig:
    """One ``[[agent.stores]]`` table: a directory to watch and what its certificates are."""

    path: Path
    follow_links_into: tuple[Path, ...] = ()
    """Roots a symlink inside the store may point into (the store itself is always allowed)."""
    category: Category | None = None
    item: str | None = None
    tier: Tier | None = None
    contract: str | None = None
    match_by_san: bool = False
    escrow: bool = False
    """Art.4(7): escrow private keys found here, with their certificates, into the vault."""
    pkcs12_passwords: tuple[str, ...] = field(default=(), repr=False)
    pkcs12_password_vault_ids: tuple[str, ...] = ()
    binding: Binding = field(init=False, repr=False, compare=False)
    """Made once: the classification remembers what it said of a certificate shape for one
    binding *object* (policy/classification.py), so a binding made afresh for every file
    never met what the store's last file taught it."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "binding", Binding(
            contract_id=self.contract, category=self.category, item=self.item,
            tier=self.tier, match_by_san=self.match_by_san))

    @property
    def allowed_roots(self) -> tuple[Path, ...]:
        return self.follow_links_into

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "follow_links_into": [str(p) for p in self.follow_links_into],
            "category": self.category.value if self.category else "",
            "item": self.item or "",
            "tier": self.tier.value if self.tier else "",
            "contract": self.contract or "",
            "match_by_san": self.match_by_san,
            "escrow": self.escrow,
            # Secrets are never printed: only how many there are.
            "pkcs12_passwords": ["***"] * len(self.pkcs12_passwords),
            "pkcs12_password_vault_ids": list(self.pkcs12_password_vault_ids),
        }


def _certbot_store(path: str) -> StoreConfig:
    live = Path(path)
    return StoreConfig(path=live, follow_links_into=(live.parent / "archive",))


DEFAULT_STORES: tuple[StoreConfig, ...] = (_certbot_store("/etc/letsencrypt/live"),)


def within_store(root: Path | str, path: str) -> bool:
    """Whether ``path`` is ``root`` or lies below it, on a path-component boundary
    (``/srv/live`` holds ``/srv/live/a.pem``, not ``/srv/live2/a.pem``)."""
    top = str(root).rstrip("/")
    return path == top or path.startswith(top + "/")


def nested_stores(stores: Sequence[StoreConfig], *,
                  resolve: Callable[[Path], Path] = lambda path: path,
                  ) -> tuple[tuple[StoreConfig, StoreConfig], ...]:
    """Each ``(outer, inner)`` pair of stores whose ``inner`` root lies inside ``outer``'s.

    A file belongs to the innermost store holding it (the longest root), whatever the order of
    the ``[[agent.stores]]`` blocks: the inner store's binding, escrow and passwords apply to
    the files under it, and the outer store's walk leaves them to it, so each file is observed
    once. Nesting is legitimate (a contract for one directory of a larger store) but easy to
    write by accident, so ``agent check-config`` names every pair. Outermost first for each
    inner store; found through each root's parents, not by comparing every pair."""
    by_path: dict[Path, StoreConfig] = {}
    for store in stores:
        by_path.setdefault(store.path, store)
    pairs = {(id(outer), id(inner)): (outer, inner) for inner in stores
             for parent in reversed(inner.path.parents)
             if (outer := by_path.get(parent)) is not None}
    # ``resolve`` (the daemon's check: os.path.realpath) finds a store whose root is a link
    # into another one's, which the daemon treats as nested too
    real = {id(store): resolve(store.path) for store in stores}
    by_real: dict[Path, StoreConfig] = {}
    for store in stores:
        by_real.setdefault(real[id(store)], store)
    for inner in stores:
        for parent in reversed(real[id(inner)].parents):
            outer = by_real.get(parent)
            if outer is not None and outer is not inner:
                pairs.setdefault((id(outer), id(inner)), (outer, inner))
    return tuple(pairs.values())


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentConfig:
    host: str
    log_format: str = "text"
    max_file_size: int = DEFAULT_MAX_FILE_SIZE
    quiet_period_ms: int = 100
    """Events on a path are coalesced until it has been quiet this long. certbot relinks its
    four files within milliseconds, and a set whose key and certificate still disagree is
    re-checked anyway, so 100 ms is enough; it is also the floor of the daemon's latency
    (target: change reported within 200 ms at p95, see BENCHMARKS.md)."""
    resync_interval_s: int = 3600
    """A full rescan this often catches anything the observers missed; 0 disables it."""
    observer: str = "auto"
    expiry_warning_days: int = 28
    """``expires-soon`` is a warning with this many Asia/Tokyo days left or fewer (inclusive)."""
    expiry_critical_days: int = 14
    """...and critical with this many or fewer (inclusive); expired is always critical."""
    stores: tuple[StoreConfig, ...] = DEFAULT_STORES

    @property
    def windows(self) -> ExpiryWindows:
        return ExpiryWindows(warning_days=self.expiry_warning_days,
                             critical_days=self.expiry_critical_days)

    def to_json(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "log_format": self.log_format,
            "max_file_size": self.max_file_size,
            "quiet_period_ms": self.quiet_period_ms,
            "resync_interval_s": self.resync_interval_s,
            "observer": self.observer,
            "expiry_warning_days": self.expiry_warning_days,
            "expiry_critical_days": self.expiry_critical_days,
            "stores": [s.to_json() for s in self.stores],
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyConfig:
    ledger: LedgerLocation
    catalogue: Path | None
    settings: PolicySettings

    @property
    def state_dir(self) -> Path:
        """Where the daemon keeps its own state (read index, outbox): beside an SQLite
        ledger; with a PostgreSQL ledger, the per-user state directory."""
        if isinstance(self.ledger, Path):
            return self.ledger.parent
        return default_ledger_path().parent

    def to_json(self) -> dict[str, Any]:
        prices = self.settings.prices
        return {
            "ledger": ledger_display(self.ledger),
            "catalogue": str(self.catalogue) if self.catalogue else "",
            "notice_lead_days": self.settings.notice_lead_days,
            "answer_deadline_days": self.settings.answer_deadline_days,
            "period_rule": self.settings.period_rule.value,
            "prices": {
                "change_fee": prices.change_fee,
                "items": {
                    handle: {"initial": {t.value: v for t, v in p.initial.items()},
                             "agency": p.agency}
                    for handle, p in prices.items.items()
                },
            },
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class VaultConfig:
    path: Path
    key_source: str = "keyring"
    key_file: Path | None = None
    credential: str = "certescrow-vault-key"
    keyring_service: str = "certescrow"
    keyring_username: str = "vault-master-key"

    def as_settings(self) -> dict[str, Any]:
        """The ``[vault]`` mapping ``vault.key_source_from_settings`` reads."""
        return {
            "path": str(self.path),
            "key_source": self.key_source,
            "key_file": str(self.key_file) if self.key_file else "",
            "credential": self.credential,
            "keyring_service": self.keyring_service,
            "keyring_username": self.keyring_username,
        }

    def to_json(self) -> dict[str, Any]:
        return self.as_settings()


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """The whole validated configuration; ``source`` is the file it came from (``None`` =
    embedded defaults only)."""

    policy: PolicyConfig
    vault: VaultConfig
    agent: AgentConfig
    source: Path | None = None
    report: Mapping[str, Any] = field(default_factory=dict)
    """The ``[report]`` table as written (read by :mod:`agent.fleet_client`), kept so that
    ``check-config`` prints it back."""

    def to_json(self) -> dict[str, Any]:
        return {
            "source": str(self.source) if self.source else None,
            "policy": self.policy.to_json(),
            "vault": self.vault.to_json(),
            "agent": self.agent.to_json(),
        }

    def to_toml(self) -> str:
        """The effective configuration as TOML that means the same when read back (defaults
        filled in; ``stores = []`` when nothing is watched). Secrets are not printed:
        ``pkcs12_passwords`` becomes a comment saying how many there are, so that file alone
        reads back without them."""
        data = self.to_json()
        policy = dict(data["policy"])
        prices = policy.pop("prices")
        agent = dict(data["agent"])
        stores = agent.pop("stores")
        out: list[str] = []
        _toml_table(out, "policy", policy)
        items = prices.pop("items")
        _toml_table(out, "policy.prices", {k: v for k, v in prices.items() if v is not None})
        for handle, item in items.items():
            entry = {"initial": item["initial"], **({"agency": item["agency"]}
                                                    if item.get("agency") is not None else {})}
            _toml_table(out, f"policy.prices.items.{_toml_key(handle)}", entry)
        _toml_table(out, "vault", data["vault"])
        if not stores:
            agent["stores"] = []
        _toml_table(out, "agent", agent)
        for store, config in zip(stores, self.agent.stores, strict=True):
            shown = {k: v for k, v in store.items() if k != "pkcs12_passwords"}
            _toml_table(out, "agent.stores", shown, array=True)
            if config.pkcs12_passwords:
                out.append(f"# pkcs12_passwords: {len(config.pkcs12_passwords)} set in "
                           f"{self.source} (not printed)")
        if self.report:
            _toml_table(out, "report", dict(self.report))
        return "\n".join(out).lstrip("\n") + "\n"


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else json.dumps(key, ensure_ascii=False)


def _toml_value(value: Any) -> str:
    """A TOML value: JSON's strings, numbers, booleans and arrays are TOML's too; tables become
    inline tables. ``None`` has no TOML form and is left out by the callers."""
    if isinstance(value, Mapping):
        inner = ", ".join(f"{_toml_key(str(k))} = {_toml_value(v)}"
                          for k, v in value.items() if v is not None)
        return "{ " + inner + " }" if inner else "{}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Path):
        value = str(value)
    return json.dumps(value, ensure_ascii=False)


def _toml_table(out: list[str], name: str, table: Mapping[str, Any], *,
                array: bool = False) -> None:
    out.append("")
    out.append(f"[[{name}]]" if array else f"[{name}]")
    for key, value in table.items():
        if value is None:
            out.append(f"# {key} is not set")
        else:
            out.append(f"{_toml_key(key)} = {_toml_value(value)}")


# ------------------------------------------------------------------------------ validation


class _Checker:
    """Reads typed values out of raw TOML tables, raising ConfigError naming file and key."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, reason: str) -> ConfigError:
        return ConfigError(f"{self.source}: {key}: {reason}")

    def table(self, raw: Any, key: str, allowed: Sequence[str]) -> dict[str, Any]:
        if not isinstance(raw, Mapping):
            raise self.fail(key, f"expected a table, got {_type_name(raw)}")
        for name in raw:
            if name not in allowed:
                hint = ", ".join(allowed)
                raise self.fail(f"{key}.{name}" if key else name,
                                f"unknown key (known keys here: {hint})")
        return dict(raw)

    def string(self, raw: Mapping[str, Any], key: str, name: str, default: str) -> str:
        value = raw.get(name, default)
        if not isinstance(value, str):
            raise self.fail(f"{key}.{name}", f"expected a string, got {_type_name(value)}")
        return value

    def choice(self, raw: Mapping[str, Any], key: str, name: str, default: str,
               choices: Sequence[str]) -> str:
        value = self.string(raw, key, name, default)
        if value not in choices:
            raise self.fail(f"{key}.{name}",
                            f'unknown value "{value}": expected one of {", ".join(choices)}')
        return value

    def integer(self, raw: Mapping[str, Any], key: str, name: str, default: int, *,
                minimum: int = 0) -> int:
        value = raw.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(f"{key}.{name}", f"expected an integer, got {_type_name(value)}")
        if value < minimum:
            raise self.fail(f"{key}.{name}", f"must be at least {minimum}, got {value}")
        return value

    def boolean(self, raw: Mapping[str, Any], key: str, name: str, default: bool) -> bool:
        value = raw.get(name, default)
        if not isinstance(value, bool):
            raise self.fail(f"{key}.{name}", f"expected true or false, got {_type_name(value)}")
        return value

    def strings(self, raw: Mapping[str, Any], key: str, name: str) -> tuple[str, ...]:
        value = raw.get(name, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(f"{key}.{name}", "expected a list of strings")
        return tuple(value)


def _type_name(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "a list", dict: "a table"}.get(type(value), type(value).__name__)


def _path(text: str) -> Path:
    return Path(os.path.expanduser(text))


_TOP_KEYS = ("policy", "vault", "agent", "report")  # [report]: agent/fleet_client.py
_POLICY_KEYS = ("ledger", "catalogue", "notice_lead_days", "answer_deadline_days", "prices",
                "period_rule")
_PRICES_KEYS = ("change_fee", "items")
_ITEM_PRICE_KEYS = ("initial", "agency")
_VAULT_KEYS = ("path", "key_source", "key_file", "credential", "keyring_service",
               "keyring_username")
_AGENT_KEYS = ("host", "log_format", "max_file_size", "quiet_period_ms", "resync_interval_s",
               "expiry_warning_days", "expiry_critical_days",
               "observer", "stores")
_STORE_KEYS = ("path", "follow_links_into", "category", "item", "tier", "contract",
               "match_by_san", "escrow", "pkcs12_passwords", "pkcs12_password_vault_ids")


def _policy(check: _Checker, raw: Any) -> PolicyConfig:
    table = check.table(raw, "policy", _POLICY_KEYS)
    ledger = check.string(table, "policy", "ledger", "")
    catalogue = check.string(table, "policy", "catalogue", "")
    check.integer(table, "policy", "notice_lead_days", 90)
    check.integer(table, "policy", "answer_deadline_days", 30)
    check.choice(table, "policy", "period_rule", DEFAULT_PERIOD_RULE.value,
                 [r.value for r in PeriodRule])
    prices = check.table(table.get("prices", {}), "policy.prices", _PRICES_KEYS)
    if "change_fee" in prices:
        check.integer(prices, "policy.prices", "change_fee", 0)
    items = prices.get("items", {})
    if not isinstance(items, Mapping):
        raise check.fail("policy.prices.items", f"expected a table, got {_type_name(items)}")
    for handle, item in items.items():
        key = f'policy.prices.items."{handle}"'
        item_table = check.table(item, key, _ITEM_PRICE_KEYS)
        check.table(item_table.get("initial", {}), f"{key}.initial",
                    [t.value for t in Tier])
    try:
        settings = PolicySettings.from_mapping(table)
    except ValueError as exc:  # PolicySettings names the key in its message
        raise ConfigError(f"{check.source}: {exc}") from None
    try:
        location = ledger_location(ledger) if ledger else default_ledger_path()
    except LedgerError as exc:  # its message names the key and never repeats the value
        raise ConfigError(f"{check.source}: policy.ledger: {exc}") from None
    return PolicyConfig(ledger=location,
                        catalogue=_path(catalogue) if catalogue else None,
                        settings=settings)


def _vault(check: _Checker, raw: Any) -> VaultConfig:
    table = check.table(raw, "vault", _VAULT_KEYS)
    path = check.string(table, "vault", "path", "")
    key_file = check.string(table, "vault", "key_file", "")
    key_source = check.choice(table, "vault", "key_source", "keyring", KEY_SOURCES)
    if key_source == "key-file" and not key_file:
        raise check.fail("vault.key_file", 'required when key_source = "key-file"')
    credential = check.string(table, "vault", "credential", "certescrow-vault-key")
    if not credential or "/" in credential:
        raise check.fail("vault.credential",
                         f'"{credential}" is not a credential name (a file name, no "/")')
    return VaultConfig(
        path=_path(path) if path else default_vault_path(),
        key_source=key_source,
        key_file=_path(key_file) if key_file else None,
        credential=credential,
        keyring_service=check.string(table, "vault", "keyring_service", "certescrow"),
        keyring_username=check.string(table, "vault", "keyring_username", "vault-master-key"),
    )


def _store(check: _Checker, raw: Any, key: str) -> StoreConfig:
    table = check.table(raw, key, _STORE_KEYS)
    if "path" not in table:
        raise check.fail(f"{key}.path", "missing: every store needs a directory path")
    path_text = check.string(table, key, "path", "")
    if not path_text:
        raise check.fail(f"{key}.path", "must not be empty")
    path = _path(path_text)
    if not path.is_absolute():
        raise check.fail(f"{key}.path", f'"{path_text}" is not an absolute path')
    if "follow_links_into" in table:
        follow = tuple(_path(p) for p in check.strings(table, key, "follow_links_into"))
        for root, text in zip(follow, table["follow_links_into"], strict=True):
            if not root.is_absolute():
                raise check.fail(f"{key}.follow_links_into", f'"{text}" is not an absolute path')
    elif path.name == "live":
        # certbot: live/<name>/cert.pem -> ../../archive/<name>/cert1.pem
        follow = (path.parent / "archive",)
    else:
        follow = ()

    category: Category | None = None
    text = check.string(table, key, "category", "")
    if text:
        try:
            category = Category.parse(text)
        except ValueError:
            raise check.fail(f"{key}.category",
                             f'unknown category "{text}": expected one of I, II, III') from None
    tier: Tier | None = None
    text = check.string(table, key, "tier", "")
    if text:
        try:
            tier = Tier.parse(text)
        except ValueError:
            valid = ", ".join(t.value for t in Tier)
            raise check.fail(f"{key}.tier",
                             f'unknown tier "{text}": expected one of {valid}') from None
    item = check.string(table, key, "item", "") or None
    contract = check.string(table, key, "contract", "") or None
    return StoreConfig(
        path=path,
        follow_links_into=follow,
        category=category,
        item=item,
        tier=tier,
        contract=contract,
        match_by_san=check.boolean(table, key, "match_by_san", False),
        escrow=check.boolean(table, key, "escrow", False),
        pkcs12_passwords=check.strings(table, key, "pkcs12_passwords"),
        pkcs12_password_vault_ids=check.strings(table, key, "pkcs12_password_vault_ids"),
    )


def _agent(check: _Checker, raw: Any, *, hostname: Callable[[], str]) -> AgentConfig:
    table = check.table(raw, "agent", _AGENT_KEYS)
    stores: tuple[StoreConfig, ...] = DEFAULT_STORES
    if "stores" in table:
        raw_stores = table["stores"]
        if not isinstance(raw_stores, list):
            raise check.fail("agent.stores",
                             "expected an array of tables ([[agent.stores]] blocks)")
        stores = tuple(_store(check, s, f"agent.stores[{i}]") for i, s in enumerate(raw_stores))
        seen: dict[Path, int] = {}
        for i, store in enumerate(stores):
            if store.path in seen:
                raise check.fail(f"agent.stores[{i}].path",
                                 f'"{store.path}" is already agent.stores[{seen[store.path]}]')
            seen[store.path] = i
    warning_days = check.integer(table, "agent", "expiry_warning_days", 28)
    critical_days = check.integer(table, "agent", "expiry_critical_days", 14)
    if critical_days > warning_days:
        raise check.fail("agent.expiry_critical_days",
                         f"{critical_days} is more than expiry_warning_days ({warning_days}): "
                         "the critical window must lie inside the warning window")
    return AgentConfig(
        host=check.string(table, "agent", "host", "") or hostname(),
        log_format=check.choice(table, "agent", "log_format", "text", LOG_FORMATS),
        max_file_size=check.integer(table, "agent", "max_file_size", DEFAULT_MAX_FILE_SIZE,
                                    minimum=1),
        quiet_period_ms=check.integer(table, "agent", "quiet_period_ms", 100),
        resync_interval_s=check.integer(table, "agent", "resync_interval_s", 3600),
        observer=check.choice(table, "agent", "observer", "auto", OBSERVERS),
        expiry_warning_days=warning_days,
        expiry_critical_days=critical_days,
        stores=stores,
    )


def _check_items(check: _Checker, config: Config) -> None:
    """Store ``item`` handles must exist in the (possibly amended) catalogue: a typo would
    otherwise bind every certificate of the store to nothing."""
    if config.policy.catalogue is None and not any(s.item for s in config.agent.stores):
        return  # nothing to check against, and the embedded catalogue is tested
    try:
        from policy.catalogue import load_catalogue  # optional until it lands
    except ImportError:  # pragma: no cover - the catalogue module is another slice's
        return
    from policy.errors import PolicyError

    try:
        catalogue = load_catalogue(config.policy.catalogue)
    except PolicyError as exc:
        raise check.fail("policy.catalogue", str(exc)) from None
    for i, store in enumerate(config.agent.stores):
        if store.item and store.item != "byo" and store.item not in catalogue.items:
            valid = ", ".join(sorted(catalogue.items))
            raise check.fail(f"agent.stores[{i}].item",
                             f'unknown item "{store.item}": expected one of {valid}')


def config_from_raw(raw: Mapping[str, Any], *, source: Path | None = None,
                    hostname: Callable[[], str] = socket.gethostname) -> Config:
    """Validate a parsed TOML document into a :class:`Config`; raises :class:`ConfigError`
    naming ``source`` (or ``<defaults>``) and the offending key."""
    check = _Checker(str(source) if source is not None else "<defaults>")
    if isinstance(raw, Mapping) and "serve" in raw:
        # The service's file ([serve] and its [vault]) given where the agent's is read: its
        # [vault] would be taken and its [serve] ledger not, so a desk command would sign
        # into another ledger than the service's. Say which option takes it.
        raise check.fail("serve", "a [serve] table is the service's configuration, which the "
                         "root --config does not read: give this file to `policy serve "
                         "--config`, or to a fleet command's --serve-config (its [serve] "
                         "ledger and [vault]); `fleet ca init` and `fleet server-cert` take "
                         "its vault as --vault and --key-file")
    top = check.table(raw, "", _TOP_KEYS)
    config = Config(
        policy=_policy(check, top.get("policy", {})),
        vault=_vault(check, top.get("vault", {})),
        agent=_agent(check, top.get("agent", {}), hostname=hostname),
        source=source,
        report=dict(top.get("report", {})) if isinstance(top.get("report"), Mapping) else {},
    )
    _check_items(check, config)
    return config


CONFIG_KEY = "validated_config"
"""Where the root command keeps the validated :class:`Config` in ``ctx.obj``."""


def load_config(path: Path | None = None) -> Config:
    """Read and validate ``path`` (``None``: the first default path that exists, else the
    embedded defaults)."""
    raw, used = load_raw_config(path)
    config = config_from_raw(raw, source=used)
    if used is not None:
        refuse_readable_secrets(config, used)
    return config


def root_config(obj: Any) -> Config:
    """The configuration the root command validated (``obj`` is the root context's ``obj``);
    the embedded defaults when a command runs without the root (a test invoking a group)."""
    if isinstance(obj, dict) and isinstance(obj.get(CONFIG_KEY), Config):
        config: Config = obj[CONFIG_KEY]
        return config
    return config_from_raw({})


def secret_readers(st: os.stat_result) -> str | None:
    """Who, besides this process, may read a file holding a secret: others, or a group this
    process does not run as (``root:certescrow 0640`` gives the service's own group the file
    and is accepted); ``None`` when nobody else."""
    mode = st.st_mode & 0o777
    if mode & 0o007:
        return "others"
    if mode & 0o070 and st.st_gid != os.getegid():
        return f"group {st.st_gid}, which this process does not run as"
    return None


def refuse_readable_secrets(config: Config, path: Path) -> None:
    """PKCS#12 passwords, or a PostgreSQL ledger's password, written into the configuration
    make it a secret: refuse to use it while others can read it, or a group other than this
    process's own (``root:certescrow 0640`` is how the service user is given it, and is
    accepted for that user)."""
    holders = [f"agent.stores[{index}].pkcs12_passwords"
               for index, store in enumerate(config.agent.stores) if store.pkcs12_passwords]
    ledger = config.policy.ledger
    if isinstance(ledger, str) and dsn_has_password(ledger):
        holders.append("policy.ledger")
    if not holders:
        return
    st = path.stat()
    mode = st.st_mode & 0o777
    who = secret_readers(st)
    if who is None:
        return
    raise ConfigError(
        f"{path}: {holders[0]} holds passwords but the file is readable by {who} "
        f"(mode {mode:04o}): run `chmod 600 {path}` (or `chmod 640` with the service's own "
        "group), or keep the passwords out of it (pkcs12_password_vault_ids; for PostgreSQL, "
        "~/.pgpass or a pg_service.conf entry)"
    )
