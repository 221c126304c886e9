"""``lstmgen serve``: OpenAI's legacy completions API over continuous
batching. A door like the CLI: requests become SampleConfig through the
same field list as the flags (lstmgen.config_fields), so every sampling
option is a request field under its own name (OpenAI's max_tokens and n
map to max_new_tokens and separate seeded streams)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hmac
import json
import math
import re
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, create_model

import lstmgen
from lstmgen import LstmgenError, SampleConfig

# OpenAI's names for SampleConfig fields; every other field keeps its own name.
OPENAI_NAMES = {"max_tokens": "max_new_tokens", "n": "num_samples"}
# The server's step precision is fixed (text must not depend on load). window_generation is a
# request's own: a window-trained model's Batcher steps sliding and stateful streams side by side.
NOT_FROM_REQUESTS = ("precision",)
MAX_TOKENS_DEFAULT = 16  # OpenAI's
MAX_STREAM_INTERVAL = 5.0  # seconds between streamed chunks, at most
WEB = Path(__file__).parent / "web"  # the page at /: static files, no CDN, works offline


class OpenAIError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.kind = status, message, param, kind


def _request_model() -> type[BaseModel]:
    """The completions request: OpenAI's fields, then SampleConfig's own."""
    fields: dict[str, Any] = {
        "model": (str | None, None),
        "prompt": (str | list[str], ""),
        "max_tokens": (int | None, MAX_TOKENS_DEFAULT),
        "n": (int, 1),
        "stream": (bool, False),
        "echo": (bool, False),
        "logprobs": (int | None, None),
        "stop": (str | list[str] | None, None),
        "user": (str | None, None),
    }
    for f in lstmgen.config_fields(SampleConfig):
        if f.name in fields or f.name in OPENAI_NAMES.values() or f.name in NOT_FROM_REQUESTS or f.name == "stop":
            continue
        kind = f.kind if not f.repeatable else list[f.kind]
        fields[f.name] = (kind | None, Field(default=None, description=f.help))
    return create_model("CompletionRequest", __config__=ConfigDict(extra="forbid"), **fields)


CompletionRequest = _request_model()


def request_fields() -> dict[str, dict]:
    """SampleConfig's fields under their request names, with default and help."""
    out = {}
    for f in lstmgen.config_fields(SampleConfig):
        if f.name in NOT_FROM_REQUESTS or f.name == "num_samples":
            continue
        name = next((k for k, v in OPENAI_NAMES.items() if v == f.name), f.name)
        default = list(f.default) if isinstance(f.default, tuple) else f.default
        if name == "max_tokens":
            default = MAX_TOKENS_DEFAULT
        out[name] = {"default": default, "help": f.help}
    return out


def _plain_changes() -> dict[str, Any]:
    """The fields that SampleConfig.plain() sets apart from the defaults."""
    default, plain = dataclasses.asdict(SampleConfig()), dataclasses.asdict(SampleConfig.plain())
    return {k: v for k, v in plain.items() if default[k] != v}


def sample_config(body: BaseModel, max_tokens_cap: int) -> SampleConfig:
    values = {}
    for f in lstmgen.config_fields(SampleConfig):
        if f.name in NOT_FROM_REQUESTS or f.name in OPENAI_NAMES.values():
            continue
        value = getattr(body, f.name, None)
        if value is not None:
            values[f.name] = tuple(value) if f.repeatable and not isinstance(value, str) else value
    max_tokens = body.max_tokens if body.max_tokens is not None else MAX_TOKENS_DEFAULT
    if max_tokens > max_tokens_cap:
        raise OpenAIError(400, f"max_tokens is at most {max_tokens_cap} on this server, got {max_tokens}", "max_tokens")
    try:
        return SampleConfig(**values, max_new_tokens=max_tokens, num_samples=1, precision="fp32")
    except LstmgenError as exc:
        raise OpenAIError(400, _field_names(str(exc))) from None


def _field_names(message: str) -> str:
    """A flag in a SampleConfig message ('--top-p') named as the request field ('top_p')."""
    message = re.sub(r"--([a-z][a-z-]*)", lambda m: m.group(1).replace("-", "_"), message)
    return message.replace("max_new_tokens", "max_tokens")


