"""`lstmgen prepare`: many or large text files to one memory-mapped token file.

Files are read in chunks, never whole (beyond a size where reading whole is
cheap), and the ids are written as they are made, so memory stays flat
whatever the corpus size:

    files ──read in chunks──▶ decode, strip Gutenberg, normalise
          ──▶ ids in order of first appearance (ids.tmp, widened on demand)
          ──▶ one pass renumbering to the sorted vocabulary
          ──▶ train.bin | val.bin (the last --val-fraction), meta.json
"""

from __future__ import annotations

import codecs
import glob as globlib
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from ..errors import LstmgenError
from .batches import open_tokens, read_chunks, split_ids, write_item_index
from .corpus import CorpusConfig, describe_folding, fold_ascii, read_corpus, strip_punctuation
from .gutenberg import GutenbergFilter
from .items import ITEM_SPLITTERS, iter_sentences, split_lines
from .tokenizer import BPETokenizer, CharTokenizer, ItemTokenizer, TokenizerConfig, WordTokenizer, id_dtype

CHUNK_BYTES = 4 << 20
"""Bytes read at a time."""
WHOLE_FILE_LIMIT = 4 << 20
"""Files up to this size are read whole, exactly as `lstmgen train FILE` reads them."""
META_FORMAT = "lstmgen-data"


@dataclass
class PrepareResult:
    data_dir: Path
    files: int
    skipped: list[str]
    chars: int
    vocab_size: int
    train_tokens: int
    val_tokens: int
    seconds: float
    input_bytes: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def mb_per_second(self) -> float:
        return self.input_bytes / 1e6 / max(self.seconds, 1e-9)


def prepare_files(inputs, out_dir: str | os.PathLike, *, level: str = "char", vocab_size: int | None = None,
                  val_fraction: float = 0.1, pattern: str = "*.txt", separator: str = "", progress: bool = True,
                  log: Callable[[str], None] = print, framing: str = "stream", max_item_tokens: int = 4096,
                  **corpus_options) -> PrepareResult:
    """``lstmgen.prepare``: text files, directories or globs to token files
    in ``out_dir`` that ``lstmgen.train(out_dir, ...)`` trains on::

        lstmgen.prepare(["books/"], "data/books", level="bpe", vocab_size=2000, lowercase=True)

    ``corpus_options`` are CorpusConfig fields (encoding, keep_header,
    lowercase, ascii, strip_punctuation)."""
    known = set(CorpusConfig.__dataclass_fields__)
    unknown = sorted(set(corpus_options) - known)
    if unknown:
        raise LstmgenError(f"unknown corpus option(s) {', '.join(unknown)}; the options are {', '.join(sorted(known))}")
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    return prepare([str(p) for p in inputs], out_dir, CorpusConfig(**corpus_options), val_fraction=val_fraction,
                   pattern=pattern, separator=separator, progress=progress, log=log,
                   tokenizer_config=TokenizerConfig(level=level, vocab_size=vocab_size),
                   items=ItemOptions(framing, max_item_tokens) if framing != "stream" else None)


def find_inputs(inputs: list[str], pattern: str = "*.txt") -> list[Path]:
    """Files, directories (searched recursively for ``pattern``) and globs, in a stable order."""
    found: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            matches = sorted(q for q in p.rglob(pattern) if q.is_file())
            if not matches:
                raise LstmgenError(f"{p} holds no files matching {pattern!r}; pass --glob to choose others")
            found.extend(matches)
        elif p.is_file():
            found.append(p)
        else:
            matches = sorted(Path(m) for m in globlib.glob(item, recursive=True) if Path(m).is_file())
            if not matches:
                raise LstmgenError(f"{item}: no such file, directory or matching files; check the path")
            found.extend(matches)
    seen, unique = set(), []
    for f in found:
        key = f.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return unique


