"""``certescrow fleet …``, ``certescrow policy serve`` and ``certescrow agent enroll``.

The shell of the fleet: it reads the clock, opens the vault (where the fleet CA's key, the
service's key and each agent's key live) and the ledger (where the fleet registry lives), and
calls :mod:`agent.fleet_ca`, :mod:`policy.fleet_registry` and :mod:`policy.service`. These
commands live in ``agent/`` because they need ``cryptography`` and the vault, which the policy
package may not import; ``agent/main.py`` adds ``serve`` to the ``policy`` group and
``enroll`` to the ``agent`` group.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import signal
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from policy.cliutil import (
    AT_OPTION_HELP,
    CATEGORY_CHOICE,
    FILE_THE_COMMAND_READS,
    FILE_THE_COMMAND_WRITES,
    InstantType,
    LedgerType,
    config_section,
    echo_json,
    refuse_a_future_at,
    resolve_at,
)
from policy.fleet_registry import RENEWAL_GRACE, FleetRegistry, IssuedRecord
from policy.paths import LedgerLocation, catalogue_path, ledger_path
from policy.storage import dsn_has_password, is_postgres_dsn
from policy.timeparse import format_instant

from .config import read_config_file, secret_readers
from .errors import AgentError, ConfigError, OutputError, OutputFileError
from .fleet_ca import (
    CLIENT_LIFETIME,
    MAX_CSR_BYTES,
    MIN_LEAF_LIFETIME,
    CSRError,
    FleetCAError,
    IssuedCertificate,
    check_ca_certificate,
    check_host_name,
    identity_from_pem,
    issue_ca,
    issue_client_certificate,
    issue_server_certificate,
    key_matches_certificate,
    make_agent_csr,
    server_ssl_context,
)
from .fleet_client import CLIENT_LABEL

if TYPE_CHECKING:
    import subprocess

    from .logs import EventLog

__all__ = ["enroll_command", "fleet_group", "serve_command"]

CA_LABEL = "certescrow fleet CA"
SERVER_LABEL = "certescrow policy service"
DEFAULT_SILENT_AFTER_S = 300

F = TypeVar("F", bound=Callable[..., Any])


# ---------------------------------------------------------------------- shared plumbing
def _root_config(ctx: click.Context) -> dict[str, Any]:
    obj = ctx.find_root().obj
    config = obj.get("config") if isinstance(obj, dict) else None
    return config if isinstance(config, dict) else {}


def _vault_settings(ctx: click.Context) -> dict[str, Any]:
    served = _serve_config(ctx)
    if served is not None:  # --serve-config: the service's own vault
        return dict(served.vault)
    section = _root_config(ctx).get("vault", {})
    return section if isinstance(section, dict) else {}


def _serve_config(ctx: click.Context) -> ServeConfig | None:
    value = ctx.meta.get("certescrow.serve_config")
    return value if isinstance(value, ServeConfig) else None


def _remember_serve_config(ctx: click.Context, _param: click.Parameter,
                           value: Path | None) -> None:
    if value is not None:
        ctx.meta["certescrow.serve_config"] = load_serve_config(value)


def _host_name(host: str) -> str:
    """A fleet host name as the registry keeps it: lowercase (``WEB01`` and ``web01`` are one
    host, as in DNS), dot-separated labels of 1-63 letters, digits, ``-`` and ``_``."""
    name = host.strip().lower()
    labels = name.split(".")
    if not all(0 < len(label) <= 63 and label[0].isalnum() and label.isascii()
               and all(c.isalnum() or c in "-_" for c in label) for label in labels):
        raise FleetCAError(f"{host!r} is not a host name: dot-separated labels of 1-63 "
                           "letters, digits, '-' and '_', each starting with a letter or digit")
    return check_host_name(name)


def _open_vault(settings: Mapping[str, Any], vault_path: Path | None, key_file: Path | None,
                *, create: bool, named_by: str = "--vault or [vault] path") -> Any:
    """The vault of the fleet command. ``create``: only for what makes new keys for a vault
    that may not exist yet (``fleet ca init``, ``agent enroll``). Every other command opens
    the vault that holds what it needs: a mistyped path must not answer with a new, empty
    vault (and a new master key), nor with advice to make a second fleet CA."""
    from vault import VaultNotFoundError, key_source_from_settings, open_vault

    path = _vault_file(settings, vault_path)
    if not create and not (path.exists() or path.is_symlink()):
        raise VaultNotFoundError(f"no vault at {path} (check {named_by}); nothing was "
                                 "created")
    return open_vault(path, key_source_from_settings(settings, key_file=key_file),
                      create=create)


def _vault_file(settings: Mapping[str, Any], vault_path: Path | None) -> Path:
    from vault import default_vault_path

    return vault_path or (Path(str(settings["path"])).expanduser() if settings.get("path")
                          else default_vault_path())


@contextlib.contextmanager
def _cleaned_up_on_failure(path: Path, key_file: Path | None = None) -> Iterator[None]:
    """A command that makes a vault makes it whole or not at all: one that fails (no keyring,
    a key file that cannot be written, a certificate or CSR that cannot be delivered) leaves
    neither the vault file, nor the key file, nor the directories it made. A re-run would
    otherwise find a vault whose CA or key nobody has the certificate or CSR of, and refuse
    to make another. Only what did not exist before is removed; a vault that existed keeps
    what was committed to it, and the command's error says what that is."""
    made = [*_missing_directories(path)]
    existed = path.exists() or path.is_symlink()
    ours: list[Path] = []
    if not existed:
        ours = [path, *(path.with_name(path.name + s) for s in ("-wal", "-shm", "-journal"))]
        if key_file is not None and not (key_file.exists() or key_file.is_symlink()):
            ours.append(key_file)
            made += [d for d in _missing_directories(key_file) if d not in made]
    try:
        yield
    except BaseException:
        removed: list[str] = []
        for leftover in ours:
            with contextlib.suppress(OSError):
                leftover.unlink()
                if leftover in (path, key_file):
                    removed.append(f"{'the vault' if leftover == path else 'the key file'} "
                                   f"{leftover}")
        for directory in sorted(made, key=lambda d: len(d.parts), reverse=True):
            with contextlib.suppress(OSError):
                directory.rmdir()
        if removed:
            with contextlib.suppress(OSError):
                click.echo(f"note: nothing this run made is kept: removed {' and '.join(removed)}",
                           err=True)
        raise


def _missing_directories(path: Path) -> list[Path]:
    """The directories above ``path`` that do not exist yet, deepest first."""
    missing: list[Path] = []
    probe = path.parent
    while not probe.exists():
        missing.append(probe)
        probe = probe.parent
    return missing


def _key_file_of(settings: Mapping[str, Any], key_file: Path | None) -> Path | None:
    """The master key file the vault of the command uses, if its key source is a file."""
    from vault import KeyFileSource, key_source_from_settings

    source = key_source_from_settings(settings, key_file=key_file)
    return source.path if isinstance(source, KeyFileSource) else None


def _vault_beside(ctx: click.Context, vault_path: Path | None, key_file: Path | None,
                  out: Path | None, ledger: LedgerLocation | None = None
                  ) -> tuple[Mapping[str, Any], Path, Path | None]:
    """The vault settings of a command that writes ``out``, its vault file and master key file
    (when the key source is one); an ``out`` over any of them (or ``ledger``) is refused
    before anything is made."""
    settings = _vault_settings(ctx)
    path = _vault_file(settings, vault_path)
    key_path = _key_file_of(settings, key_file)
    _refuse_out_over_own_files(out, path, key_path, ledger)
    return settings, path, key_path


