"""``certescrow scan`` and ``certescrow inspect`` (the ``agent`` group is in ``daemon_cli``:
a scan need not import the daemon).

Thin on purpose: each command parses options, calls the reader/scan and
:func:`agent.report.build_report`, and renders. No decision lives here.
"""

from __future__ import annotations

import gc
import itertools
import os
import sys
from collections.abc import Iterator, Sequence
from collections.abc import Set as AbstractSet
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import click

from policy.catalogue import Catalogue, load_catalogue
from policy.category import Category
from policy.cliutil import (
    AT_OPTION_HELP,
    CATEGORY_CHOICE,
    FILE_THE_COMMAND_READS,
    InstantType,
    echo_json,
    resolve_at,
)
from policy.decisions import Finding, Severity
from policy.intake import Binding
from policy.settings import PolicySettings
from policy.tiers import Tier
from untrusted.text import for_terminal

from .config import Config, root_config
from .errors import AgentError
from .monitoring import EXIT_STATUS, ExitMode, ExpiryWindows, MonitorTally, exit_status
from .records import FileResult, ReadLimits
from .render import item_json, iter_table, render_detail
from .report import ScanReport, build_report
from .scan import scan_paths
from .scanpool import MIN_FILES_PER_JOB, default_jobs, stream_scan
from .x509facts import MalformedCertificateError, parse_der_certificate

if TYPE_CHECKING:
    from .livechain import ChainVerdict

__all__ = ["inspect_command", "scan_command"]

DEFAULT_MAX_SIZE = 10 * 1024 * 1024
PROGRESS_THRESHOLD = 200
"""Files a scan must have before a progress bar is worth drawing."""


# ---------------------------------------------------------------- shared plumbing

def _binding_options(func: Any) -> Any:
    func = click.option("--tier", type=click.Choice([t.value for t in Tier]),
                        help="Contracted tier the certificates are held to (Appx1.1).")(func)
    func = click.option("--item", metavar="HANDLE",
                        help="Catalogue item the certificates belong to (e.g. byo, "
                             "globalsign-ov); see `certescrow policy catalogue`.")(func)
    func = click.option("--category", type=CATEGORY_CHOICE,
                        help="Item category (Art.1); III = bring-your-own.")(func)
    return func


def _binding(catalogue: Catalogue, category: str | None, item: str | None,
             tier: str | None) -> Binding:
    if item is not None:
        catalogue.item(item)  # an unknown handle is an error listing the valid ones, up front
    return Binding(category=Category.parse(category) if category else None, item=item,
                   tier=Tier.parse(tier) if tier else None)


def _config(ctx: click.Context) -> Config:
    """The configuration the root command read and validated (one reading for every
    command)."""
    return root_config(ctx.find_root().obj)


def _catalogue(ctx: click.Context) -> Catalogue:
    return load_catalogue(_config(ctx).policy.catalogue)


def _settings(ctx: click.Context) -> PolicySettings:
    return _config(ctx).policy.settings


def _max_size(ctx: click.Context) -> int:
    return _config(ctx).agent.max_file_size


def _windows(ctx: click.Context) -> ExpiryWindows:
    return _config(ctx).agent.windows


def _passwords(password_file: Path | None) -> tuple[bytes, ...]:
    """PKCS#12 / key passwords, one per line, from a file: never from argv, where every user
    of the machine could read them."""
    if password_file is None:
        return ()
    from vault.secretfile import SecretFileError, read_secret_file  # a FIFO must not hang us

    try:
        text = read_secret_file(password_file, what="password file", max_bytes=64 * 1024,
                                private=True)  # refused when others can read it
    except SecretFileError as exc:
        raise AgentError(str(exc)) from None
    return tuple(line.rstrip(b"\r") for line in text.split(b"\n") if line.rstrip(b"\r"))


class _Progress:
    """A progress bar on stderr, only when stderr is a terminal and the scan is long."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.bar: Any = None
        self.enabled = stream.isatty()
        self.shown = 0

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled or total < PROGRESS_THRESHOLD:
            return
        if self.bar is None:
            self.bar = click.progressbar(length=total, label="Scanning", file=self.stream)
            self.bar.__enter__()
        self.bar.update(done - self.shown)
        self.shown = done

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector during a bulk scan.

    A scan allocates millions of small acyclic objects (facts, findings, JSON dicts); the
    collector's full passes over them found nothing to collect and cost ~15 % of a 20,000-file
    scan (bench/bench_scan.py). Reference counting still frees everything. Only the one-shot
    command does this; the daemon, which runs for months, leaves the collector alone.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


# ---------------------------------------------------------------- scan

class ExitStatusCommand(click.Command):
    """A command whose ``--exit-status`` takes an optional ``=MODE`` (``host``, ``contract``,
    ``all``).

    A click option with an optional value would swallow the next argument
    (``scan --exit-status /etc/letsencrypt/live`` would read the path as the mode), so the value
    is accepted only attached with ``=``: ``--exit-status=contract`` becomes ``--exit-status
    --exit-mode contract`` before click parses the line.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        rewritten: list[str] = []
        for n, arg in enumerate(args):
            if arg == "--":
                rewritten.extend(args[n:])
                break
            if arg.startswith("--exit-status="):
                mode = arg.split("=", 1)[1]
                if mode not in {m.value for m in ExitMode}:  # named as typed, not --exit-mode
                    modes = ", ".join(repr(m.value) for m in ExitMode)
                    raise click.UsageError(f"Invalid value for '--exit-status': {mode!r} is "
                                           f"not one of {modes}.", ctx=ctx)
                rewritten.extend(["--exit-status", "--exit-mode", mode])
            else:
                rewritten.append(arg)
        return super().parse_args(ctx, rewritten)


