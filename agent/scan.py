"""Walk certificate stores and read every file in them, accounting for each one.

Directory links are followed under the same policy as file links (:class:`ReadLimits`), and a
link back to a directory already on the current path is a ``symlink-loop`` error for that link,
not an endless walk. A directory reached by two different non-looping paths is walked twice on
purpose: a certificate reached by several paths is reported once per path (same ``sha256``).
"""

from __future__ import annotations

import errno
import os
import stat as statmod
from collections.abc import Callable, Iterator, Sequence, Set
from dataclasses import dataclass
from pathlib import Path

from .reader import read_file
from .records import FileError, FileResult, FileSkip, ReadLimits
from .safeio import error_for_os_error, within_roots

__all__ = [
    "VANISHED",
    "Batch",
    "DirectoryLinkHook",
    "GivenPath",
    "ProgressCallback",
    "collect_targets",
    "directory_batches",
    "iter_scan",
    "iter_store_files",
    "iter_store_paths",
    "iter_targets",
    "read_target",
    "refused_directory_link",
    "scan_paths",
]

ProgressCallback = Callable[[int, int], None]
"""Called as ``progress(done, total)`` after each file is read."""

DirectoryLinkHook = Callable[[str, str], None]
"""Called as ``hook(link, target)`` for each directory link a walk follows: the link's path as
the walk names it, and its fully resolved target (the daemon maps events in the target back to
the link's path: :class:`agent.watch.DirectoryLinks`)."""

VANISHED = "vanished"
"""The skip code of a file that was listed and then removed while the one-shot scan ran."""

_MAX_DEPTH = 64
_TRANSIENT = frozenset({"vanished", "not-found"})


class LinkedPath(str):
    """A path the walk found to be a symbolic link (to a file, or dangling): the daemon traces
    such a file back from its target (certbot's ``live/`` -> ``archive/``) and would otherwise
    ask the file system again, one ``lstat`` a file of a first scan."""

    __slots__ = ()


class GivenPath(str):
    """A file named on the command line (not found by a walk): when it is not there, that is
    an error the caller must see (``not-found``), never a file that merely came and went."""

    __slots__ = ()


def _error(path: Path | str, code: str, message: str) -> FileError:
    return FileError(path=str(path), code=code, message=message)


def iter_store_files(root: Path, *, limits: ReadLimits) -> Iterator[Path | FileError]:
    """Every file under ``root`` (sorted, depth first), or a :class:`FileError` for a directory
    or link that cannot be walked. Files are not opened here: FIFOs, dangling links and the
    like are yielded as paths, and :func:`~agent.reader.read_file` reports them."""
    for item in _walk(root, limits=limits):
        yield Path(item) if isinstance(item, str) else item


def iter_store_paths(root: Path | str, *, limits: ReadLimits,
                     on_directory_link: DirectoryLinkHook | None = None,
                     above: Set[tuple[int, int]] = frozenset()) -> Iterator[str | FileError]:
    """:func:`iter_store_files` with paths as ``str`` (the daemon's walk of 100,000 files:
    no ``Path`` objects it would turn back into text).

    ``on_directory_link`` hears of every directory link followed. ``above`` holds the
    ``(st_dev, st_ino)`` of the directories between the store root and ``root`` (a rescan of
    one directory of a store): a link back to one of them is a loop there as it is in a walk
    of the whole store, so both walks take the same files."""
    return _walk(root, limits=limits, on_directory_link=on_directory_link, above=above)


def refused_directory_link(path: str, *, key: tuple[int, int],
                           ancestors: Set[tuple[int, int]], real: str | None,
                           limits: ReadLimits) -> FileError | None:
    """Why the directory link ``path`` (to the directory identified by ``key``, resolved to
    ``real``; ``None`` when no root limits the walk) is not followed below the directories
    ``ancestors``, or ``None`` when it is followed."""
    if key in ancestors:
        return _error(path, "symlink-loop",
                      "link to a directory that contains it (a loop); not followed")
    if real is not None and not within_roots(real, limits):
        return _error(path, "link-outside-root",
                      f"directory link resolves to {real}, outside the store's "
                      "allowed roots; not followed")
    if len(ancestors) >= _MAX_DEPTH:
        return _error(path, "symlink-loop",
                      f"directories nested deeper than {_MAX_DEPTH} levels; not followed")
    return None


