"""Continuous batching: a seeded request gives the same text alone as
lstmgen generate does, and the same text and log-probabilities, bit for
bit, alone as among other streams of other settings that join and leave
between steps."""

import pytest
import torch

import lstmgen
from lstmgen.sampling.batcher import Batcher
from lstmgen.sampling.config import SampleConfig
from lstmgen.sampling.steps import int8_available, row_stable_batch, step_weights

from conftest import submit_stream


def run_all(batcher):
    while batcher.step():
        pass


def test_alone_equals_generate_and_equals_itself_in_a_crowd_bit_for_bit():
    model = lstmgen.load()
    config = SampleConfig(max_new_tokens=200, precision="fp32")
    expected = model.generate("Alice was", SampleConfig(max_new_tokens=200, precision="fp32", seed=7))[0]
    alone = Batcher(model, precision="fp32")
    job, pieces, ends, infos = submit_stream(alone, model, "Alice was", config, 7, logprobs=2)
    run_all(alone)
    # generate steps one stream unpadded, the batcher a padded batch: their logits may differ by
    # about 1e-6, which flips no token of this text.
    assert "".join(pieces) == expected and ends == ["length"]

    crowded = Batcher(model, precision="fp32")
    settings = [SampleConfig(max_new_tokens=30 + 7 * i, temperature=[0.85, 0.0, 1.2][i % 3],
                             top_p=0.9 if i % 4 == 0 else None, min_p=0.05 if i % 5 == 0 else None)
                for i in range(40)]
    others = [submit_stream(crowded, model, f"The Queen {i}", c, 100 + i) for i, c in enumerate(settings)]
    job2, pieces2, ends2, infos2 = submit_stream(crowded, model, "Alice was", config, 7, logprobs=2)
    run_all(crowded)
    assert [o[0].produced for o in others] == [c.max_new_tokens for c in settings]  # each left at its own length
    assert ends2 == ["length"] and "".join(pieces2) == "".join(pieces)
    # The batch went from 41 streams down to 1 along the way: the model's log-probabilities are
    # still the same to the last bit as alone (every step is padded to a row-stable batch size).
    assert [i["logprob"] for i in infos2] == [i["logprob"] for i in infos]
    assert [i["top"] for i in infos2] == [i["top"] for i in infos]


def test_bf16_steps_read_prompts_as_generate_does_and_give_its_text():
    """A bf16 server reads each prompt in bf16 where the CPU runs a bf16 LSTM, as lstmgen
    generate --precision bf16 does, so a seeded request gets generate's text; a prompt longer
    than one reading slice is read on from a bf16 state that went through fp32 unchanged."""
    model = lstmgen.load()
    batcher = Batcher(model, precision="bf16")
    assert batcher.prompt_precision in ("bf16", "fp32")
    assert Batcher(model, precision="fp32").prompt_precision == "fp32"
    for prompt in ("Alice was", "The Queen said " * 40):  # 600 characters: two slices of 512 and 88
        config = SampleConfig(max_new_tokens=150, precision="bf16")
        expected = model.generate(prompt, SampleConfig(max_new_tokens=150, precision="bf16", seed=11))[0]
        job, pieces, ends, _ = submit_stream(batcher, model, prompt, config, 11)
        run_all(batcher)
        assert "".join(pieces) == expected and ends == ["length"]


@pytest.mark.parametrize("precision", ["bf16", "int8", "auto"])
def test_any_fixed_step_precision_gives_a_stream_its_text_alone_and_in_a_crowd(precision):
    """lstmgen serve --precision: whatever kernel steps the batch, padding to its own row-stable size
    keeps a seeded stream's log-probabilities the same alone as among 20 others; 'auto' is decided
    once, for the whole batch, when the Batcher starts."""
    if precision == "int8" and not int8_available(torch.device("cpu")):
        pytest.skip("this PyTorch has no int8 weight kernel")
    model = lstmgen.load()
    config = SampleConfig(max_new_tokens=80)
    alone = Batcher(model, precision=precision, max_streams=24)
    assert alone.precision_choice.how in (("requested",) if precision != "auto" else ("measured", "cached"))
    assert alone.stepper.precision == alone.precision_choice.precision
    _, pieces, _, infos = submit_stream(alone, model, "Alice was", config, 3, logprobs=1)
    run_all(alone)
    # 'auto' times the candidates again in a second Batcher until its cached timings agree, and
    # two close ones may then differ: the crowd joins the same Batcher, as a server's requests do.
    crowded = alone if precision == "auto" else Batcher(model, precision=precision, max_streams=24)
    others = [submit_stream(crowded, model, f"The Queen {i}", SampleConfig(max_new_tokens=10 + 5 * i), i)
              for i in range(20)]
    _, pieces2, _, infos2 = submit_stream(crowded, model, "Alice was", config, 3, logprobs=1)
    run_all(crowded)
    assert all(o[0].produced == 10 + 5 * i for i, o in enumerate(others))
    assert "".join(pieces2) == "".join(pieces) and len(pieces) == 80
    assert [i["logprob"] for i in infos2] == [i["logprob"] for i in infos]


