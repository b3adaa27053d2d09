"""agent.policy_reader: the agent's reader as the policy commands see it (policy classify,
contract bind). The reader itself is tested in test_reader*.py; these pin the contract the policy
CLI relies on: entries in file order with their facts, and one error code per unreadable file."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7, pkcs12

from agent.policy_reader import read_certificate_file
from policy.certsource import CertificateFileError
from tests.certfactory import OV_OID, make_cert

NB = datetime(2026, 4, 1, 3, tzinfo=UTC)


def test_pem_bundle_yields_every_certificate_in_order(tmp_path: Path) -> None:
    a = make_cert(not_before=NB, lifetime=timedelta(days=199), sans=("a.example.jp", "192.0.2.1"),
                  issuer_org="GlobalSign nv-sa", issuer_cn="GlobalSign GCC R3 OV TLS CA 2024",
                  policy_oids=(OV_OID,))
    b = make_cert(not_before=NB, sans=("*.example.jp",))
    path = tmp_path / "bundle.pem"
    path.write_bytes(b"subject=... text before\n" + a.pem + b"\n" + b.pem)
    first, second = read_certificate_file(path).entries
    assert (first.index, second.index) == (0, 1)
    assert first.facts.sha256 == a.sha256
    assert second.facts.sha256 == b.sha256
    f = first.facts
    assert f.not_before_utc == NB
    assert f.not_after_utc == NB + timedelta(days=199) - timedelta(seconds=1)
    assert f.sans == ("a.example.jp", "192.0.2.1")
    assert f.issuer_org == "GlobalSign nv-sa"
    assert f.issuer_cn == "GlobalSign GCC R3 OV TLS CA 2024"
    assert f.policy_oids == (OV_OID,)
    assert f.subject_cn == "a.example.jp"
    assert not f.is_ca
    assert (f.key_type, f.key_size) == ("ec", 256)
    assert second.facts.is_wildcard


def test_der_certificate(tmp_path: Path) -> None:
    issued = make_cert(not_before=NB)
    path = tmp_path / "cert.der"
    path.write_bytes(issued.der)
    (entry,) = read_certificate_file(path).entries
    assert entry.facts.sha256 == issued.sha256


def test_pkcs7_pem_and_der(tmp_path: Path) -> None:
    a, b = make_cert(not_before=NB), make_cert(not_before=NB + timedelta(days=1))
    pem = tmp_path / "chain.p7b"
    pem.write_bytes(pkcs7.serialize_certificates([a.cert, b.cert], serialization.Encoding.PEM))
    der = tmp_path / "chain.p7c"
    der.write_bytes(pkcs7.serialize_certificates([a.cert, b.cert], serialization.Encoding.DER))
    for path in (pem, der):
        got = {e.facts.sha256 for e in read_certificate_file(path).entries}
        assert got == {a.sha256, b.sha256}


def test_pkcs12_without_password_and_with_one(tmp_path: Path) -> None:
    issued = make_cert(not_before=NB)
    plain = tmp_path / "plain.p12"
    plain.write_bytes(pkcs12.serialize_key_and_certificates(
        b"x", issued.key, issued.cert, None, serialization.NoEncryption()))  # type: ignore[arg-type]
    (entry,) = read_certificate_file(plain).entries
    assert entry.facts.sha256 == issued.sha256
    locked = tmp_path / "locked.p12"
    locked.write_bytes(pkcs12.serialize_key_and_certificates(
        b"x", issued.key, issued.cert, None,  # type: ignore[arg-type]
        serialization.BestAvailableEncryption(b"secret")))
    with pytest.raises(CertificateFileError) as info:
        read_certificate_file(locked)
    assert info.value.code == "pkcs12-password"


@pytest.mark.parametrize(("content", "code"), [
    (b"", "empty"),
    (b"  \n\n", "empty"),
    (b"hello, I am not a certificate", "not-certificate-material"),
    (b"\xfe\xed\xfe\xed\x00\x00\x00\x02", "unsupported-format"),
    (b"-----BEGIN CERTIFICATE-----\nMIIB\n", "truncated"),
    (b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "malformed-certificate"),
    (b"\x30\x03\x02\x01\x05", "garbage"),  # DER, but a SEQUENCE holding INTEGER 5
    (b"\x30\x82\x01\x00garbage", "garbage"),  # a DER header, then no DER at all
])
def test_unreadable_content_gets_a_stable_code(tmp_path: Path, content: bytes,
                                               code: str) -> None:
    path = tmp_path / "bad"
    path.write_bytes(content)
    with pytest.raises(CertificateFileError) as info:
        read_certificate_file(path)
    assert info.value.code == code
    assert str(info.value).startswith(f"{path}: ")


def test_truncated_der_is_reported_as_truncated(tmp_path: Path) -> None:
    der = make_cert(not_before=NB).der
    path = tmp_path / "cut.der"
    path.write_bytes(der[: len(der) // 2])
    with pytest.raises(CertificateFileError, match=f"DER declares {len(der)} bytes but the "
                                                   f"file holds {len(der) // 2}") as info:
        read_certificate_file(path)
    assert info.value.code == "truncated"


def test_malformed_message_has_no_parser_debug_dump(tmp_path: Path) -> None:
    path = tmp_path / "bad.pem"
    path.write_bytes(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    with pytest.raises(CertificateFileError) as info:
        read_certificate_file(path)
    assert "{" not in str(info.value)
    assert "ASN.1 parse error" in str(info.value)


def test_pem_with_only_a_private_key_is_not_a_certificate(tmp_path: Path) -> None:
    path = tmp_path / "key.pem"
    path.write_bytes(make_cert(not_before=NB).key_pem())
    with pytest.raises(CertificateFileError, match=r"no certificate in this file \(it holds "
                                                   r"1 private key\(s\)\)") as info:
        read_certificate_file(path)
    assert info.value.code == "no-certificate"


def test_truncated_second_block_keeps_the_first_and_reports_the_second(tmp_path: Path) -> None:
    issued = make_cert(not_before=NB)
    path = tmp_path / "cut.pem"
    path.write_bytes(issued.pem + issued.pem[: len(issued.pem) // 2])
    contents = read_certificate_file(path)
    assert [e.facts.sha256 for e in contents.entries] == [issued.sha256]
    (failure,) = contents.errors
    assert failure.code == "truncated"
    assert failure.index == 1
    assert str(failure).startswith(f"{path}[1]: ")


def test_missing_directory_and_oversized_files(tmp_path: Path) -> None:
    with pytest.raises(CertificateFileError) as info:
        read_certificate_file(tmp_path / "absent.pem")
    assert info.value.code == "not-found"
    with pytest.raises(CertificateFileError) as info:
        read_certificate_file(tmp_path)
    assert info.value.code == "not-regular-file"


def test_ca_certificate_is_marked(tmp_path: Path) -> None:
    path = tmp_path / "ca.pem"
    path.write_bytes(make_cert(not_before=NB, is_ca=True).pem)
    (entry,) = read_certificate_file(path).entries
    assert entry.facts.is_ca
