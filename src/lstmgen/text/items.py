"""Cut a corpus into items for item framing: one item per line, or per sentence.

With ``--framing lines`` or ``--framing sentences`` every item is trained from a
fresh LSTM state and ends with an end-of-item token. This module only decides
where items begin and end; it never changes a character inside an item except
whitespace, as described below.

Lines (``split_lines``): every line that holds anything but whitespace is an
item, stripped at both ends. Leading indentation goes too: in the corpora this
is made for it is layout (centred headings, indented verse), and an item that
starts from a fresh state should start with its first real character. Spaces
inside a line are kept as they are.

Sentences (``split_sentences``, ``iter_sentences``): the rule set below, written
for English and other languages that mark sentence starts with capitals. It
works paragraph by paragraph. A blank line, and the end of the text, always end
a sentence; inside a paragraph the hard-wrapped lines are joined with single
spaces and runs of whitespace are collapsed. Non-breaking spaces (U+00A0,
U+2007, U+202F) inside a line are kept: a typesetter writes ``Mr.\\u00a0Smith``
or ``Quoi\\u00a0?`` precisely to forbid a break there, so no break happens there.

A sentence ends after ``.``, ``?``, ``!``, ``…`` or a run of them (``?!``,
``...``), together with any closing quotes and brackets right after it, when a
space follows and then, after any opening quotes, brackets or dashes, a digit
or a letter that is not lowercase:

* ``‘Stop!’ She ran.`` is two sentences and ``He said, “Go.” Then he left.`` is
  two, the closing quote staying with the first. ``‘I wish I hadn’t cried so
  much!’ said Alice`` is one: a lowercase word after the quote continues it.
* After a quotation that ends in ``?``, ``!``, ``…`` or a dash, a capitalised
  word followed by a reporting verb is a speaker, since names and ``I`` are
  capitalised anyway: ``‘Who are you?’ Alice asked.`` is one sentence
  (``REPORTING_VERBS``). ``He``, ``She`` and the other pronouns would be
  lowercase if the sentence went on, so ``‘Stop!’ She said no more.`` is two,
  and so is ``‘It is late.’ Alice said nothing.``: a period ends the quotation's
  sentence.
* A dash that interrupts speech (``—’`` or ``--’``) ends a sentence too when a
  capital follows: ``‘she’s so extremely--’ Just then she noticed``. A dash
  without a closing quote never ends one.
* A dialogue dash may open the next sentence: ``Where? — Home.`` is two.
* A period does not end a sentence after a title or Latin abbreviation that is
  always followed by more (``Mr. Smith``, ``Dr.``, ``St.``, ``e.g.``, ``i.e.``,
  the full list is ``ABBREVIATIONS``), nor after initials (``J. R. R.
  Tolkien``, ``J.R.R. Tolkien``, ``U.S. Army``).
* ``etc.`` followed by a capital does end a sentence: mid-sentence it is
  usually followed by a comma or a lowercase word, so a capital after it most
  often starts the next sentence.
* The pronoun ``I.`` is not an initial, and neither is a one-letter Roman
  numeral after a heading word: ``CHAPTER I. Down the Rabbit-Hole`` and
  ``CHAPTER V. Advice from a Caterpillar`` are each a heading and a title.
* An ellipsis followed by a capital ends a sentence (``Wait… Then it came.``);
  followed by a lowercase word it does not.
* A digit may start a sentence (``It was 1865. 20 years later``), except after
  ``No.``, ``p.``, ``vol.``, ``fig.`` and the like (``NUMBER_ABBREVIATIONS``).
  Decimals (``3.14``) have no space, so they never split. A piece with no
  letter yet is never a sentence of its own, so a list number stays with its
  entry (``1. Mix well. 2. Bake.`` is ``1. Mix well.`` and ``2. Bake.``) and a
  leading ``...`` with what follows it.

Streaming: ``iter_sentences`` takes the text as lines (an open file will do)
and holds one paragraph at a time, so memory is bounded by the longest
paragraph, not the corpus; ``split_sentences`` is that same generator over a
whole string, so the two agree by construction. A corpus without blank lines
(names.txt, source code) is one paragraph: frame it by lines.

Known limits, all of them cases where only meaning decides: a speaker after a
quotation with a verb not in the list (``‘What trial is it?’ Alice panted``,
``Alice was beginning``) is taken for a new sentence; a sentence that ends with
an abbreviation or initials (``Baker St.``, ``in the U.S.``) runs on into the
next; quoted speech is split at its own sentence ends, so an item may open a
quote that a later item closes; verse without punctuation runs on to the next
blank line, so frame verse by lines.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator

ABBREVIATIONS = frozenset({
    # Titles: they stand before a name, so a capital after them never starts a
    # sentence. "Jr." and "Sr." stand after one, can end a sentence, and are
    # left out on purpose; so are "etc.", "a.m." and "Ave.".
    "mr", "mrs", "ms", "mx", "messrs", "mme", "mlle", "dr", "prof", "rev", "revd", "hon",
    "st", "mt", "ft", "gen", "col", "maj", "capt", "lt", "sgt", "cpl", "adm", "gov", "sen", "pres",
    # Latin abbreviations that always introduce something.
    "e.g", "i.e", "cf", "viz", "vs",
})
"""Words (lowercased, final period removed) after which a period never ends a sentence."""

NUMBER_ABBREVIATIONS = frozenset({"no", "nos", "p", "pp", "vol", "fig", "figs", "ch", "art", "sec", "para", "op"})
"""Words after which a period does not end a sentence when a digit follows: "No. 5", "p. 12"."""

# Verbs that report speech. After "?’" or "!’", a capitalised word followed by
# one of them is a speaker, not a new sentence: ‘Who are you?’ Alice asked.
REPORTING_VERBS = frozenset({
    "said", "says", "asked", "asks", "cried", "called", "replied", "answered", "added", "began",
    "continued", "went", "thought", "whispered", "shouted", "exclaimed", "remarked", "ventured",
    "guessed", "interrupted", "repeated", "screamed", "muttered", "growled", "roared", "sighed",
    "observed", "inquired", "enquired", "pleaded", "persisted", "suggested", "explained", "urged",
})
"""Verbs after which a capitalised name continues the sentence of a quotation that ended in ? ! … or a dash."""

# Capitals say nothing about names, nor about "I"; but "‘Stop!’ She said no
# more." is two sentences, because "she" would be lowercase if it went on.
_PRONOUNS = frozenset({"he", "she", "it", "we", "you", "they"})

_HEADING_WORDS = frozenset({"chapter", "book", "part", "section", "volume", "act", "scene", "canto", "stave"})

_TERMINALS = ".?!…"
_CLOSERS = "’”'\")]}»«›‹"
_QUOTE_CLOSERS = "’”'\"»«›‹"
# ’ opens "’Tis"; « and » open and close in different languages; dashes open dialogue.
_OPENERS = "‘’“'\"([{«»‹›¡¿—–-"

# Python's \s matches the non-breaking spaces too; they are kept (see above).
_SPACE_RUN = re.compile(r"[^\S\u00a0\u2007\u202f]+")
_LETTER = re.compile(r"[^\W\d_]")
_INITIALS = re.compile(r"(?:[^\W\d_]\.)*[^\W\d_]")
_SPEAKER = re.compile(r"(?P<name>[^\W\d_]+) (?P<verb>[^\W\d_]+)\b")


def _chars(chars: str) -> str:
    return "[" + re.escape(chars) + "]"


# A candidate sentence end inside a squeezed paragraph (single spaces only):
#   terminal run + closers, or an interrupting dash + closing quotes;
#   then one space; then, looked at but not taken, openers (a space may follow
#   an opener: "— Home") and the next sentence's first letter or digit.
# Whether a candidate really ends a sentence is decided in _ends_sentence.
_CANDIDATE = re.compile(
    f"(?:(?P<terminal>{_chars(_TERMINALS)}+){_chars(_CLOSERS)}*|(?:—|--){_chars(_QUOTE_CLOSERS)}+)"
    f" (?={_chars(_OPENERS)}*(?:(?<={_chars(_OPENERS)}) )?(?P<first>[^\\W_]))"
)


def split_lines(text: str) -> list[str]:
    """Every line of ``text`` that is not blank, stripped at both ends.

    Any line break ``str.splitlines`` knows ends a line, so CRLF and CR text
    split like LF text."""
    return [stripped for line in text.splitlines() if (stripped := line.strip())]


def split_sentences(text: str) -> list[str]:
    """The sentences of ``text``, each on one line with single spaces (see the module notes)."""
    return list(iter_sentences(text.splitlines()))


def iter_sentences(lines: Iterable[str]) -> Iterator[str]:
    """The sentences of the text made of ``lines``, read one paragraph at a time.

    Each element must end at a line break (a line with or without its ``\\n``
    or ``\\r\\n``, or several whole lines); any such cutting of one text gives
    the same sentences."""
    for paragraph in _paragraphs(lines):
        yield from _split_paragraph(paragraph)


def _paragraphs(lines: Iterable[str]) -> Iterator[str]:
    """Runs of non-blank lines, joined with single spaces and squeezed."""
    wrapped: list[str] = []
    for chunk in lines:
        # Splitting each element again makes "a\r\n", "a" and "a\nb" mean what
        # they mean inside the whole text; `or [""]` keeps an empty element a
        # blank line, as it is in text.splitlines().
        for line in chunk.splitlines() or [""]:
            squeezed = _SPACE_RUN.sub(" ", line.strip())
            if squeezed:
                wrapped.append(squeezed)
            elif wrapped:
                yield " ".join(wrapped)
                wrapped = []
    if wrapped:
        yield " ".join(wrapped)


def _split_paragraph(paragraph: str) -> Iterator[str]:
    start = 0
    # Found once per sentence, not once per candidate, so a long letterless
    # run ("1. 2. 3. ...") stays linear.
    first_letter = _LETTER.search(paragraph)
    for candidate in _CANDIDATE.finditer(paragraph):
        if first_letter is None or first_letter.start() > candidate.start():
            continue  # nothing but digits and marks so far: "1. Mix well."
        if _ends_sentence(paragraph, candidate):
            space = candidate.end() - 1
            yield paragraph[start:space]
            start = candidate.end()
            first_letter = _LETTER.search(paragraph, start)
    yield paragraph[start:]


def _ends_sentence(paragraph: str, candidate: re.Match) -> bool:
    first = paragraph[candidate.start("first")]
    if first.islower():
        return False  # ‘...!’ said Alice; "Wait... maybe not"
    if candidate.group("terminal") == ".":
        return not _is_abbreviation(paragraph, candidate.start(), before_number=first.isdigit())
    return not _names_speaker(paragraph, candidate)


def _names_speaker(paragraph: str, candidate: re.Match) -> bool:
    """Whether a quotation closed by ``candidate`` goes on with "Alice asked" and the like."""
    if not any(quote in candidate.group() for quote in _QUOTE_CLOSERS):
        return False
    speaker = _SPEAKER.match(paragraph, candidate.end())
    return (speaker is not None and speaker["name"].lower() not in _PRONOUNS
            and speaker["verb"].lower() in REPORTING_VERBS)


def _is_abbreviation(paragraph: str, period: int, before_number: bool) -> bool:
    """Whether the word that ends at the period ``period`` is a title, a Latin
    abbreviation or initials, or "No." and the like when a number follows."""
    word_start = paragraph.rfind(" ", 0, period) + 1
    word = paragraph[word_start:period].lstrip(_OPENERS)
    if word.lower() in ABBREVIATIONS or (before_number and word.lower() in NUMBER_ABBREVIATIONS):
        return True
    if word == "I" or not word.isupper() or not _INITIALS.fullmatch(word):
        return False
    return not _after_heading_word(paragraph, word_start)


def _after_heading_word(paragraph: str, word_start: int) -> bool:
    """Whether the word before ``word_start`` is "CHAPTER", "Book" and the like
    (then a single letter after it is a Roman numeral, not an initial)."""
    if word_start < 2:
        return False
    previous_start = paragraph.rfind(" ", 0, word_start - 1) + 1
    return paragraph[previous_start:word_start - 1].lower() in _HEADING_WORDS


ITEM_SPLITTERS: dict[str, Callable[[str], list[str]]] = {
    "lines": split_lines,
    "sentences": split_sentences,
}
"""The ``--framing`` choices, by name."""
