"""The samples report of an item model (names, titles, sentences): whether
generated items look like held-out ones in length, whether they are new,
and whether they end on their own."""

from __future__ import annotations

import numpy as np

from ..errors import LstmgenError
from .config import SampleConfig


def generate_items(model, config: SampleConfig, prompt: str = "") -> tuple[list[str], list[bool]]:
    """``config.num_samples`` items, each from a fresh state, and for each
    whether it reached its end token within ``config.max_new_tokens``."""
    generation = model.start(prompt, config)
    pieces: list[list[str]] = [[] for _ in range(config.num_samples)]
    for step in generation.pieces():
        for i, piece in enumerate(step):
            pieces[i].append(piece)
    return [prompt + "".join(p) for p in pieces], list(generation.ended)


def length_summary(items: list[str]) -> dict:
    """Item lengths in characters: mean, and the 10th, 50th and 90th percentiles."""
    lengths = np.array([len(item) for item in items], dtype=float)
    if not len(lengths):
        return {"mean_chars": float("nan"), "p10_chars": float("nan"), "median_chars": float("nan"),
                "p90_chars": float("nan")}
    p10, p50, p90 = np.percentile(lengths, [10, 50, 90])
    return {"mean_chars": float(lengths.mean()), "p10_chars": float(p10), "median_chars": float(p50),
            "p90_chars": float(p90)}


def item_row(name: str, items: list[str], ended: list[bool] | None, training: set[str], model) -> dict:
    """One row of the report: how many items, their lengths, the share found
    verbatim among the training items, the share of distinct ones, the share
    that never ended, and the model's own loss per item on them."""
    finished = [item for item, done in zip(items, ended or [True] * len(items)) if done]
    row = {"setting": name, "items": len(items),
           "unfinished_share": 1.0 - len(finished) / len(items) if items else 0.0,
           "in_training_share": sum(item in training for item in finished) / len(finished) if finished else 0.0,
           "distinct_share": len(set(finished)) / len(finished) if finished else 0.0,
           **length_summary(finished)}
    # Scored as the items they are (re-cutting their text could split a generated sentence in two).
    row["nats_per_item"] = model.evaluate_ids(model.tokenizer.encode_items(finished)).nats_per_item \
        if finished else float("nan")
    return row


def items_report(model, settings: dict[str, SampleConfig], samples: int, max_tokens: int, seed: int = 0,
                 held_out: list[str] | None = None, training: list[str] | None = None) -> list[dict]:
    """One row per setting (``samples`` items, at most ``max_tokens`` tokens
    each), and one for the held-out items: the comparison a user needs to
    trust "new names" to be new and of the right length."""
    if not model.items:
        raise LstmgenError(f"{model.path} is not an item model; this report is for --framing lines or sentences")
    training_set = set(training if training is not None else model.split_items("train"))
    rows = []
    for name, config in settings.items():
        config = SampleConfig(**dict(config.to_dict(), num_samples=samples, seed=seed, max_new_tokens=max_tokens))
        items, ended = generate_items(model, config)
        rows.append(item_row(name, items, ended, training_set, model))
    held = held_out if held_out is not None else model.split_items("val")
    if held:
        rows.append(item_row("held-out items", held[:max(samples, 1)], None, training_set, model))
    return rows