class IdWriter:
    """Write ids as they are made, numbered in order of first appearance.

    The file starts as uint8 and is widened to uint16 or uint32 the moment
    the vocabulary outgrows it, so no corpus pays for ids wider than it needs.
    """

    def __init__(self, path: Path):
        self.path = path
        self.lut = np.full(0x110000, -1, dtype=np.int64)  # code point -> id
        self.codepoints: list[int] = []
        self.dtype = np.dtype(np.uint8)
        self.count = 0
        self.file = open(path, "wb")

    def write(self, text: str) -> None:
        # Slices keep the code-point and id arrays (12 bytes a character) small.
        for a in range(0, len(text), 1 << 22):
            self._write(text[a:a + (1 << 22)])

    def _write(self, text: str) -> None:
        cps = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        ids = self.lut[cps]
        if (ids < 0).any():
            new = np.unique(cps[ids < 0])
            self.lut[new] = np.arange(len(self.codepoints), len(self.codepoints) + len(new))
            self.codepoints.extend(int(c) for c in new)
            if id_dtype(len(self.codepoints)) != self.dtype:
                self._widen(id_dtype(len(self.codepoints)))
            ids = self.lut[cps]
        ids.astype(self.dtype).tofile(self.file)
        self.count += len(ids)

    def _widen(self, dtype: np.dtype) -> None:
        self.file.close()
        wider = self.path.with_name(self.path.name + ".wide")
        with open(wider, "wb") as out:
            for block in read_chunks(self.path, self.dtype, 0, self.count):
                block.astype(dtype).tofile(out)
        os.replace(wider, self.path)
        self.dtype = dtype
        self.file = open(self.path, "ab")

    def truncate(self, count: int) -> None:
        """Take back everything written after the first ``count`` ids."""
        self.file.flush()
        self.file.truncate(count * self.dtype.itemsize)
        self.file.seek(0, os.SEEK_END)
        self.count = count

    def close(self) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()


class _Normalizer:
    """The corpus options applied chunk by chunk, with their changes summed."""

    def __init__(self, config: CorpusConfig):
        self.config = config
        self.folded: Counter = Counter()
        self.punctuation = 0

    def __call__(self, text: str) -> str:
        if self.config.lowercase:
            text = text.lower()
        if self.config.ascii:
            text, changes = fold_ascii(text)
            self.folded.update(changes)
        if self.config.strip_punctuation:
            text, removed = strip_punctuation(text)
            self.punctuation += removed
        return text

    def notes(self) -> list[str]:
        out = [describe_folding(self.folded)] if self.folded else []
        if self.punctuation:
            out.append(f"removed {self.punctuation:,} punctuation characters")
        return out


def _decoded_chunks(path: Path, encoding: str, chunk_bytes: int) -> Iterator[str]:
    """Decode a file chunk by chunk with ``\\n`` line ends and no leading BOMs."""
    errors = "lstmgen-latin1" if codecs.lookup(encoding).name == "cp1252" else "strict"
    decoder = codecs.getincrementaldecoder(encoding)(errors=errors)
    utf8 = codecs.lookup(encoding).name in ("utf-8", "utf-8-sig")
    at_start = True
    pending_cr = False
    with open(path, "rb") as f:
        while True:
            data = f.read(chunk_bytes)
            final = not data
            text = decoder.decode(data, final=final)
            if at_start and (text or final):
                if utf8:
                    text = text.lstrip("\ufeff")
                at_start = not text and not final
            if pending_cr:
                text = "\r" + text
                pending_cr = False
            if text.endswith("\r") and not final:
                text, pending_cr = text[:-1], True
            if text:
                yield text.replace("\r\n", "\n").replace("\r", "\n")
            if final:
                return


def _stream_large_file(path: Path, config: CorpusConfig, writer: IdWriter, normalize: _Normalizer,
                       notes: list[str], chunk_bytes: int) -> None:
    """Decode, strip and normalise a file chunk by chunk, writing ids as it goes.

    When the bytes turn out not to be UTF-8, what this file wrote is taken
    back and the file is read again as Windows-1252.
    """
    start = writer.count
    encodings = [config.encoding] if config.encoding else ["utf-8", "cp1252"]
    for encoding in encodings:
        gutenberg = None if config.keep_header else GutenbergFilter()
        try:
            for text in _decoded_chunks(path, encoding, chunk_bytes):
                if writer.count == start and "\x00" in text[:65536]:
                    raise LstmgenError(f"{path} looks like a binary file (it contains NUL bytes)")
                writer.write(normalize(gutenberg.feed(text) if gutenberg else text))
            if gutenberg:
                writer.write(normalize(gutenberg.finish()))
        except UnicodeDecodeError as exc:
            if config.encoding:
                raise LstmgenError(f"{path}: the file is not valid {encoding}; pass the right --encoding") from None
            writer.truncate(start)
            notes.append(f"{path}: not valid UTF-8 (near byte {exc.start} of a chunk); read as Windows-1252 "
                         "(pass --encoding to choose another)")
            continue
        if gutenberg and gutenberg.changed:
            notes.append(f"{path}: removed a Project Gutenberg header ({gutenberg.header_lines:,} lines) and footer "
                         f"({gutenberg.footer_lines:,} lines)")
        return


