"""A Batcher in a process of its own, behind the Batcher's interface.

With the scheduler in a thread of the server's process, the scheduler's
Python (sampling, penalties, decoding) and the event loop's (HTTP, JSON,
Server-Sent Events) take turns at one interpreter lock: on 2 cores under 64
streaming clients the server used 1.1 cores and left the rest idle. In a
process of its own the scheduler has a core, and the event loop the other.

The two processes speak over two pipes::

    server process                          scheduler process
    submit / cancel / stop  ── requests ──▶  a thread that feeds the Batcher
    deliver(events)         ◀── events ───   Batcher.run, one list per round

A message carries the events of the rounds of up to ``events_gap``
seconds (20 ms by default; at once for a stream's first text and its
end): (job id, piece, finish reason, logprobs, tokens produced), a
stream's plain pieces of the message joined into one. The scheduler
process loads the model from its run directory; it ignores SIGINT and
SIGTERM (the server drains, then stops it) and ends by itself when the
server's end of a pipe closes.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

from ..errors import LstmgenError
from ..precision import PrecisionChoice
from .config import SampleConfig


EVENTS_GAP = 0.02
"""Seconds a scheduler process's events wait by default for later rounds to
join their message (_Outbox): under the server's 50 ms chunks, the HTTP
loop woke about 210 times a second instead of 470."""


@dataclass(eq=False)  # one stream is equal to itself only
class RemoteJob:
    """The server's side of one stream: what a Job tells the server."""

    id: int
    emit: Callable[[str, str | None, dict | None], None]
    produced: int = 0
    finish_reason: str | None = None
    cancelled: bool = False
    owner: "BatcherProcess | None" = field(default=None, repr=False)
    """The scheduler process that steps it."""


class SchedulerGone(LstmgenError):
    """The scheduler process stopped; its streams have ended."""


@dataclass(eq=False)  # one process is equal to itself only
class BatcherProcess:
    """``submit``, ``cancel``, ``streams``, ``window``, ``precision_choice``,
    ``deliver`` and ``run`` as a Batcher has them, the Batcher itself in a
    child process started here (its start imports PyTorch and loads the
    model there: a few seconds)."""

    language_model: object
    precision: str = "fp32"
    max_streams: int = 64
    threads: int = 1
    deliver: Callable[[list], None] | None = None
    stable_rows: int | None = None
    """As Batcher's."""
    core: int | None = None
    """The CPU core the stepping thread keeps to (Batcher.run)."""
    read_beside: bool = True
    """Prompts are read in a thread beside the steps (Batcher.run)."""
    events_gap: float = EVENTS_GAP
    """Seconds a message of events waits for later rounds to join it (_Outbox)."""
    window: int = field(init=False, default=0)
    precision_choice: PrecisionChoice = field(init=False)

    def __post_init__(self):
        from .batcher import Batcher

        self.deliver = self.deliver or Batcher.emit_each
        context = multiprocessing.get_context("spawn")  # a fresh interpreter: no copy of this one's threads
        child_requests, self._requests = context.Pipe(duplex=False)  # (receiving end, sending end)
        self._incoming, child_events = context.Pipe(duplex=False)
        self.process = context.Process(
            target=_scheduler_main, daemon=True, name="lstmgen-scheduler",
            args=(str(self.language_model.path), self.precision, self.max_streams, self.stable_rows, self.threads,
                  self.core, self.read_beside, self.events_gap, child_requests, child_events))
        self.process.start()
        child_events.close()  # the child's ends: once it is gone, reading here meets the end of the pipe
        child_requests.close()
        ready = self._receive_ready()
        self.precision_choice = PrecisionChoice(**ready["precision"])
        self.window = ready["window"]
        self._jobs: dict[int, RemoteJob] = {}
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self.lost = False
        """The process stopped (or its pipe broke): it takes no more streams."""

    def _receive_ready(self) -> dict:
        try:
            kind, payload = self._incoming.recv()
        except EOFError:
            raise LstmgenError(f"the scheduler process for {self.language_model.path} ended before it started "
                               f"(exit code {self.process.exitcode}); see the lines above") from None
        if kind == "error":
            raise LstmgenError(payload)
        return payload

    @property
    def streams(self) -> int:
        """Streams submitted and not yet finished or cancelled."""
        with self._lock:
            return len(self._jobs)

    def submit(self, prompt_ids: list[int], config: SampleConfig, seed: int, emit, logprobs: int | None = None,
               near: RemoteJob | None = None):
        """As Batcher.submit; ``near`` is ignored (one process steps every stream)."""
        with self._lock:
            if self.lost:
                raise SchedulerGone(self._gone())
            job = RemoteJob(next(self._ids), emit, owner=self)
            try:
                self._requests.send(("submit", job.id, list(prompt_ids), config.to_dict(), seed, logprobs))
            except OSError:
                self.lost = True
                raise SchedulerGone(self._gone()) from None
            self._jobs[job.id] = job
        return job

    def _gone(self) -> str:
        return (f"the scheduler process for {self.language_model.path} stopped (exit code "
                f"{self.process.exitcode}); restart the server")

    def cancel(self, job: RemoteJob) -> None:
        with self._lock:
            if job.cancelled or job.finish_reason is not None:
                return
            job.cancelled = True
            # A cancelled stream sends no last event; forgotten here at once, or every client that
            # hung up would stay in memory with its queue (events still on their way are dropped).
            self._jobs.pop(job.id, None)
            try:
                self._requests.send(("cancel", job.id))
            except OSError:  # the process is gone, and the stream with it
                self.lost = True

    def run(self, stopping: threading.Event) -> None:
        """Hand each round's events to ``deliver`` until ``stopping`` is set;
        then stop the scheduler process."""
        try:
            while not stopping.is_set():
                if not self._incoming.poll(0.1):
                    continue
                try:
                    round_ = self._incoming.recv()
                except EOFError:
                    self._lost()
                    return
                self.deliver(self._events_of(round_))
        finally:
            self._stop()

    def _events_of(self, round_: list) -> list:
        events = []
        with self._lock:
            for job_id, piece, reason, info, produced in round_:
                job = self._jobs.get(job_id)
                if job is None:
                    continue
                job.produced, job.finish_reason = produced, reason
                if reason is not None:
                    del self._jobs[job_id]
                events.append((job, piece, reason, info))
        return events

    def _lost(self) -> None:
        """The scheduler process died: its streams end where they stood, and the log says so."""
        print(f"lstmgen: the scheduler process for {self.language_model.path} stopped (exit code "
              f"{self.process.exitcode}); its running requests were ended", file=sys.stderr)
        with self._lock:
            self.lost = True
            jobs, self._jobs = list(self._jobs.values()), {}
            for job in jobs:
                job.finish_reason = "length"
        self.deliver([(job, "", "length", None) for job in jobs])

    def _stop(self) -> None:
        try:
            self._requests.send(("stop",))
        except OSError:  # already gone
            pass
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.kill()  # it ignores SIGTERM (the server drains on that)
            self.process.join(timeout=5)


