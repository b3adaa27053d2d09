"""The fleet registry: which client certificates the desk issued, which it revoked, which report
batches were recorded, and what each host last said about itself.

It lives in the ledger's database (its own ``fleet_*`` tables) so that every ``policy serve``
instance shares it: the service itself keeps no state, a revocation made with
``certescrow fleet revoke`` is seen by every instance on its next request, and a batch recorded
by one instance is a replay for another.

Why each table:

* ``fleet_certs`` — a client certificate is accepted only when its serial is here and not
  revoked. The TLS layer already proved the fleet CA signed it and that it is in its validity
  period; this adds revocation *without CRLs* (the service asks the database on each request,
  so revocation takes effect on the next request, not at the next CRL refresh).
* ``fleet_batches`` — ``(host, outbox, sequence)`` of every batch recorded. An agent resends a
  batch it got no acknowledgement for; the service finds it here and acknowledges without
  recording anything. ``outbox`` is a random id an agent's outbox is created with, so an agent
  whose outbox was lost and restarts at sequence 1 is not mistaken for a replay. The ledger
  writes and reads it (``Ledger.record_batch``), in the batch's own transaction.
* ``fleet_hosts`` — the last heartbeat: when, the inventory snapshot, the client certificate's
  expiry. ``certescrow fleet hosts`` reads it.
* ``fleet_bindings`` — the store bindings the desk assigned to a host (``GET /v1/bindings``).
* ``fleet_cert_keys`` — the public key (SHA-256 of its SubjectPublicKeyInfo) of each
  certificate: a renewal must bring a new key, and a key whose certificate was revoked (or
  superseded) is never signed again, so a key that may have leaked cannot come back.

**Superseded certificates.** A new certificate for a host (a renewal, or ``fleet sign`` again)
supersedes the host's older ones: they are revoked as of a short grace later (``revoked_utc`` in
the future, default one hour), long enough for the agent to switch connections, and refused from
then on. ``fleet revoke`` revokes them at once, grace or not.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from .errors import LedgerError
from .events import instant_to_text, text_to_instant
from .storage import Storage, is_postgres_dsn, open_storage, refuse_conninfo
from .tokyo import require_aware

__all__ = ["RENEWAL_GRACE", "FleetRegistry", "HostStatus", "IssuedRecord"]

RENEWAL_GRACE = timedelta(hours=1)
"""How long a superseded client certificate stays valid (its agent switches connections)."""

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS fleet_certs (
        serial        TEXT PRIMARY KEY,
        host          TEXT NOT NULL,
        not_before    TEXT NOT NULL,
        not_after     TEXT NOT NULL,
        issued_utc    TEXT NOT NULL,
        revoked_utc   TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS fleet_certs_by_host ON fleet_certs (host)",
    """CREATE TABLE IF NOT EXISTS fleet_batches (
        host          TEXT NOT NULL,
        outbox        TEXT NOT NULL,
        seq           BIGINT NOT NULL,
        recorded      BIGINT NOT NULL,
        received_utc  TEXT NOT NULL,
        PRIMARY KEY (host, outbox, seq)
    )""",
    """CREATE TABLE IF NOT EXISTS fleet_hosts (
        host            TEXT PRIMARY KEY,
        last_seen_utc   TEXT NOT NULL,
        heartbeat_utc   TEXT,
        inventory       TEXT,
        client_serial   TEXT,
        client_not_after TEXT
    )""",
    """CREATE TABLE IF NOT EXISTS fleet_bindings (
        host     TEXT NOT NULL,
        store    TEXT NOT NULL,
        binding  TEXT NOT NULL,
        PRIMARY KEY (host, store)
    )""",
    """CREATE TABLE IF NOT EXISTS fleet_cert_keys (
        serial      TEXT PRIMARY KEY,
        key_sha256  TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS fleet_cert_keys_by_key ON fleet_cert_keys (key_sha256)",
)
_TABLES = ("fleet_certs", "fleet_batches", "fleet_hosts", "fleet_bindings", "fleet_cert_keys")


@dataclass(frozen=True, slots=True, kw_only=True)
class IssuedRecord:
    """A client certificate the desk issued, as the registry knows it."""

    host: str
    serial: str
    not_before_utc: datetime
    not_after_utc: datetime
    key_sha256: str | None = None
    """SHA-256 of the certificate's SubjectPublicKeyInfo (DER), lowercase hex."""


