"""PostgreSQL errors in our words: the states a misconfiguration produces name the mistake,
keep their SQLSTATE in parentheses, and never repeat the driver's text."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import urllib.parse
from pathlib import Path

import psycopg
import pytest

from policy.storage import dsn_has_password, redact_dsn
from policy.storage_pg import (
    ConnectFailure,
    _describe,
    classify_connect_failure,
    describe_connect_failure,
    describe_sqlstate,
)
from tests.clirun import certescrow
from tests.pgdb import base_dsn, postgres_schema, with_schema

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("state", "words"), [
    ("3F000", "the schema named in the DSN's search_path does not exist"),
    ("3D000", "the database named in the DSN does not exist"),
    ("28000", "PostgreSQL refused the authentication"),
    ("28P01", "PostgreSQL refused the password"),
    ("42P01", "a table the ledger needs does not exist"),
    ("42501", "the DSN's user lacks a privilege"),
    ("53300", "PostgreSQL has too many connections"),
    ("57P01", "the server ended this session"),
    ("57P03", "PostgreSQL is starting up"),
    ("08006", "the connection to PostgreSQL failed or was lost"),
    ("08P01", "the connection to PostgreSQL failed or was lost"),
    ("22021", "PostgreSQL cannot store a value as given"),
    ("54000", "a value exceeds a PostgreSQL limit"),
    ("XX000", "PostgreSQL refused the statement"),
])
def test_a_sqlstate_is_described_in_our_words_with_the_state_after_them(
        state: str, words: str) -> None:
    described = describe_sqlstate(state)
    assert described.startswith(words)
    assert described.endswith(f"(SQLSTATE {state})")


def test_the_drivers_text_is_never_repeated() -> None:
    exc = psycopg.errors.lookup("42501")('permission denied for table "secret-value-x"')
    described = _describe(exc)
    assert described.startswith("the DSN's user lacks a privilege")
    assert "secret-value-x" not in described


@pytest.mark.slow
def test_a_search_path_naming_no_schema_is_said_so_by_the_command() -> None:
    with postgres_schema():  # only to skip (or fail when required) without a server
        absent = with_schema(base_dsn(), f"certescrow_absent_{secrets.token_hex(4)}")
        added = subprocess.run(
            [sys.executable, "-m", "agent.main", "contract", "add", "C-1", "--item", "byo",
             "--tier", "1y", "--at", "2026-04-01", "--ledger", absent],
            capture_output=True, text=True, cwd=REPO, timeout=120, check=False)
    assert added.returncode == 13, added.stderr
    assert "the schema named in the DSN's search_path does not exist" in added.stderr
    assert "(SQLSTATE 3F000)" in added.stderr


# --------------------------------------------------------------- failures at connect time
# psycopg reports no SQLSTATE when the connection itself fails; libpq's message is all there
# is. These are its phrasings (PostgreSQL 12-17), each with a quoted value that must not leak.
@pytest.mark.parametrize(("libpq_text", "cause"), [
    ('connection to server at "127.0.0.1", port 5432 failed: FATAL:  database '
     '"leak-me" does not exist', ConnectFailure.NO_DATABASE),
    ('connection to server at "127.0.0.1", port 5432 failed: FATAL:  role "leak-me" does '
     'not exist', ConnectFailure.USER_REFUSED),
    ('connection to server at "db", port 5432 failed: FATAL:  password authentication failed '
     'for user "leak-me"', ConnectFailure.USER_REFUSED),
    ('connection to server at "db", port 5432 failed: FATAL:  no pg_hba.conf entry for host '
     '"10.0.0.1", user "leak-me", database "x", no encryption', ConnectFailure.USER_REFUSED),
    ('connection to server at "db", port 5432 failed: fe_sendauth: no password supplied',
     ConnectFailure.USER_REFUSED),
    ('connection to server at "127.0.0.1", port 9 failed: Connection refused\n\tIs the server '
     'running on that host and accepting TCP/IP connections?', ConnectFailure.NOTHING_LISTENING),
    ('connection to server at "10.9.9.9", port 5432 failed: timeout expired',
     ConnectFailure.TIMED_OUT),
    ('connection to server at "db", port 5432 failed: FATAL:  sorry, too many clients already',
     ConnectFailure.TOO_MANY_CLIENTS),
    ('connection to server at "db", port 5432 failed: FATAL:  the database system is starting '
     'up', ConnectFailure.STARTING_UP),
    ('connection to server at "db", port 5432 failed: FATAL:  the database system is shutting '
     'down', ConnectFailure.SHUTTING_DOWN),
    ('could not translate host name "leak-me" to address: Name or service not known',
     ConnectFailure.UNKNOWN_HOST),
    ("something libpq has never said", ConnectFailure.UNKNOWN),
    # A refusal on ::1 then a server's answer on 127.0.0.1: the server's answer says more.
    ('connection to server at "::1", port 5432 failed: Connection refused\n\tIs the server '
     'running?\nconnection to server at "127.0.0.1", port 5432 failed: FATAL:  database '
     '"leak-me" does not exist', ConnectFailure.NO_DATABASE),
])
def test_a_connect_failure_is_classified_by_libpqs_phrasing(
        libpq_text: str, cause: ConnectFailure) -> None:
    assert classify_connect_failure(libpq_text) is cause
    described = describe_connect_failure(cause, "postgresql://u:pw@db.example:6543/x")
    assert "leak-me" not in described
    assert "pw" not in described


def test_nothing_listening_names_the_host_and_port() -> None:
    described = describe_connect_failure(ConnectFailure.NOTHING_LISTENING,
                                         "postgresql://u:pw@db.example:6543/x")
    assert described == "nothing accepts connections at db.example:6543 (is PostgreSQL running?)"
    assert "localhost:5432" in describe_connect_failure(ConnectFailure.NOTHING_LISTENING,
                                                        "postgresql:///x")


def _desk(tmp_path: Path, dsn: str) -> list[str]:
    """``--config FILE`` giving ``dsn`` as ``[policy] ledger`` in a 0600 file: a DSN with a
    password is refused on the command line (every user of the host reads it there), so what
    a command prints of such a DSN is tested as a desk writes it, in its configuration."""
    config = tmp_path / "desk.toml"
    config.write_text(f"[policy]\nledger = {json.dumps(dsn)}\n")
    config.chmod(0o600)
    return ["--config", str(config)]


def _with_netloc(dsn: str, netloc: str) -> str:
    return urllib.parse.urlunsplit(urllib.parse.urlsplit(dsn)._replace(netloc=netloc))


def _with_database(dsn: str, database: str) -> str:
    return urllib.parse.urlunsplit(urllib.parse.urlsplit(dsn)._replace(path=f"/{database}"))


def _drivers_text(dsn: str) -> str:
    try:
        psycopg.connect(dsn, connect_timeout=5).close()
    except psycopg.OperationalError as exc:
        return str(exc)
    pytest.fail(f"{dsn} unexpectedly accepted a connection")


@pytest.mark.slow
@pytest.mark.parametrize(("mistake", "words"), [
    ("database", "the database named in the DSN does not exist"),
    ("role", "PostgreSQL refused this user (no such role, or its password or pg_hba.conf "
             "rule refused it)"),
    ("port", "nothing accepts connections at 127.0.0.1:9 (is PostgreSQL running?)"),
])
def test_a_connect_failure_is_named_by_the_command(mistake: str, words: str,
                                                   tmp_path: Path) -> None:
    with postgres_schema():  # only to skip (or fail when required) without a server
        base = urllib.parse.urlsplit(base_dsn())
        absent = f"certescrow_absent_{secrets.token_hex(4)}"
        if mistake == "database":
            dsn = _with_database(base_dsn(), absent)
        elif mistake == "role":
            dsn = _with_netloc(base_dsn(), f"{absent}:pw-never-shown@{base.hostname}:"
                                           f"{base.port or 5432}")
        else:
            dsn = _with_netloc(base_dsn(), f"{base.username}:pw-never-shown@127.0.0.1:9")
        drivers_text = _drivers_text(dsn)
        listed = certescrow(*_desk(tmp_path, dsn), "contract", "list", home=tmp_path)
    assert listed.returncode == 13, listed.stderr
    assert f"{redact_dsn(dsn)}: {words}" in listed.stderr
    assert "pw-never-shown" not in listed.stderr
    assert drivers_text not in listed.stderr
    assert "FATAL" not in listed.stderr
    assert f'"{absent}"' not in listed.stderr


@pytest.mark.parametrize(("query", "words"), [
    ("sslmode=bogus-never-shown", "the DSN's parameter sslmode has a value PostgreSQL does "
                                  "not take"),
    ("sslmod=require", "the DSN has a parameter libpq does not know, sslmod"),
    ("keepalives=x-never-shown", "the DSN's parameter keepalives has a value"),
    ("target_session_attrs=x-never-shown", "the DSN's parameter target_session_attrs has"),
    ("client_encoding=x-never-shown", "the DSN's parameter client_encoding has a value"),
    # the server's refusals of the options parameter (the re-review of session 14: "cannot
    # connect to PostgreSQL (is it running…)")
    ("options=-c%20nosuchsetting%3Dnever-shown", "the DSN's options parameter sets "
                                                 "nosuchsetting, a setting PostgreSQL does "
                                                 "not know"),
    ("options=-c%20shared_buffers%3D1never-shown", "the DSN's options parameter sets "
                                                   "shared_buffers, which PostgreSQL does not "
                                                   "let a connection set"),
    ("options=-c%20work_mem%3Dnever-shown", "the DSN's options parameter gives work_mem a "
                                            "value PostgreSQL does not take"),
    ("options=-cnever-shown", "PostgreSQL refused the DSN's options parameter"),
    ("options=-c%20%22never-shown%22%3D1", "PostgreSQL refused the DSN's options parameter"),
])
def test_an_invalid_dsn_parameter_is_named_without_its_value_or_the_password(
        query: str, words: str, tmp_path: Path) -> None:
    """review 1 of the fleet desk: `fleet hosts --ledger "…?sslmode=bogus"` said "cannot
    connect to PostgreSQL (is it running, …)": libpq refused the parameter before any server
    answered (psycopg's OperationalError or, for a name libpq does not know,
    ProgrammingError), and its text is all there is to name it. The value is the DSN's as
    printed (without a password), never the driver's text."""
    with postgres_schema():  # only to skip (or fail when required) without a server
        base = urllib.parse.urlsplit(base_dsn())
        dsn = urllib.parse.urlunsplit(base._replace(
            netloc=f"{base.username}:pw-secret@{base.hostname}:{base.port or 5432}",
            query=query))
        listed = certescrow(*_desk(tmp_path, dsn), "fleet", "hosts", home=tmp_path)
    assert listed.returncode == 13, listed.stderr
    assert f"{redact_dsn(dsn)}: {words}" in listed.stderr
    assert "pw-secret" not in listed.stderr
    assert "cannot connect" not in listed.stderr
    assert listed.stderr.count("never-shown") <= 1  # the printed DSN's, not the driver's


