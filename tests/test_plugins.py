"""The plugin manager: discovery through entry points, operators' switches, contract checks
on what plugins register, and how each kind of hook is called and isolated."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from structlog.testing import capture_logs

from scheduler import outgoing, plugins
from scheduler.adapter import (
    Account,
    Adapter,
    Capabilities,
    Metrics,
    OutgoingPost,
    Published,
    Rejected,
)
from scheduler.cli import cli
from scheduler.config import AccountConfig
from scheduler.hookspecs import hookimpl
from scheduler.logging import reset_logging
from scheduler.plan.items import PlanItem
from scheduler.plugins import PluginError

#: The acceptance list: every network this project ships.
BUILT_IN_PLATFORMS = {
    "mastodon",
    "bluesky",
    "telegram",
    "x",
    "facebook",
    "instagram",
    "threads",
    "vk",
    "linkedin",
    "pinterest",
    "ok",
    "youtube",
    "tiktok",
    "webhook",
    "sim",
}

ACCOUNT = Account(name="shop", platform="sim", timezone="UTC")
POST = OutgoingPost(key="spring-sale", account="shop", content_type="promo", text="Spring sale")


@pytest.fixture(autouse=True)
def fresh_plugins(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test starts with no operator switches and a plugin manager not yet loaded."""
    monkeypatch.delenv("SMM_LOAD_PLUGINS", raising=False)
    monkeypatch.delenv("SMM_TRACE_PLUGINS", raising=False)
    plugins.reset()
    outgoing.clear_caches()
    yield
    plugins.reset()
    outgoing.clear_caches()
    reset_logging()  # the CLI configures logging on the runner's streams


def smm(*args: str) -> Result:
    """Run ``smm ARGS`` in-process."""
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


_module_names = (f"smm_testplugin_{n}" for n in itertools.count())


