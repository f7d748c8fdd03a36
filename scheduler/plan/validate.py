"""Validating plan items: every problem is collected, each naming file, line/row and field."""

from __future__ import annotations

import dataclasses
import difflib
import functools
import re
from collections import Counter
from collections.abc import Callable, Container, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlparse

from scheduler import fetch, media
from scheduler.adapter import NO_OPTIONS, Issue, IssueCode, MediaMeta, PostOptions
from scheduler.config import AccountConfig, Config, MediaSettings
from scheduler.errors import Problem, excerpt
from scheduler.plan.gcpause import gc_paused
from scheduler.plan.groups import Member, expand, is_group_values, item_ids, post_keys
from scheduler.plan.items import FIELDS, IGNORED_FIELDS, PlanItem, RawItem, unknown_field
from scheduler.plan.media_items import media_entries
from scheduler.plan.post_options import OPTION_FIELDS, post_options
from scheduler.timeutil import LocalTimeError, parse_wall_time

#: Checks a validated item against its network's rules: returns the issues found.
NetworkCheck = Callable[[PlanItem, AccountConfig], Sequence[Issue]]

MAX_KEY = 200
MAX_TYPE = 100
_TRUE = {"true", "yes", "y", "1", "on", "x"}
_FALSE = {"false", "no", "n", "0", "off", ""}
_LIST_SPLIT = re.compile(r"[;\n]")
_TAG_SPLIT = re.compile(r"[;,\n\s]+")

#: What a name (id, account, type, tag, link) may not contain: control characters (C0, DEL,
#: C1: tabs and line breaks too), format characters (bidi overrides and isolates, zero-width
#: spaces and joiners, the byte-order mark, soft hyphen...: Unicode category Cf), line and
#: paragraph separators and lone surrogates. They are invisible or reorder what a terminal
#: shows, so two ids that look the same could differ. ``str.isprintable`` clears almost
#: every name at C speed; this is the exact rule for the rest.
_NAME_BAD = re.compile(
    "[\x00-\x1f\x7f-\x9f\xad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e"
    "\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb"
    "\U000110bd\U000110cd\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a"
    "\U000e0001\U000e0020-\U000e007f\ud800-\udfff]"
)
#: What a post's text may not contain: control characters other than tab and line breaks
#: (NUL and ESC among them: a database refuses NUL, a terminal obeys ESC), lone surrogates.
_TEXT_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
#: The longest ``at`` worth parsing (a date, a time with seconds and fraction, an offset).
_MAX_AT = 64


def _kind(value: Any) -> str:
    """How a message names the kind of a value that is not text."""
    if isinstance(value, bool):
        return "yes/no (write text in quotes)"
    if isinstance(value, int | float):
        return "a number (written with a !!int or !!float tag)"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _bad_char(value: str, pattern: re.Pattern[str]) -> str | None:
    """The first character of ``value`` that ``pattern`` refuses, spelled U+XXXX."""
    found = pattern.search(value)
    return None if found is None else f"U+{ord(found.group()):04X}"