def _walk(root: Path | str, *, limits: ReadLimits,
          on_directory_link: DirectoryLinkHook | None = None,
          above: Set[tuple[int, int]] = frozenset()) -> Iterator[str | FileError]:
    """:func:`iter_store_files` with paths as ``str``: building 100,000 ``Path`` objects takes
    four times as long as the walk itself, and the one-shot scan walks before it can share the
    work among its processes."""
    try:
        st = os.stat(root)
    except OSError as exc:
        failure = error_for_os_error(exc)
        if exc.errno == errno.ENOENT and os.path.islink(root):
            yield _error(root, "not-found", "dangling symbolic link: its target does not exist")
        else:
            yield _error(root, failure.code, failure.message)
        return
    if not statmod.S_ISDIR(st.st_mode):
        yield str(root)
        return
    stack: list[tuple[str, frozenset[tuple[int, int]]]] = [
        (str(root), frozenset({(st.st_dev, st.st_ino), *above}))
    ]
    while stack:
        directory, ancestors = stack.pop()
        try:
            with os.scandir(directory) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            failure = error_for_os_error(exc, what="cannot list directory")
            yield _error(directory, failure.code, failure.message)
            continue
        subdirs: list[tuple[str, frozenset[tuple[int, int]]]] = []
        for entry in entries:
            path = entry.path
            try:
                if entry.is_dir(follow_symlinks=False):
                    est = entry.stat(follow_symlinks=False)
                    subdirs.append((path, ancestors | {(est.st_dev, est.st_ino)}))
                    continue
                if not entry.is_symlink():
                    yield path
                    continue
            except OSError as exc:
                failure = error_for_os_error(exc)
                yield _error(path, failure.code, failure.message)
                continue
            # a symbolic link: to a directory (walk it, by policy) or to anything else (yield)
            try:
                target = os.stat(path)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    yield _error(path, "symlink-loop",
                                 "too many levels of symbolic links (a loop)")
                else:
                    yield LinkedPath(path)  # dangling: the reader names it
                continue
            if not statmod.S_ISDIR(target.st_mode):
                yield LinkedPath(path)
                continue
            key = (target.st_dev, target.st_ino)
            real = (os.path.realpath(path)
                    if limits.root is not None or on_directory_link is not None else None)
            refused = refused_directory_link(path, key=key, ancestors=ancestors,
                                             real=real if limits.root is not None else None,
                                             limits=limits)
            if refused is not None:
                yield refused
                continue
            if on_directory_link is not None and real is not None:
                on_directory_link(path, real)
            subdirs.append((path, ancestors | {key}))
        stack.extend(reversed(subdirs))


def _is_dir(path: Path | str) -> bool:
    try:
        return statmod.S_ISDIR(os.stat(path).st_mode)
    except OSError:
        return False


def iter_targets(paths: Sequence[Path], *, limits: ReadLimits) -> Iterator[str | FileError]:
    """Expand directories into their files, lazily; files (and things that are not there) stay
    as given, so each argument is accounted for."""
    for path in paths:
        if _is_dir(path):
            yield from _walk(path, limits=limits)
        else:
            yield GivenPath(path)


def collect_targets(paths: Sequence[Path], *, limits: ReadLimits) -> list[str | FileError]:
    """:func:`iter_targets` as a list."""
    return list(iter_targets(paths, limits=limits))


def iter_scan(
    paths: Sequence[Path],
    *,
    limits: ReadLimits,
    passwords: Sequence[bytes] = (),
    progress: ProgressCallback | None = None,
    keep_key_pem: bool = False,
    group_directories: bool = False,
) -> Iterator[FileResult]:
    """Read every file under ``paths`` lazily, one result each. With ``group_directories``
    the files of one directory come out together (stable otherwise), which key pairing in
    :func:`agent.report.iter_report` relies on."""
    if group_directories:
        targets = [t for batch in directory_batches(paths, limits=limits) for t in batch.targets]
    else:
        targets = collect_targets(paths, limits=limits)
    total = len(targets)
    for done, target in enumerate(targets, start=1):
        yield read_target(target, limits=limits, passwords=passwords, keep_key_pem=keep_key_pem)
        if progress is not None:
            progress(done, total)


@dataclass(frozen=True, slots=True)
class Batch:
    """Targets to read and classify together: whole directories, or one part of a directory
    too large for one batch."""

    targets: list[str | FileError]
    split: int | None = None
    """Set on every part of one split directory (the same number on consecutive batches): keys
    pair within a directory, so its parts must learn each other's keys."""


