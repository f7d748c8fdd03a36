"""Running the real daemon steps in virtual time: no sleeping, the clock jumps.

The same ``Worker`` that ``smm run`` drives (claims, dispatch, outcomes, rescue) is driven
here by a loop that moves a ``VirtualClock`` straight to the next thing that happens — the
next due post or the next periodic job — so weeks of posting take seconds. ``smm demo`` and
``smm simulate`` run on it, against the simulated network.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import httpx
from sqlalchemy import Engine

from scheduler.adapter import Adapter
from scheduler.config import Config
from scheduler.daemon.worker import Worker, make_adapters
from scheduler.timeutil import Clock


class VirtualClock(Clock):
    """A clock that only moves when told to."""

    def __init__(self, start: datetime) -> None:
        self._now = start

    def now(self) -> datetime:
        return self._now

    def advance(self, to: datetime) -> None:
        if to > self._now:
            self._now = to


@dataclass
class Job:
    """A periodic step (metrics collection, ER recompute...) run at virtual times."""

    name: str
    every: timedelta
    run: Callable[[datetime], Awaitable[object]]
    next_at: datetime | None = None


@dataclass
class Simulation:
    """Drives a Worker through virtual time until ``end``."""

    engine: Engine
    config: Config
    clock: VirtualClock
    jobs: Sequence[Job] = ()
    on_progress: Callable[[datetime], None] | None = None
    adapters: dict[str, Adapter] | None = None
    worker: Worker = field(init=False)

    async def run(self, end: datetime) -> Worker:
        client = httpx.AsyncClient(transport=httpx.MockTransport(_offline))
        adapters = self.adapters or make_adapters(self.config, client)
        for adapter in adapters.values():
            if hasattr(adapter, "clock"):
                adapter.clock = self.clock  # the sim network ages posts by our clock
        self.worker = Worker(self.engine, self.config, clock=self.clock, adapters=adapters)
        await self.worker.start()
        for job in self.jobs:
            job.next_at = self.clock.now() + job.every
        try:
            await self._loop(end)
        finally:
            await self.worker.close()
            await client.aclose()
        return self.worker

    async def _loop(self, end: datetime) -> None:
        worker = self.worker
        while True:
            due = await worker.next_due()
            upcoming = [j.next_at for j in self.jobs if j.next_at is not None]
            candidates = [t for t in (due, *upcoming) if t is not None]
            if not candidates:
                break
            when = max(min(candidates), self.clock.now())
            if when > end:
                break
            self.clock.advance(when)
            if due is not None and due <= self.clock.now():
                while await worker.claim_and_dispatch():
                    await worker.drain()
                await worker.drain()
            for job in self.jobs:
                if job.next_at is not None and job.next_at <= self.clock.now():
                    await job.run(self.clock.now())
                    job.next_at = self.clock.now() + job.every
            if self.on_progress is not None:
                self.on_progress(self.clock.now())
        self.clock.advance(end)


def _offline(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("simulations do not reach real networks", request=request)
