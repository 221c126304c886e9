"""The Keras tutorial's checkpoints, read with h5py alone (no TensorFlow).

The tutorial's models are ``LSTM(256)`` (one or two of them, each followed
by dropout) then ``Dense(V, softmax)``, reading one feature per step: the
character's id divided by the vocabulary size. Their files come in three
shapes, all handled here:

- HDF5 from Keras 2 or 3's ``model.save``/``ModelCheckpoint`` (``.h5``,
  ``.hdf5``): weights under ``model_weights/LAYER/.../kernel`` (Keras 2 adds
  ``:0`` to the names), the architecture as JSON in an attribute;
- HDF5 from ``save_weights`` (Keras 2 weights only, or Keras 3's
  ``.weights.h5``, whose variables are numbered ``vars/0, 1, 2``);
- Keras 3's ``.keras`` zip, which holds ``model.weights.h5`` and ``config.json``.

Layer names differ between Keras versions, so the architecture is read from
the weights' shapes: an LSTM cell is (in, 4H), (H, 4H), (4H,) and the head
is (H, V), (V,). Anything else is refused in one line saying what was found.
Keras and PyTorch order the gates alike (input, forget, cell, output); Keras
keeps (in, 4H) kernels and one bias where PyTorch keeps (4H, in) weights and
two biases that add up.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import LstmgenError


@dataclass
class KerasLSTM:
    """The weights of a tutorial model, in Keras's layout."""

    layers: list[tuple[np.ndarray, np.ndarray, np.ndarray]]
    """Per LSTM layer, first to last: kernel (in, 4H), recurrent kernel (H, 4H), bias (4H,)."""
    dense: tuple[np.ndarray, np.ndarray]
    """The head: kernel (H, V), bias (V,)."""
    kind: str
    """What the file was, in words."""
    keras_version: str | None = None
    """The Keras version the file names, where it names one."""
    has_config: bool = False
    """Whether the file holds the model's config (so its gate activations were checked)."""

    @property
    def gates_unchecked(self) -> bool:
        """A weights-only file from Keras before 2.3, whose LSTMs defaulted to
        hard_sigmoid gates: nothing in it says which gates the model had."""
        if self.has_config or not self.keras_version:
            return False
        parts = [int(p) if p.isdigit() else 0 for p in re.split(r"[.+-]", self.keras_version)[:2]]
        return parts[:1] == [1] or parts[:2] in ([2, 0], [2, 1], [2, 2])

    @property
    def hidden_size(self) -> int:
        return self.layers[0][1].shape[0]

    @property
    def vocab_size(self) -> int:
        return self.dense[1].shape[0]

    def describe(self) -> str:
        return (f"{len(self.layers)} LSTM layer{'s' if len(self.layers) > 1 else ''} of {self.hidden_size} units "
                f"and a Dense layer of {self.vocab_size}")


def read_keras(path: str | Path) -> KerasLSTM:
    """The tutorial model in ``path`` (.h5, .hdf5, .weights.h5 or .keras)."""
    h5py = _h5py()
    path = Path(path)
    if not path.exists():
        raise LstmgenError(f"{path}: no such file; check the path")
    if path.is_dir():
        raise LstmgenError(f"{path} is a directory; give a Keras .h5, .hdf5, .weights.h5 or .keras file")
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            if "model.weights.h5" not in z.namelist():
                raise LstmgenError(f"{path} is a zip file without model.weights.h5; give a Keras .keras file")
            config = json.loads(z.read("config.json")) if "config.json" in z.namelist() else None
            data = io.BytesIO(z.read("model.weights.h5"))
        with h5py.File(data, "r") as f:
            return _from_hdf5(f, path, "a Keras 3 .keras file", config, None)
    if not h5py.is_hdf5(path):
        raise LstmgenError(f"{path} is not an HDF5 or .keras file; give the .h5, .hdf5, .weights.h5 or .keras "
                           "file that Keras wrote")
    with h5py.File(path, "r") as f:
        config = f.attrs.get("model_config")
        config = json.loads(config) if config is not None else None
        kind = "a Keras HDF5 model" if "model_weights" in f else "a Keras HDF5 weights file"
        version = f.attrs.get("keras_version")
        version = version.decode() if isinstance(version, bytes) else None if version is None else str(version)
        return _from_hdf5(f, path, kind, config, version)


def _h5py():
    try:
        import h5py
    except ImportError:
        raise LstmgenError("reading Keras files needs h5py: pip install 'lstmgen[keras]'") from None
    return h5py


