"""The ``lstmgen`` command: a thin layer over the Python API.

Expected failures (LstmgenError, bad flags) print one line on stderr and exit
non-zero; anything else keeps its traceback, because it is a bug.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import signal
import sys
import time
from pathlib import Path

import lstmgen
from lstmgen import LstmgenError, TrainingInterrupted

EXIT_ERROR = 1
EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse prints a whole usage block on a bad flag; one line is clearer."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _warn(message: str) -> None:
    print(f"lstmgen: warning: {message}", file=sys.stderr)


def _note(message: str) -> None:
    print(message, file=sys.stderr)


def _positive_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value != value:
        raise argparse.ArgumentTypeError("expected a number, got nan")
    return value


def _stream_interval(text: str) -> float:
    value = _number(text)
    if not 0 <= value <= lstmgen.MAX_STREAM_INTERVAL:
        raise argparse.ArgumentTypeError(f"expected seconds from 0 (each piece as it comes) to "
                                         f"{lstmgen.MAX_STREAM_INTERVAL:g}, got {text!r}")
    return value


def _steps_or_minutes(text: str) -> tuple[str, float]:
    value = text.strip().lower()
    for suffix in ("min", "m"):
        if value.endswith(suffix):
            return "minutes", _number(value[: -len(suffix)])
    try:
        return "steps", int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a step count such as 500 or minutes such as 10m, got {text!r}") from None


def _add_corpus_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("corpus options")
    g.add_argument("--encoding", default=None, help="force a text encoding (default: UTF-8, else Windows-1252)")
    g.add_argument("--keep-header", action="store_true", default=None,
                   help="keep Project Gutenberg headers and footers")
    g.add_argument("--lowercase", action="store_true", default=None, help="lowercase the text")
    g.add_argument("--ascii", action="store_true", default=None, help="fold the text to ASCII, reporting changes")
    g.add_argument("--strip-punctuation", action="store_true", default=None, help="remove all punctuation")


def _corpus_config(args):
    return lstmgen.CorpusConfig(encoding=args.encoding, keep_header=bool(args.keep_header), lowercase=bool(args.lowercase),
                        ascii=bool(args.ascii), strip_punctuation=bool(args.strip_punctuation))


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="lstmgen", description="Train LSTM language models on text and generate from them.")
    parser.add_argument("--version", action="version", version=f"lstmgen {lstmgen.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    _add_corpus(sub)
    _add_prepare(sub)
    _add_train(sub)
    _add_generate(sub)
    _add_chat(sub)
    _add_samples_report(sub)
    _add_doctor(sub)
    _add_evaluate(sub)
    _add_plot(sub)
    _add_serve(sub)
    _add_import_keras(sub)
    _add_export(sub)
    return parser


def _add_corpus(sub) -> None:
    p = sub.add_parser("corpus", help="summarise a text file as the model would see it")
    p.add_argument("file", metavar="FILE")
    _add_corpus_options(p)
    p.add_argument("--dump", metavar="OUT", help="write the cleaned text to OUT")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


def _add_prepare(sub) -> None:
    p = sub.add_parser("prepare", help="turn text files of any size into memory-mapped token files")
    p.add_argument("inputs", metavar="INPUT", nargs="+", help="files, directories or glob patterns")
    p.add_argument("--out", required=True, metavar="DATA_DIR")
    p.add_argument("--glob", default="*.txt", help="files to take from directories (default *.txt)")
    p.add_argument("--separator", default="", metavar="TEXT",
                   help="text put between documents, e.g. $'\\n\\n' (default: none)")
    p.add_argument("--val-fraction", type=_number, default=0.1)
    p.add_argument("--level", choices=["char", "word", "bpe"], default="char", help="tokens to write (default char)")
    p.add_argument("--vocab-size", type=_positive_int, help="word: most frequent tokens kept; bpe: merges learned")
    p.add_argument("--framing", choices=["stream", "lines", "sentences"], default="stream",
                   help="lines or sentences: write items between end-of-item tokens, held out by items, for "
                        "lstmgen train --framing lines or sentences (default stream)")
    p.add_argument("--max-item-tokens", type=_positive_int, default=4096, metavar="N",
                   help="lines, sentences: refuse an item longer than this (default 4096)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_corpus_options(p)


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train a model on a text file or prepared data")
    p.add_argument("corpus", metavar="CORPUS", nargs="?",
                   help="a text file, or a DATA_DIR from lstmgen prepare (not needed with --resume)")
    p.add_argument("--out", metavar="RUN_DIR", help="directory for checkpoints and metrics")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue this run exactly where it stopped")
    p.add_argument("--init-from", metavar="RUN_DIR",
                   help="fine-tune: a new run (--out) that starts from RUN_DIR's best weights and keeps its "
                        "vocabulary, model shape, text options and training recipe (flags change the recipe); "
                        "RUN_DIR is only read")
    p.add_argument("--replace-unknown", action="store_true",
                   help="with --init-from: replace corpus characters the model's vocabulary lacks by known ASCII "
                        "forms, or drop them, and say which (default: refuse the corpus, naming them)")
    p.add_argument("--preset", default=None,
                   help="default (the same as cpu-5min), " + ", ".join(name for name in lstmgen.PRESETS if name != "default")
                        + "; with --init-from, the preset's training settings replace RUN_DIR's and its model "
                          "shape must match RUN_DIR's")
    p.add_argument("--force", action="store_true", help="overwrite a run already in RUN_DIR")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--nproc", type=_positive_int, metavar="N",
                   help="train with N processes on this machine (PyTorch DDP through torchrun)")
    _add_corpus_options(p)
    g = p.add_argument_group("model (override the preset)")
    g.add_argument("--hidden-size", type=_positive_int)
    g.add_argument("--num-layers", type=_positive_int)
    g.add_argument("--dropout", type=_number)
    g.add_argument("--input", dest="input_mode", choices=["embedding", "onehot", "scaled"])
    g.add_argument("--embedding-dim", type=_positive_int)
    g.add_argument("--embedding-dropout", type=_number, help="drop whole embedding rows (AWD-LSTM; default 0)")
    g.add_argument("--locked-dropout", action=argparse.BooleanOptionalAction, default=None,
                   help="one dropout mask per sequence, shared by every time step (on in the cpu and gpu presets)")
    g.add_argument("--weight-dropout", type=_number, help="DropConnect on the hidden-to-hidden matrices (0 turns it off)")
    g.add_argument("--tie-weights", action=argparse.BooleanOptionalAction, default=None,
                   help="share the embedding with the output layer (--embedding-dim must equal --hidden-size)")
    g.add_argument("--level", choices=["char", "word", "bpe"], help="tokens to model (default char)")
    g.add_argument("--vocab-size", type=_positive_int, help="word: most frequent tokens kept; bpe: merges learned")
    g = p.add_argument_group("training (override the preset)")
    g.add_argument("--framing", choices=["stream", "windows", "lines", "sentences"],
                   help="stream: running text (default); windows: the tutorial's 100-character windows; lines or "
                        "sentences: every non-empty line, or every sentence, is an item read from a fresh state "
                        "and ended by an end-of-item token (names, titles, sentences)")
    g.add_argument("--max-item-tokens", type=_positive_int, metavar="N",
                   help="lines, sentences: refuse an item longer than this (default 4096)")
    g.add_argument("--epochs", type=_positive_int)
    g.add_argument("--max-minutes", type=_number)
    g.add_argument("--max-steps", type=_positive_int)
    g.add_argument("--batch-size", type=_positive_int)
    g.add_argument("--seq-len", type=_positive_int)
    g.add_argument("--lr", type=_number)
    g.add_argument("--lr-schedule", choices=["constant", "cosine", "plateau"],
                   help="cosine: decay to lr/10 over the budget; plateau: lower the rate when validation stalls")
    g.add_argument("--plateau-patience", type=_positive_int, metavar="N",
                   help="plateau: validations without a new best before the rate drops (default 2)")
    g.add_argument("--plateau-factor", type=_number, help="plateau: multiply the rate by this (default 0.5)")
    g.add_argument("--warmup-steps", type=_positive_int)
    g.add_argument("--grad-clip", type=_number)
    g.add_argument("--val-fraction", type=_number)
    g.add_argument("--eval-every", type=_positive_int)
    g.add_argument("--seed", type=_positive_int)
    g.add_argument("--checkpoint-every", type=_steps_or_minutes, metavar="N|Nm",
                   help="also write last/ every N steps, or every N minutes with an m suffix (default 10m)")
    g.add_argument("--device", default=None)
    g.add_argument("--weight-decay", type=_number, help="AdamW weight decay on the weight matrices (default 0: Adam)")
    g.add_argument("--patience", type=_positive_int, metavar="N",
                   help="stop after N validations in a row without a new best held-out loss")
    g.add_argument("--stop-at-loss", type=_number, metavar="NATS",
                   help="stop once the held-out loss reaches this many nats")
    g.add_argument("--precision", choices=["auto", "fp32", "bf16"],
                   help="bf16 autocast for training; auto times fp32 and bf16 on this machine and takes the faster")


def _add_generate(sub) -> None:
    p = sub.add_parser("generate", help="generate text from a trained model")
    p.add_argument("run_dir", nargs="?", metavar="RUN_DIR", help="default: the bundled Alice model")
    p.add_argument("--prompt", help="text to start from; '-' reads standard input (default: a random excerpt)")
    # Every SampleConfig field is a flag, named, typed and explained by the dataclass itself.
    group = p.add_argument_group("sampling (lstmgen.SampleConfig)")
    _add_plain(group)
    lstmgen.add_config_arguments(group, lstmgen.SampleConfig)
    p.add_argument("--no-echo", action="store_true", help="print only the new text, not the prompt")


def _add_chat(sub) -> None:
    p = sub.add_parser("chat", help="type a seed, watch the text come; change settings as you go (/help)")
    p.add_argument("run_dir", nargs="?", metavar="RUN_DIR", help="default: the bundled Alice model")
    group = p.add_argument_group("starting settings (lstmgen.SampleConfig; /set changes them)")
    _add_plain(group)
    lstmgen.add_config_arguments(group, lstmgen.SampleConfig)


def _add_plain(group) -> None:
    group.add_argument("--plain", action="store_true",
                       help="start from plain sampling: every filter and anti-loop processor off, as the tutorial "
                            "sampled (--plain --temperature 0 is its argmax); other flags still apply")


def _sample_config(args):
    base = lstmgen.SampleConfig.plain() if args.plain else None
    return lstmgen.config_from_arguments(lstmgen.SampleConfig, args, base=base)


def _add_samples_report(sub) -> None:
    p = sub.add_parser("samples-report", help="loops and diversity of samples against held-out text")
    p.add_argument("run_dir", nargs="?", metavar="RUN_DIR", help="default: the bundled Alice model")
    p.add_argument("--compare", nargs="+", metavar="SETTING",
                   default=["plain,temperature=0", "plain,temperature=0.8", "default"],
                   help="'default', 'plain' (every filter and anti-loop processor off), and sampling options "
                        "as NAME=VALUE[,NAME=VALUE] on top of the defaults or of 'plain' when it comes first "
                        "(default: plain,temperature=0 plain,temperature=0.8 default)")
    p.add_argument("--samples", type=_positive_int, default=20, help="texts (item models: items) per setting (default 20)")
    p.add_argument("--length", type=_positive_int, default=2000,
                   help="characters per text (default 2000); item models: the most tokens an item may take")
    p.add_argument("--held-out", metavar="TEXT_FILE",
                   help="held-out text to compare with: its last SAMPLES × LENGTH characters "
                        "(default: the run's own validation split)")
    p.add_argument("--train-text", metavar="TEXT_FILE",
                   help="the training text, for the copying columns (default: the run's own training split; "
                        "over 100 M characters, a sample)")
    p.add_argument("--seed", type=_positive_int, default=0)
    p.add_argument("--json", action="store_true")


def _add_doctor(sub) -> None:
    p = sub.add_parser("doctor", help="what this machine is and what --precision auto picks on it (for bug reports)")
    p.add_argument("run_dir", nargs="?", metavar="RUN_DIR", help="the model to time (default: the bundled Alice model)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    p.add_argument("--json", action="store_true", help="print the report as JSON, every CPU flag included")


def _add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="held-out loss of a model")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("text_file", nargs="?", metavar="TEXT_FILE", help="default: the run's own validation split")
    p.add_argument("--json", action="store_true")


def _add_import_keras(sub) -> None:
    p = sub.add_parser("import-keras", help="turn the Keras tutorial's checkpoint into an lstmgen run directory")
    p.add_argument("weights", metavar="WEIGHTS", help="the .h5/.hdf5 (Keras 2 or 3), .weights.h5 or .keras file")
    p.add_argument("--corpus", required=True, metavar="TEXT_FILE",
                   help="the text the model was trained on; its vocabulary is rebuilt from it as the tutorial did")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="the run directory to write")
    p.add_argument("--no-lowercase", dest="lowercase", action="store_false",
                   help="the model kept case (the tutorial lowercased the text)")
    p.add_argument("--strip-gutenberg", action="store_true",
                   help="remove the Project Gutenberg header and footer first (the tutorial removed it by hand, "
                        "so the file is read as it is by default)")
    p.add_argument("--force", action="store_true", help="overwrite RUN_DIR if it holds a run")


def _add_export(sub) -> None:
    p = sub.add_parser("export", help="write a model as ONNX files, to run where PyTorch is not installed")
    p.add_argument("run_dir", nargs="?", metavar="RUN_DIR", help="default: the bundled model")
    p.add_argument("--onnx", required=True, metavar="OUT_DIR",
                   help="the folder to write step.onnx, sequence.onnx, the tokenizer and a README into")
    p.add_argument("--force", action="store_true", help="overwrite an export already in OUT_DIR")


def _add_plot(sub) -> None:
    p = sub.add_parser("plot", help="learning curves of one or more runs in one PNG")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--out", default="curves.png", metavar="FILE.png", help="default: curves.png here")


def _add_serve(sub) -> None:
    p = sub.add_parser("serve", help="an OpenAI-compatible completions server (POST /v1/completions)")
    p.add_argument("run_dirs", nargs="*", metavar="RUN_DIR", help="models to serve, named by folder "
                                                                   "(default: the bundled Alice model, as 'alice')")
    p.add_argument("--name", action="append", default=[], metavar="NAME=RUN_DIR", help="a model under a name of your choice")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=_positive_int, default=8000)
    p.add_argument("--max-streams", type=_positive_int, default=64, help="streams stepped together per model")
    p.add_argument("--api-key", default=os.environ.get("LSTMGEN_API_KEY"), metavar="KEY",
                   help="require 'Authorization: Bearer KEY' on /v1 (default: $LSTMGEN_API_KEY, else none)")
    p.add_argument("--drain-seconds", type=float, default=30.0, metavar="SECONDS",
                   help="on SIGTERM, let running streams finish for up to this long, then exit 0")
    p.add_argument("--threads", type=_positive_int, metavar="N",
                   help="PyTorch threads for each scheduler process's steps (default: one fewer than PyTorch's "
                        "own default, at least one)")
    p.add_argument("--stream-interval", type=_stream_interval, default=0.05, metavar="SECONDS",
                   help="streamed completions send their text at this tick, all of it since the last chunk "
                        "(the first chunk goes at once)")
    p.add_argument("--scheduler", choices=("process", "thread"), default="process",
                   help="step each model in a process of its own (default: the event loop and the steps then "
                        "never wait for each other's turn at Python's lock) or in a thread of the server's")
    p.add_argument("--processes", type=_positive_int, metavar="N",
                   help="scheduler processes per model, each stepping its share of the streams on --threads "
                        "threads (default: as many as the cores hold, each with at least 32 streams: 2 on a "
                        "2-core CPU, 1 on three cores or more)")
    p.add_argument("--precision", choices=("fp32", "bf16", "int8", "onnx", "auto"), default="auto",
                   help="the step precision of every model, fixed while the server runs so that text does not "
                        "depend on load: auto (default) takes the fastest for one scheduler process's share of --max-streams, timed once at start; "
                        "fp32 gives the text of lstmgen generate --precision fp32")


def cmd_corpus(args) -> int:
    corpus = lstmgen.read_corpus(args.file, _corpus_config(args))
    if args.dump:
        out = Path(args.dump)
        try:
            out.write_text(corpus.text, encoding="utf-8")
        except OSError as exc:
            raise LstmgenError(f"cannot write {out} ({exc.strerror}); choose a writable path for --dump") from None
    summary = lstmgen.summarize_corpus(corpus)
    if args.json:
        summary.pop("vocab_shown")
        print(json.dumps(summary, ensure_ascii=False, indent=2))
        return 0
    for note in corpus.notes:
        _note(f"lstmgen: {note}")
    print(f"Source:           {summary['source']} ({summary['encoding']})")
    print(f"Total characters: {summary['total_chars']:,}")
    print(f"Lines:            {summary['lines']:,}")
    print(f"Vocabulary size:  {summary['vocab_size']:,}")
    print("Vocabulary:       " + " ".join(summary["vocab_shown"]))
    if args.dump:
        print(f"Cleaned text written to {args.dump}")
    return 0


_LIMITS = ("epochs", "max_steps", "max_minutes")
_TRAIN_OPTIONS = (
    "hidden_size", "num_layers", "dropout", "input_mode", "embedding_dim", "embedding_dropout", "locked_dropout",
    "weight_dropout", "tie_weights", "framing", "max_item_tokens", "batch_size", "seq_len", "lr",
    "lr_schedule", "warmup_steps", "grad_clip", "val_fraction", "eval_every", "seed", "device", "precision",
    "stop_at_loss", "weight_decay", "patience", "plateau_patience", "plateau_factor", "encoding", "keep_header",
    "lowercase", "ascii", "strip_punctuation", "level", "vocab_size")


def cmd_prepare(args) -> int:
    result = lstmgen.prepare(args.inputs, args.out, level=args.level, vocab_size=args.vocab_size,
                             val_fraction=args.val_fraction, pattern=args.glob, separator=args.separator,
                             progress=not args.quiet, log=_note, framing=args.framing,
                             max_item_tokens=args.max_item_tokens, **_corpus_config(args).to_dict())
    for note in result.notes[:50]:
        _note(f"lstmgen: {note}")
    print(f"{result.files:,} file(s), {result.chars:,} characters, vocabulary {result.vocab_size:,}; "
          f"{result.train_tokens:,} for training and {result.val_tokens:,} held out; "
          f"{result.input_bytes / 1e6:,.1f} MB in {result.seconds:.1f} s ({result.mb_per_second:,.1f} MB/s)")
    print(f"Train on it with: lstmgen train {args.out} --out RUN_DIR")
    return 0


def _launch_local_processes(args) -> int:
    """Run this very command in N local processes, with the environment
    torchrun would give them (one machine; torchrun itself for several)."""
    import socket
    import subprocess

    argv = list(args.argv)
    if "--nproc" in argv:
        i = argv.index("--nproc")
        del argv[i:i + 2]
    argv = [a for a in argv if not a.startswith("--nproc=")]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    threads = os.environ.get("OMP_NUM_THREADS") or str(max(1, (os.cpu_count() or 1) // args.nproc))
    procs = []
    for rank in range(args.nproc):
        env = dict(os.environ, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(args.nproc),
                   LOCAL_WORLD_SIZE=str(args.nproc), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
                   OMP_NUM_THREADS=threads)
        procs.append(subprocess.Popen([sys.executable, "-m", "lstmgen", *argv], env=env))
    # Ctrl-C reaches every process of the group; the ranks agree to stop,
    # checkpoint and exit, and this launcher waits for them.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        codes = [None] * len(procs)
        while any(c is None for c in codes):
            for i, p in enumerate(procs):
                if codes[i] is None:
                    try:
                        codes[i] = p.wait(timeout=0.2)
                    except subprocess.TimeoutExpired:
                        continue
                    if codes[i] != 0:
                        # One rank failed: the others would wait for it forever.
                        for other in procs:
                            if other.poll() is None:
                                other.terminate()
    finally:
        signal.signal(signal.SIGINT, previous)
    return next((c for c in codes if c), 0)


def cmd_train(args) -> int:
    if args.nproc is not None and args.nproc < 1:
        raise LstmgenError(f"--nproc must be 1 or more, got {args.nproc}")
    if args.nproc and args.nproc > 1 and "WORLD_SIZE" not in os.environ:
        return _launch_local_processes(args)

    overrides = {k: getattr(args, k) for k in _TRAIN_OPTIONS + _LIMITS}
    if args.checkpoint_every is not None:
        unit, value = args.checkpoint_every
        overrides["checkpoint_every" if unit == "steps" else "checkpoint_minutes"] = value
    if args.resume:
        fixed = sorted("--" + k.replace("_", "-") for k, v in overrides.items() if v is not None and k not in _LIMITS)
        given = {"--preset": args.preset is not None, "--force": args.force, "--init-from": args.init_from,
                 "--replace-unknown": args.replace_unknown}
        if fixed or any(given.values()):
            extra = fixed + [flag for flag, value in given.items() if value]
            raise LstmgenError(f"{', '.join(extra)} cannot be given with --resume: a resumed run keeps its settings "
                               "(only --epochs, --max-steps and --max-minutes may be raised)")
        if args.out and Path(args.out) != Path(args.resume):
            raise LstmgenError("--out and --resume name different directories; give only --resume RUN_DIR")
        lstmgen.resume(args.resume, progress=not args.quiet, log=_note, **{k: overrides[k] for k in _LIMITS})
        return 0
    if not args.corpus:
        raise LstmgenError("give the CORPUS text file to train on (or --resume RUN_DIR to continue a run)")
    if not args.out:
        raise LstmgenError("give --out RUN_DIR, the directory for checkpoints and metrics")
    lstmgen.check_new_run(args.corpus, args.preset)
    lstmgen.train(args.corpus, args.out, preset=args.preset, init_from=args.init_from,
                  replace_unknown=args.replace_unknown, force=args.force, progress=not args.quiet, log=_note,
                  **overrides)
    return 0


def _check_run_dir(run_dir: str | None) -> None:
    """lstmgen.load's first checks, made before PyTorch is imported (seconds),
    so that a wrong path fails at once."""
    if run_dir is not None:
        lstmgen.checked_checkpoint(run_dir)


def _read_prompt(args) -> str | None:
    if args.prompt == "-":
        data = sys.stdin.buffer.read()
        try:
            text, _, _ = lstmgen.decode_bytes(data)
        except Exception:
            raise LstmgenError("standard input is not text; pipe a text prompt or use --prompt TEXT") from None
        return text
    return args.prompt


def cmd_generate(args) -> int:
    config = _sample_config(args)
    _check_run_dir(args.run_dir)
    model = lstmgen.load(args.run_dir)
    if config.seed is None:
        seed = lstmgen.fresh_seed()
        config = lstmgen.SampleConfig(**dict(config.to_dict(), seed=seed))
        _note(f"lstmgen: sampling with seed {seed} (pass --seed {seed} to repeat this text)")
    prompt = _read_prompt(args)
    if prompt is None:
        prompt = model.random_prompt(config.seed)
        if not model.items:
            _note("lstmgen: seed text is a random excerpt of the training text (give --prompt to choose one)")
    shown = model.prepare_text(prompt).text
    out = sys.stdout
    interactive = out.isatty()
    stream = model.stream(prompt, config, warn=_warn)
    try:
        if config.num_samples == 1:
            if not args.no_echo:
                out.write(shown)
                out.flush()
            last_flush = time.perf_counter()
            for step in stream:
                out.write(step[0])
                now = time.perf_counter()
                if interactive or now - last_flush > 0.1:
                    out.flush()
                    last_flush = now
            out.write("\n")
        else:
            samples = [[] for _ in range(config.num_samples)]
            for step in stream:
                for i, piece in enumerate(step):
                    samples[i].append(piece)
            if model.items:  # one item per line: names, titles, sentences
                out.writelines(("" if args.no_echo else shown) + "".join(p).replace("\n", " ") + "\n"
                               for p in samples)
                return 0
            for i, pieces in enumerate(samples):
                out.write(f"--- sample {i + 1} of {config.num_samples} ---\n")
                out.write(("" if args.no_echo else shown) + "".join(pieces) + "\n")
    finally:
        out.flush()
    return 0


def cmd_chat(args) -> int:
    config = _sample_config(args)
    if config.num_samples != 1:
        raise LstmgenError("chat shows one text at a time; for several samples use lstmgen generate --num-samples")
    _check_run_dir(args.run_dir)
    return lstmgen.chat(lstmgen.load(args.run_dir), config, warn=_warn)


def cmd_import_keras(args) -> int:
    checkpoint = lstmgen.import_keras(args.weights, args.corpus, args.out, lowercase=args.lowercase,
                                      strip_gutenberg=args.strip_gutenberg, force=args.force)
    model = lstmgen.load(args.out)
    info = model.checkpoint.meta["imported_from"]
    _note(f"lstmgen: {info['kind']} with {info['architecture']}; vocabulary of {model.tokenizer.vocab_size} "
          f"characters from {args.corpus} (the whole file, {info['corpus_read']}); written to {checkpoint}")
    if info.get("warning"):
        _warn(info["warning"])
    print(args.out)
    return 0


def cmd_export(args) -> int:
    exported = lstmgen.export_onnx(args.run_dir, args.onnx, force=args.force)
    check = ("not checked against PyTorch, since onnxruntime is not installed: pip install 'lstmgen[onnx]' "
             "to check them" if exported.max_logit_difference is None else
             f"onnxruntime's logits within {exported.max_logit_difference:.1g} of PyTorch's")
    _note(f"lstmgen: wrote {', '.join(exported.files)} ({check}); {exported.out_dir / 'README.md'} shows how to "
          "run them")
    print(exported.out_dir)
    return 0


def cmd_plot(args) -> int:
    if not args.out.lower().endswith(".png"):
        raise LstmgenError(f"--out must name a .png file, got {args.out!r}")
    print(f"wrote {lstmgen.plot_runs(args.run_dirs, args.out)}")
    return 0


def cmd_serve(args) -> int:
    models = {Path(d).resolve().name: d for d in args.run_dirs}
    for pair in args.name:
        name, eq, run_dir = pair.partition("=")
        if not eq or not name or not run_dir:
            raise LstmgenError(f"--name takes a name and a run folder, as mine=runs/mine; got {pair!r}")
        models[name] = run_dir
    loaded = {name: lstmgen.load(d) for name, d in models.items()} or {"alice": lstmgen.load()}
    try:
        import uvicorn
    except ImportError:
        raise LstmgenError("lstmgen serve needs uvicorn and fastapi: pip install 'lstmgen[serve]'") from None
    import torch

    # One core for the event loop: measured on 2 cores under 64 streams, one step thread delivered
    # 5,700 characters/s and two delivered 3,700, the second spinning in OpenMP's barrier while
    # HTTP work held its core.
    cores = torch.get_num_threads()
    threads = args.threads or max(1, cores - 1)
    torch.set_num_threads(threads)
    if args.scheduler == "thread" and args.processes not in (None, 1):
        raise LstmgenError("--processes needs --scheduler process (a thread scheduler steps in this process)")
    processes = 1 if args.scheduler == "thread" else (
        args.processes if args.processes is not None else lstmgen.scheduler_processes(cores, threads, args.max_streams))
    app = lstmgen.create_server(loaded, max_streams=args.max_streams, stream_interval=args.stream_interval,
                                api_key=args.api_key, precision=args.precision, scheduler=args.scheduler,
                                threads=threads, processes=processes)
    if not args.api_key and not _loopback(args.host):
        _warn(f"serving on {args.host} without an API key: anyone who can reach this address can use it; "
              "add --api-key KEY (or set LSTMGEN_API_KEY)")
    steps = {slot.batcher.precision_choice.precision for slot in app.state.slots.values()}
    _note(f"lstmgen: serving {', '.join(loaded)} on http://{args.host}:{args.port}/v1, steps in {', '.join(steps)}")
    _serve_until_drained(app, args.host, args.port, args.drain_seconds)
    return 0


def _serve_until_drained(app, host: str, port: int, drain_seconds: float) -> None:
    """Run uvicorn until SIGTERM or Ctrl-C; then running requests get ``drain_seconds`` to finish
    and end with finish_reason 'length' after that (uvicorn's own timeout, a few seconds later,
    is only a backstop: it cancels requests with a traceback)."""
    import uvicorn

    class DrainingServer(uvicorn.Server):
        def handle_exit(self, sig, frame):
            app.state.begin_drain(drain_seconds)
            super().handle_exit(sig, frame)

    # uvicorn raises the signal again, under the handler it found, once it has drained:
    # a handler that does nothing makes the drained server exit 0.
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    DrainingServer(uvicorn.Config(app, host=host, port=port, log_level="warning",
                                  timeout_graceful_shutdown=drain_seconds + 5)).run()


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def cmd_evaluate(args) -> int:
    _check_run_dir(args.run_dir)
    model = lstmgen.load(args.run_dir)
    if args.text_file:
        result = model.evaluate_file(args.text_file, warn=_warn)
        what = args.text_file
    else:
        result = model.evaluate_validation()
        what = "the run's validation split"
    if args.json:
        print(json.dumps(dict(result.to_dict(), checkpoint=str(model.path), text=what)))
    else:
        print(f"{what}: {result.line()}")
    return 0


def cmd_samples_report(args) -> int:
    _check_run_dir(args.run_dir)
    model = lstmgen.load(args.run_dir)
    settings = {text: lstmgen.parse_setting(text, lstmgen.SampleConfig()) for text in args.compare}
    if model.items:
        return _items_report(model, settings, args)
    if args.held_out:
        text = lstmgen.read_corpus(args.held_out, model.corpus_config).text
        held_out = text[-args.samples * args.length:]
    else:
        held_out = model.held_out_text(args.samples * args.length)
    training = _training_text(model, args.train_text)
    rows = lstmgen.samples_report(model, settings, held_out, args.samples, args.length, seed=args.seed,
                                  training=training)
    if args.json:
        print(json.dumps({"copying": training.describe() if training else None, "rows": rows}, indent=2))
        return 0
    print(f"{args.samples} texts of {args.length:,} characters per setting; a loop is a unit of 10 or more "
          "characters said 3 or more times back to back; n-grams over words")
    print(training.describe() + "; longest stretch found verbatim, and the share of 20-character substrings found"
          if training else "copying: no training text beside this model (give --train-text FILE for those columns)")
    header = ["setting", "loops", "longest repeat", "in repeats", "distinct-1", "distinct-2", "distinct-3",
              "distinct-4", "seq-rep-4", *(["longest copy", "copied 20-grams"] if training else []), "loss nats"]
    cells = [[r["setting"], f"{r['loops']}/{r['texts']}", r["longest_repeat"], f"{r['repeated_share']:.1%}",
              *(f"{r[f'distinct_{n}']:.3f}" for n in (1, 2, 3, 4)), f"{r['seq_rep_4']:.3f}",
              *([str(r["longest_copy_chars"]), f"{r['copied_20grams']:.1%}"] if training else []),
              f"{r['loss_nats']:.3f}"] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(header)]
    for line in [header] + cells:
        print("  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(line, widths))))
    return 0


def _items_report(model, settings, args) -> int:
    """samples-report for an item model: one item per sample, --length its token limit."""
    held_out = model.items_of(lstmgen.read_corpus(args.held_out, model.corpus_config).text) if args.held_out else None
    training = model.items_of(lstmgen.read_corpus(args.train_text, model.corpus_config).text) \
        if args.train_text else None
    rows = lstmgen.items_report(model, settings, args.samples, args.length, seed=args.seed, held_out=held_out,
                                training=training)
    if args.json:
        print(json.dumps({"rows": rows}, indent=2))
        return 0
    print(f"{args.samples} items per setting, each at most {args.length:,} tokens; 'new' is the share not found "
          "verbatim among the training items; lengths in characters")
    header = ["setting", "items", "no end", "new", "distinct", "mean", "p10", "median", "p90", "nats/item"]
    cells = [[r["setting"], str(r["items"]), f"{r['unfinished_share']:.1%}", f"{1 - r['in_training_share']:.1%}",
              f"{r['distinct_share']:.1%}", f"{r['mean_chars']:.1f}", f"{r['p10_chars']:.0f}",
              f"{r['median_chars']:.0f}", f"{r['p90_chars']:.0f}", f"{r['nats_per_item']:.2f}"] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(header)]
    for line in [header] + cells:
        print("  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(line, widths))))
    return 0


def _training_text(model, path):
    """The copying columns' index; a model without its training text beside
    it (the bundled one) goes without them unless a file is given."""
    try:
        return model.training_text(path)
    except LstmgenError:
        if path is not None:
            raise
        return None


def cmd_doctor(args) -> int:
    report = lstmgen.machine_report(args.run_dir, device=args.device)
    print(json.dumps(report, indent=2) if args.json else lstmgen.format_report(report))
    return 0


COMMANDS = {"samples-report": cmd_samples_report, "doctor": cmd_doctor, "corpus": cmd_corpus, "prepare": cmd_prepare, "train": cmd_train, "generate": cmd_generate, "chat": cmd_chat, "plot": cmd_plot, "serve": cmd_serve, "evaluate": cmd_evaluate, "import-keras": cmd_import_keras, "export": cmd_export}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if not args.command:
        parser.print_help()
        return EXIT_USAGE
    if hasattr(signal, "SIGXFSZ"):
        # Past a file-size limit, a write should fail with an error we can
        # report, not kill the process before it says anything.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    try:
        return COMMANDS[args.command](args)
    except TrainingInterrupted as exc:
        print(f"\nlstmgen {args.command}: {exc}", file=sys.stderr)
        return exc.exit_code
    except LstmgenError as exc:
        # In a multi-process run every rank meets the same error; one says it.
        if os.environ.get("RANK", "0") == "0":
            print(f"lstmgen {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"\nlstmgen {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `lstmgen generate | head`: the reader left; that is not an error.
        try:
            sys.stdout = open("/dev/null", "w")
        except OSError:
            pass
        return 0


if __name__ == "__main__":
    sys.exit(main())