def _scheduler_main(path: str, precision: str, max_streams: int, stable_rows: int | None, threads: int,
                    core: int | None, read_beside: bool, events_gap: float, requests, events) -> None:
    """The scheduler process: load the model, answer 'ready', then run the Batcher."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server drains on these, then sends 'stop'
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    import torch

    import lstmgen
    from .batcher import Batcher

    torch.set_num_threads(threads)
    try:
        batcher = Batcher(lstmgen.load(path), precision=precision, max_streams=max_streams, stable_rows=stable_rows)
    except LstmgenError as exc:
        events.send(("error", str(exc)))
        return
    jobs: dict[int, object] = {}  # by the server's id, for cancelling

    events.send(("ready", {"precision": batcher.precision_choice.to_dict(), "window": batcher.window}))
    outbox = _Outbox(events, events_gap)

    def deliver(round_: list) -> None:
        # Here a Job's ``emit`` holds the server's id of its stream.
        # A stream's first text and its end are waited for (the time to first text; a client's next
        # request); the rest may wait for company.
        urgent = False
        for job, piece, reason, _ in round_:
            if reason is not None or (piece and not job.spoke):
                urgent = True
            job.spoke = job.spoke or bool(piece)
        outbox.put([(job.emit, piece, reason, info, job.produced) for job, piece, reason, info in round_], urgent)

    batcher.deliver = deliver
    stopping = threading.Event()

    def take_requests() -> None:
        try:
            while True:
                message = requests.recv()
                if message[0] == "submit":
                    _, job_id, ids, config, seed, logprobs = message
                    jobs[job_id] = batcher.submit(ids, SampleConfig(**config), seed, job_id, logprobs)
                    if len(jobs) > 4 * max_streams:  # forget finished streams now and then
                        for key in [k for k, job in jobs.items() if job.finish_reason or job.cancelled]:
                            del jobs[key]
                elif message[0] == "cancel" and message[1] in jobs:
                    batcher.cancel(jobs[message[1]])
                elif message[0] == "stop":
                    break
        except (EOFError, OSError):  # the server went away
            pass
        stopping.set()

    threading.Thread(target=take_requests, daemon=True, name="lstmgen-requests").start()
    try:
        batcher.run(stopping, core, read_beside)
    finally:
        outbox.close()


class _Outbox:
    """Each round's events, sent to the server by a thread of their own. The
    stepping thread only hands them over: pickling 64 streams' events and
    writing them to the pipe took about 7% of its time under load (a
    profile of benchmarks/serve.py), and it now happens while the steps'
    products run. A message waits up to ``gap`` seconds for more rounds to
    join it (each message costs a pickling and a wake-up here, and a
    wake-up, an unpickling and a hand-over to the event loop in the server),
    since the server sends streamed text only at its ticks anyway; events
    that someone waits for (a stream's first text, a stream's end, and the
    first events after a quiet spell) go at once."""

    def __init__(self, pipe, gap: float = EVENTS_GAP):
        self.pipe, self.gap = pipe, gap
        self.events: list = []
        self.closed = False
        self.urgent = False
        self.due = 0.0  # the monotonic time from which the next message may go
        self.idle = False  # the thread waits with nothing to send
        self.wake = threading.Condition()
        self.thread = threading.Thread(target=self._send, daemon=True, name="lstmgen-events")
        self.thread.start()

    def put(self, events: list, urgent: bool = False) -> None:
        with self.wake:
            self.events += events
            self.urgent = self.urgent or urgent
            # A wake-up costs a switch of threads: only for what must go now.
            if urgent or (self.idle and time.monotonic() >= self.due):
                self.wake.notify()

    def close(self) -> None:
        """Send what is left, then stop."""
        with self.wake:
            self.closed = True
            self.wake.notify()
        self.thread.join()

    def _send(self) -> None:
        while True:
            with self.wake:
                while not self.closed and not self.urgent:
                    wait = self.due - time.monotonic()
                    if self.events and wait <= 0:
                        break
                    # Idle (nothing to send) waits for a put; else until the message is due.
                    self.idle = not self.events
                    self.wake.wait(None if self.idle and wait <= 0 else wait)
                self.idle = False
                events, self.events, closed, self.urgent = self.events, [], self.closed, False
            if events:
                try:
                    self.pipe.send(_merged(events))
                except OSError:  # the server went away; the requests pipe tells the scheduler to stop
                    return
                self.due = time.monotonic() + self.gap
            if closed and not events:
                return


def _merged(events: list) -> list:
    """The events of several rounds with each stream's consecutive plain
    pieces (no logprobs) joined into one event: a message under 64 streams
    carries a few rounds, and each event costs a pickling here, and an
    unpickling, a queue's put and get in the server. A stream's events keep
    their order; an event with logprobs stays one token's."""
    out: list = []
    joining: dict[int, int] = {}  # a stream's id -> the index in ``out`` of its event that later pieces join
    for event in events:
        job_id, piece, reason, info, produced = event
        if info is not None:
            joining.pop(job_id, None)  # what follows must come after this token
        elif (at := joining.get(job_id)) is not None:
            out[at] = (job_id, out[at][1] + piece, reason, None, produced)
            continue
        else:
            joining[job_id] = len(out)
        out.append(event)
    return out


