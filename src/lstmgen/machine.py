"""The machine at hand: what the CPU says of itself, and what it measures.

Flags tell what a CPU could do; only a timing tells what it does. A CPU with
AVX512-BF16 and no AMX runs bf16 matrix products at about half its fp32
rate, and one with neither emulates them at about 1% of it, so every speed
decision in lstmgen is taken from measurements (``lstmgen.precision``); the
flags are reported for bug reports and benchmark tables.
"""

from __future__ import annotations

import hashlib
import os
import platform
import sys
import time
from functools import lru_cache

import torch

from .errors import LstmgenError

# The flags that decide how fast bf16 and int8 matrix products can be.
SPEED_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_bf16",
               "amx_int8", "asimd", "bf16", "i8mm", "sve")


@lru_cache(maxsize=1)
def cpu_info() -> dict:
    """Model name, every flag, and the speed-relevant flags of this CPU."""
    info = {"model": platform.processor() or platform.machine(), "flags": [], "architecture": platform.machine()}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        lines = []
    for line in lines:
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("model name", "Model") and info["model"] in ("", platform.machine(), platform.processor()):
            info["model"] = value.strip()
        elif key in ("flags", "Features") and not info["flags"]:
            info["flags"] = value.split()
    info["speed_flags"] = [f for f in SPEED_FLAGS if f in info["flags"]]
    return info


def pick_device(name: str) -> torch.device:
    """'auto' (CUDA when present), 'cpu', 'cuda' or 'cuda:N'."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise LstmgenError("--device cuda was asked for, but PyTorch sees no CUDA GPU; use --device cpu")
    return torch.device(name)


def machine_key(device: torch.device) -> str:
    """Identifies what a timing depends on: processor, its flags, threads,
    PyTorch build, device. A timing cached under one key is valid for it only."""
    if device.type == "cuda":
        hardware = f"{torch.cuda.get_device_name(device)} cuda {torch.version.cuda}"
    else:
        cpu = cpu_info()
        hardware = f"{cpu['model']} [{' '.join(cpu['speed_flags'])}] threads {torch.get_num_threads()}"
    text = f"{hardware} | torch {torch.__version__} | {device.type}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(device: torch.device, dtype: torch.dtype, seconds: float = 1.0) -> float:
    """Best measured FLOP/s of square matrix products (2·n³ FLOPs each).

    A short probe at n = 256 estimates the rate; then every size up to 4,096
    whose single product fits an eighth of the time is timed for an equal
    share of ``seconds``. So a dtype the hardware only emulates (bf16 on a CPU
    without AVX512-BF16 or AMX runs at about 1 GFLOP/s) ends in ``seconds``
    instead of minutes. On CUDA, fp32 means true fp32: TF32 is switched off.
    """
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        probe = _rate(device, dtype, 256, seconds / 20)
        candidates = (1024, 2048, 4096) if device.type == "cpu" else (4096, 8192)
        sizes = [n for n in candidates if 2 * n**3 / probe <= seconds / 8] or [256]
        return max([probe] + [_rate(device, dtype, n, seconds / len(sizes)) for n in sizes])
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32


def _rate(device: torch.device, dtype: torch.dtype, n: int, seconds: float) -> float:
    """FLOP/s of n × n products, timed for about ``seconds`` after a warm-up."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b  # warm-up: thread pools, kernel selection
    sync(device)
    reps, start = 0, time.perf_counter()
    while True:
        a @ b
        reps += 1
        if reps % 2 == 0:
            sync(device)
            if time.perf_counter() - start >= seconds:
                break
    return 2 * n**3 * reps / (time.perf_counter() - start)


def torch_build() -> dict:
    """What the installed PyTorch was built with."""
    build = {"version": torch.__version__, "cuda": torch.version.cuda,
             "cuda_available": torch.cuda.is_available(),
             "cpu_capability": torch.backends.cpu.get_cpu_capability(),
             "mkldnn": torch.backends.mkldnn.is_available(), "mkl": torch.backends.mkl.is_available(),
             "openmp": torch.backends.openmp.is_available()}
    if torch.cuda.is_available():
        build["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return build


def describe(device: torch.device) -> dict:
    """The machine in one dict: every benchmark's and bug report's header."""
    cpu = cpu_info()
    info = {"cpu": cpu["model"], "cpu_flags": cpu["speed_flags"], "cores": os.cpu_count(),
            "threads": torch.get_num_threads(), "torch": torch.__version__, "python": sys.version.split()[0],
            "device": str(device)}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    return info
