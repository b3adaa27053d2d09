"""What cryptography raises or warns about an untrusted certificate reaches the vault's user in
the vault's words: a duplicated extension or an unknown key algorithm is an ``Error:`` line
with exit 27, never a traceback; a serial number that is not positive is a ``note:``, never
the library's warning on stderr. Certificates are made with cryptography and signed for real;
the flaw is put into the to-be-signed bytes before signing.
"""

from __future__ import annotations

import json
import warnings
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import NameOID

from tests.certfactory import shared_key
from tests.clirun import certescrow
from tests.vault.helpers import issued
from vault import Vault, formats
from vault.boundary import NON_POSITIVE_SERIAL
from vault.errors import VaultInputError

SAN_OID = bytes.fromhex("0603551d11")  # 2.5.29.17 subjectAltName
SPARE_OID = bytes.fromhex("0603551d63")  # 2.5.29.99, unassigned: the same length as the SAN's
EC_PUBLIC_KEY_OID = bytes.fromhex("06072a8648ce3d0201")  # 1.2.840.10045.2.1
UNKNOWN_KEY_OID = bytes.fromhex("06072a8648ce3d0209")  # 1.2.840.10045.2.9, no such algorithm
ECDSA_SHA256 = bytes.fromhex("300a06082a8648ce3d040302")
SERIAL = 0x55


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _signed(tbs: bytes) -> bytes:
    """A Certificate around ``tbs``, signed with the key the TBS certifies (self-signed)."""
    key = shared_key("ec", 0)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    signature = key.sign(tbs, ec.ECDSA(hashes.SHA256()))
    bit_string = b"\x03" + _length(len(signature) + 1) + b"\x00" + signature
    body = tbs + ECDSA_SHA256 + bit_string
    return b"\x30" + _length(len(body)) + body


def _tbs(cn: str, *, extensions: tuple[x509.ExtensionType, ...] = ()) -> bytes:
    key = shared_key("ec", 0)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
               .public_key(key.public_key()).serial_number(SERIAL)
               .not_valid_before(datetime(2026, 1, 15, tzinfo=UTC))
               .not_valid_after(datetime(2026, 4, 15, tzinfo=UTC)))
    for extension in extensions:
        builder = builder.add_extension(extension, critical=False)
    return builder.sign(key, hashes.SHA256()).tbs_certificate_bytes


def duplicated_san_der(cn: str = "dup.example") -> bytes:
    """Two subjectAltName extensions (RFC 5280 §4.2 allows each extension once)."""
    second = x509.SubjectAlternativeName([x509.DNSName("dup2.example")]).public_bytes()
    tbs = _tbs(cn, extensions=(x509.SubjectAlternativeName([x509.DNSName("dup1.example")]),
                               x509.UnrecognizedExtension(x509.ObjectIdentifier("2.5.29.99"),
                                                          second)))
    assert tbs.count(SPARE_OID) == 1
    return _signed(tbs.replace(SPARE_OID, SAN_OID))


def serial_der(serial_byte: int, cn: str = "zero.example") -> bytes:
    """A certificate whose serial is the one-byte INTEGER ``serial_byte``: 0x00 is zero, 0xfb
    is -5 (RFC 5280 §4.1.2.2 wants a positive integer; cryptography warns, for now)."""
    tbs = bytearray(_tbs(cn, extensions=(x509.SubjectAlternativeName([x509.DNSName(cn)]),)))
    at = 2 + (tbs[1] & 0x7F if tbs[1] & 0x80 else 0) + 5  # after the header and [0] version
    assert tbs[at:at + 3] == bytes([0x02, 0x01, SERIAL])
    tbs[at + 2] = serial_byte
    return _signed(bytes(tbs))


def unknown_key_algorithm_der() -> bytes:
    tbs = _tbs("oddkey.example")
    assert tbs.count(EC_PUBLIC_KEY_OID) == 1
    return _signed(tbs.replace(EC_PUBLIC_KEY_OID, UNKNOWN_KEY_OID))


def pem(der: bytes) -> bytes:
    return x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)


def quietly_pem(der: bytes) -> bytes:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pem(der)


# ------------------------------------------------------------------ errors in our words

@pytest.mark.parametrize("encoding", ["der", "pem"])
def test_a_certificate_with_two_subject_alt_names_is_refused_in_the_vaults_words(
        encoding: str) -> None:
    der = duplicated_san_der()
    data = der if encoding == "der" else pem(der)
    with pytest.raises(VaultInputError) as refused:
        formats.recognise(data, source="dup.crt")
    message = str(refused.value)
    assert message.startswith("dup.crt: ")
    assert "extension 2.5.29.17 appears more than once" in message
    assert "Duplicate" not in message  # the library's sentence is not ours to print
    assert refused.value.exit_code == 27


