"""`--precision auto`: choose by timing the model's own shapes on this machine.

CPU flags do not say what is fast. bf16 on a CPU with AVX512-BF16 but no AMX
ran the default preset's training at 0.63× fp32, and on a CPU with neither
PyTorch emulates it at about 1% of fp32; int8 weights win single-stream
generation on one CPU and lose 64-stream generation on the same one. So each
choice is a measurement:

1. every candidate runs the real work (a training forward and backward, or
   a generation step) at the model's own shapes, once to warm up; one that
   fails is ruled out;
2. the rest are timed in interleaved rounds, and the fastest time of each
   counts; one over ``_EMULATED`` times slower than fp32 in the first round
   (PyTorch emulates it here) is dropped without wasting more time;
3. fp32 stays unless another candidate is faster by more than ``_MARGIN``:
   reduced precision costs a little accuracy, so it must buy real speed;
4. the answer is cached per machine, PyTorch version and shape, in
   ``$LSTMGEN_CACHE_DIR`` (default ``~/.cache/lstmgen``). It is kept for
   good once a later run's timing agrees with it (or, after three runs that
   disagreed, by the majority): a shared machine has slow spells, and one
   timed during one picked fp32 at 8 streams where int8 steps twice as fast
   (2-core AMD Zen 4: fp32 0.84 ms, bf16 1.42, int8 1.51 in that run; 0.63-0.94,
   0.43-0.85 and 0.40-0.63 in seven others), so one timing never decides alone.

Timings run with the random number generators saved and restored, so a
seeded run is the same whether its choice was measured or read from the cache.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch

from . import __version__
from .machine import machine_key, sync

FP32 = "fp32"
_MARGIN = 0.05
"""A reduced precision must be this much faster than fp32 to be chosen."""
_EMULATED = 4.0
"""A first timing this many times fp32's: emulated, not timed further."""
_BUDGET_S = 0.25
"""Time the candidates for about this long (after their warm-up)."""
_MIN_ROUNDS = 2
_CACHE_FORMAT = 3
"""Raised whenever what is timed or recorded changes, so old timings are dropped."""
_MAX_ROUNDS = 200
_RUNS_TO_CONFIRM = 2
"""Timings, each in its own run, that must agree before a choice is kept for good."""
_MOST_RUNS = 3
"""After this many timings that did not agree, the majority is kept."""
_SETTLE_S = 0.005
"""Pause before each timed call. PyTorch's OpenMP threads spin for some
milliseconds after their work and take a core from whatever runs next:
onnxruntime's steps right after PyTorch's measured 1.5× their own speed."""

Call = Callable[[], object]


@dataclass(frozen=True)
class PrecisionChoice:
    """What runs, and why. Written to a run's config.json."""

    precision: str
    """'fp32', 'bf16' or 'int8': what the work runs in; for generation
    steps also 'onnx' (fp32, run by onnxruntime)."""
    how: str
    """'requested' (forced by the user), 'measured' (timed now), 'cached'
    (timed earlier on this machine), or, in the other processes of a DDP
    run, 'measured by the first process'."""
    ms: dict[str, float] = field(default_factory=dict)
    """Fastest time of one timed call per candidate, in milliseconds."""
    ruled_out: dict[str, str] = field(default_factory=dict)
    """Candidates that failed, or were dropped after one round as emulated, with the reason."""
    timed: str = ""
    """What one timed call does."""
    measure_s: float | None = None
    """Seconds the measurement took, warm-up included."""
    tokens: int = 0
    """Tokens one timed call processes (0: not a token count)."""

    @property
    def tokens_per_second(self) -> float | None:
        """The chosen precision's rate on the timed call."""
        ms = self.ms.get(self.precision)
        return self.tokens / (ms / 1000) if ms and self.tokens else None

    def describe(self, task: str) -> str:
        """One line for the log: ``task`` is e.g. 'training' or 'generation, 64 streams'."""
        if self.how == "requested":
            return f"{task} in {self.precision} (as requested)"
        parts = [f"{name} {ms:.2f} ms" for name, ms in self.ms.items()]
        parts += [f"{name} ruled out: {why}" for name, why in self.ruled_out.items()]
        when = "" if self.how == "measured" else " earlier on this machine"
        if len(self.ms) == 1:
            return f"{task} in {self.precision}, the only candidate left ({self.timed}{when}: {'; '.join(parts)})"
        return f"{task} in {self.precision}, the fastest measured{when} ({self.timed}: {'; '.join(parts)})"

    def to_dict(self) -> dict:
        return asdict(self)


