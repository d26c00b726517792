"""Escaping text from the network before it is printed or logged."""

from __future__ import annotations

import logging

from vidsync.server.main import JsonFormatter
from vidsync.text import PrintableFormatter, printable


def test_printable_escapes_controls_and_invisible_formatting():
    assert printable("clips/a.mov") == "clips/a.mov"
    assert printable("caf\u00e9 \u65e5\u672c \U0001f3ac") == "caf\u00e9 \u65e5\u672c \U0001f3ac"
    assert printable("\x1b[2J\x1b]52;c;eA==\x07") == "\\x1b[2J\\x1b]52;c;eA==\\x07"
    assert printable("tab\tnl\ncr\rdel\x7f") == "tab\\x09nl\\x0acr\\x0ddel\\x7f"
    assert printable("c1\x9b31m") == "c1\\x9b31m"  # a C1 CSI: some terminals act on it
    assert printable("a\u202eb\u2066c\u2069d\u200be\ufefff") == "a\\u202eb\\u2066c\\u2069d\\u200be\\ufefff"
    assert printable("line\u2028sep") == "line\\u2028sep"
    assert printable("tag\U000e0041") == "tag\\U000e0041"
    assert printable("bad\udcff") == "bad\\udcff"  # an undecodable byte of a file name
    # Joiners are part of real text (emoji sequences, several scripts): kept.
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467"
    assert printable(family) == family
    assert printable(42) == "42"


def _record(msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("t", logging.WARNING, __file__, 1, msg, args, None)


def test_agent_log_lines_cannot_be_forged():
    out = PrintableFormatter("%(levelname)s %(message)s").format(
        _record("refused %s", "a\n12:00:00 INFO all good\x1b[1A"))
    assert out == "WARNING refused a\\x0a12:00:00 INFO all good\\x1b[1A"


def test_server_json_log_escapes_client_values():
    out = JsonFormatter().format(_record("bad path %s", "x\x1b[2J\u202e"))
    assert "\x1b" not in out and "\u202e" not in out and "\\u001b" in out
