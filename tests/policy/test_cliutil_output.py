"""The streamed outputs write exactly what the whole-document ones did (issue 13 prep)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from policy.category import Category
from policy.cliutil import (
    echo_json,
    echo_json_array,
    echo_json_texts,
    echo_json_with_array,
    echo_lines,
    json_element,
    to_jsonable,
)

DOCUMENTS: list[list[Any]] = [
    [],
    [{}],
    [{"a": 1}],
    [{"contract": "C-1", "due": date(2026, 5, 1), "at": datetime(2026, 5, 1, tzinfo=UTC),
      "explanation_ja": "有効期間の末日 2026-05-01", "nested": {"list": [1, [2, {}], []],
                                                            "empty": {}}},
     {"text": "line\nbreak \"quoted\" \\ back", "n": None, "f": 1.5, "b": True}] * 700,
    [{"location": "/srv/caf\udce9.pem"}],
    [1, "two", [3]],
    [{"floats": [0.1, 1e16, 1e-07, -0.0, 123456789.125, float("inf")], "big": 2**70,
      "control": "\x00\x1f\x7f\u2028 \"\\/", "keys": {1: "int key", None: "none key"}}],
]


@pytest.mark.parametrize("doc", DOCUMENTS, ids=lambda d: f"{len(d)} items")
def test_the_streamed_json_array_is_byte_for_byte_the_whole_document(
        doc: list[Any], capsys: pytest.CaptureFixture[str]) -> None:
    echo_json(doc)
    whole = capsys.readouterr().out
    echo_json_array(iter(doc))
    streamed = capsys.readouterr().out
    assert streamed == whole
    assert json.loads(streamed) == to_jsonable(doc)


@pytest.mark.parametrize("doc", DOCUMENTS, ids=lambda d: f"{len(d)} items")
def test_stored_elements_as_bytes_or_text_write_the_whole_document(
        doc: list[Any], capsys: pytest.CaptureFixture[str]) -> None:
    """``policy actions --json`` writes the projection's stored elements (UTF-8 bytes, as
    the ledger hands them over) merged with fresh ones (text): the same bytes as the whole
    document, on a binary stdout and on a text-only one."""
    import io
    import sys

    echo_json(doc)
    whole = capsys.readouterr().out
    elements = [json_element(item) for item in doc]
    # Alternate bytes and text (a lone surrogate cannot be stored: it stays text).
    mixed: list[str | bytes] = [
        text.encode() if i % 2 and "\udce9" not in text else text
        for i, text in enumerate(elements)]
    echo_json_texts(iter(mixed))
    assert capsys.readouterr().out == whole
    text_only = io.StringIO()
    real, sys.stdout = sys.stdout, text_only
    try:
        echo_json_texts(iter(mixed))
    finally:
        sys.stdout = real
    assert text_only.getvalue() == whole


@pytest.mark.parametrize("doc", DOCUMENTS, ids=lambda d: f"{len(d)} items")
def test_a_document_ending_in_a_streamed_array_is_the_whole_document(
        doc: list[Any], capsys: pytest.CaptureFixture[str]) -> None:
    """``policy forecast --json``: the document's last key an array written as its elements
    are produced, byte for byte what ``echo_json`` writes of the whole, on a binary stdout
    and on a text-only one."""
    import io
    import sys

    head = {"at": datetime(2026, 5, 1, tzinfo=UTC), "tiers": [{"tier": "1y"}], "ledger": None}
    echo_json({**head, "contracts": doc})
    whole = capsys.readouterr().out
    echo_json_with_array(head, "contracts", iter(doc))
    assert capsys.readouterr().out == whole
    text_only = io.StringIO()
    real, sys.stdout = sys.stdout, text_only
    try:
        echo_json_with_array(head, "contracts", iter(doc))
    finally:
        sys.stdout = real
    assert text_only.getvalue() == whole


def test_batched_lines_are_the_same_lines(capsys: pytest.CaptureFixture[str]) -> None:
    lines = [f"line {i} 日本" for i in range(1_300)]
    echo_lines(iter(lines))
    assert capsys.readouterr().out == "".join(f"{line}\n" for line in lines)
    echo_lines(iter([]))
    assert capsys.readouterr().out == ""


def test_the_decisions_of_a_real_sweep_stream_as_the_whole_document(
        capsys: pytest.CaptureFixture[str]) -> None:
    from policy.catalogue import load_catalogue
    from policy.evaluate import evaluate_contract
    from policy.settings import PolicySettings
    from policy.state import fold
    from tests.policy.ledger_fixtures import T0, accepted, bound, facts

    at = T0 + timedelta(days=10)
    decisions = [d for item, category in (("byo", "III"), ("globalsign-ov", "I"))
                 for d in evaluate_contract(
                     fold("c1", [accepted(item=item, category=Category(category)),
                                 bound(cert=facts(lifetime=timedelta(days=90)))], at=at),
                     load_catalogue(), PolicySettings(), at=at)]
    assert len(decisions) > 3
    echo_json(decisions)
    whole = capsys.readouterr().out
    echo_json_array(decisions)
    assert capsys.readouterr().out == whole
