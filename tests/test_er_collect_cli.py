"""``smm er collect``: read the metrics due now, or (``--now``) a post just published."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

from click.testing import CliRunner
from sqlalchemy import func, select

from scheduler.adapter import Account, Adapter, Capabilities, Metrics, OutgoingPost, Published
from scheduler.cli import cli
from scheduler.db.engine import make_engine
from scheduler.db.models import MetricSnapshot
from scheduler.hookspecs import hookimpl
from scheduler.queue import accounts_t, posts_t
from scheduler.timeutil import utcnow
from tests.daemon_support import registered


class MetricNet(Adapter):
    platform = "metricnet"
    capabilities = Capabilities(text_limit=500, metrics=frozenset({"likes"}))
    asked: ClassVar[list[str]] = []

    async def publish(
        self, post: OutgoingPost, account: Account, idempotency_key: str
    ) -> Published:
        raise AssertionError("not published here")

    async def fetch_metrics(
        self, posts: Sequence[OutgoingPost], account: Account
    ) -> Mapping[str, Metrics]:
        MetricNet.asked += [p.remote_id or "" for p in posts]
        return {p.remote_id or "": Metrics(p.remote_id or "", likes=3) for p in posts}


class MetricNetPlugin:
    @hookimpl
    def register_platforms(self, register: Any) -> None:
        register(MetricNet)


def test_collect_reads_what_is_due_and_now_reads_a_fresh_post(
    sqlite_url: str, tmp_path: Path
) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[accounts.m]\nplatform = "metricnet"\ntimezone = "UTC"\n', encoding="utf-8")
    engine = make_engine(sqlite_url)
    now = utcnow()
    with engine.begin() as conn:
        account = conn.execute(
            accounts_t.insert()
            .values(name="m", platform="metricnet", timezone="UTC", created_at=now, updated_at=now)
            .returning(accounts_t.c.id)
        ).scalar_one()
        conn.execute(
            posts_t.insert().values(
                key="p1", account_id=account, content_type="laugh", text="hi", schedule="fixed",
                content_hash="h", state="published", idempotency_key=uuid.uuid4().hex,
                remote_id="r-1", published_at=now - timedelta(minutes=5), due_at=now,
                created_at=now, updated_at=now,
            )
        )  # fmt: skip

    def collect(*args: str) -> dict[str, Any]:
        result = CliRunner().invoke(
            cli, ["--db", sqlite_url, "--config", str(config), "er", "collect", "--json", *args]
        )
        assert result.exit_code == 0, result.output
        return dict(json.loads(result.stdout))

    MetricNet.asked = []
    with registered(("metricnet", MetricNetPlugin())):
        assert collect() == {"snapshots": 0}  # five minutes old: its first band is at 1 h
        assert collect("--now") == {"snapshots": 1}
        assert collect("--now") == {"snapshots": 0}  # read once
    assert MetricNet.asked == ["r-1"]
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(MetricSnapshot)).scalar_one() == 1
    engine.dispose()
