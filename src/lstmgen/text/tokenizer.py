"""Tokenizers: characters (the sorted unique characters of the training
text), words, and byte-level BPE.

The vocabulary lives inside every checkpoint (``tokenizer.json``), so a model
can be sampled without the corpus that trained it.
"""

from __future__ import annotations

import codecs
import json
import re
from collections import Counter
from dataclasses import dataclass
from itertools import islice

import numpy as np

from ..errors import LstmgenError


def id_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned integer type that holds every id."""
    if vocab_size <= 1 << 8:
        return np.dtype(np.uint8)
    if vocab_size <= 1 << 16:
        return np.dtype(np.uint16)
    return np.dtype(np.uint32)


class _IdsFitVocabulary:
    """Ids are stored in the smallest unsigned type that holds the vocabulary."""

    @property
    def dtype(self) -> np.dtype:
        return id_dtype(self.vocab_size)


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


class CharTokenizer(_IdsFitVocabulary):
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

    def stream_decoder(self) -> "_PlainStreamDecoder":
        return _PlainStreamDecoder(self.chars)

    def chars_after(self, text: str, skip: int) -> int:
        """Characters of ``text`` covered by its tokens after the first ``skip``."""
        return max(len(text) - skip, 0)

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


# ---------------------------------------------------------------------------
# Word and BPE levels. Every tokenizer offers the same small interface:
#   level, vocab_size, dtype, encode(text) -> ids, decode(ids) -> text,
#   make_known(text) -> (text, report), chars_after(text, skip) -> int,
#   stream_decoder() -> object with push(id) -> str and flush() -> str,
#   to_dict() / tokenizer_from_dict().
# ---------------------------------------------------------------------------

LEVELS = ("char", "word", "bpe")


@dataclass(frozen=True)
class TokenizerConfig:
    """Which tokens a model predicts. The trained tokenizer itself is stored
    in every checkpoint's tokenizer.json."""

    level: str = "char"
    """'char' (every character), 'word' (words, punctuation and whitespace
    runs; exact round trip), or 'bpe' (byte-level BPE; no unknown tokens)."""
    vocab_size: int | None = None
    """word: keep the most frequent tokens, the rest become <unk> (default
    10,000); bpe: the vocabulary to learn (default 2,000); char: unused."""

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise LstmgenError(f"--level must be one of {', '.join(LEVELS)}, got {self.level!r}")
        if self.vocab_size is not None:
            if self.level == "char":
                raise LstmgenError("--vocab-size applies to --level word or bpe; a character vocabulary is the "
                                   "corpus's own characters")
            low = 2 if self.level == "word" else 257
            if self.vocab_size < low:
                raise LstmgenError(f"--vocab-size must be at least {low} for --level {self.level}, "
                                   f"got {self.vocab_size}")

    def build(self, text: str):
        if self.level == "char":
            return CharTokenizer.from_text(text)
        if self.level == "word":
            return WordTokenizer.from_text(text, self.vocab_size or 10_000)
        return BPETokenizer.from_text(text, self.vocab_size or 2_000)

    def build_items(self, items) -> "ItemTokenizer":
        """The vocabulary of ``items`` (any iterable, read once, so a stream of
        items works) and the end-of-item token. Learned from the items alone:
        no separator between them may enter the vocabulary, or the model could
        write one inside an item."""
        items = iter(items)
        if self.level == "char":
            chars = set()
            for item in items:
                chars.update(item)
            return ItemTokenizer(CharTokenizer(sorted(chars)))
        if self.level == "word":
            counts = Counter()
            for item in items:
                counts.update(WordTokenizer.PATTERN.findall(item))
            return ItemTokenizer(WordTokenizer.from_counts(counts, self.vocab_size or 10_000))
        batches = iter(lambda: list(islice(items, 1000)), [])
        return ItemTokenizer(BPETokenizer.from_batches(batches, self.vocab_size or 2_000))


class _PlainStreamDecoder:
    def __init__(self, pieces: list[str]):
        self.pieces = pieces

    def push(self, token_id: int) -> str:
        return self.pieces[token_id]

    def flush(self) -> str:
        return ""


