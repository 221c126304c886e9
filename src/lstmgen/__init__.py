"""lstmgen: train LSTM language models on any text and generate new text from them.

    import lstmgen
    lstmgen.train("alice.txt", "runs/alice", max_minutes=2)
    model = lstmgen.load("runs/alice")
    print(model.generate("Alice was", lstmgen.SampleConfig(max_new_tokens=200))[0])
"""

from importlib import import_module

__version__ = "0.1.0"

# Imported on first use, so that `lstmgen corpus` starts without loading torch.
_EXPORTS = {
    "train": "api", "resume": "api", "load": "api", "LanguageModel": "api",
    "CorpusConfig": "corpus", "read_corpus": "corpus",
    "LstmgenError": "errors", "EvalResult": "evaluate", "SampleConfig": "generate",
    "ModelConfig": "model", "machine_report": "doctor", "PrecisionChoice": "precision", "TrainConfig": "training", "TrainResult": "training",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'lstmgen' has no attribute {name!r}")
    return getattr(import_module(f".{module}", __name__), name)
