"""Serving a window-trained model: the Batcher and the server generate as
``lstmgen generate`` does (sliding windows), alone and in a crowd.

The model is the tutorial's small Keras checkpoint, imported, with its
windows cut to 10 characters in its config.json: over the tutorial's 100
characters this briefly trained model forgets its start, so sliding and
stateful texts agree there; over 10 they part within a few characters, and
a Batcher that stepped the model statefully fails these tests."""

import json

import pytest
import torch

import lstmgen
from lstmgen.sampling.batcher import Batcher
from lstmgen.sampling.config import SampleConfig

from conftest import corpus_path, fixture_path, start_server, submit_stream

pytest.importorskip("h5py", reason="h5py is in the test extra: pip install -e '.[test]'")

WINDOW = 10  # short, so that sliding and stateful texts part early (see above)
PROMPTS = ["alice was", "the queen said to the king that"]  # shorter and longer than the window


@pytest.fixture(scope="module")
def windowed(tmp_path_factory):
    """A window-framed model with 10-token windows, as lstmgen.load reads it."""
    run = tmp_path_factory.mktemp("windowed") / "run"
    corpus = corpus_path("alice-wonderland-tutorial-trimmed.txt")
    checkpoint = lstmgen.import_keras(fixture_path("keras-tutorial/tutorial-small.h5"), corpus, run)
    config_path = checkpoint / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["train"]["seq_len"] = WINDOW
    config_path.write_text(json.dumps(config), encoding="utf-8")
    model = lstmgen.load(run)
    assert model.framing == "windows" and model.unscored_tokens == WINDOW
    return model


def run_all(batcher, rounds=None):
    """Step until there is nothing to do, or for at most ``rounds`` rounds."""
    done = 0
    while (rounds is None or done < rounds) and batcher.step():
        done += 1


def generated(model, prompt, config, seed):
    return model.generate(prompt, SampleConfig(**dict(config.to_dict(), seed=seed)))[0]


# (prompt, settings, seed): the defaults (temperature 0.85, DRY); argmax (with DRY: plain argmax
# writes only spaces with this model); a high temperature under top-p and min-p.
CASES = [
    (PROMPTS[0], SampleConfig(max_new_tokens=80, precision="fp32"), 7),
    (PROMPTS[1], SampleConfig(max_new_tokens=80, temperature=0, precision="fp32"), 8),
    (PROMPTS[1], SampleConfig(max_new_tokens=80, temperature=1.2, top_p=0.9, min_p=0.05, precision="fp32"), 9),
]


@pytest.mark.parametrize("prompt, config, seed", CASES, ids=["defaults", "argmax", "filters"])
def test_a_window_model_alone_is_generate_and_the_same_in_a_crowd_bit_for_bit(windowed, prompt, config, seed):
    model = windowed
    expected = generated(model, prompt, config, seed)
    stateful = SampleConfig(**dict(config.to_dict(), window_generation="stateful"))
    assert expected != generated(model, prompt, stateful, seed)  # so this test can fail
    alone = Batcher(model, precision="fp32")
    job, pieces, ends, infos = submit_stream(alone, model, prompt, config, seed, logprobs=2)
    run_all(alone)
    assert "".join(pieces) == expected and ends == ["length"]

    # Others of every kind join before and after it and leave at their own lengths: sliding and
    # stateful streams, other settings, its own prompt, one sharing its reading (as n=2 would).
    crowded = Batcher(model, precision="fp32")
    others = [submit_stream(crowded, model, "the king " + "abcdef"[k] if k % 3 else prompt,
                     SampleConfig(max_new_tokens=20 + 9 * k, temperature=[0.85, 0.0, 1.2][k % 3],
                                  top_p=0.9 if k % 4 == 0 else None,
                                  window_generation="stateful" if k % 5 == 2 else "auto"), 100 + k)
              for k in range(6)]
    run_all(crowded, rounds=4)
    job2, pieces2, ends2, infos2 = submit_stream(crowded, model, prompt, config, seed, logprobs=2)
    twin = submit_stream(crowded, model, prompt, config, 50 + seed)
    run_all(crowded, rounds=6)
    later = [submit_stream(crowded, model, "down the " + "abc"[k], SampleConfig(max_new_tokens=15 + 5 * k), 200 + k)
             for k in range(3)]
    run_all(crowded)
    everyone = [*others, twin, *later]
    assert [o[0].produced for o in everyone] == [o[0].config.max_new_tokens for o in everyone]
    assert ends2 == ["length"] and "".join(pieces2) == "".join(pieces)
    # The model's log-probabilities are the same to the last bit as alone (rows and heads padded
    # to a row-stable batch; the state's rows measured stable up to 6,500 here).
    assert [x["logprob"] for x in infos2] == [x["logprob"] for x in infos]
    assert [x["top"] for x in infos2] == [x["top"] for x in infos]


