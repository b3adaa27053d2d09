"""What the vault's operations return: frozen values the CLI renders (``--json`` from the same
objects) and the daemon reads. Nothing here touches a file or a key.

``notes`` are what the cryptography library warned about while the vault read an object (a
serial number that is not positive), in the vault's words (:mod:`vault.boundary`): the object
was taken, and the command says so instead of letting Python print the library's warning. The
notes of one object's result are about that object; a whole-vault report's name their entry."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "EntryInfo",
    "ExportResult",
    "GenCsrResult",
    "MatchGroup",
    "MatchReport",
    "PutRequest",
    "PutResult",
    "RestoreResult",
    "RotateResult",
    "VaultStatus",
    "VerifyReport",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class PutResult:
    entry_id: str
    created: bool  # False: identical bytes of that kind were already in the vault
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ExportResult:
    entry_id: str  # in full (the command may have named it by a prefix)
    data: bytes  # the entry as stored, or converted
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class PutRequest:
    kind: str
    data: bytes
    contract_id: str | None = None
    label: str | None = None
    meta: Mapping[str, str] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class EntryInfo:
    """An entry's metadata: everything ``list``/``show`` print, nothing decrypted."""

    entry_id: str
    kind: str
    version: int
    label: str | None
    contract_id: str | None
    meta: Mapping[str, str]
    created_at: str
    updated_at: str
    size: int
    matchable: bool  # has a public-key tag, so `match` can pair it

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> EntryInfo:
        """From a row of the entries table, its types checked by :mod:`vault.store` (a
        ``meta`` column that is not a JSON object reads as empty)."""
        try:
            meta = json.loads(row["meta"])
        except (ValueError, TypeError):
            meta = {}
        return cls(entry_id=str(row["id"]), kind=str(row["kind"]), version=int(row["version"]),
                   label=row["label"], contract_id=row["contract_id"],
                   meta={str(k): str(v) for k, v in meta.items()}
                   if isinstance(meta, dict) else {},
                   created_at=str(row["created_at"]), updated_at=str(row["updated_at"]),
                   size=int(row["size"]), matchable=row["match_tag"] is not None)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.entry_id, "kind": self.kind, "version": self.version,
                "label": self.label, "contract_id": self.contract_id, "meta": dict(self.meta),
                "created_at": self.created_at, "updated_at": self.updated_at,
                "size": self.size}


@dataclass(frozen=True, slots=True, kw_only=True)
class MatchGroup:
    """Entries that share one public key."""

    keys: tuple[str, ...]
    certificates: tuple[str, ...]
    csrs: tuple[str, ...]
    pkcs12: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"keys": list(self.keys), "certificates": list(self.certificates),
                "csrs": list(self.csrs), "pkcs12": list(self.pkcs12)}


@dataclass(frozen=True, slots=True, kw_only=True)
class MatchReport:
    groups: tuple[MatchGroup, ...]  # at least one key and one certificate/CSR
    keys_without_certificate: tuple[str, ...]
    certificates_without_key: tuple[str, ...]

    @classmethod
    def from_tags(cls, tagged: Iterable[tuple[str, str, str]]) -> MatchReport:
        """Group ``(entry id, kind, public-key tag)`` triples by tag: a key (or PKCS#12) with a
        certificate or CSR is a group; the rest are lonely keys and certificates."""
        groups: dict[str, dict[str, list[str]]] = {}
        for entry_id, kind, tag in tagged:
            groups.setdefault(tag, {}).setdefault(kind, []).append(entry_id)
        matched: list[MatchGroup] = []
        lonely_keys: list[str] = []
        lonely_certs: list[str] = []
        for group in groups.values():
            keys = tuple(group.get("private-key", ()))
            certs = tuple(group.get("certificate", ()))
            csrs = tuple(group.get("csr", ()))
            bundles = tuple(group.get("pkcs12", ()))
            if (keys or bundles) and (certs or csrs):
                matched.append(MatchGroup(keys=keys, certificates=certs, csrs=csrs,
                                          pkcs12=bundles))
            elif keys:
                lonely_keys.extend(keys)
            elif certs:
                lonely_certs.extend(certs)
        return cls(groups=tuple(matched), keys_without_certificate=tuple(lonely_keys),
                   certificates_without_key=tuple(lonely_certs))

    def to_json(self) -> dict[str, Any]:
        return {"groups": [g.to_json() for g in self.groups],
                "keys_without_certificate": list(self.keys_without_certificate),
                "certificates_without_key": list(self.certificates_without_key)}


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifyReport:
    entries_checked: int
    audit_records: int
    problems: tuple[str, ...]
    notes: tuple[str, ...] = ()  # "entry ID: ...": read all the same, not a problem

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "entries_checked": self.entries_checked,
                "audit_records": self.audit_records, "problems": list(self.problems),
                "notes": list(self.notes)}


@dataclass(frozen=True, slots=True, kw_only=True)
class RotateResult:
    entries_rewrapped: int
    key_source: str
    old_key_kept: str | None  # where a dated copy of the retired key was written
    old_key_note: str  # what opens the backups made before the rotation

    def to_json(self) -> dict[str, Any]:
        return {"entries_rewrapped": self.entries_rewrapped, "key_source": self.key_source,
                "old_key_kept": self.old_key_kept, "old_key_note": self.old_key_note}


@dataclass(frozen=True, slots=True, kw_only=True)
class RestoreResult:
    path: Path
    entries: int
    replaced: bool

    def to_json(self) -> dict[str, Any]:
        return {"path": str(self.path), "entries": self.entries, "replaced": self.replaced}


@dataclass(frozen=True, slots=True, kw_only=True)
class GenCsrResult:
    key_id: str
    csr_id: str
    csr_pem: bytes

    def to_json(self) -> dict[str, Any]:
        return {"key_id": self.key_id, "csr_id": self.csr_id, "csr": self.csr_pem.decode()}


@dataclass(frozen=True, slots=True, kw_only=True)
class VaultStatus:
    path: Path
    format_version: int
    vault_id: str
    created_at: str
    key_source: str  # the source this command was given
    keyed_with: str  # the kind of source the vault was last keyed with (header)
    locked: bool
    lock_reason: str | None
    counts: Mapping[str, int] = field(default_factory=dict)
    audit_records: int = 0
    size_bytes: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"path": str(self.path), "format_version": self.format_version,
                "vault_id": self.vault_id, "created_at": self.created_at,
                "key_source": self.key_source, "keyed_with": self.keyed_with,
                "locked": self.locked, "lock_reason": self.lock_reason,
                "entries": sum(self.counts.values()), "counts": dict(self.counts),
                "audit_records": self.audit_records, "size_bytes": self.size_bytes}
