"""``inspect``'s "what to do" says what to do, never "see `certescrow inspect`".

``inspect HOST:PORT`` of a chain that does not verify advised "see `certescrow inspect`
(chain-unverified)", inside ``inspect``'s own output: ``chain-unverified`` had no advice, and a
finding without advice fell back to a pointer meant for ``scan``'s table (which shows codes
only). ``chain-unverified`` now has advice, and in ``inspect`` a finding without advice is left
to its own message, printed just above.
"""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from agent.main import certescrow
from agent.rows import advice_for, what_to_do
from policy.decisions import Finding, Severity
from tests.agent.scan_fixtures import serve_tls


def test_inspect_of_an_unverified_live_chain_says_what_to_do(tmp_path: Path) -> None:
    with serve_tls(tmp_path) as server:
        result = CliRunner().invoke(certescrow, [
            "inspect", f"127.0.0.1:{server.port}", "--servername", "www.example.jp",
            "--at", "2026-02-01", "--timeout", "5"])
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert "chain does NOT verify" in out
    assert "certescrow inspect` (" not in out
    lines = out.splitlines()
    advice = lines[lines.index("  what to do:") + 1]
    assert advice.startswith("    - fix what the chain-unverified finding names (the chain the "
                             "server sends, the name or dates of its certificate, or the trust "
                             "anchors: --ca-file), reload the server")


def test_a_finding_without_advice_points_at_inspect_only_from_the_table() -> None:
    finding = Finding(code="some-new-finding", clause="", severity=Severity.WARNING,
                      message="what is wrong")
    assert what_to_do([finding], []) == []
    assert advice_for([("some-new-finding", int(Severity.WARNING))], []) == [
        "see `certescrow inspect` (some-new-finding)"]


def test_an_overdue_notice_says_how_to_record_it_even_with_no_contract_yet() -> None:
    """`certescrow contract notify` needs a contract id, and the certificate a row shows may
    be held by no contract yet (the review of session 13)."""
    (advice,) = advice_for([], [("notify", "2026-01-01", 2)])
    assert "certescrow contract notify ID" in advice
    assert "contract bind" in advice
