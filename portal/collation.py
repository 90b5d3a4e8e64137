"""Vietnamese alphabetical order, and the order of names on a school's lists.

Code-point order puts "Huỳnh" before "Hồ" and "Đ" after "Z"; stripping diacritics makes "Dũng" and
"Đức" one letter. The Vietnamese alphabet orders a ă â b c d đ e ê ... o ô ơ ... u ư ..., then the tones
(none, huyền, hỏi, ngã, sắc, nặng) break ties. Schools list people by given name (the last word),
then by the whole name.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

_ALPHABET = "aăâbcdđeêfghijklmnoôơpqrstuưvwxyz"
_TONES = {"\u0300": 1, "\u0309": 2, "\u0303": 3, "\u0301": 4, "\u0323": 5}


def vietnamese_key(text: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Sort key of a text in Vietnamese alphabetical order: letters first, tones only to break ties."""
    letters, tones = [], []
    for char in unicodedata.normalize("NFC", text.casefold()):
        parts = unicodedata.normalize("NFD", char)
        tones.append(next((_TONES[c] for c in parts if c in _TONES), 0))
        base = unicodedata.normalize("NFC", "".join(c for c in parts if c not in _TONES))
        position = _ALPHABET.find(base) if len(base) == 1 else -1
        letters.append(position if position >= 0 else 100 + sum(map(ord, base)))
    return tuple(letters), tuple(tones)


@lru_cache(maxsize=8192)
def name_key(full_name: str) -> tuple[object, ...]:
    """Sort key of a person's name on a school list: by given name (the last word), then the whole name.

    Remembered: a class list is sorted at every request of its pages, and the key costs ~50 µs a name."""
    words = full_name.split()
    given = words[-1] if words else ""
    return vietnamese_key(given), vietnamese_key(full_name)
