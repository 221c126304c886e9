"""Named recipes. Flags given on the command line override preset values."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import LstmgenError

if TYPE_CHECKING:
    from .corpus import CorpusConfig
    from .tokenizer import TokenizerConfig
    from .training import TrainConfig

# Each preset has three parts, one per config object: model, corpus, train.
PRESETS: dict[str, dict[str, dict]] = {
    # The best recipe found for a 2-core CPU in 5 minutes on Alice (README,
    # "Choosing the default preset"): on a small corpus, more updates of a
    # mid-sized model with heavy dropout beat a wider model or bigger batches.
    "default": {
        "model": {"hidden_size": 384, "num_layers": 2, "dropout": 0.4, "input_mode": "embedding",
                  "embedding_dim": 64},
        "corpus": {},
        "train": {"framing": "stream", "batch_size": 16, "seq_len": 128, "lr": 3e-3, "lr_schedule": "cosine",
                  "warmup_steps": 20, "grad_clip": 1.0, "epochs": None, "max_minutes": 5.0},
    },
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
    from dataclasses import fields

    from .corpus import CorpusConfig
    from .model import ModelConfig
    from .tokenizer import TokenizerConfig
    from .training import TrainConfig

    parts = get_preset(preset)
    parts.setdefault("tokenizer", {})
    owners = {
        "model": {f.name for f in fields(ModelConfig)} - {"vocab_size"},
        "corpus": {f.name for f in fields(CorpusConfig)},
        "train": {f.name for f in fields(TrainConfig)},
        "tokenizer": {f.name for f in fields(TokenizerConfig)},
    }
    for key, value in overrides.items():
        if value is None:
            continue
        for part, names in owners.items():
            if key in names:
                parts[part][key] = value
                break
        else:
            raise LstmgenError(f"unknown training option {key!r}")
    return (parts["model"], CorpusConfig(**parts["corpus"]), TrainConfig(**parts["train"]),
            TokenizerConfig(**parts["tokenizer"]))
