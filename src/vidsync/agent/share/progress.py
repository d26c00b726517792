"""Progress bars (rich) for the first sync and large transfers, on stderr when it is a terminal.

Without a terminal (a service, a test) the bars stay hidden and the log lines tell the story.
"""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

# A transfer at least this big gets a bar even after the first sync.
LARGE_TRANSFER = 64 * 1024 * 1024


class Bars:
    """One bar at a time: ``start(label, total)``, ``advance(n)`` (thread-safe), ``stop()``."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    @property
    def enabled(self) -> bool:
        return self.console.is_terminal

    def start(self, label: str, total: int | None) -> None:
        """``total`` None: not known yet (the bar pulses)."""
        self.stop()
        if not self.enabled:
            return
        self._progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                  TransferSpeedColumn(), TimeRemainingColumn(),
                                  console=self.console, transient=True)
        self._task = self._progress.add_task(label, total=total)
        self._progress.start()

    def advance(self, n: int) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task, n)

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
        self._progress = self._task = None
