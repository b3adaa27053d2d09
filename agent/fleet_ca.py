"""The fleet CA: the X.509 half of enrolment, and TLS contexts whose keys never touch a disk.

Why it looks like this:

* **Everything through ``cryptography``.** Keys, CSRs, certificates and their checks; TLS itself
  is the standard library's ``ssl`` (OpenSSL). Nothing here implements a primitive.
* **Time is an argument.** ``issue_*`` take ``at``; the CLI reads the clock.
* **Identity is the certificate's.** A client certificate names its host in the subject CN and
  nowhere else; the CSR's own subject is ignored (the desk names the host with ``--host``), so
  an agent cannot choose who it is.
* **Short-lived.** Client certificates default to 30 days: revocation is immediate through the
  registry, and expiry bounds the damage of a key that leaks without anyone noticing.
* **Keys stay in memory.** ``ssl.SSLContext.load_cert_chain`` only reads files, so a key from
  the vault is handed to it re-encrypted under a one-time password, through an anonymous memory
  file (``memfd``) where the platform has one, else a ``0600`` temporary file that is removed at
  once. The plaintext key is never written anywhere.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import ssl
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from policy.fleet_wire import PeerIdentity

from .errors import AgentError

__all__ = [
    "CLIENT_LIFETIME",
    "COMMON_NAME_MAX",
    "HOST_NAME",
    "MAX_CSR_BYTES",
    "MIN_LEAF_LIFETIME",
    "CSRError",
    "FleetCAError",
    "IssuedCertificate",
    "certificate_validity",
    "check_ca_certificate",
    "client_ssl_context",
    "identity_from_pem",
    "issue_ca",
    "issue_client_certificate",
    "issue_server_certificate",
    "key_matches_certificate",
    "make_agent_csr",
    "public_key_sha256",
    "server_ssl_context",
]

CLIENT_LIFETIME = timedelta(days=30)
SERVER_LIFETIME = timedelta(days=397)
CA_LIFETIME = timedelta(days=3650)
MIN_LEAF_LIFETIME = timedelta(days=1)
"""The least a certificate the fleet CA issues may have left, on the real clock, when it is
registered or stored (less is refused): it would replace the host's good one and leave the host
unable to report by morning."""
COMMON_NAME_MAX = 64
"""RFC 5280's ub-common-name: the longest subject CN a certificate may carry."""
HOST_NAME = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,{COMMON_NAME_MAX - 1}}}")
"""What a fleet host may be called: it ends up in logs, SQL parameters and the client
certificate's subject CN, which is how the service knows the host (so at most 64 characters)."""
DNS_NAME = re.compile(r"(?!.*[^.]{64})[A-Za-z0-9][A-Za-z0-9._-]{0,252}")
"""A name the service's certificate may carry as a SAN: up to 253 characters, labels of at
most 63 (DNS's limits)."""
_MAX_PEM = 64 * 1024
MAX_CSR_BYTES = _MAX_PEM
"""The largest CSR read (``agent enroll`` makes one of under 1 KB)."""


class FleetCAError(AgentError):
    """Enrolment input refused (bad CSR, bad host name, a certificate of another CA)."""

    exit_code = 41


class CSRError(FleetCAError):
    """The CSR itself is refused: the command names the file it came from."""


@dataclass(frozen=True, slots=True, kw_only=True)
class IssuedCertificate:
    """A certificate the fleet CA issued (PEM) with the fields the registry records."""

    host: str
    serial: str
    """Lowercase hex, no leading zeros (the form :class:`policy.fleet_wire.PeerIdentity` uses)."""
    not_before_utc: datetime
    not_after_utc: datetime
    pem: bytes
    key_sha256: str
    """SHA-256 of its SubjectPublicKeyInfo (DER), lowercase hex: the registry refuses a key
    whose certificate was revoked, and a renewal that keeps its key."""
    adjusted: str | None = None
    """Why its validity is not the one asked for (it starts or ends with the fleet CA), in
    words for the operator; None when it is."""


def public_key_sha256(key: ec.EllipticCurvePublicKey | x509.Certificate) -> str:
    """The registry's name of a public key: SHA-256 of its SubjectPublicKeyInfo (DER)."""
    public = key.public_key() if isinstance(key, x509.Certificate) else key
    return hashlib.sha256(public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).hexdigest()


