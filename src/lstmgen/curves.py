"""Learning curves: bits per character against characters trained and
against wall-clock time, train and held-out, from a run's metrics.jsonl.
Training writes RUN_DIR/curves.png; ``lstmgen plot`` overlays runs."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import LstmgenError

LN2 = math.log(2)


@dataclass
class Curve:
    """One run's metrics rows as arrays, one entry per row."""

    name: str
    chars: np.ndarray
    """Characters trained on (estimated from tokens for word and BPE models)."""
    minutes: np.ndarray
    """Training wall-clock time, every sitting of the run together."""
    train_bits_per_char: np.ndarray
    """The mean training loss of the last 50 steps."""
    val_bits_per_char: np.ndarray
    """NaN where a row has no held-out loss."""
    chars_estimated: bool

    @property
    def best(self) -> int | None:
        """The row of the lowest held-out loss, the best/ checkpoint's."""
        if np.isnan(self.val_bits_per_char).all():
            return None
        return int(np.nanargmin(self.val_bits_per_char))


def read_curve(run_dir: str | os.PathLike, name: str | None = None) -> Curve:
    """A run's curve; refused in one line when there is nothing to draw."""
    run_dir = Path(run_dir)
    metrics = run_dir / "metrics.jsonl"
    if not run_dir.is_dir():
        raise LstmgenError(f"{run_dir}: no such run directory; give the --out directory of lstmgen train")
    if not metrics.exists():
        raise LstmgenError(f"{run_dir} has no metrics.jsonl; give the --out directory of lstmgen train")
    try:
        rows = [json.loads(line) for line in metrics.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (ValueError, UnicodeDecodeError):
        raise LstmgenError(f"{metrics} is not the JSON lines lstmgen train writes; was it edited?") from None
    rows = [r for r in rows if isinstance(r, dict) and "step" in r and "train_loss_nats" in r]
    if not rows:
        raise LstmgenError(f"{run_dir} has no validation rows yet; train past the first --eval-every")
    train = _run_train_config(run_dir)
    tokens = np.array([_tokens_trained(r, train) for r in rows], dtype=float)
    tokens_per_char = _tokens_per_char(rows)
    val = np.array([r.get("val_bits_per_char", np.nan) for r in rows], dtype=float)
    train_nats = np.array([r["train_loss_nats"] for r in rows], dtype=float)
    return Curve(
        name=name or run_dir.resolve().name,
        chars=tokens / tokens_per_char,
        minutes=np.array([r.get("elapsed_s", 0.0) for r in rows], dtype=float) / 60,
        train_bits_per_char=train_nats / LN2 * tokens_per_char,
        val_bits_per_char=val,
        chars_estimated=tokens_per_char != 1.0,
    )


def _run_train_config(run_dir: Path) -> dict:
    for place in (run_dir / "last" / "config.json", run_dir / "best" / "config.json"):
        if place.exists():
            try:
                return json.loads(place.read_text(encoding="utf-8")).get("train", {})
            except ValueError:
                pass
    return {}


def _tokens_trained(row: dict, train: dict) -> float:
    """Rows from before ``trained_tokens`` was recorded: steps × batch × window."""
    if "trained_tokens" in row:
        return row["trained_tokens"]
    per_step = train.get("batch_size", 0) * (train.get("seq_len", 0) if train.get("framing", "stream") == "stream" else 1)
    return row["step"] * per_step


def _tokens_per_char(rows: list[dict]) -> float:
    """From the held-out rows, which score both: 1 for characters, fewer for
    words and BPE (the held-out text's ratio stands in for the training text's)."""
    for r in rows:
        if r.get("val_loss_nats") and r.get("val_bits_per_char"):
            ratio = r["val_bits_per_char"] * LN2 / r["val_loss_nats"]
            return 1.0 if abs(ratio - 1.0) < 1e-3 else ratio
    return 1.0


def _matplotlib():
    try:
        import matplotlib
    except ImportError:
        raise LstmgenError("drawing curves needs matplotlib: pip install matplotlib") from None
    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure
    from matplotlib.ticker import EngFormatter
    return Figure, EngFormatter


def plot_curves(curves: list[Curve], out: str | os.PathLike, title: str | None = None) -> Path:
    """Two panels, bits per character against characters and against
    minutes; held-out solid, train dashed, each run's best marked."""
    Figure, EngFormatter = _matplotlib()
    fig = Figure(figsize=(12, 4.8), dpi=100, layout="constrained")
    by_chars, by_time = fig.subplots(1, 2, sharey=True)
    colours = [f"C{i % 10}" for i in range(len(curves))]
    for curve, colour in zip(curves, colours):
        label = curve.name if len(curves) > 1 else None
        for ax, x in ((by_chars, curve.chars), (by_time, curve.minutes)):
            _draw_one(ax, curve, x, colour, label)
    by_chars.set_xlabel("characters trained" + (" (estimated from tokens)" if any(c.chars_estimated for c in curves) else ""))
    by_chars.xaxis.set_major_formatter(EngFormatter())
    by_time.set_xlabel("training time (minutes)")
    by_chars.set_ylabel("bits per character")
    _limit_y(by_chars, curves)
    for ax in (by_chars, by_time):
        ax.grid(True, alpha=0.3)
    _legend(by_time, len(curves) > 1)
    fig.suptitle(title or (curves[0].name if len(curves) == 1 else f"{len(curves)} runs"))
    out = Path(out)
    tmp = out.with_name(out.name + ".tmp.png")
    try:
        fig.savefig(tmp)
        os.replace(tmp, out)  # never a half-written PNG, even if training is stopped mid-write
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise LstmgenError(f"could not write {out} ({exc.strerror or exc}); check the path and free space") from None
    return out


def _draw_one(ax, curve: Curve, x: np.ndarray, colour: str, label: str | None) -> None:
    prefix = f"{label}: " if label else ""
    ax.plot(x, curve.train_bits_per_char, color=colour, linestyle="--", linewidth=1.2, alpha=0.8,
            label=f"{prefix}train")
    has_val = ~np.isnan(curve.val_bits_per_char)
    if has_val.any():
        ax.plot(x[has_val], curve.val_bits_per_char[has_val], color=colour, linewidth=2, marker="o",
                markersize=2.5, label=f"{prefix}held-out")
    best = curve.best
    if best is not None:
        value = curve.val_bits_per_char[best]
        ax.plot([x[best]], [value], marker="*", markersize=14, color=colour, markeredgecolor="black",
                linestyle="none", label=f"{prefix}best checkpoint, {value:.3f} bits/char")


def _limit_y(ax, curves: list[Curve]) -> None:
    """The first rows of a run sit far above the rest (a fresh model's loss);
    cut the axis where the interesting part stays readable."""
    values = np.concatenate([np.concatenate([c.train_bits_per_char, c.val_bits_per_char]) for c in curves])
    values = values[np.isfinite(values)]
    if values.size == 0:
        return
    low, high = values.min(), np.percentile(values, 90)
    span = max(high - low, 0.05)
    ax.set_ylim(low - 0.08 * span, min(values.max(), high + 0.6 * span) + 0.04 * span)


def _legend(ax, several: bool) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles, labels, fontsize=8 if several else 9, loc="upper right")


def write_run_curves(run_dir: str | os.PathLike) -> Path:
    """RUN_DIR/curves.png, from the run's metrics so far."""
    return plot_curves([read_curve(run_dir)], Path(run_dir) / "curves.png")


def plot_runs(run_dirs: list[str | os.PathLike], out: str | os.PathLike, names: list[str] | None = None) -> Path:
    """Several runs in one PNG, labelled by run name (or ``names``)."""
    if not run_dirs:
        raise LstmgenError("give at least one run directory to plot")
    curves = [read_curve(d, n) for d, n in zip(run_dirs, names or [None] * len(run_dirs))]
    seen: dict[str, int] = {}
    for curve, path in zip(curves, run_dirs):  # two runs called 'default' in different folders
        seen[curve.name] = seen.get(curve.name, 0) + 1
    for curve, path in zip(curves, run_dirs):
        if seen[curve.name] > 1:
            curve.name = str(path)
    return plot_curves(curves, out)