def _tagged_targets(paths: Sequence[Path], *,
                    limits: ReadLimits) -> Iterator[tuple[int, str | FileError]]:
    """Every target with the number of its run (one directory of one walk, or the file
    arguments of one directory, gathered at the place of the first)."""
    is_dir = [_is_dir(path) for path in paths]
    explicit: dict[str, list[GivenPath]] = {}
    for path, directory in zip(paths, is_dir, strict=True):
        if not directory:
            explicit.setdefault(os.path.dirname(str(path)), []).append(GivenPath(path))
    run = 0
    for path, directory in zip(paths, is_dir, strict=True):
        if not directory:
            group = explicit.pop(os.path.dirname(str(path)), None)
            if group is not None:  # None: already given with the first of its directory
                run += 1
                for name in group:
                    yield run, name
            continue
        current = None
        for target in _walk(path, limits=limits):
            parent = os.path.dirname(target.path if isinstance(target, FileError) else target)
            if parent != current:
                run += 1
                current = parent
            yield run, target


def directory_batches(paths: Sequence[Path], *, limits: ReadLimits,
                      max_files: int | None = None) -> Iterator[Batch]:
    """The targets of ``paths`` grouped by directory, lazily: a scan holds a batch at a time,
    not a list of every file in the store.

    Keys are paired with the certificates of their directory, so a directory stays whole in a
    batch, unless it has more than ``max_files`` files (a flat store like ``/etc/ssl/certs``):
    then it is cut into parts of ``max_files`` that share one ``split`` number, so that the
    work is shared by files, not only by directory. Small directories are packed together up
    to ``max_files``. Without ``max_files`` each directory is one batch.
    """
    packed: list[str | FileError] = []
    part: list[str | FileError] = []
    current = 0
    split: int | None = None
    splits = 0
    for run, target in _tagged_targets(paths, limits=limits):
        if run != current and part:
            if max_files is None:
                yield Batch(part)
            elif split is not None:
                yield Batch(part, split)
            elif len(packed) + len(part) > max_files:
                if packed:
                    yield Batch(packed)
                packed = part
            else:
                packed.extend(part)
            part, split = [], None
        current = run
        part.append(target)
        if max_files is not None and len(part) > max_files:
            if split is None:
                if packed:
                    yield Batch(packed)
                    packed = []
                splits += 1
                split = splits
            yield Batch(part[:max_files], split)
            part = part[max_files:]
    if part:
        if split is not None:
            yield Batch(part, split)
        elif max_files is not None and len(packed) + len(part) <= max_files:
            packed.extend(part)
        else:
            if packed:
                yield Batch(packed)
            packed = part
    if packed:
        yield Batch(packed)


def read_target(target: str | FileError, *, limits: ReadLimits,
                passwords: Sequence[bytes] = (), keep_key_pem: bool = False) -> FileResult:
    """Read one target of :func:`collect_targets`; a walk failure is already its result.

    A file the walk listed may be gone when its turn comes (certbot relinks ``live/`` with
    ``rm x; ln -s ...``). It is looked at once more: there again, it is read again (whatever
    that gives is its result); gone, it is skipped as :data:`VANISHED`, information rather than
    an error, so the run is not UNKNOWN for it. A file named on the command line
    (:class:`GivenPath`) that is not there stays an error."""
    if isinstance(target, FileError):
        return FileResult(path=target.path, error=target)
    result = read_file(target, limits=limits, passwords=passwords, keep_key_pem=keep_key_pem)
    if result.error is None or result.error.code not in _TRANSIENT:
        return result
    if os.path.lexists(target):
        return read_file(target, limits=limits, passwords=passwords, keep_key_pem=keep_key_pem)
    if isinstance(target, GivenPath):
        return result
    return FileResult(path=str(target),
                      skipped=FileSkip(path=str(target), code=VANISHED,
                                       message="removed while the scan ran"))


def scan_paths(
    paths: Sequence[Path],
    *,
    limits: ReadLimits,
    passwords: Sequence[bytes] = (),
    progress: ProgressCallback | None = None,
    keep_key_pem: bool = False,
) -> list[FileResult]:
    """Read every file under ``paths`` (files or directories), in order, one result each."""
    return list(iter_scan(paths, limits=limits, passwords=passwords, progress=progress,
                          keep_key_pem=keep_key_pem))
