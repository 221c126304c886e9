import numpy as np
import pytest
import torch

from lstmgen.checkpoint import load_checkpoint, save_checkpoint
from lstmgen.text.corpus import CorpusConfig
from lstmgen.evaluate import evaluate_stream, evaluate_windows
from lstmgen.model import LSTMLanguageModel, ModelConfig
from lstmgen.text.tokenizer import CharTokenizer


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
    monkeypatch.setattr(M, "dropout", lambda t, p, training, locked=False: t)
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


def test_layer_by_layer_training_path_drops_between_layers(monkeypatch):
    """The second layer reads the first layer's output after dropout: its
    final state is what a one-layer LSTM with its weights gives on the dropped
    activations, and not what it gives on the activations as they were."""
    import lstmgen.model as M

    torch.manual_seed(0)
    config = ModelConfig(vocab_size=20, hidden_size=32, num_layers=2, dropout=0.3)
    model = LSTMLanguageModel(config).train()
    x = torch.randint(0, 20, (4, 12))
    calls = []
    real = M.dropout

    def spy(t, p, training, locked=False):
        out = real(t, p, training, locked)
        calls.append((t.detach().clone(), out.detach().clone()))
        return out

    monkeypatch.setattr(M, "dropout", spy)
    with torch.no_grad():
        _, _, (h, c) = model(x, None)
    before, after = calls[0]  # the first call: between layer 0 and layer 1
    assert before.shape == (4, 12, 32)
    dropped = (after == 0).float().mean().item()
    assert 0.2 < dropped < 0.4 and torch.allclose(after[after != 0], before[after != 0] / 0.7)
    layer1 = torch.nn.LSTM(32, 32, batch_first=True)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(layer1, f"{name}_l0").copy_(getattr(model.lstm, f"{name}_l1"))
        _, (h_dropped, _) = layer1(after)
        _, (h_plain, _) = layer1(before)
    assert torch.allclose(h[1], h_dropped[0], atol=1e-6)
    assert not torch.allclose(h[1], h_plain[0], atol=1e-3)


def test_fast_dropout_keeps_the_expected_fraction_and_scale():
    from lstmgen.model import dropout

    torch.manual_seed(0)
    x = torch.ones(200_000)
    y = dropout(x, 0.4, True)
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.6) < 0.005
    # p is rounded to a multiple of 2^-16 and the scale follows it, so the expectation stays exact.
    assert torch.allclose(y[kept], torch.full_like(y[kept], 65536 / (65536 - round(0.4 * 65536))))
    assert abs(y.mean().item() - 1.0) < 0.01
    assert torch.equal(dropout(x, 0.4, False), x) and torch.equal(dropout(x, 0.0, True), x)
    assert dropout(x.bfloat16(), 0.5, True).dtype == torch.bfloat16


def test_every_16_bit_slice_of_a_random_word_is_used_uniformly():
    """Four mask decisions come from each 64-bit random number; a slice left
    biased (random_() never sets the sign bit) would drop too few there."""
    from lstmgen.model import keep_mask

    torch.manual_seed(0)
    keep, _ = keep_mask((400_000,), 0.5, torch.device("cpu"))
    for slot in range(4):
        assert abs(keep.view(-1, 4)[:, slot].float().mean().item() - 0.5) < 0.01


REGULARIZED = dict(vocab_size=15, hidden_size=24, num_layers=2, dropout=0.3, embedding_dim=24, embedding_dropout=0.2,
                   locked_dropout=True, weight_dropout=0.3, tie_weights=True)


