"""A file that is not TOML is said in our words, with its line and column, never tomllib's.

``Error: config.toml: not valid TOML: Cannot declare ('agent',) twice (at line 7, column 7)``
showed the library's sentence and a Python tuple to an operator who had written ``[agent]``
twice. Every TOML file certescrow reads (the configuration, ``policy serve``'s, the catalogue,
the SC-081 schedule) goes through ``policy.tomlparse.parse_toml``.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from agent.main import main
from policy.catalogue import load_catalogue
from policy.errors import CatalogueError
from policy.forecast import load_schedule
from policy.tomlparse import TomlSyntaxError, parse_toml

DUPLICATE_AGENT = ('[policy]\nnotice_lead_days = 90\n\n[agent]\nhost = "web1"\n\n'
                   '[agent]\nquiet_period_ms = 5\n')
"""The reviewer's file: ``[agent]`` a second time on line 7."""

BROKEN: list[tuple[str, str]] = [
    (DUPLICATE_AGENT,
     "at line 7, column 7: the table [agent] is declared twice (merge the two into one)"),
    ('a = 1\na = 2\n', "at line 2, column 6: the key a is defined twice"),
    ('host = web1\n', 'at line 1, column 8: not a TOML value (text needs quotes: "…")'),
    ('host = "web1\n', "at line 1, column 13: a string is not closed before the end of its line"),
    ('ids = [1, 2\n', "at the end of the file: an array is not closed"),
    ('[agent\n', "at line 1, column 7: a table header is not closed by `]`"),
    ('path = "C:\\new\\x"\n',
     "at line 1, column 17: a backslash that is not an escape (use single quotes for a path)"),
    ('x = { a = 1, a = 2 }\n', "at line 1, column 19: a key is defined twice in an inline table"),
    ('a = 1 b\n', "at line 1, column 7: something follows a value on the same line"),
    ('d = 2026-02-30\n', "at line 1, column 5: not a valid date or time"),
]


def _library_words(text: str) -> str:
    """What tomllib itself says of ``text``, without its coordinates."""
    with pytest.raises(tomllib.TOMLDecodeError) as info:
        tomllib.loads(text)
    return re.sub(r"\s*\(at [^)]*\)$", "", str(info.value))


@pytest.mark.parametrize(("text", "said"), BROKEN)
def test_a_syntax_error_is_our_sentence_with_line_and_column(text: str, said: str) -> None:
    with pytest.raises(TomlSyntaxError) as info:
        parse_toml(text)
    message = str(info.value)
    assert message.startswith(f"not valid TOML {said}"), message
    assert _library_words(text) not in message


def test_an_error_in_a_value_never_repeats_the_value() -> None:
    """A configuration holds passwords: a control character in one is located, not quoted."""
    with pytest.raises(TomlSyntaxError) as info:
        parse_toml('pkcs12_passwords = ["hunter2\x01"]\n')
    assert str(info.value) == ("not valid TOML at line 1, column 29: a control character "
                               "TOML does not allow there")


def test_an_error_we_do_not_recognise_keeps_its_place_and_not_its_words(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def loads(_text: str) -> dict[str, object]:
        raise tomllib.TOMLDecodeError("Some future wording ('x',) (at line 3, column 2)")

    monkeypatch.setattr(tomllib, "loads", loads)
    with pytest.raises(TomlSyntaxError) as info:
        parse_toml("")
    assert str(info.value) == "not valid TOML at line 3, column 2"


def test_a_duplicate_agent_table_exits_31_naming_file_line_and_reason(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config.toml"
    config.write_text(DUPLICATE_AGENT)
    with pytest.raises(SystemExit) as info:
        main(["--config", str(config), "scan", str(tmp_path)])
    assert info.value.code == 31
    assert capsys.readouterr().err == (
        f"Error: {config}: not valid TOML at line 7, column 7: the table [agent] is declared "
        "twice (merge the two into one)\n")


def test_the_catalogue_and_the_schedule_say_it_the_same_way(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("[cas]\n[cas]\n")
    expected = (f"{broken}: not valid TOML at line 2, column 5: the table [cas] is declared "
                "twice (merge the two into one)")
    with pytest.raises(CatalogueError) as catalogue:
        load_catalogue(broken)
    with pytest.raises(CatalogueError) as schedule:
        load_schedule(broken)
    assert str(catalogue.value) == str(schedule.value) == expected
