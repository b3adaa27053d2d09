"""Trying passwords on a file in a child process that cannot run for long.

A PKCS#12 or an encrypted PKCS#8 key names its own key-derivation work (iteration counts, scrypt
costs), and OpenSSL runs it as written, for every password tried: a 563-byte PKCS#12 asking for
2**31 - 1 MAC rounds held a scan, the daemon and ``vault import`` for a quarter of an hour
(review 12). Reading the counts first does not bound it: a key bag inside an encrypted part
shows its count only once decrypted, and OpenSSL reads encodings (leading zero length octets,
negative counts kept in an ``int``) a reader of our own would have to match byte for byte.

So the passwords are tried where the time they take is bounded by the kernel: a forked child
whose CPU time is capped (``RLIMIT_CPU``: the kernel ends it) and which the parent kills at a
wall-clock deadline too (a child that waits on a lock another thread of the parent held when it
forked uses no CPU). The child answers which password opens the file, as a few ASCII bytes;
the parent then opens it with that one password, so nothing but an index crosses back. An
honest file opens in well under a second (OpenSSL's 2,048 rounds: a millisecond; 1,000,000
PBKDF2 rounds: 0.4 s).

A process that runs other threads (the daemon: observers, the ledger writer) is not forked:
the child would hold forever any lock one of them held at that instant (OpenSSL's, taken by a
hash on the ledger writer's thread), wait out the deadline and call an honest file too costly.
Its child comes from multiprocessing's fork server instead (a fresh, single-threaded
interpreter), so there ``open_with`` must pickle: a module-level function, or a
``functools.partial`` of one (cryptography's loaders are Rust functions, which do not pickle:
wrap them). The file's bytes and the passwords reach that child through a pipe, never a file.
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import select
import signal
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection

from .nocore import forbid_core_dumps

__all__ = ["CPU_SECONDS", "Probe", "TooCostlyError", "first_that_opens", "too_costly"]

CPU_SECONDS = 3
"""CPU time the child may spend trying every password on one file."""
WALL_SECONDS = 15.0
"""Its deadline in real time (a loaded machine stretches the CPU seconds)."""


class TooCostlyError(Exception):
    """Trying the passwords took more than :data:`CPU_SECONDS` of CPU (or the deadline)."""


def too_costly(what: str) -> str:
    """What the agent and the vault say of such a file (``what``: the file or its part)."""
    return (f"{what} could not be opened within {CPU_SECONDS} s of CPU: it asks for more "
            "key-derivation work (iteration counts) than any honest file (OpenSSL writes "
            "2,048); not opened")


@dataclass(frozen=True, slots=True)
class Probe:
    """What trying the passwords found: the index of the first that opens the file (``None``:
    none), whether any failure was not about the password (the structure is damaged), and
    whether the library does not support what the file uses."""

    opened: int | None
    damaged: bool = False
    unsupported: bool = False


def _try(open_with: Callable[[bytes | None], object], candidates: Sequence[bytes | None],
         unsupported: tuple[type[BaseException], ...]) -> bytes:
    """The child's work, answered as ``b"<index>"``, ``b"-1 <damaged 0|1>"`` or ``b"u"``."""
    damaged = False
    for index, password in enumerate(candidates):
        try:
            open_with(password)
        except unsupported:
            return b"u"
        except Exception as exc:  # wrong password and damaged data look alike
            text = str(exc).lower()
            damaged = damaged or ("password" not in text and "mac" not in text)
            continue
        return str(index).encode()
    return b"-1 1" if damaged else b"-1 0"


def first_that_opens(open_with: Callable[[bytes | None], object],
                     candidates: Sequence[bytes | None], *,
                     unsupported: tuple[type[BaseException], ...] = ()) -> Probe:
    """Which of ``candidates`` ``open_with`` accepts, tried in a bounded child. Raises
    :class:`TooCostlyError` when the child ran out of time or was killed for it. With other
    threads running, ``open_with`` must pickle (see the module's docstring)."""
    if threading.active_count() > 1:
        answer = _from_fork_server(open_with, candidates, unsupported)
    else:
        answer = _from_fork(open_with, candidates, unsupported)
    if answer == b"u":
        return Probe(opened=None, unsupported=True)
    if answer.startswith(b"-1 "):
        return Probe(opened=None, damaged=answer.endswith(b"1"))
    if answer.isdigit() and int(answer) < len(candidates):
        return Probe(opened=int(answer))
    raise TooCostlyError  # ended by the CPU limit (SIGXCPU), or nothing sensible said