@pytest.mark.slow
@pytest.mark.parametrize("command", [("contract", "list"), ("policy", "actions"),
                                     ("policy", "verify")])
def test_a_search_path_naming_no_schema_is_not_an_empty_ledger(command: tuple[str, str],
                                                               tmp_path: Path) -> None:
    with postgres_schema():  # only to skip (or fail when required) without a server
        absent = with_schema(base_dsn(), f"certescrow_absent_{secrets.token_hex(4)}")
        ran = certescrow(*command, "--ledger", absent, home=tmp_path)
    assert ran.returncode == 13, ran.stderr
    assert "the schema named in the DSN's search_path does not exist" in ran.stderr
    assert "no ledger here" not in ran.stderr
    assert redact_dsn(absent) in ran.stderr


def test_a_printed_dsn_keeps_its_schema_and_drops_every_password() -> None:
    dsn = ("postgresql://desk:pw-one@db:5432/ledger?sslmode=require&password=pw-two"
           "&options=-csearch_path%3Dtenant_a&sslpassword=pw-three&passfile=/etc/pgpass")
    shown = redact_dsn(dsn)
    assert shown == ("postgresql://desk@db:5432/ledger?sslmode=require"
                     "&options=-csearch_path%3Dtenant_a&passfile=/etc/pgpass")
    assert redact_dsn(with_schema("postgresql://db/l", "a")) != redact_dsn(
        with_schema("postgresql://db/l", "b"))


