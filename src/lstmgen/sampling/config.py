"""How to sample: SampleConfig, the one set of sampling options that the
command line, the Python API and every later door share."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

from ..errors import LstmgenError


STEP_PRECISIONS = ("auto", "fp32", "bf16", "int8")


@dataclass(frozen=True)
class SampleConfig:
    """How to sample. Shared by the CLI, the Python API and (later) the server."""

    max_new_tokens: int = 1000
    """Tokens to generate after the prompt (the prompt is not counted)."""
    temperature: float = 0.8
    """Divides the logits; below 1 is safer, above 1 wilder. 0 means argmax."""
    top_k: int | None = None
    """Keep only the k most likely tokens (None: all)."""
    top_p: float | None = None
    """Keep the smallest set of tokens whose probability reaches p (None or 1: all)."""
    num_samples: int = 1
    """Independent samples, generated together as one batch."""
    seed: int | None = None
    """Same seed, same text (at the same precision). None draws a fresh seed."""
    precision: str = "auto"
    """Weights for the one-token steps: 'fp32'; 'bf16'; 'int8' (8-bit weights
    with one scale per row, bf16 activations; CPU only); or 'auto', the
    fastest of them timed on this machine for this model and batch (fp32
    unless another wins by over 5%; measured once, then cached). The prompt
    is always read in fp32. bf16 and int8 change the held-out loss by about
    1e-4 nats."""

    def __post_init__(self) -> None:
        if self.max_new_tokens < 0:
            raise LstmgenError(f"--max-new-tokens must be 0 or more, got {self.max_new_tokens}")
        if not self.temperature >= 0 or self.temperature == float("inf"):
            raise LstmgenError(f"--temperature must be 0 (argmax) or more, got {self.temperature}")
        if self.top_k is not None and self.top_k < 1:
            raise LstmgenError(f"--top-k must be 1 or more, got {self.top_k}")
        if self.top_p is not None and not 0.0 < self.top_p <= 1.0:
            raise LstmgenError(f"--top-p must be in (0, 1], got {self.top_p}")
        if self.num_samples < 1:
            raise LstmgenError(f"--num-samples must be 1 or more, got {self.num_samples}")
        if self.seed is not None and not 0 <= self.seed < 2**63:
            raise LstmgenError(f"--seed must be in [0, 2**63), got {self.seed}")
        if self.precision not in STEP_PRECISIONS:
            raise LstmgenError(f"--precision must be one of {', '.join(STEP_PRECISIONS)}, got {self.precision!r}")

    def to_dict(self) -> dict:
        return asdict(self)


def fresh_seed() -> int:
    return int.from_bytes(os.urandom(6), "little")
