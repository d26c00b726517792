"""The owner's agent (``vidsync share``): scan, hash, upload and post a folder, then watch it."""

from vidsync.agent.share.status import share_status

__all__ = ["share_status"]
