"""The plugin manager: entry points first, then nothing else; built-ins are ordinary plugins.

Plugins are found through the ``smm_scheduler`` entry-point group, the same group this
project's own pyproject uses for the networks in ``plugins/``. They load lazily, once.

Operators' switches:

* ``SMM_LOAD_PLUGINS=mastodon,sim`` loads only the named entry points (empty: none);
* ``SMM_TRACE_PLUGINS=1`` logs every hook call and its results.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.metadata
import inspect
import os
import threading
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import pluggy
import structlog

from scheduler import hookspecs
from scheduler.adapter import Adapter
from scheduler.errors import SmmError

ENTRY_POINT_GROUP = hookspecs.PROJECT
#: Core features that are ordinary plugins (networks come through entry points instead).
BUILTIN_PLUGINS = ("scheduler.er.builtin",)
log = structlog.get_logger(__name__)

T = TypeVar("T")


class PluginError(SmmError):
    """A plugin broke the contract while loading (duplicate platform, not an Adapter...)."""


@dataclass(frozen=True)
class PlatformInfo:
    """A registered platform and the plugin that provides it."""

    platform: str
    adapter: type[Adapter]
    plugin: str
    version: str


_lock = threading.Lock()
_pm: pluggy.PluginManager | None = None
_platforms: dict[str, PlatformInfo] | None = None
_failures: dict[str, str] = {}  # entry points that did not import
_distributions: dict[str, tuple[str, str]] = {}  # entry point -> (distribution, version)
_registration_failures: dict[str, str] = {}  # plugins whose register_platforms raised


def _allowed() -> set[str] | None:
    raw = os.environ.get("SMM_LOAD_PLUGINS")
    if raw is None:
        return None
    return {name.strip() for name in raw.split(",") if name.strip()}


def distribution(name: str) -> tuple[str, str] | None:
    """(distribution name, version) of the plugin loaded from entry point ``name``."""
    return _distributions.get(name)


def _dist_info(plugin: object, pm: pluggy.PluginManager) -> tuple[str, str]:
    name = pm.get_name(plugin)
    if name is not None and name in _distributions:
        return name, _distributions[name][1]
    return name or repr(plugin), "unknown"


def _load_entry_points(pm: pluggy.PluginManager) -> None:
    allowed = _allowed()
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if allowed is not None and ep.name not in allowed:
            continue
        if pm.get_plugin(ep.name) is not None or pm.is_blocked(ep.name):
            continue
        try:
            plugin = ep.load()
        except Exception as exc:  # a broken third-party plugin must not stop the CLI
            reason = f"{type(exc).__name__}: {exc}"
            _failures[ep.name] = reason
            log.error("plugin_load_failed", plugin=ep.name, error=reason)
            continue
        pm.register(plugin, name=ep.name)
        # Which distribution it came from, for `smm plugins list` (pluggy's own record of it
        # is private and changed shape between versions).
        if ep.dist is not None:
            _distributions[ep.name] = (ep.dist.metadata["Name"], ep.dist.version)


def get_plugin_manager() -> pluggy.PluginManager:
    """The process's plugin manager, built on first use."""
    global _pm
    with _lock:
        if _pm is None:
            pm = pluggy.PluginManager(hookspecs.PROJECT)
            pm.add_hookspecs(hookspecs)
            _load_entry_points(pm)
            for name in BUILTIN_PLUGINS:
                pm.register(importlib.import_module(name), name=name)
            if os.environ.get("SMM_TRACE_PLUGINS"):
                _enable_tracing(pm)
            _pm = pm
        return _pm


