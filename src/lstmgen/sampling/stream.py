"""Generation: prime the state on the prompt once, then one step per token
for every sample at once."""

from __future__ import annotations

from typing import Iterator

import torch

from ..errors import LstmgenError
from ..model import LSTMLanguageModel
from .config import SampleConfig
from .processors import History, next_tokens
from .steps import _GraphedStep, step_precision, step_weights


@torch.inference_mode()
def stream_tokens(
    model: LSTMLanguageModel,
    prompt_ids: list[int],
    config: SampleConfig,
    seed: int,
    breakers: torch.Tensor | None = None,
) -> Iterator[torch.Tensor]:
    """Yield (num_samples,) token ids, one step at a time, for every sample at
    once. ``breakers`` (V,) bool marks the tokens that end a DRY repeat."""
    if not prompt_ids:
        raise LstmgenError("the prompt is empty after removing unknown characters; give a prompt the model knows")
    model.eval()
    device = model.head.weight.device
    n = config.num_samples
    stepper = step_weights(model, step_precision(model, config.precision, n).precision)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    ids = torch.tensor(prompt_ids, dtype=torch.long, device=device).unsqueeze(0)  # (1, P)
    # Read the whole prompt in one call (nn.LSTM's kernel is fastest for
    # long sequences); samples share its state, so copy it N times.
    logits, _, (h, c) = model(ids, None, last_only=True)  # logits (1, V); h, c (L, 1, H)
    hs = [h[layer].repeat(n, 1) for layer in range(h.size(0))]  # L × (N, H)
    cs = [c[layer].repeat(n, 1) for layer in range(c.size(0))]
    logits = logits.float().repeat(n, 1)  # (N, V)
    history = History(config, logits.size(-1), n, prompt_ids, breakers)
    graphed = None
    if device.type == "cuda" and config.max_new_tokens > 1:
        graphed = _GraphedStep(stepper, hs, cs)
    for _ in range(config.max_new_tokens):
        token = next_tokens(logits.cpu(), config, generator, history)  # (N,)
        history.push(token)
        yield token
        if graphed is not None:
            logits = graphed.step(token)
        else:
            logits, hs, cs = stepper.step(token.to(device), hs, cs)
