"""What of a PostgreSQL URI may be printed: never any of its passwords.

A DSN is text a user wrote, and a password in it may hold any of the URI's delimiters. libpq
reads the userinfo up to the ``@`` before the first ``/`` (``?`` and ``#`` included), then the
query after the first ``?``. When a ``/`` in a password or an ``@`` in a query parameter makes
those readings disagree, every text either reading takes for a password is withheld: a redaction
that shows less is a nuisance, one that shows a password is a leak.
"""

from __future__ import annotations

import re
import urllib.parse

__all__ = ["dsn_has_password", "redact_dsn"]

_SECRET_PARAMETERS = frozenset({"password", "sslpassword"})

_HOSTS = re.compile(r"(?:\[[^\]]*\]|[^:,\[\]/?#@]*)(?::\d+)?"
                    r"(?:,(?:\[[^\]]*\]|[^:,\[\]/?#@]*)(?::\d+)?)*")
"""``host[:port][,host[:port]…]``: text that can only be hosts, not a ``user:password``
(a port is digits)."""

UNSHOWN = "postgresql://…"
"""What is printed of a DSN when every part of it might be a secret."""


def _userinfo_end(rest: str) -> int:
    """Where, in a URI after its ``://``, the ``@`` that ends a ``user:password`` is (-1: none).

    The ``@`` before the first ``/`` (libpq's reading), unless the text before a ``?`` can only
    be hosts: then that ``@`` is in a query parameter (``host:5432?user=a@b``). A password
    holding a ``/`` (libpq then takes the rest for a host and a path, and fails) is still a
    password: an ``@`` after a ``:`` further on, before the query, or after a ``?`` when what
    precedes it can only be a ``user:password``, ends it."""
    slash = rest.find("/")
    query = rest.find("?")
    at = rest.rfind("@", 0, slash if slash >= 0 else len(rest))
    if at >= 0 and not (0 <= query < at and _HOSTS.fullmatch(rest[:query])):
        return at
    if slash >= 0:
        path_end = rest.find("?", slash)
        at = rest.rfind("@", slash, path_end if path_end >= 0 else len(rest))
        if at >= 0 and ":" in rest[:at]:
            return at
    head = rest[:min(end for end in (slash, query, len(rest)) if end >= 0)]
    if query >= 0 and ":" in head and not _HOSTS.fullmatch(head):
        return rest.find("@", query)
    return -1


def _is_secret_pair(pair: str) -> bool:
    """Whether a query's ``key=value`` gives a password (a key is compared decoded, so
    ``pass%77ord=`` is still a password)."""
    return urllib.parse.unquote_plus(pair.split("=", 1)[0]).strip().lower() in _SECRET_PARAMETERS


def _secret_pairs(query: str) -> list[str]:
    """The values of the query's password parameters."""
    return [pair.partition("=")[2] for pair in query.split("&") if _is_secret_pair(pair)]


def _secrets(dsn: str) -> list[str]:
    """Every text that some reading of ``dsn`` takes for a password (possibly empty texts: a
    ``password=`` parameter with no value still says the user meant to write one)."""
    start = dsn.find("://")
    if start < 0:
        return []
    rest = dsn[start + 3:]
    found: list[str] = []
    slash = rest.find("/")
    userinfo_end = _userinfo_end(rest)
    for at in {userinfo_end, rest.rfind("@", 0, slash if slash >= 0 else len(rest))}:
        if at >= 0 and ":" in rest[:at]:
            found.append(rest[:at].split(":", 1)[1])
    query = rest.find("?")
    if query >= 0:
        found += _secret_pairs(rest[query + 1:])
    tail = rest[userinfo_end + 1:]
    query = tail.find("?")
    if query >= 0:
        found += _secret_pairs(tail[query + 1:])
    found += _libpq_secrets(dsn)
    return found


def _libpq_secrets(dsn: str) -> list[str]:
    """The passwords libpq itself reads in ``dsn`` (the reading that connects), when psycopg
    can parse it."""
    try:
        from psycopg.conninfo import conninfo_to_dict

        parsed = conninfo_to_dict(dsn)
    except Exception:  # unparseable: the other readings still apply
        return []
    return [str(parsed[key]) for key in _SECRET_PARAMETERS if parsed.get(key) is not None]


_WINDOW = 3
"""A password is withheld if any run of this many of its characters would be printed."""


def _shows(secret: str, shown: str) -> bool:
    """Whether ``shown`` holds any part of ``secret``: a run of :data:`_WINDOW` characters, or
    all of a shorter one. urlsplit drops tabs and line ends and cuts at a ``#``, so a password
    can reach the text in pieces; a run of a few characters is what any piece holds."""
    if not secret:
        return False
    for text in {secret, secret.replace("\t", "").replace("\r", "").replace("\n", "")}:
        if len(text) <= _WINDOW:
            if text and text in shown:
                return True
            continue
        if any(text[i:i + _WINDOW] in shown for i in range(len(text) - _WINDOW + 1)):
            return True
    return False


def dsn_has_password(dsn: str) -> bool:
    """Whether ``dsn`` holds a secret :func:`redact_dsn` withholds: a file holding it must not
    be readable by others."""
    return bool(_secrets(dsn))


def redact_dsn(dsn: str) -> str:
    """``dsn`` without a password (for messages and logs): the userinfo's password and the
    ``password`` and ``sslpassword`` query parameters go; the rest of the query stays, so the
    schema (``options=-csearch_path=…``) and the TLS settings show which ledger is meant.
    ``passfile`` stays: it names a file, it is not a secret. When any part of a password
    would still be in what is left (the readings disagree), only :data:`UNSHOWN` is
    printed."""
    start = dsn.find("://")
    if start < 0:
        return dsn
    rest = dsn[start + 3:]
    at = _userinfo_end(rest)
    if at >= 0:
        # Any ?, # or / of the user name escaped, so that urlsplit cannot take them for the
        # start of the query, fragment or path.
        user = rest[:at].split(":", 1)[0]
        user = user.replace("?", "%3F").replace("#", "%23").replace("/", "%2F")
        rest = f"{user}@{rest[at + 1:]}"
    try:
        parts = urllib.parse.urlsplit(f"{dsn[:start]}://{rest}")
    except ValueError:
        return UNSHOWN
    kept = [pair for pair in parts.query.split("&") if pair and not _is_secret_pair(pair)]
    query = "&".join(kept)
    # Written out (urlunsplit drops the // of an empty host: a socket DSN, postgresql:///db).
    shown = f"{parts.scheme}://{parts.netloc}{parts.path}" + (f"?{query}" if query else "")
    if any(_shows(secret, shown) for secret in _secrets(dsn)):
        return UNSHOWN
    return shown
