"""Reading a YAML plan one item at a time: the document is never composed whole.

libyaml parses the file as it reads it (in blocks) and hands out events; here each top-level
item is composed from them on its own, built with ``safeyaml``'s rules and yielded, then
dropped. The rules hold across items exactly as for a whole document: the alias budget counts
what aliases repeat anywhere in the file (a node can be reached twice only through an alias,
so only the nodes under an anchor need remembering), anchors stay defined for later items,
keys written twice and nesting are judged where they are, and every error names the same
line with the same message.

Two layouts are read whole instead, as before (``read_yaml``, bounded by ``[plan]
max_file_bytes``): a top-level mapping whose ``defaults:`` come after ``posts:`` (every item
needs them), and one that is unusual at the top (an anchor, alias, tag or merge key on the
top-level mapping or its ``posts``, or ``posts`` written twice). A first look at the events
alone (no values composed) tells them apart.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.events import (
    AliasEvent,
    DocumentStartEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
)
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from scheduler.errors import Problem, excerpt
from scheduler.plan import safeyaml
from scheduler.plan.items import RawItem, unknown_field

_DEPTH_ERROR = "nested deeper than {} levels"


class _Loader(safeyaml.PlanLoader):
    """libyaml's events, composed into nodes here one value at a time (PyYAML's composer,
    with the depth bound checked as nodes are made)."""

    def start(self) -> None:
        self.anchors: dict[str, Node] = {}
        #: Nodes given an anchor since the builder last took them (``_Builder.note``).
        self.fresh: list[Node] = []

    def compose(self, depth: int) -> Node:
        """The next value's node (an alias: the node its anchor names), ``depth`` deep."""
        event: Any
        if self.check_event(AliasEvent):
            event = self.get_event()
            if event.anchor not in self.anchors:
                raise ComposerError(
                    None, None, f"found undefined alias {event.anchor!r}", event.start_mark
                )
            return self.anchors[event.anchor]
        event = self.peek_event()
        if depth > safeyaml.MAX_DEPTH:
            raise safeyaml.Refused(
                event.start_mark.line + 1,
                _DEPTH_ERROR.format(safeyaml.MAX_DEPTH),
                "a plan is a list of posts, each a mapping of fields",
            )
        anchor = event.anchor
        if anchor is not None and anchor in self.anchors:
            raise ComposerError(
                f"found duplicate anchor {anchor!r}; first occurrence",
                self.anchors[anchor].start_mark,
                "second occurrence",
                event.start_mark,
            )
        node: Node
        mark: Any = event.start_mark
        if isinstance(event, ScalarEvent):
            self.get_event()
            tag = event.tag
            if tag is None or tag == "!":
                tag = self.resolve(ScalarNode, event.value, event.implicit)
            end: Any = event.end_mark
            node = ScalarNode(tag, event.value, mark, end, event.style)
            self._anchor(anchor, node)
        elif isinstance(event, SequenceStartEvent):
            self.get_event()
            node = SequenceNode(self._tag(event, SequenceNode), [], mark, None)
            self._anchor(anchor, node)
            while not self.check_event(SequenceEndEvent):
                node.value.append(self.compose(depth + 1))
            node.end_mark = self.get_event().end_mark
        else:
            self.get_event()
            node = MappingNode(self._tag(event, MappingNode), [], mark, None)
            self._anchor(anchor, node)
            while not self.check_event(MappingEndEvent):
                # Keys are not values: the builder refuses any but plain text before depth.
                key = self.compose(-(1 << 30))
                node.value.append((key, self.compose(depth + 1)))
            node.end_mark = self.get_event().end_mark
        return node

    def _tag(self, event: Any, kind: type[Node]) -> str:
        tag = event.tag
        if tag is None or tag == "!":
            tag = self.resolve(kind, None, event.implicit)
        return str(tag)

    def _anchor(self, anchor: str | None, node: Node) -> None:
        if anchor is not None:
            self.anchors[anchor] = node
            self.fresh.append(node)


class _Builder(safeyaml._Builder):
    """``safeyaml``'s builder over many items: a node counts as new unless it lies under an
    anchor and was built before (the ids of such nodes stay valid: the anchors keep them)."""

    __slots__ = ("anchored", "distinct", "roots")

    def __init__(self) -> None:
        super().__init__()
        self.anchored: set[int] = set()
        self.roots: list[Node] = []
        self.distinct = 0

    def note(self, nodes: list[Node]) -> None:
        """Remember the nodes under the anchors just composed."""
        stack = list(nodes)
        self.roots += nodes
        nodes.clear()
        while stack:
            node = stack.pop()
            if id(node) in self.anchored:
                continue
            self.anchored.add(id(node))
            if isinstance(node, SequenceNode):
                stack += node.value
            elif isinstance(node, MappingNode):
                for key, value in node.value:
                    stack += (key, value)

    def count(self, node: Node | None) -> None:
        self.values += 1
        key = id(node)
        if node is None or key not in self.anchored:
            self.distinct += 1
            return
        if key not in self.seen:
            self.seen.add(key)
            self.distinct += 1
        elif self.values - self.distinct > max(safeyaml.ALIAS_BUDGET, self.distinct):
            raise safeyaml.Refused(
                int(node.start_mark.line) + 1,
                f"aliases repeat more than {max(safeyaml.ALIAS_BUDGET, self.distinct):,} values",
                "write the values out, or put what items share under 'defaults:'",
            )