def prepare(
    inputs: list[str],
    out_dir: str | os.PathLike,
    corpus_config: CorpusConfig | None = None,
    val_fraction: float = 0.1,
    pattern: str = "*.txt",
    separator: str = "",
    progress: bool = True,
    log: Callable[[str], None] = print,
    chunk_bytes: int = CHUNK_BYTES,
    whole_file_limit: int = WHOLE_FILE_LIMIT,
    tokenizer_config: TokenizerConfig | None = None,
    items: "ItemOptions | None" = None,
) -> PrepareResult:
    """Turn text files into ``out_dir/{train.bin,val.bin,meta.json}`` for
    ``lstmgen train DATA_DIR``; with ``items``, into items (lines or
    sentences) between end tokens, with their index (``*.items.bin``)."""
    import time

    from tqdm import tqdm

    config = corpus_config or CorpusConfig()
    split_ids(100, val_fraction)  # validates the fraction before any work
    if items is not None:
        items.check()
        separator = separator or "\n\n"  # a document ends its last item, whatever follows
    files = find_inputs(inputs, pattern)
    out = _data_dir(out_dir)
    start_time = time.perf_counter()
    total_bytes = sum(f.stat().st_size for f in files)
    tmp = out / "ids.tmp"
    writer = IdWriter(tmp)
    normalize = _Normalizer(config)
    notes: list[str] = []
    skipped: list[str] = []
    kept = 0
    bar = tqdm(total=total_bytes, unit="B", unit_scale=True, unit_divisor=1000, desc="prepare",
               disable=not progress, dynamic_ncols=True, mininterval=0.5)
    try:
        for path in files:
            size = path.stat().st_size
            try:
                _append_file(path, size, config, writer, normalize, notes, separator if kept else "",
                             chunk_bytes, whole_file_limit)
                kept += 1
            except LstmgenError as exc:
                skipped.append(f"{path}: {exc}")
            bar.update(size)
    except OSError as exc:
        writer.file.close()
        tmp.unlink(missing_ok=True)
        raise LstmgenError(f"could not write to {out} ({exc.strerror}); free some disk space or choose another --out") from None
    finally:
        bar.close()
    writer.close()
    notes.extend(normalize.notes())
    for line in skipped:
        log(f"lstmgen: skipped {line}")
    if writer.count < 2:
        tmp.unlink(missing_ok=True)
        raise LstmgenError("no usable text in the inputs (every file was empty, binary or unreadable); "
                           "give text files")
    tokenizer_config = tokenizer_config or TokenizerConfig()
    if items is not None:
        vocab_size = _finish_items(out, writer, val_fraction, config, files, kept, total_bytes, tokenizer_config,
                                   items, log)
    elif tokenizer_config.level == "char":
        vocab_size = _finish(out, writer, val_fraction, config, files, kept, total_bytes)
    else:
        vocab_size = _finish_tokens(out, writer, val_fraction, config, files, kept, total_bytes, tokenizer_config,
                                    log)
    meta = json.loads((out / "meta.json").read_text())
    result = PrepareResult(
        data_dir=out, files=kept, skipped=skipped, chars=writer.count, vocab_size=vocab_size,
        train_tokens=meta["train_tokens"], val_tokens=meta["val_tokens"],
        seconds=time.perf_counter() - start_time, notes=notes, input_bytes=total_bytes,
    )
    return result