STREAMS_PER_PROCESS = 32
"""The fewest streams a scheduler process is given by default: on a 2-core
Zen 4 CPU, one thread, a bf16 step cost 36.5 µs a row at 32 rows, 32.7 at
64 and 43.4 at 16; fp32 62.3, 53.6 and 74.1 (benchmarks/step_rows.py)."""


def scheduler_processes(cores: int, threads: int, max_streams: int) -> int:
    """The scheduler processes a model gets by default: as many of
    ``threads`` threads as ``cores`` hold, each with at least
    STREAMS_PER_PROCESS streams. On 2 cores, one thread each, two processes
    served 17,081-22,411 characters/s in 60 s runs of benchmarks/serve.py
    where one served 16,229 and 19,895, and the scheduler alone stepped 28,048 tokens/s
    in two processes against 19,987-21,843 in one (BENCHMARKS.md, "Two
    scheduler processes"). With three cores or more the default threads
    (one fewer than the cores) leave room for one process, as before."""
    return max(1, min(cores // threads, max_streams // STREAMS_PER_PROCESS))


_pinned_cores: set[int] = set()
"""Cores already given to a stepping thread by a BatcherPool of this process
(a server of several models gives each pool other cores, or none)."""
_pinning = threading.Lock()


@dataclass(eq=False)
class BatcherPool:
    """Several scheduler processes for one model, behind the Batcher's
    interface: each steps its own share of the streams, on its own core,
    with no lock and no barrier between them, so a process that loses its
    core for a while delays only its own streams.

    On a 2-core CPU, one scheduler process steps on one core while the
    other answers HTTP; the steps then have the first core's time at most
    (under 64 streaming clients the stepping thread ran 0.83 of the time
    and the server used 1.41 cores). Two processes of 32 streams each use
    both cores, at about 12% more per row for the smaller batch
    (STREAMS_PER_PROCESS). Where each process has one thread and this
    server's pools have not taken the cores yet, each stepping thread keeps
    to a core of its own (unless LSTMGEN_NO_PIN is set): measured here, a
    step then cost 1.30-1.52 ms of CPU under load instead of 1.44-1.58.

    The first process settles the precision ('auto' is timed there, once);
    the others are started with its choice, so that a seeded stream gets
    the same text whichever process it lands in."""

    language_model: object
    precision: str = "fp32"
    max_streams: int = 64
    processes: int = 2
    threads: int = 1
    deliver: Callable[[list], None] | None = None
    events_gap: float = EVENTS_GAP
    """As BatcherProcess's."""
    window: int = field(init=False, default=0)
    precision_choice: PrecisionChoice = field(init=False)

    def __post_init__(self):
        from .batcher import Batcher

        if not 1 <= self.processes <= self.max_streams:
            raise LstmgenError(f"a model's scheduler processes must number from 1 to its --max-streams "
                               f"({self.max_streams}), got {self.processes}")
        self.deliver = self.deliver or Batcher.emit_each
        caps = [self.max_streams // self.processes + (i < self.max_streams % self.processes)
                for i in range(self.processes)]

        cores = self._cores()
        self._taken = cores or []
        # Prompts are read beside the steps where this pool's steps leave a core free (Batcher.run);
        # the event loop and other models' pools are not counted.
        usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        read_beside = self.processes * self.threads < usable

        def start(i: int, precision: str) -> BatcherProcess:
            return BatcherProcess(self.language_model, precision, caps[i], self.threads, stable_rows=caps[0],
                                  core=cores[i] if cores else None, read_beside=read_beside,
                                  events_gap=self.events_gap)
        first = start(0, self.precision)
        self.precision_choice = first.precision_choice
        self.window = first.window
        with ThreadPoolExecutor(max_workers=len(caps)) as starting:  # each start waits seconds for its child
            rest = [starting.submit(start, i, self.precision_choice.precision) for i in range(1, len(caps))]
        self.shards = [first] + [future.result() for future in rest if not future.exception()]
        failed = next((future.exception() for future in rest if future.exception()), None)
        if failed is not None:  # stop those that started: no one would stop them
            for shard in self.shards:
                shard._stop()
            self._release_cores()
            raise failed
        for shard in self.shards:
            shard.deliver = self._deliver_shard

    def _cores(self) -> list[int] | None:
        """A core of its own for each process's stepping thread, when these
        one-thread processes fit the cores this process may use that no
        other pool of it has taken; else None (no pinning)."""
        if os.environ.get("LSTMGEN_NO_PIN") or not hasattr(os, "sched_getaffinity") or self.threads != 1:
            return None
        with _pinning:
            free = sorted(os.sched_getaffinity(0) - _pinned_cores)
            if self.processes > len(free):
                return None
            _pinned_cores.update(free[:self.processes])
            return free[:self.processes]

    def _deliver_shard(self, events: list) -> None:
        self.deliver(events)  # looked up at each call: a server sets ``deliver`` after the pool starts

    @property
    def streams(self) -> int:
        return sum(shard.streams for shard in self.shards)

    def submit(self, prompt_ids: list[int], config: SampleConfig, seed: int, emit, logprobs: int | None = None,
               near: RemoteJob | None = None) -> RemoteJob:
        """As Batcher.submit, to the process with the fewest streams for its
        share; ``near`` (another stream of the same request) sends it to
        that stream's process while it has room, where one reading of the
        prompt serves both."""
        nearest = [near.owner] if near is not None and near.owner.streams < near.owner.max_streams else []
        for shard in nearest + sorted(self.shards, key=lambda s: s.streams / s.max_streams):
            if shard.lost:
                continue
            try:
                return shard.submit(prompt_ids, config, seed, emit, logprobs)
            except SchedulerGone:  # it has just stopped (now marked lost): the next one
                continue
        raise SchedulerGone(self.shards[0]._gone())

    def cancel(self, job: RemoteJob) -> None:
        job.owner.cancel(job)

    def run(self, stopping: threading.Event) -> None:
        """Each process's events are handed on from a thread of its own
        until ``stopping`` is set; then every process stops. A process that
        dies ends its own streams (BatcherProcess.run) and gets no more;
        the others go on."""
        threads = [threading.Thread(target=shard.run, args=(stopping,), daemon=True,
                                    name=f"{threading.current_thread().name}-{i}")
                   for i, shard in enumerate(self.shards)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self._release_cores()

    def _release_cores(self) -> None:
        with _pinning:
            _pinned_cores.difference_update(self._taken)
        self._taken = []
