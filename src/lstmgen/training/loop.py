"""The training loop: contiguous streams, truncated BPTT, a loss at every
position. Each decision in it is a named call: the schedule (schedule.py),
the stop policy (stop.py), the recorder (recorder.py)."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..errors import LstmgenError
from ..text.batches import IGNORE, ItemBatches, StreamBatches, WindowBatches, rank_rows, release_pages
from ..text.corpus import CorpusConfig
from . import distributed as D
from .config import TrainConfig, TrainResult
from .recorder import Recorder, disk_error, format_eval
from .schedule import lr_at, plateau_after_validation, set_lr
from .state import Position
from .stop import Clock, StopPolicy, StopSignals, note_validation
from .trainer import Trainer
from .validation import HeldOut


def epoch_batches(config: TrainConfig, split, batch_size: int, epoch: int, info: D.Dist = D.SINGLE):
    """The batches of one epoch. Their randomness comes from (seed, epoch)
    alone, so a resumed run rebuilds exactly the epoch it stopped in."""
    rng = np.random.default_rng([config.seed, epoch])
    train_ids, drop_last = split.train, info.enabled
    if config.items:
        return ItemBatches(train_ids, split.train_ends, batch_size * config.seq_len, rng)
    if config.framing == "windows":
        return WindowBatches(train_ids, batch_size, config.seq_len, rng, drop_last=drop_last)
    offset = int(rng.integers(0, config.seq_len)) if epoch > 0 else 0
    try:
        return StreamBatches(train_ids, batch_size, config.seq_len, offset)
    except LstmgenError:  # a random offset must not empty the epoch of a short text
        return StreamBatches(train_ids, batch_size, config.seq_len, 0)


def run_data_dir(run_dir: Path, meta: dict) -> Path:
    """The token files of a run: its own data/ or the prepared data it names."""
    return Path(run_dir) / meta.get("data_dir", "data")


def run(out: Path, trainer: Trainer, tokenizer, corpus_config: CorpusConfig, split, batch_size: int,
        meta_base: dict, pos: Position, carried, progress: bool, log, info: D.Dist = D.SINGLE) -> TrainResult:
    """Train from ``pos`` until a limit, a signal or an error; checkpoints on the way."""
    model, config, device = trainer.model, trainer.config, trainer.device
    rows = D.check_batch(info, batch_size)
    first_row = info.rank * rows  # this rank's share of every batch
    log(f"lstmgen: {trainer.precision.describe('training')}")
    meta_base = dict(meta_base, precision_chosen={"training": trainer.precision.to_dict()})
    recorder = Recorder(out, trainer, tokenizer, corpus_config, meta_base, draws=info.is_main)
    held_out = HeldOut(split.val, config, tokenizer, run_data_dir(out, meta_base), split.val_ends)
    train_model = D.wrap(model, device, info)
    clock = Clock(pos.elapsed_s)
    steps_at_start = pos.step
    model.train()
    with StopSignals() as signals:
        first_epoch = epoch_batches(config, split, batch_size, 0, info)
        if config.items:
            log(f"lstmgen: items batched by length: {first_epoch.padding_share:.1%} of the positions are padding")
        stop = StopPolicy(config, len(first_epoch), clock, signals, info, device)
        try:
            stopped_by = stop.before_epoch(pos)
            while stopped_by is None:
                batches = epoch_batches(config, split, batch_size, pos.epoch, info)
                bar = epoch_bar(config, pos, len(batches), progress)
                for i in range(pos.batch_index, len(batches)):
                    x, y, chars = rank_batch(batches, i, first_row, rows, device, config, info)
                    set_lr(trainer.optimizer, lr_at(config, pos.step, stop.progress(pos), pos.plateau_scale))
                    step_start = time.perf_counter()
                    # Items: the loss is summed and divided by the whole batch's tokens (see Trainer.step).
                    loss, carried = trainer.step(train_model, x, y, carried, info.world / chars if config.items else None)
                    loss_nats = loss.item()
                    pos.train_s += time.perf_counter() - step_start
                    check_finite(loss_nats, pos)
                    pos.advance(loss_nats, i + 1, chars)
                    if pos.step % 256 == 0:
                        release_pages(split.train)  # keep RSS flat on a corpus larger than memory
                    epoch_float = pos.epoch + (i + 1) / len(batches)
                    at_epoch_end = i == len(batches) - 1
                    if at_epoch_end:
                        pos.next_epoch()
                        carried = None
                    elapsed_s = clock.elapsed_s()
                    show_progress(bar, pos, elapsed_s, tokenizer)
                    decision = stop.after_step(pos, at_epoch_end, elapsed_s)
                    if decision.save:
                        rank_states = D.gather(info, (torch.get_rng_state(), None if carried is None else
                                                      (carried[0].cpu(), carried[1].cpu())))
                        val = improved = None
                        if info.is_main:
                            val = held_out.evaluate(model) if decision.evaluate else None
                            improved = decision.evaluate and recorder.is_best(pos, val)
                            if val is not None:
                                note_validation(pos, improved)
                                plateau_after_validation(config, pos, improved)
                            pos.elapsed_s = clock.elapsed_s()
                            recorder.save(pos, epoch_float, val, with_row=decision.evaluate, improved=improved,
                                          carried=carried, rank_states=rank_states if info.enabled else None)
                            recorder.draw_curves(log)
                        clock.saved()
                        if decision.evaluate:
                            decision.reached = stop.after_validation(pos, val, decision.reached)
                            if info.is_main:
                                report_validation(bar if progress else None, log, pos, epoch_float, val, improved)
                    stop.raise_if_signalled(pos, out)
                    if decision.reached:
                        stopped_by = decision.reached
                        break
                bar.close()
                stopped_by = stopped_by or stop.before_epoch(pos)
        except OSError as exc:
            raise disk_error(out, exc) from None
    return finish(out, recorder, pos, clock, pos.step - steps_at_start, stopped_by, tokenizer, log)


def rank_batch(batches, i: int, first_row: int, rows: int, device: torch.device, config: TrainConfig,
               info: D.Dist) -> tuple[torch.Tensor, torch.Tensor, int]:
    """This rank's rows of batch ``i``, on the device, and the characters the whole batch trains on."""
    x_np, y_np = batches.batch(i)
    if config.items:  # rows differ from batch to batch; each process takes as even a share as they allow
        chars = int((y_np != IGNORE).sum())
        x_np, y_np = rank_rows(x_np, y_np, info.rank, info.world)
    else:
        chars = info.world * rows * (x_np.shape[1] if config.framing == "stream" else 1)
        x_np, y_np = x_np[first_row:first_row + rows], y_np[first_row:first_row + rows]
    x = torch.from_numpy(x_np).to(device, non_blocking=True)
    y = torch.from_numpy(y_np).to(device, non_blocking=True)
    return x, y, chars


