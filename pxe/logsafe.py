"""Client-supplied text made safe for a log line.

A TFTP file name, an HTTP path or header, a DHCP host name: anyone on the boot LAN chooses these
bytes, and they end up in our log. A newline there forges a second log line; ESC sequences rewrite
an operator's terminal; Unicode line separators and bidi overrides do the same in viewers that
honour them. `safe()` escapes all of those so one event stays one honest line:

- C0 controls and DEL: `\\n`, `\\r`, `\\t` by name, the rest as `\\xNN`;
- C1 controls (U+0080..U+009F, NEL included) as `\\xNN`;
- U+2028/U+2029 (line/paragraph separator) and the bidi embedding, override and isolate
  controls (U+202A..U+202E, U+2066..U+2069) as `\\uNNNN`;
- a backslash itself as `\\\\`, so an escape in the log can never be confused with the same
  characters sent literally (`boot\\x64` stays readable as `boot\\\\x64`).
"""

from __future__ import annotations

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}
_UNICODE = frozenset([0x2028, 0x2029, *range(0x202A, 0x202F), *range(0x2066, 0x206A)])


def _escape(ch: str) -> str:
    named = _NAMED.get(ch)
    if named is not None:
        return named
    code = ord(ch)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


# Every escaped code point, looked up by str.translate (a code point not in it is kept as is).
_TABLE = {code: _escape(chr(code)) for code in (*range(0x20), 0x5C, *range(0x7F, 0xA0), *sorted(_UNICODE))}


def safe(value: object) -> str:
    """`str(value)` with control characters and the backslash escaped (see the module doc)."""
    text = value if isinstance(value, str) else str(value)
    if text.isascii() and text.isprintable() and "\\" not in text:
        return text  # the common case, decided in C
    return text.translate(_TABLE)


__all__ = ["safe"]
