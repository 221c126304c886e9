"""One-token steps through onnxruntime: the same step as StepWeights, built
as an ONNX graph straight from the model's weights (no export, no file).

On a 2-core AMD EPYC (AVX2) onnxruntime's matrix kernels beat the ones
PyTorch calls there (MKL): a 1×768 by 768×1536 product took 74 µs against
112 µs. The graph is built in memory in a few tens of milliseconds, once
per model and weight version (steps.step_weights caches it).

The graph, for L layers (shapes for N streams)::

    token (N,) ─ Gather(table) ─┐                                  layer 0, by hand:
    h0 (N, H) ── Gemm(R0) + ────┴─ gates (N, 4H) ─ σ, tanh, c' = f·c + i·g, h' = o·tanh(c')
    h0' (1, N, H) ─ LSTM(W1, R1, B1; h1, c1) ─ h1' ─ … ─ LSTM(…) ─ h'(L-1) ─ [Gather(head_rows)] ─ Gemm(head) ─ logits

- layer 0's input projection is folded into a (V, 4H) table, as in
  StepWeights: one row lookup instead of a product with the input (for a
  one-hot model, instead of a product with V-wide one-hot rows);
- the higher layers are ONNX's own LSTM operator, one kernel each. Every
  layer as the operator, or every layer by hand, generated as fast within
  the noise of a shared 2-core machine (1, 8 and 64 streams);
- with no table (an embedding model whose table would be too large),
  layer 0 is an LSTM operator too, fed the Gather of its embedding.

Every row is computed alike whatever the batch size (row_stable_batch
finds 1), so a Batcher stepping with it pads nothing.
"""

from __future__ import annotations

import importlib.util
from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import LstmgenError
from ..model import LSTMLanguageModel

OPSET = 17
NEEDS = "--precision onnx needs onnxruntime and onnx: pip install 'lstmgen[onnx]'"
_GRAPH_BYTES = 2**31 - 2**26
"""An in-memory ONNX graph is one protobuf message, which cannot reach 2 GiB."""
TABLE_FLOATS = 1 << 24
"""Floats (64 MB) in layer 0's table at most, as StepWeights."""


def onnx_step_problem(model: LSTMLanguageModel) -> str | None:
    """Why this model cannot step through onnxruntime here, in one line; None if it can."""
    device = model.head.weight.device
    if device.type != "cpu":
        return f"--precision onnx runs on a CPU only (here: {device}); use --precision auto or fp32"
    # Looked up, not imported: importing onnxruntime takes 0.1 s, which a
    # choice read from the cache (or one that goes to fp32) never needs.
    if not (_installed("onnx") and _installed("onnxruntime")):
        return NEEDS
    size = 4 * (sum(p.numel() for p in model.parameters()) + TABLE_FLOATS)
    if size > _GRAPH_BYTES:
        return (f"--precision onnx holds the weights in one graph of at most 2 GB, and this model needs up to "
                f"{size / 2**30:.1f} GB; use --precision auto or fp32")
    return None


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ValueError:  # imported before and blocked (sys.modules[name] is None)
        return False