class _Checker:
    """Validates one raw item, recording problems against its location."""

    __slots__ = ("failed", "ok", "problems", "raw")

    def __init__(self, raw: RawItem, problems: list[Problem]) -> None:
        self.raw = raw
        self.problems = problems
        self.ok = True
        #: The fields with a problem, by their top-level name (None: the item as a whole).
        self.failed: set[str | None] = set()

    @property
    def item_key(self) -> str | None:
        """The item's id as problems name it (None when it has none)."""
        key = self.raw.values.get("id")
        return key.strip() or None if type(key) is str else None

    def fail(self, name: str | None, message: str, hint: str = "") -> None:
        self.ok = False
        self.failed.add(None if name is None else re.split(r"[.\[]", name, maxsplit=1)[0])
        self.problems.append(
            Problem(
                self.raw.file,
                self.raw.line_of(name) if name else self.raw.line,
                name if name is None or len(name) <= 40 else excerpt(name, 40)[1:-1],
                message,
                hint,
                unit=self.raw.unit,
                item=self.item_key,
            )
        )

    def text(
        self, name: str, *, required: bool, limit: int | None = None, chars: str = "name"
    ) -> str | None:
        """A text field. ``chars``: which characters are refused, those of a "name" (control
        and format characters), of a "text" (controls but tabs and line breaks), or "any"
        (the caller checks the value in a stricter way)."""
        value = self.raw.values.get(name)
        if type(value) is not str:
            if value is None:
                if required:
                    self.fail(name, f"{name} is missing or empty")
                return None
            self.fail(name, f"{name} must be text, got {_kind(value)}", "put the value in quotes")
            return None
        stripped = value.strip()
        if not stripped:
            if required:
                self.fail(name, f"{name} is missing or empty")
            return None
        if limit is not None and len(stripped) > limit:
            self.fail(name, f"{name} is longer than {limit} characters")
            return None
        if chars == "text":
            bad = _bad_char(value, _TEXT_BAD)
            if bad is not None:
                self.fail(
                    name,
                    f"text contains the control character {bad}",
                    "remove it: text may hold tabs and line breaks, no other control characters",
                )
                return None
        elif chars == "name" and not value.isprintable():
            bad = _bad_char(stripped, _NAME_BAD)
            if bad is not None:
                self.fail(name, f"{name} contains the invisible or control character {bad}")
                return None
        return value

    def str_list(self, name: str, split: re.Pattern[str]) -> tuple[str, ...]:
        value = self.raw.values.get(name)
        if value is None or value == "":  # an empty CSV cell: nothing to split
            return ()
        if isinstance(value, str):
            parts = split.split(value)
        elif isinstance(value, list):
            if not all(type(v) is str for v in value):
                self.fail(name, f"{name} must be a list of text values", "quote each value")
                return ()
            parts = value
        else:
            self.fail(name, f"{name} must be a list, got {_kind(value)}")
            return ()
        return tuple(p.strip() for p in parts if p.strip())

    def boolean(self, name: str) -> bool:
        value = self.raw.values.get(name)
        if value is None or value == "" or isinstance(value, bool):  # "": an empty CSV cell
            return bool(value)
        if isinstance(value, list | dict):
            self.fail(name, f"{name} must be yes or no, got {_kind(value)}")
            return False
        text = str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        self.fail(
            name, f"{name} must be yes or no, got {excerpt(value)}", "use true/false or yes/no"
        )
        return False


#: Plain http(s) addresses that urlparse certainly accepts (scheme http/https, a host name
#: netloc, printable ASCII only); anything else takes the full urlparse check.
_PLAIN_URL = re.compile(r"https?://[A-Za-z0-9.-]+(?:[/?#][\x21-\x7e]*)?")


def _check_url(c: _Checker, name: str, value: str) -> bool:
    if _PLAIN_URL.fullmatch(value):
        return True
    try:
        parsed = urlparse(value)
    except ValueError:  # e.g. an unclosed IPv6 bracket: https://[::1
        parsed = None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.netloc:
        c.fail(
            name, f"{excerpt(value)} is not an http(s) URL", "write the full address: https://..."
        )
        return False
    # urlparse takes a space, but an address has none: a network would cut the link there,
    # or refuse the post.
    space = next((ch for ch in value if ch.isspace()), None)
    if space is not None:
        which = "a space" if space == " " else f"the space character U+{ord(space):04X}"
        c.fail(name, f"{excerpt(value)} contains {which}", f"percent-encode it: {quote(space)}")
        return False
    return True


def _media(
    c: _Checker, base: Path, config: Config
) -> tuple[tuple[str, ...], tuple[MediaMeta, ...]]:
    """The item's media: URLs the fetch policy allows, and files under the media roots,
    stored as resolved absolute paths (docs/security.md); and their alt text and focus."""
    values = c.raw.values
    entries, metas = media_entries(values.get("media"), values.get("media_alt"), c.fail, _kind)
    out = [_resolved(c, entry, "media", "", base, config) for entry in entries]
    if None in out:
        return tuple(e for e in out if e is not None), ()  # the item is refused anyway
    return tuple(e for e in out if e is not None), metas


