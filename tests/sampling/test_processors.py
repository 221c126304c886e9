"""Anti-loop processors, stop strings and config-made options, against hand-computed cases."""

import argparse

import pytest
import torch

import lstmgen
from lstmgen.errors import LstmgenError
from lstmgen.sampling.config import SampleConfig
from lstmgen.sampling.processors import History, apply_min_p, apply_typical_p, next_tokens
from lstmgen.sampling.stops import StopText


def history(ids, vocab=5, streams=1, **config):
    return History(SampleConfig.plain(**config), vocab, streams, ids)


def test_neutral_values_change_nothing():
    h = history([0, 1, 2, 0, 1, 2, 0, 1])
    assert not h.active
    logits = torch.randn(1, 5)
    assert torch.equal(h.penalize(logits), logits)


def test_repetition_penalty_divides_positive_and_multiplies_negative_logits_of_seen_tokens():
    h = history([1, 3], repetition_penalty=2.0)
    logits = torch.tensor([[1.0, 4.0, -1.0, -3.0, 2.0]])
    assert h.penalize(logits).tolist() == [[1.0, 2.0, -1.0, -6.0, 2.0]]


def test_presence_and_frequency_penalties_count_the_window_only():
    h = history([2, 2, 4, 2], presence_penalty=0.5, frequency_penalty=0.25, penalty_window=3)
    # The window holds the last 3 tokens: 2, 4, 2 (the first 2 has left it).
    out = h.penalize(torch.zeros(1, 5))
    assert out.tolist() == [[0.0, 0.0, -0.5 - 2 * 0.25, 0.0, -0.5 - 0.25]]
    h.push(torch.tensor([1]))  # window 4, 2, 1
    assert h.penalize(torch.zeros(1, 5)).tolist() == [[0.0, -0.75, -0.75, 0.0, -0.75]]


def test_dry_penalizes_the_token_that_extends_the_longest_repeat():
    # a b c a b c a b: "c" would extend the repeat "abcab" (5 tokens) → 1 × 2^(5-2).
    h = history([0, 1, 2, 0, 1, 2, 0, 1], dry_multiplier=1.0, dry_base=2.0, dry_allowed_length=2,
                dry_sequence_breakers=(), penalty_window=16)
    assert h.penalize(torch.zeros(1, 5)).tolist() == [[0.0, 0.0, -8.0, 0.0, 0.0]]
    # Shorter than the allowed length: no penalty.
    h = history([0, 1, 2, 0, 1, 2, 0, 1], dry_multiplier=1.0, dry_base=2.0, dry_allowed_length=6,
                dry_sequence_breakers=(), penalty_window=16)
    assert h.penalize(torch.zeros(1, 5)).tolist() == [[0.0] * 5]


def test_a_sequence_breaker_ends_dry_repeats():
    ids = [0, 1, 4, 0, 1, 4, 0, 1]  # token 4 is a breaker: the repeat before "4" is only "a b"
    breakers = torch.tensor([False, False, False, False, True])
    h = History(SampleConfig(dry_multiplier=1.0, dry_base=2.0, dry_allowed_length=2, penalty_window=16),
                5, 1, ids, breakers)
    assert h.penalize(torch.zeros(1, 5)).tolist() == [[0.0, 0.0, 0.0, 0.0, -1.0]]


def test_no_repeat_ngram_bans_completing_a_seen_ngram():
    h = history([0, 1, 2, 3, 0, 1], no_repeat_ngram=3, penalty_window=16)
    out = h.penalize(torch.zeros(1, 5))
    assert torch.isinf(out).tolist() == [[False, False, True, False, False]]  # "0 1 2" was seen
    h = history([0, 1, 2], no_repeat_ngram=1, penalty_window=16)
    assert torch.isinf(h.penalize(torch.zeros(1, 5))).tolist() == [[True, True, True, False, False]]


def test_a_stream_with_every_token_banned_keeps_its_logits():
    h = history([0, 1, 2, 3, 4], no_repeat_ngram=1, penalty_window=16)
    logits = torch.tensor([[0.1, 0.2, 0.3, 0.4, 0.5]])
    assert torch.equal(h.penalize(logits), logits)


def test_incremental_state_equals_state_rebuilt_from_the_whole_text():
    """Pushing tokens one by one (two streams apart) gives the same penalties
    as starting from the whole text: the O(window) update is exact."""
    torch.manual_seed(0)
    config = dict(repetition_penalty=1.3, presence_penalty=0.2, frequency_penalty=0.1, dry_multiplier=0.8,
                  dry_allowed_length=3, no_repeat_ngram=4, penalty_window=12, vocab=4)
    start = [0, 1, 2, 3, 0, 1]
    h = history(start, streams=2, **config)
    texts = [list(start), list(start)]
    for _ in range(40):
        tokens = torch.randint(0, 4, (2,))
        h.push(tokens)
        for text, t in zip(texts, tokens.tolist()):
            text.append(t)
    logits = torch.randn(2, 4)
    for row, text in enumerate(texts):
        fresh = history(text, streams=1, **config)
        assert torch.allclose(h.penalize(logits)[row], fresh.penalize(logits[row:row + 1])[0])


