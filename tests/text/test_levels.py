"""Word and BPE levels: exact round trips, stored tokenizers, comparable bits per character."""

import functools
import math

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import lstmgen
from lstmgen.errors import LstmgenError
from lstmgen.sampling.config import SampleConfig
from lstmgen.text.tokenizer import TokenizerConfig, WordTokenizer, tokenizer_from_dict

from conftest import corpus_path

def shakespeare(n=100_000):
    return corpus_path("tinyshakespeare.txt").read_text()[:n]


@functools.lru_cache(maxsize=1)
def trained_bpe():
    return TokenizerConfig("bpe", 500).build(shakespeare())


@pytest.fixture
def bpe():
    return trained_bpe()


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=200))
@example("\ufffd\x80")  # a real U+FFFD once made the stream hold back and then garble a character
def test_bpe_round_trips_any_unicode_and_streams_whole_characters(text):
    tok = trained_bpe()
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    decoder = tok.stream_decoder()
    assert "".join(decoder.push(int(i)) for i in ids) + decoder.flush() == text


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(0, 299), max_size=60))
def test_bpe_streams_any_token_sequence_as_decode_reads_it(ids):
    """A model may sample any ids, also ones whose bytes are not UTF-8:
    streamed, they give exactly the text that decode gives."""
    tok = trained_bpe()
    ids = [i % tok.vocab_size for i in ids]
    decoder = tok.stream_decoder()
    assert "".join(decoder.push(i) for i in ids) + decoder.flush() == tok.decode(ids)


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=200))
def test_word_tokens_round_trip_text_they_know(text):
    tok = WordTokenizer.from_text(text, vocab_size=10_000)
    assert tok.decode(tok.encode(text)) == text
    assert "".join(WordTokenizer.PATTERN.findall(text)) == text


def test_word_vocabulary_is_capped_and_the_rest_is_unknown():
    tok = TokenizerConfig("word", 20).build(shakespeare())
    assert tok.vocab_size == 20 and tok.tokens[0] == "<unk>"
    ids = tok.encode("First Citizen: zounds")
    assert 0 in ids.tolist()
    _, report = tok.make_known("zounds and gadzooks")
    assert report and "read as <unk>" in report.describe()
    assert tok.chars_after("First Citizen", 1) == len(" Citizen")


def test_stored_tokenizers_load_back(bpe):
    word = TokenizerConfig("word", 50).build(shakespeare())
    for tok in (word, bpe):
        again = tokenizer_from_dict(tok.to_dict())
        assert again.vocab_size == tok.vocab_size
        # Known words, an unknown one and a character never seen: the same ids, not merely the same text.
        text = "First Citizen:\nBefore we proceed, zyzzyva \u00e9clair"
        assert again.encode(text).tolist() == tok.encode(text).tolist()
        assert again.decode(again.encode(text)) == tok.decode(tok.encode(text))
    with pytest.raises(LstmgenError, match="not an lstmgen vocabulary"):
        tokenizer_from_dict({"level": "morse"})


@pytest.mark.parametrize("kwargs, message", [
    ({"level": "letters"}, "--level"),
    ({"level": "char", "vocab_size": 100}, "--vocab-size applies"),
    ({"level": "bpe", "vocab_size": 100}, "at least 257"),
])
def test_bad_tokenizer_options(kwargs, message):
    with pytest.raises(LstmgenError, match=message):
        TokenizerConfig(**kwargs)


@pytest.mark.parametrize("level", ["word", "bpe"])
def test_training_generation_and_evaluation_at_each_level(level, tmp_path):
    quiet = lambda *_: None
    result = lstmgen.train(corpus_path("alice-gutenberg-11-utf8.txt"), tmp_path / "run", level=level,
                           vocab_size=600, max_steps=5, hidden_size=32, num_layers=1, batch_size=8, seq_len=32,
                           progress=False, log=quiet)
    model = lstmgen.load(tmp_path / "run")
    assert model.tokenizer.level == level and model.model.config.vocab_size == model.tokenizer.vocab_size
    text = model.generate("Alice was", SampleConfig(max_new_tokens=20, seed=3))[0]
    assert text == model.generate("Alice was", SampleConfig(max_new_tokens=20, seed=3))[0]
    val = model.evaluate_validation()
    assert val.loss_nats == pytest.approx(result.best_val_loss, abs=1e-4)
    # Several characters per token: bits per character is below bits per token.
    assert val.chars > val.tokens
    assert val.bits_per_char == pytest.approx(val.loss_nats * val.tokens / val.chars / math.log(2))
    sample = "Alice was beginning to get very tired of sitting by her sister on the bank."
    on_text = model.evaluate(sample)
    assert on_text.chars == len(sample) - len(model.tokenizer.decode(model.tokenizer.encode(sample)[:1]))
