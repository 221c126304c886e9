"""Continuous batching: independent requests step together, one batched
LSTM step per token, joining and leaving between steps. An LSTM stream's
whole state is a few kilobytes, so every active request fits one batch
whatever its length. Each stream keeps its own settings, penalty history,
random generator, decoder and stop strings. ``lstmgen serve`` runs one per
model.

A round (``Batcher.step``):

1. admit waiting jobs while there is room;
2. streams whose prompts are read join the batch. Under ``run`` a second
   thread may read prompts beside the steps (``read_beside``); otherwise
   ``step`` reads a slice of them itself (a long prompt over several
   rounds, so that it never stalls the streams already running);
3. sample one token for every active stream: the penalties and DRY, one
   vectorised call per group of streams with equal penalty settings (their
   histories are rows of one History), then the filters and the draw, one
   batched call per group of streams with equal filter settings, each row
   drawn at its own generator's next number;
4. hand every stream's new text to ``deliver`` at once;
5. retire finished and cancelled streams, and step the rest together.

The text of a seeded stream does not depend on what else runs: prompts are
read alone, and each step is padded to a batch size whose rows the matrix
kernels compute bit for bit as in any larger batch (steps.row_stable_batch).

A model trained on windows generates as ``lstmgen generate`` does (window.py):
each of its sliding streams owns W rows of the state, one per window in
progress, laid out one stream after another::

    rows:   | stream a: W windows | stream b: 1 (stateful) | stream c: W windows | padding |
    head:     a's oldest window     b's row                  c's oldest window

A round zeroes each sliding stream's freshest window, steps every row with
its stream's token, and takes the logits from each stream's oldest window
only (``head_rows``, padded like the rows). A sliding stream reads only the
last W tokens of its prompt, one W-row step per token, as WindowStream does.
"""

from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Callable

import torch

from .config import SampleConfig
from .processors import History, choose_tokens, penalty_key
from .steps import prompt_precision, read_prompt, row_stable_batch, step_precision, step_weights
from .stops import StopText
from .window import empty_windows, step_windows, window_slots

PROMPT_TOKENS_PER_ROUND = 512
"""Prompt tokens read per round, all prompts together: about 40 ms of
reading for the bundled model on a 2-core CPU, so a 100,000-character
prompt delays the running streams by that much per token, not by seconds.
A sliding stream's prompt token is one step of W rows, counted as W tokens."""


