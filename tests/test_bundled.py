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


def test_prompts_read_in_bf16_score_the_next_character_as_fp32_does():
    """bf16 steps read their prompt in bf16 (nn.LSTM under autocast, in about
    half the time on a CPU with AVX512-BF16): over 60 prompts of 100 characters
    from Alice, the next character scores within 0.01 nats of an fp32 read."""
    import torch
    import torch.nn.functional as F

    from lstmgen.sampling.steps import prompt_precision, read_prompt

    model = lstmgen.load()
    assert prompt_precision(model.model, "fp32") == "fp32" and prompt_precision(model.model, "int8") == "fp32"
    if prompt_precision(model.model, "bf16") != "bf16":
        pytest.skip("this PyTorch has no bf16 LSTM on this CPU: bf16 steps read their prompts in fp32 here")
    text = read_corpus(corpus_path("alice-gutenberg-11-utf8.txt"), model.corpus_config).text
    losses = {"fp32": 0.0, "bf16": 0.0}
    with torch.inference_mode():
        for start in range(5000, 5000 + 60 * 301, 301):
            ids = torch.tensor([model.prompt_ids(model.prepare_text(text[start:start + 101]).text)])
            for precision in losses:
                logits, (h, c) = read_prompt(model.model, ids[:, :-1], None, precision)
                assert logits.dtype == h.dtype == c.dtype == torch.float32
                losses[precision] += float(F.cross_entropy(logits, ids[0, -1:])) / 60
    assert losses["bf16"] != losses["fp32"]  # it did read in bf16
    assert abs(losses["bf16"] - losses["fp32"]) < 0.01


def test_a_bf16_read_is_nn_lstm_under_bf16_autocast_bit_for_bit():
    """read_prompt's bf16 copy of the model, kept so that no call casts the
    weights again, gives autocast's own bits, read whole or on from a state,
    and is made again once the weights change."""
    import torch

    from lstmgen.sampling.steps import prompt_precision, read_prompt

    model = lstmgen.load()
    if prompt_precision(model.model, "bf16") != "bf16":
        pytest.skip("this PyTorch has no bf16 LSTM on this CPU: bf16 steps read their prompts in fp32 here")
    net = model.model

    def autocast_read(ids, state):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits, _, (h, c) = net(ids, state, last_only=True)
        return [logits.float(), h.float(), c.float()]

    g = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        for length in (1, 37, 100, 513):
            ids = torch.randint(net.config.vocab_size, (2, length), generator=g)
            logits, (h, c) = read_prompt(net, ids, None, "bf16")
            assert all(torch.equal(a, b) for a, b in zip([logits, h, c], autocast_read(ids, None)))
            on = read_prompt(net, ids, (h, c), "bf16")
            assert all(torch.equal(a, b) for a, b in zip([on[0], *on[1]], autocast_read(ids, (h, c))))
        ids = torch.randint(net.config.vocab_size, (1, 50), generator=g)
        before = read_prompt(net, ids, None, "bf16")[0]
        with torch.no_grad():
            net.head.bias += 1.0
        try:
            after = read_prompt(net, ids, None, "bf16")[0]
            assert torch.equal(after, autocast_read(ids, None)[0]) and not torch.equal(after, before)
        finally:
            with torch.no_grad():
                net.head.bias -= 1.0


@pytest.mark.parametrize("input_mode", ["scaled", "onehot"])
def test_a_bf16_read_keeps_autocast_bits_for_every_input_mode(input_mode):
    """The tutorial's scaled ids (id / vocabulary, which a bf16 copy would divide in bf16) and
    one-hot inputs read in bf16 give nn.LSTM's bits under autocast too, with a vocabulary past
    bf16's exact integers (300)."""
    import torch

    from lstmgen.model import LSTMLanguageModel, ModelConfig
    from lstmgen.sampling.steps import prompt_precision, read_prompt

    torch.manual_seed(0)
    net = LSTMLanguageModel(ModelConfig(vocab_size=300, hidden_size=32, input_mode=input_mode)).eval()
    if prompt_precision(net, "bf16") != "bf16":
        pytest.skip("this PyTorch has no bf16 LSTM on this CPU: bf16 steps read their prompts in fp32 here")
    ids = torch.randint(300, (2, 40))
    with torch.inference_mode():
        logits, (h, c) = read_prompt(net, ids, None, "bf16")
        with torch.autocast("cpu", dtype=torch.bfloat16):
            expected, _, (eh, ec) = net(ids, None, last_only=True)
    assert all(torch.equal(a, b.float()) for a, b in zip([logits, h, c], [expected, eh, ec]))
