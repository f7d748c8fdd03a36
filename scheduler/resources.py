"""Files shipped beside the package: the example config and plans, the systemd unit.

In a checkout they are in ``config/``; an installed wheel puts them under
``<prefix>/share/smm-scheduler/``.
"""

from __future__ import annotations

import sys
import sysconfig
from pathlib import Path

from scheduler.errors import SmmError

_CHECKOUT = Path(__file__).resolve().parent.parent / "config"


def shipped(name: str) -> Path:
    """The path of the shipped file ``name`` (e.g. ``example.toml``)."""
    candidates = [
        _CHECKOUT / name,
        Path(sysconfig.get_path("data")) / "share" / "smm-scheduler" / name,
        Path(sys.prefix) / "share" / "smm-scheduler" / name,
    ]
    for path in candidates:
        if path.is_file():
            return path
    raise SmmError(
        f"cannot find the shipped file {name}; looked in "
        + ", ".join(str(p.parent) for p in candidates)
    )
