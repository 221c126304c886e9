"""lstmgen serve: a real uvicorn on a free loopback port,
spoken to by the official openai client."""

import os
import socket
import time

import pytest

import lstmgen
from conftest import SERVERS, start_server

openai = pytest.importorskip("openai")
uvicorn = pytest.importorskip("uvicorn")


@pytest.fixture(scope="module")
def server():
    model = lstmgen.load()
    srv, thread, port = start_server(lstmgen.create_server({"alice": model}))
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0)
    yield client, model, port
    srv.should_exit = True
    thread.join(timeout=10)


def test_a_seeded_completion_is_lstmgen_generate(server):
    client, model, _ = server
    done = client.completions.create(model="alice", prompt="Alice was", max_tokens=120, seed=3)
    expected = model.generate("Alice was", lstmgen.SampleConfig(max_new_tokens=120, seed=3, precision="fp32"))[0]
    assert done.choices[0].text == expected and done.choices[0].finish_reason == "length"
    assert done.usage.completion_tokens == 120 and done.usage.prompt_tokens == len("Alice was")


def test_streamed_n_and_stop(server):
    client, model, _ = server
    chunks = list(client.completions.create(model="alice", prompt="The Queen said", max_tokens=80, seed=5, n=2,
                                            stream=True))
    texts = ["".join(c.choices[0].text for c in chunks if c.choices[0].index == i) for i in range(2)]
    for i, text in enumerate(texts):
        alone = model.generate("The Queen said", lstmgen.SampleConfig(max_new_tokens=80, seed=5 + i,
                                                                      precision="fp32"))[0]
        assert text == alone
    stopped = client.completions.create(model="alice", prompt="Alice was", max_tokens=300, seed=3, stop=["e"])
    assert "e" not in stopped.choices[0].text and stopped.choices[0].finish_reason == "stop"


def test_errors_are_the_clients_own_exceptions_with_our_message(server):
    client, _, _ = server
    with pytest.raises(openai.BadRequestError, match="temperature must be 0"):
        client.completions.create(model="alice", prompt="x", temperature=-1)
    with pytest.raises(openai.NotFoundError, match="no model 'nope'"):
        client.completions.create(model="nope", prompt="x")
    with pytest.raises(openai.BadRequestError, match="dry_multiplier"):
        client.completions.create(model="alice", prompt="x", extra_body={"dry_multiplier": "lots"})
    models = client.models.list()
    assert [m.id for m in models.data] == ["alice"]


def test_logprobs_are_the_models_own_with_top_alternatives(server):
    import math

    import torch

    client, model, _ = server
    done = client.completions.create(model="alice", prompt="Alice was", max_tokens=5, seed=1, logprobs=3)
    lp = done.choices[0].logprobs
    assert "".join(lp.tokens) == done.choices[0].text and lp.text_offset == [0, 1, 2, 3, 4]
    assert all(len(top) == 3 and max(top.values()) >= lp.token_logprobs[k] - 1e-6 for k, top in enumerate(lp.top_logprobs))
    # The first token's log-probability is the model's own after reading the prompt.
    ids = model.tokenizer.encode("Alice was")
    with torch.no_grad():
        logits, _, _ = model.model(torch.tensor([ids.tolist()]), None, last_only=True)
    first = float(torch.log_softmax(logits[0], -1)[model.tokenizer.encode(lp.tokens[0])[0]])
    assert math.isclose(lp.token_logprobs[0], first, abs_tol=1e-5)


