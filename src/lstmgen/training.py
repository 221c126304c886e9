"""The training loop: contiguous streams, truncated BPTT, a loss at every position."""

from __future__ import annotations

import json
import math
import os
import random
import signal
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from . import distributed as D
from .checkpoint import load_checkpoint, load_trainer_state, save_checkpoint
from .corpus import CorpusConfig, read_corpus
from .data import StreamBatches, WindowBatches, load_split, release_pages, save_split, split_ids
from .errors import LstmgenError, TrainingInterrupted
from .evaluate import EvalResult, evaluate_stream, evaluate_windows
from .model import LSTMLanguageModel, ModelConfig
from .precision import PrecisionChoice, cannot, choose
from .presets import SpeedFloor
from .tokenizer import TokenizerConfig, tokenizer_from_dict

FRAMINGS = ("stream", "windows")
SCHEDULES = ("constant", "cosine", "plateau")
PRECISIONS = ("auto", "fp32", "bf16")


@dataclass(frozen=True)
class TrainConfig:
    """How to train. Stored in every checkpoint's config.json."""

    framing: str = "stream"
    """'stream': contiguous columns with truncated BPTT and a loss at every
    position. 'windows': the tutorial's one target per --seq-len window."""
    batch_size: int = 16
    """Stream columns (or windows) per step."""
    seq_len: int = 128
    """BPTT length for 'stream'; the window length for 'windows'."""
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


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise LstmgenError("--device cuda was asked for, but PyTorch sees no CUDA GPU; use --device cpu")
    return torch.device(name)