def _from_hdf5(f, path: Path, kind: str, config: dict | None, version: str | None) -> KerasLSTM:
    _check_activations(config, path)
    groups = _weight_groups(f)
    lstms, dense, other = [], [], []
    for name, arrays in sorted(groups.items(), key=lambda item: _natural(item[0])):
        role = _role(arrays)
        if role == "lstm":
            lstms.append((name, _lstm_arrays(arrays)))
        elif role == "dense":
            dense.append((name, _dense_arrays(arrays)))
        else:
            other.append(f"{name} {' '.join(str(tuple(a.shape)) for a in arrays.values())}")
    found = (f"found {len(lstms)} LSTM layer(s), {len(dense)} Dense layer(s)"
             + (f" and weights of another kind ({'; '.join(other[:3])})" if other else ""))
    if other or not lstms or len(dense) != 1:
        raise LstmgenError(f"{path} is not the tutorial's model (LSTM layers, then one Dense layer): {found}")
    layers = [arrays for _, arrays in lstms]
    hidden = layers[0][1].shape[0]
    for i, (kernel, recurrent, bias) in enumerate(layers):
        wanted_in = 1 if i == 0 else hidden
        if recurrent.shape != (hidden, 4 * hidden) or kernel.shape != (wanted_in, 4 * hidden):
            raise LstmgenError(
                f"{path}: LSTM layer {i + 1} has a kernel of shape {tuple(kernel.shape)} and a recurrent kernel "
                f"of {tuple(recurrent.shape)}; the tutorial's layers read {wanted_in} feature(s) into "
                f"{hidden} units, so this is another architecture")
    kernel, bias = dense[0][1]
    if kernel.shape[0] != hidden:
        raise LstmgenError(f"{path}: the Dense layer reads {kernel.shape[0]} inputs but the last LSTM has "
                           f"{hidden} units; this is another architecture")
    return KerasLSTM(layers, (kernel, bias), kind, version, config is not None)


def _check_activations(config: dict | None, path: Path) -> None:
    """Keras before 2.3 defaulted to hard_sigmoid gates; PyTorch's LSTM has
    sigmoid ones, so such a model cannot be reproduced and is refused."""
    if config is None:
        return
    for layer in _layer_configs(config):
        if layer.get("class_name") != "LSTM":
            continue
        cfg = layer.get("config", {})
        activation, recurrent = cfg.get("activation", "tanh"), cfg.get("recurrent_activation", "sigmoid")
        if activation != "tanh" or recurrent != "sigmoid":
            raise LstmgenError(
                f"{path}: its LSTM uses activation {activation!r} and recurrent activation {recurrent!r}; "
                "lstmgen's LSTM has tanh and sigmoid (Keras's defaults since 2.3), so it cannot match this model")


def _layer_configs(config) -> list[dict]:
    """Every layer config in a Keras model config (Sequential or functional, Keras 2 or 3)."""
    out = []
    if isinstance(config, dict):
        if "class_name" in config and isinstance(config.get("config"), dict):
            out.append(config)
        for value in config.values():
            out.extend(_layer_configs(value))
    elif isinstance(config, list):
        for value in config:
            out.extend(_layer_configs(value))
    return out


def _weight_groups(f) -> dict[str, dict[str, np.ndarray]]:
    """Datasets grouped by the group that holds them, the optimizer's left out:
    {group path: {dataset name without ':0': array}}."""
    groups: dict[str, dict[str, np.ndarray]] = {}

    def visit(name, obj):
        if hasattr(obj, "shape") and not re.search(r"(^|/)optimizer", name):
            parent, _, leaf = name.rpartition("/")
            groups.setdefault(parent, {})[leaf.split(":")[0]] = np.asarray(obj[()], dtype=np.float32)
    f.visititems(visit)
    return groups


