"""The policy core: the provider's certificate-service terms as pure, explainable rules.

Nothing in this package reads the clock, touches files (except the ledger and the catalogue
loader, which are the package's own adapters) or imports ``agent``/``vault``.
"""

from .catalogue import Catalogue, CertificateAuthority, Item, load_catalogue
from .category import Category
from .classification import CertificateClassification, classify_certificate
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
from .facts import CertificateFacts, unevaluable
from .forecast import (
    ContractOutlook,
    MaxValiditySchedule,
    TierOutlook,
    contract_outlook,
    embedded_schedule,
    tier_outlooks,
)
from .intake import Binding, Intake, IntakeReceipt, Observation
from .ledger import JournalEntry, Ledger
from .matchers import ItemMatch, match_item
from .paths import default_ledger_path
from .periods import Period, PeriodRule
from .rules.art6 import Answer, art6_3_cannot_renew, renewal_decisions
from .rules.art7 import Application, application_refusals
from .settings import PolicySettings, PriceList
from .state import ContractState, ContractStatus
from .tiers import Tier, admits, classify, validity_period

__all__ = [
    "Action",
    "Answer",
    "Application",
    "ApplicationRefusedError",
    "Binding",
    "Catalogue",
    "CatalogueError",
    "Category",
    "CertificateAuthority",
    "CertificateClassification",
    "CertificateFacts",
    "ContractOutlook",
    "ContractState",
    "ContractStateError",
    "ContractStatus",
    "Decision",
    "Finding",
    "Intake",
    "IntakeReceipt",
    "Item",
    "ItemMatch",
    "JournalEntry",
    "Ledger",
    "LedgerError",
    "MaxValiditySchedule",
    "Observation",
    "Period",
    "PeriodRule",
    "PolicyError",
    "PolicySettings",
    "PriceList",
    "Severity",
    "Tier",
    "TierOutlook",
    "UnknownContractError",
    "UnknownItemError",
    "admits",
    "application_refusals",
    "art6_3_cannot_renew",
    "classify",
    "classify_certificate",
    "contract_outlook",
    "default_ledger_path",
    "embedded_schedule",
    "evaluate_contract",
    "load_catalogue",
    "match_item",
    "renewal_decisions",
    "tier_outlooks",
    "unevaluable",
    "validity_period",
]
