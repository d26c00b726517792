"""What the join agent shows: one line per applied change, and rich progress bars on a terminal.

Bars appear for the first sync (all the bytes to fetch) and for any single large transfer. Lines go
to stdout whether or not it is a terminal, so a log file or ``tail -f`` shows the same story.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

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
from rich.text import Text

from vidsync.text import printable

# A single transfer at least this big gets its own bar.
LARGE_FILE = 32 * 1024 * 1024
_STYLES = {"created": "green", "updated": "cyan", "deleted": "yellow", "local-edit": "magenta",
           "refused": "red", "failed": "red", "rejected": "red"}


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError


class Ui:
    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(highlight=False, soft_wrap=True)
        self.progress = Progress(
            TextColumn("{task.description}", markup=False), BarColumn(), DownloadColumn(binary_units=True),
            TransferSpeedColumn(), TimeRemainingColumn(), console=self.console,
            disable=not self.console.is_terminal, transient=True)
        self._overall: TaskID | None = None

    def __enter__(self) -> Ui:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def line(self, what: str, path: str, detail: str = "") -> None:
        self.lines([(what, path, detail)])

    def lines(self, items: list[tuple[str, str, str]]) -> None:
        """One line per ``(what, path, detail)``, printed at once (a batch of small files prints
        a thousand lines: one by one, printing would cost more than installing them)."""
        if not items:
            return
        stamp = time.strftime("%H:%M:%S")
        lines = [printable(f"{stamp} {what:<10} {path}" + (f"  ({detail})" if detail else ""))
                 for what, path, detail in items]
        if not self.console.is_terminal:
            # A log: no styles, no bars to keep below. Rich renders line by line (tens of
            # microseconds each), so the lines go out as they are.
            self.console.file.write("\n".join(lines) + "\n")
            self.console.file.flush()
            return
        text = Text()
        for i, ((what, _, _), line) in enumerate(zip(items, lines, strict=True)):
            text.append(("\n" if i else "") + line, style=_STYLES.get(what, ""))
        self.console.print(text, markup=False, highlight=False)

    def message(self, text: str) -> None:
        self.console.print(printable(text), markup=False, highlight=False)

    def start_overall(self, files: int, total_bytes: int) -> None:
        if self._overall is None and files:
            self._overall = self.progress.add_task(f"first sync: {files} files", total=total_bytes)

    def advance(self, n: int) -> None:
        """``n`` more bytes of the first sync are in place (for a batch, without a transfer)."""
        if self._overall is not None:
            self.progress.advance(self._overall, n)

    def finish_overall(self) -> None:
        if self._overall is not None:
            self.progress.remove_task(self._overall)
            self._overall = None

    @contextmanager
    def transfer(self, path: str, size: int | None) -> Iterator[Callable[[int], None]]:
        """A progress callback for one file's bytes, with its own bar if it is large."""
        task = None
        if size is not None and size >= LARGE_FILE:
            task = self.progress.add_task(printable(path), total=size)

        def advance(n: int) -> None:
            if task is not None:
                self.progress.advance(task, n)
            self.advance(n)

        try:
            yield advance
        finally:
            if task is not None:
                self.progress.remove_task(task)
