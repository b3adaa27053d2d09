"""The agent's side of the fleet: report to ``policy serve`` through the outbox, and heartbeat.

:class:`OutboxIntake` is an :class:`policy.intake.Intake`, so the daemon does not know whether it
reports to the local ledger or to a service: ``[report] server = "https://…"`` picks this one.
``report``/``report_gone`` only commit a batch to the outbox (:mod:`agent.outbox`) and return;
a sender thread sends the oldest batch, deletes it once the service acknowledged it, and
otherwise retries with exponential backoff and full jitter (so a thousand agents that lost the
service together do not come back in lockstep). Every ``heartbeat_s`` it sends an inventory
snapshot, so the desk sees a host that went silent or whose certificates disappeared.

What happens when the service is down: reports accumulate in the outbox (bounded, see
:mod:`agent.outbox`), the daemon goes on watching, and everything is sent in order once the
service answers again. A batch the service refuses as too large (413: nothing of it was
written) is split in the outbox into halves under new sequence numbers, down to single
observations; one that is still refused, or refused as malformed (400), stays at the head of
the outbox and is logged on every attempt: it is a bug to fix, never something to drop quietly.

What the operator sees (:meth:`OutboxIntake.agent_findings`, counted by ``agent run --once
--exit-status``): a service that refuses this host (401/403: revoked, not registered, another
host's certificate; or a batch it refuses for good) is the critical ``report-refused``; a service
that cannot be reached is logged with the reason in our words (:func:`unreachable_reason`) and
becomes the warning ``report-unreachable`` once it lasted ``[report] unreachable_after_s``, or
when ``--once`` could not deliver its report.

The HTTP client is the standard library's ``http.client`` over the ``ssl`` context built by
:func:`agent.fleet_ca.client_ssl_context` (the daemon is threaded; one request at a time). The
context is made again, and used from the next request on, by a renewal, by the daemon's reload
(SIGHUP) and by a refusal of this host's certificate whose file was replaced since it was read
(:class:`ClientCredentials`): a host re-signed at the desk needs no restart.
"""

from __future__ import annotations

import errno
import http.client
import json
import os
import random
import re
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from policy.decisions import Finding, Severity
from policy.events import instant_to_text
from policy.fleet_wire import WireError, heartbeat_body, observation_to_wire, report_body
from policy.intake import IntakeReceipt, Observation

from .errors import AgentError, ConfigError
from .fleet_bindings import BINDINGS_NAME, AssignedBindings
from .inventory import InventorySlot
from .logs import EventLog
from .outbox import Outbox, OutboxBatch, OutboxFullError

__all__ = [
    "FleetClient",
    "OutboxIntake",
    "ReportSettings",
    "SendResult",
    "report_settings",
]

DEFAULT_HEARTBEAT_S = 60.0
DEFAULT_BATCH = 500
BACKOFF_BASE_S = 1.0
BACKOFF_CAP_S = 300.0
STARTUP_FETCH_S = 5.0
UNASSIGNED_NAMED = 10
"""How many locations a ``report-unassigned`` line names (the rest are counted)."""
"""How long a starting agent waits for its bindings from the service."""
UNREACHABLE_REMINDER_S = 600.0
"""``report-unreachable`` is logged when its reason changes, and with the same reason again
after this long (docs/fleet.md)."""
DEFAULT_UNREACHABLE_AFTER_S = 900.0
"""An unreachable service becomes the host's warning after this long (``[report]
unreachable_after_s``): a restart of the service is not a page, a quarter of an hour is."""
_REPORT_KEYS = ("server", "client_certificate", "client_key", "ca_bundle", "heartbeat_s",
                "outbox", "outbox_capacity", "batch", "timeout_s", "unreachable_after_s")


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportSettings:
    """``[report]``: where to report, with which client certificate."""

    server: str
    """``https://host:port`` of ``policy serve``."""
    client_certificate: Path
    client_key: str
    """The vault entry id of the agent's key (``certescrow agent enroll`` prints it)."""
    ca_bundle: Path
    heartbeat_s: float = DEFAULT_HEARTBEAT_S
    outbox: Path | None = None
    outbox_capacity: int = 200_000
    batch: int = DEFAULT_BATCH
    timeout_s: float = 30.0
    unreachable_after_s: float = DEFAULT_UNREACHABLE_AFTER_S


