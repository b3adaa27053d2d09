"""Small pieces every certescrow CLI that deals with contract time shares.

The real clock is read here and only here (``resolve_at``), the outermost layer: everything below
takes ``at`` as an argument.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
from collections.abc import Iterable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import click

from untrusted.text import for_terminal, json_storable, json_text

try:
    import orjson
except ImportError:  # pragma: no cover - a platform orjson ships no wheel for (see pyproject)
    orjson = None  # type: ignore[assignment]

from .catalogue import Catalogue, load_catalogue
from .category import Category
from .errors import PolicyError
from .paths import LedgerLocation, catalogue_path, ledger_is_explicit, ledger_location
from .settings import PolicySettings
from .storage import dsn_has_password
from .timeparse import format_instant, parse_date, parse_instant

__all__ = [
    "AT_OPTION_HELP",
    "CATEGORY_CHOICE",
    "FILE_THE_COMMAND_READS",
    "FILE_THE_COMMAND_WRITES",
    "SETTINGS_KEY",
    "TESTONLY_NOW_ENV",
    "DateType",
    "InstantType",
    "catalogue_from",
    "config_section",
    "echo_json",
    "echo_json_array",
    "echo_json_texts",
    "echo_json_with_array",
    "echo_lines",
    "json_element",
    "ledger_named_by",
    "refuse_a_future_at",
    "resolve_at",
    "settings_from",
    "to_jsonable",
]

AT_OPTION_HELP = (
    "Evaluate as of this time (ISO 8601; no offset = Asia/Tokyo; a bare date = 00:00 JST). "
    "Default: now."
)


CATEGORY_CHOICE = click.Choice([c.value for c in Category], case_sensitive=False)
"""``--category`` of every command (``scan``, ``inspect``, ``policy classify``, ``fleet
assign``): ``I``, ``II`` or ``III`` in either case (``iii`` is what the configuration's
``category`` and :meth:`Category.parse` accept too), given to the command as written in the
terms (``III``)."""

FILE_THE_COMMAND_READS: click.Path[Path] = click.Path(path_type=Path, readable=False)
"""The type of a file argument the command's own reader refuses: a configuration file
(:func:`agent.config.read_config_file`, exit 31), a certificate (the reader, exit 17). click
checks nothing of it (``exists``, ``readable`` and ``dir_okay`` are left off): its checks made
each of those a usage error (exit 2) in click's words ("Invalid value for '--config': … is not
readable."), naming ``--config`` even when the path came from ``$CERTESCROW_CONFIG``, where the
documentation promises the command's own code and message."""

FILE_THE_COMMAND_WRITES: click.Path[Path] = click.Path(path_type=Path, readable=False)
"""The type of a file the command writes (``fleet sign --out``, ``agent enroll --csr-out``),
which its writer refuses (agent/publicfile.py, exit 37). click checks nothing of it either:
``dir_okay=False`` made a directory a usage error (exit 2) and the default ``readable`` made
one an unreadable file given with ``--force``, in click's words, apart from every other
output file that cannot be written."""


