"""`lstmgen doctor`: what a bug report about speed needs, measured here."""

from __future__ import annotations

import os
import sys

import torch

from . import __version__
from .machine import cpu_info, matmul_peak, torch_build
from .precision import PrecisionChoice, cache_dir

STREAMS = (1, 64)


def machine_report(run_dir=None, device: str = "auto", peak_seconds: float = 1.0) -> dict:
    """The machine, the PyTorch build, measured matrix-product peaks, and the
    precisions ``--precision auto`` picks for the model in ``run_dir`` (the
    bundled model by default): training with its run's batch, and generation
    at 1 and 64 streams."""
    from .api import load
    from .machine import pick_device
    from .sampling.steps import step_precision
    from .training.config import TrainConfig
    from .training.speed import training_precision

    dev = pick_device(TrainConfig(device=device, max_steps=1).device)  # checks the name first
    cpu = cpu_info()
    model = load(run_dir, device=str(dev))
    saved = {k: v for k, v in model.train_config.items() if k in ("batch_size", "seq_len", "framing")}
    train_config = TrainConfig(**saved, max_steps=1)
    training = training_precision(model.model.config, train_config, train_config.batch_size, dev)
    generation = {n: step_precision(model.model, "auto", n) for n in STREAMS}
    return {
        "lstmgen": __version__,
        "python": sys.version.split()[0],
        "cpu": {"model": cpu["model"], "architecture": cpu["architecture"], "speed_flags": cpu["speed_flags"],
                "flags": cpu["flags"], "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                "torch_interop_threads": torch.get_num_interop_threads()},
        "torch": torch_build(),
        "device": str(dev),
        "matmul_peak_gflops": {name: round(matmul_peak(dev, dtype, peak_seconds) / 1e9, 1)
                               for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16))},
        "model": str(model.path),
        "auto_precision": {
            "training": dict(training.to_dict(), batch=train_config.batch_size, seq_len=train_config.seq_len),
            **{f"generation_{n}_streams": choice.to_dict() for n, choice in generation.items()},
        },
        "cache": str(cache_dir()),
    }


def format_report(report: dict) -> str:
    cpu, build, peak = report["cpu"], report["torch"], report["matmul_peak_gflops"]
    auto = report["auto_precision"]
    train = auto["training"]
    lines = [
        f"lstmgen {report['lstmgen']}, Python {report['python']}",
        f"CPU: {cpu['model']} ({cpu['architecture']}), {cpu['cores']} cores, PyTorch uses "
        f"{cpu['torch_threads']} threads ({cpu['torch_interop_threads']} inter-op)",
        f"CPU flags that decide speed: {' '.join(cpu['speed_flags']) or 'none'}",
        f"PyTorch {build['version']}: CUDA {build['cuda'] or 'none'}"
        + (f" ({', '.join(build['gpus'])})" if build.get("gpus") else "")
        + f", CPU kernels {build['cpu_capability']}, oneDNN {'yes' if build['mkldnn'] else 'no'}, "
        f"MKL {'yes' if build['mkl'] else 'no'}, OpenMP {'yes' if build['openmp'] else 'no'}",
        f"measured matmul peak on {report['device']}: fp32 {peak['fp32']:,.1f} GFLOP/s, "
        f"bf16 {peak['bf16']:,.1f} GFLOP/s",
        f"--precision auto for {report['model']}:",
        f"  {_choice_line('training, batch %d × %d' % (train['batch'], train['seq_len']), train)}",
    ]
    for n in STREAMS:
        lines.append(f"  {_choice_line(f'generation, {n} stream' + ('s' if n > 1 else ''), auto[f'generation_{n}_streams'])}")
    lines.append(f"timings are cached in {report['cache']}")
    return "\n".join(lines)


def _choice_line(task: str, choice: dict) -> str:
    fields = {k: v for k, v in choice.items() if k in PrecisionChoice.__dataclass_fields__}
    return PrecisionChoice(**fields).describe(task)
