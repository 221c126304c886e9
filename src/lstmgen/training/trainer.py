"""One optimizer step: the optimizer, the precision, truncated BPTT."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..model import LSTMLanguageModel
from ..precision import PrecisionChoice
from ..text.batches import IGNORE
from .config import TrainConfig
from .speed import training_precision


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
    """The model, its optimizer and the precision it trains in: one optimizer step at a time."""

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

    def step(self, train_model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, carried,
             item_scale: float | None = None):
        """One optimizer step on the batch (x, y). ``train_model`` is the model
        or its DDP wrapper. Returns the loss tensor (mean nats per token of
        this process's rows) and the state to carry.

        Items: the gradient is of the summed loss times ``item_scale`` (the
        number of processes over the whole batch's real tokens). DDP averages the
        processes' gradients, so their average is the gradient of the batch's
        mean, exactly as one process computes it, however unevenly the
        processes' rows hold tokens."""
        with torch.autocast(self.device.type, dtype=self.autocast or torch.float32,
                            enabled=self.autocast is not None):
            if self.config.framing == "stream":
                _, loss, new_state = train_model(x, carried, y)
                # Truncated BPTT: keep the state's values (in fp32), drop its history.
                carried = (new_state[0].detach().float(), new_state[1].detach().float())
            elif self.config.items:  # each row an item from a fresh state; padded targets are ignored
                logits, _, _ = train_model(x, None)
                summed = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), y.reshape(-1),
                                         ignore_index=IGNORE, reduction="sum")
                loss = summed.detach() / (y != IGNORE).sum().clamp_min(1)
            else:
                _, loss, _ = train_model(x, None, y, last_only=True)
        self.optimizer.zero_grad(set_to_none=True)
        (summed * item_scale if item_scale is not None else loss).backward()
        if self.config.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.optimizer.step()
        return loss, carried
