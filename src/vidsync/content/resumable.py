"""A SHA-256 that can be saved part-way and resumed: an edit re-hashes from its first change.

A file's identity is the SHA-256 of all its bytes, so a 1 MiB edit in the middle of a 1 GiB file
would cost a pass over the whole GiB, on the owner's machine and again on the server (0.7-0.9 s
each on this project's reference machine). SHA-256 reads its input front to back, so its state
after a prefix depends on that prefix alone: kept at block boundaries (``Checkpoints``), it lets
the next version of the file, which shares a prefix of blocks (block hashes are SHA-256 too, so
equal hashes mean equal bytes), start hashing from the last checkpoint before its first change.

``hashlib`` cannot export or import that state, so this drives OpenSSL's ``SHA256_*`` calls (the
same library and the same SHA-NI code ``hashlib`` uses: 0.78 s per GiB against hashlib's 0.77 s)
through ``ctypes``, which releases the GIL during each call as ``hashlib`` does. Where that
library cannot be loaded, or its answers differ from ``hashlib`` in a self-test at import,
``AVAILABLE`` is False and everything still works, hashing whole files as before.

A saved state is 40 bytes: the eight 32-bit chaining words and the length in bits, taken only at
a 64-byte boundary (every block starts on one), where SHA-256 holds no buffered input.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import struct
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, TypeVar

# A state is kept at the first block boundary at or past every this many bytes.
CHECKPOINT_EVERY = 8 * 1024 * 1024
_STATE = struct.Struct("<8IQ")  # chaining words, length in bits
_INDEX = struct.Struct("<I")  # a stored state's block index


class _Ctx(ctypes.Structure):
    """OpenSSL's ``SHA256_CTX`` (``openssl/sha.h``; unchanged since 0.9.8)."""

    _fields_ = [("h", ctypes.c_uint32 * 8), ("Nl", ctypes.c_uint32), ("Nh", ctypes.c_uint32),
                ("data", ctypes.c_uint32 * 16), ("num", ctypes.c_uint32),
                ("md_len", ctypes.c_uint32)]


def _load() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("crypto")
    if name is None:
        return None
    try:
        lib = ctypes.CDLL(name)
        for fn in (lib.SHA256_Init, lib.SHA256_Update, lib.SHA256_Final):
            fn.restype = ctypes.c_int
        lib.SHA256_Init.argtypes = [ctypes.POINTER(_Ctx)]
        lib.SHA256_Update.argtypes = [ctypes.POINTER(_Ctx), ctypes.c_char_p, ctypes.c_size_t]
        lib.SHA256_Final.argtypes = [ctypes.c_char_p, ctypes.POINTER(_Ctx)]
    except (OSError, AttributeError):
        return None
    return lib


_lib = _load()


class ResumableSha256:
    """SHA-256 with ``state()`` / ``ResumableSha256(state)``; otherwise like ``hashlib``'s."""

    def __init__(self, state: bytes | None = None) -> None:
        if _lib is None:
            raise RuntimeError("resumable SHA-256 is not available here")
        self._ctx = _Ctx()
        _lib.SHA256_Init(ctypes.byref(self._ctx))
        self.length = 0
        if state is not None:
            *words, bits = _STATE.unpack(state)
            if bits % 512:
                raise ValueError("a saved state is taken at a 64-byte boundary")
            self._ctx.h[:] = words
            self._ctx.Nl, self._ctx.Nh = bits & 0xFFFFFFFF, bits >> 32
            self.length = bits // 8

    def update(self, data: bytes | bytearray | memoryview) -> None:
        size = memoryview(data).nbytes
        if not isinstance(data, bytes):
            try:  # a writable buffer (a bytearray or a view of one) is passed as it is
                data = (ctypes.c_char * size).from_buffer(data)
            except TypeError:
                data = bytes(data)
        _lib.SHA256_Update(ctypes.byref(self._ctx), data, size)
        self.length += size

    def state(self) -> bytes:
        """The state after the bytes so far (their count must be a multiple of 64)."""
        if self.length % 64:
            raise ValueError("a state is taken at a 64-byte boundary")
        return _STATE.pack(*self._ctx.h, self.length * 8)

    def hexdigest(self) -> str:
        ctx = _Ctx.from_buffer_copy(self._ctx)  # finalizing a copy keeps this one usable
        out = ctypes.create_string_buffer(32)
        _lib.SHA256_Final(out, ctypes.byref(ctx))
        return out.raw.hex()


def _check() -> bool:
    if _lib is None:
        return False
    try:
        data = bytes(range(256)) * 300
        first = ResumableSha256()
        first.update(data[:32000])
        resumed = ResumableSha256(first.state())
        resumed.update(data[32000:])
        whole = ResumableSha256()
        whole.update(data)
        expected = hashlib.sha256(data).hexdigest()
        return resumed.hexdigest() == whole.hexdigest() == expected
    except (OSError, ValueError, ctypes.ArgumentError):
        return False


AVAILABLE = _check()


if TYPE_CHECKING:
    Sha256 = ResumableSha256 | hashlib._Hash


