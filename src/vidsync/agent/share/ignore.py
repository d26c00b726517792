"""Which paths the owner's agent never shares: sane defaults plus the folder's ``.vidsyncignore``.

The rules are gitignore syntax (pathspec's ``GitIgnoreSpec``). The defaults come first, so a line
in ``.vidsyncignore`` such as ``!*.tmp`` can bring a default back: in gitignore the last match wins.
"""

from __future__ import annotations

from pathlib import Path

import pathspec

from vidsync.changes import RESERVED_DIR

IGNORE_FILE = ".vidsyncignore"
# Temp, lock and swap files of editors, office suites, browsers and operating systems: they come
# and go in seconds and mean nothing to a collaborator.
DEFAULT_RULES = (
    f"/{RESERVED_DIR}/",
    f"/{IGNORE_FILE}",
    "*.swp", "*.swo", "*.swx", ".*.sw[a-p]",  # vim
    "4913",  # vim's probe file
    "*~", ".#*", "#*#",  # emacs and many others
    "*.tmp", "*.temp", "*.part", "*.crdownload", "*.partial",
    "~$*", ".~lock.*#",  # Microsoft Office and LibreOffice locks
    "*.prlock", "*.lck",  # Premiere Pro and Avid locks: mapped to project locks (agent/locks.py)
    ".DS_Store", "._*", ".Spotlight-V100/", ".Trashes/", ".fseventsd/", ".TemporaryItems/",
    "Thumbs.db", "ehthumbs.db", "desktop.ini", "$RECYCLE.BIN/",
    ".Trash-*/",
)


class IgnoreRules:
    """Compiled rules for one shared folder; ``reload`` after ``.vidsyncignore`` changes."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.reload()

    def reload(self) -> None:
        try:
            user = (self.root / IGNORE_FILE).read_text(errors="replace").splitlines()
        except (FileNotFoundError, IsADirectoryError, PermissionError):
            user = []
        self.spec = pathspec.GitIgnoreSpec.from_lines([*DEFAULT_RULES, *user])

    def ignored(self, rel: str, is_dir: bool = False) -> bool:
        """``rel`` is the ``/``-separated path from the root; a directory also matches ``dir/`` rules."""
        return self.spec.match_file(rel + "/" if is_dir else rel)
