"""Reply chains published part by part, each part a recorded step.

A thread of N parts is N creates. Where the network honours an idempotency key (Mastodon) or
a record key the client chooses (Bluesky), a retry sends the chain again and the network
answers with the parts it already has. X and Threads have neither, so an adapter for them
records each part as it goes, in a checkpoint note (``scheduler.checkpoints``) under the
post's idempotency key::

    {"parts": ["<id of part 1>", "<id of part 2>"], "sending": 3, "data": {...}}

``sending`` is written, durably, before part 3's create leaves; the part's id replaces it
once the network has answered. ``data`` is what the adapter noted for that part on the way
(a Threads container id, say) through the ``note`` callback its ``send`` receives. A failure
that certainly did not take effect (``Transient``, ``RateLimited``, ``Rejected``,
``AuthExpired``) clears ``sending``; any other failure (``OutcomeUnknown``, a crash, a
kill -9) leaves it. An attempt that finds ``sending`` set does not know whether that create
took effect, so it asks the adapter to ``find`` the part on the network first: its id (the
chain goes on after it), None (certainly not there: it is sent), or ``OutcomeUnknown``
(cannot tell yet: the post waits, unconfirmed, and is settled by ``lookup``, which calls
``settle`` here). A chain that fails at part 2 of 3 therefore resumes from part 2; no part
is sent twice, none skipped.

The daemon keeps the notes in its database (see ``scheduler.checkpoints``), so a chain whose
daemon died is resumed from its recorded parts by whichever daemon rescues the post, on this
host or another. A chain with no note at all (one an earlier version noted in a file on
another host, or whose note aged out) cannot be told apart from a post without a thread, so
an adapter's ``lookup`` must not claim it (see ``unrecorded``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog

from scheduler.adapter import (
    ErrorClass,
    OutcomeUnknown,
    PublishError,
    Transient,
)
from scheduler.checkpoints import Checkpoints, NotesUnavailable
from scheduler.timeutil import utcnow

__all__ = ["ChainState", "ReplyChain", "Step", "unrecorded"]

log = structlog.get_logger("scheduler.chains")

#: Failures after which the part certainly does not exist on the network.
_NOT_TAKEN = frozenset(
    {ErrorClass.TRANSIENT, ErrorClass.RATE_LIMITED, ErrorClass.REJECTED, ErrorClass.AUTH_EXPIRED}
)


@dataclass(frozen=True)
class Step:
    """One part of a chain as ``send`` and ``find`` see it."""

    #: The part's number, 1 for the post itself.
    number: int
    total: int
    #: The network's id of the part before (None for part 1) and of part 1.
    parent: str | None
    root: str | None
    #: What the adapter noted for this part at an earlier attempt (empty: nothing).
    data: Mapping[str, Any] = field(default_factory=dict)
    #: When the part was last about to be sent (None: not before this attempt); a listing
    #: that must show the part is read from then on.
    since: datetime | None = None

    def label(self) -> str:
        """How messages name the part: "" for the first, "thread part 2 of 3: " after."""
        return "" if self.number == 1 else f"thread part {self.number} of {self.total}: "


@dataclass
class ChainState:
    """What the note says: the ids of the parts out, in order, and the part maybe in flight."""

    parts: list[str]
    sending: int | None = None
    data: dict[str, Any] = field(default_factory=dict)
    #: When ``sending`` was recorded.
    since: datetime | None = None

    @classmethod
    def read(cls, note: Mapping[str, Any] | None) -> ChainState:
        if not note:
            return cls([])
        parts = note.get("parts")
        sending = note.get("sending")
        data = note.get("data")
        since = note.get("since")
        try:
            when = datetime.fromisoformat(since) if isinstance(since, str) else None
        except ValueError:
            when = None
        return cls(
            [p for p in parts if isinstance(p, str) and p] if isinstance(parts, list) else [],
            sending if isinstance(sending, int) and not isinstance(sending, bool) else None,
            dict(data) if isinstance(data, dict) else {},
            when if when is not None and when.tzinfo is not None else None,
        )

    def as_note(self) -> dict[str, Any]:
        since = self.since.isoformat() if self.since is not None else None
        return {
            "parts": list(self.parts),
            "sending": self.sending,
            "data": self.data,
            "since": since,
        }

    def begin(self, number: int) -> None:
        """Part ``number`` is about to be sent."""
        self.sending, self.data, self.since = number, {}, utcnow()

    def done(self) -> None:
        """No part is in flight any more."""
        self.sending, self.data, self.since = None, {}, None


#: ``send(step, note)``: create the part, return its id. ``note(data)`` durably records
#: ``data`` for the part before a request that may take effect (a container to publish).
Send = Callable[[Step, Callable[[Mapping[str, Any]], Awaitable[None]]], Awaitable[str]]
#: ``find(step)``: the part's id if the network has it, None if it certainly does not;
#: raise ``OutcomeUnknown`` when it cannot tell.
Find = Callable[[Step], Awaitable[str | None]]


class ReplyChain:
    """The recorded progress of one post's reply chain (``platform``, idempotency ``key``)."""

    def __init__(self, checkpoints: Checkpoints, platform: str, key: str, total: int) -> None:
        self.checkpoints = checkpoints
        self.platform = platform
        self.key = key
        self.total = total

    async def load(self) -> ChainState | None:
        """The recorded state, or None when nothing is recorded for this post; ``Transient``
        when the record cannot be read now (nothing is sent without it)."""
        try:
            note = await asyncio.to_thread(self.checkpoints.load, self.platform, self.key)
        except NotesUnavailable as exc:
            raise Transient(f"cannot read the thread's progress: {exc.strerror}") from None
        return None if note is None else ChainState.read(note)

    async def _save(self, state: ChainState, *, sent: bool) -> None:
        try:
            await asyncio.to_thread(self.checkpoints.save, self.platform, self.key, state.as_note())
        except OSError as exc:
            message = f"cannot record the thread's progress ({type(exc).__name__})"
            # Before a send nothing has left yet; after one, the part may be out unrecorded.
            raise (OutcomeUnknown if sent else Transient)(message) from None

    def _step(self, state: ChainState, number: int) -> Step:
        return Step(
            number,
            self.total,
            state.parts[-1] if state.parts else None,
            state.parts[0] if state.parts else None,
            state.data if state.sending == number else {},
            state.since if state.sending == number else None,
        )

    async def settle(self, state: ChainState, find: Find) -> ChainState:
        """Resolve a part left in flight by an earlier attempt (``find``), and record it."""
        if state.sending is None:
            return state
        step = self._step(state, state.sending)
        if state.sending != len(state.parts) + 1:
            raise OutcomeUnknown(f"{step.label()}the thread's record is inconsistent")
        try:
            found = await find(step)
        except PublishError as exc:
            if exc.error_class is ErrorClass.OUTCOME_UNKNOWN:
                exc.message = f"{step.label()}{exc.message}"
                exc.args = (exc.message,)
                raise
            raise OutcomeUnknown(
                f"{step.label()}cannot tell whether it went out: {exc.message}"
            ) from None
        if found is not None:
            state.parts.append(found)
            log.info("thread_part_found", platform=self.platform, part=step.number)
        state.done()
        await self._save(state, sent=True)
        return state

    async def run(self, send: Send, find: Find) -> list[str]:
        """Publish the parts not yet out, in order; the ids of all of them."""
        state = await self.load() or ChainState([])
        state = await self.settle(state, find)
        while len(state.parts) < self.total:
            number = len(state.parts) + 1
            state.begin(number)
            await self._save(state, sent=False)
            step = self._step(state, number)

            async def note(data: Mapping[str, Any], state: ChainState = state) -> None:
                state.data = dict(data)
                await self._save(state, sent=False)

            try:
                part_id = await send(step, note)
            except PublishError as exc:
                if exc.error_class in _NOT_TAKEN:
                    state.done()
                    await self._save(state, sent=False)
                if number > 1:
                    exc.message = f"{step.label()}{exc.message}"
                    exc.args = (exc.message,)
                raise
            state.parts.append(part_id)
            state.done()
            await self._save(state, sent=True)
            log.info("thread_part_published", platform=self.platform, part=number, of=self.total)
        return list(state.parts)


def unrecorded(network: str) -> OutcomeUnknown:
    """What ``lookup`` raises for a thread whose first part is on the network but which has
    no record at all (noted by an earlier version in a file on another host, or aged out):
    whether the other parts went out cannot be told safely."""
    return OutcomeUnknown(
        f"{network}: the thread's first part is out, but no record of its other parts is "
        "kept; check the thread and settle it with `smm queue resolve`"
    )