@dataclass(frozen=True, slots=True, kw_only=True)
class HostStatus:
    """One host as ``certescrow fleet hosts`` shows it (``silent`` is computed for ``at``)."""

    host: str
    last_seen_utc: datetime | None
    heartbeat_utc: datetime | None
    inventory: Mapping[str, Any]
    client_not_after_utc: datetime | None
    revoked: bool
    silent: bool
    after_at: tuple[str, ...] = ()
    """The fields (by their JSON names) left out because the registry's value is newer than the
    instant of the listing: see :meth:`known_at`."""

    def known_at(self, at: datetime) -> HostStatus:
        """This host as the registry could tell it at ``at``. It keeps only the last request
        and the last heartbeat, so a value recorded after ``at`` says nothing of ``at``: the
        last request (``last_seen``) and the client certificate it presented, the last
        heartbeat and its inventory are each ``None`` / empty then, named in ``after_at``
        (``fleet hosts`` shows ``after --at`` and ``-`` for them, its ``--json`` ``null``)."""
        require_aware(at, "at")
        after: list[str] = []
        seen, beat = self.last_seen_utc, self.heartbeat_utc
        inventory, client = self.inventory, self.client_not_after_utc
        if seen is not None and seen > at:
            # (the client certificate was the one that request presented)
            seen, client = None, None
            after += ["last_seen", "client_certificate_not_after"]
        if beat is not None and beat > at:
            beat, inventory = None, {}
            after += ["heartbeat", "inventory"]
        if not after:
            return self
        return replace(self, last_seen_utc=seen, heartbeat_utc=beat, inventory=inventory,
                       client_not_after_utc=client, after_at=tuple(sorted(after)))

    def to_json(self) -> dict[str, Any]:
        def text(value: datetime | None) -> str | None:
            return None if value is None else instant_to_text(value)

        return {"host": self.host, "last_seen": text(self.last_seen_utc),
                "heartbeat": text(self.heartbeat_utc),
                "inventory": None if "inventory" in self.after_at else dict(self.inventory),
                "client_certificate_not_after": text(self.client_not_after_utc),
                "revoked": self.revoked, "silent": self.silent,
                "after_at": list(self.after_at)}


def _has_tables(storage: Storage) -> bool:
    """Whether every table the registry reads exists (asked without needing any privilege)."""
    if storage.dialect == "postgresql":
        rows = storage.run("SELECT count(*) FROM pg_catalog.pg_tables WHERE schemaname = "
                           "current_schema() AND tablename = ANY(?)", (list(_TABLES),))
    else:
        rows = storage.run("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND "
                           "name IN (SELECT value FROM json_each(?))", (json.dumps(_TABLES),))
    return bool(rows) and int(rows[0][0]) == len(_TABLES)


