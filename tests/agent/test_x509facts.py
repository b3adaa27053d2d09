"""Every field of a certificate, read inside one error boundary; warnings become findings."""

from __future__ import annotations

import base64
import warnings
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID
from hypothesis import example, given, settings
from hypothesis import strategies as st

from agent.reader import read_file
from agent.records import ReadLimits
from agent.x509facts import MalformedCertificateError, parse_der_certificate
from policy.decisions import Severity
from policy.facts import storable
from tests.agent.scan_fixtures import malformed_san_der, nonpositive_serial_der, write
from tests.certfactory import OV_OID, fresh_key, make_ca, make_cert

ONE_SHOT = ReadLimits()


def _pem(der: bytes) -> bytes:
    return (b"-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(der)
            + b"-----END CERTIFICATE-----\n")


def test_facts_carry_every_field_the_issue_lists() -> None:
    nb = datetime(2026, 2, 1, 0, 0, 0, tzinfo=UTC)
    issued = make_cert(not_before=nb, lifetime=timedelta(days=199),
                       sans=("www.example.jp", "192.0.2.7", "*.example.jp"),
                       issuer_org="GlobalSign nv-sa", issuer_cn="GlobalSign GCC R3 OV TLS CA 2024",
                       policy_oids=(OV_OID, "1.3.6.1.4.1.4146.1.20"), serial=0x1F2E)
    parsed = parse_der_certificate(issued.der)
    facts = parsed.facts
    assert facts.sha256 == issued.sha256
    assert facts.subject == "CN=www.example.jp"
    assert facts.subject_cn == "www.example.jp"
    assert facts.issuer == "CN=GlobalSign GCC R3 OV TLS CA 2024,O=GlobalSign nv-sa"
    assert (facts.issuer_org, facts.issuer_cn) == ("GlobalSign nv-sa",
                                                   "GlobalSign GCC R3 OV TLS CA 2024")
    assert facts.serial == "1f2e"
    assert facts.sans == ("www.example.jp", "192.0.2.7", "*.example.jp")
    assert facts.not_before_utc == nb
    assert facts.not_after_utc == nb + timedelta(days=199) - timedelta(seconds=1)
    assert facts.not_after_utc.tzinfo is not None
    assert (facts.key_type, facts.key_size) == ("ec", 256)
    assert facts.signature_algorithm == "ecdsa-with-SHA256"
    assert facts.policy_oids == (OV_OID, "1.3.6.1.4.1.4146.1.20")
    assert (facts.is_ca, facts.self_signed) == (False, False)
    assert parsed.findings == ()
    assert parsed.spki_sha256 is not None


def test_self_signed_ca_is_recognised() -> None:
    ca = make_ca("Self Org", "Self Root", slot=3)
    from cryptography.hazmat.primitives.serialization import Encoding

    facts = parse_der_certificate(ca.cert.public_bytes(Encoding.DER)).facts
    assert (facts.is_ca, facts.self_signed) == (True, True)


def test_rsa_key_type_and_size() -> None:
    facts = parse_der_certificate(make_cert(key=fresh_key("rsa")).der).facts
    assert (facts.key_type, facts.key_size) == ("rsa", 2048)


def test_malformed_extension_raising_lazily_is_a_per_certificate_error(tmp_path: Path) -> None:
    good_before = make_cert(sans=("before.example",))
    good_after = make_cert(sans=("after.example",))
    data = good_before.pem + _pem(malformed_san_der()) + good_after.pem
    result = read_file(write(tmp_path / "mixed.pem", data), limits=ONE_SHOT)
    assert result.error is None
    assert [(c.index, c.facts.sha256) for c in result.certificates] == [
        (0, good_before.sha256), (2, good_after.sha256)]
    assert [(e.code, e.index) for e in result.cert_errors] == [("malformed-certificate", 1)]
    assert "subject_alternative_name" in result.cert_errors[0].message
    assert any(f.code == "malformed-certificate" and "certificate #1" in f.message
               for f in result.findings)


def test_file_holding_only_a_malformed_certificate_fails_with_that_code(tmp_path: Path) -> None:
    result = read_file(write(tmp_path / "bad.der", malformed_san_der()), limits=ONE_SHOT)
    assert result.error is not None
    assert result.error.code == "malformed-certificate"


def test_malformed_certificate_raises_one_error_type() -> None:
    with pytest.raises(MalformedCertificateError, match="subject_alternative_name"):
        parse_der_certificate(malformed_san_der())


@pytest.mark.parametrize("serial", [0, -1])
def test_nonpositive_serial_warning_becomes_a_finding_not_stderr_noise(
    tmp_path: Path, serial: int
) -> None:
    der = nonpositive_serial_der(serial)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # as pytest's filterwarnings=error: any leak would raise
        result = read_file(write(tmp_path / "neg.pem", _pem(der)), limits=ONE_SHOT)
    assert result.error is None
    record = result.certificates[0]
    assert record.facts.serial == format(serial, "x")
    assert [(f.code, f.severity) for f in record.findings] == [
        ("non-positive-serial", Severity.WARNING)]
    assert "RFC 5280" in record.findings[0].message


def test_nonpositive_serial_in_der_file_is_also_caught(tmp_path: Path) -> None:
    result = read_file(write(tmp_path / "neg.der", nonpositive_serial_der(0)), limits=ONE_SHOT)
    assert [f.code for f in result.certificates[0].findings] == ["non-positive-serial"]