class ModelSlot:
    def __init__(self, name: str, model, max_streams: int, precision: str = "fp32", scheduler: str = "thread",
                 threads: int = 1, processes: int = 1, events_gap: float | None = None):
        self.name, self.model = name, model
        events_gap = lstmgen.BatcherProcess.events_gap if events_gap is None else events_gap
        if scheduler == "process" and processes > 1:
            self.batcher = lstmgen.BatcherPool(model, precision=precision, max_streams=max_streams,
                                               processes=processes, threads=threads, events_gap=events_gap)
        elif scheduler == "process":
            self.batcher = lstmgen.BatcherProcess(model, precision=precision, max_streams=max_streams,
                                                  threads=threads, events_gap=events_gap)
        else:
            self.batcher = lstmgen.Batcher(model, precision=precision, max_streams=max_streams)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.batcher.run, args=(self.stopping,), daemon=True,
                                       name=f"lstmgen-batcher-{name}")

    def describe(self) -> dict:
        """The model's entry in /v1/models. ``window_generation`` says how it
        generates by default: 'sliding' (each token from the last
        ``window_tokens`` read afresh, as trained) or 'stateful'."""
        m = self.model
        window = self.batcher.window
        return {"id": self.name, "object": "model", "created": 0, "owned_by": "lstmgen",
                "level": m.tokenizer.level, "vocab_size": m.tokenizer.vocab_size,
                "parameters": m.model.num_parameters(),
                "held_out_loss_nats": (m.checkpoint.meta.get("progress") or {}).get("val_loss_nats"),
                "framing": m.framing, "window_generation": "sliding" if window else "stateful",
                "window_tokens": window or None, "step_precision": self.batcher.precision_choice.precision}


def _schedulers_running(slots: dict[str, ModelSlot]):
    """The app's lifespan: every model's scheduler runs while the server does."""
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        loop = asyncio.get_running_loop()
        for slot in slots.values():
            # A round's pieces reach the event loop in one call, not one wake-up per stream.
            slot.batcher.deliver = lambda events: loop.call_soon_threadsafe(lstmgen.Batcher.emit_each, events)
            slot.thread.start()
        yield
        for slot in slots.values():
            slot.stopping.set()
    return lifespan


