"""``certescrow scan``, ``certescrow inspect`` and the ``certescrow agent`` group.

Thin on purpose: each command parses options, calls the reader/scan and
:func:`agent.report.build_report`, and renders. No decision lives here.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import click

from policy.catalogue import Catalogue, load_catalogue
from policy.category import Category
from policy.cliutil import AT_OPTION_HELP, InstantType, config_section, echo_json, resolve_at
from policy.intake import Binding
from policy.paths import catalogue_path
from policy.settings import PolicySettings
from policy.tiers import Tier
from policy.timeparse import format_instant

from .errors import AgentError, ConfigError
from .livechain import fetch_chain, parse_target, verify_chain
from .records import FileResult, ReadLimits
from .report import CertificateRow, RenderedReport, ScanReport, build_report, render_table
from .scan import iter_scan, scan_paths
from .scanpool import MIN_FILES_PER_JOB, default_jobs, render_parallel
from .x509facts import MalformedCertificateError, parse_der_certificate

__all__ = ["agent_group", "inspect_command", "scan_command"]

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
    func = click.option("--category", type=click.Choice(["I", "II", "III"]),
                        help="Item category (Art.1); III = bring-your-own.")(func)
    return func


def _binding(catalogue: Catalogue, category: str | None, item: str | None,
             tier: str | None) -> Binding:
    if item is not None:
        catalogue.item(item)  # an unknown handle is an error listing the valid ones, up front
    return Binding(category=Category.parse(category) if category else None, item=item,
                   tier=Tier.parse(tier) if tier else None)


def _catalogue(ctx: click.Context) -> Catalogue:
    return load_catalogue(catalogue_path(None, config_section(ctx, "policy")))


def _settings(ctx: click.Context) -> PolicySettings:
    try:
        return PolicySettings.from_mapping(config_section(ctx, "policy"))
    except ValueError as exc:
        raise ConfigError(f"configuration: {exc}") from None


def _max_size(ctx: click.Context) -> int:
    value = config_section(ctx, "agent").get("max_file_size", DEFAULT_MAX_SIZE)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"configuration: agent.max_file_size: expected a positive number of "
                          f"bytes, got {value!r}")
    return value


def _passwords(password_file: Path | None) -> tuple[bytes, ...]:
    """PKCS#12 / key passwords, one per line, from a file: never from argv, where every user
    of the machine could read them."""
    if password_file is None:
        return ()
    from vault.secretfile import SecretFileError, read_secret_file  # a FIFO must not hang us

    try:
        text = read_secret_file(password_file, what="password file", max_bytes=64 * 1024)
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

@click.command("scan")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@_binding_options
@click.option("--at", type=InstantType(), default=None, help=AT_OPTION_HELP)
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object per certificate, key file and failed file.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV, one line per certificate/file/error.")
@click.option("--exit-status", "want_exit_status", is_flag=True,
              help="Exit for monitoring (Nagios): 0 ok, 1 warning, 2 critical, 3 unknown "
                   "(a file could not be read).")
@click.option("--password-file", type=click.Path(dir_okay=False, path_type=Path),
              help="PKCS#12/encrypted-key passwords, one per line.")
@click.option("--jobs", "-j", type=click.IntRange(min=0), default=0, show_default=True,
              help="Worker processes for --json/--csv (0 = one per CPU). Used from "
                   f"{MIN_FILES_PER_JOB} files per worker.")
@click.pass_context
def scan_command(ctx: click.Context, paths: tuple[Path, ...], category: str | None,
                 item: str | None, tier: str | None, at: datetime | None, as_json: bool,
                 as_csv: bool, want_exit_status: bool, password_file: Path | None,
                 jobs: int) -> None:
    """Scan certificate files or directories once and classify every certificate.

    Needs no configuration. Directories are walked (links followed, loops reported);
    every file is accounted for: its certificates, or one error with a code. Without
    --exit-status the exit status is 0 when every file was read and 1 when any failed.
    """
    if as_json and as_csv:
        raise click.UsageError("--json and --csv exclude each other")
    when = resolve_at(at)
    catalogue = _catalogue(ctx)
    binding = _binding(catalogue, category, item, tier)
    settings = _settings(ctx)
    limits = ReadLimits(max_size=_max_size(ctx))
    progress = _Progress(sys.stderr)
    passwords = _passwords(password_file)
    outcome: RenderedReport | ScanReport
    with _gc_paused():
        try:
            if as_json or as_csv:
                # rendered as classified: 100,000 rows are kept as text, not as objects
                outcome = render_parallel(
                    list(paths), catalogue, binding=binding, at=when, settings=settings,
                    limits=limits, fmt="json" if as_json else "csv",
                    jobs=jobs or default_jobs(), passwords=passwords, progress=progress)
            else:
                results = iter_scan(list(paths), limits=limits, passwords=passwords,
                                    progress=progress, group_directories=True)
                outcome = build_report(results, catalogue, binding=binding, at=when,
                                       settings=settings)
        finally:
            progress.close()
        if isinstance(outcome, RenderedReport):
            sys.stdout.flush()
            outcome.write(sys.stdout.buffer)
            sys.stdout.buffer.flush()
        else:
            click.echo(render_table(outcome))
    if want_exit_status:
        ctx.exit(outcome.exit_status())
    if outcome.has_errors:
        ctx.exit(1)


# ---------------------------------------------------------------- inspect

def _yes_no(value: bool | None) -> str:
    return "-" if value is None else ("yes" if value else "no")


def _render_row(row: CertificateRow, heading: str) -> list[str]:
    c = row.classification
    f = row.record.facts
    days, rest = divmod(c.validity_seconds, 86_400)
    lines = [
        heading,
        f"  subject:        {f.subject}",
        f"  issuer:         {f.issuer}",
        f"  serial:         {f.serial}",
        f"  sha256:         {f.sha256}",
        f"  SANs:           {', '.join(f.sans) or '-'}",
        f"  not before:     {format_instant(f.not_before_utc)}",
        f"  not after:      {format_instant(f.not_after_utc)} "
        f"({c.days_left} day(s) left, Asia/Tokyo)",
        f"  validity:       {days} d{f' {rest} s' if rest else ''} ({c.validity_seconds} s) "
        f"-> tier {c.tier.value}",
        f"  key:            {f.key_type}{f' {f.key_size}' if f.key_size else ''}; "
        f"signature {f.signature_algorithm}",
        f"  policies:       {', '.join(f.policy_oids) or '-'}",
        f"  CA / self-signed: {_yes_no(f.is_ca)} / {_yes_no(f.self_signed)}",
        f"  item:           {c.item or ' or '.join(c.candidates) or '?'} "
        f"(category {c.category.value}); contracted tier "
        f"{c.contracted_tier.value if c.contracted_tier else '-'}; compliant "
        f"{_yes_no(c.compliant)}",
        f"  renewable:      {_yes_no(c.renewable)}",
        f"  key matches:    {_yes_no(row.key_matches)}",
        f"  severity:       {row.severity.name.lower()}",
    ]
    if row.findings:
        lines.append("  findings:")
        for finding in row.findings:
            clause = f" ({finding.clause})" if finding.clause else ""
            lines.append(f"    [{finding.severity.name.lower()}] {finding.code}{clause}: "
                         f"{finding.message}")
    if c.actions:
        lines.append("  actions:")
        for action in c.actions:
            due = f" due {action.due.isoformat()}" if action.due else ""
            lines.append(f"    {action.action.value}{due} ({action.clause}): "
                         f"{action.explanation_en}")
    return lines


def _render_report_detail(report: ScanReport, result: FileResult | None) -> str:
    lines: list[str] = []
    for row in sorted(report.rows, key=lambda r: r.record.index):
        if lines:
            lines.append("")
        lines.extend(_render_row(
            row, f"Certificate #{row.record.index} ({row.record.fmt}) {row.record.path}"))
    if result is not None and result.keys:
        lines.append("")
        lines.append("Private keys:")
        for key in result.keys:
            lines.append(f"  #{key.index}: {key.key_type}"
                         f"{f' {key.key_size}' if key.key_size else ''}, "
                         f"{'encrypted' if key.encrypted else 'unencrypted'}, mode "
                         f"{key.mode:04o}, owner uid {key.owner_uid}")
    for file_row in report.files:
        for finding in file_row.findings:
            lines.append(f"  [{finding.severity.name.lower()}] {finding.code}: "
                         f"{finding.message}")
    if report.errors:
        lines.append("")
        for error in report.errors:
            where = error.path if error.index is None else f"{error.path}#{error.index}"
            lines.append(f"Error: {where}: {error.code}: {error.message}")
    return "\n".join(lines)


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
@click.option("--password-file", type=click.Path(dir_okay=False, path_type=Path),
              help="PKCS#12/encrypted-key passwords, one per line.")
@click.pass_context
def inspect_command(ctx: click.Context, target: str, category: str | None, item: str | None,
                    tier: str | None, at: datetime | None, as_json: bool,
                    servername: str | None, timeout: float, ca_file: Path | None,
                    password_file: Path | None) -> None:
    """Everything about one certificate file, or the whole chain a live server presents.

    TARGET is a file (PEM, DER, PKCS#7, PKCS#12) or HOST:PORT ([IPv6]:PORT). The chain is
    fetched as presented (no verification needed to read it); whether it verifies is reported
    separately. Exit status 1 when the file or a certificate in it could not be read.
    """
    when = resolve_at(at)
    catalogue = _catalogue(ctx)
    binding = _binding(catalogue, category, item, tier)
    settings = _settings(ctx)
    live = None if Path(target).exists() else parse_target(target)
    if live is None:
        limits = ReadLimits(max_size=_max_size(ctx))
        results = scan_paths([Path(target)], limits=limits, passwords=_passwords(password_file))
        report = build_report(results, catalogue, binding=binding, at=when, settings=settings)
        result = results[0] if len(results) == 1 else None
        if as_json:
            echo_json({
                "path": target,
                "certificates": [r.to_json() for r in
                                 sorted(report.rows, key=lambda r: r.record.index)],
                "files": [f.to_json() for f in report.files],
                "errors": [e.to_json() for e in report.errors],
                "severity": report.severity.name.lower(),
            })
        else:
            click.echo(_render_report_detail(report, result))
        if report.errors:
            ctx.exit(1)
        return
    host, port = live
    chain = fetch_chain(host, port, servername=servername, timeout=timeout)
    verify_error = verify_chain(chain.certificates, server=servername or host, at=when,
                                ca_file=ca_file)
    live_result = _chain_result(chain.location, chain.certificates)
    report = build_report([live_result], catalogue, binding=binding, at=when, settings=settings)
    rows = sorted(report.rows, key=lambda r: r.record.index)
    if as_json:
        echo_json({
            "target": chain.location,
            "servername": chain.servername,
            "protocol": chain.protocol,
            "cipher": chain.cipher,
            "presented": len(chain.certificates),
            "verified": verify_error is None,
            "verify_error": verify_error,
            "certificates": [r.to_json() for r in rows],
            "errors": [e.to_json() for e in report.errors],
            "severity": report.severity.name.lower(),
        })
    else:
        click.echo(f"{chain.location} ({chain.protocol}, {chain.cipher}); SNI "
                   f"{chain.servername or '-'}; {len(chain.certificates)} certificate(s) "
                   "presented")
        click.echo("chain verifies" if verify_error is None
                   else f"chain does NOT verify: {verify_error}")
        click.echo("")
        click.echo(_render_report_detail(report, None))
    if report.errors:
        ctx.exit(1)


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


# ---------------------------------------------------------------- agent group

@click.group("agent")
def agent_group() -> None:
    """The daemon that watches certificate stores."""


def _register_daemon_commands() -> None:
    from .daemon_cli import check_config_command, run_command

    agent_group.add_command(run_command)
    agent_group.add_command(check_config_command)


_register_daemon_commands()
