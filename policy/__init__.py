"""The policy core: the provider's certificate-service terms as pure, explainable rules.

Nothing in this package reads the clock, touches files (except the ledger and the catalogue
loader, which are the package's own adapters) or imports ``agent``/``vault``.
"""

from .category import Category
from .decisions import Action, Decision, Finding, Severity
from .errors import (
    CatalogueError,
    ContractStateError,
    LedgerError,
    PolicyError,
    UnknownContractError,
    UnknownItemError,
)
from .facts import CertificateFacts
from .intake import Binding, Intake, IntakeReceipt, Observation
from .tiers import Tier, admits, classify, validity_period

__all__ = [
    "Action",
    "Binding",
    "CatalogueError",
    "Category",
    "CertificateFacts",
    "ContractStateError",
    "Decision",
    "Finding",
    "Intake",
    "IntakeReceipt",
    "LedgerError",
    "Observation",
    "PolicyError",
    "Severity",
    "Tier",
    "UnknownContractError",
    "UnknownItemError",
    "admits",
    "classify",
    "validity_period",
]
