"""What the reader says about a broken file: positions, our own words, the right culprit."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dh, dsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.utils import CryptographyDeprecationWarning

from agent.reader import read_file
from agent.records import ReadLimits
from tests.agent.hostile_keys import hostile_key_files
from tests.agent.scan_fixtures import malformed_san_der, write
from tests.certfactory import make_ca, make_cert

ONE_SHOT = ReadLimits()
_INTERNALS = ("ParseError", "kind:", "{", "Tag {", "ShortData", "UnexpectedTag")


def test_a_broken_key_block_among_certificates_carries_its_key_index(tmp_path: Path) -> None:
    a, b = make_cert(sans=("a.example",)), make_cert(sans=("b.example",))
    broken = hostile_key_files()["ec-pkcs8-plain-blank.pem"]
    data = a.pem + a.key_pem() + broken + b.pem
    result = read_file(write(tmp_path / "bundle.pem", data, 0o600), limits=ONE_SHOT)
    assert result.error is None
    assert [c.index for c in result.certificates] == [0, 1]
    assert [k.index for k in result.keys] == [0]
    assert [(e.index, e.key_index) for e in result.cert_errors] == [(None, 1)]
    assert result.cert_errors[0].to_json()["key_index"] == 1
    assert "index" not in result.cert_errors[0].to_json()
    assert any(f.message.startswith("private key #1:") for f in result.findings)


def test_a_file_level_error_has_no_index(tmp_path: Path) -> None:
    broken = hostile_key_files()["rsa-pkcs8-plain-blank.pem"]
    result = read_file(write(tmp_path / "privkey.pem", broken, 0o600), limits=ONE_SHOT)
    assert result.error is not None
    assert (result.error.index, result.error.key_index) == (None, None)
    assert set(result.error.to_json()) == {"path", "error"}


@pytest.mark.parametrize("der", [
    malformed_san_der(),
    make_cert().der[:4] + b"\x31" + make_cert().der[5:],  # the TBS is not a SEQUENCE
    make_cert().der[:-5],
])
def test_certificate_messages_say_what_is_wrong_without_parser_internals(
    tmp_path: Path, der: bytes,
) -> None:
    result = read_file(write(tmp_path / "bad.der", der), limits=ONE_SHOT)
    assert result.error is not None
    message = result.error.message
    assert not any(token in message for token in _INTERNALS), message
    assert "password" not in message


def _p12(encryption: serialization.KeySerializationEncryption) -> tuple[bytes, bytes]:
    leaf = make_cert(sans=("p12.example",))
    data = pkcs12.serialize_key_and_certificates(
        b"leaf", leaf.key, leaf.cert, [make_ca().cert], encryption)  # type: ignore[arg-type]
    return data, leaf.der


def test_a_malformed_certificate_inside_a_pkcs12_is_not_blamed_on_a_password(
    tmp_path: Path,
) -> None:
    data, der = _p12(serialization.NoEncryption())
    at = data.find(der)
    assert at > 0
    broken = der[:4] + b"\x31" + der[5:]  # same length: the bag still frames it
    damaged = data[:at] + broken + data[at + len(der):]
    result = read_file(write(tmp_path / "bundle.p12", damaged, 0o600), limits=ONE_SHOT,
                       passwords=(b"a configured one",))
    texts = [e.message for e in result.cert_errors] + [f.message for f in result.findings]
    if result.error is not None:
        texts.append(result.error.message)
    assert texts
    assert not any("password" in text for text in texts), texts
    codes = {e.code for e in result.cert_errors} | (
        {result.error.code} if result.error is not None else set())
    assert "malformed-certificate" in codes
    assert "pkcs12-password" not in codes
    assert [c.index for c in result.certificates] == [1]  # the CA beside it is still read


def test_a_truncated_pkcs12_is_truncated_not_a_password_problem(tmp_path: Path) -> None:
    data, _der = _p12(serialization.NoEncryption())
    result = read_file(write(tmp_path / "cut.p12", data[: len(data) // 2]), limits=ONE_SHOT)
    assert result.error is not None
    assert result.error.code == "truncated"
    assert "password" not in result.error.message


def test_a_pkcs12_nobody_has_the_password_for_still_says_password(tmp_path: Path) -> None:
    data, _der = _p12(serialization.BestAvailableEncryption(b"s3cret"))
    result = read_file(write(tmp_path / "locked.p12", data), limits=ONE_SHOT)
    assert result.error is not None
    assert result.error.code == "pkcs12-password"


def test_library_deprecation_warnings_on_keys_become_findings_not_stderr(
    tmp_path: Path, capfd: pytest.CaptureFixture[str],
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        openssh_dsa = dsa.generate_private_key(1024).private_bytes(  # noqa: S505 - test only
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption())
        ffdh = dh.generate_parameters(2, 512).generate_private_key().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption())
    # pytest turns warnings into errors: a warning that escaped the reader would fail here
    for name, data, kind in (("id_dsa", openssh_dsa, "dsa"), ("dh.pem", ffdh, "dh")):
        result = read_file(write(tmp_path / name, data, 0o600), limits=ONE_SHOT)
        assert result.error is None, result.error
        assert [k.key_type for k in result.keys] == [kind]
        deprecated = [f for f in result.findings if f.code == "deprecated-algorithm"]
        assert len(deprecated) == 1
        assert deprecated[0].message.startswith("private key #0")
    assert capfd.readouterr().err == ""