def _enable_tracing(pm: pluggy.PluginManager) -> None:
    def before(hook_name: str, impls: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        log.debug("hook_call", hook=hook_name, plugins=[i.plugin_name for i in impls])

    def after(
        outcome: Any, hook_name: str, impls: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> None:
        exc = outcome.exception
        log.debug("hook_result", hook=hook_name, error=repr(exc) if exc else None)

    pm.add_hookcall_monitoring(before, after)


def reset() -> None:
    """Forget loaded plugins (tests, and a config reload that changes SMM_LOAD_PLUGINS)."""
    global _pm, _platforms
    with _lock:
        _pm = None
        _platforms = None
        _failures.clear()
        _registration_failures.clear()
        _distributions.clear()


def load_failures() -> dict[str, str]:
    """Entry points that failed to load, with why (``"ExcType: message"``), by name."""
    get_plugin_manager()
    with contextlib.suppress(PluginError):  # a duplicate platform is reported on its own
        platforms()
    return {**_failures, **_registration_failures}


def _tracing() -> bool:
    return bool(os.environ.get("SMM_TRACE_PLUGINS"))


def _trace_call(hook: str, plugin: str) -> None:
    # The core calls some implementations directly (to chain them, or to isolate each one),
    # past pluggy's call monitoring: trace those calls here.
    if _tracing():
        log.debug("hook_call", hook=hook, plugins=[plugin])


def register_plugin(plugin: object, name: str | None = None) -> None:
    """Register an in-process plugin (tests and embedding); clears the platform cache."""
    global _platforms
    get_plugin_manager().register(plugin, name=name)
    _platforms = None


def unregister_plugin(name: str) -> None:
    global _platforms
    pm = get_plugin_manager()
    plugin = pm.get_plugin(name)
    if plugin is not None:
        pm.unregister(plugin)
    _platforms = None


def platforms() -> dict[str, PlatformInfo]:
    """Every registered platform, by name; validated (subclass of Adapter, no duplicates)."""
    global _platforms
    if _platforms is not None:
        return _platforms
    pm = get_plugin_manager()
    found: dict[str, PlatformInfo] = {}
    _registration_failures.clear()  # recomputed with the platforms, for the plugins now in
    for impl in pm.hook.register_platforms.get_hookimpls():
        plugin_name, version = _dist_info(impl.plugin, pm)

        def register(
            adapter: type[Adapter], *, _plugin: str = plugin_name, _v: str = version
        ) -> None:
            if not (inspect.isclass(adapter) and issubclass(adapter, Adapter)):
                raise PluginError(f"plugin {_plugin} registered {adapter!r}, not an Adapter class")
            name = getattr(adapter, "platform", None)
            if not isinstance(name, str) or not name:
                raise PluginError(f"plugin {_plugin}: {adapter.__name__} has no platform name")
            if name in found:
                raise PluginError(
                    f"platform {name!r} is registered by both {found[name].plugin} and {_plugin}"
                )
            found[name] = PlatformInfo(name, adapter, _plugin, _v)

        _trace_call("register_platforms", plugin_name)
        before = set(found)
        try:
            impl.function(register=register)
        except PluginError:
            raise
        except Exception as exc:
            # One broken plugin must not take every network down: drop what it registered,
            # record why (``smm plugins list`` and ``smm doctor`` show it) and go on.
            reason = f"register_platforms raised {type(exc).__name__}: {exc}"
            _registration_failures[plugin_name] = reason
            log.error("plugin_load_failed", plugin=plugin_name, error=reason)
            for name in set(found) - before:
                del found[name]
    _platforms = found
    return found


def adapter_class(platform: str) -> type[Adapter]:
    """The adapter for ``platform``; PluginError naming the known ones when missing."""
    known = platforms()
    if platform not in known:
        installed = ", ".join(sorted(known)) or "none"
        raise PluginError(f"no plugin provides platform {platform!r}; installed: {installed}")
    return known[platform].adapter


async def await_me_maybe(value: T | Awaitable[T]) -> T:
    """Await ``value`` if a hook implementation returned an awaitable."""
    if inspect.isawaitable(value):
        return await value
    return value


def call_all(hook_name: str, **kwargs: Any) -> list[Any]:
    """Call every implementation of an event hook; log and swallow each one's failure.

    An implementation that returns a coroutine is run too: as a task on the running event
    loop (the daemon), or to completion when there is none (the CLI).
    """
    pm = get_plugin_manager()
    results = []
    for impl in reversed(getattr(pm.hook, hook_name).get_hookimpls()):
        wanted = {k: v for k, v in kwargs.items() if k in impl.argnames}
        _trace_call(hook_name, impl.plugin_name)
        try:
            result = impl.function(**wanted)
            if inspect.isawaitable(result):
                result = _run_event(hook_name, impl.plugin_name, result)
            results.append(result)
        except Exception as exc:
            _event_failed(hook_name, impl.plugin_name, exc)
    return results


def _event_failed(hook_name: str, plugin: str, exc: BaseException) -> None:
    log.error(
        "plugin_hook_failed", hook=hook_name, plugin=plugin, error=f"{type(exc).__name__}: {exc}"
    )


def _run_event(hook_name: str, plugin: str, awaitable: Awaitable[Any]) -> Any:
    async def guarded() -> Any:
        try:
            return await awaitable
        except Exception as exc:
            _event_failed(hook_name, plugin, exc)
            return None

    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(guarded())
    task = loop.create_task(guarded(), name=f"{hook_name}:{plugin}")
    _background.add(task)
    task.add_done_callback(_background.discard)
    return task


#: Event tasks in flight; held so they are not garbage-collected before they finish.
_background: set[asyncio.Task[Any]] = set()


def hook_impls(hook_name: str) -> Iterable[Any]:
    """Implementations of ``hook_name`` in call order (for chained hooks like prepare_post)."""
    for impl in reversed(getattr(get_plugin_manager().hook, hook_name).get_hookimpls()):
        _trace_call(hook_name, impl.plugin_name)
        yield impl