def _resolved(
    c: _Checker, entry: str, name: str, prefix: str, base: Path, config: Config
) -> str | None:
    """One media entry as stored: a URL the fetch policy allows, or a file under the media
    roots as a resolved absolute path; None after recording why not."""
    if media.is_url(entry):
        problem = fetch.url_problem(entry, config.media)
        if problem is not None:
            c.fail(
                name,
                f"{prefix}media URL {fetch.short_url(entry)!r} is refused: {problem}",
                "media must come from public addresses (or [media] allow_hosts)",
            )
            return None
        return entry
    try:
        path = media.locate(entry, base, _roots(config.media, base))
    except media.MediaError as exc:
        c.fail(
            name,
            f"{prefix}media file refused: {exc}",
            "paths are relative to the plan file and must stay under its folder "
            "or a [media] roots folder",
        )
        return None
    return str(path)


def _part_media(c: _Checker, options: PostOptions, base: Path, config: Config) -> PostOptions:
    """The options with each thread part's media resolved as an item's are."""
    if not any(part.media for part in options.thread):
        return options
    parts = []
    for index, part in enumerate(options.thread):
        paths = tuple(
            _resolved(
                c, entry, f"thread[{index}].media[{j}]", f"thread part {index + 2}: ", base, config
            )
            for j, entry in enumerate(part.media)
        )
        parts.append(replace(part, media=tuple(p for p in paths if p is not None)))
    return replace(options, thread=tuple(parts))


@functools.lru_cache(maxsize=64)
def _roots(settings: MediaSettings, base: Path) -> tuple[Path, ...]:
    return media.policy_for(settings, str(base / "plan")).roots


@functools.lru_cache(maxsize=64)
def _plan_dir(file: str) -> Path:
    return Path(file).resolve().parent


_KNOWN_FIELDS = frozenset(FIELDS) | IGNORED_FIELDS


def _unknown_fields(c: _Checker) -> None:
    for name in c.raw.values:
        found = unknown_field(name)
        if found is not None:
            c.fail(name, *found)