class InstantType(click.ParamType[datetime]):
    """``--at``-style option: ISO 8601 instant, naive = Asia/Tokyo, returned as aware UTC."""

    name = "TIME"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            return parse_instant(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class DateType(click.ParamType[date]):
    """A contract day, ``YYYY-MM-DD`` (Asia/Tokyo)."""

    name = "DATE"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> date:
        if isinstance(value, date):
            return value
        try:
            return parse_date(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class LedgerType(click.ParamType[LedgerLocation]):
    """``--ledger``: an SQLite file's path or a ``postgresql://`` DSN, the DSN kept as text
    (``click.Path`` would collapse the ``//`` of ``postgresql:///ledger``, the local socket)."""

    name = "PATH|DSN"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> LedgerLocation:
        if isinstance(value, Path):
            return value
        try:
            location = ledger_location(str(value))
        except PolicyError as exc:
            self.fail(str(exc), param, ctx)
        if isinstance(location, str) and dsn_has_password(location):
            # (the URI is not repeated: it holds the password)
            self.fail("the PostgreSQL URI holds a password, which every user of this host can "
                      "read in the process list: give the URI without it and keep the password "
                      "in ~/.pgpass (or $PGPASSFILE, mode 0600), a pg_service.conf entry, or "
                      "the configuration file's [policy] ledger (mode 0600)", param, ctx)
        try:
            directory = isinstance(location, Path) and location.is_dir()
        except OSError as exc:  # a name too long, a component that is not a directory
            self.fail(f"{_name_for_message(location)}: {exc.strerror or 'cannot be used'}",
                      param, ctx)
        if directory:
            self.fail(f"{_name_for_message(location)}: is a directory, not a ledger file",
                      param, ctx)
        return location


_NAME_SHOWN = 200
"""Most characters of a file name a message repeats: its start and its end."""


def _name_for_message(path: Path | str) -> str:
    """A name the user typed, as an error repeats it: control characters and bytes that are
    not UTF-8 escaped (:func:`for_terminal`), a name of thousands of characters shortened in
    the middle."""
    text = str(path)
    if len(text) > _NAME_SHOWN:
        text = f"{text[:_NAME_SHOWN // 2]}…{text[-_NAME_SHOWN // 2:]} ({len(text)} characters)"
    return for_terminal(text)


def resolve_at(at: datetime | None) -> datetime:
    """``at`` if given, else the real clock (UTC). The one sanctioned clock read for CLIs.

    ``CERTESCROW_TESTONLY_NOW`` (ISO 8601) pins the clock for subprocess tests. It pins every
    command's clock, the daemon's included, so a stray export must never go unnoticed: whenever it
    is set a warning goes to stderr (once per process, the daemon reads the clock often), and a
    malformed value is a :class:`~policy.errors.PolicyError` naming the variable, not a traceback.
    """
    if at is not None:
        return at
    pinned = os.environ.get(TESTONLY_NOW_ENV)
    if pinned:
        try:
            when = parse_instant(pinned)
        except ValueError:
            raise PolicyError(
                f"{TESTONLY_NOW_ENV} is not an ISO 8601 time (e.g. 2026-02-01T12:00:00+09:00); "
                "it is a test hook: unset it to use the real clock") from None
        _warn_pinned_clock(pinned)
        return when
    return datetime.now(UTC)  # noqa: TID251 - outermost layer


def refuse_a_future_at(at: datetime | None, *, why: str) -> None:
    """A command that writes (the ledger, the fleet registry, a certificate) records what
    happened: an ``--at`` after the real clock is a usage error (exit 2) naming both times,
    refused before anything is opened. ``why`` says what the command writes and where a
    question about a future time goes instead."""
    if at is None:
        return
    now = resolve_at(None)
    if at > now:
        from .events import instant_to_tokyo_text

        raise click.UsageError(f"--at {instant_to_tokyo_text(at)} is in the future (now "
                               f"{instant_to_tokyo_text(now)}): {why}")


TESTONLY_NOW_ENV = "CERTESCROW_TESTONLY_NOW"
_warned_pins: set[str] = set()


def _warn_pinned_clock(value: str) -> None:
    """Say on stderr, once per process and value, that the clock is pinned by the test hook."""
    if value in _warned_pins:
        return
    _warned_pins.add(value)
    shown = value.encode("ascii", "backslashreplace").decode("ascii")[:64]
    click.echo(f"warning: {TESTONLY_NOW_ENV} is set: the clock is pinned at {shown} "
               "(a test hook; unset it in production)", err=True)


def config_section(ctx: click.Context | None, name: str) -> dict[str, Any]:
    """The ``[name]`` table of the configuration the root command loaded (empty when run
    without configuration, or when a package's group is invoked on its own in tests)."""
    root = ctx.find_root() if ctx is not None else None
    obj = root.obj if root is not None else None
    if not isinstance(obj, dict):
        return {}
    section = obj.get("config", {}).get(name, {})
    return section if isinstance(section, dict) else {}


def ledger_named_by(ctx: click.Context | None, option: LedgerLocation | None) -> str | None:
    """Who named the ledger: ``--ledger``, ``[policy].ledger in FILE`` (the configuration the
    root command read), or ``None`` for the per-user default."""
    if option is not None:
        return "--ledger"
    if not ledger_is_explicit(None, config_section(ctx, "policy")):
        return None
    root = ctx.find_root() if ctx is not None else None
    source = root.obj.get("config_path") if root is not None and isinstance(root.obj, dict) \
        else None
    return f"[policy].ledger in {source}" if source is not None else "[policy].ledger"


SETTINGS_KEY = "policy_settings"
"""Where the root command puts the :class:`PolicySettings` it validated (``ctx.obj``)."""


def settings_from(ctx: click.Context | None) -> PolicySettings:
    """The provider's settings from ``[policy]`` (defaults without configuration): the ones the
    root command read and validated once for every command, when it ran."""
    root = ctx.find_root() if ctx is not None else None
    obj = root.obj if root is not None else None
    if isinstance(obj, dict) and isinstance(obj.get(SETTINGS_KEY), PolicySettings):
        validated: PolicySettings = obj[SETTINGS_KEY]
        return validated
    try:
        return PolicySettings.from_mapping(config_section(ctx, "policy"))
    except ValueError as exc:
        raise PolicyError(f"configuration: {exc}") from None


def catalogue_from(ctx: click.Context | None, option: Path | None = None) -> Catalogue:
    """``--catalogue``, else ``[policy].catalogue``, else the embedded catalogue."""
    return load_catalogue(catalogue_path(option, config_section(ctx, "policy")))


_PLAIN = frozenset({str, int, float, bool, type(None)})


def to_jsonable(value: Any) -> Any:
    """Dates as ``YYYY-MM-DD``, instants as ISO 8601 UTC with ``Z``, paths as strings."""
    if type(value) in _PLAIN:  # most leaves: answered before any other check
        return value
    if isinstance(value, datetime):
        return format_instant(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "to_json"):
        return to_jsonable(value.to_json())
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if hasattr(value, "value") and hasattr(value, "name"):  # enum
        return value.value
    return value


def echo_json(value: Any) -> None:
    """``value`` as indented JSON, through :func:`json_text`: a lone surrogate (a file name
    that is not UTF-8) is written as the ``\\udcNN`` escape that decodes back to it instead of
    failing to encode, a format character as its escape instead of invisibly."""
    click.echo(json_text(json.dumps(to_jsonable(value), ensure_ascii=False, indent=2)))


_BATCH = 512


def _fast_jsonable(value: Any) -> Any:
    """:func:`to_jsonable` for orjson, step for step, with floats as the standard library
    writes them (``orjson.Fragment``): both encoders then give the same bytes."""
    kind = type(value)
    if kind is float:
        return orjson.Fragment(json.dumps(value))
    if kind in _PLAIN:
        return value
    if isinstance(value, datetime):
        return format_instant(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "to_json"):
        return _fast_jsonable(value.to_json())
    if isinstance(value, dict):
        return {str(k): _fast_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_fast_jsonable(v) for v in value]
    if hasattr(value, "value") and hasattr(value, "name"):  # enum
        return _fast_jsonable(value.value)
    return value


def _indented(item: Any) -> str:
    """``json.dumps(to_jsonable(item), ensure_ascii=False, indent=2)``; through orjson when
    it is installed (the standard library's indenting encoder is pure Python: most of a
    100,000-contract ``policy actions --json``). Text orjson refuses (a lone surrogate from a
    file name that is not UTF-8) goes the standard library's way."""
    if orjson is not None and hasattr(orjson, "Fragment"):  # Fragment: orjson >= 3.10
        try:
            return json_text(orjson.dumps(_fast_jsonable(item),
                                          option=orjson.OPT_INDENT_2).decode())
        except orjson.JSONEncodeError:
            pass
    return json_text(json.dumps(to_jsonable(item), ensure_ascii=False, indent=2))


def json_element(item: Any) -> str:
    """``item`` as :func:`echo_json_array` writes one element (before the array's own
    indentation): the ledger's projection keeps each due action in this form, so that
    ``policy actions --json`` writes stored text."""
    return _indented(item)


def echo_json_texts(texts: Iterable[str | bytes]) -> None:
    """:func:`echo_json_array` of elements already rendered by :func:`json_element` (text, or
    its UTF-8 bytes as the ledger stores them), a batch at a time. Bytes go out as they are
    read: a 100,000-contract ``policy actions --json`` is 126 MB, which decoding, indenting
    and encoding again element by element made a third of the command's time."""
    _write_json_array(texts, prefix=b"", depth=1)


def echo_json_with_array(document: dict[str, Any], key: str, items: Iterable[Any]) -> None:
    """:func:`echo_json` of ``{**document, key: list(items)}`` (``key`` last), the array
    written element by element as ``items`` are produced: the same bytes, with neither the
    list nor the document held."""
    head = _utf8(_indented({**document, key: []}))
    closing = b"[]\n}"
    if not head.endswith(closing):  # pragma: no cover - json.dumps' layout
        raise AssertionError("unexpected layout of the document")
    _write_json_array((_indented(item) for item in items), prefix=head[:-len(closing)],
                      depth=2)


def _write_json_array(texts: Iterable[str | bytes], *, prefix: bytes, depth: int) -> None:
    """``prefix``, then the array of ``texts`` (each one element rendered at the top level) as
    ``json.dumps(..., indent=2)`` lays it out ``depth`` levels deep (its strings hold no raw
    newline, JSON escapes them, so every newline is the layout's own), then whatever closes
    the enclosing objects; a batch at a time, as bytes."""
    out = sys.stdout
    binary = getattr(out, "buffer", None)
    inner = b"\n" + b"  " * depth
    parts: list[bytes] = [prefix]
    first = True
    out.flush()

    def write(data: bytes) -> None:
        if binary is None:  # a text-only stream
            out.write(data.decode("utf-8"))
        else:
            binary.write(data)

    items = iter(texts)
    for batch in iter(lambda: list(itertools.islice(items, _BATCH)), []):
        parts.append(b"[" + inner if first else b"," + inner)
        parts.append(b",\n".join([_utf8(t) for t in batch]).replace(b"\n", inner))
        write(b"".join(parts))
        parts = []
        first = False
    parts.append(b"[]" if first else b"\n" + b"  " * (depth - 1) + b"]")
    for level in range(depth - 1, 0, -1):
        parts.append(b"\n" + b"  " * (level - 1) + b"}")
    parts.append(b"\n")
    write(b"".join(parts))
    if binary is not None:
        binary.flush()
    else:
        out.flush()


def _utf8(text: str | bytes) -> bytes:
    if isinstance(text, bytes):
        return text
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return json_storable(text).encode("utf-8")


def echo_json_array(items: Iterable[Any]) -> None:
    """Write the JSON array of ``items`` exactly as :func:`echo_json` writes the list, one
    element at a time: no document-sized string or structure is ever built (``policy
    actions --json`` over 100,000 contracts), and writes go out in batches."""
    echo_json_texts(_indented(item) for item in items)


def echo_lines(lines: Iterable[str]) -> None:
    """``click.echo`` each line, in batches: the same output, a fraction of the calls (a
    100,000-contract listing)."""
    batch: list[str] = []
    for line in lines:
        batch.append(line)
        if len(batch) >= _BATCH:
            click.echo("\n".join(batch))
            batch = []
    if batch:
        click.echo("\n".join(batch))
