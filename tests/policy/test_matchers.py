"""Recognising an item from a certificate: issuer O + CN pattern, CA/B Forum OID, wildcard."""

from __future__ import annotations

from datetime import timedelta

import pytest

from policy.catalogue import load_catalogue
from policy.matchers import match_item, validation_level
from tests.policy.factsutil import facts, utc

CATALOGUE = load_catalogue()
EV, DV, OV, IV = "2.23.140.1.1", "2.23.140.1.2.1", "2.23.140.1.2.2", "2.23.140.1.2.3"
NB = utc(2026, 1, 10)


def cert(org: str | None, cn: str | None, oids: tuple[str, ...] = (), *,
         sans: tuple[str, ...] = ("www.example.jp",), **kw: object):  # type: ignore[no-untyped-def]
    return facts(NB, lifetime=timedelta(days=199), issuer_org=org, issuer_cn=cn,
                 policy_oids=oids, sans=sans, **kw)


@pytest.mark.parametrize(("org", "cn", "oid", "sans", "expected"), [
    ("GlobalSign nv-sa", "GlobalSign GCC R3 OV TLS CA 2024", OV, ("a.example.jp",),
     ("globalsign-ov",)),
    ("GlobalSign nv-sa", "GlobalSign GCC R3 OV TLS CA 2024", OV, ("*.example.jp",),
     ("globalsign-ov-wildcard",)),
    ("GlobalSign nv-sa", "GlobalSign GCC R3 DV TLS CA 2020", DV, ("a.example.jp",),
     ("globalsign-dv",)),
    ("GlobalSign nv-sa", "GlobalSign GCC R3 DV TLS CA 2020", DV,
     ("example.jp", "*.example.jp"), ("globalsign-dv-wildcard",)),
    # an R46 successor follows the pattern: recognised without a code change
    ("GlobalSign nv-sa", "GlobalSign GCC R46 OV TLS CA 2025", OV, ("a.example.jp",),
     ("globalsign-ov",)),
    ("GlobalSign nv-sa", "GlobalSign RSA OV SSL CA 2018", OV, ("a.example.jp",),
     ("globalsign-ov",)),
    ("GlobalSign nv-sa", "GlobalSign Domain Validation CA - SHA256 - G2", DV,
     ("*.example.jp",), ("globalsign-dv-wildcard",)),
    ("Cybertrust Japan Co., Ltd.", "Cybertrust Japan SureServer CA G8", OV, ("a.example.jp",),
     ("sureserver-cloud",)),
    ("Cybertrust Japan Co., Ltd.", "Cybertrust Japan SureServer EV CA G9", EV,
     ("a.example.jp",), ("sureserver-ev-cloud",)),
    ("DigiCert Inc", "DigiCert EV RSA CA G2", EV, ("a.example.jp",),
     ("secure-server-id-ev", "global-server-id-ev", "secure-server-id-ev-cloud",
      "global-server-id-ev-cloud")),
])
def test_art1_item_recognised_from_issuer_and_policy_oid(org: str, cn: str, oid: str,
                                                         sans: tuple[str, ...],
                                                         expected: tuple[str, ...]) -> None:
    assert match_item(cert(org, cn, (oid,), sans=sans), CATALOGUE).candidates == expected


def test_art1_digicert_secure_and_global_server_id_cannot_be_told_apart() -> None:
    match = match_item(cert("DigiCert Inc", "DigiCert TLS RSA SHA256 2020 CA1", (OV,)),
                       CATALOGUE)
    assert match.ambiguous
    assert match.item is None
    assert set(match.candidates) == {"secure-server-id", "global-server-id",
                                     "secure-server-id-cloud", "global-server-id-cloud"}


def test_art1_other_globalsign_brands_are_not_catalogue_items() -> None:
    match = match_item(cert("GlobalSign nv-sa", "GlobalSign GCC R6 AlphaSSL CA 2023", (DV,)),
                       CATALOGUE)
    assert match.candidates == ()


def test_art1_unknown_issuer_is_unidentified() -> None:
    match = match_item(cert("Let's Encrypt", "R11", (DV,)), CATALOGUE)
    assert match.candidates == ()
    assert match.ca is None


def test_art1_known_organisation_but_unknown_issuing_ca_is_unidentified() -> None:
    # DigiCert Inc also issues RapidSSL/GeoTrust: the organisation alone does not make it
    # a Secure Server ID.
    match = match_item(cert("DigiCert Inc", "RapidSSL TLS RSA CA G1", (DV,)), CATALOGUE)
    assert match.candidates == ()
    assert [f.code for f in match.findings] == ["issuer-not-recognised"]


def test_art1_issuer_organisation_is_matched_case_insensitively() -> None:
    match = match_item(cert("GLOBALSIGN NV-SA", "GlobalSign GCC R3 DV TLS CA 2020", (DV,)),
                       CATALOGUE)
    assert match.item == "globalsign-dv"


def test_validation_level_needs_exactly_one_cabf_oid() -> None:
    assert validation_level(cert(None, None, (EV, "2.16.840.1.114412.2.1")))[0] == "ev"
    level, findings = validation_level(cert(None, None, ()))
    assert level is None
    assert findings[0].code == "no-cabf-policy-oid"
    level, findings = validation_level(cert(None, None, (OV, DV)))
    assert level is None
    assert findings[0].code == "several-cabf-policy-oids"
    assert validation_level(cert(None, None, (IV,)))[0] == "iv"


def test_without_a_cabf_oid_every_item_of_the_ca_remains_a_candidate() -> None:
    match = match_item(cert("GlobalSign nv-sa", "GlobalSign GCC R3 OV TLS CA 2024", ()),
                       CATALOGUE)
    assert set(match.candidates) == {"globalsign-ov", "globalsign-dv"}


def test_vendor_oid_only_cross_checks() -> None:
    match = match_item(cert("GlobalSign nv-sa", "GlobalSign GCC R3 OV TLS CA 2024",
                            (OV, "1.3.6.1.4.1.4146.1.10")), CATALOGUE)
    assert match.item == "globalsign-ov"
    assert [f.code for f in match.findings] == ["vendor-policy-oid-mismatch"]
    consistent = match_item(cert("GlobalSign nv-sa", "GlobalSign GCC R3 OV TLS CA 2024",
                                 (OV, "1.3.6.1.4.1.4146.1.20")), CATALOGUE)
    assert consistent.findings == ()


def test_a_ca_certificate_is_no_item() -> None:
    match = match_item(cert("GlobalSign nv-sa", "GlobalSign GCC R3 OV TLS CA 2024", (OV,),
                            is_ca=True), CATALOGUE)
    assert match.candidates == ()
