"""Shared fixtures. Real corpora come from ../shared/corpora (or $LSTMGEN_CORPORA),
other shared inputs from ../shared/fixtures (or $LSTMGEN_FIXTURES).

Where the folder is absent, tests that need it skip and say why; under CI
(CI=true) a missing folder is a failure, because CI must run them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORPORA = Path(os.environ.get("LSTMGEN_CORPORA", ROOT.parent / "shared" / "corpora"))
FIXTURES = Path(os.environ.get("LSTMGEN_FIXTURES", ROOT.parent / "shared" / "fixtures"))


def shared_input(folder: Path, name: str, what: str, variable: str, default: str) -> Path:
    """A file under the shared inputs. Missing, it skips the test, or under
    CI (where the inputs must be there) fails it."""
    path = folder / name
    if not path.exists():
        message = f"shared {what} {path} is missing (set {variable} to the {default} folder)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def corpus_path(name: str) -> Path:
    return shared_input(CORPORA, name, "corpus", "LSTMGEN_CORPORA", "shared/corpora")


def fixture_path(name: str) -> Path:
    """A file or folder under the shared fixtures (e.g. ``keras-tutorial/tutorial-small.h5``)."""
    return shared_input(FIXTURES, name, "fixture", "LSTMGEN_FIXTURES", "shared/fixtures")


@pytest.fixture(autouse=True, scope="session")
def precision_cache(tmp_path_factory):
    """Keep --precision auto's timings out of the user's cache, and share them
    across the session as a user's runs would."""
    os.environ["LSTMGEN_CACHE_DIR"] = str(tmp_path_factory.mktemp("lstmgen-cache"))


@pytest.fixture
def alice() -> Path:
    return corpus_path("alice-gutenberg-11-utf8.txt")


def run_cli(*args: str, input: bytes | None = None, timeout: float = 300, cwd=None) -> subprocess.CompletedProcess:
    """Run the real command in a subprocess, as a user would."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "lstmgen", *args], capture_output=True, input=input,
                          timeout=timeout, env=env, cwd=cwd)


SERVERS: dict = {}
"""uvicorn.Server by port, for tests that look inside the app a server runs."""


def start_server(app):
    """A real uvicorn on a free loopback port, in a thread; returns (server, thread, port)."""
    import socket
    import threading
    import time

    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    SERVERS[port] = srv
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    for _ in range(200):
        if srv.started:
            break
        time.sleep(0.05)
    return srv, thread, port


def submit_stream(batcher, model, prompt, config, seed, logprobs=None):
    """Submit one stream to a Batcher; returns (job, pieces, finish reasons,
    logprob infos), the lists filling as the stream's events arrive."""
    pieces, ends, infos = [], [], []

    def emit(piece, reason, info):
        pieces.append(piece)
        infos.append(info)
        if reason:
            ends.append(reason)
    ids = model.prompt_ids(model.prepare_text(prompt).text)
    return batcher.submit(ids, config, seed, emit, logprobs), pieces, ends, infos


def pin_cached_precisions(precision_for) -> None:
    """Rewrite the cached --precision auto choices as if they had been measured
    and kept: ``precision_for(key)`` names the precision an entry is to say
    (None leaves the entry as it is). For tests of what auto does with a choice."""
    import json

    import torch

    from lstmgen.precision import _cache_file

    path = _cache_file(torch.device("cpu"))
    cache = json.loads(path.read_text())
    for key, entry in cache.items():
        precision = precision_for(key) if key.startswith("[") else None
        if precision is not None:
            measured = entry["choices"][entry["picks"][-1]]
            cache[key] = {"choices": {precision: dict(measured, precision=precision)}, "picks": [precision],
                          "kept": True}
    path.write_text(json.dumps(cache))
