"""Fast on the machine at hand: the precision to train in, timed on the
model's own shapes, and a preset's slower model where its own is too slow here."""

from __future__ import annotations

import torch

from ..errors import LstmgenError
from ..model import LSTMLanguageModel, ModelConfig
from ..precision import PrecisionChoice, cannot, choose
from . import distributed as D
from .config import TrainConfig
from .presets import SpeedFloor


# Training precision is timed on this many time steps of the real batch:
# enough for the recurrence to dominate, short enough to finish well under a second.
_TIMED_STEPS = 32


def training_precision(model_config: ModelConfig, config: TrainConfig, batch_rows: int,
                       device: torch.device) -> PrecisionChoice:
    """The precision to train in: the requested one, or for 'auto' the faster
    of fp32 and bf16 autocast, timed on this model's shapes (lstmgen.precision).

    Measured so far: bf16 trained the default preset 1.6-1.8× faster on a
    CPU with AMX, 0.63× as fast on one with AVX512-BF16 and no AMX, and not
    at all on one with neither (oneDNN has no bf16 LSTM there); on an H200
    cuDNN's fp32 was as fast as bf16 (BENCHMARKS.md).
    """
    steps = min(config.seq_len, _TIMED_STEPS)
    if config.precision != "auto":
        if config.precision == "bf16":
            _check_runs(_training_call(model_config, config, 2, 2, device, torch.bfloat16), device)
        return PrecisionChoice(config.precision, "requested")
    candidates = {"fp32": lambda: _training_call(model_config, config, batch_rows, steps, device, None)}
    if device.type == "cpu" or torch.cuda.is_bf16_supported():
        candidates["bf16"] = lambda: _training_call(model_config, config, batch_rows, steps, device, torch.bfloat16)
    shape = {"model": model_config.to_dict(), "batch": batch_rows, "steps": steps, "framing": config.framing}
    return choose("training", shape, candidates, device, f"forward and backward of {batch_rows} × {steps} tokens",
                  tokens=batch_rows * steps)


def _training_call(model_config: ModelConfig, config: TrainConfig, rows: int, steps: int, device: torch.device,
                   dtype: torch.dtype | None):
    """A forward and backward pass of a fresh model of this shape, as one call."""
    windows = config.framing == "windows"
    model = LSTMLanguageModel(model_config).to(device).train()
    x = torch.randint(model_config.vocab_size, (rows, steps), device=device)
    y = x[:, -1] if windows else x

    def call():
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            _, loss, _ = model(x, None, y, last_only=windows)
        loss.backward()
        model.zero_grad(set_to_none=True)
    return call


def fit_to_speed(model_config: ModelConfig, floor: SpeedFloor, config: TrainConfig, rows: int,
                 device: torch.device, info: D.Dist, log) -> tuple[ModelConfig, dict]:
    """``model_config``, or the floor's slower settings where this machine
    trains ``model_config`` below the floor (timed as --precision auto times
    it, in the precision the run would use; agreed across DDP processes)."""
    choice = agreed_training_precision(model_config, config, rows, device, info)
    measured = choice.tokens_per_second if info.is_main else None
    rate = D.agree(info, [measured * info.world if measured else 0.0], device)[0]
    check = {"chars_per_second_needed": floor.chars_per_second, "chars_per_second_measured": round(rate, 1),
             "precision": choice.precision}
    if not rate or rate >= floor.chars_per_second:
        return model_config, dict(check, slower_settings_used=False)
    slower = ModelConfig.from_dict(dict(model_config.to_dict(), **floor.slower))
    log(f"lstmgen: this machine trains the preset's {model_config.num_layers} × {model_config.hidden_size} model at "
        f"about {rate:,.0f} characters/s ({choice.precision}), under the {floor.chars_per_second:,.0f} it needs; "
        f"training {', '.join(f'{k}={v}' for k, v in floor.slower.items())} instead ({floor.evidence})")
    return slower, dict(check, slower_settings_used=True, slower_settings=floor.slower)


def _check_runs(call, device: torch.device) -> None:
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        try:
            call()
        except RuntimeError as exc:
            raise LstmgenError(f"--precision bf16 does not work on this machine ({cannot(exc)}); "
                               "use --precision auto or fp32") from None


def agreed_training_precision(model_config: ModelConfig, config: TrainConfig, batch_rows: int,
                              device: torch.device, info: D.Dist) -> PrecisionChoice:
    """The first process measures; every process of a DDP run takes its answer."""
    if not info.enabled:
        return training_precision(model_config, config, batch_rows, device)
    choice = training_precision(model_config, config, batch_rows, device) if info.is_main else None
    names = ("fp32", "bf16")
    index = int(D.agree(info, [float(names.index(choice.precision)) if choice else 0.0], device)[0])
    return choice or PrecisionChoice(names[index], "measured by the first process")
