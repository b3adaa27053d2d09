"""``certescrow vault …``: thin click commands over :class:`vault.service.Vault`.

Every command takes ``--vault PATH`` (else ``[vault].path``, else
``$XDG_DATA_HOME/certescrow/vault.sqlite3``) and ``--key-file FILE`` (else the configured key
source). A command parses options, calls one library function and renders its result; ``--json``
renders the same objects.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import click

from untrusted.text import for_terminal, json_text

from . import formats
from .errors import (
    VaultConflictError,
    VaultInputError,
    VaultIntegrityError,
    VaultPermissionError,
)
from .keysource import (
    KeyFileSource,
    KeyringSource,
    MasterKeySource,
    PassphraseSource,
    key_source_from_settings,
)
from .lifecycle import open_vault, restore_vault
from .results import PutRequest
from .secretfile import SecretFileError, read_secret_file, same_path, write_secret_file
from .service import Vault
from .store import default_vault_path

__all__ = ["default_vault_path", "vault_group"]

NEW_PASSPHRASE_ENV = "CERTESCROW_VAULT_NEW_PASSPHRASE"  # noqa: S105 - a variable name
PASSWORD_FILE_MAX = 64 * 1024  # a password file holds a line or a few, never a megabyte

F = TypeVar("F", bound=Callable[..., Any])


def _vault_settings(ctx: click.Context) -> dict[str, Any]:
    """The ``[vault]`` table of the loaded configuration (vault may not import policy)."""
    obj = ctx.find_root().obj
    if not isinstance(obj, dict):
        return {}
    config = obj.get("config")
    section = config.get("vault", {}) if isinstance(config, dict) else {}
    return section if isinstance(section, dict) else {}


def _vault_path(ctx: click.Context, option: Path | None) -> Path:
    if option is not None:
        return option.expanduser()
    configured = str(_vault_settings(ctx).get("path") or "")
    return Path(configured).expanduser() if configured else default_vault_path()


def _source(ctx: click.Context, key_file: Path | None) -> MasterKeySource:
    return key_source_from_settings(_vault_settings(ctx), key_file=key_file)


def _vault_options(func: F) -> F:
    func = click.option("--key-file", type=click.Path(dir_okay=False, path_type=Path),
                        envvar="CERTESCROW_VAULT_KEY_FILE",
                        help="Use this key file as the master key. Default: "
                             "$CERTESCROW_VAULT_KEY_FILE, else the configured [vault] "
                             "key_source.")(func)
    func = click.option("--vault", "vault_path", type=click.Path(dir_okay=False, path_type=Path),
                        help="Vault file. Default: [vault] path, else "
                             "$XDG_DATA_HOME/certescrow/vault.sqlite3.")(func)
    return func


def _json_option(func: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON.")(func)


def _echo_json(value: Any) -> None:
    """Exact JSON: a file name's bytes that are not UTF-8 (lone surrogates) and control
    characters are JSON escapes that decode back to the same text."""
    click.echo(json_text(json.dumps(value, ensure_ascii=False, indent=2)))


def _say(text: str, *, err: bool = False) -> None:
    """One line of text output. Labels, subjects, SANs and file names in it are written by
    whoever made the file: escaped so none can move the cursor, retitle or clear the terminal,
    ring it, or forge a line."""
    click.echo(for_terminal(text), err=err)


def _say_notes(name: str, notes: Iterable[str]) -> None:
    """What the cryptography library warned about an object (:mod:`vault.boundary`), one
    ``note:`` line each on stderr: standard output stays the command's (rows a script reads,
    an export's bytes). ``--json`` carries them as ``notes``."""
    for note in notes:
        _say(f"note: {name}: {note}", err=True)


def _open(ctx: click.Context, vault_path: Path | None, key_file: Path | None, *,
          locked: bool = False) -> Vault:
    path = _vault_path(ctx, vault_path)
    return open_vault(path, None if locked else _source(ctx, key_file))


