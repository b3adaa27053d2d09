"""The ``certescrow agent`` group (``agent run``, ``agent check-config`` and the commands
added to it): the daemon's thin shell.

This is the outermost layer: the only place the daemon reads the real clock (through
``policy.cliutil.resolve_at``), opens the ledger and the vault, and installs signal handlers.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from policy.cliutil import (
    FILE_THE_COMMAND_READS,
    InstantType,
    echo_json,
    refuse_a_future_at,
    resolve_at,
)
from policy.decisions import Finding, Severity
from policy.intake import Intake, IntakeReceipt, Observation
from untrusted.text import for_terminal

from .cli import ExitStatusCommand, exit_status_options, say_unknown
from .config import Config, load_config, load_raw_config, nested_stores, root_config
from .daemon import Daemon, ScanSummary, VaultLike
from .errors import AgentError
from .logs import EventLog, configure_logging
from .monitoring import ExitMode, MonitorTally, counts_in, exit_status
from .readindex import READ_INDEX_NAME
from .render import render_table
from .report import ScanReport
from .sdnotify import Notifier
from .statelock import StateLock

__all__ = ["agent_findings", "agent_group", "check_config_command", "run_command",
           "summary_report", "summary_tally"]


def summary_report(summary: ScanSummary, *, at: datetime) -> ScanReport:
    """The scan's rows as ``certescrow scan``'s report: what ``--once`` renders and counts."""
    return ScanReport(rows=tuple(summary.certificates), files=tuple(summary.key_files),
                      errors=tuple(summary.errors), skipped=tuple(summary.skipped), at=at)


def summary_tally(summary: ScanSummary, config: Config, *, at: datetime,
                  agent_findings: tuple[Finding, ...] = ()) -> MonitorTally:
    """What ``agent run --once --exit-status`` decides from: the report ``scan`` would make of
    the same files, counted as ``scan`` counts it (:meth:`agent.report.ScanReport.tally`:
    certificates, key files, errors), and a configured store that does not exist, or holds no
    certificate, as UNKNOWN with the reason: nothing monitored is never OK. ``agent_findings``
    are the agent's own (the fleet outbox filling up: ``outbox-filling``), counted in the mode
    their code belongs to (:func:`agent.monitoring.counts_in`: the host operator's)."""
    tally = summary_report(summary, at=at).tally(nothing_read=None)
    for finding in agent_findings:
        host = counts_in(finding.code) is ExitMode.HOST
        tally.add(host=finding.severity if host else Severity.OK,
                  contract=Severity.OK if host else finding.severity)
    seen_in = {row.store for row in summary.certificates if row.store is not None}
    missing = set(summary.missing_stores)
    for store in config.agent.stores:
        where = str(store.path)
        if where in missing:
            tally.unknown(f"store {where} does not exist")
        elif where not in seen_in:
            tally.unknown(f"store {where} holds no certificate")
    if not config.agent.stores:
        tally.unknown("no store is configured: nothing is monitored")
    return tally


def _config_path(ctx: click.Context, option: Path | None) -> Path | None:
    if option is not None:
        return option
    root = ctx.find_root().obj
    if isinstance(root, dict) and root.get("config_path") is not None:
        return Path(root["config_path"])
    return None


def _vault_factory(daemon_ref: list[Daemon]) -> Callable[[], VaultLike]:
    """The daemon's vault, opened at its first escrow. A vault that does not exist yet is
    created only around a master key its source already holds (the unit's credential, an
    existing key file or keyring entry): the daemon never makes a master key, which nobody
    would know to back up (a mistyped ``key_file`` made a new key and vault in silence, the
    review of session 13); ``vault init`` does, and says so."""
    def open_configured_vault() -> VaultLike:
        from vault import VaultLockedError, key_source_from_settings, open_vault

        daemon = daemon_ref[0]
        config = daemon.config
        source = key_source_from_settings(config.vault.as_settings())
        path = config.vault.path.expanduser()
        create = not (path.exists() or path.is_symlink())
        if create:
            try:
                source.load(None)
            except VaultLockedError as exc:  # the vault's own words: never key material
                raise AgentError(
                    f"no vault at {path}, and no usable master key at {source.describe()} "
                    f"({exc}): the daemon makes no master key (nobody would know to back it "
                    "up); create the vault and its key with `certescrow vault init`, keep a "
                    "copy of the key offline, then reload") from None
        vault: VaultLike = open_vault(path, source, create=create)
        if create:
            daemon.log.warning("vault-created", f"{path}: vault created for escrow around "
                               f"the master key of {source.describe()}: keep a copy of that "
                               "key offline (without it the escrowed keys are lost)",
                               path=str(path))
        return vault

    return open_configured_vault


class _RecordedNow:
    """The agent's intake with the real clock as every row's recording time, for a run whose
    clock is pinned by ``--at``: an observation stays dated as the agent saw it (``--at``),
    but the ledger learned of it now (``recorded``; docs/ledger.md "Two meanings of --at"), so
    ``--as-recorded`` never answers with what the ledger had not been told yet. A place found
    empty (``report_gone``: one instant for both) is dated and recorded now. Everything else
    is the wrapped intake's."""

    def __init__(self, intake: Intake, clock: Callable[[], datetime]) -> None:
        self.wrapped = intake
        self._clock = clock

    def report(self, observations: Sequence[Observation], *, at: datetime) -> IntakeReceipt:
        del at  # the agent's pinned clock: the observations carry it
        return self.wrapped.report(observations, at=self._clock())

    def report_gone(self, host: str, location: str, *, at: datetime) -> int:
        del at
        return self.wrapped.report_gone(host, location, at=self._clock())

    def __getattr__(self, name: str) -> Any:
        return getattr(self.wrapped, name)


def _refuse_a_future_at(at: datetime | None) -> None:
    """``agent run`` always writes what it sees (the ledger, or the fleet's outbox), and the
    ledger records what happened: an ``--at`` after the real clock is a usage error (exit 2),
    refused before anything is opened. A question about a future day is ``certescrow scan
    --at`` (which writes nothing) or ``policy actions --at``."""
    refuse_a_future_at(at, why=(
        "agent run reports what it sees to the ledger, which records what happened; ask "
        "about a future time with `certescrow scan --at` (it writes nothing) or `certescrow "
        "policy actions --at`; nothing was recorded"))


def build_daemon(config: Config, *, config_path: Path | None, at: datetime | None,
                 notifier: Notifier, log: EventLog, former_host: str | None = None) -> Daemon:
    from policy.ledger import Ledger

    from .fleet_bindings import apply_assigned
    from .fleet_client import inventory_of, open_reporting
    from .inventory import InventorySlot

    # [report] server = "https://…" (issue 13): report to the policy service through the
    # outbox instead of the local ledger.
    raw = load_raw_config(config.source)[0] if config.source is not None else {}
    remote = open_reporting(raw, source=str(config.source), host=config.agent.host,
                            state_dir=config.policy.state_dir,
                            vault_settings=config.vault.as_settings(),
                            clock=lambda: resolve_at(at), log=log)

    def recorded_now(opened: Intake) -> Intake:
        # The clock pinned by --at dates what the agent sees, never when a row was recorded.
        return opened if at is None else _RecordedNow(opened, lambda: resolve_at(None))

    intake = recorded_now(remote if remote is not None else Ledger.open(config.policy.ledger))
    assigned = remote.bindings if remote is not None else None

    def with_assigned(loaded: Config) -> Config:
        # The desk's bindings (fetched, else the saved set) over the configuration's, at start
        # and at every reload: agent/fleet_bindings.py.
        return loaded if assigned is None else apply_assigned(loaded, assigned.current(), log)

    config = with_assigned(config)
    ref: list[Daemon] = []
    # A local ledger deleted or replaced under the daemon is opened again at its path.
    local = remote is None
    daemon = Daemon(config, intake=intake, clock=lambda: resolve_at(at),
                    config_path=config_path, vault_factory=_vault_factory(ref),
                    notifier=notifier, log=log,
                    ledger_path=(config.policy.ledger
                                 if local and isinstance(config.policy.ledger, Path) else None),
                    reopen_intake=((lambda: recorded_now(Ledger.open(config.policy.ledger)))
                                   if local else None),
                    read_index_path=config.policy.state_dir / READ_INDEX_NAME,
                    former_host=former_host,
                    config_loader=lambda path: with_assigned(load_config(path)),
                    reload_intake=(None if remote is None else lambda new: (
                        remote.reload_credentials(new.report, source=str(new.source),
                                                  vault_settings=new.vault.as_settings()))))
    ref.append(daemon)
    if remote is not None:
        # Built by the main thread, which owns the read index; the sender thread only reads
        # the published snapshot (agent/inventory.py).
        slot = InventorySlot(lambda: inventory_of(daemon.index, at=resolve_at(at),
                                                  windows=daemon.config.agent.windows))
        daemon.sync.inventory_slot = slot
        remote.inventory = slot
        # New bindings from the desk are applied as a SIGHUP applies an edited binding.
        remote.on_bindings = daemon.request_reload
        remote.start()
    return daemon


@click.command("run", cls=ExitStatusCommand)
@click.option("--config", "config_option", type=FILE_THE_COMMAND_READS,
              help="Configuration file (default: the root --config, $CERTESCROW_CONFIG, the "
              "per-user file, /etc/certescrow/config.toml, else built-in defaults).")
@click.option("--once", is_flag=True,
              help="Initial full scan, report to the ledger, print a summary, exit.")
@click.option("--at", type=InstantType(), default=None,
              help="Run as of this time (ISO 8601; no offset = Asia/Tokyo; a bare date = 00:00 "
                   "JST): observations are dated then and evaluated as of then; the ledger "
                   "stamps them with the real clock as their recording time. Never in the "
                   "future (usage error, exit 2): the ledger records what happened. Default: "
                   "now.")
@click.option("--log-format", type=click.Choice(["text", "json"]), default=None,
              help="Log lines on stderr (default: [agent].log_format).")
@click.option("--json", "as_json", is_flag=True, help="With --once: print the summary as JSON.")
@click.option("--former-host", metavar="NAME", default=None,
              help="This machine reported as host NAME before: close NAME's open sightings "
                   "under the configured stores (gone), as a start does by itself with a "
                   "SQLite ledger. For a shared ledger no other machine named NAME writes.")
@exit_status_options
@click.pass_context
def run_command(ctx: click.Context, config_option: Path | None, once: bool,
                at: datetime | None, log_format: str | None, as_json: bool,
                former_host: str | None, want_exit_status: bool,
                exit_mode: str | None) -> None:
    """Watch the configured certificate stores and report to the ledger (until SIGTERM).

    SIGHUP reloads the configuration (a bad one is refused and the old one keeps running).
    Under systemd (Type=notify) it sends READY, STATUS and WATCHDOG.
    """
    if exit_mode is not None and not want_exit_status:
        raise click.UsageError("--exit-mode goes with --exit-status; write --exit-status=MODE")
    mode = (ExitMode(exit_mode) if exit_mode else ExitMode.HOST) if want_exit_status else None
    if mode is not None and not once:
        raise click.UsageError("--exit-status goes with --once")
    _refuse_a_future_at(at)
    # The root command read and validated the configuration; --config here names another file.
    config = (load_config(config_option) if config_option is not None
              else root_config(ctx.find_root().obj))
    if former_host is not None and former_host in ("", config.agent.host):
        raise click.UsageError("--former-host names the host this machine reported as before, "
                               f"not its host now ({config.agent.host})")
    logger = configure_logging(log_format or config.agent.log_format)
    log = EventLog(logger)
    notifier = Notifier() if not once else Notifier("")
    # held for the process's life (the kernel drops it at exit); --once lets it go when done
    lock = StateLock(config.policy.state_dir)
    lock.acquire()
    daemon = build_daemon(config, config_path=config.source, at=at, notifier=notifier, log=log,
                          former_host=former_host)
    if once:
        try:
            summary = daemon.full_scan(collect=True)
        finally:
            daemon.shutdown()
            lock.release()
        when = resolve_at(at)
        findings = agent_findings(daemon, at=when)
        tally = summary_tally(summary, daemon.config, at=when, agent_findings=findings)
        if as_json:
            echo_json(summary if not findings else
                      {**summary.to_json(), "agent_findings": [f.to_json() for f in findings]})
        else:
            _print_summary(summary, tally, at=when, mode=mode or ExitMode.HOST)
            for finding in findings:
                click.echo(f"{finding.severity.name.lower()}: {finding.code}: {finding.message}")
        if mode is not None:
            say_unknown(tally, mode)
            ctx.exit(exit_status(tally, mode))
        if tally.errors:
            ctx.exit(1)  # as `certescrow scan` of the same files: one could not be read
        return
    # A SIGHUP reload keeps the log format the command line asked for.
    daemon.log_format_override = log_format
    daemon.install_signal_handlers()
    ctx.exit(daemon.run())


def agent_findings(daemon: Daemon, *, at: datetime) -> tuple[Finding, ...]:
    """The agent's own findings after a run (reporting to a fleet service): the outbox past
    its warning level, the client certificate's overdue renewal."""
    found = getattr(daemon.intake, "agent_findings", None)
    out = tuple(f for f in found(at) if isinstance(f, Finding)) if callable(found) else ()
    failed = len(daemon.escrow.failed)
    if failed:
        # A key file holds no certificate for its escrow-failed finding to sit on, so the
        # run itself says it (and --exit-status counts it): escrow is Art.4(7)'s duty.
        out = (*out, Finding(
            code="escrow-failed", clause="Art.4(7)", severity=Severity.CRITICAL,
            message=f"{failed} file(s) of escrow stores could not be escrowed into the vault "
                    "(the escrow-failed log lines say why); they are tried again at the next "
                    "full scan"))
    return out


def _print_summary(summary: ScanSummary, tally: MonitorTally, *, at: datetime,
                   mode: ExitMode) -> None:
    """The same table as ``certescrow scan`` (agent/render.py), then what only the daemon
    knows: escrow puts and sightings gone."""
    report = summary_report(summary, at=at)
    click.echo(render_table(report, mode=mode, tally=tally))
    # files met once each; read: parsed now (unchanged files come from the read index)
    # puts are idempotent: "new" is what this run added to the vault
    new = sum(1 for record in summary.escrowed if record.created)
    click.echo(f"{summary.files} file(s) scanned, {summary.files_read} read; "
               f"{len(summary.escrowed)} escrow put(s), {new} new; {summary.gone} gone")


@click.command("check-config")
@click.argument("file", required=False, type=FILE_THE_COMMAND_READS)
@click.option("--json", "as_json", is_flag=True, help="Print the effective configuration as JSON.")
@click.pass_context
def check_config_command(ctx: click.Context, file: Path | None, as_json: bool) -> None:
    """Validate a configuration file and print the effective configuration (defaults filled
    in). Exits 31 with the file and the key on the first error."""
    from policy.paths import ledger_display

    config = load_config(_config_path(ctx, file))
    data = config.to_json()
    missing = [s["path"] for s in data["agent"]["stores"] if not Path(s["path"]).is_dir()]
    # Nested stores are allowed (a contract for one directory of a larger store), but the
    # outer store's settings silently not applying below the inner root surprises whoever
    # wrote them by accident: say so, as a note.
    notes = [f"store {inner.path} is inside store {outer.path}: the settings of "
             f"{inner.path} apply to the files under it (the innermost store wins)"
             for outer, inner in nested_stores(config.agent.stores,
                                               resolve=lambda p: Path(os.path.realpath(p)))]
    if as_json:
        data["warnings"] = [f"store {p} does not exist" for p in missing]
        data["notes"] = notes
        echo_json(data)
        return
    click.echo(f"# configuration: {config.source or 'built-in defaults'} (valid)")
    # Secrets are never printed, and the header must not claim a complete copy without them:
    # an operator who installs this text in place of the file would lose the passwords.
    left_out = []
    if isinstance(config.policy.ledger, str) and \
            ledger_display(config.policy.ledger) != config.policy.ledger:
        left_out.append("the ledger DSN's password")
    if any(store.pkcs12_passwords for store in config.agent.stores):
        left_out.append("the PKCS#12 passwords")
    if left_out:
        click.echo(f"# printed in full but for {' and '.join(left_out)} (left out): read "
                   "back, this text is the same configuration once "
                   f"{'it is' if len(left_out) == 1 else 'they are'} put back")
    else:
        click.echo("# printed in full: read back, this text is the same configuration")
    click.echo(config.to_toml(), nl=False)
    for path in missing:
        click.echo(f"warning: store {path} does not exist (watched once it appears)", err=True)
    for note in notes:
        click.echo(f"note: {for_terminal(note)}", err=True)


@click.group("agent")
def agent_group() -> None:
    """The daemon that watches certificate stores."""


agent_group.add_command(run_command)
agent_group.add_command(check_config_command)