def _data_dir(out_dir: str | os.PathLike) -> Path:
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LstmgenError(f"cannot create {out} ({exc.strerror}); choose a writable --out directory") from None
    if (out / "meta.json").exists() and not (out / "meta.json").read_text().startswith("{"):
        raise LstmgenError(f"{out}/meta.json is not lstmgen data; choose another --out")
    return out


def _append_file(path: Path, size: int, config: CorpusConfig, writer: IdWriter, normalize, notes: list[str],
                 separator: str, chunk_bytes: int, whole_file_limit: int) -> None:
    """One file's cleaned text (after ``separator``) onto the ids: read whole
    up to ``whole_file_limit`` bytes, else in chunks. A file that cannot be
    read raises LstmgenError and leaves the ids as they were."""
    text = None
    if size <= whole_file_limit:
        corpus = read_corpus(path, config)
        notes.extend(f"{path}: {n}" for n in corpus.notes if "byte-order" not in n and "line ends" not in n)
        text = corpus.text
    mark = writer.count
    if separator:
        writer.write(separator)
    if text is not None:
        writer.write(text)
        return
    try:
        _stream_large_file(path, config, writer, normalize, notes, chunk_bytes)
    except LstmgenError:
        writer.truncate(mark)
        raise


def _finish(out: Path, writer: IdWriter, val_fraction: float, config: CorpusConfig, files, kept: int,
            total_bytes: int) -> int:
    """Renumber ids to the sorted vocabulary and split into train.bin and val.bin."""
    # Characters met only in a file that was later skipped never reach the ids.
    counts = np.zeros(len(writer.codepoints), dtype=np.int64)
    for block in read_chunks(writer.path, writer.dtype, 0, writer.count):
        counts += np.bincount(block, minlength=len(counts))
    used = [i for i in range(len(counts)) if counts[i]]
    order = sorted(used, key=lambda i: writer.codepoints[i])
    tokenizer = CharTokenizer([chr(writer.codepoints[i]) for i in order])
    dtype = tokenizer.dtype
    renumber = np.zeros(len(counts), dtype=dtype)
    renumber[order] = np.arange(len(order), dtype=dtype)
    cut = split_ids(writer.count, val_fraction)
    for name, (a, b) in (("train.bin", (0, cut)), ("val.bin", (cut, writer.count))):
        tmp = out / (name + ".tmp")
        with open(tmp, "wb") as f:
            for block in read_chunks(writer.path, writer.dtype, a, b):
                renumber[block].tofile(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out / name)
    writer.path.unlink()
    meta = {
        "format": META_FORMAT, "format_version": 1, "dtype": dtype.name, "level": "char",
        "train_tokens": int(cut), "val_tokens": int(writer.count - cut), "val_fraction": val_fraction,
        "chars": int(writer.count), "files": kept, "input_bytes": total_bytes,
        "sources": [str(f) for f in files[:1000]], "corpus": config.to_dict(), "tokenizer": tokenizer.to_dict(),
    }
    tmp = out / "meta.json.tmp"
    tmp.write_text(json.dumps(meta, indent=1, ensure_ascii=False))
    os.replace(tmp, out / "meta.json")
    return tokenizer.vocab_size


def _safe_cut(text: str) -> int:
    """Where a chunk can end without changing how words or BPE pieces are
    cut: after a newline that is followed by a non-space character."""
    i = len(text)
    while True:
        i = text.rfind("\n", 0, i)
        if i < 0 or i + 1 >= len(text):
            if i < 0:
                return len(text)
            continue
        if not text[i + 1].isspace():
            return i + 1


def _text_chunks(writer: IdWriter, start: int = 0, stop: int | None = None, chunk: int = 1 << 22):
    """The cleaned text [start, stop) back from the character ids, chunk by chunk."""
    codepoints = np.array(writer.codepoints, dtype=np.uint32)
    carry = ""
    stop = writer.count if stop is None else stop
    for block in read_chunks(writer.path, writer.dtype, start, stop, chunk):
        text = carry + codepoints[block].tobytes().decode("utf-32-le")
        cut = _safe_cut(text)
        if cut == 0:
            carry = text
            continue
        yield text[:cut]
        carry = text[cut:]
    if carry:
        yield carry


