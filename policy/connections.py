"""Deadlines and caps on ``policy serve``'s TLS connections: what aiohttp leaves open.

aiohttp bounds what a request may hold (a body's size) but neither how long a connection may
take to say what it wants nor who holds how many. Its only clock before a request is
``keepalive_timeout`` (3630 s by default, and it starts only once the TLS handshake is done),
so a client that connected and sent nothing, or trickled a request line, held a connection
for an hour; and one enrolled host could open connections without end. asyncio's
``create_server`` has no cap on connections either. Both are decided here, below aiohttp:

* **A deadline on request headers** (``header_timeout_s``). From the connection's accept, the
  TLS handshake and the first request's headers must be done within it (the handshake's own
  timeout is what is left of it); on a kept-alive connection, a later request's headers must
  be done within it of that request's first byte. Past it the connection is aborted (no TLS
  goodbye to wait for) and one info line logged: the peer's address and the host of its
  certificate, filtered, never a byte it sent. A kept-alive connection that is merely idle
  stays aiohttp's ``keepalive_timeout``: an agent keeps one connection between heartbeats and
  ``http.client`` does not retry a request on a connection the service closed, so closing
  idle connections at this deadline would fail every agent's next request. The cap per host
  bounds how many idle connections a host keeps. (A request sent while the one before it is
  still being answered, pipelined, has its bytes taken for the earlier body: it waits under
  ``keepalive_timeout`` too, as an idle connection would.)
* **A cap per host** (``max_per_host``). The host is the verified client certificate's, read
  as the service reads it for every request (:func:`policy.fleet_wire.identity_from_peercert`),
  counted from the end of the handshake until the connection is lost. A host's connection past
  the cap takes the place of the host's connection idle the longest (between requests, or not
  yet through its first request's headers), which is closed: an agent that crashed, or whose
  NAT forgot it, leaves connections the service sees as idle until its keep-alive timeout (an
  hour), and with a plain refusal a host restarted a few times would be locked out that long.
  Only when every one of its connections is in a request is the new one refused: answered 429
  with ``Retry-After`` and closed (the agent resends a report answered 429; a heartbeat or a
  bindings fetch answered 429 it logs as refused); while as many wait for that answer as it
  may have open, more are closed right after the handshake. A host that opens
  connections in a loop churns its own and holds at most twice its cap, never another's room.
* **A cap on handshakes** (``max_handshakes``): TCP connections accepted and not yet through
  the TLS handshake, the only ones no certificate names. Past it a connection is closed as
  soon as it is accepted, before any TLS. A flood of connections that never handshake then
  costs at most this many sockets, each for at most the deadline; it does shut out everyone
  else meanwhile, which only a firewall in front can prevent.

Logging is bounded too (:class:`LogBudget`): a flood of connections must not become a flood
of log lines. aiohttp's own log of a request it cannot parse (an ERROR with a traceback whose
message quotes the client's bytes, escape sequences and all) becomes one budgeted info line in
our words (:func:`http_log`). All of it is touched by the event loop only: no locks.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import StreamReader, web
from aiohttp.http_exceptions import HttpProcessingError

from .fleet_wire import identity_from_peercert
from .logevents import event

__all__ = [
    "SERVER_HEADER",
    "Connection",
    "ConnectionGuard",
    "LogBudget",
    "address_text",
    "connection_middleware",
    "http_log",
    "quiet_handler",
    "server_header",
]

log = logging.getLogger("certescrow.service")

RETRY_AFTER_S = 1
"""What a 429 for a host past its cap asks: its own connections end within seconds."""


def address_text(address: Any) -> str:
    """A peer address for a log line: ``host:port`` (the kernel's, never the client's text)."""
    if isinstance(address, tuple) and len(address) >= 2:
        address = f"{address[0]}:{address[1]}"
    return "the Unix socket" if address in ("", None) else re.sub(r"[^0-9A-Za-z.:%_-]", "?",
                                                                   str(address))[:80]


def _host_text(host: str) -> str:
    """A certificate's host for a log line: the CA signed it, the agent's operator chose it."""
    return re.sub(r"[^0-9a-z._-]", "?", host)[:80]


class LogBudget:
    """At most ``burst`` lines in a ``window_s`` window, the rest counted. ``clock`` is
    monotonic seconds."""

    def __init__(self, *, burst: int = 20, window_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.burst, self.window_s, self.clock = burst, window_s, clock
        self.window_start = clock()
        self.logged = 0
        self.suppressed = 0

    def spend(self) -> tuple[bool, int]:
        """Whether one more line may be logged now, and how many lines the window that just
        ended held back (to be said in one line first; 0 when none ended)."""
        now = self.clock()
        held_back = 0
        if now - self.window_start >= self.window_s:
            held_back = self.suppressed
            self.window_start, self.logged, self.suppressed = now, 0, 0
        if self.logged >= self.burst:
            self.suppressed += 1
            return False, held_back
        self.logged += 1
        return True, held_back


class Connection(asyncio.Protocol):
    """One accepted connection: aiohttp's protocol behind it sees every event unchanged; this
    keeps the connection's header deadline and its place under its host's cap."""

    def __init__(self, guard: ConnectionGuard, inner: asyncio.Protocol, *, peer: str,
                 deadline: float) -> None:
        self.guard = guard
        self.peer = peer
        self.deadline = deadline
        """Loop time by which the first request's headers must be done."""
        self.inner = inner
        """aiohttp's protocol. asyncio may hand it the bytes that came with the handshake's
        end before the handshake's caller resumes (and calls :meth:`connection_made`)."""
        self.transport: asyncio.Transport | None = None
        self.host: str | None = None
        """The certificate's host, once through the handshake."""
        self.counted = False
        """Whether it holds one of its host's places (else it waits for its 429)."""
        self.idle_since = 0.0
        """Loop time its last request ended (or it was admitted): the longest idle is the
        one a new connection of its host replaces."""
        self.refused = False
        self.timer: asyncio.TimerHandle | None = None
        self.in_request = False
        self.payload: StreamReader | None = None
        """The last request's body (aiohttp's stream): bytes after its end begin the next
        request, bytes before it are the body."""
        self.lost = False

    # ------------------------------------------------------------------ asyncio's protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.timer is None and not self.in_request and self.payload is not None \
                and self.payload.is_eof():
            self.arm(asyncio.get_running_loop().time() + self.guard.header_timeout_s)
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._disarm()
        self.guard.release(self)
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    # ------------------------------------------------------------------ the deadline
    def arm(self, when: float) -> None:
        self.timer = asyncio.get_running_loop().call_at(when, self._expire)

    def _disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _expire(self) -> None:
        self.timer = None
        transport = self.transport
        if self.lost or self.in_request or transport is None or transport.is_closing():
            return
        self.guard.passed(self, "complete request headers")
        transport.abort()

    def request_began(self, payload: StreamReader) -> None:
        self._disarm()
        self.in_request = True
        self.payload = payload

    def request_ended(self) -> None:
        self.in_request = False
        self.idle_since = asyncio.get_running_loop().time()