def _natural(name: str) -> list:
    """'lstm_10' after 'lstm_2', and 'lstm' before 'lstm_1' (Keras's own numbering)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _ordered(arrays: dict[str, np.ndarray]) -> list[np.ndarray]:
    return [arrays[k] for k in sorted(arrays, key=_natural)]


def _role(arrays: dict[str, np.ndarray]) -> str:
    """'lstm', 'dense' or 'other', by names where Keras wrote them and always by shapes
    (a GRU has the LSTM's names but 3H gates)."""
    names = set(arrays)
    if names == {"kernel", "recurrent_kernel", "bias"}:
        shapes = [arrays["kernel"].shape, arrays["recurrent_kernel"].shape, arrays["bias"].shape]
    elif names == {"kernel", "bias"}:
        shapes = [arrays["kernel"].shape, arrays["bias"].shape]
    elif all(n.isdigit() for n in names):
        shapes = [a.shape for a in _ordered(arrays)]
    else:
        return "other"
    if len(shapes) == 3 and len(shapes[1]) == 2 and shapes[1][1] == 4 * shapes[1][0] \
            and len(shapes[0]) == 2 and shapes[0][1] == shapes[1][1] and shapes[2] == (shapes[1][1],):
        return "lstm"
    if len(shapes) == 2 and len(shapes[0]) == 2 and shapes[1] == (shapes[0][1],):
        return "dense"
    return "other"


def _lstm_arrays(arrays: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if "kernel" in arrays:
        return arrays["kernel"], arrays["recurrent_kernel"], arrays["bias"]
    kernel, recurrent, bias = _ordered(arrays)  # Keras 3 numbers them in this order
    return kernel, recurrent, bias


def _dense_arrays(arrays: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    if "kernel" in arrays:
        return arrays["kernel"], arrays["bias"]
    kernel, bias = _ordered(arrays)
    return kernel, bias


def to_state_dict(keras: KerasLSTM) -> dict:
    """lstmgen's LSTMLanguageModel weights (input mode 'scaled') from Keras's."""
    import torch

    state = {}
    for i, (kernel, recurrent, bias) in enumerate(keras.layers):
        state[f"lstm.weight_ih_l{i}"] = torch.from_numpy(np.ascontiguousarray(kernel.T))
        state[f"lstm.weight_hh_l{i}"] = torch.from_numpy(np.ascontiguousarray(recurrent.T))
        state[f"lstm.bias_ih_l{i}"] = torch.from_numpy(bias.copy())
        state[f"lstm.bias_hh_l{i}"] = torch.zeros(bias.shape[0])
    kernel, bias = keras.dense
    state["head.weight"] = torch.from_numpy(np.ascontiguousarray(kernel.T))
    state["head.bias"] = torch.from_numpy(bias.copy())
    return state


def _how_read(lowercase: bool, strip_gutenberg: bool) -> str:
    return ("lowercased" if lowercase else "case kept") + (
        ", Gutenberg header removed" if strip_gutenberg else ", Gutenberg header kept")


def import_keras(weights_path: str | Path, corpus_path: str | Path, out_dir: str | Path, *, lowercase: bool = True,
                 strip_gutenberg: bool = False, force: bool = False) -> Path:
    """Write an lstmgen run directory holding the tutorial model in
    ``weights_path``, with its vocabulary rebuilt from ``corpus_path`` as the
    tutorial built it: the whole file, lowercased (``lowercase``), sorted
    distinct characters. The tutorial removed the Gutenberg header by hand,
    so the file is read as it is unless ``strip_gutenberg``. Returns the
    checkpoint directory (OUT_DIR/best)."""
    import random

    from ..checkpoint import save_checkpoint
    from ..model import LSTMLanguageModel, ModelConfig
    from ..text.corpus import CorpusConfig, read_corpus
    from ..text.tokenizer import CharTokenizer
    from ..training.presets import resolve
    from ..training.start import prepare_run_dir, sample_excerpts

    keras = read_keras(weights_path)
    corpus_config = CorpusConfig(lowercase=lowercase, keep_header=not strip_gutenberg)
    text = read_corpus(corpus_path, corpus_config).text
    tokenizer = CharTokenizer.from_text(text)
    if tokenizer.vocab_size != keras.vocab_size:
        how = _how_read(lowercase, strip_gutenberg)
        raise LstmgenError(
            f"{weights_path} predicts {keras.vocab_size} characters but {corpus_path} has {tokenizer.vocab_size} "
            f"distinct ones ({how}); give the text the model was trained on, read the same way "
            "(--no-lowercase if it kept case, --strip-gutenberg if the header was removed)")
    preset = "tutorial-small" if len(keras.layers) == 1 else "tutorial-large"
    model_options, _, train_config, _ = resolve(preset, hidden_size=keras.hidden_size, num_layers=len(keras.layers))
    model = LSTMLanguageModel(ModelConfig(vocab_size=tokenizer.vocab_size, **model_options))
    model.load_state_dict(to_state_dict(keras))
    out = Path(out_dir)
    prepare_run_dir(out, force)
    meta = {
        "train": train_config.to_dict(),
        "effective_batch_size": train_config.batch_size,
        "source": Path(corpus_path).name,
        "corpus_chars": len(text),
        "prompt_excerpts": sample_excerpts(text, random.Random(0)),
        "imported_from": {"file": Path(weights_path).name, "kind": keras.kind, "architecture": keras.describe(),
                          "keras_version": keras.keras_version, "corpus_read": _how_read(lowercase, strip_gutenberg)},
    }
    if keras.gates_unchecked:
        meta["imported_from"]["warning"] = (
            f"{Path(weights_path).name} was written by Keras {keras.keras_version} and holds weights only; Keras "
            "before 2.3 gave an LSTM hard_sigmoid gates unless told otherwise, which lstmgen's LSTM does not "
            "have, so if this model was built with the default, its text will be wrong; import the "
            "ModelCheckpoint file with the whole model instead, whose config tells")
    save_checkpoint(out / "best", model.eval(), tokenizer, corpus_config, meta)
    return out / "best"
