"""Item splitting for --framing lines / sentences: hand-written hard cases,
properties (nothing lost, streaming equals whole text) and real Alice."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lstmgen.text.corpus import read_corpus
from lstmgen.text.items import ITEM_SPLITTERS, iter_sentences, split_lines, split_sentences

from conftest import corpus_path


def case(text: str, *expected: str, id: str):
    return pytest.param(text, list(expected), id=id)


SENTENCE_CASES = [
    # Plain ends, and the text's end.
    case("One. Two? Three!", "One.", "Two?", "Three!", id="three-terminals"),
    case("No final stop", "No final stop", id="no-terminal"),
    case("", id="empty"),
    case(" \n\t\n ", id="only-whitespace"),
    # Line wraps, paragraphs, line endings.
    case("Alice was beginning to get very tired of sitting by her sister on the\n"
         "bank. She had peeped into\nthe book.",
         "Alice was beginning to get very tired of sitting by her sister on the bank.",
         "She had peeped into the book.", id="wrapped-lines-joined"),
    case("A heading\n\nThe text starts here", "A heading", "The text starts here", id="blank-line-ends-sentence"),
    case("first paragraph ends mid\n   \nsecond one", "first paragraph ends mid", "second one",
         id="whitespace-only-line-is-blank"),
    case("First line.\r\nSecond\r\nline.\r\n\r\nNew para.\r\n", "First line.", "Second line.", "New para.",
         id="crlf"),
    case("Old Mac.\rStill\rgoing.", "Old Mac.", "Still going.", id="cr-only"),
    case("  Indented   with\t\truns  of   spaces.  ", "Indented with runs of spaces.", id="spaces-collapsed"),
    case("Mr.\u00a0Smith kept his space. Fine.", "Mr.\u00a0Smith kept his space.", "Fine.",
         id="nbsp-kept-and-never-a-break"),
    # Abbreviations, initials, numbers.
    case("Mr. Smith went to Washington. He arrived late.",
         "Mr. Smith went to Washington.", "He arrived late.", id="mr"),
    case("Mrs. Jones met Dr. Watson at St. Paul's. They talked.",
         "Mrs. Jones met Dr. Watson at St. Paul's.", "They talked.", id="mrs-dr-st"),
    case("Bring fruit, e.g. Apples, i.e. Something sweet. Then go.",
         "Bring fruit, e.g. Apples, i.e. Something sweet.", "Then go.", id="eg-ie"),
    case("We bought pens, paper, etc. Then we left.", "We bought pens, paper, etc.", "Then we left.",
         id="etc-before-capital-ends"),
    case("Pens, paper, etc. were bought.", "Pens, paper, etc. were bought.", id="etc-before-lowercase-goes-on"),
    case("J. R. R. Tolkien wrote it. It is long.", "J. R. R. Tolkien wrote it.", "It is long.", id="initials"),
    case("J.R.R. Tolkien wrote it. So did C. S. Lewis.", "J.R.R. Tolkien wrote it.", "So did C. S. Lewis.",
         id="initials-without-spaces"),
    case("Nobody but I. Then silence.", "Nobody but I.", "Then silence.", id="pronoun-i-is-no-initial"),
    case("Pi is about 3.14 today. Yes.", "Pi is about 3.14 today.", "Yes.", id="decimal"),
    case("It was 1865. 20 years later it was 1885.", "It was 1865.", "20 years later it was 1885.",
         id="digit-starts-a-sentence"),
    case("See No. 5 and p. 12. Then go.", "See No. 5 and p. 12.", "Then go.", id="no-and-page-numbers"),
    case("1. Mix well.\n2. Bake. 3. Eat.", "1. Mix well.", "2. Bake.", "3. Eat.", id="numbered-list"),
    # Ellipses and runs of marks.
    case("Wait... What was that? Nothing.", "Wait...", "What was that?", "Nothing.", id="three-dots"),
    case("Wait… Then it came.", "Wait…", "Then it came.", id="ellipsis-char"),
    case("I think... maybe not.", "I think... maybe not.", id="ellipsis-before-lowercase"),
    case("... And so it began.", "... And so it began.", id="leading-ellipsis"),
    case("What?! No way!! Really?", "What?!", "No way!!", "Really?", id="mark-runs"),
    # Quotes, curly and straight.
    case("‘I wish I hadn’t cried so much!’ said Alice, as she swam about.",
         "‘I wish I hadn’t cried so much!’ said Alice, as she swam about.", id="curly-quote-then-lowercase"),
    case("‘Stop!’ She ran.", "‘Stop!’", "She ran.", id="curly-quote-then-capital"),
    case("He said, “Go.” Then he left.", "He said, “Go.”", "Then he left.", id="closing-quote-stays"),
    case("'I wish I hadn't cried so much!' said Alice.", "'I wish I hadn't cried so much!' said Alice.",
         id="straight-quote-then-lowercase"),
    case("'Stop!' She ran.", "'Stop!'", "She ran.", id="straight-quote-then-capital"),
    case('He said, "Go." Then he left.', 'He said, "Go."', "Then he left.", id="straight-double-quote"),
    case("He left. “Come back!” she cried.", "He left.", "“Come back!” she cried.", id="opening-quote-starts"),
    case("‘Who are you?’ ‘I hardly know.’", "‘Who are you?’", "‘I hardly know.’", id="quote-after-quote"),
    case("‘He said “Run!”’ Then he ran.", "‘He said “Run!”’", "Then he ran.", id="nested-closing-quotes"),
    case("Give it to ’em. ’Tis late.", "Give it to ’em.", "’Tis late.", id="apostrophes-are-no-quotes"),
    case("‘Oh dear! Oh dear! I shall be late!’ (when she thought it over)",
         "‘Oh dear!", "Oh dear!", "I shall be late!’ (when she thought it over)", id="splits-inside-speech"),
    # Speakers after a quotation.
    case("‘Who are you?’ Alice asked. She waited.", "‘Who are you?’ Alice asked.", "She waited.",
         id="name-and-reporting-verb-go-on"),
    case("‘Who are you?’ I said.", "‘Who are you?’ I said.", id="i-and-reporting-verb-go-on"),
    case("‘Stop!’ She said no more.", "‘Stop!’", "She said no more.", id="capital-pronoun-starts-anew"),
    case("‘It is late.’ Alice said nothing.", "‘It is late.’", "Alice said nothing.",
         id="period-in-quote-ends-even-before-speaker"),
    # Brackets and dashes.
    case("(He was late.) Then he ran.", "(He was late.)", "Then he ran.", id="closing-bracket-stays"),
    case("He ran. (Nobody followed.)", "He ran.", "(Nobody followed.)", id="opening-bracket-starts"),
    case("‘she’s so extremely--’ Just then she stopped.", "‘she’s so extremely--’", "Just then she stopped.",
         id="interrupting-dash-then-capital"),
    case("‘I wish you would—’ the Rabbit began.", "‘I wish you would—’ the Rabbit began.",
         id="interrupting-dash-then-lowercase"),
    case("‘I wish you would—’ Alice began.", "‘I wish you would—’ Alice began.",
         id="interrupting-dash-then-speaker"),
    case("She stopped—Then it came.", "She stopped—Then it came.", id="dash-alone-never-ends"),
    case("— Where are you going? — Home, he said.", "— Where are you going?", "— Home, he said.",
         id="dialogue-dashes"),
    # Headings.
    case("CHAPTER I.\nDown the Rabbit-Hole\n\nAlice was tired.",
         "CHAPTER I.", "Down the Rabbit-Hole", "Alice was tired.", id="chapter-heading-lines"),
    case("CHAPTER V. Advice from a Caterpillar", "CHAPTER V.", "Advice from a Caterpillar",
         id="one-letter-roman-numeral-after-heading-word"),
    case("CHAPTER XII.\n\nAlice’s Evidence", "CHAPTER XII.", "Alice’s Evidence", id="heading-then-blank-line"),
]


@pytest.mark.parametrize("text, expected", SENTENCE_CASES)
def test_split_sentences(text, expected):
    assert split_sentences(text) == expected


LINE_CASES = [
    case("one\ntwo\n", "one", "two", id="lf"),
    case("one\r\ntwo\r\n", "one", "two", id="crlf"),
    case("one\n\n   \n\t\ntwo", "one", "two", id="blank-and-whitespace-lines-dropped"),
    case("  indented verse  \n\tTHE END\t", "indented verse", "THE END", id="both-ends-stripped"),
    case("a  b   c", "a  b   c", id="inner-spaces-kept"),
    case("", id="empty"),
]


@pytest.mark.parametrize("text, expected", LINE_CASES)
def test_split_lines(text, expected):
    assert split_lines(text) == expected


def test_splitters_by_framing_name():
    assert ITEM_SPLITTERS == {"lines": split_lines, "sentences": split_sentences}


# Pieces that put every rule on the spot when strung together at random.
PIECES = ["Alice", "said", "she", "Mr", "e.g", "etc", "J", "I", "CHAPTER", "V", "3", "3.14", "hadn’t", "’em",
          ".", "?", "!", "…", "...", "?!", "--", "—", "‘", "’", "“", "”", "'", '"', "(", ")", ",",
          " ", " ", " ", "  ", "\t", "\n", "\r\n", "\n\n", "\r", "\u2028"]
texts = st.lists(st.sampled_from(PIECES), max_size=60).map("".join)


@settings(max_examples=200, deadline=None)
@given(texts)
def test_sentences_lose_and_duplicate_nothing(text):
    items = split_sentences(text)
    assert " ".join(items) == " ".join(text.split())
    for item in items:
        assert item and item == item.strip() and "  " not in item


@settings(max_examples=200, deadline=None)
@given(texts, st.lists(st.booleans(), max_size=60))
def test_any_line_aligned_cutting_streams_the_same(text, cuts):
    lines = text.splitlines(keepends=True)
    # Glue neighbouring lines together where `cuts` says so: chunks of whole lines.
    chunks, chunk = [], ""
    for line, cut in zip(lines, cuts + [True] * len(lines)):
        chunk += line
        if cut:
            chunks.append(chunk)
            chunk = ""
    chunks.append(chunk)
    assert list(iter_sentences(chunks)) == split_sentences(text)


@settings(max_examples=200, deadline=None)
@given(texts)
def test_lines_are_the_stripped_non_blank_lines(text):
    items = split_lines(text)
    assert len(items) == sum(1 for line in text.splitlines() if line.strip())
    assert all(item and item == item.strip() for item in items)


def test_iter_sentences_reads_one_paragraph_at_a_time():
    """A generator: it yields the first sentence before reading past its paragraph."""
    def lines():
        yield "First paragraph. It ends here.\n"
        yield "\n"
        raise AssertionError("read past the first paragraph before yielding")

    sentences = iter_sentences(lines())
    assert next(sentences) == "First paragraph."
    assert next(sentences) == "It ends here."


def test_streamed_real_alice_equals_whole_text(alice):
    # newline="" keeps the file's CRLF in every line, as a raw reader would.
    with open(alice, encoding="utf-8-sig", newline="") as lines:
        streamed = list(iter_sentences(lines))
    assert streamed == split_sentences(alice.read_text(encoding="utf-8-sig"))


@pytest.fixture(scope="module")
def alice_sentences() -> list[str]:
    return split_sentences(read_corpus(corpus_path("alice-gutenberg-11-utf8.txt")).text)


def test_alice_facts(alice_sentences):
    body = read_corpus(corpus_path("alice-gutenberg-11-utf8.txt")).text
    assert " ".join(alice_sentences) == " ".join(body.split())
    # About 1,400 today; the band only catches "never splits" or "splits at every period".
    assert 1_000 < len(alice_sentences) < 2_500
    # Every lowercase continuation is kept, and no paragraph of Alice starts lowercase.
    assert not [s for s in alice_sentences if s[0].islower()]
    # A closing quote is never pushed onto the next sentence (’ opening "’Tis" would be followed by a letter).
    assert not [s for s in alice_sentences if re.match(r"[’”][^\w]", s)]
    assert "‘I wish I hadn’t cried so much!’ said Alice, as she swam about, trying to find her way out." \
        in alice_sentences
    assert "‘Who are YOU?’ said the Caterpillar." in alice_sentences


def test_alice_chapter_headings_are_items(alice_sentences):
    headings = [i for i, s in enumerate(alice_sentences) if s.startswith("CHAPTER")]
    assert [alice_sentences[i] for i in headings] == [f"CHAPTER {n}." for n in (
        "I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX", "X", "XI", "XII")]
    assert alice_sentences[headings[0] + 1] == "Down the Rabbit-Hole"
    assert alice_sentences[headings[4] + 1] == "Advice from a Caterpillar"


def test_straight_and_curly_quote_editions_split_alike(alice_sentences):
    ascii_sentences = split_sentences(read_corpus(corpus_path("alice-gutenberg-11-ascii.txt")).text)
    assert "'I wish I hadn't cried so much!' said Alice, as she swam about, trying to find her way out." \
        in ascii_sentences
    straight = str.maketrans("‘’“”", "''\"\"")
    folded = [s.translate(straight) for s in alice_sentences]
    assert len(folded) == len(ascii_sentences)
    # The editions differ in a few words and brackets, but a boundary that
    # differed would shift every pair after it.
    assert sum(a != b for a, b in zip(folded, ascii_sentences)) < 15

