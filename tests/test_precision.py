"""--precision auto: chosen by timing real work on this machine, cached, and
recorded. The timings here compare calls whose costs differ by a factor of
eight or more, so the outcome does not hang on the machine's noise."""

import json
import os

import pytest
import torch

import lstmgen
from lstmgen.errors import LstmgenError
from lstmgen.sampling.steps import step_precision
from lstmgen.model import LSTMLanguageModel, ModelConfig
from lstmgen.precision import PrecisionChoice, cache_dir, choose, pick
from lstmgen.training.config import TrainConfig
from lstmgen.training.speed import training_precision

from conftest import corpus_path, run_cli

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LSTMGEN_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def matmuls(count: int, size: int = 192):
    """A factory of a call doing ``count`` products of ``size`` × ``size``."""
    def make():
        a, b = torch.randn(size, size), torch.randn(size, size)

        def call():
            for _ in range(count):
                a @ b
        return call
    return make


def test_fp32_stays_unless_another_is_clearly_faster():
    assert pick({"fp32": 1.0, "bf16": 0.97}) == "fp32"  # 3% is within the margin
    assert pick({"fp32": 1.0, "bf16": 0.90}) == "bf16"
    assert pick({"fp32": 1.0, "bf16": 1.5, "int8": 0.5}) == "int8"
    assert pick({"fp32": 0.4, "bf16": 0.9}) == "fp32"


def test_the_faster_candidate_wins_by_measurement():
    fast = choose("test", {"n": 1}, {"fp32": matmuls(8), "int8": matmuls(1)}, CPU, "products")
    assert (fast.precision, fast.how) == ("int8", "measured")
    assert fast.ms["int8"] < fast.ms["fp32"]
    slow = choose("test", {"n": 2}, {"fp32": matmuls(1), "bf16": matmuls(3)}, CPU, "products")
    assert slow.precision == "fp32"
    # On a loaded machine the first round may cross the emulation bound and
    # drop bf16 without further timing; either way it must lose, and say how.
    if "bf16" in slow.ms:
        assert slow.ms["bf16"] > slow.ms["fp32"]
    else:
        assert slow.ruled_out["bf16"].endswith("× as slow as fp32")


def test_an_emulated_or_failing_candidate_is_ruled_out_without_timing():
    def broken():
        def call():
            raise RuntimeError("could not create a primitive descriptor. Run with VERBOSE")
        return call

    choice = choose("test", {"n": 3}, {"fp32": matmuls(1), "bf16": broken, "int8": matmuls(40)}, CPU, "products")
    assert choice.precision == "fp32" and list(choice.ms) == ["fp32"]
    assert choice.ruled_out["bf16"] == "PyTorch cannot run it here: could not create a primitive descriptor"
    assert choice.ruled_out["int8"].endswith("× as slow as fp32")
    assert "bf16 ruled out" in choice.describe("training")
    with pytest.raises(RuntimeError):
        choose("test", {"n": 4}, {"fp32": broken, "bf16": matmuls(1)}, CPU, "products")


def test_a_choice_is_kept_once_a_second_timing_agrees_then_read_from_the_cache(own_cache):
    fast_int8 = {"fp32": matmuls(8), "int8": matmuls(1)}
    first = choose("test", {"n": 5}, fast_int8, CPU, "products")
    second = choose("test", {"n": 5}, fast_int8, CPU, "products")
    assert (first.how, second.how) == ("measured", "measured") and first.precision == second.precision == "int8"
    again = choose("test", {"n": 5}, {"fp32": matmuls(1), "int8": matmuls(8)}, CPU, "products")
    # This call would pick fp32 if it measured; it must recall instead.
    assert again.how == "cached" and again.precision == "int8" and again.ms == second.ms
    other = choose("test", {"n": 6}, {"fp32": matmuls(1), "int8": matmuls(8)}, CPU, "products")
    assert other.how == "measured" and other.precision == "fp32"
    files = list(own_cache.glob("precision-*.json"))
    assert len(files) == 1 and cache_dir() == own_cache
    entries = json.loads(files[0].read_text())
    assert {json.loads(k)[1]["n"] for k in entries if k.startswith("[")} == {5, 6}


def test_a_timing_taken_in_a_slow_spell_is_outvoted(own_cache):
    """One timing never decides alone: a first run that (by a slow spell) found fp32 fastest is
    followed by two that find int8 fastest, and int8 is kept; timings that keep disagreeing are
    settled by the majority of three."""
    slow_spell = {"fp32": matmuls(1), "int8": matmuls(8)}
    normal = {"fp32": matmuls(8), "int8": matmuls(1)}
    picks = [choose("test", {"n": 9}, c, CPU, "products") for c in (slow_spell, normal, normal, slow_spell)]
    assert [(p.precision, p.how) for p in picks] == [("fp32", "measured"), ("int8", "measured"),
                                                      ("int8", "measured"), ("int8", "cached")]
    votes = [choose("test", {"n": 10}, c, CPU, "products") for c in (normal, slow_spell, normal, slow_spell)]
    assert [(p.precision, p.how) for p in votes] == [("int8", "measured"), ("fp32", "measured"),
                                                      ("int8", "measured"), ("int8", "cached")]