class ConnectionGuard:
    """The deadline and the caps of one service process (see the module's docstring)."""

    def __init__(self, *, header_timeout_s: float, max_per_host: int,
                 max_handshakes: int) -> None:
        self.header_timeout_s = header_timeout_s
        self.max_per_host = max_per_host
        self.max_handshakes = max_handshakes
        self.handshaking = 0
        self.open: dict[str, set[Connection]] = {}
        """Connections of each host holding a place under its cap (none empty)."""
        self.refused: dict[str, int] = {}
        """Connections of each host past its cap, waiting for their 429."""
        self.deadlines = LogBudget()
        self.refusals = LogBudget()

    def accepted(self, peer: Any, inner: Callable[[], asyncio.Protocol]) -> Connection | None:
        """A TCP connection just accepted, for the protocol ``inner`` makes (aiohttp's): its
        deadline starts now. ``None``: too many are in their handshake already; close it."""
        if self.handshaking >= self.max_handshakes:
            self._refusal("closed a connection from %s at once: %d TLS handshakes are in "
                          "progress already ([serve] max_handshakes)", address_text(peer),
                          self.handshaking)
            return None
        self.handshaking += 1
        deadline = asyncio.get_running_loop().time() + self.header_timeout_s
        return Connection(self, inner(), peer=address_text(peer), deadline=deadline)

    def past_deadline(self, connection: Connection) -> bool:
        """Whether the connection's deadline has come (asyncio's timers may fire a clock tick
        early, and the handshake's was set a little after the deadline was taken)."""
        return asyncio.get_running_loop().time() + 0.05 >= connection.deadline

    def handshake_timeout_s(self, connection: Connection) -> float:
        """What is left of the deadline for the TLS handshake (asyncio wants more than 0)."""
        return max(0.001, connection.deadline - asyncio.get_running_loop().time())

    def handshake_failed(self, connection: Connection, *, timed_out: bool) -> None:
        """The handshake did not complete (refused, abandoned, or past the deadline: then
        the one line logged is said here)."""
        self.handshaking -= 1
        connection.lost = True
        if timed_out:
            self.passed(connection, "TLS handshake")

    def admit(self, connection: Connection, transport: asyncio.Transport) -> None:
        """Through the handshake: the connection is its certificate's host's from now on.
        Hands it to aiohttp's protocol (in the place of its host's longest idle connection
        when the host is at its cap), or closes it when its host holds twice its cap busy."""
        self.handshaking -= 1
        identity = identity_from_peercert(transport.get_extra_info("peercert"))
        # A certificate naming no single host is refused at its first request (401); until
        # then its connections share one count.
        host = identity.host if identity is not None else ""
        connection.host, connection.transport = host, transport
        if connection.lost or transport.is_closing():
            connection.lost = True
            transport.abort()
            return
        if len(self.open.get(host, ())) >= self.max_per_host:
            self._replace_idle(self.open[host], connection)
        mine = self.open.setdefault(host, set())
        if len(mine) < self.max_per_host:
            mine.add(connection)
            connection.counted = True
            connection.idle_since = asyncio.get_running_loop().time()
        elif self.refused.get(host, 0) < self.max_per_host:
            self.refused[host] = self.refused.get(host, 0) + 1
            connection.refused = True
            self._refusal("refusing a connection of %s from %s: its %d open connections are "
                          "all in a request ([serve] max_connections_per_host); its request "
                          "gets 429", _host_text(host), connection.peer, len(mine))
        else:
            self._refusal("closed a connection of %s from %s at once: its %d open connections "
                          "are all in a request and %d more wait for their 429 "
                          "([serve] max_connections_per_host)", _host_text(host),
                          connection.peer, len(mine), self.refused[host])
            connection.lost = True
            transport.abort()
            return
        connection.arm(connection.deadline)
        connection.connection_made(transport)

    def _replace_idle(self, mine: set[Connection], newcomer: Connection) -> None:
        """Close the host's connection idle the longest, if any is not in a request: its
        place is the newcomer's."""
        idle = [c for c in mine if not c.in_request]
        if not idle:
            return
        oldest = min(idle, key=lambda c: c.idle_since)
        self.release(oldest)
        self._note("closed an idle connection of %s from %s: a new one from %s takes its place "
                   "([serve] max_connections_per_host)", _host_text(newcomer.host or ""),
                   oldest.peer, newcomer.peer)
        if oldest.transport is not None:
            oldest.transport.abort()

    def release(self, connection: Connection) -> None:
        """The connection is gone (or replaced): its place, or its wait for a 429, is free
        (once)."""
        host = connection.host
        if host is None:
            return
        if connection.counted:
            mine = self.open.get(host, set())
            mine.discard(connection)
            if not mine:
                self.open.pop(host, None)
        elif connection.refused:
            left = self.refused.get(host, 1) - 1
            if left > 0:
                self.refused[host] = left
            else:
                self.refused.pop(host, None)
        connection.counted = connection.refused = False

    def passed(self, connection: Connection, what: str) -> None:
        """The deadline passed: one info line (budgeted)."""
        whose = f" ({_host_text(connection.host)})" if connection.host else ""
        self._note("closed a connection from %s%s: no %s within %d ms ([serve] "
                   "header_timeout_ms)", connection.peer, whose, what,
                   round(self.header_timeout_s * 1000))

    def _note(self, message: str, *args: Any) -> None:
        allowed, held_back = self.deadlines.spend()
        if held_back:
            log.info("closed %d more connection(s) past [serve] header_timeout_ms or replaced "
                     "in %d s, not logged one by one", held_back, int(self.deadlines.window_s),
                     extra=event("connection-closed", count=held_back))
        if allowed:
            log.info(message, *args, extra=event("connection-closed"))

    def _refusal(self, message: str, *args: Any) -> None:
        allowed, held_back = self.refusals.spend()
        if held_back:
            log.warning("refused %d more connection(s) past [serve] max_handshakes or "
                        "max_connections_per_host in %d s, not logged one by one", held_back,
                        int(self.refusals.window_s),
                        extra=event("connection-refused", count=held_back))
        if allowed:
            log.warning(message, *args, extra=event("connection-refused"))


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def connection_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The request's headers are complete: its connection's deadline is met. A connection
    past its host's cap gets 429 here (closed after it), before anything else is asked."""
    transport = request.transport
    connection = transport.get_protocol() if transport is not None else None
    if not isinstance(connection, Connection):  # proxy mode: the proxy's limits apply
        return await handler(request)
    connection.request_began(request.content)
    try:
        if connection.refused:
            response = web.json_response(
                {"error": "this host has as many connections open as the service allows; "
                          "retry on one of them, or later"}, status=429)
            response.headers["Retry-After"] = str(RETRY_AFTER_S)
            response.force_close()
            return response
        return await handler(request)
    finally:
        connection.request_ended()


