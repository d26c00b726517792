"""Frame sequences: many per-frame image files read as one line, ``sh010_comp.[0000001-0014400].exr``.

The rule is the web UI's (web/src/lib/sequences.ts), so both show the same lines: the last run of
digits before the extension is the frame number; files of one folder that share what comes before
and after it, and the number's width, make a sequence when there are at least ``MIN_FRAMES`` of
them and the extension is an image format stored one frame per file. Camera clips
(``A001_C004.mov``) are never grouped: people look for each one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

MIN_FRAMES = 3
FRAME_EXTENSIONS = frozenset({
    "exr", "dpx", "cin", "tif", "tiff", "png", "jpg", "jpeg", "tga", "bmp", "jp2", "j2c", "hdr",
    "sgi", "rgb", "dng", "ari", "webp", "psd", "heic", "avif",
})
_FRAME_RE = re.compile(r"^(.*?)(\d+)(\.[A-Za-z0-9]+)$")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class FrameName:
    prefix: str
    digits: str
    suffix: str

    @property
    def frame(self) -> int:
        return int(self.digits)

    @property
    def key(self) -> tuple[str, int, str]:
        return self.prefix, len(self.digits), self.suffix


def parse_frame_name(name: str) -> FrameName | None:
    """The frame number and sequence key of a file name (no folder), or None."""
    m = _FRAME_RE.match(name)
    if m is None or m.group(3)[1:].lower() not in FRAME_EXTENSIONS:
        return None
    return FrameName(m.group(1), m.group(2), m.group(3))


@dataclass(slots=True)
class Sequence(Generic[T]):
    """Frames of one sequence in one folder, in frame order."""

    folder: str  # "" or "renders/sh010/"
    first: FrameName
    last: FrameName
    frames: list[T] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.first.prefix}[{self.first.digits}-{self.last.digits}]{self.first.suffix}"

    @property
    def path(self) -> str:
        return self.folder + self.name

    @property
    def missing(self) -> int:
        """Frame numbers between the first and the last that have no file."""
        return self.last.frame - self.first.frame + 1 - len(self.frames)


class _Slot:
    """Where a sequence goes in the output: the place of its first file."""

    __slots__ = ("key",)

    def __init__(self, key: tuple[str, tuple[str, int, str]]) -> None:
        self.key = key


def group(items: Iterable[T], path_of: Callable[[T], str]) -> list[T | Sequence[T]]:
    """``items`` (anything ``path_of`` gives a project path for) with the files of each frame
    sequence replaced by one ``Sequence``, where its first file was; the rest keep their order."""
    slots: list[T | _Slot] = []
    groups: dict[tuple[str, tuple[str, int, str]], list[tuple[FrameName, T]]] = {}
    for item in items:
        folder, _, name = path_of(item).rpartition("/")
        frame = parse_frame_name(name)
        if frame is None:
            slots.append(item)
            continue
        key = (folder, frame.key)
        if key not in groups:
            groups[key] = []
            slots.append(_Slot(key))
        groups[key].append((frame, item))
    result: list[T | Sequence[T]] = []
    for slot in slots:
        if not isinstance(slot, _Slot):
            result.append(slot)
            continue
        members = sorted(groups[slot.key], key=lambda m: m[0].frame)
        if len(members) < MIN_FRAMES:
            result.extend(item for _, item in members)
            continue
        folder = slot.key[0]
        result.append(Sequence(folder + "/" if folder else "", members[0][0], members[-1][0],
                               [item for _, item in members]))
    return result
