"""The report of ``flakeseg fewshot``: ``fewshot.md``, ``fewshot.json`` and ``fewshot.png``.

It works on plain results (:class:`flakeseg.studies.fewshot.FewshotRun`), so it is tested on made-up
scores without training anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from flakeseg.utils.files import append_invocation, write_json_atomic, write_text_atomic
from flakeseg.utils.plotting import pyplot, save_figure_atomic

#: the metrics of every (arm, k) cell, as test_metrics.json names them
METRICS = (
    "heldout/flake_f1_monolayer_device",
    "heldout/flake_f1_bilayer_device",
    "heldout/mean_class_acc",
    "test/flake_f1_monolayer_device",
    "test/flake_f1_bilayer_device",
    "test/region_accuracy",
    "test/macro_precision",
    "test/mean_class_acc",
)
LABELS = {
    "heldout/flake_f1_monolayer_device": "held-out flake F1, monolayer >= 600 px",
    "heldout/flake_f1_bilayer_device": "held-out flake F1, bilayer >= 600 px",
    "heldout/mean_class_acc": "held-out mean per-class accuracy",
    "test/flake_f1_monolayer_device": "test flake F1, monolayer >= 600 px",
    "test/flake_f1_bilayer_device": "test flake F1, bilayer >= 600 px",
    "test/region_accuracy": "test region accuracy",
    "test/macro_precision": "test macro precision",
    "test/mean_class_acc": "test mean per-class accuracy",
}


def fewshot_json(results: Sequence[Any]) -> dict[str, dict[str, dict[str, float | int]]]:
    """``{arm: {k: {metric: mean over draws, metric_std: std over draws, ..., "draws": n}}}`` of the
    runs that finished (the std of one draw is 0)."""
    cells: dict[str, dict[str, list[dict[str, float]]]] = {}
    for result in results:
        if result.scores is not None:
            cells.setdefault(result.arm, {}).setdefault(result.k, []).append(result.scores)
    table: dict[str, dict[str, dict[str, float | int]]] = {}
    for arm, by_k in cells.items():
        for k, runs in by_k.items():
            row: dict[str, float | int] = {}
            for key in (*METRICS, "train_s"):
                values = np.array([r.get(key, np.nan) for r in runs], dtype=float)  # older runs: no flakes
                row[key] = float(values.mean())
                row[f"{key}_std"] = float(values.std())
            row["draws"] = len(runs)
            table.setdefault(arm, {})[k] = row
    return table


def _k_position(k: str, all_size: int) -> float:
    return float(all_size if k == "all" else int(k))


def plot_fewshot(table: dict[str, Any], ks: Sequence[str], all_size: int, path: Path) -> None:
    """Each metric against k (log axis, ``all`` at the training split's size): mean and ± std per arm."""
    plt = pyplot()
    if not table:
        return
    cols = min(4, len(METRICS))  # rows of four: one long row of eight shrank every panel on a page
    rows = -(-len(METRICS) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.4 * cols, 3.8 * rows), squeeze=False)
    for ax in axes.flat[len(METRICS) :]:
        ax.set_visible(False)
    for ax, metric in zip(axes.flat, METRICS, strict=False):
        for i, (arm, by_k) in enumerate(table.items()):
            shown = [k for k in ks if k in by_k]
            # arms nudged apart along the log axis, so equal scores at one k stay visible side by side
            nudge = 1 + 0.04 * (i - (len(table) - 1) / 2)
            x = np.array([_k_position(k, all_size) for k in shown]) * nudge
            mean = np.array([by_k[k][metric] for k in shown])
            std = np.array([by_k[k][f"{metric}_std"] for k in shown])
            bars = ax.errorbar(x, mean, yerr=std, marker="o", capsize=3, label=arm)
            ax.fill_between(x, mean - std, mean + std, color=bars.lines[0].get_color(), alpha=0.2)
        ax.set_xscale("log")
        ticks = [_k_position(k, all_size) for k in ks]
        ax.set_xticks(ticks, [f"all ({all_size})" if k == "all" else k for k in ks])
        ax.minorticks_off()
        ax.set_xlabel("labelled training images k")
        ax.set_ylim(0, 1)
        ax.set_title(LABELS[metric], fontsize=10)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8, loc="best", title="mean ± std over draws", title_fontsize=7)
    fig.tight_layout()
    save_figure_atomic(fig, path)


def _cell(row: dict[str, Any] | None, key: str) -> str:
    """``mean ± std``; ``—`` where no run of the row has the score (no held-out images for ``all``)."""
    if row is None or not np.isfinite(row[key]):
        return "—"
    return f"{row[key]:.3f} ± {row[f'{key}_std']:.3f}"


def write_report(
    profile: Any, results: Sequence[Any], out: Path, wall_seconds: float, log_invocation: bool = True
) -> Path:
    """``fewshot.md``, ``fewshot.json``, ``fewshot.png`` and (``log_invocation``, once the run is over)
    its line in ``invocations.json``, in ``out``."""
    table = fewshot_json(results)
    write_json_atomic(out / "fewshot.json", table)
    all_size = max((len(r.ids) for r in results if r.k == "all"), default=0) or max(
        (int(k) for k in profile.ks if k != "all"), default=1
    )
    plot_fewshot(table, profile.ks, all_size, out / "fewshot.png")
    if log_invocation:
        append_invocation(out, wall_seconds, profile=profile.name, wall_seconds=round(wall_seconds, 1))
    datasets = sorted({r.dataset for r in results}) or profile.datasets
    lines = [
        f"# Few-shot curve (`flakeseg fewshot --profile {profile.name}`)",
        "",
        f"Data set standing in for a new material: {', '.join(datasets)}. For each k, {profile.draws} random "
        "sets of k training images"
        + (" drawn among those whose labels show a flake" if profile.pool == "with_flakes" else "")
        + " (one set for `all`: every training image), the same for every arm; each run trains on its set "
        "with the overrides below and is scored on the training images it did not draw (held-out: what "
        "a choice between arms is made on; none for `all`) and on the fixed test split (reported; pixel "
        "scores over all test pixels, region accuracy over ground-truth flakes). Flakes as `flakeseg "
        "evaluate` counts them. Cells: mean ± std over draws. "
        f"This invocation: {wall_seconds:.0f} s wall so far.",
        "",
        f"- common overrides: `{' '.join(profile.common)}`",
        *[f"- arm `{arm}`: `{' '.join(o) or '(none: random weights)'}`" for arm, o in profile.arms.items()],
        "",
        "| k | arm | " + " | ".join(LABELS[m] for m in METRICS) + " | train s | draws |",
        "| --- | --- |" + " --- |" * len(METRICS) + " --- | --- |",
    ]
    for k in profile.ks:
        for arm in profile.arms:
            row = table.get(arm, {}).get(k)
            lines.append(
                f"| {k} | {arm} | "
                + " | ".join(_cell(row, m) for m in METRICS)
                + f" | {format(row['train_s'], '.0f') if row else '—'} | {row['draws'] if row else 0} |"
            )
    failed = [r for r in results if r.error]
    if failed:
        lines += ["", "Failed runs:", *[f"- {r.arm}, k={r.k}, draw {r.draw}: {r.error}" for r in failed]]
    lines += [
        "",
        "## Commands",
        "",
        *[f"- {r.arm}, k={r.k}, draw {r.draw}: `{r.command}`" for r in results],
        "",
    ]
    path = out / "fewshot.md"
    write_text_atomic(path, "\n".join(lines))
    return path
