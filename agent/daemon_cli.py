"""``certescrow agent run`` and ``certescrow agent check-config``: the daemon's thin shell.

This is the outermost layer: the only place the daemon reads the real clock (through
``policy.cliutil.resolve_at``), opens the ledger and the vault, and installs signal handlers.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from policy.cliutil import AT_OPTION_HELP, InstantType, echo_json, resolve_at
from policy.decisions import Severity
from policy.intake import Intake

from .config import Config, load_config, load_raw_config
from .daemon import CertificateSeen, Daemon, ScanSummary, VaultLike
from .logs import EventLog, configure_logging
from .readindex import READ_INDEX_NAME
from .sdnotify import Notifier

__all__ = ["EXIT_STATUS", "check_config_command", "exit_status", "run_command"]

EXIT_STATUS = {"ok": 0, "warning": 1, "critical": 2, "unknown": 3}
"""``--exit-status`` (Nagios convention, as ``certescrow scan``): 2 when any certificate has a
critical finding or action, else 3 when any file could not be read, else 1 for a warning, else
0."""


def exit_status(summary: ScanSummary) -> int:
    worst = max((c.severity for c in summary.certificates), default=Severity.OK)
    if worst >= Severity.CRITICAL:
        return EXIT_STATUS["critical"]
    if summary.errors:
        return EXIT_STATUS["unknown"]
    if worst >= Severity.WARNING:
        return EXIT_STATUS["warning"]
    return EXIT_STATUS["ok"]


def _config_path(ctx: click.Context, option: Path | None) -> Path | None:
    if option is not None:
        return option
    root = ctx.find_root().obj
    if isinstance(root, dict) and root.get("config_path") is not None:
        return Path(root["config_path"])
    return None


def _vault_factory(daemon_ref: list[Daemon]) -> Callable[[], VaultLike]:
    def open_configured_vault() -> VaultLike:
        from vault import key_source_from_settings, open_vault

        config = daemon_ref[0].config
        source = key_source_from_settings(config.vault.as_settings())
        vault: VaultLike = open_vault(config.vault.path, source, create=True)
        return vault

    return open_configured_vault


def build_daemon(config: Config, *, config_path: Path | None, at: datetime | None,
                 notifier: Notifier, log: EventLog) -> Daemon:
    from policy.ledger import Ledger

    from .fleet_client import inventory_of, open_reporting

    # [report] server = "https://…" (issue 13): report to the policy service through the
    # outbox instead of the local ledger.
    raw = load_raw_config(config.source)[0] if config.source is not None else {}
    remote = open_reporting(raw, source=str(config.source), host=config.agent.host,
                            state_dir=config.policy.ledger.parent,
                            vault_settings=config.vault.as_settings(),
                            clock=lambda: resolve_at(at), log=log)
    intake: Intake = remote if remote is not None else Ledger.open(config.policy.ledger)
    ref: list[Daemon] = []
    # A local ledger deleted or replaced under the daemon is opened again at its path.
    local = remote is None
    daemon = Daemon(config, intake=intake, clock=lambda: resolve_at(at),
                    config_path=config_path, vault_factory=_vault_factory(ref),
                    notifier=notifier, log=log,
                    ledger_path=config.policy.ledger if local else None,
                    reopen_intake=(lambda: Ledger.open(config.policy.ledger)) if local else None,
                    read_index_path=config.policy.ledger.parent / READ_INDEX_NAME)
    ref.append(daemon)
    if remote is not None:
        remote.inventory = lambda: inventory_of(daemon.index)
        remote.start()
    return daemon


@click.command("run")
@click.option("--config", "config_option", type=click.Path(dir_okay=False, path_type=Path),
              help="Configuration file (default: the root --config, $CERTESCROW_CONFIG, the "
              "per-user file, /etc/certescrow/config.toml, else built-in defaults).")
@click.option("--once", is_flag=True,
              help="Initial full scan, report to the ledger, print a summary, exit.")
@click.option("--at", type=InstantType(), default=None, help=AT_OPTION_HELP)
@click.option("--log-format", type=click.Choice(["text", "json"]), default=None,
              help="Log lines on stderr (default: [agent].log_format).")
@click.option("--json", "as_json", is_flag=True, help="With --once: print the summary as JSON.")
@click.option("--exit-status", "want_exit_status", is_flag=True,
              help="With --once: exit 0 ok, 1 warning, 2 critical, 3 unknown (a file failed).")
@click.pass_context
def run_command(ctx: click.Context, config_option: Path | None, once: bool,
                at: datetime | None, log_format: str | None, as_json: bool,
                want_exit_status: bool) -> None:
    """Watch the configured certificate stores and report to the ledger (until SIGTERM).

    SIGHUP reloads the configuration (a bad one is refused and the old one keeps running).
    Under systemd (Type=notify) it sends READY, STATUS and WATCHDOG.
    """
    path = _config_path(ctx, config_option)
    config = load_config(path)
    logger = configure_logging(log_format or config.agent.log_format)
    log = EventLog(logger)
    notifier = Notifier() if not once else Notifier("")
    daemon = build_daemon(config, config_path=config.source, at=at, notifier=notifier, log=log)
    if once:
        try:
            summary = daemon.full_scan(collect=True)
        finally:
            daemon.shutdown()
        if as_json:
            echo_json(summary)
        else:
            _print_summary(summary)
        if want_exit_status:
            ctx.exit(exit_status(summary))
        return
    # A SIGHUP reload keeps the log format the command line asked for.
    daemon.log_format_override = log_format
    daemon.install_signal_handlers()
    ctx.exit(daemon.run())


def _print_summary(summary: ScanSummary) -> None:
    def urgency(seen: CertificateSeen) -> tuple[int, int]:
        days = seen.classification.days_left if seen.classification is not None else 0
        return (-int(seen.severity), days)

    rows = sorted(summary.certificates, key=urgency)
    if rows:
        click.echo(f"{'SEVERITY':<9} {'DAYS':>5} {'TIER':<9} {'CAT':<4} {'KEY':<5} "
                   f"{'NOT AFTER':<20} LOCATION")
    for seen in rows:
        cls = seen.classification
        tier = cls.tier.value if cls is not None else "-"
        category = cls.category.value if cls is not None else "-"
        days = str(cls.days_left) if cls is not None else "-"
        key = {None: "-", True: "ok", False: "BAD"}[seen.key_matches]
        not_after = seen.record.facts.not_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
        click.echo(f"{seen.severity.name.lower():<9} {days:>5} {tier:<9} {category:<4} "
                   f"{key:<5} {not_after:<20} {seen.record.path}[{seen.record.index}]")
    for error in summary.errors:
        where = error.path + (f"[{error.index}]" if error.index is not None else "")
        click.echo(f"error: {where}: {error.code}: {error.message}", err=True)
    for store in summary.missing_stores:
        click.echo(f"warning: store {store} does not exist", err=True)
    click.echo(f"{len(summary.certificates)} certificate(s) in {summary.files} file(s); "
               f"{len(summary.errors)} error(s); {len(summary.escrowed)} escrow put(s); "
               f"{summary.gone} gone")


@click.command("check-config")
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the effective configuration as JSON.")
@click.pass_context
def check_config_command(ctx: click.Context, file: Path | None, as_json: bool) -> None:
    """Validate a configuration file and print the effective configuration (defaults filled
    in). Exits 31 with the file and the key on the first error."""
    config = load_config(_config_path(ctx, file))
    data = config.to_json()
    missing = [s["path"] for s in data["agent"]["stores"] if not Path(s["path"]).is_dir()]
    if as_json:
        data["warnings"] = [f"store {p} does not exist" for p in missing]
        echo_json(data)
        return
    click.echo(f"# configuration: {config.source or 'built-in defaults'} (valid)")
    _print_table("[policy]", {k: v for k, v in data["policy"].items() if k != "prices"})
    _print_table("[policy.prices]", data["policy"]["prices"])
    _print_table("[vault]", data["vault"])
    _print_table("[agent]", {k: v for k, v in data["agent"].items() if k != "stores"})
    for store in data["agent"]["stores"]:
        _print_table("[[agent.stores]]", store)
    for path in missing:
        click.echo(f"warning: store {path} does not exist (watched once it appears)", err=True)


def _print_table(name: str, table: dict[str, Any]) -> None:
    """Print a table so that the output is itself valid TOML (an operator copies it): TOML has
    no null, so an unset value is printed as a comment."""
    import json

    click.echo(f"\n{name}")
    for key, value in table.items():
        if value is None:
            click.echo(f"# {key} is not set")
        else:
            click.echo(f"{key} = {json.dumps(value, ensure_ascii=False)}")