def prepare_run_dir(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise LstmgenError(f"{out} is a file; give a directory for --out")
    if out.is_dir() and any((out / n).exists() for n in ("best", "last", ".last.old")) and not force:
        raise LstmgenError(
            f"{out} already holds a training run; continue it with --resume {out}, "
            "or pass --force to overwrite it, or choose another --out"
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise LstmgenError(f"cannot write to {out} ({exc.strerror}); choose a writable --out directory") from None


def sample_excerpts(text: str, rng: random.Random, count: int = 32, length: int = 100) -> list[str]:
    """Random excerpts of the training text, kept in the checkpoint so a model
    can be prompted 'from the training text' without the corpus at hand."""
    if len(text) <= length:
        return [text]
    out = []
    for _ in range(count):
        start = rng.randrange(0, len(text) - length)
        # Start at a word boundary so the seed reads naturally.
        space = text.find(" ", start, start + 20)
        if space >= 0 and space + 1 + length <= len(text):
            start = space + 1
        out.append(text[start:start + length])
    return out


# Training precision is timed on this many time steps of the real batch:
# enough for the recurrence to dominate, short enough to finish well under a second.
_TIMED_STEPS = 32


def training_precision(model_config: ModelConfig, config: TrainConfig, batch_rows: int,
                       device: torch.device) -> PrecisionChoice:
    """The precision to train in: the requested one, or for 'auto' the faster
    of fp32 and bf16 autocast, timed on this model's shapes (lstmgen.precision).

    Measured so far: bf16 trained the default preset 1.6-1.8× faster on a
    CPU with AMX, 0.63× as fast on one with AVX512-BF16 and no AMX, and not
    at all on one with neither (oneDNN has no bf16 LSTM there); on an H200
    cuDNN's fp32 was as fast as bf16 (BENCHMARKS.md).
    """
    steps = min(config.seq_len, _TIMED_STEPS)
    if config.precision != "auto":
        if config.precision == "bf16":
            _check_runs(_training_call(model_config, config, 2, 2, device, torch.bfloat16), device)
        return PrecisionChoice(config.precision, "requested")
    candidates = {"fp32": lambda: _training_call(model_config, config, batch_rows, steps, device, None)}
    if device.type == "cpu" or torch.cuda.is_bf16_supported():
        candidates["bf16"] = lambda: _training_call(model_config, config, batch_rows, steps, device, torch.bfloat16)
    shape = {"model": model_config.to_dict(), "batch": batch_rows, "steps": steps, "framing": config.framing}
    return choose("training", shape, candidates, device, f"forward and backward of {batch_rows} × {steps} tokens",
                  tokens=batch_rows * steps)


def _training_call(model_config: ModelConfig, config: TrainConfig, rows: int, steps: int, device: torch.device,
                   dtype: torch.dtype | None):
    """A forward and backward pass of a fresh model of this shape, as one call."""
    windows = config.framing == "windows"
    model = LSTMLanguageModel(model_config).to(device).train()
    x = torch.randint(model_config.vocab_size, (rows, steps), device=device)
    y = x[:, -1] if windows else x

    def call():
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            _, loss, _ = model(x, None, y, last_only=windows)
        loss.backward()
        model.zero_grad(set_to_none=True)
    return call


def fit_to_speed(model_config: ModelConfig, floor: SpeedFloor, config: TrainConfig, rows: int,
                 device: torch.device, info: D.Dist, log) -> tuple[ModelConfig, dict]:
    """``model_config``, or the floor's slower settings where this machine
    trains ``model_config`` below the floor (timed as --precision auto times
    it, in the precision the run would use; agreed across DDP processes)."""
    choice = agreed_training_precision(model_config, config, rows, device, info)
    measured = choice.tokens_per_second if info.is_main else None
    rate = D.agree(info, [measured * info.world if measured else 0.0], device)[0]
    check = {"chars_per_second_needed": floor.chars_per_second, "chars_per_second_measured": round(rate, 1),
             "precision": choice.precision}
    if not rate or rate >= floor.chars_per_second:
        return model_config, dict(check, slower_settings_used=False)
    slower = ModelConfig.from_dict(dict(model_config.to_dict(), **floor.slower))
    log(f"lstmgen: this machine trains the preset's {model_config.num_layers} × {model_config.hidden_size} model at "
        f"about {rate:,.0f} characters/s ({choice.precision}), under the {floor.chars_per_second:,.0f} it needs; "
        f"training {', '.join(f'{k}={v}' for k, v in floor.slower.items())} instead ({floor.evidence})")
    return slower, dict(check, slower_settings_used=True, slower_settings=floor.slower)


def _check_runs(call, device: torch.device) -> None:
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        try:
            call()
        except RuntimeError as exc:
            raise LstmgenError(f"--precision bf16 does not work on this machine ({cannot(exc)}); "
                               "use --precision auto or fp32") from None


def agreed_training_precision(model_config: ModelConfig, config: TrainConfig, batch_rows: int,
                              device: torch.device, info: D.Dist) -> PrecisionChoice:
    """The first process measures; every process of a DDP run takes its answer."""
    if not info.enabled:
        return training_precision(model_config, config, batch_rows, device)
    choice = training_precision(model_config, config, batch_rows, device) if info.is_main else None
    names = ("fp32", "bf16")
    index = int(D.agree(info, [float(names.index(choice.precision)) if choice else 0.0], device)[0])
    return choice or PrecisionChoice(names[index], "measured by the first process")


def make_optimizer(model: LSTMLanguageModel, config: TrainConfig) -> torch.optim.Optimizer:
    """Adam, or AdamW with decay on the weight matrices only.

    The fused implementation updates every parameter in one kernel: 5% of a
    default-preset step on a 2-core CPU (benchmarks/training.py). PyTorch
    before 2.4 has no fused CPU kernel and gets the per-tensor loop.
    """
    if config.weight_decay > 0:
        matrices = [p for p in model.parameters() if p.dim() >= 2]
        others = [p for p in model.parameters() if p.dim() < 2]
        groups = [{"params": matrices, "weight_decay": config.weight_decay}, {"params": others, "weight_decay": 0.0}]
        kind = torch.optim.AdamW
    else:
        groups, kind = list(model.parameters()), torch.optim.Adam
    try:
        return kind(groups, lr=config.lr, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return kind(groups, lr=config.lr)


class Trainer:
    def __init__(self, model: LSTMLanguageModel, config: TrainConfig, device: torch.device,
                 precision: PrecisionChoice | None = None):
        """``precision``: the choice for this run (default: made now for a
        batch of ``config.batch_size``)."""
        self.model = model
        self.config = config
        self.device = device
        self.optimizer = make_optimizer(model, config)
        self.precision = precision or training_precision(model.config, config, config.batch_size, device)
        self.autocast = torch.bfloat16 if self.precision.precision == "bf16" else None

    def step(self, train_model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, carried):
        """One optimizer step on the batch (x, y). ``train_model`` is the model
        or its DDP wrapper. Returns the loss tensor and the state to carry."""
        with torch.autocast(self.device.type, dtype=self.autocast or torch.float32,
                            enabled=self.autocast is not None):
            if self.config.framing == "stream":
                _, loss, new_state = train_model(x, carried, y)
                # Truncated BPTT: keep the state's values (in fp32), drop its history.
                carried = (new_state[0].detach().float(), new_state[1].detach().float())
            else:
                _, loss, _ = train_model(x, None, y, last_only=True)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.optimizer.step()
        return loss, carried

    def lr_at(self, step: int, progress: float, plateau_scale: float = 1.0) -> float:
        c = self.config
        if c.warmup_steps and step < c.warmup_steps:
            return c.lr * (step + 1) / c.warmup_steps
        if c.lr_schedule == "constant":
            return c.lr
        if c.lr_schedule == "plateau":
            return c.lr * plateau_scale
        progress = min(max(progress, 0.0), 1.0)
        floor = c.lr / 10
        return floor + (c.lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def _format_eval(result: EvalResult) -> str:
    return f"{result.loss_nats:.4f} nats ({result.bits_per_char:.3f} bits/char, perplexity {result.perplexity:.2f})"


def epoch_batches(config: TrainConfig, train_ids: np.ndarray, batch_size: int, epoch: int, drop_last: bool = False):
    """The batches of one epoch. Their randomness comes from (seed, epoch)
    alone, so a resumed run rebuilds exactly the epoch it stopped in."""
    rng = np.random.default_rng([config.seed, epoch])
    if config.framing == "windows":
        return WindowBatches(train_ids, batch_size, config.seq_len, rng, drop_last=drop_last)
    offset = int(rng.integers(0, config.seq_len)) if epoch > 0 else 0
    try:
        return StreamBatches(train_ids, batch_size, config.seq_len, offset)
    except LstmgenError:  # a random offset must not empty the epoch of a short text
        return StreamBatches(train_ids, batch_size, config.seq_len, 0)


@dataclass
class Position:
    """Where a run stands; saved with last/ and restored by --resume."""

    step: int = 0
    epoch: int = 0
    batch_index: int = 0
    """The next batch to train on within ``epoch``."""
    elapsed_s: float = 0.0
    """Training wall-clock time so far, over every session of the run."""
    trained_chars: int = 0
    train_s: float = 0.0
    """Seconds spent in optimizer steps only (no validation or checkpoints)."""
    stale_evals: int = 0
    """Validations in a row without a new best held-out loss."""
    plateau_stale: int = 0
    """Like stale_evals, but reset each time the 'plateau' schedule lowers the rate."""
    plateau_scale: float = 1.0
    """The 'plateau' schedule's factor on the peak rate so far."""
    best_val_loss: float | None = None
    best_train_loss: float = math.inf
    recent_loss: list[float] = field(default_factory=list)


class _StopSignals:
    """Turn SIGINT/SIGTERM into a flag checked after each step, so the step
    in flight finishes and a checkpoint is written before exiting."""

    def __init__(self):
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        self.signum = signum

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _trainer_state(optimizer: torch.optim.Optimizer, position: Position, carried,
                   rank_states: list | None = None) -> tuple[dict, dict]:
    """Everything a resume needs besides the weights. ``rank_states`` holds
    (torch RNG state, carried state) of every rank of a DDP run."""
    opt = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    for index, values in opt["state"].items():
        for key, value in values.items():
            tensors[f"optimizer.{index}.{key}"] = value if torch.is_tensor(value) else torch.tensor(value)
    if rank_states is not None and len(rank_states) > 1:
        # Each rank has its own dropout stream and its own stream columns.
        for r, (rng_state, rank_carry) in enumerate(rank_states):
            tensors[f"rank{r}.rng.torch"] = rng_state
            if rank_carry is not None:
                tensors[f"rank{r}.carry.h"], tensors[f"rank{r}.carry.c"] = rank_carry
    else:
        tensors["rng.torch"] = torch.get_rng_state()
        if carried is not None:
            tensors["carry.h"], tensors["carry.c"] = carried
    if torch.cuda.is_available():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = state
    np_state = np.random.get_state()
    data = {
        "world_size": len(rank_states) if rank_states else 1,
        "position": asdict(position),
        "param_groups": opt["param_groups"],
        "rng_python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
        "rng_numpy": [np_state[0], np_state[1].tolist(), *[float(x) if isinstance(x, float) else int(x) for x in np_state[2:]]],
    }
    return tensors, data


def _restore_trainer_state(optimizer, tensors: dict, data: dict, device,
                           info: D.Dist = D.SINGLE) -> tuple[Position, tuple | None]:
    saved_world = int(data.get("world_size", 1))
    if saved_world != info.world:
        raise LstmgenError(f"this run was trained with {saved_world} process(es); resume it with the same number "
                           f"(now {info.world})")
    prefix = f"rank{info.rank}." if info.world > 1 else ""
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        if name.startswith("optimizer."):
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = value.to(device) if key != "step" else value
    optimizer.load_state_dict({"state": state, "param_groups": data["param_groups"]})
    torch.set_rng_state(tensors[prefix + "rng.torch"])
    cuda_states = [tensors[k] for k in sorted(k for k in tensors if k.startswith("rng.cuda."))]
    if cuda_states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda_states)
    version, internal, gauss = data["rng_python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, *rest = data["rng_numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), *rest))
    carried = None
    if prefix + "carry.h" in tensors:
        carried = (tensors[prefix + "carry.h"].to(device), tensors[prefix + "carry.c"].to(device))
    return Position(**data["position"]), carried


def run_data_dir(run_dir: Path, meta: dict) -> Path:
    """The token files of a run: its own data/ or the prepared data it names."""
    return Path(run_dir) / meta.get("data_dir", "data")


def _load_corpus_ids(corpus_path, corpus_config: CorpusConfig, config: TrainConfig, log,
                     tokenizer_config: TokenizerConfig):
    corpus = read_corpus(corpus_path, corpus_config)
    for note in corpus.notes:
        log(f"lstmgen: {note}")
    text = corpus.text
    if tokenizer_config.level == "char":
        tokenizer = tokenizer_config.build(text)
        ids = tokenizer.encode(text)
        cut_chars = split_ids(len(ids), config.val_fraction)
        cut = cut_chars
    else:
        # Split the text first, so that word and BPE vocabularies are learned
        # from the training part only and every level holds out the same text.
        cut_chars = split_ids(len(text), config.val_fraction)
        tokenizer = tokenizer_config.build(text[:cut_chars])
        train_ids, val_ids = tokenizer.encode(text[:cut_chars]), tokenizer.encode(text[cut_chars:])
        ids = np.concatenate([train_ids, val_ids]).astype(tokenizer.dtype)
        cut = len(train_ids)
    if tokenizer.level == "word":
        unknown = int((ids == 0).sum())
        log(f"lstmgen: word vocabulary of {tokenizer.vocab_size:,} tokens; {unknown:,} of {len(ids):,} tokens "
            f"({unknown / max(len(ids), 1):.2%}) are <unk> (raise --vocab-size to keep more words)")
    elif tokenizer.level == "bpe":
        log(f"lstmgen: BPE vocabulary of {tokenizer.vocab_size:,} tokens; {len(text) / max(len(ids), 1):.2f} "
            "characters per token")
    unit = "characters" if tokenizer.level == "char" else "tokens"
    if len(ids) < config.seq_len + 1:
        raise LstmgenError(
            f"the corpus has {len(ids):,} {unit} after cleaning, fewer than --seq-len {config.seq_len} + 1; "
            "lower --seq-len or give more text"
        )
    return text, tokenizer, ids, cut, cut_chars


def _check_split_sizes(train_ids, val_ids, config: TrainConfig) -> None:
    min_train = config.seq_len + 1 if config.framing == "windows" else config.seq_len + 2
    if len(train_ids) < min_train:
        raise LstmgenError(
            f"the training part ({len(train_ids):,} characters) is shorter than --seq-len {config.seq_len} + 1; "
            "lower --seq-len or --val-fraction, or give more text"
        )
    if config.framing == "windows" and 0 < len(val_ids) <= config.seq_len:
        raise LstmgenError(
            f"the validation part ({len(val_ids):,} characters) is not longer than the {config.seq_len}-character "
            "window; raise --val-fraction, lower --seq-len or give more text"
        )


def _disk_error(out: Path, exc: OSError) -> LstmgenError:
    return LstmgenError(
        f"could not write to {out} ({exc.strerror or exc}); the last good checkpoint is intact. "
        f"Free some disk space, then continue with: lstmgen train --resume {out}"
    )


def train(
    corpus_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    model_options: dict | None = None,
    corpus_config: CorpusConfig | None = None,
    train_config: TrainConfig | None = None,
    force: bool = False,
    progress: bool = True,
    log=print,
    tokenizer_config: TokenizerConfig | None = None,
    speed_floor: SpeedFloor | None = None,
) -> TrainResult:
    """Train a new model on a text file and write checkpoints to ``out_dir``.

    ``model_options`` are ModelConfig fields except vocab_size, which comes
    from the corpus. ``speed_floor``: train its slower settings instead if
    this machine trains the model slower than its floor.
    """
    corpus_config = corpus_config or CorpusConfig()
    config = train_config or TrainConfig(max_minutes=5.0)
    out = Path(out_dir)
    # Check everything that can be checked before touching the disk or the clock.
    ModelConfig(vocab_size=1, **(model_options or {}))
    info = D.setup(config.device)
    if not info.is_main:
        log, progress = (lambda *_: None), False
    finished = False
    try:
        result = _train(corpus_path, out, model_options, corpus_config, config, force, progress, log,
                        tokenizer_config, info, speed_floor)
        finished = True
        return result
    finally:
        D.teardown(info, finished)


def _train(corpus_path, out: Path, model_options, corpus_config: CorpusConfig, config: TrainConfig, force: bool,
           progress: bool, log, tokenizer_config, info: D.Dist, speed_floor: SpeedFloor | None = None) -> TrainResult:
    prepare_run_dir(out, force)
    D.barrier(info)
    if force and info.is_local_main:
        import shutil

        for stale in ("best", "last", ".best.old", ".last.old"):
            if (out / stale).exists():
                shutil.rmtree(out / stale)
    from .prepare import is_data_dir

    if is_data_dir(corpus_path):
        # Prepared data is used where it lies, memory-mapped, never copied.
        data_dir = Path(corpus_path).resolve()
        data_meta = json.loads((data_dir / "meta.json").read_text(encoding="utf-8"))
        if corpus_config != CorpusConfig():
            raise LstmgenError(f"{corpus_path} is prepared data, whose corpus options were fixed by lstmgen prepare; "
                               "drop --lowercase, --ascii, --strip-punctuation, --keep-header and --encoding")
        if config.val_fraction != TrainConfig.val_fraction and config.val_fraction != data_meta["val_fraction"]:
            raise LstmgenError(f"{corpus_path} was split by lstmgen prepare --val-fraction "
                               f"{data_meta['val_fraction']}; drop --val-fraction or prepare again")
        data_level = data_meta.get("level", "char")
        # "char" is also what an unset --level resolves to, so only a
        # different explicit level or a --vocab-size is refused.
        if tokenizer_config is not None and (tokenizer_config.vocab_size is not None
                                             or tokenizer_config.level not in ("char", data_level)):
            raise LstmgenError(f"{corpus_path} was tokenized by lstmgen prepare (level "
                               f"{data_meta.get('level', 'char')}); drop --level and --vocab-size, or prepare again")
        corpus_config = CorpusConfig.from_dict(data_meta["corpus"])
        tokenizer = tokenizer_from_dict(data_meta["tokenizer"])
        split = load_split(data_dir)
        rng = random.Random(config.seed)
        excerpt_source = tokenizer.decode(split.train[: 1 << 20]) if len(split.train) else ""
        excerpts = sample_excerpts(excerpt_source, rng)
        corpus_chars = int(data_meta["chars"])
        source = str(corpus_path)
    elif not info.is_local_main:
        # In a DDP run, the first process of each machine writes the token
        # files and the others read them.
        D.barrier(info)
        data_dir = out / "data"
        own_meta = json.loads((data_dir / "meta.json").read_text(encoding="utf-8"))
        tokenizer = tokenizer_from_dict(own_meta["tokenizer"])
        split = load_split(data_dir)
        excerpts, corpus_chars, source = [], int(own_meta.get("corpus_chars", 0)), str(corpus_path)
    else:
        data_dir = out / "data"
        text, tokenizer, ids, cut, cut_chars = _load_corpus_ids(corpus_path, corpus_config, config, log,
                                                                tokenizer_config or TokenizerConfig())
        try:
            split = save_split(data_dir, ids, config.val_fraction,
                               {"source": str(corpus_path), "vocab_size": tokenizer.vocab_size,
                                "level": tokenizer.level, "val_chars": len(text) - cut_chars,
                                "corpus_chars": len(text), "tokenizer": tokenizer.to_dict()}, cut=cut)
        except OSError as exc:
            raise LstmgenError(f"could not write the token files in {out} ({exc.strerror}); free some disk space "
                               "or choose another --out") from None
        excerpts = sample_excerpts(text[:cut_chars], random.Random(config.seed))
        corpus_chars = len(text)
        source = str(corpus_path)
        del text, ids
        if info.enabled:
            D.barrier(info)
    if len(split.train) + len(split.val) < config.seq_len + 1:
        raise LstmgenError(
            f"the corpus has {len(split.train) + len(split.val):,} characters, fewer than --seq-len "
            f"{config.seq_len} + 1; lower --seq-len or give more text")
    _check_split_sizes(split.train, split.val, config)

    batch_size = config.batch_size
    if config.framing == "stream":
        fit = (len(split.train) - 1 - config.seq_len) // config.seq_len
        if fit < batch_size:
            batch_size = max(1, fit)
            log(f"lstmgen: the training text is short, so --batch-size is lowered to {batch_size}")

    rows = D.check_batch(info, batch_size)
    device = D.device_for(info, config.device) or pick_device(config.device)
    model_config = ModelConfig(vocab_size=tokenizer.vocab_size, **(model_options or {}))
    speed_check = None
    if speed_floor is not None and tokenizer.level == "char":  # the floors are in characters per second
        model_config, speed_check = fit_to_speed(model_config, speed_floor, config, rows, device, info, log)
    torch.manual_seed(config.seed)
    model = LSTMLanguageModel(model_config).to(device)
    trainer = Trainer(model, config, device, agreed_training_precision(model_config, config, rows, device, info))
    meta_base = {
        "train": config.to_dict(),
        "effective_batch_size": batch_size,
        "source": source,
        "data_dir": str(data_dir if data_dir != out / "data" else "data"),
        "corpus_chars": corpus_chars,
        "prompt_excerpts": excerpts,
    }
    if speed_check is not None:
        meta_base["speed_check"] = speed_check
    log(f"lstmgen: {corpus_chars:,} characters, vocabulary {tokenizer.vocab_size}, "
        f"{len(split.train):,} for training and {len(split.val):,} held out; "
        f"model {model.num_parameters():,} parameters on {device}"
        + (f", {info.world} processes" if info.enabled else ""))
    if info.is_main:
        (out / "metrics.jsonl").write_text("")
    if info.enabled:
        # The same initial weights everywhere; each rank its own dropout.
        torch.manual_seed(config.seed + 1_000_003 * info.rank)
    return _run(out, trainer, tokenizer, corpus_config, split, batch_size, meta_base, Position(), None,
                progress, log, info)


def resume(run_dir: str | os.PathLike, progress: bool = True, log=print, **limits) -> TrainResult:
    """Continue a run from its last checkpoint, exactly where it stopped.

    ``limits`` may raise ``epochs``, ``max_steps`` or ``max_minutes``; every
    other setting comes from the run itself.
    """
    out = Path(run_dir)
    unknown = set(limits) - {"epochs", "max_steps", "max_minutes"}
    if unknown:
        raise LstmgenError(f"only --epochs, --max-steps and --max-minutes can change on --resume, not {sorted(unknown)}")
    if not out.is_dir():
        raise LstmgenError(f"{out}: no such run directory to resume; give the --out directory of lstmgen train")
    last = out / "last" if (out / "last").exists() else out / ".last.old"
    if not last.exists():
        raise LstmgenError(f"{out} has no last/ checkpoint to resume from; start a new run with lstmgen train")
    checkpoint = load_checkpoint(last)
    meta = checkpoint.meta
    saved = dict(meta["train"])
    saved.setdefault("precision", "fp32")  # runs from before --precision trained in fp32
    config = TrainConfig.from_dict(dict(saved, **{k: v for k, v in limits.items() if v is not None}))
    info = D.setup(config.device)
    if not info.is_main:
        log, progress = (lambda *_: None), False
    finished = False
    try:
        device = D.device_for(info, config.device) or pick_device(config.device)
        model = checkpoint.model.to(device).train()
        rows = D.check_batch(info, meta["effective_batch_size"])
        trainer = Trainer(model, config, device, agreed_training_precision(model.config, config, rows, device, info))
        tensors, data = load_trainer_state(last)
        position, carried = _restore_trainer_state(trainer.optimizer, tensors, data, device, info)
        result = _resume(out, checkpoint, meta, config, trainer, position, carried, progress, log, info)
        finished = True
        return result
    finally:
        D.teardown(info, finished)


def _resume(out: Path, checkpoint, meta: dict, config: TrainConfig, trainer: Trainer, position: Position, carried,
            progress: bool, log, info: D.Dist) -> TrainResult:
    split = load_split(run_data_dir(out, meta))
    meta_base = {k: meta[k] for k in ("effective_batch_size", "source", "corpus_chars", "prompt_excerpts")}
    meta_base["data_dir"] = meta.get("data_dir", "data")
    meta_base["train"] = config.to_dict()
    # Metric rows written after this checkpoint belong to the lost part of the run.
    metrics = out / "metrics.jsonl"
    if info.is_main:
        rows = [line for line in metrics.read_text().splitlines() if line.strip()] if metrics.exists() else []
        kept = [line for line in rows if json.loads(line)["step"] <= position.step]
        metrics.write_text("".join(line + "\n" for line in kept))
    D.barrier(info)
    log(f"lstmgen: resuming {out} at step {position.step} (epoch {position.epoch + 1}, "
        f"batch {position.batch_index})")
    return _run(out, trainer, checkpoint.tokenizer, checkpoint.corpus_config, split,
                meta["effective_batch_size"], meta_base, position, carried, progress, log, info)


def _run(out: Path, trainer: Trainer, tokenizer, corpus_config: CorpusConfig, split,
         batch_size: int, meta_base: dict, pos: Position, carried, progress: bool, log,
         info: D.Dist = D.SINGLE) -> TrainResult:
    model, config, device = trainer.model, trainer.config, trainer.device
    rows = D.check_batch(info, batch_size)
    meta_base = dict(meta_base, precision_chosen={"training": trainer.precision.to_dict()})
    log(f"lstmgen: {trainer.precision.describe('training')}")
    first_row = info.rank * rows  # this rank's share of every batch
    train_model = model
    if info.enabled:
        from torch.nn.parallel import DistributedDataParallel

        train_model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    train_ids, val_ids = split.train, split.val
    steps_per_epoch = len(epoch_batches(config, train_ids, batch_size, 0, drop_last=info.enabled))
    planned = [x for x in (config.max_steps, config.epochs and config.epochs * steps_per_epoch) if x]
    total_steps = min(planned) if planned else None
    budget_s = config.max_minutes * 60 if config.max_minutes else None
    val_eval_ids = val_ids[: config.eval_max_tokens]
    metrics_path = out / "metrics.jsonl"
    history = ([json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
               if metrics_path.exists() else [])

    data_meta = json.loads((run_data_dir(out, meta_base) / "meta.json").read_text(encoding="utf-8"))
    val_chars = data_meta.get("val_chars") if tokenizer.level != "char" else None
    unscored = config.seq_len if config.framing == "windows" else 1
    unit = "chars" if tokenizer.level == "char" else "tokens"

    def validate() -> EvalResult | None:
        if len(val_eval_ids) < 2:
            return None
        if config.framing == "windows":
            result = evaluate_windows(model, val_eval_ids, config.seq_len)
        else:
            result = evaluate_stream(model, val_eval_ids)
        release_pages(val_ids)
        model.train()
        if val_chars:
            # Word and BPE tokens cover several characters: bits per character
            # over the characters the scored tokens stand for.
            if len(val_eval_ids) == len(val_ids):
                chars = val_chars - len(tokenizer.decode(val_ids[:unscored]))
            else:
                chars = round(val_chars * result.tokens / len(val_ids))
            result = result.with_chars(max(chars, 1))
        return result

    best: EvalResult | None = None
    session_start = time.perf_counter()
    elapsed_before = pos.elapsed_s
    last_save = time.perf_counter()

    def elapsed() -> float:
        return elapsed_before + time.perf_counter() - session_start

    def save(val: EvalResult | None, epoch_float: float, with_row: bool, rank_states=None) -> bool:
        """Write last/ (and best/ when improved). Returns whether best/ improved."""
        nonlocal best
        pos.elapsed_s = elapsed()
        train_loss = float(np.mean(pos.recent_loss)) if pos.recent_loss else math.nan
        row = {
            "step": pos.step, "epoch": round(epoch_float, 4), "elapsed_s": round(pos.elapsed_s, 2),
            "train_s": round(pos.train_s, 3),
            "lr": trainer.optimizer.param_groups[0]["lr"], "train_loss_nats": round(train_loss, 5),
            "train_chars_per_second": round(pos.trained_chars / max(pos.elapsed_s, 1e-9), 1),
        }
        if val is not None:
            row.update(val_loss_nats=round(val.loss_nats, 5), val_bits_per_char=round(val.bits_per_char, 5),
                       val_perplexity=round(val.perplexity, 4))
        improved = False
        if with_row:
            if val is not None:
                improved = pos.best_val_loss is None or val.loss_nats < pos.best_val_loss
                pos.stale_evals = 0 if improved else pos.stale_evals + 1
                pos.plateau_stale = 0 if improved else pos.plateau_stale + 1
                if config.lr_schedule == "plateau" and pos.plateau_stale >= config.plateau_patience:
                    pos.plateau_scale *= config.plateau_factor
                    pos.plateau_stale = 0
            elif not len(val_eval_ids) >= 2:
                improved = train_loss < pos.best_train_loss  # no held-out text: best by training loss
            history.append(row)
            with open(metrics_path, "a") as f:
                f.write(json.dumps(row) + "\n")
        meta = dict(meta_base, progress=row)
        if improved:
            if val is not None:
                best = val
                pos.best_val_loss = val.loss_nats
            pos.best_train_loss = min(pos.best_train_loss, train_loss)
            save_checkpoint(out / "best", model, tokenizer, corpus_config, dict(meta, best=True))
        save_checkpoint(out / "last", model, tokenizer, corpus_config, meta,
                        trainer_state=_trainer_state(trainer.optimizer, pos, carried, rank_states))
        return improved

    stopped_by = "epochs"
    steps_this_session = 0
    model.train()
    with _StopSignals() as stop:
        try:
            done = False
            while not done:
                if config.epochs is not None and pos.epoch >= config.epochs:
                    break
                if config.max_steps is not None and pos.step >= config.max_steps:
                    stopped_by = "max_steps"
                    break
                batches = epoch_batches(config, train_ids, batch_size, pos.epoch, drop_last=info.enabled)
                bar = tqdm(total=len(batches), initial=pos.batch_index,
                           desc=f"epoch {pos.epoch + 1}" + (f"/{config.epochs}" if config.epochs else ""),
                           disable=not progress, leave=False, unit="step", dynamic_ncols=True, mininterval=0.5)
                for i in range(pos.batch_index, len(batches)):
                    x_np, y_np = batches.batch(i)
                    x_np, y_np = x_np[first_row:first_row + rows], y_np[first_row:first_row + rows]
                    x = torch.from_numpy(x_np).to(device, non_blocking=True)
                    y = torch.from_numpy(y_np).to(device, non_blocking=True)
                    fraction = max(pos.step / total_steps if total_steps else 0.0,
                                   elapsed() / budget_s if budget_s else 0.0)
                    lr = trainer.lr_at(pos.step, fraction, pos.plateau_scale)
                    for group in trainer.optimizer.param_groups:
                        group["lr"] = lr
                    step_start = time.perf_counter()
                    loss, carried = trainer.step(train_model, x, y, carried)
                    loss_value = loss.item()
                    pos.train_s += time.perf_counter() - step_start
                    if not math.isfinite(loss_value):
                        raise LstmgenError(
                            f"training diverged (loss {loss_value} at step {pos.step}); lower --lr or set --grad-clip")
                    pos.recent_loss = (pos.recent_loss + [loss_value])[-50:]
                    pos.step += 1
                    steps_this_session += 1
                    pos.trained_chars += info.world * len(x_np) * (x_np.shape[1] if config.framing == "stream" else 1)
                    pos.batch_index = i + 1
                    if pos.step % 256 == 0:
                        release_pages(train_ids)  # keep RSS flat on a corpus larger than memory
                    epoch_float = pos.epoch + (i + 1) / len(batches)
                    at_epoch_end = i == len(batches) - 1
                    if at_epoch_end:
                        # The saved position must point at the next epoch's start.
                        pos.epoch += 1
                        pos.batch_index = 0
                        carried = None
                    now_elapsed = elapsed()
                    bar.set_postfix_str(
                        f"loss {np.mean(pos.recent_loss):.3f} · {pos.trained_chars / max(now_elapsed, 1e-9):,.0f} {unit}/s",
                        refresh=False)
                    bar.update(1)
                    # Clock- and signal-driven decisions are agreed on by all
                    # ranks, so that every rank stops or saves at the same step.
                    signum, out_of_time, checkpoint_due = D.agree(info, [
                        float(stop.signum or 0),
                        float(budget_s is not None and now_elapsed >= budget_s),
                        float(bool(config.checkpoint_minutes)
                              and time.perf_counter() - last_save >= (config.checkpoint_minutes or 0) * 60),
                    ], device)
                    if signum:
                        stop.signum = int(signum)
                    reached = None
                    if config.max_steps is not None and pos.step >= config.max_steps:
                        reached = "max_steps"
                    elif out_of_time:
                        reached = "max_minutes"
                    evaluate_now = at_epoch_end or reached or (config.eval_every and pos.step % config.eval_every == 0)
                    save_now = evaluate_now or stop.signum is not None or checkpoint_due or (
                        config.checkpoint_every and pos.step % config.checkpoint_every == 0)
                    if save_now:
                        rank_states = D.gather(info, (torch.get_rng_state(), None if carried is None else
                                                      (carried[0].cpu(), carried[1].cpu())))
                        if info.is_main:
                            val = validate() if evaluate_now else None
                            try:
                                improved = save(val, epoch_float, with_row=bool(evaluate_now),
                                                rank_states=rank_states if info.enabled else None)
                            except OSError as exc:
                                raise _disk_error(out, exc) from None
                        last_save = time.perf_counter()
                        if evaluate_now and config.stop_at_loss is not None:
                            hit = info.is_main and val is not None and val.loss_nats <= config.stop_at_loss
                            if D.agree(info, [float(hit)], device)[0] and not reached:
                                reached = "stop_at_loss"
                        if evaluate_now and config.lr_schedule == "plateau":
                            # Only rank 0 validates; the others take its rate.
                            pos.plateau_scale = D.agree(info, [pos.plateau_scale if info.is_main else 0.0], device)[0]
                        if evaluate_now and config.patience is not None:
                            spent = info.is_main and pos.stale_evals >= config.patience
                            if D.agree(info, [float(spent)], device)[0] and not reached:
                                reached = "patience"
                        if evaluate_now and info.is_main:
                            msg = f"epoch {epoch_float:.2f} step {pos.step}: train {np.mean(pos.recent_loss):.4f} nats"
                            if val is not None:
                                msg += f" · val {_format_eval(val)}" + (" · best so far" if improved else "")
                            (bar.write if progress else log)(msg)
                    if stop.signum is not None:
                        name = signal.Signals(stop.signum).name
                        raise TrainingInterrupted(
                            f"stopped by {name} at step {pos.step}; the checkpoint is saved. "
                            f"Continue with: lstmgen train --resume {out}", stop.signum)
                    if reached:
                        stopped_by = reached
                        done = True
                        break
                bar.close()
        except OSError as exc:
            raise _disk_error(out, exc) from None

    seconds = time.perf_counter() - session_start
    if steps_this_session == 0:
        log(f"lstmgen: {out} has already reached its limits at step {pos.step}; "
            "raise --epochs, --max-steps or --max-minutes to train longer")
    result = TrainResult(
        run_dir=out, best_val=best, steps=pos.step,
        epochs_completed=history[-1]["epoch"] if history else 0.0, seconds=seconds,
        train_chars_per_second=pos.trained_chars / max(pos.elapsed_s or elapsed(), 1e-9), stopped_by=stopped_by,
        history=history, best_val_loss=pos.best_val_loss,
    )
    if pos.best_val_loss is not None:
        log(f"lstmgen: best validation loss {pos.best_val_loss:.4f} nats; saved in {out / 'best'}")
    log(f"lstmgen: {pos.step} steps, {pos.elapsed_s or elapsed():.1f} s of training "
        f"({result.train_chars_per_second:,.0f} {'characters' if unit == 'chars' else 'tokens'}/s); "
        f"generate with: lstmgen generate {out}")
    return result