def create_app(models: dict[str, Any], max_streams: int = 64, max_tokens_cap: int = 4096,
               max_prompt_chars: int = 100_000, max_queue: int = 256, max_body_bytes: int = 1 << 20,
               max_seconds: float = 300.0, stream_interval: float = 0.05, api_key: str | None = None,
               precision: str = "fp32", scheduler: str = "thread", threads: int = 1, processes: int = 1) -> FastAPI:
    """Streams beyond ``max_streams`` a model wait, up to ``max_queue`` more;
    past that a request gets 429 with Retry-After. A request runs at most
    ``max_seconds``, then ends with finish_reason 'length'. A streamed
    choice sends its first text at once, then a chunk with all the text
    since at each tick of ``stream_interval`` seconds, every stream's at
    the same tick (_Ticker). With ``api_key``,
    every /v1 request needs ``Authorization: Bearer API_KEY`` (401 without).
    ``precision`` is every model's step precision, fixed while the server
    runs ('auto': the fastest for one scheduler's streams, timed once at start).
    ``scheduler``: 'thread' steps each model in a thread of this process;
    'process' in ``processes`` processes of its own (batcher_process.py),
    which share its ``max_streams`` between them, each on ``threads``
    PyTorch threads and loading the model again from its run directory
    (started as multiprocessing's 'spawn' starts it, so a script that asks
    for it needs an ``if __name__ == "__main__":`` guard)."""
    _check_schedulers(scheduler, processes, max_streams)
    _check_stream_interval(stream_interval)
    # A scheduler process's events need not come more often than the chunks go out.
    slots = {name: ModelSlot(name, m, max_streams, precision, scheduler, threads, processes,
                             events_gap=min(lstmgen.BatcherProcess.events_gap, stream_interval))
             for name, m in models.items()}
    default_name = next(iter(slots))
    app = FastAPI(title="lstmgen", docs_url=None, redoc_url=None, lifespan=_schedulers_running(slots))
    app.state.slots = slots
    _add_ticks_and_drain(app, stream_interval)
    _answer_errors_as_openai(app, max_body_bytes)
    if api_key:
        app.add_middleware(_BearerKey, key=api_key)

    _add_reading_routes(app, slots, max_tokens_cap, bool(api_key))

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request):
        slot = slots.get(body.model or default_name)
        if slot is None:
            raise OpenAIError(404, f"no model {body.model!r} here; GET /v1/models lists them", "model",
                              "model_not_found")
        prompt, config = _check_request(body, max_prompt_chars, max_tokens_cap)
        busy = slot.batcher.streams
        if busy + body.n > max_streams + max_queue:
            return _error(429, f"the server is busy ({busy} streams running or waiting); retry in a second", None,
                          "rate_limit_error", headers={"Retry-After": "1"})
        prepared = slot.model.prepare_text(prompt or ("" if slot.model.items else "\n"))
        ids = slot.model.prompt_ids(prepared.text)
        if not ids:
            raise OpenAIError(400, "the prompt is empty after removing characters the model does not know", "prompt")
        try:
            queues, jobs = _submit(slot, ids, config, body.n, body.logprobs)
        except LstmgenError as exc:  # the model's scheduler process stopped
            raise OpenAIError(503, str(exc), None, "server_error") from None
        head = {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()),
                "model": slot.name}
        echo = prepared.text if body.echo else ""
        deadline = time.monotonic() + max_seconds
        if body.stream:
            return StreamingResponse(_events(head, queues, jobs, slot, request, echo, deadline, app.state.ticker),
                                     media_type="text/event-stream")
        choices = []
        for i, queue in enumerate(queues):
            choice = await _choice(queue, request, deadline, echo, body.logprobs is not None)
            if choice is None:  # the client left
                for job in jobs:
                    slot.batcher.cancel(job)
                return JSONResponse(status_code=499, content={})
            choices.append(dict(choice, index=i))
        for job in jobs:  # past the deadline: leave the batch now
            if job.finish_reason is None:
                slot.batcher.cancel(job)
        completion_tokens = sum(job.produced for job in jobs)
        return dict(head, choices=choices, usage={"prompt_tokens": len(ids), "completion_tokens": completion_tokens,
                                                  "total_tokens": len(ids) + completion_tokens})

    return app


def _check_stream_interval(stream_interval: float) -> None:
    if not 0 <= stream_interval <= MAX_STREAM_INTERVAL:  # NaN too
        raise LstmgenError(f"stream_interval must be from 0 to {MAX_STREAM_INTERVAL:g} seconds, got {stream_interval}")


def _add_ticks_and_drain(app: FastAPI, stream_interval: float) -> None:
    """The app's ticker (_Ticker) and ``begin_drain``. On SIGTERM the server
    stops taking connections and calls begin_drain: running requests end
    with finish_reason 'length' once the drain time is up, cleanly, instead
    of being cut off."""
    app.state.drain_deadline = math.inf
    app.state.ticker = _Ticker(stream_interval)

    def begin_drain(seconds: float) -> None:  # called in a signal handler
        app.state.drain_deadline = time.monotonic() + seconds
        app.state.ticker.wake_all()  # streams waiting for a tick look at the new deadline now
    app.state.begin_drain = begin_drain


def _check_schedulers(scheduler: str, processes: int, max_streams: int) -> None:
    if scheduler not in ("thread", "process"):
        raise LstmgenError(f"scheduler must be 'thread' or 'process', got {scheduler!r}")
    if not 1 <= processes <= max_streams or (processes > 1 and scheduler != "process"):
        raise LstmgenError(f"--processes must be from 1 to --max-streams ({max_streams}), and more than 1 only "
                           f"with --scheduler process; got {processes}")


