"""``smm config check`` names what an account of Mastodon, Telegram, Bluesky or VK cannot do
without, and an option its plugin does not read (a typo), before the first publish would pause
the account (scheduler/account_settings.py)."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest
import smm_bluesky
import smm_mastodon
import smm_telegram
import smm_vk
from adapter_support import options_read_by
from click.testing import CliRunner

from scheduler.adapter import Account
from scheduler.cli import cli
from scheduler.testing import account_with_secrets

CASES = [
    # package, adapter module, a valid account's options, its credential, the required option
    (smm_mastodon, "mastodon", {"instance": "https://mastodon.social"}, "access_token"),
    (smm_telegram, "telegram", {"chat_id": "@news"}, "bot_token"),
    (smm_bluesky, "bluesky", {"handle": "brand.bsky.social"}, "app_password"),
    (smm_vk, "vk", {"owner_id": -1234}, "access_token"),
]


def _adapter(package: ModuleType) -> type:
    module = __import__(f"{package.__name__}.adapter", fromlist=["__all__"])
    (name,) = (n for n in module.__all__ if n.endswith("Adapter"))
    return getattr(module, name)  # type: ignore[no-any-return]


@pytest.mark.parametrize(("package", "platform", "options", "credential"), CASES)
def test_required_settings_and_typos_are_named(
    package: ModuleType, platform: str, options: dict[str, object], credential: str
) -> None:
    adapter = _adapter(package)
    module = __import__(f"{package.__name__}.adapter", fromlist=["ACCOUNT_OPTIONS"])
    # Every option the plugin reads is one the check accepts, and no other.
    assert set(module.ACCOUNT_OPTIONS) == options_read_by(package)
    good = account_with_secrets("a", platform, options, secrets={credential: "tok-123456789"})
    assert adapter.check_account(good) == []
    # The core's own option (Adapter.text_limit reads it for every network) is no typo.
    roomy = account_with_secrets(
        "a", platform, {**options, "max_characters": 900}, secrets={credential: "tok-123456789"}
    )
    assert adapter.check_account(roomy) == []

    bare = Account(name="a", platform=platform, timezone="UTC", options={})
    (required,) = options
    assert [i.field for i in adapter.check_account(bare)] == [
        f"options.{required}",
        f"credentials.{credential}",
    ]
    typo = required[:-1] + required[-1] * 2  # instancee, chat_idd, handlee, owner_idd
    mistyped = account_with_secrets(
        "a", platform, {typo: options[required]}, secrets={credential: "tok-123456789"}
    )
    issues = {i.field: i for i in adapter.check_account(mistyped)}
    assert set(issues) == {f"options.{typo}", f"options.{required}"}
    assert issues[f"options.{typo}"].hint == f"did you mean {required!r}?"
    assert "tok-123456789" not in repr(issues)


def test_config_check_fails_on_a_telegram_account_without_its_chat(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        '[accounts.news]\nplatform = "telegram"\ntimezone = "UTC"\n'
        'options.chat = "@news"\ncredentials.bot_token = { env = "SMM_TEST_UNSET" }\n',
        encoding="utf-8",
    )
    result = CliRunner().invoke(cli, ["--config", str(config), "config", "check"])
    assert result.exit_code == 1, result.output
    assert "line 4, field 'accounts.news.options.chat': unknown option 'chat'" in result.output
    assert "field 'accounts.news.options.chat_id': missing: the channel or chat" in result.output