def validate_item(
    raw: RawItem,
    config: Config,
    now: datetime,
    problems: list[Problem],
    settled: Container[str] = (),
    checkable: list[tuple[PlanItem, set[str | None]]] | None = None,
) -> PlanItem | None:
    """Turn one raw record into a PlanItem, or None after recording its problems.

    ``checkable``: given, an item refused only for fields its post can do without (a missing
    media file, a bad link or time...) is added to it with those fields left out, and the
    names of the failed fields, so that its network's checks still run on the rest."""
    c = _Checker(raw, problems)
    if not _KNOWN_FIELDS.issuperset(raw.values):
        _unknown_fields(c)
    key = c.text("id", required=True, limit=MAX_KEY)
    # Any character: only a config account's name (letters, digits, _.-) is accepted.
    account_name = c.text("account", required=True, limit=MAX_KEY, chars="any")
    content_type = c.text("type", required=True, limit=MAX_TYPE)
    text = c.text("text", required=True, chars="text")
    account: AccountConfig | None = None
    if account_name is not None:
        account_name = account_name.strip()
        account = config.accounts.get(account_name)
        if account is None:
            close = difflib.get_close_matches(account_name, list(config.accounts), n=1)
            c.fail(
                "account",
                f"unknown account {excerpt(account_name)}",
                f"did you mean {close[0]!r}?"
                if close
                else f"accounts in {config.source}: " + (", ".join(config.accounts) or "none"),
            )
    link = c.text("link", required=False, chars="any")
    if link is not None:
        link = link.strip()
        if _PLAIN_URL.fullmatch(link) is None and _bad_char(link, _NAME_BAD):
            c.fail(
                "link",
                f"link contains the invisible or control character {_bad_char(link, _NAME_BAD)}",
            )
        else:
            _check_url(c, "link", link)
    media, media_meta = (
        _media(c, _plan_dir(raw.file), config)
        if raw.values.get("media") or raw.values.get("media_alt")
        else ((), ())
    )
    if account is not None and account.require_alt and media:
        _require_alt(c, account, media, media_meta)
    options = post_options(raw.values, c.fail, _kind)
    if options.thread:
        options = _part_media(c, options, _plan_dir(raw.file), config)
        if account is not None and account.require_alt:
            for index, part in enumerate(options.thread):
                _require_alt(
                    c, account, part.media, part.media_meta, f"thread[{index}].media", index + 2
                )
    tags = (
        tuple(t.lstrip("#") for t in c.str_list("tags", _TAG_SPLIT) if t.lstrip("#"))
        if raw.values.get("tags") not in (None, "")
        else ()
    )
    for tag in tags:
        if not tag.isprintable() and _bad_char(tag, _NAME_BAD):
            c.fail(
                "tags",
                f"the tag {excerpt(tag)} contains the invisible or control character "
                f"{_bad_char(tag, _NAME_BAD)}",
            )
            break
    evergreen = c.boolean("evergreen")
    approval = _approval(c, raw.values.get("approval"))
    at = _at(c, raw.values.get("at"), account, now, settled)
    if not c.ok or key is None or account_name is None or content_type is None or text is None:
        if (
            checkable is not None
            and account is not None
            and key is not None
            and account_name is not None
            and content_type is not None
            and text is not None
            and c.failed <= _DROPPABLE
        ):
            failed = c.failed
            checkable.append(
                (
                    PlanItem(
                        key.strip(),
                        account_name,
                        content_type.strip().lower(),
                        text.strip("\n").rstrip(),
                        () if failed & {"media", "media_alt"} else media,
                        None if "link" in failed else link,
                        () if "tags" in failed else tags,
                        False,
                        None,
                        raw.file,
                        raw.line,
                        raw.unit,
                        raw.order,
                        False,
                        () if failed & {"media", "media_alt"} else media_meta,
                        NO_OPTIONS if failed & set(OPTION_FIELDS) else options,
                    ),
                    failed,
                )
            )
        return None
    if "\r" in text:  # a line break written the Windows (or old Mac) way is a line break
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    # Positional: a large plan builds one per item, and keywords cost a third more.
    return PlanItem(
        key.strip(),
        account_name,
        content_type.strip().lower(),
        text.strip("\n").rstrip(),
        media,
        link,
        tags,
        evergreen,
        at,
        raw.file,
        raw.line,
        raw.unit,
        raw.order,
        approval,
        media_meta,
        options,
    )


_SLOW_FIELDS = frozenset({"media", "media_alt", *OPTION_FIELDS})


