"""One log record, one line: text a user chose cannot start a line that reads like another record.

Names, comments, URLs and exception messages reach log messages; a CR or LF in them would let a
request forge what looks like a second record (ASVS 16.4.1). Line breaks and other control characters
are written as escapes instead, in the message, its arguments and any traceback (which therefore stays
on the record's one line too).
"""

from __future__ import annotations

import logging

_ESCAPES = {code: f"\\x{code:02x}" for code in (*range(0x20), 0x7F) if code != 0x09}
_ESCAPES |= {0x0A: "\\n", 0x0D: "\\r", 0x85: "\\x85", 0x2028: "\\u2028", 0x2029: "\\u2029"}


def escape_line_breaks(text: str) -> str:
    return text.translate(_ESCAPES)


class SingleLineFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return escape_line_breaks(super().format(record))