@dataclass
class Job:
    """One request's stream. ``emit(piece, finish_reason, logprobs)`` is
    called through ``Batcher.deliver``: finish_reason is None until the
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
    """The stream's penalty state from its prompt, until it joins the batch
    (then a row of the Batcher's History for its ``penalty_key``)."""
    generator: torch.Generator | None = field(default=None, repr=False)
    decoder: object = field(default=None, repr=False)
    stop: StopText | None = field(default=None, repr=False)
    window: int = 0
    """W for a stream that generates with sliding windows (it owns W rows of
    the state, one per window in progress); 0 for one stateful row."""
    position: int = 0
    """Tokens a sliding stream's windows have read: which row starts afresh next."""
    spoke: bool = False
    """Some of its text has been handed on (a scheduler process sends a stream's first text at once)."""
    _uniforms: list[float] = field(default_factory=list, repr=False)
    penalties: tuple = field(init=False, repr=False)
    """penalty_key(config): streams with equal keys share one History."""

    def __post_init__(self) -> None:
        self.penalties = penalty_key(self.config)

    def uniform(self) -> float:
        """The generator's next number in [0, 1). Drawn 64 at a time: the
        same numbers, in the same order, as drawing them one by one (as
        ``lstmgen generate`` does for one sample), at a twentieth of the cost."""
        if not self._uniforms:
            self._uniforms = torch.rand(64, generator=self.generator).tolist()[::-1]
        return self._uniforms.pop()

    @property
    def rows(self) -> int:
        """Rows of the batched state this stream owns."""
        return self.window or 1


@dataclass
class _Reading:
    """A prompt being read, for every job that sent exactly this prompt (n > 1)."""
    ids: list[int]  # the tokens to read: a sliding stream's last W only
    jobs: list[Job]
    window: int = 0  # W for sliding streams, read one W-row step per token
    done: int = 0
    state: tuple | None = None  # the LSTM's (h, c) after the first ``done`` tokens, per layer (rows, H)
    logits: torch.Tensor | None = None
    ready: bool = False  # read whole (or given up), its jobs' sampling state made


class Batcher:
    """One model's scheduler. ``submit`` from any thread; ``step`` (or
    ``run`` in a thread of its own) does one round. ``deliver(events)``
    receives each round's ``(job, piece, finish_reason, logprobs)`` in one
    call (a server hands them to its event loop at once); by default each
    job's ``emit`` is called in turn."""

    def __init__(self, language_model, precision: str = "fp32", max_streams: int = 64,
                 deliver: Callable[[list], None] | None = None, stable_rows: int | None = None):
        """``stable_rows``: the batch whose rows every step's must match bit
        for bit (default ``max_streams``); the processes of a BatcherPool
        all give the largest one's share, so they pad their steps alike."""
        self.lm = language_model
        self.model = language_model.model.eval()
        # 'auto' is decided once, at max_streams, and kept: a precision that
        # changed with the load would change a stream's text with it.
        self.precision_choice = step_precision(self.model, precision, max_streams)
        self.stepper = step_weights(self.model, self.precision_choice.precision)
        self.prompt_precision = prompt_precision(self.model, self.precision_choice.precision)
        # As LanguageModel.start: a window-trained model slides its windows unless a request asks for 'stateful'.
        self.window = language_model.unscored_tokens if language_model.framing == "windows" else 0
        self.end_id = language_model.tokenizer.end_id if language_model.items else None
        """An item model's end token, which finishes a stream with 'stop'."""
        self.max_streams = max_streams
        self.deliver = deliver or self.emit_each
        self.min_batch = row_stable_batch(self.stepper, self.model.config.vocab_size, stable_rows or max_streams)
        self.waiting: list[Job] = []
        self.reading: list[_Reading] = []
        self.active: list[Job] = []
        self.hs: list[torch.Tensor] = []
        self.cs: list[torch.Tensor] = []
        self.logits: torch.Tensor | None = None
        self.histories: dict[tuple, History] = {}
        """Every active stream's penalty state: one History per penalty_key,
        its rows those streams in the order of ``active``."""
        self._groups: list[tuple[SampleConfig, torch.Tensor | None]] | None = None
        self._history_rows: list[tuple[History, torch.Tensor | None]] | None = None
        self._reader: threading.Thread | None = None
        self.lock = threading.Condition()

    @staticmethod
    def emit_each(events: list) -> None:
        """Deliver a round's events by calling each job's ``emit``."""
        for job, piece, reason, info in events:
            job.emit(piece, reason, info)

    def submit(self, prompt_ids: list[int], config: SampleConfig, seed: int, emit, logprobs: int | None = None,
               near: Job | None = None) -> Job:
        """A stream of ``prompt_ids``, to be admitted at the next round.
        ``near`` (another stream of the same request) matters only to a
        BatcherPool, which keeps the two in one process."""
        window = self.window if config.window_generation != "stateful" else 0
        job = Job(list(prompt_ids), config, seed, emit, logprobs, window=window)
        with self.lock:
            self.waiting.append(job)
            self.lock.notify_all()
        return job

    def cancel(self, job: Job) -> None:
        """The job leaves at the next step (a client that went away)."""
        job.cancelled = True

    @property
    def streams(self) -> int:
        """Streams admitted or waiting, those cancelled (leaving at the next step) left out:
        what a server counts against its caps."""
        jobs = [*self.waiting, *(job for r in self.reading for job in r.jobs), *self.active]
        return sum(not job.cancelled for job in jobs)

    @torch.inference_mode()
    def step(self) -> bool:
        """One round; False when there is nothing to do until a request
        arrives or a prompt is read."""
        events: list = []
        self._admit(events)
        if self._reader is None:
            self._read_prompts(PROMPT_TOKENS_PER_ROUND)
        self._activate_read()
        if self.active:
            with self.stepper.between_steps():
                tokens = self._sample(events)
            keep = [i for i, job in enumerate(self.active) if job.finish_reason is None and not job.cancelled]
            if len(keep) < len(self.active):
                self._retire(keep)
                tokens = tokens[keep]
            if self.active:
                self._advance(tokens)
        if events:
            self.deliver(events)
        with self.lock:
            return bool(self.active or self.waiting or (self.reading and self._reader is None)
                        or any(r.ready for r in self.reading))

    def run(self, stopping: threading.Event, core: int | None = None, read_beside: bool = True) -> None:
        """Step until ``stopping`` is set. ``core``: the stepping thread
        stays on that CPU core (Linux).

        With ``read_beside``, prompts are read in a second thread beside the
        steps, where it likes: with a core to spare, a burst of new requests
        then neither stalls the running streams nor waits behind their
        steps (measured on 2 cores under 64 streams and one scheduler:
        prompt reading was a quarter of the stepping thread's time).
        Without it, each round reads a slice of them first, as a bare
        ``step`` does: when every core already steps streams, a reading
        thread only takes turns with a stepping one, and the switches cost
        more than they overlap (measured on 2 cores, two scheduler
        processes under benchmarks/serve.py: 6.8-11.6% more characters a
        second with prompts read in the stepping thread, in three pairs of
        30 s runs)."""
        if read_beside:
            self._reader = threading.Thread(target=self._read_loop, args=(stopping,), daemon=True,
                                            name=f"{threading.current_thread().name}-prompts")
            self._reader.start()
        if core is not None and hasattr(os, "sched_setaffinity"):
            try:
                os.sched_setaffinity(0, {core})  # 0: the calling thread, on Linux
            except OSError:  # the core is no longer ours: step wherever the system puts us
                pass
        while not stopping.is_set():
            if not self.step():
                with self.lock:
                    if not self.waiting and not any(r.ready for r in self.reading) and not stopping.is_set():
                        self.lock.wait(timeout=0.1)
        with self.lock:
            self.lock.notify_all()
        if self._reader is not None:
            self._reader.join()
            self._reader = None  # a later step or run reads prompts again

    def _admit(self, events: list) -> None:
        with self.lock:
            room = self.max_streams - len(self.active) - sum(len(r.jobs) for r in self.reading)
            new, self.waiting = self.waiting[:max(room, 0)], self.waiting[max(room, 0):]
            fresh: dict[tuple, _Reading] = {}
            for job in new:
                if job.cancelled:
                    continue
                if job.config.max_new_tokens == 0:
                    job.finish_reason = "length"
                    events.append((job, "", "length", None))
                    continue
                key = (job.window, tuple(job.prompt_ids))  # the n streams of one request share one reading
                if key in fresh:
                    fresh[key].jobs.append(job)
                else:
                    ids = job.prompt_ids[-job.window:] if job.window else job.prompt_ids
                    fresh[key] = _Reading(ids, [job], job.window)
                    self.reading.append(fresh[key])
            if fresh:
                self.lock.notify_all()

    def _read_loop(self, stopping: threading.Event) -> None:
        with torch.inference_mode():
            while not stopping.is_set():
                with self.lock:
                    todo = next((r for r in self.reading if not r.ready), None)
                    if todo is None:
                        self.lock.wait(timeout=0.1)
                        continue
                self._read(todo, math.inf)  # the whole prompt
                with self.lock:
                    self.lock.notify_all()

    def _read_prompts(self, budget: int) -> None:
        """Read up to about ``budget`` prompt tokens, oldest prompts first,
        so that a long prompt delays the running streams by a slice per round."""
        for reading in list(self.reading):
            if budget <= 0:
                break
            budget -= self._read(reading, budget)

    def _read(self, reading: _Reading, budget: float) -> int:
        """Read ``reading``'s prompt on from where it stands, while ``budget``
        tokens last; once it is whole, make its jobs' sampling state. Each
        prompt is read alone, in slices at fixed offsets, so its state never
        depends on what else arrived or on the load. Returns the tokens read
        (a sliding reading's each counted as its W rows)."""
        count = 0
        while reading.done < len(reading.ids) and count < budget:
            if all(job.cancelled for job in reading.jobs):
                reading.ready = True  # nobody is waiting for it
                return count
            if reading.window:
                self._read_windows(reading)
                count += reading.window
                continue
            end = min(reading.done + PROMPT_TOKENS_PER_ROUND, len(reading.ids))
            ids = torch.tensor([reading.ids[reading.done:end]], dtype=torch.long)
            reading.logits, reading.state = read_prompt(self.model, ids, reading.state, self.prompt_precision)
            count += end - reading.done
            reading.done = end
        if reading.done == len(reading.ids) and not reading.ready:
            for job in reading.jobs:
                self._prepare(job, reading.logits.size(-1))
            reading.ready = True
        return count

    def _read_windows(self, reading: _Reading) -> None:
        """A sliding reading's next token into all its W windows: the steps
        WindowStream takes on its prompt, so the state is generate's own."""
        if reading.state is None:
            reading.state = empty_windows(self.model, reading.window)
        token = torch.tensor([reading.ids[reading.done]], dtype=torch.long)
        hs, cs = reading.state
        reading.logits, hs, cs = step_windows(self.stepper, hs, cs, token, reading.done, reading.window)
        reading.state = (hs, cs)
        reading.done += 1

    def _prepare(self, job: Job, vocab_size: int) -> None:
        # Laid out as the History it will join, whose rows are the batch's streams.
        job.history = History(job.config, vocab_size, 1, job.prompt_ids, self._breakers(job.config),
                              layout_for=self.max_streams)
        job.generator = torch.Generator().manual_seed(job.seed)
        job.decoder = self.lm.tokenizer.stream_decoder()
        job.stop = StopText(job.config)

    def _activate_read(self) -> None:
        """Every stream whose prompt is read joins the batch: one more row per layer (W for a sliding one)."""
        with self.lock:
            ready = [r for r in self.reading if r.ready]
            if not ready:
                return
            self.reading = [r for r in self.reading if not r.ready]
        for reading in ready:
            h, c = reading.state if reading.state is not None else (None, None)
            for job in reading.jobs:
                if job.cancelled or h is None:
                    continue
                job.position = reading.done
                self.active.append(job)
                self._join_history(job)
                self._batch_changed()
                if self.logits is None:
                    self.hs, self.cs, self.logits = list(h), list(c), reading.logits  # L × (1, H)
                else:
                    self.hs = [torch.cat([a, b]) for a, b in zip(self.hs, h)]
                    self.cs = [torch.cat([a, b]) for a, b in zip(self.cs, c)]
                    self.logits = torch.cat([self.logits, reading.logits])

    def _join_history(self, job: Job) -> None:
        """The job's penalty state becomes the last row of its key's History."""
        group = self.histories.get(job.penalties)
        self.histories[job.penalties] = job.history if group is None else group.join(job.history)
        job.history = None

    def _batch_changed(self) -> None:
        """A stream joined or left: the groups of rows are made afresh at the next round."""
        self._groups = None
        self._history_rows = None

    def _breakers(self, config: SampleConfig):
        return self.lm.breakers(config.dry_sequence_breakers) if config.dry_multiplier > 0 else None

    def _sample(self, events: list) -> torch.Tensor:
        """One token per active job, each with its own settings and generator."""
        logits = self._penalized()
        tokens = torch.empty(len(self.active), dtype=torch.long)
        for config, rows in self._filter_groups():
            jobs = self.active if rows is None else [self.active[i] for i in rows.tolist()]
            uniforms = torch.tensor([[job.uniform()] for job in jobs]) if config.temperature != 0 else None
            chosen = choose_tokens(logits if rows is None else logits.index_select(0, rows), config, uniforms)
            if rows is None:
                tokens = chosen
            else:
                tokens[rows] = chosen
        for history, rows in self._penalty_groups():
            history.push(tokens if rows is None else tokens[rows])
        for i, (job, token) in enumerate(zip(self.active, tokens.tolist())):
            if not job.cancelled:
                events.append(self._emitted(job, i, token))
        return tokens

    def _penalized(self) -> torch.Tensor:
        """The logits after each stream's own penalties and DRY, one call per
        History (row by row the same as a call per stream). Most steps change
        no row, and then the model's logits are used as they are."""
        out = self.logits
        for history, rows in self._penalty_groups():
            part = self.logits if rows is None else self.logits.index_select(0, rows)
            changed = history.penalize(part)
            if changed is part:
                continue
            if rows is None:
                out = changed
            else:
                if out is self.logits:
                    out = self.logits.clone()  # the model's own stay for logprobs
                out[rows] = changed
        return out

    def _penalty_groups(self) -> list[tuple[History, torch.Tensor | None]]:
        """Each History that penalises something, with the active rows it
        holds (None: every row). Kept until a stream joins or leaves."""
        if self._history_rows is None:
            rows: dict[tuple, list[int]] = {}
            for i, job in enumerate(self.active):
                rows.setdefault(job.penalties, []).append(i)
            self._history_rows = [
                (self.histories[key], None if len(held) == len(self.active) else torch.tensor(held))
                for key, held in rows.items() if self.histories[key].active]
        return self._history_rows

    def _filter_groups(self) -> list[tuple[SampleConfig, torch.Tensor | None]]:
        """Active rows grouped by the settings that shape the distribution
        (temperature, top-k, typical-p, top-p, min-p), one batched call per
        group; rows None when one group holds every row. Kept until a
        stream joins or leaves."""
        if self._groups is None:
            by_key: dict[tuple, list[int]] = {}
            for i, job in enumerate(self.active):
                c = job.config
                by_key.setdefault((c.temperature, c.top_k, c.typical_p, c.top_p, c.min_p), []).append(i)
            if len(by_key) == 1:
                self._groups = [(self.active[0].config, None)]
            else:
                self._groups = [(self.active[rows[0]].config, torch.tensor(rows)) for rows in by_key.values()]
        return self._groups

    def _emitted(self, job: Job, row: int, token: int) -> tuple:
        """The job's (job, piece, finish_reason, logprobs) for this token."""
        job.produced += 1
        info = self._logprobs(self.logits[row], token, job.logprobs) if job.logprobs is not None else None
        if token == self.end_id:  # an item model's item is complete: 'stop', as at a stop string
            piece = job.stop.push(job.decoder.flush()) + job.stop.flush()
            job.stop.done = True
        else:
            piece = job.stop.push(job.decoder.push(token))
        if job.stop.done:
            job.finish_reason = "stop"
        elif job.produced >= job.config.max_new_tokens:
            job.finish_reason = "length"
            piece += job.stop.push(job.decoder.flush()) + job.stop.flush()
        return job, piece, job.finish_reason, info

    def _logprobs(self, logits: torch.Tensor, token: int, top: int) -> dict:
        """The chosen token's log-probability under the model, and the ``top`` likeliest tokens'."""
        log_probs = torch.log_softmax(logits.float(), dim=-1)
        texts = self.lm.token_texts()
        values, ids = torch.topk(log_probs, min(top, log_probs.numel()))
        return {"token": texts[token], "logprob": float(log_probs[token]),
                "top": {texts[i]: float(v) for v, i in zip(values.tolist(), ids.tolist())}}

    def _advance(self, tokens: torch.Tensor) -> None:
        """One batched step of every active stream's rows, padded with zero
        rows up to ``min_batch`` so that each row's sums never depend on the
        load. The head rows of sliding streams are padded likewise: the
        head is a matrix product too."""
        streams = len(self.active)
        tokens, heads = self._window_rows(tokens)
        n = tokens.size(0)
        pad = self.min_batch - n
        hs, cs = self.hs, self.cs
        if pad > 0:
            tokens = torch.cat([tokens, tokens.new_zeros(pad)])
            hs = [torch.cat([h, h.new_zeros(pad, h.size(1))]) for h in hs]
            cs = [torch.cat([c, c.new_zeros(pad, c.size(1))]) for c in cs]
        if heads is not None and heads.numel() < self.min_batch:
            heads = torch.cat([heads, heads.new_zeros(self.min_batch - heads.numel())])
        logits, hs, cs = self.stepper.step(tokens, hs, cs, head_rows=heads)
        if pad > 0:
            hs, cs = [h[:n] for h in hs], [c[:n] for c in cs]
        self.logits, self.hs, self.cs = logits[:streams], hs, cs

    def _window_rows(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The tokens (R,) for the R rows, and the row (streams,) each stream's
        logits come from; None when every stream is stateful (one row each).
        Each sliding stream's freshest window is emptied, to start at this
        token, and its logits come from its oldest, which has then read the
        last W tokens (window.step_windows for one stream); its position
        moves on by the token."""
        if not any(job.window for job in self.active):
            return tokens, None
        fresh, heads, start = [], [], 0
        for job in self.active:
            if job.window:
                slot, oldest = window_slots(job.position, job.window)
                fresh.append(start + slot)
                heads.append(start + oldest)
                job.position += 1
            else:
                heads.append(start)
            start += job.rows
        fresh_rows = torch.tensor(fresh)
        for state in self.hs + self.cs:
            state.index_fill_(0, fresh_rows, 0.0)
        counts = torch.tensor([job.rows for job in self.active])
        return tokens.repeat_interleave(counts), torch.tensor(heads)

    def _retire(self, keep: list[int]) -> None:
        starts = list(accumulate((job.rows for job in self.active), initial=0))
        self._keep_histories(keep)
        self.active = [self.active[i] for i in keep]
        self._batch_changed()
        if not keep:
            self.hs, self.cs, self.logits = [], [], None
            return
        rows = torch.cat([torch.arange(starts[i], starts[i + 1]) for i in keep])  # each kept stream's rows
        self.hs = [h.index_select(0, rows) for h in self.hs]
        self.cs = [c.index_select(0, rows) for c in self.cs]
        self.logits = self.logits.index_select(0, torch.tensor(keep, dtype=torch.long))

    def _keep_histories(self, keep: list[int]) -> None:
        """Each History keeps the rows of the kept active streams; one left empty goes."""
        kept = set(keep)
        seen: dict[tuple, int] = {}
        rows: dict[tuple, list[int]] = {}
        for i, job in enumerate(self.active):
            row = seen[job.penalties] = seen.get(job.penalties, -1) + 1  # the job's row in its History
            if i in kept:
                rows.setdefault(job.penalties, []).append(row)
        self.histories = {key: self.histories[key].keep(held) for key, held in rows.items()}
