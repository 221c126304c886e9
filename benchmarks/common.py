"""Helpers shared by the benchmark scripts: the machine, its measured matmul
peak, the corpora, and writing results as a table and as JSON."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

CORPORA = Path(os.environ.get("LSTMGEN_CORPORA", Path(__file__).resolve().parents[2] / "shared" / "corpora"))
ALICE = CORPORA / "alice-gutenberg-11-utf8.txt"


def require(path: Path) -> Path:
    if not path.exists():
        sys.exit(f"benchmark: {path} is missing; set LSTMGEN_CORPORA to the shared/corpora folder")
    return path


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def machine(device: torch.device) -> dict:
    info = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "torch": torch.__version__, "threads": torch.get_num_threads(), "python": sys.version.split()[0],
            "device": str(device)}
    try:
        with open("/proc/cpuinfo") as f:
            lines = f.read().splitlines()
        info["cpu"] = next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
        flags = next(line.split(":", 1)[1].split() for line in lines if line.startswith("flags"))
        info["cpu_bf16_flags"] = [f for f in ("avx512_bf16", "amx_bf16", "amx_tile") if f in flags]
    except (OSError, StopIteration):
        pass
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    return info


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(device: torch.device, dtype: torch.dtype, seconds: float = 1.0) -> float:
    """Best measured FLOP/s of square matrix products (2·n³ FLOPs each) over a
    few sizes. On CUDA, fp32 means true fp32: TF32 is switched off."""
    sizes = (1024, 2048, 4096) if device.type == "cpu" else (4096, 8192)
    best = 0.0
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        for n in sizes:
            a = torch.randn(n, n, device=device, dtype=dtype)
            b = torch.randn(n, n, device=device, dtype=dtype)
            a @ b  # warm-up: thread pools, kernel selection
            sync(device)
            reps, start = 0, time.perf_counter()
            while True:
                a @ b
                reps += 1
                if reps % 4 == 0:
                    sync(device)
                    if time.perf_counter() - start >= seconds / len(sizes):
                        break
            best = max(best, 2 * n**3 * reps / (time.perf_counter() - start))
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    return best


def peaks(device: torch.device) -> dict:
    """{'fp32': FLOP/s, 'bf16': FLOP/s} measured now, in this process."""
    return {"fp32": matmul_peak(device, torch.float32), "bf16": matmul_peak(device, torch.bfloat16)}


def start(device_name: str) -> tuple[torch.device, dict]:
    """Pick the device, measure its peak and print both: every benchmark's header."""
    device = pick_device(device_name)
    peak = peaks(device)
    print(f"machine: {machine(device)}")
    print(f"measured matmul peak: fp32 {peak['fp32'] / 1e9:,.0f} GFLOP/s · bf16 {peak['bf16'] / 1e9:,.0f} GFLOP/s")
    return device, peak


def print_table(rows: list[dict], columns: list[tuple[str, str, str]]) -> None:
    """``columns``: (key, header, format spec)."""
    cells = [[format(r[k], spec) if r.get(k) is not None else "–" for k, _, spec in columns] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, (_, h, _) in enumerate(columns)]
    print("  ".join(h.rjust(w) for (_, h, _), w in zip(columns, widths)))
    for c in cells:
        print("  ".join(v.rjust(w) for v, w in zip(c, widths)))


def write_json(path: str | None, payload: dict) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(payload, indent=2) + "\n")
        print(f"wrote {path}")
