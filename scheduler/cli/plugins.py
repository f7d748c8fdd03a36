"""``smm plugins``: installed plugins, the platforms they provide, and those that failed to load."""

from __future__ import annotations

import importlib.metadata
from collections.abc import Mapping
from typing import Any

import click
import pluggy

from scheduler import __version__
from scheduler import plugins as manager
from scheduler.cli.output import echo_json, table

#: The reason given for a failed plugin when the manager did not record one.
UNRECORDED_FAILURE = "failed to load (see the plugin_load_failed log event)"


@click.group("plugins")
def plugins_group() -> None:
    """Plugins: which are installed and what their networks can do."""


@plugins_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array, one object per row.")
@click.pass_context
def list_(ctx: click.Context, as_json: bool) -> None:
    """List each platform with the plugin, version and capabilities that provide it.

    Also lists plugins that provide no platform (with the hooks they implement) and plugins
    that failed to load (with why). Exit code 1 when any plugin failed to load.
    """
    rows = plugin_rows()
    if as_json:
        echo_json(rows)
    else:
        _print_table(rows)
    if any(row["error"] for row in rows):
        ctx.exit(1)


def plugin_rows() -> list[dict[str, Any]]:
    """One row per platform, then one per plugin without a platform, then one per failure.

    Every row has the same keys; ``platform`` is None for the last two kinds and ``error``
    is None except for the last one.
    """
    pm = manager.get_plugin_manager()
    dists = _distributions(pm)
    hooks_of = _hooks_by_plugin(pm)
    rows = []
    for name, info in sorted(manager.platforms().items()):
        caps = info.adapter.capabilities
        rows.append(
            _row(
                info.plugin,
                dists.get(info.plugin),
                platform=name,
                adapter=f"{info.adapter.__module__}.{info.adapter.__qualname__}",
                capabilities={
                    "text_limit": caps.text_limit,
                    "text_counting": caps.text_counting,
                    "max_media": caps.max_media,
                    "idempotent": caps.idempotent,
                    "has_reach": caps.has_reach,
                    "metrics": sorted(caps.metrics),
                },
                hooks=hooks_of.get(info.plugin, []),
            )
        )
    with_platforms = {row["plugin"] for row in rows}
    for plugin, hooks in sorted(hooks_of.items()):
        if plugin not in with_platforms:
            rows.append(_row(plugin, dists.get(plugin), hooks=hooks))
    for ep, error in _load_failures(pm):
        dist = (ep.dist.name, ep.dist.version) if ep.dist else None
        rows.append(_row(ep.name, dist, error=error))
    return rows


def _row(
    plugin: str,
    dist: tuple[str, str] | None,
    *,
    platform: str | None = None,
    adapter: str | None = None,
    capabilities: Mapping[str, Any] | None = None,
    hooks: list[str] | None = None,
    error: str | None = None,
) -> dict[str, Any]:
    return {
        "platform": platform,
        "plugin": plugin,
        # None for a plugin registered in-process rather than installed as a distribution.
        "version": dist[1] if dist else None,
        "distribution": dist[0] if dist else None,
        "adapter": adapter,
        "capabilities": capabilities,
        "hooks": hooks or [],
        "error": error,
    }


def _hooks_by_plugin(pm: pluggy.PluginManager) -> dict[str, list[str]]:
    """The hooks each registered plugin implements, by plugin name."""
    found: dict[str, list[str]] = {}
    for name, plugin in pm.list_name_plugin():
        if plugin is None:  # blocked
            continue
        found[name] = sorted(caller.name for caller in pm.get_hookcallers(plugin) or [])
    return found


def _distributions(pm: pluggy.PluginManager) -> dict[str, tuple[str, str]]:
    """(distribution, version) of each plugin loaded from an entry point, by plugin name."""
    # Core features registered as plugins ship in this distribution.
    found = dict.fromkeys(manager.BUILTIN_PLUGINS, ("smm-scheduler", __version__))
    for plugin in pm.get_plugins():
        name = pm.get_name(plugin)
        dist = manager.distribution(name) if name is not None else None
        if name is not None and dist is not None:
            found[name] = dist
    return found


def _load_failures(
    pm: pluggy.PluginManager,
) -> list[tuple[importlib.metadata.EntryPoint, str]]:
    """The entry points that failed to load, with why, by name."""
    entry_points = importlib.metadata.entry_points(group=manager.ENTRY_POINT_GROUP)
    recorder = getattr(manager, "load_failures", None)
    if recorder is not None:
        recorded: Mapping[str, str] = recorder()
        failed = [(ep, recorded[ep.name]) for ep in entry_points if ep.name in recorded]
    else:
        # A manager that does not record failures: an entry point it was allowed to load
        # but did not register failed, and said why in its plugin_load_failed log event.
        allowed = manager._allowed()
        failed = [
            (ep, UNRECORDED_FAILURE)
            for ep in entry_points
            if (allowed is None or ep.name in allowed)
            and pm.get_plugin(ep.name) is None
            and not pm.is_blocked(ep.name)
        ]
    return sorted(failed, key=lambda pair: pair[0].name)


def _print_table(rows: list[dict[str, Any]]) -> None:
    platforms = [r for r in rows if r["platform"]]
    table(
        ["platform", "plugin", "version", "limit", "idempotent", "reach", "metrics", "counting"],
        [
            (
                r["platform"],
                r["plugin"],
                r["version"] or "-",
                r["capabilities"]["text_limit"],
                "yes" if r["capabilities"]["idempotent"] else "no",
                "yes" if r["capabilities"]["has_reach"] else "no",
                ",".join(r["capabilities"]["metrics"]) or "-",
                r["capabilities"]["text_counting"],
            )
            for r in platforms
        ],
        empty="no platforms: install a network plugin, or check SMM_LOAD_PLUGINS",
    )
    others = [r for r in rows if not r["platform"] and not r["error"]]
    if others:
        click.echo("\nplugins without a platform:")
        for r in others:
            click.echo(f"  {r['plugin']} {r['version'] or ''}: {', '.join(r['hooks'])}")
    failed = [r for r in rows if r["error"]]
    if failed:
        click.echo(click.style("\nfailed to load:", fg="red", bold=True), err=True)
        for r in failed:
            click.echo(f"  {r['plugin']} {r['version'] or ''}: {r['error']}", err=True)


def register(cli: click.Group) -> None:
    """Add the ``plugins`` group to ``cli``."""
    cli.add_command(plugins_group)