def _vault_to_fill(ctx: click.Context, vault_path: Path | None, key_file: Path | None,
                   out: Path | None) -> tuple[Mapping[str, Any], Path, Path | None, bool]:
    """:func:`_vault_beside` for a command that stores a new key in a vault it may create
    (``fleet ca init``, ``agent enroll``), and whether the vault is new (undone whole if the
    command fails)."""
    settings, path, key_path = _vault_beside(ctx, vault_path, key_file, out)
    return settings, path, key_path, not (path.exists() or path.is_symlink())


def _refuse_out_over_own_files(out: Path | None, vault_file: Path, key_file: Path | None,
                               ledger: LedgerLocation | None = None) -> None:
    """An output naming the vault, its master key file or the ledger (a slip of ``--out`` for
    ``--key-file`` or ``--ledger``) is refused before anything is made: published over one of
    them with ``--force``, the certificate would replace it (a vault locked for good, a lost
    registry), and without, the file this run made there stood in its way."""
    if out is None:
        return
    from vault.secretfile import same_path

    own = {"the vault": vault_file, "the vault's master key file": key_file,
           "the ledger": ledger if isinstance(ledger, Path) else None}
    for what, path in own.items():
        if path is not None and same_path(out, path):
            raise OutputFileError(f"{out} is {what}; give another file to write the "
                                  "certificate or CSR to (nothing was stored or registered)")


def _vault_options(func: F) -> F:
    func = click.option("--key-file", type=click.Path(dir_okay=False, path_type=Path),
                        envvar="CERTESCROW_VAULT_KEY_FILE",
                        help="The vault's master key file (default: $CERTESCROW_VAULT_KEY_FILE, "
                             "else the configured [vault] key_source).")(func)
    func = click.option("--vault", "vault_path", type=click.Path(dir_okay=False, path_type=Path),
                        help="Vault file (default: [vault] path, else the per-user vault).")(func)
    return func


def _ledger_option(func: F) -> F:
    func = click.option("--serve-config", type=FILE_THE_COMMAND_READS,
                        callback=_remember_serve_config, expose_value=False, is_eager=True,
                        help="The service's configuration file: its [serve] ledger and its "
                             "[vault] (the desk cannot pick the wrong ledger).")(func)
    return click.option("--ledger", "ledger_option", type=LedgerType(),
                        help="The ledger (and fleet registry): default the --serve-config's "
                             "[serve] ledger, else [policy].ledger, else the per-user "
                             "ledger.")(func)


def _ledger_location(ctx: click.Context,
                     option: LedgerLocation | None) -> tuple[LedgerLocation, bool]:
    """The ledger a fleet command uses, and whether someone named it."""
    from policy.paths import ledger_is_explicit, ledger_location

    served = _serve_config(ctx)
    if option is None and served is not None:
        return ledger_location(served.ledger), True
    section = config_section(ctx, "policy")
    return ledger_path(option, section), ledger_is_explicit(option, section)


@contextlib.contextmanager
def _registry(ctx: click.Context, option: LedgerLocation | None, *, must_exist: bool = False,
              create: bool = False, read_only: bool = False) -> Iterator[FleetRegistry]:
    """The fleet registry of the ledger. A ledger named (``--ledger``, the configuration,
    ``--serve-config``) that does not exist is refused, never made empty: a mistyped path
    must not answer with an empty fleet. ``must_exist``: the per-user default too (read-only
    listings). ``create``: ``fleet sign``, which may come before the service's first start
    (it says which ledger it registered in). ``read_only``: the listings, which change
    nothing (no migration, no table made where they exist) and need only SELECT."""
    from policy.errors import LedgerError
    from policy.ledger import Ledger
    from policy.paths import ledger_display, ledger_exists

    path, named = _ledger_location(ctx, option)
    if (named or must_exist) and not create and not ledger_exists(path):
        raise LedgerError(f"{ledger_display(path)}: no ledger here (check --ledger, "
                          "--serve-config or [policy].ledger; the service's ledger is its "
                          "[serve] ledger)")
    with (Ledger.open(path, read_only=read_only),
          FleetRegistry.open(path, read_only=read_only) as registry):
        yield registry


def _labelled(vault: Any, kind: str, label: str) -> list[Any]:
    return [e for e in vault.entries(kind=kind) if e.label == label]


def _desk_vault_hint(ctx: click.Context) -> str:
    """Where a command that takes ``--serve-config`` was told its vault, for an error that
    says the one used is wrong."""
    return ("--vault or the --serve-config's [vault] path" if _serve_config(ctx) is not None
            else "--vault, [vault] path or --serve-config")


def _ca_material(vault: Any, named_by: str = "--vault or [vault] path") -> tuple[bytes, bytes]:
    keys = _labelled(vault, "private-key", CA_LABEL)
    certs = _labelled(vault, "certificate", CA_LABEL)
    if not keys or not certs:
        # Most often the wrong vault (the per-user one, another desk's): a second CA made
        # here would be one no host or service trusts, so the first advice is the vault.
        raise FleetCAError(f"the vault {vault.path} holds no fleet CA: is it the desk's vault "
                           f"(check {named_by})? Only a desk that has none yet runs "
                           "`certescrow fleet ca init`")
    return vault.get(keys[-1].entry_id), vault.get(certs[-1].entry_id)


@dataclass(slots=True)
class _Committed:
    """What a command has committed (a key stored, a certificate registered), in words, and how
    to get back what an output that fails after the commit loses: the error must not read as a
    command that did nothing, or the operator runs it again."""

    done: str | None = None
    remedy: str = ""


@contextlib.contextmanager
def _published_after(path: Path | None, data: bytes, *, force: bool) -> Iterator[_Committed]:
    """Certificates and CSRs are public: written 0644 to ``path`` (or to stdout) once the body
    (storing a key, registering a certificate) has committed, and staged before it, so that a
    file that cannot be written leaves nothing stored or registered (agent/publicfile.py).
    The body says what it committed in the :class:`_Committed` it is given: a file or standard
    output that fails after the commit then says that, and how to continue."""
    from vault import VaultError

    from .publicfile import stage_public_file

    staged = None if path is None else stage_public_file(path, data, force=force)
    committed = _Committed()
    try:
        yield committed
    except BaseException:
        if staged is not None:
            staged.discard()
        raise
    if staged is None:
        _echo_committed(data.decode("ascii"), committed, nl=False)
        return
    try:
        staged.publish()
    except (AgentError, VaultError) as exc:
        if committed.done is None:
            raise
        raise type(exc)(f"{exc}; {committed.done}{committed.remedy}") from None


def _echo_committed(text: str, committed: _Committed, *, nl: bool = True) -> None:
    """Print ``text`` on standard output after a commit. Standard output that cannot be
    written (``> /dev/full``, a reader that went away with the only copy of a certificate) is
    still exit 36 (agent/main.py), but the error says what was committed: main's "what was
    written is incomplete" read as a command that did nothing."""
    try:
        click.echo(text, nl=nl)
    except OSError as exc:
        if committed.done is None:
            raise
        name = errno.errorcode.get(exc.errno or 0, "error")
        raise OutputError(f"{committed.done}, but standard output could not be written "
                          f"({name}: {exc.strerror}){committed.remedy}") from None


def _force_option(what: str) -> Callable[[F], F]:
    return click.option("--force", is_flag=True,
                        help=f"Overwrite {what} if it exists (else refused, exit 29).")


# ---------------------------------------------------------------------- certescrow fleet
@click.group("fleet")
def fleet_group() -> None:
    """The fleet: its CA, agents' client certificates, revocation, the hosts' view."""


@fleet_group.group("ca")
def ca_group() -> None:
    """The fleet CA (its key lives in the vault, never in a file)."""


