"""Corpus reading: bytes on disk to the exact text a model trains on.

Every step that changes the text is reported, because silent lossy handling
(dropped characters, guessed encodings) is what makes generated text puzzling.
"""

from __future__ import annotations

import codecs
import os
import string
import unicodedata
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import LstmgenError
from .gutenberg import strip_gutenberg

_UTF8_BOM = b"\xef\xbb\xbf"
# How many leading bytes to scan for NUL when deciding that a file is binary.
_BINARY_SNIFF_BYTES = 1 << 16


@dataclass(frozen=True)
class CorpusConfig:
    """How a text file becomes training text. Stored in every checkpoint, so
    prompts and evaluation text are put through the same steps."""

    encoding: str | None = None
    """Force this codec (any Python codec name). None: UTF-8, falling back to
    Windows-1252 when the bytes are not valid UTF-8."""
    keep_header: bool = False
    """Keep Project Gutenberg headers and footers instead of stripping them."""
    lowercase: bool = False
    """Lowercase everything (the tutorial's choice; shrinks the vocabulary)."""
    ascii: bool = False
    """Transliterate to ASCII (’ → ', é → e, — → -), reporting each change."""
    strip_punctuation: bool = False
    """Remove every Unicode punctuation character (the tutorial's extension idea)."""

    def __post_init__(self) -> None:
        if self.encoding is not None:
            try:
                codecs.lookup(self.encoding)
            except LookupError:
                raise LstmgenError(
                    f"unknown encoding {self.encoding!r}; use a Python codec name such as "
                    "utf-8, cp1252 or latin-1, or leave --encoding out to detect it"
                ) from None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "CorpusConfig":
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class Corpus:
    """Cleaned text plus a human-readable account of what was done to it."""

    text: str
    source: str
    encoding: str
    notes: list[str] = field(default_factory=list)

    @property
    def num_lines(self) -> int:
        if not self.text:
            return 0
        return self.text.count("\n") + (0 if self.text.endswith("\n") else 1)


