"""File names are data: how a name is shown in a message so that it stays one readable line.

On POSIX a file name is any bytes but `/` and NUL. Python decodes the bytes that are not UTF-8
into lone surrogates (U+DC80 to U+DCFF, `os.fsdecode`'s surrogateescape), which a strict UTF-8
stream refuses to print, and a name may hold a newline, which splits an `error: PATH: REASON`
line in two. `display_name` turns such characters into Python-style escapes.
"""

from __future__ import annotations

import os
import unicodedata

__all__ = ["display_name"]

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# Control, format (bidirectional overrides, zero-width), surrogate, line and paragraph
# separators: characters that move, hide or break the text around them on a terminal.
_ESCAPED_CATEGORIES = {"Cc", "Cf", "Cs", "Zl", "Zp"}


def _escape(char: str) -> str:
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte, kept by surrogateescape
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def display_name(name: str | bytes | os.PathLike) -> str:
    """`name` as one printable line: undecodable bytes as \\xNN, newlines as \\n, and so on.

    Printable text (any script, emoji, backslashes) is unchanged, so ordinary names read as they
    are; the result is for people and is not meant to be decoded back.
    """
    text = os.fsdecode(name)
    if text.isprintable():  # the common case; isprintable() is False for every escaped class
        return text
    return "".join(_escape(c) if unicodedata.category(c) in _ESCAPED_CATEGORIES else c
                   for c in text)