@pytest.mark.parametrize("password", ["SE?CRET-never-shown", "SE#CRET-never-shown",
                                      "a@b/c?d#e-never-shown"])
def test_a_password_with_url_delimiters_is_never_printed(password: str, tmp_path: Path) -> None:
    """libpq reads everything up to the last ``@`` before the host as the user and password,
    ``?`` and ``#`` included; the redaction must split the same way (a reviewer saw
    ``SE?CRET`` printed whole, and ``SE#CRET`` cut to ``SE`` with the host lost)."""
    quoted = password.replace("/", "%2F")  # a / would end the userinfo for libpq too
    dsn = f"postgresql://desk:{quoted}@127.0.0.1:9/test?options=-csearch_path%3Dtenant_a"
    shown = redact_dsn(dsn)
    assert shown == "postgresql://desk@127.0.0.1:9/test?options=-csearch_path%3Dtenant_a"
    ran = certescrow(*_desk(tmp_path, dsn), "contract", "list", home=tmp_path)
    assert ran.returncode == 13, ran.stderr
    assert "never-shown" not in ran.stderr + ran.stdout
    assert shown in ran.stderr


@pytest.mark.parametrize("dsn", [
    "postgresql://postgres:S3C/RET-never-shown@127.0.0.1:9/test",
    "postgresql://desk:a/b?c#d-never-shown@127.0.0.1:9/test?sslmode=disable",
])
def test_a_password_with_a_raw_slash_is_never_printed(dsn: str, tmp_path: Path) -> None:
    """libpq stops a userinfo at the first ``/`` (and then fails on a host it cannot resolve);
    the password the user wrote was still printed whole in that error (review 3)."""
    assert "never-shown" not in redact_dsn(dsn)
    assert dsn_has_password(dsn)
    ran = certescrow(*_desk(tmp_path, dsn), "contract", "list", home=tmp_path)
    assert ran.returncode != 0
    assert "never-shown" not in ran.stderr + ran.stdout


