"""The policy core: the provider's certificate-service terms as pure, explainable rules.

Nothing in this package reads the clock, touches files (except the ledger and the catalogue
loader, which are the package's own adapters) or imports ``agent``/``vault``.
"""

# The names below are imported when first used (PEP 562), not with the package: every
# ``certescrow`` command imports some module of this package, and importing all of them
# (the reader, the ledger, the live-chain client ...) cost every command, ``policy actions``
# included, a large share of its start.
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_EXPORTS: dict[str, str] = {
    "Catalogue": ".catalogue",
    "CertificateAuthority": ".catalogue",
    "Item": ".catalogue",
    "load_catalogue": ".catalogue",
    "Category": ".category",
    "CertificateClassification": ".classification",
    "classify_certificate": ".classification",
    "Action": ".decisions",
    "Decision": ".decisions",
    "Finding": ".decisions",
    "Severity": ".decisions",
    "ApplicationRefusedError": ".errors",
    "CatalogueError": ".errors",
    "ContractStateError": ".errors",
    "LedgerError": ".errors",
    "PolicyError": ".errors",
    "UnknownContractError": ".errors",
    "UnknownItemError": ".errors",
    "evaluate_contract": ".evaluate",
    "CertificateFacts": ".facts",
    "unevaluable": ".facts",
    "ContractOutlook": ".forecast",
    "MaxValiditySchedule": ".forecast",
    "TierOutlook": ".forecast",
    "contract_outlook": ".forecast",
    "embedded_schedule": ".forecast",
    "tier_outlooks": ".forecast",
    "Binding": ".intake",
    "Intake": ".intake",
    "IntakeReceipt": ".intake",
    "Observation": ".intake",
    "JournalEntry": ".ledger",
    "Ledger": ".ledger",
    "ItemMatch": ".matchers",
    "match_item": ".matchers",
    "default_ledger_path": ".paths",
    "Period": ".periods",
    "PeriodRule": ".periods",
    "Answer": ".rules.art6",
    "art6_3_cannot_renew": ".rules.art6",
    "renewal_decisions": ".rules.art6",
    "Application": ".rules.art7",
    "application_refusals": ".rules.art7",
    "PolicySettings": ".settings",
    "PriceList": ".settings",
    "ContractState": ".state",
    "ContractStatus": ".state",
    "Tier": ".tiers",
    "admits": ".tiers",
    "classify": ".tiers",
    "validity_period": ".tiers",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


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
