"""The policy core: the provider's certificate-service terms as pure, explainable rules.

Nothing in this package reads the clock, touches files (except the ledger and the catalogue
loader, which are the package's own adapters) or imports ``agent``/``vault``.
"""

from .category import Category
from .decisions import Action, Decision, Finding, Severity
from .errors import (
    ApplicationRefusedError,
    CatalogueError,
    ContractStateError,
    LedgerError,
    PolicyError,
    UnknownContractError,
    UnknownItemError,
)
from .evaluate import evaluate_contract
from .facts import CertificateFacts
from .intake import Binding, Intake, IntakeReceipt, Observation
from .ledger import JournalEntry, Ledger
from .state import ContractState, ContractStatus
from .tiers import Tier, admits, classify, validity_period

__all__ = [
    "Action",
    "ApplicationRefusedError",
    "Binding",
    "CatalogueError",
    "Category",
    "CertificateFacts",
    "ContractState",
    "ContractStateError",
    "ContractStatus",
    "Decision",
    "Finding",
    "Intake",
    "IntakeReceipt",
    "JournalEntry",
    "Ledger",
    "LedgerError",
    "Observation",
    "PolicyError",
    "Severity",
    "Tier",
    "UnknownContractError",
    "UnknownItemError",
    "admits",
    "classify",
    "evaluate_contract",
    "validity_period",
]
