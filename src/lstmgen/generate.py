"""Sampling: prime the state on the prompt once, then one step per token.

Logits go through small pure functions in one fixed order:

    temperature → top-k → top-p → draw

(temperature 0 skips all of them and takes the argmax, the tutorial's way).
The cost of each new token is one LSTM step whatever the prompt length,
instead of the tutorial's re-run of a 100-character window per character.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Iterator

import torch

from .errors import LstmgenError
from .model import LSTMLanguageModel


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
    """Same seed, same text. None draws a fresh seed."""

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

    def to_dict(self) -> dict:
        return asdict(self)


def fresh_seed() -> int:
    return int.from_bytes(os.urandom(6), "little")


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    return logits / temperature


def apply_top_k(logits: torch.Tensor, k: int | None) -> torch.Tensor:
    """Set every logit below the k-th largest to -inf. (N, V) -> (N, V)."""
    if k is None or k >= logits.size(-1):
        return logits
    kth = torch.topk(logits, k, dim=-1).values[:, -1:]  # (N, 1)
    return logits.masked_fill(logits < kth, float("-inf"))


def apply_top_p(logits: torch.Tensor, p: float | None) -> torch.Tensor:
    """Nucleus filtering: keep the most likely tokens whose cumulative
    probability first reaches p; the most likely token always stays."""
    if p is None or p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
    cumulative = torch.softmax(sorted_logits, dim=-1).cumsum(dim=-1)
    # Drop a token when the tokens before it already reach p.
    drop_sorted = (cumulative - torch.softmax(sorted_logits, dim=-1)) >= p
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def next_tokens(logits: torch.Tensor, config: SampleConfig, generator: torch.Generator) -> torch.Tensor:
    """Choose one token per row of ``logits`` (N, V). Returns (N,) int64."""
    if config.temperature == 0:
        return torch.argmax(logits, dim=-1)
    logits = apply_temperature(logits.float(), config.temperature)
    logits = apply_top_k(logits, config.top_k)
    logits = apply_top_p(logits, config.top_p)
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


# oneDNN's LSTM kernel is the faster one for training and long prompts, but
# for one time step of a small batch it costs 2.0 ms against 0.46 ms for
# PyTorch's own kernel (bundled model, 1 stream, 2 cores; 256 streams: equal).
_ONEDNN_MAX_STEP_BATCH = 128


@contextmanager
def _onednn(enabled: bool):
    # Set around each step, not around the whole generator, so that code
    # running while the generator is suspended keeps its own setting. (The
    # public torch.backends.mkldnn.flags() also resets TF32 and warns.)
    before = torch._C._get_mkldnn_enabled()
    torch._C._set_mkldnn_enabled(enabled)
    try:
        yield
    finally:
        torch._C._set_mkldnn_enabled(before)


@torch.inference_mode()
def stream_tokens(
    model: LSTMLanguageModel,
    prompt_ids: list[int],
    config: SampleConfig,
    seed: int,
) -> Iterator[torch.Tensor]:
    """Yield (num_samples,) token ids, one step at a time, for every sample at once."""
    if not prompt_ids:
        raise LstmgenError("the prompt is empty after removing unknown characters; give a prompt the model knows")
    model.eval()
    device = model.head.weight.device
    generator = torch.Generator(device="cpu").manual_seed(seed)
    ids = torch.tensor(prompt_ids, dtype=torch.long, device=device).unsqueeze(0)  # (1, P)
    # Prime once on the prompt; samples share this state, so copy it N times.
    logits, _, (h, c) = model(ids, None, last_only=True)  # logits (1, V)
    n = config.num_samples
    state = (h.repeat(1, n, 1), c.repeat(1, n, 1))  # (L, N, H) each
    logits = logits.repeat(n, 1)  # (N, V)
    use_onednn = n > _ONEDNN_MAX_STEP_BATCH
    for _ in range(config.max_new_tokens):
        token = next_tokens(logits.cpu(), config, generator)  # (N,)
        yield token
        with _onednn(use_onednn and torch._C._get_mkldnn_enabled()):
            logits, _, state = model(token.to(device).unsqueeze(1), state, last_only=True)
