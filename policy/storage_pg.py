"""PostgreSQL storage through psycopg 3 and a connection pool (``psycopg_pool``).

Why a pool: the service handles many agents at once and each request's transaction is short;
a pool keeps a few connections open instead of paying a connection (and its authentication)
per request, and bounds how many the database sees from one process.

Why advisory locks: PostgreSQL's default isolation (READ COMMITTED) lets two transactions both
pass a check that only one of them may pass. A transaction that checks before it writes names
what it checks (``lock``), and holds ``pg_advisory_xact_lock`` on it until it ends, so writers
of the same thing run one after the other while unrelated writers do not wait.

SQL is written once with ``?`` placeholders (the SQLite form) and translated here. Driver
errors become :class:`LedgerError` with our text and the DSN without its password.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import logging
import re
import urllib.parse
from collections.abc import Iterator, Sequence
from typing import Any, Self

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from .dsn import UNSHOWN
from .errors import LedgerContentError, LedgerError
from .storage import StorageConflictError, redact_dsn

__all__ = ["ConnectFailure", "PostgresStorage", "classify_connect_failure",
           "describe_connect_failure", "describe_sqlstate", "ledger_error", "translate"]

POOL_MAX = 8
CONNECT_TIMEOUT_S = 10.0


@functools.lru_cache(maxsize=512)
def translate(sql: str) -> str:
    """``?`` placeholders to psycopg's ``%s`` (and a literal ``%`` to ``%%``). The project's
    SQL never has a ``?`` inside a string literal."""
    return sql.replace("%", "%%").replace("?", "%s")


_POOL_LOG = logging.getLogger("psycopg.pool")
# The pool's own lines (`discarding closed connection: <psycopg.Connection [BAD] at 0x…>`)
# are the library's words on the user's stderr: what failed is said by the error the
# command reports, in ours.
_POOL_LOG.addHandler(logging.NullHandler())
_POOL_LOG.propagate = False


def open_pool(dsn: str, *, max_size: int = POOL_MAX) -> ConnectionPool[Any]:
    """An open connection pool on ``dsn`` (autocommit), or a :class:`LedgerError` that names
    the database without its password."""
    try:
        # One direct connection first: a refused or misnamed database fails at once, where
        # the pool would keep retrying until its timeout.
        psycopg.connect(dsn, connect_timeout=int(CONNECT_TIMEOUT_S)).close()
        pool: ConnectionPool[Any] = ConnectionPool(
            dsn, min_size=1, max_size=max_size, open=False,
            kwargs={"autocommit": True, "connect_timeout": int(CONNECT_TIMEOUT_S)})
        pool.open(wait=True, timeout=CONNECT_TIMEOUT_S)
    except psycopg.Error as exc:
        raise LedgerError(f"{redact_dsn(dsn)}: {_describe_connect_error(exc, dsn)}") from None
    except PoolTimeout:
        raise LedgerError(f"{redact_dsn(dsn)}: {_CANNOT_CONNECT}") from None
    return pool


class _Tx:
    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def run(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            cur = self._conn.execute(translate(sql), tuple(params))
        except psycopg.errors.IntegrityError:
            raise StorageConflictError("a row with this key already exists") from None
        return cur.fetchall() if cur.description is not None else []


class PostgresStorage:
    dialect = "postgresql"

    def __init__(self, pool: ConnectionPool[Any], dsn: str) -> None:
        self._pool = pool
        self.where = redact_dsn(dsn)

    @classmethod
    def open(cls, dsn: str, *, max_size: int = POOL_MAX) -> Self:
        return cls(open_pool(dsn, max_size=max_size), dsn)

    def close(self) -> None:
        self._pool.close()

    @contextlib.contextmanager
    def transaction(self, *, lock: str | None = None) -> Iterator[_Tx]:
        try:
            with self._pool.connection() as conn, conn.transaction():
                if lock is not None:
                    conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                                 (lock,))
                yield _Tx(conn)
        except (psycopg.Error, PoolTimeout) as exc:
            raise ledger_error(self.where, exc) from None

    def run(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """One statement, autocommitted: one round trip (no BEGIN/COMMIT around it)."""
        try:
            with self._pool.connection() as conn:
                return _Tx(conn).run(sql, params)
        except (psycopg.Error, PoolTimeout) as exc:
            raise ledger_error(self.where, exc) from None


# What a misconfigured deployment most often meets, in words an operator can act on. The
# driver's own text is never printed: it may quote values (a row, a role, a password hint).
_SQLSTATE_WORDS: dict[str, str] = {
    "3F000": "the schema named in the DSN's search_path does not exist: check its options",
    "3D000": "the database named in the DSN does not exist",
    "28000": "PostgreSQL refused the authentication: check the DSN's user and pg_hba.conf",
    "28P01": "PostgreSQL refused the password: check the DSN's user and password",
    "42P01": "a table the ledger needs does not exist: is this the right database and schema?",
    "42501": "the DSN's user lacks a privilege the ledger needs: GRANT it, or connect as the "
             "ledger's owner",
    "53300": "PostgreSQL has too many connections: raise max_connections or lower the number "
             "of clients",
    "57P01": "the server ended this session (an administrator stopped the server or "
             "terminated the session)",
    "57P02": "PostgreSQL is shutting down for crash recovery",
    "57P03": "PostgreSQL is starting up or recovering and cannot accept connections yet",
}

# A whole class, when the exact state is not one of the above (SQLSTATE's first two
# characters, PostgreSQL manual, Appendix A).
_SQLSTATE_CLASS_WORDS: dict[str, str] = {
    "08": "the connection to PostgreSQL failed or was lost",
    "22": "PostgreSQL cannot store a value as given (its text or its size)",
    "28": "PostgreSQL refused the authentication",
    "53": "PostgreSQL ran out of a resource (connections, memory or disk)",
    "54": "a value exceeds a PostgreSQL limit (an index entry holds a few KB at most)",
    "57": "an administrator or the server interrupted the statement",
}


def describe_sqlstate(state: str) -> str:
    """Our words for ``state`` (a five-character SQLSTATE), the state after them in
    parentheses so that it can still be looked up."""
    words = (_SQLSTATE_WORDS.get(state) or _SQLSTATE_CLASS_WORDS.get(state[:2])
             or "PostgreSQL refused the statement")
    return f"{words} (SQLSTATE {state})"


_CONTENT_CLASSES = ("22", "54")
"""SQLSTATE classes of a value the database will not take (data exception; program limit
exceeded: an index entry over a B-tree page's third), not a fault."""


def ledger_error(where: str, exc: BaseException) -> LedgerError:
    """The ledger's error for a driver error: :class:`LedgerContentError` when the database
    refused a value (the caller drops that write; retrying cannot help), else a fault."""
    state = getattr(exc, "sqlstate", None)
    content = isinstance(exc, psycopg.DataError) or (
        isinstance(state, str) and state.startswith(_CONTENT_CLASSES))
    kind = LedgerContentError if content else LedgerError
    return kind(f"{where}: {_describe(exc)}")


def _describe(exc: BaseException) -> str:
    """Our words for a driver error: its SQLSTATE, never its text (which may quote
    values)."""
    if isinstance(exc, PoolTimeout):
        return "no database connection became free in time"
    state = getattr(exc, "sqlstate", None)
    if isinstance(state, str) and state:
        return describe_sqlstate(state)
    if isinstance(exc, psycopg.DataError):
        # psycopg's own refusal before sending (a NUL in a text value): the content, not the
        # connection
        return "PostgreSQL cannot store a value as given (a NUL character in a text value?)"
    return "the connection to PostgreSQL failed"


# ------------------------------------------------------------------ failures at connect time
# psycopg reports no SQLSTATE when the connection itself fails (the server's FATAL arrives
# before a session exists), so libpq's message is all there is to tell a misnamed database
# from a stopped server. We read it only to pick one of these causes, and print our own
# sentence: the message quotes the database, the role and the host, which we do not repeat.
class ConnectFailure(enum.Enum):
    NO_DATABASE = "the database named in the DSN does not exist"
    USER_REFUSED = ("PostgreSQL refused this user (no such role, or its password or "
                    "pg_hba.conf rule refused it)")
    NOTHING_LISTENING = "nothing accepts connections at {where} (is PostgreSQL running?)"
    UNKNOWN_HOST = "the host named in the DSN cannot be resolved (check its spelling and DNS)"
    TIMED_OUT = "no answer from {where} within {timeout} s (a firewall, or the wrong host?)"
    TOO_MANY_CLIENTS = ("PostgreSQL has too many connections: raise max_connections or lower "
                        "the number of clients")
    STARTING_UP = "PostgreSQL is starting up or recovering and cannot accept connections yet"
    SHUTTING_DOWN = "PostgreSQL is shutting down"
    UNKNOWN_PARAMETER = ("the DSN has a parameter libpq does not know, {parameter} (check its "
                         "spelling against libpq's connection parameters)")
    BAD_VALUE = ("the DSN's parameter {parameter} has a value PostgreSQL does not take (check "
                 "it against libpq's connection parameters)")
    UNKNOWN_SETTING = ("the DSN's options parameter sets {parameter}, a setting PostgreSQL does "
                       "not know (check its -c settings' names)")
    SETTING_VALUE = ("the DSN's options parameter gives {parameter} a value PostgreSQL does not "
                     "take (check its -c settings' values)")
    UNSETTABLE = ("the DSN's options parameter sets {parameter}, which PostgreSQL does not let "
                  "a connection set")
    BAD_OPTIONS = ("PostgreSQL refused the DSN's options parameter (each setting is "
                   "-c name=value, separated by spaces, of a setting a connection may set)")
    UNKNOWN = ("cannot connect to PostgreSQL (is it running, and does the DSN name a database "
               "this user may use?)")


_CANNOT_CONNECT = ConnectFailure.UNKNOWN.value

# libpq's phrasings (PostgreSQL 12-17, English messages), first match wins. The server's own
# answers come before the transport's: libpq tries each address of a host in turn and joins
# the failures, and "database does not exist" from one says more than "refused" from another.
# A server with another lc_messages matches none of them and gets the generic sentence.
# A parameter of the DSN itself comes first: libpq refuses it before any server answers (or
# the server refuses a startup parameter's value). Only its name, a libpq keyword, is kept
# (``parameter``); the value, which may be anything the DSN holds, is never repeated.
_PARAMETER = r'"?(?P<parameter>[A-Za-z_][A-Za-z0-9_]{0,63})"?'
_SETTING = r'"(?P<parameter>[A-Za-z_][A-Za-z0-9_.]{0,63})"'
"""A server setting's name as the server quotes it; any other name is not repeated."""
_CONNECT_PHRASINGS: tuple[tuple[re.Pattern[str], ConnectFailure], ...] = (
    (re.compile(rf"invalid URI query parameter: {_PARAMETER}"),
     ConnectFailure.UNKNOWN_PARAMETER),
    (re.compile(rf"invalid connection option {_PARAMETER}"), ConnectFailure.UNKNOWN_PARAMETER),
    (re.compile(rf"for connection option {_PARAMETER}"), ConnectFailure.BAD_VALUE),
    (re.compile(r"invalid (?P<parameter>port) number"), ConnectFailure.BAD_VALUE),
    (re.compile(rf"FATAL:\s+invalid value for parameter {_PARAMETER}"),
     ConnectFailure.BAD_VALUE),
    # The server's refusals of the startup options a DSN's ``options`` carries: they came as
    # "cannot connect (is it running…)" (the re-review of session 14).
    (re.compile(rf"FATAL:\s+unrecognized configuration parameter {_SETTING}"),
     ConnectFailure.UNKNOWN_SETTING),
    (re.compile(rf"FATAL:\s+(?:parameter {_SETTING} cannot be changed|permission denied to "
                rf"set parameter {_SETTING.replace('<parameter>', '<parameter2>')})"),
     ConnectFailure.UNSETTABLE),
    (re.compile(r"FATAL:\s+(?:-c \S*|--\S*) requires a value|FATAL:\s+invalid command-line "
                r"argument|FATAL:\s+(?:unrecognized configuration parameter|parameter .* cannot "
                r"be changed|permission denied to set parameter)"), ConnectFailure.BAD_OPTIONS),
    (re.compile(rf"invalid {_PARAMETER} value: "), ConnectFailure.BAD_VALUE),
    (re.compile(r'FATAL:\s+database ".*" does not exist'), ConnectFailure.NO_DATABASE),
    (re.compile(r'FATAL:\s+role ".*" does not exist'), ConnectFailure.USER_REFUSED),
    (re.compile(r"password authentication failed|no pg_hba\.conf entry|"
                r"(peer|ident|SSPI|GSSAPI|LDAP|RADIUS|PAM|certificate) authentication failed|"
                r"fe_sendauth: no password supplied"), ConnectFailure.USER_REFUSED),
    (re.compile(r"too many clients|remaining connection slots are reserved"),
     ConnectFailure.TOO_MANY_CLIENTS),
    (re.compile(r"the database system is (starting up|in recovery mode|not yet accepting)"),
     ConnectFailure.STARTING_UP),
    (re.compile(r"the database system is shutting down"), ConnectFailure.SHUTTING_DOWN),
    (re.compile(r"could not translate host name|failed to resolve host"),
     ConnectFailure.UNKNOWN_HOST),
    (re.compile(r"Connection refused|No such file or directory"),
     ConnectFailure.NOTHING_LISTENING),
    (re.compile(r"timeout expired"), ConnectFailure.TIMED_OUT),
)


def classify_connect_failure(libpq_text: str) -> ConnectFailure:
    """The cause libpq's connect-time message names, or :attr:`ConnectFailure.UNKNOWN`."""
    return _classify(libpq_text)[0]


def _classify(libpq_text: str) -> tuple[ConnectFailure, str]:
    """The cause, and the DSN parameter it names (a libpq keyword; ``?`` when none)."""
    for pattern, cause in _CONNECT_PHRASINGS:
        found = pattern.search(libpq_text)
        if found:
            named = found.groupdict()
            return cause, named.get("parameter") or named.get("parameter2") or "?"
    return ConnectFailure.UNKNOWN, "?"


def describe_connect_failure(cause: ConnectFailure, dsn: str, *, parameter: str = "?") -> str:
    """Our sentence for ``cause``; the server's address comes from the DSN as it is printed
    (:func:`redact_dsn`: no part of a password), not from the driver's text; ``parameter``
    is the name of the DSN parameter a refusal named, never its value."""
    shown = redact_dsn(dsn)
    template: str = cause.value
    if cause is ConnectFailure.BAD_VALUE and _set_in_options(shown, parameter):
        template = ConnectFailure.SETTING_VALUE.value
    if cause in (ConnectFailure.UNKNOWN_PARAMETER, ConnectFailure.BAD_VALUE,
                 ConnectFailure.UNKNOWN_SETTING, ConnectFailure.UNSETTABLE,
                 ConnectFailure.BAD_OPTIONS):
        return template.format(parameter=parameter)
    if shown == UNSHOWN:
        return template.format(where="the DSN's host", timeout=int(CONNECT_TIMEOUT_S))
    try:
        parts = urllib.parse.urlsplit(shown)
        query = dict(urllib.parse.parse_qsl(parts.query))
        host = parts.hostname or query.get("host") or "localhost"
        port = parts.port or int(query.get("port") or 5432)
    except ValueError:
        host, port = "the DSN's host", 5432
    return template.format(where=f"{host}:{port}", timeout=int(CONNECT_TIMEOUT_S))


def _set_in_options(shown: str, parameter: str) -> bool:
    """Whether the server's "invalid value for parameter X" is about a setting of the DSN's
    ``options`` (``-c work_mem=abc``) rather than a connection parameter of its own
    (``client_encoding=x``, which libpq sends as a setting too): X is not among the DSN's
    parameters and the DSN has ``options``."""
    try:
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(shown).query))
    except ValueError:
        return False
    return "options" in query and parameter not in query


def _describe_connect_error(exc: psycopg.Error, dsn: str) -> str:
    state = getattr(exc, "sqlstate", None)
    if isinstance(state, str) and state:
        return describe_sqlstate(state)
    cause, parameter = _classify(str(exc))
    return describe_connect_failure(cause, dsn, parameter=parameter)
