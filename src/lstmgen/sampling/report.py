"""Numbers that say whether generated text reads like text: loops (back-to-back
repeats) and diversity (distinct n-grams, seq-rep-4), the same for samples
and for held-out text, so the two can be compared."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LOOP_UNIT = 10
"""A loop: a unit of at least this many characters..."""
LOOP_COUNT = 3
"""...repeated at least this many times back to back."""


@dataclass(frozen=True)
class Repeat:
    """A stretch of text that is one unit said ``count`` times back to back
    (the last time may be cut short)."""

    start: int
    unit: int
    count: int
    chars: int

    def __str__(self) -> str:
        return f"{self.unit}×{self.count}"


def repeats(text: str, min_unit: int = 1, max_unit: int | None = None, min_count: int = 2) -> list[Repeat]:
    """Every maximal back-to-back repeat with a unit of ``min_unit`` to
    ``max_unit`` characters said at least ``min_count`` times, for each unit
    length. A text of n characters costs O(n) per unit length."""
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    n = len(codes)
    found = []
    for unit in range(min_unit, min(max_unit or n // 2, n // 2) + 1):
        same = np.concatenate([[False], codes[:-unit] == codes[unit:], [False]])
        edges = np.flatnonzero(np.diff(same.astype(np.int8)))
        for begin, end in zip(edges[::2], edges[1::2]):
            chars = end - begin + unit  # the run of equal pairs plus the unit it repeats
            count = chars // unit
            if count >= min_count:
                found.append(Repeat(int(begin), unit, int(count), int(chars)))
    return found


def longest_repeat(text: str, min_unit: int = 1, min_count: int = 2) -> Repeat | None:
    """The repeat that covers the most characters (the shorter unit on a tie:
    'ab'×6 rather than 'abab'×3)."""
    found = repeats(text, min_unit=min_unit, min_count=min_count)
    return max(found, key=lambda r: (r.chars, -r.unit), default=None)


def has_loop(text: str, unit: int = LOOP_UNIT, count: int = LOOP_COUNT) -> bool:
    """A unit of ``unit`` or more characters repeated ``count`` or more times back to back."""
    return bool(repeats(text, min_unit=unit, min_count=count))


def repeated_share(text: str, min_unit: int = 4, min_count: int = 2) -> float:
    """The share of characters inside back-to-back repeats of a unit of at
    least ``min_unit`` characters (shorter units, as 'll' in 'hello', are
    ordinary text)."""
    if not text:
        return 0.0
    covered = np.zeros(len(text), dtype=bool)
    for r in repeats(text, min_unit=min_unit, min_count=min_count):
        covered[r.start:r.start + r.chars] = True
    return float(covered.mean())


def distinct_n(words: list[str], n: int) -> float:
    """Distinct n-grams ÷ n-grams (1.0 for fewer than n words)."""
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 1.0


def seq_rep(words: list[str], n: int = 4) -> float:
    """1 − unique n-grams ÷ n-grams (Welleck et al. 2019, seq-rep-4 for n = 4)."""
    return 1.0 - distinct_n(words, n)


def text_statistics(text: str) -> dict:
    """The loop and diversity columns of one text (n-grams over words)."""
    words = text.split()
    longest = longest_repeat(text, min_unit=LOOP_UNIT, min_count=2)
    return {
        "chars": len(text),
        "loop": has_loop(text),
        "longest_repeat": str(longest) if longest else "-",
        "longest_repeat_chars": longest.chars if longest else 0,
        "repeated_share": repeated_share(text),
        **{f"distinct_{n}": distinct_n(words, n) for n in (1, 2, 3, 4)},
        "seq_rep_4": seq_rep(words, 4),
    }
