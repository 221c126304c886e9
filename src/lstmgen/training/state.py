"""Where a run stands (Position), and everything besides the weights that a
resume needs: optimizer, random number generators, the carried LSTM state."""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from ..errors import LstmgenError
from . import distributed as D


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

    def advance(self, loss_nats: float, next_batch: int, chars: int) -> None:
        """After an optimizer step on batch ``next_batch - 1`` of ``chars`` characters (all ranks)."""
        self.recent_loss = (self.recent_loss + [loss_nats])[-50:]
        self.step += 1
        self.trained_chars += chars
        self.batch_index = next_batch

    def next_epoch(self) -> None:
        """At the end of an epoch: the saved position must point at the next epoch's start."""
        self.epoch += 1
        self.batch_index = 0

    @property
    def train_loss_nats(self) -> float:
        """The mean loss of the last 50 steps (nan before the first)."""
        return float(np.mean(self.recent_loss)) if self.recent_loss else math.nan


def trainer_state(optimizer: torch.optim.Optimizer, position: Position, carried,
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


def restore_trainer_state(optimizer, tensors: dict, data: dict, device,
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
