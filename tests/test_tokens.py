"""Access tokens refreshed before expiry, written back only to their credential file, with
failures visible in the log, the metrics and ``smm status`` before the token dies."""

from __future__ import annotations

import asyncio
import json
import secrets
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
from structlog.testing import capture_logs

from scheduler import observability, tokens
from scheduler.adapter import Account, AuthExpired, Transient
from scheduler.config import AccountConfig, Config, CredentialRef
from scheduler.logging import redact
from scheduler.tokens import TokenSet

NOW = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)


class FakeRefresher:
    """An adapter that refreshes: each call answers the next of ``answers``."""

    platform = "fake"
    refresh_lead: ClassVar[timedelta] = timedelta(minutes=10)
    rotates_refresh_token: ClassVar[bool] = False

    def __init__(self, *answers: TokenSet | Exception) -> None:
        self.answers = list(answers)
        self.calls = 0

    async def refresh_token(self, account: Account) -> TokenSet:
        self.calls += 1
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def write(path: Path, text: str) -> CredentialRef:
    path.write_text(text)
    path.chmod(0o600)
    return CredentialRef("file", str(path))


@pytest.fixture
def files(tmp_path: Path) -> dict[str, CredentialRef]:
    return {
        "access_token": write(tmp_path / "access", "old-access\n"),
        "refresh_token": write(tmp_path / "refresh", "the-refresh\n"),
    }


def account(credentials: dict[str, CredentialRef]) -> Account:
    return Account("brand", "fake", "UTC", {}, credentials)


def refresh(adapter: Any, acc: Account, now: datetime = NOW) -> tokens.TokenState | None:
    return asyncio.run(tokens.refresh_if_due(adapter, acc, now))


def test_an_unknown_expiry_is_refreshed_and_the_new_token_replaces_the_file(
    files: dict[str, CredentialRef], tmp_path: Path
) -> None:
    adapter = FakeRefresher(TokenSet("new-access", NOW + timedelta(hours=1)))
    acc = account(files)
    with capture_logs() as logs:
        state = refresh(adapter, acc)
    assert state is not None
    assert state.expires_at == NOW + timedelta(hours=1)
    assert acc.secret("access_token") == "new-access"
    assert stat.S_IMODE((tmp_path / "access").stat().st_mode) == 0o600
    stored = json.loads((tmp_path / "access.state.json").read_text())
    assert stored["expires_at"] == (NOW + timedelta(hours=1)).isoformat()
    assert "new-access" not in (tmp_path / "access.state.json").read_text()
    assert [e["event"] for e in logs] == ["token_refreshed"]
    assert "new-access" not in repr(logs)


def test_a_token_far_from_expiry_is_left_alone_and_one_near_it_is_refreshed(
    files: dict[str, CredentialRef],
) -> None:
    adapter = FakeRefresher(
        TokenSet("a1", NOW + timedelta(hours=1)), TokenSet("a2", NOW + timedelta(hours=2))
    )
    acc = account(files)
    refresh(adapter, acc)
    refresh(adapter, acc, NOW + timedelta(minutes=30))
    assert adapter.calls == 1
    refresh(adapter, acc, NOW + timedelta(minutes=51))  # 9 minutes left, lead is 10
    assert adapter.calls == 2
    assert acc.secret("access_token") == "a2"


def test_a_rotated_refresh_token_is_stored_too(files: dict[str, CredentialRef]) -> None:
    adapter = FakeRefresher(TokenSet("a1", NOW + timedelta(days=1), refresh_token="r2"))
    adapter.rotates_refresh_token = True  # type: ignore[misc]
    acc = account(files)
    refresh(adapter, acc)
    assert acc.secret("refresh_token") == "r2"


def test_a_failed_refresh_keeps_the_token_records_the_failure_and_logs_it(
    files: dict[str, CredentialRef], tmp_path: Path
) -> None:
    adapter = FakeRefresher(
        TokenSet("a1", NOW + timedelta(hours=1)),
        AuthExpired("Google: token refresh refused: Token has been expired or revoked."),
    )
    acc = account(files)
    refresh(adapter, acc)
    with capture_logs() as logs:
        state = refresh(adapter, acc, NOW + timedelta(minutes=55))
    assert state is not None
    assert state.error == "Google: token refresh refused: Token has been expired or revoked."
    assert state.failed_at == NOW + timedelta(minutes=55)
    assert state.expires_at == NOW + timedelta(hours=1)
    assert acc.secret("access_token") == "a1"
    (event,) = logs
    assert event["event"] == "token_refresh_failed"
    assert event["log_level"] == "error"
    assert event["expires_at"] == NOW + timedelta(hours=1)


