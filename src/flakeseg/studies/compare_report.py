"""The report of ``flakeseg compare``: table rows, ``compare.md``/``.csv``, two plots.

Everything here works on plain values (a row per data set and model), so it is tested on made-up
metrics without training anything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from flakeseg.utils.files import append_invocation, write_csv_atomic, write_text_atomic
from flakeseg.utils.plotting import pyplot, save_figure_atomic

#: the scores of the table and the bar chart: (metrics.json key without ``cv/``, label)
SCORES = (
    ("mean_class_acc", "mean per-class accuracy"),
    ("macro_precision", "macro precision"),
    ("mean_iou", "mean IoU"),
)


def result_row(result: Any) -> dict[str, Any]:
    """One CSV row of a :class:`flakeseg.studies.compare.JobResult` (scores empty when the job failed)."""
    metrics = result.metrics or {}
    folds = metrics.get("folds") or []
    kind = ""
    if metrics:
        kind = "classical" if folds and folds[0].get("model_file") else "network"
    extras = result.extras or {}
    # in the order of compare.csv's columns
    row: dict[str, Any] = {
        "dataset": result.dataset,
        "model": result.model.name,
        "label": result.model.label,
        "kind": kind,
    }
    for key, _ in SCORES:
        for suffix in ("", "_std"):
            value = metrics.get(f"cv/{key}{suffix}")
            row[f"cv_{key}{suffix}"] = round(float(value), 4) if value is not None else ""
    row.update(
        folds=len(folds),
        train_seconds_per_fold=round(float(np.mean([f["train_seconds"] for f in folds])), 2) if folds else "",
        cv_wall_seconds=round(float(metrics.get("wall_seconds", 0.0)), 1) if metrics else "",
        inference_images_per_s=round(extras["inference_images_per_s"], 3) if extras else "",
        inference_seconds=round(extras["inference_seconds"], 4) if extras else "",
        inference_threads=extras.get("inference_threads", ""),
        parameters=extras.get("parameters", ""),
        parameter_kind=extras.get("parameter_kind", ""),
        error=result.error or "",
        run_dir=str(result.run_dir),
        command=result.command,
    )
    return row


def _pm(row: Mapping[str, Any], key: str) -> str:
    value, std = row.get(f"cv_{key}"), row.get(f"cv_{key}_std")
    return "" if value in ("", None) else f"{value:.3f} ± {std:.3f}"


def leader_sentence(rows: Sequence[Mapping[str, Any]]) -> str:
    """Which model has the best CV mean per-class accuracy, and by how much over the runner-up."""
    scored = sorted(
        (r for r in rows if r.get("cv_mean_class_acc") not in ("", None)),
        key=lambda r: r["cv_mean_class_acc"],
        reverse=True,
    )
    if not scored:
        return "No model finished."
    best = scored[0]
    text = f"Best CV mean per-class accuracy: **{best['label']}**, {_pm(best, 'mean_class_acc')}"
    if len(scored) > 1:
        second = scored[1]
        gap = best["cv_mean_class_acc"] - second["cv_mean_class_acc"]
        text += (
            f", {gap:.3f} ahead of {second['label']} ({_pm(second, 'mean_class_acc')}); the fold-to-fold "
            f"standard deviations are {best['cv_mean_class_acc_std']:.3f} and "
            f"{second['cv_mean_class_acc_std']:.3f}"
        )
    return text + "."


def markdown_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """One data set's models as a markdown table; the best CV mean per-class accuracy in bold."""
    header = [
        "model",
        "kind",
        *[f"CV {label}" for _, label in SCORES],
        "train s / fold",
        "inference img/s (700x525)",
        "parameters",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    scores = [r["cv_mean_class_acc"] for r in rows if r.get("cv_mean_class_acc") not in ("", None)]
    best = max(scores) if scores else None
    for row in rows:
        if row.get("error") and row.get("cv_mean_class_acc") in ("", None):
            lines.append(f"| {row['label']} | | failed: {row['error']} | | | | | |")
            continue
        cells = [_pm(row, key) for key, _ in SCORES]
        if best is not None and row["cv_mean_class_acc"] == best:
            cells[0] = f"**{cells[0]}**"
        speed = row.get("inference_images_per_s")
        params = row.get("parameters")
        lines.append(
            "| "
            + " | ".join(
                [
                    row["label"],
                    row["kind"],
                    *cells,
                    f"{row['train_seconds_per_fold']:.0f}" if row["train_seconds_per_fold"] != "" else "",
                    f"{speed:.2f}" if speed not in ("", None) else "n/a",
                    f"{params:,} {'fitted' if row.get('parameter_kind') == 'fitted numbers' else ''}".strip()
                    if params not in ("", None)
                    else "n/a",
                ]
            )
            + " |"
        )
    return "\n".join(lines) + "\n"


def plot_scores(rows: Sequence[Mapping[str, Any]], path: Path, title: str) -> None:
    """Grouped bars per data set: each model's CV scores with their fold standard deviation."""
    plt = pyplot()
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    fig, axes = plt.subplots(1, len(datasets), figsize=(6.5 * len(datasets), 4.6), squeeze=False)
    width = 0.8 / len(SCORES)
    for ax, dataset in zip(axes[0], datasets, strict=True):
        models = [r for r in rows if r["dataset"] == dataset]
        positions = np.arange(len(models))
        for k, (key, label) in enumerate(SCORES):
            values = [r[f"cv_{key}"] if r[f"cv_{key}"] != "" else 0.0 for r in models]
            errors = [r[f"cv_{key}_std"] if r[f"cv_{key}_std"] != "" else 0.0 for r in models]
            ax.bar(positions + (k - 1) * width, values, width, yerr=errors, capsize=2, label=label)
        ax.set_xticks(positions, [r["label"] for r in models], rotation=30, ha="right", fontsize=8)
        ax.set_ylim(0, 1)
        ax.set_ylabel("3-fold CV score (mean ± std over folds)" if dataset == datasets[0] else "")
        ax.set_title(dataset)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].legend(loc="upper right", fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save_figure_atomic(fig, path)


def plot_examples(
    image: np.ndarray,
    mask: np.ndarray,
    predictions: Sequence[tuple[str, np.ndarray]],
    class_names: Sequence[str],
    colors: Sequence[str],
    path: Path,
    title: str,
) -> None:
    """The image, its ground truth and each model's prediction side by side (four a row)."""
    import cv2

    from flakeseg.evaluation.plots import plot_label_panels

    height, width = mask.shape
    panels = [("image", image), ("ground truth", mask)]
    for label, pred in predictions:
        if pred.shape != mask.shape:  # a model at another scale: shown at the image's size
            pred = cv2.resize(pred, (width, height), interpolation=cv2.INTER_NEAREST)
        panels.append((label, pred))
    plot_label_panels([panels[k : k + 4] for k in range(0, len(panels), 4)], class_names, colors, path, title)


def write_report(
    profile: Any, results: Sequence[Any], examples: Mapping[str, Mapping[str, Any]], out: Path, wall: float
) -> list[dict[str, Any]]:
    """Write ``compare.csv``, ``compare.md``, ``compare_scores.png`` and ``examples_<dataset>.png``."""
    rows = [result_row(r) for r in results]
    write_csv_atomic(out / "compare.csv", rows)  # columns: result_row's keys
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    history = append_invocation(
        out, wall, profile=profile.name, datasets=list(datasets), wall_s=round(wall, 1)
    )
    device = next((r.metrics["device"] for r in results if r.metrics), "unknown")
    title = f"{profile.folds}-fold CV, profile {profile.name}"
    if any(r["cv_mean_class_acc"] != "" for r in rows):
        plot_scores(rows, out / "compare_scores.png", title)
    setup = profile.inference
    lines = [
        f"# Baselines side by side: profile `{profile.name}`",
        "",
        f"`flakeseg compare --profile {profile.name} --dataset "
        f"{'all' if len(datasets) > 1 else datasets[0]} --out {out}`; device: {device}.",
        "",
        "Wall time per invocation (a rerun skips finished models):",
        "",
        *[f"- {h['started']}: {h['wall_s']:.0f} s ({', '.join(h['datasets'])})" for h in history],
        "",
        f"Every model: {profile.folds}-fold CV on the same folds of the training split, scored on the whole "
        "validation images after training (networks: after the last epoch), with the same metrics. "
        "Scores are mean ± sample standard deviation over folds. *train s / fold*: fitting time per fold. "
        f"*Inference*: one {setup.width} x {setup.height} image resampled to the model's `data.scale` and "
        f"predicted (class map, batch 1) by the fold-0 model, median of {setup.repeats} runs after "
        f"{setup.warmup} warm-up runs, torch limited to {setup.threads} threads (numpy/OpenCV/scikit-learn "
        "at their defaults). *Parameters*: network weights, or for classical models the numbers they "
        "fitted (codebooks, standardisation and classifier weights; Gaussian weights, means, covariances "
        "and priors).",
        "",
    ]
    for dataset in datasets:
        subset = [r for r in rows if r["dataset"] == dataset]
        lines += [f"## {dataset}", "", markdown_table(subset), leader_sentence(subset), ""]
        example = examples.get(dataset)
        predictions = [
            (r.model.label, r.prediction)
            for r in results
            if r.dataset == dataset and r.prediction is not None
        ]
        if example and predictions:
            names = next(r.metrics["class_names"] for r in results if r.dataset == dataset and r.metrics)
            figure = f"examples_{dataset}.png"
            plot_examples(
                example["shown_image"],
                example["shown_mask"],
                predictions,
                names,
                example["colors"],
                out / figure,
                f"{dataset} test image {example['id']} (never trained on), each model's fold-0 model",
            )
            lines += [f"![{dataset}: test image {example['id']}, ground truth, every model]({figure})", ""]
    if (out / "compare_scores.png").exists():
        lines += ["![CV scores](compare_scores.png)", ""]
    lines += [
        "## Commands",
        "",
        "Each row is one `train.py` run; this command alone reproduces it:",
        "",
        "```",
    ]
    lines += [r["command"] for r in rows]
    lines += ["```", ""]
    write_text_atomic(out / "compare.md", "\n".join(lines))
    return rows
