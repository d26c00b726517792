"""Start writing a file's dirty pages to disk now, without waiting for them.

Python's ``os`` has no ``sync_file_range(2)``, so it is called from libc here. Why it matters:
a process that writes a GiB and fsyncs only at the end lets a GiB of dirty pages pile up, and
past the kernel's dirty threshold every further write is throttled and pays for reclaim. Measured
on the project's 2-core VM (ext4, 1 GiB in 1 MiB writes, then fsync): 3.9-4.2 s of writing
(2.2-3.4 s of it system CPU) and a 0.5 s fsync without it; 0.5 s of writing (0.3 s system CPU)
and a 0.01 s fsync when each 1 MiB is handed to ``sync_file_range(SYNC_FILE_RANGE_WRITE)`` as it
is written. Durability still comes from the fsync; this only moves the disk work earlier.
Elsewhere than Linux (or without the call) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

SYNC_FILE_RANGE_WRITE = 2  # <fcntl.h>: start write-out of dirty pages, do not wait


def _load() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_sync_file_range = _load()


def start_writeback(fd: int, offset: int = 0, length: int = 0) -> None:
    """Start writing ``[offset, offset + length)`` of ``fd`` out (``length`` 0: to the end).
    Errors are ignored: the caller's fsync is what makes the data durable, and reports."""
    if _sync_file_range is not None:
        _sync_file_range(fd, offset, length, SYNC_FILE_RANGE_WRITE)
