"""Text that came from the network, made safe to show on a terminal or write to a log.

A server (or another member's agent, through the server) chooses the paths, names and error
messages the agents print. Raw, a control sequence in one of them would reach the user's terminal:
``ESC [2J`` clears it, OSC 52 writes the clipboard, cursor moves forge earlier lines, a bidi
override makes ``evil\u202etxt.exe`` read as something else. ``printable`` escapes every such
character the way Python's ``repr`` would (``\\x1b``, ``\\u202e``), and leaves the rest alone.
"""

from __future__ import annotations

import logging
import re
import unicodedata

# C0 controls, DEL and C1 controls: the bytes terminals act on.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# Unicode categories that render as nothing or change how other characters render: controls,
# format characters (bidi embeddings, overrides and isolates, zero-width space, BOM, tags...),
# surrogates (undecodable bytes of a file name), private use, line and paragraph separators.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Zl", "Zp"})
# Format characters that real text needs (emoji sequences, Persian and Indic scripts) and that
# cannot reorder or hide anything: kept.
_KEPT_FORMAT = frozenset({"\u200c", "\u200d"})


def _escape(ch: str) -> str:
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _unsafe(ch: str) -> bool:
    return unicodedata.category(ch) in _UNSAFE_CATEGORIES and ch not in _KEPT_FORMAT


def printable(text: object) -> str:
    """``text`` (anything; ``str()`` of it) with every non-printable character escaped."""
    s = text if isinstance(text, str) else str(text)
    if s.isascii():
        return _CONTROL.sub(lambda m: _escape(m.group()), s)
    return "".join(_escape(ch) if _unsafe(ch) else ch for ch in s)


class PrintableFormatter(logging.Formatter):
    """A log formatter that escapes what a record says (its message and any traceback), so a
    value from the network cannot forge log lines or drive the terminal that shows the log."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        return printable(super().formatMessage(record))

    def formatException(self, ei) -> str:  # noqa: ANN001, N802 - logging's signature
        return "\n".join(printable(line) for line in super().formatException(ei).split("\n"))

    def formatStack(self, stack_info: str) -> str:  # noqa: N802 - logging's name
        return "\n".join(printable(line) for line in super().formatStack(stack_info).split("\n"))


def log_to_stderr(level: str, fmt: str) -> None:
    """The agents' logging: to stderr, through ``PrintableFormatter``."""
    handler = logging.StreamHandler()
    handler.setFormatter(PrintableFormatter(fmt, datefmt="%H:%M:%S"))
    logging.basicConfig(level=level.upper(), handlers=[handler])


def say(line: object = "", *, flush: bool = False) -> None:
    """Print one line to stdout, escaped with ``printable``."""
    print(printable(line), flush=flush)
