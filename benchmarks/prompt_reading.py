"""Reading a prompt in fp32 and in bf16: time, and how well the state it
leaves predicts the next character.

    .venv/bin/python benchmarks/prompt_reading.py [--prompts 300] [--chars 100] [--threads 1] [--json out.json]

Takes PROMPTS excerpts of CHARS characters from Alice (the bundled model's
corpus; one every 301 characters from the 5,000th) and reads each with
lstmgen's read_prompt, as generation and the server read prompts: nn.LSTM in
fp32, or in bf16 (a bf16 copy of the model, with the bits of nn.LSTM under
bf16 autocast: what bf16 steps use where PyTorch runs a bf16 LSTM). Reports milliseconds per prompt (the median over the prompts, after
one warm-up) and the mean loss of the character that follows each prompt,
in bits, for both. --threads sets PyTorch's threads (the server's scheduler
has one on a 2-core machine).
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch
import torch.nn.functional as F

import lstmgen
from common import alice_excerpts, machine, pick_device, write_json
from lstmgen.sampling.steps import prompt_precision, read_prompt


def measure(model, prompts: list[torch.Tensor], precision: str) -> dict:
    """Median ms per prompt read in ``precision``, and the next character's mean loss in bits."""
    net = model.model.eval()
    times, loss_nats = [], 0.0
    with torch.inference_mode():
        read_prompt(net, prompts[0][:, :-1], None, precision)  # warm-up
        for ids in prompts:
            start = time.perf_counter()
            logits, _ = read_prompt(net, ids[:, :-1], None, precision)
            times.append((time.perf_counter() - start) * 1000)
            loss_nats += float(F.cross_entropy(logits, ids[0, -1:]))
    return {"ms_per_prompt": statistics.median(times), "next_char_bits": loss_nats / len(prompts) / math.log(2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=300)
    parser.add_argument("--chars", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = lstmgen.load()
    prompts = [torch.tensor([model.prompt_ids(model.prepare_text(text).text)])
               for text in alice_excerpts(args.prompts, args.chars + 1, 301, model.corpus_config)]
    bf16 = prompt_precision(model.model, "bf16")
    result = {"machine": machine(pick_device("cpu")), "threads": args.threads, "prompts": len(prompts),
              "chars": args.chars, "bf16_steps_read_in": bf16, "fp32": measure(model, prompts, "fp32")}
    if bf16 == "bf16":
        result["bf16"] = measure(model, prompts, "bf16")
    print(f"machine: {result['machine']}")
    for name in ("fp32", "bf16"):
        if name in result:
            print(f"{name}: {result[name]['ms_per_prompt']:.2f} ms a prompt of {args.chars} characters, "
                  f"next character {result[name]['next_char_bits']:.4f} bits")
    if bf16 != "bf16":
        print("bf16: PyTorch runs no bf16 LSTM on this CPU, so bf16 steps read their prompts in fp32")
    write_json(args.json, result)


if __name__ == "__main__":
    main()
