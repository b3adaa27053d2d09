"""``policy serve``: the policy core as an HTTPS service for a fleet of agents.

Why it is built this way:

* **aiohttp, TLS in-process.** The service must know *which* agent is calling, and that is the
  client certificate. aiohttp runs on the standard library's ``ssl`` and hands the verified
  peer certificate to the handler (``transport.get_extra_info("peercert")``); an ASGI server
  such as uvicorn terminates TLS itself and the ASGI scope carries no client certificate, so the
  application could not tell agents apart (docs/fleet.md).
* **Stateless.** Everything is in the database (the ledger and the fleet registry): several
  instances can run behind a load balancer, and a revocation is seen on the next request.
* **The host is the certificate's.** A body names its host only so that a mismatch can be
  *refused* (403, nothing written); the ledger records the certificate's host.
* **Hostile input, bounded.** Bodies are capped (``max_body_bytes``, 413) before they are
  read, parsed as JSON (400), checked field by field (:mod:`policy.fleet_wire`, unknown fields
  400) with a cap on observations per batch (413). Strings are stored verbatim as SQL
  parameters. Error texts are ours: no library exception text reaches a client or a log.
* **Exactly once.** A batch carries ``(outbox, sequence)``; one already recorded is
  acknowledged again and records nothing, so an agent can resend until it is acknowledged.
* **Bounded queueing.** The ledger takes one writer at a time (its lock), so batches beyond a
  few only wait, and a thousand agents reporting at once would wait a minute each (measured).
  At most ``max_pending_batches`` batches are admitted at a time; the next waits for its turn
  (its body read, not parsed), for at most ``admission_wait``, behind at most
  ``max_waiting_batches`` others (:mod:`policy.admission`); past either, it gets 503 with a
  ``Retry-After`` and its agent resends it from its outbox. A host has one report in progress
  at a time (429), and a body must arrive within ``body_timeout`` (408): a client that
  trickles holds its own connection, never a place.
  Batches are written by their own thread pool, so heartbeats and renewals never queue behind
  them.
* **Bounded connections.** A connection's TLS handshake and request headers must be done
  within ``header_timeout``; one host (its client certificate) holds at most
  ``max_connections_per_host`` connections (one more replaces its longest idle one, or gets
  429 when all are in a request); at most ``max_handshakes``
  connections may be in their handshake at once (:mod:`policy.connections`).

This module imports no crypto library (the policy layer never does): the TLS context and, in
proxy mode, the parser of a forwarded certificate are built by the shell and injected.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import gc
import hmac
import ipaddress
import logging
import math
import os
import re
import socket
import stat
import threading
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web

from .admission import Admission
from .connections import (
    Connection,
    ConnectionGuard,
    LogBudget,
    address_text,
    connection_middleware,
    http_log,
    quiet_handler,
    server_header,
)
from .errors import LedgerContentError, LedgerError
from .fleet_registry import RENEWAL_GRACE, FleetRegistry, IssuedRecord
from .fleet_wire import (
    UNBOUND,
    PeerIdentity,
    ReportBatch,
    TooManyError,
    Unassigned,
    WireError,
    assigned_only,
    assignments,
    identity_from_peercert,
    parse_body,
    read_heartbeat,
    read_renewal,
    read_report,
    time_refusal,
)
from .ledger import BatchReceipt, Ledger
from .logevents import event
from .tlsalert import start_tls

__all__ = [
    "API_VERSION",
    "PeerIdentity",
    "ServiceSettings",
    "build_app",
    "identity_from_peercert",
]

API_VERSION = "v1"
log = logging.getLogger("certescrow.service")

ForwardedParser = Callable[[bytes, datetime], "PeerIdentity | None"]
Renewer = Callable[[bytes, str, datetime], tuple[IssuedRecord, bytes, str | None]]
"""Signs a CSR (PEM) as the given host at the given instant: the registry record, the
certificate PEM, and why its validity is not the one asked for (the fleet CA's own validity
cut it) or ``None``. Built by the shell (it holds the fleet CA key); raises ``ValueError`` with
our own text for a CSR it refuses (a CA too near its end among them)."""
MAX_CSR = 16 * 1024
RETRY_AFTER_S = 5
"""What a 503 asks the client to wait (agents back off with jitter on their own as well)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceSettings:
    max_body_bytes: int = 4 * 1024 * 1024
    max_observations: int = 1000
    max_pending_batches: int = 4
    """Report batches admitted at a time (being written or waiting for the ledger's writer
    lock); more wait for their turn (below), then get 503 with ``Retry-After``."""
    admission_wait: timedelta = timedelta(seconds=10)
    """How long a batch past the admitted ones waits for its turn, its body unread."""
    max_waiting_batches: int = 1024
    """Batches waiting for their turn at most; more get 503 at once."""
    body_timeout: timedelta = timedelta(seconds=30)
    """How long a request's body may take to arrive once it is read (then 408): a client
    that sends headers and then trickles, or nothing, holds no place for longer."""
    writer_threads: int = 2
    """Threads writing batches (the ledger serialises writers: more only wait)."""
    trusted_proxies: tuple[str, ...] = ()
    """Addresses (or networks) whose forwarded client certificate header is believed."""
    proxy_header: str = "X-Client-Cert"
    """nginx: ``proxy_set_header X-Client-Cert $ssl_client_escaped_cert;``"""
    renewal_grace: timedelta = RENEWAL_GRACE
    """How long a client certificate stays valid once its host renewed it (its connections
    switch over); then it is refused as superseded."""
    proxy_secret: bytes | None = None
    """A secret only the proxy knows, sent in ``proxy_secret_header`` with every request: with
    it, reaching the port is not enough to name a host (a forwarded certificate is public)."""
    proxy_secret_header: str = "X-Certescrow-Proxy-Secret"  # noqa: S105 - a header's name
    clock_skew: timedelta = timedelta(minutes=5)
    """How far an agent's clock may run ahead of the service's: an observation dated later
    than now plus this is refused (400), as is one dated before its host was enrolled."""
    header_timeout: timedelta = timedelta(seconds=10)
    """From a connection's accept to its first request's headers, TLS handshake included;
    from a later request's first byte to its headers. Then the connection is closed."""
    max_connections_per_host: int = 8
    """A host's open connections (per process); one more replaces the host's longest idle
    one, or gets 429 when all are in a request."""
    max_handshakes: int = 1024
    """Connections in their TLS handshake at once (per process); more are closed at once."""
    extra: Mapping[str, Any] = field(default_factory=dict)