def exit_status_options(func: Any) -> Any:
    """``--exit-status[=host|contract|all]`` (with :class:`ExitStatusCommand`)."""
    func = click.option("--exit-mode", type=click.Choice([m.value for m in ExitMode]),
                        default=None, hidden=True)(func)
    func = click.option(
        "--exit-status", "want_exit_status", is_flag=True,
        help="Exit for monitoring (Nagios): 0 ok, 1 warning, 2 critical, 3 unknown (a file "
             "could not be read, or nothing was monitored). --exit-status=host (the default) "
             "counts expiry, keys, unreadable files and chains; =contract counts contract "
             "actions only; =all counts both. docs/agent.md has the table.")(func)
    return func


def _exit_mode(want_exit_status: bool, mode: str | None) -> ExitMode | None:
    """The mode ``--exit-status`` asked for, ``None`` without it."""
    if mode is not None and not want_exit_status:
        raise click.UsageError("--exit-mode goes with --exit-status; write --exit-status=MODE")
    if not want_exit_status:
        return None
    return ExitMode(mode) if mode else ExitMode.HOST


def say_unknown(tally: MonitorTally, mode: ExitMode) -> None:
    """On stderr, why the answer is UNKNOWN (a monitoring system shows stderr to the operator)."""
    if exit_status(tally, mode) != EXIT_STATUS["unknown"]:
        return
    reasons = list(tally.unknown_reasons)
    if tally.errors and tally.errors == tally.error_files:
        reasons.insert(0, f"{tally.errors} file(s) or certificate(s) could not be read")
    elif tally.errors:
        # one file of many unreadable positions is one file to look at, not many
        reasons.insert(0, f"{tally.error_files} file(s) could not be read in full "
                          f"({tally.errors} error(s))")
    click.echo(f"UNKNOWN: {'; '.join(reasons)}", err=True)


@click.command("scan", cls=ExitStatusCommand)
# readable=False: an unreadable path is that path's permission-denied, not a usage error
@click.argument("paths", nargs=-1, required=True,
                type=click.Path(readable=False, path_type=Path))
@_binding_options
@click.option("--at", type=InstantType(), default=None, help=AT_OPTION_HELP)
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object per certificate, key file and failed file.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV, one line per certificate/file/error.")
@exit_status_options
@click.option("--password-file", type=FILE_THE_COMMAND_READS,  # refused by _passwords: 30
              help="PKCS#12/encrypted-key passwords, one per line.")
@click.option("--jobs", "-j", type=click.IntRange(min=0), default=0, show_default=True,
              help="Worker processes (0 = one per CPU). Used from "
                   f"{MIN_FILES_PER_JOB} files per worker.")
@click.pass_context
def scan_command(ctx: click.Context, paths: tuple[Path, ...], category: str | None,
                 item: str | None, tier: str | None, at: datetime | None, as_json: bool,
                 as_csv: bool, want_exit_status: bool, exit_mode: str | None,
                 password_file: Path | None, jobs: int) -> None:
    """Scan certificate files or directories once and classify every certificate.

    Needs no configuration. Directories are walked (links followed, loops reported);
    every file is accounted for: its certificates, or one error with a code. Without
    --exit-status the exit status is 0 when every file was read and 1 when any failed.
    """
    if as_json and as_csv:
        raise click.UsageError("--json and --csv exclude each other")
    mode = _exit_mode(want_exit_status, exit_mode)
    when = resolve_at(at)
    catalogue = _catalogue(ctx)
    binding = _binding(catalogue, category, item, tier)
    settings = _settings(ctx)
    limits = ReadLimits(max_size=_max_size(ctx))
    progress = _Progress(sys.stderr)
    passwords = _passwords(password_file)
    with _gc_paused():
        try:
            # written as classified, batch by batch: memory does not grow with the store; the
            # table spills what it prints to a temporary database (agent.tablespill) and
            # SQLite sorts it
            sys.stdout.flush()
            outcome = stream_scan(
                list(paths), catalogue, binding=binding, at=when, settings=settings,
                limits=limits, fmt="json" if as_json else "csv" if as_csv else "table",
                jobs=jobs or default_jobs(), out=sys.stdout.buffer, passwords=passwords,
                progress=progress if progress.enabled else None, windows=_windows(ctx))
            sys.stdout.buffer.flush()
        finally:
            progress.close()
        if outcome.table is not None:
            try:
                _echo_lines(iter_table(outcome.table, mode=mode or ExitMode.HOST))
            finally:
                outcome.table.close()
    if mode is not None:
        say_unknown(outcome.tally, mode)
        ctx.exit(exit_status(outcome.tally, mode))
    if outcome.has_errors:
        ctx.exit(1)