@pytest.mark.parametrize("window, allowed, vocab", [(12, 2, 3), (16, 3, 4), (40, 5, 3), (7, 1, 2)])
def test_dry_for_few_streams_equals_the_numpy_arrays(window, allowed, vocab):
    """FewStreamsDry (by content, in Python) and History's match arrays (by
    position, in NumPy) penalise alike, step after step, past the point
    where the Python side forgets what left its window."""
    generator = torch.Generator().manual_seed(window * 100 + allowed)
    breakers = torch.zeros(vocab + 1, dtype=torch.bool)
    breakers[vocab] = True  # a breaker, drawn now and then
    config = SampleConfig(dry_multiplier=0.7, dry_base=1.5, dry_allowed_length=allowed, penalty_window=window)
    prompt = torch.randint(0, vocab, (9,), generator=generator).tolist()
    few = History(config, vocab + 1, 3, prompt, breakers)
    arrays = History(config, vocab + 1, 3, prompt, breakers, layout_for=64)
    texts = [list(prompt) for _ in range(3)]
    assert few.few_dry is not None and arrays.few_dry is None
    penalized = 0
    for step in range(6 * window):
        logits = torch.zeros(3, vocab + 1)
        a, b = few.penalize(logits), arrays.penalize(logits)
        assert torch.allclose(a, b), (step, a, b)
        penalized += int((a != 0).any())
        # Mostly a copy of the token 5 back, sometimes a random one: long repeats, and broken ones.
        fresh = torch.randint(0, vocab + 1, (3,), generator=generator)
        copy = torch.rand(3, generator=generator) < 0.85
        tokens = torch.where(copy, torch.tensor([t[-5] for t in texts]), fresh)
        for text, token in zip(texts, tokens.tolist()):
            text.append(token)
        few.push(tokens)
        arrays.push(tokens)
    assert penalized > window  # the case was not trivial


@pytest.mark.parametrize("layout_for", [None, 64])
def test_histories_joined_and_kept_penalize_each_row_as_its_own_history(layout_for):
    """A server's streams of equal settings are rows of one History, joining
    and leaving between steps: each row's penalties equal, to the last bit,
    those of a History of that stream alone, in either layout."""
    generator = torch.Generator().manual_seed(11)
    breakers = torch.tensor([False, False, False, False, True])
    config = SampleConfig.plain(repetition_penalty=1.3, presence_penalty=0.2, frequency_penalty=0.1,
                                dry_multiplier=0.8, dry_allowed_length=2, no_repeat_ngram=4, penalty_window=10)

    def one(prompt):
        return History(config, 5, 1, prompt, breakers, layout_for=layout_for)

    def prompt():
        return torch.randint(0, 5, (int(torch.randint(1, 15, (1,), generator=generator)),), generator=generator).tolist()

    group, alone = None, []  # alone[i]: stream i's own History, pushed the same tokens
    penalized = 0
    for step in range(120):
        if step % 9 == 0:  # a stream joins
            start = prompt()
            alone.append(one(start))
            group = one(start) if group is None else group.join(one(start))
        if step % 13 == 5 and len(alone) > 1:  # one leaves, from anywhere in the batch
            gone = int(torch.randint(0, len(alone), (1,), generator=generator))
            del alone[gone]
            group.keep([i for i in range(len(alone) + 1) if i != gone])
        logits = torch.randn(len(alone), 5, generator=generator)
        together = group.penalize(logits)
        for row, own in enumerate(alone):
            assert torch.equal(together[row], own.penalize(logits[row:row + 1])[0]), (step, row)
        penalized += int((together != logits).any())
        # A 5-token vocabulary: repeats of 2 or more (DRY) and of 3 (the n-gram ban) come often.
        tokens = torch.randint(0, 5, (len(alone),), generator=generator)
        group.push(tokens)
        for own, token in zip(alone, tokens.tolist()):
            own.push([token])
    assert (group.few_dry is None) == (layout_for == 64) and penalized > 60


def test_min_p_and_typical_p():
    logits = torch.tensor([[2.0, 1.0, 0.0, -3.0]]).log_softmax(-1)
    probs = logits.exp()[0]
    kept = torch.isfinite(apply_min_p(logits, 0.3))[0].tolist()
    assert kept == [p >= 0.3 * probs.max() for p in probs.tolist()]
    # Typical: entropy H; rank by |−log p − H|, keep until the mass reaches 0.5.
    entropy = -(probs * probs.log()).sum()
    order = sorted(range(4), key=lambda i: abs(-probs[i].log() - entropy))
    mass, expected = 0.0, set()
    for i in order:
        if mass >= 0.5:
            break
        expected.add(i)
        mass += probs[i].item()
    assert {i for i, k in enumerate(torch.isfinite(apply_typical_p(logits, 0.5))[0].tolist()) if k} == expected


