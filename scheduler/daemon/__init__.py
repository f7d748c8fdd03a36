"""The daemon: claims due posts with a lease, publishes them through plugins, records outcomes.

* ``store``: every database step (claim, outcomes, lease renewal and rescue, misfire policy),
  each one short transaction;
* ``limits``: per-account and per-platform concurrency and rate limits;
* ``dispatch``: one publish attempt, isolated from a misbehaving plugin, classified;
* ``worker``: the steps put together, usable by the service and by simulations;
* ``service``: the long-running ``smm run`` (APScheduler jobs, signals, systemd notify).
"""
