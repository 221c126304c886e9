"""--precision onnx: one-token steps through onnxruntime compute fp32's
steps (to float rounding) for every input mode, layer count and tied
weights, so greedy text and seeded samples come out the same; auto may
choose it; the server's Batcher steps with it too; and without
onnxruntime, asking for it gives one line that names the fix."""

import importlib.util

import pytest
import torch

import lstmgen
import test_batcher
from lstmgen.errors import LstmgenError
from lstmgen.model import LSTMLanguageModel, ModelConfig
from lstmgen.sampling import batcher as batcher_module
from lstmgen.sampling.config import SampleConfig
from lstmgen.sampling.onnx_step import OnnxStep
from lstmgen.sampling.steps import step_precision, step_weights
from lstmgen.sampling.window import WindowStream

from conftest import corpus_path

needs_onnxruntime = pytest.mark.skipif(
    importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnx") is None,
    reason="onnxruntime and onnx are not installed (pip install 'lstmgen[onnx]')")

# |onnx - fp32| <= ATOL + RTOL·|fp32|: float rounding in other kernels. The
# bundled model's cell states reach 155, where one rounding is about 1e-5.
ATOL = RTOL = 1e-5


def tiny(**fields) -> LSTMLanguageModel:
    torch.manual_seed(3)
    options = dict(vocab_size=17, hidden_size=40, embedding_dim=8, dropout=0.3) | fields
    return LSTMLanguageModel(ModelConfig(**options)).eval()


def worst_relative(model: LSTMLanguageModel, tokens: torch.Tensor) -> float:
    """Step fp32 and onnx through ``tokens`` (T, N), each on its own state;
    the largest |onnx - fp32| / (ATOL + RTOL·|fp32|) over every logit and
    state: at most 1 passes."""
    fp32, onnx = step_weights(model, "fp32"), step_weights(model, "onnx")
    cfg = model.config
    zeros = [torch.zeros(tokens.size(1), cfg.hidden_size)] * cfg.num_layers
    state_a, state_b = (zeros, zeros), (zeros, zeros)
    worst = 0.0
    with torch.inference_mode():
        for token in tokens:
            a, b = fp32.step(token, *state_a), onnx.step(token, *state_b)
            for x, y in zip([a[0], *a[1], *a[2]], [b[0], *b[1], *b[2]]):
                worst = max(worst, ((x - y).abs() / (ATOL + RTOL * x.abs())).max().item())
            state_a, state_b = (a[1], a[2]), (b[1], b[2])
    return worst


@needs_onnxruntime
@pytest.mark.parametrize("fields", [
    dict(input_mode="embedding", num_layers=1), dict(input_mode="embedding", num_layers=2),
    dict(input_mode="onehot", num_layers=1), dict(input_mode="onehot", num_layers=2),
    dict(input_mode="scaled", num_layers=1), dict(input_mode="scaled", num_layers=2),
    dict(hidden_size=32, embedding_dim=32, num_layers=2, tie_weights=True),
], ids=lambda f: "-".join(f"{k}={v}" for k, v in f.items()))
@pytest.mark.parametrize("table", [True, False])
def test_onnx_steps_match_fp32_steps_for_200_tokens(fields, table, monkeypatch):
    if not table:
        monkeypatch.setattr(OnnxStep, "_TABLE_LIMIT", 0)  # layer 0 as the LSTM operator on its inputs
    model = tiny(**fields)
    tokens = torch.randint(17, (200, 3), generator=torch.Generator().manual_seed(0))
    assert worst_relative(model, tokens) <= 1
    stepper = step_weights(model, "onnx")
    # a one-hot model always folds its input matrix into the table: the table is no larger
    assert stepper.table == (table or fields.get("input_mode") == "onehot")


@pytest.fixture(scope="module")
def bundled():
    return lstmgen.load()


@needs_onnxruntime
def test_the_bundled_model_steps_alike_through_200_characters_of_alice(bundled):
    from lstmgen.text.corpus import read_corpus

    text = read_corpus(corpus_path("alice-gutenberg-11-utf8.txt"), bundled.corpus_config).text
    ids = torch.tensor(bundled.tokenizer.encode(text[5000:5200]).tolist())
    # measured: logits within 1.2e-5, h within 2e-6, c (up to 155) within 2.5e-6 relative
    assert worst_relative(bundled.model.eval(), ids.unsqueeze(1)) <= 1


