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


def test_settings_parse_like_flags_and_refuse_in_one_line():
    from lstmgen.errors import LstmgenError
    from lstmgen.sampling.config import SampleConfig
    from lstmgen.sampling.report import parse_setting

    base = SampleConfig()
    assert parse_setting("default", base) == base
    assert parse_setting("temperature=0.5, dry_multiplier=0.8", base) == SampleConfig(temperature=0.5,
                                                                                       dry_multiplier=0.8)
    assert parse_setting("plain,temperature=0", base) == SampleConfig.plain(temperature=0)
    assert parse_setting("plain", SampleConfig(dry_multiplier=0.8, seed=3)) == SampleConfig.plain(seed=3)
    with pytest.raises(LstmgenError, match="NAME=VALUE"):
        parse_setting("warmth=3", base)
    with pytest.raises(LstmgenError, match="--temperature takes a number"):
        parse_setting("temperature=hot", base)


def test_samples_report_from_the_command_line(tmp_path):
    import json

    from conftest import corpus_path, run_cli

    alice = corpus_path("alice-gutenberg-11-utf8.txt")
    done = run_cli("samples-report", "--samples", "3", "--length", "200", "--held-out", str(alice), "--json",
                   "--compare", "plain,temperature=0", "plain,temperature=0.8", "--train-text", str(alice))
    assert done.returncode == 0, done.stderr.decode()
    report = json.loads(done.stdout)
    assert report["copying"].startswith("copying: against the whole training text")
    rows = {r["setting"]: r for r in report["rows"]}
    # The held-out text given is the training text's own end: copied whole.
    assert rows["held-out text"]["longest_copy_chars"] == 200 and rows["held-out text"]["copied_20grams"] == 1.0
    assert 0 < rows["plain,temperature=0.8"]["copied_20grams"] < 1.0
    assert list(rows) == ["plain,temperature=0", "plain,temperature=0.8", "held-out text"]
    # Argmax: three identical texts from one prompt, looping; held-out text: Alice's own last 600 characters.
    assert rows["plain,temperature=0"]["loops"] == 3 and rows["held-out text"]["loops"] == 0
    assert rows["plain,temperature=0"]["loss_nats"] < rows["plain,temperature=0.8"]["loss_nats"]
    assert rows["held-out text"]["distinct_1"] > rows["plain,temperature=0"]["distinct_1"]
    bad = run_cli("samples-report", "--compare", "warmth=3")
    assert bad.returncode == 1 and len(bad.stderr.decode().strip().splitlines()) == 1
    none = run_cli("samples-report", "--samples", "2", "--length", "50")  # the bundled model has no split beside it
    assert none.returncode == 1 and b"--held-out TEXT_FILE" in none.stderr
