"""Built-in features come through the same hooks as anyone's: the ER loop's daemon jobs."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace
from typing import Any

from structlog.testing import capture_logs

from scheduler import plugins
from scheduler.daemon.service import Service
from scheduler.hookspecs import hookimpl


def _jobs() -> list[tuple[str, timedelta]]:
    found: list[tuple[str, timedelta]] = []
    worker = SimpleNamespace(engine=None, config=None, clock=None, adapters={})
    plugins.get_plugin_manager().hook.register_jobs(
        worker=worker, register=lambda name, every, job: found.append((name, every))
    )
    return found


def test_the_er_loop_gives_the_daemon_its_jobs_through_register_jobs() -> None:
    assert _jobs() == [("metrics", timedelta(minutes=10)), ("er", timedelta(hours=1))]
    assert "scheduler.er.builtin" in {
        impl.plugin_name for impl in plugins.hook_impls("register_jobs")
    }


def test_a_plugin_whose_jobs_fail_is_logged_and_the_others_run() -> None:
    class Broken:
        @hookimpl
        def register_jobs(self, worker: Any, register: Any) -> None:
            raise ImportError("no module named numpy")

    class Extra:
        @hookimpl
        def register_jobs(self, worker: Any, register: Any) -> None:
            async def ping() -> None:
                return None

            register("ping", timedelta(minutes=1), ping)

    plugins.register_plugin(Broken(), name="broken-jobs")
    plugins.register_plugin(Extra(), name="extra-jobs")
    try:
        service = Service.__new__(Service)  # only the job collection is exercised
        worker = SimpleNamespace(engine=None, config=None, clock=None, adapters={})
        with capture_logs() as logs:
            names = [name for name, _, _ in service._engagement_jobs(worker)]  # type: ignore[arg-type]
    finally:
        plugins.unregister_plugin("broken-jobs")
        plugins.unregister_plugin("extra-jobs")
    assert sorted(names) == ["er", "metrics", "ping"]
    (failure,) = [e for e in logs if e["event"] == "plugin_jobs_failed"]
    assert failure["plugin"] == "broken-jobs"
    assert "numpy" in failure["error"]