@pytest.mark.parametrize("dsn", [
    "postgresql://127.0.0.1:9/test?user=admin@myserver&password=S3cretPW-never-shown",
    "postgresql://127.0.0.1:9/test?password=Sec:ret-never-shown&application_name=a@b",
    "postgresql://127.0.0.1:9/test?sslpassword=Key:Pass@word-never-shown",
    "postgresql://127.0.0.1?user=a@b&password=never-shown",
    "postgresql://[::1]:9/test?user=a@b&password=never-shown",
    "postgresql://u:never/shown@127.0.0.1:9/test?user=x@y&password=also-never-shown",
    "postgresql://u:never/sh?own@127.0.0.1:9/test?user=x@y&password=also-never-shown",
    # review 5: a password opening with ? (or digits and ?) and holding a #, which urlsplit
    # cut at; a TAB, which urlsplit drops; the "where" of a connection failure
    "postgresql://admin:?never#shown@127.0.0.1:9/nodb",
    "postgresql://admin:1234?never#shown@127.0.0.1:9/nodb",
    "postgresql://admin:?never\tshown@127.0.0.1:9/nodb",
    "postgresql://admin:4242?nevershown@127.0.0.1:9/db",
    "postgresql://admin@127.0.0.1:9?password=never:shown&user=x@corp",
    "postgres://u@127.0.0.1:9,127.0.0.2:9?password=59117never@60576&user=",
])
def test_an_at_sign_in_the_query_never_shows_a_password(dsn: str, tmp_path: Path) -> None:
    """An ``@`` in a query parameter (an Azure-style ``user=admin@server``) was taken for the
    end of a userinfo holding a ``/``: the cut swallowed the ``?`` and the ``password``
    parameter after it was printed whole (review 4)."""
    assert "never" not in redact_dsn(dsn)
    assert "shown" not in redact_dsn(dsn)
    assert dsn_has_password(dsn)
    ran = certescrow(*_desk(tmp_path, dsn), "contract", "list", home=tmp_path)
    assert ran.returncode != 0
    assert "never" not in ran.stderr + ran.stdout


