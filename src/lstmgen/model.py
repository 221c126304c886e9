"""The LSTM language model: one readable file, configured by ModelConfig."""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .errors import LstmgenError

INPUT_MODES = ("embedding", "onehot", "scaled")

# (h, c), each (num_layers, B, H): nn.LSTM's own state layout.
State = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the network. Stored as ``config.json`` in every checkpoint."""

    vocab_size: int
    """Number of distinct tokens (characters for a char model)."""
    hidden_size: int = 384
    """Units per LSTM layer."""
    num_layers: int = 2
    """Stacked LSTM layers."""
    dropout: float = 0.4
    """Dropout between LSTM layers and before the output layer (training only)."""
    input_mode: str = "embedding"
    """How ids enter the LSTM: a learned 'embedding', a 'onehot' vector, or the
    tutorial's 'scaled' integer (id / vocab_size, one input feature)."""
    embedding_dim: int = 64
    """Embedding width; used only with input_mode='embedding'."""
    embedding_dropout: float = 0.0
    """Training only: drop whole rows of the embedding matrix, so every
    occurrence of a dropped token in the batch reads zeros (AWD-LSTM)."""
    locked_dropout: bool = False
    """Training only: one dropout mask per sequence, the same at every time
    step (variational dropout), between layers and before the output layer."""
    weight_dropout: float = 0.0
    """Training only: DropConnect on the hidden-to-hidden matrices, a new mask
    each step (AWD-LSTM's weight drop)."""
    tie_weights: bool = False
    """Share the embedding matrix with the output layer; needs
    input_mode='embedding' and embedding_dim equal to hidden_size."""

    def __post_init__(self) -> None:
        if self.vocab_size < 1:
            raise LstmgenError("the vocabulary must hold at least one token")
        if self.hidden_size < 1 or self.num_layers < 1:
            raise LstmgenError("--hidden-size and --num-layers must be at least 1")
        if not 0.0 <= self.dropout < 1.0:
            raise LstmgenError(f"--dropout must be in [0, 1), got {self.dropout}")
        if self.input_mode not in INPUT_MODES:
            raise LstmgenError(f"--input must be one of {', '.join(INPUT_MODES)}, got {self.input_mode!r}")
        if self.input_mode == "embedding" and self.embedding_dim < 1:
            raise LstmgenError("--embedding-dim must be at least 1")
        for flag, value in (("--embedding-dropout", self.embedding_dropout), ("--weight-dropout", self.weight_dropout)):
            if not 0.0 <= value < 1.0:
                raise LstmgenError(f"{flag} must be in [0, 1), got {value}")
        if self.embedding_dropout and self.input_mode != "embedding":
            raise LstmgenError("--embedding-dropout needs --input embedding")
        if self.tie_weights and (self.input_mode != "embedding" or self.embedding_dim != self.hidden_size):
            raise LstmgenError(f"--tie-weights needs --input embedding and --embedding-dim equal to --hidden-size "
                               f"(here {self.embedding_dim} and {self.hidden_size})")

    @property
    def input_size(self) -> int:
        return {"embedding": self.embedding_dim, "onehot": self.vocab_size, "scaled": 1}[self.input_mode]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