def _echo_lines(lines: Iterator[str], chunk: int = 2000) -> None:
    """``click.echo("\\n".join(lines))`` without the whole text in memory at once."""
    for piece in iter(lambda: list(itertools.islice(lines, chunk)), []):
        click.echo("\n".join(piece))


# ---------------------------------------------------------------- inspect

@click.command("inspect")
@click.argument("target")
@_binding_options
@click.option("--at", type=InstantType(), default=None, help=AT_OPTION_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print everything as one JSON object.")
@click.option("--servername", metavar="NAME",
              help="For HOST:PORT: the TLS server name (SNI) to ask for and verify against. "
                   "Default: HOST.")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=10.0, show_default=True,
              help="For HOST:PORT: seconds to wait for the connection and the handshake.")
@click.option("--ca-file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="For HOST:PORT: trust anchors (PEM) to verify the chain against. "
                   "Default: the system store.")
@click.option("--password-file", type=FILE_THE_COMMAND_READS,  # refused by _passwords: 30
              help="PKCS#12/encrypted-key passwords, one per line.")
@click.pass_context
def inspect_command(ctx: click.Context, target: str, category: str | None, item: str | None,
                    tier: str | None, at: datetime | None, as_json: bool,
                    servername: str | None, timeout: float, ca_file: Path | None,
                    password_file: Path | None) -> None:
    """Everything about one certificate file, a directory's files, or the whole chain a
    live server presents.

    TARGET is a file (PEM, DER, PKCS#7, PKCS#12), a directory (every file in it, walked,
    placed and paired as `scan` does, shown file by file) or HOST:PORT ([IPv6]:PORT). The
    chain is fetched as presented (no verification needed to read it); whether it verifies is
    reported separately. Exit status 1 when a file or a certificate in one could not be read.
    """
    # the live client (ssl, sockets) is imported here, not with scan: ~8 ms of its start
    from .livechain import fetch_chain, parse_target, verify_chain

    when = resolve_at(at)
    catalogue = _catalogue(ctx)
    binding = _binding(catalogue, category, item, tier)
    settings = _settings(ctx)
    # os.path.lexists never raises: a file under a directory this user may not search is read
    # (and reported as permission-denied), not taken for a HOST:PORT or a traceback.
    try:
        live = None if os.path.lexists(target) else parse_target(target)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="TARGET") from None
    if live is None:
        limits = ReadLimits(max_size=_max_size(ctx))
        passwords = _passwords(password_file)
        results = scan_paths([Path(target)], limits=limits, passwords=passwords)
        neighbours = _neighbours(Path(target), limits, passwords)
        report = build_report([*results, *neighbours], catalogue, binding=binding, at=when,
                              settings=settings, windows=_windows(ctx))
        # the neighbours placed the target's certificates and lent their keys, as the
        # directory does in scan; what is shown is the target's
        report = _in_file_order(_only(report, {r.path for r in results}),
                                [r.path for r in results])
        result = results[0] if len(results) == 1 else None
        if as_json:
            echo_json({
                "path": target,
                "certificates": [r.to_json() for r in report.rows],
                "files": [item_json(f) for f in report.files],
                "errors": [item_json(e) for e in report.errors],
                "skipped": [item_json(s) for s in report.skipped],
                "severity": _inspect_severity(report),
            })
        else:
            click.echo(render_detail(report, result))
        if report.errors:
            ctx.exit(1)
        return
    host, port = live
    chain = fetch_chain(host, port, servername=servername, timeout=timeout)
    verdict = verify_chain(chain.certificates, server=servername or host, at=when,
                           ca_file=ca_file)
    live_result = _chain_result(chain.location, chain.certificates)
    report = build_report([live_result], catalogue, binding=binding, at=when, settings=settings,
                          windows=_windows(ctx))
    if verdict is not None:
        report = _with_unverified_chain(report, verdict)
    report = _in_file_order(report, [chain.location])
    rows = report.rows
    if as_json:
        echo_json({
            "target": chain.location,
            "servername": chain.servername,
            "protocol": chain.protocol,
            "cipher": chain.cipher,
            "presented": len(chain.certificates),
            "verified": verdict is None,
            "verify_problem": verdict.problem if verdict is not None else None,
            "verify_error": verdict.message if verdict is not None else None,
            "certificates": [r.to_json() for r in rows],
            "errors": [item_json(e) for e in report.errors],
            "severity": _inspect_severity(report),
        })
    else:
        click.echo(for_terminal(
            f"{chain.location} ({chain.protocol}, {chain.cipher}); SNI "
            f"{chain.servername or '-'}; {len(chain.certificates)} certificate(s) presented"))
        click.echo("chain verifies" if verdict is None
                   else for_terminal(f"chain does NOT verify: {verdict.message}"))
        click.echo("")
        click.echo(render_detail(report, None))
    if report.errors:
        ctx.exit(1)


