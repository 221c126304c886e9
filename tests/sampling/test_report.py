"""The samples report's numbers, against texts worked out by hand."""

import pytest

from lstmgen.sampling.report import distinct_n, has_loop, longest_repeat, repeated_share, repeats, seq_rep, text_statistics


def test_a_text_that_loops_on_purpose():
    unit = "the way, t"  # 10 characters
    text = "And so " + unit * 31 + "the wX"
    longest = longest_repeat(text, min_unit=10)
    # 31 units, and the loop goes 5 characters ('the w') into a 32nd before 'X' breaks it.
    assert (longest.start, longest.unit, longest.count, longest.chars) == (7, 10, 31, 315)
    assert has_loop(text)
    assert repeated_share(text) == pytest.approx(315 / len(text))


def test_ordinary_text_has_no_loop():
    text = ("Alice was beginning to get very tired of sitting by her sister on the bank, and of having "
            "nothing to do: once or twice she had peeped into the book her sister was reading.")
    assert not has_loop(text)
    assert longest_repeat(text, min_unit=10) is None
    # Two back-to-back units of 10 are a repeat but not a loop (3 or more).
    assert not has_loop("x" + "0123456789" * 2 + "y") and has_loop("x" + "0123456789" * 3 + "y")


def test_the_shortest_unit_names_a_repeat():
    r = longest_repeat("zabababababz", min_unit=1)
    assert (r.start, r.unit, r.count, r.chars) == (1, 2, 5, 10)
    assert [(x.start, x.unit, x.chars) for x in repeats("aaab", min_unit=1)] == [(0, 1, 3)]


def test_distinct_n_and_seq_rep_4_by_hand():
    words = "a b a b a b c".split()
    assert distinct_n(words, 1) == 3 / 7
    assert distinct_n(words, 2) == 3 / 6  # ab ba ab ba ab bc: {ab, ba, bc}
    assert seq_rep(words, 4) == 1 - 3 / 4  # abab baba abab babc: 3 unique of 4
    assert distinct_n(["one"], 2) == 1.0


def test_text_statistics_columns():
    stats = text_statistics("word " * 40)
    assert stats["loop"] and stats["distinct_1"] == 1 / 40 and stats["seq_rep_4"] == 1 - 1 / 37
    assert stats["longest_repeat"] == "10×20"  # 'word word ' is the shortest unit of 10 or more characters
