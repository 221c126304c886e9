"""The Python API: ``lstmgen.train``, ``resume`` and ``load`` with its LanguageModel.
The command line calls only what ``lstmgen`` exports."""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from .checkpoint import Checkpoint, load_checkpoint
from .errors import LstmgenError
from .evaluate import EvalResult, evaluate_items, evaluate_stream, evaluate_windows
from .sampling.config import SampleConfig, fresh_seed
from .sampling.copying import TrainingText
from .sampling.stops import StopText
from .sampling.stream import TokenStream
from .sampling.window import WindowStream
from .text.batches import item_ends, load_split
from .text.items import ITEM_SPLITTERS
from .text.corpus import normalize_text, read_corpus
from .text.tokenizer import ItemTokenizer, UnknownReport

BUNDLED_DIR = Path(__file__).parent / "bundled" / "alice"


@dataclass
class Prepared:
    """A prompt as the model will see it."""

    text: str
    unknown: UnknownReport


class LanguageModel:
    """A trained model with its vocabulary and corpus options."""

    def __init__(self, checkpoint: Checkpoint):
        self.checkpoint = checkpoint
        self.model = checkpoint.model
        self.tokenizer = checkpoint.tokenizer
        self.corpus_config = checkpoint.corpus_config
        self.path = checkpoint.path
        self.train_config = checkpoint.meta.get("train", {})
        self._breakers: dict[tuple[str, ...], torch.Tensor] = {}
        self._texts: list[str] | None = None

    @property
    def framing(self) -> str:
        return self.train_config.get("framing", "stream")

    def prepare_text(self, text: str) -> Prepared:
        """Put text through the model's own corpus options, then deal with
        tokens outside the vocabulary (see the tokenizer's make_known)."""
        text, _ = normalize_text(text.replace("\r\n", "\n").replace("\r", "\n"), self.corpus_config)
        known, report = self.tokenizer.make_known(text)
        return Prepared(known, report)

    @property
    def items(self) -> bool:
        """An item model (lines or sentences): every text starts fresh and ends on its own."""
        return isinstance(self.tokenizer, ItemTokenizer)

    def prompt_ids(self, text: str) -> list[int]:
        """The ids the model reads before its first new token: the text's, and
        for an item model its start token first (the text is the item's beginning)."""
        ids = self.tokenizer.encode(text).tolist()
        return [self.tokenizer.end_id] + ids if self.items else ids

    def random_prompt(self, seed: int) -> str:
        if self.items:  # an item starts from nothing
            return ""
        excerpts = self.checkpoint.meta.get("prompt_excerpts") or []
        if not excerpts:
            return "\n" if "\n" in self.tokenizer.index else self.tokenizer.chars[0]
        return random.Random(seed).choice(excerpts)

    def start(self, prompt: str | None = None, config: SampleConfig | None = None, warn=None) -> "Generation":
        """Read the prompt and get ready to write ``config.num_samples``
        continuations; the returned Generation can be asked for more text
        again and again, carrying on from where it stopped.

        ``prompt=None`` takes a random excerpt of the training text. Unknown
        prompt characters are reported through ``warn`` (one line).
        """
        config = config or SampleConfig()
        seed = config.seed if config.seed is not None else fresh_seed()
        if prompt is None:
            prompt = self.random_prompt(seed)
        prepared = self.prepare_text(prompt)
        if prepared.unknown and warn is not None:
            warn(prepared.unknown.describe())
        ids = self.prompt_ids(prepared.text)
        breakers = self.breakers(config.dry_sequence_breakers) if config.dry_multiplier > 0 else None
        if self.framing == "windows" and config.window_generation != "stateful":
            tokens = WindowStream(self.model, ids, config, seed, self.unscored_tokens, breakers)
        else:
            tokens = TokenStream(self.model, ids, config, seed, breakers)
        return Generation(self, tokens, prepared.text)

    def stream(self, prompt: str | None = None, config: SampleConfig | None = None,
               warn=None) -> Iterator[list[str]]:
        """Yield, step by step, the next piece of text for each sample (see ``start``)."""
        return self.start(prompt, config, warn).pieces()

    def breakers(self, strings: tuple[str, ...]) -> torch.Tensor:
        """(V,) bool: the tokens whose text contains a DRY sequence breaker."""
        key = tuple(strings)
        cached = self._breakers.get(key)
        if cached is None:
            texts = self.token_texts()
            cached = torch.tensor([any(b in t for b in strings) for t in texts], dtype=torch.bool)
            self._breakers[key] = cached
        return cached

    def token_texts(self) -> list[str]:
        if self._texts is None:
            self._texts = [self.tokenizer.decode([i]) for i in range(self.tokenizer.vocab_size)]
        return self._texts

    def generate(self, prompt: str | None = None, config: SampleConfig | None = None) -> list[str]:
        """Generate ``config.num_samples`` continuations (prompt not included)."""
        config = config or SampleConfig()
        pieces: list[list[str]] = [[] for _ in range(config.num_samples)]
        for step in self.stream(prompt, config):
            for i, piece in enumerate(step):
                pieces[i].append(piece)
        return ["".join(p) for p in pieces]

    @property
    def unscored_tokens(self) -> int:
        """Tokens at the start of a text that are context only, never predicted."""
        if self.framing == "windows":
            return int(self.train_config.get("seq_len", 100))
        return 0 if self.items else 1  # an item's start token is its end token, not text

    def evaluate_ids(self, ids: np.ndarray, chars: int | None = None) -> EvalResult:
        """Loss on token ids; ``chars``, the characters the scored tokens
        cover, makes bits per character exact for word and BPE models. An
        item model's ids are items between end tokens (``encode_items``)."""
        if self.items:
            result = evaluate_items(self.model, ids, item_ends(ids, self.tokenizer.end_id))
        elif self.framing == "windows":
            result = evaluate_windows(self.model, ids, self.unscored_tokens)
        else:
            result = evaluate_stream(self.model, ids)
        return result.with_chars(chars) if chars is not None else result

    def evaluate(self, text: str) -> EvalResult:
        """Held-out loss on already-cleaned text (Gutenberg stripping is the
        caller's choice; the model's case/ASCII/punctuation options are applied)."""
        prepared = self.prepare_text(text)
        return self._evaluate_text(prepared.text)

    def _evaluate_text(self, text: str) -> EvalResult:
        if self.items:  # cut as the training text was; each end token counts as one character
            items = self.items_of(text)
            return self.evaluate_ids(self.tokenizer.encode_items(items), sum(len(item) + 1 for item in items))
        chars = self.tokenizer.chars_after(text, self.unscored_tokens)
        return self.evaluate_ids(self.tokenizer.encode(text), chars)

    def evaluate_file(self, path: str | os.PathLike, warn=None) -> EvalResult:
        """Read a file the way the training corpus was read, then evaluate."""
        corpus = read_corpus(path, self.corpus_config)
        known, report = self.tokenizer.make_known(corpus.text)
        if report and warn is not None:
            warn(report.describe())
        return self._evaluate_text(known)

    def evaluate_validation(self) -> EvalResult:
        """Loss on the run's own held-out split (``RUN_DIR/data/val.bin``)."""
        data_dir, val = self._validation_ids("give a TEXT_FILE to evaluate on")
        return self.evaluate_ids(val, validation_chars(data_dir, self.tokenizer, val, self.unscored_tokens))

    def items_of(self, text: str) -> list[str]:
        """An item model's items in ``text``, cut as its training text was."""
        if not self.items:
            raise LstmgenError(f"{self.path} is not an item model (--framing lines or sentences)")
        return ITEM_SPLITTERS[self.framing](text)

    def split_items(self, which: str = "val") -> list[str]:
        """An item model's own held-out (or training) items, as text."""
        data_dir, _ = self._validation_ids("give a text file of items")
        split = load_split(data_dir)
        ids, ends = (split.val, split.val_ends) if which == "val" else (split.train, split.train_ends)
        return [self.tokenizer.decode(ids[a + 1:b]) for a, b in zip(ends[:-1], ends[1:])]

    def held_out_text(self, max_chars: int | None = None) -> str:
        """The run's own held-out text (at most ``max_chars`` characters from its start)."""
        _, val = self._validation_ids("give a held-out text file (--held-out TEXT_FILE)")
        return self.tokenizer.decode(val[:max_chars] if max_chars is not None else val)

    def training_text(self, path: str | os.PathLike | None = None) -> TrainingText:
        """An exact index of the training text for the copying statistics:
        the run's own training split, or the file at ``path`` read with the
        model's corpus options. Over 100 M characters, a stated sample."""
        if path is not None:
            return TrainingText.from_text(read_corpus(path, self.corpus_config).text)
        from .training.loop import run_data_dir

        data_dir = run_data_dir(self.path.parent, self.checkpoint.meta)
        if not (data_dir / "meta.json").exists():
            raise LstmgenError(f"{self.path} has no training text beside it; give the training text (--train-text FILE)")
        meta = json.loads((data_dir / "meta.json").read_text(encoding="utf-8"))
        train = load_split(data_dir).train
        chars = None
        if self.tokenizer.level == "char":
            chars = len(train)
        elif meta.get("chars") and meta.get("val_chars") is not None:
            chars = int(meta["chars"]) - int(meta["val_chars"])
        return TrainingText.from_token_ids(train, self.tokenizer.decode, chars)

    def _validation_ids(self, fix: str) -> tuple[Path, np.ndarray]:
        from .training.loop import run_data_dir

        data_dir = run_data_dir(self.path.parent, self.checkpoint.meta)
        if not (data_dir / "meta.json").exists():
            raise LstmgenError(f"{self.path} has no held-out split beside it; {fix}")
        split = load_split(data_dir)
        if len(split.val) < 2:
            raise LstmgenError(f"this run held out no validation text (--val-fraction 0); {fix}")
        return data_dir, split.val


