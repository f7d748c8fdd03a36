"""The systemd notify protocol (sd_notify), without a dependency.

``Type=notify`` services tell systemd when they are ready (READY=1), what they are doing
(STATUS=...), that they are alive (WATCHDOG=1, at least every WatchdogSec) and that they are
stopping (STOPPING=1), by datagrams on the socket named in ``$NOTIFY_SOCKET``.
"""

from __future__ import annotations

import os
import socket


def notify(*states: str) -> bool:
    """Send ``states`` (e.g. ``"READY=1"``); False when not run by systemd or sending failed."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # abstract namespace
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            # Never block the daemon on a notify socket nobody reads: a full socket is a
            # failed notify, not a stall.
            sock.send("\n".join(states).encode(), socket.MSG_DONTWAIT)
    except OSError:
        return False
    return True


def watchdog_interval() -> float | None:
    """Seconds between WATCHDOG=1 pings (half of WatchdogSec), or None when not asked for."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 1_000_000 / 2
    except ValueError:
        return None
