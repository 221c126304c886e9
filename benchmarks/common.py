"""Helpers shared by the benchmark scripts: the machine, its measured matmul
peak, the corpora, and writing results as a table and as JSON."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

from lstmgen.machine import describe as machine
from lstmgen.machine import matmul_peak, sync

__all__ = ["machine", "matmul_peak", "sync"]

CORPORA = Path(os.environ.get("LSTMGEN_CORPORA", Path(__file__).resolve().parents[2] / "shared" / "corpora"))
ALICE = CORPORA / "alice-gutenberg-11-utf8.txt"


def require(path: Path) -> Path:
    if not path.exists():
        sys.exit(f"benchmark: {path} is missing; set LSTMGEN_CORPORA to the shared/corpora folder")
    return path


def alice_excerpts(count: int, chars: int, stride: int, corpus=None) -> list[str]:
    """``count`` excerpts of ``chars`` characters from Alice, one every
    ``stride`` characters from the 5,000th, read with ``corpus`` (a
    CorpusConfig; the default one when None)."""
    import lstmgen
    from lstmgen.text.corpus import read_corpus

    text = read_corpus(require(ALICE), corpus or lstmgen.CorpusConfig()).text
    return [text[i:i + chars] for i in range(5000, 5000 + stride * count, stride)]


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


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
