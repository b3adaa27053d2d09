"""What the daemon has already read: path -> (stat identity, result).

A store of 100,000 certificates must not be parsed again because one file changed. A file whose
``(st_dev, st_ino, st_size, st_mtime_ns, st_ctime_ns)`` is the one recorded when it was read is
taken as unchanged; anything else (a rewrite, a rename over it, a symlink retargeted to another
file, a ``chmod`` or ``chown`` — a key turned world-readable is a new finding) changes at least
one of the five. The stat follows symlinks: certbot's ``live/x/cert.pem`` is a
link, and what matters is the file it points to now.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

__all__ = ["ROOT_BOUND_ERRORS", "FileIndex", "KindCount", "Problem", "StatKey",
           "is_root_bound", "parent_of", "stat_key", "worst_said_into"]

ROOT_BOUND_ERRORS = frozenset({"link-outside-root"})
"""Error codes whose answer depends on where the store's root resolves now, not only on the
file: a root ``link -> d1`` retargeted to ``d2`` leaves each file's stat identity as it was, so
such an indexed error is read again at every full scan (a start, a resync, a reload) instead of
being kept until the file changes."""


def is_root_bound(result: object) -> bool:
    """Whether ``result`` (a reading result; anything with an ``error``) is an error of
    :data:`ROOT_BOUND_ERRORS`."""
    error = getattr(result, "error", None)
    return error is not None and getattr(error, "code", None) in ROOT_BOUND_ERRORS

StatKey = tuple[int, int, int, int, int]
"""``(st_dev, st_ino, st_size, st_mtime_ns, st_ctime_ns)``."""

Problem = tuple[int, str, str, str, str, str]
"""What the daemon logged of a file when it read it, one kind at a time: ``(position, sha256,
event, code, clause, severity)`` of a certificate's warning (:func:`agent.findinglog.
warnings_of`), or ``(-1, "", "finding", code, clause, severity)`` of a finding on the file
itself (a 0644 private key). A persistent index keeps them, so that a restart that reads
nothing again can still say what is wrong (agent/readindex.py)."""

KindCount = tuple[str, str, str, int, int, int, str]
"""``(event, code, clause, certificates, critical, files, example)``: one kind of warning
counted over many certificates (by the first scan, or from a read index), as
:meth:`agent.findinglog.FindingLog.log_kinds` logs it."""

R = TypeVar("R")


def worst_said_into(out: dict[str, dict[int, str]], path: str,
                    said: Iterable[tuple[int, str, str, str]],
                    admits: Callable[[str, str], bool] | None = None) -> None:
    """Add to ``out`` the worst severity per position of ``said``, a file's ``(position,
    event, code, severity)``, among the kinds ``admits`` (all when ``None``; see
    :meth:`FileIndex.worst_said`)."""
    by_position: dict[int, str] | None = None
    for position, event, code, severity in said:
        if admits is not None and not admits(event, code):
            continue
        if by_position is None:
            by_position = out.setdefault(path, {})
        if by_position.get(position) != "critical":
            by_position[position] = severity


def stat_key(path: Path | str, *, follow: bool = True) -> StatKey | None:
    """The identity of what ``path`` names now, ``None`` if nothing is there (``follow``:
    through a link; else the link itself)."""
    try:
        st = os.stat(path, follow_symlinks=follow)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def parent_of(path: str) -> str:
    """``os.path.dirname(path)``, without its function call for the usual ``/dir/name``
    (an index of 100,000 files asks it for each)."""
    head, _, _ = path.rpartition("/")
    if head and not head.endswith("/"):
        return head
    return os.path.dirname(path)


@dataclass(frozen=True, slots=True)
class _Entry(Generic[R]):
    key: StatKey | None
    result: R
    target: str


class FileIndex(Generic[R]):
    """The results of reading, by path, with the stat identity each was read at.

    ``target`` is the file a path resolved to (for a link, the file in ``archive/``), so an
    event on the target can be traced back to the store paths that show it.
    """

    def __init__(self) -> None:
        self._entries: dict[str, _Entry[R]] = {}
        self._by_target: dict[str, set[str]] = {}
        self._by_dir: dict[str, set[str]] = {}
        """Direct children per directory, so ``paths_under`` visits directories, not files."""
        self._said: dict[str, tuple[Problem, ...]] = {}
        """Path -> what it said when read (:meth:`set_problems`), for the files that said
        something."""

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, path: object) -> bool:
        return str(path) in self._entries

    def unchanged(self, path: Path | str, key: StatKey | None) -> bool:
        """Whether ``path`` was read at exactly this identity (so reading it again is waste)."""
        entry = self._entries.get(str(path))
        return entry is not None and key is not None and entry.key == key

    def unchanged_now(self, path: str) -> bool:
        """Whether ``path`` is indexed and what it names now has the identity it was read at:
        :meth:`unchanged` with :func:`stat_key`, the stat made only for an indexed path."""
        entry = self._entries.get(path)
        return entry is not None and entry.key is not None and entry.key == stat_key(path)

    def changed_among(self, paths: Iterable[str]) -> list[str]:
        """Those of ``paths`` that are not :meth:`unchanged_now` (not indexed, or changed)."""
        return [path for path in paths if not self.unchanged_now(path)]

    def get(self, path: Path | str) -> R | None:
        entry = self._entries.get(str(path))
        return None if entry is None else entry.result

    def key_of(self, path: Path | str) -> StatKey | None:
        entry = self._entries.get(str(path))
        return None if entry is None else entry.key

    def put(self, path: Path | str, key: StatKey | None, result: R,
            target: Path | str | None = None) -> None:
        name = str(path)
        self.remove(name)
        resolved = str(target) if target is not None else name
        self._entries[name] = _Entry(key, result, resolved)
        self._place(name, resolved)

    def set_problems(self, path: str, problems: tuple[Problem, ...]) -> None:
        """What was logged of the file just put at ``path`` (a persistent index keeps it on
        disk; this one as long as the process, as it keeps the result)."""
        if problems:
            self._said[path] = problems
        else:
            self._said.pop(path, None)

    def worst_said(self, admits: Callable[[str, str], bool]) -> dict[str, dict[int, str]]:
        """Path -> position (-1: the file's own finding) -> the worst severity (``warning`` or
        ``critical``) of what the file said when it was last read, of the kinds ``(event,
        code)`` that ``admits``; files that said none are left out (most files)."""
        out: dict[str, dict[int, str]] = {}
        for path, problems in self._said.items():
            worst_said_into(out, path, ((position, event, code, severity)
                                        for position, _, event, code, _, severity in problems),
                            admits)
        return out

    def remove(self, path: Path | str) -> R | None:
        name = str(path)
        self._said.pop(name, None)
        entry = self._entries.pop(name, None)
        if entry is None:
            return None
        self._unplace(name, entry.target)
        return entry.result

    def _place(self, name: str, target: str) -> None:
        """Enter ``name`` among its directory's children (and its link target's names)."""
        parent = parent_of(name)
        siblings = self._by_dir.get(parent)
        if siblings is None:
            self._by_dir[parent] = siblings = set()
        siblings.add(name)
        if target != name:
            self._by_target.setdefault(target, set()).add(name)

    def _unplace(self, name: str, target: str) -> None:
        parent = parent_of(name)
        siblings = self._by_dir.get(parent)
        if siblings is not None:
            siblings.discard(name)
            if not siblings:
                del self._by_dir[parent]
        if target != name:
            names = self._by_target.get(target)
            if names is not None:
                names.discard(name)
                if not names:
                    del self._by_target[target]

    def directories(self) -> list[str]:
        """The directories that hold indexed paths."""
        return list(self._by_dir)

    def names_in(self, directory: str) -> frozenset[str]:
        """The indexed paths directly in ``directory``."""
        return frozenset(self._by_dir.get(directory, ()))

    def linked_from(self, target: Path | str) -> tuple[str, ...]:
        """Indexed paths that resolved to ``target`` when they were read."""
        return tuple(sorted(self._by_target.get(str(target), ())))

    def paths(self) -> Iterator[str]:
        return iter(list(self._entries))

    def root_bound(self) -> list[str]:
        """The paths whose indexed result is an error of :data:`ROOT_BOUND_ERRORS`."""
        return [path for path, entry in self._entries.items() if is_root_bound(entry.result)]

    def paths_under(self, directory: Path | str) -> tuple[str, ...]:
        """Indexed paths anywhere below ``directory``, sorted."""
        top = str(directory).rstrip("/")
        prefix = top + "/"
        found: list[str] = []
        for parent, names in self._by_dir.items():
            if parent == top or parent.startswith(prefix):
                found.extend(names)
        return tuple(sorted(found))
