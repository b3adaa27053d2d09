"""The ``Vault``: an open vault, what the CLI and the daemon call once
:func:`vault.lifecycle.open_vault` has opened it. Wires envelope, key source, store and audit:
it decides what is sealed, checked and recorded; the SQL lives in :mod:`vault.store` and
:mod:`vault.audit`, the returned values in :mod:`vault.results`.

Opening a vault checks the master key against the header's key check value (the wrapped vault
secret) *before* anything is written, so a wrong key is a clear :class:`VaultLockedError`, never
a half-written entry. Every change is one SQLite transaction that also appends its audit record.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import secrets
import socket
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from untrusted.text import for_terminal, json_storable

from . import audit as audit_log
from . import formats
from . import store as storage
from .envelope import (
    Binding,
    Sealed,
    VaultKeys,
    derive_subkeys,
    hmac_tag,
    integrity_error,
    metadata_digest,
    new_key,
    rewrap,
    seal,
    unseal,
    unwrap_secret,
    wrap_secret,
)
from .errors import (
    VaultConflictError,
    VaultEntryNotFoundError,
    VaultError,
    VaultFormatError,
    VaultInputError,
    VaultIntegrityError,
    VaultLockedError,
    VaultPermissionError,
)
from .keysource import KdfParams, KeepsOldKey, MasterKeySource, StagedRotation
from .results import (
    EntryInfo,
    ExportResult,
    GenCsrResult,
    MatchReport,
    PutRequest,
    PutResult,
    RotateResult,
    VaultStatus,
    VerifyReport,
)
from .secretfile import same_path
from .store import (
    FORMAT_VERSION,
    Store,
    translate_sqlite_error,
)

__all__ = ["Clock", "Progress", "Vault", "default_actor"]

Clock = Callable[[], datetime]
Progress = Callable[[int, int], None]  # (done, total)



def _system_clock() -> datetime:
    # The vault stamps its audit records; callers (tests, the daemon) may inject their clock.
    return datetime.now(UTC)  # noqa: TID251 - default clock of the outermost API


def default_actor() -> str:
    """``user@host`` for audit records (the uid when the user has no passwd entry)."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):
        user = f"uid{os.getuid()}"
    return f"{user}@{socket.gethostname()}"


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class _Header:
    vault_id: bytes
    created_at: str
    keyed_with: str
    kdf: KdfParams | None
    wrapped_secret: bytes


def _as_staged(source: object) -> StagedRotation | None:
    return source if isinstance(source, StagedRotation) else None


def _as_keeper(source: object) -> KeepsOldKey | None:
    return source if isinstance(source, KeepsOldKey) else None


def _read_header(store: Store) -> _Header | None:
    try:
        vault_id = store.get_meta("vault_id")
        wrapped = store.get_meta("wrapped_secret")
        if vault_id is None or wrapped is None:
            return None
        version = int((store.get_meta("format_version") or b"0").decode())
        if version != FORMAT_VERSION:
            raise VaultFormatError(f"vault {store.path} has header format version {version}; "
                                   f"this release reads version {FORMAT_VERSION}")
        kdf_raw = store.get_meta("kdf")
        kdf_json = json.loads(kdf_raw) if kdf_raw else None
        if kdf_raw and not isinstance(kdf_json, dict):
            raise ValueError("kdf is not an object")
        kdf = KdfParams.from_json(kdf_json) if isinstance(kdf_json, dict) else None
        return _Header(vault_id=vault_id, wrapped_secret=wrapped,
                       created_at=(store.get_meta("created_at") or b"").decode(),
                       keyed_with=(store.get_meta("key_source") or b"?").decode(), kdf=kdf)
    except sqlite3.Error as exc:
        raise translate_sqlite_error(store.path, exc) from None
    except (ValueError, UnicodeDecodeError):
        raise integrity_error("vault header") from None


def _printable(text: str, limit: int = 200) -> str:
    """SQLite's own diagnostic line, with anything unprintable replaced, shortened."""
    return "".join(c if c.isprintable() else "?" for c in text[:limit])


def _canonical_meta(meta: Mapping[str, str]) -> str:
    # `imported_from` is a file name: its bytes that are not UTF-8 become \udcNN escapes.
    return json_storable(json.dumps({str(k): str(v) for k, v in meta.items()}, sort_keys=True,
                                    separators=(",", ":"), ensure_ascii=False))


