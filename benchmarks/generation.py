"""Generation speed: one stream and batches, time to first character, and
the cost per character against prompt length.

    .venv/bin/python benchmarks/generation.py [--run RUN_DIR] [--device auto] [--json out.json]

All through the public API (LanguageModel.stream), so text decoding and the
Python generator are part of every figure. For each batch size (1, 8, 64,
256 samples) and step precision (auto, and each fixed one; onnx where
onnxruntime is installed) it reports characters per second over all
samples, and achieved FLOP/s counted as 2 × parameters per generated
character, against the matmul peak measured in the same run.

Prompt length: a 10-character and a 10,000-character prompt from Alice; the
time to the first character includes reading the prompt, the cost per
later character should not change. For contrast, the tutorial's method (re-run
a 100-character window for every character) is timed on the same model.
"""

from __future__ import annotations

import argparse
import time

import torch

import lstmgen
from lstmgen.text.corpus import read_corpus
from lstmgen.sampling.config import PLAIN, SampleConfig
from lstmgen.sampling.onnx_step import onnx_step_problem
from lstmgen.sampling.steps import int8_available, step_precision
from lstmgen.precision import PrecisionChoice

from common import ALICE, machine, print_table, require, start, sync, write_json


def timed_stream(model, prompt: str, config: SampleConfig, device) -> dict:
    sync(device)
    start = time.perf_counter()
    first = None
    steps = 0
    for _ in model.stream(prompt, config):
        if first is None:
            first = time.perf_counter()
        steps += 1
    sync(device)
    end = time.perf_counter()
    chars = steps * config.num_samples
    return {"seconds": end - start, "first_char_ms": 1000 * (first - start),
            "chars": chars, "chars_per_second": chars / (end - start),
            # Every character after the first: the steady-state cost.
            "us_per_step_after_first": 1e6 * (end - first) / max(steps - 1, 1)}


def timed_for(model, prompt: str, streams: int, precision: str, seconds: float, device) -> dict:
    """timed_stream over about ``seconds`` of steps, their number set by a 50-step probe."""
    def config(steps: int) -> SampleConfig:
        return SampleConfig(max_new_tokens=steps, num_samples=streams, seed=0, precision=precision)
    probe = timed_stream(model, prompt, config(50), device)
    return timed_stream(model, prompt, config(max(50, int(seconds * 1e6 / probe["us_per_step_after_first"]))), device)


def window_refeed(model, prompt_ids: list[int], chars: int, window: int = 100) -> float:
    """Characters per second by the tutorial's method: run the last
    ``window`` characters from an empty state for every new character."""
    ids = list(prompt_ids[-window:])
    net = model.model
    device = net.head.weight.device
    start = time.perf_counter()
    with torch.inference_mode():
        for _ in range(chars):
            x = torch.tensor([ids[-window:]], device=device)
            logits, _, _ = net(x, None, last_only=True)
            ids.append(int(logits.argmax(-1)))
    return chars / (time.perf_counter() - start)


# The anti-loop processors timed against plain sampling (--processors changes them).
PROCESSORS: list[str] = []  # SampleConfig's defaults as they are


def sample_settings(pairs: list[str]) -> dict:
    """NAME=VALUE pairs of SampleConfig fields, parsed as the command line parses them."""
    fields = {f.name: f for f in lstmgen.config_fields(SampleConfig)}
    settings = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        if name not in fields:
            raise SystemExit(f"benchmark: {name!r} is not a SampleConfig field")
        settings[name] = fields[name].parse(value)
    return settings


