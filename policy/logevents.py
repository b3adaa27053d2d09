"""The policy service's log records in the agent's shape: an event name machines filter on
(``client-refused``, ``renewed``), a sentence for people, and fields.

``policy`` may import nothing of ``agent``, so the service logs through the standard library
and hands the event and its fields as a record's ``extra``; ``policy serve`` (the shell, in
``agent/fleet_cli.py``) routes the service's logger through the agent's formatter
(``agent/logs.py``), which reads them there. Both services' lines then have one form: the
journald ``<N>`` prefix, ``level event: message key=value``, or one JSON object a line; and
attacker-controlled text in a message or a field (a host name from a certificate, a path from
a request line) is escaped by that formatter, not here.
"""

from __future__ import annotations

from typing import Any

__all__ = ["event"]


def event(name: str, **fields: Any) -> dict[str, Any]:
    """``extra=event("client-refused", host=…)``: what the formatter reads of a record."""
    return {"event": name, "fields": fields}
