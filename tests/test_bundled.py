"""The bundled Alice model: its size limit and the README's held-out figure."""

import re
from pathlib import Path

import pytest

import lstmgen
from lstmgen.api import BUNDLED_DIR
from lstmgen.text.corpus import read_corpus
from lstmgen.text.batches import split_ids
from lstmgen.sampling.config import SampleConfig

from conftest import ROOT, corpus_path


def readme_figure() -> float:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"held-out loss on the last 10% of Alice: \*\*([0-9.]+) nats", text)
    assert match, "the README lost its bundled-model figure"
    return float(match.group(1))


def test_bundled_model_is_small_and_complete():
    files = {p.name: p.stat().st_size for p in Path(BUNDLED_DIR).iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json"} <= set(files)
    assert sum(files.values()) <= 5_000_000


def test_bundled_held_out_loss_matches_readme():
    model = lstmgen.load()
    corpus = read_corpus(corpus_path("alice-gutenberg-11-utf8.txt"), model.corpus_config)
    ids = model.tokenizer.encode(corpus.text)
    held_out = ids[split_ids(len(ids), 0.1):]
    result = model.evaluate_ids(held_out)
    assert result.loss_nats == pytest.approx(readme_figure(), abs=0.02)
    assert result.tokens == len(held_out) - 1


def test_bundled_model_generates_english_looking_text():
    text = lstmgen.load().generate("Alice was beginning", SampleConfig(max_new_tokens=400, temperature=0.5, seed=0))[0]
    words = re.findall(r"[a-z]+", text.lower())
    common = {"the", "and", "she", "to", "a", "of", "it", "was", "said", "alice", "in", "you", "i", "that"}
    assert len(words) > 40
    assert sum(w in common for w in words) / len(words) > 0.2


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_reduced_precision_steps_keep_the_held_out_loss(precision):
    """Generation's bf16 and int8 steps score held-out text within 0.002 nats
    of fp32 steps (BENCHMARKS.md reports the measured difference)."""
    import math

    import torch

    from lstmgen.sampling.steps import StepWeights, int8_available

    if precision == "int8" and not int8_available(torch.device("cpu")):
        pytest.skip("this PyTorch has no weight-only int8 kernel")
    model = lstmgen.load()
    corpus = read_corpus(corpus_path("alice-gutenberg-11-utf8.txt"), model.corpus_config)
    ids = model.tokenizer.encode(corpus.text)
    held_out = torch.from_numpy(ids[split_ids(len(ids), 0.1):][:2001].astype("int64"))

    def loss(p: str) -> float:
        stepper = StepWeights(model.model, p)
        n, h = model.model.config.num_layers, model.model.config.hidden_size
        hs, cs = [torch.zeros(1, h)] * n, [torch.zeros(1, h)] * n
        total = 0.0
        with torch.inference_mode():
            for t in range(len(held_out) - 1):
                logits, hs, cs = stepper.step(held_out[t:t + 1], hs, cs)
                total += float(torch.nn.functional.cross_entropy(logits, held_out[t + 1:t + 2]))
        return total / (len(held_out) - 1)

    reference, reduced = loss("fp32"), loss(precision)
    assert math.isfinite(reduced)
    assert abs(reduced - reference) < 0.002
