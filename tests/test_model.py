import numpy as np
import pytest
import torch

from lstmgen.checkpoint import load_checkpoint, save_checkpoint
from lstmgen.corpus import CorpusConfig
from lstmgen.evaluate import evaluate_stream, evaluate_windows
from lstmgen.model import LSTMLanguageModel, ModelConfig
from lstmgen.tokenizer import CharTokenizer


def tiny(input_mode="embedding", layers=2, vocab=11, seed=0):
    torch.manual_seed(seed)
    return LSTMLanguageModel(ModelConfig(vocab_size=vocab, hidden_size=16, num_layers=layers, dropout=0.1,
                                         input_mode=input_mode, embedding_dim=8)).eval()


@pytest.mark.parametrize("input_mode", ["embedding", "onehot", "scaled"])
def test_chunked_state_carry_equals_one_full_pass(input_mode):
    model = tiny(input_mode)
    idx = torch.randint(0, 11, (3, 40))
    full, _, (h_full, c_full) = model(idx)
    state, pieces = None, []
    for a in range(0, 40, 7):
        logits, _, state = model(idx[:, a:a + 7], state)
        pieces.append(logits)
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(state[0], h_full)
    torch.testing.assert_close(state[1], c_full)


def test_scaled_input_is_id_over_vocab_size():
    model = tiny("scaled")
    x = model.embed(torch.tensor([[0, 5, 10]]))
    torch.testing.assert_close(x, torch.tensor([[[0.0], [5 / 11], [10 / 11]]]))


def test_save_load_gives_identical_logits(tmp_path):
    model = tiny()
    tok = CharTokenizer(list("abcdefghij\n"))
    save_checkpoint(tmp_path / "ck", model, tok, CorpusConfig(lowercase=True), {"train": {"framing": "stream"}})
    loaded = load_checkpoint(tmp_path / "ck")
    idx = torch.randint(0, 11, (2, 30))
    assert torch.equal(model(idx)[0], loaded.model(idx)[0])
    assert loaded.tokenizer.chars == tok.chars
    assert loaded.corpus_config.lowercase is True
    assert not (tmp_path / ".ck.old").exists() and not list(tmp_path.glob(".ck.tmp-*"))


def test_half_precision_weights_load_as_float32(tmp_path):
    model = tiny()
    save_checkpoint(tmp_path / "ck", model, CharTokenizer(list("abcdefghij\n")), CorpusConfig(), {},
                    weights_dtype=torch.float16)
    loaded = load_checkpoint(tmp_path / "ck").model
    assert loaded.head.weight.dtype == torch.float32
    idx = torch.randint(0, 11, (1, 20))
    torch.testing.assert_close(model(idx)[0], loaded(idx)[0], rtol=0, atol=2e-2)


def naive_loss(model, ids):
    logits, _, _ = model(torch.as_tensor(np.asarray(ids[:-1], dtype=np.int64))[None])
    return torch.nn.functional.cross_entropy(logits[0], torch.as_tensor(np.asarray(ids[1:], dtype=np.int64))).item()


def test_stream_evaluation_with_one_column_is_exactly_one_pass():
    model = tiny()
    ids = np.random.default_rng(0).integers(0, 11, 700).astype(np.uint8)
    result = evaluate_stream(model, ids, columns=1, seq_len=64)
    assert result.tokens == 699
    assert result.loss_nats == pytest.approx(naive_loss(model, ids), rel=1e-5)
    assert result.bits_per_char == pytest.approx(result.loss_nats / np.log(2))
    assert result.perplexity == pytest.approx(np.exp(result.loss_nats))


def test_parallel_stream_evaluation_matches_one_pass():
    model = tiny()
    ids = np.random.default_rng(1).integers(0, 11, 5000).astype(np.uint8)
    parallel = evaluate_stream(model, ids, columns=8, seq_len=50, burn_in=100)
    assert parallel.tokens == 4999
    assert parallel.loss_nats == pytest.approx(naive_loss(model, ids), abs=1e-4)


def test_window_evaluation_matches_a_loop_over_windows():
    model = tiny("scaled", layers=1)
    ids = np.random.default_rng(2).integers(0, 11, 60).astype(np.uint8)
    result = evaluate_windows(model, ids, window=10, batch_size=7)
    losses = []
    for t in range(10, 60):
        logits, _, _ = model(torch.as_tensor(ids[t - 10:t].astype(np.int64))[None], None, last_only=True)
        losses.append(torch.nn.functional.cross_entropy(logits, torch.tensor([int(ids[t])])).item())
    assert result.tokens == 50
    assert result.loss_nats == pytest.approx(np.mean(losses), rel=1e-5)


def test_layer_by_layer_training_path_is_nn_lstm_with_its_own_dropout(monkeypatch):
    """Training stacked layers with dropout runs one kernel call per layer; with
    the dropout taken out it must give nn.LSTM's exact outputs, state and gradients."""
    import lstmgen.model as M

    torch.manual_seed(0)
    config = ModelConfig(vocab_size=20, hidden_size=32, num_layers=3, dropout=0.3)
    model = LSTMLanguageModel(config).train()
    x, y = torch.randint(0, 20, (4, 12)), torch.randint(0, 20, (4, 12))
    state = model.init_state(4)
    state = (torch.randn_like(state[0]), torch.randn_like(state[1]))
    monkeypatch.setattr(M, "dropout", lambda t, p, training: t)
    _, loss, (h, c) = model(x, state, y)
    loss.backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model.lstm.dropout = 0.0  # nn.LSTM's own multi-layer call, without its dropout
    out, (h_ref, c_ref) = model.lstm(model.embed(x), state)
    ref = torch.nn.functional.cross_entropy(model.head(out).reshape(-1, 20), y.reshape(-1))
    ref.backward()
    assert torch.equal(loss, ref) and torch.equal(h, h_ref) and torch.equal(c, c_ref)
    for got, p in zip(grads, model.parameters()):
        assert torch.allclose(got, p.grad, atol=1e-7)


def test_fast_dropout_keeps_the_expected_fraction_and_scale():
    from lstmgen.model import dropout

    torch.manual_seed(0)
    x = torch.ones(200_000)
    y = dropout(x, 0.4, True)
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.6) < 0.005
    assert torch.allclose(y[kept], torch.full_like(y[kept], 1 / 0.6))
    assert torch.equal(dropout(x, 0.4, False), x) and torch.equal(dropout(x, 0.0, True), x)
    assert dropout(x.bfloat16(), 0.5, True).dtype == torch.bfloat16