@contextlib.contextmanager
def _progress(label: str) -> Iterator[Callable[[int, int], None] | None]:
    """A progress bar on a terminal (stderr), nothing in scripts."""
    if not sys.stderr.isatty():
        yield None
        return
    state: dict[str, Any] = {}

    def update(done: int, total: int) -> None:
        bar = state.get("bar")
        if bar is None:
            bar = click.progressbar(length=total, label=label, file=sys.stderr)
            bar.__enter__()
            state["bar"], state["done"] = bar, 0
        bar.update(done - state["done"])
        state["done"] = done

    try:
        yield update
    finally:
        if "bar" in state:
            state["bar"].__exit__(None, None, None)


def _read_password_file(path: Path) -> bytes:
    """The first line of ``path`` (a regular file; a FIFO is refused, never waited on)."""
    try:
        data = read_secret_file(path.expanduser(), what="password file",
                                max_bytes=PASSWORD_FILE_MAX, private=True)
    except SecretFileError as exc:
        if exc.problem == "exposed":
            raise VaultPermissionError(str(exc)) from None
        raise VaultInputError(str(exc)) from None
    return data.split(b"\n", 1)[0].rstrip(b"\r")


SUMMARY_SHOWN = 80
"""Characters of an entry's summary (a certificate's subject: the CA's or the customer's
text, of any length) a ``vault list`` row shows."""
META_SHOWN = 512
"""Characters of a metadata value ``vault show`` prints (``--json`` gives all of it)."""


def _shortened(text: str, limit: int, *, note: bool = False) -> str:
    """``text`` cut to ``limit`` characters: a 60,000-character subject made a 60,000-column
    row (review 12)."""
    if len(text) <= limit:
        return text
    cut = text[:limit - 1] + "\u2026"
    return f"{cut} ({len(text):,} characters; --json shows them all)" if note else cut