def test_a_broken_or_unwritable_cache_only_means_measuring_again(own_cache):
    own_cache.mkdir()
    choose("test", {"n": 7}, {"fp32": matmuls(1)}, CPU, "products")
    [path] = own_cache.glob("precision-*.json")
    path.write_text("{not json")
    assert choose("test", {"n": 7}, {"fp32": matmuls(1)}, CPU, "products").how == "measured"
    if os.geteuid() != 0:  # root writes anywhere
        own_cache.chmod(0o500)
        try:
            assert choose("test", {"n": 8}, {"fp32": matmuls(1)}, CPU, "products").how == "measured"
        finally:
            own_cache.chmod(0o700)


def test_measuring_leaves_the_random_streams_alone():
    config = ModelConfig(vocab_size=20, hidden_size=32, embedding_dim=8, dropout=0.3, weight_dropout=0.2)
    torch.manual_seed(3)
    before = torch.get_rng_state()
    choice = training_precision(config, TrainConfig(max_steps=1, batch_size=4, seq_len=16), 4, CPU)
    assert choice.how == "measured"
    assert torch.equal(torch.get_rng_state(), before)


def test_training_precision_times_the_runs_own_shapes():
    config = ModelConfig(vocab_size=20, hidden_size=32, embedding_dim=8)
    train = TrainConfig(max_steps=1, batch_size=6, seq_len=100)
    choice = training_precision(config, train, 3, CPU)
    assert choice.timed == "forward and backward of 3 × 32 tokens"
    assert choice.precision in choice.ms and set(choice.ms) | set(choice.ruled_out) == {"fp32", "bf16"}
    forced = training_precision(config, TrainConfig(max_steps=1, precision="fp32"), 3, CPU)
    assert (forced.precision, forced.how) == ("fp32", "requested")


def bf16_lstm_runs() -> bool:
    model = LSTMLanguageModel(ModelConfig(vocab_size=5, hidden_size=8, embedding_dim=4)).train()
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            model(torch.zeros(1, 2, dtype=torch.long))
        return True
    except RuntimeError:
        return False


def test_forced_bf16_fails_with_one_clear_line_where_pytorch_cannot_run_it(tmp_path):
    result = run_cli("train", str(corpus_path("alice-gutenberg-11-utf8.txt")), "--out", str(tmp_path / "run"),
                     "--max-steps", "2", "--hidden-size", "16", "--embedding-dim", "8", "--precision", "bf16",
                     "--quiet")
    if bf16_lstm_runs():
        assert result.returncode == 0, result.stderr.decode()[-1000:]
    else:
        err = result.stderr.decode()
        assert result.returncode == 1 and "Traceback" not in err
        assert "--precision bf16 does not work on this machine" in err and "use --precision auto or fp32" in err


def test_a_training_run_records_and_prints_its_choice(tmp_path):
    lines = []
    lstmgen.train(corpus_path("alice-gutenberg-11-utf8.txt"), tmp_path / "run", max_steps=3, hidden_size=32,
                  embedding_dim=8, batch_size=4, seq_len=24, progress=False, log=lines.append)
    meta = json.loads((tmp_path / "run" / "last" / "config.json").read_text())
    chosen = meta["precision_chosen"]["training"]
    assert meta["train"]["precision"] == "auto" and chosen["how"] == "measured"
    assert chosen["precision"] in chosen["ms"] and "fp32" in chosen["ms"]
    assert chosen["timed"] == "forward and backward of 4 × 24 tokens"
    [line] = [line for line in lines if "training in" in line]
    assert line == "lstmgen: " + PrecisionChoice(**chosen).describe("training")


def test_a_seeded_run_is_the_same_whether_its_choice_was_measured_or_cached(tmp_path, own_cache):
    options = dict(max_steps=3, hidden_size=32, embedding_dim=8, batch_size=4, seq_len=24, progress=False,
                   log=lambda *_: None, weight_dropout=0.2, locked_dropout=True)
    alice = corpus_path("alice-gutenberg-11-utf8.txt")
    for run in "abcd":
        lstmgen.train(alice, tmp_path / run, **options)
    metas = [json.loads((tmp_path / r / "last" / "config.json").read_text()) for r in "abcd"]
    chosen = [m["precision_chosen"]["training"] for m in metas]
    assert [c["how"] for c in chosen[:2]] == ["measured", "measured"] and chosen[3]["how"] == "cached"
    # The cached run against every measured run that chose the same precision (there is one: the
    # choice was kept because timings agreed, or by their majority).
    same = [m for m, c in zip(metas[:3], chosen) if c["how"] == "measured" and c["precision"] == chosen[3]["precision"]]
    assert same and all(m["weights_sha256"] == metas[3]["weights_sha256"] for m in same)


