"""`lstmgen prepare`: chunked reading gives exactly what whole-file reading gives."""

import json

import numpy as np
import pytest

import lstmgen
from lstmgen.text.corpus import CorpusConfig, read_corpus
from lstmgen.errors import LstmgenError
from lstmgen.text.prepare import prepare
from lstmgen.text.tokenizer import CharTokenizer

from conftest import corpus_path
from test_corpus import ALICE_VARIANTS


def quiet(*_):
    pass


def prepared_ids(data_dir):
    meta = json.loads((data_dir / "meta.json").read_text())
    train = np.fromfile(data_dir / "train.bin", dtype=meta["dtype"])
    val = np.fromfile(data_dir / "val.bin", dtype=meta["dtype"])
    return CharTokenizer.from_dict(meta["tokenizer"]), np.concatenate([train, val]), meta


@pytest.mark.parametrize("name", ALICE_VARIANTS + ["tinyshakespeare.txt"])
@pytest.mark.parametrize("config", [CorpusConfig(), CorpusConfig(lowercase=True, ascii=True)], ids=["plain", "folded"])
def test_streaming_path_matches_whole_file_reading(name, config, tmp_path):
    path = corpus_path(name)
    expected = read_corpus(path, config).text
    # Force the large-file path with tiny chunks, so chunk edges fall inside
    # CRLF pairs, multi-byte characters and byte-order marks.
    prepare([str(path)], tmp_path / "d", config, progress=False, log=quiet, chunk_bytes=997, whole_file_limit=0)
    tokenizer, ids, meta = prepared_ids(tmp_path / "d")
    assert tokenizer.decode(ids) == expected
    assert tokenizer.chars == sorted(set(expected))
    assert meta["val_tokens"] == len(expected) - int(len(expected) * 0.9)  # nanoGPT's split


def test_files_directories_and_globs_with_a_separator(tmp_path):
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "a.txt").write_text("first document")
    (docs / "sub" / "b.txt").write_text("second document")
    (docs / "ignored.md").write_text("not text by --glob")
    (docs / "empty.txt").write_text("")
    (docs / "binary.txt").write_bytes(b"\x00\x01\x02")
    extra = tmp_path / "c.log"
    extra.write_text("third one")
    notes = []
    result = prepare([str(docs), str(tmp_path / "*.log")], tmp_path / "d", separator="\n\n", val_fraction=0.0,
                     progress=False, log=notes.append)
    tokenizer, ids, meta = prepared_ids(tmp_path / "d")
    assert tokenizer.decode(ids) == "first document\n\nsecond document\n\nthird one"
    assert result.files == 3 and meta["files"] == 3
    assert len(result.skipped) == 2 and any("binary" in n for n in notes) and any("is empty" in n for n in notes)


def test_ids_widen_past_256_and_65536_characters(tmp_path):
    chars = [chr(c) for c in range(0x100, 0x100 + 70_000 + 2048) if not 0xD800 <= c <= 0xDFFF][:70_000]
    path = tmp_path / "wide.txt"
    path.write_text("abc" + "".join(chars), encoding="utf-8")
    prepare([str(path)], tmp_path / "d", progress=False, log=quiet, chunk_bytes=50_000, whole_file_limit=0)
    tokenizer, ids, meta = prepared_ids(tmp_path / "d")
    assert meta["dtype"] == "uint32" and tokenizer.vocab_size == 70_003
    assert tokenizer.decode(ids) == "abc" + "".join(chars)


def test_training_on_prepared_data_maps_it_in_place(tmp_path):
    prepare([str(corpus_path("alice-gutenberg-11-utf8.txt"))], tmp_path / "d", progress=False, log=quiet)
    result = lstmgen.train(tmp_path / "d", tmp_path / "run", max_steps=3, progress=False, log=quiet,
                           hidden_size=16, num_layers=1, batch_size=4, seq_len=16)
    assert not (tmp_path / "run" / "data").exists()
    model = lstmgen.load(tmp_path / "run")
    assert model.evaluate_validation().loss_nats == pytest.approx(result.best_val_loss, abs=1e-4)
    with pytest.raises(LstmgenError, match="corpus options were fixed"):
        lstmgen.train(tmp_path / "d", tmp_path / "run2", max_steps=1, progress=False, log=quiet, lowercase=True)
    with pytest.raises(LstmgenError, match="prepared as a stream, not for --framing lines; prepare it with --framing lines"):
        lstmgen.train(tmp_path / "d", tmp_path / "run3", max_steps=1, progress=False, log=quiet, framing="lines")
    assert lstmgen.resume(tmp_path / "run", max_steps=4, progress=False, log=quiet).steps == 4


