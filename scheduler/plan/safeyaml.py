"""Turning a YAML plan into plain values, treating the file as hostile.

PyYAML's safe loader still builds whatever the file describes: an alias bomb of a few hundred
bytes expands to gigabytes, ``!!binary`` and ``!!set`` become bytes and sets, a plain
``0x1F`` becomes the number 31, and a key written twice silently keeps the later value. So
libyaml (or PyYAML's pure-Python parser) only *composes* the node graph here, which is linear
in the file's size even for an alias bomb, and ``build`` makes the values itself:

* **Scalars are text.** A plain scalar is the text as written (``0x1F``, ``yes``, ``010``);
  only ``~``, ``null`` and an empty value are "not given" (None). Every plan field is text or
  a list of text, so nothing needs YAML's guesses; validation reads ``yes`` and ``2027-03-08
  10:00`` itself.
* **Tags.** Only lists, mappings and the plain scalar types may be tagged (``!!str``,
  ``!!null``, ``!!bool``, ``!!int``, ``!!float``), and a tagged scalar must be of its type
  (``!!float x`` is refused). ``!!binary``, ``!!set``, ``!!timestamp``, ``!!python/...`` and
  local tags are refused.
* **Aliases** (``*name``) may repeat values, merge keys (``<<: *base``) included, but what
  they repeat may add at most ``ALIAS_BUDGET`` values, or as many as the file holds itself
  when that is more: an alias bomb stops at once, ``<<: *defaults`` on every item works.
* **Depth.** Nothing is nested deeper than ``MAX_DEPTH`` (a plan needs four levels).
* **Duplicate keys** are reported with both lines; field names are compared without regard
  to case and surrounding spaces (``text`` and ``Text``, ``id`` and ``' id'``).
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

__all__ = ["ALIAS_BUDGET", "LIBYAML", "MAX_DEPTH", "LinedDict", "Refused", "build", "compose"]

#: Values aliases may add beyond the file's own (or as many as the file holds, if more).
ALIAS_BUDGET = 10_000
#: Deepest nesting accepted: a plan needs 4 (top mapping, posts, item, tags).
MAX_DEPTH = 16
#: Longest explicitly tagged number (``!!int``/``!!float``) accepted.
MAX_NUMBER_CHARS = 100

_T = "tag:yaml.org,2002:"
STR, NULL, BOOL, INT, FLOAT = _T + "str", _T + "null", _T + "bool", _T + "int", _T + "float"
SEQ, MAP, MERGE = _T + "seq", _T + "map", _T + "merge"

# libyaml's parser when PyYAML was built with it (the wheels are): about ten times faster than
# the pure-Python one on a large plan, with the same marks (lines).
_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
#: Whether libyaml parses (its error positions count bytes of the UTF-8 text).
LIBYAML = _Loader is not yaml.SafeLoader


class PlanLoader(_Loader):  # type: ignore[valid-type,misc]
    """Composes nodes only. Plain scalars resolve to text, except the null forms and the
    merge key ``<<``; an explicit tag is kept as written, for ``build`` to judge."""


PlanLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag in (NULL, MERGE)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}

# The forms YAML 1.1 gives each scalar type, to check explicitly tagged values against.
_FORMS: dict[str, re.Pattern[str]] = {
    tag: rx
    for resolvers in yaml.SafeLoader.yaml_implicit_resolvers.values()
    for tag, rx in resolvers
    if tag in (BOOL, INT, FLOAT, NULL)
}


_NUMBERS = yaml.constructor.SafeConstructor()


class Refused(Exception):
    """The file cannot be read safely; ``line`` is where (1-based, None: the whole file)."""

    def __init__(self, line: int | None, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.line = line
        self.message = message
        self.hint = hint


class LinedDict(dict[str, Any]):
    """A mapping of the plan, with the line of the mapping and of each key."""

    line: int
    key_lines: dict[str, int]


def compose(text: str) -> Node | None:
    """The node graph of ``text`` (one document). Raises yaml.YAMLError, or RecursionError
    when the pure-Python parser meets very deep nesting."""
    loader = PlanLoader(text)
    try:
        node: Node | None = loader.get_single_node()
        return node
    finally:
        loader.dispose()


def _line(node: Node) -> int:
    return int(node.start_mark.line) + 1


def _tag_name(tag: str) -> str:
    return "!!" + tag[len(_T) :] if tag.startswith(_T) else tag


class _Builder:
    __slots__ = ("duplicates", "key_names", "seen", "values")

    def __init__(self) -> None:
        #: id() of every node built once; a node built again was reached through an alias.
        self.seen: set[int] = set()
        self.values = 0
        #: (line, field, message, hint) of each key written twice in one mapping.
        self.duplicates: list[tuple[int, str, str, str]] = []
        #: raw key -> normalised field name (a plan repeats a handful of keys).
        self.key_names: dict[str, str] = {}

    def count(self, node: Node) -> None:
        self.values += 1
        key = id(node)
        if key not in self.seen:
            self.seen.add(key)
        elif self.values - len(self.seen) > max(ALIAS_BUDGET, len(self.seen)):
            raise Refused(
                _line(node),
                f"aliases repeat more than {max(ALIAS_BUDGET, len(self.seen)):,} values",
                "write the values out, or put what items share under 'defaults:'",
            )

    def build(self, node: Node, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise Refused(
                _line(node),
                f"nested deeper than {MAX_DEPTH} levels",
                "a plan is a list of posts, each a mapping of fields",
            )
        self.count(node)
        tag = node.tag
        if type(node) is ScalarNode:
            if tag == STR:
                return node.value
            return self.scalar(node, tag)
        if type(node) is MappingNode:
            if tag != MAP:
                raise self.bad_tag(node)
            return self.mapping(node, depth)
        if type(node) is SequenceNode:
            if tag != SEQ:
                raise self.bad_tag(node)
            return [self.build(child, depth + 1) for child in node.value]
        raise Refused(_line(node), "not a YAML value")  # pragma: no cover - no other nodes

    @staticmethod
    def bad_tag(node: Node) -> Refused:
        return Refused(
            _line(node),
            f"the tag {_tag_name(node.tag)[:40]!r} is not accepted",
            "plans hold text, lists and mappings only: remove the tag, or quote the value",
        )

    def scalar(self, node: ScalarNode, tag: str) -> Any:
        if tag == NULL:
            if _FORMS[NULL].match(node.value):
                return None
            raise Refused(_line(node), f"{node.value[:40]!r} is not null (tagged !!null)")
        form = _FORMS.get(tag)
        if form is None:
            raise self.bad_tag(node)
        value = node.value
        if len(value) > MAX_NUMBER_CHARS or not form.match(value):
            raise Refused(
                _line(node),
                f"{value[:40]!r} is not a {_tag_name(tag)[2:]} value (tagged {_tag_name(tag)})",
                "remove the tag, or quote the value",
            )
        if tag == BOOL:
            return yaml.SafeLoader.bool_values[value.lower()]
        try:  # PyYAML's own reading of the (short) number
            if tag == INT:
                return _NUMBERS.construct_yaml_int(node)
            return _NUMBERS.construct_yaml_float(node)
        except (ValueError, IndexError, OverflowError):
            raise Refused(_line(node), f"{value[:40]!r} is not a number") from None

    def field_name(self, key: Node) -> str:
        if type(key) is not ScalarNode or key.tag != STR:
            if type(key) is ScalarNode and key.tag in (NULL, MERGE):
                raise Refused(_line(key), "a field name is empty")
            raise Refused(
                _line(key), "field names must be plain text", "write the name as field: value"
            )
        self.count(key)
        raw = key.value
        name = self.key_names.get(raw)
        if name is None:
            name = self.key_names[raw] = raw.strip().lower()
        return name

    def mapping(self, node: MappingNode, depth: int) -> LinedDict:
        result = LinedDict()
        result.line = _line(node)
        lines: dict[str, int] = {}
        result.key_lines = lines
        merged: list[tuple[str, Any, int]] = []
        for key_node, value_node in node.value:
            if type(key_node) is ScalarNode and key_node.tag == MERGE:
                self.count(key_node)
                merged.extend(self.merge(value_node, depth))
                continue
            name = self.field_name(key_node)
            line = _line(key_node)
            if name in lines:
                self.duplicates.append(
                    (
                        line,
                        name,
                        f"{name[:40]!r} is written twice in one mapping: "
                        f"lines {lines[name]} and {line}",
                        "keep one of them; names are compared without regard to case "
                        "and surrounding spaces",
                    )
                )
                continue
            result[name] = self.build(value_node, depth + 1)
            lines[name] = line
        for name, value, line in merged:  # the mapping's own keys win over merged ones
            if name not in result:
                result[name] = value
                lines[name] = line
        return result

    def merge(self, node: Node, depth: int) -> list[tuple[str, Any, int]]:
        """The (name, value, line) pairs a merge key brings: one mapping or a list of them,
        earlier ones winning."""
        sources = node.value if type(node) is SequenceNode and node.tag == SEQ else [node]
        out: list[tuple[str, Any, int]] = []
        for source in sources:
            if type(source) is not MappingNode:
                raise Refused(_line(source), "'<<' must merge a mapping or a list of mappings")
            built = self.build(source, depth + 1)
            out.extend((k, v, built.key_lines[k]) for k, v in built.items())
        return out


def build(node: Node) -> tuple[Any, list[tuple[int, str, str, str]]]:
    """The plain value of ``node`` and the duplicate keys found, as (line, field, message,
    hint). Raises Refused when the file cannot be read safely."""
    builder = _Builder()
    return builder.build(node, 1), builder.duplicates