def test_the_batchers_log_probabilities_are_the_last_windows_read_afresh(windowed):
    """Each token's log-probability is the model's on the last 10 tokens read from an empty state,
    as the tutorial computes it (not a state carried through the whole text)."""
    model = windowed
    batcher = Batcher(model, precision="fp32")
    config = SampleConfig.plain(max_new_tokens=40, temperature=0.9, precision="fp32")
    job, pieces, _, infos = submit_stream(batcher, model, PROMPTS[1], config, 3, logprobs=0)
    submit_stream(batcher, model, PROMPTS[0], SampleConfig(max_new_tokens=30), 4)  # company in the batch
    run_all(batcher)
    ids = model.tokenizer.encode(PROMPTS[1] + "".join(pieces)).tolist()
    start = len(ids) - len(infos)
    with torch.inference_mode():
        windows = torch.tensor([ids[k - WINDOW:k] for k in range(start, len(ids))])  # (40, 10)
        fresh = torch.log_softmax(model.model(windows, None, last_only=True)[0], -1)
        carried = torch.log_softmax(model.model(torch.tensor([ids[:-1]]), None)[0][0, start - 1:], -1)
    chosen = torch.tensor(ids[start:])
    got = torch.tensor([x["logprob"] for x in infos])
    torch.testing.assert_close(got, fresh[torch.arange(len(chosen)), chosen], atol=1e-5, rtol=0)
    assert (carried[torch.arange(len(chosen)), chosen] - got).abs().max() > 1e-2  # the ways differ here


def test_the_server_completes_a_window_model_as_generate_does(windowed):
    openai = pytest.importorskip("openai")
    pytest.importorskip("uvicorn")
    import httpx

    model = windowed
    srv, thread, port = start_server(lstmgen.create_server({"short": model}))
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0)
        for prompt, seed in zip(PROMPTS, (3, 4)):
            done = client.completions.create(model="short", prompt=prompt, max_tokens=120, seed=seed)
            expected = generated(model, prompt, SampleConfig(max_new_tokens=120, precision="fp32"), seed)
            assert done.choices[0].text == expected and done.choices[0].finish_reason == "length"
        # A request may ask to carry one state through the text instead.
        sliding = SampleConfig(max_new_tokens=120, precision="fp32")
        stateful = SampleConfig(max_new_tokens=120, precision="fp32", window_generation="stateful")
        done = client.completions.create(model="short", prompt=PROMPTS[0], max_tokens=120, seed=3,
                                         extra_body={"window_generation": "stateful"})
        assert done.choices[0].text == generated(model, PROMPTS[0], stateful, 3)
        assert done.choices[0].text != generated(model, PROMPTS[0], sliding, 3)
        with pytest.raises(openai.BadRequestError, match="window_generation must be one of"):
            client.completions.create(model="short", prompt="x", extra_body={"window_generation": "rolling"})
        described = httpx.get(f"http://127.0.0.1:{port}/v1/models").json()["data"][0]
        assert (described["framing"], described["window_generation"], described["window_tokens"]) == \
            ("windows", "sliding", WINDOW)
    finally:
        srv.should_exit = True
        thread.join(timeout=10)
