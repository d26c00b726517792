"""Copying a range of one file into another at the cheapest the filesystem allows.

In order of preference, as Syncthing's ``copyRangeMethod``:

1. ``FICLONERANGE`` (a reflink): the new file shares the old file's extents, nothing is written
   until one of them changes. Btrfs and XFS (``reflink=1``, the default since xfsprogs 5.1) do it;
   ext4 does not.
2. ``os.copy_file_range``: the kernel copies without the bytes passing through this process (NFS
   and CIFS copy on the server side; on ext4 it is an in-kernel read and write).
3. ``pread`` + ``pwrite``.

A method that fails because the filesystem lacks it is not tried again by the same ``Copier``.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
from dataclasses import dataclass, field

from vidsync.writeback import start_writeback

# _IOW(0x94, 13, struct file_clone_range) from linux/fs.h
FICLONERANGE = 0x4020940D
# Errors that mean "this filesystem (pair) cannot do that", not "this call went wrong".
_UNSUPPORTED = {errno.EOPNOTSUPP, errno.ENOTTY, errno.EXDEV, errno.EINVAL, errno.ENOSYS,
                errno.EBADF, errno.EPERM}
CHUNK = 8 * 1024 * 1024


@dataclass
class Copier:
    """Copies ranges between open files; counts the bytes each method moved."""

    reflink: bool = True
    copy_file_range: bool = hasattr(os, "copy_file_range")
    moved: dict[str, int] = field(default_factory=lambda: {"reflink": 0, "copy_file_range": 0,
                                                           "write": 0})

    def copy(self, src_fd: int, src_offset: int, dst_fd: int, dst_offset: int,
             length: int) -> str:
        """Copy ``length`` bytes; returns the method used. Blocking."""
        if self.reflink and self._clone(src_fd, src_offset, dst_fd, dst_offset, length):
            self.moved["reflink"] += length
            return "reflink"
        if self.copy_file_range and self._copy_range(src_fd, src_offset, dst_fd, dst_offset,
                                                     length):
            self.moved["copy_file_range"] += length
            # Written, unlike a reflink: start it on its way, so the fsync before the rename
            # does not find a whole file's worth of dirty pages (vidsync/writeback.py).
            start_writeback(dst_fd, dst_offset, length)
            return "copy_file_range"
        done = 0
        while done < length:
            data = os.pread(src_fd, min(CHUNK, length - done), src_offset + done)
            if not data:
                raise OSError(errno.EIO, "the source is shorter than the range to copy")
            os.pwrite(dst_fd, data, dst_offset + done)
            done += len(data)
        start_writeback(dst_fd, dst_offset, length)
        self.moved["write"] += length
        return "write"

    def _clone(self, src_fd: int, src_offset: int, dst_fd: int, dst_offset: int,
               length: int) -> bool:
        arg = struct.pack("qQQQ", src_fd, src_offset, length, dst_offset)
        try:
            fcntl.ioctl(dst_fd, FICLONERANGE, arg)
            return True
        except OSError as e:
            if e.errno == errno.EINVAL:
                return False  # may be this range's alignment (e.g. a short last block): go on
            if e.errno in _UNSUPPORTED:
                self.reflink = False
                return False
            raise

    def _copy_range(self, src_fd: int, src_offset: int, dst_fd: int, dst_offset: int,
                    length: int) -> bool:
        done = 0
        try:
            while done < length:
                n = os.copy_file_range(src_fd, dst_fd, length - done, src_offset + done,
                                       dst_offset + done)
                if n == 0:
                    raise OSError(errno.EIO, "the source is shorter than the range to copy")
                done += n
            return True
        except OSError as e:
            if done == 0 and e.errno in _UNSUPPORTED:
                self.copy_file_range = False
                return False
            raise