def test_generation_times_a_power_of_two_of_streams_and_reuses_it():
    model = LSTMLanguageModel(ModelConfig(vocab_size=30, hidden_size=48, embedding_dim=8)).eval()
    three = step_precision(model, "auto", 3)
    assert three.how == "measured" and three.timed == "one step of 4 streams"
    assert set(three.ms) | set(three.ruled_out) >= {"fp32", "bf16"}
    four = [step_precision(model, "auto", 4) for _ in range(3)]  # kept by the third timing at the latest
    assert four[-1].how == "cached" and four[-1].timed == "one step of 4 streams"
    assert step_precision(model, "auto", 5).timed == "one step of 8 streams"
    assert step_precision(model, "fp32", 64) == PrecisionChoice("fp32", "requested")
    with pytest.raises(LstmgenError, match="--precision int8 needs a CPU"):
        step_precision(model.to("meta"), "int8", 1)


def test_doctor_reports_the_machine_and_the_choices():
    result = run_cli("doctor", "--json")
    assert result.returncode == 0, result.stderr.decode()[-1000:]
    report = json.loads(result.stdout)
    assert report["cpu"]["cores"] == os.cpu_count() and report["torch"]["version"] == torch.__version__
    assert report["matmul_peak_gflops"]["fp32"] > 0 and report["matmul_peak_gflops"]["bf16"] > 0
    auto = report["auto_precision"]
    assert set(auto) == {"training", "generation_1_streams", "generation_64_streams"}
    assert auto["training"]["batch"] == 16 and auto["generation_64_streams"]["timed"] == "one step of 64 streams"
    text = run_cli("doctor")
    out = text.stdout.decode()
    assert text.returncode == 0 and "measured matmul peak" in out and "CPU flags that decide speed" in out
    # Timed above, then here again: each choice is kept (said "earlier on this machine") once two agree.
    assert "generation, 64 streams in" in out and ("earlier on this machine" in out or "the fastest measured" in out)


def test_doctor_refuses_an_unknown_device_in_one_line():
    result = run_cli("doctor", "--device", "tpu")
    err = result.stderr.decode()
    assert result.returncode == 1 and "Traceback" not in err and "--device must be auto, cpu or cuda" in err


def test_a_preset_trains_its_slower_settings_on_a_machine_below_its_speed_floor(tmp_path):
    from lstmgen.training.presets import SpeedFloor, speed_floor
    from lstmgen.training.start import train

    options = dict(hidden_size=48, num_layers=1, embedding_dim=8, dropout=0.0)
    config = TrainConfig(max_steps=1, batch_size=4, seq_len=16, eval_every=None)
    alice = corpus_path("alice-gutenberg-11-utf8.txt")
    lines = []
    # No machine trains a billion characters a second: the slower settings must be used.
    train(alice, tmp_path / "slow", options, train_config=config, progress=False, log=lines.append,
          speed_floor=SpeedFloor(1e9, {"hidden_size": 24}, "a test"))
    meta = json.loads((tmp_path / "slow" / "last" / "config.json").read_text())
    assert meta["model"]["hidden_size"] == 24
    check = meta["speed_check"]
    assert check["slower_settings_used"] and 0 < check["chars_per_second_measured"] < 1e9
    assert any("training hidden_size=24 instead (a test)" in line for line in lines)
    # Every machine trains one character a second: the preset's own model stays.
    train(alice, tmp_path / "fast", options, train_config=config, progress=False, log=lines.append,
          speed_floor=SpeedFloor(1, {"hidden_size": 24}, "a test"))
    meta = json.loads((tmp_path / "fast" / "last" / "config.json").read_text())
    assert meta["model"]["hidden_size"] == 48 and not meta["speed_check"]["slower_settings_used"]
    # A setting the user chose is never replaced.
    assert speed_floor("cpu-20min", {}) is not None
    assert speed_floor("cpu-20min", {"hidden_size": 512}) is None and speed_floor("cpu-5min", {}) is None


def test_generation_times_again_once_onnxruntime_is_installed(monkeypatch):
    """The candidates are part of what a cached choice was measured for: a
    choice made without onnxruntime is not reused once it can run."""
    import importlib.util

    from lstmgen.sampling.onnx_step import onnx_step_problem

    model = LSTMLanguageModel(ModelConfig(vocab_size=30, hidden_size=48, embedding_dim=8)).eval()
    if onnx_step_problem(model) is not None:
        pytest.skip("onnxruntime and onnx are not installed")
    real = importlib.util.find_spec
    with monkeypatch.context() as patch:
        patch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
        without = step_precision(model, "auto", 1)
    with_it = step_precision(model, "auto", 1)
    assert "onnx" not in without.ms and without.how == "measured"
    assert "onnx" in set(with_it.ms) | set(with_it.ruled_out) and with_it.how == "measured"
    assert [step_precision(model, "auto", 1).how for _ in range(3)][-1] == "cached"
