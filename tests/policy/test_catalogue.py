"""Art.1 / Appendix 1 as data: the embedded catalogue, and clear errors for a bad one."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import pytest

from policy.catalogue import EMBEDDED_CATALOGUE, load_catalogue, parse_catalogue
from policy.category import Category
from policy.errors import CatalogueError, UnknownItemError
from policy.tiers import Tier

EMBEDDED = (Path(__file__).resolve().parents[2] / "policy" / "data" /
            "catalogue.toml").read_text(encoding="utf-8")

ART1 = {  # CONTRACT.md Art.1, the table as written
    "secure-server-id": ("I", "digicert", ("1y",), "セキュア・サーバ ID"),
    "secure-server-id-ev": ("I", "digicert", ("1y",), "セキュア・サーバ ID EV"),
    "global-server-id": ("I", "digicert", ("1y",), "グローバル・サーバ ID"),
    "global-server-id-ev": ("I", "digicert", ("1y",), "グローバル・サーバ ID EV"),
    "sureserver-cloud": ("I", "cybertrust", ("6m", "1y"), "SureServer for クラウド"),
    "sureserver-ev-cloud": ("I", "cybertrust", ("1y",), "SureServer EV for クラウド"),
    "globalsign-ov": ("I", "globalsign", ("6m", "1y"), "企業認証 SSL"),
    "globalsign-ov-wildcard": ("I", "globalsign", ("6m", "1y"),
                               "企業認証 SSL／ワイルドカードオプション付き"),
    "globalsign-dv": ("I", "globalsign", ("6m", "1y"), "クイック認証 SSL"),
    "globalsign-dv-wildcard": ("I", "globalsign", ("6m", "1y"),
                               "クイック認証 SSL／ワイルドカードオプション付き"),
    "secure-server-id-cloud": ("II", "digicert", ("1y",), "セキュア・サーバ ID ※クラウド証明書"),
    "secure-server-id-ev-cloud": ("II", "digicert", ("1y",),
                                  "セキュア・サーバ ID EV ※クラウド証明書"),
    "global-server-id-cloud": ("II", "digicert", ("1y",), "グローバル・サーバ ID ※クラウド証明書"),
    "global-server-id-ev-cloud": ("II", "digicert", ("1y",),
                                  "グローバル・サーバ ID EV ※クラウド証明書"),
    "byo": ("III", "any", ("6m", "1y", "2y", "3y", "unlimited"), "持ち込み証明書"),
}


def test_art1_catalogue_has_all_15_items_as_the_terms_list_them() -> None:
    catalogue = load_catalogue()
    assert list(catalogue.items) == list(ART1)
    for handle, (category, ca, tiers, name_ja) in ART1.items():
        item = catalogue.item(handle)
        assert item.category is Category.parse(category)
        assert item.ca == ca
        assert tuple(t.value for t in item.tiers) == tiers
        assert item.name_ja == name_ja


def test_supplementary_provisions_catalogue_records_the_terms_date() -> None:
    assert load_catalogue().terms_date == date(2024, 6, 1)


def test_art3_proviso_globalsign_allows_31_days_others_none_by_default() -> None:
    cas = load_catalogue().cas
    assert cas["globalsign"].transition_allowance_days == 31
    assert cas["digicert"].transition_allowance_days is None
    assert cas["cybertrust"].transition_allowance_days is None


def test_appx1_validation_levels_and_wildcards() -> None:
    catalogue = load_catalogue()
    assert catalogue.item("secure-server-id-ev").validation == "ev"
    assert catalogue.item("globalsign-dv").validation == "dv"
    assert catalogue.item("globalsign-ov-wildcard").wildcard
    assert not catalogue.item("globalsign-ov").wildcard
    assert catalogue.item("byo").validation is None


def test_appx1_fees_agency_fee_for_i_and_ii_monthly_zero() -> None:
    catalogue = load_catalogue()
    assert catalogue.item("globalsign-ov").owes_agency_fee
    assert catalogue.item("global-server-id-cloud").owes_agency_fee
    assert not catalogue.item("byo").owes_agency_fee
    assert all(i.monthly_fee_yen == 0 for i in catalogue.items.values())


def test_unknown_item_lists_the_valid_handles() -> None:
    with pytest.raises(UnknownItemError, match=r"unknown item 'nope'.*secure-server-id"):
        load_catalogue().item("nope")


def test_operator_amended_catalogue_is_loaded_from_a_file(tmp_path: Path) -> None:
    amended = EMBEDDED.replace('handle = "globalsign-dv"\n',
                               'handle = "globalsign-dv"\nproduct_end = 2027-03-31\n')
    path = tmp_path / "catalogue.toml"
    path.write_text(amended, encoding="utf-8")
    catalogue = load_catalogue(path)
    assert catalogue.item("globalsign-dv").product_end == date(2027, 3, 31)
    assert catalogue.source == str(path)


def _broken(old: str, new: str, count: int = 1) -> str:
    assert old in EMBEDDED, old
    return EMBEDDED.replace(old, new, count)


@pytest.mark.parametrize(("text", "message"), [
    (_broken('handle = "byo"\n', 'handle = "byo"\ncolour = "blue"\n'),
     r"items\[14\] \(byo\)\.colour: unknown key"),
    (_broken('tiers = ["1y"]\n', 'tiers = "1y"\n'),
     r"items\[0\] \(secure-server-id\)\.tiers: expected a list of strings"),
    (_broken('tiers = ["1y"]\n', 'tiers = ["1y", "5y"]\n'),
     r"items\[0\] \(secure-server-id\)\.tiers\[1\]: unknown tier '5y'"),
    (_broken('handle = "secure-server-id-ev"\n', 'handle = "secure-server-id"\n'),
     r"items\[1\]\.handle: duplicate handle 'secure-server-id'"),
    (_broken('ca = "cybertrust"\n', 'ca = "sectigo"\n'),
     r"items\[4\] \(sureserver-cloud\)\.ca: unknown CA 'sectigo'"),
    (_broken('category = "II"\n', 'category = "IV"\n'),
     r"items\[10\] \(secure-server-id-cloud\)\.category: unknown category 'IV'"),
    (_broken("\ntransition_allowance_days = 31\n", '\ntransition_allowance_days = "31"\n'),
     r"cas\.globalsign\.transition_allowance_days: expected a whole number of days"),
    (_broken("terms_date = 2024-06-01", 'terms_date = "2024-06-01"'),
     r"terms_date: expected a date"),
    (_broken('validation = "ev"\n', 'validation = "xv"\n'),
     r"items\[1\] \(secure-server-id-ev\)\.validation: unknown validation level 'xv'"),
    (_broken('name_en = "Bring your own certificate"\n', ''),
     r"items\[14\] \(byo\)\.name_en: required key is missing"),
    (_broken('wildcard = true\n', 'wildcard = "yes"\n'),
     r"globalsign-ov-wildcard\)\.wildcard: expected true or false"),
    (_broken('handle = "byo"\n', 'handle = "byo"\nproduct_end = 2027-01-01\n'),
     r"byo\)\.product_end: Art\.8 abolition applies to category I/II items only"),
    (_broken("'Cybertrust Japan SureServer CA G\\d+',", "'Cybertrust (',"),
     r"cas\.cybertrust\.issuer_cn_patterns\[0\]: not a valid regular expression"),
    ("format = 2\n" + EMBEDDED.replace("format = 1\n", ""),
     r"format: unsupported catalogue format 2"),
    ("items = [", r"not valid TOML"),
    (_broken('tier_days = { "6m" = 183, "1y" = 366 }', 'tier_days = { "7m" = 183 }'),
     r'cas\.globalsign\.tier_days\."7m": unknown tier'),
    (_broken('tier_days = { "6m" = 183, "1y" = 366 }', 'tier_days = { "1y" = 0 }'),
     r'cas\.globalsign\.tier_days\."1y": must be a positive number of days'),
    (_broken('tier_days = { "6m" = 183, "1y" = 366 }', 'tier_days = { "unlimited" = 9 }'),
     r"an unlimited tier has no length"),
    (_broken("\ntransition_allowance_days = 31\n", "\n"),
     r"cas\.globalsign\.tier_days: needs transition_allowance_days"),
])
def test_catalogue_validation_errors_name_file_and_key(tmp_path: Path, text: str,
                                                       message: str) -> None:
    path = tmp_path / "amended.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(CatalogueError) as info:
        load_catalogue(path)
    assert str(info.value).startswith(f"{path}: ")
    assert re.search(message, str(info.value)), str(info.value)


def test_catalogue_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CatalogueError, match="catalogue file does not exist"):
        load_catalogue(tmp_path / "absent.toml")
    with pytest.raises(CatalogueError, match="is a directory"):
        load_catalogue(tmp_path)


def test_embedded_catalogue_is_named_in_errors() -> None:
    with pytest.raises(CatalogueError, match=re.escape(EMBEDDED_CATALOGUE)):
        parse_catalogue("terms_date = 2024-06-01\ncas = {}\nitems = []\n",
                        source=EMBEDDED_CATALOGUE)


def test_catalogue_json_lists_items_with_tiers() -> None:
    body = load_catalogue().to_json()
    assert body["terms_date"] == date(2024, 6, 1)
    byo = body["items"][-1]
    assert byo["tiers"] == [t.value for t in Tier]
    assert byo["fees"]["monthly_yen"] == 0
    assert byo["fees"]["agency"] is None


def test_a_fifo_or_a_device_as_the_catalogue_or_schedule_is_refused_not_waited_on(
        tmp_path: Path) -> None:
    """``[policy] catalogue = "/tmp/fifo"`` hung scan, check-config and a daemon's reload;
    ``/dev/zero`` was read until memory ran out (the re-review of session 13)."""
    import os
    import threading

    from policy.forecast import load_schedule

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    outcomes: list[str] = []

    def attempt() -> None:
        for load in (load_catalogue, load_schedule):
            for path in (fifo, Path("/dev/zero")):
                try:
                    load(path)
                except CatalogueError as exc:
                    outcomes.append(str(exc))

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(20)
    assert not worker.is_alive(), "a FIFO or /dev/zero was waited on"
    assert len(outcomes) == 4
    assert all("is not a regular file" in text for text in outcomes)
    big = tmp_path / "big.toml"
    big.write_bytes(b"#" * (2 << 20))
    with pytest.raises(CatalogueError, match="over the"):
        load_catalogue(big)