def decode_bytes(data: bytes, encoding: str | None = None) -> tuple[str, str, list[str]]:
    """Decode ``data`` to text with ``\\n`` line ends and no byte-order marks.

    Returns (text, encoding used, notes). Any number of leading BOMs is removed:
    files saved twice by BOM-writing editors carry two.
    """
    notes: list[str] = []
    boms = 0
    if encoding is None or codecs.lookup(encoding).name in ("utf-8", "utf-8-sig"):
        while data.startswith(_UTF8_BOM):
            data = data[len(_UTF8_BOM):]
            boms += 1
    if encoding is None and data[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        encoding = "utf-16"
        notes.append("read as UTF-16 (the file starts with a UTF-16 byte-order mark)")
    if encoding is None and b"\x00" in data[:_BINARY_SNIFF_BYTES]:
        raise _BinaryFile()

    if encoding is not None:
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError as exc:
            raise LstmgenError(
                f"the file is not valid {encoding} (byte {exc.start}: {data[exc.start:exc.start + 1]!r}); "
                "pass the right --encoding, or leave it out to detect UTF-8 or Windows-1252"
            ) from None
        used = encoding
    else:
        try:
            text = data.decode("utf-8")
            used = "utf-8"
        except UnicodeDecodeError as exc:
            # Windows-1252 leaves five bytes undefined; those decode as Latin-1
            # so that no byte is ever lost or raises.
            text = data.decode("cp1252", errors="lstmgen-latin1")
            used = "cp1252"
            notes.append(
                f"not valid UTF-8 (first bad byte at offset {exc.start}); read as Windows-1252 "
                "(pass --encoding to choose another)"
            )
    lead = len(text) - len(text.lstrip("\ufeff"))
    if lead:
        text = text[lead:]
        boms += lead
    if boms:
        notes.append(f"removed {boms} byte-order mark{'s' if boms > 1 else ''}")
    if "\r" in text:
        crlf = text.count("\r\n")
        text = text.replace("\r\n", "\n")
        lone_cr = text.count("\r")
        text = text.replace("\r", "\n")
        kinds = [k for k, c in (("CRLF", crlf), ("CR", lone_cr)) if c]
        notes.append(f"converted {' and '.join(kinds)} line ends to LF")
    return text, used, notes


def _latin1_fallback(exc: UnicodeError):
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    return exc.object[exc.start:exc.end].decode("latin-1"), exc.end


codecs.register_error("lstmgen-latin1", _latin1_fallback)


class _BinaryFile(Exception):
    pass


def fold_ascii(text: str) -> tuple[str, Counter]:
    """Transliterate to ASCII with anyascii; returns the text and a Counter of
    (original, replacement) pairs for every character that changed."""
    from anyascii import anyascii

    changes: Counter = Counter()
    out: list[str] = []
    cache: dict[str, str] = {}
    for ch in text:
        if ch < "\x80":
            out.append(ch)
            continue
        rep = cache.get(ch)
        if rep is None:
            rep = cache[ch] = anyascii(ch)
        changes[(ch, rep)] += 1
        out.append(rep)
    return "".join(out), changes


def describe_folding(changes: Counter, limit: int = 12) -> str:
    parts = []
    for (src, dst), count in changes.most_common(limit):
        shown = repr(dst) if dst else "(dropped)"
        parts.append(f"{src!r}→{shown} ×{count:,}")
    more = len(changes) - limit
    tail = f", and {more} more" if more > 0 else ""
    total = sum(changes.values())
    return f"folded {total:,} non-ASCII characters to ASCII: " + ", ".join(parts) + tail


def strip_punctuation(text: str) -> tuple[str, int]:
    """Remove every character whose Unicode category is punctuation (P*)."""
    kept = [ch for ch in text if not unicodedata.category(ch).startswith("P")]
    return "".join(kept), len(text) - len(kept)


def normalize_text(text: str, config: CorpusConfig) -> tuple[str, list[str]]:
    """Apply the case, ASCII and punctuation options, in that order.

    This is the same transformation for training text, prompts and evaluation
    text, so a model trained lowercase is always prompted lowercase.
    """
    notes: list[str] = []
    if config.lowercase:
        text = text.lower()
    if config.ascii:
        text, changes = fold_ascii(text)
        if changes:
            notes.append(describe_folding(changes))
    if config.strip_punctuation:
        text, removed = strip_punctuation(text)
        if removed:
            notes.append(f"removed {removed:,} punctuation characters")
    return text, notes


def clean_text(text: str, config: CorpusConfig, source: str = "text") -> Corpus:
    """Gutenberg stripping and normalisation of already-decoded text."""
    notes: list[str] = []
    if not config.keep_header:
        result = strip_gutenberg(text)
        if result.changed:
            notes.append(
                f"removed a Project Gutenberg header ({result.header_lines:,} lines) and "
                f"footer ({result.footer_lines:,} lines); pass --keep-header to keep them"
            )
            if not result.text.strip():
                raise LstmgenError(
                    f"{source} is empty after removing the Project Gutenberg header and footer; "
                    "pass --keep-header to train on the whole file"
                )
        text = result.text
    text, more = normalize_text(text, config)
    notes.extend(more)
    return Corpus(text=text, source=source, encoding="", notes=notes)


def _check_path(p: Path) -> None:
    if not p.exists():
        raise LstmgenError(f"{p}: no such file; check the path")
    if p.is_dir():
        raise LstmgenError(f"{p} is a directory; give the path of a text file")


def _unreadable(p: Path, exc: OSError) -> LstmgenError:
    if isinstance(exc, PermissionError):
        return LstmgenError(f"{p}: permission denied; make the file readable")
    return LstmgenError(f"{p}: cannot be read ({exc.strerror}); check the file")


def _empty(p: Path) -> LstmgenError:
    return LstmgenError(f"{p} is empty; give a file with some text in it")


def check_corpus_file(path: str | os.PathLike) -> None:
    """The first checks of :func:`read_corpus`, with its errors, without reading
    the file: it exists, is not a directory, opens, and is not empty. Cheap and
    free of PyTorch, so that ``lstmgen train`` refuses a wrong path at once."""
    p = Path(path)
    _check_path(p)
    if not p.is_file():
        return  # a pipe or a device: reading a byte would take it from read_corpus
    try:
        with open(p, "rb") as f:
            empty = not f.read(1)
    except OSError as exc:
        raise _unreadable(p, exc) from None
    if empty:
        raise _empty(p)


def read_corpus(path: str | os.PathLike, config: CorpusConfig | None = None) -> Corpus:
    """Read a text file into a :class:`Corpus`, raising :class:`LstmgenError` with
    a fix for every kind of bad file."""
    config = config or CorpusConfig()
    p = Path(path)
    _check_path(p)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise _unreadable(p, exc) from None
    if not data:
        raise _empty(p)
    try:
        text, used, notes = decode_bytes(data, config.encoding)
    except _BinaryFile:
        raise LstmgenError(
            f"{p} looks like a binary file (it contains NUL bytes); give a plain text file"
        ) from None
    except LstmgenError as exc:
        raise LstmgenError(f"{p}: {exc}") from None
    if not text.strip():
        raise LstmgenError(f"{p} holds only whitespace; give a file with some text in it")
    corpus = clean_text(text, config, source=str(p))
    corpus.encoding = used
    corpus.notes = notes + corpus.notes
    if not corpus.text:
        raise LstmgenError(
            f"{p} is empty after the corpus options; drop --strip-punctuation or --ascii"
        )
    return corpus


_ESCAPES = {"\n": "\\n", "\t": "\\t", "\r": "\\r", " ": "␠"}


def show_char(ch: str) -> str:
    """A visible rendering of one vocabulary character (\\n, \\t, U+00A0 ...)."""
    if ch in _ESCAPES:
        return _ESCAPES[ch]
    if ch in string.printable or (ch.isprintable() and not ch.isspace()):
        return ch
    return f"U+{ord(ch):04X}"


def summarize(corpus: Corpus) -> dict:
    """The tutorial's corpus summary, as data."""
    counts = Counter(corpus.text)
    vocab = sorted(counts)
    return {
        "source": corpus.source,
        "encoding": corpus.encoding,
        "total_chars": len(corpus.text),
        "lines": corpus.num_lines,
        "vocab_size": len(vocab),
        "vocab": vocab,
        "vocab_shown": [show_char(c) for c in vocab],
        "char_counts": {c: counts[c] for c in vocab},
        "notes": list(corpus.notes),
    }
