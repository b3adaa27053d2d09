"""The shape of the house, checked: a change that breaks the layering fails CI.

* ``policy`` imports nothing from ``agent`` or ``vault``, and no crypto library at all: the
  agent turns certificates into ``CertificateFacts`` (policy commands that take certificate
  files are handed the agent's reader by the root command).
* ``vault`` imports nothing from ``policy`` or ``agent``: it knows nothing of the contract.
* only ``vault/envelope.py`` imports ``cryptography.hazmat.primitives.ciphers`` (the AEAD layer).
* policy rules never read the clock.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def _offenders(package: str, forbidden: tuple[str, ...],
               allowed_files: tuple[str, ...] = ()) -> list[str]:
    bad = []
    for path in _modules(package):
        rel = path.relative_to(ROOT).as_posix()
        if rel in allowed_files:
            continue
        for name in _imports(path):
            if name == "" or not name.startswith(forbidden):
                continue
            if any(name == f or name.startswith(f + ".") for f in forbidden):
                bad.append(f"{rel} imports {name}")
    return bad


def test_packages_exist() -> None:
    for package in ("agent", "policy", "vault"):
        assert _modules(package), f"{package}/ has no modules"


def test_policy_imports_nothing_from_agent_or_vault() -> None:
    assert _offenders("policy", ("agent", "vault")) == []


def test_policy_imports_no_crypto_library() -> None:
    assert _offenders("policy", ("cryptography", "OpenSSL")) == []


def test_vault_knows_nothing_of_the_contract_or_the_agent() -> None:
    assert _offenders("vault", ("policy", "agent")) == []


def test_only_the_envelope_layer_touches_ciphers() -> None:
    offenders = [
        line
        for line in _offenders("vault", ("cryptography.hazmat.primitives.ciphers",),
                               allowed_files=("vault/envelope.py",))
    ]
    assert offenders == []


@pytest.mark.parametrize("path", _modules("policy"), ids=lambda p: p.name)
def test_policy_never_reads_the_clock(path: Path) -> None:
    if path.name == "cliutil.py":  # the one sanctioned clock read for CLIs (resolve_at)
        return
    text = path.read_text(encoding="utf-8")
    for needle in ("datetime.now(", "datetime.utcnow(", "time.time(", "date.today("):
        assert needle not in text, f"{path.name} reads the clock ({needle}); take `at` instead"


def test_the_layering_check_would_catch_a_violation(tmp_path: Path) -> None:
    # Guard against a check that cannot fail: the same analysis on a planted violation.
    planted = tmp_path / "bad.py"
    planted.write_text("from agent.scan import scan_paths\nimport vault.store\n")
    assert {"agent.scan", "vault.store"} <= _imports(planted)


def test_the_escapes_of_untrusted_text_stand_below_every_package() -> None:
    """``untrusted`` is what agent, policy and vault all print attacker-controlled text
    through (one table of escapes) and read small files of untrusted paths with (one reader),
    so it may import none of them (policy and vault could not
    import it otherwise without breaking the rules above)."""
    assert _modules("untrusted")
    assert _offenders("untrusted", ("agent", "policy", "vault", "cryptography", "click")) == []
