"""Copy a run's best checkpoint into the package as the bundled model.

    .venv/bin/python scripts/bundle_model.py RUN_DIR

Weights are stored as float16 to stay under the 5 MB limit; they load as
float32. The README's held-out figure must be re-measured afterwards with
``lstmgen evaluate src/lstmgen/bundled/alice ../shared/corpora/...``
(tests/test_bundled.py checks it).
"""

import sys
from pathlib import Path

import torch

from lstmgen.api import BUNDLED_DIR
from lstmgen.checkpoint import WEIGHTS, load_checkpoint, save_checkpoint

LIMIT_BYTES = 5 * 1000 * 1000


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    ck = load_checkpoint(sys.argv[1])
    meta = {k: v for k, v in ck.meta.items()
            if k not in ("format", "format_version", "weights_sha256", "weights_dtype", "model", "corpus", "data_dir")}
    # The package travels to other machines: keep the corpus's name, not this machine's path to it.
    meta["source"] = Path(meta["source"]).name
    save_checkpoint(BUNDLED_DIR, ck.model, ck.tokenizer, ck.corpus_config, meta, weights_dtype=torch.float16)
    size = sum(f.stat().st_size for f in Path(BUNDLED_DIR).iterdir())
    print(f"bundled model written to {BUNDLED_DIR}: {size:,} bytes ({(BUNDLED_DIR / WEIGHTS).stat().st_size:,} of weights)")
    if size > LIMIT_BYTES:
        sys.exit(f"the bundled model is over the {LIMIT_BYTES:,}-byte limit; train a smaller one")


if __name__ == "__main__":
    main()
