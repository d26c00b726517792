"""A folder as a zip, written to a stream as it is produced (no temporary file, no seeking).

The standard library's ``zipfile`` already knows how to write to a non-seekable stream (each
entry's sizes and CRC go in a data descriptor after its data) and how to switch to ZIP64 for big
entries and archives; this module only drains what it wrote into an async writer as it goes.
Entries are stored, not compressed: video does not compress, and storing keeps it fast.
"""

from __future__ import annotations

import io
import time
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

FLUSH_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class ZipEntry:
    name: str
    size: int
    mtime_ms: int | None
    chunks: Callable[[], AsyncIterator[bytes]]


class _Sink(io.RawIOBase):
    """Collects what zipfile writes; not seekable, so zipfile streams."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:  # noqa: ANN001 - any bytes-like, as io.RawIOBase
        self.parts.append(bytes(b))
        self.size += len(b)
        return len(b)

    def take(self) -> bytes:
        data = b"".join(self.parts)
        self.parts.clear()
        self.size = 0
        return data


def _dos_time(mtime_ms: int | None) -> tuple[int, int, int, int, int, int]:
    # Zip timestamps are local DOS times from 1980 to 2107.
    t = time.localtime((mtime_ms or 0) / 1000)
    year = min(max(t.tm_year, 1980), 2107)
    if year != t.tm_year:
        return (year, 1, 1, 0, 0, 0)
    return (t.tm_year, t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec)


async def write_zip(entries: list[ZipEntry], write: Callable[[bytes], Awaitable[None]]) -> None:
    """Write a zip of ``entries`` through ``write``, holding about ``FLUSH_BYTES`` at a time."""
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for entry in entries:
            info = zipfile.ZipInfo(entry.name, date_time=_dos_time(entry.mtime_ms))
            info.compress_type = zipfile.ZIP_STORED
            info.external_attr = 0o644 << 16
            info.file_size = entry.size  # lets zipfile pick ZIP64 for this entry up front
            with zf.open(info, "w") as out:
                async for chunk in entry.chunks():
                    out.write(chunk)
                    if sink.size >= FLUSH_BYTES:
                        await write(sink.take())
            await write(sink.take())
    await write(sink.take())
