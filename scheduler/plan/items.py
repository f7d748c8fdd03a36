"""Plan items: the raw record as read from a file, and the validated item ready to import."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from scheduler.adapter import NO_OPTIONS, MediaMeta, PostOptions
from scheduler.errors import excerpt

#: Fields an item may carry (docs/content-plan.md).
FIELDS = (
    "id",
    "account",
    "type",
    "text",
    "media",
    "media_alt",
    "link",
    "tags",
    "evergreen",
    "at",
    "approval",
    # Per-post options (scheduler.plan.post_options).
    "content_warning",
    "sensitive",
    "visibility",
    "language",
    "reply_to",
    "poll",
    "poll_duration",
    "poll_multiple",
    "first_comment",
    "thread",
    # One item, many accounts (scheduler.plan.groups).
    "accounts",
    "variants",
)
#: Columns/keys that are kept for people and ignored by the importer.
IGNORED_FIELDS = frozenset({"notes", "note", "comment", "comments", "status"})


def unknown_field(name: str) -> tuple[str, str] | None:
    """What to say (message, hint) of a field no item has; None for a known field, an ignored
    one or a writer's note (``_x``, ``#x``)."""
    lowered = name.lower()
    if lowered in FIELDS or lowered in IGNORED_FIELDS or lowered.startswith(("_", "#")):
        return None
    import difflib  # only for a field that is wrong

    close = difflib.get_close_matches(lowered, FIELDS, n=1) if len(lowered) <= 40 else []
    return (
        f"unknown field {excerpt(name)}",
        f"did you mean {close[0]!r}?"
        if close
        else "known fields: " + ", ".join(FIELDS) + " (start a notes field with _ to keep it)",
    )


@dataclass(slots=True)
class RawItem:
    """One record as found in a plan file, before validation, with where each field was."""

    file: str
    line: int  # YAML line of the item, or CSV row (the header is row 1)
    unit: str  # "line" or "row"
    values: dict[str, Any]
    #: field -> line, where the file format tells it (YAML); CSV fields share the row.
    field_lines: dict[str, int] | None = None
    order: int = 0

    def line_of(self, name: str) -> int:
        """The line of field ``name``; of a nested one (``thread[1].media[0]``), the line of
        the mapping or key it names where the file tells it, else of the field it is in."""
        if not self.field_lines:
            return self.line
        line = self.field_lines.get(name)
        if line is not None:
            return line
        base, bracket, rest = name.partition("[")
        line = self.field_lines.get(base, self.line)
        if bracket:
            index, _, key = rest.partition("]")
            value = self.values.get(base)
            if index.isdigit() and isinstance(value, list) and int(index) < len(value):
                part = value[int(index)]
                # A YAML mapping knows its own line and its keys' (scheduler.plan.safeyaml).
                line = getattr(part, "line", line)
                key = key.lstrip(".").partition("[")[0]
                line = getattr(part, "key_lines", {}).get(key, line)
        return line


@dataclass(slots=True)
class PlanItem:
    """A validated plan item: everything needed to create or update its post.

    Treat it as immutable (nothing changes an item once validated). It is not a frozen
    dataclass only because a large import builds one per post, and a frozen dataclass's
    ``__init__`` costs several times more.
    """

    key: str
    account: str
    content_type: str
    text: str
    media: tuple[str, ...]
    link: str | None
    tags: tuple[str, ...]
    evergreen: bool
    #: The fixed publish instant (UTC), or None for a queue item.
    at: datetime | None
    file: str
    line: int
    unit: str
    order: int
    #: The item needs sign-off before it may go out (``approval: required``).
    approval: bool = False
    #: Alt text and focal point per media file, aligned with ``media``; empty when the plan
    #: gives none for any file.
    media_meta: tuple[MediaMeta, ...] = ()
    #: Content warning, visibility, language, reply, poll (``NO_OPTIONS``: none given).
    options: PostOptions = NO_OPTIONS
    #: The item's id when it names several accounts: ``key`` is then ``ITEM@ACCOUNT``, one
    #: post of the group (scheduler.plan.groups). None for an item with one account.
    group: str | None = None
    #: The account's position in the item's account list (0 for one account).
    member: int = 0
    _hash: str | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def source(self) -> str:
        return f"{self.file}:{self.line}" if self.unit == "line" else f"{self.file} row {self.line}"

    def content_hash(self) -> str:
        """A digest of what the plan says about the post; a change means "update it"."""
        cached = self._hash
        if cached is None:
            cached = self._hash = self._digest()
        return cached

    def _digest(self) -> str:
        # Unit separators between fields and list items: unambiguous, and cheaper than JSON.
        parts: tuple[str, ...] = (
            self.account,
            self.content_type,
            self.text,
            "\x1e".join(self.media),
            self.link or "",
            "\x1e".join(self.tags),
            "1" if self.evergreen else "0",
            self.at.isoformat() if self.at else "",
        )
        if self.approval:  # only when set: the items of older plans keep their digests
            parts += ("approval",)
        if self.media_meta:  # likewise
            parts += ("\x1e".join(_digest_part(m) for m in self.media_meta),)
        if self.options is not NO_OPTIONS:  # likewise
            parts += (repr(self.options),)
        return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def meta_record(meta: MediaMeta) -> dict[str, Any]:
    """One file's metadata as stored (the ``media_meta`` column): only the keys given."""
    record: dict[str, Any] = {}
    if meta.alt is not None:
        record["alt"] = meta.alt
    if meta.focus is not None:
        record["focus"] = list(meta.focus)
    return record


def _digest_part(meta: MediaMeta) -> str:
    return f"{meta.alt or ''}\x1d{'' if meta.focus is None else meta.focus}"


def stored_meta(media: list[Any] | tuple[Any, ...], meta: Any) -> tuple[MediaMeta, ...]:
    """The ``media_meta`` column read back, aligned with ``media``; rows written before the
    column existed (NULL), and anything malformed, read as no metadata."""
    if not isinstance(meta, list) or not meta:
        return ()
    out = []
    for index in range(len(media)):
        record = meta[index] if index < len(meta) else None
        if not isinstance(record, dict):
            out.append(MediaMeta())
            continue
        alt = record.get("alt")
        focus = record.get("focus")
        point = None
        if (
            isinstance(focus, list)
            and len(focus) == 2
            and all(isinstance(v, int | float) and not isinstance(v, bool) for v in focus)
        ):
            point = (float(focus[0]), float(focus[1]))
        out.append(MediaMeta(alt if isinstance(alt, str) else None, point))
    return tuple(out)
