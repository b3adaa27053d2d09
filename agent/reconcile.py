"""Make the ledger's open sightings say what is on disk, after any restart or lost event.

The daemon's index of what it read says what is in the stores now; the ledger's ``sightings``
say what it was last told. They drift apart whenever the daemon was not watching — killed,
stopped cleanly, or the host rebooted while certbot ran — and whenever the ledger was replaced
under it: a file deleted, shrunk or turned to garbage meanwhile stays "seen" forever. After
every full scan the daemon compares the two for its own host and its own stores and reports the
difference (:meth:`agent.storesync.StoreSync.reconcile`). This module holds the comparison; it
decides, it does not write.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

__all__ = ["Reconciliation", "SightingSource", "plan_reconciliation"]


class SightingSource(Protocol):
    """What the ledger must answer for reconciliation (``policy.ledger.Ledger`` does)."""

    def open_sightings(self, host: str) -> Iterable[tuple[str, int, str]]:
        """``(location, index, sha256)`` of every certificate currently seen on ``host``."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Reconciliation:
    gone: tuple[str, ...]
    """Locations the ledger still shows but that hold no certificate now (deleted, turned to
    garbage, unreadable, out of the link policy): report them gone."""
    refresh: tuple[str, ...]
    """Locations that hold fewer certificates than the ledger shows (a shrunk bundle): report
    the place gone, then what is there now."""
    report: tuple[str, ...]
    """Locations whose certificates the ledger does not show as they are (another certificate
    at a position, a position missing, a ledger replaced under the daemon): report them."""
    rebind: tuple[str, ...] = ()
    """Locations reported again so that the ledger compares the binding they are seen with
    (after a start, or a reload that changed their store's binding); the ledger records
    nothing for those whose binding did not change."""

    def __bool__(self) -> bool:
        return bool(self.gone or self.refresh or self.report or self.rebind)


def plan_reconciliation(
    sightings: Iterable[tuple[str, int, str]],
    *,
    current: Mapping[str, Mapping[int, str]],
    in_scope: Callable[[str], bool],
    pending: Callable[[str], bool],
    rebind: Callable[[str], bool] | None = None,
    current_rows: Iterable[tuple[str, int, str]] | None = None,
) -> Reconciliation:
    """Compare the ledger's ``sightings`` with ``current`` (location -> index -> sha256 of what
    the daemon read, for every indexed location of its stores).

    ``in_scope(location)`` says whether a location belongs to a configured store (sightings
    elsewhere — another store, removed from the configuration — are left alone);
    ``pending(location)`` whether it is waiting to be read again (a certbot set that did not
    agree yet, a file replaced mid-read): those are decided when they are read, not now;
    ``rebind(location)`` whether its store's binding may differ from the one the ledger was
    told (``None``: no store's can). ``current_rows``: the ``(location, index, sha256)`` of
    every certificate in ``current``, if the caller has them cheaper than ``current.items()``.

    Row against row, as sets: after a restart 100,000 sightings agree with the index, and
    what agrees costs a set lookup, not Python calls per location; only the locations where
    the two differ are looked at one by one (and asked ``in_scope`` and ``pending``).
    """
    unmatched = set(sightings)
    """Sightings the index does not show as they are: at the end, only those."""
    if current_rows is None:
        current_rows = ((location, index, sha) for location, now in current.items()
                        for index, sha in now.items())
    differ: set[str] = set()
    """Locations holding a certificate the ledger does not show there."""
    holding: set[str] | None = set() if rebind is not None else None
    """Locations holding a certificate (wanted only for ``rebind``)."""
    for row in current_rows:
        if row in unmatched:
            unmatched.remove(row)
        else:
            differ.add(row[0])
        if holding is not None:
            holding.add(row[0])
    sighted: dict[str, set[int]] = {}
    """Location -> the positions of its sightings the index does not match."""
    for location, index, _ in unmatched:
        sighted.setdefault(location, set()).add(index)
    del unmatched
    gone: list[str] = []
    refresh: list[str] = []
    report: list[str] = []
    candidates = differ.union(sighted)
    for location in candidates:
        if not in_scope(location) or pending(location):
            continue
        positions = sighted.get(location)
        if positions is None:
            report.append(location)  # not shown at all, or grown, or another certificate
            continue
        now = current.get(location)
        if not now:
            gone.append(location)
        elif any(index not in now for index in positions):
            refresh.append(location)
        else:
            report.append(location)
    again: list[str] = []
    if rebind is not None and holding is not None:
        # What agrees row for row (the ledger shows it as it is), for the ledger to compare
        # the binding it was seen with.
        # (``rebind`` first: after a first start it is false for every location the start
        # just reported, which is all of them, and it is the cheapest of the three)
        for location in holding - candidates:
            if rebind(location) and in_scope(location) and not pending(location):
                again.append(location)
    return Reconciliation(gone=tuple(sorted(gone)), refresh=tuple(sorted(refresh)),
                          report=tuple(sorted(report)), rebind=tuple(sorted(again)))