class LSTMLanguageModel(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        if config.input_mode == "embedding":
            self.embedding = nn.Embedding(config.vocab_size, config.embedding_dim)
        self.lstm = nn.LSTM(
            config.input_size,
            config.hidden_size,
            num_layers=config.num_layers,
            # nn.LSTM applies this between layers only; the output dropout is separate.
            dropout=config.dropout if config.num_layers > 1 else 0.0,
            batch_first=True,
        )
        self.head = nn.Linear(config.hidden_size, config.vocab_size)
        if config.tie_weights:
            self.head.weight = self.embedding.weight  # (V, H): one matrix, read in and written out

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def init_state(self, batch_size: int, device=None) -> State:
        shape = (self.config.num_layers, batch_size, self.config.hidden_size)
        device = device or self.head.weight.device
        return (torch.zeros(shape, device=device), torch.zeros(shape, device=device))

    def embed(self, idx: torch.Tensor) -> torch.Tensor:
        """(B, T) int64 -> (B, T, input_size) float."""
        mode = self.config.input_mode
        if mode == "embedding":
            p = self.config.embedding_dropout
            if self.training and p > 0:
                keep = (torch.rand(self.config.vocab_size, 1, device=idx.device) >= p).to(self.embedding.weight.dtype)
                return F.embedding(idx, self.embedding.weight * keep / (1.0 - p))
            return self.embedding(idx)
        if mode == "onehot":
            return F.one_hot(idx, self.config.vocab_size).to(self.head.weight.dtype)
        # The tutorial divides the integer id by the vocabulary size.
        return (idx.to(self.head.weight.dtype) / self.config.vocab_size).unsqueeze(-1)

    def forward(
        self,
        idx: torch.Tensor,
        state: State | None = None,
        targets: torch.Tensor | None = None,
        last_only: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None, State]:
        """Run ``idx`` (B, T) from ``state``.

        Returns (logits, loss, new_state). Logits are (B, T, V), or (B, V) with
        ``last_only`` (the tutorial's one-target-per-window framing, and the
        last step of a prompt). ``targets`` is (B, T), or (B,) with last_only;
        the loss is the mean cross-entropy in nats.
        """
        x = self.embed(idx)  # (B, T, I)
        out, new_state = self._lstm(x, state)  # (B, T, H)
        if last_only:
            out = out[:, -1]  # (B, H)
        logits = self.head(dropout(out, self.config.dropout, self.training, self._locked(out)))  # (B, T, V) or (B, V)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1))
        return logits, loss, new_state

    def _lstm(self, x: torch.Tensor, state: State | None) -> tuple[torch.Tensor, State]:
        """nn.LSTM, or its layers one call each when training needs a say in
        what happens between or inside them:

        - weight dropout replaces W_hh by a dropped copy for the call;
        - locked dropout shares one mask over time between layers;
        - on a CPU, nn.LSTM's own between-layer mask comes from bernoulli_,
          which took 16% of a training step of the default preset, so even
          plain dropout uses the faster mask here.

        Same weights, same arithmetic: nn.LSTM calls each layer's kernel in turn too.
        """
        cfg = self.config
        between = cfg.dropout > 0 and cfg.num_layers > 1
        own_masks = cfg.weight_dropout > 0 or (between and (cfg.locked_dropout or x.device.type == "cpu"))
        if not (self.training and own_masks):
            return self.lstm(x, state)
        if state is None:
            state = self.init_state(x.size(0), x.device)
        h0, c0 = state
        hs, cs = [], []
        for layer in range(cfg.num_layers):
            if layer:
                x = dropout(x, cfg.dropout, True, self._locked(x))
            weights = [getattr(self.lstm, f"{name}_l{layer}") for name in _LAYER_WEIGHTS]
            if cfg.weight_dropout > 0:
                weights[1] = dropout(weights[1], cfg.weight_dropout, True)
            # The same call nn.LSTM.forward makes, for one layer: (input, hx,
            # weights, has_biases, num_layers, dropout, train, bidirectional, batch_first).
            # cuDNN warns that these weights are not in its one flat buffer;
            # a freshly dropped W_hh cannot be, and the copy it makes is small.
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="RNN module weights are not part of single contiguous")
                x, h, c = torch._VF.lstm(x, (h0[layer:layer + 1], c0[layer:layer + 1]), weights, True, 1, 0.0,
                                         True, False, True)
            hs.append(h)
            cs.append(c)
        return x, (torch.cat(hs), torch.cat(cs))

    def _locked(self, x: torch.Tensor) -> bool:
        """Share the mask over time: only for (B, T, H) activations."""
        return self.config.locked_dropout and x.dim() == 3


_LAYER_WEIGHTS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


def dropout(x: torch.Tensor, p: float, training: bool, locked: bool = False) -> torch.Tensor:
    """Inverted dropout, as F.dropout, with a cheaper mask on the CPU (see
    keep_mask). ``locked``: x is (B, T, H) and one (B, 1, H) mask serves
    every time step."""
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu" and not locked:
        return F.dropout(x, p, True)
    shape = (x.size(0), 1, x.size(2)) if locked else x.shape
    keep, scale = keep_mask(shape, p, x.device)
    return x * keep * scale


# Uniform 16-bit numbers compared with p·2^16 decide each element.
_MASK_LEVELS = 1 << 16


def keep_mask(shape, p: float, device: torch.device) -> tuple[torch.Tensor, float]:
    """A boolean mask that keeps each element with probability 1 - p, and the
    scale that keeps the expectation exact.

    On a CPU, PyTorch draws one random number per element, and that draw is
    most of dropout's cost: 3.0 ms for the 590 k elements of a 1,536 × 384
    recurrent matrix (2 cores), against 1.2 ms for a quarter as many 64-bit
    numbers cut into four 16-bit ones each. The 16-bit threshold rounds p to
    a multiple of 2^-16; the scale uses the rounded value, so the mask stays
    unbiased.
    """
    numel = math.prod(shape)
    if device.type != "cpu":
        keep = torch.rand(shape, device=device) >= p
        return keep, 1.0 / (1.0 - p)
    drop_levels = min(round(p * _MASK_LEVELS), _MASK_LEVELS - 1)
    # random_(from, to) draws uniformly from [from, to): all 64 bits random
    # (but for one value), unlike random_(), which leaves the sign bit 0.
    words = torch.empty(-(-numel // 4), dtype=torch.int64).random_(-2**63, 2**63 - 1)
    bits = words.view(torch.int16)[:numel].view(shape)  # uniform on [-2^15, 2^15)
    keep = bits >= drop_levels - _MASK_LEVELS // 2
    return keep, _MASK_LEVELS / (_MASK_LEVELS - drop_levels)


def flops_per_token(config: ModelConfig) -> int:
    """Multiply-adds ×2 for one forward step of one token (embedding lookup is free)."""
    h, i = config.hidden_size, config.input_size
    total = 0
    for layer in range(config.num_layers):
        inp = i if layer == 0 else h
        total += 2 * 4 * h * (inp + h)
    total += 2 * h * config.vocab_size
    return total


def nats_to_bits(loss_nats: float) -> float:
    return loss_nats / math.log(2)
