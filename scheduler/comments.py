"""First comments: posted once, right after their post is recorded published.

The post is already on the network and in the database as published when its first comment
is tried, so nothing about the comment can make the post count as failed or send it again.
What happened is reported: a post event (``smm queue show``), a log line. A daemon stopped
or killed between the two loses the comment, never the post; the event's absence shows it.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime

import structlog
from sqlalchemy import Engine

from scheduler.adapter import Account, Adapter, OutgoingPost, Published, PublishError
from scheduler.daemon.dispatch import call_plugin
from scheduler.logging import redact
from scheduler.queue import events_t
from scheduler.states import PostState

__all__ = ["COMMENT_TIMEOUT_S", "first_comment", "record"]

log = structlog.get_logger("scheduler.comments")

#: How long a network may take to accept a comment.
COMMENT_TIMEOUT_S = 30.0


async def first_comment(
    adapter: Adapter,
    post: OutgoingPost,
    account: Account,
    remote_id: str,
    remote_url: str | None,
    *,
    timeout: float = COMMENT_TIMEOUT_S,
) -> tuple[bool, str]:
    """Post ``post``'s first comment on the published post ``remote_id``: (done, what to
    report). Never raises: a failing or hanging plugin is a failed comment."""
    text = post.options.first_comment
    if not text:
        return True, ""
    published_post = dataclasses.replace(post, remote_id=remote_id, remote_url=remote_url)
    done, result = await call_plugin(
        adapter.publish_comment(published_post, account, text), timeout
    )
    if not done:
        outcome = (
            False,
            f"first comment: no answer within {timeout:g} s; it may be on the network",
        )
    elif isinstance(result, PublishError):
        outcome = (False, f"first comment failed ({result.error_class}): {result.message}")
    elif isinstance(result, BaseException):
        outcome = (False, f"first comment failed: {type(result).__name__}: {result}")
    elif isinstance(result, Published) and result.remote_id:
        outcome = (True, f"first comment published: {result.url or result.remote_id}")
    else:
        outcome = (False, f"first comment: the plugin returned {type(result).__name__}")
    outcome = (outcome[0], str(redact(outcome[1]))[:2000])
    event = "first_comment_published" if outcome[0] else "first_comment_failed"
    (log.info if outcome[0] else log.warning)(
        event, post=post.key, account=account.name, detail=outcome[1]
    )
    return outcome


def record(engine: Engine, post_id: int, actor: str, at: datetime, message: str) -> None:
    """Keep what happened to a first comment as an event of its (published) post."""
    with engine.begin() as conn:
        conn.execute(
            events_t.insert().values(
                post_id=post_id,
                at=at,
                from_state=PostState.PUBLISHED.value,
                to_state=PostState.PUBLISHED.value,
                actor=actor[:200],
                reason=message,
            )
        )