def test_tokens_in_environment_variables_are_not_refreshable(
    files: dict[str, CredentialRef],
) -> None:
    adapter = FakeRefresher()
    acc = account({**files, "access_token": CredentialRef("env", "TOKEN")})
    assert "not a file" in str(tokens.why_not_refreshable(adapter, acc))
    assert refresh(adapter, acc) is None
    assert adapter.calls == 0


def test_a_rotating_network_needs_a_writable_refresh_token(
    files: dict[str, CredentialRef],
) -> None:
    adapter = FakeRefresher()
    adapter.rotates_refresh_token = True  # type: ignore[misc]
    acc = account({**files, "refresh_token": CredentialRef("credential", "rt")})
    assert "refresh_token must be a file" in str(tokens.why_not_refreshable(adapter, acc))
    assert tokens.why_not_refreshable(object(), acc) == "the fake plugin cannot refresh tokens"


def test_concurrent_checks_refresh_once(files: dict[str, CredentialRef]) -> None:
    adapter = FakeRefresher(TokenSet("a1", NOW + timedelta(hours=1)))
    acc = account(files)

    async def many() -> None:
        await asyncio.gather(*(tokens.refresh_if_due(adapter, acc, NOW) for _ in range(5)))

    asyncio.run(many())
    assert adapter.calls == 1


def test_the_metrics_show_the_expiry_and_count_failures(files: dict[str, CredentialRef]) -> None:
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    observability.enable(registry)
    try:
        adapter = FakeRefresher(
            TokenSet("a1", NOW + timedelta(hours=1)), Transient("TikTok: token refresh: 503")
        )
        acc = account(files)
        refresh(adapter, acc)
        refresh(adapter, acc, NOW + timedelta(minutes=55))
        labels = {"platform": "fake", "account": "brand"}
        expiry = registry.get_sample_value("smm_token_expiry_timestamp_seconds", labels)
        assert expiry == (NOW + timedelta(hours=1)).timestamp()
        failures = registry.get_sample_value("smm_token_refresh_failures_total", labels)
        assert failures == 1
    finally:
        observability.disable()


# --------------------------------------------------------------------------- OAuth 2


def _oauth(handler: Any, form: dict[str, str]) -> TokenSet:
    async def go() -> TokenSet:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            return await tokens.oauth2_refresh(
                client, "https://oauth2.example.com/token", form, network="Google", now=NOW
            )

    return asyncio.run(go())


def test_oauth2_refresh_sends_the_grant_and_reads_the_answer() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        # Google's answer (https://developers.google.com/identity/protocols/oauth2/web-server#offline)
        return httpx.Response(
            200,
            json={
                "access_token": "ya29.new",
                "expires_in": 3599,
                "scope": "https://www.googleapis.com/auth/youtube.upload",
                "token_type": "Bearer",
            },
        )

    form = {"grant_type": "refresh_token", "refresh_token": "1//r", "client_id": "c"}
    result = _oauth(handler, form)
    assert result == TokenSet("ya29.new", NOW + timedelta(seconds=3599), None)
    assert seen[0].content.decode() == "grant_type=refresh_token&refresh_token=1%2F%2Fr&client_id=c"


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (
            400,
            {"error": "invalid_grant", "error_description": "Token has been expired or revoked."},
            AuthExpired,
        ),
        (401, {"error": "invalid_client", "error_description": "Unauthorized"}, AuthExpired),
        (503, {"error": "server_error"}, Transient),
    ],
)
def test_oauth2_refresh_errors(
    status: int, body: dict[str, Any], expected: type[Exception]
) -> None:
    form = {"grant_type": "refresh_token", "refresh_token": "r-secret", "client_secret": "cs"}
    with pytest.raises(expected) as caught:
        _oauth(lambda r: httpx.Response(status, json=body), form)
    assert "r-secret" not in str(caught.value)


# --------------------------------------------------------------------------- smm status


def _config(files: dict[str, CredentialRef], platform: str = "youtube") -> Config:
    acc = AccountConfig(name="brand", platform=platform, timezone="UTC", credentials=files)
    return Config(path=None, accounts={"brand": acc})


@pytest.fixture
def youtube_files(files: dict[str, CredentialRef], tmp_path: Path) -> dict[str, CredentialRef]:
    return {
        **files,
        "client_id": write(tmp_path / "cid", "cid"),
        "client_secret": write(tmp_path / "cs", "cs"),
    }