def _bounded_try(open_with: Callable[[bytes | None], object],
                 candidates: Sequence[bytes | None],
                 unsupported: tuple[type[BaseException], ...]) -> bytes:
    """The child's work, under its limits."""
    _no_core()
    try:
        resource.setrlimit(resource.RLIMIT_CPU, (CPU_SECONDS, CPU_SECONDS + 1))
    except (OSError, ValueError):
        pass  # a sandbox that denies setrlimit (systemd's ~@resources): the deadline
        # alone bounds the child then
    # The library's warnings are the caller's to record when it opens the file itself;
    # here one must not turn into an exception (a filter of "error") and a failure.
    warnings.simplefilter("ignore")
    return _try(open_with, candidates, unsupported)


def _from_fork(open_with: Callable[[bytes | None], object], candidates: Sequence[bytes | None],
               unsupported: tuple[type[BaseException], ...]) -> bytes:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no return, no cleanup of the parent's objects
        answer = b"!"
        try:
            os.close(read_end)
            answer = _bounded_try(open_with, candidates, unsupported)
        finally:
            try:
                os.write(write_end, answer)
            finally:
                os._exit(0)
    os.close(write_end)
    try:
        return _answer(read_end, pid)
    finally:
        os.close(read_end)
        _reap(pid)


def _served_child(open_with: Callable[[bytes | None], object],
                  candidates: Sequence[bytes | None],
                  unsupported: tuple[type[BaseException], ...], answer_to: Connection) -> None:
    """The fork server's child: the same work, answered on the pipe it was handed."""
    answer = b"!"
    try:
        answer = _bounded_try(open_with, candidates, unsupported)
    finally:
        try:
            answer_to.send_bytes(answer)
        finally:
            os._exit(0)


def _from_fork_server(open_with: Callable[[bytes | None], object],
                      candidates: Sequence[bytes | None],
                      unsupported: tuple[type[BaseException], ...]) -> bytes:
    context = multiprocessing.get_context("forkserver")
    reader, writer = context.Pipe(duplex=False)
    try:
        process = context.Process(target=_served_child, daemon=True,
                                  args=(open_with, candidates, unsupported, writer))
        process.start()
    finally:
        writer.close()
    answered = False
    try:
        if not reader.poll(WALL_SECONDS):
            raise TooCostlyError
        answered = True
        try:
            return reader.recv_bytes(64)
        except (EOFError, OSError):  # ended without answering (SIGKILL at the CPU limit)
            return b""
    finally:
        reader.close()
        # The fork server, not this process, reaps the child: a kill after it did could reach
        # another process given the same pid. One that answered (or ended) is let exit; only
        # one still running at the deadline is killed, and it cannot be reaped meanwhile.
        if answered:
            process.join(WALL_SECONDS)
        if process.exitcode is None:
            process.kill()
            process.join()
        process.close()


def _no_core() -> None:
    """The child is a copy of its parent: the daemon's vault key, the configured passwords,
    keys read so far. SIGXCPU's default action dumps core (a hostile file put the vault key on
    disk, the second re-review): ignored, so the hard limit's SIGKILL ends the child; and no
    core, whatever else ends it (a parent started by ``certescrow`` forbade them already; a
    library caller may not have)."""
    signal.signal(signal.SIGXCPU, signal.SIG_IGN)
    forbid_core_dumps()


def _answer(fd: int, pid: int) -> bytes:
    deadline = time.monotonic() + WALL_SECONDS
    chunks: list[bytes] = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            os.kill(pid, signal.SIGKILL)
            raise TooCostlyError
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        chunk = os.read(fd, 64)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        if sum(map(len, chunks)) > 64:
            return b""


def _reap(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)  # done already, or to be stopped: either way, gone
    except ProcessLookupError:
        pass
    while True:
        try:
            os.waitpid(pid, 0)
            return
        except InterruptedError:
            continue
        except ChildProcessError:
            return