def test_limits_answer_429_413_and_end_slow_requests():
    import httpx

    model = lstmgen.load()
    srv, thread, port = start_server(lstmgen.create_server({"alice": model}, max_streams=1, max_queue=0,
                                                           max_seconds=1.0, max_body_bytes=1000))
    base = f"http://127.0.0.1:{port}/v1"
    try:
        with httpx.Client(timeout=30) as http:
            with http.stream("POST", f"{base}/completions", json={"prompt": "Alice", "max_tokens": 4000,
                                                                  "stream": True}) as long:
                lines_in = long.iter_lines()
                first = next(lines_in)  # the one stream slot is taken
                assert first.startswith("data: ")
                busy = http.post(f"{base}/completions", json={"prompt": "Alice", "max_tokens": 5})
                assert busy.status_code == 429 and busy.headers["retry-after"] == "1"
                assert busy.json()["error"]["type"] == "rate_limit_error"
                lines = [line for line in lines_in if line]
            # One second is not enough for 4,000 characters here: the stream ends with 'length'.
            assert lines[-1] == "data: [DONE]" and '"finish_reason": "length"' in lines[-2]
            big = http.post(f"{base}/completions", content=b"{" + b" " * 2000 + b"}",
                            headers={"content-type": "application/json"})
            assert big.status_code == 413 and "at most 1,000" in big.json()["error"]["message"]
            # Without a Content-Length (chunked), the body is counted as it arrives.
            chunked = http.post(f"{base}/completions", content=iter([b"{", b" " * 1500, b"}"]),
                                headers={"content-type": "application/json"})
            assert chunked.status_code == 413 and "at least" in chunked.json()["error"]["message"]
            small = http.post(f"{base}/completions", content=iter([b'{"prompt": "Al', b'ice", "max_tokens": 3}']),
                              headers={"content-type": "application/json"})
            assert small.status_code == 200 and small.json()["usage"]["completion_tokens"] == 3
            bad = http.post(f"{base}/completions", content=b"{not json", headers={"content-type": "application/json"})
            assert bad.status_code == 400 and "not valid JSON" in bad.json()["error"]["message"]
    finally:
        srv.should_exit = True
        thread.join(timeout=10)


def test_a_client_that_leaves_frees_its_slot(server):
    import httpx

    client, model, port = server
    # The module's server: find its scheduler through the app uvicorn runs.
    with httpx.Client(timeout=30) as http:
        with http.stream("POST", f"http://127.0.0.1:{port}/v1/completions",
                         json={"prompt": "Alice", "max_tokens": 4000, "stream": True}) as long:
            lines = long.iter_lines()
            assert next(lines).startswith("data: ")
    # The connection is closed; the stream leaves the batch at its next step.
    slot = SERVERS[port].config.app.state.slots["alice"]
    for _ in range(100):
        if not slot.batcher.streams and not slot.batcher.active:
            break
        time.sleep(0.05)
    assert not slot.batcher.streams and not slot.batcher.active  # the row left the batch too


def test_an_api_key_is_required_when_set():
    model = lstmgen.load()
    srv, thread, port = start_server(lstmgen.create_server({"alice": model}, api_key="s3cret"))
    base = f"http://127.0.0.1:{port}/v1"
    try:
        with pytest.raises(openai.AuthenticationError, match="a wrong API key"):
            openai.OpenAI(base_url=base, api_key="wrong", max_retries=0).completions.create(
                model="alice", prompt="Alice", max_tokens=3)
        import httpx
        bare = httpx.post(f"{base}/completions", json={"prompt": "Alice", "max_tokens": 3})
        assert bare.status_code == 401 and "no API key" in bare.json()["error"]["message"]
        assert bare.json()["error"]["code"] == "invalid_api_key"
        good = openai.OpenAI(base_url=base, api_key="s3cret", max_retries=0)
        assert len(good.completions.create(model="alice", prompt="Alice", max_tokens=3).choices[0].text) == 3
        assert [m.id for m in good.models.list()] == ["alice"]
        assert httpx.get(f"http://127.0.0.1:{port}/health").json()["api_key_required"] is True
    finally:
        srv.should_exit = True
        thread.join(timeout=10)


def test_sigterm_drains_running_streams_and_exits_0(tmp_path):
    """The real command: a warning for an open address without a key; on SIGTERM new connections
    are refused, a running stream goes on for the drain time, then ends cleanly with
    finish_reason 'length' and [DONE], no traceback, and the exit status is 0. --precision auto is
    decided once at start, and said in the log and in /v1/models."""
    import httpx
    import json
    import signal
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(tmp_path / "stderr", "w+")
    proc = subprocess.Popen([sys.executable, "-m", "lstmgen", "serve", "--host", "0.0.0.0", "--port", str(port),
                             "--drain-seconds", "0.6", "--precision", "auto"], stderr=log)
    try:
        for _ in range(300):
            try:
                httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        with httpx.Client(timeout=60) as http:
            [described] = http.get(f"http://127.0.0.1:{port}/v1/models").json()["data"]
            with http.stream("POST", f"http://127.0.0.1:{port}/v1/completions",
                             json={"prompt": "Alice", "max_tokens": 4000, "stream": True}) as stream:
                lines = stream.iter_lines()
                first = next(lines)
                signalled = time.monotonic()
                proc.send_signal(signal.SIGTERM)
                time.sleep(0.5)
                with pytest.raises(httpx.ConnectError):
                    httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
                rest = [line for line in lines if line]
                ended = time.monotonic()
        assert first.startswith("data: ") and rest[-1] == "data: [DONE]"
        chunks = [json.loads(line[6:]) for line in [first] + rest[:-1]]
        written = sum(len(c["choices"][0]["text"]) for c in chunks)
        assert len(rest) > 3 and 0 < written < 4000  # it went on after the signal, then the drain time ended it
        assert chunks[-1]["choices"][0]["finish_reason"] == "length"
        assert 0.5 < ended - signalled < 10
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
    log.seek(0)
    err = log.read()
    assert "without an API key" in err and "Traceback" not in err
    assert described["step_precision"] in ("fp32", "bf16", "int8")
    assert f"/v1, steps in {described['step_precision']}" in err


