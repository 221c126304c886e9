"""Find and remove Project Gutenberg headers and footers.

Project Gutenberg has wrapped its books in boilerplate since 1971, and the
wording has changed many times. The variants handled here (see
``../shared/corpora/MANIFEST.md`` for real examples of each):

* ``*** START OF THIS PROJECT GUTENBERG EBOOK <TITLE> ***`` (2000s to 2020) and
  ``*** START OF THE PROJECT GUTENBERG EBOOK <TITLE> ***`` (late 2020 on), with a
  straight or curly apostrophe in the title, or only the ebook number;
* the same markers hard-wrapped over two lines;
* ``End of Project Gutenberg's <Title>`` / ``End of the Project Gutenberg EBook
  of ...`` lines that stand *before* the END marker;
* ``*** START: FULL LICENSE ***`` or a bare ``START: FULL LICENSE`` after the
  footer, which must never be taken for the start of the book;
* hand-trimmed copies where the START line was kept but everything after the
  book was cut (no END marker at all);
* the 1994 "Small Print" header, which ends at ``*END*THE SMALL PRINT! ...``
  (the block *opens* with a line that also says START, which must be skipped).

Lines are matched as whole-line patterns that all require the words "PROJECT
GUTENBERG" or "SMALL PRINT", so text that never came from Gutenberg is left
alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# "*** START OF THE PROJECT GUTENBERG EBOOK", "***START OF THIS PROJECT GUTENBERG",
# "*** START OF THE PROJECT GUTENBERG EBOOK 11 ***": the part after "GUTENBERG"
# varies too much to be worth matching.
_START = re.compile(r"^\W{0,3}\*{3}\s*START\s+OF\s+(THE|THIS)\s+PROJECT\s+GUTENBERG", re.I)
_END = re.compile(r"^\W{0,3}\*{3}\s*END\s+OF\s+(THE|THIS)\s+PROJECT\s+GUTENBERG", re.I)
# 1994-2002 headers end with e.g. "*END*THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*Ver.04.29.93*END*"
# or "*END THE SMALL PRINT! ..." (the LaTeX edition).
_SMALL_PRINT_END = re.compile(r"^\s*\*\s*END\s*\*?\s*THE\s+SMALL\s+PRINT", re.I)
# The "End of (the) Project Gutenberg('s) ..." line that precedes the END marker.
_END_OF_LINE = re.compile(r"^\s*End\s+of\s+(the\s+|this\s+)?Project\s+Gutenberg", re.I)
_FULL_LICENSE = re.compile(r"^\W{0,5}START:\s*FULL\s+LICEN[SC]E", re.I)
# Lines that Gutenberg's producers put between the START marker and the book.
_PRODUCER_NOTE = re.compile(r"^\s*(Produced\s+by|E-?text\s+prepared\s+by|Transcribed\s+by)\b", re.I)
_ILLUSTRATION = re.compile(r"^\s*\[Illustration[^\]]*\]\s*$", re.I)

# A wrapped marker's closing "***" must appear within this many lines.
_MAX_MARKER_LINES = 3


@dataclass(frozen=True)
class StripResult:
    """What :func:`strip_gutenberg` found and kept."""

    text: str
    header_lines: int
    """Lines removed before the book (0 when no header was found)."""
    footer_lines: int
    """Lines removed after the book (0 when no footer was found)."""

    @property
    def changed(self) -> bool:
        return self.header_lines > 0 or self.footer_lines > 0


def _marker_end(lines: list[str], i: int) -> int:
    """Index of the last line of the marker that starts at line ``i``.

    A marker ends with ``***``. When the closing stars are missing from the
    first line, the marker was hard-wrapped and continues on the next lines.
    """
    first = lines[i]
    # Closing stars after the opening ones on the same line end the marker.
    if first.rstrip().endswith("***") and first.count("*") >= 6:
        return i
    for j in range(i + 1, min(i + _MAX_MARKER_LINES, len(lines))):
        if lines[j].rstrip().endswith("***"):
            return j
        if not lines[j].strip():
            break
    return i


def _skip_front_matter(lines: list[str], start: int, stop: int) -> int:
    """Skip blank lines, producer credits and bare illustration tags at the book's start."""
    i = start
    while i < stop:
        line = lines[i]
        if not line.strip() or _ILLUSTRATION.match(line):
            i += 1
        elif _PRODUCER_NOTE.match(line):
            # A credit runs on until the next blank line.
            while i < stop and lines[i].strip():
                i += 1
        else:
            break
    return i


def strip_gutenberg(text: str) -> StripResult:
    """Remove a Project Gutenberg header and footer from ``text`` (``\\n`` line ends).

    Text with no recognised marker is returned unchanged. Leading and trailing
    blank lines of the book are dropped only when a marker was found. The
    result holds no marker line, so stripping twice changes nothing more.
    """
    lines = text.split("\n")
    n = len(lines)
    header_marks = [i for i, line in enumerate(lines) if _START.match(line) or _SMALL_PRINT_END.match(line)]
    first_header = header_marks[0] if header_marks else -1

    # The footer starts at the first footer line after the first header mark.
    footer_start = n
    for i in range(first_header + 1, n):
        line = lines[i]
        if _END.match(line) or _END_OF_LINE.match(line) or _FULL_LICENSE.match(line):
            footer_start = i
            break

    if first_header < 0 and footer_start == n:
        return StripResult(text, 0, 0)

    # The header ends at the last header mark before the footer: a 1994 file's
    # Small Print ends after its opening lines, and a START line kept in a
    # hand-trimmed copy may follow a preamble that has one too.
    header_end = -1
    before_footer = [i for i in header_marks if i < footer_start]
    if before_footer:
        last = before_footer[-1]
        header_end = _marker_end(lines, last) if _START.match(lines[last]) else last
        header_end = min(header_end, footer_start - 1)

    body_start = _skip_front_matter(lines, header_end + 1, footer_start)
    body_end = footer_start
    while body_end > body_start and not lines[body_end - 1].strip():
        body_end -= 1
    body = lines[body_start:body_end]
    # Keep the book's own last line intact but drop trailing spaces on it
    # ("THE END " in the 2020 edition).
    cleaned = "\n".join(body).rstrip() + "\n" if body else ""
    if cleaned == "\n":
        cleaned = ""
    footer_lines = n - footer_start if footer_start < n else 0
    return StripResult(cleaned, header_lines=body_start, footer_lines=footer_lines)
