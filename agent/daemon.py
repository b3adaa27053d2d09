"""The daemon: keep the ledger's picture of every certificate store current.

Shape (STYLE.md, "the agent as an adapter"): watchdog handlers only enqueue paths
(:mod:`agent.watch`); this module's worker takes paths once they have been quiet for
``quiet_period_ms`` and does read -> parse -> facts -> policy classification -> report to the
intake -> escrow. The reader, the intake, the vault, both clocks and the notifier are injected,
so most tests drive :meth:`Daemon.process_due` and :meth:`Daemon.full_scan` with no observer.

The certbot trap: certbot renews by writing ``archive/x/cert2.pem`` … and then, *one file at a
time*, unlinking and re-creating the symlinks in ``live/x/``. Between two of those steps
``cert.pem`` and ``privkey.pem`` belong to different generations. A directory holding a
private key beside certificates is therefore handled as one set: after the quiet period the
whole set is re-read, a file that vanished mid-read means "try again after another quiet
period", and the set is reported only once every leaf certificate in it matches a key in it
(SPKI). If it still disagrees after ``MAX_SET_ATTEMPTS`` quiet periods the disagreement is real:
it is reported with ``key_matches=False`` and logged.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

from policy.decisions import Finding, Severity
from policy.facts import CertificateFacts
from policy.intake import Intake, Observation

from .config import Config, StoreConfig, load_config
from .errors import AgentError, ConfigError
from .index import FileIndex, stat_key
from .logs import EventLog, configure_logging
from .records import CertificateRecord, FileError, FileResult, ReadLimits
from .sdnotify import Notifier, watchdog_interval_s
from .watch import PathQueue, StoreWatcher

__all__ = [
    "MAX_SET_ATTEMPTS",
    "CertificateSeen",
    "Daemon",
    "EscrowRecord",
    "ScanSummary",
]

MAX_SET_ATTEMPTS = 10
"""Quiet periods a key/certificate set may disagree before the disagreement is reported."""
CERTBOT_LEAF_FILES = frozenset({"cert.pem", "fullchain.pem"})
"""certbot's files whose first certificate must match ``privkey.pem``."""
SET_MAX_FILES = 64
"""A directory with more entries than this is a flat store, not a certbot-style set."""
SUPERVISE_EVERY_S = 30.0
"""How often a dead or unstartable observer is restarted."""
REPORT_BATCH = 2000
"""Observations per intake transaction during full scans."""
_TRANSIENT = frozenset({"vanished", "not-found"})

Reader = Callable[..., FileResult]
Lister = Callable[..., Iterator[Path | FileError]]


class VaultLike(Protocol):
    def put(self, kind: str, data: bytes, *, contract_id: str | None = None,
            label: str | None = None, meta: Any = None) -> Any: ...

    def get(self, entry_id: str) -> bytes: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class EscrowRecord:
    """Art.4(7): what went into the vault (entry ids only, never material)."""

    path: str
    kind: str
    entry_id: str
    created: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class CertificateSeen:
    """One certificate as the daemon saw and classified it (for ``agent run --once``)."""

    record: CertificateRecord
    store: str
    key_matches: bool | None
    classification: Any
    findings: tuple[Finding, ...] = ()

    def to_json(self) -> dict[str, Any]:
        facts = self.record.facts
        out: dict[str, Any] = {
            "path": self.record.path,
            "index": self.record.index,
            "store": self.store,
            "sha256": facts.sha256,
            "subject": facts.subject,
            "issuer": facts.issuer,
            "sans": list(facts.sans),
            "not_before": facts.not_before_utc,
            "not_after": facts.not_after_utc,
            "key_matches": self.key_matches,
        }
        if self.classification is not None:
            data = self.classification.to_json()
            for key in ("validity_seconds", "tier", "renewable", "days_left", "item",
                        "category", "compliant", "actions"):
                if key in data:
                    out[key] = data[key]
            findings = list(data.get("findings", []))
        else:
            findings = []
        findings.extend(f.to_json() for f in (*self.record.findings, *self.findings))
        out["findings"] = findings
        return out

    @property
    def severity(self) -> Severity:
        worst = Severity.OK
        for finding in (*self.record.findings, *self.findings):
            worst = max(worst, finding.severity)
        if self.classification is not None:
            for finding in self.classification.findings:
                worst = max(worst, finding.severity)
            for action in self.classification.actions:
                worst = max(worst, action.severity)
        return worst