@pytest.fixture
def installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., str]]:
    """A factory that installs a plugin as a distribution with an ``smm_scheduler`` entry point.

    ``installed(name, source)`` writes ``source`` as a module and a ``<name>-1.0.dist-info``
    beside it (``commands``: command name -> attribute of the module, declared in the
    ``smm_scheduler.commands`` group), on ``sys.path``: importlib.metadata finds it exactly
    as it finds a plugin installed with pip. Returns the site directory (for subprocesses).
    """
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    modules: list[str] = []

    def install(
        name: str, source: str, version: str = "1.0", commands: dict[str, str] | None = None
    ) -> str:
        module = next(_module_names)
        modules.append(module)
        (site / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")
        dist_info = site / f"smm_test_{name}-{version}.dist-info"
        dist_info.mkdir()
        (dist_info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: smm-test-{name}\nVersion: {version}\n",
            encoding="utf-8",
        )
        declared = "".join(f"{c} = {module}:{attr}\n" for c, attr in (commands or {}).items())
        (dist_info / "entry_points.txt").write_text(
            f"[smm_scheduler]\n{name} = {module}\n"
            + (f"[smm_scheduler.commands]\n{declared}" if declared else ""),
            encoding="utf-8",
        )
        return str(site)

    yield install
    for module in modules:
        sys.modules.pop(module, None)


def adapter(name: str) -> type[Adapter]:
    """A minimal adapter class for ``name``."""

    class Minimal(Adapter):
        platform = name
        capabilities = Capabilities(text_limit=100)

        async def publish(self, post: OutgoingPost, account: Account, key: str) -> Published:
            return Published(remote_id="1")

    return Minimal


class Provides:
    """A plugin registering the given objects as platforms."""

    def __init__(self, *adapters: Any) -> None:
        self.adapters = adapters

    @hookimpl
    def register_platforms(self, register: Callable[[Any], None]) -> None:
        for a in self.adapters:
            register(a)


# ============================================================================ discovery


def test_plugins_list_json_lists_every_built_in_network() -> None:
    result = smm("plugins", "list", "--json")

    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    listed = {row["platform"] for row in rows}
    missing = BUILT_IN_PLATFORMS - listed
    assert not missing, f"smm plugins list does not list {sorted(missing)}"


def test_built_in_networks_are_entry_points_of_the_smm_scheduler_distribution() -> None:
    rows = {row["platform"]: row for row in json.loads(smm("plugins", "list", "--json").stdout)}

    for platform in BUILT_IN_PLATFORMS & set(rows):
        row = rows[platform]
        assert row["distribution"] == "smm-scheduler", row
        assert row["version"] == plugins.platforms()[platform].version
        assert row["capabilities"]["text_limit"] > 0
        assert "register_platforms" in row["hooks"]
        assert row["error"] is None


def test_plugins_list_prints_a_table_with_a_row_per_platform() -> None:
    result = smm("plugins", "list")

    assert result.exit_code == 0, result.output
    header, *lines = result.stdout.splitlines()
    assert header.split()[:3] == ["PLATFORM", "PLUGIN", "VERSION"]
    webhook = next(line.split() for line in lines if line.startswith("webhook "))
    assert webhook[:5] == [
        "webhook",
        "webhook",
        plugins.platforms()["webhook"].version,
        "65536",
        "yes",
    ]


def test_plugins_list_shows_plugins_without_a_platform_with_their_hooks() -> None:
    class UtmTags:
        @hookimpl
        def prepare_post(self, post: OutgoingPost) -> OutgoingPost:
            return post

    plugins.register_plugin(UtmTags(), name="utm")

    rows = json.loads(smm("plugins", "list", "--json").stdout)

    (utm,) = [row for row in rows if row["plugin"] == "utm"]
    assert utm["platform"] is None
    assert utm["hooks"] == ["prepare_post"]
    assert utm["version"] is None  # registered in-process, not installed


def test_smm_load_plugins_loads_only_the_named_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMM_LOAD_PLUGINS", "webhook, sim")

    assert set(plugins.platforms()) == {"webhook", "sim", "sim-plain"}
    assert plugins.get_plugin_manager().get_plugin("mastodon") is None


def test_an_empty_smm_load_plugins_loads_no_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMM_LOAD_PLUGINS", "")

    result = smm("plugins", "list")

    assert plugins.platforms() == {}
    assert result.exit_code == 0
    assert "no platforms" in result.stdout


def test_a_plugin_that_fails_to_import_is_logged_and_skipped(
    installed: Callable[..., str],
) -> None:
    installed("broken", "raise RuntimeError('boom at import')")

    with capture_logs() as logs:
        found = plugins.platforms()

    assert {"webhook", "sim"} <= set(found)  # the other plugins still load
    (event,) = [e for e in logs if e["event"] == "plugin_load_failed"]
    assert event["plugin"] == "broken"
    assert event["error"] == "RuntimeError: boom at import"
    assert event["log_level"] == "error"


def test_plugins_list_reports_a_plugin_that_failed_to_load_and_exits_1(
    installed: Callable[..., str],
) -> None:
    installed("broken", "import a_module_that_does_not_exist", version="2.3")

    result = smm("plugins", "list", "--json")

    assert result.exit_code == 1
    rows = json.loads(result.stdout)
    assert "webhook" in {row["platform"] for row in rows}  # the others still load
    (broken,) = [row for row in rows if row["plugin"] == "broken"]
    assert broken["platform"] is None
    assert (broken["distribution"], broken["version"]) == ("smm-test-broken", "2.3")
    assert broken["error"]


def test_plugins_list_table_names_a_failed_plugin_on_stderr(
    installed: Callable[..., str],
) -> None:
    installed("broken", "raise ImportError('missing dependency')")

    result = smm("plugins", "list")

    assert result.exit_code == 1
    assert "webhook" in result.stdout
    assert "failed to load" in result.stderr
    assert "broken 1.0" in result.stderr


def test_a_third_party_plugin_is_discovered_through_its_entry_point(
    installed: Callable[..., str],
) -> None:
    installed(
        "echo",
        """
        from scheduler.adapter import Adapter, Capabilities, Published
        from scheduler.hookspecs import hookimpl

        class EchoAdapter(Adapter):
            platform = "echo"
            capabilities = Capabilities(text_limit=10, idempotent=True)

            async def publish(self, post, account, idempotency_key):
                return Published(remote_id=idempotency_key)

        @hookimpl
        def register_platforms(register):
            register(EchoAdapter)
        """,
    )

    rows = {row["platform"]: row for row in json.loads(smm("plugins", "list", "--json").stdout)}

    echo = rows["echo"]
    assert (echo["plugin"], echo["version"], echo["distribution"]) == (
        "echo",
        "1.0",
        "smm-test-echo",
    )
    assert echo["capabilities"]["idempotent"] is True
    assert plugins.adapter_class("echo").__name__ == "EchoAdapter"


# ============================================================================ tracing


class FixedPolicy:
    def __init__(self, policy: Any) -> None:
        self.policy = policy

    @hookimpl
    def er_policy(self, settings: Any) -> Any:
        return self.policy


def test_smm_trace_plugins_logs_each_hook_call_and_its_result(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SMM_TRACE_PLUGINS", "1")
    plugins.register_plugin(FixedPolicy("custom"), name="custom-policy")

    with capture_logs() as logs:
        plugins.get_plugin_manager().hook.er_policy(settings={})

    trace = [e for e in logs if e["event"] in ("hook_call", "hook_result")]
    assert [(e["event"], e["hook"]) for e in trace] == [
        ("hook_call", "er_policy"),
        ("hook_result", "er_policy"),
    ]
    assert "custom-policy" in trace[0]["plugins"]
    assert trace[1]["error"] is None


def test_without_smm_trace_plugins_hook_calls_are_not_logged() -> None:
    plugins.register_plugin(FixedPolicy("custom"), name="custom-policy")

    with capture_logs() as logs:
        plugins.get_plugin_manager().hook.er_policy(settings={})

    assert not [e for e in logs if e["event"] in ("hook_call", "hook_result")]


def test_smm_trace_plugins_logs_event_hooks_called_by_the_core(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SMM_TRACE_PLUGINS", "1")
    plugins.register_plugin(Recorder(), name="recorder")

    with capture_logs() as logs:
        plugins.call_all("post_published", post=POST, account=ACCOUNT, result=Published("r1"))

    assert ("hook_call", "post_published") in [(e["event"], e.get("hook")) for e in logs]


# ============================================================================ registration checks


def test_two_plugins_registering_one_platform_name_raise_naming_both() -> None:
    plugins.register_plugin(Provides(adapter("echo")), name="first-echo")
    plugins.register_plugin(Provides(adapter("echo")), name="second-echo")

    with pytest.raises(PluginError, match="'echo'") as raised:
        plugins.platforms()

    assert "first-echo" in str(raised.value)
    assert "second-echo" in str(raised.value)


def test_a_plugin_taking_a_built_in_platform_name_fails_the_cli_naming_both() -> None:
    plugins.register_plugin(Provides(adapter("mastodon")), name="impostor")

    result = smm("plugins", "list", "--json")

    assert result.exit_code == 1
    assert "platform 'mastodon' is registered by both mastodon and impostor" in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("registered", "complaint"),
    [
        (adapter("echo")(None), "not an Adapter class"),  # type: ignore[arg-type]
        (dict, "not an Adapter class"),
        (lambda: None, "not an Adapter class"),
        (type("Nameless", (adapter("x"),), {"platform": ""}), "Nameless has no platform name"),
    ],
    ids=["an instance", "another class", "a function", "no platform name"],
)
def test_registering_anything_but_a_named_adapter_class_raises(
    registered: Any, complaint: str
) -> None:
    plugins.register_plugin(Provides(registered), name="sloppy")

    with pytest.raises(PluginError, match=complaint) as raised:
        plugins.platforms()

    assert "sloppy" in str(raised.value)


def test_a_register_platforms_that_raises_is_skipped_and_reported_naming_the_plugin() -> None:
    class Crashes:
        @hookimpl
        def register_platforms(self, register: Callable[[Any], None]) -> None:
            register(adapter("half-done"))
            raise KeyError("settings")

    plugins.register_plugin(Crashes(), name="crashes")

    found = plugins.platforms()
    assert "half-done" not in found
    assert "sim" in found  # the others still load
    assert "crashes" in plugins.load_failures()
    assert "KeyError" in plugins.load_failures()["crashes"]


# ============================================================================ prepare_post


class Appends:
    """A prepare_post transform that appends ``suffix`` and remembers the text it saw."""

    def __init__(self, suffix: str) -> None:
        self.suffix = suffix
        self.seen: list[str] = []

    @hookimpl
    def prepare_post(self, post: OutgoingPost, account: Account) -> OutgoingPost:
        self.seen.append(post.text)
        return replace(post, text=post.text + self.suffix)


class FirstAppends(Appends):
    @hookimpl(tryfirst=True)
    def prepare_post(self, post: OutgoingPost, account: Account) -> OutgoingPost:
        return super().prepare_post(post, account)


class LastAppends(Appends):
    @hookimpl(trylast=True)
    def prepare_post(self, post: OutgoingPost, account: Account) -> OutgoingPost:
        return super().prepare_post(post, account)


class LeavesAlone:
    def __init__(self) -> None:
        self.seen: list[str] = []

    @hookimpl
    def prepare_post(self, post: OutgoingPost) -> None:
        self.seen.append(post.text)


def prepare(post: OutgoingPost = POST) -> OutgoingPost:
    return asyncio.run(outgoing.prepare(post, ACCOUNT))


def test_prepare_post_transforms_chain_each_seeing_the_previous_result() -> None:
    last, first, alone = LastAppends(" [last]"), FirstAppends(" [first]"), LeavesAlone()
    plugins.register_plugin(last, name="last")
    plugins.register_plugin(first, name="first")
    plugins.register_plugin(alone, name="alone")

    prepared = prepare()

    assert prepared.text == "Spring sale [first] [last]"
    assert first.seen == ["Spring sale"]
    assert alone.seen == ["Spring sale [first]"]  # None leaves the post as it was
    assert last.seen == ["Spring sale [first]"]


def test_prepare_post_runs_the_latest_registered_first_among_equals() -> None:
    plugins.register_plugin(Appends(" a"), name="a")
    plugins.register_plugin(Appends(" b"), name="b")

    assert prepare().text == "Spring sale b a"


def test_prepare_post_may_be_a_coroutine() -> None:
    class Shortens:
        @hookimpl
        async def prepare_post(self, post: OutgoingPost) -> OutgoingPost:
            await asyncio.sleep(0)
            return replace(post, link="https://sho.rt/1")

    plugins.register_plugin(Shortens(), name="shortens")

    assert prepare(replace(POST, link="https://example.com/a/long/path")).link == "https://sho.rt/1"


def test_a_prepare_post_returning_garbage_raises_naming_the_plugin() -> None:
    class Garbage:
        @hookimpl
        def prepare_post(self, post: OutgoingPost) -> str:
            return post.text.upper()

    plugins.register_plugin(Garbage(), name="shouts")

    with pytest.raises(TypeError, match="plugin shouts: prepare_post returned str"):
        prepare()


def test_a_failing_prepare_post_raises_instead_of_passing_the_post_on() -> None:
    class Fails:
        @hookimpl
        def prepare_post(self, post: OutgoingPost) -> OutgoingPost:
            raise ConnectionError("link shortener is down")

    plugins.register_plugin(Appends(" [later]"), name="later")
    plugins.register_plugin(Fails(), name="shortener")

    with pytest.raises(ConnectionError, match="link shortener is down"):
        prepare()


def _plan_item(**fields: Any) -> PlanItem:
    """A validated item of account ``tweets``; ``fields`` override the defaults."""
    defaults: dict[str, Any] = {
        "key": "p1",
        "account": "tweets",
        "content_type": "promo",
        "text": "Spring sale",
        "media": (),
        "link": None,
        "tags": (),
        "evergreen": False,
        "at": None,
        "file": "plan.yaml",
        "line": 3,
        "unit": "line",
        "order": 0,
    }
    return PlanItem(**{**defaults, **fields})


def test_plan_validation_checks_the_text_after_prepare_post() -> None:
    item = _plan_item()
    account = AccountConfig(name="tweets", platform="x", timezone="UTC")
    assert outgoing.network_check(item, account) == []

    plugins.register_plugin(Appends(" with a long tracking tail" * 20), name="tracking")
    outgoing.clear_caches()

    assert [issue.field for issue in outgoing.network_check(item, account)] == ["text"]


# ============================================================================ events


class Recorder:
    """Takes fewer arguments than each spec lists, as a plugin may."""

    @hookimpl
    def post_published(self, post: OutgoingPost, result: Published) -> tuple[str, ...]:
        return (post.key, result.remote_id)

    @hookimpl
    def post_failed(self, error: Exception, final: bool) -> tuple[str, ...]:
        return (type(error).__name__, str(final))

    @hookimpl
    def metrics_collected(self, metrics: list[Metrics]) -> tuple[str, ...]:
        return tuple(m.remote_id for m in metrics)

    @hookimpl
    def priorities_changed(self, account: Account, decision: dict[str, Any]) -> tuple[str, ...]:
        return (account.name, decision["reason"])


class Broken:
    @hookimpl
    def post_published(self) -> None:
        raise RuntimeError("post_published is broken")

    @hookimpl
    def post_failed(self) -> None:
        raise RuntimeError("post_failed is broken")

    @hookimpl
    def metrics_collected(self) -> None:
        raise RuntimeError("metrics_collected is broken")

    @hookimpl
    def priorities_changed(self) -> None:
        raise RuntimeError("priorities_changed is broken")


EVENTS: dict[str, tuple[dict[str, Any], tuple[str, ...]]] = {
    "post_published": (
        {"post": POST, "account": ACCOUNT, "result": Published("r1")},
        ("spring-sale", "r1"),
    ),
    "post_failed": (
        {"post": POST, "account": ACCOUNT, "error": Rejected("too long"), "final": True},
        ("Rejected", "True"),
    ),
    "metrics_collected": (
        {"account": ACCOUNT, "metrics": [Metrics("r1", likes=3), Metrics("r2")]},
        ("r1", "r2"),
    ),
    "priorities_changed": (
        {"account": ACCOUNT, "decision": {"reason": "laugh outperforms"}},
        ("shop", "laugh outperforms"),
    ),
}


@pytest.mark.parametrize("hook", EVENTS)
def test_an_event_reaches_every_plugin_though_one_raises(hook: str) -> None:
    kwargs, recorded = EVENTS[hook]
    plugins.register_plugin(Recorder(), name="recorder")
    plugins.register_plugin(Broken(), name="broken")  # registered last, so called first

    with capture_logs() as logs:
        results = plugins.call_all(hook, **kwargs)

    assert results == [recorded]
    (failure,) = [e for e in logs if e["event"] == "plugin_hook_failed"]
    assert failure["hook"] == hook
    assert failure["plugin"] == "broken"
    assert failure["error"] == f"RuntimeError: {hook} is broken"


# ============================================================================ er_policy


def test_er_policy_first_answer_wins_over_a_trylast_default() -> None:
    class BuiltIn:
        @hookimpl(trylast=True)
        def er_policy(self, settings: Any) -> str:
            return "built-in"

    class Abstains:
        @hookimpl
        def er_policy(self, settings: Any) -> None:
            return None

    plugins.unregister_plugin("scheduler.er.builtin")  # stand in for the real default
    plugins.register_plugin(BuiltIn(), name="builtin-policy")
    plugins.register_plugin(Abstains(), name="abstains")
    hook = plugins.get_plugin_manager().hook
    assert hook.er_policy(settings={}) == "built-in"

    plugins.register_plugin(FixedPolicy("bandit"), name="bandit")
    plugins.register_plugin(Abstains(), name="abstains-too")

    assert hook.er_policy(settings={}) == "bandit"


# ============================================================================ register_commands


def test_register_commands_adds_a_command_and_a_failing_one_does_not_break_the_cli(
    installed: Callable[..., str],
) -> None:
    installed(
        "hello",
        """
        import click
        from scheduler.hookspecs import hookimpl

        @hookimpl
        def register_commands(cli):
            @cli.command()
            @click.option("--name", default="world")
            def hello(name):
                \"\"\"Greet someone.\"\"\"
                click.echo(f"hello, {name}")
        """,
    )
    site = installed(
        "clumsy",
        """
        from scheduler.hookspecs import hookimpl

        @hookimpl
        def register_commands(cli):
            raise RuntimeError("cannot add my commands")
        """,
    )
    # The console script's own code path, in a process of its own: main() reads the
    # commands that plugins add before it parses the command line.
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMM_")}
    env["PYTHONPATH"] = site
    result = subprocess.run(
        [sys.executable, "-c", "from scheduler.cli import main; main()", "hello", "--name", "Ada"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )

    assert (result.returncode, result.stdout) == (0, "hello, Ada\n"), result.stderr
    assert "plugin clumsy failed to add commands: cannot add my commands" in result.stderr


def _smm(
    site: str, *args: str, probe: bool = False, **smm_env: str
) -> subprocess.CompletedProcess[str]:
    """``smm ARGS`` in a process of its own with ``site`` on the path; ``probe``: it also
    prints, last on stderr, which heavy modules the run imported."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMM_")}
    env.update(smm_env, PYTHONPATH=site)
    code = "from scheduler.cli import main\ntry:\n    main()\nfinally:\n"
    code += "    import sys\n"
    if probe:
        code += (
            "    heavy = ('sqlalchemy', 'httpx', 'pydantic', 'structlog', 'pluggy')\n"
            "    print('LOADED', [m for m in heavy if m in sys.modules], file=sys.stderr)\n"
        )
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_smm_help_lists_the_commands_plugins_declare_with_the_plugin_and_survives_a_broken_one(
    installed: Callable[..., str],
) -> None:
    hello = """
        import click

        @click.command()
        @click.option("--name", default="world")
        def hello(name):
            \"\"\"Greet someone by name.\"\"\"
            click.echo(f"hello, {name}")

        @click.group()
        def queue():
            \"\"\"Not the real queue.\"\"\"
        """
    installed("hello", hello, commands={"hello": "hello", "queue": "queue"})
    installed("clumsy", "raise RuntimeError('cannot import me')\n", commands={"clumsy": "x"})
    site = installed("odd", "answer = 42\n", commands={"odd": "answer"})

    result = _smm(site, "--help", probe=True)

    assert result.returncode == 0, result.stderr
    builtin, _, from_plugins = result.stdout.partition("Commands from plugins:")
    assert "queue     The queue: list" in builtin  # a built-in name is not taken over
    listed = " ".join(from_plugins.split())  # as words: click wraps the lines
    assert listed.startswith(
        "clumsy [plugin clumsy] failed to load: RuntimeError: cannot import me "
        "hello [plugin hello] Greet someone by name. "
        "odd [plugin odd] failed to load: "
    )
    assert "answer is not a click command" in listed
    assert "plugin clumsy failed to add command clumsy: RuntimeError" in result.stderr
    assert "plugin hello: command queue is built in; not replaced" in result.stderr
    # Listing them loaded none of the plugins, the database layer or the networks.
    assert result.stderr.rstrip().splitlines()[-1] == "LOADED []"

    # The plugins SMM_LOAD_PLUGINS leaves out have no commands either.
    only_hello = _smm(site, "--help", SMM_LOAD_PLUGINS="hello")
    assert "[plugin hello]" in only_hello.stdout
    assert "clumsy" not in only_hello.stdout + only_hello.stderr

    assert (_smm(site, "hello", "--name", "Ada").stdout, 0) == ("hello, Ada\n", 0)
    broken = _smm(site, "clumsy")
    assert broken.returncode == 1
    assert "plugin clumsy failed to add command clumsy: RuntimeError" in broken.stderr
    assert "Traceback" not in broken.stderr


def test_a_command_a_plugin_adds_through_its_hook_is_listed_once_loaded_with_the_plugin(
    installed: Callable[..., str],
) -> None:
    # Commands added through register_commands exist only once the plugins are loaded
    # (`smm NAME`): then the group's help marks them too.
    from click.testing import CliRunner

    from scheduler.cli import SmmGroup, cli

    assert isinstance(cli, SmmGroup)
    installed(
        "greeter",
        """
        import click
        from scheduler.hookspecs import hookimpl

        @hookimpl
        def register_commands(cli):
            @cli.command()
            def greet():
                \"\"\"Say hello.\"\"\"
        """,
    )
    plugins.reset()
    try:
        cli.load_plugin_commands()
        out = CliRunner().invoke(cli, ["--help"], terminal_width=100).output
    finally:
        cli.forget_plugin_commands()
    assert "Commands from plugins:" in out
    assert "[plugin greeter] Say hello." in out


def test_forgotten_plugin_commands_are_looked_for_again(
    installed: Callable[..., str],
) -> None:
    # A name the group does not know makes it load the plugins' commands, once; forgetting
    # them (as every test starts) makes the next need look again and find a new plugin's.
    from scheduler.cli import cli

    assert smm("no-such-command").exit_code == 2
    installed(
        "waver",
        """
        from scheduler.hookspecs import hookimpl

        @hookimpl
        def register_commands(cli):
            @cli.command()
            def wave():
                \"\"\"Wave.\"\"\"
        """,
    )
    plugins.reset()
    assert smm("wave").exit_code == 2  # the group remembers it loaded them already
    cli.forget_plugin_commands()
    try:
        assert smm("wave").exit_code == 0
        cli.forget_plugin_commands()
        assert "wave" not in cli.commands
    finally:
        cli.forget_plugin_commands()


def test_a_plan_item_becomes_the_same_outgoing_post_as_the_constructor_builds() -> None:
    import dataclasses
    from datetime import UTC, datetime

    item = _plan_item(
        media=("https://example.com/a.png",),
        link="https://example.com",
        tags=("sale",),
        at=datetime(2026, 12, 1, 9, tzinfo=UTC),
    )
    post = outgoing.from_plan_item(item, "key-1")
    expected = OutgoingPost(
        key="p1",
        account="tweets",
        content_type="promo",
        text="Spring sale",
        media=("https://example.com/a.png",),
        link="https://example.com",
        tags=("sale",),
        idempotency_key="key-1",
        due_at=datetime(2026, 12, 1, 9, tzinfo=UTC),
    )
    assert post == expected
    # Every field is set (a field added to OutgoingPost must be added there too).
    assert set(vars(post)) == {f.name for f in dataclasses.fields(OutgoingPost)}
    with pytest.raises(dataclasses.FrozenInstanceError):
        post.text = "changed"  # type: ignore[misc]


def test_a_posts_row_becomes_the_same_outgoing_post_as_the_constructor_builds() -> None:
    import dataclasses
    from datetime import UTC, datetime
    from types import SimpleNamespace

    from scheduler.adapter import MediaMeta

    due = datetime(2026, 12, 1, 9, tzinfo=UTC)
    row = SimpleNamespace(
        key="p1",
        content_type="promo",
        text="Spring sale",
        media=["a.png"],
        media_meta=[{"alt": "A red bike"}],
        post_options=None,
        link="https://example.com",
        tags=["sale"],
        idempotency_key="key-1",
        due_at=due,
        remote_id=None,
        remote_url=None,
        published_at=None,
    )
    post = outgoing.from_row(row, "tweets")
    expected = OutgoingPost(
        key="p1",
        account="tweets",
        content_type="promo",
        text="Spring sale",
        media=("a.png",),
        link="https://example.com",
        tags=("sale",),
        idempotency_key="key-1",
        due_at=due,
        media_meta=(MediaMeta("A red bike"),),
    )
    assert post == expected
    # Every field is set (a field added to OutgoingPost must be added there too).
    assert set(vars(post)) == {f.name for f in dataclasses.fields(OutgoingPost)}
    with pytest.raises(dataclasses.FrozenInstanceError):
        post.text = "changed"  # type: ignore[misc]
