"""Quota budgets: windows, plan warnings (8 YouTube uploads in a day on a 10,000-unit quota),
the ledger, and adapters that wait instead of sending a call the budget says will be refused."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from smm_youtube import YouTubeAdapter
from youtube_fake import FakeYouTube

from scheduler.adapter import OutgoingPost, Published, RateLimited
from scheduler.budgets import Budget, Ledger, PlannedPost, plan_warnings, window
from scheduler.checkpoints import Checkpoints
from scheduler.cli import cli
from scheduler.testing import account_with_secrets, offline_adapter

YT = Budget("youtube-units", "YouTube Data API quota units", 10_000, "day", "America/Los_Angeles")


def test_a_pacific_quota_day_starts_at_midnight_pacific_in_winter_and_summer() -> None:
    winter = window(YT, datetime(2030, 1, 7, 9, 0, tzinfo=UTC))
    assert winter == (
        datetime(2030, 1, 7, 8, 0, tzinfo=UTC),
        datetime(2030, 1, 8, 8, 0, tzinfo=UTC),
    )
    summer = window(YT, datetime(2030, 7, 7, 6, 59, tzinfo=UTC))
    assert summer == (
        datetime(2030, 7, 6, 7, 0, tzinfo=UTC),
        datetime(2030, 7, 7, 7, 0, tzinfo=UTC),
    )
    # The day DST begins lasts 23 hours.
    spring = window(YT, datetime(2030, 3, 10, 12, 0, tzinfo=UTC))
    assert spring[1] - spring[0] == timedelta(hours=23)


def test_a_month_window_and_a_rolling_one() -> None:
    month = Budget("x", "posts", 500, "month")
    assert window(month, datetime(2030, 2, 14, tzinfo=UTC)) == (
        datetime(2030, 2, 1, tzinfo=UTC),
        datetime(2030, 3, 1, tzinfo=UTC),
    )
    rolling = Budget("t", "posts", 15, timedelta(hours=24))
    at = datetime(2030, 2, 14, 12, tzinfo=UTC)
    assert window(rolling, at) == (at - timedelta(hours=24), at)


def _uploads(n: int, day: datetime, cost: int = 1606) -> list[PlannedPost]:
    return [
        PlannedPost(f"v{i}", f"plan.yaml:{i}", day + timedelta(hours=i), {YT.key: cost})
        for i in range(1, n + 1)
    ]


def test_eight_uploads_in_one_day_leave_the_seventh_and_eighth_uncovered() -> None:
    day = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)  # 01:00 Pacific: all eight on one quota day
    (warning,) = plan_warnings([YT], _uploads(8, day))
    assert warning["posts"] == ["v7", "v8"]
    assert warning["sources"] == ["plan.yaml:7", "plan.yaml:8"]
    assert (
        "10,000 per day (America/Los_Angeles) would be exceeded on 2030-01-07" in warning["message"]
    )
    assert plan_warnings([YT], _uploads(6, day)) == []


def test_uploads_split_over_two_quota_days_fit() -> None:
    first = _uploads(4, datetime(2030, 1, 7, 9, 0, tzinfo=UTC))
    second = [
        PlannedPost(
            f"w{i}", f"plan.yaml:{20 + i}", datetime(2030, 1, 8, 9 + i, tzinfo=UTC), {YT.key: 1606}
        )
        for i in range(4)
    ]
    assert plan_warnings([YT], first + second) == []


def test_a_rolling_cap_counts_the_last_24_hours() -> None:
    cap = Budget("tiktok-posts", "TikTok posts through the API", 2, timedelta(hours=24))
    start = datetime(2030, 1, 7, tzinfo=UTC)
    posts = [
        PlannedPost(f"t{i}", f"p:{i}", start + timedelta(hours=h), {cap.key: 1})
        for i, h in enumerate((0, 10, 20, 25))
    ]
    (warning,) = plan_warnings([cap], posts)
    assert warning["posts"] == ["t2"]  # 20 h: two in the last 24 h; 25 h: t0 has aged out


def test_the_ledger_spends_until_the_limit_then_says_when_it_resets(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "budgets")
    now = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)
    for i in range(6):
        assert ledger.spend(YT, 1606, now + timedelta(minutes=i)) is None
    assert ledger.spend(YT, 1606, now + timedelta(hours=1)) == datetime(
        2030, 1, 8, 8, 0, tzinfo=UTC
    )
    assert ledger.spent(YT, now + timedelta(hours=2)) == 6 * 1606
    assert ledger.spend(YT, 1606, datetime(2030, 1, 8, 8, 1, tzinfo=UTC)) is None  # a new day
    assert Ledger(tmp_path / "budgets").spent(YT, now) == 6 * 1606  # on disk, for every daemon


def test_a_rolling_ledger_frees_units_as_they_age_out(tmp_path: Path) -> None:
    cap = Budget("tiktok-posts", "TikTok posts", 2, timedelta(hours=24))
    ledger = Ledger(tmp_path)
    now = datetime(2030, 1, 7, tzinfo=UTC)
    assert ledger.spend(cap, 1, now) is None
    assert ledger.spend(cap, 1, now + timedelta(hours=5)) is None
    assert ledger.spend(cap, 1, now + timedelta(hours=6)) == now + timedelta(hours=24)


@pytest.mark.usefixtures("media_roots")
def test_the_youtube_adapter_publishes_what_the_quota_covers_and_holds_the_rest(
    tmp_path: Path,
) -> None:
    fake = FakeYouTube()
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + b"\0" * 1000)
    account = account_with_secrets(
        "brand-yt",
        "youtube",
        {"processing_checks": 0},
        secrets={"access_token": "ya29.secret-youtube-token"},
    )

    async def day_of_uploads() -> list[Published | RateLimited]:
        results: list[Published | RateLimited] = []
        async with httpx.AsyncClient(transport=httpx.MockTransport(fake.handler)) as client:
            adapter = YouTubeAdapter(client, Checkpoints(tmp_path / "cp"), Ledger(tmp_path / "b"))
            for i in range(8):
                post = OutgoingPost(
                    key=f"v{i}",
                    account="brand-yt",
                    content_type="instruction",
                    text=f"Video {i}",
                    media=(str(video),),
                    idempotency_key=f"v{i}-key",
                )
                try:
                    results.append(await adapter.publish(post, account, post.idempotency_key))
                except RateLimited as exc:
                    results.append(exc)
        return results

    results = asyncio.run(day_of_uploads())
    assert [type(r).__name__ for r in results] == ["Published"] * 6 + ["RateLimited"] * 2
    assert len(fake.inits) == 6  # nothing was sent for the two the quota does not cover
    held = results[6]
    assert isinstance(held, RateLimited)
    assert held.retry_at is not None
    assert held.retry_at == window(YT, datetime.now(UTC))[1]
    assert "quota of 10,000 units" in held.message


CONFIG = """
[accounts.yt]
platform = "youtube"
timezone = "Europe/Berlin"
credentials = { access_token = { env = "SMM_TEST_YT_TOKEN" } }
"""


def test_plan_validate_warns_about_the_uploads_the_quota_does_not_cover(tmp_path: Path) -> None:
    plans = tmp_path / "plans"
    plans.mkdir()
    (plans / "clip.mp4").write_bytes(
        b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + b"\0" * 64
    )
    items = [
        f"- {{id: v{i}, account: yt, type: t, text: 'Video {i}', at: '2031-03-04 {10 + i}:00', "
        "media: [clip.mp4]}"
        for i in range(1, 9)
    ]
    plan = plans / "week.yaml"
    plan.write_text("\n".join(items) + "\n", encoding="utf-8")
    config = tmp_path / "config.toml"
    config.write_text(CONFIG, encoding="utf-8")
    db = f"sqlite:///{tmp_path / 'smm.db'}"
    args = ["--db", db, "--config", str(config), "plan", "validate"]
    result = CliRunner().invoke(cli, [*args, str(plan)])
    assert result.exit_code == 0, result.output
    assert "OK: 8 post(s)" in result.stdout
    assert "warning: YouTube Data API quota units: 10,000 per day" in result.stderr
    assert "not covered: v7 (" in result.stderr
    assert "v8 (" in result.stderr
    result = CliRunner().invoke(cli, [*args, "--json", str(plan)])
    report = json.loads(result.stdout)
    assert report["ok"] is True
    (warning,) = report["warnings"]
    assert warning["posts"] == ["v7", "v8"]


def test_accounts_list_shows_what_is_left_of_the_quota(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))
    config = tmp_path / "config.toml"
    config.write_text(CONFIG, encoding="utf-8")
    budget = Budget(
        "youtube-units",
        "YouTube Data API quota units",
        10_000,
        "day",
        "America/Los_Angeles",
        scope="yt",
    )
    Ledger().spend(budget, 1606, datetime.now(UTC))
    db = f"sqlite:///{tmp_path / 'smm.db'}"
    runner = CliRunner()
    assert runner.invoke(cli, ["--db", db, "--config", str(config), "init"]).exit_code == 0
    result = runner.invoke(cli, ["--db", db, "--config", str(config), "accounts", "list", "--json"])
    assert result.exit_code == 0, result.output
    (account,) = json.loads(result.stdout)
    (entry,) = account["budgets"]
    assert (entry["budget"], entry["spent"], entry["left"]) == ("youtube-units", 1606, 8394)
    table = runner.invoke(cli, ["--db", db, "--config", str(config), "accounts", "list"])
    assert "8,394/10,000" in table.stdout


def test_an_x_account_on_a_tier_stops_at_its_monthly_cap_without_sending(
    tmp_path: Path,
) -> None:
    from smm_x import XAdapter

    account = account_with_secrets(
        "brand-x", "x", {"tier": "basic"}, secrets={"access_token": "x-token"}
    )
    ledger = Ledger(tmp_path)
    adapter = offline_adapter(lambda client: XAdapter(client, ledger))
    (budget,) = adapter.budgets(account)
    assert (budget.limit, budget.period) == (3000, "month")
    now = datetime.now(UTC)
    assert ledger.spend(budget, 3000, now) is None
    sent: list[httpx.Request] = []

    def network(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(201, json={"data": {"id": "1", "text": "hi"}})

    async def go() -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(network)) as client:
            post = OutgoingPost(key="p", account="brand-x", content_type="t", text="hi")
            await XAdapter(client, ledger).publish(post, account, "k")

    with pytest.raises(RateLimited, match="month's cap of 3,000 posts") as caught:
        asyncio.run(go())
    assert sent == []
    assert caught.value.retry_at == window(budget, now)[1]
    # Without a tier nothing is assumed.
    plain = account_with_secrets("b", "x", {}, secrets={"access_token": "t"})
    assert adapter.budgets(plain) == []


OK_CONFIG = """
[accounts.okg]
platform = "ok"
timezone = "Europe/Moscow"
options = { group_id = "70000001952510", topics_per_day = 3 }

[accounts.okg.credentials]
access_token = { env = "SMM_TEST_OK_TOKEN" }
application_key = { env = "SMM_TEST_OK_KEY" }
application_secret_key = { env = "SMM_TEST_OK_SECRET" }
"""


def test_plan_validate_warns_about_ok_topics_past_the_flood_budget(tmp_path: Path) -> None:
    plan = tmp_path / "day.yaml"
    items = [
        f"- {{id: t{i}, account: okg, type: t, text: 'Topic {i}', at: '2031-03-04 {9 + i}:00'}}"
        for i in range(1, 6)
    ]
    plan.write_text("\n".join(items) + "\n", encoding="utf-8")
    config = tmp_path / "config.toml"
    config.write_text(OK_CONFIG, encoding="utf-8")
    args = ["--db", f"sqlite:///{tmp_path / 'smm.db'}", "--config", str(config), "plan"]
    result = CliRunner().invoke(cli, [*args, "validate", "--json", str(plan)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [key for w in report["warnings"] for key in w["posts"]] == ["t4", "t5"]
    assert report["warnings"][0]["budget"] == "ok-topics"