def test_regularizers_act_in_training_only():
    from dataclasses import replace

    torch.manual_seed(0)
    config = ModelConfig(**REGULARIZED)
    model = LSTMLanguageModel(config)
    plain = LSTMLanguageModel(replace(config, dropout=0.0, embedding_dropout=0.0, locked_dropout=False,
                                      weight_dropout=0.0))
    plain.load_state_dict(model.state_dict())
    x, y = torch.randint(0, 15, (3, 20)), torch.randint(0, 15, (3, 20))
    model.eval(), plain.eval()
    assert torch.equal(model(x)[0], plain(x)[0])
    model.train()
    weight_hh = model.lstm.weight_hh_l0.detach().clone()
    a, loss, _ = model(x, None, y)
    b, _, _ = model(x, None, y)
    assert not torch.equal(a, b) and torch.isfinite(loss)
    loss.backward()
    assert model.lstm.weight_hh_l0.grad.abs().sum() > 0 and model.embedding.weight.grad.abs().sum() > 0
    assert torch.equal(model.lstm.weight_hh_l0.detach(), weight_hh)  # DropConnect never writes the weights


def test_locked_dropout_shares_one_mask_over_time():
    from lstmgen.model import dropout

    torch.manual_seed(1)
    y = dropout(torch.ones(4, 50, 32), 0.5, True, locked=True)
    assert torch.equal(y, y[:, :1].expand_as(y))
    assert 0.3 < (y[:, 0] != 0).float().mean() < 0.7


def test_embedding_dropout_drops_every_occurrence_of_a_token():
    torch.manual_seed(2)
    model = LSTMLanguageModel(ModelConfig(vocab_size=6, hidden_size=8, embedding_dim=8, embedding_dropout=0.5)).train()
    idx = torch.arange(6).repeat(1, 30)  # (1, 180): each token 30 times
    rows = model.embed(idx)[0]  # (180, 8)
    for token in range(6):
        same = rows[idx[0] == token]
        assert torch.equal(same, same[:1].expand_as(same))
    # Rows are either all zero or all scaled by 1 / (1 - p), never partly dropped.
    weight = model.embedding.weight
    for token in range(6):
        row = rows[idx[0] == token][0]
        assert torch.equal(row, torch.zeros(8)) or torch.allclose(row, weight[token] * 2)


def test_tied_weights_share_one_matrix_and_survive_a_checkpoint(tmp_path):
    torch.manual_seed(3)
    config = ModelConfig(**REGULARIZED)
    model = LSTMLanguageModel(config).eval()
    untied = LSTMLanguageModel(ModelConfig(**dict(REGULARIZED, tie_weights=False)))
    assert model.head.weight is model.embedding.weight
    assert untied.num_parameters() - model.num_parameters() == 15 * 24
    tokenizer = CharTokenizer.from_text("abcdefghijklmno")
    save_checkpoint(tmp_path / "ck", model, tokenizer, CorpusConfig(), {})
    loaded = load_checkpoint(tmp_path / "ck").model
    assert loaded.head.weight is loaded.embedding.weight
    x = torch.randint(0, 15, (2, 9))
    assert torch.equal(loaded(x)[0], model(x)[0])


@pytest.mark.parametrize("kwargs, message", [
    ({"tie_weights": True, "embedding_dim": 16}, "--tie-weights needs"),
    ({"embedding_dropout": 0.2, "input_mode": "onehot"}, "--embedding-dropout needs"),
    ({"weight_dropout": 1.0}, "--weight-dropout must be in"),
])
def test_impossible_regularizer_settings_are_refused(kwargs, message):
    from lstmgen.errors import LstmgenError

    with pytest.raises(LstmgenError, match=message):
        ModelConfig(vocab_size=10, hidden_size=32, **kwargs)


def test_the_same_weights_save_to_the_same_bytes(tmp_path):
    """weights_sha256 identifies weights: a second save of them must not differ by a byte."""
    from lstmgen.checkpoint import save_checkpoint
    from lstmgen.text.corpus import CorpusConfig
    from lstmgen.text.tokenizer import CharTokenizer

    model = LSTMLanguageModel(ModelConfig(vocab_size=3, hidden_size=8, embedding_dim=4))
    tokenizer = CharTokenizer.from_text("abc")
    files = []
    for name in ("a", "b", "c", "d"):
        save_checkpoint(tmp_path / name, model, tokenizer, CorpusConfig(), {})
        files.append((tmp_path / name / "model.safetensors").read_bytes())
    assert all(f == files[0] for f in files)