class Generation:
    """Texts in progress: the model's state after them, their decoders and
    stop strings. ``pieces`` writes more; calling it again goes on from
    where the text stopped, at the cost of the new tokens only."""

    def __init__(self, model: LanguageModel, tokens: TokenStream | WindowStream, prompt: str):
        self.model, self.tokens = model, tokens
        self.prompt = prompt
        """The prompt as the model read it (after the model's corpus options)."""
        n = tokens.config.num_samples
        self.decoders = [model.tokenizer.stream_decoder() for _ in range(n)]
        self.stops: list[StopText] = []
        self.end_id = model.tokenizer.end_id if model.items else None
        """An item model's end token: a sample that draws it is finished."""
        self.ended = [False] * n
        """Item models: which samples reached their end token in the last ``pieces``."""

    @property
    def config(self) -> SampleConfig:
        return self.tokens.config

    def reconfigure(self, config: SampleConfig) -> None:
        """Go on with other settings (the same number of samples)."""
        if config.dry_multiplier > 0:
            self.tokens.breakers = self.model.breakers(config.dry_sequence_breakers)
        self.tokens.reconfigure(config)

    @property
    def stopped(self) -> bool:
        """Every sample met a stop string in the last ``pieces``."""
        return bool(self.stops) and all(s.done for s in self.stops)

    def pieces(self, max_new_tokens: int | None = None, final: bool = True) -> Iterator[list[str]]:
        """Yield, step by step, the next piece of text for each sample, for at
        most ``max_new_tokens`` tokens (default: the config's). ``final``
        ends a character cut in the middle (a BPE token may hold part of one)
        as U+FFFD; with False it waits for the next call to finish it."""
        self.stops = [StopText(self.config) for _ in self.decoders]
        self.ended = [False] * len(self.decoders)
        stops, decoders = self.stops, self.decoders
        for tokens in self.tokens.tokens(max_new_tokens):
            # One tolist() instead of a tensor-to-int conversion per sample: 64 of those cost 5% of a step.
            ids = tokens.tolist()
            pieces = [s.push(d.push(t)) for s, d, t in zip(stops, decoders, ids)]
            if self.end_id is not None:
                pieces = self._end_items(ids, pieces)
            yield pieces
            if all(s.done for s in stops):
                return
        # Text held back as a possible stop string's start is shown now.
        tail = [s.flush() if s.done or not final else s.push(d.flush()) + s.flush()
                for s, d in zip(stops, decoders)]
        if any(tail):
            yield tail


    def _end_items(self, ids: list[int], pieces: list[str]) -> list[str]:
        """Samples whose token is the end token are finished: what their stop
        check held back is shown, and nothing more is added to them."""
        for i, token in enumerate(ids):
            stop = self.stops[i]
            if token == self.end_id and not stop.done:
                pieces[i] += stop.push(self.decoders[i].flush()) + stop.flush()
                stop.done = self.ended[i] = True
        return pieces