def _check_name(value: str | None, what: str) -> None:
    """A label or contract id is text, or a file name's bytes (``os.fsdecode``'s lone
    surrogates U+DC80..U+DCFF, stored as those bytes): any other lone surrogate is no text."""
    if value is None:
        return
    try:
        value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raise VaultInputError(f"the {what} is not text (it holds a lone UTF-16 surrogate that "
                              "is no byte of a file name)") from None


def _row_digest(row: Mapping[str, Any]) -> bytes:
    """The metadata an entry's ciphertexts are bound to (see docs/vault-format.md)."""
    return metadata_digest([(name, json.dumps(row[name], ensure_ascii=False)) for name in (
        "label", "contract_id", "meta", "created_at", "updated_at", "size", "fingerprint",
        "match_tag")])


class Vault:
    """An open vault. Thread-safe (one lock); use as a context manager or call :meth:`close`.

    A vault opened without a key source (``source=None``) is *locked*: metadata (list, show,
    status, audit) works, anything that decrypts or writes raises :class:`VaultLockedError`.
    """

    def __init__(self, store: Store, header: _Header, *, clock: Clock, actor: str) -> None:
        self._store = store
        self._header = header
        self._clock = clock
        self._actor = actor
        self._keys: VaultKeys | None = None
        self._source: MasterKeySource | None = None
        self._lock_reason: str | None = "no key source given"
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ lifecycle
    @property
    def path(self) -> Path:
        return self._store.path

    @property
    def unlocked(self) -> bool:
        return self._keys is not None

    def __enter__(self) -> Vault:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            self._keys = None
            self._store.close()

    def unlock(self, source: MasterKeySource, *, settle_pending_key: bool = True) -> None:
        """Check ``source``'s key against the header; finish an interrupted rotation, or
        remove the pending key a rotation killed before its commit left behind."""
        with self._lock:
            if not self._store.conn.in_transaction:
                # The header may have moved since open (a rotation elsewhere): read it afresh.
                with self._snapshot_raw():
                    self._header = _read_header(self._store) or self._header
            header = self._header
            key = None
            try:
                key = source.load(header.kdf)
            except VaultLockedError:
                if not isinstance(source, StagedRotation) or source.pending() is None:
                    raise
            secret = unwrap_secret(key, header.vault_id, header.wrapped_secret) \
                if key is not None else None
            if secret is None and isinstance(source, StagedRotation):
                # A rotation committed but did not get to promote its new key: adopt it.
                pending = source.pending()
                if pending is not None:
                    secret = unwrap_secret(pending, header.vault_id, header.wrapped_secret)
                    if secret is not None:
                        key = pending
                        source.promote()
            if secret is None or key is None:
                raise VaultLockedError(
                    f"the master key from the {source.describe()} does not open vault "
                    f"{self.path} (wrong key, or the vault header was altered); the vault was "
                    f"last keyed with a {header.keyed_with} source"
                )
            if settle_pending_key and isinstance(source, StagedRotation) \
                    and not self._store.conn.in_transaction:
                key, secret = self._settle_pending_key(source, key, secret)
            self._keys = derive_subkeys(key, self._header.vault_id, secret)
            self._source = source
            self._lock_reason = None

    def _settle_pending_key(self, source: StagedRotation, key: bytes,
                            secret: bytes) -> tuple[bytes, bytes]:
        """A pending key left by a killed rotation: promote it if the vault is keyed with it
        (the rotation committed), remove it if the current key still opens the vault (it never
        did). Decided under the write lock, because a rotation in another process stages its
        key while it holds that lock: a pending key seen without it may be one about to
        commit. Returns the key and vault secret to use. A failure here (busy, read-only) only
        leaves the pending key for the next open."""
        try:
            if not source.has_pending():
                return key, secret
            with self._store.write_or_skip(500):
                header = _read_header(self._store)
                if header is None:
                    return key, secret
                pending = source.pending()
                adopted = unwrap_secret(pending, header.vault_id, header.wrapped_secret) \
                    if pending is not None else None
                if pending is not None and adopted is not None:
                    source.promote()
                    self._header = header
                    return pending, adopted
                current = unwrap_secret(key, header.vault_id, header.wrapped_secret)
                if current is not None:
                    source.discard()
                    self._header = header
                    return key, current
        except (VaultError, OSError):
            pass
        return key, secret

    def try_unlock(self, source: MasterKeySource) -> bool:
        """:meth:`unlock`, recording why it failed instead of raising (for ``status``)."""
        try:
            self.unlock(source)
        except (VaultLockedError, VaultPermissionError, VaultFormatError) as exc:
            self._source = source
            self._lock_reason = str(exc)
            return False
        return True

    def _need_keys(self) -> VaultKeys:
        if self._keys is None:
            raise VaultLockedError(f"vault {self.path} is locked ({self._lock_reason}); this "
                                   "operation needs the master key")
        return self._keys

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        try:
            with self._store.write() as conn:
                self._refresh()
                yield conn
        except sqlite3.Error as exc:
            raise translate_sqlite_error(self.path, exc) from None

    @contextlib.contextmanager
    def _snapshot_raw(self) -> Iterator[sqlite3.Connection]:
        try:
            with self._store.read() as conn:
                yield conn
        except sqlite3.Error as exc:
            raise translate_sqlite_error(self.path, exc) from None

    @contextlib.contextmanager
    def _snapshot(self) -> Iterator[sqlite3.Connection]:
        try:
            with self._store.read() as conn:
                self._refresh()
                yield conn
        except sqlite3.Error as exc:
            raise translate_sqlite_error(self.path, exc) from None

    def _refresh(self) -> None:
        """Follow a re-key or restore done by another process since this one unlocked.

        Without this a long-running daemon would keep wrapping new data keys with a master key
        that `rotate-key` in an operator's shell has retired. Runs inside the caller's
        transaction, so the header it reads is the one the operation sees.
        """
        if self._keys is None:
            return
        wrapped = self._store.get_meta("wrapped_secret")
        vault_id = self._store.get_meta("vault_id")
        if wrapped == self._header.wrapped_secret and vault_id == self._header.vault_id:
            return
        header = _read_header(self._store)
        if header is None:
            raise integrity_error("vault header")
        self._header = header
        secret = unwrap_secret(self._keys.master, header.vault_id, header.wrapped_secret)
        if secret is not None:  # restored content under the same key
            self._keys = derive_subkeys(self._keys.master, header.vault_id, secret)
            return
        self._keys = None
        self._lock_reason = "re-keyed by another process"
        if self._source is None:
            raise VaultLockedError(f"vault {self.path} was re-keyed by another process")
        self.unlock(self._source)

    def _audit(self, conn: sqlite3.Connection, action: str, **fields: Any) -> None:
        keys = self._need_keys()
        audit_log.append(conn, audit_key=keys.audit, vault_id=self._header.vault_id,
                         at=self._clock(), actor=self._actor, action=action, **fields)

    def _binding(self, row: Mapping[str, Any]) -> Binding:
        return Binding(vault_id=self._header.vault_id, entry_id=str(row["id"]),
                       kind=str(row["kind"]), version=int(row["version"]),
                       meta_digest=_row_digest(row))

    # ------------------------------------------------------------------ writing
    def put(self, kind: str, data: bytes, *, contract_id: str | None = None,
            label: str | None = None, meta: Mapping[str, str] | None = None) -> PutResult:
        """Store ``data``; the same object already held returns the existing entry: identical
        bytes of the same kind, a certificate in PEM or DER, a private key of the same public
        key however it came in (see :meth:`private_key_for`)."""
        return self.put_many([PutRequest(kind=kind, data=data, contract_id=contract_id,
                                         label=label, meta=meta)])[0]

    def put_many(self, requests: Iterable[PutRequest]) -> list[PutResult]:
        """Store several objects in ONE transaction: all of them, or (on error) none."""
        requests = list(requests)
        analyses = [formats.analyse(r.kind, r.data) for r in requests]  # validate first
        with self._lock:
            self._need_keys()
            results: list[PutResult] = []
            with self._tx() as conn:
                keys = self._need_keys()
                for request, analysis in zip(requests, analyses, strict=True):
                    results.append(self._put_in_tx(conn, keys, request, analysis))
            return results

    def _put_in_tx(self, conn: sqlite3.Connection, keys: VaultKeys, request: PutRequest,
                   analysis: formats.Analysis | None = None) -> PutResult:
        if analysis is None:
            analysis = formats.analyse(request.kind, request.data)
        _check_name(request.label, "label")
        _check_name(request.contract_id, "contract id")
        fingerprint = hmac_tag(keys.fingerprint, request.kind.encode(), request.data)
        existing = storage.entry_id_by_fingerprint(conn, fingerprint)
        for form in analysis.same_as:
            if existing is None and form != request.data:
                existing = storage.entry_id_by_fingerprint(
                    conn, hmac_tag(keys.fingerprint, request.kind.encode(), form))
        spki = analysis.spki
        if existing is None and request.kind == "private-key" and spki is not None:
            # a key's other encoding (PKCS#8 from `import`, as found from the daemon's escrow)
            # is the same key: a second entry would be a second copy to keep track of
            existing = self._private_key_with(conn, keys, spki)
        if existing is not None:
            return PutResult(entry_id=existing, created=False, notes=analysis.notes)
        meta = dict(analysis.meta)
        meta.update({str(k): str(v) for k, v in (request.meta or {}).items()})
        now = _iso(self._clock())
        row: dict[str, Any] = {
            "id": secrets.token_hex(8), "kind": request.kind, "version": 1,
            "label": request.label, "contract_id": request.contract_id,
            "meta": _canonical_meta(meta), "created_at": now, "updated_at": now,
            "size": len(request.data), "fingerprint": fingerprint,
            "match_tag": hmac_tag(keys.match, spki) if spki is not None else None,
        }
        sealed = seal(keys.master, self._binding(row), request.data)
        storage.insert_entry(conn, row, wrapped_key=sealed.wrapped_key,
                           ciphertext=sealed.ciphertext)
        self._audit(conn, "put", entry_id=row["id"], kind=request.kind, version=1,
                    detail={"label": request.label, "contract_id": request.contract_id,
                            "size": len(request.data)})
        return PutResult(entry_id=str(row["id"]), created=True, notes=analysis.notes)

    def update(self, entry_id: str, *, label: str | None, contract_id: str | None) -> EntryInfo:
        """New label/contract id: a new entry version, re-sealed under a fresh data key."""
        _check_name(label, "label")
        _check_name(contract_id, "contract id")
        with self._lock:
            self._need_keys()
            with self._tx() as conn:
                keys = self._need_keys()
                row = self._row(conn, entry_id)
                data = self._open_row(conn, keys, row)
                new = dict(row)
                new.update(label=label, contract_id=contract_id, version=int(row["version"]) + 1,
                           updated_at=_iso(self._clock()))
                sealed = seal(keys.master, self._binding(new), data)
                storage.update_entry(conn, new, wrapped_key=sealed.wrapped_key,
                                   ciphertext=sealed.ciphertext)
                self._audit(conn, "update", entry_id=row["id"], kind=row["kind"],
                            version=new["version"],
                            detail={"label": label, "contract_id": contract_id})
            return self.info(str(row["id"]))

    def remove(self, entry_id: str) -> EntryInfo:
        """Delete an entry; the audit log keeps that it existed and who removed it."""
        with self._lock:
            self._need_keys()
            with self._tx() as conn:
                row = self._row(conn, entry_id)
                info = self._info(row)
                storage.delete_entry(conn, str(row["id"]))
                self._audit(conn, "rm", entry_id=row["id"], kind=row["kind"],
                            version=row["version"], detail={"label": row["label"],
                                                            "contract_id": row["contract_id"]})
            return info

    def gen_csr(self, *, common_name: str, sans: tuple[str, ...] = (),
                key_spec: str = "ec:p256", contract_id: str | None = None) -> GenCsrResult:
        """A new key and its CSR, both stored in one transaction; the key never leaves memory."""
        key = formats.generate_key(key_spec)
        key_pem, csr_pem = formats.build_csr(key, common_name=common_name, sans=sans)
        origin = {"origin": "vault gen-csr"}
        key_result, csr_result = self.put_many([
            PutRequest(kind="private-key", data=key_pem, contract_id=contract_id,
                       label=common_name, meta=origin),
            PutRequest(kind="csr", data=csr_pem, contract_id=contract_id, label=common_name,
                       meta=origin),
        ])
        return GenCsrResult(key_id=key_result.entry_id, csr_id=csr_result.entry_id,
                            csr_pem=csr_pem)

    # ------------------------------------------------------------------ reading
    def _row(self, conn: sqlite3.Connection, entry_id: str) -> storage.EntryRow:
        rows = storage.find_entry(conn, entry_id)
        # The id is what was typed: its control characters and bytes that are not UTF-8
        # (`\xff`) escaped, as every terminal output shows them.
        shown = for_terminal(entry_id)
        if len(rows) > 1:
            raise VaultEntryNotFoundError(f"entry id prefix '{shown}' is ambiguous; "
                                          "give more characters")
        if not rows:
            raise VaultEntryNotFoundError(f"no entry '{shown}' in vault {self.path} "
                                          "(see `certescrow vault list`)")
        return rows[0]

    def _open_row(self, conn: sqlite3.Connection, keys: VaultKeys,
                  row: Mapping[str, Any]) -> bytes:
        """Decrypt and check the bindings of one row: ids, kind, version and metadata through
        the AEAD, the version against the audit log."""
        blobs = storage.entry_blobs(conn, str(row["id"]))
        where = f"entry {row['id']}"
        if blobs is None:
            raise integrity_error(where)
        data = unseal(keys.master, self._binding(row),
                      Sealed(wrapped_key=blobs[0], ciphertext=blobs[1]))
        audited = audit_log.last_action(conn, str(row["id"]))
        # A row restored from an older copy still decrypts (its own AAD is consistent); the
        # audit log is what knows the current version.
        if audited is None or audited[0] not in ("put", "update") \
                or audited[1] != int(row["version"]):
            raise integrity_error(where)
        return data

    @staticmethod
    def _check_derived(keys: VaultKeys, row: Mapping[str, Any], data: bytes) -> tuple[str, ...]:
        """What ``verify`` adds to :meth:`_open_row`: the fingerprint and public-key tag
        recomputed from the plaintext. Both are already bound by the AEAD, so this only catches
        a row sealed wrongly *with* the key, and it costs a key parse. Returns the notes of
        reading the object."""
        where = f"entry {row['id']}"
        if hmac_tag(keys.fingerprint, str(row["kind"]).encode(), data) != row["fingerprint"]:
            raise integrity_error(where)
        analysis = formats.analyse_public_key(str(row["kind"]), data)
        tag = hmac_tag(keys.match, analysis.spki) if analysis.spki is not None else None
        if tag != row["match_tag"]:
            raise integrity_error(where)
        return tuple(f"{where}: {note}" for note in analysis.notes)

    def get(self, entry_id: str) -> bytes:
        """The bytes as stored, after every integrity check (see :meth:`_open_row`)."""
        with self._lock:
            self._need_keys()
            with self._snapshot() as conn:
                return self._open_row(conn, self._need_keys(), self._row(conn, entry_id))

    @staticmethod
    def _info(row: Mapping[str, Any]) -> EntryInfo:
        return EntryInfo.from_row(row)

    def info(self, entry_id: str) -> EntryInfo:
        with self._lock, self._snapshot() as conn:
            return self._info(self._row(conn, entry_id))

    def history(self, entry_id: str) -> list[audit_log.AuditRecord]:
        with self._lock, self._snapshot() as conn:
            return audit_log.read_records(conn, entry_id=entry_id)

    def entries(self, *, kind: str | None = None,
                contract_id: str | None = None) -> list[EntryInfo]:
        """Metadata of every entry (oldest first); nothing is decrypted."""
        if kind is not None and kind not in formats.KINDS:
            raise VaultInputError(f"unknown kind {kind!r}; kinds are {', '.join(formats.KINDS)}")
        with self._lock, self._snapshot() as conn:
            return [self._info(row) for row in storage.list_entries(conn, kind=kind,
                                                                   contract_id=contract_id)]

    def export(self, entry_id: str, fmt: str | None = None, *,
               p12_password: Callable[[], bytes] | None = None) -> ExportResult:
        """The entry converted to ``fmt`` (``None`` = as stored); ``p12`` bundles key and
        certificate found through ``match``."""
        with self._lock:
            self._need_keys()
            with self._snapshot() as conn:
                keys = self._need_keys()
                row = self._row(conn, entry_id)
                data = self._open_row(conn, keys, row)
                key_pem: bytes | None = None
                certificates: tuple[bytes, ...] = ()
                if fmt == "p12" and row["match_tag"] is not None:
                    if row["kind"] == "certificate":
                        partner = self._partners(conn, row, "private-key")
                        key_pem = self._open_row(conn, keys, partner[0]) if partner else None
                    elif row["kind"] == "private-key":
                        partners = self._partners(conn, row, "certificate")
                        partners.sort(key=lambda r: EntryInfo.from_row(r).meta.get(
                            "not_after", ""), reverse=True)
                        certificates = tuple(self._open_row(conn, keys, p)
                                             for p in partners[:1])
                kind = str(row["kind"])
                entry = str(row["id"])
            return formats.convert(kind, data, fmt, entry_id=entry, p12_password=p12_password,
                                   key_pem=key_pem, certificates=certificates)

    def private_key_for(self, kind: str, data: bytes) -> str | None:
        """The id of the private key the vault holds for the public key ``data`` (a
        certificate, CSR or private key of ``kind``) holds or certifies, however it came in
        (``put``, ``import`` of an encrypted key, another encoding); ``None`` when it holds
        none, or ``data`` has no public key to read. How an escrow tells that a certificate's
        key is already kept."""
        spki = formats.analyse_public_key(kind, data).spki
        if spki is None:
            return None
        with self._lock:
            self._need_keys()
            with self._snapshot() as conn:
                return self._private_key_with(conn, self._need_keys(), spki)

    def _private_key_with(self, conn: sqlite3.Connection, keys: VaultKeys,
                          spki: bytes) -> str | None:
        """The oldest private key whose public key is ``spki``. It is opened, not taken on its
        tag's word: a tag copied from another row would otherwise vouch for a key the vault
        does not hold (opening checks the tag through the AEAD)."""
        for row in storage.entries_sharing_key(conn, hmac_tag(keys.match, spki), "private-key"):
            self._open_row(conn, keys, row)
            return str(row["id"])
        return None

    @staticmethod
    def _partners(conn: sqlite3.Connection, row: Mapping[str, Any],
                  kind: str) -> list[storage.EntryRow]:
        return storage.entries_sharing_key(conn, str(row["match_tag"]), kind)

    def match(self) -> MatchReport:
        """Pair keys with certificates and CSRs by public key, through the keyed tags (no
        payload is decrypted; ``verify`` checks the tags against the payloads)."""
        with self._lock, self._snapshot() as conn:
            return MatchReport.from_tags(storage.match_tags(conn))

    def audit_records(self) -> list[audit_log.AuditRecord]:
        with self._lock, self._snapshot() as conn:
            return audit_log.read_records(conn)

    def status(self) -> VaultStatus:
        with self._lock, self._snapshot() as conn:
            counts = storage.count_by_kind(conn)
            records = audit_log.count(conn)
        size = sum(p.stat().st_size for p in (self.path, self.path.with_name(
            self.path.name + "-wal")) if p.exists())
        return VaultStatus(
            path=self.path, format_version=FORMAT_VERSION, vault_id=self._header.vault_id.hex(),
            created_at=self._header.created_at,
            key_source=self._source.describe() if self._source else "none",
            keyed_with=self._header.keyed_with, locked=self._keys is None,
            lock_reason=self._lock_reason, counts=counts, audit_records=records,
            size_bytes=size)

    # ------------------------------------------------------------------ whole-vault work
    def verify(self, *, progress: Progress | None = None) -> VerifyReport:
        """Every entry decrypts and every binding holds; the audit chain is whole and matches
        the live entries (nothing rolled back, nothing deleted behind the log's back)."""
        with self._lock:
            self._need_keys()
            problems: list[str] = []
            notes: list[str] = []
            with self._snapshot() as conn:
                keys = self._need_keys()
                check = storage.integrity_check(conn)
                if check != ["ok"]:
                    problems.append("SQLite structure: " + "; ".join(
                        _printable(line) for line in check[:5]))
                problems.extend(storage.schema_differences(conn))
                bad_text = storage.rows_with_invalid_text(conn)
                for table, rowids in sorted(bad_text.items()):
                    problems.extend(f"{table} row {rowid}: a stored text value is not valid "
                                    "UTF-8 (the file was damaged or altered)"
                                    for rowid in rowids[:20])
                if bad_text.get("audit") or bad_text.get("meta"):
                    records = []
                    problems.append("audit log: not checked (damaged text in the file)")
                else:
                    problems.extend(audit_log.verify_chain(conn, audit_key=keys.audit,
                                                           vault_id=self._header.vault_id))
                    damaged_records: list[str] = []  # verify_chain has reported them
                    records = audit_log.read_records(conn, damaged=damaged_records)
                    if damaged_records:
                        records = []  # "missing" below needs the whole log
                damaged_rows: list[str] = []
                rows = storage.entries_except(conn, bad_text.get("entries", []),
                                              damaged=damaged_rows)
                problems.extend(damaged_rows[:20])
                total = len(rows)
                for done, row in enumerate(rows, start=1):
                    try:
                        notes.extend(self._check_derived(keys, row,
                                                         self._open_row(conn, keys, row)))
                    except (VaultIntegrityError, VaultFormatError) as exc:
                        problems.append(str(exc))
                    if progress is not None:
                        progress(done, total)
                live = {str(r["id"]) for r in rows}
                last: dict[str, str] = {}
                for record in records:
                    if record.entry_id is not None:
                        last[record.entry_id] = record.action
                for entry_id, action in sorted(last.items()):
                    if action in ("put", "update") and entry_id not in live:
                        problems.append(f"entry {entry_id}: missing (deleted outside the vault; "
                                        "the audit log says it is live)")
            return VerifyReport(entries_checked=total, audit_records=len(records),
                                problems=tuple(problems), notes=tuple(notes))

    def rotate_key(self, new_source: MasterKeySource | None = None, *,
                   progress: Progress | None = None, keep_old_key: bool = False,
                   discard_old_key: bool = False) -> RotateResult:
        """Re-wrap every data key and the vault secret under a new master key, in ONE
        transaction: an interruption leaves the old key working, or the new one.

        ``new_source=None`` rotates in place: a keyring or key-file source stages the new key
        as its *pending* key before the commit and promotes it after; :meth:`unlock` finishes a
        promotion a crash interrupted. An in-place rotation destroys the old key, which every
        backup taken before it still needs: ``keep_old_key`` first writes a dated copy beside
        it (``<key file>.retired-<UTC time>``, 0600, or keyring user
        ``<username>.retired-<UTC time>``), before anything changes. When the audit log records
        a backup made with the current key, an in-place rotation needs one of ``keep_old_key``
        or ``discard_old_key``: silently destroying the only key to a backup taken minutes ago
        is the mistake this refuses (:class:`VaultConflictError`).
        """
        if keep_old_key and discard_old_key:
            raise VaultInputError("keep the old key or discard it, not both")
        with self._lock:
            keys = self._need_keys()
            source = self._source
            kept: str | None = None
            keeper = _as_keeper(source)
            if new_source is None and _as_staged(source) is not None \
                    and not keep_old_key and not discard_old_key:
                with self._snapshot() as conn:
                    backups = audit_log.backups_under_current_key(conn)
                if backups:
                    last = backups[-1]
                    raise VaultConflictError(
                        f"{len(backups)} backup(s) of this vault were made with the current key "
                        f"(the last to {last.detail.get('to', '?')} at {last.at}), and this "
                        "rotation replaces that key: those backups would open with nothing. "
                        "Keep a dated copy of the old key (--keep-old-key), or say that it may "
                        "go (--discard-old-key)")
            if keep_old_key and new_source is None and keeper is not None:
                label = "retired-" + self._clock().astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
                kept = keeper.keep_copy(keys.master, label)
            staged: StagedRotation | None = None
            kdf: KdfParams | None = None
            if new_source is None:
                staged = _as_staged(source)
                if staged is None:
                    raise VaultInputError(
                        f"the {source.describe() if source else 'current source'} cannot hold "
                        "a second key: rotate to a new key file (--new-key-file FILE)")
                new_master = new_key()
                target: MasterKeySource | None = source
            else:
                new_master, kdf = new_source.create()
                target = new_source
            if new_master == keys.master:
                raise VaultInputError(f"the {target.describe() if target else 'new source'} "
                                      "holds the current key; rotation needs a new one")
            with self._tx() as conn:
                keys = self._need_keys()  # the refreshed ones, should another process have
                vault_id = self._header.vault_id  # rotated meanwhile
                if new_master == keys.master:
                    raise VaultInputError("the new key is the current key")
                wrapped = self._store.get_meta("wrapped_secret")
                secret = unwrap_secret(keys.master, vault_id, wrapped) if wrapped else None
                if secret is None:
                    raise VaultLockedError(f"vault {self.path} was re-keyed by another process "
                                           "since it was opened; open it again")
                if staged is not None:
                    staged.stage(new_master)
                rows = storage.entries_with_wrapped_keys(conn)
                for done, row in enumerate(rows, start=1):
                    storage.set_wrapped_key(conn, str(row["id"]), rewrap(
                        keys.master, new_master, self._binding(row), bytes(row["wrapped_key"])))
                    if progress is not None:
                        progress(done, len(rows))
                new_wrapped = wrap_secret(new_master, vault_id, secret)
                Store.set_meta(conn, "wrapped_secret", new_wrapped)
                Store.set_meta(conn, "key_source", (target.kind if target else "?").encode())
                if kdf is not None:
                    Store.set_meta(conn, "kdf", json.dumps(kdf.to_json()).encode())
                else:
                    storage.delete_meta(conn, "kdf")
                self._audit(conn, "rotate-key", detail={
                    "entries": len(rows), "key_source": target.kind if target else "?"})
            if staged is not None:
                staged.promote()
            self._keys = derive_subkeys(new_master, vault_id, secret)
            self._source = target
            self._header = _Header(vault_id=vault_id, created_at=self._header.created_at,
                                   keyed_with=target.kind if target else "?", kdf=kdf,
                                   wrapped_secret=new_wrapped)
            return RotateResult(entries_rewrapped=len(rows),
                                key_source=target.describe() if target else "?",
                                old_key_kept=kept,
                                old_key_note=_old_key_note(source, new_source, kept))

    def replace_content_from(self, copy: Path) -> None:
        """Replace the whole content with the vault file ``copy`` through SQLite's backup API,
        so other connections (the daemon) switch atomically from the old content to the new."""
        with self._lock:
            source = sqlite3.connect(copy)
            try:
                source.backup(self._store.conn)
            except sqlite3.Error as exc:
                raise translate_sqlite_error(self.path, exc) from None
            finally:
                source.close()

    def record_restore(self, backup: Path) -> None:
        """The ``restore`` audit record, in the restored vault's own log."""
        with self._lock, self._tx() as conn:
            self._audit(conn, "restore", detail={"from": str(backup)})

    def backup(self, dest: Path, *, force: bool = False) -> Path:
        """A consistent, still-encrypted copy (SQLite online backup), written 0600 and renamed
        into place, so ``dest`` is never a half-written file."""
        dest = Path(dest)
        with self._lock:
            self._need_keys()
            if dest.exists() and not force:
                raise VaultConflictError(f"{dest} exists; use --force to overwrite it")
            if same_path(dest, self.path):  # (a link loop is not the vault: no traceback)
                raise VaultInputError("the backup cannot overwrite the vault itself")
            if not dest.parent.is_dir():
                raise VaultInputError(f"directory {dest.parent} does not exist")
            with self._tx() as conn:
                self._audit(conn, "backup", detail={"to": str(dest)})
            tmp = dest.with_name(f".{dest.name}.{secrets.token_hex(6)}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.close(fd)
            try:
                target = sqlite3.connect(tmp)
                try:
                    self._store.conn.backup(target)
                    target.execute("PRAGMA journal_mode = DELETE")
                finally:
                    target.close()
                with open(tmp, "rb") as fh:
                    os.fsync(fh.fileno())
                os.replace(tmp, dest)
            except sqlite3.Error as exc:
                raise translate_sqlite_error(self.path, exc) from None
            finally:
                tmp.unlink(missing_ok=True)
            return dest


def _old_key_note(source: MasterKeySource | None, new_source: MasterKeySource | None,
                  kept: str | None) -> str:
    """What opens the backups made before a rotation (they are wrapped under the old key)."""
    if kept is not None:
        return (f"the old key was kept in {kept} (mode 0600): backups made before this "
                "rotation open only with it")
    if source is not None and source.kind == "passphrase":
        return ("backups made before this rotation open only with the old passphrase")
    if new_source is not None and source is not None:
        return (f"the old key is still in the {source.describe()}: keep it, backups made "
                "before this rotation open only with it")
    return ("backups made before this rotation open only with the old key, which this "
            "rotation replaced (rotate with --keep-old-key to keep a dated copy)")
