"""Character vocabulary: the sorted unique characters of the training text.

The vocabulary lives inside every checkpoint (``tokenizer.json``), so a model
can be sampled without the corpus that trained it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import LstmgenError


def id_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned integer type that holds every id."""
    if vocab_size <= 1 << 8:
        return np.dtype(np.uint8)
    if vocab_size <= 1 << 16:
        return np.dtype(np.uint16)
    return np.dtype(np.uint32)


@dataclass
class UnknownReport:
    """Characters of a text that the vocabulary lacks, and what was done with them."""

    replaced: dict[str, str]
    dropped: dict[str, int]

    def __bool__(self) -> bool:
        return bool(self.replaced or self.dropped)

    def describe(self) -> str:
        parts = [f"{src!r}→{dst!r}" for src, dst in self.replaced.items()]
        parts += [f"{ch!r} ×{n}" if n > 1 else repr(ch) for ch, n in self.dropped.items()]
        what = []
        if self.replaced:
            what.append("replaced by their ASCII forms")
        if self.dropped:
            what.append("dropped where no known form exists")
        return (
            f"{len(self.replaced) + len(self.dropped)} character(s) are not in the model's vocabulary "
            f"and were {' or '.join(what)}: {', '.join(parts[:20])}"
        )


class CharTokenizer:
    """Maps characters to ids 0..V-1 in code-point order."""

    level = "char"

    def __init__(self, chars: list[str]):
        if not chars:
            raise LstmgenError("the vocabulary is empty; the corpus has no characters")
        if len(set(chars)) != len(chars) or any(len(c) != 1 for c in chars):
            raise LstmgenError("tokenizer.json is corrupt (vocabulary entries must be distinct single characters)")
        self.chars = sorted(chars)
        self.index = {c: i for i, c in enumerate(self.chars)}
        self._codepoints = np.array([ord(c) for c in self.chars], dtype=np.uint32)

    @classmethod
    def from_text(cls, text: str) -> "CharTokenizer":
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    @property
    def dtype(self) -> np.dtype:
        return id_dtype(self.vocab_size)

    def encode(self, text: str) -> np.ndarray:
        """Ids for ``text``; every character must be in the vocabulary.

        Vectorised through code points: about 100x faster than a dict lookup
        per character on a book-sized text.
        """
        if not text:
            return np.zeros(0, dtype=self.dtype)
        cps = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        ids = np.searchsorted(self._codepoints, cps)
        ids = np.minimum(ids, len(self._codepoints) - 1)
        bad = self._codepoints[ids] != cps
        if bad.any():
            missing = sorted({chr(c) for c in cps[bad]})
            raise LstmgenError(
                f"{len(missing)} character(s) are not in the vocabulary: "
                + ", ".join(repr(c) for c in missing[:20])
            )
        return ids.astype(self.dtype)

    def decode(self, ids) -> str:
        return "".join(self.chars[int(i)] for i in ids)

    def decode_one(self, i: int) -> str:
        return self.chars[i]

    def make_known(self, text: str) -> tuple[str, UnknownReport]:
        """Deal with characters outside the vocabulary, deliberately.

        Each unknown character is replaced by its ASCII transliteration when
        every character of that is known (’ → ' for a model trained on ASCII
        text); otherwise it is dropped. Generation and evaluation both use this,
        and the caller warns with ``UnknownReport.describe()``.
        """
        from anyascii import anyascii

        replaced: dict[str, str] = {}
        dropped: dict[str, int] = {}
        out: list[str] = []
        for ch in text:
            if ch in self.index:
                out.append(ch)
                continue
            rep = anyascii(ch)
            if rep and all(c in self.index for c in rep):
                replaced[ch] = rep
                out.append(rep)
            elif rep.lower() and rep != rep.lower() and all(c in self.index for c in rep.lower()):
                replaced[ch] = rep.lower()
                out.append(rep.lower())
            else:
                dropped[ch] = dropped.get(ch, 0) + 1
        return "".join(out), UnknownReport(replaced, dropped)

    def to_dict(self) -> dict:
        return {"level": self.level, "chars": self.chars}

    @classmethod
    def from_dict(cls, data: dict) -> "CharTokenizer":
        if data.get("level") != "char" or not isinstance(data.get("chars"), list):
            raise LstmgenError("tokenizer.json is not an lstmgen character vocabulary; re-train or re-download the model")
        return cls(data["chars"])
