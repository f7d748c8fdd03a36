"""Finding registered secrets in text, in every form a server may echo them.

A server that refuses a token often quotes it back: inside JSON (PHP writes ``/`` as ``\\/``,
any encoder may write ``\\"``, ``\\\\`` or ``\\uXXXX``), URL-encoded (``%2F``, or ``+`` for a
space), HTML-escaped (``&#x2F;``, ``&quot;``), base64-encoded (a Basic header, a JWT part), or
cut short. Matching each encoding of each secret separately would need a pattern per
combination, and would still miss a string that mixes them (``abc\\/def%2Bghi``).

So the text is read once through a *decoded view*: every escape of those kinds counts as the one
character it stands for, and remembers the span of the original text it came from. The view is
searched for any fragment of :data:`FRAGMENT` characters of a registered secret (or of its
base64 forms), by looking every window of that length up in one set: one pass over the text
whatever the number of secrets, like Aho-Corasick for fixed-length keys. The union of the
windows found is masked in the original text, escapes and all, so a fragment of 8 or more
characters never survives, and neither does the whole secret.
"""

from __future__ import annotations

import base64
import bisect
import html
import json
import re
import threading
from collections.abc import Iterable
from urllib.parse import quote

__all__ = ["FRAGMENT", "KEPT_PER_SOURCE", "MIN_SECRET_LENGTH", "SecretMatcher"]

#: Registered values shorter than this are ignored: masking every "abc" would garble the logs
#: while protecting nothing worth the name.
MIN_SECRET_LENGTH = 6

#: Any run of this many characters of a secret is masked wherever it appears.
FRAGMENT = 8

#: Escapes read as one character: JSON (``\uXXXX`` and the short ones), URL percent-encoding,
#: HTML character references (numeric and named).
_ESCAPE = re.compile(
    r"\\u[0-9A-Fa-f]{4}"
    r"|\\[\\/\"'bfnrt]"
    r"|%[0-9A-Fa-f]{2}"
    r"|&(?:#[0-9]{1,7}|#[xX][0-9A-Fa-f]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});"
)
_ESCAPE_START = frozenset("\\%&")
_SHORT_ESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def _decode(token: str) -> str | None:
    """The one character ``token`` (an ``_ESCAPE`` match) stands for, or None."""
    if token[0] == "\\":
        if token[1] == "u":
            return chr(int(token[2:], 16))
        return _SHORT_ESCAPES.get(token[1], token[1])
    if token[0] == "%":
        # One byte: a non-ASCII secret is looked for as its UTF-8 bytes read as Latin-1.
        return chr(int(token[1:], 16))
    decoded = html.unescape(token)
    return decoded if len(decoded) == 1 else None


class _View:
    """``text`` with every escape read as the character it stands for.

    ``marks`` holds, for each escape, its position in the view and its span in the text, so
    that a span found in the view maps back to the text (escapes are few: bisect them).
    """

    __slots__ = ("marks", "positions", "text")

    def __init__(self, text: str) -> None:
        pieces: list[str] = []
        self.marks: list[tuple[int, int, int]] = []
        pos = length = 0
        for m in _ESCAPE.finditer(text):
            char = _decode(m.group())
            if char is None:
                continue  # not one character (an unknown entity): left as the text it is
            begin, end = m.span()
            pieces.append(text[pos:begin])
            length += begin - pos
            pieces.append(char)
            self.marks.append((length, begin, end))
            length += 1
            pos = end
        pieces.append(text[pos:])
        self.text = "".join(pieces)
        self.positions = [mark[0] for mark in self.marks]

    def span(self, start: int, end: int) -> tuple[int, int]:
        """The span of the text that view characters ``start`` to ``end`` come from."""
        return self._where(start)[0], self._where(end - 1)[1]

    def _where(self, i: int) -> tuple[int, int]:
        k = bisect.bisect_right(self.positions, i) - 1
        if k < 0:
            return i, i + 1
        at, begin, end = self.marks[k]
        if at == i:
            return begin, end
        origin = end + (i - at - 1)
        return origin, origin + 1


