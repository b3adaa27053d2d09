"""The escapes for attacker-controlled text, one per output: re-exported from
:mod:`vault.untrusted`, where they live so that the vault's own command line (which may not
import the agent) renders certificate names and file names with the very same functions."""

from __future__ import annotations

from vault.untrusted import (
    for_csv,
    for_log,
    for_terminal,
    json_text,
    json_utf8,
    json_utf8_checked,
    unescape,
)

__all__ = ["for_csv", "for_log", "for_terminal", "json_text", "json_utf8", "json_utf8_checked",
           "unescape"]