def test_a_scheduler_in_its_own_process_serves_the_same_text_and_frees_what_leaves():
    """--scheduler process (the command's default): the same seeded text as lstmgen generate, n and
    stop, a client that leaves freeing its stream, and the process gone once the server stops."""
    import httpx

    model = lstmgen.load()
    app = lstmgen.create_server({"alice": model}, scheduler="process")
    batcher = app.state.slots["alice"].batcher
    srv, thread, port = start_server(app)
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0)
        done = client.completions.create(model="alice", prompt="Alice was", max_tokens=120, seed=3)
        expected = model.generate("Alice was", lstmgen.SampleConfig(max_new_tokens=120, seed=3, precision="fp32"))
        assert done.choices[0].text == expected[0] and done.usage.completion_tokens == 120
        chunks = list(client.completions.create(model="alice", prompt="The Queen said", max_tokens=60, seed=5, n=2,
                                                stream=True, stop=["\n\n"]))
        for i in range(2):
            text = "".join(c.choices[0].text for c in chunks if c.choices[0].index == i)
            alone = model.generate("The Queen said", lstmgen.SampleConfig(max_new_tokens=60, seed=5 + i,
                                                                          precision="fp32", stop=("\n\n",)))[0]
            assert text == alone
        with httpx.Client(timeout=30) as http:
            with http.stream("POST", f"http://127.0.0.1:{port}/v1/completions",
                             json={"prompt": "Alice", "max_tokens": 4000, "stream": True}) as long:
                lines = long.iter_lines()  # kept: a dropped iterator closes the response
                assert next(lines).startswith("data: ")
                assert batcher.streams == 1
        for _ in range(100):
            if not batcher.streams:
                break
            time.sleep(0.05)
        assert batcher.streams == 0 and batcher.process.is_alive()
    finally:
        srv.should_exit = True
        thread.join(timeout=10)
    # The slot's thread stops the process and waits for it: a second thread waiting for the same
    # child at the same moment can find it reaped but not yet marked ended.
    app.state.slots["alice"].thread.join(timeout=30)
    assert not batcher.process.is_alive() and batcher.process.exitcode == 0