def new_sha256(state: bytes | None = None) -> Sha256:
    """A resumable SHA-256 where possible, else ``hashlib``'s (then ``state`` must be None)."""
    if AVAILABLE and _lib is not None:
        return ResumableSha256(state)
    if state is not None:
        raise ValueError("resumable SHA-256 is not available here")
    return hashlib.sha256()


@dataclass
class Checkpoints:
    """Saved SHA-256 states of one file version at block boundaries: ``states[i]`` is the state
    after the bytes of ``blocks[:i]`` (only some ``i`` are kept; ``i == 0`` never is)."""

    blocks: tuple[str, ...]
    states: dict[int, bytes] = field(default_factory=dict)
    # Bytes at the start of this version the whole-file hash took from a saved state of an
    # earlier one instead of reading them (not stored).
    resumed_from: int = 0

    def resume_point(self, blocks: tuple[str, ...] | list[str],
                     limit: int | None = None) -> tuple[int, bytes] | None:
        """The latest kept state that also holds for a file made of ``blocks`` (a shared prefix
        of blocks), at or before block ``limit``: ``(index, state)``, or None."""
        end = min(len(self.blocks), len(blocks)) if limit is None else min(
            len(self.blocks), len(blocks), limit)
        shared = 0
        while shared < end and self.blocks[shared] == blocks[shared]:
            shared += 1
        best = max((i for i in self.states if i <= shared), default=0)
        return (best, self.states[best]) if best else None

    def nbytes(self) -> int:
        """About the memory this holds (a block hash in hex is a 113-byte str)."""
        return 120 * len(self.blocks) + 100 * len(self.states)

    def pack_states(self) -> bytes:
        """The states, for storage beside the block hashes: per state, its block index then the
        state (44 bytes; 5.5 KB per GiB of file)."""
        return b"".join(_INDEX.pack(i) + state for i, state in sorted(self.states.items()))

    @classmethod
    def unpack(cls, blocks: tuple[str, ...], packed: bytes) -> Checkpoints | None:
        """What ``pack_states`` stored, for the version made of ``blocks``; None if it does not
        fit them (the states are then not used: the file is hashed whole)."""
        step = _INDEX.size + _STATE.size
        if not packed or len(packed) % step:
            return None
        states = {}
        for at in range(0, len(packed), step):
            (index,) = _INDEX.unpack_from(packed, at)
            if not 0 < index < len(blocks):
                return None
            states[index] = packed[at + _INDEX.size:at + step]
        return cls(blocks, states)


K = TypeVar("K", bound=Hashable)


class StatesCache(Generic[K]):
    """Checkpoints by key, the least recently used dropped past ``max_bytes``."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.nbytes = 0
        self._entries: OrderedDict[K, Checkpoints] = OrderedDict()

    def __contains__(self, key: K) -> bool:
        return key in self._entries

    def get(self, key: K) -> Checkpoints | None:
        found = self._entries.get(key)
        if found is not None:
            self._entries.move_to_end(key)
        return found

    def put(self, key: K, checkpoints: Checkpoints | None) -> list[tuple[K, Checkpoints]]:
        """Keep (or with None, forget) ``key``'s checkpoints; returns what was dropped."""
        dropped = [(key, old)] if (old := self.pop(key)) is not None else []
        if checkpoints is None:
            return dropped
        self._entries[key] = checkpoints
        self.nbytes += checkpoints.nbytes()
        while self.nbytes > self.max_bytes:
            oldest = next(iter(self._entries))
            dropped.append((oldest, self.pop(oldest)))
        return dropped

    def pop(self, key: K) -> Checkpoints | None:
        old = self._entries.pop(key, None)
        if old is not None:
            self.nbytes -= old.nbytes()
        return old


class Recorder:
    """Keeps the states of a hash of ``count`` blocks as it passes block boundaries
    ``CHECKPOINT_EVERY`` apart (resumed at block ``start``, byte ``start_offset``, the states of
    ``inherited`` up to there still holding)."""

    def __init__(self, count: int, start: int = 0, start_offset: int = 0,
                 inherited: Checkpoints | None = None) -> None:
        self.count = count
        self.states = {} if inherited is None else {
            i: s for i, s in inherited.states.items() if i <= start}
        self._next = (start_offset // CHECKPOINT_EVERY + 1) * CHECKPOINT_EVERY
        self._index = start
        self._start_offset = start_offset

    def block_done(self, hasher: Sha256) -> None:
        """Block ``self._index`` has just been fed to ``hasher``."""
        self._index += 1
        if isinstance(hasher, ResumableSha256) and hasher.length >= self._next \
                and self._index < self.count:
            self.states[self._index] = hasher.state()
            self._next = (hasher.length // CHECKPOINT_EVERY + 1) * CHECKPOINT_EVERY

    def checkpoints(self, blocks: tuple[str, ...]) -> Checkpoints | None:
        """What was kept, for the version made of ``blocks``; None if nothing was."""
        return Checkpoints(blocks, self.states, self._start_offset) if self.states else None