def _add_reading_routes(app: FastAPI, slots: dict[str, ModelSlot], max_tokens_cap: int, key_required: bool) -> None:
    """/health, /settings, the page and /v1/models: everything that only reads."""
    @app.get("/health")
    async def health():
        return {"status": "ok", "models": list(slots), "api_key_required": key_required}

    @app.get("/settings")
    async def settings():
        """Every sampling field a request may set, with its default and help (the page's sliders
        read them), what 'plain' changes, and this server's cap on max_tokens."""
        return {"fields": request_fields(), "plain": _plain_changes(), "max_tokens_cap": max_tokens_cap}

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(WEB / "index.html")

    app.mount("/web", StaticFiles(directory=WEB), name="web")

    @app.get("/v1/models")
    async def list_models():
        return {"object": "list", "data": [s.describe() for s in slots.values()]}


def _check_request(body: BaseModel, max_prompt_chars: int, max_tokens_cap: int) -> tuple[str, SampleConfig]:
    """The prompt as one string and the SampleConfig, or a 400 naming the field."""
    if body.n < 1 or body.n > 16:
        raise OpenAIError(400, f"n must be between 1 and 16, got {body.n}", "n")
    if body.logprobs is not None and not 0 <= body.logprobs <= 5:
        raise OpenAIError(400, f"logprobs must be between 0 and 5, got {body.logprobs}", "logprobs")
    prompt = body.prompt if isinstance(body.prompt, str) else "".join(body.prompt)
    if len(prompt) > max_prompt_chars:
        raise OpenAIError(400, f"the prompt has {len(prompt):,} characters; at most {max_prompt_chars:,}", "prompt")
    return prompt, sample_config(body, max_tokens_cap)


def _submit(slot: ModelSlot, ids: list[int], config: SampleConfig, n: int, logprobs: int | None):
    """``n`` streams of one prompt, seeds seed … seed + n - 1, each feeding its own asyncio queue
    from the scheduler's thread."""
    seed = config.seed if config.seed is not None else lstmgen.fresh_seed()
    queues, jobs = [], []
    try:
        for i in range(n):
            queue = _Pieces()
            # queue.put_piece is called in the event loop (_schedulers_running's deliver).
            jobs.append(slot.batcher.submit(ids, config, seed + i, queue.put_piece, logprobs,
                                            near=jobs[0] if jobs else None))
            queues.append(queue)
    except Exception:
        for job in jobs:  # no one will read them
            slot.batcher.cancel(job)
        raise
    return queues, jobs


async def _choice(queue: asyncio.Queue, request: Request, deadline: float, echo: str, with_logprobs: bool):
    """One whole choice of a plain (not streamed) completion; None when the client left.
    Past the deadline the text so far ends with finish_reason 'length'."""
    pieces, infos, reason = [echo], [], None
    while reason is None:
        got = await _next(queue, request, deadline)
        if got is LEFT:
            return None
        if got is TIME_UP:
            reason = "length"
            break
        piece, reason, info = got
        pieces.append(piece)
        if info is not None:
            infos.append(info)
    logprobs = _legacy_logprobs(infos, len(echo)) if with_logprobs else None
    return {"text": "".join(pieces), "logprobs": logprobs, "finish_reason": reason}


LEFT, TIME_UP = object(), object()


async def _next(queue: asyncio.Queue, request: Request, deadline: float):
    """The next (piece, reason, info); TIME_UP once the request's deadline or the server's
    drain deadline passed (checked first: a draining server's connections read as closed);
    LEFT once the client went away."""
    while True:
        end = min(deadline, request.app.state.drain_deadline)
        if time.monotonic() >= end:  # before reading: a stream that never pauses must still stop
            return TIME_UP
        if not queue.empty():  # the usual case while streaming: no timer and no task to make
            return queue.get_nowait()
        try:
            return await asyncio.wait_for(queue.get(), timeout=min(0.1, max(end - time.monotonic(), 0.01)))
        except asyncio.TimeoutError:
            if await request.is_disconnected():
                return LEFT