def test_nothing_usable(tmp_path):
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(LstmgenError, match="no usable text"):
        prepare([str(tmp_path / "empty.txt")], tmp_path / "d", progress=False, log=quiet)
    with pytest.raises(LstmgenError, match="no such file"):
        prepare([str(tmp_path / "nothing-*.txt")], tmp_path / "d", progress=False, log=quiet)


def test_prepare_and_train_from_the_command_line(tmp_path):
    from conftest import run_cli

    books = tmp_path / "books"
    books.mkdir()
    for name in ("alice-gutenberg-11-2024-wrapped-markers.txt", "alice-wonderland-cp1252-trimmed.txt"):
        (books / name).write_bytes(corpus_path(name).read_bytes())
    result = run_cli("prepare", str(books), "--out", str(tmp_path / "data"), "--quiet")
    assert result.returncode == 0, result.stderr.decode()
    assert b"2 file(s)" in result.stdout and b"MB/s" in result.stdout
    assert b"Windows-1252" in result.stderr
    trained = run_cli("train", str(tmp_path / "data"), "--out", str(tmp_path / "run"), "--max-steps", "2",
                      "--hidden-size", "16", "--num-layers", "1", "--batch-size", "4", "--seq-len", "16", "--quiet")
    assert trained.returncode == 0, trained.stderr.decode()
    evaluated = run_cli("evaluate", str(tmp_path / "run"), "--json")
    assert evaluated.returncode == 0 and json.loads(evaluated.stdout)["tokens"] > 20_000


@pytest.mark.parametrize("level", ["word", "bpe"])
def test_word_and_bpe_data_match_whole_text_tokenizing(level, tmp_path):
    from lstmgen.text.tokenizer import TokenizerConfig, tokenizer_from_dict

    path = corpus_path("tinyshakespeare.txt")
    config = TokenizerConfig(level, 3000 if level == "word" else 400)
    prepare([str(path)], tmp_path / "d", progress=False, log=quiet, chunk_bytes=50_000,
            whole_file_limit=0, tokenizer_config=config)
    meta = json.loads((tmp_path / "d" / "meta.json").read_text())
    tokenizer = tokenizer_from_dict(meta["tokenizer"])
    ids = np.concatenate([np.fromfile(tmp_path / "d" / n, dtype=meta["dtype"]) for n in ("train.bin", "val.bin")])
    text = read_corpus(path).text
    # The same ids as tokenizing the training and held-out characters apart
    # (the vocabulary comes from the training part only) with the stored tokenizer.
    cut = int(len(text) * 0.9)
    np.testing.assert_array_equal(ids, np.concatenate([tokenizer.encode(text[:cut]), tokenizer.encode(text[cut:])]))
    assert meta["train_tokens"] == len(tokenizer.encode(text[:cut]))
    if level == "word":
        assert tokenizer.vocab_size == 3000
    else:
        assert tokenizer.decode(ids) == text
    assert meta["level"] == level and meta["val_chars"] == len(text) - cut
    lstmgen.train(tmp_path / "d", tmp_path / "run", max_steps=2, progress=False, log=quiet,
                  hidden_size=16, num_layers=1, batch_size=4, seq_len=16)
    model = lstmgen.load(tmp_path / "run")
    assert model.tokenizer.level == level
    assert model.evaluate_validation().chars > model.evaluate_validation().tokens
    with pytest.raises(LstmgenError, match="drop --level"):
        lstmgen.train(tmp_path / "d", tmp_path / "run2", max_steps=1, progress=False, log=quiet,
                      level="bpe" if level == "word" else "word")


