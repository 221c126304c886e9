"""A trained model as ONNX files, to run where PyTorch is not installed.

``export_onnx`` writes into one folder:

- ``step.onnx``: one token for each of B streams, with the LSTM state
  (h, c), in; the next-token logits and the new state out. Generation
  calls it once per token.
- ``sequence.onnx``: B × T tokens and a state in; logits for every
  position and the state after the last out. It reads a prompt in one call
  and scores text.
- ``tokenizer.json`` (the run's own, as lstmgen reads it), for BPE models
  also ``hf-tokenizer.json`` (Hugging Face ``tokenizers``' own format),
  ``model.json`` (shapes, input names, the corpus options a prompt needs),
  and a README that drives the two models from onnxruntime.

Both graphs hold the LSTM as ONNX's own ``LSTM`` operator, which
onnxruntime runs as one kernel. They are written by PyTorch's TorchScript
exporter: its dynamo exporter (torch 2.13) could not trace ``nn.LSTM``
with a given state. After writing, the export runs both files in
onnxruntime and compares their logits with PyTorch's.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import LstmgenError
from ..model import LSTMLanguageModel
from ..text.tokenizer import WordTokenizer

OPSET = 17
"""ONNX opset of the files: onnxruntime 1.14 (2023) and later run it."""
INPUTS = ["token_ids", "h", "c"]
OUTPUTS = ["logits", "h_out", "c_out"]
CHECK_TOKENS = 64
"""Tokens of text the export reads back through onnxruntime as a check."""
CHECK_TOLERANCE = 1e-4
FILES = ("step.onnx", "sequence.onnx", "tokenizer.json", "hf-tokenizer.json", "model.json", "README.md")


@dataclass
class Exported:
    """What ``export_onnx`` wrote, and how closely onnxruntime agreed."""

    out_dir: Path
    files: list[str]
    max_logit_difference: float | None
    """Largest |onnxruntime - PyTorch| over the check's logits; None without onnxruntime."""


class _Step(nn.Module):
    """(B,) ids and (L, B, H) states in; (B, V) logits and states out."""

    def __init__(self, model: LSTMLanguageModel):
        super().__init__()
        self.model = model

    def forward(self, token_ids, h, c):
        logits, _, (h_out, c_out) = self.model(token_ids.unsqueeze(1), (h, c), last_only=True)
        return logits, h_out, c_out


class _Sequence(nn.Module):
    """(B, T) ids and (L, B, H) states in; (B, T, V) logits and states out."""

    def __init__(self, model: LSTMLanguageModel):
        super().__init__()
        self.model = model

    def forward(self, token_ids, h, c):
        logits, _, (h_out, c_out) = self.model(token_ids, (h, c))
        return logits, h_out, c_out


def export_onnx(run_dir, out_dir, force: bool = False, check: bool = True) -> Exported:
    """Write the model of ``run_dir`` (None: the bundled model) to ``out_dir``
    as ONNX files with its tokenizer and a README; see the module's text."""
    from ..api import load

    _need_onnx()
    language_model = load(run_dir)
    out = _prepare_out_dir(Path(out_dir), force)
    model = language_model.model.float().eval()
    files = _write_graphs(model, out)
    files += _write_tokenizer(language_model.tokenizer, out)
    (out / "model.json").write_text(json.dumps(model_card(language_model), indent=2, ensure_ascii=False) + "\n",
                                    encoding="utf-8")
    (out / "README.md").write_text(readme(language_model), encoding="utf-8")
    files += ["model.json", "README.md"]
    difference = check_against_torch(model, out) if check and _has_onnxruntime() else None
    return Exported(out, files, difference)


def _need_onnx() -> None:
    try:
        import onnx  # noqa: F401  (PyTorch's exporter writes through it)
    except ImportError:
        raise LstmgenError("exporting to ONNX needs the onnx package: pip install 'lstmgen[onnx]'") from None


