"""Reading a PDF's hexadecimal strings in one pass, instead of pyHanko's one byte at a time.

Every signature's /Contents is a hex string of tens of thousands of digits (the CMS container and the room
reserved for it), and pyHanko's parser (`pyhanko.pdf_utils.generic.read_hex_string_from_stream`) reads it
with a Python call per byte. Each reading of a signed record parses every signature's /Contents again
(signing, the long-term data at the seal, every validation), so that loop took about a third of a seal's
CPU time and ~15 ms of each verification.

`install()` replaces that function in pyHanko's parser with one that finds the closing `>`, drops the
whitespace and decodes the digits at once. It gives the same string for every string it accepts; for
anything else (a comment or a stray character inside the string, a string that never ends) it hands the
stream back to pyHanko's own reader, so every malformed file is refused or read exactly as before.
"""

from __future__ import annotations

import binascii
from typing import Any, BinaryIO

from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.misc import PDF_WHITESPACE

_WHITESPACE = bytes(PDF_WHITESPACE)
_BLOCK = 1 << 16
_pyhanko_reader = generic.read_hex_string_from_stream


def read_hex_string(stream: BinaryIO) -> Any:
    """The string at `stream` (positioned on its `<`), as pyHanko's reader gives it, the stream left after `>`."""
    start = stream.tell()
    stream.read(1)  # "<"
    parts = []
    while True:
        block = stream.read(_BLOCK)
        if not block:  # no closing ">": pyHanko's reader says how it fails
            stream.seek(start)
            return _pyhanko_reader(stream)
        end = block.find(b">")
        if end >= 0:
            parts.append(block[:end])
            stream.seek(start + 1 + sum(len(p) for p in parts) + 1)
            break
        parts.append(block)
    digits = b"".join(parts).translate(None, _WHITESPACE)
    if digits.translate(None, generic.HEX_DIGITS):  # anything but hex digits and whitespace: not ours to judge
        stream.seek(start)
        return _pyhanko_reader(stream)
    return generic.pdf_string(binascii.unhexlify(digits + b"0" if len(digits) % 2 else digits))


def install() -> None:
    """Make pyHanko's parser read hex strings with `read_hex_string` (idempotent)."""
    generic.read_hex_string_from_stream = read_hex_string
