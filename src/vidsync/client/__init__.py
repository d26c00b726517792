"""The Python SDK for a Vidsync server, used by the agents (``vidsync share`` / ``vidsync join``).

    async with Client("http://127.0.0.1:5000", token) as c:
        result = await c.upload_file(project_id, "clips/a.mov")      # only missing blocks
        await c.post_changes(project_id, [{"path": "clips/a.mov", "op": "create",
                                           "hash": result.hash, "size": result.size}])
        await c.put_small_files(project_id, [(sha256_hex, frame_bytes), ...])  # 1000 at once
        async for event in c.follow(project_id, since_seq=0):        # exactly once, in order
            ...
"""

from vidsync.client.api import Client, SmallFiles
from vidsync.client.errors import (
    ApiError,
    ClientError,
    ContentMismatch,
    ProjectRemoved,
    ServerUnreachable,
)
from vidsync.client.follow import ConnectionState, Follower
from vidsync.client.transfer import DownloadResult, UploadResult
from vidsync.content.blocks import BlockRef, Manifest, block_size_for, hash_file, split_file
from vidsync.content.resumable import Checkpoints

__all__ = [
    "ApiError", "BlockRef", "Client", "ClientError", "ConnectionState", "ContentMismatch",
    "DownloadResult", "Follower", "Manifest", "ProjectRemoved", "ServerUnreachable", "SmallFiles",
    "UploadResult", "block_size_for", "split_file", "hash_file", "Checkpoints",
]