def _answer_errors_as_openai(app: FastAPI, max_body_bytes: int) -> None:
    """Every refusal in OpenAI's error format with a 4xx status, the body cap included."""
    @app.exception_handler(OpenAIError)
    async def openai_error(request: Request, exc: OpenAIError):
        return _error(exc.status, exc.message, exc.param, exc.kind)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        first = exc.errors()[0]
        if first.get("type") == "json_invalid":
            return _error(400, "the request body is not valid JSON; send a JSON object", None)
        where = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
        return _error(400, f"{where}: {first.get('msg')}" if where else str(first.get("msg")), where)

    app.add_middleware(_BodyCap, max_bytes=max_body_bytes)


class _BearerKey:
    """401 in OpenAI's format for a /v1 request without ``Authorization:
    Bearer KEY``; /health and the web page stay open (the page sends the
    key the user types). Plain ASGI, like _BodyCap."""

    def __init__(self, app, key: str):
        self.app, self.expected = app, f"Bearer {key}".encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"].startswith("/v1"):
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                what = "a wrong API key" if given else "no API key"
                response = _error(401, f"this server needs an API key and got {what}; send "
                                  "'Authorization: Bearer KEY' (the openai client's api_key)", None,
                                  headers={"WWW-Authenticate": "Bearer"}, code="invalid_api_key")
                return await response(scope, receive, send)
        return await self.app(scope, receive, send)


