"""The training loop: contiguous streams, truncated BPTT, a loss at every position."""

from __future__ import annotations

import json
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .checkpoint import save_checkpoint
from .corpus import CorpusConfig, read_corpus
from .data import StreamBatches, WindowBatches, save_split
from .errors import LstmgenError
from .evaluate import EvalResult, evaluate_stream, evaluate_windows
from .model import LSTMLanguageModel, ModelConfig
from .tokenizer import CharTokenizer

FRAMINGS = ("stream", "windows")
SCHEDULES = ("constant", "cosine")


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
    lr: float = 3e-3
    """Peak learning rate for Adam."""
    lr_schedule: str = "cosine"
    """'constant', or 'cosine' decay to lr/10 over the planned steps or minutes."""
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
    seed: int = 1337
    """Seeds weights, data order and dropout."""
    device: str = "auto"
    """'auto' (CUDA when present), 'cpu' or 'cuda'."""

    def __post_init__(self) -> None:
        if self.framing not in FRAMINGS:
            raise LstmgenError(f"--framing must be one of {', '.join(FRAMINGS)}, got {self.framing!r}")
        if self.lr_schedule not in SCHEDULES:
            raise LstmgenError(f"--lr-schedule must be one of {', '.join(SCHEDULES)}, got {self.lr_schedule!r}")
        checks = [
            ("--batch-size", self.batch_size, 1), ("--seq-len", self.seq_len, 1),
            ("--epochs", self.epochs, 1), ("--max-steps", self.max_steps, 1),
            ("--warmup-steps", self.warmup_steps, 0), ("--eval-every", self.eval_every, 1),
            ("--eval-max-tokens", self.eval_max_tokens, 2),
        ]
        for flag, value, low in checks:
            if value is not None and value < low:
                raise LstmgenError(f"{flag} must be {low} or more, got {value}")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise LstmgenError(f"--max-minutes must be more than 0, got {self.max_minutes}")
        if not self.lr > 0 or math.isinf(self.lr):
            raise LstmgenError(f"--lr must be a positive number, got {self.lr}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise LstmgenError(f"--grad-clip must be more than 0, got {self.grad_clip}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise LstmgenError(f"--val-fraction must be in [0, 1), got {self.val_fraction}")
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


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise LstmgenError("--device cuda was asked for, but PyTorch sees no CUDA GPU; use --device cpu")
    return torch.device(name)


def prepare_run_dir(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise LstmgenError(f"{out} is a file; give a directory for --out")
    if out.is_dir() and any((out / n).exists() for n in ("best", "last")) and not force:
        raise LstmgenError(f"{out} already holds a training run; pass --force to overwrite it or choose another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
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


class Trainer:
    def __init__(self, model: LSTMLanguageModel, config: TrainConfig, device: torch.device):
        self.model = model
        self.config = config
        self.device = device
        self.optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)

    def lr_at(self, step: int, progress: float) -> float:
        c = self.config
        if c.warmup_steps and step < c.warmup_steps:
            return c.lr * (step + 1) / c.warmup_steps
        if c.lr_schedule == "constant":
            return c.lr
        progress = min(max(progress, 0.0), 1.0)
        floor = c.lr / 10
        return floor + (c.lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def _format_eval(result: EvalResult) -> str:
    return f"{result.loss_nats:.4f} nats ({result.bits_per_char:.3f} bits/char, perplexity {result.perplexity:.2f})"


def train(
    corpus_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    model_options: dict | None = None,
    corpus_config: CorpusConfig | None = None,
    train_config: TrainConfig | None = None,
    force: bool = False,
    progress: bool = True,
    log=print,
) -> TrainResult:
    """Train a model on a text file and write checkpoints to ``out_dir``.

    ``model_options`` are ModelConfig fields except vocab_size, which comes
    from the corpus.
    """
    corpus_config = corpus_config or CorpusConfig()
    config = train_config or TrainConfig(max_minutes=5.0)
    out = Path(out_dir)
    # Check everything that can be checked before touching the disk or the clock.
    ModelConfig(vocab_size=1, **(model_options or {}))
    prepare_run_dir(out, force)

    corpus = read_corpus(corpus_path, corpus_config)
    for note in corpus.notes:
        log(f"lstmgen: {note}")
    text = corpus.text
    tokenizer = CharTokenizer.from_text(text)
    ids = tokenizer.encode(text)
    if len(ids) < config.seq_len + 1:
        raise LstmgenError(
            f"the corpus has {len(ids):,} characters after cleaning, fewer than --seq-len {config.seq_len} + 1; "
            "lower --seq-len or give more text"
        )
    split = save_split(out / "data", ids, config.val_fraction,
                       {"source": str(corpus_path), "vocab_size": tokenizer.vocab_size})
    train_ids, val_ids = split.train, split.val
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

    batch_size = config.batch_size
    if config.framing == "stream":
        fit = (len(train_ids) - 1 - config.seq_len) // config.seq_len
        if fit < batch_size:
            batch_size = max(1, fit)
            log(f"lstmgen: the training text is short, so --batch-size is lowered to {batch_size}")

    device = pick_device(config.device)
    torch.manual_seed(config.seed)
    np_rng = np.random.default_rng(config.seed)
    py_rng = random.Random(config.seed)
    model_config = ModelConfig(vocab_size=tokenizer.vocab_size, **(model_options or {}))
    model = LSTMLanguageModel(model_config).to(device)
    trainer = Trainer(model, config, device)
    excerpts = sample_excerpts(text[: len(train_ids)], py_rng)
    log(f"lstmgen: {len(text):,} characters, vocabulary {tokenizer.vocab_size}, "
        f"{len(train_ids):,} for training and {len(val_ids):,} held out; "
        f"model {model.num_parameters():,} parameters on {device}")

    def make_epoch(epoch: int):
        if config.framing == "stream":
            offset = int(np_rng.integers(0, config.seq_len)) if epoch > 0 else 0
            # A random offset must not make the epoch empty on a short text.
            try:
                return StreamBatches(train_ids, batch_size, config.seq_len, offset)
            except LstmgenError:
                return StreamBatches(train_ids, batch_size, config.seq_len, 0)
        return WindowBatches(train_ids, batch_size, config.seq_len, np_rng)

    steps_per_epoch = len(make_epoch(0))
    planned = [x for x in (config.max_steps, config.epochs and config.epochs * steps_per_epoch) if x]
    total_steps = min(planned) if planned else None
    budget_s = config.max_minutes * 60 if config.max_minutes else None

    val_eval_ids = val_ids[: config.eval_max_tokens]

    def validate() -> EvalResult | None:
        if len(val_eval_ids) < 2:
            return None
        if config.framing == "windows":
            result = evaluate_windows(model, val_eval_ids, config.seq_len)
        else:
            result = evaluate_stream(model, val_eval_ids)
        model.train()
        return result

    metrics_path = out / "metrics.jsonl"
    metrics_path.write_text("")
    history: list[dict] = []
    best: EvalResult | None = None
    best_train_loss = math.inf
    meta_base = {
        "train": config.to_dict(),
        "effective_batch_size": batch_size,
        "source": str(corpus_path),
        "corpus_chars": len(text),
        "prompt_excerpts": excerpts,
    }

    start = time.perf_counter()
    step = 0
    epoch = 0
    stopped_by = "epochs"
    recent_loss: list[float] = []
    trained_chars = 0
    model.train()

    def checkpoint(val: EvalResult | None, epoch_float: float, train_loss: float) -> bool:
        nonlocal best, best_train_loss
        elapsed = time.perf_counter() - start
        row = {
            "step": step, "epoch": round(epoch_float, 4), "elapsed_s": round(elapsed, 2),
            "lr": trainer.optimizer.param_groups[0]["lr"], "train_loss_nats": round(train_loss, 5),
            "train_chars_per_second": round(trained_chars / max(elapsed, 1e-9), 1),
        }
        if val is not None:
            row.update(val_loss_nats=round(val.loss_nats, 5), val_bits_per_char=round(val.bits_per_char, 5),
                       val_perplexity=round(val.perplexity, 4))
        history.append(row)
        with open(metrics_path, "a") as f:
            f.write(json.dumps(row) + "\n")
        meta = dict(meta_base, progress=row)
        improved = (val.loss_nats < best.loss_nats) if (val is not None and best is not None) else (
            val is not None or train_loss < best_train_loss)
        if improved:
            if val is not None:
                best = val
            best_train_loss = min(best_train_loss, train_loss)
            save_checkpoint(out / "best", model, tokenizer, corpus_config, dict(meta, best=True))
        save_checkpoint(out / "last", model, tokenizer, corpus_config, meta)
        return improved

    done = False
    while not done:
        if config.epochs is not None and epoch >= config.epochs:
            break
        batches = make_epoch(epoch)
        state = None
        bar = tqdm(total=len(batches), desc=f"epoch {epoch + 1}" + (f"/{config.epochs}" if config.epochs else ""),
                   disable=not progress, leave=False, unit="step", dynamic_ncols=True, mininterval=0.5)
        for i in range(len(batches)):
            x_np, y_np = batches.batch(i)
            x = torch.from_numpy(x_np).to(device, non_blocking=True)
            y = torch.from_numpy(y_np).to(device, non_blocking=True)
            elapsed = time.perf_counter() - start
            fraction = max(step / total_steps if total_steps else 0.0, elapsed / budget_s if budget_s else 0.0)
            lr = trainer.lr_at(step, fraction)
            for group in trainer.optimizer.param_groups:
                group["lr"] = lr
            if config.framing == "stream":
                logits, loss, state = model(x, state, y)
                # Truncated BPTT: keep the state's values, drop its history.
                state = (state[0].detach(), state[1].detach())
            else:
                logits, loss, _ = model(x, None, y, last_only=True)
            trainer.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            trainer.optimizer.step()
            loss_value = loss.item()
            if not math.isfinite(loss_value):
                bar.close()
                raise LstmgenError(f"training diverged (loss {loss_value} at step {step}); lower --lr or set --grad-clip")
            recent_loss.append(loss_value)
            del recent_loss[:-50]
            step += 1
            trained_chars += len(x_np) * (x_np.shape[1] if config.framing == "stream" else 1)
            elapsed = time.perf_counter() - start
            bar.set_postfix_str(f"loss {np.mean(recent_loss):.3f} · {trained_chars / elapsed:,.0f} chars/s",
                                refresh=False)
            bar.update(1)
            reached = None
            if config.max_steps is not None and step >= config.max_steps:
                reached = "max_steps"
            elif budget_s is not None and elapsed >= budget_s:
                reached = "max_minutes"
            at_epoch_end = i == len(batches) - 1
            if at_epoch_end or reached or (config.eval_every and step % config.eval_every == 0):
                val = validate()
                epoch_float = epoch + (i + 1) / len(batches)
                improved = checkpoint(val, epoch_float, float(np.mean(recent_loss)))
                msg = f"epoch {epoch_float:.2f} step {step}: train {np.mean(recent_loss):.4f} nats"
                if val is not None:
                    msg += f" · val {_format_eval(val)}" + (" · best so far" if improved else "")
                (bar.write if progress else log)(msg)
            if reached:
                stopped_by = reached
                done = True
                break
        bar.close()
        epoch += 1

    seconds = time.perf_counter() - start
    result = TrainResult(
        run_dir=out, best_val=best, steps=step,
        epochs_completed=history[-1]["epoch"] if history else 0.0, seconds=seconds,
        train_chars_per_second=trained_chars / max(seconds, 1e-9), stopped_by=stopped_by, history=history,
    )
    if best is not None:
        log(f"lstmgen: best validation loss {_format_eval(best)}; saved in {out / 'best'}")
    log(f"lstmgen: {step} steps in {seconds:.1f} s ({result.train_chars_per_second:,.0f} characters/s); "
        f"generate with: lstmgen generate {out}")
    return result
