"""Property-based tests: the stripper, the tokenizer and the sampling settings."""

import math

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from lstmgen.text.corpus import decode_bytes
from lstmgen.errors import LstmgenError
from lstmgen.sampling.config import SampleConfig
from lstmgen.sampling.processors import next_tokens
from lstmgen.sampling.stream import stream_tokens
from lstmgen.text.gutenberg import strip_gutenberg
from lstmgen.model import LSTMLanguageModel, ModelConfig
from lstmgen.text.tokenizer import CharTokenizer

MARKER_LINES = [
    "*** START OF THE PROJECT GUTENBERG EBOOK 11 ***",
    "*** START OF THIS PROJECT GUTENBERG EBOOK ALICE’S ADVENTURES IN",
    "WONDERLAND ***",
    "*** END OF THE PROJECT GUTENBERG EBOOK 11 ***",
    "End of Project Gutenberg's Alice's Adventures in Wonderland, by Lewis Carroll",
    "*END*THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*Ver.04.29.93*END*",
    "***START**THE SMALL PRINT!**FOR PUBLIC DOMAIN ETEXTS**START***",
    "*** START: FULL LICENSE ***",
    "START: FULL LICENSE",
    "Produced by Someone",
    "[Illustration]",
    "THE END",
    "",
    "   ",
]
# Text made of marker lines, ordinary lines and arbitrary Unicode, in any order.
gutenbergish = st.lists(st.one_of(st.sampled_from(MARKER_LINES), st.text(max_size=30)), max_size=25).map("\n".join)


@settings(max_examples=400, deadline=None)
@given(gutenbergish)
def test_stripper_never_crashes_never_invents_text_and_is_idempotent(text):
    result = strip_gutenberg(text)
    cleaned = result.text
    if result.changed:
        # Only whole input lines come out (a book's last line loses its
        # trailing spaces), and every book ends with one newline.
        input_lines = {line.rstrip() for line in text.split("\n")}
        assert {line.rstrip() for line in cleaned.split("\n")} <= input_lines | {""}
        assert cleaned == "" or cleaned.endswith("\n")
    else:
        assert cleaned == text
    assert strip_gutenberg(cleaned).text == cleaned


@settings(max_examples=200, deadline=None)
@given(gutenbergish, st.lists(st.integers(1, 50), min_size=1, max_size=8))
def test_stripping_in_pieces_equals_stripping_whole(text, cuts):
    from lstmgen.text.gutenberg import GutenbergFilter

    f = GutenbergFilter()
    pieces, start = [], 0
    for cut in cuts:
        pieces.append(f.feed(text[start:start + cut]))
        start += cut
    pieces.append(f.feed(text[start:]))
    pieces.append(f.finish())
    assert "".join(pieces) == strip_gutenberg(text).text


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_tokenizer_round_trips_arbitrary_unicode(text):
    assume(text)
    tok = CharTokenizer.from_text(text)
    assert tok.decode(tok.encode(text)) == text
    known, report = tok.make_known(text + "\U0001F600")
    assert known.startswith(text)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_decoding_any_bytes_gives_text_or_a_clean_refusal(data):
    try:
        text, encoding, notes = decode_bytes(data)
    except Exception as exc:  # only the binary-file refusal may escape
        assert type(exc).__name__ == "_BinaryFile"
        return
    assert "\r" not in text and not text.startswith("\ufeff")


MODEL = None


def tiny_model():
    global MODEL
    if MODEL is None:
        torch.manual_seed(0)
        MODEL = LSTMLanguageModel(ModelConfig(vocab_size=9, hidden_size=8, num_layers=1, embedding_dim=4)).eval()
    return MODEL


settings_strategy = st.fixed_dictionaries({
    "temperature": st.one_of(st.just(0.0), st.floats(1e-3, 50.0)),
    "top_k": st.one_of(st.none(), st.integers(1, 20)),
    "top_p": st.one_of(st.none(), st.floats(1e-6, 1.0)),
    "num_samples": st.integers(1, 4),
    "max_new_tokens": st.integers(0, 12),
    "seed": st.integers(0, 2**63 - 1),
})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(settings_strategy, st.lists(st.integers(0, 8), min_size=1, max_size=10))
def test_every_valid_setting_gives_valid_tokens(kwargs, prompt):
    config = SampleConfig(**kwargs)
    steps = list(stream_tokens(tiny_model(), prompt, config, config.seed))
    assert len(steps) == config.max_new_tokens
    for tokens in steps:
        assert tokens.shape == (config.num_samples,)
        assert ((tokens >= 0) & (tokens < 9)).all()


@settings(max_examples=200, deadline=None)
@given(st.fixed_dictionaries({
    "temperature": st.one_of(st.floats(max_value=-1e-9), st.just(math.inf), st.just(math.nan)),
}) | st.fixed_dictionaries({"top_k": st.integers(max_value=0)})
   | st.fixed_dictionaries({"top_p": st.one_of(st.floats(max_value=0.0), st.floats(min_value=1.0 + 1e-9),
                                               st.just(math.nan))})
   | st.fixed_dictionaries({"num_samples": st.integers(max_value=0)})
   | st.fixed_dictionaries({"max_new_tokens": st.integers(max_value=-1)})
   | st.fixed_dictionaries({"seed": st.one_of(st.integers(max_value=-1), st.integers(min_value=2**63))}))
def test_every_invalid_setting_is_rejected_with_a_message(kwargs):
    with pytest.raises(LstmgenError) as info:
        SampleConfig(**kwargs)
    assert "--" in str(info.value)


def test_top_p_with_extreme_logits_still_draws_a_token():
    logits = torch.tensor([[1e4, -1e4, 0.0], [float("-inf"), 3.0, float("-inf")]])
    drawn = next_tokens(logits, SampleConfig(temperature=0.01, top_p=1e-6, top_k=1), torch.Generator().manual_seed(0))
    assert drawn.tolist() == [0, 1]