def test_argmax_reads_the_penalties_and_temperature_zero_alone_is_plain_argmax():
    logits = torch.tensor([[3.0, 2.0, 0.0]])
    gen = torch.Generator().manual_seed(0)
    h = History(SampleConfig.plain(repetition_penalty=2.0, temperature=0), 3, 1, [0])
    assert next_tokens(logits, SampleConfig.plain(temperature=0), gen).item() == 0
    assert next_tokens(logits, SampleConfig.plain(temperature=0), gen, h).item() == 1


@pytest.mark.parametrize("pieces, config, expected", [
    (["ab", "c\n", "\nde"], dict(stop=("\n\n",)), "abc"),           # across tokens
    (["ab", "c\n", "\nde"], dict(stop=("\n\n",), include_stop=True), "abc\n\n"),
    (["xy", "END", "z"], dict(stop=("END", "y")), "x"),                # the earliest of several
    (["ab", "cd"], dict(stop=("zz",)), "abcd"),                        # never met
    (["a.", "b.", "c."], dict(stop=(".",), min_new_tokens=2), "a.b"),  # not before 2 tokens
])
def test_stop_strings(pieces, config, expected):
    stop = StopText(SampleConfig(**config))
    out = "".join(stop.push(p) for p in pieces) + stop.flush()
    assert out == expected


def test_generation_ends_at_a_stop_string_for_every_sample():
    model = lstmgen.load()
    config = SampleConfig(max_new_tokens=400, num_samples=3, seed=2, stop=("e",))
    texts = model.generate("The Queen said", config)
    plain = model.generate("The Queen said", SampleConfig(max_new_tokens=400, num_samples=3, seed=2))
    for text, full in zip(texts, plain):
        assert "e" not in text and full.startswith(text + "e")


def test_every_sample_config_field_is_a_flag_with_its_docstring():
    parser = argparse.ArgumentParser()
    lstmgen.add_config_arguments(parser, SampleConfig)
    names = [f.name for f in lstmgen.config_fields(SampleConfig)]
    assert "dry_multiplier" in names and "stop" in names
    flags = {a.dest: a for a in parser._actions}
    for f in lstmgen.config_fields(SampleConfig):
        assert f.name in flags and f.help and f.help in flags[f.name].help.replace("%%", "%")
    args = parser.parse_args(["--temperature", "0.5", "--stop", "\n\n", "--stop", "THE END", "--top-k", "5",
                              "--include-stop", "--dry-sequence-breakers", ""])
    config = lstmgen.config_from_arguments(SampleConfig, args)
    assert config == SampleConfig(temperature=0.5, stop=("\n\n", "THE END"), top_k=5, include_stop=True,
                                  dry_sequence_breakers=())
    field = next(f for f in lstmgen.config_fields(SampleConfig) if f.name == "top_p")
    assert field.parse("0.9") == 0.9 and field.parse("none") is None
    with pytest.raises(LstmgenError, match="--top-p takes a number"):
        field.parse("lots")


@pytest.mark.parametrize("kwargs, message", [
    ({"repetition_penalty": 0.0}, "--repetition-penalty"),
    ({"presence_penalty": 3.0}, "--presence-penalty"),
    ({"dry_base": 0.5}, "--dry-base"),
    ({"dry_allowed_length": 0}, "--dry-allowed-length"),
    ({"min_p": 1.5}, "--min-p"),
    ({"typical_p": 0.0}, "--typical-p"),
    ({"no_repeat_ngram": -1}, "--no-repeat-ngram"),
    ({"penalty_window": 0}, "--penalty-window"),
    ({"stop": ("",)}, "--stop"),
    ({"min_new_tokens": -2}, "--min-new-tokens"),
])
def test_impossible_sampling_options(kwargs, message):
    with pytest.raises(LstmgenError, match=message):
        SampleConfig(**kwargs)


@pytest.mark.parametrize("window, allowed, vocab", [(12, 2, 3), (16, 3, 2), (40, 5, 4), (7, 1, 2), (256, 12, 5)])
def test_a_prompt_read_at_once_gives_the_arrays_of_pushing_it_token_by_token(window, allowed, vocab):
    """History reads a many-stream layout's prompt in one go (History._read);
    the window, counts and repeat lengths equal pushing the prompt one token
    at a time, for prompts shorter and longer than the window, with and
    without sequence breakers among the tokens."""
    import numpy as np

    g = torch.Generator().manual_seed(window)
    config = SampleConfig(repetition_penalty=1.2, dry_multiplier=0.8, dry_allowed_length=allowed,
                          no_repeat_ngram=3, penalty_window=window)
    for trial in range(30):
        length = int(torch.randint(0, 3 * window, (1,), generator=g))
        prompt = torch.randint(0, vocab, (length,), generator=g).tolist()
        breakers = torch.zeros(vocab + 1, dtype=torch.bool)
        breakers[vocab if trial % 3 else 0] = True  # a breaker among the tokens in one trial of three
        at_once = History(config, vocab + 1, 1, prompt, breakers, layout_for=64)
        pushed = History(config, vocab + 1, 1, [], breakers, layout_for=64)
        for token in prompt[-window:]:
            pushed.push(np.array([token]))
        for name in ("window", "counts", "match", "dry_match"):
            assert np.array_equal(getattr(at_once, name), getattr(pushed, name)), (name, prompt)