def _finish_tokens(out: Path, writer: IdWriter, val_fraction: float, config: CorpusConfig, files, kept: int,
                   total_bytes: int, tokenizer_config: TokenizerConfig, log) -> int:
    """Word or BPE ids from the cleaned text: one pass learns the vocabulary,
    one pass encodes, both streaming the text back from the character ids."""
    # Split the characters first: the vocabulary is learned from the
    # training part only, and every level holds out the same text.
    cut_chars = split_ids(writer.count, val_fraction)
    if tokenizer_config.level == "word":
        counts: Counter = Counter()
        for text in _text_chunks(writer, 0, cut_chars):
            counts.update(WordTokenizer.PATTERN.findall(text))
        tokenizer = WordTokenizer.from_counts(counts, tokenizer_config.vocab_size or 10_000)
        del counts
    else:
        tokenizer = BPETokenizer.from_batches(
            (text.splitlines(keepends=True) for text in _text_chunks(writer, 0, cut_chars)),
            tokenizer_config.vocab_size or 2_000)
    dtype = tokenizer.dtype
    ids_path = out / "tokens.tmp"
    unknown = 0
    cut = total = 0
    with open(ids_path, "wb") as f:
        for start, stop in ((0, cut_chars), (cut_chars, writer.count)):
            for text in _text_chunks(writer, start, stop):
                ids = tokenizer.encode(text)
                if tokenizer.level == "word":
                    unknown += int((ids == 0).sum())
                ids.astype(dtype).tofile(f)
                total += len(ids)
            if start == 0:
                cut = total
    writer.path.unlink()
    if total < 2:
        ids_path.unlink()
        raise LstmgenError("no usable text in the inputs after tokenizing; give text files")
    if tokenizer.level == "word":
        log(f"lstmgen: {unknown:,} of {total:,} tokens ({unknown / total:.2%}) are <unk> "
            "(raise --vocab-size to keep more words)")
    val_chars = writer.count - cut_chars
    for name, (a, b) in (("train.bin", (0, cut)), ("val.bin", (cut, total))):
        tmp = out / (name + ".tmp")
        with open(tmp, "wb") as f:
            for block in read_chunks(ids_path, dtype, a, b):
                block.tofile(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out / name)
    ids_path.unlink()
    meta = {
        "format": META_FORMAT, "format_version": 1, "dtype": dtype.name, "level": tokenizer.level,
        "train_tokens": int(cut), "val_tokens": int(total - cut), "val_fraction": val_fraction,
        "chars": int(writer.count), "val_chars": int(val_chars), "files": kept, "input_bytes": total_bytes,
        "sources": [str(f) for f in files[:1000]], "corpus": config.to_dict(), "tokenizer": tokenizer.to_dict(),
    }
    tmp = out / "meta.json.tmp"
    tmp.write_text(json.dumps(meta, ensure_ascii=False))
    os.replace(tmp, out / "meta.json")
    return tokenizer.vocab_size


@dataclass(frozen=True)
class ItemOptions:
    """How ``prepare`` cuts the text into items (see text/items.py)."""

    framing: str
    """'lines' or 'sentences'."""
    max_item_tokens: int = 4096
    """Refuse an item longer than this many tokens."""

    def check(self) -> None:
        if self.framing not in ITEM_SPLITTERS:
            raise LstmgenError(f"--framing must be stream, lines or sentences for lstmgen prepare, got {self.framing!r}")
        if self.max_item_tokens < 1:
            raise LstmgenError(f"--max-item-tokens must be 1 or more, got {self.max_item_tokens}")

    def cut(self, writer: IdWriter) -> Iterator[str]:
        """The items of the cleaned text, streamed back from the character ids."""
        lines = _lines(writer)
        if self.framing == "sentences":
            return iter_sentences(lines)
        return (item for line in lines for item in split_lines(line))


def _lines(writer: IdWriter) -> Iterator[str]:
    """The cleaned text's lines, whole, however the chunks fall."""
    carry = ""
    for text in _text_chunks(writer):
        parts = (carry + text).split("\n")
        carry = parts.pop()
        yield from parts
    if carry:
        yield carry


