"""Media a browser may play from the project, and their poster frames.

Project content is whatever the owner put in the folder, so it is served as an opaque download
unless its name is on this allow-list of audio and video formats Chromium plays: only those are
ever sent with a media type (never HTML, SVG or anything a browser would run), and still with
``nosniff`` and a sandboxing CSP.

A poster frame is made by ``ffmpeg`` when it is installed (found on PATH at start), once per
content hash: cached next to the project's blocks, a failure cached too, so a file is tried once.
ffmpeg reads the stored blocks in place through its ``concatf:`` protocol (no copy of the file),
with the demuxer forced from the allow-list (no format probing, so no playlist or reference
following) and only the ``file`` and ``concatf`` protocols allowed; it gets ``POSTER_TIMEOUT_S``
and its output is capped at ``MAX_POSTER_BYTES``. At most ``POSTER_CONCURRENCY`` run at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass

from vidsync.content.blobstore import BlobStore
from vidsync.content.blocks import Manifest

log = logging.getLogger(__name__)

POSTER_TIMEOUT_S = 10.0
MAX_POSTER_BYTES = 512 * 1024
POSTER_WIDTH = 640
POSTER_CONCURRENCY = 2
# Where in the clip the poster is taken (seconds); a shorter clip gets its first frame.
POSTER_AT_S = 1.0


@dataclass(frozen=True, slots=True)
class MediaType:
    mime: str
    # ffmpeg's demuxer for a poster frame; None for audio (no poster).
    demuxer: str | None


# Keep in step with web/src/lib/media.ts.
MEDIA_TYPES: dict[str, MediaType] = {
    "mp4": MediaType("video/mp4", "mov"),
    "m4v": MediaType("video/mp4", "mov"),
    "webm": MediaType("video/webm", "matroska"),
    "ogv": MediaType("video/ogg", "ogg"),
    "mp3": MediaType("audio/mpeg", None),
    "m4a": MediaType("audio/mp4", None),
    "aac": MediaType("audio/aac", None),
    "wav": MediaType("audio/wav", None),
    "flac": MediaType("audio/flac", None),
    "oga": MediaType("audio/ogg", None),
    "ogg": MediaType("audio/ogg", None),
    "opus": MediaType("audio/ogg", None),
}


def media_type(path: str) -> MediaType | None:
    """The allow-listed media type for a file name, or None (then it is only downloaded)."""
    name = path.rsplit("/", 1)[-1]
    if "." not in name:
        return None
    return MEDIA_TYPES.get(name.rsplit(".", 1)[1].lower())


class PosterMaker:
    """Poster frames (JPEG) by ffmpeg, cached per content hash under the blob store."""

    def __init__(self, blobs: BlobStore, ffmpeg: str | None = None) -> None:
        self.blobs = blobs
        self.ffmpeg = ffmpeg if ffmpeg is not None else shutil.which("ffmpeg")
        self._slots = asyncio.Semaphore(POSTER_CONCURRENCY)
        self._running: dict[tuple[str, str], asyncio.Future[bytes | None]] = {}

    @property
    def available(self) -> bool:
        return self.ffmpeg is not None

    async def poster(self, project_id: str, manifest: Manifest, kind: MediaType) -> bytes | None:
        """The poster's JPEG bytes, or None when there is none (audio, no ffmpeg, or ffmpeg
        could not make one). Concurrent calls for one file share one ffmpeg run."""
        if self.ffmpeg is None or kind.demuxer is None:
            return None
        path = self.blobs.poster_path(project_id, manifest.hash)
        cached = await asyncio.to_thread(_read_cached, path)
        if cached is not None:
            return cached or None
        key = (project_id, manifest.hash)
        running = self._running.get(key)
        if running is not None:
            return await asyncio.shield(running)
        future: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
        self._running[key] = future
        try:
            async with self._slots:
                data = await self._make(project_id, manifest, kind.demuxer)
            # An empty file records a failure, so the same content is not tried again.
            await asyncio.to_thread(self.blobs.put_cache_file, path, data or b"")
            future.set_result(data)
            return data
        except BaseException as e:
            if isinstance(e, asyncio.CancelledError):
                future.cancel()
            else:
                future.set_exception(e)
                future.exception()  # retrieved: no "never retrieved" warning if nobody waits
            raise
        finally:
            del self._running[key]

    async def _make(self, project_id: str, manifest: Manifest, demuxer: str) -> bytes | None:
        if not manifest.blocks:
            return None
        fd, listing = tempfile.mkstemp(prefix="vidsync-poster-", suffix=".txt")
        try:
            with os.fdopen(fd, "w") as f:
                for ref in manifest.blocks:
                    f.write(self.blobs.block_path(project_id, ref.hash) + "\n")
            for at in (POSTER_AT_S, 0.0):
                data = await self._run(demuxer, listing, at)
                if data:
                    return data
            return None
        finally:
            with contextlib.suppress(OSError):
                os.unlink(listing)

    async def _run(self, demuxer: str, listing: str, at: float) -> bytes | None:
        assert self.ffmpeg is not None
        proc = await asyncio.create_subprocess_exec(
            self.ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-threads", "1",
            "-protocol_whitelist", "file,concatf", "-f", demuxer, "-ss", str(at),
            "-i", f"concatf:{listing}", "-frames:v", "1", "-an", "-sn", "-dn",
            "-vf", f"scale='min({POSTER_WIDTH},iw)':-2", "-q:v", "5",
            "-f", "image2pipe", "-c:v", "mjpeg", "pipe:1",
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        try:
            out, err = await asyncio.wait_for(_read_capped(proc), POSTER_TIMEOUT_S)
        except TimeoutError:
            log.warning("ffmpeg took over %.0f s for a poster frame; gave up", POSTER_TIMEOUT_S)
            return None
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        if proc.returncode != 0 or out is None or not out.startswith(b"\xff\xd8"):
            if err:
                log.info("no poster frame: ffmpeg said %s", err[:300].decode(errors="replace"))
            return None
        return out


async def _read_capped(proc: asyncio.subprocess.Process) -> tuple[bytes | None, bytes]:
    """stdout (None past ``MAX_POSTER_BYTES``) and the start of stderr, once ffmpeg exits."""
    assert proc.stdout is not None and proc.stderr is not None
    err_task = asyncio.create_task(proc.stderr.read())
    chunks: list[bytes] = []
    total = 0
    while chunk := await proc.stdout.read(64 * 1024):
        total += len(chunk)
        if total > MAX_POSTER_BYTES:
            proc.kill()
            await proc.wait()
            return None, (await err_task)[:4096]
        chunks.append(chunk)
    await proc.wait()
    return b"".join(chunks), (await err_task)[:4096]


def _read_cached(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read(MAX_POSTER_BYTES + 1)
    except FileNotFoundError:
        return None
