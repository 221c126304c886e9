"""The copying columns: the longest stretch found verbatim in the training
text and the share of 20-character substrings found there, by hand."""

import numpy as np
import pytest

from lstmgen.sampling import copying
from lstmgen.sampling.copying import TrainingText
from lstmgen.text.batches import load_split


def brute_force_longest(text: str, training: str) -> int:
    return max((j - i for i in range(len(text)) for j in range(i + 1, len(text) + 1) if text[i:j] in training),
               default=0)


def test_a_copy_by_hand():
    index = TrainingText.from_text("the cat sat on the mat")
    found = index.copying("a cat sat on the hat", n=5)
    assert found["longest_copy"] == " cat sat on the " and found["longest_copy_chars"] == 16
    # 16 substrings of 5 characters; the 12 inside " cat sat on the " are found, the 4 that
    # start before it ("a cat") or run into "hat" are not.
    assert found["copied_5grams"] == 12 / 16


def test_a_text_copied_whole_and_one_never_seen():
    training = "Alice was beginning to get very tired of sitting by her sister on the bank"
    index = TrainingText.from_text(training)
    whole = index.copying(training[10:60])
    assert whole["longest_copy_chars"] == 50 and whole["copied_20grams"] == 1.0
    never = index.copying("zzzz qqqq xxxx jjjj kkkk")
    assert never["longest_copy_chars"] == 1 and never["copied_20grams"] == 0.0  # ' ' alone is found


def test_matching_statistics_equal_brute_force():
    rng = np.random.default_rng(0)
    training = "".join(rng.choice(list("abcab "), 300))
    index = TrainingText.from_text(training)
    for _ in range(20):
        text = "".join(rng.choice(list("abcabd "), 40))
        assert index.copying(text)["longest_copy_chars"] == brute_force_longest(text, training)


def test_characters_beyond_ascii_match_as_whole_characters():
    index = TrainingText.from_text("café crème")
    # 'è' and 'é' share their first UTF-8 byte; the copy stops before either.
    found = index.copying("cafè")
    assert found["longest_copy"] == "caf" and found["longest_copy_chars"] == 3
    assert index.copying("ème")["longest_copy_chars"] == 3


def test_a_training_text_above_the_limit_is_sampled_and_says_so(monkeypatch):
    monkeypatch.setattr(copying, "EXACT_LIMIT_CHARS", 1000)
    monkeypatch.setattr(copying, "SAMPLE_WINDOWS", 10)
    text = "".join(f"{i:04d}" for i in range(1000))  # 4,000 characters
    index = TrainingText.from_text(text)
    assert index.sampled and index.indexed_chars == 1000 and index.total_chars == 4000
    assert "sample" in index.describe() and "10 evenly spaced windows" in index.describe()
    assert index.copying(text[:100])["longest_copy_chars"] == 100  # the first window
    # The windows start every 400 characters and hold 100: text from 150 to 250 was never indexed.
    assert index.copying(text[150:250])["longest_copy_chars"] < 100
    # A match never runs from one window into the next.
    assert index.copying(text[90:100] + text[400:410])["longest_copy_chars"] == 10


def test_from_token_ids_equals_from_text():
    text = "the cat sat on the mat, and the dog sat on the log"
    chars = sorted(set(text))
    ids = np.array([chars.index(c) for c in text], dtype=np.uint8)
    index = TrainingText.from_token_ids(ids, lambda part: "".join(chars[i] for i in part))
    assert index.data == text.encode() and not index.sampled
    # " dog sat on the " (16) is longer than " sat on the mat" (15).
    assert index.copying("a dog sat on the mat")["longest_copy"] == " dog sat on the "


def test_a_token_file_above_the_limit_is_sampled_in_windows(monkeypatch):
    monkeypatch.setattr(copying, "EXACT_LIMIT_CHARS", 100)
    monkeypatch.setattr(copying, "SAMPLE_WINDOWS", 4)
    ids = np.arange(1000) % 250
    decoded = []

    def decode(part):
        decoded.append(len(part))
        return "".join(chr(0x100 + int(i)) for i in part)

    index = TrainingText.from_token_ids(ids, decode)
    # Four windows of 25 tokens, 250 apart: only they were decoded, never the whole file.
    assert decoded == [25, 25, 25, 25] and index.sampled
    assert (index.indexed_chars, index.total_chars) == (100, 1000)
    assert "4 evenly spaced windows of 100 characters in all (of 1,000)" in index.describe()


def test_a_runs_own_training_split_is_the_default_training_text(tmp_path):
    import lstmgen

    from conftest import corpus_path

    out = tmp_path / "run"
    lstmgen.train(corpus_path("alice-wonderland-tutorial-trimmed.txt"), out, max_steps=2, hidden_size=16,
                  num_layers=1, embedding_dim=4, batch_size=2, seq_len=8, progress=False, log=lambda *_: None)
    model = lstmgen.load(out)
    index = model.training_text()
    train_text = model.tokenizer.decode(np.asarray(load_split(out / "data").train))
    assert index.data == train_text.encode("utf-8") and not index.sampled
    assert index.total_chars == len(train_text) < len(model.held_out_text()) * 10  # the split, not the whole file
    assert index.copying(train_text[:100])["longest_copy_chars"] == 100