def validation_chars(data_dir: Path, tokenizer, val_ids: np.ndarray, skip: int) -> int | None:
    """Characters covered by the scored held-out tokens (None for characters:
    one token is one character)."""
    if tokenizer.level == "char":
        return None
    meta = json.loads((data_dir / "meta.json").read_text(encoding="utf-8"))
    if "val_chars" not in meta:
        return None
    return max(int(meta["val_chars"]) - len(tokenizer.decode(val_ids[:skip])), 1)


def load(run_dir: str | os.PathLike | None = None, device: str = "cpu") -> LanguageModel:
    """Load a run directory or checkpoint; ``None`` loads the bundled Alice model."""
    path = BUNDLED_DIR if run_dir is None else run_dir
    return LanguageModel(load_checkpoint(path, device=device))


def train(corpus_path, out_dir, preset: str | None = None, *, init_from: str | os.PathLike | None = None,
          replace_unknown: bool = False, force: bool = False, progress: bool = True, log=print, **overrides):
    """Train on a text file with a preset (default: "default"), overriding any
    ModelConfig, CorpusConfig or TrainConfig field by name::

        lstmgen.train("alice.txt", "runs/alice", preset="tutorial-small", max_minutes=2)

    ``init_from``: fine-tune instead. The new run starts from the weights of
    that run directory's best checkpoint and encodes the corpus with its
    vocabulary; its model shape, text options and training recipe are taken
    from it, and ``preset`` (its shape must match) or overrides change the
    recipe. ``replace_unknown``: corpus characters the vocabulary lacks are
    replaced by known ASCII forms or dropped, instead of refused::

        lstmgen.train("more-alice.txt", "runs/tuned", init_from="runs/tutorial", max_minutes=5)
    """
    from .training.presets import resolve, speed_floor
    from .training.start import train as run_training

    if init_from is not None:
        from .training.init_from import InitFrom, resolve_fine_tune

        model_options, corpus_config, train_config, point = resolve_fine_tune(
            InitFrom(init_from, replace_unknown), preset, overrides)
        return run_training(corpus_path, out_dir, model_options, corpus_config, train_config, force=force,
                            progress=progress, log=log, init=point)
    if replace_unknown:
        raise LstmgenError("--replace-unknown applies with --init-from only; a new model's vocabulary holds "
                           "every character of its corpus")
    preset = preset or "default"
    model_options, corpus_config, train_config, tokenizer_config = resolve(preset, **overrides)
    return run_training(corpus_path, out_dir, model_options, corpus_config, train_config,
                        force=force, progress=progress, log=log, tokenizer_config=tokenizer_config,
                        speed_floor=speed_floor(preset, overrides))


def resume(run_dir, *, progress: bool = True, log=print, epochs=None, max_steps=None, max_minutes=None):
    """Continue a run exactly where its last checkpoint left it; the limits may be raised."""
    from .training.start import resume as resume_training

    return resume_training(run_dir, progress=progress, log=log, epochs=epochs, max_steps=max_steps,
                           max_minutes=max_minutes)