def report_settings(raw: Mapping[str, Any], *, source: str, default_outbox: Path
                    ) -> ReportSettings | None:
    """``[report]`` of the raw configuration, checked (``None`` when there is none, i.e. the
    local ledger)."""
    table = raw.get("report")
    if table is None:
        return None
    where = f"{source}: [report]"
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: expected a table")
    unknown = sorted(set(table) - set(_REPORT_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}")

    def text(key: str) -> str:
        value = table.get(key)
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{where}.{key}: required, a non-empty string")
        return value

    def number(key: str, default: float, low: float) -> float:
        value = table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or value < low:
            raise ConfigError(f"{where}.{key}: a number >= {low}")
        return float(value)

    server = text("server")
    parsed = urllib.parse.urlsplit(server)
    if parsed.scheme != "https" or not parsed.hostname:
        raise ConfigError(f"{where}.server: an https:// URL")
    outbox = table.get("outbox")
    if outbox is not None and not isinstance(outbox, str):
        raise ConfigError(f"{where}.outbox: a path")
    return ReportSettings(
        server=server, client_certificate=Path(text("client_certificate")).expanduser(),
        client_key=text("client_key"), ca_bundle=Path(text("ca_bundle")).expanduser(),
        heartbeat_s=number("heartbeat_s", DEFAULT_HEARTBEAT_S, 1),
        outbox=Path(outbox).expanduser() if outbox else default_outbox,
        outbox_capacity=int(number("outbox_capacity", 200_000, 1)),
        batch=int(number("batch", DEFAULT_BATCH, 1)),
        timeout_s=number("timeout_s", 30.0, 0.1),
        unreachable_after_s=number("unreachable_after_s", DEFAULT_UNREACHABLE_AFTER_S, 0))


@dataclass(frozen=True, slots=True, kw_only=True)
class SendResult:
    """One request's outcome: ``status`` 0 means the service could not be reached."""

    status: int
    body: Mapping[str, Any]
    retry_after_s: float | None = None
    """A 503's ``Retry-After`` (seconds), when it gave one."""
    client_refused: bool = False
    """Status 0 because the service ended the TLS handshake over this host's certificate
    (expired, not of the fleet CA): refused, not unreachable."""

    @property
    def ok(self) -> bool:
        return self.status == 200

    @property
    def transient(self) -> bool:
        """Worth trying again later as it is: the service could not be reached, or answered
        that it cannot take the request now (408 its body deadline, 429 this host's
        connections or reports in progress, 503 busy or its ledger unavailable)."""
        return self.status in (0, 408, 429, 503) and not self.client_refused

    @property
    def refused(self) -> bool:
        """The service answered and will not take this request as it is (401, 403, 400, or a
        client certificate refused in the handshake): retrying the same thing will not help."""
        return self.client_refused or self.status in (400, 401, 403)

    @property
    def message(self) -> str:
        error = self.body.get("error")
        return str(error)[:300] if isinstance(error, str) else f"HTTP {self.status}"


_VERIFY_WORDS = {
    62: "TLS verification failed: the server's certificate does not name {host} "
        "(hostname mismatch: [report] server must be one of the names given to "
        "`certescrow fleet server-cert`)",
    10: "TLS verification failed: the server's certificate has expired (issue a new one with "
        "`certescrow fleet server-cert`)",
    9: "TLS verification failed: the server's certificate is not valid yet (check the clocks)",
}
_NOT_OUR_CA = ("TLS verification failed: the server's certificate is not signed by the "
               "configured ca_bundle ({bundle}; it must be the fleet CA's certificate)")


_REFUSED_BY_ALERT = {
    "TLSV1_ALERT_UNKNOWN_CA": "it is not issued by the fleet CA the service trusts (another "
                              "CA's, or signed for another fleet)",
    "SSLV3_ALERT_CERTIFICATE_EXPIRED": "it has expired (sign a new CSR at the desk: "
                                       "certescrow agent enroll, fleet sign)",
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": "this host sent none",
    "SSLV3_ALERT_BAD_CERTIFICATE": "the service cannot use it",
    "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE": "the service cannot use it",
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN": "the service cannot use it",
    "SSLV3_ALERT_CERTIFICATE_REVOKED": "it is revoked",
}
"""The fatal TLS alerts (OpenSSL's reason names, as the ``ssl`` module gives them) a service
sends when it refuses the client's certificate, and what each means for the operator. Under
TLS 1.3 the client's side of the handshake is over before the service checks the certificate,
so the alert arrives on the first read (or is read after the first write failed, see
:meth:`FleetClient.request`), never as a failed handshake."""
_NOT_TLS = {"WRONG_VERSION_NUMBER", "HTTP_REQUEST", "RECORD_LAYER_FAILURE",
            "PACKET_LENGTH_TOO_LONG", "UNKNOWN_PROTOCOL"}
"""Reasons OpenSSL gives when what answers is not TLS at all (a plain-HTTP port)."""


def unreachable_reason(exc: BaseException, *, host: str, port: int, timeout_s: float,
                       bundle: str = "[report] ca_bundle") -> tuple[str, bool]:
    """Why a request did not reach the service, in our words (never the library's text, which
    may change between versions and is not written for an operator), and whether the service
    refused this host's own certificate in the handshake (then it is refused, not unreachable).
    Only an alert the service sent says that: a connection closed without one is a service
    stopping or restarting as far as the agent can tell (see the closed-connection words)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        code = getattr(exc, "verify_code", 0) or 0
        if code in _VERIFY_WORDS:
            return _VERIFY_WORDS[code].format(host=host), False
        if code in (2, 18, 19, 20, 21):  # no issuer in the bundle, self-signed, chain
            return _NOT_OUR_CA.format(bundle=bundle), False
        return "TLS verification failed: the server's certificate was not accepted", False
    if isinstance(exc, ssl.SSLEOFError | ssl.SSLZeroReturnError):
        # (Python 3.11.2, Debian 12's, says a connection closed in the handshake with
        # SSLZeroReturnError; later 3.11 releases with SSLEOFError)
        return (f"{host}:{port} closed the connection during the TLS handshake (the service "
                "stopping or restarting, or past its [serve] max_handshakes)"), False
    if isinstance(exc, ssl.SSLError):
        reason = re.sub(r"[^A-Z0-9_]", "", str(getattr(exc, "reason", "") or "").upper())[:60]
        if reason in _REFUSED_BY_ALERT:
            return ("the service refused this host's client certificate in the TLS handshake: "
                    f"{_REFUSED_BY_ALERT[reason]}"), True
        if reason in _NOT_TLS:
            return (f"{host}:{port} does not answer in TLS (is it policy serve, with TLS, and "
                    "not a plain-HTTP port?)"), False
        if "ALERT" in reason:
            alert = reason.split("ALERT_", 1)[-1].replace("_", " ").lower()
            return (f"the TLS handshake with {host}:{port} failed: the service sent the alert "
                    f"'{alert}'"), False
        if reason == "UNEXPECTED_EOF_WHILE_READING":
            return (f"{host}:{port} closed the connection during the TLS handshake (the "
                    "service stopping or restarting)"), False
        return f"the TLS handshake with {host}:{port} failed", False
    if isinstance(exc, ConnectionRefusedError):
        return f"connection refused by {host}:{port} (is policy serve running there?)", False
    if isinstance(exc, TimeoutError | socket.timeout):
        return f"no answer from {host}:{port} within {timeout_s:g} s (timeout)", False
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host name {host!r}", False
    if isinstance(exc, ConnectionError):
        # No alert: a service stopping (or restarting) closes connections so. A policy serve
        # older than this agent closed a refused handshake without its alert too.
        return (f"the connection to {host}:{port} was closed by the other side before an "
                "answer (the service stopping or restarting?)"), False
    if isinstance(exc, http.client.HTTPException):
        return f"the answer of {host}:{port} is not HTTP", False
    if isinstance(exc, OSError) and exc.errno is not None:
        name = errno.errorcode.get(exc.errno, str(exc.errno))
        return f"network error reaching {host}:{port} ({name})", False
    return f"network error reaching {host}:{port}", False


ALERT_WAIT_S = 1.0
"""How long a request whose sending failed waits to read what the service said (its alert)."""


def _alert_after(conn: http.client.HTTPSConnection, exc: BaseException,
                 wait_s: float) -> BaseException:
    """The service's TLS alert, when sending a request failed on a connection through its
    handshake; else ``exc``. Under TLS 1.3 a service that refuses the client's certificate
    sends its alert and closes after the client's handshake is over: a request written in that
    moment fails (a reset, or OpenSSL's EOF) with the alert unread in the socket. One short
    read hears it; on a connection merely closed it reads nothing and ``exc`` stands."""
    sock = conn.sock
    if not isinstance(sock, ssl.SSLSocket):  # the handshake itself failed: exc says why
        return exc
    if isinstance(exc, TimeoutError) or (
            isinstance(exc, ssl.SSLError)
            and not isinstance(exc, ssl.SSLEOFError | ssl.SSLZeroReturnError)):
        return exc
    try:
        sock.settimeout(wait_s)
        sock.recv(1)
    except ssl.SSLError as said:
        reason = str(getattr(said, "reason", "") or "")
        return said if reason in _REFUSED_BY_ALERT else exc
    except OSError:
        return exc
    return exc


class FleetClient:
    """One HTTPS connection to the service (reopened after any failure)."""

    def __init__(self, server: str, context: ssl.SSLContext, *, timeout_s: float = 30.0,
                 ca_bundle: str = "[report] ca_bundle") -> None:
        parsed = urllib.parse.urlsplit(server)
        if parsed.scheme != "https" or parsed.hostname is None:
            raise ConfigError(f"{server!r}: the policy service is an https:// URL")
        self.host = parsed.hostname
        self.port = parsed.port or 443
        self.prefix = parsed.path.rstrip("/")
        self.context = context
        self.timeout_s = timeout_s
        self.ca_bundle = ca_bundle
        self._conn: http.client.HTTPSConnection | None = None
        self._swap = threading.Lock()
        self._next_context: ssl.SSLContext | None = None

    def use(self, context: ssl.SSLContext) -> None:
        """Connect with ``context`` from the next request on (a reload or a renewal: new
        client certificate, key or CA). Safe from another thread than the one sending: the
        sender makes the switch itself when it starts its next request, so a request in
        flight finishes on the connection it has."""
        with self._swap:
            self._next_context = context

    def _connection(self) -> http.client.HTTPSConnection:
        with self._swap:
            fresh, self._next_context = self._next_context, None
        if fresh is not None:
            self.close()  # the old connection presented the old certificate
            self.context = fresh
        if self._conn is None:
            self._conn = http.client.HTTPSConnection(self.host, self.port, context=self.context,
                                                     timeout=self.timeout_s)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def request(self, method: str, path: str, body: Mapping[str, Any] | None = None
                ) -> SendResult:
        data = None if body is None else json.dumps(
            dict(body), ensure_ascii=True, separators=(",", ":")).encode("ascii")
        headers = {"Content-Type": "application/json"} if data is not None else {}
        conn = self._connection()
        try:
            try:
                conn.request(method, self.prefix + path, body=data, headers=headers)
            except OSError as exc:
                raise _alert_after(conn, exc, min(ALERT_WAIT_S, self.timeout_s)) from exc
            response = conn.getresponse()
            raw = response.read(1 << 20)
            status = response.status
            retry_after = response.getheader("Retry-After")
        except (OSError, http.client.HTTPException) as exc:
            # Connection refused, reset, TLS refused, timeout: the service is unreachable for
            # now. The library's text is not ours to log: the reason is said in our words.
            self.close()
            reason, client_refused = unreachable_reason(
                exc, host=self.host, port=self.port, timeout_s=self.timeout_s,
                bundle=self.ca_bundle)
            return SendResult(status=0, body={"error": reason}, client_refused=client_refused)
        try:
            parsed = json.loads(raw) if raw else {}
        except ValueError:
            parsed = {}
        wait = (float(min(int(retry_after), int(BACKOFF_CAP_S)))
                if retry_after is not None and retry_after.isdigit() and len(retry_after) < 7
                else None)
        return SendResult(status=status, body=parsed if isinstance(parsed, dict) else {},
                          retry_after_s=wait)


def _chunks(items: Sequence[Observation], size: int) -> list[Sequence[Observation]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


CLIENT_LABEL = "certescrow fleet client"
"""The vault label of an agent's fleet keys (``agent enroll`` and renewals)."""
RENEW_FRACTION = 3
"""Renew when less than a third of the certificate's lifetime is left (10 of 30 days)."""
CRITICAL_FRACTION = 6
"""A client certificate with less than a sixth of its lifetime left (5 of 30 days), still not
renewed, is critical: the host is days from dropping out of the fleet."""


def client_certificate_finding(*, not_before_utc: datetime, not_after_utc: datetime,
                               at: datetime, where: str) -> Finding | None:
    """The agent's own client certificate, watched like a certificate in a store but on its
    own clock: it lives 30 days and renews itself when a third is left, so the stores'
    ``expires-soon`` windows (28 days) would flag it for its whole life. It is a finding when
    its renewal is overdue: a warning with less than a third of its lifetime left (the agent
    tries to renew at every heartbeat from then on, so it failed), critical with less than a
    sixth left or once expired (the service refuses it then). Both bounds are exclusive."""
    lifetime = not_after_utc - not_before_utc
    left = not_after_utc - at
    if left >= lifetime / RENEW_FRACTION:
        return None
    until = instant_to_text(not_after_utc)
    if left <= timedelta(0):
        return Finding(code="client-certificate-expired", clause="", severity=Severity.CRITICAL,
                       message=f"the fleet client certificate {where} expired at {until}: the "
                       "policy service refuses this host; sign a new CSR at the desk "
                       "(certescrow agent enroll, fleet sign)")
    severity = (Severity.CRITICAL if left < lifetime / CRITICAL_FRACTION
                else Severity.WARNING)
    return Finding(code="client-certificate-expires-soon", clause="", severity=severity,
                   message=f"the fleet client certificate {where} ends at {until} "
                   f"({left.days} day(s) left) and was not renewed (it renews itself when a "
                   "third of its lifetime is left: is [serve] ca_key set on the service? "
                   "else sign a new CSR at the desk)")


FileStamp = tuple[int, int, int, int]
"""A file as :func:`_file_stamp` saw it: device, inode, size, modification time (ns)."""


def _file_stamp(path: Path) -> FileStamp | None:
    """Enough of ``path``'s status to tell that it was replaced or rewritten (``None``: it
    cannot be read now). A symlink is followed: the file it names is the certificate."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _read_report_file(path: Path, *, source: str) -> bytes:
    """A file ``[report]`` names (the CA bundle), or the configuration's error naming it."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{source}: [report]: {path}: {exc.strerror}") from None


@dataclass(frozen=True, slots=True, kw_only=True)
class _ClientTLS:
    """One reading of the client credentials: the context, and the certificate it presents
    as read (``stamp``: the file when it was read, taken before reading it)."""

    context: ssl.SSLContext
    cert_pem: bytes
    stamp: FileStamp | None


class ClientCredentials:
    """The agent's client certificate (a public file) and its key (in the agent's vault).

    The key is the one in the vault whose public key is the certificate's: ``client_key`` is
    tried first, then every key labelled :data:`CLIENT_LABEL`, so after a renewal (new key in
    the vault first, then the new certificate file) a restarted agent finds the pair that goes
    together whichever step a crash interrupted, and after a re-enrolment (`agent enroll`, a
    new key) the key of the newly signed certificate is found though ``client_key`` still
    names the old one.

    The credentials are read again, and the :class:`FleetClient` switched to them, by a
    renewal (the sender thread), a reload (the daemon's SIGHUP, main thread: :meth:`reload`)
    and a refusal of this host's certificate with the file replaced since it was read
    (:meth:`pick_up_replaced`). One lock orders them, so that the last to finish is the one
    that read the file last: a reload never puts back a certificate a renewal just retired.
    """

    def __init__(self, *, certificate: Path, ca_pem: bytes, host: str, client_key: str | None,
                 open_vault: Callable[[], Any], log: EventLog | None = None,
                 ca_bundle: str = "[report] ca_bundle",
                 source: str = "the configuration") -> None:
        self.source = source
        """The configuration file that named ``client_key``, for the errors about it."""
        self.certificate = certificate
        self.ca_pem = ca_pem
        self.ca_bundle = ca_bundle
        """Where ``ca_pem`` was read (for errors)."""
        self.host = host
        self.client_key = client_key
        self.open_vault = open_vault
        self.log = log if log is not None else EventLog()
        self.cert_pem = b""
        self.stamp: FileStamp | None = None
        """The certificate file as it was when ``cert_pem`` was read from it."""
        self._tried: FileStamp | None = None
        """The replaced file :meth:`pick_up_replaced` last tried (each version is tried once)."""
        self._lock = threading.Lock()

    def context(self) -> ssl.SSLContext:
        """TLS context with the certificate on disk and its key from the vault."""
        loaded = self._read()
        with self._lock:
            self._install(loaded, None)
        return loaded.context

    def _install(self, loaded: _ClientTLS, client: FleetClient | None) -> None:
        """Make ``loaded`` the credentials in use (and ``client``'s, from its next request).
        The caller holds the lock."""
        self.cert_pem = loaded.cert_pem
        self.stamp = loaded.stamp
        if client is not None:
            client.use(loaded.context)

    def _read(self) -> _ClientTLS:
        """Read the certificate file, find its key in the vault, make the context; nothing of
        ``self`` changes (a reload that fails keeps what is in use)."""
        from .fleet_ca import certificate_validity, client_ssl_context, key_matches_certificate

        where = f"[report] client_certificate {self.certificate}"
        stamp = _file_stamp(self.certificate)
        try:
            cert_pem = self.certificate.read_bytes()
        except OSError as exc:
            raise ConfigError(f"{where}: {exc.strerror}") from None
        certificate_validity(cert_pem, what=where)  # not a certificate: said so, first
        from vault import VaultEntryNotFoundError

        missing: str | None = None  # client_key names no entry: a typo, or another vault
        with self.open_vault() as vault:
            in_vault = f"the vault {vault.path}"
            candidates = [self.client_key] if self.client_key else []
            candidates += [e.entry_id for e in reversed(vault.entries(kind="private-key"))
                           if e.label == CLIENT_LABEL and e.entry_id not in candidates]
            for entry in candidates:
                try:
                    key_pem = vault.get(entry)
                except VaultEntryNotFoundError:
                    if entry != self.client_key:
                        raise
                    missing = entry
                    continue
                if key_matches_certificate(key_pem, cert_pem):
                    if missing is not None:
                        self.log.warning("client-key-missing", f"{self.source}: [report] "
                                         f"client_key {missing!r} is not in "
                                         f"{in_vault}; using {entry}, the key that matches the "
                                         f"client certificate: set client_key = \"{entry}\"",
                                         entry=entry)
                    context = client_ssl_context(
                        cert_pem=cert_pem, key_pem=key_pem, ca_cert_pem=self.ca_pem,
                        certificate=where, key=f"the vault's key {entry}",
                        ca_certificate=self.ca_bundle)
                    return _ClientTLS(context=context, cert_pem=cert_pem, stamp=stamp)
        if missing is not None:
            raise ConfigError(f"{self.source}: [report] client_key {missing!r}"
                              f": no such entry in {in_vault} (the daemon's [vault]), and no "
                              f"key there matches the client certificate {self.certificate}: "
                              "give the id `certescrow agent enroll` printed, enrolled into "
                              "this vault")
        raise ConfigError(f"{self.source}: [report]: no key in {in_vault} matches the client "
                          f"certificate {self.certificate} (run `certescrow agent enroll` "
                          "again)")

    def reload(self, client: FleetClient, *, certificate: Path, ca_bundle: Path,
               client_key: str, open_vault: Callable[[], Any], source: str) -> None:
        """SIGHUP: read the certificate, its key and the CA again, from the paths of the
        configuration being loaded, and connect with them from ``client``'s next request (a
        host re-signed at the desk after a revocation is let back in without a restart).
        Anything that cannot be used (a file missing or unreadable, a certificate no key in
        the vault matches, a CA bundle that is not one) raises :class:`ConfigError` or
        :class:`AgentError`, the daemon refuses the reload, and what is in use stays."""
        ca_pem = _read_report_file(ca_bundle, source=source)
        candidate = ClientCredentials(certificate=certificate, ca_pem=ca_pem, host=self.host,
                                      client_key=client_key, open_vault=open_vault,
                                      log=self.log, ca_bundle=f"[report] ca_bundle {ca_bundle}",
                                      source=source)
        with self._lock:
            loaded = candidate._read()
            changed = loaded.cert_pem != self.cert_pem or ca_pem != self.ca_pem
            self.certificate, self.ca_pem = candidate.certificate, candidate.ca_pem
            self.ca_bundle, self.client_key = candidate.ca_bundle, candidate.client_key
            self.open_vault, self.source = candidate.open_vault, candidate.source
            self._install(loaded, client)
            self._tried = None
        if changed:
            self._say_loaded("reloaded")

    def pick_up_replaced(self, client: FleetClient) -> bool:
        """The service refused this host's certificate: when the certificate file was replaced
        since it was read (the host re-signed at the desk and the new certificate installed,
        but no reload yet), use the new one from ``client``'s next request on; ``True`` when
        it was. Each version of the file is tried once: one that cannot be used (its key not
        in the vault yet, half copied) is logged once, and the certificate in use stays."""
        from vault import VaultError

        with self._lock:
            stamp = _file_stamp(self.certificate)
            if stamp is None or stamp == self.stamp or stamp == self._tried:
                return False
            self._tried = stamp
            try:
                loaded = self._read()
            except (AgentError, VaultError) as exc:
                reason = str(exc)
            except Exception as exc:  # the sender thread must go on
                reason = f"unexpected {type(exc).__name__}"  # a library's text is not ours
            else:
                if loaded.cert_pem == self.cert_pem:  # rewritten as it was (touched, copied)
                    self.stamp = loaded.stamp
                    return False
                self._install(loaded, client)
                reason = ""
        if reason:
            self.log.error("client-certificate-unusable", f"the client certificate "
                           f"{self.certificate} was replaced but cannot be used: {reason}; "
                           "still using the one read before (fix it, then reload: systemctl "
                           "reload certescrow-agent)", path=str(self.certificate))
            return False
        self._say_loaded("replaced after the policy service refused the one in use; read "
                         "again")
        return True

    def _say_loaded(self, how: str) -> None:
        from .fleet_ca import certificate_validity

        try:
            until = f", valid until {instant_to_text(certificate_validity(self.cert_pem)[1])}"
        except AgentError:
            until = ""
        self.log.info("client-certificate-reloaded", f"the client certificate "
                      f"{self.certificate} {how}{until}: the next request presents it",
                      path=str(self.certificate))

    def finding(self, at: datetime) -> Finding | None:
        """:func:`client_certificate_finding` of the certificate in use (``None`` before it
        was loaded, or when it cannot be parsed: the TLS context refused it then)."""
        from .fleet_ca import certificate_validity

        if not self.cert_pem:
            return None
        try:
            not_before, not_after = certificate_validity(self.cert_pem)
        except AgentError:
            return None
        return client_certificate_finding(not_before_utc=not_before, not_after_utc=not_after,
                                          at=at, where=str(self.certificate))

    def renewal_due(self, at: datetime) -> bool:
        from .fleet_ca import certificate_validity

        not_before, not_after = certificate_validity(self.cert_pem)
        return not_after - at < (not_after - not_before) / RENEW_FRACTION

    def renew(self, client: FleetClient, at: datetime) -> bool:
        """Ask the service for a new certificate with the current one; on success the new key
        is in the vault, the new certificate in the file, and ``client`` uses them."""
        from .fleet_ca import certificate_validity, key_matches_certificate, make_agent_csr

        key_pem, csr_pem = make_agent_csr(host=self.host)
        result = client.request("POST", "/v1/renew",
                                {"host": self.host, "csr": csr_pem.decode("ascii")})
        pem = result.body.get("certificate")
        if not result.ok or not isinstance(pem, str):
            if result.status != 0:
                self.log.error("renew-refused", "the policy service refused to renew the "
                               f"client certificate: {result.message}", status=result.status)
            return False
        new_pem = pem.encode("ascii", "replace")
        if not key_matches_certificate(key_pem, new_pem) or certificate_validity(new_pem)[1] <= at:
            self.log.error("renew-refused", "the renewed client certificate does not match "
                           "the key sent for it; keeping the current one")
            return False
        from vault import PutRequest

        with self._lock:  # not while a reload reads the files (see the class docstring)
            with self.open_vault() as vault:  # the key first: see the class docstring
                vault.put_many([PutRequest(kind="private-key", data=key_pem,
                                           label=CLIENT_LABEL,
                                           meta={"origin": "certescrow fleet renewal"})])
            tmp = self.certificate.with_name(self.certificate.name + ".new")
            tmp.write_bytes(new_pem)
            os.replace(tmp, self.certificate)
            self._install(self._read(), client)
        self.log.info("renewed", "client certificate renewed, valid until "
                      f"{instant_to_text(certificate_validity(new_pem)[1])}")
        return True


def refusal_message(what: str, result: SendResult, *, batch: OutboxBatch | None = None
                    ) -> str:
    """The ``report-refused`` finding's message: what was refused, the service's reason, and
    the fix."""
    reason = result.message
    if result.client_refused or result.status in (401, 403):
        lowered = reason.lower()
        if "revoked" in lowered:
            fix = ("the desk revoked it: make a new key and CSR (certescrow agent enroll) and "
                   "have the desk sign it (certescrow fleet sign --serve-config SERVICE.toml)")
        elif "registered" in lowered or "not issued" in lowered:
            fix = ("the desk signed it into another ledger: sign again into the service's "
                   "(certescrow fleet sign --serve-config SERVICE.toml, the service's own config)")
        else:
            fix = ("check [report] client_certificate and the host name it was signed for; "
                   "else enroll again (certescrow agent enroll, certescrow fleet sign)")
        # A new certificate helps only once the daemon reads it: it reads its credentials at
        # start and at a reload, not at every request.
        return (f"the policy service refuses this host's {what}: {reason}; nothing this host "
                f"sees reaches the desk. Fix: {fix}; then install the new certificate as "
                "[report] client_certificate and reload (systemctl reload certescrow-agent "
                "/ kill -HUP)")
    if result.status == 413:
        return (f"the policy service refuses batch {batch.sequence if batch else '?'} as too "
                f"large even with one observation: {reason}. Fix: raise the service's [serve] "
                "max_body_bytes (or max_observations); later reports wait behind it")
    where = f"batch {batch.sequence}" if batch is not None else f"the {what}"
    return (f"the policy service refuses {where} (HTTP {result.status}): {reason}; later "
            "reports wait behind it. Fix: report it as a bug with the outbox file")


def unassigned_message(sequence: int, acknowledgement: Mapping[str, Any]) -> str | None:
    """The ``report-unassigned`` warning for an acknowledgement that lists observations the
    service recorded unbound (a binding the desk did not assign to this host's store), or
    ``None`` when it lists none. Locations are file names, so attacker-controlled: they go into
    the message as they are, and the log's formatter escapes them (:mod:`agent.logs`); escaping
    them here too would escape twice. The service's answer is input as well: an entry that is
    not ``{location, contract_id}`` is counted, not shown."""
    entries = acknowledgement.get("unassigned")
    if not isinstance(entries, list) or not entries:
        return None
    by_contract: dict[str, list[str]] = {}
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("location"), str):
            continue
        contract = entry.get("contract_id")
        claimed = f"contract {contract}" if isinstance(contract, str) else "no contract"
        by_contract.setdefault(claimed, []).append(entry["location"])
    named = 0
    groups = []
    for claimed, locations in by_contract.items():
        shown = locations[:max(0, UNASSIGNED_NAMED - named)]
        named += len(shown)
        if shown:
            groups.append(f"{claimed}: {', '.join(shown)}")
    more = len(entries) - named
    listing = "; ".join([*groups, f"{more} more" if groups else "locations not named"]
                        if more else groups)
    return (f"the policy service recorded {len(entries)} observation(s) of batch {sequence} "
            "unbound: the desk did not assign this host's store the binding they claim "
            f"({listing}). The desk's assignment decides: have the desk assign the store "
            "(certescrow fleet assign HOST STORE --contract ID), or remove the local binding")


class OutboxIntake:
    """The daemon's :class:`policy.intake.Intake` when it reports to a service."""

    def __init__(self, *, outbox: Outbox, client: FleetClient, host: str,
                 clock: Callable[[], datetime], log: EventLog | None = None,
                 batch: int = DEFAULT_BATCH, heartbeat_s: float = DEFAULT_HEARTBEAT_S,
                 inventory: InventorySlot | None = None,
                 rng: random.Random | None = None,
                 credentials: ClientCredentials | None = None,
                 bindings: AssignedBindings | None = None,
                 unreachable_after_s: float = DEFAULT_UNREACHABLE_AFTER_S,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.credentials = credentials
        self.bindings = bindings
        """The desk's bindings for this host, fetched with every heartbeat."""
        self.on_bindings: Callable[[], None] | None = None
        """Called (from the sender thread) when the fetched bindings changed: the daemon's
        reload, which applies them in its main thread."""
        self.outbox = outbox
        self.client = client
        self.host = host
        self.clock = clock
        self.log = log if log is not None else EventLog()
        self.batch = batch
        self.heartbeat_s = heartbeat_s
        self.inventory = inventory
        """Filled by the daemon's main thread (agent/inventory.py): this class's thread never
        touches the read index."""
        self.rng = rng if rng is not None else random.Random()  # noqa: S311 - jitter, not secrets
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failures = 0
        self._warned_level = "ok"
        self._closed_finding: Finding | None = None
        self._closed = False
        self._client_level = "ok"
        self._retry_after: float | None = None
        self.acknowledged = 0
        self.unreachable_after_s = unreachable_after_s
        self.monotonic = monotonic
        self._refusals: dict[str, str] = {}
        """What the service refuses for good (``report``, ``heartbeat``, ``bindings``) and the
        finding's message; cleared when that request succeeds again."""
        self._unreachable_since: float | None = None
        self._unreachable_reason = ""
        self._unreachable_logged = ""
        self._report_unreachable_said: tuple[str, float] | None = None
        """The reason ``report-unreachable`` last logged, and when (monotonic seconds)."""
        self._unreachable_warned = False
        self._outage_sent: int | None = None
        """Batches acknowledged since the last failure (``None``: no failure pending)."""
        self._closed_unreachable = False
        self._closed_reachability: Finding | None = None
        self._delivered_since = [0, 0, 0]
        """Batches, observations and new ledger rows delivered since the last ``delivered``
        line at info level."""

    # ------------------------------------------------------------------ Intake
    def report(self, observations: Sequence[Observation], *, at: datetime) -> IntakeReceipt:
        """Commit the observations to the outbox (``recorded`` counts what was queued; the
        service decides later what is new)."""
        queued = 0
        for chunk in _chunks(observations, self.batch):
            body = {"at": instant_to_text(at),
                    "observations": [observation_to_wire(o) for o in chunk], "gone": []}
            self._add(body, len(chunk))
            queued += len(chunk)
        self._wake.set()
        return IntakeReceipt(recorded=queued, unchanged=0, contracts=(), queued=True)

    def report_gone(self, host: str, location: str, *, at: datetime) -> int:
        """Commit the place to the outbox, a batch of its own (on disk before this returns:
        nothing is lost to a SIGKILL); the sender sends the places queued one after another
        as one batch of up to ``batch`` places (:meth:`Outbox.oldest`). Returns 0: how many
        certificates the service's ledger saw there is not known until it records the batch
        (the daemon's ``gone`` line counts what its read index held there)."""
        body = {"at": instant_to_text(at), "observations": [],
                "gone": [{"location": location, "at": instant_to_text(at)}]}
        self._add(body, 1)
        self._wake.set()
        return 0

    def _add(self, body: Mapping[str, Any], size: int) -> None:
        try:
            self.outbox.add(body, size=size)
        except OutboxFullError as exc:
            self.log.error("outbox-full", str(exc))
            raise
        self.check_level()

    def check_level(self) -> None:
        """Log the outbox's finding when its level changed (and once at start when it is past
        the warning level)."""
        level = self.outbox.status().level
        if level != self._warned_level and level != "ok":
            finding = self.outbox.finding()
            if finding is not None:
                self.log.warning(finding.code, finding.message)
        self._warned_level = level

    # ------------------------------------------------------------------ sending
    def send_one(self) -> bool | None:
        """Send the oldest batch. ``True``: acknowledged and deleted, or split because the
        service said it is too large (send again at once); ``False``: not (unreachable or
        refused; it stays); ``None``: the outbox is empty."""
        batch = self.outbox.oldest(gone_up_to=self.batch)
        if batch is None:
            self._recovered()
            return None
        result = self.client.request("POST", "/v1/report", self._body(batch))
        if result.ok and result.body.get("sequence") == batch.sequence \
                and result.body.get("outbox") == self.outbox.outbox_id:
            self.outbox.acknowledge(batch.sequence)
            self.acknowledged += 1
            unassigned = unassigned_message(batch.sequence, result.body)
            if unassigned is not None:
                # Recorded, so acknowledged: only the binding was dropped, and only the
                # operator (or the desk) can fix that. Once per batch, not once per location.
                self.log.warning("report-unassigned", unassigned, batch=batch.sequence)
            refused = result.body.get("refused")
            if type(refused) is int and refused > 0:
                # As the local ledger: a certificate whose dates the contract cannot count
                # from is not recorded; its critical dates-out-of-range finding is this
                # agent's own (logged with the certificate). Acknowledged: a retry would be
                # refused the same.
                self.log.warning("report-refused-observations",
                                 f"the policy service did not record {refused} observation(s) "
                                 f"of batch {batch.sequence}: certificates whose dates lie at "
                                 "the ends of the calendar (see their dates-out-of-range "
                                 "finding)", batch=batch.sequence, refused=refused)
            self._failures = 0
            self._reached("report")
            if self._outage_sent is not None:
                self._outage_sent += 1
            self.check_level()
            self._delivered(batch, result.body)
            if self.outbox.status().pending_batches == 0:
                self._recovered()
            return True
        if result.status in (413, 422) and batch.size > 1:
            # 413 (body or observation cap) and 422 (the ledger refused a value) are answered
            # with nothing of the batch written, and the halves get sequence numbers never
            # sent: no replay can record the original twice. Down to one observation a batch.
            halves = self.outbox.split(batch.sequence)
            if halves is not None:
                why = "as too large" if result.status == 413 else "for a value of it"
                self.log.warning("batch-split", f"the policy service refused batch "
                                 f"{batch.sequence} ({batch.size} observations) {why}: "
                                 f"{result.message}; split in the outbox into batches "
                                 f"{halves[0]} and {halves[1]}", status=result.status)
                return True
        if result.status == 422:
            # One observation the ledger cannot store (a value past one of PostgreSQL's
            # limits): kept, it would hold every later report behind it for ever.
            self.outbox.acknowledge(batch.sequence)
            self.log.error("report-dropped", f"the policy service's ledger cannot store batch "
                           f"{batch.sequence} ({batch.size} observation(s)): "
                           f"{result.message}; dropped from the outbox, later reports go on",
                           batch=batch.sequence, status=422)
            return True
        self._failures += 1
        self._retry_after = result.retry_after_s
        self._outage_started()
        if result.transient:
            self._unreachable(result)
            what = ("the policy service is unreachable" if not result.status else
                    f"the policy service cannot take the batch now (HTTP {result.status})")
            self._say_unreachable(f"{what}: {result.message}", status=result.status)
        else:
            self._refuse("report", result, batch=batch)
            self.log.error("report-refused", f"the policy service refused batch "
                           f"{batch.sequence}: {result.message}", status=result.status)
        return False

    # ------------------------------------------------------------------ what the operator sees
    def _reached(self, what: str) -> None:
        """A request succeeded: the service is reachable and takes this host's ``what``."""
        if self._refusals.pop(what, None) is not None:
            self.log.info(f"{what}-accepted", f"the policy service accepts this host's {what} "
                          "again")
        if self._unreachable_since is not None:
            self.log.info("report-reachable", "the policy service answers again")
        self._unreachable_since = None
        self._unreachable_logged = ""
        self._report_unreachable_said = None
        self._unreachable_warned = False

    def _outage_started(self) -> None:
        if self._outage_sent is None:
            self._outage_sent = 0

    def _delivered(self, batch: OutboxBatch, acknowledgement: Mapping[str, Any]) -> None:
        """The ``delivered`` lines: one at debug level a batch, one at info level when the
        outbox is empty again, counting what went since the last (the ``reported`` line only
        says what was queued)."""
        recorded = acknowledgement.get("recorded")
        recorded = recorded if type(recorded) is int and recorded >= 0 else 0
        self.log.debug("delivered", f"batch {batch.sequence} ({batch.size} observation(s)) "
                       f"delivered to the policy service, {recorded} new to its ledger",
                       batch=batch.sequence, observations=batch.size, recorded=recorded)
        done = self._delivered_since
        done[0], done[1], done[2] = done[0] + 1, done[1] + batch.size, done[2] + recorded
        if self.outbox.status().pending_batches == 0:
            self.log.info("delivered", f"{done[1]} observation(s) in {done[0]} batch(es) "
                          f"delivered to the policy service ({done[2]} new to its ledger); "
                          "the outbox is empty", batches=done[0], observations=done[1],
                          recorded=done[2])
            self._delivered_since = [0, 0, 0]

    def _recovered(self) -> None:
        """The outbox is empty after a failure: say so, with what it took."""
        if self._outage_sent is not None and not self._refusals \
                and self._unreachable_since is None:
            self.log.info("report-recovered", "the outbox is empty again: "
                          f"{self._outage_sent} batch(es) sent since the policy service "
                          "stopped taking reports", batches=self._outage_sent)
            self._outage_sent = None

    def _unreachable(self, result: SendResult) -> None:
        """The service did not answer (or answered 503): the reason is kept for the finding;
        it is logged when it changed (heartbeats and bindings would repeat it every beat)."""
        if self._unreachable_since is None:
            self._unreachable_since = self.monotonic()
        self._unreachable_reason = result.message
        finding = self._unreachable_finding()
        if finding is not None and not self._unreachable_warned:
            self._unreachable_warned = True
            self.log.warning(finding.code, finding.message)

    def _say_unreachable(self, reason: str, *, status: int) -> None:
        """``report-unreachable``, logged when its reason changed since it was last logged and
        otherwise every :data:`UNREACHABLE_REMINDER_S` while it lasts: the sender tries again
        every few seconds to five minutes, and a line per attempt saying the same thing
        buried everything else in the journal."""
        now = self.monotonic()
        last = self._report_unreachable_said
        if last is not None and last[0] == reason and now - last[1] < UNREACHABLE_REMINDER_S:
            return
        again = (f" (still: {self._failures} attempt(s) failed)"
                 if last is not None and last[0] == reason else "")
        self._report_unreachable_said = (reason, now)
        self.log.warning("report-unreachable", f"{reason}; {self.outbox.status().pending_batches}"
                         f" batch(es) wait in the outbox{again}", failures=self._failures,
                         status=status)

    def _log_unreachable(self, what: str, result: SendResult) -> None:
        self._unreachable(result)
        if result.message != self._unreachable_logged:
            self._unreachable_logged = result.message
            self.log.warning(f"{what}-unreachable", f"the policy service is unreachable: "
                             f"{result.message}", status=result.status)

    def _refuse(self, what: str, result: SendResult, *, batch: OutboxBatch | None = None
                ) -> None:
        self._refusals[what] = refusal_message(what, result, batch=batch)
        if (self.credentials is not None
                and (result.client_refused or result.status in (401, 403))
                and self.credentials.pick_up_replaced(self.client)):
            # The certificate was re-signed and installed, without a reload: the next attempt
            # presents it, soon (not after the backoff the refusals built up).
            self._failures = 0
            self._retry_after = None

    def reload_credentials(self, report: Mapping[str, Any], *, source: str,
                           vault_settings: Mapping[str, Any]) -> None:
        """The daemon's reload (SIGHUP): the client certificate, its key and the CA bundle are
        read again, from the ``[report]`` and ``[vault]`` of the configuration being loaded,
        and the next request presents them. Raises (:class:`ConfigError`,
        :class:`AgentError`) for what cannot be used, with the credentials in use unchanged:
        the daemon then refuses the reload as it refuses a bad configuration. The other
        ``[report]`` settings (server, outbox, heartbeat, ...) apply at a restart."""
        if self.credentials is None:
            return
        settings = report_settings({"report": report}, source=source,
                                   default_outbox=Path("outbox.sqlite3"))  # (not read here)
        if settings is None:
            return  # [report] taken out: the daemon reports to the service until a restart
        from vault import VaultError

        try:
            self.credentials.reload(
                self.client, certificate=settings.client_certificate,
                ca_bundle=settings.ca_bundle, client_key=settings.client_key,
                open_vault=_vault_opener(vault_settings), source=source)
        except (AgentError, VaultError) as exc:
            raise ConfigError(f"the fleet client's new credentials cannot be used, it keeps "
                              f"those it has: {exc}") from None
        except Exception as exc:
            raise ConfigError(f"the fleet client's new credentials cannot be used, it keeps "
                              f"those it has (unexpected {type(exc).__name__})") from None

    def _unreachable_finding(self, *, once: bool = False) -> Finding | None:
        since = self._unreachable_since
        if since is None:
            return None
        lasted = self.monotonic() - since
        if not once and lasted < self.unreachable_after_s:
            return None
        pending = self.outbox.status().pending_batches if not self._closed else None
        waiting = f"; {pending} batch(es) wait in the outbox" if pending else ""
        how_long = ("this run could not report" if once
                    else f"for {int(lasted // 60)} minute(s)")
        return Finding(code="report-unreachable", clause="", severity=Severity.WARNING,
                       message=f"the policy service is unreachable ({how_long}): "
                       f"{self._unreachable_reason}{waiting}")

    def _body(self, batch: OutboxBatch) -> dict[str, Any]:
        from policy.events import text_to_instant

        return report_body(host=self.host, outbox=self.outbox.outbox_id,
                           sequence=batch.sequence, at=text_to_instant(str(batch.body["at"])),
                           observations=[_storable_wire(o)
                                         for o in batch.body.get("observations", [])],
                           gone=batch.body.get("gone", []))

    def drain(self, *, attempts: int = 1) -> int:
        """Send until the outbox is empty or ``attempts`` sends failed; returns how many
        batches were acknowledged (``agent run --once`` and tests)."""
        sent = failed = 0
        while failed < attempts:
            outcome = self.send_one()
            if outcome is None:
                break
            if outcome:
                sent += 1
            else:
                failed += 1
        return sent

    def backoff_s(self) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2**failures)]; after a 503 that said
        when to come back, uniform in [0.5, 1.5] times that (a busy service spreads its agents
        over the next moments instead of doubling their wait)."""
        if self._retry_after is not None:
            return self.rng.uniform(0.5 * self._retry_after, 1.5 * self._retry_after)
        ceiling = min(BACKOFF_CAP_S, BACKOFF_BASE_S * (2 ** min(self._failures, 20)))
        return self.rng.uniform(0, ceiling)

    def renew_if_due(self) -> bool:
        """Renew the client certificate when a third of its lifetime is left (checked with
        every heartbeat); ``True`` when it was renewed."""
        if self.credentials is None or not self.credentials.renewal_due(self.clock()):
            return False
        return self.credentials.renew(self.client, self.clock())

    def heartbeat(self) -> bool:
        snapshot = self.inventory.request() if self.inventory is not None else None
        inventory: dict[str, Any] = {
            key: dict(value) if isinstance(value, Mapping) else value
            for key, value in (snapshot or {}).items()}
        inventory["outbox_pending"] = self.outbox.status().pending_observations
        result = self.client.request("POST", "/v1/heartbeat", heartbeat_body(
            host=self.host, at=self.clock(), inventory=inventory))
        if result.ok:
            self._reached("heartbeat")
        elif result.status == 0 and not result.client_refused:
            self._log_unreachable("heartbeat", result)
        elif result.transient:
            self._unreachable(result)
            self.log.warning("heartbeat-unavailable", "the policy service cannot take the "
                             f"heartbeat now (HTTP {result.status}); the next heartbeat tries "
                             "again", status=result.status)
        else:
            self._refuse("heartbeat", result)
            self.log.error("heartbeat-refused", f"the policy service refused the heartbeat: "
                           f"{result.message}", status=result.status)
        return result.ok

    def fetch_bindings(self, client: FleetClient | None = None) -> bool:
        """Fetch the desk's bindings for this host (``GET /v1/bindings``); ``True`` when they
        changed (saved, logged, and :attr:`on_bindings` called). Unreachable: the last set
        stays in force."""
        if self.bindings is None:
            return False
        result = (client or self.client).request("GET", "/v1/bindings")
        if not result.ok:
            if result.status == 0 and not result.client_refused:
                self._log_unreachable("bindings", result)
            elif not result.transient:
                self._refuse("bindings", result)
                self.log.error("bindings-refused", "the policy service refused to list this "
                               f"host's bindings: {result.message}", status=result.status)
            return False
        try:
            changed = self.bindings.update(result.body)
        except WireError as exc:
            self.log.error("bindings-refused", "the policy service's bindings are not the "
                           f"documented shape ({exc}); keeping the last set")
            return False
        if changed and self.on_bindings is not None:
            self.on_bindings()
        return changed

    def _run(self, monotonic: Callable[[], float]) -> None:
        next_beat = monotonic()
        while not self._stop.is_set():
            if monotonic() >= next_beat:
                self.heartbeat()
                self.fetch_bindings()
                self.renew_if_due()
                self.check_client_certificate()
                next_beat = monotonic() + self.heartbeat_s
            outcome = self.send_one()
            if outcome is True:
                continue
            until_beat = max(0.0, next_beat - monotonic()) + 0.01
            if outcome is False:
                # New reports must not cut the backoff short: wait on the stop event only.
                self._stop.wait(min(self.backoff_s(), until_beat))
            else:
                self._wake.wait(until_beat)
                self._wake.clear()

    def start(self, *, monotonic: Callable[[], float] | None = None) -> None:
        """Start the sender thread (the daemon's long-running mode)."""
        import time

        self._thread = threading.Thread(target=self._run, args=(monotonic or time.monotonic,),
                                        name="certescrow-fleet-sender", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the sender, make one last attempt to deliver what is pending (``agent run
        --once`` ends right after its scan), and close the outbox: what was not acknowledged
        stays on disk for the next run."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=self.client.timeout_s + 5)
        self.drain(attempts=1)
        self._closed_finding = self.outbox.finding()
        # --once: a run that ends with its report undelivered because the service could not
        # be reached says so, however short the outage (the next run may be an hour away).
        self._closed_unreachable = (self._unreachable_since is not None
                                    and self.outbox.status().pending_batches > 0)
        self._closed_reachability = (self._unreachable_finding(once=True)
                                     if self._closed_unreachable else None)
        self._closed = True
        self.client.close()
        self.outbox.close()

    def finding(self) -> Finding | None:
        """The outbox's finding (past its warning level; ``None`` below it), as it stands now
        or, once closed, as it was left (``agent run --once`` counts it in its exit status)."""
        return self._closed_finding if self._closed else self.outbox.finding()

    def agent_findings(self, at: datetime) -> tuple[Finding, ...]:
        """The agent's own findings at ``at``: the outbox past its warning level, the client
        certificate's overdue renewal (``agent run --once`` counts them)."""
        found = (self.refused_finding(), self.unreachable_finding(), self.finding(),
                 self.credentials.finding(at) if self.credentials is not None else None)
        return tuple(f for f in found if f is not None)

    def refused_finding(self) -> Finding | None:
        """``report-refused`` (critical) while the service refuses this host or a batch: the
        host is cut off from the desk however healthy its certificates are."""
        if not self._refusals:
            return None
        first = next(iter(self._refusals.values()))
        return Finding(code="report-refused", clause="", severity=Severity.CRITICAL,
                       message=first)

    def unreachable_finding(self) -> Finding | None:
        """``report-unreachable`` (warning): unreachable for longer than
        ``unreachable_after_s``, or a ``--once`` run whose report stayed in the outbox."""
        if self._closed:
            return self._closed_reachability
        return self._unreachable_finding()

    def check_client_certificate(self) -> None:
        """Log the client certificate's finding when its severity changed (the daemon's
        sender thread, after each heartbeat's renewal attempt)."""
        if self.credentials is None:
            return
        finding = self.credentials.finding(self.clock())
        level = "ok" if finding is None else f"{finding.code}/{finding.severity.name}"
        if level != self._client_level and finding is not None:
            log = self.log.error if finding.severity >= Severity.CRITICAL else self.log.warning
            log(finding.code, finding.message, path=str(self.credentials.certificate))
        self._client_level = level


def inventory_of(index: Any, *, at: datetime, windows: Any = None) -> dict[str, Any]:
    """The heartbeat's snapshot of a :class:`agent.index.FileIndex` of file results: files,
    certificates, files that could not be read, and certificates by severity at ``at``.

    A certificate's severity is its row's for the host operator (``host_severity``, what
    ``certescrow scan`` and ``agent run --once`` give it; :class:`agent.rows.CertificateRow`),
    without making the row again: the host-mode findings the daemon's row gave it when it read
    the file (kept with the file, ``FileIndex.worst_said``: a key that does not match, no
    subjectAltName, past the public maximum, its file's own), but for those the clock alone
    changes, which :func:`agent.rows.clock_severity` gives at ``at`` from the placement of the
    certificates of its directory (expiry only where a row has one: a leaf, or a lone CA
    certificate among server certificates; never a trust anchor or a chain's CA). One source:
    ``fleet hosts`` must say what the host's own check says. The contract's view (actions due)
    is the desk's, from the ledger."""
    from itertools import groupby

    from policy.decisions import Severity

    from .monitoring import ExitMode, ExpiryWindows, counts_in
    from .rows import CLOCK_FINDINGS, clock_severity, place_certificates

    expiry = windows if windows is not None else ExpiryWindows()
    files = certificates = errors = 0
    by_severity: dict[str, int] = {}

    def host_worst(findings: Any) -> Severity:
        return max((f.severity for f in findings if counts_in(f.code) is ExitMode.HOST),
                   default=Severity.OK)

    def as_read(event: str, code: str) -> bool:
        return event == "finding" and counts_in(code) is ExitMode.HOST \
            and code not in CLOCK_FINDINGS

    said: dict[str, dict[int, str]] = index.worst_said(as_read)
    # one directory at a time (placement is per directory), not the whole index in memory
    for _directory, names in groupby(sorted(index.paths(), key=lambda p: os.path.split(p)),
                                     key=lambda p: os.path.split(p)[0]):
        results = [r for r in (index.get(name) for name in names) if r is not None]
        placements = place_certificates(results)
        for result in results:
            files += 1
            if result.error is not None:
                errors += 1
            noted = said.get(result.path, {})
            file_worst = max(host_worst(result.findings),
                             Severity[noted.get(-1, "ok").upper()])
            for record in result.certificates:
                certificates += 1
                worst = max(file_worst, host_worst(record.findings),
                            Severity[noted.get(record.index, "ok").upper()])
                placement = placements.get((record.path, record.index))
                if placement is not None:
                    worst = max(worst, clock_severity(record, placement, at=at,
                                                      windows=expiry))
                name = worst.name.lower()
                by_severity[name] = by_severity.get(name, 0) + 1
    return {"files": files, "certificates": certificates, "errors": errors,
            "by_severity": by_severity}


def open_reporting(raw: Mapping[str, Any], *, source: str, host: str, state_dir: Path,
                   vault_settings: Mapping[str, Any], clock: Callable[[], datetime],
                   log: EventLog) -> OutboxIntake | None:
    """The daemon's intake when ``[report] server`` is set (``None``: the local ledger). The
    client key is read from the agent's vault into memory, once, here."""
    settings = report_settings(raw, source=source, default_outbox=state_dir / "outbox.sqlite3")
    if settings is None:
        return None
    # The fleet's host names are lowercase (fleet sign, enroll): [agent] host = "WEB01" is the
    # host the desk signed as web01.
    host = host.strip().lower()
    credentials = ClientCredentials(
        certificate=settings.client_certificate,
        ca_pem=_read_report_file(settings.ca_bundle, source=source), host=host,
        client_key=settings.client_key, open_vault=_vault_opener(vault_settings),
        log=log, ca_bundle=f"[report] ca_bundle {settings.ca_bundle}", source=source)
    context = credentials.context()
    assert settings.outbox is not None  # noqa: S101 - report_settings fills it in
    outbox = Outbox.open(settings.outbox, capacity=settings.outbox_capacity)
    client = FleetClient(settings.server, context, timeout_s=settings.timeout_s,
                         ca_bundle=str(settings.ca_bundle))
    bindings = AssignedBindings(state_dir / BINDINGS_NAME, host=host, log=log)
    bindings.load()
    intake = OutboxIntake(outbox=outbox, client=client, host=host, clock=clock, log=log,
                          batch=settings.batch, heartbeat_s=settings.heartbeat_s,
                          credentials=credentials, bindings=bindings,
                          unreachable_after_s=settings.unreachable_after_s)
    # The desk's bindings before the first scan, so it reports under them; briefly: a
    # service that does not answer leaves the saved set in force.
    first = FleetClient(settings.server, context, timeout_s=min(settings.timeout_s,
                                                               STARTUP_FETCH_S),
                        ca_bundle=str(settings.ca_bundle))
    try:
        intake.fetch_bindings(first)
    finally:
        first.close()
    intake.check_level()
    return intake


def _vault_opener(vault_settings: Mapping[str, Any]) -> Callable[[], Any]:
    """Opens the daemon's vault (``[vault]``), where the client key is."""
    from vault import key_source_from_settings, open_vault

    vault_path = Path(str(vault_settings["path"])).expanduser()
    settings = dict(vault_settings)
    return lambda: open_vault(vault_path, key_source_from_settings(settings))


def _storable_wire(observation: Mapping[str, Any]) -> Mapping[str, Any]:
    """An outbox observation with its facts as :func:`policy.facts.storable` makes them: an
    outbox written before the reader applied that rule may hold a NUL or a megabyte in a
    name, which the service refuses (400) with the whole batch, for ever at the outbox's head."""
    from policy.events import facts_from_json, facts_to_json
    from policy.facts import storable

    fitted, changed = storable(facts_from_json(observation["facts"]))
    return {**observation, "facts": facts_to_json(fitted)} if changed else observation