def test_a_pkcs12_holding_a_certificate_with_two_subject_alt_names_is_refused() -> None:
    """The PKCS#12 path read only the certificate's subject and end, so the duplicated
    extension went unseen and the file was imported (review 11 re-review)."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import NoEncryption, pkcs12

    cert = x509.load_der_x509_certificate(duplicated_san_der())
    data = pkcs12.serialize_key_and_certificates(
        b"dup", ec.generate_private_key(ec.SECP256R1()), None, [cert], NoEncryption())
    with pytest.raises(VaultInputError) as refused:
        formats.recognise(data, source="dup.p12")
    assert str(refused.value).startswith("dup.p12: ")
    assert "extension 2.5.29.17 appears more than once" in str(refused.value)


def test_put_of_a_certificate_with_two_subject_alt_names_is_refused(vault: Vault) -> None:
    with pytest.raises(VaultInputError, match=r"not a valid certificate: extension 2\.5\.29\.17"):
        vault.put("certificate", duplicated_san_der())
    assert vault.entries() == []


def test_a_certificate_whose_key_algorithm_the_library_cannot_read_is_refused() -> None:
    with pytest.raises(VaultInputError, match=r"^odd\.der: not a readable certificate: an "
                                              r"algorithm the vault's cryptography library"):
        formats.recognise(unknown_key_algorithm_der(), source="odd.der")


# ------------------------------------------------------------------ warnings become notes

@pytest.mark.parametrize(("serial_byte", "what"), [(0x00, "zero"), (0xFB, "negative")])
def test_a_serial_that_is_not_positive_is_a_note_of_the_certificate_not_a_warning(
        serial_byte: int, what: str) -> None:
    der = serial_der(serial_byte, cn=f"{what}.example")
    with warnings.catch_warnings(record=True) as escaped:
        warnings.simplefilter("always")
        [item] = formats.recognise(der, source=f"{what}.der")
        analysis = formats.analyse("certificate", item.data)
        exported = formats.convert("certificate", item.data, "der", entry_id="e1")
    assert escaped == []
    assert item.kind == "certificate"
    assert item.notes == (NON_POSITIVE_SERIAL,)
    assert analysis.notes == (NON_POSITIVE_SERIAL,)
    assert exported.notes == (NON_POSITIVE_SERIAL,)
    assert exported.data == der


def test_in_a_bundle_the_note_names_the_certificate_it_is_about() -> None:
    zero = serial_der(0x00)
    bundle = issued().pem + quietly_pem(zero)
    first, second = formats.recognise(bundle, source="chain.pem")
    assert (first.source, first.notes) == ("chain.pem#0", ())
    assert (second.source, second.notes) == ("chain.pem#1", (NON_POSITIVE_SERIAL,))
    good = issued().cert
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p7 = pkcs7.serialize_certificates([good, x509.load_der_x509_certificate(zero)],
                                          serialization.Encoding.DER)
    notes = {item.meta["subject"]: item.notes  # a PKCS#7 SET keeps its own order
             for item in formats.recognise(p7, source="chain.p7b")}
    assert notes == {"CN=www.example.jp": (), "CN=zero.example": (NON_POSITIVE_SERIAL,)}


def test_put_and_verify_carry_the_note(vault: Vault) -> None:
    put = vault.put("certificate", serial_der(0x00))
    assert put.notes == (NON_POSITIVE_SERIAL,)
    report = vault.verify()
    assert report.ok
    assert report.notes == (f"entry {put.entry_id}: {NON_POSITIVE_SERIAL}",)
    assert report.to_json()["notes"] == list(report.notes)
    assert vault.export(put.entry_id, "pem").notes == (NON_POSITIVE_SERIAL,)
    assert vault.export(put.entry_id).notes == ()  # as stored: nothing parsed


# ------------------------------------------------------------------ the real command

@pytest.fixture
def vault_args(tmp_path: Path) -> list[str]:
    args = ["--vault", str(tmp_path / "v" / "vault.sqlite3"), "--key-file",
            str(tmp_path / "master.key")]
    assert certescrow("vault", "init", *args, home=tmp_path).returncode == 0
    return args


def test_vault_import_of_a_duplicated_extension_is_one_error_line_exit_27(
        tmp_path: Path, vault_args: list[str]) -> None:
    path = tmp_path / "dup.der"
    path.write_bytes(duplicated_san_der())
    done = certescrow("vault", "import", *vault_args, str(path), home=tmp_path)
    assert done.returncode == 27, done.stderr
    assert done.stderr == (f"Error: {path}: not a readable certificate: extension 2.5.29.17 "
                           "appears more than once (RFC 5280 allows each extension once)\n")
    assert done.stdout == ""


def test_vault_import_export_verify_of_a_zero_serial_say_a_note_not_the_libraries_warning(
        tmp_path: Path, vault_args: list[str]) -> None:
    path = tmp_path / "zero.der"
    path.write_bytes(serial_der(0x00))
    note = f"note: {path}: {NON_POSITIVE_SERIAL}\n"
    imported = certescrow("vault", "import", *vault_args, str(path), home=tmp_path)
    assert imported.returncode == 0, imported.stderr
    assert imported.stderr == note
    as_json = certescrow("vault", "import", "--json", *vault_args, str(path), home=tmp_path)
    assert as_json.stderr == ""
    [row] = json.loads(as_json.stdout)
    assert row["notes"] == [NON_POSITIVE_SERIAL]
    entry = row["id"]
    exported = certescrow("vault", "export", *vault_args, entry, "--format", "pem",
                          home=tmp_path)
    assert exported.returncode == 0, exported.stderr
    assert exported.stderr == f"note: entry {entry}: {NON_POSITIVE_SERIAL}\n"
    assert exported.stdout.startswith("-----BEGIN CERTIFICATE-----")
    verified = certescrow("vault", "verify", *vault_args, home=tmp_path)
    assert verified.returncode == 0, verified.stderr
    assert verified.stderr == f"note: entry {entry}: {NON_POSITIVE_SERIAL}\n"
    report = json.loads(certescrow("vault", "verify", "--json", *vault_args,
                                   home=tmp_path).stdout)
    assert report["notes"] == [f"entry {entry}: {NON_POSITIVE_SERIAL}"]
