"""Commands plugins declare, found without loading the plugins.

A plugin lists each of its commands in the ``smm_scheduler.commands`` entry-point group of its
package metadata (``ntfy = "smm_ntfy.cli:ntfy"``: the command's name, then the click command
or group). ``smm --help`` reads that group, which costs no import of any plugin, the
database layer or the networks, and imports only the modules the entry points name, for
their one-line help. A declaration that does not load is named, never a crash: ``smm
--help`` still works and exits 0.

Commands added through the ``register_commands`` hook exist only once every plugin is loaded
(several hundred modules), so ``smm --help`` cannot list them; ``smm NAME`` finds them.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    import importlib.metadata

#: The entry-point group of the commands plugins declare.
GROUP = "smm_scheduler.commands"
#: The group of the plugins themselves (``scheduler.hookspecs.PROJECT``, which imports pluggy).
PLUGINS_GROUP = "smm_scheduler"


@dataclass
class Declared:
    """A command a plugin declared: its name, the plugin (its distribution) and, once
    loaded, the command or why it could not be loaded."""

    name: str
    plugin: str
    entry_point: importlib.metadata.EntryPoint
    command: click.Command | None = None
    error: str | None = None
    loaded: bool = False

    def load(self) -> click.Command | None:
        """The command (imported once), or None with ``error`` set."""
        if not self.loaded:
            self.loaded = True
            try:
                found = self.entry_point.load()
            except Exception as exc:  # a broken plugin must not take the CLI down
                self.error = f"{type(exc).__name__}: {exc}"
            else:
                if isinstance(found, click.Command):
                    self.command = found
                else:
                    self.error = f"{self.entry_point.value} is not a click command"
        return self.command

    def problem(self) -> str:
        """What ``smm`` says about a declaration that did not load."""
        return f"plugin {self.plugin} failed to add command {self.name}: {self.error}"


def allowed_plugins() -> set[str] | None:
    """The entry points ``SMM_LOAD_PLUGINS`` allows (None: all; empty: none)."""
    raw = os.environ.get("SMM_LOAD_PLUGINS")
    if raw is None:
        return None
    return {name.strip() for name in raw.split(",") if name.strip()}


def _may_declare() -> bool:
    """Whether any distribution on ``sys.path`` may declare commands: its metadata's
    ``entry_points.txt`` names the group. Reading those small files costs a few
    milliseconds; importing ``importlib.metadata`` (email, zipfile...) costs several times
    ``smm --help``'s own work, so it is imported only when some file names the group. A
    path entry that is not a directory (a zip) is left to ``importlib.metadata``."""
    needle = f"[{GROUP}]".encode()
    for entry in sys.path:
        folder = entry or "."
        if os.path.isfile(folder):
            return True
        try:
            listing = os.scandir(folder)
        except OSError:
            continue
        with listing:
            for item in listing:
                if not item.name.endswith((".dist-info", ".egg-info")):
                    continue
                try:
                    with open(os.path.join(item.path, "entry_points.txt"), "rb") as f:
                        if needle in f.read():
                            return True
                except OSError:
                    continue
    return False


def declared(taken: Collection[str]) -> tuple[dict[str, Declared], list[str]]:
    """The declared commands by name, and the declarations left out, in words: a name in
    ``taken`` (the built-in commands) or declared before by another plugin.

    Under ``SMM_LOAD_PLUGINS`` a distribution's commands count only when one of its plugins
    is allowed."""
    found: dict[str, Declared] = {}
    left_out: list[str] = []
    if not _may_declare():
        return found, left_out
    import importlib.metadata

    every = importlib.metadata.entry_points()
    allowed = allowed_plugins()
    # A command's plugin is named as `smm plugins list` names it: by its entry point in the
    # plugins' group (the distribution's name when it has none there).
    plugin_of: dict[str, list[str]] = {}
    for ep in every.select(group=PLUGINS_GROUP):
        if ep.dist is not None:
            plugin_of.setdefault(ep.dist.name, []).append(ep.name)
    for ep in every.select(group=GROUP):
        dist = ep.dist.name if ep.dist is not None else ep.value.split(":", 1)[0]
        names = sorted(plugin_of.get(dist, []))
        if allowed is not None and not allowed.intersection(names):
            continue
        plugin = names[0] if names else dist
        if ep.name in taken:
            left_out.append(f"plugin {plugin}: command {ep.name} is built in; not replaced")
        elif ep.name in found:
            first = found[ep.name].plugin
            if first != plugin:  # the same distribution seen twice on the path is no clash
                left_out.append(f"plugin {plugin}: command {ep.name} is already {first}'s")
        else:
            found[ep.name] = Declared(ep.name, plugin, ep)
    return found, left_out


__all__ = ["GROUP", "Declared", "allowed_plugins", "declared"]
