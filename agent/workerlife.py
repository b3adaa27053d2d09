"""Worker processes that end with the process that started them, however it ends.

A pool's workers wait for work on a pipe they also hold the write end of, and write results to
a pipe only the parent reads: when the parent is killed (``kill -9``, or ``kill -TERM``, which
runs no ``finally``) nothing tells them, and they wait forever with parent 1. So each pool makes
a :class:`Tether` before it starts its workers and hands :attr:`Tether.link` to their
initializer, which calls :func:`follow_parent` first thing. How a worker follows its parent
depends on who its parent is:

``fork``
    The worker's parent is the process that made the pool. On Linux the kernel is asked to
    ``SIGKILL`` the worker when its parent dies (``prctl(PR_SET_PDEATHSIG)``); a parent that
    died between the fork and that call is caught by comparing ``os.getppid()`` with the pid
    the parent recorded, and the worker exits at once. The kernel's "parent" is the *thread*
    that forked: :mod:`agent.scanpool` only forks from a process running one thread, so that
    thread's end is the process's end. Elsewhere the signal is not available, and only the
    comparison runs.

``forkserver`` (and ``spawn``)
    A fork server's worker is the fork server's child, and the fork server lives as long as any
    of its workers (they hold its "alive" pipe), so a parent-death signal would wait for the
    workers themselves. Instead the parent keeps the write end of a pipe of its own and the
    worker gets the read end; a thread in the worker blocks reading it, and end of file -- the
    kernel closes the write end however the parent dies -- ends the worker. No race: a parent
    that died before the thread started is an end of file at once. The write end never reaches
    a worker: the pipe is close-on-exec and such workers are not forked from the parent.
    The thread is a bare one (``_thread``), not a :class:`threading.Thread`: it runs no Python
    code but one blocking read and ``os._exit``, so the worker still counts as running one
    thread, which is what lets it record the parser's warnings once per batch
    (:func:`agent.x509facts.recording_warnings`; a per-certificate capture cost the daemon's
    read-ahead workers about a fifth of their time).

``policy serve``'s ``[serve] workers`` are no pool's but the same case as ``fork``: each is a
child of the first process (``subprocess``, from its main thread), told that process's pid on
its command line, and calls :func:`follow_parent` before it reads anything.
"""

from __future__ import annotations

import _thread
import ctypes
import multiprocessing
import os
import signal
import sys
from dataclasses import dataclass
from multiprocessing.connection import Connection

__all__ = ["ParentLink", "Tether", "follow_parent"]

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_ORPHANED_EXIT = 1  # nobody is left to read it


@dataclass(frozen=True, slots=True)
class ParentLink:
    """What a worker needs to follow its parent; crosses to the worker in the initializer's
    arguments (the read end is passed as a file descriptor by :mod:`multiprocessing`)."""

    parent_pid: int
    lifeline: Connection | None
    """The read end of the parent's pipe; ``None``: a forked worker, which asks the kernel."""


class Tether:
    """Made in the parent, with the pool's context, before the workers start; closed after
    they are shut down."""

    def __init__(self, context: multiprocessing.context.BaseContext) -> None:
        self._writer: Connection | None = None
        lifeline: Connection | None = None
        if context.get_start_method() != "fork":
            lifeline, self._writer = multiprocessing.Pipe(duplex=False)
        self.link = ParentLink(parent_pid=os.getpid(), lifeline=lifeline)

    def close(self) -> None:
        """Let go of the workers (a worker still running ends, as if the parent had died)."""
        if self.link.lifeline is not None:
            self.link.lifeline.close()
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def follow_parent(link: ParentLink) -> None:
    """In a worker, first thing in its initializer: end the worker when its parent ends."""
    if link.lifeline is None:
        _signal_on_parent_death()
        if os.getppid() != link.parent_pid:  # it died before the kernel was asked
            os._exit(_ORPHANED_EXIT)
        return
    _thread.start_new_thread(_await_end_of_file, (link.lifeline,))


def _signal_on_parent_death() -> None:
    if not sys.platform.startswith("linux"):
        return
    # Fails only for an invalid signal number (EINVAL): nothing to handle.
    ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _await_end_of_file(lifeline: Connection) -> None:
    # (a bare thread: nothing would report an exception here, so whatever ends the read ends
    # the worker)
    try:
        lifeline.recv_bytes()  # the parent never writes: this returns only at its end
    except (EOFError, OSError):
        pass
    finally:
        os._exit(_ORPHANED_EXIT)
