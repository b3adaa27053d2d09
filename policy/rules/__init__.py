"""One module per article of the terms. Every rule is a pure function of facts and ``at``.

A breach or a due step is a :class:`~policy.decisions.Decision` citing its clause, never an
exception; nothing here reads the clock, touches a file or imports a crypto library.
"""

from __future__ import annotations

__all__: list[str] = []
