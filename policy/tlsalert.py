"""The TLS handshake of ``policy serve``, with the fatal alert sent when it fails.

A client certificate the service refuses (another CA's, an expired one, none) fails the
handshake on the service's side, and OpenSSL writes the fatal alert that says why
(``unknown_ca``, ``certificate_expired``, ``certificate_required``) for the client. asyncio's
TLS layer up to at least Python 3.13 never sends it: on a failed handshake it closes the
connection with the alert still in its outgoing buffer (CPython issue gh-98078, fixed upstream
by flushing that buffer first). Under TLS 1.3 the client's side of the handshake is over before
the service checks its certificate, so all the agent then saw was a connection closed before an
answer, which it could not tell from a service restarting: it called a revoked-by-handshake
host "unreachable" (a warning) where docs/fleet.md promises ``report-refused`` (critical).

:func:`start_tls` is asyncio's ``loop.start_tls`` for a server with that fix: the protocol is
asyncio's own :class:`asyncio.sslproto.SSLProtocol`, subclassed only to flush the outgoing
buffer (the alert) before asyncio closes the connection, which is what the upstream fix does.
It relies on two private names of that class (``_on_handshake_complete`` and
``_process_outgoing``, both there since the TLS layer was rewritten for 3.11); where they are
missing it is plain ``loop.start_tls`` (no alert, as before). tests/fleet/test_handshake_refusal.py
pins the behaviour: an agent whose certificate the service refuses reads the alert.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from asyncio import sslproto
from typing import Any

__all__ = ["ALERT_FLUSHED", "start_tls"]


class _AlertingSSLProtocol(sslproto.SSLProtocol):
    """asyncio's TLS protocol, sending what OpenSSL left for the peer (the fatal alert) when
    the handshake fails, before the connection is closed."""

    def _on_handshake_complete(self, handshake_exc: BaseException | None) -> None:
        if handshake_exc is not None and self._transport is not None:
            # Best effort: the connection is being closed for the failure either way.
            with contextlib.suppress(Exception):
                self._process_outgoing()  # type: ignore[attr-defined]  # asyncio's, untyped
        super()._on_handshake_complete(handshake_exc)


ALERT_FLUSHED = all(hasattr(sslproto.SSLProtocol, name)
                    for name in ("_on_handshake_complete", "_process_outgoing"))
"""Whether this Python's TLS layer has the two private methods the flush needs."""


async def start_tls(transport: asyncio.Transport, protocol: asyncio.BaseProtocol,
                    context: ssl.SSLContext, *, handshake_timeout_s: float) -> Any:
    """The server side of a TLS handshake on an accepted ``transport`` (its reading paused),
    then ``protocol`` on the TLS transport returned; raises as ``loop.start_tls`` does (an
    :class:`ssl.SSLError` for a refused certificate, having sent the client its alert).
    The steps are ``BaseEventLoop.start_tls``'s, with :class:`_AlertingSSLProtocol`."""
    loop = asyncio.get_running_loop()
    if not ALERT_FLUSHED or not getattr(transport, "_start_tls_compatible", False):
        return await loop.start_tls(transport, protocol, context, server_side=True,
                                    ssl_handshake_timeout=handshake_timeout_s)
    waiter = loop.create_future()
    tls = _AlertingSSLProtocol(loop, protocol, context, waiter, True, None,
                               # typeshed says int; asyncio takes any number of seconds
                               ssl_handshake_timeout=handshake_timeout_s,  # type: ignore[arg-type]
                               call_connection_made=False)
    # As asyncio does: paused, so that no data reaches the protocol before connection_made.
    transport.pause_reading()
    transport.set_protocol(tls)
    made = loop.call_soon(tls.connection_made, transport)
    resumed = loop.call_soon(transport.resume_reading)
    try:
        await waiter
    except BaseException:
        transport.close()
        made.cancel()
        resumed.cancel()
        raise
    return tls._app_transport
