"""One plan item, many accounts: ``account: [riga_fb, riga_x]`` and per-network ``variants``.

An item that names several accounts becomes one post per account, a *group* sharing the
item's id: each member's id is ``ITEM@ACCOUNT`` (``riga-001@riga_x``), and the item's id
names the whole group. An item with one account stays one post with the item's id, so plans
written before groups import exactly as they did.

``variants`` change some fields for some members: ``variants: {x: {text: ...}, riga_ig:
{media: [...]}}``, keyed by a network (every member on it) or an account (that member; an
account's variant is applied over its network's). In a CSV plan a variant is a column named
``variants.KEY.FIELD`` (``variants.x.text``).

``expand`` is a pure function of one raw item (and the config): it turns the item into the
raw records of its members, each validated as an ordinary item, so a pipeline that validates
a plan in chunks expands each item where it validates it.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from scheduler.config import Config
from scheduler.errors import Problem, excerpt
from scheduler.plan.items import FIELDS, IGNORED_FIELDS, RawItem
from scheduler.plan.post_options import OPTION_FIELDS
from scheduler.post_ids import member_key

#: The fields a variant may change: what a member publishes. The rest (id, accounts, type,
#: time, evergreen, approval) is the item's, shared by every member.
VARIANT_FIELDS = ("text", "media", "media_alt", "link", "tags", *OPTION_FIELDS)
#: Fields every member shares.
SHARED_FIELDS = ("id", "account", "accounts", "type", "at", "evergreen", "approval")
#: Most accounts one item may name.
MAX_ACCOUNTS = 50
#: What separates account names written as text (a CSV cell): ``a|b``, ``a;b``, ``a, b``.
_ACCOUNT_SPLIT = re.compile(r"[;,|\s]+")
#: The prefix of a CSV column that holds a variant's field: ``variants.x.text``.
VARIANT_COLUMN = "variants."

#: ``fail(field, message, hint, line)``.
Fail = Callable[[str, str, str, int], None]


#: The fields of a plain item: an item whose fields are all among them has no variant
#: column and no ``accounts`` or ``variants`` (one set lookup, for the common case).
_PLAIN_FIELDS = (frozenset(FIELDS) | IGNORED_FIELDS) - {"accounts", "variants"}
#: Whether an ``account`` text names several accounts, by text: plans repeat a few names.
_SEVERAL: dict[str, bool] = {}
_SEVERAL_MAX = 4_096


def _names_several(account: str) -> bool:
    found = _SEVERAL.get(account)
    if found is None:
        found = _ACCOUNT_SPLIT.search(account.strip()) is not None
        if len(_SEVERAL) < _SEVERAL_MAX:  # a hostile plan's million names are not kept
            _SEVERAL[account] = found
    return found


def is_group_values(values: Mapping[str, Any]) -> bool:
    """Whether an item may need ``expand``: it names its accounts as a list (or with
    ``accounts``), or has variants. Plain items take the fast path: this runs for every
    item of a plan, several times, so the common case costs two lookups."""
    account = values.get("account")
    if type(account) is str:
        if _names_several(account):
            return True
    elif account is not None:
        return True
    if _PLAIN_FIELDS.issuperset(values):
        return False
    if "accounts" in values or "variants" in values:
        return True
    return any(name.startswith(VARIANT_COLUMN) for name in values)


def account_list(values: Mapping[str, Any]) -> list[str] | None:
    """The account names an item gives (``account`` or ``accounts``; a list, or text split
    on ``|``, ``;``, ``,`` or spaces), as written; None when they cannot be read."""
    value = values.get("accounts")
    if value is None or value == "":
        value = values.get("account")
    if type(value) is str:
        return [part for part in _ACCOUNT_SPLIT.split(value.strip()) if part]
    if isinstance(value, list) and all(type(v) is str for v in value):
        return [v.strip() for v in value if v.strip()]
    return None


def post_keys(raw: RawItem) -> list[tuple[str, str]]:
    """(post id, account name) of each post a readable group item makes, as ``expand``
    names them, without judging anything else; [] for a plain item or one that cannot be
    read. Cheap: what an import looks up before it validates."""
    item_id = raw.values.get("id")
    if type(item_id) is not str or not item_id.strip():
        return []
    names = account_list(raw.values)
    if not names or len(names) > MAX_ACCOUNTS:  # invalid: nothing to look up or plan
        return []
    unique = list(dict.fromkeys(names))
    if len(unique) == 1:
        return [(item_id.strip(), unique[0])]
    return [(member_key(item_id.strip(), name), name) for name in unique]


def item_ids(raw: RawItem, key: str) -> list[str]:
    """The ids an item with id ``key`` uses: ``key``, and the id of each of its posts when it
    names several accounts."""
    if not is_group_values(raw.values):
        return [key]
    return [key, *(m for m, _ in post_keys(raw) if m != key)]


def plan_ids(raws: Iterable[RawItem]) -> list[str]:
    """Every item's id, and the id of each post of the items that name several accounts."""
    out = []
    for raw in raws:
        item_id = raw.values.get("id")
        if type(item_id) is str and item_id.strip():
            out += item_ids(raw, item_id.strip())
    return out


