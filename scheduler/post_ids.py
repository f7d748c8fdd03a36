"""How posts are named: the plan item's id, and ``ITEM@ACCOUNT`` for each post of an item
that names several accounts (docs/content-plan.md#one-item-many-accounts)."""

from __future__ import annotations

__all__ = ["member_key", "split_ref"]


def member_key(item_id: str, account: str) -> str:
    """The id of the post an item makes for ``account`` when it names several accounts."""
    return f"{item_id}@{account}"


def split_ref(ref: str) -> tuple[str, str] | None:
    """``("riga-001", "riga_x")`` for ``riga-001@riga_x``; None when ``ref`` has no ``@``
    (an account name never holds one, so the last ``@`` separates them)."""
    item, sep, account = ref.rpartition("@")
    return (item, account) if sep and item and account else None
