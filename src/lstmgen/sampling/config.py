"""How to sample: SampleConfig, the one set of sampling options that the
command line, the Python API and every later door share."""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field

from ..errors import LstmgenError


STEP_PRECISIONS = ("auto", "fp32", "bf16", "int8", "onnx")
WINDOW_GENERATION = ("auto", "sliding", "stateful")


@dataclass(frozen=True)
class SampleConfig:
    """How to sample. Shared by the CLI, the Python API and (later) the server."""

    max_new_tokens: int = 1000
    """Tokens to generate after the prompt (the prompt is not counted)."""
    temperature: float = 0.85
    """Divides the logits; below 1 is safer, above 1 wilder. 0 means argmax.
    0.85 with DRY on brought samples' word diversity closer to held-out
    text's than plain 0.8 on three models (BENCHMARKS.md, sampling defaults)."""
    top_k: int | None = None
    """Keep only the k most likely tokens (None: all)."""
    top_p: float | None = None
    """Keep the smallest set of tokens whose probability reaches p (None or 1: all)."""
    min_p: float | None = None
    """Keep only tokens at least p times as likely as the most likely one (None or 0: all)."""
    typical_p: float | None = None
    """Locally typical sampling: keep the tokens whose surprise is closest to
    the distribution's entropy, up to probability p (None or 1: all)."""
    repetition_penalty: float = 1.0
    """Tokens in the penalty window: a positive logit is divided by this, a
    negative one multiplied (as Hugging Face transformers; 1: off)."""
    presence_penalty: float = 0.0
    """Subtracted from the logit of every token in the penalty window (as OpenAI; 0: off)."""
    frequency_penalty: float = 0.0
    """Subtracted from a token's logit once per time it occurs in the penalty window (as OpenAI; 0: off)."""
    penalty_window: int = 256
    """Tokens, the prompt included, that the penalties, DRY and no-repeat-ngram look back over."""
    dry_multiplier: float = 0.8
    """DRY: a token that would extend a repeat of length L >= dry_allowed_length
    loses multiplier × base^(L - allowed) from its logit (0: off). On by
    default: with it, no sample looped at temperature 0.85 or 0.5 on three models."""
    dry_base: float = 1.75
    """DRY: how fast the penalty grows with the repeat's length."""
    dry_allowed_length: int = 12
    """DRY: repeats shorter than this many tokens go unpenalised. A character
    model's token is one character, so this is larger than the 2 that word
    and BPE models use: ' said the ' is a fine repeat, a 20-character loop is not."""
    dry_sequence_breakers: tuple[str, ...] = ()
    """DRY: a repeat never reaches across a token that contains one of these.
    None by default: in plain text, loops run across line ends, quotes and
    rows of '*' (chat front-ends break at '\\n', ':', '"' and '*' to keep
    their speaker names apart; with those, 1 or 2 of 20 samples at 0.9 to 1.0 still looped)."""
    no_repeat_ngram: int = 0
    """Never repeat an n-gram of this many tokens within the penalty window (0: off)."""
    stop: tuple[str, ...] = ()
    """End a sample at the first occurrence of any of these strings (left out
    of the text unless include_stop)."""
    include_stop: bool = False
    """Keep the stop string at the end of the text."""
    min_new_tokens: int = 0
    """No stop string ends a sample before this many new tokens."""
    num_samples: int = 1
    """Independent samples, generated together as one batch."""
    seed: int | None = None
    """Same seed, same text (at the same precision). None draws a fresh seed."""
    window_generation: str = field(default="auto", metadata={"choices": WINDOW_GENERATION})
    """For a model trained on windows (the tutorial's presets, an imported
    Keras model): 'sliding' predicts each token from the last seq_len tokens
    read from an empty state, as the model was trained and as the tutorial
    generates; 'stateful' carries one state through the whole text; 'auto'
    is sliding. Stream-trained models always step statefully."""
    precision: str = field(default="auto", metadata={"choices": STEP_PRECISIONS})
    """Weights for the one-token steps: 'fp32'; 'bf16'; 'int8' (8-bit weights
    with one scale per row, bf16 activations; CPU only); 'onnx' (fp32 steps
    run by onnxruntime; CPU only, needs the lstmgen[onnx] extra); or 'auto',
    the fastest of them timed on this machine for this model and batch (fp32
    unless another wins by over 5%; cached once two runs' timings agree), except at
    temperature 0, where 'auto' is fp32. The prompt is always read in fp32.
    bf16 and int8 change the held-out loss by about 1e-4 nats; onnx computes
    fp32's numbers, to about 1e-5."""

    def __post_init__(self) -> None:
        for name in ("stop", "dry_sequence_breakers"):  # lists (from JSON or a caller) become tuples
            if isinstance(getattr(self, name), (list, str)):
                value = getattr(self, name)
                object.__setattr__(self, name, (value,) if isinstance(value, str) else tuple(value))
        if self.max_new_tokens < 0:
            raise LstmgenError(f"--max-new-tokens must be 0 or more, got {self.max_new_tokens}")
        if not self.temperature >= 0 or self.temperature == float("inf"):
            raise LstmgenError(f"--temperature must be 0 (argmax) or more, got {self.temperature}")
        if self.top_k is not None and self.top_k < 1:
            raise LstmgenError(f"--top-k must be 1 or more, got {self.top_k}")
        if self.top_p is not None and not 0.0 < self.top_p <= 1.0:
            raise LstmgenError(f"--top-p must be in (0, 1], got {self.top_p}")
        if self.min_p is not None and not 0.0 <= self.min_p <= 1.0:
            raise LstmgenError(f"--min-p must be in [0, 1], got {self.min_p}")
        if self.typical_p is not None and not 0.0 < self.typical_p <= 1.0:
            raise LstmgenError(f"--typical-p must be in (0, 1], got {self.typical_p}")
        if not 0.0 < self.repetition_penalty < math.inf:
            raise LstmgenError(f"--repetition-penalty must be more than 0 (1 is off), got {self.repetition_penalty}")
        for flag, value in (("--presence-penalty", self.presence_penalty),
                            ("--frequency-penalty", self.frequency_penalty)):
            if not -2.0 <= value <= 2.0:
                raise LstmgenError(f"{flag} must be between -2 and 2 (as OpenAI's), got {value}")
        if self.penalty_window < 1:
            raise LstmgenError(f"--penalty-window must be 1 or more tokens, got {self.penalty_window}")
        if not 0.0 <= self.dry_multiplier < math.inf:
            raise LstmgenError(f"--dry-multiplier must be 0 (off) or more, got {self.dry_multiplier}")
        if not 1.0 <= self.dry_base < math.inf:
            raise LstmgenError(f"--dry-base must be 1 or more, got {self.dry_base}")
        if self.dry_allowed_length < 1:
            raise LstmgenError(f"--dry-allowed-length must be 1 or more, got {self.dry_allowed_length}")
        if self.no_repeat_ngram < 0:
            raise LstmgenError(f"--no-repeat-ngram must be 0 (off) or more, got {self.no_repeat_ngram}")
        if any(not isinstance(s, str) or not s for s in self.stop):
            raise LstmgenError("--stop needs a non-empty string")
        if self.min_new_tokens < 0:
            raise LstmgenError(f"--min-new-tokens must be 0 or more, got {self.min_new_tokens}")
        if self.num_samples < 1:
            raise LstmgenError(f"--num-samples must be 1 or more, got {self.num_samples}")
        if self.seed is not None and not 0 <= self.seed < 2**63:
            raise LstmgenError(f"--seed must be in [0, 2**63), got {self.seed}")
        if self.window_generation not in WINDOW_GENERATION:
            raise LstmgenError(f"--window-generation must be one of {', '.join(WINDOW_GENERATION)}, "
                               f"got {self.window_generation!r}")
        if self.precision not in STEP_PRECISIONS:
            raise LstmgenError(f"--precision must be one of {', '.join(STEP_PRECISIONS)}, got {self.precision!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def step_request(self) -> str:
        """The precision to ask the steps for. Temperature 0 asks for the one
        most likely text, and bf16 or int8 weights change which text that is
        (bf16 kept 99.8% of the bundled model's argmaxes: one flip in 500
        characters sends the rest elsewhere), so there 'auto' means fp32, and
        greedy text is the same on every machine, and the tutorial's own."""
        return "fp32" if self.precision == "auto" and self.temperature == 0 else self.precision

    @classmethod
    def plain(cls, **fields) -> "SampleConfig":
        """Plain sampling: every filter and anti-loop processor off, whatever
        the defaults are. ``plain(temperature=0)`` is the tutorial's argmax."""
        return cls(**dict(PLAIN, **fields))


PLAIN = dict(top_k=None, top_p=None, min_p=None, typical_p=None, repetition_penalty=1.0, presence_penalty=0.0,
             frequency_penalty=0.0, dry_multiplier=0.0, no_repeat_ngram=0)
"""The neutral value of every filter and anti-loop processor."""


def fresh_seed() -> int:
    return int.from_bytes(os.urandom(6), "little")