@dataclass(slots=True)
class Member:
    """One post of a group item: its raw record, validated as an ordinary item."""

    raw: RawItem
    account: str
    #: Position in the item's account list.
    position: int
    #: The item's id when it names several accounts (the group), None for one account.
    group: str | None
    #: Fields a variant set for this member -> how problems name them (``variants.x.text``).
    fields: dict[str, str]

    def line_of(self, name: str) -> int:
        """The line of field ``name`` (``poll.options``: of ``poll``), the variant's when a
        variant set it."""
        return self.raw.line_of(re.split(r"[.\[]", name, maxsplit=1)[0])

    def field_name(self, name: str | None) -> str | None:
        """How a problem with ``name`` (``text``, ``poll.options``...) names the field: by
        the variant that set it, when one did."""
        if name is None or not self.fields:
            return name
        root = re.split(r"[.\[]", name, maxsplit=1)[0]
        path = self.fields.get(root)
        return name if path is None else path + name[len(root) :]


class _Variant:
    """One variant as written: its fields, the line of its key and of each field."""

    __slots__ = ("fields", "line", "lines")

    def __init__(self, line: int) -> None:
        self.fields: dict[str, Any] = {}
        self.lines: dict[str, int] = {}
        self.line = line


def _variants(raw: RawItem, fail: Fail) -> dict[str, _Variant]:
    """The item's variants by key (lowercase)."""
    out: dict[str, _Variant] = {}
    value = raw.values.get("variants")
    if value is not None and value != "":
        if not isinstance(value, dict):
            fail(
                "variants",
                "variants must be a mapping of networks or accounts to fields",
                "variants: {x: {text: ...}, riga_ig: {media: [...]}}",
                raw.line_of("variants"),
            )
            return {}
        lines = getattr(value, "key_lines", {})
        for key, fields in value.items():
            name = str(key).strip().lower()
            line = lines.get(key, raw.line_of("variants"))
            if fields is None:
                continue
            if not isinstance(fields, dict):
                fail(
                    f"variants.{name}",
                    f"the variant for {excerpt(name)} must be a mapping of fields",
                    "e.g. x: {text: ...}",
                    line,
                )
                continue
            variant = out[name] = _Variant(line)
            variant.fields = dict(fields)
            field_lines = getattr(fields, "key_lines", {})
            variant.lines = {f: field_lines.get(f, line) for f in fields}
    # CSV: one column per variant field, ``variants.KEY.FIELD``; an empty cell sets nothing.
    for column, cell in raw.values.items():
        if not column.startswith(VARIANT_COLUMN) or cell is None or cell == "":
            continue
        key, sep, name = column[len(VARIANT_COLUMN) :].rpartition(".")
        if not sep or not key or not name:
            fail(
                column,
                f"column {excerpt(column)} does not name a variant's field",
                "name it variants.NETWORK.FIELD or variants.ACCOUNT.FIELD: variants.x.text",
                raw.line,
            )
            continue
        variant = out.setdefault(key.strip().lower(), _Variant(raw.line))
        variant.fields[name.strip().lower()] = cell
        variant.lines[name.strip().lower()] = raw.line
    return out


