"""Japanese text reads like a Japanese contract desk wrote it (issue 10).

Two scans: every Japanese string template in ``policy/`` (string literals and f-strings, read
with ``ast`` so a new template is covered without touching this test), and the rendered
explanations of decisions across the rules. Neither may carry ASCII unit abbreviations
(「181 d 1 s」 instead of 「181日と1秒」) or half-width punctuation inside a Japanese sentence
(``(``, ``)``, ``,``, ``:``, ``;``, ``!``, ``?``, ``[``, ``]``, or a sentence-ending ``.``).
Digits keep their own punctuation: ISO dates and times (``2026-08-08``, ``12:04:05``), amounts
(``1,000``), and dotted configuration keys (``policy.prices``) are not sentences.
"""

from __future__ import annotations

import ast
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

import policy
from policy.catalogue import load_catalogue
from policy.category import Category
from policy.classification import classify_certificate
from policy.decisions import Decision
from policy.intake import Binding
from policy.periods import PeriodRule, days_period, months_period
from policy.rules.art3 import compliance, compliance_decisions
from policy.rules.art6 import Answer, renewal_decisions
from policy.rules.art7 import Application, application_refusals
from policy.rules.art8 import abolition_decisions
from policy.rules.art9 import termination_decisions
from policy.rules.art10 import fees_on_acceptance, fees_on_change, fees_on_renewal
from policy.settings import PolicySettings, PriceList
from policy.tiers import Tier
from tests.policy.factsutil import facts, utc

JAPANESE = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uff01-\uff60]")
HALF_WIDTH = re.compile(r"[()\[\]!?;,]|(?<!\d):|:(?!\d)|\.(?=\s|$)")
ASCII_UNIT = re.compile(r"(?:\d|〇)\s*(?:d|s|h|min|sec|secs|days?|hours?|yen)(?![A-Za-z])")
PLACEHOLDER = "〇"
"""Stands for an interpolated value: a full-width mark, so it neither hides nor fakes a hit."""
DAY = timedelta(days=1)
CATALOGUE = load_catalogue()


def _allowed_number_commas(text: str) -> str:
    """Amounts (``1,000``) are numbers, not sentences: drop their commas before scanning."""
    return re.sub(r"(?<=\d),(?=\d{3})", "", text)


def problems(text: str) -> list[str]:
    """Half-width punctuation and ASCII units in the Japanese sentences of ``text``."""
    found: list[str] = []
    for sentence in re.split(r"(?<=。)", text):
        if not JAPANESE.search(sentence):
            continue
        scan = _allowed_number_commas(sentence)
        found += [f"half-width {m.group()!r} in {sentence!r}" for m in HALF_WIDTH.finditer(scan)]
        found += [f"ASCII unit {m.group()!r} in {sentence!r}" for m in ASCII_UNIT.finditer(scan)]
    return found


def _docstring_nodes(tree: ast.AST) -> set[int]:
    ids: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
        # Attribute docstrings (a string expression statement after an assignment).
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            ids.add(id(node.value))
    return ids


