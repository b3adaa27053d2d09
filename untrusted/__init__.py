"""Attacker-controlled text, made safe for each output.

A package of its own, below the three others: the agent, the policy commands and the vault's
command line all print certificate names and file names, and each must escape them the same way.
``policy`` may import neither ``agent`` nor ``vault`` and ``vault`` knows nothing of the other
two, so the escapes live here, importing nothing but the standard library
(tests/test_architecture.py holds it to that).
"""