def test_an_at_sign_in_the_query_keeps_the_host_shown() -> None:
    assert redact_dsn("postgresql://127.0.0.1:5432/test?user=admin@myserver&password=pw") == \
        "postgresql://127.0.0.1:5432/test?user=admin@myserver"


@pytest.mark.parametrize(("dsn", "secret"), [
    ("postgresql://desk@db/ledger", False),
    ("postgresql:///ledger?host=/run/postgresql", False),
    ("postgresql://db:5432/ledger?options=-csearch_path%3Dx", False),
    ("postgresql://desk:pw@db/ledger", True),
    ("postgresql://db/ledger?sslpassword=x", True),
    ("postgresql://db/ledger?PASS%57ORD=x", True),
    ("postgresql://desk:a/b@db/ledger", True),
    ("postgresql://db:5432/ledger?user=admin@server", False),
    ("postgresql://db?user=admin@server", False),
    ("postgresql://db:5432?user=admin@server", True),  # libpq: user db, password 5432?user=admin
])
def test_a_password_is_found_where_the_redaction_finds_one(dsn: str, secret: bool) -> None:
    assert dsn_has_password(dsn) is secret
    assert (redact_dsn(dsn) != dsn) is secret


def test_a_socket_dsn_prints_its_empty_host() -> None:
    assert redact_dsn("postgresql:///ledger?host=/run/postgresql") == \
        "postgresql:///ledger?host=/run/postgresql"


def test_an_unresolvable_host_is_named() -> None:
    from policy.storage_pg import ConnectFailure, classify_connect_failure

    assert classify_connect_failure(
        'failed to resolve host "nosuch.invalid": [Errno -2] Name or service not known'
    ) is ConnectFailure.UNKNOWN_HOST


@pytest.mark.parametrize("command", [("contract", "list"), ("fleet", "revoke", "web01"),
                                     ("policy", "actions")])
def test_a_key_value_connection_string_is_refused_without_repeating_it(
        command: tuple[str, ...], tmp_path: Path) -> None:
    ran = certescrow(*command, "--ledger",
                     "host=127.0.0.1 dbname=test user=desk password=kv-never-shown",
                     home=tmp_path, cwd=tmp_path)
    assert ran.returncode == 2, ran.stderr  # a bad option value: a usage error
    assert "Invalid value for '--ledger': a key=value connection string is not supported" \
        in ran.stderr
    assert "kv-never-shown" not in ran.stderr + ran.stdout
    assert list(tmp_path.glob("host=*")) == []  # no file of that name was made


def test_a_connection_failure_names_no_part_of_a_password(tmp_path: Path) -> None:
    """libpq reads ``4242?nevershown`` as the password; the connection failure's "nothing
    accepts connections at …" took its host from the DSN as urlsplit reads it, and printed
    ``admin:4242`` (review 5)."""
    dsn = "postgresql://admin:4242?nevershown@127.0.0.1:9/db"
    ran = certescrow(*_desk(tmp_path, dsn), "contract", "list", home=tmp_path)
    assert ran.returncode != 0
    assert "4242" not in ran.stderr + ran.stdout