def check_host_name(host: str) -> str:
    if HOST_NAME.fullmatch(host) is None:
        raise FleetCAError(f"a fleet host name is 1-{COMMON_NAME_MAX} characters of letters, "
                           "digits, '.', '_' and '-', starting with a letter or digit (it is "
                           "the client certificate's subject CN, which RFC 5280 limits to "
                           f"{COMMON_NAME_MAX}): give a shorter --host")
    return host


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _load_key(pem: bytes) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        raise FleetCAError("the stored key cannot be read as a PEM private key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise FleetCAError("the fleet CA key must be an EC key")
    return key


def _load_cert(pem: bytes, what: str) -> x509.Certificate:
    if len(pem) > _MAX_PEM:
        raise FleetCAError(f"{what}: larger than {_MAX_PEM} bytes")
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise FleetCAError(f"{what}: not a PEM certificate") from None


def _serial_text(serial: int) -> str:
    return format(serial, "x")


_X509_FROM = datetime(1950, 1, 1, tzinfo=UTC)
_X509_UNTIL = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)


def _utc(at: datetime) -> str:
    """``at`` as X.509 counts it (a naive ``--at`` is Tokyo time: the UTC day may differ)."""
    utc = at.astimezone(UTC)
    return f"{utc.year:04d}-{utc:%m-%d %H:%M:%S} UTC"


def _check_start(at: datetime) -> None:
    if at < _X509_FROM:
        raise FleetCAError(f"--at is {_utc(at)}, before 1950: an X.509 certificate cannot "
                           "start then")


def _validity(at: datetime, lifetime: timedelta) -> datetime:
    """The notAfter of a certificate made at ``at`` for ``lifetime``, checked against what
    X.509 times can say (RFC 5280: from 1950 to the end of 9999), in words for ``--at``."""
    _check_start(at)
    if _X509_UNTIL - at < lifetime:  # (at + lifetime itself may overflow)
        raise FleetCAError(f"--at is {_utc(at)}: a certificate made then for "
                           f"{lifetime.days} days would end after 9999-12-31, which X.509 "
                           "cannot express")
    return at + lifetime


def issue_ca(*, name: str, at: datetime, lifetime: timedelta = CA_LIFETIME
             ) -> tuple[bytes, bytes]:
    """A new fleet CA: ``(key_pem, certificate_pem)``. ``at`` is its notBefore."""
    # cryptography counts a UTF8String's bytes against the 64 of RFC 5280's ub-common-name
    if not name.strip() or len(name.encode("utf-8")) > COMMON_NAME_MAX \
            or not name.isprintable():
        raise FleetCAError(f"the CA's name is its certificate's common name: 1-{COMMON_NAME_MAX} "
                           "printable characters (bytes, in UTF-8: 21 of 証, 32 of é), not "
                           "only spaces (RFC 5280)")
    until = _validity(at, lifetime)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name),
                         x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME,
                                            "certescrow fleet")])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(at).not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=False, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return _key_pem(key), cert.public_bytes(serialization.Encoding.PEM)


def make_agent_csr(*, host: str) -> tuple[bytes, bytes]:
    """An agent's new key and its CSR: ``(key_pem, csr_pem)``. The key goes to the vault."""
    check_host_name(host)
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
           .sign(key, hashes.SHA256()))
    return _key_pem(key), csr.public_bytes(serialization.Encoding.PEM)


def _span(length: timedelta) -> str:
    """A lifetime in the unit an operator reads it in (a short one is the warning's point)."""
    seconds = int(length.total_seconds())
    if seconds >= 2 * 86400:
        return f"{seconds // 86400} days"
    if seconds >= 2 * 3600:
        return f"{seconds // 3600} hours"
    return f"{seconds // 60} minute(s)" if seconds >= 60 else f"{seconds} second(s)"


def _leaf_validity(at: datetime, lifetime: timedelta, ca_start: datetime, ca_end: datetime
                   ) -> tuple[datetime, datetime, str | None]:
    """A leaf's ``(notBefore, notAfter, why it differs from what was asked or None)``.

    Within the CA's own validity at both ends: a chain verifies only while every certificate
    in it is valid, so a leaf's time before its CA starts or after it ends is never usable.
    Compared in whole seconds, as X.509 writes them (a fractional ``--at`` made a certificate
    whose notBefore equalled its notAfter). What is left of a cut lifetime must be at least
    :data:`MIN_LEAF_LIFETIME`: a certificate that lapses within the day would replace the
    host's good one in the registry and leave the host unable to report by morning."""
    at = at.replace(microsecond=0)
    if at >= ca_end:
        raise FleetCAError(f"the fleet CA certificate expired at {_utc(ca_end)}: at "
                           f"{_utc(at)} it signs nothing; make a new CA")
    start = max(at, ca_start)
    _check_start(start)
    end = at + lifetime if ca_end - at > lifetime else ca_end  # (at + lifetime may overflow)
    asked = _span(lifetime)
    if end <= start:
        raise FleetCAError(f"the fleet CA is not valid until {_utc(ca_start)}: a certificate "
                           f"made at {_utc(at)} for {asked} would end before it starts")
    changes = []
    if start > at:
        changes.append(f"starts at {_utc(start)} with the fleet CA, not at {_utc(at)}")
    cut = ca_end - at < lifetime
    if cut:
        changes.append(f"ends at {_utc(end)} with the fleet CA")
    if not changes:
        return start, end, None
    why = (f"the certificate {' and '.join(changes)}: valid for {_span(end - start)} "
           f"instead of {asked}")
    if end - start < MIN_LEAF_LIFETIME:
        raise FleetCAError(f"refused: {why}, less than {_span(MIN_LEAF_LIFETIME)}; "
                           + ("make a new CA" if cut else f"give an --at from {_utc(ca_start)}"))
    return start, end, why + (" (make a new CA before it ends)" if cut else "")