class _MalformedRequests(logging.Filter):
    """aiohttp answers a request it cannot parse with 400 and closes the connection, which is
    right, then logs it at ERROR with a traceback of its parser's exception, whose message
    quotes the request line or header the client sent. Each such record becomes one info
    line naming the peer and the exception's class (``InvalidURLError``, ``LineTooLong``),
    within a :class:`LogBudget`; aiohttp's other records pass unchanged."""

    def __init__(self) -> None:
        super().__init__()
        self.budget = LogBudget()

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError):
            return True
        allowed, held_back = self.budget.spend()
        peer = address_text(record.args[0]) if isinstance(record.args, tuple) and record.args \
            else "an unknown peer"
        if held_back:
            peer += f" (and {held_back} more in {int(self.budget.window_s)} s, not logged " \
                    "one by one)"
        record.msg, record.args = "refused a malformed request from %s (400, %s)", (
            peer, type(exc).__name__)
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        record.levelno, record.levelname = logging.INFO, logging.getLevelName(logging.INFO)
        record.event = "request-malformed"  # (the formatter's event: policy/logevents.py)
        return allowed


SERVER_HEADER = "certescrow"
"""Every response's ``Server`` header: aiohttp's default names its version and Python's
(``Python/3.11 aiohttp/3.x``), which tells a scanner which advisories to try."""

