"""Fetch the whole certificate chain a live TLS server presents.

The standard ``ssl`` module only hands back the leaf; pyOpenSSL's
``Connection.get_peer_cert_chain()`` gives every certificate the server sent, which is what an
operator needs to see (a missing intermediate is the classic misconfiguration). Reading needs no
trust, so the handshake does not verify; whether the chain *would* verify (trust anchors, the
server name, validity at ``at``) is then checked separately with ``cryptography``'s own
verifier, so the answer uses the same clock as the rest of the report.
"""

from __future__ import annotations

import errno
import select
import socket
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from ipaddress import ip_address
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import verification

from .errors import LiveChainError
from .x509facts import capture_warnings

if TYPE_CHECKING:
    from OpenSSL import SSL

__all__ = ["LiveChain", "LiveChainError", "fetch_chain", "parse_target", "verify_chain"]

# pyOpenSSL is imported where a chain is fetched, not here: it takes ~140 ms to import, which
# every other command (a scan, a vault export) would otherwise pay at each start.


@dataclass(frozen=True, slots=True, kw_only=True)
class LiveChain:
    host: str
    port: int
    servername: str | None
    certificates: tuple[bytes, ...]
    """DER of every certificate the server presented, leaf first, in the order sent."""
    protocol: str
    cipher: str | None

    @property
    def location(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_target(text: str) -> tuple[str, int] | None:
    """``HOST:PORT`` or ``[IPv6]:PORT`` -> (host, port); ``None`` if it does not look like one."""
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]:")
        if not sep:
            return None
    else:
        host, sep, rest = text.rpartition(":")
        if not sep or not host or ":" in host or "/" in host:
            return None
    if not rest.isdigit() or not 0 < int(rest) < 65536:
        return None
    return host, int(rest)


def _is_ip(host: str) -> bool:
    try:
        ip_address(host)
    except ValueError:
        return False
    return True


def fetch_chain(host: str, port: int, *, servername: str | None = None,
                timeout: float = 10.0) -> LiveChain:
    """Connect, handshake (SNI = ``servername``, or ``host`` when it is a name) and return
    what the server presented. Raises :class:`LiveChainError` with a message naming the
    server and the reason."""
    from OpenSSL import SSL

    where = f"{host}:{port}"
    sni = servername if servername is not None else (None if _is_ip(host) else host)
    deadline = time.monotonic() + timeout
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except TimeoutError:
        raise LiveChainError(f"{where}: no connection within {timeout:g} s (timeout)") from None
    except ConnectionRefusedError:
        raise LiveChainError(f"{where}: connection refused (nothing listens there)") from None
    except socket.gaierror as exc:
        raise LiveChainError(f"{where}: cannot resolve host: {exc.strerror}") from None
    except OSError as exc:
        raise LiveChainError(f"{where}: cannot connect: {exc.strerror or exc}") from None
    context = SSL.Context(SSL.TLS_CLIENT_METHOD)
    context.set_verify(SSL.VERIFY_NONE)  # we read the chain; verification is separate
    conn = SSL.Connection(context, sock)
    try:
        if sni:
            conn.set_tlsext_host_name(sni.encode("idna"))
        conn.set_connect_state()
        sock.setblocking(False)
        _handshake(conn, sock, deadline, where, timeout)
        chain = conn.get_peer_cert_chain(as_cryptography=True) or []
        ders = tuple(c.public_bytes(serialization.Encoding.DER) for c in chain)
        protocol = conn.get_protocol_version_name()
        cipher = conn.get_cipher_name()
    finally:
        try:
            conn.shutdown()
        except SSL.Error:
            pass
        sock.close()
    if not ders:
        raise LiveChainError(f"{where}: the server presented no certificate")
    return LiveChain(host=host, port=port, servername=sni, certificates=ders,
                     protocol=protocol, cipher=cipher)


def _handshake(conn: SSL.Connection, sock: socket.socket, deadline: float, where: str,
               timeout: float) -> None:
    from OpenSSL import SSL

    while True:
        wait: tuple[list[socket.socket], list[socket.socket]]
        try:
            conn.do_handshake()
            return
        except SSL.WantReadError:
            wait = ([sock], [])
        except SSL.WantWriteError:
            wait = ([], [sock])
        except SSL.SysCallError as exc:
            code = exc.args[0] if exc.args else None
            if code in (-1, 0) or code == errno.ECONNRESET:
                raise LiveChainError(
                    f"{where}: the connection was closed during the TLS handshake "
                    "(not a TLS server?)") from None
            raise LiveChainError(f"{where}: TLS handshake failed: {exc}") from None
        except SSL.Error as exc:
            reasons = "; ".join(str(part[2]) for part in exc.args[0]
                                if isinstance(part, tuple) and len(part) > 2) \
                if exc.args and isinstance(exc.args[0], list) else str(exc)
            hint = ("not TLS: the server answered with something else"
                    if "wrong version number" in reasons or "record layer" in reasons
                    or "packet length" in reasons else "TLS handshake failed")
            raise LiveChainError(f"{where}: {hint} ({reasons or 'no detail'})") from None
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise LiveChainError(f"{where}: no TLS handshake within {timeout:g} s (timeout)")
        readable, writable, _ = select.select(wait[0], wait[1], [], remaining)
        if not readable and not writable:
            raise LiveChainError(f"{where}: no TLS handshake within {timeout:g} s (timeout)")


def _load_pem_quietly(data: bytes) -> list[x509.Certificate]:
    # System trust stores hold old roots with serial 0; cryptography warns about those, and a
    # warning must not become stderr noise (or an error under -W error).
    certs, _caught = capture_warnings(lambda: x509.load_pem_x509_certificates(data))
    return certs


def _system_anchors() -> list[x509.Certificate]:
    paths = ssl.get_default_verify_paths()
    anchors: list[x509.Certificate] = []
    if paths.cafile and Path(paths.cafile).is_file():
        anchors.extend(_load_pem_quietly(Path(paths.cafile).read_bytes()))
    elif paths.capath and Path(paths.capath).is_dir():
        for entry in sorted(Path(paths.capath).glob("*.pem")):
            try:
                anchors.extend(_load_pem_quietly(entry.read_bytes()))
            except ValueError:
                continue
    return anchors


def verify_chain(chain: Sequence[bytes], *, server: str, at: datetime,
                 ca_file: Path | None = None) -> str | None:
    """``None`` when the presented chain verifies for ``server`` (a DNS name or an IP address)
    at ``at`` against the trust anchors (``ca_file``, else the system store); otherwise why
    not, in a sentence."""
    if not chain:
        return "no certificate presented"
    try:
        anchors = (_load_pem_quietly(ca_file.read_bytes()) if ca_file
                   else _system_anchors())
    except (OSError, ValueError) as exc:
        return f"cannot load trust anchors: {exc}"
    if not anchors:
        return "no trust anchors available to verify against"
    try:
        certs, _caught = capture_warnings(
            lambda: [x509.load_der_x509_certificate(der) for der in chain])
        subject: x509.DNSName | x509.IPAddress = (
            x509.IPAddress(ip_address(server)) if _is_ip(server) else x509.DNSName(server))
        verifier = (verification.PolicyBuilder().store(verification.Store(anchors)).time(at)
                    .build_server_verifier(subject))
        verifier.verify(certs[0], certs[1:])
    except verification.VerificationError as exc:
        return str(exc)
    except Exception as exc:  # unsupported algorithms, odd names: not verified, say why
        return f"cannot verify: {exc}"
    return None
