"""The store bindings the desk assigned to this host, on the agent's side.

``certescrow fleet assign HOST STORE --contract ID …`` records a binding in the service's
registry; the reporting agent fetches its host's bindings (``GET /v1/bindings``) when it starts
and with every heartbeat, keeps the last set it fetched in its state directory
(:data:`BINDINGS_NAME`), and applies it to its stores exactly as a binding edited into the
configuration and reloaded with SIGHUP is applied (the daemon's reload: the stores whose
binding changed are re-checked and their certificates reported again with the new binding).

Why a file: a host restarted while the service is down must go on reporting its certificates
under the contract the desk bound them to, not fall back to "unbound" until the service
answers. The file is written whole (temporary file, fsync, rename), so a crash leaves the old
set or the new one.

Precedence: **the desk's assignment wins** over a binding in the local configuration (the desk
owns the contract; a local binding is what an operator wrote before the host joined the fleet),
and a warning names every store whose local binding was overridden. The desk's binding replaces
the local one whole (contract, category, item, tier, match_by_san); the store's other settings
(escrow, PKCS#12 passwords, followed links) stay local. A store the desk assigned that this host
does not watch is logged and ignored: which directories are watched is the host's decision.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from policy.fleet_wire import bindings_body, read_bindings
from policy.intake import Binding

from .config import Config
from .logs import EventLog

__all__ = ["BINDINGS_NAME", "AssignedBindings", "apply_assigned", "describe"]

BINDINGS_NAME = "fleet-bindings.json"
"""The last set fetched from the service, in the agent's state directory."""


def describe(binding: Binding) -> str:
    """One short line for a log: what a binding says."""
    if binding.is_empty:
        return "unbound"
    parts = [f"contract {binding.contract_id}" if binding.contract_id else "no contract"]
    parts += [f"{name} {value}" for name, value in (
        ("item", binding.item), ("tier", binding.tier and binding.tier.value),
        ("category", binding.category and binding.category.value)) if value]
    if binding.match_by_san:
        parts.append("match by SAN")
    return ", ".join(parts)


class AssignedBindings:
    """The desk's bindings for this host: the last set fetched, saved in ``path``.

    Thread-safe: the fleet sender thread :meth:`update`\\ s it, the daemon's main thread reads
    :meth:`current` when it (re)loads its configuration."""

    def __init__(self, path: Path, *, host: str, log: EventLog | None = None) -> None:
        self.path = path
        self.host = host
        self.log = log if log is not None else EventLog()
        self._lock = threading.Lock()
        self._stores: dict[str, Binding] | None = None

    def load(self) -> None:
        """Read the saved set (a missing file: none fetched yet; an unreadable one is logged
        and ignored, the next fetch replaces it)."""
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            stores = read_bindings(raw, host=self.host)
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else str(exc)
            self.log.error("bindings-unreadable", f"{self.path}: the saved bindings from the "
                           f"policy service cannot be read ({reason}); using the "
                           "local configuration's until the service answers")
            return
        with self._lock:
            self._stores = stores
        if stores:
            self.log.info("bindings-saved", f"{len(stores)} store binding(s) assigned by the "
                          f"desk, as last fetched ({self.path})", stores=len(stores))

    def current(self) -> dict[str, Binding] | None:
        """The desk's bindings by store path (``None``: never fetched)."""
        with self._lock:
            return None if self._stores is None else dict(self._stores)

    def update(self, body: Any) -> bool:
        """A fetched answer: checked, saved and logged when it differs from the current set;
        ``True`` when it changed. Raises :class:`policy.fleet_wire.WireError` for a body
        that is not the documented shape (nothing changes then)."""
        stores = read_bindings(body, host=self.host)
        with self._lock:
            before = self._stores
            if before == stores:
                return False
            self._save(stores)
            self._stores = stores
        old = before or {}
        for store in sorted(set(old) | set(stores)):
            was, now = old.get(store, Binding()), stores.get(store, Binding())
            if was != now:
                self.log.info("binding-assigned", f"{store}: the desk's binding is "
                              f"now {describe(now)} (was {describe(was)})",
                              store=store)
        return True

    def _save(self, stores: Mapping[str, Binding]) -> None:
        text = json.dumps(bindings_body(host=self.host, stores=stores), ensure_ascii=True,
                          sort_keys=True)
        tmp = self.path.with_name(self.path.name + ".new")
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="ascii") as out:
                out.write(text)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            # Applied anyway (the service said so); only a restart with the service down
            # would miss them.
            self.log.error("bindings-unsaved", f"{self.path}: cannot save the bindings from "
                           f"the policy service: {exc.strerror}")


def apply_assigned(config: Config, assigned: Mapping[str, Binding] | None,
                   log: EventLog | None = None) -> Config:
    """``config`` with the desk's bindings applied to its stores (see the module docstring
    for the precedence); logs each local binding overridden and each assigned store that is
    not watched here."""
    if not assigned:
        return config
    log = log if log is not None else EventLog()
    by_path = {Path(store): binding for store, binding in assigned.items()}
    stores = []
    for store in config.agent.stores:
        binding = by_path.pop(store.path, None)
        if binding is None:
            stores.append(store)
            continue
        local = store.binding
        if not local.is_empty and local != binding:
            log.warning("binding-overridden", f"{store.path}: the desk's binding "
                        f"({describe(binding)}) overrides the local configuration's "
                        f"({describe(local)})", path=str(store.path))
        stores.append(replace(store, contract=binding.contract_id, category=binding.category,
                              item=binding.item, tier=binding.tier,
                              match_by_san=binding.match_by_san))
    for path in sorted(by_path):
        log.warning("binding-unwatched", f"{path}: the desk assigned a binding "
                    "to a store this host does not watch (add it to [[agent.stores]]); ignored",
                    path=str(path))
    return replace(config, agent=replace(config.agent, stores=tuple(stores)))

