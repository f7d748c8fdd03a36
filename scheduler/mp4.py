"""The duration of an MP4/MOV file, read from its ``moov/mvhd`` box (ISO/IEC 14496-12).

Only box headers are read (a few bytes each, by seeking), so a large or hostile file costs
no memory; anything unexpected gives None, and the network's own check decides.
"""

from __future__ import annotations

import struct
from typing import BinaryIO

__all__ = ["duration_seconds"]

_MAX_BOXES = 10_000


def _boxes(f: BinaryIO, start: int, end: int) -> list[tuple[bytes, int, int]]:
    """(type, payload start, box end) of the boxes between ``start`` and ``end``."""
    found: list[tuple[bytes, int, int]] = []
    offset = start
    while offset + 8 <= end and len(found) < _MAX_BOXES:
        f.seek(offset)
        header = f.read(8)
        if len(header) < 8:
            break
        size, kind = struct.unpack(">I4s", header)
        payload = offset + 8
        if size == 1:
            large = f.read(8)
            if len(large) < 8:
                break
            size = struct.unpack(">Q", large)[0]
            payload += 8
        elif size == 0:
            size = end - offset
        if size < payload - offset or offset + size > end:
            break
        found.append((kind, payload, offset + size))
        offset += size
    return found


def duration_seconds(f: BinaryIO) -> float | None:
    """The movie's duration in seconds, or None when the file does not say it plainly.

    ``f``: the file, open for binary reading (the adapter opens media through
    ``scheduler.media``); it is left open.
    """
    try:
        end = f.seek(0, 2)
        for kind, start, stop in _boxes(f, 0, end):
            if kind != b"moov":
                continue
            for inner, payload, _ in _boxes(f, start, stop):
                if inner != b"mvhd":
                    continue
                f.seek(payload)
                version = f.read(1)
                if version == b"\x01":
                    f.seek(payload + 20)
                    data = f.read(12)
                    if len(data) < 12:
                        return None
                    scale, length = struct.unpack(">IQ", data)
                else:
                    f.seek(payload + 12)
                    data = f.read(8)
                    if len(data) < 8:
                        return None
                    scale, length = struct.unpack(">II", data)
                return length / scale if scale else None
    except OSError:
        return None
    return None
