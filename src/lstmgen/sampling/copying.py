"""How much of a text is copied from the training text: the longest
stretch found verbatim in it, and the share of 20-character substrings
found in it. Exact, through a suffix array of the training text's UTF-8
bytes (libdivsufsort through pydivsufsort).

A substring of valid UTF-8 is found in valid UTF-8 text only where whole
characters match, so searching bytes gives character answers exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import LstmgenError

EXACT_LIMIT_CHARS = 100_000_000
"""Training texts up to this many characters are indexed whole; longer ones
through SAMPLE_WINDOWS evenly spaced windows of this many characters in all."""
SAMPLE_WINDOWS = 100
SEPARATOR = b"\xff"
"""Between sampled windows: a byte that never occurs in UTF-8, so no match crosses it."""
COPY_NGRAM = 20


def _suffix_array(data: bytes) -> np.ndarray:
    try:
        from pydivsufsort import divsufsort
    except ImportError:
        raise LstmgenError("the copying columns need pydivsufsort: pip install pydivsufsort") from None
    return divsufsort(data)


@dataclass
class TrainingText:
    """A suffix array over the training text (or a stated sample of it).
    Memory: about 5 bytes per byte of text indexed."""

    data: bytes
    sa: np.ndarray
    indexed_chars: int
    total_chars: int

    @property
    def sampled(self) -> bool:
        return self.indexed_chars < self.total_chars

    def describe(self) -> str:
        if not self.sampled:
            return f"copying: against the whole training text ({self.total_chars:,} characters)"
        return (f"copying: against a sample of the training text, {SAMPLE_WINDOWS} evenly spaced windows of "
                f"{self.indexed_chars:,} characters in all (of {self.total_chars:,})")

    @classmethod
    def from_text(cls, text: str) -> "TrainingText":
        if len(text) > EXACT_LIMIT_CHARS:
            step = len(text) / SAMPLE_WINDOWS
            width = EXACT_LIMIT_CHARS // SAMPLE_WINDOWS
            pieces = [text[int(i * step):int(i * step) + width] for i in range(SAMPLE_WINDOWS)]
            return cls.from_pieces(pieces, len(text))
        return cls.from_pieces([text], len(text))

    @classmethod
    def from_pieces(cls, pieces: list[str], total_chars: int) -> "TrainingText":
        data = SEPARATOR.join(p.encode("utf-8") for p in pieces)
        if not data:
            raise LstmgenError("the training text is empty; there is nothing to compare with")
        return cls(data, _suffix_array(data), sum(len(p) for p in pieces), total_chars)

    @classmethod
    def from_token_ids(cls, ids: np.ndarray, decode, chars: int | None = None) -> "TrainingText":
        """From a (memory-mapped) token file: decoded a window at a time, so
        memory holds the index and never the token file's text twice.
        ``chars``: the characters the ids stand for, when known (to decide
        whether to sample without decoding everything first)."""
        total = len(ids)
        chars = chars if chars is not None else total
        if chars <= EXACT_LIMIT_CHARS:
            pieces = [decode(ids[start:start + 1_000_000]) for start in range(0, total, 1_000_000)]
            return cls.from_pieces(["".join(pieces)], chars)
        width = int(total * EXACT_LIMIT_CHARS / chars / SAMPLE_WINDOWS)
        step = total / SAMPLE_WINDOWS
        pieces = [decode(ids[int(i * step):int(i * step) + width]) for i in range(SAMPLE_WINDOWS)]
        return cls.from_pieces(pieces, chars)

    def occurs(self, pattern: bytes) -> bool:
        from pydivsufsort import sa_search

        return sa_search(self.data, self.sa, pattern)[0] > 0

    def match_lengths(self, data: bytes) -> np.ndarray:
        """For each byte i of ``data``, the length of the longest prefix of
        data[i:] found in the training text (matching statistics). A match
        at i+1 is at least the one at i less one byte, so the whole text
        costs at most two searches per byte."""
        lengths = np.zeros(len(data), dtype=np.int64)
        length = 0
        for i in range(len(data)):
            length = max(length - 1, 0)
            while i + length < len(data) and self.occurs(data[i:i + length + 1]):
                length += 1
            lengths[i] = length
        return lengths

    def copying(self, text: str, n: int = COPY_NGRAM) -> dict:
        """The longest stretch of ``text`` found verbatim in the training
        text (characters, and the stretch itself), and the share of its
        n-character substrings found there."""
        data = text.encode("utf-8")
        lengths = self.match_lengths(data)
        starts = _char_starts(text)  # byte offset of each character, and the end
        at_chars = lengths[starts[:-1]] if len(text) else np.zeros(0, dtype=np.int64)
        best = int(np.argmax(at_chars)) if len(text) else 0
        copied = data[starts[best]:starts[best] + int(at_chars[best])].decode("utf-8", "ignore") if len(text) else ""
        grams = len(text) - n + 1
        found = (at_chars[:grams] >= starts[n:] - starts[:grams]) if grams > 0 else np.zeros(0, dtype=bool)
        return {"longest_copy_chars": len(copied), "longest_copy": copied,
                f"copied_{n}grams": float(found.mean()) if grams > 0 else 0.0}


def _char_starts(text: str) -> np.ndarray:
    """Byte offsets of each character of ``text`` in UTF-8, and its byte length last."""
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    widths = 1 + (codes >= 0x80) + (codes >= 0x800) + (codes >= 0x10000)
    return np.concatenate([[0], np.cumsum(widths)]).astype(np.int64)