class Unusual(Exception):
    """The layout is read whole (see the module's docstring)."""


def _layout(stream: Any) -> None:
    """Raise ``Unusual`` for a layout that is read whole; any other error is left for the
    reading itself to report. Reads no further than the first event of a list plan."""
    loader = safeyaml.PlanLoader(stream)
    try:
        loader.get_event()  # the stream's start
        if not loader.check_event(DocumentStartEvent):
            return
        loader.get_event()
        event = loader.get_event()
        if isinstance(event, AliasEvent):
            raise Unusual
        if not isinstance(event, MappingStartEvent | SequenceStartEvent):
            return
        if event.anchor is not None or event.tag not in (None, "!"):
            raise Unusual
        if isinstance(event, SequenceStartEvent):
            return
        seen_posts = False
        while not loader.check_event(MappingEndEvent):
            key = loader.get_event()
            if not isinstance(key, ScalarEvent) or key.anchor is not None:
                raise Unusual
            name = key.value.strip().lower() if key.tag in (None, "!") else None
            if key.tag in (None, "!") and key.value == "<<" and key.implicit[0]:
                raise Unusual  # a merge key at the top
            value = loader.peek_event()
            if name == "posts":
                if seen_posts or value.anchor is not None or value.tag not in (None, "!"):
                    raise Unusual
                if isinstance(value, AliasEvent):
                    raise Unusual
                seen_posts = True
            elif name == "defaults" and seen_posts:
                raise Unusual
            _skip(loader)
    except yaml.YAMLError:
        return
    finally:
        loader.dispose()


def _skip(loader: Any) -> None:
    """Pass over one value's events."""
    depth = 0
    while True:
        event = loader.get_event()
        if isinstance(event, SequenceStartEvent | MappingStartEvent):
            depth += 1
        elif isinstance(event, SequenceEndEvent | MappingEndEvent):
            depth -= 1
        if depth == 0:
            return


def iter_yaml(open_text: Any, file: str, problems: list[Problem]) -> Iterator[RawItem]:
    """The items of a YAML plan, each as soon as it is read. ``open_text()`` opens the file
    as text (a mapping at the top is looked at first: the file is read twice). Problems of
    the file go to ``problems``. Raises ``Unusual`` (before any item) for a layout to read
    whole; ``yaml.YAMLError``, ``safeyaml.Refused`` or ``RecursionError`` when the file
    cannot be read safely after all (items may have been yielded: the caller drops them)."""
    with open_text() as stream:
        _layout(stream)
    with open_text() as stream:
        loader = _Loader(stream)
        try:
            loader.start()
            yield from _items(loader, file, problems)
        finally:
            loader.dispose()


def _items(loader: _Loader, file: str, problems: list[Problem]) -> Iterator[RawItem]:
    builder = _Builder()
    loader.get_event()  # the stream's start
    if loader.check_event(StreamEndEvent):
        problems.append(Problem(file, 1, None, "the plan is empty", "add a list of posts"))
        return
    document = loader.get_event()
    event = loader.peek_event()
    defaults = _lined({}, 1)
    if isinstance(event, SequenceStartEvent) and event.anchor is None and event.tag in (None, "!"):
        yield from _posts(loader, builder, file, problems, 1, defaults)
    elif isinstance(event, MappingStartEvent) and event.anchor is None and event.tag in (None, "!"):
        yield from _mapping(loader, builder, file, problems)
    else:
        node = loader.compose(1)
        builder.note(loader.fresh)
        doc = builder.build(node, 1)
        _flush(builder, file, problems)
        del doc  # a plain value: no posts in it
        problems.append(
            Problem(file, 1, "posts", "expected a list of posts", "start each post with '- id:'")
        )
    loader.get_event()  # the document's end
    if not loader.check_event(StreamEndEvent):
        raise ComposerError(
            "expected a single document in the stream",
            document.start_mark,
            "but found another document",
            loader.get_event().start_mark,
        )


def _lined(values: dict[str, Any], line: int) -> safeyaml.LinedDict:
    lined = safeyaml.LinedDict(values)
    lined.line, lined.key_lines = line, {}
    return lined


