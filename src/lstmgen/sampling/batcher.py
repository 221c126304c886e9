"""Continuous batching: independent requests step together, one batched
LSTM step per token, joining and leaving between steps. An LSTM stream's
whole state is a few kilobytes, so every active request fits one batch
whatever its length. Each stream keeps its own settings, penalty history,
random generator, decoder and stop strings. ``lstmgen serve`` runs one per
model."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable

import torch

from .config import SampleConfig
from .processors import History, next_tokens
from .steps import step_weights
from .stops import StopText


@dataclass
class Job:
    """One request's stream. ``emit(piece, finish_reason, logprobs)`` is
    called from the scheduler's thread: finish_reason is None until the
    last call, then 'stop' (a stop string) or 'length'; logprobs is None
    unless asked for."""

    prompt_ids: list[int]
    config: SampleConfig
    seed: int
    emit: Callable[[str, str | None, dict | None], None]
    logprobs: int | None = None
    """Also emit the token's log-probability and the top this-many alternatives (model's own, before sampling)."""
    cancelled: bool = False
    produced: int = 0
    finish_reason: str | None = None
    history: History | None = field(default=None, repr=False)
    generator: torch.Generator | None = field(default=None, repr=False)
    decoder: object = field(default=None, repr=False)
    stop: StopText | None = field(default=None, repr=False)


class Batcher:
    """One model's scheduler. ``submit`` from any thread; ``step`` (or
    ``run`` in a thread of its own) does one round: admit new jobs,
    sample one token for every active job, retire finished ones, and
    advance the rest in one batched step."""

    def __init__(self, language_model, precision: str = "fp32", max_streams: int = 64):
        self.lm = language_model
        self.model = language_model.model.eval()
        self.stepper = step_weights(self.model, precision)
        self.max_streams = max_streams
        self.waiting: list[Job] = []
        self.active: list[Job] = []
        self.hs: list[torch.Tensor] = []
        self.cs: list[torch.Tensor] = []
        self.logits: torch.Tensor | None = None
        self.lock = threading.Condition()

    def submit(self, prompt_ids: list[int], config: SampleConfig, seed: int, emit, logprobs: int | None = None) -> Job:
        job = Job(list(prompt_ids), config, seed, emit, logprobs)
        with self.lock:
            self.waiting.append(job)
            self.lock.notify()
        return job

    def cancel(self, job: Job) -> None:
        """The job leaves at the next step (a client that went away)."""
        job.cancelled = True

    @torch.inference_mode()
    def step(self) -> bool:
        """One round; False when nothing is active or waiting."""
        self._admit()
        if not self.active:
            return False
        tokens = self._sample()
        keep = [i for i, job in enumerate(self.active) if job.finish_reason is None and not job.cancelled]
        if len(keep) < len(self.active):
            self._retire(keep)
            tokens = tokens[keep]
        if self.active:
            self.logits, self.hs, self.cs = self.stepper.step(tokens, self.hs, self.cs)
        return bool(self.active or self.waiting)

    def run(self, stopping: threading.Event) -> None:
        while not stopping.is_set():
            if not self.step():
                with self.lock:
                    if not self.waiting and not stopping.is_set():
                        self.lock.wait(timeout=0.1)

    def _admit(self) -> None:
        with self.lock:
            room = self.max_streams - len(self.active)
            new, self.waiting = self.waiting[:room], self.waiting[room:]
        for job in new:
            if job.cancelled:
                continue
            if job.config.max_new_tokens == 0:
                job.finish_reason = "length"
                job.emit("", "length", None)
                continue
            # Each prompt is read alone, so a stream's state never depends on what else arrived.
            ids = torch.tensor([job.prompt_ids], dtype=torch.long)
            logits, _, (h, c) = self.model(ids, None, last_only=True)
            job.history = History(job.config, logits.size(-1), 1, job.prompt_ids, self._breakers(job.config))
            job.generator = torch.Generator().manual_seed(job.seed)
            job.decoder = self.lm.tokenizer.stream_decoder()
            job.stop = StopText(job.config)
            self.active.append(job)
            if self.logits is None:
                self.hs, self.cs, self.logits = list(h), list(c), logits.float()  # L × (1, H)
            else:  # one more row per layer
                self.hs = [torch.cat([a, b]) for a, b in zip(self.hs, h)]
                self.cs = [torch.cat([a, b]) for a, b in zip(self.cs, c)]
                self.logits = torch.cat([self.logits, logits.float()])

    def _breakers(self, config: SampleConfig):
        return self.lm.breakers(config.dry_sequence_breakers) if config.dry_multiplier > 0 else None

    def _sample(self) -> torch.Tensor:
        """One token per active job, each with its own settings and generator."""
        tokens = []
        for i, job in enumerate(self.active):
            token = next_tokens(self.logits[i:i + 1], job.config, job.generator, job.history)
            job.history.push(token)
            tokens.append(token)
            if job.cancelled:
                continue
            job.produced += 1
            info = self._logprobs(self.logits[i], int(token), job.logprobs) if job.logprobs is not None else None
            piece = job.stop.push(job.decoder.push(int(token)))
            if job.stop.done:
                job.finish_reason = "stop"
            elif job.produced >= job.config.max_new_tokens:
                job.finish_reason = "length"
                piece += job.stop.push(job.decoder.flush()) + job.stop.flush()
            job.emit(piece, job.finish_reason, info)
        return torch.cat(tokens)

    def _logprobs(self, logits: torch.Tensor, token: int, top: int) -> dict:
        """The chosen token's log-probability under the model, and the ``top`` likeliest tokens'."""
        log_probs = torch.log_softmax(logits.float(), dim=-1)
        texts = self.lm.token_texts()
        values, ids = torch.topk(log_probs, min(top, log_probs.numel()))
        return {"token": texts[token], "logprob": float(log_probs[token]),
                "top": {texts[i]: float(v) for v, i in zip(values.tolist(), ids.tolist())}}

    def _retire(self, keep: list[int]) -> None:
        index = torch.tensor(keep, dtype=torch.long)
        self.active = [self.active[i] for i in keep]
        if not keep:
            self.hs, self.cs, self.logits = [], [], None
            return
        self.hs = [h.index_select(0, index) for h in self.hs]
        self.cs = [c.index_select(0, index) for c in self.cs]
        self.logits = self.logits.index_select(0, index)
