"""Named recipes. Flags given on the command line override preset values."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import LstmgenError

if TYPE_CHECKING:
    from ..text.corpus import CorpusConfig
    from ..text.tokenizer import TokenizerConfig
    from .config import TrainConfig

# Recipes for a 2-core CPU and for a GPU, chosen by measurement
# (docs/recipes.md, docs/options-measured.md; BENCHMARKS.md, "Quality"). More updates
# of a mid-sized model with heavy dropout beat a wider model or bigger
# batches. Locked dropout with DropConnect on the recurrent weights was the
# best 5-minute recipe on Tiny Shakespeare; on a book-sized text, which the
# model overfits within minutes, embedding dropout, DropConnect and a tight
# gradient clip did better (cpu-5min-book) but left Tiny Shakespeare underfit.
_AWD_MODEL = {"num_layers": 2, "input_mode": "embedding", "embedding_dim": 64, "locked_dropout": True}
_STREAM_TRAIN = {"framing": "stream", "batch_size": 16, "seq_len": 128, "lr": 3e-3, "lr_schedule": "cosine",
                 "warmup_steps": 20, "grad_clip": 1.0, "epochs": None}


def _recipe(model: dict, train: dict) -> dict[str, dict]:
    return {"model": dict(_AWD_MODEL, **model), "corpus": {}, "train": dict(_STREAM_TRAIN, **train)}


# Each preset has three parts, one per config object: model, corpus, train.
PRESETS: dict[str, dict[str, dict]] = {
    "cpu-5min": _recipe({"hidden_size": 384, "dropout": 0.4, "weight_dropout": 0.2},
                        {"max_minutes": 5.0, "eval_every": 250}),
    "cpu-5min-book": _recipe({"hidden_size": 384, "dropout": 0.4, "weight_dropout": 0.2, "locked_dropout": False,
                              "embedding_dropout": 0.1},
                             {"max_minutes": 5.0, "eval_every": 250, "grad_clip": 0.25}),
    "cpu-20min": _recipe({"hidden_size": 512, "dropout": 0.5, "weight_dropout": 0.25},
                         {"max_minutes": 20.0, "eval_every": 500}),
    # Measured for its full hour: 1.4231 on Tiny Shakespeare, short of the 1.40
    # stretch target; adding embedding dropout 0.1 made it worse (BENCHMARKS.md, "Quality").
    "cpu-60min": _recipe({"hidden_size": 768, "dropout": 0.5, "embedding_dim": 128, "weight_dropout": 0.3},
                         {"lr": 2e-3, "warmup_steps": 50, "max_minutes": 60.0, "eval_every": 500}),
    # One modern GPU (measured on an H200, at the budget given here): a wide
    # model, long sequences and a big batch keep the device busy.
    "gpu": _recipe({"hidden_size": 1024, "num_layers": 3, "dropout": 0.5, "embedding_dim": 128,
                    "weight_dropout": 0.3, "embedding_dropout": 0.05},
                   {"batch_size": 64, "seq_len": 256, "lr": 2e-3, "warmup_steps": 100, "max_minutes": 4.5,
                    "eval_every": 200}),
    # The tutorial's first model: LSTM(256) → Dropout(0.2) → Dense softmax,
    # 100-character windows of integer ids divided by the vocabulary size,
    # batch 128, 20 epochs, Adam at Keras's default rate, lowercased text.
    "tutorial-small": {
        "model": {"hidden_size": 256, "num_layers": 1, "dropout": 0.2, "input_mode": "scaled"},
        "corpus": {"lowercase": True},
        "train": {"framing": "windows", "batch_size": 128, "seq_len": 100, "lr": 1e-3, "lr_schedule": "constant",
                  "warmup_steps": 0, "grad_clip": None, "epochs": 20, "max_minutes": None},
    },
    # The tutorial's second model: two LSTM(256) layers, each followed by dropout, batch 64, 50 epochs.
    "tutorial-large": {
        "model": {"hidden_size": 256, "num_layers": 2, "dropout": 0.2, "input_mode": "scaled"},
        "corpus": {"lowercase": True},
        "train": {"framing": "windows", "batch_size": 64, "seq_len": 100, "lr": 1e-3, "lr_schedule": "constant",
                  "warmup_steps": 0, "grad_clip": None, "epochs": 50, "max_minutes": None},
    },
}


# The preset used when none is named: the best recipe for its 5-minute budget.
PRESETS = {"default": PRESETS["cpu-5min"], **PRESETS}


@dataclass(frozen=True)
class SpeedFloor:
    """A preset's model pays off within its budget only on a machine that
    trains it this fast; on a slower one the preset trains ``slower`` instead."""

    chars_per_second: float
    """Measured training speed of the preset's own model, below which ``slower`` is used."""
    slower: dict
    """Model settings that replace the preset's on a slower machine."""
    evidence: str
    """What the floor rests on (said in the log when it applies)."""