def _leaf(*, ca_key_pem: bytes, ca_cert_pem: bytes, public_key: ec.EllipticCurvePublicKey,
          subject: x509.Name, at: datetime, lifetime: timedelta,
          usage: x509.ObjectIdentifier, sans: list[x509.GeneralName]
          ) -> tuple[x509.Certificate, str | None]:
    ca_key = _load_key(ca_key_pem)
    ca_cert = _load_cert(ca_cert_pem, "fleet CA certificate")
    start, end, adjusted = _leaf_validity(at, lifetime, ca_cert.not_valid_before_utc,
                                          ca_cert.not_valid_after_utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
            ca_key.public_key()), critical=False)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), adjusted


def _issued(cert: x509.Certificate, host: str, adjusted: str | None) -> IssuedCertificate:
    return IssuedCertificate(host=host, serial=_serial_text(cert.serial_number),
                             adjusted=adjusted,
                             not_before_utc=cert.not_valid_before_utc,
                             not_after_utc=cert.not_valid_after_utc,
                             pem=cert.public_bytes(serialization.Encoding.PEM),
                             key_sha256=public_key_sha256(cert))


def issue_client_certificate(*, ca_key_pem: bytes, ca_cert_pem: bytes, csr_pem: bytes,
                             host: str, at: datetime,
                             lifetime: timedelta = CLIENT_LIFETIME) -> IssuedCertificate:
    """Sign an agent's CSR as host ``host`` (the CSR's own subject is ignored)."""
    check_host_name(host)
    if len(csr_pem) > MAX_CSR_BYTES:
        raise CSRError(f"the CSR is larger than {MAX_CSR_BYTES} bytes")
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError:
        raise CSRError("not a PEM certificate signing request") from None
    try:
        verified = csr.is_signature_valid
        public_key = csr.public_key()
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise CSRError("the CSR's key or signature cannot be read (an unsupported or "
                       "malformed algorithm)") from None
    if not verified:
        raise CSRError("the CSR's signature does not verify (altered, or not made with "
                       "the key it carries)")
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        raise CSRError("the CSR's key must be an EC key (certescrow agent enroll makes one)")
    cert, adjusted = _leaf(ca_key_pem=ca_key_pem, ca_cert_pem=ca_cert_pem, public_key=public_key,
                 subject=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]), at=at,
                 lifetime=lifetime, usage=ExtendedKeyUsageOID.CLIENT_AUTH, sans=[])
    return _issued(cert, host, adjusted)


def issue_server_certificate(*, ca_key_pem: bytes, ca_cert_pem: bytes, names: list[str],
                             at: datetime, lifetime: timedelta = SERVER_LIFETIME
                             ) -> tuple[bytes, IssuedCertificate]:
    """A key and a server certificate for ``policy serve``: ``(key_pem, issued)``. ``names``
    are DNS names or IP addresses the agents connect to."""
    import ipaddress

    if not names:
        raise FleetCAError("a server certificate needs at least one name")
    sans: list[x509.GeneralName] = []
    for name in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            if len(name) > 253 or DNS_NAME.fullmatch(name) is None:
                raise FleetCAError(f"{name!r} is not a DNS name or IP address the service "
                                   "can be reached at (1-253 characters of letters, digits, "
                                   "'.', '_' and '-', labels of at most 63)") from None
            sans.append(x509.DNSName(name))
    key = ec.generate_private_key(ec.SECP256R1())
    # Clients check the SANs; the CN is only a label, and RFC 5280 limits it to 64 characters
    # (a longer DNS name is a valid SAN).
    label = names[0] if len(names[0]) <= COMMON_NAME_MAX else "certescrow fleet service"
    cert, adjusted = _leaf(ca_key_pem=ca_key_pem, ca_cert_pem=ca_cert_pem,
                           public_key=key.public_key(),
                 subject=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, label)]),
                 at=at, lifetime=lifetime, usage=ExtendedKeyUsageOID.SERVER_AUTH, sans=sans)
    return _key_pem(key), _issued(cert, names[0], adjusted)