def check_finite(loss_nats: float, pos: Position) -> None:
    if not math.isfinite(loss_nats):
        raise LstmgenError(f"training diverged (loss {loss_nats} at step {pos.step}); lower --lr or set --grad-clip")


def epoch_bar(config: TrainConfig, pos: Position, total: int, progress: bool) -> tqdm:
    return tqdm(total=total, initial=pos.batch_index,
                desc=f"epoch {pos.epoch + 1}" + (f"/{config.epochs}" if config.epochs else ""),
                disable=not progress, leave=False, unit="step", dynamic_ncols=True, mininterval=0.5)


def show_progress(bar: tqdm, pos: Position, elapsed_s: float, tokenizer) -> None:
    unit = "chars" if tokenizer.level == "char" else "tokens"
    bar.set_postfix_str(f"loss {np.mean(pos.recent_loss):.3f} · {pos.trained_chars / max(elapsed_s, 1e-9):,.0f} {unit}/s",
                        refresh=False)
    bar.update(1)


def report_validation(bar: tqdm | None, log, pos: Position, epoch_float: float, val, improved: bool) -> None:
    msg = f"epoch {epoch_float:.2f} step {pos.step}: train {np.mean(pos.recent_loss):.4f} nats"
    if val is not None:
        msg += f" · val {format_eval(val)}" + (" · best so far" if improved else "")
    (bar.write if bar is not None else log)(msg)


def finish(out: Path, recorder: Recorder, pos: Position, clock: Clock, steps: int, stopped_by: str,
           tokenizer, log) -> TrainResult:
    """The run's result, and the closing lines."""
    if steps == 0:
        log(f"lstmgen: {out} has already reached its limits at step {pos.step}; "
            "raise --epochs, --max-steps or --max-minutes to train longer")
    history = recorder.history
    recorder.draw_curves(log, final=True)
    result = TrainResult(
        run_dir=out, best_val=recorder.best, steps=pos.step,
        epochs_completed=history[-1]["epoch"] if history else 0.0, seconds=time.perf_counter() - clock.start,
        train_chars_per_second=pos.trained_chars / max(pos.elapsed_s or clock.elapsed_s(), 1e-9),
        stopped_by=stopped_by, history=history, best_val_loss=pos.best_val_loss,
    )
    if pos.best_val_loss is not None:
        log(f"lstmgen: best validation loss {pos.best_val_loss:.4f} nats; saved in {out / 'best'}")
    log(f"lstmgen: {pos.step} steps, {pos.elapsed_s or clock.elapsed_s():.1f} s of training "
        f"({result.train_chars_per_second:,.0f} {'characters' if tokenizer.level == 'char' else 'tokens'}/s); "
        f"generate with: lstmgen generate {out}")
    return result
