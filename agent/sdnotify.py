"""sd_notify(3) over ``$NOTIFY_SOCKET``: READY, STATUS, WATCHDOG, RELOADING, STOPPING.

Twenty lines of protocol (one AF_UNIX datagram of ``KEY=value`` lines) do not justify a
dependency. Without ``$NOTIFY_SOCKET`` (not under systemd, or a test) every call does nothing.
A socket path starting with ``@`` is in the abstract namespace (leading NUL byte).
"""

from __future__ import annotations

import os
import socket
import time

__all__ = ["Notifier", "watchdog_interval_s"]


def watchdog_interval_s(environ: dict[str, str] | None = None) -> float | None:
    """How often to send WATCHDOG=1: half of ``$WATCHDOG_USEC`` (sd_watchdog_enabled(3)
    recommends pinging at half the timeout), or ``None`` when the watchdog is off or meant for
    another process (``$WATCHDOG_PID``)."""
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec:
        return None
    if pid and pid != str(os.getpid()):
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 2_000_000 if value > 0 else None


class Notifier:
    """Sends notifications to the service manager; failures to send are never fatal (systemd
    restarting us because a status line did not go out would be worse than the missing line)."""

    def __init__(self, address: str | None = None) -> None:
        address = address if address is not None else os.environ.get("NOTIFY_SOCKET", "")
        self.address = address or None
        self._socket: socket.socket | None = None
        if self.address:
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @property
    def enabled(self) -> bool:
        return self._socket is not None

    def notify(self, *lines: str) -> bool:
        if self._socket is None or self.address is None:
            return False
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            self._socket.sendto("\n".join(lines).encode("utf-8"), target)
        except OSError:
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        lines = ["READY=1"]
        if status:
            lines.append(f"STATUS={status}")
        return self.notify(*lines)

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={_one_line(text)}")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def reloading(self) -> bool:
        # Type=notify-reload (systemd 253+) wants MONOTONIC_USEC with RELOADING=1; older
        # managers ignore the extra field.
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def _one_line(text: str) -> str:
    return text.replace("\n", " ")
