"""The one-pass hex string reader reads every string as pyHanko's own reader does, and leaves to it what it
does not accept."""

from __future__ import annotations

from io import BytesIO

import pytest
from pyhanko.pdf_utils.misc import PdfStreamError

from portal.signing import hex_strings

CASES = [
    b"<48656c6c6f> rest",
    b"<48 65\n6c\r6c\t6f\x00> rest",  # whitespace anywhere
    b"<4865f> rest",  # an odd number of digits: the last one is followed by 0
    b"<> rest",
    b"<e1BA> rest",  # both cases
    b"<" + b"30" * 100_000 + b"> rest",  # longer than one block
    b"<" + b"ab" * 32_767 + b"c> rest",  # ">" at the very end of the first block
]


@pytest.mark.parametrize("data", CASES)
def test_same_string_and_position_as_pyhanko(data: bytes) -> None:
    ours, theirs = BytesIO(data), BytesIO(data)
    mine, expected = hex_strings.read_hex_string(ours), hex_strings._pyhanko_reader(theirs)
    assert (type(mine), mine) == (type(expected), expected)
    assert ours.tell() == theirs.tell() == data.index(b">") + 1


@pytest.mark.parametrize("data", [b"<48%comment\n65> rest", b"<48zz65> rest"])
def test_what_it_does_not_accept_goes_to_pyhanko(data: bytes) -> None:
    def outcome(reader, stream: BytesIO) -> object:
        try:
            return reader(stream), stream.tell()
        except PdfStreamError as exc:
            return type(exc), str(exc)

    assert outcome(hex_strings.read_hex_string, BytesIO(data)) == outcome(hex_strings._pyhanko_reader, BytesIO(data))


def test_an_unterminated_string_fails_as_in_pyhanko() -> None:
    with pytest.raises(PdfStreamError):
        hex_strings._pyhanko_reader(BytesIO(b"<4865"))
    with pytest.raises(PdfStreamError):
        hex_strings.read_hex_string(BytesIO(b"<4865"))


def test_installed_in_pyhankos_parser() -> None:
    from pyhanko.pdf_utils import generic

    import portal.signing.validate  # noqa: F401  (installs it)

    assert generic.read_hex_string_from_stream is hex_strings.read_hex_string
    assert generic.read_object(BytesIO(b"<4865>"), None) == "He"
