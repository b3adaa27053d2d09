"""The heartbeat's inventory, handed from the daemon's main thread to the fleet sender thread.

The read index (:class:`agent.readindex.PersistentIndex`) belongs to the main thread: it is
mutated there, its SQLite connection is used there, and reading a result back moves entries
of an LRU that the main thread also evicts from. The fleet sender thread
(:class:`agent.fleet_client.OutboxIntake`) therefore never touches it. At heartbeat time the
sender asks for a snapshot (:meth:`InventorySlot.request`); the main thread builds it on its
next loop turn (:meth:`InventorySlot.serve`, called from :meth:`agent.storesync.StoreSync.
process_due`) and publishes an immutable copy; the sender waits a bounded time for it and
otherwise sends the last one published (a main thread busy in a long scan must not hold up
the heartbeat).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

DEFAULT_WAIT_S = 2.0
"""How long the sender waits for a fresh snapshot (the main loop turns at least every 1 s)."""


def _frozen(value: Any) -> Any:
    """A read-only deep copy of JSON-like data (dicts and lists, not recursive on input: the
    inventory is two levels deep and built by :func:`agent.fleet_client.inventory_of`)."""
    if isinstance(value, Mapping):
        return MappingProxyType({str(k): (MappingProxyType(dict(v)) if isinstance(v, Mapping)
                                          else v) for k, v in value.items()})
    return value


class InventorySlot:
    """One snapshot, lock-protected. ``build`` runs only in :meth:`serve` (the main thread);
    the sender thread only calls :meth:`request` and :meth:`latest`."""

    def __init__(self, build: Callable[[], Mapping[str, Any]]) -> None:
        self._build = build
        self._cond = threading.Condition()
        self._wanted = False
        self._generation = 0
        self._latest: Mapping[str, Any] | None = None

    def serve(self) -> bool:
        """Main thread: build and publish a snapshot if one was asked for; ``True`` if so."""
        with self._cond:
            if not self._wanted:
                return False
        snapshot = _frozen(self._build())  # outside the lock: the sender may ask meanwhile
        with self._cond:
            self._latest = snapshot
            self._wanted = False
            self._generation += 1
            self._cond.notify_all()
        return True

    def publish(self) -> None:
        """Main thread: build and publish a snapshot now (e.g. after a full scan)."""
        with self._cond:
            self._wanted = True
        self.serve()

    def request(self, *, wait_s: float = DEFAULT_WAIT_S) -> Mapping[str, Any] | None:
        """Sender thread: ask for a fresh snapshot and wait up to ``wait_s`` for it; returns
        the latest published one (possibly older, or ``None`` before the first)."""
        with self._cond:
            self._wanted = True
            generation = self._generation
            self._cond.wait_for(lambda: self._generation != generation, timeout=wait_s)
            return self._latest

    def latest(self) -> Mapping[str, Any] | None:
        with self._cond:
            return self._latest