def _finish_items(out: Path, writer: IdWriter, val_fraction: float, config: CorpusConfig, files, kept: int,
                  total_bytes: int, tokenizer_config: TokenizerConfig, items: ItemOptions, log) -> int:
    """Items between end tokens, held out by items (the last ``val_fraction``
    of them), in passes over the text streamed back from the character ids:
    one counts the items (and their characters), one learns a word or BPE
    vocabulary from the training items, one writes the tokens and the index."""
    count, chars = 0, set()
    for item in items.cut(writer):
        count += 1
        chars.update(item)
    if count < 2:
        raise LstmgenError(f"the inputs hold {count} item(s) as {items.framing}; --framing {items.framing} needs at "
                           "least two, one to train on and one to hold out (or prepare them as a stream)")
    cut_items = min(max(split_ids(count, val_fraction), 1), count - (val_fraction > 0))
    tokenizer = _items_tokenizer(writer, items, tokenizer_config, cut_items, sorted(chars))
    dtype, end = tokenizer.dtype, np.array([tokenizer.end_id], dtype=tokenizer.dtype)
    sizes = {"train": 0, "val": 0}
    char_counts = {"train": 0, "val": 0}
    files_out = {part: open(out / f"{part}.bin.tmp", "wb") for part in sizes}
    try:
        for part in sizes:
            end.tofile(files_out[part])
            sizes[part] += 1
        for k, item in enumerate(items.cut(writer)):
            part = "train" if k < cut_items else "val"
            ids = tokenizer.encode(item)
            if len(ids) > items.max_item_tokens:
                raise LstmgenError(f"item {k + 1:,} (\"{item[:40]}…\") is {len(ids):,} tokens long, more than "
                                   f"--max-item-tokens {items.max_item_tokens:,}; prepare with --framing "
                                   f"{'sentences' if items.framing == 'lines' else 'lines'} or stream, or raise "
                                   "--max-item-tokens")
            np.concatenate([ids, end]).astype(dtype).tofile(files_out[part])
            sizes[part] += len(ids) + 1
            char_counts[part] += len(item) + 1  # each end token counts as one character
    finally:
        for f in files_out.values():
            f.close()
    writer.path.unlink()
    for part in sizes:
        os.replace(out / f"{part}.bin.tmp", out / f"{part}.bin")
        write_item_index(out, part, open_tokens(out / f"{part}.bin", dtype), tokenizer.end_id)
    meta = {
        "format": META_FORMAT, "format_version": 1, "dtype": dtype.name, "level": tokenizer.level,
        "train_tokens": sizes["train"], "val_tokens": sizes["val"], "val_fraction": val_fraction,
        "chars": char_counts["train"] + char_counts["val"], "val_chars": char_counts["val"], "files": kept,
        "input_bytes": total_bytes, "sources": [str(f) for f in files[:1000]], "corpus": config.to_dict(),
        "tokenizer": tokenizer.to_dict(), "end_id": tokenizer.end_id, "framing": items.framing,
        "items": count, "val_items": count - cut_items,
    }
    tmp = out / "meta.json.tmp"
    tmp.write_text(json.dumps(meta, ensure_ascii=False))
    os.replace(tmp, out / "meta.json")
    log(f"lstmgen: {count:,} {items.framing} as items ({cut_items:,} for training, {count - cut_items:,} held out)")
    return tokenizer.vocab_size


def _items_tokenizer(writer: IdWriter, items: ItemOptions, tokenizer_config: TokenizerConfig, cut_items: int,
                     chars: list[str]) -> ItemTokenizer:
    """The characters of the items (all of them, as for a stream), or a word
    or BPE vocabulary learned from the training items, and the end token."""
    if tokenizer_config.level == "char":
        return ItemTokenizer(CharTokenizer(chars))
    return tokenizer_config.build_items(islice(items.cut(writer), cut_items))


def is_data_dir(path: str | os.PathLike) -> bool:
    meta = Path(path) / "meta.json"
    if not meta.is_file():
        return False
    try:
        return json.loads(meta.read_text(encoding="utf-8")).get("format") == META_FORMAT
    except (ValueError, UnicodeDecodeError):
        return False
