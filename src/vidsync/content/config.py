"""Content store settings (``vidsync serve --blob-dir/--max-file-size/--project-quota``)."""

from __future__ import annotations

import re
from dataclasses import dataclass

GiB = 1024**3
# Defaults sized for video projects on one machine: a long 4K/ProRes take is tens of GB.
DEFAULT_MAX_FILE_SIZE = 256 * GiB
DEFAULT_PROJECT_QUOTA = 1024 * GiB

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