def test_files_up_to_4_mb_are_read_whole_and_larger_ones_in_chunks(tmp_path, monkeypatch):
    """What the README says: a file of 4 MB or less is read whole (as
    `lstmgen train FILE` reads it), a larger one in chunks; both give the same ids."""
    import lstmgen.text.prepare as P

    assert P.WHOLE_FILE_LIMIT == P.CHUNK_BYTES == 4 << 20
    line = b"Alice was beginning to get very tired of sitting by her sister on the bank.\n"
    small, large = tmp_path / "small.txt", tmp_path / "large.txt"
    small.write_bytes((line * ((4 << 20) // len(line) + 1))[: 4 << 20])  # exactly 4 MB
    large.write_bytes(small.read_bytes() + line)  # one line over
    read_whole = []
    real_read_corpus = P.read_corpus
    monkeypatch.setattr(P, "read_corpus", lambda path, config: read_whole.append(path.name) or
                        real_read_corpus(path, config))
    ids = {}
    for path in (small, large):
        prepare([str(path)], tmp_path / path.stem, progress=False, log=quiet)
        ids[path.stem] = prepared_ids(tmp_path / path.stem)[1]
    assert read_whole == ["small.txt"]
    assert np.array_equal(ids["large"][: len(ids["small"])], ids["small"])


def test_prepare_memory_stays_bounded_on_a_large_file(tmp_path):
    """Peak memory of `lstmgen prepare` does not grow with the file: a
    96 MB file peaks within 32 MB of a 24 MB one (read whole, the text
    alone would take 72 MB more; every step works in chunks of at most
    16 M ids, so both sizes reach the same plateau)."""
    import subprocess
    import sys

    line = b"Alice was beginning to get very tired of sitting by her sister on the bank.\n"
    sizes = {"small": 24 << 20, "large": 96 << 20}
    peak_mb = {}
    for name, size in sizes.items():
        path = tmp_path / f"{name}.txt"
        path.write_bytes((line * (size // len(line) + 1))[:size])
        code = ("import resource, subprocess, sys; subprocess.run([sys.executable, '-m', 'lstmgen', 'prepare', "
                f"{str(path)!r}, '--out', {str(tmp_path / name)!r}, '--quiet'], check=True); "
                "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
        peak_mb[name] = int(done.stdout.split()[-1]) / 1024  # ru_maxrss is in KiB on Linux
    assert peak_mb["large"] - peak_mb["small"] < 32, peak_mb


@pytest.mark.parametrize("framing, level, name", [("lines", "char", "names.txt"),
                                                  ("sentences", "bpe", "alice-gutenberg-11-utf8.txt")])
def test_prepared_items_are_the_items_train_cuts_from_the_file(framing, level, name, tmp_path):
    """Streamed from tiny chunks, the token files and the item index equal
    those `lstmgen train FILE --framing ...` writes from the whole text."""
    path = corpus_path(name)
    if name == "names.txt":  # the first 3,000 names are as good a test as all of them
        path = tmp_path / "names.txt"
        path.write_text("\n".join(corpus_path(name).read_text().splitlines()[:3000]) + "\n")
    options = {"level": level, **({"vocab_size": 300} if level == "bpe" else {})}
    lstmgen.prepare([str(path)], tmp_path / "d", framing=framing, progress=False, log=quiet, **options)
    streamed = tmp_path / "s"
    from lstmgen.text.prepare import ItemOptions

    prepare([str(path)], streamed, progress=False, log=quiet, chunk_bytes=997, whole_file_limit=0,
            tokenizer_config=lstmgen.TokenizerConfig(**options), items=ItemOptions(framing))
    lstmgen.train(path, tmp_path / "run", framing=framing, max_steps=1, progress=False, log=quiet, hidden_size=8,
                  num_layers=1, **options)
    for name in ("train.bin", "val.bin", "train.items.bin", "val.items.bin"):
        expected = (tmp_path / "run" / "data" / name).read_bytes()
        assert (tmp_path / "d" / name).read_bytes() == expected == (streamed / name).read_bytes(), name
    meta = json.loads((tmp_path / "d" / "meta.json").read_text())
    assert meta["framing"] == framing and meta["items"] == meta["val_items"] + len(np.fromfile(
        tmp_path / "d" / "train.items.bin", dtype=np.int64)) - 1
    # Training on the prepared items takes their framing; a stream's framing cannot be forced on them.
    lstmgen.train(tmp_path / "d", tmp_path / "run2", max_steps=1, progress=False, log=quiet, hidden_size=8,
                  num_layers=1)
    assert lstmgen.load(tmp_path / "run2").items
    with pytest.raises(LstmgenError, match="not for --framing windows; drop --framing windows"):
        lstmgen.train(tmp_path / "d", tmp_path / "run3", framing="windows", max_steps=1, progress=False, log=quiet)