@pytest.mark.parametrize("kind", ["ec", "ec384", "rsa", "ed25519"])
def test_key_type_size_and_spki_from_raw_der_match_cryptography(kind: str) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    from agent.x509facts import key_description, spki_sha256

    key = ec.generate_private_key(ec.SECP384R1()) if kind == "ec384" else fresh_key(kind)
    issued = make_cert(key=key)
    parsed = parse_der_certificate(issued.der)
    public = issued.cert.public_key()
    assert (parsed.facts.key_type, parsed.facts.key_size) == key_description(public)
    assert parsed.spki_sha256 == spki_sha256(public)


def test_issuer_names_are_rendered_the_same_from_the_memo() -> None:
    first = parse_der_certificate(make_cert(issuer_org="Memo Org", issuer_cn="Memo CA").der)
    second = parse_der_certificate(make_cert(issuer_org="Memo Org", issuer_cn="Memo CA").der)
    assert first.facts.issuer == second.facts.issuer == "CN=Memo CA,O=Memo Org"
    assert (second.facts.issuer_org, second.facts.issuer_cn) == ("Memo Org", "Memo CA")


_NAME_OIDS = [NameOID.COMMON_NAME, NameOID.ORGANIZATION_NAME, NameOID.ORGANIZATIONAL_UNIT_NAME,
              NameOID.LOCALITY_NAME, NameOID.STATE_OR_PROVINCE_NAME, NameOID.STREET_ADDRESS,
              NameOID.DOMAIN_COMPONENT, NameOID.USER_ID, NameOID.SERIAL_NUMBER,
              NameOID.EMAIL_ADDRESS]
_PRINTABLE_CHARS = set(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 '()+,-./:=?")
_TYPES = [_ASN1Type.UTF8String, _ASN1Type.PrintableString, _ASN1Type.IA5String,
          _ASN1Type.BMPString]


@settings(max_examples=200, deadline=None)
@given(st.lists(
    st.tuples(st.sampled_from(_NAME_OIDS), st.sampled_from(_TYPES),
              st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)),
                      min_size=1, max_size=12),
              st.booleans()),
    min_size=1, max_size=5))
@example([(NameOID.ORGANIZATION_NAME, _ASN1Type.UTF8String, "\x00", False)])
@example([(NameOID.COMMON_NAME, _ASN1Type.UTF8String, "a\x00b", True)])
def test_names_read_from_raw_der_match_cryptography(
    attrs: list[tuple[x509.ObjectIdentifier, _ASN1Type, str, bool]],
) -> None:
    """The raw-DER fast path renders exactly what cryptography renders, or steps aside."""
    rdns: list[x509.RelativeDistinguishedName] = []
    for oid, asn1_type, value, pair in attrs:
        text = value
        if asn1_type is _ASN1Type.PrintableString:
            text = "".join(c for c in value if c in _PRINTABLE_CHARS) or "x"
        elif asn1_type is _ASN1Type.IA5String:
            text = value.encode("ascii", "ignore").decode() or "x"
        first = x509.NameAttribute(oid, text, asn1_type)
        # CN=z+CN=z would be a duplicate attribute, which cryptography refuses to build
        duplicate = oid == NameOID.COMMON_NAME and text == "z"
        extra = [x509.NameAttribute(NameOID.COMMON_NAME, "z")] if pair and not duplicate else []
        rdns.append(x509.RelativeDistinguishedName([first, *extra]))
    name = x509.Name(rdns)
    parsed = parse_der_certificate(_issued_by_name(name))
    reference = x509.load_der_x509_certificate(_issued_by_name(name)).issuer
    # what cryptography renders, made storable as every reading is (a NUL as \00)
    expected, _ = storable(replace(
        parsed.facts, issuer=reference.rfc4514_string(),
        issuer_org=next((str(a.value) for a in
                         reference.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)), None),
        issuer_cn=next((str(a.value) for a in
                        reference.get_attributes_for_oid(NameOID.COMMON_NAME)), None)))
    assert parsed.facts.issuer == expected.issuer
    assert parsed.facts.issuer_org == expected.issuer_org
    assert parsed.facts.issuer_cn == expected.issuer_cn


def test_fast_path_handles_the_common_shape_and_escapes_like_cryptography() -> None:
    from agent.x509facts import _fast_name

    name = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Acme, Inc. <+;\\> "),
                      x509.NameAttribute(NameOID.COMMON_NAME, "#1 Server")])
    fast = _fast_name(name.public_bytes())
    assert fast == (name.rfc4514_string(), "Acme, Inc. <+;\\> ", "#1 Server")


def _issued_by_name(issuer: x509.Name) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding

    from tests.certfactory import shared_key

    key = shared_key()
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "s")]))
            .issuer_name(issuer)
            .public_key(key.public_key()).serial_number(7)
            .not_valid_before(datetime(2026, 1, 1, tzinfo=UTC))
            .not_valid_after(datetime(2026, 2, 1, tzinfo=UTC))
            .sign(key, hashes.SHA256()))  # type: ignore[arg-type]
    return cert.public_bytes(Encoding.DER)


@pytest.mark.parametrize("value", [" ", "  ", "#", "# ", " a", "a ", " a ", "\\", "\\ ", "a+b",
                                   'q"', "x,y;z", "<>", "#x", "a  "])
def test_escaping_of_names_matches_cryptography_at_the_edges(value: str) -> None:
    # A lone space is escaped once ("\ "), not twice, as hypothesis once found.
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, value)])
    parsed = parse_der_certificate(_issued_by_name(name))
    assert parsed.facts.issuer == name.rfc4514_string()
