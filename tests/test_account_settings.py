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


URL_OPTIONS = [
    # platform, the option that is a web address, the rest of a valid account, its credential
    ("mastodon", "instance", {}, "access_token"),
    ("bluesky", "pds", {"handle": "brand.bsky.social"}, "app_password"),
    ("telegram", "api_base", {"chat_id": "@news"}, "bot_token"),
    ("vk", "api_base", {"owner_id": -1234}, "access_token"),
    ("webhook", "url", {}, "hmac_secret"),
]


@pytest.mark.parametrize(("platform", "key", "options", "credential"), URL_OPTIONS)
@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("file:///etc/passwd", "not an http(s) URL (file:)"),
        ("gopher://10.0.0.1/x", "not an http(s) URL (gopher:)"),
        ("mastodon.social", "not an http(s) URL (no scheme)"),
        ("https://", "has no host"),
        (443, "not a URL: 443"),
    ],
)
def test_an_option_that_is_a_web_address_must_be_an_http_url_with_a_host(
    platform: str, key: str, options: dict[str, object], credential: str, value: object, words: str
) -> None:
    from scheduler import plugins

    adapter = plugins.adapter_class(platform)
    secret = {credential: "s" * 40}
    good = account_with_secrets(
        "a", platform, {**options, key: "https://api.example"}, secrets=secret
    )
    assert adapter.check_account(good) == []
    bad = account_with_secrets("a", platform, {**options, key: value}, secrets=secret)
    (issue,) = adapter.check_account(bad)
    assert issue.field == f"options.{key}"
    assert words in issue.message


def test_config_check_names_a_webhook_without_an_address_and_a_mistyped_option(
    tmp_path: Path,
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        '[accounts.hook]\nplatform = "webhook"\ntimezone = "UTC"\noptions.ulr = "https://x.example"\n',
        encoding="utf-8",
    )
    result = CliRunner().invoke(cli, ["--config", str(config), "config", "check"])
    assert result.exit_code == 1, result.output
    assert "field 'accounts.hook.options.ulr': unknown option 'ulr'" in result.output
    assert "field 'accounts.hook.options.url': missing: the receiver's address" in result.output


NEEDS = [
    # platform, the required option and a valid value, the credential it must refer to
    ("instagram", "ig_user_id", "17841400000000000", "access_token"),
    ("threads", "threads_user_id", "1234567890", "access_token"),
    ("facebook", "page_id", "102345678901234", "page_access_token"),
    ("pinterest", "board_id", "549755885175", "access_token"),
    ("linkedin", "author", "urn:li:organization:2414183", None),
    ("tiktok", "privacy_level", "SELF_ONLY", None),
]


@pytest.mark.parametrize(("platform", "required", "value", "credential"), NEEDS)
def test_a_networks_required_option_and_typos_are_named_before_the_plan_is(
    platform: str, required: str, value: str, credential: str | None
) -> None:
    """A missing id was reported only by plan validation, against every item of the plan,
    while `smm config check` said OK; a mistyped option went unnoticed."""
    import re

    from adapter_support import network_page

    from scheduler import plugins

    adapter = plugins.adapter_class(platform)
    secrets = {credential: "tok-123456789"} if credential else {}
    # Every option the network's page documents (its table of options) is one the check
    # takes: the check must never refuse a config the docs show.
    page = network_page(platform)
    table = page[page.index("| option | meaning |") :].split("\n\n", 1)[0]
    documented = set(re.findall(r"^\| `(\w+)` \|", table, re.M))
    assert required in documented
    options: dict[str, object] = dict.fromkeys(documented, "https://x.example")
    options[required] = value
    good = account_with_secrets("a", platform, options, secrets=secrets)
    assert [i for i in adapter.check_account(good) if "unknown option" in i.message] == []
    ok = account_with_secrets("a", platform, {required: value}, secrets=secrets)
    assert adapter.check_account(ok) == []

    typo = "x" + required
    mistyped = account_with_secrets("a", platform, {typo: value}, secrets=secrets)
    issues = {i.field: i for i in adapter.check_account(mistyped)}
    assert set(issues) == {f"options.{typo}", f"options.{required}"}
    assert issues[f"options.{typo}"].hint == f"did you mean {required!r}?"
    if credential:
        bare = Account(name="a", platform=platform, timezone="UTC", options={required: value})
        assert [i.field for i in adapter.check_account(bare)] == [f"credentials.{credential}"]


def test_config_check_names_an_instagram_account_without_its_user_id(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        '[accounts.ig]\nplatform = "instagram"\ntimezone = "UTC"\noptions.user_id = "1784"\n'
        'credentials.access_token = { env = "SMM_TEST_UNSET" }\n',
        encoding="utf-8",
    )
    result = CliRunner().invoke(cli, ["--config", str(config), "config", "check"])
    assert result.exit_code == 1, result.output
    assert "field 'accounts.ig.options.ig_user_id': missing: the Instagram user id" in result.output
    assert "unknown option 'user_id' (hint: did you mean 'ig_user_id'?)" in result.output


def test_a_tiktok_account_names_a_privacy_level_tiktok_does_not_have() -> None:
    import smm_tiktok
    from smm_tiktok.adapter import ACCOUNT_OPTIONS, TikTokAdapter

    assert set(ACCOUNT_OPTIONS) == options_read_by(smm_tiktok)
    account = Account(name="a", platform="tiktok", timezone="UTC", options={"privacy_level": "ALL"})
    (issue,) = TikTokAdapter.check_account(account)
    assert issue.field == "options.privacy_level"
    assert "must be one of PUBLIC_TO_EVERYONE" in issue.message
