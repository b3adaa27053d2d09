"""Art.7 refusals, Art.4(1) designated service, Art.8 abolition — applications and items."""

from __future__ import annotations

import dataclasses
from datetime import date

import pytest

from policy.catalogue import Catalogue, load_catalogue
from policy.decisions import Action, Severity
from policy.errors import PolicyError, UnknownItemError
from policy.rules.art4 import designated_service_refusal, needs_designated_service
from policy.rules.art7 import Application, application_refusals
from policy.rules.art8 import abolished, abolition_decisions
from tests.policy.factsutil import utc

CATALOGUE = load_catalogue()
AT = utc(2026, 6, 1, 3)


def clauses(application: Application, catalogue: Catalogue = CATALOGUE) -> list[str]:
    return [d.clause for d in application_refusals(application, catalogue, at=AT)]


def with_product_end(handle: str, end: date) -> Catalogue:
    items = dict(CATALOGUE.items)
    items[handle] = dataclasses.replace(items[handle], product_end=end)
    return dataclasses.replace(CATALOGUE, items=items)


def test_art7_1_category_i_refuses_migration_from_an_outside_server() -> None:
    assert clauses(Application(item="globalsign-ov", migrating_from_outside=True)) == \
        ["Art.7(1)"]


def test_art7_2_category_i_refuses_an_organisation_outside_japan() -> None:
    assert clauses(Application(item="secure-server-id", organisation_country="US")) == \
        ["Art.7(2)"]
    assert clauses(Application(item="secure-server-id", organisation_country="jp")) == []


def test_art7_category_ii_refuses_both_and_needs_a_designated_service() -> None:
    application = Application(item="global-server-id-cloud", organisation_country="SG",
                              migrating_from_outside=True)
    assert clauses(application) == ["Art.7(1)", "Art.7(2)", "Art.4(1)"]


@pytest.mark.parametrize("country", ["Japan", "JPN", "", "J"])
def test_art7_2_country_must_be_an_iso_code_not_silently_foreign(country: str) -> None:
    with pytest.raises(PolicyError, match="ISO 3166-1 alpha-2"):
        Application(item="globalsign-ov", organisation_country=country)


def test_art7_does_not_restrict_category_iii() -> None:
    assert clauses(Application(item="byo", organisation_country="US",
                               migrating_from_outside=True)) == []


def test_art4_1_category_ii_with_a_designated_service_is_accepted() -> None:
    assert clauses(Application(item="secure-server-id-cloud",
                               designated_service="IIJ GIO")) == []


def test_art4_1_only_category_ii_needs_a_designated_service() -> None:
    assert needs_designated_service(CATALOGUE.item("secure-server-id-cloud"))
    assert not needs_designated_service(CATALOGUE.item("secure-server-id"))
    assert designated_service_refusal(CATALOGUE.item("byo"), None, at=AT) is None
    refusal = designated_service_refusal(CATALOGUE.item("secure-server-id-ev-cloud"), "  ",
                                         at=AT)
    assert refusal is not None
    assert refusal.action is Action.REFUSE


def test_art7_refusals_are_decisions_citing_their_clause() -> None:
    (decision,) = application_refusals(
        Application(item="globalsign-dv", organisation_country="KR"), CATALOGUE, at=AT)
    assert decision.action is Action.REFUSE
    assert decision.due == date(2026, 6, 1)
    assert decision.facts["organisation_country"] == "KR"
    assert "Japan" in decision.explanation_en
    assert "日本国外" in decision.explanation_ja


def test_art7_unknown_item_is_an_error_not_a_refusal() -> None:
    with pytest.raises(UnknownItemError):
        application_refusals(Application(item="sectigo-ov"), CATALOGUE, at=AT)


def test_art8_application_for_an_abolished_item_is_refused_from_its_end_date() -> None:
    catalogue = with_product_end("globalsign-dv", date(2026, 6, 1))
    # 2026-06-01 00:00 JST is 2026-05-31T15:00Z.
    before = application_refusals(Application(item="globalsign-dv"), catalogue,
                                  at=utc(2026, 5, 31, 14, 59, 59))
    on = application_refusals(Application(item="globalsign-dv"), catalogue,
                              at=utc(2026, 5, 31, 15, 0, 0))
    assert before == ()
    assert [d.clause for d in on] == ["Art.8"]


def test_art8_abolition_is_announced_before_and_effective_on_the_end_date() -> None:
    item = with_product_end("sureserver-cloud", date(2027, 3, 31)).item("sureserver-cloud")
    (upcoming,) = abolition_decisions(item, contract_id="C-3", at=utc(2027, 1, 1))
    assert upcoming.action is Action.ABOLISH
    assert upcoming.clause == "Art.8"
    assert upcoming.due == date(2027, 3, 31)
    assert upcoming.severity is Severity.INFO
    assert upcoming.computed["days_until"] == 89
    (effective,) = abolition_decisions(item, contract_id="C-3", at=utc(2027, 3, 30, 15))
    assert effective.severity is Severity.WARNING
    assert effective.computed["abolished"]
    assert abolished(item, at=utc(2027, 3, 30, 15))
    assert not abolished(item, at=utc(2027, 3, 30, 14, 59, 59))


def test_art8_no_known_end_date_no_decision() -> None:
    assert abolition_decisions(CATALOGUE.item("globalsign-ov"), contract_id=None, at=AT) == ()
    assert abolition_decisions(CATALOGUE.item("byo"), contract_id=None, at=AT) == ()


def test_art7_1_refusal_names_the_providers_servers_as_the_clause_does() -> None:
    (decision,) = application_refusals(
        Application(item="globalsign-ov", migrating_from_outside=True), CATALOGUE, at=AT)
    assert "当社の提供するサービスに係るサーバへ移設し利用する態様" in decision.explanation_ja
    assert "当社の提供するサービス且つ当社が指定するサービスに係るサーバではないサーバ" in \
        decision.explanation_ja
