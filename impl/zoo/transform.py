"""ECHO-1 defects: the transform is done on text, not on bytes.

Each overrides `SelectEchoServer.transform` (``data.upper()`` in the reference).
"""

from __future__ import annotations

from impl.select_server import SelectEchoServer


class DecodeReplaceServer(SelectEchoServer):
    """Uppercases text: data.decode("utf-8", "replace").upper().encode() turns every
    byte that is not valid UTF-8 into U+FFFD (3 bytes) and uppercases non-ASCII
    letters (é -> É). Breaks ECHO-1 (and ECHO-2: the length changes)."""

    def transform(self, data: bytes) -> bytes:
        return data.decode("utf-8", errors="replace").upper().encode("utf-8")


class Latin1UpperServer(SelectEchoServer):
    """Decodes as Latin-1 "because it maps every byte", then str.upper() maps
    0xE0-0xFE to 0xC0-0xDE, 'ß' (0xDF) to 'SS', and 'ÿ'/'µ' to '?' on re-encoding
    (errors="replace"). Breaks ECHO-1 (and ECHO-2: ß is two bytes)."""

    def transform(self, data: bytes) -> bytes:
        return data.decode("latin-1").upper().encode("latin-1", errors="replace")


class SurrogateEscapeUpperServer(SelectEchoServer):
    """The "lossless" fix of DecodeReplace: surrogateescape round-trips invalid
    bytes, but str.upper() still changes every valid UTF-8 lowercase letter
    (b'\\xc3\\xa9' é -> b'\\xc3\\x89' É). Breaks ECHO-1 only for valid UTF-8."""

    def transform(self, data: bytes) -> bytes:
        text = data.decode("utf-8", errors="surrogateescape")
        return text.upper().encode("utf-8", errors="surrogateescape")