def _has_onnxruntime() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def _prepare_out_dir(out: Path, force: bool) -> Path:
    if out.exists() and not out.is_dir():
        raise LstmgenError(f"{out} is a file; give a directory for --onnx")
    held = [name for name in FILES if (out / name).exists()]
    if held and not force:
        raise LstmgenError(f"{out} already holds an export ({', '.join(held)}); pass --force to overwrite it, "
                           "or choose another directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name in held:
            (out / name).unlink()
    except OSError as exc:
        raise LstmgenError(f"cannot write to {out} ({exc.strerror}); choose a writable directory") from None
    return out


def _write_graphs(model: LSTMLanguageModel, out: Path) -> list[str]:
    cfg = model.config
    state = (cfg.num_layers, 2, cfg.hidden_size)
    h, c = torch.zeros(state), torch.zeros(state)
    batch = {1: "batch"}
    _export(_Step(model), (torch.tensor([0, 1]), h, c), out / "step.onnx",
            {"token_ids": {0: "batch"}, "h": batch, "c": batch, "logits": {0: "batch"}, "h_out": batch,
             "c_out": batch})
    _export(_Sequence(model), (torch.tensor([[0, 1, 0], [1, 0, 1]]), h, c), out / "sequence.onnx",
            {"token_ids": {0: "batch", 1: "tokens"}, "h": batch, "c": batch, "logits": {0: "batch", 1: "tokens"},
             "h_out": batch, "c_out": batch})
    return ["step.onnx", "sequence.onnx"]


def _export(module: nn.Module, args: tuple, path: Path, dynamic_axes: dict) -> None:
    module.eval()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            # The TorchScript exporter warns that it is deprecated, and that
            # an LSTM with a batch size of its own is exported as such.
            warnings.simplefilter("ignore")
            torch.onnx.export(module, args, str(path), dynamo=False, opset_version=OPSET, input_names=INPUTS,
                              output_names=OUTPUTS, dynamic_axes=dynamic_axes)
    except OSError as exc:
        raise LstmgenError(f"cannot write {path} ({exc.strerror}); free some disk space or choose another "
                           "directory") from None
    finally:
        module.eval()  # the exporter puts the module back as it found it: keep the model in eval mode


def _write_tokenizer(tokenizer, out: Path) -> list[str]:
    data = tokenizer.to_dict()
    (out / "tokenizer.json").write_text(json.dumps(data, ensure_ascii=False) + "\n", encoding="utf-8")
    if tokenizer.level != "bpe":
        return ["tokenizer.json"]
    (out / "hf-tokenizer.json").write_text(tokenizer.hf.to_str(), encoding="utf-8")
    return ["tokenizer.json", "hf-tokenizer.json"]


def model_card(language_model) -> dict:
    """model.json: what a program needs to drive the two files."""
    cfg = language_model.model.config
    corpus = language_model.corpus_config.to_dict()
    card = {
        "format": "lstmgen-onnx/1",
        "level": language_model.tokenizer.level,
        "vocab_size": cfg.vocab_size,
        "num_layers": cfg.num_layers,
        "hidden_size": cfg.hidden_size,
        "input_mode": cfg.input_mode,
        "inputs": {"token_ids": "int64, (batch,) for step.onnx, (batch, tokens) for sequence.onnx",
                   "h": "float32, (num_layers, batch, hidden_size); zeros to start",
                   "c": "float32, (num_layers, batch, hidden_size); zeros to start"},
        "outputs": {"logits": "float32, (batch, vocab_size) or (batch, tokens, vocab_size); softmax gives "
                              "next-token probabilities",
                    "h_out": "the state after the last token", "c_out": "the state after the last token"},
        "framing": language_model.framing,
        "corpus_options": corpus,
        "opset": OPSET,
    }
    if language_model.framing == "windows":
        card["window_tokens"] = language_model.unscored_tokens
    if language_model.tokenizer.level == "word":
        card["word_pattern"] = WordTokenizer.PATTERN.pattern
    return card


def check_against_torch(model: LSTMLanguageModel, out: Path, tokens: int = CHECK_TOKENS) -> float:
    """Read ``tokens`` random tokens through both files and PyTorch; refuse
    an export whose logits differ by more than CHECK_TOLERANCE."""
    difference = max(_step_difference(model, out, tokens), _sequence_difference(model, out, tokens))
    if difference > CHECK_TOLERANCE:
        raise LstmgenError(f"onnxruntime's logits differ from PyTorch's by {difference:.2g} (more than "
                           f"{CHECK_TOLERANCE:g}); the files in {out} are not to be trusted: please report it with "
                           "the output of lstmgen doctor")
    return difference


def _sessions(out: Path):
    import onnxruntime as ort

    return (ort.InferenceSession(str(out / "step.onnx"), providers=["CPUExecutionProvider"]),
            ort.InferenceSession(str(out / "sequence.onnx"), providers=["CPUExecutionProvider"]))


def _check_ids(model: LSTMLanguageModel, tokens: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randint(model.config.vocab_size, (2, tokens), generator=generator)


def _step_difference(model: LSTMLanguageModel, out: Path, tokens: int) -> float:
    step, _ = _sessions(out)
    ids = _check_ids(model, tokens)
    h, c = model.init_state(2, torch.device("cpu"))
    oh, oc = h.numpy(), c.numpy()
    worst = 0.0
    with torch.no_grad():
        for t in range(tokens):
            logits, _, (h, c) = model(ids[:, t:t + 1], (h, c), last_only=True)
            o_logits, oh, oc = step.run(None, {"token_ids": ids[:, t].numpy(), "h": oh, "c": oc})
            worst = max(worst, float(np.abs(o_logits - logits.numpy()).max()))
    return worst


def _sequence_difference(model: LSTMLanguageModel, out: Path, tokens: int) -> float:
    _, sequence = _sessions(out)
    ids = _check_ids(model, tokens)
    h, c = model.init_state(2, torch.device("cpu"))
    with torch.no_grad():
        logits, _, (h_out, c_out) = model(ids, (h, c))
    o_logits, o_h, o_c = sequence.run(None, {"token_ids": ids.numpy(), "h": h.numpy(), "c": c.numpy()})
    return max(float(np.abs(o_logits - logits.numpy()).max()), float(np.abs(o_h - h_out.numpy()).max()),
               float(np.abs(o_c - c_out.numpy()).max()))


def readme(language_model) -> str:
    """The README written beside the files, with a runnable example for the model's level."""
    card = model_card(language_model)
    lower = bool(card["corpus_options"].get("lowercase"))
    window = card.get("window_tokens")
    notes = []
    if lower:
        notes.append("The model was trained on lowercased text: lowercase the prompt (the example does).")
    if window:
        notes.append(f"The model was trained on windows of {window} tokens, each read from a zero state. "
                     "Reading a long text statefully, as the example does, takes it past what it learned; "
                     f"to generate as it was trained, run `sequence.onnx` on the last {window} tokens from "
                     "a zero state for every new token and take the last position's logits.")
    return _README.format(level=card["level"], vocab=card["vocab_size"], layers=card["num_layers"],
                          hidden=card["hidden_size"], encode=_ENCODE[card["level"]],
                          prompt="prompt.lower()" if lower else "prompt",
                          notes="\n".join(f"\n{n}" for n in notes))


_ENCODE = {
    "char": """vocab = json.load(open("tokenizer.json", encoding="utf-8"))["chars"]
index = {ch: i for i, ch in enumerate(vocab)}
encode = lambda text: [index[ch] for ch in text if ch in index]
decode = lambda ids: "".join(vocab[i] for i in ids)""",
    "word": """vocab = json.load(open("tokenizer.json", encoding="utf-8"))["tokens"]
index = {tok: i for i, tok in enumerate(vocab)}  # id 0 is <unk>
pattern = re.compile(json.load(open("model.json", encoding="utf-8"))["word_pattern"])
encode = lambda text: [index.get(tok, 0) for tok in pattern.findall(text)]
decode = lambda ids: "".join(vocab[i] for i in ids)""",
    "bpe": """from tokenizers import Tokenizer  # pip install tokenizers
bpe = Tokenizer.from_file("hf-tokenizer.json")
encode = lambda text: bpe.encode(text).ids
decode = lambda ids: bpe.decode(ids)""",
}

_README = """# An lstmgen model as ONNX

A {level}-level LSTM language model: vocabulary {vocab}, {layers} layer(s) of {hidden} units.

| file | what |
|---|---|
| `step.onnx` | one step: `token_ids` (batch,) int64, `h` and `c` (layers, batch, hidden) float32 in; `logits` (batch, vocabulary) and `h_out`, `c_out` out |
| `sequence.onnx` | many steps at once: `token_ids` (batch, tokens) in; `logits` (batch, tokens, vocabulary) and the state after the last token out |
| `tokenizer.json` | the vocabulary, as lstmgen stores it |
| `model.json` | shapes, names and the corpus options the model was trained with |

Generate 300 tokens with onnxruntime (`pip install onnxruntime numpy`), run in this folder:

```python
import json, re
import numpy as np, onnxruntime as ort

{encode}
step, sequence = ort.InferenceSession("step.onnx"), ort.InferenceSession("sequence.onnx")
card = json.load(open("model.json", encoding="utf-8"))
h = c = np.zeros((card["num_layers"], 1, card["hidden_size"]), np.float32)
prompt = "The "
logits, h, c = sequence.run(None, {{"token_ids": np.array([encode({prompt})]), "h": h, "c": c}})
logits, rng, out = logits[:, -1], np.random.default_rng(0), []
for _ in range(300):
    p = np.exp((logits[0] - logits[0].max()) / 0.8)  # temperature 0.8
    out.append(int(rng.choice(len(p), p=p / p.sum())))
    logits, h, c = step.run(None, {{"token_ids": np.array([out[-1]]), "h": h, "c": c}})
print(decode(out))
```

Batches of any size work the same way: one row of `token_ids` and one column of `h` and `c` per stream.
Use `np.argmax(logits[0])` instead of sampling for greedy text.{notes}
"""

