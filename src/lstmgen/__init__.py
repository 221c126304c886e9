"""lstmgen: train LSTM language models on any text and generate new text from them.

    import lstmgen
    lstmgen.train("alice.txt", "runs/alice", max_minutes=2)
    model = lstmgen.load("runs/alice")
    print(model.generate("Alice was", lstmgen.SampleConfig(max_new_tokens=200))[0])

Everything the ``lstmgen`` command does goes through these names.
"""

from importlib import import_module

__version__ = "0.1.0"

# name -> "module" or "module:attribute". Imported on first use, so that
# `lstmgen corpus` and `lstmgen prepare` start without loading torch.
_EXPORTS = {
    # text → tokens
    "CorpusConfig": "text.corpus", "read_corpus": "text.corpus", "decode_bytes": "text.corpus",
    "summarize_corpus": "text.corpus:summarize", "TokenizerConfig": "text.tokenizer",
    "prepare": "text.prepare:prepare_files", "PrepareResult": "text.prepare",
    # model, training
    "ModelConfig": "model", "TrainConfig": "training.config", "TrainResult": "training.config",
    "PRESETS": "training.presets", "train": "api", "resume": "api",
    "check_new_run": "training.config", "checked_checkpoint": "checkpoint_files",
    # other tools' formats
    "import_keras": "interop.keras", "read_keras": "interop.keras", "export_onnx": "interop.onnx",
    # sampling, evaluation
    "load": "api", "LanguageModel": "api", "Generation": "api", "Batcher": "sampling.batcher", "BatcherProcess": "sampling.batcher_process", "BatcherPool": "sampling.batcher_process", "scheduler_processes": "sampling.batcher_process", "SampleConfig": "sampling.config", "fresh_seed": "sampling.config",
    "EvalResult": "evaluate", "samples_report": "sampling.report", "items_report": "sampling.item_report", "parse_setting": "sampling.report",
    "plot_runs": "curves", "read_curve": "curves", "write_run_curves": "curves",
    # every door's options, from the config dataclasses
    "config_fields": "fields", "add_config_arguments": "fields", "config_from_arguments": "fields",
    # the interactive door
    "chat": "chat:run_chat", "create_server": "server:create_app", "MAX_STREAM_INTERVAL": "server",
    # the machine
    "machine_report": "doctor", "format_report": "doctor", "PrecisionChoice": "precision",
    "LstmgenError": "errors", "TrainingInterrupted": "errors",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    target = _EXPORTS.get(name)
    if target is None:
        raise AttributeError(f"module 'lstmgen' has no attribute {name!r}")
    module, _, attribute = target.partition(":")
    return getattr(import_module(f".{module}", __name__), attribute or name)