@dataclass(slots=True)
class ScanSummary:
    """What a full scan found; ``--once`` prints it."""

    files: int = 0
    certificates: list[CertificateSeen] = field(default_factory=list)
    errors: list[FileError] = field(default_factory=list)
    escrowed: list[EscrowRecord] = field(default_factory=list)
    gone: int = 0
    missing_stores: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "certificates": [c.to_json() for c in self.certificates],
            "errors": [e.to_json() for e in self.errors],
            "escrowed": [{"path": e.path, "kind": e.kind, "entry_id": e.entry_id,
                          "created": e.created} for e in self.escrowed],
            "gone": self.gone,
            "missing_stores": self.missing_stores,
        }


def _predecessor(previous: FileResult | None, record: CertificateRecord) -> CertificateFacts | None:
    """The certificate that was at ``record``'s place before it, if it was a different one."""
    if previous is None:
        return None
    for old in previous.certificates:
        if old.index == record.index and old.facts.sha256 != record.facts.sha256:
            return old.facts
    return None


def _without_material(result: FileResult) -> FileResult:
    """``result`` without private key PEM or certificate DER (kept only for escrow)."""
    if not any(k.pem for k in result.keys) and not any(c.der for c in result.certificates):
        return result
    return replace(result,
                   keys=tuple(replace(k, pem=None) for k in result.keys),
                   certificates=tuple(replace(c, der=None) for c in result.certificates))


def _default_reader() -> Reader:
    from .reader import read_file

    return read_file


def _default_lister() -> Lister:
    from .scan import iter_store_files

    return iter_store_files