def _base64_cores(secret: str) -> Iterable[str]:
    """The base64 characters that ``secret`` alone decides, at each of the 3 byte alignments.

    Embedded at byte offset ``a`` (mod 3) of a longer value, a secret's bytes encode to the
    characters whose 6 bits all come from the secret; the characters at either end mix in the
    neighbouring bytes and are left out. Standard and URL-safe alphabets both.
    """
    data = secret.encode()
    for align in range(3):
        encoded = base64.b64encode(b"\0" * align + data).decode()
        first = -(-8 * align // 6)  # the first character whose bits all lie in the secret
        last = (8 * (align + len(data))) // 6  # one past the last such character
        core = encoded[first:last]
        yield core
        yield core.translate(str.maketrans("+/", "-_"))


def _forms(secret: str) -> set[str]:
    """What to look for in the decoded view for ``secret``."""
    texts = {secret}
    if " " in secret:
        texts.add(secret.replace(" ", "+"))  # application/x-www-form-urlencoded
    forms = {*texts, *_base64_cores(secret)}
    for text in texts:
        if not text.isascii():
            forms.add(text.encode().decode("latin-1"))  # percent-encoded UTF-8 bytes
        if any(ord(c) > 0xFFFF for c in text):
            units = text.encode("utf-16-be", "surrogatepass")
            forms.add(  # JSON's \uD83D\uDE00 pairs
                "".join(chr(int.from_bytes(units[i : i + 2])) for i in range(0, len(units), 2))
            )
    return {f for f in forms if len(f) >= MIN_SECRET_LENGTH}


class _Table:
    """The windows of one length ``n`` to find, and the shorter grams that find them fast.

    Any window of ``n`` characters contains a gram of ``q = n - stride + 1`` characters that
    starts at a multiple of ``stride``: looking grams up at those positions only (a quarter
    of them for ``n = 8``) finds every candidate, and each candidate is then checked whole.
    """

    __slots__ = ("grams", "n", "q", "stride", "windows")

    def __init__(self, n: int, windows: frozenset[str]) -> None:
        self.n = n
        self.windows = windows
        self.stride = max(1, n // 2)
        self.q = n - self.stride + 1
        q = self.q
        self.grams = frozenset(w[i : i + q] for w in windows for i in range(n - q + 1))

    def find(self, view: str) -> list[tuple[int, int]]:
        n, q, grams, windows = self.n, self.q, self.grams, self.windows
        hits = [i for i in range(0, len(view) - q + 1, self.stride) if view[i : i + q] in grams]
        spans = []
        for i in hits:
            for j in range(max(0, i - (n - q)), min(i, len(view) - n) + 1):
                if view[j : j + n] in windows:
                    spans.append((j, j + n))
        return spans


#: The values a source (a token file, a variable) keeps masked: its current one and the ones it
#: had just before, which requests still in flight may carry and a server may echo. Older ones
#: are forgotten: a token refreshed every hour for months would otherwise keep thousands of
#: dead tokens (and their windows, some 0.4 MB each) in memory, and make every new
#: registration rebuild the tables of all of them.
KEPT_PER_SOURCE = 4


class SecretMatcher:
    """Registered secrets, and the masking of them in text (thread-safe; reads take no lock)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._secrets: set[str] = set()
        #: Secrets registered without a source: kept for the life of the process.
        self._pinned: set[str] = set()
        #: Source -> its latest values, the newest last (at most ``KEPT_PER_SOURCE``).
        self._sources: dict[str, list[str]] = {}
        self._windows: dict[int, set[str]] = {}
        #: One table per window length; a secret shorter than FRAGMENT is one window.
        self._tables: tuple[_Table, ...] = ()
        #: Whether a secret holds a character that starts an escape.
        self._escapes_inside = False

    def add(self, secret: str, source: str | None = None) -> bool:
        """Look for ``secret`` (and its fragments and encodings) from now on; True when it
        was not looked for already.

        ``source`` names where the value was read (a token file): a source keeps its last
        ``KEPT_PER_SOURCE`` values masked, an older one is forgotten unless another source
        or a registration without a source holds it.
        """
        if len(secret) < MIN_SECRET_LENGTH:
            return False
        with self._lock:
            retired: set[str] = set()
            if source is None:
                self._pinned.add(secret)
            else:
                values = self._sources.setdefault(source, [])
                if values and values[-1] == secret:
                    return False  # read again, as it is at every use
                if secret in values:
                    values.remove(secret)
                values.append(secret)
                if len(values) > KEPT_PER_SOURCE:
                    retired = set(values[:-KEPT_PER_SOURCE])
                    del values[:-KEPT_PER_SOURCE]
                    retired -= self._pinned
                    retired.difference_update(*self._sources.values())
            new = secret not in self._secrets
            if not new and not retired:
                return False
            self._secrets.add(secret)
            if retired:
                self._secrets -= retired
                self._windows = {}
                self._escapes_inside = False
                for kept in self._secrets:
                    self._index(kept)
            else:
                self._index(secret)
            # One assignment: a reader sees the old tables or the new ones, never half of them.
            self._tables = tuple(
                _Table(n, frozenset(keys)) for n, keys in sorted(self._windows.items())
            )
            return new

    def mask_whole(self, text: str, mask: str) -> str:
        """``text`` with every whole registered secret replaced by ``mask``, as written,
        JSON-escaped or URL-encoded; fragments are left. For values kept to be used again
        (an upload address in a checkpoint note), where a shared run of 8 characters is far
        more likely a coincidence ("linkedin" in a token and in the address) than a leak."""
        with self._lock:
            secrets = tuple(self._secrets)
        for secret in secrets:
            for form in {secret, json.dumps(secret)[1:-1], quote(secret, safe="")}:
                text = text.replace(form, mask)
        return text

    def _index(self, secret: str) -> None:
        self._escapes_inside |= not _ESCAPE_START.isdisjoint(secret)
        for form in _forms(secret):
            n = min(FRAGMENT, len(form))
            self._windows.setdefault(n, set()).update(
                form[i : i + n] for i in range(len(form) - n + 1)
            )

    def mask(self, text: str, mask: str) -> str:
        """``text`` with every registered secret, fragment and encoding replaced by ``mask``."""
        tables = self._tables
        if not tables or len(text) < MIN_SECRET_LENGTH:
            return text
        spans: list[tuple[int, int]] = []
        view = None if _ESCAPE_START.isdisjoint(text) else _View(text)
        decoded = view is not None and bool(view.marks)
        for table in tables:
            # Escapes read as characters; a secret holding a backslash, "%" or "&" is also
            # looked for as written (the view would have decoded its own characters).
            if not decoded or self._escapes_inside:
                spans.extend(table.find(text))
            if decoded:
                assert view is not None
                spans.extend(view.span(i, j) for i, j in _merge(table.find(view.text)))
        if not spans:
            return text
        out: list[str] = []
        pos = 0
        for start, end in _merge(spans):
            out.append(text[pos:start])
            out.append(mask)
            pos = end
        out.append(text[pos:])
        return "".join(out)


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Overlapping or touching spans joined into runs, in order."""
    runs: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if runs and start <= runs[-1][1]:
            if end > runs[-1][1]:
                runs[-1] = (runs[-1][0], end)
        else:
            runs.append((start, end))
    return runs
