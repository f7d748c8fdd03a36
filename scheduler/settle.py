"""What a person gives to settle an ``unconfirmed`` post as published, checked the same way
from the CLI (``smm queue resolve``) and the web app: the network's own id for the post and,
when it has one, its address.

The id is what the adapter's ``publish`` would have returned as ``remote_id``: the metrics
job and ``lookup`` later send it back to the network, so an address given in its place
would leave the post unread for good.
"""

from __future__ import annotations

from urllib.parse import urlsplit

__all__ = ["MAX_GIVEN", "address_problem", "remote_id_problem"]

#: Longest remote id or address taken (ids are tens of characters, addresses at most a
#: couple of hundred).
MAX_GIVEN = 2000

_ID = "the network's id for the post"
_ADDRESS = "the post's address"


def _given_problem(value: str, what: str) -> str:
    """A value typed by hand: one word of printable characters, bounded; "" when it is."""
    from scheduler.text import safe

    if len(value) > MAX_GIVEN:
        return f"{len(value):,} characters, more than {what} can have ({MAX_GIVEN:,})"
    if not value.isprintable() or any(c.isspace() for c in value):
        return f"{safe(value[:80])!r} has a space or a control character, which {what} never has"
    return ""


def remote_id_problem(remote_id: str, url: str | None) -> str:
    """Why ``remote_id`` cannot be the network's id for the post; "" when it can."""
    problem = _given_problem(remote_id, _ID)
    if problem:
        return problem
    if remote_id.startswith(("http://", "https://")) and not url:
        return (
            f"{remote_id[:80]!r} is an address: give the network's id for the post "
            "(`smm queue show` prints it for published posts) and the address beside it"
        )
    return ""


def address_problem(url: str) -> str:
    """Why ``url`` cannot be the post's address; "" when it can."""
    from scheduler.text import safe

    problem = _given_problem(url, _ADDRESS)
    if problem:
        return problem
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{safe(url[:80])!r} is not an http(s) address"
    return ""
