"""What a run leaves behind: a metrics row per validation (metrics.jsonl),
best/ when the held-out loss improves, and last/ with everything a resume needs."""

from __future__ import annotations

import json
import time
from pathlib import Path

from ..checkpoint import save_checkpoint
from ..curves import write_run_curves
from ..errors import LstmgenError
from ..evaluate import EvalResult
from ..text.corpus import CorpusConfig
from .state import Position, trainer_state
from .trainer import Trainer


def disk_error(out: Path, exc: OSError) -> LstmgenError:
    return LstmgenError(
        f"could not write to {out} ({exc.strerror or exc}); the last good checkpoint is intact. "
        f"Free some disk space, then continue with: lstmgen train --resume {out}"
    )


def format_eval(result: EvalResult) -> str:
    per_item = f", {result.nats_per_item:.2f} nats/item" if result.items else ""
    return (f"{result.loss_nats:.4f} nats ({result.bits_per_char:.3f} bits/char, perplexity {result.perplexity:.2f}"
            f"{per_item})")


class Recorder:
    def __init__(self, out: Path, trainer: Trainer, tokenizer, corpus_config: CorpusConfig, meta_base: dict,
                 draws: bool = True):
        self.draws = draws
        """Whether this process draws curves.png (in a multi-process run, one does)."""
        self.out, self.trainer, self.tokenizer, self.corpus_config = out, trainer, tokenizer, corpus_config
        self.meta_base = meta_base
        self.metrics_path = out / "metrics.jsonl"
        self.history = ([json.loads(line) for line in self.metrics_path.read_text().splitlines() if line.strip()]
                        if self.metrics_path.exists() else [])
        self.best: EvalResult | None = None
        """The best validation of this sitting (earlier ones: Position.best_val_loss)."""
        self.curves_drawn_at: float | None = None
        self.curves_failed = False

    @staticmethod
    def is_best(pos: Position, val: EvalResult | None) -> bool:
        """A new best held-out loss; with no held-out text, a new best training loss."""
        if val is not None:
            return pos.best_val_loss is None or val.loss_nats < pos.best_val_loss
        return pos.train_loss_nats < pos.best_train_loss

    def row(self, pos: Position, epoch_float: float, val: EvalResult | None) -> dict:
        row = {
            "step": pos.step, "epoch": round(epoch_float, 4), "elapsed_s": round(pos.elapsed_s, 2),
            "train_s": round(pos.train_s, 3),
            "trained_tokens": pos.trained_chars,
            "lr": self.trainer.optimizer.param_groups[0]["lr"], "train_loss_nats": round(pos.train_loss_nats, 5),
            "train_chars_per_second": round(pos.trained_chars / max(pos.elapsed_s, 1e-9), 1),
        }
        if val is not None:
            row.update(val_loss_nats=round(val.loss_nats, 5), val_bits_per_char=round(val.bits_per_char, 5),
                       val_perplexity=round(val.perplexity, 4))
            if val.items:
                row.update(val_nats_per_item=round(val.nats_per_item, 4))
        return row

    def save(self, pos: Position, epoch_float: float, val: EvalResult | None, *, with_row: bool, improved: bool,
             carried, rank_states=None) -> None:
        """Append the metrics row (at a validation), write best/ if ``improved``, and always last/."""
        row = self.row(pos, epoch_float, val)
        if with_row:
            self.history.append(row)
            with open(self.metrics_path, "a") as f:
                f.write(json.dumps(row) + "\n")
        meta = dict(self.meta_base, progress=row)
        model = self.trainer.model
        if improved:
            if val is not None:
                self.best = val
                pos.best_val_loss = val.loss_nats
            pos.best_train_loss = min(pos.best_train_loss, pos.train_loss_nats)
            save_checkpoint(self.out / "best", model, self.tokenizer, self.corpus_config, dict(meta, best=True))
        save_checkpoint(self.out / "last", model, self.tokenizer, self.corpus_config, meta,
                        trainer_state=trainer_state(self.trainer.optimizer, pos, carried, rank_states))

    def draw_curves(self, log, final: bool = False) -> None:
        """RUN_DIR/curves.png, once there are two metrics rows: at the end,
        and at a checkpoint when the last drawing is over CURVES_EVERY_S old
        (a drawing takes about 0.3 s, plus 1 s to import matplotlib the first
        time). A failure is one warning, once; training goes on."""
        now = time.perf_counter()
        due = final or self.curves_drawn_at is None or now - self.curves_drawn_at >= CURVES_EVERY_S
        # One row is a point, not a curve (and a run of a few steps is spared matplotlib's second).
        if not self.draws or len(self.history) < 2 or self.curves_failed or not due:
            return
        self.curves_drawn_at = now
        try:
            write_run_curves(self.out)
        except LstmgenError as exc:
            self.curves_failed = True
            log(f"lstmgen: warning: no curves.png: {exc}")


CURVES_EVERY_S = 60.0