def plain_item(
    raw: RawItem, config: Config, now: datetime, settled: Container[str] = ()
) -> PlanItem | None:
    """``validate_item``'s item for the common item that passes every check: text fields,
    an account of the config, a link, tags and a time, no media or options. None for
    anything else, which ``validate_item`` then checks in full (and says what is wrong): this
    only spares a large plan's good items the general path, it refuses nothing itself. A
    test holds its items equal to ``validate_item``'s over many good and bad values."""
    values = raw.values
    if not _KNOWN_FIELDS.issuperset(values):
        return None
    if not values.keys().isdisjoint(_SLOW_FIELDS) and any(
        values.get(name) not in (None, "") for name in _SLOW_FIELDS
    ):
        return None
    key, account_name, content_type, text = (
        values.get("id"),
        values.get("account"),
        values.get("type"),
        values.get("text"),
    )
    if (
        type(key) is not str
        or type(account_name) is not str
        or type(content_type) is not str
        or type(text) is not str
    ):
        return None
    key, account_name, content_type = key.strip(), account_name.strip(), content_type.strip()
    if (
        not key
        or len(key) > MAX_KEY
        or not key.isprintable()
        or len(account_name) > MAX_KEY
        or not content_type
        or len(content_type) > MAX_TYPE
        or not content_type.isprintable()
        or text.isspace()
        or not text
        or _TEXT_BAD.search(text) is not None
    ):
        return None
    account = config.accounts.get(account_name)
    if account is None:
        return None
    link = values.get("link")
    if link is not None:
        if type(link) is not str:
            return None
        link = link.strip() or None
        if link is not None and _PLAIN_URL.fullmatch(link) is None:
            return None
    tags: tuple[str, ...] = ()
    written = values.get("tags")
    if written is not None and written != "":
        if type(written) is not str:
            return None
        parts = (p.strip() for p in _TAG_SPLIT.split(written))
        tags = tuple(t.lstrip("#") for t in parts if t and t.lstrip("#"))
        if not all(t.isprintable() for t in tags):
            return None
    evergreen = values.get("evergreen")
    if evergreen is None or type(evergreen) is bool:
        evergreen = bool(evergreen)
    elif type(evergreen) is str:
        word = evergreen.strip().lower()
        if word in _TRUE:
            evergreen = True
        elif word in _FALSE:
            evergreen = False
        else:
            return None
    else:
        return None
    approval = values.get("approval")
    if _blank(approval):
        approval = False
    elif type(approval) is str and approval.strip().lower() in ("required", "none"):
        approval = approval.strip().lower() == "required"
    else:
        return None
    written = values.get("at")
    at: datetime | None = None
    if _blank(written):
        if not account.slots:
            return None
    else:
        try:
            at = _read_time(written, account)
        except LocalTimeError:
            return None
        if at < now:  # whether that is a problem depends on ``settled``: the full path asks
            return None
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return PlanItem(
        key,
        account_name,
        content_type.lower(),
        text.strip("\n").rstrip(),
        (),
        link,
        tags,
        evergreen,
        at,
        raw.file,
        raw.line,
        raw.unit,
        raw.order,
        approval,
        (),
        NO_OPTIONS,
    )


#: Fields a post can be checked without, when they have a problem of their own: its
#: network's checks then run on the rest of the item (``validate_item``'s ``checkable``).
_DROPPABLE: frozenset[str | None] = frozenset(
    {"media", "media_alt", "link", "tags", "at", "evergreen", "approval", *OPTION_FIELDS}
)


def _require_alt(
    c: _Checker,
    account: AccountConfig,
    media: tuple[str, ...],
    meta: tuple[MediaMeta, ...],
    name: str = "media",
    part: int | None = None,
) -> None:
    """``require_alt = true``: every media file of the account's posts (and of each thread
    part, ``part`` its number) has alt text."""
    prefix = "" if part is None else f"thread part {part}: "
    for index, path in enumerate(media):
        if index >= len(meta) or not meta[index].alt:
            c.fail(
                name if part is None else f"{name}[{index}]",
                f"{prefix}media {index + 1} ({Path(path).name}) has no alt text, and account "
                f"{account.name!r} requires it",
                'write it as {path: ..., alt: "what the image shows"} (CSV: a media_alt column)',
            )


def _approval(c: _Checker, value: Any) -> bool:
    """``approval: required`` (the post waits for sign-off) or ``none``; blank is none."""
    if _blank(value):
        return False
    text = str(value).strip().lower()
    if text not in ("required", "none"):
        c.fail("approval", f"approval must be required or none, got {excerpt(value)}", "required")
    return text == "required"


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and (not value or value.isspace()))


def _read_time(value: Any, account: AccountConfig) -> datetime:
    """The instant ``at`` names in the account's zone; LocalTimeError says why not."""
    if type(value) is not str:
        raise LocalTimeError(
            f"at must be a date and time written as text, got {_kind(value)}",
            "write it as YYYY-MM-DD HH:MM",
        )
    if len(value) > _MAX_AT:
        raise LocalTimeError(
            f"cannot read {excerpt(value, 40)} as a date and time", "write it as YYYY-MM-DD HH:MM"
        )
    try:
        return parse_wall_time(value, account.tz)
    except OverflowError:  # year 1 or 9999 moved across midnight by its offset
        raise LocalTimeError(
            f"{value.strip()} is out of the range of dates", "write a date between years 2 and 9998"
        ) from None