NEIGHBOURS_MAX = 64
"""``inspect FILE`` reads the keys of at most this many files beside it (a certbot set, an
nginx directory): enough to pair, never a walk of a flat store."""


def _neighbours(target: Path, limits: ReadLimits,
                passwords: Sequence[bytes]) -> list[FileResult]:
    """The readings of the files beside ``target`` (certbot's ``chain.pem`` and
    ``privkey.pem`` beside ``cert.pem``), so that ``inspect`` places a certificate among its
    directory (its chain, whose expiry is a finding on the leaf) and pairs it with its key
    exactly as ``scan`` does for the directory. Their paths are spelt as ``target``'s
    directory is, so that they group with it."""
    if not target.is_file():
        return []
    try:
        with os.scandir(target.parent) as entries:
            names = [e.name for e in itertools.islice(entries, NEIGHBOURS_MAX + 1)]
    except OSError:
        return []
    if len(names) > NEIGHBOURS_MAX:
        return []
    here = os.path.realpath(target)
    others = [target.parent / n for n in sorted(names)
              if os.path.realpath(target.parent / n) != here
              and not os.path.isdir(target.parent / n)]
    return [r for r in scan_paths(others, limits=limits, passwords=passwords)
            if r.error is None and r.skipped is None]


def _only(report: ScanReport, paths: AbstractSet[str]) -> ScanReport:
    """``report`` restricted to the rows, key files, errors and skips of ``paths``."""
    return replace(report, rows=tuple(r for r in report.rows if r.record.path in paths),
                   files=tuple(f for f in report.files if f.path in paths),
                   errors=tuple(e for e in report.errors if e.path in paths),
                   skipped=tuple(s for s in report.skipped if s.path in paths))


def _in_file_order(report: ScanReport, walked: Sequence[str]) -> ScanReport:
    """``report``'s certificates as ``inspect`` shows them: file by file in the order the
    files were read (``inspect DIR`` walks as ``scan`` does), each file's in file order (the
    report itself ranks them by urgency)."""
    position = {path: n for n, path in enumerate(walked)}
    return replace(report, rows=tuple(sorted(
        report.rows, key=lambda r: (position.get(r.record.path, len(position)),
                                    r.record.index))))


def _inspect_severity(report: ScanReport) -> str:
    """``inspect --json``'s ``severity``: the worst of the certificates and keys, or
    ``unknown`` when something could not be read and nothing critical is known (the
    precedence of ``--exit-status``): a file nobody could read is never ``ok``."""
    worst = report.severity
    if report.errors and worst < Severity.CRITICAL:
        return "unknown"
    return worst.name.lower()


def _with_unverified_chain(report: ScanReport, verdict: ChainVerdict) -> ScanReport:
    """A live chain that does not verify is a warning on the server's certificate (position 0),
    saying what to do."""
    finding = Finding(code="chain-unverified", clause="", severity=Severity.WARNING,
                      message=verdict.message)
    rows = tuple(replace(r, findings=(*r.findings, finding)) if r.record.index == 0 else r
                 for r in report.rows)
    return replace(report, rows=rows)


def _chain_result(location: str, ders: Sequence[bytes]) -> FileResult:
    """The presented chain as if it were a file at ``host:port`` (index = position sent)."""
    from .records import CertificateRecord, FileError

    records: list[CertificateRecord] = []
    errors: list[FileError] = []
    for index, der in enumerate(ders):
        try:
            parsed = parse_der_certificate(der)
        except MalformedCertificateError as exc:
            errors.append(FileError(path=location, code="malformed-certificate",
                                    message=exc.message, index=index))
            continue
        records.append(CertificateRecord(path=location, index=index, fmt="tls",
                                         facts=parsed.facts, findings=parsed.findings,
                                         spki_sha256=parsed.spki_sha256))
    return FileResult(path=location, certificates=tuple(records), cert_errors=tuple(errors))

