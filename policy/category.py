"""The three item categories (品目区分) of Art.1."""

from __future__ import annotations

import enum

__all__ = ["Category"]


class Category(enum.Enum):
    I = "I"  # noqa: E741 - the terms' own name for the category
    II = "II"
    III = "III"

    @classmethod
    def parse(cls, name: str) -> Category:
        text = name.strip().upper().replace("Ⅲ", "III")
        for category in cls:
            if category.value == text:
                return category
        raise ValueError(f"unknown category {name!r}: expected I, II or III")

    @property
    def provider_issued(self) -> bool:
        """Categories I and II are certificates the provider obtains from DigiCert, Cybertrust or
        GlobalSign; category III is bring-your-own."""
        return self is not Category.III