def check_ca_certificate(pem: bytes, where: str) -> x509.Certificate:
    """The fleet CA certificate ``policy serve`` trusts, refused at start unless it is one: a
    CA certificate (basicConstraints CA:TRUE, allowed to sign certificates). A leaf given by
    mistake would make the service refuse every agent, with nothing in its log to say why."""
    cert = _load_cert(pem, where)
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        is_ca = constraints.ca
    except x509.ExtensionNotFound:
        is_ca = False
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        signs = usage.key_cert_sign
    except x509.ExtensionNotFound:
        signs = True
    if not is_ca or not signs:
        raise FleetCAError(f"{where}: not a CA certificate (no basicConstraints CA:TRUE with "
                           "keyCertSign): [serve] ca_certificate is the fleet CA's certificate "
                           "(`certescrow fleet ca init --out`)")
    return cert


def identity_from_pem(pem: bytes, *, ca_cert_pem: bytes, at: datetime) -> PeerIdentity | None:
    """The identity in a client certificate a trusted proxy forwarded, or ``None`` when it was
    not issued by the fleet CA, is not valid at ``at``, or is not a client certificate.

    The proxy verified the chain already; this checks again (issuer and signature) so that a
    misconfigured proxy cannot make the service accept another CA's certificate.
    """
    try:
        cert = _load_cert(pem, "forwarded certificate")
        ca = _load_cert(ca_cert_pem, "fleet CA certificate")
        cert.verify_directly_issued_by(ca)
    except (FleetCAError, ValueError, TypeError, InvalidSignature):
        return None
    if not cert.not_valid_before_utc <= at.astimezone(UTC) <= cert.not_valid_after_utc:
        return None
    try:
        usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return None
    if ExtendedKeyUsageOID.CLIENT_AUTH not in usage:
        return None
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(names) != 1 or not isinstance(names[0].value, str) \
            or HOST_NAME.fullmatch(names[0].value) is None:
        return None
    return PeerIdentity(host=names[0].value, serial=_serial_text(cert.serial_number),
                        not_after_utc=cert.not_valid_after_utc,
                        not_before_utc=cert.not_valid_before_utc)


@contextlib.contextmanager
def _key_file(key_pem: bytes) -> Iterator[tuple[str, bytes]]:
    """A path OpenSSL can read the key from, and the one-time password it is encrypted under."""
    password = secrets.token_bytes(32)
    sealed = _load_key(key_pem).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(password))
    memfd = getattr(os, "memfd_create", None)
    if memfd is not None:
        fd = memfd("certescrow-tls-key", getattr(os, "MFD_CLOEXEC", 0))
        try:
            os.write(fd, sealed)
            yield f"/proc/self/fd/{fd}", password
        finally:
            os.close(fd)
        return
    handle, path = tempfile.mkstemp(prefix="certescrow-tls-key-")  # pragma: no cover - no memfd
    try:  # pragma: no cover
        os.write(handle, sealed)
        os.close(handle)
        yield path, password
    finally:  # pragma: no cover
        with contextlib.suppress(OSError):
            os.unlink(path)


@contextlib.contextmanager
def _cert_file(cert_pem: bytes) -> Iterator[str]:
    with tempfile.NamedTemporaryFile(prefix="certescrow-tls-cert-") as handle:
        handle.write(cert_pem)
        handle.flush()
        yield handle.name


_OPENSSL_REFUSALS = {
    "EE_KEY_TOO_SMALL": "its key is too small for OpenSSL's security level",
    "CA_MD_TOO_WEAK": "it is signed with a digest too weak for OpenSSL's security level",
    "KEY_VALUES_MISMATCH": "its public key is not the private key's",
    "UNSUPPORTED_ALGORITHM": "its key or signature algorithm is not supported",
}
"""What OpenSSL's refusal of a certificate and key pair that ``cryptography`` read means (its
reason names, as the ``ssl`` module gives them); any other is named, filtered, not quoted."""


def _openssl_refusal(exc: ssl.SSLError) -> str:
    reason = re.sub(r"[^A-Z0-9_]", "", str(getattr(exc, "reason", "") or "").upper())[:60]
    return _OPENSSL_REFUSALS.get(reason, f"OpenSSL refuses it ({reason.replace('_', ' ').lower()})"
                                 if reason else "OpenSSL refuses it")


