"""Early write-back is really there on Linux: ``os`` lacks ``sync_file_range``, and a check for it
there once left the call dead without anyone noticing."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from vidsync import writeback


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sync_file_range is Linux's")
def test_sync_file_range_is_called_from_libc(tmp_path: Path) -> None:
    assert writeback._sync_file_range is not None
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT)
    try:
        os.write(fd, os.urandom(1 << 20))
        assert writeback._sync_file_range(fd, 0, 0, writeback.SYNC_FILE_RANGE_WRITE) == 0
        writeback.start_writeback(fd, 0, 1 << 20)
        writeback.start_writeback(-1)  # a bad descriptor is ignored: the fsync reports
    finally:
        os.close(fd)
