"""Multi-process training with PyTorch DistributedDataParallel.

`torchrun --nproc_per_node N -m lstmgen train ...` starts N copies of the
command; each learns its place from the environment torchrun sets (RANK,
WORLD_SIZE, LOCAL_RANK) and joins one process group: gloo on CPUs, nccl on
GPUs. Every rank trains on its own share of the batch's stream columns;
DDP averages the gradients, so N ranks with --batch-size B take the same
steps as one process with --batch-size B. Only rank 0 evaluates, writes
checkpoints and logs.
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..errors import LstmgenError


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_local_main(self) -> bool:
        return self.local_rank == 0


SINGLE = Dist()


def setup(device: str) -> Dist:
    """Join the process group torchrun describes, or run alone."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return SINGLE
    info = Dist(rank=int(os.environ.get("RANK", "0")), world=world,
                local_rank=int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        use_cuda = device != "cpu" and torch.cuda.is_available()
        if use_cuda:
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return info


def device_for(info: Dist, name: str) -> torch.device | None:
    """Each rank on a GPU gets its own (cuda:LOCAL_RANK)."""
    if info.enabled and name in ("auto", "cuda") and torch.cuda.is_available():
        return torch.device("cuda", info.local_rank)
    return None


def wrap(model: torch.nn.Module, device: torch.device, info: Dist) -> torch.nn.Module:
    """The model to train: itself, or in a DDP run its DistributedDataParallel wrapper."""
    if not info.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def barrier(info: Dist) -> None:
    if info.enabled:
        dist.barrier()


def agree(info: Dist, values: list[float], device) -> list[float]:
    """The largest of each value over all ranks, so every rank takes the same
    decision (stop now, write a checkpoint now) at the same step."""
    if not info.enabled:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t.tolist()


def gather(info: Dist, obj):
    """Every rank's ``obj`` on rank 0 (a list in rank order); None elsewhere."""
    if not info.enabled:
        return [obj]
    out = [None] * info.world if info.is_main else None
    dist.gather_object(obj, out, dst=0)
    return out


def teardown(info: Dist, finished: bool) -> None:
    """Leave the process group. After a finished run every rank first waits for
    the others and frees the DDP wrapper (which holds the group) while the
    group is alive: a rank that left early while rank 0 was still writing its
    checkpoint, or whose gloo threads outlived the group into interpreter exit,
    was seen to abort ("terminate called without an active exception") about
    once in a dozen runs. After an error there is no waiting, since the other
    ranks may never arrive."""
    if not (info.enabled and dist.is_initialized()):
        return
    if finished:
        dist.barrier()
        gc.collect()
    dist.destroy_process_group()


def check_batch(info: Dist, batch_size: int) -> int:
    """Rows of the global batch that each rank trains on."""
    if batch_size % info.world:
        raise LstmgenError(f"--batch-size {batch_size} does not split evenly over {info.world} processes; "
                           f"use a multiple of {info.world}")
    return batch_size // info.world
