"""No core dumps of a process that holds secrets.

A core dump is a copy of the process's memory on disk: the vault's master key, the data keys
it unwrapped, the private keys it exported, the passwords it was given. ``vault export --format
p12`` waiting at its password prompt, sent ``SIGSEGV``, left a core holding the master key, the
EC scalar and the PEM (the security review of session 17). So every ``certescrow`` process
(:func:`agent.main.main`, before anything is read) and the bounded child that tries passwords
(:mod:`vault.bounded`) forbid them, in the two ways the kernel offers:

* ``RLIMIT_CORE`` 0, soft and hard (the process cannot raise it again, nor can its children,
  which inherit it across ``exec``): no ``core`` file, whatever ``ulimit -c`` said;
* ``prctl(PR_SET_DUMPABLE, 0)`` on Linux: no core even where ``core_pattern`` pipes it to a
  helper (the kernel ignores ``RLIMIT_CORE`` for a pipe), and no ``ptrace`` attach or
  ``/proc/PID/mem``, ``environ`` or ``fd`` by other processes of the same user (root still
  can). ``exec`` resets it, so a child that runs another program is dumpable again, but keeps
  the core limit.

Both are best effort: where the platform has neither (not Linux, no ``resource``), nothing is
done and nothing fails.
"""

from __future__ import annotations

import sys

__all__ = ["forbid_core_dumps"]

_PR_SET_DUMPABLE = 4  # <linux/prctl.h>


def forbid_core_dumps() -> None:
    """Set ``RLIMIT_CORE`` to 0 (soft and hard) and, on Linux, make the process not dumpable."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not Unix
        pass
    else:
        try:
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        except (OSError, ValueError):  # a sandbox that denies setrlimit (systemd's ~@resources,
            pass  # where the unit's LimitCORE=0 holds instead)
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # pragma: no cover - a libc without prctl
        return
    prctl.restype = ctypes.c_int
    prctl(ctypes.c_int(_PR_SET_DUMPABLE), ctypes.c_ulong(0), ctypes.c_ulong(0),
          ctypes.c_ulong(0), ctypes.c_ulong(0))
