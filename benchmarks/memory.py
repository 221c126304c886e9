"""Peak memory of `lstmgen prepare` and `lstmgen train` on a large corpus.

    .venv/bin/python benchmarks/memory.py [--gb 1.0] [--files 8] [--steps 200] [--keep DIR]

Builds a corpus of the given size by repeating the shared corpora
(../shared/corpora, or $LSTMGEN_CORPORA) into --files text files, then runs
the real commands in subprocesses and reports each one's peak resident set
size (ru_maxrss), prepare's MB/s and train's characters per second. Targets
(issue 4): prepare under 500 MB, train with the default preset under 1 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CORPORA = Path(os.environ.get("LSTMGEN_CORPORA", Path(__file__).resolve().parents[2] / "shared" / "corpora"))
# Each file starts with a hand-trimmed Alice (a Gutenberg START line, no END),
# so the Gutenberg filter runs on every file and keeps all the text after it.
FIRST = {"utf-8": "alice-wonderland-tutorial-trimmed.txt", "cp1252": "alice-wonderland-cp1252-trimmed.txt"}
SOURCES = ["tinyshakespeare.txt", "names.txt", "alice-wonderland-tutorial-trimmed.txt"]

# Runs a command and prints its peak RSS in KiB; a fresh interpreter per
# command so that one command's peak is not mixed with another's.
MEASURE = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], stdout=sys.stderr); "
           "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, r.returncode)")


def build_corpus(directory: Path, total_bytes: int, files: int) -> int:
    """Write ``files`` files of repeated shared corpora. One file in four
    starts with the Windows-1252 Alice, so it is read as Windows-1252."""
    pieces = [(CORPORA / name).read_bytes() + b"\n" for name in SOURCES]
    per_file = total_bytes // files
    written = 0
    for i in range(files):
        first = (CORPORA / FIRST["cp1252" if i % 4 == 3 else "utf-8"]).read_bytes() + b"\n"
        with open(directory / f"part-{i:03d}.txt", "wb") as f:
            f.write(first)
            size = len(first)
            k = 0
            while size < per_file:
                f.write(pieces[k % len(pieces)])
                size += len(pieces[k % len(pieces)])
                k += 1
            written += size
    return written


def measure(cmd: list[str]) -> tuple[float, int, float]:
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", MEASURE, *cmd], capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - start
    kib, code = out.stdout.split()
    if code != "0":
        raise SystemExit(f"{cmd} failed:\n{out.stderr[-2000:]}")
    return int(kib) / 1024, int(code), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gb", type=float, default=1.0)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--keep", default=None, help="work in this directory and keep it")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    work = Path(args.keep or tempfile.mkdtemp(prefix="lstmgen-memory-"))
    work.mkdir(parents=True, exist_ok=True)
    lstmgen = [sys.executable, "-m", "lstmgen"]
    try:
        corpus = work / "corpus"
        corpus.mkdir(exist_ok=True)
        size = build_corpus(corpus, int(args.gb * 1e9), args.files)
        prep_mb, _, prep_s = measure(lstmgen + ["prepare", str(corpus), "--out", str(work / "data"), "--quiet"])
        train_mb, _, train_s = measure(lstmgen + ["train", str(work / "data"), "--out", str(work / "run"), "--quiet",
                                                  "--force", "--max-steps", str(args.steps), "--eval-every", "100000"])
        # A whole epoch of the default preset's batches (no model): every page
        # of the token file is read once, which is what a long run does.
        epoch_script = ("import sys; from pathlib import Path; from lstmgen.text.batches import load_split, StreamBatches, "
                        "release_pages; s = load_split(Path(sys.argv[1])); b = StreamBatches(s.train, 16, 128)\n"
                        "for i in range(len(b)):\n    b.batch(i)\n    if i % 256 == 0: release_pages(s.train)")
        epoch_mb, _, epoch_s = measure([sys.executable, "-c", epoch_script, str(work / "data")])
        metrics = [json.loads(l) for l in (work / "run" / "metrics.jsonl").read_text().splitlines()]
        meta = json.loads((work / "data" / "meta.json").read_text())
        result = {
            "corpus_bytes": size, "files": args.files, "tokens": meta["chars"], "vocab_size": len(meta["tokenizer"]["chars"]),
            "prepare_peak_rss_mb": round(prep_mb, 1), "prepare_seconds": round(prep_s, 1),
            "prepare_mb_per_second": round(size / 1e6 / prep_s, 1),
            "train_peak_rss_mb": round(train_mb, 1), "train_seconds": round(train_s, 1), "train_steps": args.steps,
            "train_chars_per_second": metrics[-1]["train_chars_per_second"] if metrics else None,
            "epoch_of_batches_peak_rss_mb": round(epoch_mb, 1), "epoch_of_batches_seconds": round(epoch_s, 1),
        }
        print(f"corpus: {size / 1e9:.2f} GB in {args.files} files, {meta['chars']:,} characters, "
              f"vocabulary {result['vocab_size']}")
        print(f"prepare: peak RSS {prep_mb:,.0f} MB (target < 500), {prep_s:.0f} s, "
              f"{result['prepare_mb_per_second']:.1f} MB/s")
        print(f"train ({args.steps} steps, default preset): peak RSS {train_mb:,.0f} MB (target < 1000), "
              f"{train_s:.0f} s in all")
        print(f"one epoch of training batches read from the token file: peak RSS {epoch_mb:,.0f} MB, {epoch_s:.0f} s")
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=2))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
