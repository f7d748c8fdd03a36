"""Post states: the states, the sets the code asks about, and the transitions allowed.

One place for the state machine of docs/design.md#post-states. The models, their partial
indexes, the queue operations, the daemon's store and ``smm status`` read their sets from
here, and tests/test_states.py checks that every write path moves a post only along
``TRANSITIONS``. This module imports nothing heavy: the CLI reads it before any database
library is loaded.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable


class PostState(enum.StrEnum):
    """Where a post is in its life (docs/design.md#post-states)."""

    QUEUED = "queued"
    CLAIMED = "claimed"
    RETRY_WAIT = "retry_wait"
    PUBLISHED = "published"
    FAILED = "failed"
    UNCONFIRMED = "unconfirmed"
    MISSED = "missed"
    CANCELLED = "cancelled"
    PAUSED = "paused"
    #: Waiting for sign-off (its account needs approval); holds its time, never claimed.
    PENDING_APPROVAL = "pending_approval"
    #: Sent back by an approver with a comment; waits for a changed plan item or an approval.
    CHANGES_REQUESTED = "changes_requested"


S = PostState

#: States the daemon claims from once ``next_attempt_at`` has come (``ix_posts_due``).
DUE_STATES: tuple[PostState, ...] = (S.QUEUED, S.RETRY_WAIT)
#: States the web calendar reads by due time (``ix_posts_calendar``); the due states it reads
#: through ``ix_posts_due``. Not the states a new post starts in (but where sign-off is
#: required), so that a plan import writes nothing to that index.
CALENDAR_STATES: tuple[PostState, ...] = tuple(s for s in S if s not in DUE_STATES)
#: States a post can still leave on its own (the daemon will act on it).
PENDING_STATES = frozenset({S.QUEUED, S.RETRY_WAIT, S.CLAIMED})
#: States that only a person (or the plan) moves a post out of.
TERMINAL_STATES = frozenset({S.PUBLISHED, S.FAILED, S.MISSED, S.CANCELLED})
#: States of a post that waits for sign-off (``ix_posts_awaiting``); no daemon claims it.
AWAITING_APPROVAL: tuple[PostState, ...] = (S.PENDING_APPROVAL, S.CHANGES_REQUESTED)
#: States in which a post still holds its time (its slot is taken).
HOLDING_STATES: tuple[PostState, ...] = (
    *(S.QUEUED, S.CLAIMED, S.RETRY_WAIT, S.PAUSED),
    *AWAITING_APPROVAL,
)
#: States a person may cancel (or reschedule) a post from.
CANCELLABLE: tuple[PostState, ...] = (
    *(S.QUEUED, S.RETRY_WAIT, S.PAUSED, S.FAILED, S.MISSED),
    *AWAITING_APPROVAL,
)
#: States ``smm queue retry`` (and a plan that fixed the post) queue again.
RETRYABLE: tuple[PostState, ...] = (S.FAILED, S.MISSED, S.CANCELLED)
#: States no plan import touches: the post is, or may be, on the network.
LOCKED = frozenset({S.PUBLISHED, S.UNCONFIRMED, S.CLAIMED})
#: States that end an attempt badly and wait for a person (``ix_posts_settling``).
SETTLING_STATES: tuple[PostState, ...] = (S.UNCONFIRMED, S.FAILED, S.MISSED)

#: Every move a post may make, from -> the states it may go to. Nothing else writes a
#: ``posts.state``; a new post starts ``queued`` (or ``paused`` in a paused account, or
#: ``pending_approval`` in an account that needs approval).
#: A changed plan item asks for approval again where the account needs it: hence the moves
#: to ``pending_approval`` from every state a plan import updates or queues again.
TRANSITIONS: dict[PostState, frozenset[PostState]] = {
    # claimed by a daemon; too late by the misfire policy; the account paused (by hand or
    # because its credentials expired); cancelled; updated in place by the plan or a reschedule
    S.QUEUED: frozenset({S.CLAIMED, S.MISSED, S.PAUSED, S.CANCELLED, S.PENDING_APPROVAL}),
    S.RETRY_WAIT: frozenset(
        {S.CLAIMED, S.MISSED, S.PAUSED, S.CANCELLED, S.QUEUED, S.PENDING_APPROVAL}
    ),
    # the attempt's outcome (or the rescue of an expired lease)
    S.CLAIMED: frozenset({S.PUBLISHED, S.RETRY_WAIT, S.FAILED, S.UNCONFIRMED, S.PAUSED}),
    # reconciled by the adapter, or settled by hand (`smm queue resolve`)
    S.UNCONFIRMED: frozenset({S.PUBLISHED, S.RETRY_WAIT}),
    S.FAILED: frozenset({S.QUEUED, S.CANCELLED, S.PENDING_APPROVAL}),
    S.MISSED: frozenset({S.QUEUED, S.CANCELLED, S.PENDING_APPROVAL}),
    S.CANCELLED: frozenset({S.QUEUED, S.PENDING_APPROVAL}),
    S.PAUSED: frozenset({S.QUEUED, S.CANCELLED}),
    # approved (`smm queue approve`, the web app), sent back, cancelled; a changed plan item
    # of an account that no longer needs approval is queued
    S.PENDING_APPROVAL: frozenset({S.QUEUED, S.CHANGES_REQUESTED, S.CANCELLED}),
    S.CHANGES_REQUESTED: frozenset({S.QUEUED, S.PENDING_APPROVAL, S.CANCELLED}),
    S.PUBLISHED: frozenset(),
}
#: States a new post is inserted in.
INITIAL_STATES = frozenset({S.QUEUED, S.PAUSED, S.PENDING_APPROVAL})


def allowed(from_state: str | None, to_state: str) -> bool:
    """Whether a post may move from ``from_state`` (None: a new post) to ``to_state``.

    Staying in the same state (a changed time, say) is always allowed."""
    if from_state is None:
        return to_state in INITIAL_STATES
    if from_state == to_state:
        return True
    return PostState(to_state) in TRANSITIONS[PostState(from_state)]


def sources(to_state: str) -> frozenset[PostState]:
    """The states a post may reach ``to_state`` from."""
    return frozenset(s for s, targets in TRANSITIONS.items() if to_state in targets)


def sql_in(states: Iterable[str], column: str = "state") -> str:
    """``state IN ('queued', 'retry_wait')``: the states as SQL literals. A partial index
    serves only a query that spells its condition the same way (not bound parameters)."""
    names = [str(PostState(s)) for s in states]
    if len(names) == 1:
        return f"{column} = '{names[0]}'"
    return f"{column} IN (" + ", ".join(f"'{n}'" for n in names) + ")"