def planned_time(raw: RawItem, config: Config) -> tuple[AccountConfig, datetime | None] | None:
    """The account and fixed time (None: the account's queue) a raw item asks for, read as
    validation reads them; None when either cannot be read (validation says why)."""
    name = raw.values.get("account")
    account = config.accounts.get(name.strip()) if type(name) is str else None
    if account is None:
        return None
    value = raw.values.get("at")
    if _blank(value):
        return account, None
    try:
        return account, _read_time(value, account)
    except LocalTimeError:
        return None


#: Bits of an item's post number that hold its member's position (``post_number``).
MEMBER_BITS = 6


def post_number(index: int, member: int) -> int:
    """A number for each post of a plan, unique and in plan order: the item's index and the
    member's position in the item's accounts (0 for an item with one account)."""
    return (index << MEMBER_BITS) | member


def planned_times(raw: RawItem, config: Config) -> list[tuple[str, AccountConfig, datetime | None]]:
    """(post id, account, fixed time or None) of each post ``raw`` makes, read as validation
    reads them (``planned_time``, member by member for a group); [] when unreadable."""
    if not is_group_values(raw.values):
        planned = planned_time(raw, config)
        return [] if planned is None else [(raw_key(raw), *planned)]
    out: list[tuple[str, AccountConfig, datetime | None]] = []
    value = raw.values.get("at")
    for key, name in post_keys(raw):
        account = config.accounts.get(name)
        if account is None:
            return []
        if _blank(value):
            out.append((key, account, None))
            continue
        try:
            out.append((key, account, _read_time(value, account)))
        except LocalTimeError:
            return []
    return out


def _at(
    c: _Checker, value: Any, account: AccountConfig | None, now: datetime, settled: Container[str]
) -> datetime | None:
    if _blank(value):
        if account is not None and not account.slots:
            c.fail(
                "at",
                f"no time given and account {account.name!r} has no posting slots",
                f"give the post a time, or add [accounts.{account.name}.slots] to the config",
            )
        return None
    if account is None:
        return None  # the account problem is already reported; the zone is unknown
    try:
        at = _read_time(value, account)
    except LocalTimeError as exc:
        c.fail("at", str(exc), exc.hint)
        return None
    if at < now and c.item_key not in settled:
        c.fail(
            "at",
            f"{value.strip()} ({account.timezone}) is in the past",
            "give a future time, or leave 'at' empty to queue the post",
        )
        return None
    return at


def raw_key(raw: RawItem) -> str:
    """The id of a raw item as validation reads it ("" when it has none)."""
    key = raw.values.get("id")
    return key.strip() if type(key) is str else ""


def duplicate_ids(raws: Sequence[RawItem], keys: Sequence[str] | None = None) -> dict[int, Problem]:
    """Items (by index in ``raws``) whose id an earlier item already uses, with the problem;
    the ids of a group's posts (``ITEM@ACCOUNT``) count as used too. ``keys``: each item's
    ``raw_key``, when already known."""
    found: dict[int, Problem] = {}
    first_seen: dict[str, RawItem] = {}
    for index, raw in enumerate(raws):
        key = keys[index] if keys is not None else raw_key(raw)
        if not key:
            continue
        if is_group_values(raw.values):
            names = item_ids(raw, key)
            clash = next((n for n in names if n in first_seen), None)
            if clash is None:
                first_seen.update(dict.fromkeys(names, raw))
                continue
            key, other = clash, first_seen[clash]
        else:
            seen = first_seen.get(key)
            if seen is None:
                first_seen[key] = raw
                continue
            other = seen
        found[index] = Problem(
            raw.file,
            raw.line_of("id"),
            "id",
            f"duplicate id {excerpt(key)}",
            f"already used at {other.file} {other.unit} {other.line_of('id')}",
            unit=raw.unit,
            item=key,
        )
    return found