def test_health_flags_a_failing_refresh_hours_before_expiry(
    youtube_files: dict[str, CredentialRef], tmp_path: Path
) -> None:
    from smm_youtube import YouTubeAdapter

    state = tokens.TokenState(
        expires_at=NOW + timedelta(hours=5),
        refreshed_at=NOW - timedelta(minutes=55),
        failed_at=NOW - timedelta(minutes=5),
        error="Google: token refresh refused: invalid_grant",
    )
    (tmp_path / "access.state.json").write_text(json.dumps(state.to_json()))
    report = tokens.health(_config(youtube_files), {"youtube": YouTubeAdapter}, NOW)
    (entry,) = report
    assert entry["problem"].startswith("token refresh of brand failing since 2030-01-07 08:55 UTC")
    assert "expires at 2030-01-07 14:00 UTC" in entry["problem"]
    # The same failure with a day left is not yet a person's problem.
    state.expires_at = NOW + timedelta(days=1)
    (tmp_path / "access.state.json").write_text(json.dumps(state.to_json()))
    (entry,) = tokens.health(_config(youtube_files), {"youtube": YouTubeAdapter}, NOW)
    assert entry["problem"] is None


def test_smm_status_shows_a_failing_refresh_before_the_token_expires(
    youtube_files: dict[str, CredentialRef], tmp_path: Path, sqlite_url: str
) -> None:
    from click.testing import CliRunner

    from scheduler.cli import cli

    now = datetime.now(UTC)
    state = tokens.TokenState(
        expires_at=now + timedelta(hours=5),
        refreshed_at=now - timedelta(minutes=55),
        failed_at=now - timedelta(minutes=5),
        error="Google: token refresh refused: invalid_grant",
    )
    (tmp_path / "access.state.json").write_text(json.dumps(state.to_json()))
    refs = "\n".join(f'{name} = {{ file = "{ref.name}" }}' for name, ref in youtube_files.items())
    config = tmp_path / "config.toml"
    config.write_text(
        f'[accounts.brand]\nplatform = "youtube"\ntimezone = "UTC"\n'
        f"[accounts.brand.credentials]\n{refs}\n",
        encoding="utf-8",
    )
    args = ["--db", sqlite_url, "--config", str(config), "status"]
    result = CliRunner().invoke(cli, [*args, "--json"])
    assert result.exit_code == 3, result.output  # needs attention, hours before the expiry
    report = json.loads(result.stdout)
    (problem,) = [line for line in report["attention"] if "token refresh" in line]
    assert problem.startswith("token refresh of brand failing since")
    assert "invalid_grant" in problem
    text = CliRunner().invoke(cli, args)
    assert "token refresh of brand failing since" in text.stdout
    for secret in ("old-access", "the-refresh"):
        assert secret not in result.stdout + text.stdout


def test_health_flags_a_refresh_token_whose_result_cannot_be_stored(
    youtube_files: dict[str, CredentialRef],
) -> None:
    from smm_youtube import YouTubeAdapter

    files = {**youtube_files, "access_token": CredentialRef("env", "YT")}
    (entry,) = tokens.health(_config(files), {"youtube": YouTubeAdapter}, NOW)
    assert "cannot be refreshed" in entry["problem"]


# --------------------------------------------------------------------------- each network


def _refresh_request(
    adapter_cls: Any, options: dict[str, Any], secrets: dict[str, str]
) -> tuple[httpx.Request, TokenSet]:
    from scheduler.testing import account_with_secrets

    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            200,
            json={"access_token": "new-access", "expires_in": 5183944, "token_type": "bearer"},
        )

    acc = account_with_secrets("brand", adapter_cls.platform, options, secrets=secrets)

    async def go() -> TokenSet:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            result: TokenSet = await adapter_cls(client).refresh_token(acc)
            return result

    result = asyncio.run(go())
    (request,) = seen
    return request, result


def _form(request: httpx.Request) -> dict[str, str]:
    from urllib.parse import parse_qsl

    return dict(parse_qsl(request.content.decode()))


def test_linkedin_refreshes_with_its_programmatic_refresh_grant() -> None:
    from smm_linkedin import LinkedInAdapter

    secrets = {"refresh_token": "AQX-r", "client_id": "86abc", "client_secret": "cs-1"}
    request, result = _refresh_request(LinkedInAdapter, {"author": "urn:li:person:1"}, secrets)
    assert str(request.url) == "https://www.linkedin.com/oauth/v2/accessToken"
    assert _form(request) == {"grant_type": "refresh_token", **secrets}
    assert result.access_token == "new-access"
    assert not LinkedInAdapter.rotates_refresh_token