def japanese_templates(path: Path) -> list[tuple[int, str]]:
    """Every string template of ``path`` that contains Japanese, rendered with placeholders."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = _docstring_nodes(tree)
    inside_fstring: set[int] = set()
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            parts = []
            for value in node.values:
                inside_fstring.add(id(value))
                if isinstance(value, ast.Constant) and isinstance(value.value, str):
                    parts.append(value.value)
                else:
                    parts.append(PLACEHOLDER)
            text = "".join(parts)
            if JAPANESE.search(text):
                out.append((node.lineno, text))
    for node in ast.walk(tree):
        if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                and id(node) not in skip and id(node) not in inside_fstring
                and JAPANESE.search(node.value)):
            out.append((node.lineno, node.value))
    return out


SOURCES = sorted(Path(policy.__file__).parent.rglob("*.py"))


def test_the_scan_sees_the_templates_it_is_meant_to_see() -> None:
    """A scanner that finds nothing proves nothing: the known templates are found, and the
    checks catch the faults the issue names."""
    found = [t for p in SOURCES for _, t in japanese_templates(p)]
    assert any("回答を催促" in t for t in found)
    assert any("申込を当社が承諾した時点で" in t for t in found)
    assert problems("有効期間（181 d 1 s）") != []
    assert problems("返金しません(第9条第2項)。") != []
    assert problems("に解除: 理由。") != []
    assert problems("2026-08-08 12:04:05（日本時間）、金額は 1,000 円です。") == []
    assert problems("設定 policy.prices に未設定") == []


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_japanese_templates_use_japanese_units_and_punctuation(path: Path) -> None:
    bad = [f"{path.name}:{line}: {issue}" for line, text in japanese_templates(path)
           for issue in problems(text)]
    assert bad == []


def _rendered() -> list[Decision]:
    """Decisions across every rule, for both period rules and both edges of each text."""
    out: list[Decision] = []
    nb = datetime(2026, 5, 10, 3, 4, 5, tzinfo=UTC)
    for rule in PeriodRule:
        settings = PolicySettings(period_rule=rule)
        for lifetime in (90 * DAY, 90 * DAY + timedelta(seconds=1), 181 * DAY + timedelta(
                seconds=1), 47 * DAY):
            f = facts(nb, lifetime=lifetime)
            for category in Category:
                for notice, answer, at in (
                        (None, None, nb), (None, None, nb + 80 * DAY),
                        (date(2026, 5, 11), None, nb + DAY),
                        (date(2026, 5, 11), None, nb + 60 * DAY),
                        (date(2026, 5, 11), Answer.RENEW, nb + 2 * DAY)):
                    out += renewal_decisions(category=category, facts=f, contract_id="c",
                                             notice_sent=notice, answer=answer, at=at,
                                             settings=settings, bound_on=date(2026, 5, 20))
                result = compliance(f, Tier.SIX_MONTHS, category=category, ca=None, rule=rule)
                out += compliance_decisions(result, f, contract_id="c")
            long_cert = facts(nb, lifetime=400 * DAY)
            out += compliance_decisions(
                compliance(long_cert, Tier.ONE_YEAR, category=Category.III, ca=None, rule=rule),
                long_cert, contract_id="c")
            out += classify_certificate(f, CATALOGUE, binding=Binding(), at=nb,
                                        settings=settings).actions
        proviso = days_period(nb, 90, rule=rule)
        for clause in ("Art.9(1)", "Art.9(2)", "Art.8", "Art.6(3) proviso", "Art.99"):
            out += termination_decisions(contract_id="c", effective=date(2026, 8, 8),
                                         clause=clause, at=nb, arrived=date(2026, 5, 1),
                                         period=proviso)
        assert months_period(nb, 6, rule=rule).explain_ja()
    for prices in (PriceList(), PriceList(change_fee=1_000)):
        out += fees_on_acceptance(contract_id="c", item="globalsign-ov", category=Category.I,
                                  tier=Tier.ONE_YEAR, accepted_on=date(2026, 5, 1),
                                  prices=prices)
        for by_default in (False, True):
            out += fees_on_renewal(contract_id="c", item="globalsign-ov", category=Category.I,
                                   tier=Tier.ONE_YEAR, renewed_on=date(2026, 5, 1),
                                   by_default=by_default, prices=prices)
        out += fees_on_change(contract_id="c", service="IIJ GIO", accepted_on=date(2026, 5, 1),
                              prices=prices)
    out += application_refusals(Application(item="globalsign-ov", migrating_from_outside=True,
                                            organisation_country="US"), CATALOGUE, at=nb)
    for item in CATALOGUE.items.values():
        if item.category.provider_issued:
            out += abolition_decisions(dataclass_with_end(item), contract_id="c", at=nb)
    return out


def dataclass_with_end(item):  # type: ignore[no-untyped-def]
    import dataclasses

    return dataclasses.replace(item, product_end=date(2026, 6, 1))


def test_rendered_japanese_explanations_read_like_a_contract_desk() -> None:
    decisions = _rendered()
    assert len({d.action for d in decisions}) >= 10
    bad = sorted({issue for d in decisions for issue in problems(d.explanation_ja)})
    assert bad == []
    assert any("日と1秒" in d.explanation_ja for d in decisions)


def test_period_explanations_in_japanese_are_clean() -> None:
    for rule in PeriodRule:
        for start in (utc(2026, 5, 10, 3, 4, 5), utc(2026, 5, 9, 15)):
            for period in (days_period(start, 90, rule=rule), months_period(start, 6, rule=rule),
                           months_period(start, 12, rule=rule)):
                assert problems(period.explain_ja()) == []


def test_every_decision_that_used_a_period_names_the_rule_and_its_last_day() -> None:
    """Issue 10: the proviso (category III Art.6 decisions, the proviso termination) and the
    contracted tier (non-compliance) are periods; each such decision carries
    ``computed.period_rule`` and ``computed.period_last_day``, and the decisions that turn on
    the period say its last day in both languages."""
    used = [d for d in _rendered()
            if d.clause.startswith("Art.6(3)") or d.action.value == "non-compliant"]
    assert used
    for decision in used:
        assert decision.computed["period_rule"] in ("civil-code", "elapsed"), decision
        last = decision.computed["period_last_day"]
        assert isinstance(last, str)
        if decision.action.value in ("renewal-blocked", "non-compliant", "terminate"):
            assert last in decision.explanation_en
            assert last in decision.explanation_ja