_ERROR_WORDS = {
    500: "internal error (see the service's log)",
    504: "the request took too long",
}


class _QuietRequestHandler(web.RequestHandler):
    """aiohttp's protocol for one connection, answering what it cannot parse in our words.

    aiohttp answers a request it cannot parse (``Content-Length: -1``, a control byte in a
    header) itself, before any middleware, with a text/plain body quoting the bytes the client
    sent and its parser's message (``Invalid character in Content-Length: … b'Content-Length:
    -1' ^``), and the ``Server`` header no ``on_response_prepare`` handler sees (that signal is
    not sent for such a request). No library text is to reach a client (docs/fleet.md), and
    aiohttp offers no public hook for these answers: this subclass overrides
    :meth:`web.RequestHandler.handle_error`, whose signature it keeps, and is put in place by
    :func:`quiet_handler`. aiohttp's own ``handle_error`` still runs first, for what it does
    besides the body (its log record, which :class:`_MalformedRequests` words; its refusal
    when part of a response was sent already; closing the connection).
    tests/fleet/test_service_errors.py pins the answer."""

    __slots__ = ()

    def handle_error(self, request: Any, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        theirs = super().handle_error(request, status, exc, message)
        words = _ERROR_WORDS.get(theirs.status, "the request is not valid HTTP")
        response = web.json_response({"error": words}, status=theirs.status)
        response.headers["Server"] = SERVER_HEADER
        response.force_close()
        return response


def quiet_handler(handler: asyncio.Protocol) -> asyncio.Protocol:
    """``handler``, made by aiohttp's server for a connection, answering requests it cannot
    parse in our words (:class:`_QuietRequestHandler`). Its class is swapped rather than a new
    handler made, so that aiohttp builds it with its own arguments (no private attribute of its
    server is read): the subclass adds no slot, so the layout is the same. Any other protocol
    is returned as it is."""
    if type(handler) is web.RequestHandler:
        handler.__class__ = _QuietRequestHandler
    return handler


async def server_header(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: our ``Server`` header in the place of aiohttp's."""
    response.headers["Server"] = SERVER_HEADER


def http_log() -> logging.Logger:
    """The logger aiohttp's request handler is given (``AppRunner(logger=…)``): a child of
    the service's, with its parser errors in our words (:class:`_MalformedRequests`)."""
    logger = logging.getLogger("certescrow.service.http")
    if not any(isinstance(f, _MalformedRequests) for f in logger.filters):
        logger.addFilter(_MalformedRequests())
    return logger