class OnnxStep:
    """StepWeights' interface (``step``, ``hidden_size``, ``num_layers``,
    ``precision``, ``model``), stepping through an onnxruntime session."""

    _TABLE_LIMIT = TABLE_FLOATS  # a test sets it to 0 for the layout without a table

    def __init__(self, model: LSTMLanguageModel):
        problem = onnx_step_problem(model)
        if problem:
            raise LstmgenError(problem)
        cfg = model.config
        self.model, self.precision = model, "onnx"
        self.hidden_size, self.num_layers = cfg.hidden_size, cfg.num_layers
        # A one-hot model's table is exactly as large as its first input matrix.
        self.table = cfg.input_mode == "onehot" or cfg.vocab_size * 4 * cfg.hidden_size <= self._TABLE_LIMIT
        self.inits = _initializers(model, self.table)
        # Per layer: its state's input names, and whether it is run as the
        # LSTM operator, whose state is (1, N, H) where a layer by hand's is (N, H).
        self.states = [(f"h{layer}", f"c{layer}", layer > 0 or not self.table) for layer in range(cfg.num_layers)]
        self.sessions = {False: _session(_graph(model, self.inits, self.table, head_rows=False))}
        self.outputs = [o.name for o in self.sessions[False].get_outputs()]

    def step(self, token: torch.Tensor, h: list[torch.Tensor], c: list[torch.Tensor],
             head_rows: torch.Tensor | None = None):
        """One step of N streams, as StepWeights.step: token (N,), h and c
        lists of (N, H) per layer (fp32); returns logits (N, V) fp32, or only
        the rows ``head_rows``, and the new h, c lists."""
        # .numpy() and torch.from_numpy share memory: no copy either way.
        # This wrapping costs about 30 µs a step, a sixth of one stream's step.
        feed = {"token": token.numpy()}
        for (h_name, c_name, operator), hl, cl in zip(self.states, h, c):
            if operator:  # (1, N, H): the operator's (directions, batch, hidden)
                feed[h_name], feed[c_name] = hl.numpy()[None], cl.numpy()[None]
            else:
                feed[h_name], feed[c_name] = hl.numpy(), cl.numpy()
        if head_rows is not None:
            feed["head_rows"] = head_rows.numpy()
        logits, *states = self._session(head_rows is not None).run(self.outputs, feed)
        new_h, new_c = [], []
        for layer in range(self.num_layers):
            new_h.append(torch.from_numpy(states[2 * layer].reshape(-1, self.hidden_size)))
            new_c.append(torch.from_numpy(states[2 * layer + 1].reshape(-1, self.hidden_size)))
        return torch.from_numpy(logits), new_h, new_c

    @contextmanager
    def between_steps(self) -> Iterator[None]:
        """PyTorch's work between two steps (sampling), on one thread.

        onnxruntime's threads keep the cores between steps, so a PyTorch
        kernel that splits its rows over PyTorch's own threads waits for a
        core: at 64 streams the bundled model's softmax over (64, 73) logits
        took 6.5 ms instead of tens of µs, and onnxruntime's next step ran
        at half speed beside PyTorch's spinning threads (2-core AVX2 EPYC:
        13,047 chars/s, and 18,119 with PyTorch on one thread)."""
        threads = torch.get_num_threads()
        if threads == 1:
            yield
            return
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(threads)

    def _session(self, head_rows: bool):
        """The graph whose head reads only some rows is built when first needed (window generation)."""
        if head_rows not in self.sessions:
            self.sessions[head_rows] = _session(_graph(self.model, self.inits, self.table, head_rows))
        return self.sessions[head_rows]