def test_row_stable_batch_is_where_rows_stop_depending_on_the_batch():
    model = lstmgen.load()
    stepper = step_weights(model.model.eval(), "fp32")
    vocab, hidden, layers = model.model.config.vocab_size, stepper.hidden_size, stepper.num_layers
    floor = row_stable_batch(stepper, vocab, 24)
    assert 1 <= floor <= 24
    g = torch.Generator().manual_seed(5)  # other states than the probe's own
    token = torch.randint(vocab, (24,), generator=g)
    h = [torch.randn(24, hidden, generator=g) for _ in range(layers)]
    c = [torch.randn(24, hidden, generator=g) for _ in range(layers)]
    with torch.inference_mode():
        full = stepper.step(token, h, c)[0]
        for n in range(floor, 24):
            assert torch.equal(stepper.step(token[:n], [x[:n] for x in h], [x[:n] for x in c])[0], full[:n])
        # A row's place in the batch does not matter either (streams move up as others leave).
        same = stepper.step(token[:1].repeat(24), [x[:1].repeat(24, 1) for x in h], [x[:1].repeat(24, 1) for x in c])[0]
        assert torch.equal(same, same[:1].expand_as(same))


@pytest.mark.parametrize("read_beside", [True, False])
def test_run_reads_prompts_beside_the_steps_or_in_them_with_the_same_text(read_beside):
    """Batcher.run reads prompts in a thread of its own, or (read_beside=False, where every core
    already steps streams) in the stepping thread, a slice a round; the text is generate's either way,
    for a short prompt and for one longer than a round's slice."""
    import threading
    import time

    from lstmgen.sampling.batcher import PROMPT_TOKENS_PER_ROUND

    model = lstmgen.load()
    batcher = Batcher(model, precision="fp32")
    stopping = threading.Event()
    stepping = threading.Thread(target=batcher.run, args=(stopping, None, read_beside), daemon=True)
    stepping.start()
    prompts = ["Alice was", "The Queen said " * (PROMPT_TOKENS_PER_ROUND // 10)]
    config = SampleConfig(max_new_tokens=60, precision="fp32")
    streams = [submit_stream(batcher, model, prompt, config, 5) for prompt in prompts]
    try:
        for _ in range(600):
            if all(ends for _, _, ends, _ in streams):
                break
            time.sleep(0.05)
        assert (batcher._reader is not None) == read_beside
    finally:
        stopping.set()
        stepping.join(timeout=30)
    assert batcher._reader is None  # gone with run: a later step reads prompts itself
    for prompt, (_, pieces, ends, _) in zip(prompts, streams):
        assert ends == ["length"]
        assert "".join(pieces) == model.generate(prompt, SampleConfig(max_new_tokens=60, precision="fp32", seed=5))[0]


def test_a_cancelled_stream_leaves_and_n_streams_share_one_reading():
    model = lstmgen.load()
    batcher = Batcher(model, precision="fp32")
    a, pa, ea, _ = submit_stream(batcher, model, "Alice", SampleConfig(max_new_tokens=500), 1)
    b, pb, eb, _ = submit_stream(batcher, model, "Alice", SampleConfig(max_new_tokens=20), 2)
    batcher.step()
    assert len(batcher.active) == 2 and not batcher.reading
    batcher.cancel(a)
    run_all(batcher)
    assert a.produced < 5 and not ea and b.produced == 20 and eb == ["length"]
    assert not batcher.active and batcher.streams == 0


def test_streams_of_several_penalty_settings_share_histories_and_keep_their_own_text():
    """Streams with equal penalty settings step one History between them:
    every stream of four kinds of penalties, joining at different rounds and
    leaving at its own length, writes the text it writes alone."""
    model = lstmgen.load()
    kinds = [dict(), dict(dry_multiplier=0.0), dict(repetition_penalty=1.3, frequency_penalty=0.2),
             dict(temperature=0.0, dry_allowed_length=4, no_repeat_ngram=5, presence_penalty=0.5)]
    settings = [SampleConfig(max_new_tokens=40 + 9 * i, precision="fp32", **kinds[i % 4]) for i in range(12)]

    def text_alone(i):
        batcher = Batcher(model, precision="fp32", max_streams=16)
        _, pieces, _, _ = submit_stream(batcher, model, f"The Queen {i}", settings[i], i)
        run_all(batcher)
        return "".join(pieces)

    crowded = Batcher(model, precision="fp32", max_streams=16)
    streams = []
    for i in range(12):
        streams.append(submit_stream(crowded, model, f"The Queen {i}", settings[i], i))
        for _ in range(i % 3 * 7):  # a third join at once, the rest some rounds later
            crowded.step()
    assert len(crowded.histories) == 4
    run_all(crowded)
    assert not crowded.histories and not crowded.active
    assert ["".join(pieces) for _, pieces, _, _ in streams] == [text_alone(i) for i in range(12)]

