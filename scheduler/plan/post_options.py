"""Reading a plan item's per-post options: content warning, sensitive, visibility, language,
reply-to and poll, by their network-neutral names (docs/content-plan.md#per-post-options).

Only the values' shape is judged here; whether the account's network honours each option,
and within which limits, is its plugin's call (``Adapter.option_issues``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

from scheduler.adapter import NO_OPTIONS, VISIBILITIES, MediaMeta, Poll, PostOptions, ThreadPart
from scheduler.errors import excerpt
from scheduler.plan.items import meta_record, stored_meta
from scheduler.plan.media_items import media_entries

#: Fields of a plan item that hold options (CSV spells the poll in three columns).
OPTION_FIELDS = (
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
)
_POLL_KEYS = ("options", "duration", "multiple")
_LANGUAGE = re.compile(r"[A-Za-z]{2,3}(?:-[A-Za-z0-9]{2,8})*")
_REMOTE_ID = re.compile(r"[\x21-\x7e]{1,200}")
_DURATION = re.compile(r"(\d{1,6})\s*(m|min|h|d)", re.IGNORECASE)
_UNITS = {"m": 60, "min": 60, "h": 3600, "d": 86400}
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
#: A poll without a duration stays open a day.
DEFAULT_POLL_DURATION = timedelta(days=1)
_TRUE = {"true", "yes", "y", "1", "on", "x"}
_FALSE = {"false", "no", "n", "0", "off", ""}

Fail = Callable[[str, str, str], None]
Kind = Callable[[Any], str]


def post_options(values: Mapping[str, Any], fail: Fail, kind: Kind) -> PostOptions:
    """The options an item's ``values`` give (``NO_OPTIONS`` when none); problems through
    ``fail(field, message, hint)``."""
    if values.keys().isdisjoint(OPTION_FIELDS) or not any(
        values.get(name) not in (None, "") for name in OPTION_FIELDS
    ):
        return NO_OPTIONS
    warning = _text(values, "content_warning", fail, kind)
    sensitive = _yes_no(values, "sensitive", fail, kind)
    visibility = _text(values, "visibility", fail, kind)
    if visibility is not None:
        visibility = visibility.lower()
        if visibility not in VISIBILITIES:
            fail(
                "visibility",
                f"visibility must be one of {', '.join(VISIBILITIES)}, got {excerpt(visibility)}",
                "followers: only followers see it; direct: only the people it mentions",
            )
            visibility = None
    language = _text(values, "language", fail, kind)
    if language is not None and not _LANGUAGE.fullmatch(language):
        fail("language", f"{excerpt(language)} is not a language tag", "e.g. en, lv, pt-BR")
        language = None
    reply_to = _text(values, "reply_to", fail, kind)
    if reply_to is not None and not _REMOTE_ID.fullmatch(reply_to):
        fail("reply_to", "reply_to must be the network's id of a post", "e.g. 109372843234")
        reply_to = None
    return PostOptions(
        content_warning=warning,
        sensitive=sensitive,
        visibility=visibility,
        language=language,
        reply_to=reply_to,
        poll=_poll(values, fail, kind),
        first_comment=_comment(values, fail, kind),
        thread=_thread(values, fail, kind),
    )


def _comment(values: Mapping[str, Any], fail: Fail, kind: Kind) -> str | None:
    """A comment's text: the controls a post's text may not hold refused, tabs and line
    breaks kept."""
    value = values.get("first_comment")
    if value is None or value == "":
        return None
    if type(value) is not str:
        fail("first_comment", f"first_comment must be text, got {kind(value)}", "")
        return None
    bad = _CONTROL.search(value)
    if bad is not None:
        fail(
            "first_comment",
            f"first_comment contains the control character U+{ord(bad.group()):04X}",
            "",
        )
        return None
    return value.strip("\n").rstrip() or None


#: In a CSV cell, a line holding only ``---`` separates two parts of a thread.
_PART_BREAK = re.compile(r"\n[ \t]*---[ \t]*\n")
#: Parts of one thread, at most (the first post not counted).
MAX_THREAD_PARTS = 25


#: Keys of a thread part written as a mapping.
PART_KEYS = ("text", "media")


def _thread(values: Mapping[str, Any], fail: Fail, kind: Kind) -> tuple[ThreadPart, ...]:
    """The parts after the first: a YAML list of texts or ``{text: ..., media: [...]}``
    mappings (media as an item's: paths or ``{path, alt, focus}``, as written: the caller
    resolves them), or a CSV cell whose parts are separated by a line ``---``."""
    value = values.get("thread")
    if value is None or value == "" or value == []:
        return ()
    media: dict[int, tuple[tuple[str, ...], tuple[MediaMeta, ...]]] = {}
    if type(value) is str:
        raw: list[Any] = _PART_BREAK.split("\n" + value + "\n")
    elif isinstance(value, list):
        raw = []
        for index, part in enumerate(value):
            if not isinstance(part, dict):
                raw.append(part)
                continue
            unknown = sorted(str(k) for k in part if k not in PART_KEYS)
            if unknown:
                fail(
                    f"thread[{index}]",
                    f"thread part {index + 2}: unknown key {unknown[0]!r}",
                    "a thread part takes text and media",
                )
                return ()
            if part.get("media") not in (None, "", []):
                media[index] = _part_media(part["media"], index, fail, kind)
            # A part may be media alone; whether its network takes that is the plugin's call.
            raw.append("" if part.get("text") is None and index in media else part.get("text"))
    else:
        fail(
            "thread",
            f"thread must be a list of texts, got {kind(value)}",
            "thread: [part 2, part 3]",
        )
        return ()
    parts = []
    for number, part in enumerate(raw, 2):
        if type(part) is not str:
            fail("thread", f"thread part {number} must be text, got {kind(part)}", "")
            return ()
        bad = _CONTROL.search(part)
        if bad is not None:
            fail(
                "thread",
                f"thread part {number} contains the control character U+{ord(bad.group()):04X}",
                "",
            )
            return ()
        text = part.strip("\n").rstrip()
        if not text.strip() and (number - 2) not in media:
            if type(value) is str:
                continue  # a break at the start or end of the cell
            fail("thread", f"thread part {number} is empty", "")
            return ()
        paths, metas = media.get(number - 2, ((), ()))
        parts.append(ThreadPart(text, paths, metas))
    if len(parts) > MAX_THREAD_PARTS:
        fail("thread", f"{len(parts)} thread parts, at most {MAX_THREAD_PARTS}", "")
        return ()
    return tuple(parts)


def _part_media(
    value: Any, index: int, fail: Fail, kind: Kind
) -> tuple[tuple[str, ...], tuple[MediaMeta, ...]]:
    """A thread part's media entries as written, each problem named by the part and file
    (``thread[0].media[1]``)."""
    if not isinstance(value, list):
        value = [value]
    paths: list[str] = []
    metas: list[MediaMeta] = []
    for position, entry in enumerate(value):
        where = f"thread[{index}].media[{position}]"

        def located(name: str, message: str, hint: str, where: str = where) -> None:
            fail(where, f"thread part {index + 2}: {message}", hint)

        found, meta = media_entries([entry], None, located, kind)
        if found:
            paths.append(found[0])
            metas.append(meta[0] if meta else MediaMeta())
    if all(m.alt is None and m.focus is None for m in metas):
        metas = []
    return tuple(paths), tuple(metas)


def _text(values: Mapping[str, Any], name: str, fail: Fail, kind: Kind) -> str | None:
    value = values.get(name)
    if value is None or value == "":
        return None
    if type(value) is not str:
        fail(name, f"{name} must be text, got {kind(value)}", "put the value in quotes")
        return None
    bad = _CONTROL.search(value)
    if bad is not None:
        fail(name, f"{name} contains the control character U+{ord(bad.group()):04X}", "")
        return None
    return value.strip() or None


def _yes_no(
    values: Mapping[str, Any], name: str, fail: Fail, kind: Kind, where: str | None = None
) -> bool:
    """A yes/no value; a problem is reported under ``where`` (default: ``name``)."""
    value = values.get(name)
    if value is None or isinstance(value, bool):
        return bool(value)
    if type(value) is not str or value.strip().lower() not in _TRUE | _FALSE:
        shown = kind(value) if type(value) is not str else excerpt(value)
        fail(where or name, f"{name} must be yes or no, got {shown}", "use true/false or yes/no")
        return False
    return value.strip().lower() in _TRUE


def _poll(values: Mapping[str, Any], fail: Fail, kind: Kind) -> Poll | None:
    value = values.get("poll")
    duration_value = values.get("poll_duration")
    multiple_value = values.get("poll_multiple")
    if isinstance(value, dict):  # YAML: {options: [...], duration: 1d, multiple: yes}
        unknown = sorted(str(k) for k in value if k not in _POLL_KEYS)
        if unknown:
            fail(
                "poll",
                f"poll: unknown key {unknown[0]!r}",
                "a poll takes options, duration, multiple",
            )
            return None
        if duration_value not in (None, "") or multiple_value not in (None, ""):
            fail("poll", "give the poll's duration and multiple inside poll:", "")
            return None
        options_value = value.get("options")
        duration_value = value.get("duration")
        multiple_value = value.get("multiple")
    else:
        options_value = value
    if options_value in (None, "", []):
        if value not in (None, "") or duration_value not in (None, "") or multiple_value:
            fail("poll", "a poll needs its options", "poll: {options: [Yes, No], duration: 1d}")
        return None
    if type(options_value) is str:  # CSV: one cell, options split on ; or line breaks
        options = [o.strip() for o in re.split(r"[;\n]", options_value)]
    elif isinstance(options_value, list) and all(type(o) is str for o in options_value):
        options = [o.strip() for o in options_value]
    else:
        fail("poll", f"poll options must be a list of text values, got {kind(options_value)}", "")
        return None
    options = [o for o in options if o]
    if len(options) < 2:
        fail("poll", f"a poll needs at least two options, got {len(options)}", "")
        return None
    if any(_CONTROL.search(o) for o in options):
        fail("poll", "a poll option contains a control character", "")
        return None
    if len(set(options)) != len(options):
        fail("poll", "two poll options are the same", "networks refuse repeated options")
        return None
    duration = _duration(duration_value, fail, kind)
    if duration is None:
        return None
    # Written inside poll: (YAML), a bad multiple is on the poll's line; in CSV, its column.
    where = "poll" if isinstance(value, dict) else "poll_multiple"
    multiple = _yes_no({"poll_multiple": multiple_value}, "poll_multiple", fail, kind, where)
    return Poll(tuple(options), duration, multiple)


def _duration(value: Any, fail: Fail, kind: Kind) -> timedelta | None:
    if value is None or value == "":
        return DEFAULT_POLL_DURATION
    if type(value) is not str:
        fail("poll", f"poll duration must be text such as 1d, got {kind(value)}", "")
        return None
    found = _DURATION.fullmatch(value.strip())
    if found is None or int(found.group(1)) == 0:
        fail(
            "poll",
            f"cannot read {excerpt(value)} as a poll duration",
            "a number and a unit: 30m, 6h, 3d",
        )
        return None
    return timedelta(seconds=int(found.group(1)) * _UNITS[found.group(2).lower()])


def options_record(options: PostOptions) -> dict[str, Any] | None:
    """The options as stored (``posts.post_options``): only those given; None for none."""
    if options is NO_OPTIONS or not options.given():
        return None
    record: dict[str, Any] = {}
    for name in ("content_warning", "visibility", "language", "reply_to", "first_comment"):
        value = getattr(options, name)
        if value is not None:
            record[name] = value
    if options.sensitive:
        record["sensitive"] = True
    if options.thread:
        record["thread"] = [_part_record(part) for part in options.thread]
    if options.poll is not None:
        record["poll"] = {
            "options": list(options.poll.options),
            "duration": int(options.poll.duration.total_seconds()),
            "multiple": options.poll.multiple,
        }
    return record


def stored_options(record: Any) -> PostOptions:
    """``posts.post_options`` read back; NULL (rows from before) and anything malformed read
    as no options."""
    if not isinstance(record, dict) or not record:
        return NO_OPTIONS

    def text(name: str) -> str | None:
        value = record.get(name)
        return value if isinstance(value, str) and value else None

    poll = None
    raw = record.get("poll")
    if isinstance(raw, dict):
        options = raw.get("options")
        duration = raw.get("duration")
        if (
            isinstance(options, list)
            and all(isinstance(o, str) for o in options)
            and isinstance(duration, int)
            and not isinstance(duration, bool)
        ):
            poll = Poll(tuple(options), timedelta(seconds=duration), raw.get("multiple") is True)
    return PostOptions(
        content_warning=text("content_warning"),
        sensitive=record.get("sensitive") is True,
        visibility=text("visibility"),
        language=text("language"),
        reply_to=text("reply_to"),
        poll=poll,
        first_comment=text("first_comment"),
        thread=tuple(p for p in map(_stored_part, record.get("thread") or ()) if p is not None)
        if isinstance(record.get("thread"), list)
        else (),
    )


def _part_record(part: ThreadPart) -> Any:
    """A thread part as stored: its text alone when it has no media (as rows written before
    parts had media), else ``{"text": ..., "media": [...], "media_meta": [...]}``."""
    if not part.media:
        return part.text
    record: dict[str, Any] = {"text": part.text, "media": list(part.media)}
    if part.media_meta:
        record["media_meta"] = [meta_record(meta) for meta in part.media_meta]
    return record


def _stored_part(value: Any) -> ThreadPart | None:
    if isinstance(value, str):
        return ThreadPart(value)
    if not isinstance(value, dict) or not isinstance(value.get("text"), str):
        return None
    media = value.get("media")
    paths = tuple(m for m in media if isinstance(m, str)) if isinstance(media, list) else ()
    return ThreadPart(value["text"], paths, stored_meta(paths, value.get("media_meta")))
