"""From logits to the next token, in one fixed order:

    repetition penalty → presence and frequency penalties → DRY →
    no-repeat-ngram → temperature → top-k → typical-p → top-p → min-p → draw

The first four read the recent tokens of each stream (History); at their
neutral values they do nothing. Temperature 0 takes the argmax after them,
so `--temperature 0` alone is the tutorial's argmax, unchanged. When the
penalties ban every token of a stream, that stream keeps its logits as they
came from the model rather than drawing from nothing.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import torch

from .config import SampleConfig


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    return logits / temperature


def apply_top_k(logits: torch.Tensor, k: int | None) -> torch.Tensor:
    """Set every logit below the k-th largest to -inf. (N, V) -> (N, V)."""
    if k is None or k >= logits.size(-1):
        return logits
    kth = torch.topk(logits, k, dim=-1).values[:, -1:]  # (N, 1)
    return logits.masked_fill(logits < kth, float("-inf"))


def apply_top_p(logits: torch.Tensor, p: float | None) -> torch.Tensor:
    """Nucleus filtering: keep the most likely tokens whose cumulative
    probability first reaches p; the most likely token always stays."""
    if p is None or p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
    cumulative = torch.softmax(sorted_logits, dim=-1).cumsum(dim=-1)
    # Drop a token when the tokens before it already reach p.
    drop_sorted = (cumulative - torch.softmax(sorted_logits, dim=-1)) >= p
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def apply_min_p(logits: torch.Tensor, p: float | None) -> torch.Tensor:
    """Drop tokens less than p times as likely as the most likely one."""
    if not p:
        return logits
    probs = torch.softmax(logits, dim=-1)
    return logits.masked_fill(probs < p * probs.amax(dim=-1, keepdim=True), float("-inf"))


def apply_typical_p(logits: torch.Tensor, p: float | None) -> torch.Tensor:
    """Locally typical sampling (Meister et al. 2022, as Hugging Face's
    TypicalLogitsWarper): rank tokens by how far their surprise is from the
    entropy, keep the closest ones until their probability reaches p."""
    if p is None or p >= 1.0:
        return logits
    log_probs = torch.log_softmax(logits, dim=-1)
    probs = log_probs.exp()
    entropy = -(probs * log_probs).nan_to_num().sum(dim=-1, keepdim=True)
    distance = (-log_probs - entropy).abs()
    sorted_distance, order = torch.sort(distance, dim=-1)
    cumulative = probs.gather(-1, order).cumsum(dim=-1)
    # Keep a token while the tokens before it have not reached p (the first always stays).
    drop_sorted = (cumulative - probs.gather(-1, order)) >= p
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def next_tokens(logits: torch.Tensor, config: SampleConfig, generator: torch.Generator,
                history: "History | None" = None) -> torch.Tensor:
    """Choose one token per row of ``logits`` (N, V). Returns (N,) int64."""
    logits = logits.float()
    if history is not None:
        logits = history.penalize(logits)
    if config.temperature == 0:
        return torch.argmax(logits, dim=-1)
    return choose_tokens(logits, config, torch.rand(logits.size(0), 1, generator=generator, device=logits.device))


def choose_tokens(logits: torch.Tensor, config: SampleConfig, uniforms: torch.Tensor | None) -> torch.Tensor:
    """The filters and the draw, after the penalties: one token per row of
    ``logits`` (N, V) at the uniform numbers ``uniforms`` (N, 1), which may
    come from a generator per row (a server's streams). Row by row the same
    as a call per row. Temperature 0 takes the argmax and needs no numbers."""
    logits = logits.float()
    if config.temperature == 0:
        return torch.argmax(logits, dim=-1)
    logits = apply_temperature(logits, config.temperature)
    logits = apply_top_k(logits, config.top_k)
    logits = apply_typical_p(logits, config.typical_p)
    logits = apply_top_p(logits, config.top_p)
    logits = apply_min_p(logits, config.min_p)
    return draw_at(torch.softmax(logits, dim=-1), uniforms)


def draw(probs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One token per row of ``probs`` (N, V) at the generator's next N numbers."""
    return draw_at(probs, torch.rand(probs.size(0), 1, generator=generator, device=probs.device))


def draw_at(probs: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """One token per row of ``probs`` (N, V), by inverting the cumulative
    distribution at the uniform numbers (N, 1). On a CPU this is 2× to 4×
    faster than torch.multinomial at 64 to 256 rows (90 against 204 µs at
    64, softmax included), which is 5% of a 64-stream step of the bundled
    model. A token of probability 0 is never drawn: its cumulative value
    equals the one before it, and the search takes the first value above
    the draw."""
    cdf = probs.cumsum(dim=-1)  # (N, V)
    u = uniforms.to(cdf.device) * cdf[:, -1:]
    return torch.searchsorted(cdf, u, right=True).clamp_(max=probs.size(-1) - 1).squeeze(-1)


class History:
    """The last ``penalty_window`` tokens of each of N streams, and what the
    penalties read from them, updated in O(window) per token whatever the
    length of the text so far.

    - ``counts`` (N, V): occurrences of each token in the window (repetition,
      presence and frequency penalties); one token enters, one leaves.
    - ``match`` (N, W): for each window position p, how many tokens before
      and at p equal the tokens at the end of the window (the common suffix,
      within the window). The token after p would extend a repeat of that
      length. A new token x makes it ``match[p] + 1`` where the token at p
      is x, else 0: one vectorised comparison per step (no-repeat-ngram).
    - ``dry_match``: the same, but a sequence breaker ends every repeat (DRY).

    The arrays are NumPy's: at one stream each operation is a few hundred
    elements, where PyTorch's fixed cost per call would dominate.
    """

    def __init__(self, config: SampleConfig, vocab_size: int, streams: int, prompt_ids: list[int],
                 breakers: torch.Tensor | None = None, layout_for: int | None = None):
        """``layout_for``: keep the state laid out as for this many streams
        (a one-stream History that will fill a row of a larger one)."""
        self.config, self.vocab_size = config, vocab_size
        c = config
        self.use_counts = c.repetition_penalty != 1.0 or c.presence_penalty != 0.0 or c.frequency_penalty != 0.0
        self.use_dry = c.dry_multiplier > 0
        self.use_ngram = c.no_repeat_ngram > 0
        self.active = self.use_counts or self.use_dry or self.use_ngram
        if not self.active:
            return
        w = c.penalty_window
        self.breakers = (np.asarray(breakers.cpu(), dtype=bool) if breakers is not None
                         else np.zeros(vocab_size, dtype=bool))
        self._room = np.arange(1, w)[None, :]  # a repeat ending at p holds at most p + 1 window tokens
        few = self.use_dry and (layout_for or streams) <= FEW_STREAMS
        self.few_dry = FewStreamsDry(w, c.dry_allowed_length, self.breakers) if few else None
        # The prompt is read once for one stream, then copied: samples share it.
        self._rows = np.arange(1)
        self.window = np.full((1, w), -1, dtype=np.int64)
        self.counts = np.zeros((1, vocab_size), dtype=np.float32)
        self.match = np.zeros((1, w), dtype=np.int64)
        self.dry_match = np.zeros((1, w), dtype=np.int64)
        if self.few_dry is not None:
            for token in prompt_ids[-w:]:
                self.push(np.array([token]))
        else:
            self._read(np.asarray(prompt_ids[-w:], dtype=np.int64))
        for name in ROW_STATE:
            setattr(self, name, np.repeat(getattr(self, name), streams, axis=0))
        if self.few_dry is not None:
            self.few_dry.copy_to(streams)
        self._rows = np.arange(streams)

    def _read(self, tokens: np.ndarray) -> None:
        """One stream's state after pushing ``tokens`` (a window's at most)
        into its empty window, found at once rather than token by token (a
        100-token prompt with the default settings on a Zen 4 CPU: 0.06 ms
        instead of 0.95, which a server pays for every request). The same arrays as ``push`` makes (tested): a
        position's repeat is how far back the text before it equals the
        end of the window, and DRY's stops at the last sequence breaker."""
        w, n = self.window.shape[1], len(tokens)
        if n == 0:
            return
        window = self.window[0]
        window[w - n:] = tokens
        if self.use_counts:
            self.counts[0] = np.bincount(tokens, minlength=self.vocab_size)
        if not (self.use_ngram or self.use_dry):
            return
        positions = np.arange(w - 1)
        repeat = np.zeros(w - 1, dtype=np.int64)
        going = np.ones(w - 1, dtype=bool)
        for back in range(n):  # most positions stop at the first step back
            going &= positions >= back
            going[going] = window[positions[going] - back] == window[w - 1 - back]
            if not going.any():
                break
            repeat += going
        if self.use_ngram:
            self.match[0, :-1] = repeat
        if self.use_dry:
            breaks = np.flatnonzero(self.breakers[tokens])
            unbroken = n - 1 - breaks[-1] if len(breaks) else n  # tokens after the last breaker
            self.dry_match[0, :-1] = np.minimum(repeat, unbroken)

    def join(self, other: "History") -> "History":
        """Append ``other``'s streams after this one's, as rows of one
        History: a server's streams with equal settings (``penalty_key``)
        then take one vectorised step between them, not one step each.
        Both must be laid out alike (``layout_for``). Returns self."""
        if self.active:
            for name in ROW_STATE:
                setattr(self, name, np.concatenate([getattr(self, name), getattr(other, name)]))
            if self.few_dry is not None:
                self.few_dry.streams.extend(other.few_dry.streams)
            self._rows = np.arange(len(self.window))
        return self

    def keep(self, rows: list[int]) -> "History":
        """Keep only the streams ``rows``, in that order (the others left). Returns self."""
        if self.active:
            for name in ROW_STATE:
                setattr(self, name, getattr(self, name)[rows])
            if self.few_dry is not None:
                self.few_dry.streams = [self.few_dry.streams[i] for i in rows]
            self._rows = np.arange(len(rows))
        return self

    def set_row(self, row: int, other: "History") -> None:
        """Make stream ``row`` hold what one-stream ``other`` (made with
        ``layout_for`` this History's streams) holds."""
        if self.active:
            for name in ROW_STATE:
                getattr(self, name)[row] = getattr(other, name)[0]
            if self.few_dry is not None:
                self.few_dry.streams[row] = other.few_dry.streams[0].copy()

    def push(self, tokens) -> None:
        """Add one token per stream, (N,), to every stream's window."""
        if not self.active:
            return
        if self.few_dry is not None:
            self.few_dry.push(tokens.tolist() if isinstance(tokens, torch.Tensor) else list(tokens))
            if not (self.use_counts or self.use_ngram):
                return  # DRY alone for a few streams needs no window arrays: 4 µs a token instead of 17
        x = (tokens.numpy() if isinstance(tokens, torch.Tensor) else np.asarray(tokens)).astype(np.int64).reshape(-1)
        if self.use_counts:
            leaving = self.window[:, 0]
            self.counts[self._rows, x] += 1
            gone = leaving >= 0
            self.counts[self._rows[gone], leaving[gone]] -= 1
        self.window[:, :-1] = self.window[:, 1:]
        self.window[:, -1] = x
        if self.use_ngram or self.few_dry is None:
            same = self.window[:, :-1] == x[:, None]  # the token at each position p equals x
            if self.use_ngram:
                self._grow(self.match, same)
            if self.use_dry and self.few_dry is None:
                self._grow(self.dry_match, same & ~self.breakers[x][:, None])

    def _grow(self, match: np.ndarray, same: np.ndarray) -> None:
        match[:, :-1] = np.where(same, np.minimum(match[:, :-1] + 1, self._room), 0)
        match[:, -1] = 0

    def _repeats_at_least(self, match: np.ndarray, length: int) -> tuple[np.ndarray, ...] | None:
        """(rows, tokens, lengths) of the tokens that would extend a repeat of
        ``length`` or more (a token may appear more than once), or None: most
        steps have none, and then cost one comparison."""
        lengths = match[:, :-1]
        long = lengths >= length
        if not long.any():
            return None
        rows = np.broadcast_to(self._rows[:, None], lengths.shape)[long]
        return rows, self.window[:, 1:][long], lengths[long]  # the token after each such position

    def penalize(self, logits: torch.Tensor) -> torch.Tensor:
        """The penalties, DRY and no-repeat-ngram, in that order. (N, V) -> (N, V)."""
        if not self.active:
            return logits
        c = self.config
        found_dry = None
        if self.use_dry:
            found_dry = (self.few_dry.repeats() if self.few_dry is not None
                         else self._repeats_at_least(self.dry_match, c.dry_allowed_length))
            if found_dry is None and not (self.use_counts or self.use_ngram):
                return logits  # most steps: nothing to change, no copy
        original = logits.numpy()
        out = original
        if self.use_counts:
            seen = self.counts > 0
            if c.repetition_penalty != 1.0:
                scaled = np.where(out > 0, out / c.repetition_penalty, out * c.repetition_penalty)
                out = np.where(seen, scaled, out)
            if c.presence_penalty:
                out = out - c.presence_penalty * seen
            if c.frequency_penalty:
                out = out - c.frequency_penalty * self.counts
        if found_dry is not None:
            out = self._dry_penalty(out, *found_dry)
        if self.use_ngram:
            n = c.no_repeat_ngram
            if n == 1:
                banned = self._window_counts() > 0
            else:
                banned = np.zeros(out.shape, dtype=bool)
                found = self._repeats_at_least(self.match, n - 1)
                if found is not None:
                    banned[found[0], found[1]] = True
            out = np.where(banned, -np.inf, out)
            # A stream with every token banned keeps the model's own logits.
            dead = np.isneginf(out).all(axis=-1, keepdims=True)
            out = np.where(dead, original, out)
        return torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32))

    def _dry_penalty(self, out: np.ndarray, rows: np.ndarray, tokens: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Subtract multiplier × base^(L - allowed) from each (row, token) for
        its longest repeat L. Only the entries found are touched: a dense
        (N, V) pass cost milliseconds a step at 64 streams of a 10,000-word vocabulary."""
        c = self.config
        flat = rows * out.shape[1] + tokens
        order = np.lexsort((-lengths, flat))  # by entry, the longest repeat first
        flat, lengths = flat[order], lengths[order]
        first = np.concatenate([[True], flat[1:] != flat[:-1]])
        # Past 40 doublings the token is as good as banned; the cap keeps the number finite.
        exponent = np.clip(lengths[first] - c.dry_allowed_length, 0, 40)
        out = np.array(out, dtype=np.float32)  # a copy: the model's logits stay as they came
        out.reshape(-1)[flat[first]] -= (c.dry_multiplier * np.power(c.dry_base, exponent)).astype(np.float32)
        return out

    def _window_counts(self) -> np.ndarray:
        counts = np.zeros((len(self.window), self.vocab_size), dtype=np.int64)
        valid = self.window >= 0
        rows = np.broadcast_to(self._rows[:, None], self.window.shape)[valid]
        np.add.at(counts, (rows, self.window[valid]), 1)
        return counts


ROW_STATE = ("window", "counts", "match", "dry_match")
"""History's arrays with one row per stream."""


def penalty_key(config: SampleConfig) -> tuple:
    """The settings a History reads: streams whose keys are equal can share
    one History (``History.join``), whatever their other settings."""
    c = config
    return (c.repetition_penalty, c.presence_penalty, c.frequency_penalty, c.penalty_window, c.dry_multiplier,
            c.dry_base, c.dry_allowed_length, c.dry_sequence_breakers, c.no_repeat_ngram)


FEW_STREAMS = 4
"""Up to this many streams, DRY's repeats are found in plain Python
(FewStreamsDry); past it, in NumPy over every stream at once (History)."""


class FewStreamsDry:
    """DRY's repeats for a few streams, found by content instead of by
    position. Each stream keeps, for every breaker-free run of
    ``allowed`` tokens in its window, where such runs end. After each
    token, the newest run is looked up: most steps find no earlier copy and
    cost a few dictionary operations, against a dozen NumPy calls over the
    whole window. An earlier copy ending at e extends a repeat one longer
    than the copy ending at e - 1 found the step before, or starts one of
    exactly ``allowed`` tokens (a longer one would have been found then).
    The answers equal History's NumPy arrays (tests/sampling/test_processors.py)."""

    def __init__(self, window: int, allowed: int, breakers: np.ndarray):
        self.window, self.allowed = window, allowed
        self.breaker = breakers.tolist()  # a list: indexing it is 10× faster than a NumPy array's
        self.streams = [_DryStream()]

    def copy_to(self, streams: int) -> None:
        self.streams = [self.streams[0].copy() for _ in range(streams)]

    def push(self, tokens: list[int]) -> None:
        for stream, token in zip(self.streams, tokens):
            stream.push(token, self.window, self.allowed, self.breaker)

    def repeats(self) -> tuple[np.ndarray, ...] | None:
        """(rows, tokens, lengths) as History._repeats_at_least gives them."""
        if not any(s.found for s in self.streams):
            return None
        rows, tokens, lengths = [], [], []
        for row, s in enumerate(self.streams):
            for end, length in s.found.items():
                rows.append(row)
                tokens.append(s.tokens[end + 1 - s.base])  # the token that would extend the repeat
                lengths.append(length)
        return np.array(rows), np.array(tokens), np.array(lengths)


class _DryStream:
    __slots__ = ("tokens", "base", "run", "ends", "found")

    def __init__(self):
        self.tokens: list[int] = []
        self.base = 0  # the position in the text of tokens[0]
        self.run = 0  # tokens since the last breaker
        self.ends: dict[tuple, deque] = {}  # a run of `allowed` tokens -> positions where it ends
        self.found: dict[int, int] = {}  # end of an earlier copy of the newest run -> repeat length

    def copy(self) -> "_DryStream":
        other = _DryStream()
        other.tokens, other.base, other.run = list(self.tokens), self.base, self.run
        other.ends = {k: deque(v) for k, v in self.ends.items()}
        other.found = dict(self.found)
        return other

    def push(self, token: int, window: int, allowed: int, breaker: list) -> None:
        self.tokens.append(token)
        newest = self.base + len(self.tokens) - 1
        first = newest + 1 - window  # the window's first position
        self.run = 0 if breaker[token] else self.run + 1
        found = {}
        if self.run >= allowed:
            key = tuple(self.tokens[-allowed:])
            ends = self.ends.get(key)
            if ends is None:
                self.ends[key] = deque([newest])
            else:
                while ends and ends[0] - allowed + 1 < first:  # copies that left the window
                    ends.popleft()
                last = self.found
                for end in ends:
                    before = last.get(end - 1)
                    found[end] = allowed if before is None else min(before + 1, end - first + 1)
                ends.append(newest)
        self.found = found
        if len(self.tokens) >= 2 * window:
            self._forget(first)

    def _forget(self, first: int) -> None:
        """Drop what left the window, now and then (amortised O(1) a token)."""
        drop = first - self.base
        del self.tokens[:drop]
        self.base = first
        for key in list(self.ends):
            ends = self.ends[key]
            while ends and ends[0] - len(key) + 1 < first:
                ends.popleft()
            if not ends:
                del self.ends[key]
