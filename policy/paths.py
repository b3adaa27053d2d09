"""Where the policy core's files live when nobody says: the per-user defaults.

Every command runs with no configuration at all, so each file has a default under the XDG base
directories; ``--ledger``/``--catalogue`` beat the ``[policy]`` configuration, which beats the
default. This module reads the environment (never the clock) and is used only by CLIs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from policy.errors import CatalogueError, LedgerError

__all__ = [
    "LedgerLocation",
    "catalogue_path",
    "default_ledger_path",
    "ledger_is_explicit",
    "ledger_location",
    "ledger_path",
    "missing_ledger_error",
    "no_ledger_yet",
    "state_home",
]

LedgerLocation = Path | str
"""Where a ledger is: a :class:`~pathlib.Path` to an SQLite file, or a ``postgresql://`` DSN
kept as the text it was written as (a :class:`~pathlib.Path` collapses ``//``: the socket DSN
``postgresql:///ledger`` would become host ``ledger``)."""


def state_home() -> Path:
    """``$XDG_STATE_HOME``, else ``~/.local/state`` (XDG Base Directory Specification; a
    relative value is ignored, as the specification requires)."""
    raw = os.environ.get("XDG_STATE_HOME", "")
    if raw and Path(raw).is_absolute():
        return Path(raw)
    return Path.home() / ".local" / "state"


def default_ledger_path() -> Path:
    """``$XDG_STATE_HOME/certescrow/ledger.sqlite3``: the embedded ledger's per-user default."""
    return state_home() / "certescrow" / "ledger.sqlite3"


def ledger_location(text: str) -> LedgerLocation:
    """``--ledger`` or ``[policy].ledger`` as written: a DSN stays text, anything else is a
    path (``~`` expanded). A ``key=value`` connection string or a mangled URI is refused
    without repeating it (it may hold a password)."""
    from .storage import is_postgres_dsn, refuse_conninfo

    if is_postgres_dsn(text):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # bytes of the command line that are not UTF-8
            raise LedgerError("a PostgreSQL URI that is not UTF-8 text") from None
        return text
    refuse_conninfo(text)
    return Path(text).expanduser()


def ledger_path(option: LedgerLocation | None, section: Mapping[str, Any]) -> LedgerLocation:
    """The ledger to use: ``--ledger`` (already a :func:`ledger_location`), else
    ``[policy].ledger`` (``""`` means the default), else :func:`default_ledger_path`."""
    if option is not None:
        return option
    configured = section.get("ledger", "")
    if not isinstance(configured, str):
        raise LedgerError(f"policy.ledger: expected a path string, got {configured!r}")
    if configured.strip():
        return ledger_location(configured.strip())
    return default_ledger_path()


def ledger_is_explicit(option: LedgerLocation | None, section: Mapping[str, Any]) -> bool:
    """Whether someone named the ledger (``--ledger`` or ``[policy].ledger``): a named ledger
    that does not exist is a mistake to report, not an empty ledger (a mistyped path must never
    answer "Nothing due"); the per-user default not existing yet just means nothing was
    recorded."""
    configured = section.get("ledger", "")
    return option is not None or (isinstance(configured, str) and bool(configured.strip()))


def missing_ledger_error(location: LedgerLocation, *, named_by: str) -> LedgerError:
    """A ledger someone named (``named_by``: ``--ledger``, ``[policy].ledger in FILE``) that
    does not exist: exit 13, never an empty answer (a mistyped path must not say "Nothing
    due"). The message says where the name came from, so the operator knows what to fix."""
    return LedgerError(f"{ledger_display(location)}: no ledger here (named by {named_by}: "
                       "check the path; a command that records, e.g. `certescrow contract "
                       "add`, creates it)")


def no_ledger_yet(location: LedgerLocation, *, nothing_to: str) -> str:
    """What a command says of the per-user default ledger not existing yet, a fresh desk's
    state: where it looked, that there is ``nothing_to`` do, and how the ledger comes to be.
    Not an error (exit 0), as ``contract list`` and ``policy actions`` answer it: a daily
    ``policy refresh`` must not fail before the first contract is recorded."""
    return (f"No ledger yet at {ledger_display(location)} (the per-user default: nothing has "
            f"been recorded): nothing to {nothing_to}. The first command that records creates "
            "it (`certescrow contract add`); to use another ledger, give --ledger or set "
            "[policy].ledger.")


def catalogue_path(option: Path | None, section: Mapping[str, Any]) -> Path | None:
    """An amended catalogue to load: ``--catalogue``, else ``[policy].catalogue``; ``None`` (the
    embedded catalogue) when neither names one."""
    if option is not None:
        return Path(option).expanduser()
    configured = section.get("catalogue", "")
    if not isinstance(configured, str):
        raise CatalogueError(f"policy.catalogue: expected a path string, got {configured!r}")
    return Path(configured.strip()).expanduser() if configured.strip() else None


def ledger_exists(location: LedgerLocation) -> bool:
    """Whether there is a ledger at ``location``: a file, or (a DSN) a database, which the
    ledger itself checks when it opens it. A link counts even when it leads nowhere: a
    default path linked to a ledger that is gone is a fault to report, not "no ledger yet"."""
    return isinstance(location, str) or os.path.lexists(location)


def ledger_display(location: LedgerLocation) -> str:
    """``location`` for messages and output: a PostgreSQL DSN without its password."""
    from .storage import redact_dsn

    return redact_dsn(location) if isinstance(location, str) else str(location)