@needs_onnxruntime
def test_greedy_and_seeded_text_equals_fp32s(bundled):
    def text(precision: str, **fields) -> list[str]:
        return bundled.generate("Alice was ", SampleConfig.plain(precision=precision, **fields))

    assert text("onnx", temperature=0, max_new_tokens=200) == text("fp32", temperature=0, max_new_tokens=200)
    seeded = dict(temperature=0.9, max_new_tokens=100, num_samples=3, seed=11)
    assert text("onnx", **seeded) == text("fp32", **seeded)


@needs_onnxruntime
def test_window_generation_reads_its_head_rows_through_onnx():
    """A sliding window's logits come from some rows only (``head_rows``): a second graph."""
    model = tiny(num_layers=2)
    stepper = step_weights(model, "onnx")
    g = torch.Generator().manual_seed(1)
    token = torch.randint(17, (9,), generator=g)
    h, c = [torch.randn(9, 40, generator=g) for _ in range(2)], [torch.randn(9, 40, generator=g) for _ in range(2)]
    rows = torch.tensor([7, 0, 3])
    with torch.inference_mode():
        full, some = stepper.step(token, h, c)[0], stepper.step(token, h, c, head_rows=rows)[0]
    assert torch.equal(some, full[rows])

    def text(precision: str) -> list[int]:
        config = SampleConfig.plain(temperature=0, max_new_tokens=40, num_samples=2, precision=precision)
        return [t.tolist() for t in WindowStream(model, [1, 2, 3], config, seed=0, window=5).tokens()]
    assert text("onnx") == text("fp32")


@needs_onnxruntime
def test_auto_times_onnx_as_one_more_candidate_for_one_stream():
    model = tiny()
    choice = step_precision(model, "auto", 1)
    assert "onnx" in set(choice.ms) | set(choice.ruled_out)
    # Beyond one stream it lost whole generation on a 2-core CPU (steps.step_precision), so it is not a candidate.
    choice = step_precision(model, "auto", 2)
    assert "onnx" not in set(choice.ms) | set(choice.ruled_out)
    assert step_precision(model, "onnx", 64) == step_precision(model, "onnx", 1)  # requested: not timed
    assert step_precision(model, "onnx", 64).how == "requested"


def test_without_onnxruntime_asking_for_onnx_says_how_to_install_it(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    model = tiny()
    with pytest.raises(LstmgenError) as raised:
        step_precision(model, "onnx", 1)
    assert str(raised.value) == "--precision onnx needs onnxruntime and onnx: pip install 'lstmgen[onnx]'"
    with pytest.raises(LstmgenError, match="pip install 'lstmgen\\[onnx\\]'"):
        OnnxStep(model)
    # auto goes on without it
    assert "onnx" not in step_precision(model, "auto", 1).ms


@needs_onnxruntime
@pytest.mark.parametrize("test", [test_batcher.test_alone_equals_generate_and_equals_itself_in_a_crowd_bit_for_bit,
                                  test_batcher.test_row_stable_batch_is_where_rows_stop_depending_on_the_batch,
                                  test_batcher.test_a_cancelled_stream_leaves_and_n_streams_share_one_reading],
                         ids=lambda test: test.__name__)
def test_the_batcher_tests_pass_with_onnx_steps(test, monkeypatch):
    """The server's scheduler and its row-stable padding work on any stepper:
    test_batcher.py's tests, with every step weights asked for made onnx."""
    def onnx_steps(model, precision):
        return step_weights(model, "onnx")
    monkeypatch.setattr(batcher_module, "step_weights", onnx_steps)
    monkeypatch.setattr(test_batcher, "step_weights", onnx_steps)
    test()


@needs_onnxruntime
@pytest.mark.parametrize("precision", ["onnx", "fp32"])
def test_sampling_between_onnx_steps_runs_pytorch_on_one_thread(precision, monkeypatch):
    """onnxruntime's threads hold the cores between its steps, so PyTorch's
    sampling runs on one thread then, and gets its threads back after; with
    PyTorch's own steps nothing changes."""
    from lstmgen.sampling import stream as stream_module

    seen = []
    chosen = stream_module.next_tokens

    def next_tokens(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return chosen(*args, **kwargs)

    monkeypatch.setattr(stream_module, "next_tokens", next_tokens)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        model = lstmgen.load(None)
        texts = model.generate("Alice ", SampleConfig(max_new_tokens=20, num_samples=4, seed=1, precision=precision))
        assert len(texts) == 4 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert seen == [1 if precision == "onnx" else 2] * 20