def cache_dir() -> Path:
    if os.environ.get("LSTMGEN_CACHE_DIR"):
        return Path(os.environ["LSTMGEN_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "lstmgen"


def _cache_file(device: torch.device) -> Path:
    # One file per machine key: a PyTorch upgrade or another CPU starts afresh.
    return cache_dir() / f"precision-{machine_key(device)}.json"


def _read_cache(device: torch.device) -> dict:
    try:
        data = json.loads(_cache_file(device).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) and data.get("format") == _CACHE_FORMAT else {}


def _write_cache(device: torch.device, key: str, entry: dict) -> None:
    """Best effort: a read-only or full disk only means measuring again next time."""
    path = _cache_file(device)
    data = _read_cache(device) or {"format": _CACHE_FORMAT, "lstmgen": __version__}
    data[key] = entry
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass


def pick(ms: dict[str, float], margin: float = _MARGIN) -> str:
    """fp32, unless another candidate is faster than it by more than ``margin``."""
    fastest = min(ms, key=ms.get)
    if FP32 in ms and ms[fastest] * (1 + margin) >= ms[FP32]:
        return FP32
    return fastest


def time_calls(calls: dict[str, Call], device: torch.device,
               budget_s: float = _BUDGET_S) -> tuple[dict[str, float], dict[str, str]]:
    """The fastest time of each call in milliseconds, timed in interleaved
    rounds so that a change in the machine's speed hits every candidate alike.

    After the first round, a candidate over ``_EMULATED`` times slower than
    fp32 is dropped (PyTorch emulates it here; timing it further would only
    waste the user's time). Returns (times, {dropped: why})."""
    best = {name: float("inf") for name in calls}
    dropped: dict[str, str] = {}
    start = time.perf_counter()
    for rounds in range(1, _MAX_ROUNDS + 1):
        for name, call in calls.items():
            if name not in dropped:
                time.sleep(_SETTLE_S)
                best[name] = min(best[name], _seconds(call, device))
        if rounds == 1 and FP32 in best:
            for name, seconds in best.items():
                if seconds > _EMULATED * best[FP32]:
                    dropped[name] = f"{seconds / best[FP32]:.0f}× as slow as fp32"
        if rounds >= _MIN_ROUNDS and time.perf_counter() - start >= budget_s:
            break
    return {name: 1000 * s for name, s in best.items() if name not in dropped}, dropped


def _seconds(call: Call, device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    call()
    sync(device)
    return time.perf_counter() - start


def cannot(exc: Exception) -> str:
    """Why PyTorch failed, in one short line."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"PyTorch cannot run it here: {first.split('. ')[0][:120]}"


def _warm_up(candidates: dict[str, Callable[[], Call]]) -> tuple[dict[str, Call], dict[str, str]]:
    """Build each candidate's call and run it once (kernel selection, thread
    pools, caches). Returns the calls, and {candidate: why} for those that fail."""
    calls, failed = {}, {}
    for name, make in candidates.items():  # fp32 first
        try:
            call = make()
            call()
            calls[name] = call
        except RuntimeError as exc:  # e.g. oneDNN has no bf16 LSTM for this CPU
            if name == FP32:
                raise
            failed[name] = cannot(exc)
    return calls, failed


def choose(task: str, shape: dict, candidates: dict[str, Callable[[], Call]], device: torch.device,
           timed: str, tokens: int = 0, repeats: int = 1) -> PrecisionChoice:
    """Measure (or recall) which of ``candidates`` runs ``task`` fastest.

    ``candidates`` maps a precision to a factory of its timed call, fp32
    first. ``shape`` names everything the timing depends on besides the
    machine; with ``task`` it is the cache key. A call that does ``timed``
    ``repeats`` times over is recorded per repetition.
    """
    key = json.dumps([task, shape], sort_keys=True)
    earlier = _read_cache(device).get(key)
    earlier = earlier if isinstance(earlier, dict) else {}
    choices = earlier.get("choices") if isinstance(earlier.get("choices"), dict) else {}
    picks = [p for p in earlier.get("picks", []) if p in choices]
    if earlier.get("kept") and picks:
        try:
            return PrecisionChoice(**dict(choices[picks[-1]], how="cached"))
        except TypeError:  # an entry this version cannot read
            choices, picks = {}, []
    choice = _measure(candidates, device, timed, tokens, repeats)
    choices[choice.precision] = choice.to_dict()
    picks.append(choice.precision)
    kept = _kept(picks)
    if kept is not None and kept != choice.precision:  # the majority of this and earlier runs
        picks.append(kept)
        choice = PrecisionChoice(**dict(choices[kept], how="measured"))
    _write_cache(device, key, {"choices": choices, "picks": picks, "kept": kept is not None})
    return choice


def _kept(picks: list[str]) -> str | None:
    """The precision to keep for good, once the last timings agree (or the
    majority of ``_MOST_RUNS``, fp32 on a tie); None while undecided."""
    if len(picks) >= _RUNS_TO_CONFIRM and len(set(picks[-_RUNS_TO_CONFIRM:])) == 1:
        return picks[-1]
    if len(picks) >= _MOST_RUNS:
        counts = {p: picks.count(p) for p in picks}
        best = max(counts.values())
        return FP32 if counts.get(FP32) == best else next(p for p in reversed(picks) if counts[p] == best)
    return None


def _measure(candidates: dict[str, Callable[[], Call]], device: torch.device, timed: str, tokens: int,
             repeats: int) -> PrecisionChoice:
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        calls, ruled_out = _warm_up(candidates)
        # fp32 is timed even alone: its figure goes into the run's record.
        ms, slow = time_calls(calls, device)
        ms = {name: round(value / repeats, 4) for name, value in ms.items()}
        ruled_out.update(slow)
    return PrecisionChoice(pick(ms), "measured", ms, ruled_out, timed, round(time.perf_counter() - start, 3), tokens)