def processor_overhead(model, prompt: str, settings: dict, streams: int, steps: int, device, rounds: int = 3) -> dict:
    """µs per step of plain sampling (SampleConfig.plain) and of the defaults
    with ``settings`` on top, alternating runs so that drift hits both alike;
    the fastest run of each."""
    times = {"plain": [], "processors": []}
    for seed in range(rounds):
        for name in ("plain", "processors"):
            common = dict(max_new_tokens=steps, num_samples=streams, seed=seed, precision="fp32")
            config = SampleConfig.plain(**common) if name == "plain" else SampleConfig(**dict(settings, **common))
            times[name].append(timed_stream(model, prompt, config, device)["us_per_step_after_first"])
    plain, on = min(times["plain"]), min(times["processors"])
    return {"streams": streams, "plain_us_per_step": plain, "processors_us_per_step": on, "overhead": on / plain - 1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default=None, help="model to generate with (default: the bundled model)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8, 64, 256])
    parser.add_argument("--seconds", type=float, default=2.0, help="about this long per measurement")
    parser.add_argument("--prompt-rounds", type=int, default=5, help="runs of each prompt length (default 5)")
    parser.add_argument("--processors", nargs="*", default=PROCESSORS, metavar="NAME=VALUE",
                        help="settings on top of SampleConfig's defaults, timed against plain sampling "
                             "(default: none, the defaults as they are)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    settings = sample_settings(args.processors)
    device, peak = start(args.device)
    model = lstmgen.load(args.run, device=str(device))
    params = model.model.num_parameters()
    text = read_corpus(require(ALICE), model.corpus_config).text
    prompt = text[1000:1010]
    precisions = ["auto", "fp32", "bf16"] + (["int8"] if int8_available(device) else [])
    precisions += ["onnx"] if onnx_step_problem(model.model) is None else []  # with lstmgen[onnx], on a CPU

    rows = []
    choices = {n: step_precision(model.model, "auto", n).to_dict() for n in args.batches}
    for n, choice in choices.items():
        print(PrecisionChoice(**choice).describe(f"auto, {n} stream{'s' if n > 1 else ''}"))
    for n in args.batches:
        for precision in precisions:
            r = timed_for(model, prompt, n, precision, args.seconds, device)
            r.update(streams=n, precision=precision, flops_per_second=2 * params * r["chars_per_second"])
            r["gflops"] = r["flops_per_second"] / 1e9
            r["of_fp32_peak"] = r["flops_per_second"] / peak["fp32"]
            r["of_bf16_peak"] = r["flops_per_second"] / peak["bf16"]
            rows.append(r)
    print("\nGeneration (model: %s, %s parameters, prompt of 10 characters)" % (args.run or "bundled", f"{params:,}"))
    print_table(rows, [("streams", "streams", "d"), ("precision", "precision", ""),
                       ("chars_per_second", "chars/s", ",.0f"), ("us_per_step_after_first", "µs/step", ",.1f"),
                       ("first_char_ms", "first char ms", ".2f"), ("gflops", "GFLOP/s", ",.1f"),
                       ("of_fp32_peak", "of fp32 peak", ".1%"), ("of_bf16_peak", "of bf16 peak", ".1%")])

    for r in rows:
        base = next(b for b in rows if b["streams"] == r["streams"] and b["precision"] == "fp32")
        r["speedup_over_fp32"] = r["chars_per_second"] / base["chars_per_second"]
    print("auto / fp32: " + ", ".join(f"{r['streams']} streams {r['speedup_over_fp32']:.2f}×"
                                     for r in rows if r["precision"] == "auto"))

    long_prompt = text[1000:11000]
    config = SampleConfig(max_new_tokens=2000, seed=0)
    runs: dict[int, list[dict]] = {len(prompt): [], len(long_prompt): []}
    for _ in range(args.prompt_rounds + 1):  # alternate, so that drift hits both alike; first round is warm-up
        for p in (prompt, long_prompt):
            runs[len(p)].append(timed_stream(model, p, config, device))
    lengths = []
    for chars, measured in runs.items():
        measured = sorted(measured[1:], key=lambda r: r["us_per_step_after_first"])
        median = dict(measured[len(measured) // 2], prompt_chars=chars)
        median["first_char_ms"] = sorted(r["first_char_ms"] for r in measured)[len(measured) // 2]
        median["us_per_step_min"] = measured[0]["us_per_step_after_first"]
        median["us_per_step_max"] = measured[-1]["us_per_step_after_first"]
        lengths.append(median)
    ratio = lengths[1]["us_per_step_after_first"] / lengths[0]["us_per_step_after_first"]
    # Each long-prompt run against the short one beside it: the spread says whether the ratio is noise.
    pairs = sorted(b["us_per_step_after_first"] / a["us_per_step_after_first"]
                   for a, b in zip(runs[len(prompt)][1:], runs[len(long_prompt)][1:]))
    print(f"\nPrompt length (1 stream, precision auto, 2,000 new characters; medians of {args.prompt_rounds} runs)")
    print_table(lengths, [("prompt_chars", "prompt chars", ",d"), ("first_char_ms", "first char ms", ".2f"),
                          ("us_per_step_after_first", "µs per later char", ",.1f"),
                          ("us_per_step_min", "min", ",.1f"), ("us_per_step_max", "max", ",.1f"),
                          ("chars_per_second", "chars/s overall", ",.0f")])
    print(f"cost per character, 10,000-character prompt / 10-character prompt: {ratio:.3f} "
          f"(run by run: {', '.join(f'{r:.3f}' for r in pairs)})")

    ids = model.tokenizer.encode(long_prompt).tolist()
    refeed = window_refeed(model, ids, 200)
    one = next((r for r in rows if r["streams"] == 1 and r["precision"] == "auto"), None)  # absent without --batches 1
    against = (f"; lstmgen's stateful steps: {one['chars_per_second']:,.0f} chars/s "
               f"({one['chars_per_second'] / refeed:.1f}×)" if one else "")
    print(f"\nThe tutorial's method on this model (re-run a 100-character window per character, argmax): "
          f"{refeed:,.0f} chars/s{against}")
    overhead = [processor_overhead(model, prompt, settings, n, max(200, int(2000 / n)), device) for n in (1, 64)]
    on = SampleConfig(**settings)
    changed = {k: v for k, v in on.to_dict().items() if k in PLAIN and v != PLAIN[k]}
    print(f"\nThe default processors{' with ' + ', '.join(args.processors) if args.processors else ''} "
          f"({', '.join(f'{k}={v}' for k, v in changed.items()) or 'none'}) against plain sampling, "
          "fp32, fastest of 3 runs each")
    print_table(overhead, [("streams", "streams", "d"), ("plain_us_per_step", "plain µs/step", ",.1f"),
                           ("processors_us_per_step", "with processors", ",.1f"), ("overhead", "overhead", ".1%")])
    write_json(args.json, {"machine": machine(device), "peak_flops_per_second": peak, "parameters": params,
                           "processor_settings": settings, "processors_on": changed, "processor_overhead": overhead,
                           "generation": rows, "prompt_length": lengths, "prompt_length_cost_ratio": ratio,
                           "prompt_length_cost_ratio_per_run": pairs, "auto_choices": choices,
                           "window_refeed_chars_per_second": refeed})


if __name__ == "__main__":
    main()