def test_two_scheduler_processes_share_the_streams_and_keep_the_text(monkeypatch):
    """processes=2: each process steps its share of --max-streams. A seeded stream gets lstmgen
    generate's text whichever process steps it, alone or among others; a request's n streams stay
    in one process (one reading of their prompt); a process that dies ends only its own streams,
    and the other takes new ones; with none left a request gets 503."""
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    monkeypatch.delenv("LSTMGEN_NO_PIN", raising=False)

    model = lstmgen.load()
    app = lstmgen.create_server({"alice": model}, scheduler="process", processes=2, max_streams=8)
    pool = app.state.slots["alice"].batcher
    first, second = pool.shards
    assert (first.max_streams, second.max_streams) == (4, 4)
    assert [shard.events_gap for shard in pool.shards] == [0.02, 0.02]  # chunks every 0.05 s: no need to hurry
    # Prompts are read in the stepping threads when the two leave no core free (Batcher.run).
    assert [shard.read_beside for shard in pool.shards] == [len(os.sched_getaffinity(0)) > 2] * 2
    srv, thread, port = start_server(app)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        client = openai.OpenAI(base_url=base, api_key="none", max_retries=0)
        expected = model.generate("Alice was", lstmgen.SampleConfig(max_new_tokens=100, seed=3, precision="fp32"))[0]
        assert client.completions.create(model="alice", prompt="Alice was", max_tokens=100, seed=3).choices[0].text \
            == expected
        if len(os.sched_getaffinity(0)) >= 2:  # each stepping thread keeps to a core of its own, the others roam
            pinned = [_single_cores(shard.process.pid) for shard in pool.shards]
            assert [len(cores) for cores in pinned] == [1, 1] and pinned[0] != pinned[1]
        with ThreadPoolExecutor(8) as crowd:  # 8 streams at once: 4 in each process
            answers = [crowd.submit(client.completions.create, model="alice", prompt="Alice was", max_tokens=100,
                                    seed=3) for _ in range(8)]
            assert [answer.result().choices[0].text for answer in answers] == [expected] * 8
        with httpx.Client(timeout=30) as http:
            with http.stream("POST", f"{base}/completions",
                             json={"prompt": "Alice", "max_tokens": 4000, "stream": True, "n": 2}) as pair:
                pair_lines = pair.iter_lines()
                assert next(pair_lines).startswith("data: ")
                assert sorted(shard.streams for shard in pool.shards) == [0, 2]  # the pair kept together
                with http.stream("POST", f"{base}/completions",
                                 json={"prompt": "Alice", "max_tokens": 4000, "stream": True}) as single:
                    single_lines = single.iter_lines()
                    assert next(single_lines).startswith("data: ")
                    assert sorted(shard.streams for shard in pool.shards) == [1, 2]  # to the emptier process
                    lonely = next(shard for shard in pool.shards if shard.streams == 1)
                    lonely.process.kill()
                    rest = [line for line in single_lines if line]
                    assert rest[-1] == "data: [DONE]" and '"finish_reason": "length"' in rest[-2]
                    for _ in range(3):  # the other process takes every new request
                        done = client.completions.create(model="alice", prompt="Alice was", max_tokens=20, seed=3)
                        assert done.choices[0].text == expected[:20]
                    assert httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200
                next(shard for shard in pool.shards if shard is not lonely).process.kill()  # the pair's too
                rest = [line for line in pair_lines if line]
                assert rest[-1] == "data: [DONE]" and sum('"finish_reason": "length"' in line for line in rest) == 2
        for _ in range(100):  # until the server has seen both go
            if all(shard.lost for shard in pool.shards):
                break
            time.sleep(0.05)
        with pytest.raises(openai.InternalServerError, match="stopped .* restart the server"):
            client.completions.create(model="alice", prompt="Alice was", max_tokens=5)
    finally:
        srv.should_exit = True
        thread.join(timeout=10)
    app.state.slots["alice"].thread.join(timeout=30)  # as above: the slot's thread waits for the processes
    assert not any(shard.process.is_alive() for shard in pool.shards)


def _single_cores(pid: int) -> list[str]:
    """The cores of the threads of process ``pid`` that may run on one core only."""
    from pathlib import Path

    allowed = [(task / "status").read_text().split("Cpus_allowed_list:")[1].split()[0]
               for task in Path(f"/proc/{pid}/task").iterdir()]
    return [cores for cores in allowed if cores.isdigit()]


def test_scheduler_processes_by_default_fill_the_cores_with_at_least_32_streams_each():
    from lstmgen.sampling.batcher_process import scheduler_processes

    assert scheduler_processes(cores=2, threads=1, max_streams=64) == 2
    assert scheduler_processes(cores=2, threads=1, max_streams=40) == 1
    assert scheduler_processes(cores=8, threads=7, max_streams=64) == 1
    assert scheduler_processes(cores=8, threads=1, max_streams=256) == 8
    assert scheduler_processes(cores=1, threads=1, max_streams=64) == 1
    with pytest.raises(lstmgen.LstmgenError, match="--processes must be from 1 to --max-streams"):
        lstmgen.create_server({"alice": lstmgen.load()}, scheduler="thread", processes=2)


