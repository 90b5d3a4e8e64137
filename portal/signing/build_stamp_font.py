"""Build `static/fonts/stamp-serif.ttf`, the font of the visible signature stamps (run once; the result is committed).

    python -m portal.signing.build_stamp_font [source.ttf]

Two fixes over using Liberation Serif as it is:

- pyHanko 0.38 writes glyph widths as if every font had 1000 units per em; Liberation has 2048, so the
  letters of a stamp would be spread twice too far apart. The font is rescaled to 1000 units.
- pyHanko subsets the stamp font at every signature; the full font makes that ~60% of a signature's
  cost. Cut down here once to the letters of Vietnamese, digits and punctuation, it costs almost nothing.

The source is the Liberation Serif shipped in `static/fonts/` when present, else the system's copy
(Debian package fonts-liberation). Liberation fonts are under the SIL Open Font License.
"""

from __future__ import annotations

import sys
import unicodedata
from pathlib import Path

from fontTools import subset
from fontTools.ttLib import TTFont
from fontTools.ttLib.scaleUpem import scale_upem

PROJECT_ROOT = Path(__file__).resolve().parents[2]
TARGET = PROJECT_ROOT / "static" / "fonts" / "stamp-serif.ttf"
SOURCES = (PROJECT_ROOT / "static" / "fonts" / "LiberationSerif-Regular.ttf",
           Path("/usr/share/fonts/truetype/liberation/LiberationSerif-Regular.ttf"))

VIETNAMESE_BASES = "aăâeêioôơuưyAĂÂEÊIOÔƠUƯYdđDĐ"
TONE_MARKS = ("", "\u0300", "\u0301", "\u0303", "\u0309", "\u0323")  # none, huyền, sắc, ngã, hỏi, nặng
PUNCTUATION = "–—‘’“”…·•°№"


def stamp_characters() -> str:
    """Printable ASCII, every Vietnamese letter (NFC, both cases) and common typographic punctuation."""
    letters = {unicodedata.normalize("NFC", base + mark) for base in VIETNAMESE_BASES for mark in TONE_MARKS}
    ascii_printable = "".join(chr(c) for c in range(0x20, 0x7F))
    return "".join(sorted(set(ascii_printable) | {c for c in letters if len(c) == 1} | set(PUNCTUATION)))


def build(source: Path, target: Path = TARGET) -> Path:
    font = TTFont(str(source))
    scale_upem(font, 1000)
    options = subset.Options()
    options.layout_features = ["kern", "liga"]
    options.name_IDs = ["*"]  # keep the copyright and licence notices
    options.notdef_outline = True
    # FontForge's timestamp table: fontTools cannot subset it and would log so at every stamp.
    options.drop_tables = [*options.drop_tables, "FFTM"]
    subsetter = subset.Subsetter(options)
    subsetter.populate(text=stamp_characters())
    subsetter.subset(font)
    target.parent.mkdir(parents=True, exist_ok=True)
    font.save(str(target))
    return target


def main(argv: list[str]) -> None:
    source = Path(argv[1]) if len(argv) > 1 else next((p for p in SOURCES if p.exists()), None)
    if source is None:
        raise SystemExit("Liberation Serif not found: install fonts-liberation or pass the path of a TTF")
    built = build(source)
    print(f"{built.relative_to(PROJECT_ROOT)}: {built.stat().st_size} bytes from {source.name}")


if __name__ == "__main__":
    main(sys.argv)