def expand(raw: RawItem, config: Config, problems: list[Problem]) -> list[Member] | None:
    """The members of ``raw``: one per account it names, each with its variants applied.
    None for a plain item (one account as text, no variants: validated as it is). Problems
    of the item's shape (accounts, variants) go to ``problems``; the members of the accounts
    and variant fields that could be read are still returned, so that validating them finds
    every other problem too (an account list that cannot be read at all gives none)."""
    if not is_group_values(raw.values):
        return None
    item_id = raw.values.get("id")
    item_key = item_id.strip() or None if type(item_id) is str else None

    def fail(name: str, message: str, hint: str = "", line: int | None = None) -> None:
        problems.append(
            Problem(
                raw.file,
                raw.line_of(name) if line is None else line,
                name if len(name) <= 60 else excerpt(name, 60)[1:-1],
                message,
                hint,
                unit=raw.unit,
                item=item_key,
            )
        )

    values = raw.values
    given = [n for n in ("account", "accounts") if values.get(n) not in (None, "", [])]
    if len(given) == 2:
        fail("accounts", "give account or accounts, not both", "accounts: [riga_fb, riga_x]")
        return []
    field = given[0] if given else "account"
    names = account_list(values)
    if names is None:
        kind = "a list of account names"
        fail(field, f"{field} must be an account name or {kind}", "account: [riga_fb, riga_x]")
        return []
    if not names:
        fail(field, f"{field} is missing or empty")
        return []
    if len(names) > MAX_ACCOUNTS:
        fail(field, f"{len(names)} accounts; one item may name at most {MAX_ACCOUNTS}")
        return []
    seen: set[str] = set()
    for name in names:
        if name.lower() in seen:
            fail(field, f"account {excerpt(name)} is listed twice")
        seen.add(name.lower())
    accounts = []
    for name in dict.fromkeys(names):
        acc = config.accounts.get(name)
        if acc is None:
            close = difflib.get_close_matches(name, list(config.accounts), n=1)
            fail(
                field,
                f"unknown account {excerpt(name)}",
                f"did you mean {close[0]!r}?"
                if close
                else f"accounts in {config.source}: " + (", ".join(config.accounts) or "none"),
            )
            continue
        accounts.append(acc)
    group = len(names) > 1
    if group and item_key is not None and "@" in item_key:
        fail(
            "id",
            "the id of an item with several accounts may not contain '@'",
            "its posts are named ITEM@ACCOUNT",
        )
    variants = _variants(raw, fail)
    by_account = {acc.name.lower(): acc for acc in accounts}
    by_platform: dict[str, list[str]] = {}
    for acc in accounts:
        by_platform.setdefault(acc.platform.lower(), []).append(acc.name)
    for key, variant in variants.items():
        if key not in by_account and key not in by_platform:
            known = ", ".join(a.name for a in accounts) or "none"
            networks = ", ".join(sorted(by_platform)) or "none"
            fail(
                f"variants.{key}",
                f"a variant for {excerpt(key)}, which is not one of the item's accounts "
                f"({known}) nor their networks ({networks})",
                "add the account to the item's account list, or remove the variant",
                variant.line,
            )
        for name in variant.fields:
            line = variant.lines.get(name, variant.line)
            if name in VARIANT_FIELDS:
                continue
            if name in SHARED_FIELDS:
                fail(
                    f"variants.{key}.{name}",
                    f"{name} cannot change per network: every post of the item shares it",
                    "variants may set " + ", ".join(VARIANT_FIELDS),
                    line,
                )
                continue
            close = difflib.get_close_matches(name, VARIANT_FIELDS, n=1) if len(name) < 40 else []
            fail(
                f"variants.{key}.{excerpt(name, 40)[1:-1]}",
                f"unknown field {excerpt(name)} in a variant",
                f"did you mean {close[0]!r}?"
                if close
                else "variants may set " + ", ".join(VARIANT_FIELDS),
                line,
            )
    base = {
        k: v
        for k, v in values.items()
        if k not in ("variants", "accounts") and not k.startswith(VARIANT_COLUMN)
    }
    members = []
    for position, acc in enumerate(accounts):
        member_values = dict(base)
        member_values["account"] = acc.name
        if group and item_key is not None:  # without an id, validation says so
            member_values["id"] = member_key(item_key, acc.name)
        lines = dict(raw.field_lines or {})
        named: dict[str, str] = {}
        keys = []
        platform = acc.platform.lower()
        # A key that is one of the item's accounts is that account's variant only.
        if platform in variants and platform not in by_account:
            keys.append(platform)
        if acc.name.lower() in variants:
            keys.append(acc.name.lower())  # after the network's: the account's wins
        for key in keys:
            variant = variants[key]
            if "media" in variant.fields and "media_alt" not in variant.fields:
                member_values.pop("media_alt", None)  # the item's alt texts are for its media
            for name, value in variant.fields.items():
                if name not in VARIANT_FIELDS:
                    continue  # reported above
                member_values[name] = value
                lines[name] = variant.lines.get(name, variant.line)
                named[name] = f"variants.{key}.{name}"
        member_raw = RawItem(raw.file, raw.line, raw.unit, member_values, lines, raw.order)
        owner = item_key if group else None
        members.append(Member(member_raw, acc.name, position, owner, named))
    return members
