"""Content store settings (``vidsync serve --blob-dir/--max-file-size/--project-quota``)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from vidsync.content.blobstore import DEFAULT_GC_GRACE_S

GiB = 1024**3
# Defaults sized for video projects on one machine: a long 4K/ProRes take is tens of GB.
DEFAULT_MAX_FILE_SIZE = 256 * GiB
DEFAULT_PROJECT_QUOTA = 1024 * GiB
DAY_S = 24 * 3600
# Replaced and deleted versions stay restorable this long (--retention).
DEFAULT_RETENTION_S = 30 * DAY_S
DEFAULT_GC_INTERVAL_S = 3600.0

_SIZE_RE = re.compile(r"(\d+)\s*([KMGT]i?B?|B)?", re.IGNORECASE)
_UNITS = {"": 1, "B": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def parse_size(text: str) -> int:
    """``1073741824``, ``512M``, ``20G``, ``1TiB`` -> bytes (binary units)."""
    m = _SIZE_RE.fullmatch(text.strip())
    if m is None:
        raise ValueError(f"not a size: {text!r} (use e.g. 500M, 20G, 2T)")
    unit = (m.group(2) or "").upper()[:1]
    return int(m.group(1)) * _UNITS[unit if unit != "B" else ""]


@dataclass(frozen=True)
class ContentConfig:
    # Where blocks and manifests live; default <data_dir>/blobs. Nodes may share one directory.
    blob_dir: str | None = None
    max_file_size: int = DEFAULT_MAX_FILE_SIZE
    project_quota: int = DEFAULT_PROJECT_QUOTA
    retention_s: float = DEFAULT_RETENTION_S
    # 0 turns the periodic collection off (run ``vidsync gc`` instead).
    gc_interval_s: float = DEFAULT_GC_INTERVAL_S
    gc_grace_s: float = DEFAULT_GC_GRACE_S


_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd]?)", re.IGNORECASE)
_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": DAY_S}


def parse_duration(text: str) -> float:
    """``30d``, ``12h``, ``90m``, ``45s``, ``3600`` (seconds) -> seconds."""
    m = _DURATION_RE.fullmatch(text.strip())
    if m is None:
        raise ValueError(f"not a duration: {text!r} (use e.g. 30d, 12h, 90m, 45s)")
    return float(m.group(1)) * _DURATION_UNITS[m.group(2).lower()]
