"""Writing ``metrics.json`` safely and showing the cross-validation table."""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write bytes through a temporary file and a rename, so a kill never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.fchmod(fd, 0o644)  # mkstemp makes 0600; results are meant to be read by others
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    """Write UTF-8 text atomically (see :func:`write_bytes_atomic`)."""
    write_bytes_atomic(path, text.encode("utf-8"))


def save_image_atomic(image: Any, path: Path, **save_options: Any) -> None:
    """Save an ``H x W [x C]`` uint8 array or a Pillow image atomically, in the format of the suffix."""
    import io

    from PIL import Image

    picture = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
    buffer = io.BytesIO()
    picture.save(buffer, format=Image.registered_extensions()[path.suffix.lower()], **save_options)
    write_bytes_atomic(path, buffer.getvalue())


def _strict(value: Any) -> Any:
    """NaN and infinities as ``None``: strict JSON has no NaN, and other readers (JS, jq) refuse it."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    return value


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write strict JSON atomically (see :func:`write_text_atomic`); NaN becomes ``null``."""
    write_text_atomic(path, json.dumps(_strict(payload), indent=2, sort_keys=False, allow_nan=False))


def write_csv_atomic(
    path: Path, rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None
) -> None:
    """Write dict rows as CSV atomically; ``columns`` default to the first row's keys."""
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns or (rows[0].keys() if rows else [])))
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(path, buffer.getvalue())


def append_invocation(out: Path, seconds: float, **fields: Any) -> list[dict[str, Any]]:
    """Append one invocation (its start time, then ``fields``) to ``<out>/invocations.json``.

    Reports that resume list every invocation's wall time, so a rerun that only re-scored does not
    hide how long the first one trained. Returns the whole history.
    """
    path = out / "invocations.json"
    try:
        history = json.loads(path.read_text())
    except (OSError, ValueError):
        history = []
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(time.time() - seconds))
    history.append({"started": started, **fields})
    write_json_atomic(path, history)
    return history


def pyplot():
    """``matplotlib.pyplot`` on the file-only Agg backend (no display needed), imported on first use."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure_atomic(fig: Any, path: Path, dpi: int = 110) -> None:
    """Save a matplotlib figure through a temporary file and a rename, then close it."""
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{path.suffix}")
    fig.savefig(tmp, dpi=dpi)
    plt.close(fig)
    tmp.replace(path)


def summarize_folds(folds: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Mean and sample standard deviation over folds of every scalar ``val/...`` entry, as ``cv/...``.

    With a single fold the standard deviation is reported as 0.
    """
    keys = [k for k, v in folds[0].items() if k.startswith("val/") and isinstance(v, float)]
    summary: dict[str, float] = {}
    for key in keys:
        values = np.array([fold[key] for fold in folds], dtype=np.float64)
        name = "cv/" + key.removeprefix("val/")
        summary[name] = float(values.mean())
        summary[f"{name}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return summary


def cv_table(
    folds: Sequence[Mapping[str, Any]], summary: Mapping[str, float], class_names: Sequence[str], title: str
) -> Table:
    """A rich table: one row per fold, then mean +- std."""
    table = Table(title=title, title_justify="left")
    table.add_column("fold", justify="right")
    columns = [
        ("mean class acc", "mean_class_acc"),
        ("macro precision", "macro_precision"),
        ("mean IoU", "mean_iou"),
    ] + [(f"acc {n}", f"acc_{n}") for n in class_names]
    for label, _ in columns:
        table.add_column(label, justify="right")
    table.add_column("train s", justify="right")
    for fold in folds:
        table.add_row(
            str(fold["fold"]),
            *[f"{fold['val/' + key]:.3f}" for _, key in columns],
            f"{fold['train_seconds']:.0f}",
        )
    table.add_section()
    table.add_row(
        "mean ± std",
        *[f"{summary['cv/' + key]:.3f} ± {summary['cv/' + key + '_std']:.3f}" for _, key in columns],
        "",
        style="bold",
    )
    return table


def print_cv_table(folds, summary, class_names, title: str, console: Console | None = None) -> None:
    console = console or Console()
    if not console.is_terminal:  # logs and pipes: wide enough that no column is cut
        console.width = max(console.width, 140)
    console.print(cv_table(folds, summary, class_names, title))


__all__ = [
    "cv_markdown",
    "cv_table",
    "print_cv_table",
    "save_figure_atomic",
    "summarize_folds",
    "write_csv_atomic",
    "write_json_atomic",
    "write_text_atomic",
]


def plot_learning_curves(folds: Sequence[Mapping[str, Any]], path: Path, title: str) -> None:
    """Validation mean per-class accuracy and macro precision per epoch, one line per fold, as a PNG."""
    plt = pyplot()

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharex=True)
    for key, ax, label in (
        ("val/mean_class_acc", axes[0], "mean per-class accuracy"),
        ("val/macro_precision", axes[1], "macro precision"),
    ):
        for fold in folds:
            history = fold.get("val_history") or []
            ax.plot([h["epoch"] for h in history], [h[key] for h in history], label=f"fold {fold['fold']}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"validation {label}")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[0].legend(loc="lower right")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save_figure_atomic(fig, path)


def cv_markdown(metrics: Mapping[str, Any]) -> str:
    """A markdown table of a ``metrics.json``: one row per fold, then mean +- std."""
    names = list(metrics["class_names"])
    keys = ["mean_class_acc", "macro_precision", "mean_iou"] + [f"acc_{n}" for n in names]
    header = (
        ["fold", "mean class acc", "macro precision", "mean IoU"] + [f"acc {n}" for n in names] + ["train s"]
    )
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for fold in metrics["folds"]:
        cells = (
            [str(fold["fold"])] + [f"{fold['val/' + k]:.3f}" for k in keys] + [f"{fold['train_seconds']:.0f}"]
        )
        lines.append("| " + " | ".join(cells) + " |")
    cells = ["**mean ± std**"] + [
        f"**{metrics['cv/' + k]:.3f} ± {metrics['cv/' + k + '_std']:.3f}**" for k in keys
    ]
    lines.append("| " + " | ".join([*cells, f"{metrics.get('wall_seconds', 0):.0f} (CV wall)"]) + " |")
    return "\n".join(lines) + "\n"


def _main() -> None:
    """Print the CV table of one or more metrics.json files as markdown."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m flakeseg.report", description=_main.__doc__)
    parser.add_argument("metrics", nargs="+", type=Path, help="metrics.json files written by train.py")
    for path in parser.parse_args().metrics:
        metrics = json.loads(path.read_text())
        model, config = metrics["config"]["model"], metrics["config"]
        print(
            f"### {metrics['data']}: {model['name']} (base {model.get('base_channels')}), "
            f"loss={config['loss']['name']}, augment={config['augment']['name']}\n"
        )
        print(f"`{path}`, {metrics['device']}, complete: {metrics['complete']}\n")
        print(cv_markdown(metrics))


if __name__ == "__main__":
    _main()