class Daemon:
    """The worker and its state. Not thread-safe except :meth:`enqueue` (watchdog threads)."""

    def __init__(
        self,
        config: Config,
        *,
        intake: Intake,
        clock: Callable[[], datetime],
        config_path: Path | None = None,
        reader: Reader | None = None,
        lister: Lister | None = None,
        vault_factory: Callable[[], VaultLike] | None = None,
        notifier: Notifier | None = None,
        log: EventLog | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        classify: bool = True,
        config_loader: Callable[[Path | None], Config] = load_config,
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.intake = intake
        self.clock = clock
        self.reader = reader if reader is not None else _default_reader()
        self.lister = lister if lister is not None else _default_lister()
        self.vault_factory = vault_factory
        self.notifier = notifier if notifier is not None else Notifier("")
        self.log = log if log is not None else EventLog()
        self.monotonic = monotonic
        self.sleep = sleep
        self.config_loader = config_loader
        self.index: FileIndex[FileResult] = FileIndex()
        self.queue = PathQueue(clock=monotonic)
        self.watcher: StoreWatcher | None = None
        self._vault: VaultLike | None = None
        self._set_attempts: dict[str, int] = {}
        self._paired: set[str] = set()
        self._escrowed_keys: dict[str, str] = {}
        """SPKI SHA-256 -> vault entry id of private keys already escrowed."""
        """Paths whose leaf certificate matched a key beside it when last accepted."""
        self._catalogue: Any = None
        self._classify_enabled = classify
        self._stop = threading.Event()
        self._reload = threading.Event()
        self._resync = threading.Event()
        self.reports = 0
        self._password_cache: dict[Path, tuple[bytes, ...]] = {}
        self._ping_every = watchdog_interval_s()
        self._next_ping = monotonic()
        self._next_supervise = monotonic()
        self.escrow_log: list[EscrowRecord] = []
        self.log_format_override: str | None = None
        self.last_resync = monotonic()
        # The first scan after start reads every certificate again (the index lives in
        # memory): its findings are counted and logged as one line per kind, not one line per
        # certificate, so a restart does not flood the journal with what it already said.
        self._scanned_once = False
        self._tally: dict[tuple[str, str, str], list[Any]] | None = None
        self._configure_policy()

    # ------------------------------------------------------------------ configuration

    def _configure_policy(self) -> None:
        if not self._classify_enabled:
            self._catalogue = None
            return
        from policy.catalogue import load_catalogue

        self._catalogue = load_catalogue(self.config.policy.catalogue)

    def limits_for(self, store: StoreConfig) -> ReadLimits:
        return ReadLimits(max_size=self.config.agent.max_file_size, root=store.path,
                          allowed_roots=store.follow_links_into)

    @property
    def quiet_s(self) -> float:
        return self.config.agent.quiet_period_ms / 1000

    def store_for(self, path: str) -> StoreConfig | None:
        """The store a path belongs to (the deepest store root containing it)."""
        best: StoreConfig | None = None
        for store in self.config.agent.stores:
            root = str(store.path).rstrip("/")
            if (path == root or path.startswith(root + "/")) and (
                    best is None or len(root) > len(str(best.path))):
                best = store
        return best

    def watch_roots(self) -> list[Path]:
        roots: list[Path] = []
        for store in self.config.agent.stores:
            roots.append(store.path)
            roots.extend(store.follow_links_into)
        return list(dict.fromkeys(roots))

    # ------------------------------------------------------------------ events

    def enqueue(self, path: str) -> None:
        """Called from watchdog threads: record the path, nothing else."""
        self.queue.put(path)

    def process_due(self) -> int:
        """Process every path whose quiet period has elapsed; returns how many."""
        due = self.queue.take_due(self.quiet_s)
        if not due:
            return 0
        at = self.clock()
        observations: list[Observation] = []
        handled_sets: set[str] = set()
        for path in due:
            try:
                observations.extend(self._handle_path(path, at=at, handled_sets=handled_sets,
                                                      summary=None))
            except AgentError as exc:
                self.log.error("process-failed", f"{path}: {exc}", path=path)
            except Exception:
                # A bug in one path must not stop the daemon; it is logged with its traceback.
                self.log.error("process-failed", f"{path}: unexpected error", exc_info=True,
                               path=path)
        self._report(observations, at=at)
        return len(due)

    def _handle_path(self, path: str, *, at: datetime, handled_sets: set[str],
                     summary: ScanSummary | None) -> list[Observation]:
        store = self.store_for(path)
        if store is None:
            # An event in an allowed root (certbot's archive/): re-read the store paths that
            # showed that file.
            linked = self.index.linked_from(os.path.realpath(path)) + self.index.linked_from(path)
            for name in linked:
                self.queue.put(name)
            return []
        if not os.path.lexists(path):
            return self._gone(path, at=at, summary=summary)
        if os.path.isdir(path) and not os.path.islink(path):
            return self._scan_directory(store, Path(path), at=at, summary=summary,
                                        handled_sets=handled_sets)
        directory = os.path.dirname(path)
        if self._is_set(directory):
            if directory in handled_sets:
                return []
            handled_sets.add(directory)
            return self._process_set(store, directory, at=at, summary=summary)
        return self._process_file(store, path, at=at, summary=summary)

    def _gone(self, path: str, *, at: datetime, summary: ScanSummary | None) -> list[Observation]:
        gone = [p for p in (path, *self.index.paths_under(path)) if p in self.index]
        for name in gone:
            self._paired.discard(name)
            previous = self.index.remove(name)
            if previous is not None and previous.certificates:
                count = self.intake.report_gone(self.config.agent.host, name, at=at)
                self.log.info("gone", f"{name}: no longer there", path=name, certificates=count)
                if summary is not None:
                    summary.gone += 1
        directory = os.path.dirname(path)
        if self._is_set(directory):
            # certbot unlinks before it re-links: re-check the rest of the set later.
            for sibling in self.index.paths_under(directory):
                self.queue.put(sibling)
        return []

    # ------------------------------------------------------------------ reading

    def _read(self, store: StoreConfig, path: str) -> FileResult:
        return self.reader(Path(path), limits=self.limits_for(store),
                           passwords=self._passwords(store),
                           keep_key_pem=store.escrow, keep_der=store.escrow)

    def _passwords(self, store: StoreConfig) -> tuple[bytes, ...]:
        """PKCS#12 passwords: the configured ones, then those kept in the vault
        (``pkcs12_password_vault_ids``), fetched once per store and never logged."""
        cached = self._password_cache.get(store.path)
        if cached is not None:
            return cached
        passwords = [p.encode() for p in store.pkcs12_passwords]
        for entry_id in store.pkcs12_password_vault_ids:
            try:
                passwords.append(self._vault_handle().get(entry_id).rstrip(b"\r\n"))
            except Exception as exc:
                self.log.error("password-unavailable",
                               f"{store.path}: PKCS#12 password from vault entry {entry_id} "
                               f"unavailable: {type(exc).__name__}", path=str(store.path))
        result = tuple(passwords)
        self._password_cache[store.path] = result
        return result

    def _is_set(self, directory: str) -> bool:
        """A directory holding a private key beside certificates (certbot's ``live/x``)."""
        if self.store_for(directory) is None:
            return False
        try:
            names = os.listdir(directory)
        except OSError:
            names = []
        if not names or len(names) > SET_MAX_FILES:
            return False
        for name in names:
            if name.startswith("privkey") or name.endswith((".key", "key.pem")):
                return True
            cached = self.index.get(os.path.join(directory, name))
            if cached is not None and cached.keys:
                return True
        return False

    def _process_file(self, store: StoreConfig, path: str, *, at: datetime,
                      summary: ScanSummary | None) -> list[Observation]:
        key = stat_key(path)
        if summary is not None:
            summary.files += 1
        if self.index.unchanged(path, key):
            cached = self.index.get(path)
            if summary is not None and cached is not None:
                self._summarise(store, cached, self._key_lookup([cached]), summary)
            return []
        result = self._read(store, path)
        if result.error is not None and result.error.code in _TRANSIENT:
            if not os.path.lexists(path):
                self._set_attempts.pop(path, None)
                return self._gone(path, at=at, summary=summary)
            attempts = self._set_attempts.get(path, 0) + 1
            if attempts < MAX_SET_ATTEMPTS and summary is None:
                # Replaced while we read it: read the new one after the quiet period.
                self._set_attempts[path] = attempts
                self.queue.put(path)
                return []
            # Still there and still unreadable (a dangling link): a per-file error.
        self._set_attempts.pop(path, None)
        return self._accept(store, [result], at=at, summary=summary)

    def _process_set(self, store: StoreConfig, directory: str, *, at: datetime,
                     summary: ScanSummary | None) -> list[Observation]:
        names = sorted(os.listdir(directory)) if os.path.isdir(directory) else []
        paths = [os.path.join(directory, n) for n in names
                 if not os.path.isdir(os.path.join(directory, n))]
        results: list[FileResult] = []
        changed = False
        for path in paths:
            key = stat_key(path)
            cached = self.index.get(path)
            if cached is not None and self.index.unchanged(path, key):
                results.append(cached)
                continue
            changed = True
            result = self._read(store, path)
            if (result.error is not None and result.error.code in _TRANSIENT
                    and self._set_attempts.get(directory, 0) < MAX_SET_ATTEMPTS):
                return self._retry_set(store, directory,
                                       f"{os.path.basename(path)} vanished while the set was "
                                       "read", at=at, summary=summary)
            results.append(result)
        for gone in set(self.index.paths_under(directory)) - set(paths):
            if os.path.dirname(gone) == directory:
                self._gone(gone, at=at, summary=summary)
        if summary is not None:
            summary.files += len(results)
        if not changed:
            if summary is not None:
                for result in results:
                    self._summarise(store, result, self._key_lookup(results), summary)
            return []
        mismatched = self._mismatched_leaves(results)
        attempts = self._set_attempts.get(directory, 0)
        if mismatched and attempts < MAX_SET_ATTEMPTS:
            return self._retry_set(store, directory,
                                   f"key and certificate disagree ({', '.join(mismatched)})",
                                   at=at, summary=summary)
        if mismatched:
            self.log.warning("key-mismatch",
                             f"{directory}: private key and certificate still disagree after "
                             f"{attempts} quiet periods; reporting as mismatched",
                             path=directory, files=",".join(mismatched))
        self._set_attempts.pop(directory, None)
        return self._accept(store, results, at=at, summary=summary)

    def _retry_set(self, store: StoreConfig, directory: str, reason: str, *, at: datetime,
                   summary: ScanSummary | None) -> list[Observation]:
        attempts = self._set_attempts.get(directory, 0) + 1
        self._set_attempts[directory] = attempts
        self.log.info("set-unsettled", f"{directory}: {reason}; re-reading after the quiet "
                      f"period (attempt {attempts})", path=directory, attempt=attempts)
        if summary is not None:
            # A one-shot scan (--once) has no event loop to come back to: wait here.
            self.sleep(self.quiet_s)
            return self._process_set(store, directory, at=at, summary=summary)
        self.queue.put(directory)
        return []

    @staticmethod
    def _key_lookup(results: Sequence[FileResult]) -> set[str]:
        return {k.spki_sha256 for r in results for k in r.keys if k.spki_sha256}

    @staticmethod
    def _leaf(result: FileResult) -> CertificateRecord | None:
        for record in result.certificates:
            if not record.facts.is_ca:
                return record
        return None

    def _mismatched_leaves(self, results: Sequence[FileResult]) -> list[str]:
        """Files whose leaf certificate should pair with a key of the set and does not: the
        ones that paired when last accepted, and certbot's ``cert.pem``/``fullchain.pem``. A
        certificate that never had its key here (a directory of several sites, one key
        missing) is reported at once, with ``key_matches = false``, rather than waited for."""
        keys = self._key_lookup(results)
        if not keys:
            return []
        bad: list[str] = []
        for result in results:
            leaf = self._leaf(result)
            if leaf is None or leaf.spki_sha256 is None or leaf.spki_sha256 in keys:
                continue
            name = os.path.basename(result.path)
            if result.path in self._paired or name in CERTBOT_LEAF_FILES:
                bad.append(name)
        return bad

    def _accept(self, store: StoreConfig, results: Sequence[FileResult], *, at: datetime,
                summary: ScanSummary | None) -> list[Observation]:
        """Index, classify, escrow and turn into observations the results of one unit."""
        keys = self._key_lookup(results)
        observations: list[Observation] = []
        for result in results:
            path = result.path
            previous = self.index.get(path)
            key = result.stat if result.stat is not None else stat_key(path)
            if self.index.unchanged(path, key) and previous is result:
                if summary is not None:
                    self._summarise(store, result, keys, summary)
                continue
            # Only a link needs tracing back from its target (certbot live/ -> archive/).
            target = os.path.realpath(path) if os.path.islink(path) else path
            escrow_findings = self._escrow(store, result, results) if store.escrow else {}
            # Key material is not kept past its escrow: the index holds no private keys.
            self.index.put(path, key, _without_material(result) if store.escrow else result,
                           target=target)
            leaf = self._leaf(result)
            if leaf is not None and leaf.spki_sha256 is not None and leaf.spki_sha256 in keys:
                self._paired.add(path)
            else:
                self._paired.discard(path)
            if result.error is not None:
                self.log.warning("file-error", f"{path}: {result.error.message}",
                                 path=path, code=result.error.code)
                if summary is not None:
                    summary.errors.append(result.error)
            for error in result.cert_errors:
                self.log.warning("certificate-error", f"{path}: {error.message}", path=path,
                                 code=error.code, index=error.index)
                if summary is not None:
                    summary.errors.append(error)
            if previous is not None and len(previous.certificates) > len(result.certificates):
                # Fewer certificates than before (or none: the file turned to garbage): the
                # ledger forgets the place, and what is still there is reported afresh below.
                self.intake.report_gone(self.config.agent.host, path, at=at)
            for record in result.certificates:
                matches = self._matches(record, result, keys)
                observations.append(Observation(
                    facts=record.facts, host=self.config.agent.host, location=path,
                    index=record.index, observed_at_utc=at, binding=store.binding,
                    key_matches=matches))
                seen = CertificateSeen(
                    record=record, store=str(store.path), key_matches=matches,
                    classification=self._classify(store, record, at=at,
                                                  previous=_predecessor(previous, record)),
                    findings=tuple(escrow_findings.get(record.index, ())))
                self._log_findings(seen)
                if summary is not None:
                    summary.certificates.append(seen)
            for finding in result.findings:
                if finding.severity >= Severity.WARNING:
                    self.log.warning("finding", f"{path}: {finding.message}", path=path,
                                     code=finding.code, clause=finding.clause)
        return observations

    def _summarise(self, store: StoreConfig, result: FileResult, keys: set[str],
                   summary: ScanSummary) -> None:
        at = self.clock()
        if result.error is not None:
            summary.errors.append(result.error)
        summary.errors.extend(result.cert_errors)
        for record in result.certificates:
            summary.certificates.append(CertificateSeen(
                record=record, store=str(store.path),
                key_matches=self._matches(record, result, keys),
                classification=self._classify(store, record, at=at)))

    @staticmethod
    def _matches(record: CertificateRecord, result: FileResult, keys: set[str]) -> bool | None:
        """Whether a private key beside the certificate matches it; ``None`` for CA
        certificates and when no key is there."""
        if record.facts.is_ca:
            return None
        local = {k.spki_sha256 for k in result.keys if k.spki_sha256} or keys
        if not local or record.spki_sha256 is None:
            return None
        return record.spki_sha256 in local

    def _classify(self, store: StoreConfig, record: CertificateRecord, *, at: datetime,
                  previous: CertificateFacts | None = None) -> Any:
        """The policy core's classification; ``previous`` is the certificate this one replaced
        at the same place (a renewal: the Art.3 proviso's CA transition allowance needs it)."""
        if self._catalogue is None:
            return None
        from policy.classification import classify_certificate

        try:
            return classify_certificate(record.facts, self._catalogue, binding=store.binding,
                                        at=at, previous=previous,
                                        settings=self.config.policy.settings)
        except Exception:
            self.log.error("classify-failed", f"{record.path}[{record.index}]: cannot classify",
                           exc_info=True, path=record.path)
            return None

    def _log_findings(self, seen: CertificateSeen) -> None:
        # A CA certificate in a store is a chain (certbot's chain.pem), not a finding to shout
        # about; its classification is still in the --once summary.
        if seen.classification is None or seen.record.facts.is_ca:
            return
        where = f"{seen.record.path}[{seen.record.index}]"
        logged: set[str] = set()
        for finding in seen.classification.findings:
            if finding.severity >= Severity.WARNING:
                logged.add(finding.code)
                self._warn(("finding", finding.code, finding.clause), seen,
                           f"{where}: {finding.message}", code=finding.code,
                           clause=finding.clause)
        # What the contract now calls for (a non-compliant certificate, a notice due), unless a
        # finding above already said it.
        for action in seen.classification.actions:
            if action.severity >= Severity.WARNING and action.action.value not in logged:
                due = action.due.isoformat() if action.due else ""
                self._warn(("action", action.action.value, action.clause), seen,
                           f"{where}: {action.explanation_en}", action=action.action.value,
                           clause=action.clause, due=due)

    def _warn(self, kind: tuple[str, str, str], seen: CertificateSeen, message: str,
              **fields: Any) -> None:
        """A per-certificate warning; during the first scan it is counted (and logged at debug
        level) for :meth:`_log_tally`."""
        fields.update(path=seen.record.path, sha256=seen.record.facts.sha256)
        if self._tally is None:
            self.log.warning(kind[0], message, **fields)
            return
        self.log.debug(kind[0], message, **fields)
        entry = self._tally.setdefault(kind, [0, seen.record.path])
        entry[0] += 1

    def _log_tally(self) -> None:
        """One line per kind of finding or action counted in the first scan."""
        tally, self._tally = self._tally, None
        for (event, code, clause), (count, example) in sorted((tally or {}).items()):
            self.log.warning(
                event,
                f"initial scan: {count} certificate(s) with {code}"
                + (f" [{clause}]" if clause else "")
                + f", e.g. {example}; `certescrow scan` or `certescrow policy actions` lists them",
                count=count, example=example, clause=clause,
                **({"code": code} if event == "finding" else {"action": code}),
            )

    # ------------------------------------------------------------------ escrow (Art.4(7))

    def _vault_handle(self) -> VaultLike:
        if self._vault is None:
            if self.vault_factory is None:
                raise AgentError("escrow is configured but no vault is available")
            self._vault = self.vault_factory()
        return self._vault

    def _escrow(self, store: StoreConfig, result: FileResult,
                unit: Sequence[FileResult]) -> dict[int, list[Finding]]:
        """Art.4(7): put each private key of ``result`` into the vault, and each certificate of
        ``result`` whose key is in the same unit (file or certbot set) together with that key.
        Returns the findings saying so, by certificate index. ``put`` is idempotent, so a
        re-read or a resync escrows nothing twice."""
        out: dict[int, list[Finding]] = {}
        keys = {k.spki_sha256: k for r in unit for k in r.keys
                if k.pem is not None and k.spki_sha256}
        own_keys = [k for k in result.keys if k.pem is not None]
        paired = [c for c in result.certificates
                  if c.spki_sha256 in keys or c.spki_sha256 in self._escrowed_keys]
        if not own_keys and not paired:
            return out
        meta = {"host": self.config.agent.host, "path": result.path}
        try:
            vault = self._vault_handle()
            for key in own_keys:
                if key.pem is not None:
                    put = vault.put("private-key", key.pem, contract_id=store.contract,
                                    label=f"{result.path}#key{key.index}", meta=meta)
                    self._escrowed(result.path, "private-key", put)
                    if key.spki_sha256:
                        self._escrowed_keys[key.spki_sha256] = str(put.entry_id)
            for record in paired:
                spki = record.spki_sha256 or ""
                key_id = self._escrowed_keys.get(spki)
                if key_id is None:
                    key = keys[spki]
                    if key.pem is None:
                        continue
                    key_put = vault.put("private-key", key.pem, contract_id=store.contract,
                                        label=f"{key.path}#key{key.index}",
                                        meta={"host": self.config.agent.host, "path": key.path})
                    self._escrowed(key.path, "private-key", key_put)
                    key_id = self._escrowed_keys[spki] = str(key_put.entry_id)
                if record.der is None:
                    raise AgentError(f"{result.path}: certificate bytes were not kept")
                cert_put = vault.put("certificate", record.der, contract_id=store.contract,
                                     label=f"{result.path}#{record.index}", meta=meta)
                self._escrowed(result.path, "certificate", cert_put)
                out.setdefault(record.index, []).append(Finding(
                    code="escrowed", clause="Art.4(7)",
                    message=f"certificate and its private key escrowed into the vault "
                    f"(certificate {cert_put.entry_id}, key {key_id})",
                    severity=Severity.INFO))
        except Exception as exc:  # a vault failure must not stop the watching
            self.log.error("escrow-failed", f"{result.path}: escrow into the vault failed: "
                           f"{type(exc).__name__}: {exc}", path=result.path)
            for record in result.certificates:
                out.setdefault(record.index, []).append(Finding(
                    code="escrow-failed", clause="Art.4(7)",
                    message=f"escrow into the vault failed: {exc}", severity=Severity.CRITICAL))
        return out

    def _escrowed(self, path: str, kind: str, put: Any) -> None:
        record = EscrowRecord(path=path, kind=kind, entry_id=str(put.entry_id),
                              created=bool(put.created))
        self.escrow_log.append(record)
        if record.created:
            self.log.info("escrowed", f"{path}: {kind} escrowed into the vault (Art.4(7))",
                          path=path, kind=kind, entry=record.entry_id)

    # ------------------------------------------------------------------ scans

    def _scan_directory(self, store: StoreConfig, directory: Path, *, at: datetime,
                        summary: ScanSummary | None,
                        handled_sets: set[str]) -> list[Observation]:
        observations: list[Observation] = []
        seen: set[str] = set()
        by_dir: dict[str, list[str]] = {}
        for item in self.lister(directory, limits=self.limits_for(store)):
            if isinstance(item, FileError):
                seen.add(item.path)
                if summary is not None:
                    summary.errors.append(item)
                self.log.warning("file-error", f"{item.path}: {item.message}", path=item.path,
                                 code=item.code)
                continue
            name = str(item)
            seen.add(name)
            by_dir.setdefault(os.path.dirname(name), []).append(name)
        for parent, names in by_dir.items():
            self.tick()
            if self._stop.is_set():
                # SIGTERM during a long scan: stop now; nothing unseen is taken for gone.
                return observations
            if self._is_set(parent):
                if parent not in handled_sets:
                    handled_sets.add(parent)
                    observations.extend(self._process_set(store, parent, at=at,
                                                          summary=summary))
                continue
            for name in names:
                self.tick()
                if self._stop.is_set():
                    return observations
                observations.extend(self._process_file(store, name, at=at, summary=summary))
            if len(observations) >= REPORT_BATCH:
                self._report(observations, at=at)
                observations = []
        for name in self.index.paths_under(directory):
            if name not in seen and not os.path.lexists(name):
                observations.extend(self._gone(name, at=at, summary=summary))
        return observations

    def full_scan(self, *, collect: bool = False) -> ScanSummary:
        """Walk every store; read only what changed since the last read; report; mark what is
        no longer there as gone. ``collect`` fills the summary with every certificate."""
        at = self.clock()
        summary = ScanSummary()
        handled: set[str] = set()
        if not self._scanned_once:
            self._tally = {}
        escrowed_before = len(self.escrow_log)
        for store in self.config.agent.stores:
            if self._stop.is_set():
                break
            if not store.path.is_dir():
                summary.missing_stores.append(str(store.path))
                self.log.warning("store-missing", f"{store.path}: store root does not exist "
                                 "(or is not a directory); nothing to scan there",
                                 path=str(store.path))
                for name in self.index.paths_under(store.path):
                    self._gone(name, at=at, summary=summary)
                continue
            observations = self._scan_directory(store, store.path, at=at,
                                                summary=summary if collect else None,
                                                handled_sets=handled)
            self._report(observations, at=at)
        # Forget stores that are no longer configured (after a reload).
        for name in list(self.index.paths()):
            if self.store_for(name) is None:
                self.index.remove(name)
        self.last_resync = self.monotonic()
        self._log_tally()
        self._scanned_once = True
        summary.escrowed = self.escrow_log[escrowed_before:]
        count = len(self.index)
        self.log.info("scanned", f"full scan done: {count} file(s) indexed", files=count)
        return summary

    def _report(self, observations: Sequence[Observation], *, at: datetime) -> None:
        for start in range(0, len(observations), REPORT_BATCH):
            batch = observations[start:start + REPORT_BATCH]
            receipt = self.intake.report(batch, at=at)
            self.reports += len(batch)
            self.log.info("reported", f"{len(batch)} observation(s) reported",
                          observations=len(batch), recorded=receipt.recorded)

    # ------------------------------------------------------------------ supervision

    def status_line(self) -> str:
        kind = self.watcher.kind if self.watcher is not None else "none"
        return (f"watching {len(self.config.agent.stores)} store(s) with {kind}; "
                f"{len(self.index)} file(s) indexed; {self.reports} observation(s) reported")

    def heartbeat(self) -> bool:
        """Send WATCHDOG=1 only while every observer thread is alive; a dead observer means
        changes are silently missed, which is exactly what the systemd watchdog is for."""
        if self.watcher is not None:
            dead = self.watcher.dead_threads()
            if dead:
                self.log.error("observer-dead", "observer thread(s) died: " + ", ".join(dead)
                               + "; watchdog ping withheld", threads=",".join(dead))
                return False
        return self.notifier.watchdog()

    def tick(self) -> None:
        """Send the watchdog ping when it is due (also from inside long scans: the initial
        scan of a large store can outlast ``WatchdogSec=``)."""
        if self._ping_every is None:
            return
        now = self.monotonic()
        if now >= self._next_ping:
            self._next_ping = now + self._ping_every
            self.heartbeat()

    def supervise(self) -> None:
        """Restart a watcher whose threads died (at most every ``SUPERVISE_EVERY_S``), then
        rescan to catch what it missed."""
        if self.watcher is None or self.watcher.alive():
            return  # not watching by design (--once), or all is well
        now = self.monotonic()
        if now < self._next_supervise:
            return
        self._next_supervise = now + SUPERVISE_EVERY_S
        self.log.warning("observer-restart", "restarting the file observers")
        self.stop_watching()
        if self.start_watching():
            self.full_scan()

    def start_watching(self) -> bool:
        """Start the observers; a failure (``observer = "inotify"`` out of watches) is logged
        and leaves the daemon resyncing periodically with its watchdog ping withheld."""
        self.watcher = StoreWatcher(self.enqueue, mode=self.config.agent.observer, log=self.log,
                                    on_overflow=self.request_resync)
        try:
            self.watcher.start(self.watch_roots())
        except OSError as exc:
            self.log.error("watch-failed", f"cannot watch the stores: {exc.strerror or exc}; "
                           "watchdog ping withheld", observer=self.config.agent.observer)
            self.watcher.stop()
            return False
        return True

    def stop_watching(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()

    def request_stop(self) -> None:
        self._stop.set()
        self.queue.wake()

    def request_resync(self) -> None:
        """Events were lost (inotify queue overflow): rescan everything soon."""
        self._resync.set()
        self.queue.wake()

    def request_reload(self) -> None:
        self._reload.set()
        self.queue.wake()

    def reload(self) -> bool:
        """SIGHUP: read the configuration again; a bad one is refused and the old one kept."""
        self.notifier.reloading()
        try:
            new = self.config_loader(self.config_path)
            if new.policy.catalogue != self.config.policy.catalogue and self._classify_enabled:
                from policy.catalogue import load_catalogue

                load_catalogue(new.policy.catalogue)  # refuse a broken catalogue too
        except (AgentError, ConfigError, Exception) as exc:
            self.log.error("reload-refused", f"new configuration refused, still running the "
                           f"old one: {exc}")
            self.notifier.ready(self.status_line())
            return False
        old = self.config
        self.config = new
        self._password_cache.clear()
        self._configure_policy()
        fmt = self.log_format_override or new.agent.log_format
        if fmt != (self.log_format_override or old.agent.log_format):
            configure_logging(fmt)
        if (new.agent.stores != old.agent.stores or new.agent.observer != old.agent.observer
                or self.watcher is None):
            self.stop_watching()
            self.start_watching()
        self.full_scan()
        self.log.info("reloaded", "configuration reloaded",
                      source=str(new.source) if new.source else "<defaults>")
        self.notifier.ready(self.status_line())
        return True

    # ------------------------------------------------------------------ main loop

    def install_signal_handlers(self) -> None:
        def stop(signum: int, frame: FrameType | None) -> None:
            self.request_stop()

        def hup(signum: int, frame: FrameType | None) -> None:
            self.request_reload()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGHUP, hup)

    def run(self) -> int:
        """Watch until SIGTERM/SIGINT: initial scan, observers, events, resyncs, pings."""
        status_every = 30.0
        next_status = self.monotonic() + status_every
        try:
            self.notifier.status("initial scan")
            self.start_watching()  # before the scan, so nothing changed during it is lost
            self.full_scan()
            self.notifier.ready(self.status_line())
            self.log.info("ready", self.status_line())
            while not self._stop.is_set():
                if self._reload.is_set():
                    self._reload.clear()
                    self.reload()
                self.process_due()
                now = self.monotonic()
                self.tick()
                self.supervise()
                interval = self.config.agent.resync_interval_s
                if self._resync.is_set():
                    self._resync.clear()
                    self.log.warning("resync", "inotify queue overflowed: events were lost; "
                                     "rescanning every store")
                    self.full_scan()
                elif interval and now - self.last_resync >= interval:
                    if self.watcher is not None:
                        self.watcher.retry_missing()
                    self.full_scan()
                if now >= next_status:
                    self.notifier.status(self.status_line())
                    next_status = now + status_every
                waits = [1.0]
                due_in = self.queue.next_due_in(self.quiet_s)
                if due_in is not None:
                    waits.append(due_in)
                if self._ping_every is not None:
                    waits.append(max(0.0, self._next_ping - self.monotonic()))
                if not (self._stop.is_set() or self._reload.is_set()
                        or self._resync.is_set()):
                    self.queue.wait(max(0.005, min(waits)))
        finally:
            self.shutdown()
        return 0

    def shutdown(self) -> None:
        self.notifier.stopping()
        self.log.info("stopping", "observers stopped; ledger and vault closed")
        self.stop_watching()
        close = getattr(self.intake, "close", None)
        if callable(close):
            close()
        if self._vault is not None:
            self._vault.close()
            self._vault = None
        self.notifier.close()
