"""Item framing (--framing lines / sentences): every item from a fresh state,
ended by an end-of-item token; batches by length whose loss is the per-item
loop's; held out by items; resumed bit for bit; generated one whole item at a
time, in generate, the Batcher and the server."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

import lstmgen
from lstmgen import SampleConfig
from lstmgen.evaluate import evaluate_items
from lstmgen.model import LSTMLanguageModel, ModelConfig
from lstmgen.text.batches import IGNORE, ItemBatches, item_ends, load_split
from lstmgen.text.tokenizer import CharTokenizer, ItemTokenizer, TokenizerConfig, tokenizer_from_dict

from conftest import corpus_path, run_cli

NAMES = ["emma", "olivia", "ava", "isabella", "sophia", "charlotte", "mia", "amelia", "harper", "evelyn", "abigail",
         "emily", "elizabeth", "mila", "ella", "avery", "sofia", "camila", "aria", "scarlett", "victoria", "madison",
         "luna", "grace", "chloe", "penelope", "layla", "riley", "zoey", "nora", "lily", "eleanor", "hannah"]
TINY = ["--hidden-size", "24", "--num-layers", "2", "--embedding-dim", "8", "--batch-size", "8", "--seq-len", "16",
        "--quiet", "--precision", "fp32"]


def _per_item_loop_nats(model, tokenizer, items) -> tuple[float, int]:
    """The reference: each item alone, from a zero state, its start token in and its end token out."""
    total, tokens = 0.0, 0
    with torch.no_grad():
        for item in items:
            ids = torch.tensor([[tokenizer.end_id, *tokenizer.encode(item).tolist(), tokenizer.end_id]])
            logits, _, _ = model(ids[:, :-1], None)
            total += float(F.cross_entropy(logits[0], ids[0, 1:], reduction="sum"))
            tokens += ids.size(1) - 1
    return total, tokens


def test_batches_by_length_give_the_per_item_loop_loss():
    tokenizer = ItemTokenizer(CharTokenizer.from_text("".join(NAMES)))
    ids = tokenizer.encode_items(NAMES)
    ends = item_ends(ids, tokenizer.end_id)
    torch.manual_seed(0)
    model = LSTMLanguageModel(ModelConfig(vocab_size=tokenizer.vocab_size, hidden_size=16, num_layers=2)).eval()
    loop_total, loop_tokens = _per_item_loop_nats(model, tokenizer, NAMES)
    batches = ItemBatches(ids, ends, tokens_per_batch=40, rng=np.random.default_rng(3))
    seen, total, tokens = [], 0.0, 0
    with torch.no_grad():
        for x, y in batches:
            assert (x[:, 0] == tokenizer.end_id).all()  # every row starts an item
            logits, _, _ = model(torch.from_numpy(x), None)
            total += float(F.cross_entropy(logits.reshape(-1, logits.size(-1)), torch.from_numpy(y).reshape(-1),
                                           reduction="sum", ignore_index=IGNORE))
            tokens += int((y != IGNORE).sum())
            seen += [tokenizer.decode(row[row != IGNORE]) for row in y]
    assert sorted(seen) == sorted(NAMES)  # each item once, whole
    assert tokens == loop_tokens == sum(len(n) + 1 for n in NAMES)
    assert total == pytest.approx(loop_total, rel=1e-5)
    # Sorting by length keeps the padding small; the same batches unsorted would pad far more.
    assert batches.padding_share < 0.25
    result = evaluate_items(model, ids, ends, tokens_per_batch=50)
    assert result.items == len(NAMES) and result.tokens == loop_tokens
    assert result.loss_nats == pytest.approx(loop_total / loop_tokens, rel=1e-5)
    assert result.nats_per_item == pytest.approx(loop_total / len(NAMES), rel=1e-5)


@pytest.mark.parametrize("level", ["char", "word", "bpe"])
def test_every_level_gains_an_end_token_no_text_encodes_to(level):
    text = "\n".join(NAMES * 12) + " <end>"  # the end token's name is ordinary text
    base = TokenizerConfig(level=level, vocab_size={"char": None, "word": 40, "bpe": 300}[level]).build(text)
    tokenizer = ItemTokenizer(base)
    assert tokenizer.vocab_size == base.vocab_size + 1 and tokenizer.end_id == base.vocab_size
    ids = tokenizer.encode_items(NAMES[:3])
    assert ids[0] == ids[-1] == tokenizer.end_id and (ids == tokenizer.end_id).sum() == 4
    assert tokenizer.end_id not in tokenizer.encode(text).tolist()
    again = tokenizer_from_dict(json.loads(json.dumps(tokenizer.to_dict())))
    assert isinstance(again, ItemTokenizer) and again.vocab_size == tokenizer.vocab_size
    assert again.decode(ids) == "".join(NAMES[:3])
    decoder = again.stream_decoder()
    assert "".join(decoder.push(int(i)) for i in ids) + decoder.flush() == "".join(NAMES[:3])


@pytest.fixture(scope="module")
def names(tmp_path_factory):
    """The first 3,000 names of names.txt (the whole list would only make the tests slower)."""
    path = tmp_path_factory.mktemp("names-text") / "names.txt"
    path.write_text("\n".join(corpus_path("names.txt").read_text().splitlines()[:3000]) + "\n")
    return path


@pytest.fixture(scope="module")
def names_run(tmp_path_factory, names):
    run = tmp_path_factory.mktemp("names") / "run"
    result = run_cli("train", str(names), "--out", str(run), "--framing", "lines",
                     "--max-steps", "40", "--eval-every", "20", *TINY)
    assert result.returncode == 0, result.stderr.decode()
    return run, result.stderr.decode()


def test_held_out_by_items_and_evaluated_per_item(names_run, names):
    run, log = names_run
    assert "of the positions are padding" in log
    names = [line.strip() for line in names.read_text().splitlines() if line.strip()]
    model = lstmgen.load(run)
    assert model.items and model.framing == "lines"
    val = model.split_items("val")
    assert val == names[-len(val):] and len(val) == len(names) - int(len(names) * 0.9)
    assert model.split_items("train") == names[:-len(val)]
    result = model.evaluate_validation()
    assert result.items == len(val) and result.tokens == sum(len(n) + 1 for n in val)
    assert result.nats_per_item == pytest.approx(result.loss_nats * result.tokens / result.items)
    rows = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["val_loss_nats"] == pytest.approx(result.loss_nats, abs=1e-4)
    assert rows[-1]["val_nats_per_item"] == pytest.approx(result.nats_per_item, abs=1e-3)


def test_generated_items_start_fresh_and_stop_at_the_end_token(names_run):
    run, _ = names_run
    model = lstmgen.load(run)
    config = SampleConfig(num_samples=20, seed=5, max_new_tokens=60)
    generation = model.start("", config)
    texts = ["".join(p) for p in zip(*generation.pieces())]
    assert all(generation.ended) and not any("\n" in t for t in texts) and sum(map(len, texts)) > 40
    # A prompt is the item's beginning; an item that runs out of tokens is not ended.
    config = SampleConfig(num_samples=4, seed=5, max_new_tokens=2)
    generation = model.start("ma", config)
    short = list(generation.pieces())
    assert not any(generation.ended) and len(short) == 2
    # The command prints one item per line.
    out = run_cli("generate", str(run), "--num-samples", "20", "--seed", "5", "--max-new-tokens", "60")
    assert out.returncode == 0, out.stderr.decode()
    assert out.stdout.decode().splitlines() == texts


def test_the_batcher_finishes_an_item_with_stop(names_run):
    from lstmgen.sampling.batcher import Batcher

    from conftest import submit_stream

    model = lstmgen.load(names_run[0])
    batcher = Batcher(model, max_streams=4)
    config = SampleConfig(seed=9, max_new_tokens=60)
    job, pieces, ends, _ = submit_stream(batcher, model, "", config, 9)
    other = submit_stream(batcher, model, "", SampleConfig(seed=1, max_new_tokens=60), 1)
    while batcher.step():
        pass
    assert ends == ["stop"] and other[2] == ["stop"]
    expected = model.generate("", config)[0]
    assert "".join(pieces) == expected and expected


def test_resume_is_bitwise_for_items(tmp_path, names):
    quiet = lambda *_: None
    common = dict(framing="lines", eval_every=5, hidden_size=24, num_layers=2, embedding_dim=8, batch_size=8,
                  seq_len=16, precision="fp32", progress=False, log=quiet)
    lstmgen.train(names, tmp_path / "a", max_steps=12, **common)
    lstmgen.train(names, tmp_path / "b", max_steps=6, **common)
    lstmgen.resume(tmp_path / "b", max_steps=12, progress=False, log=quiet)
    wa = load_file(str(tmp_path / "a" / "last" / "model.safetensors"))
    wb = load_file(str(tmp_path / "b" / "last" / "model.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    split = load_split(tmp_path / "a" / "data")  # the item index beside the token files
    assert np.array_equal(split.train_ends, item_ends(split.train, int(split.train.max())))


def test_the_server_answers_an_item_with_finish_reason_stop(names_run):
    openai = pytest.importorskip("openai")
    pytest.importorskip("uvicorn")
    from conftest import start_server

    model = lstmgen.load(names_run[0])
    srv, thread, port = start_server(lstmgen.create_server({"names": model}))
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0)
        done = client.completions.create(model="names", prompt="", max_tokens=60, seed=4, n=3)
        expected = model.generate("", SampleConfig(max_new_tokens=60, seed=4, num_samples=1, precision="fp32"))[0]
        assert [c.finish_reason for c in done.choices] == ["stop"] * 3
        assert done.choices[0].text == expected and "\n" not in expected
        begun = client.completions.create(model="names", prompt="ma", max_tokens=60, seed=4)
        assert begun.choices[0].finish_reason == "stop"
        assert begun.choices[0].text == model.generate("ma", SampleConfig(max_new_tokens=60, seed=4,
                                                                          precision="fp32"))[0]
    finally:
        srv.should_exit = True
        thread.join(timeout=10)


def test_chat_writes_one_item_per_line_and_enter_starts_the_next(names_run):
    import io

    from lstmgen.chat import Chat

    model = lstmgen.load(names_run[0])
    out, warnings = io.StringIO(), []
    chat = Chat(model, SampleConfig(max_new_tokens=60, seed=7), out, warnings.append)
    assert chat.handle("ma")
    first = out.getvalue()
    assert first == "ma" + model.generate("ma", SampleConfig(max_new_tokens=60, seed=7))[0] + "\n"
    assert chat.text.ended == [True]
    out.truncate(0), out.seek(0)
    assert chat.handle("")  # Enter alone: an item from nothing
    assert out.getvalue().count("\n") == 1 and not warnings
    out.truncate(0), out.seek(0)
    assert chat.handle("/continue")  # after an ended item: the next one, from a fresh state
    assert out.getvalue().count("\n") == 1 and not warnings


def test_samples_report_on_an_item_model_counts_new_unended_and_lengths(names_run):
    """The command's item report, each column recomputed here from the same seeded items."""
    import numpy as np

    from lstmgen.sampling.item_report import generate_items

    run, _ = names_run
    result = run_cli("samples-report", str(run), "--samples", "30", "--length", "4", "--seed", "2",
                     "--compare", "default", "plain,temperature=1.0", "--json")
    assert result.returncode == 0, result.stderr.decode()
    rows = {r["setting"]: r for r in json.loads(result.stdout)["rows"]}
    assert set(rows) == {"default", "plain,temperature=1.0", "held-out items"}
    model = lstmgen.load(run)
    training = set(model.split_items("train"))
    config = SampleConfig.plain(temperature=1.0, num_samples=30, seed=2, max_new_tokens=4)
    items, ended = generate_items(model, config)
    done = [item for item, e in zip(items, ended) if e]
    row = rows["plain,temperature=1.0"]
    assert 0 < len(done) < 30  # at most 4 characters: some names end, some are cut
    assert row["unfinished_share"] == pytest.approx(1 - len(done) / 30)
    assert row["in_training_share"] == pytest.approx(sum(item in training for item in done) / len(done))
    assert row["median_chars"] == pytest.approx(np.median([len(item) for item in done]))
    held = rows["held-out items"]
    val = model.split_items("val")[:30]
    assert held["items"] == 30 and held["unfinished_share"] == 0
    assert held["mean_chars"] == pytest.approx(np.mean([len(v) for v in val]))
    # The table names what "new" counts.
    table = run_cli("samples-report", str(run), "--samples", "3", "--length", "20")
    assert table.returncode == 0 and "'new' is the share not found verbatim" in table.stdout.decode()
