"""Art.4(7) escrow for the daemon: private keys and their certificates into the vault.

Split from the daemon's worker because it is the one part that touches the vault: the vault is
opened lazily (a store without ``escrow = true`` never needs the master key), PKCS#12 passwords
kept in the vault are fetched through the same handle, and a vault failure is a logged finding,
never a stopped daemon. ``Vault.put`` is idempotent, so re-reads and restarts escrow nothing
twice. Entry ids are remembered; key material never is.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from policy.decisions import Finding, Severity

from .config import StoreConfig
from .errors import AgentError
from .logs import EventLog
from .records import CertificateRecord, FileResult, KeyRecord

__all__ = ["Escrow", "EscrowRecord", "VaultLike"]

WAITING_MAX = 2_000
"""Certificates held for a key not seen yet, at most (each its DER, ~1-2 KB, public; CA
certificates never wait: a host holds no key of theirs)."""


class VaultLike(Protocol):
    def put(self, kind: str, data: bytes, *, contract_id: str | None = None,
            label: str | None = None, meta: Any = None) -> Any: ...

    def get(self, entry_id: str) -> bytes: ...

    def private_key_for(self, kind: str, data: bytes) -> str | None: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class _Waiting:
    """A certificate of an escrow store whose key was not in its unit nor escrowed yet."""

    store: StoreConfig
    record: CertificateRecord
    host: str


@dataclass(frozen=True, slots=True, kw_only=True)
class EscrowRecord:
    """Art.4(7): what went into the vault (entry ids only, never material)."""

    path: str
    kind: str
    entry_id: str
    created: bool


def _reason(exc: Exception) -> str:
    """Our own errors (the vault's, the agent's) say what went wrong in words written for
    users; a library's text may quote what it was handed (key material included), so it never
    reaches a log line: only its type does."""
    if type(exc).__module__.split(".", 1)[0] in ("vault", "agent", "policy"):
        return str(exc)
    return f"{type(exc).__name__} (details withheld: library error text is never logged)"


class Escrow:
    """The daemon's vault handle: escrow puts and PKCS#12 passwords kept in the vault."""

    def __init__(self, *, vault_factory: Callable[[], VaultLike] | None, log: EventLog) -> None:
        self.vault_factory = vault_factory
        self.log = log
        self.vault: VaultLike | None = None
        self.records: list[EscrowRecord] = []
        self._escrowed_keys: dict[str, str] = {}
        """SPKI SHA-256 -> vault entry id of private keys already escrowed."""
        self._password_cache: dict[Path, tuple[bytes, ...]] = {}
        self._waiting: dict[str, dict[tuple[str, int], _Waiting]] = {}
        """SPKI SHA-256 -> the certificates waiting for that key, by (path, index): a key in
        another directory (``/etc/ssl/private`` beside ``/etc/ssl/certs``) may be read after
        its certificate; they are escrowed with it when it is."""
        self.failed: set[str] = set()
        """Paths whose escrow failed (the vault could not be opened or written): read again
        at the next full scan (a reload after `vault init`, the hourly resync, a restart)."""
        self._waiting_count = 0
        self._said_full = False
        self._waiting_in: dict[str, set[tuple[str, int]]] = {}
        """Path -> (SPKI, certificate index) of its certificates that wait (dropped when the
        file is read again or gone)."""
        self.waiting: Callable[[], AbstractContextManager[None]] = contextlib.nullcontext
        """Wraps every call into the vault, which may wait for another process's lock (the
        daemon keeps its watchdog pinged meanwhile: waiting is not being stuck)."""

    def handle(self) -> VaultLike:
        if self.vault is None:
            if self.vault_factory is None:
                raise AgentError("escrow is configured but no vault is available")
            self.vault = self.vault_factory()
        return self.vault

    def close(self) -> None:
        if self.vault is not None:
            self.vault.close()
            self.vault = None

    def vault_mark(self) -> str | None:
        """The vault this daemon escrows into, as what it holds: its id and how many audit
        records it has (every put, removal and restore adds one). ``None`` when none is open.
        A start that finds another mark (the vault replaced, re-created or restored from a
        backup while the daemon was down) reads every escrow store again. By content, not by
        file: a restore copies into the same inode, and a re-created file may get the old
        one (the second re-review)."""
        status = getattr(self.vault, "status", None)
        if status is None:
            return None
        try:
            with self.waiting():
                held = status()
        except Exception:  # a vault that cannot say: no mark, nothing forced
            return None
        return f"{held.vault_id}:{held.audit_records}"

    # ------------------------------------------------------------------ PKCS#12 passwords

    def forget_passwords(self) -> None:
        """A reload may name other vault entries: fetch them again."""
        self._password_cache.clear()

    def passwords(self, store: StoreConfig) -> tuple[bytes, ...]:
        """PKCS#12 passwords: the configured ones, then those kept in the vault
        (``pkcs12_password_vault_ids``), fetched once per store and never logged."""
        cached = self._password_cache.get(store.path)
        if cached is not None:
            return cached
        passwords = [p.encode() for p in store.pkcs12_passwords]
        for entry_id in store.pkcs12_password_vault_ids:
            try:
                with self.waiting():
                    passwords.append(self.handle().get(entry_id).rstrip(b"\r\n"))
            except Exception as exc:
                self.log.error("password-unavailable",
                               f"{store.path}: PKCS#12 password from vault entry {entry_id} "
                               f"unavailable: {type(exc).__name__}", path=str(store.path))
        result = tuple(passwords)
        self._password_cache[store.path] = result
        return result

    # ------------------------------------------------------------------ escrow

    def escrow(self, store: StoreConfig, result: FileResult, unit: Sequence[FileResult], *,
               host: str) -> dict[int, list[Finding]]:
        """Art.4(7): put each private key of ``result`` into the vault, and each certificate of
        ``result`` whose key is in the same unit (file or certbot set) together with that key;
        a certificate whose key is elsewhere waits for it (escrowed when that key is).
        Returns the findings saying so, by certificate index. ``put`` is idempotent, so a
        re-read or a resync escrows nothing twice."""
        out: dict[int, list[Finding]] = {}
        keys = {k.spki_sha256: k for r in unit for k in r.keys
                if k.pem is not None and k.spki_sha256}
        own_keys = [k for k in result.keys if k.pem is not None and k.spki_sha256]
        # an encrypted key no configured password opens: the vault cannot take it as it is
        locked = [k for k in result.keys if k.pem is not None and not k.spki_sha256]
        paired: list[CertificateRecord] = []
        self.forget(result.path)
        for record in result.certificates:
            if record.spki_sha256 in keys or self._held(record):
                paired.append(record)
            else:
                self._wait(store, record, host)
        if not own_keys and not paired and not locked:
            return out
        meta = {"host": host, "path": result.path}
        try:
            with self.waiting():
                self._put_all(store, result, own_keys, paired, keys, meta, out, host=host)
                if locked:
                    _refuse_locked()
        except Exception as exc:  # a vault failure must not stop the watching
            self.failed.add(result.path)
            why = _reason(exc)
            self.log.error("escrow-failed", f"{result.path}: escrow into the vault failed: "
                           f"{why}", path=result.path, error=type(exc).__name__)
            for record in result.certificates:
                out.setdefault(record.index, []).append(Finding(
                    code="escrow-failed", clause="Art.4(7)",
                    message=f"escrow into the vault failed: {why}", severity=Severity.CRITICAL))
        return out

    def _put_all(self, store: StoreConfig, result: FileResult, own_keys: list[KeyRecord],
                 paired: list[CertificateRecord], keys: dict[str, KeyRecord],
                 meta: dict[str, str], out: dict[int, list[Finding]], *, host: str) -> None:
        """The puts of :meth:`escrow`: keys of ``result``, then its certificates with theirs."""
        vault = self.handle()
        for key in own_keys:
            if key.pem is not None:
                put = vault.put("private-key", key.pem, contract_id=store.contract,
                                label=f"{result.path}#key{key.index}", meta=meta)
                self._record(result.path, "private-key", put)
                if key.spki_sha256:
                    self._escrowed_keys[key.spki_sha256] = str(put.entry_id)
                    self._put_waiting(vault, key.spki_sha256, str(put.entry_id))
        for record in paired:
            spki = record.spki_sha256 or ""
            key_id = self._escrowed_keys.get(spki)
            if key_id is None:
                key = keys[spki]
                if key.pem is None:
                    continue
                key_put = vault.put("private-key", key.pem, contract_id=store.contract,
                                    label=f"{key.path}#key{key.index}",
                                    meta={"host": host, "path": key.path})
                self._record(key.path, "private-key", key_put)
                key_id = self._escrowed_keys[spki] = str(key_put.entry_id)
            if record.der is None:
                raise AgentError(f"{result.path}: certificate bytes were not kept")
            cert_put = vault.put("certificate", record.der, contract_id=store.contract,
                                 label=f"{result.path}#{record.index}", meta=meta)
            self._record(result.path, "certificate", cert_put)
            out.setdefault(record.index, []).append(Finding(
                code="escrowed", clause="Art.4(7)",
                message=f"certificate and its private key escrowed into the vault "
                f"(certificate {cert_put.entry_id}, key {key_id})",
                severity=Severity.INFO))

    def _held(self, record: CertificateRecord) -> bool:
        """Whether the private key of ``record`` is escrowed already (see :meth:`_key_held`).
        A vault that cannot be opened or asked holds nothing here: the certificate waits for
        its key, and the put of that key says why the vault failed."""
        try:
            with self.waiting():
                return self._key_held(record)
        except Exception:
            return False

    def _key_held(self, record: CertificateRecord) -> bool:
        """Whether the vault holds the private key of certificate ``record``: escrowed by this
        daemon, or found in the vault by the certificate's public key however it got there
        (`vault import` of an encrypted key, an earlier run, another encoding)."""
        spki = record.spki_sha256
        if not spki:
            return False
        if spki in self._escrowed_keys:
            return True
        if record.der is None or record.facts.is_ca:  # a host holds no key of a CA's
            return False
        entry_id = self.handle().private_key_for("certificate", record.der)
        if entry_id is None:
            return False
        self._escrowed_keys[spki] = entry_id
        return True

    def _wait(self, store: StoreConfig, record: CertificateRecord, host: str) -> None:
        spki = record.spki_sha256
        if not spki or record.der is None or record.facts.is_ca:
            return
        if self._waiting_count >= WAITING_MAX:
            if not self._said_full:  # a store of keyless certificates: said once
                self._said_full = True
                self.log.warning(
                    "escrow-wait-full", f"{WAITING_MAX} certificates already wait for a key "
                    "read in another file: certificates read after them are escrowed with their "
                    "key only when it is in the same file or set (or read before them)",
                    waiting=WAITING_MAX)
            return
        held = self._waiting.setdefault(spki, {})
        if (record.path, record.index) not in held:
            self._waiting_count += 1
        held[(record.path, record.index)] = _Waiting(store, record, host)
        self._waiting_in.setdefault(record.path, set()).add((spki, record.index))

    def to_read_again(self) -> list[str]:
        """What a restart must read again for escrow, beyond the directories holding a key:
        the files whose escrow failed, and the certificates waiting for a key elsewhere (they
        wait in memory only). Kept in the read index (:class:`agent.daemon.Daemon`)."""
        return sorted(self.failed | set(self._waiting_in))

    def forget(self, path: str) -> None:
        """``path`` was read again or is gone: its certificates wait no more (as they were)."""
        self.failed.discard(path)
        for spki, index in self._waiting_in.pop(path, ()):
            self._unwait(spki, path, index)

    def keep_waiting(self, escrow_stores: set[Path]) -> None:
        """After a reload: only certificates of stores that still escrow wait for a key."""
        for spki, held in list(self._waiting.items()):
            for (path, index), waiting in list(held.items()):
                if waiting.store.path not in escrow_stores:
                    self._unwait(spki, path, index)

    def _unwait(self, spki: str, path: str, index: int) -> None:
        """Certificate ``index`` of ``path`` waits for ``spki`` no more."""
        held = self._waiting.get(spki)
        if held is not None and held.pop((path, index), None) is not None:
            self._waiting_count -= 1
            if not held:
                del self._waiting[spki]
        left = self._waiting_in.get(path)
        if left is not None:
            left.discard((spki, index))
            if not left:
                del self._waiting_in[path]

    def _put_waiting(self, vault: VaultLike, spki: str, key_id: str) -> None:
        """The certificates read before their key, escrowed now that it is (each stops
        waiting once its put succeeded)."""
        for (path, index), waiting in list(self._waiting.get(spki, {}).items()):
            der = waiting.record.der
            if der is None:  # pragma: no cover - _wait holds only certificates with DER
                continue
            put = vault.put("certificate", der, contract_id=waiting.store.contract,
                            label=f"{path}#{index}", meta={"host": waiting.host, "path": path})
            self._record(path, "certificate", put)
            self.log.info("escrow-paired", f"{path}: certificate escrowed with its key, read "
                          f"later from another file (key {key_id})", path=path, key=key_id)
            self._unwait(spki, path, index)

    def _record(self, path: str, kind: str, put: Any) -> None:
        record = EscrowRecord(path=path, kind=kind, entry_id=str(put.entry_id),
                              created=bool(put.created))
        self.records.append(record)
        if record.created:
            self.log.info("escrowed", f"{path}: {kind} escrowed into the vault (Art.4(7))",
                          path=path, kind=kind, entry=record.entry_id)


def _refuse_locked() -> None:
    """An encrypted key that no configured password opens cannot be escrowed, nor told apart
    from any other key: its public key is inside the encryption. So it is never taken as
    escrowed, not even when the vault holds the key of a certificate beside it (the re-review
    of session 15: the new key of a renewal in progress, beside the old certificate whose key
    had been imported, passed for escrowed while no vault held it). Its password is the way
    out: with it the daemon opens the key and escrows it."""
    raise AgentError(
        "the private key is encrypted and none of the store's passwords opens it, so the "
        "daemon cannot escrow it, nor tell whether the vault holds it already (its public key "
        "is inside the encryption): add its password to the store's pkcs12_passwords (or keep "
        "it in the vault and name that entry in pkcs12_password_vault_ids)")