class WordTokenizer(_IdsFitVocabulary):
    """Words, single punctuation marks and runs of whitespace, so that the
    tokens of a text concatenate back to it exactly. Rare tokens map to <unk>."""

    level = "word"
    UNK = "<unk>"
    PATTERN = re.compile(r"\w+|[^\w\s]|\s+")

    def __init__(self, tokens: list[str]):
        if not tokens or tokens[0] != self.UNK or len(set(tokens)) != len(tokens):
            raise LstmgenError("tokenizer.json is corrupt (a word vocabulary starts with <unk> and has no repeats)")
        self.tokens = tokens
        self.index = {t: i for i, t in enumerate(tokens)}

    @classmethod
    def from_text(cls, text: str, vocab_size: int) -> "WordTokenizer":
        return cls.from_counts(Counter(cls.PATTERN.findall(text)), vocab_size)

    @classmethod
    def from_counts(cls, counts: Counter, vocab_size: int) -> "WordTokenizer":
        counts.pop(cls.UNK, None)
        return cls([cls.UNK] + [t for t, _ in counts.most_common(vocab_size - 1)])

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    def encode(self, text: str) -> np.ndarray:
        get = self.index.get
        return np.fromiter((get(t, 0) for t in self.PATTERN.findall(text)), dtype=np.int64).astype(self.dtype)

    def unknown_count(self, text: str) -> tuple[int, int, list[str]]:
        words = self.PATTERN.findall(text)
        missing = [w for w in words if w not in self.index]
        return len(missing), len(words), sorted(set(missing))[:10]

    def decode(self, ids) -> str:
        return "".join(self.tokens[int(i)] for i in ids)

    def stream_decoder(self) -> _PlainStreamDecoder:
        return _PlainStreamDecoder(self.tokens)

    def make_known(self, text: str) -> tuple[str, UnknownReport]:
        """Unknown words stay in the text and are read as <unk>; the report names them."""
        missing, _, examples = self.unknown_count(text)
        report = UnknownReport({}, {})
        if missing:
            report = WordUnknownReport(missing, examples)
        return text, report

    def chars_after(self, text: str, skip: int) -> int:
        """Characters of ``text`` covered by its tokens after the first ``skip``."""
        if skip <= 0:
            return len(text)
        for i, match in enumerate(self.PATTERN.finditer(text)):
            if i == skip - 1:
                return len(text) - match.end()
        return 0

    def to_dict(self) -> dict:
        return {"level": self.level, "tokens": self.tokens}


class WordUnknownReport(UnknownReport):
    def __init__(self, count: int, examples: list[str]):
        super().__init__({}, {})
        self.count = count
        self.examples = examples

    def __bool__(self) -> bool:
        return self.count > 0

    def describe(self) -> str:
        return (f"{self.count} word(s) are not in the model's vocabulary and are read as <unk>: "
                + ", ".join(repr(w) for w in self.examples))


class _BPEStreamDecoder:
    """Byte-level tokens can end inside a multi-byte character: their bytes
    go through an incremental UTF-8 decoder, which holds back an incomplete
    character until its last byte arrives (and replaces invalid bytes with
    U+FFFD as ``decode`` does). Judging by the decoded text instead took a
    genuine U+FFFD in the text for an incomplete character."""

    def __init__(self, hf_tokenizer):
        self.token_bytes = _byte_level_table(hf_tokenizer)
        self.utf8 = codecs.getincrementaldecoder("utf-8")("replace")

    def push(self, token_id: int) -> str:
        return self.utf8.decode(self.token_bytes[token_id])

    def flush(self) -> str:
        return self.utf8.decode(b"", final=True)


