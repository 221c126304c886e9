"""Shared fixtures. Real corpora come from ../shared/corpora (or $LSTMGEN_CORPORA).

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


def corpus_path(name: str) -> Path:
    path = CORPORA / name
    if not path.exists():
        message = f"shared corpus {path} is missing (set LSTMGEN_CORPORA to the shared/corpora folder)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


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
