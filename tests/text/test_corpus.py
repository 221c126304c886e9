import codecs

import pytest

from lstmgen.text.corpus import CorpusConfig, decode_bytes, read_corpus, summarize
from lstmgen.errors import LstmgenError
from lstmgen.text.gutenberg import strip_gutenberg

from conftest import corpus_path

ALICE_VARIANTS = [
    "alice-gutenberg-11-0-2020-utf8-lf.txt",
    "alice-gutenberg-11-2024-wrapped-markers.txt",
    "alice-gutenberg-11-2025-numeric-markers.txt",
    "alice-gutenberg-11-ascii.txt",
    "alice-gutenberg-11-utf8.txt",
    "alice-gutenberg-alice30-1994-ascii.txt",
    "alice-gutenberg-pg11-2025-utf8-lf.txt",
    "alice-wonderland-cp1252-trimmed.txt",
    "alice-wonderland-tutorial-trimmed.txt",
]


@pytest.mark.parametrize("name", ALICE_VARIANTS)
def test_every_alice_variant_is_cleaned_to_the_book(name):
    corpus = read_corpus(corpus_path(name))
    lines = [line.strip() for line in corpus.text.split("\n")]
    first = next(line for line in lines if line)
    assert first.upper().replace("’", "'") in ("ALICE'S ADVENTURES IN WONDERLAND", "CHAPTER I.", "CHAPTER I")
    assert corpus.text.rstrip().endswith("THE END")
    assert lines[-2] == "THE END"  # the text ends with "THE END\n"
    # Nothing of Gutenberg's boilerplate is left in the body.
    for marker in ("PROJECT GUTENBERG", "SMALL PRINT", "FULL LICENSE", "WONDERLAND ***", "\ufeff", "\r"):
        assert marker not in corpus.text.upper()
    # The whole book is there: the same chapter count in every edition.
    assert sum(1 for line in lines if line.startswith("CHAPTER ")) >= 12
    assert 140_000 < len(corpus.text) < 150_000


def test_every_variant_keeps_the_same_first_and_last_sentence():
    texts = [read_corpus(corpus_path(n)).text for n in ALICE_VARIANTS]
    for text in texts:
        assert "Alice was beginning to get very tired of sitting by her sister" in " ".join(text.split())
        assert "happy summer days." in " ".join(text.split())


def test_keep_header_keeps_everything():
    path = corpus_path("alice-gutenberg-11-utf8.txt")
    corpus = read_corpus(path, CorpusConfig(keep_header=True))
    assert "*** START OF THIS PROJECT GUTENBERG EBOOK" in corpus.text
    assert "FULL LICENSE" in corpus.text


def test_cp1252_is_detected_and_reported():
    corpus = read_corpus(corpus_path("alice-wonderland-cp1252-trimmed.txt"))
    assert corpus.encoding == "cp1252"
    assert any("Windows-1252" in n for n in corpus.notes)
    assert "‘" in corpus.text and "’" in corpus.text and "“" in corpus.text


def test_double_bom_and_markers_wrapped_over_two_lines():
    corpus = read_corpus(corpus_path("alice-gutenberg-11-2024-wrapped-markers.txt"))
    assert any("2 byte-order marks" in n for n in corpus.notes)
    assert "WONDERLAND ***" not in corpus.text


@pytest.mark.parametrize(
    "raw, expected",
    [
        (b"\xef\xbb\xbfab\r\ncd", "ab\ncd"),
        (b"\xef\xbb\xbf\xef\xbb\xbfab\rcd\r", "ab\ncd\n"),
        ("caf\u00e9 \u2019".encode("utf-8"), "caf\u00e9 \u2019"),
        ("caf\u00e9 \u2019\u20ac".encode("cp1252"), "caf\u00e9 \u2019\u20ac"),
        (b"\x81\x8d", "\x81\x8d"),  # bytes Windows-1252 leaves undefined decode as Latin-1
        (codecs.BOM_UTF16_LE + "h\u00e9\r\n".encode("utf-16-le"), "h\u00e9\n"),
    ],
)
def test_decoding(raw, expected):
    text, _, _ = decode_bytes(raw)
    assert text == expected