def _byte_level_table(hf_tokenizer) -> list[bytes]:
    """The bytes behind each token of a byte-level BPE vocabulary. Byte-level
    BPE writes each byte as one printable character (GPT-2's table: printable
    Latin-1 bytes as themselves, the rest as code points from 256 up)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("\u00a1"), ord("\u00ac") + 1),
                 *range(ord("\u00ae"), ord("\u00ff") + 1)]
    to_byte = {chr(b): b for b in printable}
    extra = 0
    for b in range(256):
        if b not in printable:
            to_byte[chr(256 + extra)] = b
            extra += 1
    return [bytes(to_byte[ch] for ch in hf_tokenizer.id_to_token(i)) for i in range(hf_tokenizer.get_vocab_size())]


class BPETokenizer(_IdsFitVocabulary):
    """Byte-level BPE trained with Hugging Face ``tokenizers``: any text
    encodes, so there are no unknown tokens."""

    level = "bpe"

    def __init__(self, hf_tokenizer):
        self.hf = hf_tokenizer

    @classmethod
    def from_text(cls, text: str, vocab_size: int) -> "BPETokenizer":
        lines = text.splitlines(keepends=True)
        return cls.from_batches((lines[i:i + 1000] for i in range(0, len(lines), 1000)), vocab_size)

    @classmethod
    def from_batches(cls, batches, vocab_size: int) -> "BPETokenizer":
        """Learn the merges from an iterator of lists of strings (streamed, never whole)."""
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                      special_tokens=[], show_progress=False)
        tok.train_from_iterator(batches, trainer=trainer)
        return cls(tok)

    @property
    def vocab_size(self) -> int:
        return self.hf.get_vocab_size()

    def encode(self, text: str) -> np.ndarray:
        if not text:
            return np.zeros(0, dtype=self.dtype)
        return np.array(self.hf.encode(text).ids, dtype=self.dtype)

    def decode(self, ids) -> str:
        return self.hf.decode([int(i) for i in ids])

    def stream_decoder(self) -> _BPEStreamDecoder:
        return _BPEStreamDecoder(self.hf)

    def make_known(self, text: str) -> tuple[str, UnknownReport]:
        return text, UnknownReport({}, {})

    def chars_after(self, text: str, skip: int) -> int:
        if skip <= 0:
            return len(text)
        offsets = self.hf.encode(text).offsets
        return len(text) - offsets[skip - 1][1] if skip <= len(offsets) else 0

    def to_dict(self) -> dict:
        return {"level": self.level, "tokenizer": json.loads(self.hf.to_str())}


class _ItemStreamDecoder:
    """The base level's stream decoder; the end-of-item token adds no text."""

    def __init__(self, base, end_id: int):
        self.base, self.end_id = base, end_id

    def push(self, token_id: int) -> str:
        return "" if token_id == self.end_id else self.base.push(token_id)

    def flush(self) -> str:
        return self.base.flush()


class ItemTokenizer:
    """The tokenizer of an item model (``--framing lines`` or ``sentences``):
    the base level's tokens and one more, the end-of-item token, as the last id.

    The end token is also every item's first input, read from a fresh state
    (as makemore's '.' is), so one token teaches the model both how items
    begin and where they end. No text ever encodes to it, and it decodes to
    nothing: items are told apart by where they stop, not by a character.
    """

    END = "<end>"

    def __init__(self, base):
        self.base = base

    @property
    def level(self) -> str:
        return self.base.level

    @property
    def vocab_size(self) -> int:
        return self.base.vocab_size + 1

    @property
    def end_id(self) -> int:
        return self.base.vocab_size

    @property
    def dtype(self) -> np.dtype:
        return id_dtype(self.vocab_size)

    def encode(self, text: str) -> np.ndarray:
        return self.base.encode(text).astype(self.dtype)

    def encode_items(self, items) -> np.ndarray:
        """``<end> item <end> item ... <end>``: each item between two end
        tokens, the first its start, the second its end."""
        end = np.array([self.end_id], dtype=self.dtype)
        parts = [end]
        for item in items:
            parts += [self.encode(item), end]
        return np.concatenate(parts)

    def decode(self, ids) -> str:
        end = self.end_id
        return self.base.decode([int(i) for i in ids if int(i) != end])

    def stream_decoder(self) -> _ItemStreamDecoder:
        return _ItemStreamDecoder(self.base.stream_decoder(), self.end_id)

    def make_known(self, text: str):
        return self.base.make_known(text)

    def chars_after(self, text: str, skip: int) -> int:
        return self.base.chars_after(text, skip)

    def __getattr__(self, name: str):
        # The base level's own vocabulary views (chars, index, tokens, hf).
        if name == "base":
            raise AttributeError(name)
        return getattr(self.base, name)

    def to_dict(self) -> dict:
        return dict(self.base.to_dict(), end_of_item=self.END)


def tokenizer_from_dict(data: dict):
    """Load any level's tokenizer from its tokenizer.json contents."""
    if isinstance(data, dict) and data.get("end_of_item") == ItemTokenizer.END:
        return ItemTokenizer(tokenizer_from_dict({k: v for k, v in data.items() if k != "end_of_item"}))
    level = data.get("level") if isinstance(data, dict) else None
    if level == "char":
        return CharTokenizer.from_dict(data)
    if level == "word" and isinstance(data.get("tokens"), list):
        return WordTokenizer(data["tokens"])
    if level == "bpe" and isinstance(data.get("tokenizer"), dict):
        from tokenizers import Tokenizer

        try:
            return BPETokenizer(Tokenizer.from_str(json.dumps(data["tokenizer"])))
        except Exception as exc:  # tokenizers raises its own exception types
            raise LstmgenError(f"tokenizer.json holds a BPE tokenizer that cannot be read ({exc})") from None
    raise LstmgenError("tokenizer.json is not an lstmgen vocabulary; re-train or re-download the model")