def _load_trust(context: ssl.SSLContext, ca_cert_pem: bytes, ca_name: str) -> None:
    """The fleet CA's certificate (or a bundle: a CA being replaced) as the context's trust
    anchors."""
    try:
        context.load_verify_locations(cadata=ca_cert_pem.decode("ascii"))
    except UnicodeDecodeError:
        raise FleetCAError(f"{ca_name}: not a PEM certificate (not text)") from None
    except (ssl.SSLError, ValueError):
        raise FleetCAError(f"{ca_name}: holds no PEM certificate OpenSSL can load") from None


def _load_chain(context: ssl.SSLContext, cert_pem: bytes, key_pem: bytes, *,
                certificate: str, key: str) -> None:
    """The certificate (from the file named ``certificate``) and its key (described by
    ``key``) as the context's own. Each way it can be wrong is said with the file and the
    reason, checked with ``cryptography`` first: OpenSSL's ``load_cert_chain`` has one
    ``SSLError`` for all of them (a file that is no certificate, the fleet CA's certificate
    given for the service's, a key of another certificate), and its text is not ours."""
    cert = _load_cert(cert_pem, certificate)
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    except ValueError:
        raise FleetCAError(f"{certificate}: the certificate's extensions cannot be read") \
            from None
    if constraints is not None and constraints.ca:
        raise FleetCAError(f"{certificate}: a CA certificate (the fleet CA's?), not a TLS "
                           "certificate of its own: give the file `certescrow fleet "
                           "server-cert --out` (the service) or `fleet sign --out` (an agent) "
                           "wrote")
    try:
        private = _load_key(key_pem)
    except FleetCAError:
        raise FleetCAError(f"{key}: cannot be read as an EC private key") from None
    try:
        public = cert.public_key().public_bytes(serialization.Encoding.DER,
                                                serialization.PublicFormat.SubjectPublicKeyInfo)
    except (ValueError, UnsupportedAlgorithm):
        raise FleetCAError(f"{certificate}: the certificate's public key cannot be read") \
            from None
    if public != private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo):
        raise FleetCAError(f"{certificate}: the certificate is not the one of the key {key} "
                           "(another certificate's key, or another key's certificate)")
    with _key_file(key_pem) as (key_path, password), _cert_file(cert_pem) as cert_path:
        try:
            context.load_cert_chain(cert_path, key_path, password=password)
        except ssl.SSLError as exc:
            raise FleetCAError(f"{certificate}: {_openssl_refusal(exc)}") from None


def server_ssl_context(*, cert_pem: bytes, key_pem: bytes, ca_cert_pem: bytes,
                       certificate: str = "[serve] certificate", key: str = "[serve] key",
                       ca_certificate: str = "[serve] ca_certificate") -> ssl.SSLContext:
    """TLS for ``policy serve``: TLS 1.2+, a client certificate from the fleet CA required.
    ``certificate``, ``key`` and ``ca_certificate`` name where each came from, for errors."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    _load_trust(context, ca_cert_pem, ca_certificate)
    _load_chain(context, cert_pem, key_pem, certificate=certificate, key=key)
    return context


def client_ssl_context(*, cert_pem: bytes, key_pem: bytes, ca_cert_pem: bytes,
                       certificate: str = "[report] client_certificate",
                       key: str = "[report] client_key",
                       ca_certificate: str = "[report] ca_bundle") -> ssl.SSLContext:
    """TLS for an agent: the service must present a certificate from the fleet CA bundle, for
    the name in the URL; the agent presents its client certificate."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    context.check_hostname = True
    _load_trust(context, ca_cert_pem, ca_certificate)
    _load_chain(context, cert_pem, key_pem, certificate=certificate, key=key)
    return context


def certificate_validity(cert_pem: bytes, *, what: str = "client certificate"
                         ) -> tuple[datetime, datetime]:
    """``(notBefore, notAfter)`` of a PEM certificate (``what`` names it in the error)."""
    cert = _load_cert(cert_pem, what)
    return cert.not_valid_before_utc, cert.not_valid_after_utc


def key_matches_certificate(key_pem: bytes, cert_pem: bytes) -> bool:
    """Whether ``key_pem`` is the private key of the certificate ``cert_pem``."""
    try:
        key = _load_key(key_pem)
        cert = _load_cert(cert_pem, "client certificate")
    except FleetCAError:
        return False
    mine = key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    theirs = cert.public_key().public_bytes(serialization.Encoding.DER,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    return mine == theirs