def test_forced_latin1_and_bad_forced_encoding(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("na\u00efve \u00bd".encode("latin-1"))
    assert read_corpus(path, CorpusConfig(encoding="latin-1")).text == "na\u00efve \u00bd"
    with pytest.raises(LstmgenError, match="not valid utf-8"):
        read_corpus(path, CorpusConfig(encoding="utf-8"))
    with pytest.raises(LstmgenError, match="unknown encoding"):
        CorpusConfig(encoding="klingon-8")


def test_options_lowercase_ascii_punctuation(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("“Ça va?” — she said’s\n", encoding="utf-8")
    assert read_corpus(path, CorpusConfig(lowercase=True)).text == "“ça va?” — she said’s\n"
    folded = read_corpus(path, CorpusConfig(ascii=True))
    assert folded.text == "\"Ca va?\" - she said's\n"
    assert any("folded 5 non-ASCII" in n for n in folded.notes)
    stripped = read_corpus(path, CorpusConfig(strip_punctuation=True, lowercase=True))
    assert stripped.text == "ça va  she saids\n"  # the em dash is punctuation (Pd) too


def test_stripper_leaves_other_text_alone():
    text = "First Citizen:\nBefore we proceed any further, hear me speak.\n"
    assert strip_gutenberg(text).text == text
    assert not strip_gutenberg(text).changed


def test_end_of_line_before_end_marker_and_full_license_after():
    text = (
        "header\n*** START OF THE PROJECT GUTENBERG EBOOK X ***\nProduced by someone\nand others\n\n"
        "Book text.\nTHE END\n\nEnd of the Project Gutenberg EBook of X, by\nSomeone\n\n"
        "*** END OF THE PROJECT GUTENBERG EBOOK X ***\nlicence\n*** START: FULL LICENSE ***\nmore\n"
    )
    assert strip_gutenberg(text).text == "Book text.\nTHE END\n"


def test_empty_after_stripping_names_keep_header(tmp_path):
    path = tmp_path / "only-header.txt"
    path.write_text("*** START OF THE PROJECT GUTENBERG EBOOK 1 ***\n\n*** END OF THE PROJECT GUTENBERG EBOOK 1 ***\n")
    with pytest.raises(LstmgenError, match="--keep-header"):
        read_corpus(path)


@pytest.mark.parametrize("content, message", [
    (b"", "is empty"),
    (b"   \n\n", "only whitespace"),
    (b"abc\x00\x01\x02", "binary"),
])
def test_bad_files(tmp_path, content, message):
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    with pytest.raises(LstmgenError, match=message):
        read_corpus(path)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(LstmgenError, match="no such file"):
        read_corpus(tmp_path / "nope.txt")
    with pytest.raises(LstmgenError, match="is a directory"):
        read_corpus(tmp_path)


def test_summary_matches_the_tutorials_numbers():
    # The Keras fixtures (shared/fixtures/keras-tutorial/README.md) read this
    # whole file lowercased and found 45 distinct characters.
    path = corpus_path("alice-wonderland-tutorial-trimmed.txt")
    whole = summarize(read_corpus(path, CorpusConfig(lowercase=True, keep_header=True)))
    assert whole["total_chars"] == 144_512  # an ASCII LF file: bytes == characters
    assert whole["vocab_size"] == 45
    assert whole["vocab_shown"][0] == "\\n" and whole["vocab_shown"][1] == "␠"


def test_a_file_of_several_books_keeps_them_all():
    book = ("*** START OF THE PROJECT GUTENBERG EBOOK {n} ***\n\nBook {n} text.\nTHE END\n\n"
            "*** END OF THE PROJECT GUTENBERG EBOOK {n} ***\nlicence {n}\n")
    text = "preamble\n" + book.format(n=1) + book.format(n=2)
    assert strip_gutenberg(text).text == "Book 1 text.\nTHE END\n\nBook 2 text.\nTHE END\n"
