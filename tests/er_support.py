"""Builders shared by the ER tests (this module holds no tests): accounts, posts, snapshots.

Rows go straight into the tables, so each test states exactly the history it needs.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import httpx
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Connection

from scheduler.adapter import Account as AdapterAccount
from scheduler.adapter import Adapter, Capabilities, Metrics, OutgoingPost, Published
from scheduler.cli import cli
from scheduler.db.models import Account, MetricSnapshot, Post, PostState, Schedule

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
HOUR = timedelta(hours=1)

accounts_t = Account.__table__  # type: ignore[attr-defined]
posts_t = Post.__table__  # type: ignore[attr-defined]
snapshots_t = MetricSnapshot.__table__  # type: ignore[attr-defined]

_ids = itertools.count(1)


@dataclass
class Builder:
    """Writes test data through one connection; ``now`` stamps created/updated times."""

    conn: Connection
    now: datetime = T0
    accounts: dict[str, int] = field(default_factory=dict)

    def account(self, name: str = "acc", platform: str = "sim") -> int:
        result = self.conn.execute(
            accounts_t.insert().values(
                name=name,
                platform=platform,
                timezone="UTC",
                paused=False,
                auth_state="ok",
                created_at=self.now,
                updated_at=self.now,
            )
        )
        assert result.inserted_primary_key is not None
        self.accounts[name] = int(result.inserted_primary_key[0])
        return self.accounts[name]

    def post(
        self,
        account_id: int,
        content_type: str,
        *,
        state: str = PostState.PUBLISHED,
        published_at: datetime | None = None,
        followers: int | None = None,
        evergreen: bool = False,
        key: str | None = None,
        plan_order: int | None = None,
        schedule: str = Schedule.QUEUE,
        due_at: datetime | None = None,
        **extra: Any,
    ) -> int:
        n = next(_ids)
        published = state == PostState.PUBLISHED
        values = {
            "key": key or f"p{n}",
            "account_id": account_id,
            "content_type": content_type,
            "text": f"post {n}",
            "media": [],
            "tags": [],
            "evergreen": evergreen,
            "schedule": schedule,
            "plan_order": n if plan_order is None else plan_order,
            "content_hash": "0" * 64,
            "state": state,
            "due_at": due_at,
            "next_attempt_at": due_at,
            "idempotency_key": f"idem-{n}",
            "attempt_count": 0,
            "repeat_count": 0,
            "published_at": (published_at or self.now - 5 * DAY) if published else None,
            "remote_id": f"r{n}" if published else None,
            "followers_at_publish": followers,
            "created_at": self.now,
            "updated_at": self.now,
            **extra,
        }
        result = self.conn.execute(posts_t.insert().values(**values))
        assert result.inserted_primary_key is not None
        return int(result.inserted_primary_key[0])

    def snapshot(self, post_id: int, age: timedelta, **counters: int | None) -> None:
        self.conn.execute(
            snapshots_t.insert().values(
                post_id=post_id,
                collected_at=self.now,
                age_seconds=int(age.total_seconds()),
                **counters,
            )
        )

    def measured(
        self,
        account_id: int,
        content_type: str,
        er: float,
        *,
        published_at: datetime | None = None,
        reach: int = 10_000,
        ages: Iterable[timedelta] = (24 * HOUR, 72 * HOUR),
        growth: float = 1.0,
    ) -> int:
        """A published post whose ER by reach is ``er`` at its last reading (``er / growth``
        at the earlier ones), read at ``ages``."""
        post_id = self.post(account_id, content_type, published_at=published_at)
        ages = sorted(ages)
        for i, age in enumerate(ages):
            value = er if i == len(ages) - 1 else er / growth
            self.snapshot(
                post_id, age, likes=round(value * reach), comments=0, shares=0, reach=reach
            )
        return post_id


class FakeAdapter(Adapter):
    """Answers from a table of counters per remote id, or misbehaves as told."""

    platform: ClassVar[str] = "fake"
    capabilities: ClassVar[Capabilities] = Capabilities(text_limit=500, has_reach=True)

    def __init__(self, answer: Any = None, *, raises: bool = False, hangs: bool = False) -> None:
        super().__init__(httpx.AsyncClient())
        self.answer = answer
        self.raises = raises
        self.hangs = hangs
        self.calls: list[tuple[str, list[str]]] = []

    async def publish(
        self, post: OutgoingPost, account: AdapterAccount, idempotency_key: str
    ) -> Published:
        raise NotImplementedError

    async def fetch_metrics(
        self, posts: Sequence[OutgoingPost], account: AdapterAccount
    ) -> Mapping[str, Metrics]:
        self.calls.append((account.name, sorted(p.remote_id or "" for p in posts)))
        if self.raises:
            raise RuntimeError("the network is down")
        if self.hangs:
            await asyncio.sleep(5)
        if callable(self.answer):
            return self.answer(posts)  # type: ignore[no-any-return]
        return self.answer  # type: ignore[no-any-return]


def counters(posts: Sequence[OutgoingPost]) -> dict[str, Metrics]:
    """An adapter answer: 10 likes, 2 comments, unknown shares, reach 100 for every post."""
    return {
        p.remote_id or "": Metrics(p.remote_id or "", likes=10, comments=2, shares=None, reach=100)
        for p in posts
    }


def cli_at_t0(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """``smm`` on the test database with "now" fixed at T0 (no config file): call it with
    the command's arguments, and ``expect`` the exit code."""
    monkeypatch.setattr("scheduler.cli.app.App.now", lambda self: T0)
    monkeypatch.delenv("SMM_CONFIG", raising=False)

    def run(*args: str, expect: int = 0) -> Result:
        result = CliRunner().invoke(cli, ["--db", db_url, *args], catch_exceptions=False)
        assert result.exit_code == expect, result.output
        return result

    return run