def test_streams_wait_for_one_shared_tick_and_a_finished_choice_goes_at_once():
    """_Ticker: streams that began waiting at different moments wake in the same turn of the event
    loop, at the same tick; a choice that ends wakes its stream at once, and one that ended
    while its stream was busy elsewhere does not wait at all; a stream that goes away cancels
    only its own wait; a wait ends at the request's own end; wake_all ends every wait (a drain);
    interval 0 waits for nothing."""
    import asyncio
    import math

    from lstmgen.server import _Pieces, _Ticker

    async def scenario():
        loop = asyncio.get_running_loop()
        ticker = _Ticker(0.5)
        woke: list[float] = []
        later_turn = []  # set in the turn after the first stream woke

        async def stream():
            await ticker.tick([_Pieces()])
            if not woke:
                loop.call_soon(later_turn.append, True)
            woke.append(loop.time())
            assert not later_turn  # still the first one's turn
        await asyncio.sleep(0.5 - loop.time() % 0.5 + 0.02)  # just past a tick: the next is 0.48 s away
        early = asyncio.create_task(stream())
        leaving = asyncio.create_task(stream())
        await asyncio.sleep(0.05)
        leaving.cancel()
        await asyncio.sleep(0.2)
        late = asyncio.create_task(stream())  # began 0.25 s after the first
        await asyncio.gather(early, late)
        assert leaving.cancelled() and len(woke) == 2
        assert len({math.floor(at / 0.5) for at in woke}) == 1 and woke[1] - woke[0] < 0.01

        hourly = _Ticker(3600.0)
        if 3600 - loop.time() % 3600 < 1:  # a tick about to come would hide what is tested
            await asyncio.sleep(1.1)
        ending, start = _Pieces(), loop.time()
        waiting = asyncio.create_task(hourly.tick([_Pieces(), ending]))
        await asyncio.sleep(0.01)
        assert not waiting.done()
        ending.put_piece("!", "length", None)
        await asyncio.wait_for(waiting, timeout=0.4)  # woken by the end, not by a tick
        await asyncio.wait_for(hourly.tick([ending]), timeout=0.4)  # its end still unread: no wait
        await asyncio.wait_for(hourly.tick([_Pieces()], until=loop.time() + 0.05), timeout=0.4)
        draining = [asyncio.create_task(hourly.tick([_Pieces()])) for _ in range(3)]
        await asyncio.sleep(0.01)
        hourly.wake_all()
        await asyncio.wait_for(asyncio.gather(*draining), timeout=0.4)
        assert math.floor(loop.time() / 3600) == math.floor(start / 3600)
        await asyncio.wait_for(_Ticker(0).tick([_Pieces()]), timeout=0.4)

    asyncio.run(scenario())


def test_scheduler_events_wait_for_company_unless_someone_waits_for_them():
    """_Outbox: after a message, later events wait up to the gap to go together; a stream's first
    text or its end goes at once; so do the first events after a quiet spell."""
    import multiprocessing

    from lstmgen.sampling.batcher_process import _Outbox

    receiving, sending = multiprocessing.Pipe(duplex=False)
    outbox = _Outbox(sending, gap=1.0)

    def event(stream: int, piece: str, reason: str | None = None) -> tuple:
        return stream, piece, reason, None, 1
    try:
        outbox.put([event(1, "first")])  # after a quiet spell: at once
        assert receiving.poll(0.5) and receiving.recv() == [event(1, "first")]
        outbox.put([event(1, "a")])
        outbox.put([event(2, "b")])
        assert not receiving.poll(0.3)  # waits for company, up to the gap
        assert receiving.poll(2.0) and receiving.recv() == [event(1, "a"), event(2, "b")]
        outbox.put([event(1, "c")])
        outbox.put([event(2, "end", "stop")], urgent=True)  # someone waits: at once, with what waited before it
        assert receiving.poll(0.5) and receiving.recv() == [event(1, "c"), event(2, "end", "stop")]
        outbox.put([event(1, "last")])
    finally:
        outbox.close()  # sends what is left
    assert receiving.poll(0.5) and receiving.recv() == [event(1, "last")]


@pytest.mark.parametrize("interval", [-0.1, float("nan"), 6.0])
def test_an_impossible_stream_interval_is_refused(interval):
    with pytest.raises(lstmgen.LstmgenError, match="stream_interval must be from 0 to 5 seconds"):
        lstmgen.create_server({"alice": lstmgen.load()}, stream_interval=interval)


def test_a_message_joins_each_streams_plain_pieces_in_order():
    from lstmgen.sampling.batcher_process import _merged

    events = [(1, "a", None, None, 1), (2, "x", None, None, 1), (1, "b", None, None, 2),
              (2, "y", None, {"token": "y"}, 2), (2, "z", None, None, 3), (1, "c", "length", None, 3),
              (2, "!", "stop", None, 4)]
    assert _merged(events) == [(1, "abc", "length", None, 3), (2, "x", None, None, 1),
                               (2, "y", None, {"token": "y"}, 2), (2, "z!", "stop", None, 4)]
    assert _merged([]) == []
