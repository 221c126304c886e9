"""One-token steps: the LSTM's weights laid out for generation, in the
precision that measured fastest for the batch, and as one CUDA graph on a GPU.

The cost of each new token is one step whatever the prompt length, instead
of the tutorial's re-run of a 100-character window per character.
"""

from __future__ import annotations

import weakref
from contextlib import nullcontext
from copy import deepcopy

import torch
import torch.nn.functional as F

from ..errors import LstmgenError
from ..model import LSTMLanguageModel
from ..precision import PrecisionChoice, choose
from .onnx_step import OnnxStep, onnx_step_problem


def int8_available(device: torch.device) -> bool:
    """Weight-only int8 matmul: a CPU kernel of PyTorch 2.3 and later."""
    return device.type == "cpu" and hasattr(torch.ops.aten, "_weight_int8pack_mm")


def step_precision(model: LSTMLanguageModel, requested: str, batch: int) -> PrecisionChoice:
    """The weights' precision for one-token steps of ``batch`` streams: the
    requested one, or for 'auto' the fastest of fp32, bf16, int8 and, where
    onnxruntime is installed, its step (onnx_step.py), timed on this model's
    own steps (lstmgen.precision).

    Measured so far on 2-core CPUs: int8 won at 1 to 8 streams (reading the
    weights bounds a small batch, and int8 weights are a quarter of the
    bytes), bf16 won from 64 streams with AMX, and fp32 won at 64 streams
    with AVX512-BF16 and no AMX (BENCHMARKS.md, "Generation").
    """
    device = model.head.weight.device
    if requested == "int8" and not int8_available(device):
        raise LstmgenError(f"--precision int8 needs a CPU and PyTorch 2.3 or later (here: {device}, torch "
                           f"{torch.__version__}); use --precision bf16 or fp32")
    if requested == "onnx" and (problem := onnx_step_problem(model)):
        raise LstmgenError(problem)
    if requested != "auto":
        return PrecisionChoice(requested, "requested")
    # Time a power of two at or above the batch, so that one timing serves
    # every batch size in between.
    timed = 1 << max(batch - 1, 0).bit_length()
    names = ["fp32", "bf16"]
    names += ["int8"] if int8_available(device) else []
    # onnx only for one stream: its step alone won at 8 and 64 streams too, but in whole
    # generation, where PyTorch's sampling runs between the steps and the two libraries'
    # threads compete for the cores, it lost there (2-core AVX2 EPYC, default sampling:
    # 8,761 against 9,433 chars/s at 8 streams, 13,362 against 16,492 at 64) and won at one
    # stream (2,317 against 1,896).
    names += ["onnx"] if timed == 1 and onnx_step_problem(model) is None else []
    # Each candidate is timed on a run of steps, as generation runs them:
    # the first steps after another candidate's find its weights out of the
    # cache (measured on 2 cores, 1 stream: fp32 640, 460, 310, then 250 µs),
    # which favoured whichever has the fewest bytes when one step was timed.
    burst = max(8, 64 // timed)
    candidates = {name: _step_call(model, name, timed, burst) for name in names}
    cfg = model.config
    # The candidates are part of the key: installing onnxruntime later times again, with it.
    shape = {"vocab": cfg.vocab_size, "hidden": cfg.hidden_size, "layers": cfg.num_layers,
             "input": cfg.input_mode, "input_size": cfg.input_size, "streams": timed, "candidates": names}
    streams = f"{timed} stream{'s' if timed > 1 else ''}"
    return choose("generation step", shape, candidates, device, f"one step of {streams}", tokens=timed,
                  repeats=burst)


def prompt_precision(model: LSTMLanguageModel, step: str) -> str:
    """The precision a prompt is read in before steps of precision ``step``:
    bf16 for bf16 steps on a CPU whose PyTorch runs nn.LSTM in bf16, fp32
    otherwise. A bf16 step multiplies in bf16 and keeps the state in fp32;
    the prompt is read by nn.LSTM under autocast, state and all in bf16,
    which on a 2-core Zen 4 CPU (AVX512-BF16, one thread) took 5.4 ms
    instead of 11.6 for 100 characters, and the next character after 300
    Alice prompts scored 1.5252 bits against 1.5254 (benchmarks/prompt_reading.py;
    BENCHMARKS.md, "Prompts read in bf16, Zen 4 CPU")."""
    if step != "bf16" or model.head.weight.device.type != "cpu":
        return "fp32"
    return "bf16" if _bf16_lstm_runs(model) else "fp32"


_bf16_lstm: "weakref.WeakKeyDictionary[LSTMLanguageModel, bool]" = weakref.WeakKeyDictionary()


def _bf16_lstm_runs(model: LSTMLanguageModel) -> bool:
    """Whether this PyTorch runs the model's nn.LSTM in bf16 here (oneDNN has
    no bf16 kernel on some CPUs): tried once per model on a 2-token prompt."""
    if model not in _bf16_lstm:
        try:
            with torch.inference_mode():
                read_prompt(model, torch.zeros(1, 2, dtype=torch.long), None, "bf16")
            _bf16_lstm[model] = True
        except RuntimeError:
            _bf16_lstm[model] = False
            _bf16_copies.pop(model, None)  # never used
    return _bf16_lstm[model]


def read_prompt(model: LSTMLanguageModel, ids: torch.Tensor, state: tuple | None, precision: str):
    """nn.LSTM over ``ids`` (B, T) from ``state``, in ``precision`` (from
    prompt_precision). Returns the last logits (B, V) and the (h, c) state,
    all fp32 (a bf16 state read on in bf16 goes back to the same bits).

    bf16 runs a bf16 copy of the model, kept beside it: the same kernels and
    bits as the model under bf16 autocast (tested), without casting every
    weight again at each call, which autocast does once per context (a
    100-character prompt on a 2-core Zen 4 CPU, one thread: 5.32-5.46 ms
    against 5.61-5.73, benchmarks/prompt_reading.py)."""
    if precision != "bf16":
        logits, _, (h, c) = model(ids, state, last_only=True)
        return logits, (h, c)
    if model.config.input_mode == "scaled":  # id / vocab: autocast divides in fp32, a bf16 copy would not
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits, _, (h, c) = model(ids, state, last_only=True)
        return logits.float(), (h.float(), c.float())
    if state is not None:
        state = tuple(s.to(torch.bfloat16) for s in state)
    logits, _, (h, c) = _bf16_copy(model)(ids, state, last_only=True)
    return logits.float(), (h.float(), c.float())


_bf16_copies: "weakref.WeakKeyDictionary[LSTMLanguageModel, tuple]" = weakref.WeakKeyDictionary()


def _bf16_copy(model: LSTMLanguageModel) -> LSTMLanguageModel:
    """The model in bf16, made once per weight version (as step_weights)."""
    version = _weights_version(model)
    entry = _bf16_copies.get(model)
    if entry is None or entry[0] != version:
        copy = deepcopy(model).to(torch.bfloat16).eval()
        copy.requires_grad_(False)
        entry = _bf16_copies[model] = (version, copy)
    return entry[1]


def _step_call(model: LSTMLanguageModel, precision: str, batch: int, steps: int):
    """A factory of ``steps`` generation steps of ``batch`` streams, as one call."""
    def make():
        stepper = step_weights(model, precision)
        device, cfg = model.head.weight.device, model.config
        token = torch.randint(cfg.vocab_size, (batch,), device=device)
        h = [torch.randn(batch, cfg.hidden_size, device=device) * 0.5 for _ in range(cfg.num_layers)]
        c = [torch.randn(batch, cfg.hidden_size, device=device) for _ in range(cfg.num_layers)]

        def call():
            with torch.inference_mode():
                for _ in range(steps):
                    stepper.step(token, h, c)
        return call
    return make


class StepWeights:
    """The LSTM's weights laid out for one-token steps.

    nn.LSTM pays a fixed cost per call that dominates a single time step, so
    generation steps run on these flattened copies instead:

    - layer 0's input projection is folded into a table: every input mode
      maps a token id to a fixed vector, so ``W_ih·x(token) + biases`` is one
      row lookup per step (skipped for tables over _TABLE_LIMIT entries);
    - higher layers multiply ``[input, h]`` by ``[W_ih | W_hh]`` at once;
    - gate rows are reordered from PyTorch's (i, f, g, o) to (i, f, o, g), so
      one sigmoid and one tanh cover all four gates.
    """

    _TABLE_LIMIT = 1 << 24  # floats (64 MB)

    def __init__(self, model: LSTMLanguageModel, precision: str):
        cfg = model.config
        lstm = model.lstm
        h = cfg.hidden_size
        self.hidden_size, self.num_layers, self.precision = h, cfg.num_layers, precision
        self.model = model
        perm = torch.cat([torch.arange(0, 2 * h), torch.arange(3 * h, 4 * h), torch.arange(2 * h, 3 * h)])
        with torch.no_grad():
            w_ih0, b0 = lstm.weight_ih_l0[perm], (lstm.bias_ih_l0 + lstm.bias_hh_l0)[perm]
            self.table = None
            if cfg.vocab_size * 4 * h <= self._TABLE_LIMIT:
                ids = torch.arange(cfg.vocab_size, device=w_ih0.device).unsqueeze(0)  # (1, V)
                self.table = F.linear(model.embed(ids)[0], w_ih0, b0).contiguous()  # (V, 4H)
            else:
                self.w_ih0, self.b0 = w_ih0.contiguous(), b0
            mats = [lstm.weight_hh_l0[perm]]
            self.biases: list[torch.Tensor | None] = [None]
            for layer in range(1, cfg.num_layers):
                w_ih, w_hh = getattr(lstm, f"weight_ih_l{layer}"), getattr(lstm, f"weight_hh_l{layer}")
                mats.append(torch.cat([w_ih, w_hh], 1)[perm])  # (4H, 2H)
                self.biases.append((getattr(lstm, f"bias_ih_l{layer}") + getattr(lstm, f"bias_hh_l{layer}"))[perm])
            mats.append(model.head.weight)
            self.biases.append(model.head.bias)
            self.mats = [self._pack(m.detach().contiguous()) for m in mats]

    def between_steps(self) -> nullcontext:
        """PyTorch's work between steps runs as it is (OnnxStep's differs)."""
        return nullcontext()

    def _pack(self, w: torch.Tensor):
        if self.precision == "int8":
            # PyTorch 2.13's kernel gives wrong sums (or crashes) unless the
            # inner size is a multiple of 16 (measured: 8, 24, 40, 100 fail;
            # 16, 32, 48, 384 pass), so pad with zero columns.
            pad = -w.size(1) % 16
            w = F.pad(w, (0, pad))
            scale = w.abs().amax(dim=1).clamp_min(1e-12) / 127  # one scale per output row
            q = torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8).contiguous()
            return q, scale.to(torch.bfloat16), pad
        if self.precision == "bf16":
            return w.to(torch.bfloat16)
        return w

    def _matmul(self, i: int, x: torch.Tensor, add: torch.Tensor) -> torch.Tensor:
        """x·Wᵢᵀ + add: (N, in) fp32 -> (N, out) fp32; ``add`` is (out,) or (N, out).
        In fp32 the addition happens inside the product (addmm), one pass fewer."""
        w = self.mats[i]
        if self.precision == "int8":
            q, scale, pad = w
            x = x.to(torch.bfloat16)
            if pad:
                x = F.pad(x, (0, pad))
            return torch.ops.aten._weight_int8pack_mm(x, q, scale).float().add_(add)
        if self.precision == "bf16":
            return F.linear(x.to(torch.bfloat16), w).float().add_(add)
        return torch.addmm(add, x, w.t())

    def _cell(self, gates: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.hidden_size
        s = torch.sigmoid(gates[:, :3 * h])  # input, forget, output gates
        c = torch.addcmul(s[:, h:2 * h] * c, s[:, :h], torch.tanh(gates[:, 3 * h:]))
        return s[:, 2 * h:] * torch.tanh(c), c

    def step(self, token: torch.Tensor, h: list[torch.Tensor], c: list[torch.Tensor],
             head_rows: torch.Tensor | None = None):
        """One step of N streams: token (N,), h and c lists of (N, H) per
        layer (fp32). Returns logits (N, V) fp32, or only the rows
        ``head_rows`` of them, and the new h, c lists."""
        if self.table is not None:
            # index_select, not table[token]: 5× faster on a CPU (11 against 60 µs at 64 streams).
            gates = torch.index_select(self.table, 0, token)  # (N, 4H)
        else:
            gates = F.linear(self.model.embed(token.unsqueeze(1))[:, 0], self.w_ih0, self.b0)
        x, c0 = self._cell(self._matmul(0, h[0], gates), c[0])
        new_h, new_c = [x], [c0]
        for layer in range(1, self.num_layers):
            gates = self._matmul(layer, torch.cat([x, h[layer]], 1), self.biases[layer])  # (N, 4H)
            x, cl = self._cell(gates, c[layer])
            new_h.append(x)
            new_c.append(cl)
        if head_rows is not None:
            x = x.index_select(0, head_rows)
        return self._matmul(self.num_layers, x, self.biases[-1]), new_h, new_c


# Built once per model, precision and weight version: quantizing costs a few
# milliseconds, which would otherwise delay every first character.
_step_cache: "weakref.WeakKeyDictionary[LSTMLanguageModel, dict]" = weakref.WeakKeyDictionary()


def _weights_version(model: LSTMLanguageModel) -> tuple:
    """Changes whenever a weight is replaced or changed in place: when what is built from them is stale."""
    return tuple((p.data_ptr(), p._version) for p in model.parameters())


def step_weights(model: LSTMLanguageModel, precision: str) -> StepWeights | OnnxStep:
    version = _weights_version(model)
    cached = _step_cache.setdefault(model, {})
    entry = cached.get(precision)
    if entry is None or entry[0] != version:
        entry = (version, OnnxStep(model) if precision == "onnx" else StepWeights(model, precision))
        cached[precision] = entry
    return entry[1]


class _GraphedStep:
    """One StepWeights step of a fixed batch, captured as a CUDA graph.

    Eagerly, a step is about 20 small kernel launches plus Python, which is
    what bounds one stream on a GPU; a graph replays them in one call. The
    state lives in the graph's own buffers and is updated in place.
    """

    def __init__(self, stepper: StepWeights, hs: list[torch.Tensor], cs: list[torch.Tensor]):
        self.token = torch.zeros(hs[0].size(0), dtype=torch.long, device=hs[0].device)
        self.h = [h.clone() for h in hs]
        self.c = [c.clone() for c in cs]

        def body():
            logits, new_h, new_c = stepper.step(self.token, self.h, self.c)
            for dst, src in zip(self.h + self.c, new_h + new_c):
                dst.copy_(src)
            return logits

        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up off the main stream, as capture requires
            saved = [t.clone() for t in self.h + self.c]
            body()
            for dst, src in zip(self.h + self.c, saved):
                dst.copy_(src)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.logits = body()

    def step(self, token: torch.Tensor) -> torch.Tensor:
        self.token.copy_(token, non_blocking=True)
        self.graph.replay()
        return self.logits


def row_stable_batch(stepper: StepWeights, vocab_size: int, max_rows: int) -> int:
    """The smallest batch from which every larger one, up to ``max_rows``,
    gives each row bit for bit the same step as ``max_rows`` rows do.

    A matrix library picks its kernel by shape, and a row's sums can come
    out in another order for another batch size: measured on an AVX2 CPU
    in fp32, batches of 1–3, 5–7 and 9–11 streams differ from 64 by about
    1e-6, while 4, 8 and 12 and up agree. A server that pads every step to
    this size gives a stream the same text alone as in a crowd. Found by
    stepping random states of every size once (about 0.1 s for 64 rows).
    """
    device = stepper.model.head.weight.device
    g = torch.Generator(device="cpu").manual_seed(0)
    h_size, layers = stepper.hidden_size, stepper.num_layers
    token = torch.randint(vocab_size, (max_rows,), generator=g).to(device)
    h = [(torch.randn(max_rows, h_size, generator=g) * 0.5).to(device) for _ in range(layers)]
    c = [torch.randn(max_rows, h_size, generator=g).to(device) for _ in range(layers)]
    with torch.inference_mode():
        full = stepper.step(token, h, c)
        smallest = max_rows
        for n in range(max_rows - 1, 0, -1):
            part = stepper.step(token[:n], [x[:n] for x in h], [x[:n] for x in c])
            if not all(torch.equal(a, b[:n]) for a, b in zip(_flat(part), _flat(full))):
                break
            smallest = n
    return smallest


def _flat(step_out) -> list[torch.Tensor]:
    logits, h, c = step_out
    return [logits, *h, *c]
