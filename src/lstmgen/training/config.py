"""How to train: TrainConfig, shared by the command line and the Python API,
and TrainResult, what a run returns."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import LstmgenError

if TYPE_CHECKING:
    from ..evaluate import EvalResult

FRAMINGS = ("stream", "windows", "lines", "sentences")
ITEM_FRAMINGS = ("lines", "sentences")
SCHEDULES = ("constant", "cosine", "plateau")
PRECISIONS = ("auto", "fp32", "bf16")


@dataclass(frozen=True)
class TrainConfig:
    """How to train. Stored in every checkpoint's config.json."""

    framing: str = "stream"
    """'stream': contiguous columns with truncated BPTT and a loss at every
    position. 'windows': the tutorial's one target per --seq-len window.
    'lines' or 'sentences': every non-empty line, or every sentence, is an
    item, read from a fresh state and ended by an end-of-item token."""
    batch_size: int = 16
    """Stream columns (or windows) per step; for items, a step holds about
    batch_size × seq_len tokens, in as many rows as fit."""
    seq_len: int = 128
    """BPTT length for 'stream'; the window length for 'windows'."""
    max_item_tokens: int = 4096
    """Item framings: refuse a corpus with an item longer than this many
    tokens (a file without line ends read as lines, say)."""
    epochs: int | None = None
    """Passes over the training text (None: until another limit stops it)."""
    max_steps: int | None = None
    """Stop after this many optimizer steps."""
    max_minutes: float | None = None
    """Stop after this much wall-clock time, evaluation included."""
    stop_at_loss: float | None = None
    """Stop as soon as a validation reaches this held-out loss (nats)."""
    patience: int | None = None
    """Early stopping: stop after this many validations in a row without a
    new best held-out loss (None: never)."""
    lr: float = 3e-3
    """Peak learning rate for Adam."""
    weight_decay: float = 0.0
    """AdamW's decoupled weight decay on the weight matrices (biases are not
    decayed); 0 keeps plain Adam."""
    lr_schedule: str = "cosine"
    """'constant'; 'cosine' decay to lr/10 over the planned steps or minutes;
    or 'plateau': the rate times ``plateau_factor`` after every
    ``plateau_patience`` validations in a row without a new best held-out loss."""
    plateau_patience: int = 2
    """Validations without improvement before 'plateau' lowers the rate."""
    plateau_factor: float = 0.5
    """What 'plateau' multiplies the rate by each time it lowers it."""
    warmup_steps: int = 0
    """Linear warm-up from 0 to lr over this many steps."""
    grad_clip: float | None = 1.0
    """Clip the gradient's global norm to this value (None: no clipping)."""
    val_fraction: float = 0.1
    """The last part of the text held out for validation."""
    eval_every: int | None = 500
    """Also validate every this many steps (validation always runs after each epoch)."""
    eval_max_tokens: int = 2_000_000
    """Validate on at most this many held-out tokens during training."""
    checkpoint_every: int | None = None
    """Also write last/ every this many steps (for exact resume after a crash)."""
    checkpoint_minutes: float | None = 10.0
    """Also write last/ whenever this many minutes passed since the last write."""
    seed: int = 1337
    """Seeds weights, data order and dropout."""
    device: str = "auto"
    """'auto' (CUDA when present), 'cpu' or 'cuda'."""
    precision: str = "auto"
    """'fp32', 'bf16' (autocast: matrix products in bfloat16, weights and
    optimizer in fp32), or 'auto': whichever of the two a short timing of this
    model's shapes finds faster on this machine (fp32 unless bf16 wins by
    over 5%). Validation always runs in fp32."""

    def __post_init__(self) -> None:
        if self.framing not in FRAMINGS:
            raise LstmgenError(f"--framing must be one of {', '.join(FRAMINGS)}, got {self.framing!r}")
        if self.lr_schedule not in SCHEDULES:
            raise LstmgenError(f"--lr-schedule must be one of {', '.join(SCHEDULES)}, got {self.lr_schedule!r}")
        checks = [
            ("--batch-size", self.batch_size, 1), ("--seq-len", self.seq_len, 1),
            ("--epochs", self.epochs, 1), ("--max-steps", self.max_steps, 1),
            ("--warmup-steps", self.warmup_steps, 0), ("--eval-every", self.eval_every, 1),
            ("--eval-max-tokens", self.eval_max_tokens, 2), ("--checkpoint-every", self.checkpoint_every, 1),
            ("--patience", self.patience, 1), ("--plateau-patience", self.plateau_patience, 1),
            ("--max-item-tokens", self.max_item_tokens, 1),
        ]
        for flag, value, low in checks:
            if value is not None and value < low:
                raise LstmgenError(f"{flag} must be {low} or more, got {value}")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise LstmgenError(f"--max-minutes must be more than 0, got {self.max_minutes}")
        if self.checkpoint_minutes is not None and not self.checkpoint_minutes > 0:
            raise LstmgenError(f"--checkpoint-every in minutes must be more than 0, got {self.checkpoint_minutes}")
        if self.stop_at_loss is not None and not self.stop_at_loss > 0:
            raise LstmgenError(f"--stop-at-loss must be more than 0 nats, got {self.stop_at_loss}")
        if not 0.0 < self.plateau_factor < 1.0:
            raise LstmgenError(f"--plateau-factor must be between 0 and 1, got {self.plateau_factor}")
        if not 0.0 <= self.weight_decay < math.inf:
            raise LstmgenError(f"--weight-decay must be 0 or more, got {self.weight_decay}")
        if not self.lr > 0 or math.isinf(self.lr):
            raise LstmgenError(f"--lr must be a positive number, got {self.lr}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise LstmgenError(f"--grad-clip must be more than 0, got {self.grad_clip}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise LstmgenError(f"--val-fraction must be in [0, 1), got {self.val_fraction}")
        if self.precision not in PRECISIONS:
            raise LstmgenError(f"--precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise LstmgenError(f"--device must be auto, cpu or cuda, got {self.device!r}")
        if self.epochs is None and self.max_steps is None and self.max_minutes is None:
            raise LstmgenError("training needs a limit: give --epochs, --max-steps or --max-minutes")

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def items(self) -> bool:
        """Whether the run trains on items (lines or sentences) instead of a stream."""
        return self.framing in ITEM_FRAMINGS

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class TrainResult:
    run_dir: Path
    best_val: EvalResult | None
    steps: int
    epochs_completed: float
    seconds: float
    train_chars_per_second: float
    stopped_by: str
    history: list[dict] = field(default_factory=list)
    best_val_loss: float | None = None
    """The best held-out loss of the whole run, earlier sessions included."""


def check_new_run(corpus: str, preset: str | None = None) -> None:
    """What :func:`lstmgen.train` refuses a new run for that needs no PyTorch:
    an unknown preset, a missing, empty or unreadable corpus file. The command
    line calls it before PyTorch is imported (seconds), so a typo fails at once;
    train makes the same checks with the same messages."""
    from ..text.corpus import check_corpus_file
    from ..text.prepare import is_data_dir
    from .presets import get_preset

    if preset is not None:
        get_preset(preset)
    if not is_data_dir(corpus):
        check_corpus_file(corpus)
