"""Numbers that say whether generated text reads like text: loops (back-to-back
repeats) and diversity (distinct n-grams, seq-rep-4), the same for samples
and for held-out text, so the two can be compared."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import LstmgenError
from .config import PLAIN, SampleConfig
from .copying import TrainingText

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


def parse_setting(text: str, base: SampleConfig) -> SampleConfig:
    """'default', 'plain' (every filter and anti-loop processor off), or
    NAME=VALUE pairs separated by commas (SampleConfig fields, parsed as their
    flags are) on top of ``base`` or of 'plain' when it comes first:
    'plain,temperature=0' is the tutorial's argmax."""
    from ..fields import config_fields

    fields = {f.name: f for f in config_fields(SampleConfig)}
    pairs = [p.strip() for p in text.split(",")]
    values = base.to_dict()
    if pairs[0] in ("default", "plain"):
        if pairs[0] == "plain":
            values = SampleConfig.plain(**{k: v for k, v in values.items() if k not in PLAIN}).to_dict()
        pairs = pairs[1:]
    for pair in pairs:
        name, eq, value = pair.partition("=")
        if not eq or name not in fields:
            raise LstmgenError(f"{pair!r} is not NAME=VALUE with NAME a sampling option "
                               f"(such as temperature=0.5); or say 'default' or 'plain'")
        values[name] = fields[name].parse(value)
    return SampleConfig(**values)


def samples_report(model, settings: dict[str, SampleConfig], held_out: str | None, samples: int, length: int,
                   seed: int = 0, training: "TrainingText | None" = None) -> list[dict]:
    """One row per setting (``samples`` texts of ``length`` characters from a
    random excerpt of the training text), and one for held-out text cut into
    pieces of the same length: loops, diversity, copying from ``training``
    (when given), and the model's own loss on each text (how far sampling
    moved from the model's distribution)."""
    rows = []
    for name, config in settings.items():
        config = SampleConfig(**dict(config.to_dict(), num_samples=samples, seed=seed, max_new_tokens=length))
        # A token is one character or more: `length` tokens, cut to `length` characters.
        texts = [t[:length] for t in model.generate(model.random_prompt(seed), config)]
        rows.append(_row(name, texts, model, training))
    if held_out is not None:
        pieces = [held_out[i * length:(i + 1) * length] for i in range(samples)]
        pieces = [p for p in pieces if len(p) == length]
        if not pieces:
            raise LstmgenError(f"the held-out text has fewer than {length:,} characters; lower --length")
        rows.append(_row("held-out text", pieces, model, training))
    return rows


def _row(name: str, texts: list[str], model, training: "TrainingText | None") -> dict:
    stats = [text_statistics(t) for t in texts]
    longest = max(stats, key=lambda s: s["longest_repeat_chars"])
    row = {"setting": name, "texts": len(texts), "loops": sum(s["loop"] for s in stats),
           "longest_repeat": longest["longest_repeat"]}
    for key in ("repeated_share", "distinct_1", "distinct_2", "distinct_3", "distinct_4", "seq_rep_4"):
        row[key] = sum(s[key] for s in stats) / len(stats)
    if training is not None:
        copies = [training.copying(t) for t in texts]
        longest_copy = max(copies, key=lambda c: c["longest_copy_chars"])
        row["longest_copy_chars"] = longest_copy["longest_copy_chars"]
        row["longest_copy"] = longest_copy["longest_copy"]
        row["copied_20grams"] = sum(c["copied_20grams"] for c in copies) / len(copies)
    losses = [model.evaluate(t) for t in texts if len(t) > 1]
    tokens = sum(r.tokens for r in losses)
    row["loss_nats"] = sum(r.loss_nats * r.tokens for r in losses) / tokens if tokens else float("nan")
    return row