def _session(graph):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Its threads wait for the next step spinning, as by default (without,
    # the bundled model made 2,600 characters/s instead of 4,300 on 2 cores,
    # 1 stream), but for 200 µs at most: the default spins for so long that
    # PyTorch's work after it ran at up to half speed.
    options.add_session_config_entry("session.intra_op.spin_duration_us", "200")
    options.log_severity_level = 3
    return ort.InferenceSession(graph.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _gates(w: torch.Tensor, h: int, order: str) -> torch.Tensor:
    """Rows (or a bias) in PyTorch's gate order (i, f, g, o) put in ``order``:
    'ifog' (StepWeights': one sigmoid over the first 3H) or 'iofg' (ONNX's i, o, f, c)."""
    blocks = dict(zip("ifgo", w.split(h, 0)))
    return torch.cat([blocks[gate] for gate in order])


def _initializers(model: LSTMLanguageModel, table: bool) -> dict[str, np.ndarray]:
    """The graph's constant tensors, as float32 arrays (copies: the session
    keeps them as they are now, as StepWeights does)."""
    cfg, lstm = model.config, model.lstm
    h = cfg.hidden_size
    out: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        ids = torch.arange(cfg.vocab_size, device=lstm.weight_ih_l0.device).unsqueeze(0)  # (1, V)
        inputs = model.embed(ids)[0].float()  # (V, I): what each token feeds layer 0
        first = 1
        if table:
            bias = _gates(lstm.bias_ih_l0 + lstm.bias_hh_l0, h, "ifog")
            out["table"] = F.linear(inputs, _gates(lstm.weight_ih_l0, h, "ifog"), bias)  # (V, 4H)
            out["R0"] = _gates(lstm.weight_hh_l0, h, "ifog")  # (4H, H)
        else:
            out["inputs"], first = inputs, 0
        for layer in range(first, cfg.num_layers):
            weights = {name: getattr(lstm, f"{name}_l{layer}") for name in ("weight_ih", "weight_hh", "bias_ih",
                                                                            "bias_hh")}
            out[f"W{layer}"] = _gates(weights["weight_ih"], h, "iofg")[None]  # (1, 4H, I)
            out[f"R{layer}"] = _gates(weights["weight_hh"], h, "iofg")[None]  # (1, 4H, H)
            # ONNX's one bias holds both: (1, 8H) = [input bias | recurrent bias].
            out[f"B{layer}"] = torch.cat([_gates(weights["bias_ih"], h, "iofg"),
                                          _gates(weights["bias_hh"], h, "iofg")])[None]
        out["head_w"], out["head_b"] = model.head.weight, model.head.bias
        return {name: t.detach().float().cpu().numpy().copy() for name, t in out.items()}


def _graph(model: LSTMLanguageModel, inits: dict[str, np.ndarray], table: bool, head_rows: bool):
    """The step as an ONNX model (see the module's text)."""
    from onnx import TensorProto, helper, numpy_helper

    cfg = model.config
    h, fp32 = cfg.hidden_size, TensorProto.FLOAT
    nodes, inputs = [], [helper.make_tensor_value_info("token", TensorProto.INT64, ["N"])]
    outputs = [helper.make_tensor_value_info("logits", fp32, ["K" if head_rows else "N", cfg.vocab_size])]
    consts = {"by_gate": np.array([3 * h, h], np.int64), "by_sigmoid": np.array([h, h, h], np.int64),
              "sequence": np.array([1, -1, h], np.int64), "rows": np.array([-1, h], np.int64)}

    def state(name: str, seq: bool) -> None:
        shape = [1, "N", h] if seq else ["N", h]
        inputs.append(helper.make_tensor_value_info(name, fp32, shape))
        outputs.append(helper.make_tensor_value_info(f"{name}_out", fp32, shape))

    if table:
        state("h0", False)
        state("c0", False)
        nodes += _cell_by_hand(helper)
        x, seq, first = "h0_out", False, 1  # (N, H)
    else:
        nodes.append(helper.make_node("Unsqueeze", ["token", "zero"], ["token_seq"]))  # (1, N)
        nodes.append(helper.make_node("Gather", ["inputs", "token_seq"], ["x0"], axis=0))  # (1, N, I)
        consts["zero"] = np.array([0], np.int64)
        x, seq, first = "x0", True, 0
    for layer in range(first, cfg.num_layers):
        if not seq:
            nodes.append(helper.make_node("Reshape", [x, "sequence"], [f"x{layer}"]))  # (1, N, H)
            x, seq = f"x{layer}", True
        state(f"h{layer}", True)
        state(f"c{layer}", True)
        nodes.append(helper.make_node("LSTM", [x, f"W{layer}", f"R{layer}", f"B{layer}", "", f"h{layer}",
                                               f"c{layer}"], ["", f"h{layer}_out", f"c{layer}_out"], hidden_size=h))
        x = f"h{layer}_out"  # (1, N, H): one time step's output is the new h
    if seq:
        nodes.append(helper.make_node("Reshape", [x, "rows"], ["top"]))  # (N, H)
        x = "top"
    if head_rows:
        inputs.append(helper.make_tensor_value_info("head_rows", TensorProto.INT64, ["K"]))
        nodes.append(helper.make_node("Gather", [x, "head_rows"], ["top_rows"], axis=0))  # (K, H)
        x = "top_rows"
    nodes.append(helper.make_node("Gemm", [x, "head_w", "head_b"], ["logits"], transB=1))
    tensors = [numpy_helper.from_array(a, name) for name, a in {**inits, **consts}.items()]
    graph = helper.make_graph(nodes, "lstmgen_step", inputs, outputs, tensors)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])


def _cell_by_hand(helper) -> list:
    """Layer 0 from the table, gates in StepWeights' order (i, f, o, g)."""
    node = helper.make_node
    return [
        node("Gather", ["table", "token"], ["pre0"], axis=0),  # (N, 4H): W_ih·x + both biases
        node("Gemm", ["h0", "R0", "pre0"], ["gates0"], transB=1),  # (N, 4H)
        node("Split", ["gates0", "by_gate"], ["ifo_pre", "g_pre"], axis=1),
        node("Sigmoid", ["ifo_pre"], ["ifo"]),
        node("Tanh", ["g_pre"], ["g"]),
        node("Split", ["ifo", "by_sigmoid"], ["i", "f", "o"], axis=1),
        node("Mul", ["f", "c0"], ["fc"]),
        node("Mul", ["i", "g"], ["ig"]),
        node("Add", ["fc", "ig"], ["c0_out"]),
        node("Tanh", ["c0_out"], ["tanh_c"]),
        node("Mul", ["o", "tanh_c"], ["h0_out"]),
    ]
