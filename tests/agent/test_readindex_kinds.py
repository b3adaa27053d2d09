"""The read index accepts, at the next start, every kind of warning the product itself writes:
each clause a finding or decision can cite, each finding code and action name. It once refused
its own "BR §6.3.2" (the characters it accepted had no ``§``), so every restart of a daemon
watching a certificate longer than the BR maximum discarded what the files said. This walks the
source for every clause and code the code can write, so a clause with a new character fails
here rather than in the field; what no daemon writes is still refused
(tests/agent/test_restart_summary.py).
"""

from __future__ import annotations

import ast
import io
from collections.abc import Iterator
from pathlib import Path

from agent.index import Problem
from agent.logs import EventLog, configure_logging
from agent.readindex import ReadIndexFile
from policy.decisions import Action
from policy.events import TERMINATION_CLAUSES

ROOT = Path(__file__).resolve().parents[2]

INDIRECT_CLAUSES = frozenset({
    "clause", "allowance_clause", "paragraph", "_CLAUSE[fee]", "state.termination_clause",
    "d.clause", "result.clause", "finding.clause", "event.clause", "str(raw['clause'])",
    "clause.strip()",
})
"""Every ``clause=`` argument that is not a literal, as written. Their values are the literals
assigned to names of clauses (collected below) or come from a ledger or another finding; a new
one fails :func:`test_every_clause_argument_is_a_literal_or_a_known_name` until it is read and
listed here."""


def _modules() -> Iterator[tuple[Path, ast.Module]]:
    for package in ("policy", "agent", "vault"):
        for path in sorted((ROOT / package).rglob("*.py")):
            yield path, ast.parse(path.read_text(encoding="utf-8"))


def _values(node: ast.expr) -> tuple[set[str], set[str]]:
    """The literals an expression can evaluate to, and its other possible values (as
    written): through ``a if c else b``, ``a or b`` and a mapping's or tuple's values, not
    into a call's arguments or a condition."""
    if isinstance(node, ast.Constant):
        return ({node.value} if isinstance(node.value, str) else set()), set()
    if isinstance(node, ast.IfExp):
        parts: list[ast.expr] = [node.body, node.orelse]
    elif isinstance(node, ast.BoolOp):
        parts = list(node.values)
    elif isinstance(node, ast.Dict):
        parts = list(node.values)
    elif isinstance(node, ast.Tuple | ast.List | ast.Set):
        parts = list(node.elts)
    else:
        return set(), {ast.unparse(node)}
    literals: set[str] = set()
    others: set[str] = set()
    for part in parts:
        more, rest = _values(part)
        literals |= more
        others |= rest
    return literals, others


def _is_clause_name(name: str) -> bool:
    lowered = name.lower()
    return lowered.endswith("clause") or lowered in {"paragraph", "_proviso", "proviso"}


def _target_names(node: ast.Assign | ast.AnnAssign) -> list[str]:
    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
    return [t.id if isinstance(t, ast.Name) else t.attr for t in targets
            if isinstance(t, ast.Name | ast.Attribute)]


def _written() -> tuple[set[str], set[str], set[str]]:
    """(every clause literal, every code literal, the ``clause=`` values not literal)."""
    clauses: set[str] = set(TERMINATION_CLAUSES)
    codes: set[str] = {a.value for a in Action}
    indirect: set[str] = set()
    for _, tree in _modules():
        for node in ast.walk(tree):
            if isinstance(node, ast.keyword) and node.arg == "clause":
                literals, others = _values(node.value)
                clauses |= literals
                indirect |= others
            elif isinstance(node, ast.keyword) and node.arg == "code":
                codes |= _values(node.value)[0]
            elif isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
                names = _target_names(node)
                if any(_is_clause_name(n) for n in names):
                    clauses |= _values(node.value)[0]
                if "code" in names:
                    codes |= _values(node.value)[0]
    return clauses, codes, indirect


def test_every_clause_argument_is_a_literal_or_a_known_name() -> None:
    clauses, _, indirect = _written()
    assert indirect - INDIRECT_CLAUSES == set(), \
        "a clause from a new place: check that its values reach _written()"
    # the walk found what the product cites (a walk that finds nothing proves nothing)
    assert {"BR §6.3.2", "Art.6(3) proviso", "Art.10, Appx1.3", "Art.3 proviso", "Art.4(7)",
            "Art.9(2)", "Appx1.1", ""} <= clauses


def test_the_read_index_keeps_every_kind_the_product_can_write(tmp_path: Path) -> None:
    """Written by one start, each kind is counted by the next, none discarded."""
    clauses, codes, _ = _written()
    kinds = sorted({(event, code, clause) for clause in clauses for code in codes
                    for event in ("finding", "action") if code in {"expired", "refuse"}}
                   | {("finding", code, "BR §6.3.2") for code in codes})
    problems: dict[str, tuple[Problem, ...]] = {
        f"/store/{n}.pem": ((0, f"{n:064x}", event, code, clause, "warning"),)
        for n, (event, code, clause) in enumerate(kinds)}
    stream = io.StringIO()
    log = EventLog(configure_logging("text", stream=stream))
    path = tmp_path / "ri.sqlite3"
    first = ReadIndexFile(path, host="h", log=log)
    first.write([], [], problems=problems)
    first.close()
    again = ReadIndexFile(path, host="h", log=log)
    again.load()
    said, _ = again.said()
    again.close()
    assert "read-index-said-discarded" not in stream.getvalue()
    assert sorted((event, code, clause) for event, code, clause, *_ in said) == kinds


def test_a_clause_no_daemon_writes_is_still_refused(tmp_path: Path) -> None:
    """Admitting ``§`` admitted nothing else: a clause with a bidi override is a foreign row."""
    stream = io.StringIO()
    log = EventLog(configure_logging("text", stream=stream))
    path = tmp_path / "ri.sqlite3"
    first = ReadIndexFile(path, host="h", log=log)
    first.write([], [], problems={
        "/store/a.pem": ((0, "0" * 64, "finding", "expired", "BR §6.3.2\u202e", "critical"),)})
    first.close()
    again = ReadIndexFile(path, host="h", log=log)
    again.load()
    assert again.said() == ([], [])
    again.close()
    assert stream.getvalue().count("read-index-said-discarded") == 1
