"""Certbot-set consistency: when a directory's key and certificates agree.

certbot renews by writing ``archive/x/cert2.pem`` … and then, *one file at a time*, unlinking
and re-creating the symlinks in ``live/x/``. Between two of those steps ``cert.pem`` and
``privkey.pem`` belong to different generations. A directory holding a private key beside
certificates is therefore handled as one set: after the quiet period the whole set is re-read,
a file that vanished mid-read means "try again after another quiet period", and the set is
reported only once every leaf certificate in it that should pair with a key does (SPKI). If it
still disagrees after :data:`MAX_SET_ATTEMPTS` quiet periods the disagreement is real: it is
reported with ``key_matches=False`` and logged.

This module holds the decisions (is this directory a set, which leaves disagree) and the
little state they need (attempts per set, paths that paired when last accepted); the reading and
reporting stay in :mod:`agent.storesync`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

from .records import CertificateRecord, FileResult

__all__ = [
    "CERTBOT_LEAF_FILES",
    "MAX_SET_ATTEMPTS",
    "SET_MAX_FILES",
    "SetState",
    "is_key_name",
    "key_lookup",
    "leaf_of",
]

MAX_SET_ATTEMPTS = 10
"""Quiet periods a key/certificate set may disagree before the disagreement is reported."""
CERTBOT_LEAF_FILES = frozenset({"cert.pem", "fullchain.pem"})
"""certbot's files whose first certificate must match ``privkey.pem``."""
SET_MAX_FILES = 64
"""A directory with more entries than this is a flat store, not a certbot-style set."""


def is_key_name(name: str) -> bool:
    """A file name that says "private key" (certbot's ``privkey.pem``, ``*.key``)."""
    return name.startswith("privkey") or name.endswith((".key", "key.pem"))


def key_lookup(results: Sequence[FileResult]) -> set[str]:
    """SPKI SHA-256 of every private key in ``results``."""
    return {k.spki_sha256 for r in results for k in r.keys if k.spki_sha256}


def leaf_of(result: FileResult) -> CertificateRecord | None:
    """The first non-CA certificate of a file (the one a key beside it must match)."""
    for record in result.certificates:
        if not record.facts.is_ca:
            return record
    return None


class SetState:
    """Per-set retry counts and the paths whose leaf paired with a key when last accepted."""

    def __init__(self) -> None:
        self.attempts: dict[str, int] = {}
        self.paired: set[str] = set()

    def is_set(self, directory: str, *, has_keys: Callable[[str], bool]) -> bool:
        """A directory holding a private key beside certificates (certbot's ``live/x``).
        ``has_keys(path)`` says whether a file already read there held a key. A directory that
        cannot be listed (gone, unreadable) is not a set: its files are handled one by one."""
        try:
            names = os.listdir(directory)
        except OSError:
            return False
        if not names or len(names) > SET_MAX_FILES:
            return False
        for name in names:
            if is_key_name(name) or has_keys(os.path.join(directory, name)):
                return True
        return False

    def mismatched_leaves(self, results: Sequence[FileResult]) -> list[str]:
        """Files whose leaf certificate should pair with a key of the set and does not: the
        ones that paired when last accepted, and certbot's ``cert.pem``/``fullchain.pem``. A
        certificate that never had its key here (a directory of several sites, one key
        missing) is reported at once, with ``key_matches = false``, rather than waited for."""
        keys = key_lookup(results)
        if not keys:
            return []
        bad: list[str] = []
        for result in results:
            leaf = leaf_of(result)
            if leaf is None or leaf.spki_sha256 is None or leaf.spki_sha256 in keys:
                continue
            name = os.path.basename(result.path)
            if result.path in self.paired or name in CERTBOT_LEAF_FILES:
                bad.append(name)
        return bad

    def accepted(self, result: FileResult, keys: set[str]) -> None:
        """Remember whether ``result``'s leaf paired with a key of its unit."""
        leaf = leaf_of(result)
        if leaf is not None and leaf.spki_sha256 is not None and leaf.spki_sha256 in keys:
            self.paired.add(result.path)
        else:
            self.paired.discard(result.path)

    def forget(self, path: str) -> None:
        self.paired.discard(path)
        self.attempts.pop(path, None)