def test_x_refreshes_with_basic_client_authentication_and_rotates() -> None:
    import base64

    from smm_x import XAdapter

    secrets = {"refresh_token": "bWRW-r", "client_id": "cid", "client_secret": "csec"}
    request, _ = _refresh_request(XAdapter, {}, secrets)
    assert str(request.url) == "https://api.x.com/2/oauth2/token"
    assert _form(request) == {
        "grant_type": "refresh_token",
        "refresh_token": "bWRW-r",
        "client_id": "cid",
    }
    assert request.headers["authorization"] == "Basic " + base64.b64encode(b"cid:csec").decode()
    assert XAdapter.rotates_refresh_token


@pytest.mark.parametrize(
    ("platform", "options", "url"),
    [
        (
            "threads",
            {"threads_user_id": "1"},
            "https://graph.threads.net/refresh_access_token?grant_type=th_refresh_token",
        ),
        (
            "instagram",
            {"ig_user_id": "1", "graph_host": "https://graph.instagram.com"},
            "https://graph.instagram.com/refresh_access_token?grant_type=ig_refresh_token",
        ),
    ],
)
def test_threads_and_instagram_long_lived_tokens_renew_themselves(
    platform: str, options: dict[str, Any], url: str
) -> None:
    from smm_meta import InstagramAdapter, ThreadsAdapter

    cls = {"threads": ThreadsAdapter, "instagram": InstagramAdapter}[platform]
    request, result = _refresh_request(cls, options, {"access_token": "THAA-old"})
    assert str(request.url) == f"{url}&access_token=THAA-old"
    assert result.expires_at is not None
    # Opt-in: an account without options.auto_refresh is left alone.
    assert not tokens.wants_refresh(cls, options, {"access_token": object()})
    assert tokens.wants_refresh(cls, {**options, "auto_refresh": True}, {})


def test_the_daemon_job_records_each_tokens_expiry_on_its_account_row(
    files: dict[str, CredentialRef], db_url: str
) -> None:
    from sqlalchemy import select

    from scheduler.accounts import sync_accounts
    from scheduler.db.engine import make_engine
    from scheduler.queue import accounts_t

    expires = datetime.now(UTC) + timedelta(hours=1)
    adapter = FakeRefresher(TokenSet("a1", expires))
    cfg = AccountConfig(name="brand", platform="fake", timezone="UTC", credentials=files)
    config = Config(path=None, accounts={"brand": cfg})
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            sync_accounts(conn, config, NOW)
        asyncio.run(tokens.refresh_all(config, {"fake": adapter}, engine))
        with engine.connect() as conn:
            stored = conn.execute(select(accounts_t.c.token_expires_at)).scalar_one()
    finally:
        engine.dispose()
    assert adapter.calls == 1
    stored = stored if stored.tzinfo else stored.replace(tzinfo=UTC)
    assert abs((stored - expires).total_seconds()) < 1


def test_a_failed_refresh_is_not_retried_at_every_publish(files: dict[str, CredentialRef]) -> None:
    adapter = FakeRefresher(
        Transient("Google: token refresh got no answer (ConnectError)"),
        TokenSet("a1", NOW + timedelta(hours=1)),
    )
    acc = account(files)
    refresh(adapter, acc)
    refresh(adapter, acc, NOW + timedelta(seconds=30))  # a publish half a minute later
    assert adapter.calls == 1
    refresh(adapter, acc, NOW + timedelta(seconds=61))
    assert adapter.calls == 2
    assert acc.secret("access_token") == "a1"


def test_refreshed_tokens_stay_masked_but_the_registry_does_not_grow_with_refreshes(
    files: dict[str, CredentialRef],
) -> None:
    from scheduler.logging import _registry
    from scheduler.redaction import KEPT_PER_SOURCE

    hours = 3 * KEPT_PER_SOURCE
    issued = [secrets.token_urlsafe(24) for _ in range(hours)]
    adapter = FakeRefresher(
        *(TokenSet(token, NOW + timedelta(hours=h + 1)) for h, token in enumerate(issued))
    )
    acc = account(files)
    registered = len(_registry._secrets)
    for h in range(hours):
        refresh(adapter, acc, NOW + timedelta(hours=h))
        acc.secret("access_token")  # a publish reads the file
    assert adapter.calls == hours
    for token in issued[-KEPT_PER_SOURCE:]:
        assert redact(f"echo {token}") == "echo ***"
    assert redact(f"echo {issued[0]}") == f"echo {issued[0]}"
    assert len(_registry._secrets) <= registered + KEPT_PER_SOURCE + 1  # + the refresh token
