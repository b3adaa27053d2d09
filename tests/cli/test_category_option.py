"""``--category`` takes I, II or III in either case, on every command that has it.

``scan --category iii`` and ``inspect --category iii`` were usage errors (exit 2) while
``policy classify --category iii`` and the configuration's ``category = "iii"`` were accepted:
the commands now share one choice type, ``policy.cliutil.CATEGORY_CHOICE``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from agent.main import certescrow
from policy.cliutil import CATEGORY_CHOICE
from tests.agent.scan_fixtures import write
from tests.certfactory import make_cert


def _options_named(command: click.Command, name: str,
                   path: str = "certescrow") -> Iterator[tuple[str, click.Parameter]]:
    """Every option called ``name`` in the command tree (imported group by group)."""
    for param in command.params:
        if param.name == name:
            yield path, param
    if isinstance(command, click.Group):
        ctx = click.Context(command)
        for sub in command.list_commands(ctx):
            child = command.get_command(ctx, sub)
            if child is not None:
                yield from _options_named(child, name, f"{path} {sub}")


def test_every_category_option_is_the_one_shared_choice() -> None:
    found = dict(_options_named(certescrow, "category"))
    assert {"certescrow scan", "certescrow inspect", "certescrow policy classify",
            "certescrow fleet assign"} <= set(found)
    assert {path: param.type is CATEGORY_CHOICE for path, param in found.items()} == \
        dict.fromkeys(found, True)


@pytest.mark.parametrize("command", ["scan", "inspect", "policy classify"])
@pytest.mark.parametrize("written", ["iii", "III", "Iii"])
def test_lowercase_category_binds_like_the_terms_name(command: str, written: str,
                                                      tmp_path: Path) -> None:
    path = write(tmp_path / "cert.pem", make_cert().pem)
    result = CliRunner().invoke(certescrow, [*command.split(), "--json", "--category", written,
                                             "--at", "2026-02-01", str(path)])
    assert result.exit_code == 0, result.stderr
    body = json.loads(result.stdout)
    rows = body["certificates"] if isinstance(body, dict) else body
    assert rows[0]["category"] == "III"
