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
from .x509facts import capture_warnings, safe_library_text

if TYPE_CHECKING:
    from OpenSSL import SSL

__all__ = ["ChainVerdict", "LiveChain", "LiveChainError", "fetch_chain", "parse_target",
           "verify_chain"]

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
    """``HOST:PORT`` or ``[IPv6]:PORT`` -> (host, port); ``None`` if it does not look like one.
    Raises ``ValueError`` for one whose port is out of range."""
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]:")
        if not sep:
            return None
    else:
        host, sep, rest = text.rpartition(":")
        if not sep or not host or ":" in host or "/" in host:
            return None
    if not rest.isascii() or not rest.isdigit():
        return None
    if not 0 < int(rest) < 65536:
        # HOST:PORT in all but the port: "no such file" would send the operator looking for one
        raise ValueError(f"port {rest[:10]} is out of range (1-65535)")
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
            name = errno.errorcode.get(code, "an error") if isinstance(code, int) else "an error"
            raise LiveChainError(f"{where}: TLS handshake failed: system call failed ({name})"
                                 ) from None
        except SSL.Error as exc:
            reasons = "; ".join(str(part[2]) for part in exc.args[0]
                                if isinstance(part, tuple) and len(part) > 2) \
                if exc.args and isinstance(exc.args[0], list) else str(exc)
            hint = ("not TLS: the server answered with something else"
                    if "wrong version number" in reasons or "record layer" in reasons
                    or "packet length" in reasons else "TLS handshake failed")
            # OpenSSL's reason strings are fixed sentences; checked all the same (library text)
            said = safe_library_text(reasons) if reasons else None
            raise LiveChainError(f"{where}: {hint} ({said or 'no detail'})") from None
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


@dataclass(frozen=True, slots=True, kw_only=True)
class ChainVerdict:
    """Why a presented chain does not verify, in words an operator can act on. ``problem`` is a
    stable code: ``missing-intermediate``, ``unknown-root``, ``name-mismatch``, ``expired``,
    ``not-yet-valid``, ``no-trust-anchors``, ``invalid-chain``."""

    problem: str
    message: str


def verify_chain(chain: Sequence[bytes], *, server: str, at: datetime,
                 ca_file: Path | None = None) -> ChainVerdict | None:
    """``None`` when the presented chain verifies for ``server`` (a DNS name or an IP address)
    at ``at`` against the trust anchors (``ca_file``, else the system store); otherwise a
    :class:`ChainVerdict` saying what is wrong and what to do.

    The verifier's own text is never shown (it is the library's, and names internals): the
    cause is diagnosed from the certificates themselves, in the order an operator would fix
    it: validity dates, the server name, a missing intermediate, an unknown root.
    """
    if not chain:
        return ChainVerdict(problem="invalid-chain", message="the server presented no certificate")
    try:
        anchors = (_load_pem_quietly(ca_file.read_bytes()) if ca_file
                   else _system_anchors())
    except OSError as exc:
        return ChainVerdict(problem="no-trust-anchors",
                            message=f"cannot read the trust anchors ({exc.strerror}): check "
                                    "--ca-file")
    except ValueError:
        return ChainVerdict(problem="no-trust-anchors",
                            message="the trust anchors are not PEM certificates: check --ca-file")
    if not anchors:
        return ChainVerdict(problem="no-trust-anchors",
                            message="no trust anchors to verify against: install the system's "
                                    "CA certificates, or give --ca-file")
    try:
        certs, _caught = capture_warnings(
            lambda: [x509.load_der_x509_certificate(der) for der in chain])
    except ValueError:
        return ChainVerdict(problem="invalid-chain",
                            message="a presented certificate cannot be parsed: the server sends "
                                    "a damaged chain; reinstall it from the CA's files")
    if _verifies(certs, anchors, server, at):
        return None
    return _diagnose(certs, anchors, server, at)


def _subject_for(name: str) -> x509.DNSName | x509.IPAddress:
    return x509.IPAddress(ip_address(name)) if _is_ip(name) else x509.DNSName(name)


def _verifies(certs: Sequence[x509.Certificate], anchors: Sequence[x509.Certificate],
              server: str, at: datetime) -> bool:
    try:
        verifier = (verification.PolicyBuilder().store(verification.Store(list(anchors)))
                    .time(at).build_server_verifier(_subject_for(server)))
        verifier.verify(certs[0], list(certs[1:]))
    except Exception:  # any failure is "does not verify"; _diagnose says why
        return False
    return True