def validate_range(
    raws: Sequence[RawItem],
    start: int,
    stop: int,
    config: Config,
    now: datetime,
    problems: list[Problem],
    *,
    duplicates: Mapping[int, Problem],
    network_check: NetworkCheck | None = None,
    settled: Container[str] = (),
) -> Iterator[tuple[int, PlanItem]]:
    """Validate ``raws[start:stop]``, recording every problem in ``problems``; yield (index,
    item) for each item that passed its own checks and is not a duplicate."""
    for index in range(start, stop):
        network: list[Problem] = []
        items = validate_raw(
            raws[index],
            config,
            now,
            problems,
            network,
            network_check=network_check,
            settled=settled,
            duplicate=duplicates.get(index),
        )
        problems += network
        for item in items:
            yield index, item


def validate_raw(
    raw: RawItem,
    config: Config,
    now: datetime,
    problems: list[Problem],
    network: list[Problem],
    *,
    network_check: NetworkCheck | None = None,
    settled: Container[str] = (),
    duplicate: Problem | None = None,
) -> list[PlanItem]:
    """The posts of one raw item, validated: one, or one per account of an item that names
    several. Its own problems go to ``problems`` (then ``duplicate``, when an earlier item
    uses its id), what its network's rules find to ``network`` (checked only for an item
    that passed its own checks and is no duplicate). A function of this one item: a pipeline
    that validates a plan in chunks calls it item by item."""
    if is_group_values(raw.values):
        return _validate_group(
            raw, config, now, problems, network, duplicate, network_check, settled
        )
    partial: list[tuple[PlanItem, set[str | None]]] = []
    item = plain_item(raw, config, now) or validate_item(
        raw, config, now, problems, settled, partial
    )
    if duplicate is not None:
        problems.append(duplicate)
        return []
    if item is None and not partial:
        return []
    failed: set[str | None] = set()
    checked = item
    if checked is None:  # refused for a field it can do without: the rest is checked too
        checked, failed = partial[0]
    if network_check is not None:
        account = config.accounts[checked.account]
        found = network_check(checked, account)
        # The files' content against what the network takes (a thread part's too).
        if checked.media or checked.options.thread:
            from scheduler.outgoing import media_issues

            found = [*found, *media_issues(checked, account, config.media)]
        for issue in found:
            name, hint = issue.field, issue.hint
            if re.split(r"[.\[]", name, maxsplit=1)[0] in failed:
                continue  # that field's own problem is reported already
            if checked.unit == "row":
                name, hint = _csv_terms(issue)
            network.append(
                Problem(
                    checked.file,
                    raw.line_of(name),
                    name,
                    issue.message,
                    hint,
                    unit=checked.unit,
                    item=checked.key,
                    code=issue.code or None,
                )
            )
    return [] if item is None else [item]