# cpu-20min's 2 × 512 model reached 1.4544 nats on Tiny Shakespeare in 20
# minutes at 12,491 characters/s (AMX, bf16), but 1.4710 at 7,813 (Intel
# AVX512-BF16 without AMX, fp32) and 1.4708 at about 8,000 (AMD Zen 4, bf16).
# The 2 × 384 model reached 1.4649 at 7,143 (AVX2, fp32) and 1.4495 at 13,311
# (Zen 4, bf16): at equal speed more steps beat more units, so the wider model
# is kept only where it trains clearly faster than that. The floor is in the
# unit of the check, which times 32 steps instead of 128: it read 0.77-1.04
# times the real speed on AVX2 and 1.1 times on Zen 4 (10,079 against about
# 9,100), hence 12,000 (BENCHMARKS.md, "Each kind of CPU").
SPEED_FLOORS = {
    "cpu-20min": SpeedFloor(12_000, {"hidden_size": 384, "dropout": 0.4, "weight_dropout": 0.2},
                            "2 × 384 reached 1.4495 nats on Tiny Shakespeare in 20 minutes at 13,311 "
                            "characters/s and 1.4649 at 7,143, where 2 × 512 reached 1.4708 at about 8,000"),
}


def speed_floor(preset: str, overrides: dict) -> SpeedFloor | None:
    """The preset's speed floor, unless the user set any of the settings it would change."""
    floor = SPEED_FLOORS.get(preset)
    if floor is None or any(overrides.get(key) is not None for key in floor.slower):
        return None
    return floor


def get_preset(name: str) -> dict[str, dict]:
    try:
        preset = PRESETS[name]
    except KeyError:
        raise LstmgenError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None
    return {part: dict(values) for part, values in preset.items()}


def resolve(preset: str = "default", **overrides) -> tuple[dict, "CorpusConfig", "TrainConfig", "TokenizerConfig"]:
    """Preset values with ``overrides`` on top, routed by field name to the
    model, corpus, training or tokenizer config. ``None`` overrides are ignored, so the
    CLI can pass every flag and only the given ones count."""
    parts = get_preset(preset)
    parts.setdefault("tokenizer", {})
    return configs_from_parts(apply_overrides(parts, overrides))


def option_owners() -> dict[str, set[str]]:
    """Which config object owns each option name: model, corpus, train or tokenizer."""
    from dataclasses import fields

    from ..text.corpus import CorpusConfig
    from ..model import ModelConfig
    from ..text.tokenizer import TokenizerConfig
    from .config import TrainConfig

    return {
        "model": {f.name for f in fields(ModelConfig)} - {"vocab_size"},
        "corpus": {f.name for f in fields(CorpusConfig)},
        "train": {f.name for f in fields(TrainConfig)},
        "tokenizer": {f.name for f in fields(TokenizerConfig)},
    }


def apply_overrides(parts: dict[str, dict], overrides: dict) -> dict[str, dict]:
    """``parts`` with each non-None override put in the part that owns it."""
    owners = option_owners()
    for key, value in overrides.items():
        if value is None:
            continue
        for part, names in owners.items():
            if key in names:
                parts[part][key] = value
                break
        else:
            raise LstmgenError(f"unknown training option {key!r}")
    return parts


def configs_from_parts(parts: dict[str, dict]) -> tuple[dict, "CorpusConfig", "TrainConfig", "TokenizerConfig"]:
    from ..text.corpus import CorpusConfig
    from ..text.tokenizer import TokenizerConfig
    from .config import TrainConfig

    return (parts["model"], CorpusConfig(**parts["corpus"]), TrainConfig(**parts["train"]),
            TokenizerConfig(**parts["tokenizer"]))