def _cn(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    value = names[0].value if names else cert.subject.rfc4514_string()
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def _sans(cert: x509.Certificate) -> list[str]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except Exception:  # absent or malformed: no names
        return []
    return [str(n) for n in ext.get_values_for_type(x509.DNSName)] + \
        [str(n) for n in ext.get_values_for_type(x509.IPAddress)]


def _diagnose(certs: Sequence[x509.Certificate], anchors: Sequence[x509.Certificate],
              server: str, at: datetime) -> ChainVerdict:
    """Say why the chain does not verify, in the order an operator would fix it."""
    from policy.tokyo import tokyo_date

    leaf = certs[0]
    for n, cert in enumerate(certs):
        what = "the server's certificate" if n == 0 else f"the intermediate {_cn(cert)}"
        end, start = cert.not_valid_after_utc, cert.not_valid_before_utc
        if at > end:
            fix = ("deploy the renewed certificate" if n == 0
                   else "install the CA's current intermediate with the certificate")
            return ChainVerdict(problem="expired",
                                message=f"{what} expired on {tokyo_date(end)} (Asia/Tokyo): "
                                        f"{fix}")
        if at < start:
            return ChainVerdict(problem="not-yet-valid",
                                message=f"{what} is not valid before {tokyo_date(start)} "
                                        "(Asia/Tokyo): check the clocks, or keep serving the "
                                        "previous certificate until then")
    names = _sans(leaf)
    matched = next((n for n in names if not n.startswith("*.")
                    and _verifies(certs, anchors, n, at)), None)
    if matched is not None or (names and not any(
            _name_matches(pattern, server) for pattern in names)):
        shown = ", ".join(names[:4]) + (" …" if len(names) > 4 else "")
        return ChainVerdict(problem="name-mismatch",
                            message=f"the certificate does not name {server} (it names "
                                    f"{shown or 'nothing'}): serve a certificate for {server}, "
                                    "or check --servername")
    presented = {c.subject: c for c in certs}
    top = leaf
    for _ in range(len(certs)):  # bounded: no loop through a chain that cycles
        if top.issuer == top.subject or top.issuer not in presented:
            break
        top = presented[top.issuer]
    anchored = _issued_by_an_anchor(top, anchors)
    if top.issuer != top.subject and not anchored and top is leaf:
        # Nothing the server sent issued its certificate, and no trust anchor did either.
        return ChainVerdict(
            problem="missing-intermediate",
            message=f"the server does not send the intermediate certificate that issued its "
                    f"certificate ({top.issuer.rfc4514_string()}): configure the full chain "
                    "(certbot: fullchain.pem, not cert.pem)")
    if not anchored:
        return _unknown_root(top)
    return ChainVerdict(problem="invalid-chain",
                        message="the chain does not verify (a signature, key usage or "
                                "extension the verifier refuses): reinstall the certificate "
                                "and the chain the CA issued")


def _issued_by_an_anchor(cert: x509.Certificate, anchors: Sequence[x509.Certificate]) -> bool:
    """Whether a trust anchor issued ``cert`` (its name and its key: two roots may share a
    name), or ``cert`` is itself one of the anchors."""
    for anchor in anchors:
        if anchor == cert:
            return True
        if anchor.subject != cert.issuer:
            continue
        try:
            cert.verify_directly_issued_by(anchor)
        except Exception:  # noqa: S112 - another key, or an algorithm not checkable here
            continue
        return True
    return False


def _unknown_root(top: x509.Certificate) -> ChainVerdict:
    return ChainVerdict(problem="unknown-root",
                        message=f"the chain ends at {_cn(top)}, which is not a trusted root "
                                "here: the certificate is from a private or untrusted CA, or "
                                "--ca-file does not hold its root")


def _name_matches(pattern: str, server: str) -> bool:
    """RFC 6125 matching, enough to tell a name mismatch: exact, or a left-most ``*.``
    wildcard covering exactly one label."""
    pattern, server = pattern.lower().rstrip("."), server.lower().rstrip(".")
    if pattern == server:
        return True
    if pattern.startswith("*."):
        head, _, rest = server.partition(".")
        return bool(head) and rest == pattern[2:]
    return False