def _parsed(raw: bytes) -> Any:
    try:
        return parse_body(raw)
    except (ValueError, RecursionError):
        raise _Refused(_error(400, "the body is not JSON")) from None


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _closing_error(status: int, message: str) -> web.Response:
    """An answer given with the body unread (413 past ``max_body_bytes``, 408): the
    connection ends after it (``Connection: close``). Kept alive, aiohttp drained the rest of
    the body and then held the connection for its keep-alive hour, though the request was
    refused for that very body; closed outright, with the body still arriving, the kernel would
    reset the connection and the client, still sending, could lose the 413 that tells an agent
    to split its batch. So aiohttp drains what the client is sending for at most its lingering
    time (10 s), then closes."""
    response = _error(status, message)
    response.force_close()
    return response


class _Refused(Exception):  # noqa: N818 - a control-flow signal carrying a response
    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


class _Service:
    def __init__(self, *, intake: Ledger, registry: FleetRegistry,
                 clock: Callable[[], datetime], settings: ServiceSettings,
                 forwarded: ForwardedParser | None, renewer: Renewer | None) -> None:
        self.renewer = renewer
        self.intake = intake
        self.registry = registry
        self.clock = clock
        self.settings = settings
        self.forwarded = forwarded
        self.proxies = tuple(ipaddress.ip_network(p, strict=False)
                             for p in settings.trusted_proxies)
        self.writer = ThreadPoolExecutor(max_workers=settings.writer_threads,
                                         thread_name_prefix="certescrow-batch-writer")
        self.reporting: set[str] = set()
        """Hosts with a report batch in this process now (the event loop's only)."""
        self.admission = Admission(limit=settings.max_pending_batches,
                                   wait_s=settings.admission_wait.total_seconds(),
                                   max_waiting=settings.max_waiting_batches)
        self.batch_s = 0.1
        """A moving average of the time between two batches written (the ledger writes one
        at a time, so this is one batch's write, without the wait for the lock)."""
        self._last_done = time.monotonic()

    # ------------------------------------------------------------------ identity
    def _from_proxy(self, request: web.Request) -> bool:
        """Whether the request came through the proxy: over the Unix socket (only the proxy's
        group can connect to it), or from a configured proxy address."""
        if request.transport is not None and _on_unix_socket(request.transport):
            return True
        if not self.proxies or request.remote is None:
            return False
        try:
            address = ipaddress.ip_address(request.remote)
        except ValueError:
            return False
        return any(address in network for network in self.proxies)

    def _peer(self, request: web.Request) -> PeerIdentity:
        """The caller's identity from the TLS session (or a trusted proxy's header)."""
        now = self.clock()
        identity: PeerIdentity | None = None
        if self._from_proxy(request) and self.forwarded is not None:
            self._refuse_repeated(request, self.settings.proxy_header)
            secret = self.settings.proxy_secret
            if secret is not None:
                given = request.headers.get(self.settings.proxy_secret_header, "")
                if not hmac.compare_digest(given.encode("utf-8", "replace"), secret):
                    log.warning("refused a request from %s: the proxy's shared secret header is "
                                "missing or wrong", address_text(request.remote),
                                extra=event("request-refused",
                                            peer=address_text(request.remote)))
                    raise _Refused(_error(403, "this service takes requests only from its "
                                               "proxy (the shared secret header is missing "
                                               "or wrong)"))
            header = request.headers.get(self.settings.proxy_header)
            if header:
                pem = urllib.parse.unquote(header[:65536]).encode("ascii", "replace")
                self._refuse_merged(request, header, pem)
                identity = self.forwarded(pem, now)
                if identity is None:
                    raise _Refused(_error(403, "the forwarded client certificate is not a "
                                               "valid certificate of the fleet CA"))
        if identity is None and request.transport is not None:
            identity = identity_from_peercert(request.transport.get_extra_info("peercert"))
        if identity is None:
            raise _Refused(_error(401, "a client certificate of the fleet CA is required"))
        if identity.not_after_utc < now:
            raise _Refused(_error(403, "the client certificate has expired"))
        return identity

    @staticmethod
    def _refuse_repeated(request: web.Request, name: str) -> None:
        """Refuse a request from the proxy carrying the header ``name`` more than once (400).
        A proxy that appends its header instead of replacing it (``add_header``-style, or a
        chain of proxies) forwards the client's own copy too, and whichever one was read
        would decide: a client that put another host's certificate (public: it is in logs and
        on that host) first would be that host. Only nginx's ``proxy_set_header`` is safe,
        and the service cannot tell which copy the proxy wrote, so it takes neither."""
        if len(request.headers.getall(name, ())) > 1:
            log.warning("refused a request from %s: it carries the %s header more than once "
                        "(the proxy must replace a client's copy, not add its own)",
                        address_text(request.remote), name,
                        extra=event("request-refused", peer=address_text(request.remote)))
            raise _Refused(_error(400, f"the request carries the {name} header more than "
                                       "once; the proxy must replace it, not add to it"))

    def _refuse_merged(self, request: web.Request, header: str, pem: bytes) -> None:
        """Refuse a header value that is not exactly one PEM certificate (400). Copies of a
        field may be merged into one line, comma-separated (RFC 9110 §5.3), by the proxy or
        one before it, and a certificate reader takes the first block it finds: the client's
        copy first made the client that host again (the re-review of session 14)."""
        text = pem.strip()
        blocks = text.count(b"-----BEGIN")
        if "," not in header and (blocks == 0 or (  # no block at all: not a certificate, 403
                blocks == 1 and text.count(b"-----END") == 1
                and text.startswith(b"-----BEGIN CERTIFICATE")
                and text.endswith(b"-----END CERTIFICATE-----"))):
            return
        name = self.settings.proxy_header
        log.warning("refused a request from %s: its %s header is not exactly one certificate "
                    "(copies merged into one line?)", address_text(request.remote), name,
                    extra=event("request-refused", peer=address_text(request.remote)))
        raise _Refused(_error(400, f"the {name} header must hold exactly one certificate; the "
                                   "proxy must replace a client's copy, not add to it"))

    def _check(self, identity: PeerIdentity) -> PeerIdentity:
        """Revocation, asked of the database on every request (runs in a worker thread)."""
        refusal = self.registry.refusal(host=identity.host, serial=identity.serial,
                                        at=self.clock())
        if refusal is not None:
            log.warning("refused a client certificate of %r: %s", identity.host, refusal,
                        extra=event("client-refused", host=identity.host))
            raise _Refused(_error(403, refusal))
        return identity

    async def _identify(self, request: web.Request) -> PeerIdentity:
        return await asyncio.to_thread(self._check, self._peer(request))

    async def _body(self, request: web.Request) -> Any:
        return _parsed(await self._raw_body(request))

    async def _raw_body(self, request: web.Request) -> bytes:
        """The request's body, whole, within ``body_timeout`` (408) and the size cap (413)."""
        length = request.content_length
        if length is not None and length > self.settings.max_body_bytes:
            raise _Refused(_closing_error(413, f"the body is larger than "
                                               f"{self.settings.max_body_bytes} bytes"))
        try:
            async with asyncio.timeout(self.settings.body_timeout.total_seconds()):
                raw = await request.read()
        except TimeoutError:
            log.warning("gave up reading a request body after %.0f s (%s)",
                        self.settings.body_timeout.total_seconds(), request.path,
                        extra=event("body-timeout", path=request.path))
            raise _Refused(_closing_error(408, "the body did not arrive in time")) from None
        except web.HTTPRequestEntityTooLarge:
            raise _Refused(_closing_error(413, f"the body is larger than "
                                               f"{self.settings.max_body_bytes} bytes")) from None
        return raw

    # ------------------------------------------------------------------ endpoints
    async def report(self, request: web.Request) -> web.Response:
        # Who is asking comes first (revocation included): a revoked certificate completes
        # the TLS handshake, and must not take a place in the queue. Then one batch at a time
        # per host (an agent sends its batches one after another; a second at once is a
        # resend of one still in the queue, or a host trying to hold every place).
        identity = await self._identify(request)
        if identity.host in self.reporting:
            response = _error(429, "this host already has a report batch in progress; an "
                                   "agent sends one at a time")
            response.headers["Retry-After"] = "1"
            return response
        self.reporting.add(identity.host)
        try:
            return await self._admitted_report(request, identity)
        finally:
            self.reporting.discard(identity.host)

    async def _admitted_report(self, request: web.Request,
                               identity: PeerIdentity) -> web.Response:
        # The body is read before a place is asked for: a client that trickles it holds a
        # connection (and its host's one report), never a place other hosts wait for. It is
        # parsed once admitted (raw, a batch of 100 is ~50 KB; parsed, several times that).
        raw = await self._raw_body(request)
        if not await self.admission.enter():
            return self._busy()
        try:
            body = _parsed(raw)
            del raw
            try:
                batch = read_report(body, max_observations=self.settings.max_observations)
            except TooManyError as exc:
                return _error(413, str(exc))
            except WireError as exc:
                return _error(400, str(exc))
            if batch.host != identity.host:
                log.warning("refused a report of %r for another host", identity.host,
                            extra=event("report-refused", host=identity.host))
                return _error(403, "a host reports only for itself (the client certificate "
                                   "names another host)")
            refusal = await self._time_refusal(identity, batch, self.clock())
            if refusal is not None:
                log.warning("refused a report of %r: %s", identity.host, refusal,
                            extra=event("report-refused", host=identity.host))
                return _error(400, refusal)
            loop = asyncio.get_running_loop()
            receipt, unassigned = await loop.run_in_executor(
                self.writer, self._timed_record, identity, batch)
        finally:
            self.admission.leave()
        answer: dict[str, Any] = {"outbox": batch.outbox, "sequence": batch.sequence,
                                  "recorded": receipt.recorded, "replay": receipt.replay}
        if receipt.refused:
            # The ledger keeps no certificate whose dates it cannot count from (its agent
            # reports the critical dates-out-of-range finding itself): said, not silent.
            log.warning("refused %d observation(s) of %r: a certificate whose dates lie at "
                        "the ends of the calendar, which the contract's periods cannot be "
                        "counted from", receipt.refused, identity.host,
                        extra=event("observations-refused", host=identity.host,
                                    refused=receipt.refused))
            answer["refused"] = receipt.refused
        if unassigned:
            answer["unassigned"] = [u.to_json() for u in unassigned]
        return web.json_response(answer)

    async def _time_refusal(self, identity: PeerIdentity, batch: ReportBatch,
                            now: datetime) -> str | None:
        """Why the batch's instants cannot be what its host saw, or ``None``. The host's first
        enrolment is looked up only for an instant older than the certificate it calls with
        (a renewed certificate is younger than what its outbox may still hold)."""
        skew = self.settings.clock_skew
        refusal = time_refusal(batch, now=now, skew=skew, enrolled=identity.not_before_utc)
        if refusal is not None and refusal.too_early:
            enrolled = await asyncio.to_thread(self.registry.enrolled, identity.host)
            refusal = time_refusal(batch, now=now, skew=skew,
                                   enrolled=enrolled or identity.not_before_utc)
        return None if refusal is None else refusal.message

    def _busy(self) -> web.Response:
        """503: the ledger's writer is busy with as many batches as may wait for it."""
        # The admitted batches are written one after another: this one's turn would come
        # after them (HTTP says whole seconds; the agent adds jitter).
        queued = self.admission.admitted + self.admission.waiting
        wait = max(1, math.ceil(queued * self.batch_s))
        response = _error(503, "the service is busy writing other batches; retry later")
        response.headers["Retry-After"] = str(wait)
        return response

    def _timed_record(self, identity: PeerIdentity, batch: ReportBatch
                      ) -> tuple[BatchReceipt, tuple[Unassigned, ...]]:
        began = time.monotonic()
        try:
            batch, unassigned = self._assigned_only(identity.host, batch)
            return self._record(identity, batch), unassigned
        finally:
            # Since the later of this batch's start and the previous batch's end: the write
            # itself when batches queue, not the wait for the lock. Float stores from the
            # writer threads: no lock needed, an estimate is all it feeds.
            done = time.monotonic()
            self.batch_s = 0.8 * self.batch_s + 0.2 * (done - max(began, self._last_done))
            self._last_done = done

    def _assigned_only(self, host: str, batch: ReportBatch
                       ) -> tuple[ReportBatch, tuple[Unassigned, ...]]:
        """The batch with every binding the desk did not assign to ``host`` made unbound
        (:func:`policy.fleet_wire.assigned_only`); the registry is asked only when an
        observation claims a binding at all."""
        if all(o.binding == UNBOUND for o in batch.observations):
            return batch, ()
        observations, unassigned = assigned_only(
            batch.observations, assignments(self.registry.bindings(host)))
        if unassigned:
            first = unassigned[0]
            # A binding may claim a tier, an item or match_by_san and no contract: said so,
            # as the agent's report-unassigned line says it, never "contract None".
            claimed = ("no contract" if first.contract_id is None
                       else f"contract {first.contract_id!r}")
            log.warning("recorded unbound %d observation(s) of %r claiming a binding the desk "
                        "did not assign to its store (the first: %s at %r)",
                        len(unassigned), host, claimed, first.location,
                        extra=event("report-unassigned", host=host,
                                    observations=len(unassigned)))
        return dataclasses.replace(batch, observations=observations), unassigned

    def _record(self, identity: PeerIdentity, batch: ReportBatch) -> BatchReceipt:
        host = identity.host
        now = self.clock()
        self.registry.seen(host=host, serial=identity.serial,
                           client_not_after=identity.not_after_utc, at=now)
        # The places found empty, the observations and the batch's marker in one
        # transaction: a replay records nothing, a crash leaves none of it.
        return self.intake.record_batch(
            host=host, outbox=batch.outbox, sequence=batch.sequence,
            observations=batch.observations,
            gone=[(g.location, g.at_utc) for g in batch.gone], at=batch.at_utc, now=now)

    async def heartbeat(self, request: web.Request) -> web.Response:
        identity = await self._identify(request)
        body = await self._body(request)
        try:
            beat = read_heartbeat(body)
        except WireError as exc:
            return _error(400, str(exc))
        if beat.host != identity.host:
            return _error(403, "a host reports only for itself (the client certificate "
                               "names another host)")
        await asyncio.to_thread(
            self.registry.seen, host=identity.host, serial=identity.serial,
            client_not_after=identity.not_after_utc, at=self.clock(),
            inventory=beat.inventory)
        return web.json_response({"host": identity.host, "ok": True})

    async def renew(self, request: web.Request) -> web.Response:
        """A new client certificate for the caller's host, from a CSR: the agent renews its
        own certificate before it expires, with the one it still has (never after)."""
        identity = await self._identify(request)
        if self.renewer is None:
            return _error(501, "certificate renewal is not enabled on this service "
                               "([serve] ca_key)")
        body = await self._body(request)
        try:
            host, csr = read_renewal(body, max_csr=MAX_CSR)
        except WireError as exc:
            return _error(400, f"{exc} (expected exactly {{host, csr}} with a PEM CSR)")
        if host != identity.host:
            return _error(403, "a host renews only its own certificate")
        now = self.clock()
        try:
            record, pem, cut = await asyncio.to_thread(
                self.renewer, csr.encode("ascii", "replace"), identity.host, now)
        except ValueError as exc:
            # The operator's line too: a CA about to end refuses every host's renewal, and
            # the agents' logs are on other machines.
            log.warning("refused a renewal of %r: %s", identity.host, exc,
                        extra=event("renewal-refused", host=identity.host))
            return _error(400, str(exc))
        # The certificate it renews (and any older) stays valid for a short grace only, and
        # the new one must carry a new key: a renewal that keeps a key that may have leaked
        # renews nothing.
        refused = await asyncio.to_thread(
            self.registry.record_certificate, record, at=now,
            supersede_at=now + self.settings.renewal_grace, new_key_only=True)
        if refused is not None:
            log.warning("refused a renewal of %r: %s", identity.host, refused,
                        extra=event("renewal-refused", host=identity.host))
            return _error(409, refused)
        log.info("renewed the client certificate of %r (serial %s)", identity.host,
                 record.serial, extra=event("renewed", host=identity.host,
                                            serial=str(record.serial)))
        if cut is not None:
            log.warning("renewed %r short: %s", identity.host, cut,
                        extra=event("renewed-short", host=identity.host))
        return web.json_response({"host": identity.host, "certificate": pem.decode("ascii")})

    async def bindings(self, request: web.Request) -> web.Response:
        identity = await self._identify(request)
        rows = await asyncio.to_thread(self.registry.bindings, identity.host)
        return web.json_response({"host": identity.host, "stores": rows})


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _refusals(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn a refusal into its response; anything unexpected is a 500 with our text only."""
    try:
        return await handler(request)
    except _Refused as refused:
        return refused.response
    except LedgerContentError as exc:
        # The database refused a value of the batch for what it is (SQLSTATE classes 22 and
        # 54: a program limit, a value it cannot convert): nothing was written, and the same
        # batch would be refused again. 422, so that the agent sends its observations apart
        # and drops only the one refused.
        log.warning("the ledger refused a value serving %s: %s", request.path, exc,
                    extra=event("ledger-refused", path=request.path))
        return _error(422, "the ledger cannot store a value of this batch as given; "
                           "nothing of it was written: send its observations apart")
    except LedgerError as exc:
        # The database is down or restarting: nothing was written (a transaction either
        # committed or not, and a committed batch is a replay when resent). The agent keeps
        # the batch in its outbox and resends it; the service itself keeps running.
        log.warning("the ledger is unavailable serving %s: %s", request.path, exc,
                    extra=event("ledger-unavailable", path=request.path))
        response = _error(503, "the ledger is unavailable; retry later")
        response.headers["Retry-After"] = str(RETRY_AFTER_S)
        return response
    except web.HTTPException as exc:
        return _error(exc.status, exc.reason)
    except ConnectionError:
        # The client went away mid-request (an agent past its timeout_s): nothing was
        # written for it, and nobody is left to answer.
        log.info("the client went away during %s", request.path,
                 extra=event("client-gone", path=request.path))
        return _error(400, "the connection was lost")
    except Exception:
        log.exception("internal error serving %s", request.path,
                      extra=event("request-failed", path=request.path))
        return _error(500, "internal error (see the service's log)")


def build_app(*, intake: Ledger, registry: FleetRegistry, clock: Callable[[], datetime],
              settings: ServiceSettings | None = None,
              forwarded: ForwardedParser | None = None,
              renewer: Renewer | None = None) -> web.Application:
    """The service's application; the shell runs it with its TLS context."""
    settings = settings or ServiceSettings()
    service = _Service(intake=intake, registry=registry, clock=clock, settings=settings,
                       forwarded=forwarded, renewer=renewer)
    app = web.Application(client_max_size=settings.max_body_bytes,
                          middlewares=[connection_middleware, _refusals])
    app.on_response_prepare.append(server_header)
    app[CONNECTIONS] = ConnectionGuard(
        header_timeout_s=settings.header_timeout.total_seconds(),
        max_per_host=settings.max_connections_per_host, max_handshakes=settings.max_handshakes)
    app.router.add_post(f"/{API_VERSION}/report", service.report)
    app.router.add_post(f"/{API_VERSION}/heartbeat", service.heartbeat)
    app.router.add_get(f"/{API_VERSION}/bindings", service.bindings)
    app.router.add_post(f"/{API_VERSION}/renew", service.renew)

    async def writer_pool(app: web.Application) -> AsyncIterator[None]:
        yield
        service.writer.shutdown(wait=True)  # batches being written finish first

    app.cleanup_ctx.append(writer_pool)
    app.cleanup_ctx.append(functools.partial(_refresher, service))
    return app


SERVE_GC_THRESHOLDS = (20_000, 50, 50)
"""The collector's thresholds while the service serves (:func:`gc.set_threshold`)."""

REFRESH_EVERY_S = 3600.0
"""How often the service evaluates again the projection rows whose cached actions expired
(``Ledger.refresh_projection``): at its start, then hourly, so the desk's ``policy actions``
reads a day's changes from the projection soon after Tokyo's midnight."""


async def _refresher(service: _Service, app: web.Application) -> AsyncIterator[None]:
    stopping = threading.Event()  # asked between the refresh's chunks, in the writer thread

    async def every_hour() -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                done = await loop.run_in_executor(
                    service.writer, functools.partial(service.intake.refresh_projection,
                                                      at=service.clock(),
                                                      stop=stopping.is_set))
                if done:
                    log.info("projection refreshed: %d contract(s) evaluated again", done,
                             extra=event("projection-refreshed", contracts=done))
            except LedgerError as exc:  # the ledger's own words, no secret in them
                log.warning("projection refresh failed: %s; trying again in an hour", exc,
                            extra=event("projection-failed"))
            await asyncio.sleep(REFRESH_EVERY_S)

    task = asyncio.get_running_loop().create_task(every_hour())
    yield
    stopping.set()  # a refresh under way ends after its chunk; the writer pool waits for that
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


CONNECTIONS = web.AppKey("connections", ConnectionGuard)
"""The application's :class:`ConnectionGuard`: its middleware and its TLS site share it."""


# ---------------------------------------------------------------------- listening
class StartError(Exception):
    """The service could not start listening; the message is one line, in our words."""


def _on_unix_socket(transport: asyncio.BaseTransport) -> bool:
    sock = transport.get_extra_info("socket")
    return sock is not None and getattr(sock, "family", None) == socket.AF_UNIX


_CERTIFICATE_ALERTS = ("UNKNOWN_CA", "BAD_CERTIFICATE", "CERTIFICATE_UNKNOWN",
                       "CERTIFICATE_EXPIRED", "CERTIFICATE_REVOKED", "UNSUPPORTED_CERTIFICATE")


def _words(text: object) -> str:
    """OpenSSL's reason reduced to plain characters and bounded."""
    return re.sub(r"[^0-9A-Za-z ._-]", "?", str(text).replace("_", " ").lower())[:120]


@dataclass(frozen=True, slots=True)
class HandshakeFailure:
    """Why a TLS handshake failed, and who refused whom: a log line must not read as the
    service refusing an agent when it was the agent that refused the service's certificate
    (a wrong ``ca_bundle``), which the operator fixes on the other machine."""

    message: str
    refused_by: str
    """``service`` (it refused the client's certificate, or its lack of one), ``client``
    (the client's alert ended the handshake), or ``""`` (neither said: the connection was
    closed, or the two have no protocol in common)."""


def handshake_failure(exc: BaseException, peer: str) -> HandshakeFailure:
    """Why the TLS handshake with ``peer`` failed, in a few words: OpenSSL's own reason
    (``certificate has expired``, ``unable to get local issuer certificate`` for another CA's
    certificate, ``peer did not return a certificate``), reduced to plain characters and
    bounded, and who refused. An alert is what the client sent (OpenSSL names an alert it
    receives ``…_ALERT_…``); a verification failure is the service's own check."""
    verified = getattr(exc, "verify_message", None)
    if verified:
        return HandshakeFailure(
            message=f"refused a TLS handshake from {peer}: its client certificate: "
                    f"{_words(verified)}", refused_by="service")
    reason = str(getattr(exc, "reason", None) or "")
    if reason == "PEER_DID_NOT_RETURN_A_CERTIFICATE":
        return HandshakeFailure(
            message=f"refused a TLS handshake from {peer}: no client certificate (peer did "
                    "not return a certificate)", refused_by="service")
    if "_ALERT_" in reason:
        if reason.endswith(_CERTIFICATE_ALERTS):
            return HandshakeFailure(
                message=f"the client at {peer} refused the service's certificate in the TLS "
                        f"handshake ({_words(reason)}): its ca_bundle is not the fleet CA "
                        "that signed [serve] certificate, or that certificate does not name "
                        "the address the client connects to", refused_by="client")
        return HandshakeFailure(message=f"the client at {peer} ended the TLS handshake "
                                        f"({_words(reason)})", refused_by="client")
    if reason:
        return HandshakeFailure(message=f"a TLS handshake from {peer} failed: {_words(reason)}",
                                refused_by="")
    why = ("the client closed the connection during the handshake"
           if isinstance(exc, ConnectionError) else type(exc).__name__)
    return HandshakeFailure(message=f"a TLS handshake from {peer} failed: {why}", refused_by="")


class HandshakeLog:
    """One warning a failed TLS handshake, at most ``burst`` in a ``window_s`` window; past
    that, one line counting the rest when the window ends (a scanner must not flood the log).
    ``clock`` is monotonic seconds."""

    def __init__(self, *, burst: int = 20, window_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.budget = LogBudget(burst=burst, window_s=window_s, clock=clock)

    def refused(self, peer: Any, exc: BaseException) -> None:
        allowed, held_back = self.budget.spend()
        if held_back:
            log.warning("refused %d more TLS handshake(s) in %d s, not logged one by one",
                        held_back, int(self.budget.window_s),
                        extra=event("handshake-refused", count=held_back))
        if allowed:
            failure = handshake_failure(exc, address_text(peer))
            fields = {"refused_by": failure.refused_by} if failure.refused_by else {}
            log.warning("%s", failure.message,
                        extra=event("handshake-refused", peer=address_text(peer), **fields))


class _TLSGate(asyncio.Protocol):
    """A TCP connection whose TLS handshake is made here before aiohttp sees it. The standard
    library's TLS server drops a failed handshake without a word outside debug mode; doing
    the handshake with ``start_tls`` (:mod:`policy.tlsalert`: asyncio's, with the client sent
    the alert that says why) lets the service log each refusal (another CA's certificate, an
    expired one, none) with its reason and peer. A connection's header
    deadline starts here, at its accept, and the cap on handshakes is applied here."""

    def __init__(self, site: _GatedTLSSite) -> None:
        self.site = site

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not isinstance(transport, asyncio.Transport):  # pragma: no cover - TCP always is
            transport.close()
            return
        server = self.site.http_server()
        connection = None if server is None else self.site.guard.accepted(
            transport.get_extra_info("peername"), lambda: quiet_handler(server()))
        if connection is None:
            transport.abort()
            return
        transport.pause_reading()  # the ClientHello waits for the TLS layer
        task = asyncio.get_running_loop().create_task(
            self.site.handshake(transport, connection))
        self.site.handshakes.add(task)
        task.add_done_callback(self.site.handshakes.discard)

    def data_received(self, data: bytes) -> None:  # pragma: no cover - reading is paused
        pass


class _GatedTLSSite(web.BaseSite):
    """aiohttp's TCP site with the TLS handshake made by :class:`_TLSGate`."""

    __slots__ = (
        "_host",
        "_port",
        "_reuse_port",
        "bound",
        "context",
        "guard",
        "handshakes",
        "refusals",
    )

    def __init__(self, runner: web.BaseRunner, host: str, port: int, *,
                 ssl_context: Any, reuse_port: bool | None, refusals: HandshakeLog,
                 guard: ConnectionGuard) -> None:
        super().__init__(runner, ssl_context=ssl_context)
        self._host, self._port, self._reuse_port = host, port, reuse_port
        self.bound: list[tuple[str, int]] = []
        self.handshakes: set[asyncio.Task[None]] = set()
        self.refusals = refusals
        self.guard = guard
        self.context = ssl_context

    @property
    def name(self) -> str:
        return f"https://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _TLSGate(self), self._host, self._port, backlog=self._backlog,
            reuse_port=self._reuse_port)
        self.bound = [sock.getsockname()[:2] for sock in self._server.sockets]

    async def stop(self) -> None:
        for task in list(self.handshakes):
            task.cancel()
        await super().stop()

    def http_server(self) -> web.Server | None:
        """aiohttp's server: it makes the HTTP protocol of each connection (``None`` once
        the runner is cleaned up)."""
        return self._runner.server

    async def handshake(self, transport: asyncio.Transport,
                        connection: Connection) -> None:
        if transport.is_closing():
            self.guard.handshake_failed(connection, timed_out=False)
            transport.close()
            return
        peer = transport.get_extra_info("peername")
        try:
            # asyncio's start_tls, sending the client the alert that says why its certificate
            # was refused (asyncio's own drops it): policy/tlsalert.py.
            tls = await start_tls(transport, connection, self.context,
                                  handshake_timeout_s=self.guard.handshake_timeout_s(connection))
        except asyncio.CancelledError:
            self.guard.handshake_failed(connection, timed_out=False)
            transport.close()
            raise
        except (OSError, TimeoutError) as exc:  # ssl.SSLError is an OSError
            # asyncio says a handshake past its timeout with a ConnectionAbortedError, the
            # word a client's own abort has: the deadline tells them apart.
            timed_out = self.guard.past_deadline(connection)
            self.guard.handshake_failed(connection, timed_out=timed_out)
            if not timed_out:
                self.refusals.refused(peer, exc)
            transport.close()
            return
        if tls is None:  # pragma: no cover - the transport closed under the handshake
            self.guard.handshake_failed(connection, timed_out=False)
            transport.close()
            return
        self.guard.admit(connection, tls)


async def serve(app: web.Application, *, listen: str, port: int, ssl_context: Any,
                unix_socket: str | None = None, reuse_port: bool = False,
                started: Callable[[list[str]], None], stop: asyncio.Event) -> None:
    """Run ``app`` until ``stop`` is set: on ``listen:port`` with TLS (each refused handshake
    logged), or plain HTTP on a Unix socket (proxy mode: file mode 0660, so only the proxy's
    group can connect), or plain HTTP on TCP behind a proxy. ``started`` gets the addresses.
    Raises :class:`StartError` when the address cannot be listened on."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0, logger=http_log())
    await runner.setup()
    site: web.BaseSite
    try:
        if unix_socket is not None:
            site = web.UnixSite(runner, unix_socket)
            await site.start()
            os.chmod(unix_socket, stat.S_IRUSR | stat.S_IWUSR | stat.S_IRGRP | stat.S_IWGRP)
            addresses = [f"http+unix://{unix_socket}"]
        elif ssl_context is not None:
            site = _GatedTLSSite(runner, listen, port, ssl_context=ssl_context,
                                 reuse_port=reuse_port or None, refusals=HandshakeLog(),
                                 guard=app[CONNECTIONS])
            await site.start()
            addresses = [f"https://{h}:{p}" for h, p in site.bound]
        else:
            site = web.TCPSite(runner, listen, port, reuse_port=reuse_port or None)
            await site.start()
            addresses = [f"http://{a[0]}:{a[1]}" for a in runner.addresses]
    except OSError as exc:
        await runner.cleanup()
        where = unix_socket if unix_socket is not None else f"{listen}:{port}"
        reason = exc.strerror or type(exc).__name__
        raise StartError(f"cannot listen on {where}: {reason}") from None
    started(addresses)
    # What the start made (modules, the TLS context, pools) lives until the process ends:
    # frozen, the collector walks none of it while serving, nor at exit (that last walk took
    # about a second of a SIGTERM's stop).
    gc.freeze()
    # A request's objects are freed by reference counting; at the collector's default pace (a
    # young collection every 700 allocations, a full one every 100 young ones) it walked the
    # agents' long-lived connections again and again: in bench_fleet's run, 18 full
    # collections of 30-100 ms that freed next to nothing, each a stall for every request in
    # flight (sustained phase p95 400 ms). Fewer, larger collections: 2 full ones a run, p95
    # 156 ms, peak memory the same.
    gc.set_threshold(*SERVE_GC_THRESHOLDS)
    try:
        await stop.wait()
    finally:
        log.info("stopping", extra=event("stopping"))
        await runner.cleanup()