@ca_group.command("init")
@click.option("--name", default="certescrow fleet CA", show_default=True,
              help="The CA certificate's common name.")
@click.option("--out", type=FILE_THE_COMMAND_WRITES, default=None,
              help="Write the CA certificate (public: for agents and the service) here.")
@click.option("--at", type=InstantType(), default=None, help=AT_OPTION_HELP)
@_force_option("--out")
@_vault_options
@click.pass_context
def ca_init_command(ctx: click.Context, name: str, out: Path | None, at: datetime | None,
                    force: bool, vault_path: Path | None, key_file: Path | None) -> None:
    """Make the fleet CA: key and certificate into the vault, the certificate to --out."""
    _refuse_a_future_issue(at)
    now = resolve_at(at)
    key_pem, cert_pem = issue_ca(name=name, at=now)
    settings, path, key_path, new_vault = _vault_to_fill(ctx, vault_path, key_file, out)
    # A new vault is undone if the certificate cannot be delivered (nothing else knows it);
    # a vault that existed keeps the CA, and the error names the entry to export.
    with _cleaned_up_on_failure(path, key_path), \
            _published_after(out, cert_pem, force=force) as committed, \
            _open_vault(settings, vault_path, key_file, create=True) as vault:
        if _labelled(vault, "private-key", CA_LABEL):
            raise FleetCAError("this vault already holds a fleet CA (one CA per vault; "
                               "its certificate: `certescrow vault list`)")
        made = vault.put_many(_put_requests([("private-key", key_pem),
                                             ("certificate", cert_pem)], CA_LABEL))
        ca_key_line = (f'ca_key = "{made[0].entry_id}"   # [serve] ca_key (agents renew '
                       "through the service): the vault entry of the CA key")
        where = (f'the fleet CA {name!r} was made in the vault {path} (ca_key = '
                 f'"{made[0].entry_id}"; its certificate is entry {made[1].entry_id}')
        if not new_vault:
            committed.done = where + ")"
            committed.remedy = (f"; `certescrow vault export {made[1].entry_id} --vault {path} "
                                "--out FILE` writes the certificate")
    done = _Committed(done=where + (f" and in {out})" if out is not None else ")"))
    if out is not None:
        _echo_committed(f"fleet CA {name!r} made; its key is in the vault, its certificate in "
                        f"{out}", done)
        _echo_committed(ca_key_line, done)
    else:
        click.echo(ca_key_line, err=True)


def _put_requests(items: list[tuple[str, bytes]], label: str) -> list[Any]:
    from vault import PutRequest

    return [PutRequest(kind=kind, data=data, label=label, meta={"origin": "certescrow fleet"})
            for kind, data in items]


