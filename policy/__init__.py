"""The policy core: the provider's certificate-service terms as pure, explainable rules.

Nothing in this package reads the clock, touches files (except the ledger and the catalogue
loader, which are the package's own adapters) or imports ``agent``/``vault``.

The package re-exports nothing: each module is imported by its own name (``policy.classification``,
``policy.ledger``), so that a command pays only for what it uses -- importing every module here
cost ``certescrow scan`` 50 ms of its start, a quarter of it, for the ledger, the state machine
and the forecast it never runs.
"""
