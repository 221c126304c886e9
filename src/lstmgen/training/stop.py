"""When to evaluate, save and stop: epochs, steps, the clock, --stop-at-loss,
patience and signals, each decision agreed across DDP ranks here and nowhere
else, so that every rank saves and stops at the same step."""

from __future__ import annotations

import signal
import threading
import time
from dataclasses import dataclass

import torch

from ..errors import TrainingInterrupted
from ..evaluate import EvalResult
from . import distributed as D
from .config import TrainConfig
from .state import Position


class StopSignals:
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


class Clock:
    """Training time over every sitting of a run, and time since the last save."""

    def __init__(self, elapsed_before_s: float):
        self.elapsed_before_s = elapsed_before_s
        self.start = time.perf_counter()
        self.last_save = self.start

    def elapsed_s(self) -> float:
        return self.elapsed_before_s + time.perf_counter() - self.start

    def since_save_s(self) -> float:
        return time.perf_counter() - self.last_save

    def saved(self) -> None:
        self.last_save = time.perf_counter()


@dataclass
class StepDecision:
    """What to do after a step, the same on every rank."""

    evaluate: bool
    save: bool
    reached: str | None
    """The limit this step reached ('max_steps', 'max_minutes', later also
    'stop_at_loss' or 'patience'), or None to go on."""


class StopPolicy:
    def __init__(self, config: TrainConfig, steps_per_epoch: int, clock: Clock, signals: StopSignals,
                 info: D.Dist, device: torch.device):
        self.config, self.clock, self.signals, self.info, self.device = config, clock, signals, info, device
        planned = [x for x in (config.max_steps, config.epochs and config.epochs * steps_per_epoch) if x]
        self.total_steps = min(planned) if planned else None
        self.budget_s = config.max_minutes * 60 if config.max_minutes else None

    def progress(self, pos: Position) -> float:
        """The fraction of the planned steps or minutes spent, whichever is further."""
        return max(pos.step / self.total_steps if self.total_steps else 0.0,
                   self.clock.elapsed_s() / self.budget_s if self.budget_s else 0.0)

    def before_epoch(self, pos: Position) -> str | None:
        """The limit already reached before another epoch starts, or None."""
        if self.config.epochs is not None and pos.epoch >= self.config.epochs:
            return "epochs"
        if self.config.max_steps is not None and pos.step >= self.config.max_steps:
            return "max_steps"
        return None

    def after_step(self, pos: Position, at_epoch_end: bool, elapsed_s: float) -> StepDecision:
        """The clock and signals are read on every rank and agreed (the
        largest wins), then the step count decides the rest alike everywhere."""
        c = self.config
        signum, out_of_time, checkpoint_due = D.agree(self.info, [
            float(self.signals.signum or 0),
            float(self.budget_s is not None and elapsed_s >= self.budget_s),
            float(bool(c.checkpoint_minutes) and self.clock.since_save_s() >= (c.checkpoint_minutes or 0) * 60),
        ], self.device)
        if signum:
            self.signals.signum = int(signum)
        reached = None
        if c.max_steps is not None and pos.step >= c.max_steps:
            reached = "max_steps"
        elif out_of_time:
            reached = "max_minutes"
        evaluate = bool(at_epoch_end or reached or (c.eval_every and pos.step % c.eval_every == 0))
        save = evaluate or self.signals.signum is not None or bool(checkpoint_due) or bool(
            c.checkpoint_every and pos.step % c.checkpoint_every == 0)
        return StepDecision(evaluate, save, reached)

    def after_validation(self, pos: Position, val: EvalResult | None, reached: str | None) -> str | None:
        """Only the first rank validates: its stop-at-loss and patience
        verdicts and its plateau rate reach every rank in one agreement."""
        c, main = self.config, self.info.is_main
        hit = c.stop_at_loss is not None and main and val is not None and val.loss_nats <= c.stop_at_loss
        spent = c.patience is not None and main and pos.stale_evals >= c.patience
        hit, scale, spent = D.agree(self.info, [float(hit), pos.plateau_scale if main else 0.0, float(spent)],
                                    self.device)
        if c.lr_schedule == "plateau":
            pos.plateau_scale = scale
        if reached:
            return reached
        if hit:
            return "stop_at_loss"
        return "patience" if spent else None

    def raise_if_signalled(self, pos: Position, out) -> None:
        if self.signals.signum is not None:
            name = signal.Signals(self.signals.signum).name
            raise TrainingInterrupted(f"stopped by {name} at step {pos.step}; the checkpoint is saved. "
                                      f"Continue with: lstmgen train --resume {out}", self.signals.signum)


def note_validation(pos: Position, improved: bool) -> None:
    """Count validations in a row without a new best held-out loss (patience)."""
    pos.stale_evals = 0 if improved else pos.stale_evals + 1