def item_defaults(
    value: safeyaml.LinedDict, file: str, problems: list[Problem]
) -> safeyaml.LinedDict:
    """``defaults:`` as every item gets them, each key with its line (a bad value is then
    reported where it is written). A key no item may have is reported once, at its own
    line, and left out: every item would report it, at the item's line."""
    kept = _lined({}, value.line)
    for key, default in value.items():
        line = value.key_lines.get(key, value.line)
        found = unknown_field(key)
        if found is None:
            kept[key], kept.key_lines[key] = default, line
        else:
            name = f"defaults.{key}"
            problems.append(
                Problem(file, line, name if len(name) <= 40 else excerpt(name, 40)[1:-1], *found)
            )
    return kept


def _flush(builder: _Builder, file: str, problems: list[Problem]) -> None:
    problems += [Problem(file, *found) for found in builder.duplicates]
    builder.duplicates.clear()


def _item(
    entry: Any,
    node: Node,
    file: str,
    problems: list[Problem],
    posts_line: int,
    defaults: safeyaml.LinedDict,
) -> RawItem | None:
    if not isinstance(entry, safeyaml.LinedDict):
        problems.append(
            Problem(
                file,
                int(node.start_mark.line) + 1 if node is not None else posts_line,
                None,
                f"a post must be a mapping of fields, got {excerpt(entry)}",
                "start each post with '- id:'",
            )
        )
        return None
    if not defaults:
        return RawItem(file, entry.line, "line", entry, entry.key_lines)
    values = {**defaults, **entry}
    return RawItem(file, entry.line, "line", values, {**defaults.key_lines, **entry.key_lines})


def _posts(
    loader: _Loader,
    builder: _Builder,
    file: str,
    problems: list[Problem],
    depth: int,
    defaults: safeyaml.LinedDict,
) -> Iterator[RawItem]:
    """The items of the posts list that starts at the next event, at ``depth``."""
    start = loader.get_event()
    builder.count(None)  # the list itself
    line = int(start.start_mark.line) + 1
    while not loader.check_event(SequenceEndEvent):
        node = loader.compose(depth + 1)
        builder.note(loader.fresh)
        entry = builder.build(node, depth + 1)
        _flush(builder, file, problems)
        item = _item(entry, node, file, problems, line, defaults)
        if item is not None:
            yield item
    loader.get_event()


def _mapping(
    loader: _Loader, builder: _Builder, file: str, problems: list[Problem]
) -> Iterator[RawItem]:
    """A top-level mapping: ``defaults`` (before ``posts``, or the layout was read whole),
    ``posts`` streamed, any other key reported."""
    start = loader.get_event()
    builder.count(None)  # the mapping itself
    doc_line = int(start.start_mark.line) + 1
    lines: dict[str, int] = {}
    defaults = _lined({}, doc_line)
    has_posts = False
    while not loader.check_event(MappingEndEvent):
        key = loader.compose(-(1 << 30))
        builder.note(loader.fresh)
        name = builder.field_name(key)
        line = int(key.start_mark.line) + 1
        if name in lines:
            builder.duplicates.append(
                (
                    line,
                    name,
                    f"{name[:40]!r} is written twice in one mapping: "
                    f"lines {lines[name]} and {line}",
                    "keep one of them; names are compared without regard to case "
                    "and surrounding spaces",
                )
            )
            loader.compose(2)  # composed as any value, never built
            builder.note(loader.fresh)
            _flush(builder, file, problems)
            continue
        lines[name] = line
        if name == "posts" and isinstance(loader.peek_event(), SequenceStartEvent):
            has_posts = True
            yield from _posts(loader, builder, file, problems, 2, defaults)
            continue
        node = loader.compose(2)
        builder.note(loader.fresh)
        value = builder.build(node, 2)
        _flush(builder, file, problems)
        if name == "defaults":
            if not value:
                continue
            if not isinstance(value, safeyaml.LinedDict):
                problems.append(Problem(file, line, "defaults", "defaults must be a mapping"))
            else:
                kept = item_defaults(value, file, problems)
                defaults.update(kept)
                defaults.key_lines.update(kept.key_lines)
        elif name == "posts":
            has_posts = True
            problems.append(
                Problem(
                    file, line, "posts", "expected a list of posts", "start each post with '- id:'"
                )
            )
        else:
            problems.append(
                Problem(
                    file,
                    line,
                    name if len(name) <= 40 else excerpt(name, 40)[1:-1],
                    f"unknown top-level key {excerpt(name)}",
                    "a plan is a list of posts, or a mapping with 'posts' and 'defaults'",
                )
            )
    loader.get_event()
    if not has_posts:
        problems.append(
            Problem(
                file, doc_line, "posts", "expected a list of posts", "start each post with '- id:'"
            )
        )