@fleet_group.command("sign")
@click.argument("csr", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--host", required=True, help="The host this certificate identifies (the CSR's "
              "own subject is ignored).")
@click.option("--days", type=click.IntRange(1, 397), default=CLIENT_LIFETIME.days,
              show_default=True, help="Lifetime of the client certificate.")
@click.option("--out", type=FILE_THE_COMMAND_WRITES, default=None,
              help="Write the certificate here (default: stdout).")
@click.option("--at", type=InstantType(), default=None, help=AT_OPTION_HELP)
@_force_option("--out")
@_ledger_option
@_vault_options
@click.pass_context
def sign_command(ctx: click.Context, csr: Path, host: str, days: int, out: Path | None,
                 at: datetime | None, force: bool, ledger_option: LedgerLocation | None,
                 vault_path: Path | None, key_file: Path | None) -> None:
    """Issue an agent's short-lived client certificate from its CSR, and register it in the
    service's ledger (give the service's --serve-config, or its [serve] ledger as --ledger)."""
    _refuse_a_future_issue(at)
    now = resolve_at(at)
    real = resolve_at(None).replace(microsecond=0)  # what the service will compare it with
    host = _host_name(host)
    left = now + timedelta(days=days) - real
    if left < MIN_LEAF_LIFETIME:  # before the vault is opened
        state = ("has already expired" if left <= timedelta(0) else
                 f"would have less than {_day_text(MIN_LEAF_LIFETIME)} left now "
                 f"({format_instant(real)})")
        raise FleetCAError(f"a certificate from {format_instant(now)} for {days} day(s) "
                           f"{state}: the host would be locked out when it lapses; nothing was "
                           "registered (drop --at, or give more --days)")
    csr_pem = _read_csr(csr)
    named_by = _desk_vault_hint(ctx)
    ledger = _ledger_location(ctx, ledger_option)[0]
    settings, _path, _key = _vault_beside(ctx, vault_path, key_file, out, ledger)
    with _open_vault(settings, vault_path, key_file, create=False,
                     named_by=named_by) as vault:
        ca_key, ca_cert = _ca_material(vault, named_by)
    try:
        issued = issue_client_certificate(ca_key_pem=ca_key, ca_cert_pem=ca_cert,
                                          csr_pem=csr_pem, host=host, at=now,
                                          lifetime=timedelta(days=days))
    except CSRError as exc:
        raise CSRError(f"{csr}: {exc}") from None
    _refuse_short_lived(issued, real)
    from policy.paths import ledger_display

    registered = ledger_display(ledger)
    with _published_after(out, issued.pem, force=force) as committed, \
            _registry(ctx, ledger_option, create=True) as registry:
        if registry.key_revoked(issued.key_sha256):  # issue 13: a leaked key stays out
            raise FleetCAError("this CSR's key belongs to a revoked (or superseded) client "
                               "certificate: the agent makes a new key with `certescrow "
                               "agent enroll`")
        # The host's other certificates stay valid for the grace from now on the real clock
        # as well as from --at: a back-dated --at revoked them in the past, locking the host
        # out before the new certificate could reach it. The registry records when it was
        # told (the real clock), as the ledger does.
        registry.record_certificate(IssuedRecord(
            host=issued.host, serial=issued.serial, not_before_utc=issued.not_before_utc,
            not_after_utc=issued.not_after_utc, key_sha256=issued.key_sha256), at=real,
            supersede_at=max(now, real) + RENEWAL_GRACE)
        # The certificate itself is kept nowhere (the registry records its serial and key):
        # lost on its way out, it is signed again, which supersedes this one after the grace.
        committed.done = (f"the client certificate for {host} (serial {issued.serial}, valid "
                          f"until {format_instant(issued.not_after_utc)}) was signed and "
                          f"registered in the ledger {registered}")
        committed.remedy = ("; it is kept nowhere else: sign the CSR again with --out FILE "
                            f"(serial {issued.serial} is then superseded {_grace_text()} "
                            "later; a key refused as superseded needs `certescrow agent "
                            "enroll` on the host)")
    _warn_adjusted(issued)
    if out is not None:
        _echo_committed(f"client certificate for {host} (serial {issued.serial}) valid until "
                        f"{format_instant(issued.not_after_utc)}: {out}; registered in the "
                        f"ledger {registered} (the service must use this ledger)",
                        _Committed(done=f"{committed.done} and written to {out}"))
    else:
        click.echo(f"registered in the ledger {registered}", err=True)


def _read_csr(path: Path) -> bytes:
    """A CSR file as the vault reads its small files: a regular file only, never more than the
    cap (``/dev/zero`` was read to the end before being cut, a FIFO blocked)."""
    from vault.secretfile import SecretFileError, read_secret_file

    try:
        return read_secret_file(path, what="CSR", max_bytes=MAX_CSR_BYTES)
    except SecretFileError as exc:
        raise CSRError(str(exc)) from None


def _refuse_a_future_issue(at: datetime | None) -> None:
    """A certificate dated ahead of the real clock is not valid yet: installed, it locks its
    host (or every agent, for the service's or the CA's) out until then, and `fleet sign`
    would supersede the host's working certificate with it."""
    refuse_a_future_at(at, why=(
        "a certificate issued from then is not valid yet (a host or service using it would "
        "be refused until then); --at may only go back; nothing was issued, stored or "
        "registered"))


def _grace_text() -> str:
    hours = int(RENEWAL_GRACE.total_seconds()) // 3600
    return "an hour" if hours == 1 else f"{hours} hours"


def _day_text(length: timedelta) -> str:
    return f"{length.days} day" if length.days == 1 else f"{length.days} days"


def _refuse_short_lived(issued: IssuedCertificate, real: datetime) -> None:
    """Nothing the fleet CA issued is registered or stored with less than a day left on the
    real clock, whatever shortened it (the CA's end, a back-dated --at): it would replace a
    good certificate and lapse before anyone looks."""
    left = issued.not_after_utc - real
    if left >= MIN_LEAF_LIFETIME:
        return
    state = ("has already expired" if left <= timedelta(0) else
             f"has less than {_day_text(MIN_LEAF_LIFETIME)} left now ({format_instant(real)})")
    raise FleetCAError(f"a certificate from {format_instant(issued.not_before_utc)} until "
                       f"{format_instant(issued.not_after_utc)} {state}: refused, nothing "
                       "was stored or registered (drop --at, or give more --days; one cut "
                       "short by the fleet CA's end needs a new CA)")


def _warn_adjusted(issued: IssuedCertificate) -> None:
    if issued.adjusted is not None:
        click.echo(f"warning: {issued.adjusted}", err=True)


@fleet_group.command("server-cert")
@click.argument("names", nargs=-1, required=True)
@click.option("--out", type=FILE_THE_COMMAND_WRITES, required=True,
              help="Write the service's certificate here; its key goes into the vault.")
@click.option("--at", type=InstantType(), default=None, help=AT_OPTION_HELP)
@_force_option("--out")
@_vault_options
@click.pass_context
def server_cert_command(ctx: click.Context, names: tuple[str, ...], out: Path,
                        at: datetime | None, force: bool, vault_path: Path | None,
                        key_file: Path | None) -> None:
    """Issue the service's TLS certificate for NAMES (DNS names or IP addresses)."""
    _refuse_a_future_issue(at)
    now = resolve_at(at)
    real = resolve_at(None).replace(microsecond=0)
    settings, path, _key = _vault_beside(ctx, vault_path, key_file, out)
    with _open_vault(settings, vault_path, key_file, create=False) as vault:
        ca_key, ca_cert = _ca_material(vault)
        key_pem, issued = issue_server_certificate(ca_key_pem=ca_key, ca_cert_pem=ca_cert,
                                                   names=list(names), at=now)
        _refuse_short_lived(issued, real)  # every agent would fail TLS against it
        with _published_after(out, issued.pem, force=force) as committed:
            results = vault.put_many(_put_requests([("private-key", key_pem),
                                                    ("certificate", issued.pem)],
                                                   SERVER_LABEL))
            # The vault existed and keeps both: a file that fails now must not read as a
            # command that stored nothing (exit 37 says "unless the message says so").
            committed.done = (f"the service's key and certificate were stored in the vault "
                              f'{path} (key = "{results[0].entry_id}"; its certificate is '
                              f"entry {results[1].entry_id})")
            committed.remedy = (f"; `certescrow vault export {results[1].entry_id} --vault "
                                f"{path} --out FILE` writes the certificate")
    _warn_adjusted(issued)
    click.echo(f"key = \"{results[0].entry_id}\"   # [serve] key: the vault entry of its key")


@fleet_group.command("revoke")
@click.argument("host")
@click.option("--at", type=InstantType(), default=None, help=AT_OPTION_HELP)
@_ledger_option
@click.pass_context
def revoke_command(ctx: click.Context, host: str, at: datetime | None,
                   ledger_option: LedgerLocation | None) -> None:
    """Revoke every client certificate of HOST; the service refuses it from its next request.
    Revoking a host whose certificates are all revoked already changes nothing and succeeds."""
    refuse_a_future_at(at, why=(
        "the registry records a revocation when it is made, and the service refuses the host "
        "from its next request; nothing was revoked"))
    now = resolve_at(at)
    host = _host_name(host)
    with _registry(ctx, ledger_option) as registry:
        count = registry.revoke_host(host, at=now)
        last_revoked_utc = registry.last_revoked(host) if count == 0 else None
        where = registry.where
    if count:
        click.echo(f"revoked {count} client certificate(s) of {host}")
    elif last_revoked_utc is not None:
        # Idempotent: the outcome asked for (nothing of HOST accepted) already holds.
        click.echo(f"{host}: every client certificate was already revoked (the last as of "
                   f"{format_instant(last_revoked_utc)}); nothing to do")
    else:
        raise FleetCAError(f"no host {host!r} in the fleet: no client certificate was ever "
                           f"signed for it in the ledger {where} (fleet hosts lists them; "
                           "check the name and --ledger)")


@fleet_group.command("assign")
@click.argument("host")
@click.argument("store")
@click.option("--contract", "contract_id", default=None, help="The contract the store's "
              "certificates belong to (one the ledger holds).")
@click.option("--item", default=None, help="Catalogue item handle.")
@click.option("--tier", default=None, help="Validity tier (e.g. 1y).")
@click.option("--category", default=None, type=CATEGORY_CHOICE,
              help="Item category (Art.1): I, II or III (either case).")
@click.option("--match-by-san", is_flag=True, help="Attribute by SAN to the one contract "
              "whose certificate shares one.")
@click.option("--force", is_flag=True, help="Assign to a host the desk has not enrolled yet.")
@_ledger_option
@click.pass_context
def assign_command(ctx: click.Context, host: str, store: str, contract_id: str | None,
                   item: str | None, tier: str | None, category: str | None,
                   match_by_san: bool, force: bool, ledger_option: LedgerLocation | None) -> None:
    """Assign a binding to HOST's STORE (an absolute path on the host; served to the agent at
    GET /v1/bindings). `fleet unassign` removes one; `fleet assignments` lists them."""
    from policy.catalogue import load_catalogue
    from policy.category import Category
    from policy.errors import UnknownItemError
    from policy.ledger import Ledger
    from policy.tiers import Tier
    from untrusted.text import for_terminal

    host = _host_name(host)
    _check_store(store)
    if contract_id is None and item is None and tier is None and category is None \
            and not match_by_san:
        raise FleetCAError("an empty binding: give --contract, --item, --tier, --category or "
                           "--match-by-san (to remove an assignment: certescrow fleet "
                           "unassign HOST STORE)")
    if tier is not None:
        try:
            Tier(tier)
        except ValueError:
            raise UnknownItemError(f"unknown tier {tier!r}") from None
    if item is not None:
        load_catalogue(catalogue_path(None, config_section(ctx, "policy"))).item(item)
    binding = {"contract_id": contract_id, "item": item, "tier": tier,
               "category": None if category is None else Category(category).value,
               "match_by_san": match_by_san}
    path, _named = _ledger_location(ctx, ledger_option)
    with _registry(ctx, ledger_option, must_exist=True) as registry:
        if contract_id is not None:
            with Ledger.open(path) as ledger:
                if contract_id not in ledger.contract_ids():
                    raise FleetCAError(f"no contract {contract_id!r} in this ledger "
                                       "(certescrow contract list)")
        if not force and registry.enrolled(host) is None:
            raise FleetCAError(f"no host {host!r} in the fleet (fleet hosts lists them; "
                               "--force assigns ahead of its enrolment)")
        registry.assign(host=host, store=store, binding=binding)
    click.echo(f"{host}: {for_terminal(store)} assigned")  # as `fleet assignments` shows it


def _check_store(store: str) -> None:
    if not store.startswith("/") or "\x00" in store:
        raise FleetCAError(f"{store!r}: a store is an absolute path on the host (the path "
                           "in its [[agent.stores]])")


@fleet_group.command("unassign")
@click.argument("host")
@click.argument("store")
@_ledger_option
@click.pass_context
def unassign_command(ctx: click.Context, host: str, store: str,
                     ledger_option: LedgerLocation | None) -> None:
    """Remove HOST's assignment for STORE (the host's own binding applies again)."""
    from untrusted.text import for_terminal

    host = _host_name(host)
    _check_store(store)
    with _registry(ctx, ledger_option, must_exist=True) as registry:
        # (an assignment removed before is kept as an empty one: not an assignment)
        if not any(b["store"] == store and _live(b["binding"]) for b in registry.bindings(host)):
            raise FleetCAError(f"{host}: no assignment for {store}")
        registry.assign(host=host, store=store, binding={})
    click.echo(f"{host}: {for_terminal(store)} unassigned")


@fleet_group.command("assignments")
@click.argument("host", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_ledger_option
@click.pass_context
def assignments_command(ctx: click.Context, host: str | None, as_json: bool,
                        ledger_option: LedgerLocation | None) -> None:
    """The desk's assignments: every host's (or HOST's) stores and their bindings."""
    from untrusted.text import for_terminal

    with _registry(ctx, ledger_option, must_exist=True, read_only=True) as registry:
        names = [_host_name(host)] if host is not None else sorted(
            {h.host for h in registry.hosts(at=resolve_at(None), silent_after=timedelta(0))})
        rows = [{"host": name, **entry} for name in names for entry in registry.bindings(name)
                if _live(entry["binding"])]
    if as_json:
        echo_json({"assignments": rows})
        return
    table = [(for_terminal(r["host"]), for_terminal(r["store"]), ", ".join(
        f"{k}={v}" for k, v in sorted(r["binding"].items()) if v not in (None, False)))
        for r in rows]
    _columns(("HOST", "STORE", "BINDING"), table)


def _live(binding: Mapping[str, Any]) -> bool:
    """An assignment that binds something (``fleet unassign`` leaves an empty one)."""
    return any(v not in (None, False) for v in binding.values())


def _columns(headers: Sequence[str], rows: Sequence[Sequence[str]], *,
             right: frozenset[int] = frozenset()) -> None:
    """An aligned table by display width (wide characters count double), as the project's
    other listings."""
    from .render import display_width

    widths = [max([display_width(h)] + [display_width(r[i]) for r in rows])
              for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(" " * (w - display_width(c)) + c if i in right
                         else c + " " * (w - display_width(c))
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    click.echo(line(headers))
    for row in rows:
        click.echo(line(row))


@fleet_group.command("hosts")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--silent-after", type=click.IntRange(1), default=DEFAULT_SILENT_AFTER_S,
              show_default=True, help="Seconds without a request after which a host is silent.")
@click.option("--at", type=InstantType(), default=None, help=AT_OPTION_HELP)
@_ledger_option
@click.pass_context
def hosts_command(ctx: click.Context, as_json: bool, silent_after: int, at: datetime | None,
                  ledger_option: LedgerLocation | None) -> None:
    """Every host: last seen, certificates by severity, errors, client certificate expiry,
    state (REVOKED, EXPIRED, SILENT, ok). With --at: hosts enrolled after it are left out,
    and a host seen only after it shows LATER (the registry keeps the last request only).
    Without --at every host is listed: none is hidden from the desk's default view."""
    from untrusted.text import for_terminal

    now = resolve_at(at)
    with _registry(ctx, ledger_option, must_exist=True, read_only=True) as registry:
        hosts = registry.hosts(at=now, silent_after=timedelta(seconds=silent_after))
        enrolled = {h.host: registry.enrolled(h.host) for h in hosts}
        assigned = {h.host: [b for b in registry.bindings(h.host) if _live(b["binding"])]
                    for h in hosts} if as_json else {}
    def existed(host: Any) -> bool:  # enrolled by --at, or heard from by then
        since = enrolled[host.host]
        return at is None or since is None or since <= now or (
            host.last_seen_utc is not None and host.last_seen_utc <= now)

    # Both outputs from one view: what the registry could tell at `now` (a value recorded
    # after it is left out and named in `after_at`; docs/fleet.md).
    shown = [h.known_at(now) for h in hosts if existed(h)]
    states = {h.host: _host_state(h, now) for h in shown}
    if as_json:
        echo_json({"at": format_instant(now), "hosts": [
            {**h.to_json(), "state": states[h.host], "assignments": assigned[h.host]}
            for h in shown]})
        return
    rows = []
    for host in shown:
        inventory = host.inventory  # (empty when it came after `now`: "-" then, as null)
        by = inventory.get("by_severity")
        seen = ("after --at" if "last_seen" in host.after_at
                else format_instant(host.last_seen_utc) if host.last_seen_utc else "never")
        until = ("after --at" if "client_certificate_not_after" in host.after_at
                 else format_instant(host.client_not_after_utc)
                 if host.client_not_after_utc else "-")
        rows.append((for_terminal(host.host), seen, _count(inventory, "certificates", "-"),
                     _count(by, "critical", 0), _count(by, "warning", 0),
                     _count(inventory, "errors", "-"), until, states[host.host]))
    _columns(("HOST", "LAST SEEN", "CERTS", "CRIT", "WARN", "ERRORS", "CLIENT CERT UNTIL",
              "STATE"), rows, right=frozenset({2, 3, 4, 5}))


def _count(counts: Any, name: str, default: object) -> str:
    """A count of a heartbeat's inventory for the table: ``-`` when there is no inventory (no
    heartbeat, or only one after ``--at``) or it says nothing of ``name``."""
    return str(counts.get(name, default)) if isinstance(counts, Mapping) else "-"


def _host_state(host: Any, at: datetime) -> str:
    """REVOKED, EXPIRED (its client certificate: the service refuses it), LATER (seen only
    after ``at``), SILENT, or ok: what the desk acts on first."""
    if host.revoked:
        return "REVOKED"
    if host.client_not_after_utc is not None and host.client_not_after_utc <= at:
        return "EXPIRED"
    if "last_seen" in host.after_at:
        return "LATER"
    return "SILENT" if host.silent else "ok"


# ---------------------------------------------------------------------- certescrow agent enroll
@click.command("enroll")
@click.option("--host", default=None, help="This host's name in the fleet (default: [agent] "
              "host, else the hostname).")
@click.option("--csr-out", type=FILE_THE_COMMAND_WRITES, default=None,
              help="Write the CSR here (default: stdout).")
@_force_option("--csr-out")
@_vault_options
@click.pass_context
def enroll_command(ctx: click.Context, host: str | None, csr_out: Path | None, force: bool,
                   vault_path: Path | None, key_file: Path | None) -> None:
    """Make this agent's fleet key (kept in its vault) and a CSR for the desk to sign.

    The key goes into the vault of the configuration in use: for the daemon's, name its file
    (`certescrow --config /etc/certescrow/config.toml agent enroll`), so the key is where the
    daemon looks ([vault] path and key source), not in the per-user vault."""
    if host is None:
        agent = _root_config(ctx).get("agent", {})
        configured = agent.get("host") if isinstance(agent, dict) else None
        host = configured if isinstance(configured, str) and configured else os.uname().nodename
    host = _host_name(host)
    key_pem, csr_pem = make_agent_csr(host=host)
    settings, path, key_path, new_vault = _vault_to_fill(ctx, vault_path, key_file, csr_out)
    # The CSR is staged before the key is stored and named after: a CSR that cannot be
    # written leaves no key in the vault, and no CSR ever names a key the vault lacks. A new
    # vault is undone if the CSR cannot be delivered; one that existed keeps the key.
    with _cleaned_up_on_failure(path, key_path), \
            _published_after(csr_out, csr_pem, force=force) as committed, \
            _open_vault(settings, vault_path, key_file, create=True) as vault:
        result = vault.put_many(_put_requests([("private-key", key_pem)], CLIENT_LABEL))[0]
        if not new_vault:
            committed.done = (f'the agent\'s key was stored in the vault {path} (client_key = '
                              f'"{result.entry_id}")')
            committed.remedy = ("; its CSR is kept nowhere: run `certescrow agent enroll "
                                f"--csr-out FILE` again for a new key (`certescrow vault rm "
                                f"--vault {path} {result.entry_id}` removes this one)")
    line = f'client_key = "{result.entry_id}"   # [report]: the vault entry of the key'
    if csr_out is None:
        click.echo(line, err=True)
    else:
        _echo_committed(line, _Committed(
            done=f"the agent's key was stored in the vault {path} (client_key = "
                 f'"{result.entry_id}") and its CSR written to {csr_out}'))


# ---------------------------------------------------------------------- certescrow policy serve
_SERVE_KEYS = ("listen", "port", "ledger", "ca_certificate", "certificate", "key", "ca_key",
               "workers", "max_pending_batches", "admission_wait_ms", "max_waiting_batches",
               "body_timeout_ms", "header_timeout_ms", "max_connections_per_host",
               "max_handshakes",
               "max_body_bytes", "max_observations", "trusted_proxies", "proxy_header", "tls",
               "unix_socket", "proxy_secret_file", "renewal_grace_s", "clock_skew_s")


class ServeStartError(AgentError):
    """``policy serve`` could not start listening (address in use, no permission)."""

    exit_code = 43


class ServeWorkerError(AgentError):
    """One of ``policy serve``'s ``[serve] workers`` processes ended while the service was
    serving: the service stopped (its log's ``worker-ended`` line says which and how)."""

    exit_code = 44


@dataclass(frozen=True, slots=True, kw_only=True)
class ServeConfig:
    listen: str
    port: int
    ledger: str
    """A path to an SQLite ledger, or a ``postgresql://`` DSN."""
    ca_certificate: Path
    certificate: Path | None
    key: str | None
    ca_key: str | None
    """Vault entry of the fleet CA key: enables ``POST /v1/renew`` (agents renew their own
    client certificates). Without it agents need the desk's ``fleet sign`` again."""
    tls: bool
    max_body_bytes: int
    max_observations: int
    workers: int
    """Processes serving the port together (``SO_REUSEPORT``); the service is stateless."""
    max_pending_batches: int
    """Report batches admitted at a time per process; more wait for their turn."""
    admission_wait_ms: int
    """How long a batch past the admitted ones waits for its turn; then 503 + Retry-After."""
    max_waiting_batches: int
    """Batches waiting for their turn at most (per process); more get 503 at once."""
    body_timeout_ms: int = 30_000
    """How long a request's body may take to arrive (then 408)."""
    header_timeout_ms: int = 10_000
    """From a connection's accept (TLS handshake included), or a later request's first byte,
    to the request's complete headers; then the connection is closed."""
    max_connections_per_host: int = 8
    """One host's open connections (per process); one more replaces its longest idle one,
    or gets 429 when all are in a request."""
    max_handshakes: int = 1024
    """Connections in their TLS handshake at once (per process); more are closed at once."""
    trusted_proxies: tuple[str, ...]
    proxy_header: str
    vault: Mapping[str, Any]
    unix_socket: Path | None = None
    """Proxy mode: listen on this Unix socket (mode 0660) instead of a TCP port."""
    proxy_secret_file: Path | None = None
    """Proxy mode: a file holding the secret the proxy sends with every request."""
    renewal_grace_s: int = 3600
    clock_skew_s: int = 300


def _refuse_readable_secret(path: Path, key: str, what: str, holds: bool = True) -> None:
    """A file holding a secret is refused while others can read it, or a group other than this
    process's own: the rule :func:`agent.config.refuse_readable_secrets` applies to PKCS#12
    passwords (``root:certescrow 0640`` is accepted for the service's group)."""
    if not holds:
        return
    try:
        st = path.stat()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    mode = st.st_mode & 0o777
    who = secret_readers(st)
    if who is None:
        return
    raise ConfigError(f"{path}: [serve] {key} holds {what} but the file is readable by {who} "
                      f"(mode {mode:04o}): run `chmod 600 {path}` (or `chmod 640` with the "
                      "service's own group)")


def load_serve_config(path: Path) -> ServeConfig:
    """The service's configuration file: ``[serve]`` and ``[vault]``."""
    raw = read_config_file(path)  # a regular file only, capped: a FIFO must not hang us
    serve = raw.get("serve")
    if not isinstance(serve, dict):
        raise ConfigError(f"{path}: needs a [serve] table")
    unknown = sorted(set(serve) - set(_SERVE_KEYS))
    if unknown:
        raise ConfigError(f"{path}: [serve]: unknown key {unknown[0]!r}")

    def get(key: str, kind: type | tuple[type, ...], default: Any) -> Any:
        value = serve.get(key, default)
        if value is not None and (not isinstance(value, kind)
                                  or (isinstance(value, bool) and kind is int)):
            raise ConfigError(f"{path}: [serve] {key}: wrong type")
        return value

    tls = serve.get("tls", True)
    if not isinstance(tls, bool):
        raise ConfigError(f"{path}: [serve] tls: true or false")
    proxies = get("trusted_proxies", list, [])
    if not all(isinstance(p, str) for p in proxies):
        raise ConfigError(f"{path}: [serve] trusted_proxies: a list of addresses")
    ledger_text = get("ledger", str, "")
    ca = get("ca_certificate", str, None)
    if not ca:
        raise ConfigError(f"{path}: [serve] ca_certificate: the fleet CA certificate file")
    certificate = get("certificate", str, None)
    key = get("key", str, None)
    if tls and (not certificate or not key):
        raise ConfigError(f"{path}: [serve] certificate and key (a vault entry id) are needed "
                          "for TLS (tls = false only behind a TLS-terminating proxy)")
    unix_socket = get("unix_socket", str, None)
    if not tls and not proxies and not unix_socket:
        raise ConfigError(f"{path}: [serve] tls = false needs unix_socket or trusted_proxies")
    if tls and unix_socket:
        raise ConfigError(f"{path}: [serve] unix_socket is for tls = false (behind a proxy)")
    secret_file = get("proxy_secret_file", str, None)
    grace = get("renewal_grace_s", int, 3600)
    skew = get("clock_skew_s", int, 300)
    if not 0 <= grace <= 7 * 86400 or not 0 <= skew <= 86400:
        raise ConfigError(f"{path}: [serve] renewal_grace_s: 0 to 604800, clock_skew_s: 0 to "
                          "86400")
    vault = raw.get("vault", {})

    def number(key: str, default: int, low: int, high: int, hint: str = "") -> int:
        value: int = get(key, int, default)
        if not low <= value <= high:
            raise ConfigError(f"{path}: [serve] {key}: {low} to {high}{hint}")
        return value

    workers = number("workers", 1, 1, 64)
    pending = number("max_pending_batches", 4, 1, 10_000)
    admission_wait_ms = number("admission_wait_ms", 10_000, 0, 60_000,
                               " (keep it below the agents' [report] timeout_s, 30 s by default)")
    waiting = number("max_waiting_batches", 1024, 0, 100_000)
    body_timeout_ms = number("body_timeout_ms", 30_000, 1_000, 600_000)
    header_timeout_ms = number("header_timeout_ms", 10_000, 100, 600_000)
    per_host = number("max_connections_per_host", 8, 1, 10_000)
    handshakes = number("max_handshakes", 1024, 1, 100_000)
    max_body = number("max_body_bytes", 4 * 1024 * 1024, 1024, 1 << 30)
    max_observations = number("max_observations", 1000, 1, 100_000)
    port = get("port", int, 8443)
    if workers > 1 and port == 0:
        raise ConfigError(f"{path}: [serve] workers > 1 needs a fixed port (they share it)")
    from policy.paths import default_ledger_path

    if is_postgres_dsn(ledger_text):
        _refuse_readable_secret(path, "ledger", "a PostgreSQL password",
                                dsn_has_password(ledger_text))
    return ServeConfig(
        listen=get("listen", str, "127.0.0.1"), port=port, workers=workers,
        max_pending_batches=pending, admission_wait_ms=admission_wait_ms,
        max_waiting_batches=waiting, body_timeout_ms=body_timeout_ms,
        header_timeout_ms=header_timeout_ms, max_connections_per_host=per_host,
        max_handshakes=handshakes,
        ledger=ledger_text if is_postgres_dsn(ledger_text)
        else str(Path(ledger_text).expanduser() if ledger_text else default_ledger_path()),
        ca_certificate=Path(ca).expanduser(),
        certificate=Path(certificate).expanduser() if certificate else None, key=key,
        ca_key=get("ca_key", str, None), tls=tls,
        max_body_bytes=max_body, max_observations=max_observations,
        trusted_proxies=tuple(proxies), proxy_header=get("proxy_header", str, "X-Client-Cert"),
        vault=vault if isinstance(vault, dict) else {},
        unix_socket=Path(unix_socket).expanduser() if unix_socket else None,
        proxy_secret_file=Path(secret_file).expanduser() if secret_file else None,
        renewal_grace_s=grace, clock_skew_s=skew)


@click.command("serve")
@click.option("--config", "config_file", required=True,
              # refused, if it is not a regular file, by load_serve_config (exit 31)
              type=FILE_THE_COMMAND_READS,
              help="The service's configuration ([serve] and [vault]).")
@click.option("--key-file", type=click.Path(dir_okay=False, path_type=Path),
              envvar="CERTESCROW_VAULT_KEY_FILE", help="The vault's master key file.")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text",
              show_default=True,
              help="Log lines on stderr, as the agent's (`<4>warning event: message key=value` "
                   "under journald, or one JSON object a line).")
@click.option("--worker", type=int, hidden=True, metavar="PID",
              help="Internal: one of the [serve] workers processes, started by the first "
                   "(its pid).")
def serve_command(config_file: Path, key_file: Path | None, log_format: str,
                  worker: int | None) -> None:
    """Serve the policy core to the fleet over HTTPS with mutual TLS (until SIGTERM)."""
    if worker is not None:
        # First thing: a first process killed (SIGKILL runs no `finally`) while this worker
        # was still loading the vault and the ledger left it serving the port alone, parent 1,
        # forever (its own getppid() was recorded too late to tell). The pid the first process
        # passed is compared now, and the kernel ends the worker with it from here on.
        from .workerlife import ParentLink, follow_parent

        if os.getppid() != worker:
            # (said, not silent: an operator reading the log, or one who typed --worker, sees
            # why a process started and ended at once)
            click.echo(f"policy serve worker {os.getpid()}: its first process ({worker}) is not "
                       "its parent (gone, or --worker given by hand: the option is internal); "
                       "exiting", err=True)
            sys.exit(1)
        follow_parent(ParentLink(parent_pid=worker, lifeline=None))
    from policy.ledger import Ledger
    from policy.service import ServiceSettings, build_app

    from .logs import SERVICE_LIBRARIES, SERVICE_LOGGER_NAME, configure_logging

    config = load_serve_config(config_file)
    # The agent's log lines (agent/logs.py): the journald priority prefix, one form for both
    # services; the service's records carry their event in `extra` (policy/logevents.py).
    configure_logging(log_format, name=SERVICE_LOGGER_NAME, libraries=SERVICE_LIBRARIES)
    children: list[subprocess.Popen[bytes]] = []
    if config.workers > 1 and worker is None:
        children = _start_workers(config_file, key_file, config.workers - 1, log_format)
    try:
        ca_pem = config.ca_certificate.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{config.ca_certificate}: cannot read: {exc.strerror}") from None
    check_ca_certificate(ca_pem, str(config.ca_certificate))
    proxy_secret: bytes | None = None
    if config.proxy_secret_file is not None:
        _refuse_readable_secret(config.proxy_secret_file, "proxy_secret_file", "a secret")
        proxy_secret = config.proxy_secret_file.read_bytes().strip()
        if len(proxy_secret) < 16:
            raise ConfigError(f"{config.proxy_secret_file}: [serve] proxy_secret_file: at "
                              "least 16 characters of secret")
    context = None
    ca_key_pem: bytes | None = None
    if config.tls and config.certificate is not None and config.key is not None:
        try:
            cert_pem = config.certificate.read_bytes()
        except OSError as exc:
            raise ConfigError(f"{config.certificate}: cannot read: {exc.strerror}") from None
        with _open_vault(config.vault, None, key_file, create=False,
                         named_by=f"[vault] path in {config_file}") as vault:
            key_pem = vault.get(config.key)
            ca_key_pem = vault.get(config.ca_key) if config.ca_key else None
        if ca_key_pem is not None and not key_matches_certificate(ca_key_pem, ca_pem):
            # (renewals signed with another key, [serve] key beside it a likely slip, would be
            # certificates the service itself refuses: each host locked out as it renews)
            raise ConfigError(f"{config_file}: [serve] ca_key (vault entry {config.ca_key}) is "
                              f"not the key of ca_certificate {config.ca_certificate}: give the "
                              "fleet CA's key entry (the one `certescrow fleet ca init` "
                              "printed)")
        context = server_ssl_context(
            cert_pem=cert_pem, key_pem=key_pem, ca_cert_pem=ca_pem,
            certificate=str(config.certificate), ca_certificate=str(config.ca_certificate),
            key=f"[serve] key (vault entry {config.key})")
        del key_pem
    ledger = Ledger.open(config.ledger)
    registry = FleetRegistry.open(config.ledger)

    def forwarded(pem: bytes, at: datetime) -> Any:
        return identity_from_pem(pem, ca_cert_pem=ca_pem, at=at)

    renewer = _renewer(ca_key_pem, ca_pem) if config.tls and ca_key_pem is not None else None

    app = build_app(intake=ledger, registry=registry, clock=lambda: resolve_at(None),
                    settings=ServiceSettings(max_body_bytes=config.max_body_bytes,
                                             max_observations=config.max_observations,
                                             max_pending_batches=config.max_pending_batches,
                                             admission_wait=timedelta(
                                                 milliseconds=config.admission_wait_ms),
                                             max_waiting_batches=config.max_waiting_batches,
                                             body_timeout=timedelta(
                                                 milliseconds=config.body_timeout_ms),
                                             header_timeout=timedelta(
                                                 milliseconds=config.header_timeout_ms),
                                             max_connections_per_host=(
                                                 config.max_connections_per_host),
                                             max_handshakes=config.max_handshakes,
                                             trusted_proxies=config.trusted_proxies,
                                             proxy_header=config.proxy_header,
                                             proxy_secret=proxy_secret,
                                             renewal_grace=timedelta(
                                                 seconds=config.renewal_grace_s),
                                             clock_skew=timedelta(seconds=config.clock_skew_s)),
                    forwarded=forwarded if config.trusted_proxies or config.unix_socket
                    else None, renewer=renewer)
    try:
        worker_ended = asyncio.run(_serve(app, config, context,
                                          parent=worker,
                                          workers=children))
    finally:
        for child in children:
            child.terminate()
        for child in children:
            child.wait(timeout=30)
        registry.close()
        ledger.close()
    if worker_ended:
        raise ServeWorkerError("policy serve stopped because a worker process ended (the "
                               "worker-ended line)")


def _start_workers(config_file: Path, key_file: Path | None, count: int,
                   log_format: str) -> list[subprocess.Popen[bytes]]:
    """The other ``[serve] workers``: the same command, each its own process and event loop,
    sharing the port through ``SO_REUSEPORT`` (the kernel spreads connections over them)."""
    import subprocess

    # -P: not the working directory first on sys.path, as -m would put it (a policy/ or
    # vault/ directory there, anyone's who can write to it, was imported by the workers)
    argv = [sys.executable, "-P", "-m", "agent.main", "policy", "serve", "--config",
            str(config_file), "--log-format", log_format, "--worker", str(os.getpid())]
    if key_file is not None:
        argv += ["--key-file", str(key_file)]
    return [subprocess.Popen(argv, stdin=subprocess.DEVNULL)  # noqa: S603 - our own argv
            for _ in range(count)]


def _renewer(ca_key_pem: bytes, ca_cert_pem: bytes) -> Callable[..., Any]:
    """``POST /v1/renew``'s signer: the same issuance as ``fleet sign``, same lifetime."""

    def renew(csr_pem: bytes, host: str, at: datetime
              ) -> tuple[IssuedRecord, bytes, str | None]:
        try:
            issued = issue_client_certificate(ca_key_pem=ca_key_pem, ca_cert_pem=ca_cert_pem,
                                              csr_pem=csr_pem, host=host, at=at)
        except FleetCAError as exc:
            raise ValueError(str(exc)) from None
        return IssuedRecord(host=issued.host, serial=issued.serial,
                            not_before_utc=issued.not_before_utc,
                            not_after_utc=issued.not_after_utc,
                            key_sha256=issued.key_sha256), issued.pem, issued.adjusted

    return renew


def how_it_ended(returncode: int) -> str:
    """A child's end in words, from :attr:`subprocess.Popen.returncode` (negative: the
    signal that killed it)."""
    if returncode >= 0:
        return f"exited with status {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = f"signal {-returncode}"
    return f"was killed by {name}"


_ASKED_TO_STOP = (0, -signal.SIGTERM, -signal.SIGINT)
"""How a worker asked to stop ends (:func:`_serve` exits 0 on either signal once serving)."""


def _watch_workers(workers: Sequence[subprocess.Popen[bytes]], stop: asyncio.Event,
                   log: EventLog) -> Callable[[], bool]:
    """Install a ``SIGCHLD`` handler that reaps an ended worker at once, logs which and how,
    and stops the service; returns what says whether a worker's end stopped it.

    Why stop rather than start another worker: a new worker would read the configuration,
    the certificate and the vault's keys again, while the others keep what they started with
    (the service does not reload), so one port could be served with two configurations; and a
    worker that dies again at once (a key gone, memory short: the OOM killer sends SIGKILL)
    needs the backoff and the start limit systemd's ``Restart=on-failure`` already has. So the
    whole service stops and exits 44 (:class:`ServeWorkerError`), and systemd starts it again
    whole, all workers reading the same files; the agents keep their batches meanwhile. A
    worker's end once the service is stopping (SIGTERM, which systemd sends to every process
    of the unit) is expected, not logged. A worker stopped by SIGTERM or SIGINT (its handler's
    clean exit 0, or the signal itself while it was starting) before the first process got its
    own is that same stop, arriving in another order: the whole service stops, exit 0. The
    kernel sends neither (the OOM killer's is SIGKILL), only someone asking the service to
    stop, as SIGTERM to the first process does."""
    ended: list[int] = []

    def reap() -> None:
        for child in workers:
            if child.returncode is not None:  # reaped already
                continue
            returncode = child.poll()  # reaps it, if it ended
            if returncode is None or stop.is_set():
                continue
            how = how_it_ended(returncode)
            if returncode in _ASKED_TO_STOP:
                log.info("worker-stopped", f"worker process {child.pid} {how}: a stop asked "
                         "for; policy serve stops", pid=child.pid, returncode=returncode)
                stop.set()
                continue
            ended.append(child.pid)
            log.error("worker-ended", f"worker process {child.pid} {how}; policy serve stops "
                      f"(exit {ServeWorkerError.exit_code}) to be started again whole",
                      pid=child.pid, returncode=returncode)
            stop.set()

    asyncio.get_running_loop().add_signal_handler(signal.SIGCHLD, reap)
    reap()  # one that ended before the handler was in place sends no second SIGCHLD
    return lambda: bool(ended)


async def _serve(app: Any, config: ServeConfig, context: Any, *, parent: int | None,
                 workers: Sequence[subprocess.Popen[bytes]] = ()) -> bool:
    """Serve until stopped; returns whether one of ``workers`` ending is what stopped it."""
    from policy.service import StartError, serve

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # Handlers wait on the database in worker threads; the default pool (CPUs + 4) is too few
    # for a fleet's requests waiting on round trips, and each storage pools 8 connections.
    from concurrent.futures import ThreadPoolExecutor

    loop.set_default_executor(ThreadPoolExecutor(max_workers=16,
                                                 thread_name_prefix="certescrow-db"))
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    import logging

    from .logs import SERVICE_LOGGER_NAME, EventLog

    log = EventLog(logging.getLogger(SERVICE_LOGGER_NAME))

    def hangup() -> None:
        # The agent reloads on SIGHUP, so `kill -HUP` (or `systemctl reload`) is an
        # operator's habit; its default action killed the service silently (exit 129).
        # The service reads its configuration, certificate and keys once, at its start: it
        # says so and keeps serving.
        log.warning("reload-ignored", "SIGHUP: policy serve does not reload; it keeps running "
                    "with the configuration, certificate and keys it started with (restart it "
                    "to read them again)")

    loop.add_signal_handler(signal.SIGHUP, hangup)

    def started(addresses: list[str]) -> None:
        for address in addresses:
            log.info("listening", f"listening on {address}", address=address)

    if parent is not None:
        # A worker ends with the process that started it, even one killed without a word.
        async def orphaned() -> None:
            while os.getppid() == parent:
                await asyncio.sleep(1)
            stop.set()

        watcher = asyncio.create_task(orphaned())
    worker_ended = _watch_workers(workers, stop, log) if workers else (lambda: False)
    try:
        await serve(app, listen=config.listen, port=config.port, ssl_context=context,
                    unix_socket=None if config.unix_socket is None else str(config.unix_socket),
                    reuse_port=config.workers > 1, started=started, stop=stop)
    except StartError as exc:
        raise ServeStartError(str(exc)) from None
    finally:
        if parent is not None:
            watcher.cancel()
        if workers:
            # Now, not when asyncio.run closes the loop: that closes the signal's wake-up
            # pipe first, and a worker ending meanwhile (systemd stops them all at once) made
            # Python print an ignored exception for the write to it. The workers left are
            # reaped by serve_command.
            loop.remove_signal_handler(signal.SIGCHLD)
    return worker_ended()