class _BodyCap:
    """413 for a request body over ``max_bytes``, by its Content-Length or,
    for a chunked body, by reading it first (then handing it on). Plain
    ASGI: Starlette's BaseHTTPMiddleware would pass every streamed chunk
    through a memory stream, which measured as a third of the event loop's
    time under 64 streams."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD"):
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length", b"")
        if length.isdigit():
            if int(length) > self.max_bytes:
                return await self._refuse(int(length), scope, receive, send)
            return await self.app(scope, receive, send)
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client left
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_bytes:
                return await self._refuse(len(body), scope, receive, send, "at least ")
        handed = False

        async def replay():
            nonlocal handed
            if handed:
                return await receive()  # later calls wait for a disconnect
            handed = True
            return {"type": "http.request", "body": body, "more_body": False}
        await self.app(scope, replay, send)

    async def _refuse(self, size: int, scope, receive, send, at_least: str = "") -> None:
        response = _error(413, f"the request body has {at_least}{size:,} bytes; at most {self.max_bytes:,}", None)
        await response(scope, receive, send)


async def _events(head: dict, queues, jobs, slot, request: Request, echo: str, deadline: float,
                  ticker: "_Ticker"):
    """Server-Sent Events framed as OpenAI's: data: {chunk} ... data: [DONE].
    A chunk carries every token that arrived since the one before: the
    first as soon as there is text, the rest at the ticker's ticks (a
    chunk per token cost the server and its client more than the model's
    step, BENCHMARKS.md, "Serving")."""
    open_ = set(range(len(queues)))
    offsets = [len(echo)] * len(queues)
    first = True
    try:
        if echo:
            for i in open_:
                yield _chunk(head, i, echo, None)
        while open_:
            if not first:
                await ticker.tick(queues, min(deadline, request.app.state.drain_deadline))
            for i in sorted(open_):
                got = await _next(queues[i], request, deadline)
                if got is LEFT:
                    raise asyncio.CancelledError
                if got is TIME_UP:
                    for job in jobs:
                        slot.batcher.cancel(job)
                    for k in sorted(open_):
                        yield _chunk(head, k, "", "length")
                    open_.clear()
                    break
                text, reason, infos = _drain(queues[i], got)
                if text or reason or infos:
                    first = first and not text  # until some text went, the next goes at once too
                    yield _chunk(head, i, text, reason, _legacy_logprobs(infos, offsets[i]) if infos else None)
                    offsets[i] += sum(len(info["token"]) for info in infos)
                if reason is not None:
                    open_.discard(i)
        yield "data: [DONE]\n\n"
    except asyncio.CancelledError:
        for job in jobs:
            slot.batcher.cancel(job)
        raise
    except Exception as exc:  # an error mid-stream arrives as a chunk, as OpenAI sends it
        for job in jobs:
            slot.batcher.cancel(job)
        yield "data: " + json.dumps({"error": {"message": str(exc), "type": "server_error"}}) + "\n\n"


class _Ticker:
    """The moments at which streamed chunks go out: every multiple of
    ``interval`` seconds on the event loop's clock, the same for every
    stream. All the streams waiting for a tick wake in one turn of the
    loop and write their chunks together, so the loop (and the clients,
    and the scheduler threads it would otherwise preempt) wakes once per
    tick instead of once per stream. An interval under a millisecond
    means no ticks: each piece goes as it comes."""

    def __init__(self, interval: float):
        self.interval = interval if interval >= 0.001 else 0.0
        self.waiting: dict[int, list[asyncio.Future]] = {}
        self.loop: asyncio.AbstractEventLoop | None = None

    async def tick(self, queues: list["_Pieces"], until: float = math.inf) -> None:
        """Wait for the next tick, or until one of ``queues`` ends (a
        finished choice's last chunk goes at once, and with it the request:
        a client that asks again does so a tick sooner), or until ``until``
        on the loop's clock (the request's time is up). Each caller waits
        on a future of its own, so that a stream that goes away cancels
        only its own."""
        loop = asyncio.get_running_loop()
        if self.loop is not loop:  # a new loop: what waited in another one is gone with it
            self.loop, self.waiting = loop, {}
        if self.interval <= 0 or any(queue.ended and not queue.empty() for queue in queues):
            return await asyncio.sleep(0)  # other tasks first
        k = math.floor(loop.time() / self.interval) + 1
        if k * self.interval > until:
            return await asyncio.sleep(max(until - loop.time(), 0))
        future = loop.create_future()
        for queue in queues:
            queue.waiter = future
        waiters = self.waiting.get(k)
        if waiters is None:
            waiters = self.waiting[k] = []
            loop.call_at(k * self.interval, self._fire, k)
        waiters.append(future)
        await future

    def wake_all(self) -> None:
        """End every wait now; safe from a signal handler or another thread."""
        loop = self.loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._fire_all)

    def _fire_all(self) -> None:
        for k in list(self.waiting):
            self._fire(k)

    def _fire(self, k: int) -> None:
        for future in self.waiting.pop(k, ()):
            if not future.done():  # done: its choice ended, or its stream went away
                future.set_result(None)


class _Pieces(asyncio.Queue):
    """One choice's (piece, finish_reason, logprobs) as the scheduler hands
    them over; the last also wakes the stream waiting for a tick."""

    waiter: asyncio.Future | None = None
    ended = False

    def put_piece(self, piece: str, reason: str | None, info: dict | None) -> None:
        self.put_nowait((piece, reason, info))
        if reason is not None:
            self.ended = True
            if self.waiter is not None and not self.waiter.done():
                self.waiter.set_result(None)


def _drain(queue: asyncio.Queue, first: tuple) -> tuple[str, str | None, list[dict]]:
    """``first`` and whatever else is already queued, up to the end of the
    choice: the text, the finish reason and the logprobs entries."""
    piece, reason, info = first
    pieces, infos = [piece], [info] if info else []
    while reason is None and not queue.empty():
        piece, reason, info = queue.get_nowait()
        pieces.append(piece)
        if info:
            infos.append(info)
    return "".join(pieces), reason, infos


def _chunk(head: dict, index: int, text: str, reason: str | None, logprobs: dict | None = None) -> str:
    body = dict(head, choices=[{"text": text, "index": index, "logprobs": logprobs, "finish_reason": reason}])
    return "data: " + json.dumps(body) + "\n\n"


def _legacy_logprobs(infos: list[dict], offset: int) -> dict:
    """OpenAI's legacy completions logprobs: tokens, their log-probabilities,
    the top alternatives of each, and where each token starts in the text."""
    offsets = []
    for info in infos:
        offsets.append(offset)
        offset += len(info["token"])
    return {"tokens": [i["token"] for i in infos], "token_logprobs": [i["logprob"] for i in infos],
            "top_logprobs": [i["top"] for i in infos], "text_offset": offsets}


def _error(status: int, message: str, param: str | None, kind: str = "invalid_request_error",
           headers: dict | None = None, code: str | None = None) -> JSONResponse:
    return JSONResponse(status_code=status, headers=headers,
                        content={"error": {"message": message, "type": kind, "param": param, "code": code}})