def _table(rows: list[list[str]], headers: list[str]) -> None:
    rows = [[for_terminal(cell) for cell in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    click.echo("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for row in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


@click.group("vault")
def vault_group() -> None:
    """Encrypted escrow of keys, CSRs, certificates and CA documents (Art.4(7))."""


@vault_group.command("init")
@_vault_options
@click.pass_context
def init_command(ctx: click.Context, vault_path: Path | None, key_file: Path | None) -> None:
    """Create a vault. With --key-file FILE, FILE is created (random key, 0600) if missing,
    and its directory (0700) too. The vault appears only once complete."""
    path = _vault_path(ctx, vault_path)
    if path.exists() or path.is_symlink():
        raise VaultConflictError(f"{path} already exists; `vault init` never replaces it (a "
                                 "file left by an interrupted init of an older release holds "
                                 "no entries: move it away first)")
    source = _source(ctx, key_file)
    with open_vault(path, source, create=True) as vault:
        status = vault.status()
    _say(f"Created vault {path} (vault id {status.vault_id}, key: {source.describe()})")


@vault_group.command("status")
@_vault_options
@_json_option
@click.pass_context
def status_command(ctx: click.Context, vault_path: Path | None, key_file: Path | None,
                   as_json: bool) -> None:
    """Whether the key opens the vault, counts per kind, key source, format version."""
    with _open(ctx, vault_path, key_file, locked=True) as vault:
        vault.try_unlock(_source(ctx, key_file))
        status = vault.status()
    if as_json:
        _echo_json(status.to_json())
        return
    _say(f"vault:          {status.path}")
    click.echo(f"format version: {status.format_version}")
    click.echo(f"vault id:       {status.vault_id}")
    _say(f"created:        {status.created_at}")
    _say(f"key source:     {status.key_source} (last keyed with: {status.keyed_with})")
    _say("state:          " + (f"LOCKED - {status.lock_reason}" if status.locked
                               else "unlocked (the key opens the vault)"))
    counts = ", ".join(f"{k} {n}" for k, n in status.counts.items()) or "none"
    _say(f"entries:        {sum(status.counts.values())} ({counts})")
    click.echo(f"audit records:  {status.audit_records}")


@vault_group.command("gen-csr")
@_vault_options
@click.option("--cn", "common_name", required=True, help="Common Name.")
@click.option("--san", "sans", multiple=True, help="Subject alternative name (repeatable; "
              "DNS name or IP address). Default: the CN.")
@click.option("--key", "key_spec", type=click.Choice(formats.KEY_SPECS), default="ec:p256",
              show_default=True, help="Key type.")
@click.option("--contract", "contract_id", help="Contract id to file the key and CSR under.")
@_json_option
@click.pass_context
def gen_csr_command(ctx: click.Context, vault_path: Path | None, key_file: Path | None,
                    common_name: str, sans: tuple[str, ...], key_spec: str,
                    contract_id: str | None, as_json: bool) -> None:
    """Generate a key inside the vault and print its CSR (the key never touches disk)."""
    with _open(ctx, vault_path, key_file) as vault:
        result = vault.gen_csr(common_name=common_name, sans=sans, key_spec=key_spec,
                               contract_id=contract_id)
    if as_json:
        _echo_json(result.to_json())
        return
    click.echo(f"key {result.key_id}, csr {result.csr_id}", err=True)
    click.echo(result.csr_pem.decode(), nl=False)


def _password_asker(password_file: Path | None) -> Callable[[str], bytes | None]:
    def ask(what: str) -> bytes | None:
        if password_file is not None:
            return _read_password_file(password_file)
        if not sys.stdin.isatty():
            raise VaultInputError(f"{what} is encrypted: give --password-file, or run on a "
                                  "terminal to be asked")
        text: str = click.prompt(for_terminal(f"Password for {what}"), hide_input=True,
                                 err=True)
        return text.encode()

    return ask


@vault_group.command("import")
@_vault_options
@click.argument("files", nargs=-1, required=True,
                type=click.Path(dir_okay=False, path_type=Path))
@click.option("--contract", "contract_id", help="Contract id for every imported entry.")
@click.option("--kind", type=click.Choice(formats.KINDS),
              help="Insist on this kind (document = keep the bytes as they are).")
@click.option("--label", help="Label (default: the file name).")
@click.option("--password-file", type=click.Path(dir_okay=False, path_type=Path),
              help="Password of encrypted keys / PKCS#12 files (else asked on the terminal).")
@_json_option
@click.pass_context
def import_command(ctx: click.Context, vault_path: Path | None, key_file: Path | None,
                   files: tuple[Path, ...], contract_id: str | None, kind: str | None,
                   label: str | None, password_file: Path | None, as_json: bool) -> None:
    """Import keys, CSRs, certificates, PKCS#12 and CA documents; all files or none."""
    ask = _password_asker(password_file)
    requests: list[tuple[formats.ImportedItem, PutRequest]] = []
    with _open(ctx, vault_path, key_file) as vault:
        for path in files:
            try:  # non-blocking, regular files only: a FIFO named here must not hang us
                data = read_secret_file(path, what="file", max_bytes=formats.MAX_ENTRY_SIZE)
            except SecretFileError as exc:
                if exc.problem == "too-large":
                    raise VaultInputError(f"{path}: larger than the vault's limit of "
                                          f"{formats.MAX_ENTRY_SIZE // 2**20} MiB per "
                                          "entry") from None
                raise VaultInputError(str(exc)) from None
            for item in formats.recognise(data, source=str(path), ask=ask, kind=kind):
                requests.append((item, PutRequest(
                    kind=item.kind, data=item.data, contract_id=contract_id,
                    label=label or path.name, meta={**item.meta, "imported_from": item.source})))
        results = vault.put_many([r for _, r in requests])
    done = [(item, res, tuple(dict.fromkeys(item.notes + res.notes)))
            for (item, _), res in zip(requests, results, strict=True)]
    if as_json:
        _echo_json([{"id": res.entry_id, "kind": item.kind, "source": item.source,
                     "created": res.created, "notes": list(notes)}
                    for item, res, notes in done])
        return
    for item, res, notes in done:
        state = "imported" if res.created else "already in the vault"
        _say(f"{res.entry_id}  {item.kind:<11}  {item.source}  ({state})")
        _say_notes(item.source, notes)


@vault_group.command("put")
@_vault_options
@click.option("--kind", type=click.Choice(formats.KINDS), required=True)
@click.option("--label")
@click.option("--contract", "contract_id")
@_json_option
@click.pass_context
def put_command(ctx: click.Context, vault_path: Path | None, key_file: Path | None, kind: str,
                label: str | None, contract_id: str | None, as_json: bool) -> None:
    """Store what is on standard input as one entry of KIND."""
    stdin: BinaryIO = sys.stdin.buffer
    data = stdin.read()
    with _open(ctx, vault_path, key_file) as vault:
        result = vault.put(kind, data, contract_id=contract_id, label=label)
    if as_json:
        _echo_json({"id": result.entry_id, "created": result.created,
                    "notes": list(result.notes)})
    else:
        click.echo(result.entry_id)
        _say_notes(f"entry {result.entry_id}", result.notes)


@vault_group.command("list")
@_vault_options
@click.option("--kind", type=click.Choice(formats.KINDS))
@click.option("--contract", "contract_id")
@_json_option
@click.pass_context
def list_command(ctx: click.Context, vault_path: Path | None, key_file: Path | None,
                 kind: str | None, contract_id: str | None, as_json: bool) -> None:
    """Entries' metadata (nothing is decrypted; no key needed)."""
    with _open(ctx, vault_path, key_file, locked=True) as vault:
        entries = vault.entries(kind=kind, contract_id=contract_id)
    if as_json:
        _echo_json([e.to_json() for e in entries])
        return
    _table([[e.entry_id, e.kind, str(e.version), e.label or "", e.contract_id or "",
             e.created_at[:19] + "Z", str(e.size),
             _shortened(e.meta.get("subject") or e.meta.get("key") or "", SUMMARY_SHOWN)]
            for e in entries],
           ["ID", "KIND", "V", "LABEL", "CONTRACT", "CREATED", "SIZE", "SUMMARY"])


@vault_group.command("show")
@_vault_options
@click.argument("entry_id")
@_json_option
@click.pass_context
def show_command(ctx: click.Context, vault_path: Path | None, key_file: Path | None,
                 entry_id: str, as_json: bool) -> None:
    """One entry's metadata and its audit history."""
    with _open(ctx, vault_path, key_file, locked=True) as vault:
        info = vault.info(entry_id)
        history = vault.history(info.entry_id)
    if as_json:
        _echo_json({**info.to_json(), "history": [r.to_json() for r in history]})
        return
    for name, value in info.to_json().items():
        if name != "meta":
            _say(f"{name + ':':<13} {'' if value is None else value}")
    for name, value in info.meta.items():
        _say(f"  {name + ':':<18} {_shortened(str(value), META_SHOWN, note=True)}")
    click.echo("history:")
    for record in history:
        _say(f"  {record.at}  {record.action:<7} v{record.version}  {record.actor}")


def _is_text(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return b"\x00" not in data


def _write_private(path: Path, data: bytes, *, force: bool) -> None:
    """Write 0600, never over an existing file unless ``force``, and never leaving a copy of
    the (plaintext) data anywhere but ``path`` (see :func:`vault.secretfile.write_secret_file`)."""
    try:
        write_secret_file(path, data, what="output file", replace=force)
    except SecretFileError as exc:
        if exc.problem == "exists":
            raise VaultConflictError(f"{path} exists; use --force to overwrite it") from None
        raise VaultInputError(str(exc)) from None


def _refuse_out_over_the_vault(out: Path, vault_file: Path, source: MasterKeySource) -> None:
    """``export --out`` or ``backup DEST`` naming the vault, one of its SQLite files or its
    master key file (a slip for ``--vault`` or ``--key-file``) is refused, ``--force`` or not:
    written over, the vault could not be opened again, or its master key would be a
    certificate or a backup, and every secret in it lost with the key."""
    own = [vault_file, *(vault_file.with_name(vault_file.name + suffix)
                         for suffix in ("-wal", "-shm", "-journal"))]
    if isinstance(source, KeyFileSource):
        own += [source.path, source.path.with_name(source.path.name + ".next")]
    for path in own:
        if same_path(out, path):
            raise VaultConflictError(f"{out} is the vault's own file ({path}); --force never "
                                     "writes over the vault or its master key: give another "
                                     "file to write to")


def _refuse_private_key_on_terminal(holds_key: bool) -> None:
    """A private key printed on a terminal stays in its scrollback, its logs and in view of
    whoever stands behind: only a pipe, --out or an explicit --force writes it there."""
    if holds_key:
        raise VaultInputError("refusing to print a private key on a terminal (its scrollback "
                              "and logs would keep it): use --out FILE (mode 0600) or a pipe, "
                              "or --force to print it all the same")


@vault_group.command("export")
@_vault_options
@click.argument("entry_id")
@click.option("--format", "fmt", type=click.Choice(formats.EXPORT_FORMATS),
              help="Output format (default: as stored).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write here (mode 0600) instead of standard output.")
@click.option("--force", is_flag=True, help="Overwrite --out if it exists; without --out, "
              "print a private key on a terminal all the same.")
@click.option("--password-file", type=click.Path(dir_okay=False, path_type=Path),
              help="Password for a p12 export (else asked twice on the terminal).")
@click.pass_context
def export_command(ctx: click.Context, vault_path: Path | None, key_file: Path | None,
                   entry_id: str, fmt: str | None, out: Path | None, force: bool,
                   password_file: Path | None) -> None:
    """Write an entry out, optionally converted (pem, der, p12 with key + certificate)."""
    if out is not None:
        _refuse_out_over_the_vault(out, _vault_path(ctx, vault_path), _source(ctx, key_file))
    if out is not None and out.exists() and not force:
        raise VaultConflictError(f"{out} exists; use --force to overwrite it")

    def p12_password() -> bytes:
        if password_file is not None:
            return _read_password_file(password_file)
        if not sys.stdin.isatty():
            raise VaultInputError("a p12 export needs a password: give --password-file or run "
                                  "on a terminal")
        text: str = click.prompt("Password for the PKCS#12 file", hide_input=True,
                                 confirmation_prompt=True, err=True)
        return text.encode()

    to_terminal = out is None and sys.stdout.isatty()
    with _open(ctx, vault_path, key_file) as vault:
        if to_terminal and not force:  # refused before anything is decrypted
            _refuse_private_key_on_terminal(formats.holds_private_key(
                vault.info(entry_id).kind, fmt))
        exported = vault.export(entry_id, fmt, p12_password=p12_password)
    data = exported.data
    _say_notes(f"entry {exported.entry_id}", exported.notes)
    if to_terminal and not _is_text(data):
        raise VaultInputError("refusing to write binary data to a terminal; use --out FILE")
    if to_terminal and not force:
        _refuse_private_key_on_terminal(formats.holds_private_key("document", fmt, data))
    if out is None:
        stdout: BinaryIO = sys.stdout.buffer
        stdout.write(data)
        stdout.flush()
        return
    _write_private(out, data, force=force)
    _say(f"wrote {out} ({len(data)} bytes, mode 0600)", err=True)


@vault_group.command("rm")
@_vault_options
@click.argument("entry_id")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation on a terminal.")
@click.pass_context
def rm_command(ctx: click.Context, vault_path: Path | None, key_file: Path | None,
               entry_id: str, yes: bool) -> None:
    """Remove an entry (the audit log keeps the record of it)."""
    with _open(ctx, vault_path, key_file) as vault:
        info = vault.info(entry_id)
        if not yes and sys.stdin.isatty():
            click.confirm(for_terminal(f"Remove {info.kind} {info.entry_id} "
                                       f"({info.label or 'no label'})?"),
                          abort=True, err=True)
        vault.remove(info.entry_id)
    click.echo(f"removed {info.kind} {info.entry_id}")


@vault_group.command("label")
@_vault_options
@click.argument("entry_id")
@click.option("--label", help="New label ('' clears it). Default: unchanged.")
@click.option("--contract", "contract_id", help="New contract id ('' clears it). Default: "
              "unchanged.")
@_json_option
@click.pass_context
def label_command(ctx: click.Context, vault_path: Path | None, key_file: Path | None,
                  entry_id: str, label: str | None, contract_id: str | None,
                  as_json: bool) -> None:
    """Change an entry's label or contract id (a new entry version, re-encrypted)."""
    if label is None and contract_id is None:
        raise VaultInputError("give --label and/or --contract")
    with _open(ctx, vault_path, key_file) as vault:
        current = vault.info(entry_id)
        info = vault.update(
            current.entry_id,
            label=current.label if label is None else (label or None),
            contract_id=current.contract_id if contract_id is None else (contract_id or None))
    if as_json:
        _echo_json(info.to_json())
    else:
        label_text = "none" if info.label is None else f"'{info.label}'"
        contract_text = "none" if info.contract_id is None else f"'{info.contract_id}'"
        _say(f"{info.entry_id} is now version {info.version} (label {label_text}, "
             f"contract {contract_text})")


@vault_group.command("match")
@_vault_options
@_json_option
@click.pass_context
def match_command(ctx: click.Context, vault_path: Path | None, key_file: Path | None,
                  as_json: bool) -> None:
    """Pair private keys with their certificates and CSRs (by public key)."""
    with _open(ctx, vault_path, key_file, locked=True) as vault:
        report = vault.match()
        labels = {e.entry_id: e for e in vault.entries()}
    if as_json:
        _echo_json(report.to_json())
        return

    def name(entry_id: str) -> str:
        entry = labels.get(entry_id)
        return f"{entry_id} ({entry.label})" if entry and entry.label else entry_id

    for group in report.groups:
        _say("key " + ", ".join(name(k) for k in group.keys + group.pkcs12))
        for cert in group.certificates:
            _say(f"  certificate {name(cert)}")
        for csr in group.csrs:
            _say(f"  csr         {name(csr)}")
    for key in report.keys_without_certificate:
        _say(f"key {name(key)}: no certificate or CSR")
    for cert in report.certificates_without_key:
        _say(f"certificate {name(cert)}: no key in the vault")


def _new_passphrase(confirm: bool) -> str:
    value = os.environ.get(NEW_PASSPHRASE_ENV)
    if value:
        return value
    if not sys.stdin.isatty():
        raise VaultInputError(f"rotating a passphrase vault needs the new passphrase: set "
                              f"{NEW_PASSPHRASE_ENV} or run on a terminal")
    text: str = click.prompt("New vault passphrase", hide_input=True, confirmation_prompt=True,
                             err=True)
    return text


@vault_group.command("rotate-key")
@_vault_options
@click.option("--new-key-file", type=click.Path(dir_okay=False, path_type=Path),
              help="Re-key to this key file (created, 0600, if missing). Default: a new key "
                   "in the same place (keyring entry, key file) or a new passphrase.")
@click.option("--keep-old-key", is_flag=True,
              help="Before an in-place rotation, keep a dated copy of the old key (beside the "
                   "key file as FILE.retired-<UTC time>, mode 0600, or as a keyring entry): "
                   "backups made before the rotation open only with it. Asked on a terminal.")
@click.option("--discard-old-key", is_flag=True,
              help="Let an in-place rotation destroy the old key even though the audit log "
                   "records backups made with it (without a terminal, one of --keep-old-key "
                   "and --discard-old-key is then required).")
@_json_option
@click.pass_context
def rotate_key_command(ctx: click.Context, vault_path: Path | None, key_file: Path | None,
                       new_key_file: Path | None, keep_old_key: bool, discard_old_key: bool,
                       as_json: bool) -> None:
    """Re-wrap every data key under a new master key, in one transaction.

    Backups made before the rotation stay wrapped under the old key: keep it
    (--keep-old-key) for as long as you keep those backups."""
    with _open(ctx, vault_path, key_file) as vault:
        current = _source(ctx, key_file)
        target: MasterKeySource | None = None
        if new_key_file is not None:
            target = KeyFileSource(new_key_file.expanduser())
        elif isinstance(current, PassphraseSource):
            target = PassphraseSource(get_passphrase=_new_passphrase)
        in_place_key = target is None and isinstance(current, (KeyFileSource, KeyringSource))
        if in_place_key and not keep_old_key and not discard_old_key and sys.stdin.isatty() \
                and not as_json:
            keep_old_key = click.confirm(
                "Backups made before this rotation open only with the old key, which the "
                "rotation replaces. Keep a dated copy of the old key (mode 0600)?",
                default=True, err=True)
            discard_old_key = not keep_old_key  # answered on the terminal: an explicit choice
        with _progress("re-wrapping") as progress:
            result = vault.rotate_key(target, progress=progress, keep_old_key=keep_old_key,
                                      discard_old_key=discard_old_key)
    if as_json:
        _echo_json(result.to_json())
        return
    _say(f"re-wrapped {result.entries_rewrapped} data keys; the vault now opens with the "
         f"{result.key_source}")
    _say(f"note: {result.old_key_note}", err=True)
    if new_key_file is not None:
        _say(f"update [vault] key_source/key_file (or pass --key-file {new_key_file})",
             err=True)


@vault_group.command("verify")
@_vault_options
@_json_option
@click.pass_context
def verify_command(ctx: click.Context, vault_path: Path | None, key_file: Path | None,
                   as_json: bool) -> None:
    """Every entry decrypts, every binding holds, the audit chain is whole."""
    with _open(ctx, vault_path, key_file) as vault, _progress("verifying") as progress:
        report = vault.verify(progress=progress)
    if as_json:
        _echo_json(report.to_json())
    else:
        for problem in report.problems:
            _say(f"PROBLEM: {problem}")
        for note in report.notes:
            _say(f"note: {note}", err=True)
        click.echo(f"{report.entries_checked} entries, {report.audit_records} audit records: "
                   + ("OK" if report.ok else f"{len(report.problems)} problem(s)"))
    if not report.ok:
        raise VaultIntegrityError(f"vault verification failed with {len(report.problems)} "
                                  "problem(s)")


@vault_group.command("backup")
@_vault_options
@click.argument("dest", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite DEST if it exists.")
@click.pass_context
def backup_command(ctx: click.Context, vault_path: Path | None, key_file: Path | None,
                   dest: Path, force: bool) -> None:
    """Write a consistent, still-encrypted copy of the vault to DEST (0600)."""
    _refuse_out_over_the_vault(dest, _vault_path(ctx, vault_path), _source(ctx, key_file))
    with _open(ctx, vault_path, key_file) as vault:
        written = vault.backup(dest, force=force)
    _say(f"backup written to {written}")


@vault_group.command("restore")
@_vault_options
@click.argument("backup", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Replace an existing vault.")
@click.pass_context
def restore_command(ctx: click.Context, vault_path: Path | None, key_file: Path | None,
                    backup: Path, force: bool) -> None:
    """Replace the vault with BACKUP, after verifying BACKUP with the key."""
    path = _vault_path(ctx, vault_path)
    result = restore_vault(backup, path, _source(ctx, key_file), force=force)
    _say(f"restored {result.entries} entries from {backup} into {result.path}")


@vault_group.command("audit")
@_vault_options
@click.option("--entry", "entry_id", help="Only the records of this entry.")
@_json_option
@click.pass_context
def audit_command(ctx: click.Context, vault_path: Path | None, key_file: Path | None,
                  entry_id: str | None, as_json: bool) -> None:
    """The audit log (who, what, when). `vault verify` checks its chain."""
    with _open(ctx, vault_path, key_file, locked=True) as vault:
        records = vault.history(entry_id) if entry_id else vault.audit_records()
    if as_json:
        _echo_json([r.to_json() for r in records])
        return
    _table([[str(r.seq), r.at[:19] + "Z", r.actor, r.action, r.entry_id or "", r.kind or "",
             "" if r.version is None else str(r.version)] for r in records],
           ["SEQ", "AT", "ACTOR", "ACTION", "ENTRY", "KIND", "V"])

