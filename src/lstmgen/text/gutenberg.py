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


# A header mark further into a file than this is not looked for: the file is
# taken as plain text from the start (streaming cannot wait for the whole file).
LOOKAHEAD_LINES = 2000


def _is_header_mark(line: str) -> bool:
    return bool(_START.match(line) or _SMALL_PRINT_END.match(line))


def _is_footer_mark(line: str) -> bool:
    return bool(_END.match(line) or _END_OF_LINE.match(line) or _FULL_LICENSE.match(line))


def _marker_closed(line: str) -> bool:
    """A START marker ends with ``***``; without them it was hard-wrapped."""
    return line.rstrip().endswith("***") and line.count("*") >= 6


class GutenbergFilter:
    """Strip Gutenberg boilerplate from text fed in pieces of any size.

    A line-by-line state machine, so the same rules serve a 1 GB file read in
    chunks and a book read whole:

    * before the first header mark (looked for in the first LOOKAHEAD_LINES
      lines) everything is preamble; with no header mark there, the text is
      plain and kept as it is;
    * a header mark (START OF ..., or the end of the 1994 Small Print) and
      its hard-wrapped continuation start a book; blank lines, producer
      credits and [Illustration] tags right after it are skipped;
    * a footer line (END OF ..., "End of Project Gutenberg's ...",
      START: FULL LICENSE) ends the book; its trailing whitespace goes and one
      newline ends it; everything after is dropped until the next header
      mark, so files that hold several books keep them all, a blank line apart;
    * a stray header mark inside a book is dropped.
    """

    def __init__(self, lookahead_lines: int = LOOKAHEAD_LINES):
        self.lookahead_lines = lookahead_lines
        self.state = "probe"
        self.book_mode = False  # a marker was seen: trim and terminate books
        self.books = 0
        self.header_lines = 0
        self.footer_lines = 0
        self._probe: list[tuple[str, bool]] = []
        self._cont: list[tuple[str, bool]] = []  # lines that may continue a wrapped marker
        self._partial = ""
        self._pending = ""  # trailing whitespace held back until more text comes
        self._book_has_text = False
        self._out: list[str] = []

    @property
    def changed(self) -> bool:
        return self.book_mode

    def feed(self, text: str) -> str:
        text = self._partial + text
        lines = text.split("\n")
        self._partial = lines.pop()
        for line in lines:
            self._line(line, True)
        return self._take()

    def finish(self) -> str:
        if self._partial or self.state == "probe" and not self._probe:
            self._line(self._partial, False)
        self._partial = ""
        if self.state == "probe":
            self._flush_probe()
        if self._cont:
            cont, self._cont = self._cont, []
            self.state = "front"
            for line, newline in cont:
                self._line(line, newline)
        if self.book_mode:
            self._end_book()
        else:
            self._out.append(self._pending)
            self._pending = ""
        return self._take()

    # -- internals ---------------------------------------------------------

    def _take(self) -> str:
        out = "".join(self._out)
        self._out.clear()
        return out

    def _emit(self, text: str) -> None:
        if not self.book_mode:
            self._out.append(text)
            return
        if not self._book_has_text and self.books > 0:
            self._out.append("\n")  # a blank line between books
        text = self._pending + text
        kept = text.rstrip()
        self._pending = text[len(kept):]
        if kept:
            self._out.append(kept)
            self._book_has_text = True

    def _end_book(self) -> None:
        if self._book_has_text:
            self._out.append("\n")
            self.books += 1
        self._pending = ""
        self._book_has_text = False

    def _flush_probe(self) -> None:
        probe, self._probe = self._probe, []
        self.state = "body"
        for line, newline in probe:
            self._emit(line + ("\n" if newline else ""))

    def _start_header(self, line: str) -> None:
        if self.book_mode and self.state == "body":
            self._end_book()  # plain text before a late header stays, as its own part
        self.book_mode = True
        self.header_lines += 1
        self.state = "cont" if _START.match(line) and not _marker_closed(line) else "front"

    def _line(self, line: str, newline: bool) -> None:
        state = self.state
        if state == "probe":
            if _is_header_mark(line):
                self.header_lines += len(self._probe)
                self._probe = []
                self._start_header(line)
            elif _is_footer_mark(line):
                self.book_mode = True
                self._flush_probe()
                self._line(line, newline)
            else:
                self._probe.append((line, newline))
                if len(self._probe) >= self.lookahead_lines:
                    self._flush_probe()
        elif state == "cont":
            # Up to two more lines may finish a hard-wrapped marker.
            if not line.strip():
                self._resolve_cont(None, line, newline)
            elif line.rstrip().endswith("***"):
                self.header_lines += len(self._cont) + 1
                self._cont = []
                self.state = "front"
            else:
                self._cont.append((line, newline))
                if len(self._cont) >= 2:
                    self._resolve_cont(None, None, None)
        elif state in ("front", "credit"):
            if _is_header_mark(line):
                self._start_header(line)
            elif _is_footer_mark(line):
                self._to_outside()
            elif state == "credit":
                self.header_lines += 1
                if not line.strip():
                    self.state = "front"
            elif not line.strip() or _ILLUSTRATION.match(line):
                self.header_lines += 1
            elif _PRODUCER_NOTE.match(line):
                self.header_lines += 1
                self.state = "credit"
            else:
                self.state = "body"
                self._emit(line + ("\n" if newline else ""))
        elif state == "body":
            if _is_footer_mark(line):
                self._to_outside()
            elif _is_header_mark(line):
                if self.book_mode:
                    self.header_lines += 1  # a stray marker inside a book
                else:
                    self._start_header(line)
            else:
                self._emit(line + ("\n" if newline else ""))
        else:  # outside: after a footer, until the next book
            if _is_header_mark(line):
                self._start_header(line)
            else:
                self.footer_lines += 1

    def _resolve_cont(self, _unused, line, newline) -> None:
        """The marker was not wrapped after all: its would-be continuation is the book's front."""
        cont, self._cont = self._cont, []
        self.state = "front"
        for held_line, held_newline in cont:
            self._line(held_line, held_newline)
        if line is not None:
            self._line(line, newline)

    def _to_outside(self) -> None:
        self._end_book()
        self.footer_lines += 1
        self.state = "outside"


def strip_gutenberg(text: str) -> StripResult:
    """Remove Project Gutenberg headers and footers from ``text`` (``\\n`` line ends).

    Text with no recognised marker is returned unchanged. The result holds no
    marker line, so stripping twice changes nothing more.
    """
    f = GutenbergFilter()
    cleaned = f.feed(text) + f.finish()
    if not f.changed:
        return StripResult(text, 0, 0)
    return StripResult(cleaned, header_lines=f.header_lines, footer_lines=f.footer_lines)
