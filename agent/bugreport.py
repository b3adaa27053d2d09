"""A bug's whereabouts for the daemon's log, without its message.

A traceback is what a bug report needs, but the last line of one is the exception's text, and a
library's text may quote what it was handed: key bytes from a malformed key, a file name an
attacker chose. So the daemon logs, for an unexpected exception, its type and the frames it
passed through (file, line, function), never its message or any argument.
"""

from __future__ import annotations

import os
import traceback
from typing import TypedDict

__all__ = ["BugFields", "bug_fields"]


class BugFields(TypedDict):
    error: str
    where: str

_FRAMES = 12
"""The innermost frames kept: enough to find the bug, short enough for one log line."""


def bug_fields(exc: BaseException) -> BugFields:
    """``error`` (the exception's type) and ``where`` (innermost frames last) for a log line."""
    frames = traceback.extract_tb(exc.__traceback__)[-_FRAMES:]
    where = " <- ".join(f"{_short(f.filename)}:{f.lineno} in {f.name}" for f in reversed(frames))
    kind = type(exc)
    name = kind.__name__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__name__}"
    return {"error": name, "where": where or "(no frames)"}


def _short(filename: str) -> str:
    """``…/site-packages/cryptography/x.py`` -> ``cryptography/x.py``; ours from the package."""
    parts = filename.replace(os.sep, "/").split("/")
    for anchor in ("site-packages", "dist-packages"):
        if anchor in parts:
            return "/".join(parts[parts.index(anchor) + 1:])
    for top in ("agent", "policy", "vault"):
        if top in parts:
            return "/".join(parts[len(parts) - 1 - parts[::-1].index(top):])
    return parts[-1]