def _validate_group(
    raw: RawItem,
    config: Config,
    now: datetime,
    problems: list[Problem],
    network: list[Problem],
    duplicate: Problem | None,
    network_check: NetworkCheck | None,
    settled: Container[str],
) -> list[PlanItem]:
    """``validate_raw`` for an item that names its accounts as a list or has variants:
    each of its posts validated as an item of its own, problems named by the item's fields
    (a variant's as ``variants.x.text``)."""
    members = expand(raw, config, problems)
    assert members is not None  # is_group_values said so
    items = []
    own: list[list[Problem]] = []
    for member in members:
        item, mine = _validate_member(member, config, now, settled)
        own.append(mine)
        if item is not None:
            items.append((member, item))
    # A problem every post has (a field they share) is the item's, reported once; one that
    # only some have (their network's time zone, a variant) names each of those posts.
    counts = Counter(p for mine in own for p in set(mine))
    group = members[0].group if members else None
    reported: set[Problem] = set()
    for mine in own:
        for problem in mine:
            if group is not None and counts[problem] == len(members):
                if problem in reported:
                    continue
                reported.add(problem)
                problem = dataclasses.replace(problem, item=group)
            problems.append(problem)
    if duplicate is not None:
        problems.append(duplicate)
        return []
    for member, item in items:
        if network_check is not None:
            account = config.accounts[item.account]
            found = network_check(item, account)
            if item.media:
                from scheduler.outgoing import media_issues

                found = [*found, *media_issues(item, account, config.media)]
            for issue in found:
                name, hint = issue.field, issue.hint
                if item.unit == "row":
                    name, hint = _csv_terms(issue)
                if issue.code == IssueCode.OPTION_NOT_TAKEN and len(members) > 1:
                    hint = _drop_hint(member, name, account.platform, item.unit)
                network.append(
                    Problem(
                        item.file,
                        member.line_of(name),
                        member.field_name(name),
                        issue.message,
                        hint,
                        unit=item.unit,
                        item=item.key,
                        code=issue.code or None,
                    )
                )
    return [item for _, item in items]


_ALT_PROBLEMS = frozenset({IssueCode.ALT_NOT_TAKEN, IssueCode.ALT_TOO_LONG})


def _csv_terms(issue: Issue) -> tuple[str, str]:
    """The field and hint of a network's problem, a problem with an alt text named as a CSV
    plan writes it: by its ``media_alt`` column (a YAML plan gives alt text inside
    ``media``)."""
    if issue.field != "media" or issue.code not in _ALT_PROBLEMS:
        return issue.field, issue.hint
    hint = issue.hint
    if issue.code == IssueCode.ALT_NOT_TAKEN:
        hint = "empty its line of the media_alt cell, or post the row to another account"
    return "media_alt", hint


def _drop_hint(member: Member, name: str, platform: str, unit: str) -> str:
    """What to do with an option one network of a several-account item cannot honour: drop
    it for that network with a variant (YAML's ``~``), not from every post of the item."""
    written = member.field_name(name) or name
    if written != name:  # a variant gave it: that variant is what to change
        return f"remove it from {written.rsplit('.', 1)[0]}"
    if unit == "row":  # an empty CSV cell sets nothing: a variant cannot drop a value there
        return (
            f"a CSV variant cannot drop it: give the {platform} account a row of its own "
            f"without it, or remove it from the row"
        )
    return (
        f"drop it for {platform} with a variant, `variants: {{{platform}: {{{name}: ~}}}}`, "
        "or remove it from the item"
    )


def _validate_member(
    member: Member, config: Config, now: datetime, settled: Container[str]
) -> tuple[PlanItem | None, list[Problem]]:
    """One post of a group item, and its problems, each naming the post; a field a variant
    set is named by the variant (``variants.x.text``)."""
    found: list[Problem] = []
    item = validate_item(member.raw, config, now, found, settled)
    named = []
    for problem in found:
        name = member.field_name(problem.field)
        named.append(problem if name == problem.field else dataclasses.replace(problem, field=name))
    if item is not None:
        item.group = member.group
        item.member = member.position
    return item, named


@gc_paused
def validate_items(
    raws: Sequence[RawItem],
    config: Config,
    now: datetime,
    *,
    network_check: NetworkCheck | None = None,
    settled: Container[str] = (),
) -> tuple[list[PlanItem], list[Problem]]:
    """Validate every item; return the good ones and every problem (duplicates included).

    ``settled`` holds ids of posts already out of the queue (published, failed...): a time in
    the past is expected for them, so re-importing last month's plan is not an error.
    """
    problems: list[Problem] = []
    items = [
        item
        for _, item in validate_range(
            raws,
            0,
            len(raws),
            config,
            now,
            problems,
            duplicates=duplicate_ids(raws),
            network_check=network_check,
            settled=settled,
        )
    ]
    return items, problems
