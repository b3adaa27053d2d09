"""The streamed outputs write exactly what the whole-document ones did (issue 13 prep)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any

import pytest

from policy.cliutil import echo_json, echo_json_array, echo_lines, to_jsonable

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


def test_batched_lines_are_the_same_lines(capsys: pytest.CaptureFixture[str]) -> None:
    lines = [f"line {i} 日本" for i in range(1_300)]
    echo_lines(iter(lines))
    assert capsys.readouterr().out == "".join(f"{line}\n" for line in lines)
    echo_lines(iter([]))
    assert capsys.readouterr().out == ""
