"""Attacker-controlled input, made safe: text for each output (``text``), and small files
whose path someone else chose, read without blocking or exhausting memory (``smallfile``).

A package of its own, below the three others: the agent, the policy commands and the vault's
command line all print certificate names and file names, and each must escape them the same way;
the policy reads its catalogue and the vault its key files with the same traps in the way.
``policy`` may import neither ``agent`` nor ``vault`` and ``vault`` knows nothing of the other
two, so both live here, importing nothing but the standard library
(tests/test_architecture.py holds it to that).
"""