class FleetRegistry:
    """The ``fleet_*`` tables of one ledger database (SQLite or PostgreSQL). Thread-safe."""

    def __init__(self, storage: Storage) -> None:
        self._storage = storage
        self.where = storage.where

    @classmethod
    def open(cls, location: str | Path, *, read_only: bool = False) -> FleetRegistry:
        """Open the registry in the ledger at ``location`` (a path or a ``postgresql://``
        DSN). An SQLite ledger must exist: open the :class:`policy.ledger.Ledger` first, it
        creates and checks the file. ``read_only`` (the listings): the tables are made only
        when missing, so a role that may only SELECT lists the fleet of a ledger that has them;
        one without them lists no host rather than failing."""
        if not is_postgres_dsn(location):
            refuse_conninfo(location)
            path = Path(location).expanduser()
            if not path.is_file():
                raise LedgerError(f"{path}: no ledger here (open the ledger first)")
            location = path
        storage = open_storage(location)
        try:
            if not read_only or not _has_tables(storage):
                with storage.transaction(lock="certescrow-fleet-schema") as tx:
                    for statement in _SCHEMA:
                        tx.run(statement)
        except BaseException:
            storage.close()
            raise
        return cls(storage)

    def close(self) -> None:
        self._storage.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _run(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return self._storage.run(sql, params)

    # ------------------------------------------------------------------ certificates
    def record_certificate(self, issued: IssuedRecord, *, at: datetime,
                           supersede_at: datetime | None = None,
                           new_key_only: bool = False) -> str | None:
        """Register a certificate the fleet CA issued. With ``supersede_at``, the host's other
        live certificates are revoked as of that instant (a renewal, or the desk signing again:
        the caller's instant plus a grace, never in the real past, or the host is locked out
        until the new certificate reaches it). With ``new_key_only`` (a renewal), a key
        already known (``issued.key_sha256``) is refused: returns why (nothing is recorded
        then), else ``None``."""
        require_aware(at, "at")
        if supersede_at is not None:
            require_aware(supersede_at, "supersede_at")
        with self._storage.transaction(lock="certescrow-fleet-certs") as tx:
            if new_key_only and issued.key_sha256 is not None:
                used = tx.run("SELECT k.serial FROM fleet_cert_keys k WHERE k.key_sha256 = ? "
                              "AND k.serial <> ?", (issued.key_sha256, issued.serial))
                if used:
                    return ("this key already had a client certificate: a new certificate "
                            "needs a new key")
            tx.run("INSERT INTO fleet_certs (serial, host, not_before, not_after, issued_utc) "
                   "VALUES (?, ?, ?, ?, ?) ON CONFLICT (serial) DO NOTHING",
                   (issued.serial, issued.host, instant_to_text(issued.not_before_utc),
                    instant_to_text(issued.not_after_utc), instant_to_text(at)))
            if issued.key_sha256 is not None:
                tx.run("INSERT INTO fleet_cert_keys (serial, key_sha256) VALUES (?, ?) "
                       "ON CONFLICT (serial) DO NOTHING", (issued.serial, issued.key_sha256))
            if supersede_at is not None:
                until = instant_to_text(supersede_at)
                tx.run("UPDATE fleet_certs SET revoked_utc = ? WHERE host = ? AND serial <> ? "
                       "AND (revoked_utc IS NULL OR revoked_utc > ?)",
                       (until, issued.host, issued.serial, until))
        return None

    def key_revoked(self, key_sha256: str) -> bool:
        """Whether a certificate of this public key was revoked or superseded: ``fleet sign``
        refuses to let such a key (possibly compromised) back in."""
        rows = self._run("SELECT 1 FROM fleet_cert_keys k JOIN fleet_certs c ON "
                         "c.serial = k.serial WHERE k.key_sha256 = ? AND "
                         "c.revoked_utc IS NOT NULL", (key_sha256,))
        return bool(rows)

    def enrolled(self, host: str) -> datetime | None:
        """When ``host`` was first enrolled: the earliest notBefore of its certificates."""
        rows = self._run("SELECT min(not_before) FROM fleet_certs WHERE host = ?", (host,))
        return None if not rows or rows[0][0] is None else text_to_instant(str(rows[0][0]))

    def revoke_host(self, host: str, *, at: datetime) -> int:
        """Revoke every certificate issued to ``host`` so far, superseded ones in their grace
        included, as of ``at``; returns how many were live."""
        require_aware(at, "at")
        now = instant_to_text(at)
        rows = self._run("UPDATE fleet_certs SET revoked_utc = ? WHERE host = ? AND "
                         "(revoked_utc IS NULL OR revoked_utc > ?) RETURNING serial",
                         (now, host, now))
        return len(rows)

    def last_revoked(self, host: str) -> datetime | None:
        """When the latest revocation of ``host``'s certificates takes effect (a supersession
        included, so possibly after now), or ``None`` when none of them is revoked or the
        registry has no certificate of ``host``."""
        rows = self._run("SELECT max(revoked_utc) FROM fleet_certs WHERE host = ?", (host,))
        return None if not rows or rows[0][0] is None else text_to_instant(str(rows[0][0]))

    def refusal(self, *, host: str, serial: str, at: datetime | None = None) -> str | None:
        """Why a client certificate the TLS layer accepted is still refused at ``at``, or
        ``None`` (without ``at``, any revocation counts, a future one too)."""
        rows = self._run("SELECT host, revoked_utc FROM fleet_certs WHERE serial = ?",
                         (serial,))
        if not rows:
            return ("this client certificate is not registered in this service's ledger "
                    "(`certescrow fleet sign` registers it in the ledger it is given: "
                    "--serve-config with the service's configuration)")
        if rows[0][0] != host:
            return "this client certificate was issued to another host"
        revoked = rows[0][1]
        if revoked is not None and (at is None or text_to_instant(str(revoked)) <= at):
            return "this client certificate was revoked (or superseded by a newer one)"
        return None

    # ------------------------------------------------------------------ hosts
    def seen(self, *, host: str, serial: str, client_not_after: datetime, at: datetime,
             inventory: Mapping[str, Any] | None = None) -> None:
        """Record that ``host`` made a request at ``at`` (with a heartbeat's inventory)."""
        now = instant_to_text(at)
        expiry = instant_to_text(client_not_after)
        if inventory is None:
            self._run(
                "INSERT INTO fleet_hosts (host, last_seen_utc, client_serial, client_not_after) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (host) DO UPDATE SET last_seen_utc = "
                "CASE WHEN excluded.last_seen_utc > fleet_hosts.last_seen_utc "
                "THEN excluded.last_seen_utc ELSE fleet_hosts.last_seen_utc END, "
                "client_serial = excluded.client_serial, "
                "client_not_after = excluded.client_not_after", (host, now, serial, expiry))
            return
        text = json.dumps(dict(inventory), ensure_ascii=False, sort_keys=True)
        self._run(
            "INSERT INTO fleet_hosts (host, last_seen_utc, heartbeat_utc, inventory, "
            "client_serial, client_not_after) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (host) DO UPDATE SET last_seen_utc = "
            "CASE WHEN excluded.last_seen_utc > fleet_hosts.last_seen_utc "
            "THEN excluded.last_seen_utc ELSE fleet_hosts.last_seen_utc END, "
            "heartbeat_utc = excluded.heartbeat_utc, inventory = excluded.inventory, "
            "client_serial = excluded.client_serial, "
            "client_not_after = excluded.client_not_after",
            (host, now, now, text, serial, expiry))

    def hosts(self, *, at: datetime, silent_after: timedelta) -> list[HostStatus]:
        """Every host the desk issued a certificate to or that ever reported, by name.
        ``silent``: no request for longer than ``silent_after`` before ``at`` (or never)."""
        require_aware(at, "at")
        rows = self._run(
            "SELECT n.host, h.last_seen_utc, h.heartbeat_utc, h.inventory, h.client_not_after, "
            "(SELECT count(*) FROM fleet_certs c WHERE c.host = n.host AND "
            " c.revoked_utc IS NULL), "
            "(SELECT max(c.not_after) FROM fleet_certs c WHERE c.host = n.host AND "
            " c.revoked_utc IS NULL) "
            "FROM (SELECT host FROM fleet_certs UNION SELECT host FROM fleet_hosts) n "
            "LEFT JOIN fleet_hosts h ON h.host = n.host ORDER BY n.host")
        out = []
        for host, seen, beat, inventory, not_after, live, issued_not_after in rows:
            last = None if seen is None else text_to_instant(seen)
            expiry_text = not_after or issued_not_after
            try:
                parsed = json.loads(inventory) if inventory else {}
            except ValueError:
                parsed = {}
            out.append(HostStatus(
                host=str(host), last_seen_utc=last,
                heartbeat_utc=None if beat is None else text_to_instant(beat),
                inventory=parsed if isinstance(parsed, dict) else {},
                client_not_after_utc=None if expiry_text is None
                else text_to_instant(expiry_text),
                revoked=int(live) == 0,
                silent=last is None or at - last > silent_after))
        return out

    # ------------------------------------------------------------------ bindings
    def assign(self, *, host: str, store: str, binding: Mapping[str, Any]) -> None:
        self._run("INSERT INTO fleet_bindings (host, store, binding) VALUES (?, ?, ?) "
                  "ON CONFLICT (host, store) DO UPDATE SET binding = excluded.binding",
                  (host, store, json.dumps(dict(binding), ensure_ascii=False, sort_keys=True)))

    def bindings(self, host: str) -> list[dict[str, Any]]:
        rows = self._run("SELECT store, binding FROM fleet_bindings WHERE host = ? "
                         "ORDER BY store", (host,))
        return [{"store": str(store), "binding": json.loads(binding)} for store, binding in rows]
