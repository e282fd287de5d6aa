"""The report of ``flakeseg leaderboard``: ``leaderboard.md``, ``leaderboard.json`` and a plot.

It works on plain rows (:func:`flakeseg.studies.leaderboard.board_row`), so it is tested on made-up
results without training anything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from flakeseg.utils.files import append_invocation, write_json_atomic, write_text_atomic
from flakeseg.utils.plotting import pyplot, save_figure_atomic

DATASET_LABELS = {"mos2": "MoS2", "graphene": "graphene"}


def board_json(results: Sequence[Any]) -> dict[str, dict[str, dict[str, dict[str, Any]]]]:
    """``{dataset: {protocol: {model: row}}}`` of the jobs that finished."""
    board: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
    for result in results:
        if result.row is not None:
            board.setdefault(result.dataset, {}).setdefault(result.protocol, {})[result.model.name] = (
                result.row
            )
    return board


def _why(error: str) -> str:
    return error if error.startswith("not run") else f"failed: {error}"


def _number(value: Any, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def markdown_tables(results: Sequence[Any], labels: Mapping[str, str]) -> list[str]:
    """One table per (data set, protocol), best CV mean per-class accuracy in bold."""
    lines: list[str] = []
    board = board_json(results)
    failed = {(r.dataset, r.protocol, r.model.name): r.error for r in results if r.error}
    for dataset, protocols in board.items():
        for protocol, rows in protocols.items():
            lines += [
                f"### {DATASET_LABELS.get(dataset, dataset)}, `protocol={protocol}`",
                "",
                "| model | kind | CV mean per-class acc | pooled macro precision | mean IoU "
                "| test region acc | train s |",
                "| --- | --- | --- | --- | --- | --- | --- |",
            ]
            best = max(rows.values(), key=lambda r: r["cv/mean_class_acc"])["cv/mean_class_acc"]
            best_precision = max(r["cv/macro_precision"] for r in rows.values())
            for name, row in rows.items():
                acc = f"{row['cv/mean_class_acc']:.3f} ± {row['cv/mean_class_acc_std']:.3f}"
                precision = _number(row["cv/macro_precision"])
                lines.append(
                    f"| {labels.get(name, name)} | {row['kind']} | "
                    f"{f'**{acc}**' if row['cv/mean_class_acc'] == best else acc} | "
                    f"{f'**{precision}**' if row['cv/macro_precision'] == best_precision else precision} | "
                    f"{_number(row['cv/mean_iou'])} | {_number(row['test/region_accuracy'])} | "
                    f"{row['train_s']:.0f} |"
                )
            lines += [
                f"| {labels.get(m, m)} | {_why(error)} | | | | | |"
                for (d, p, m), error in failed.items()
                if (d, p) == (dataset, protocol)
            ]
            lines.append("")
    return lines


def plot_board(board: Mapping[str, Any], labels: Mapping[str, str], path: Path) -> None:
    """Bars of CV mean per-class accuracy (± fold std) and pooled macro precision per table."""
    plt = pyplot()
    tables = [(d, p, rows) for d, protocols in board.items() for p, rows in protocols.items()]
    if not tables:
        return
    fig, axes = plt.subplots(1, len(tables), figsize=(4.6 * len(tables), 4.2), squeeze=False)
    for ax, (dataset, protocol, rows) in zip(axes[0], tables, strict=True):
        names = list(rows)
        x = range(len(names))
        acc = [rows[n]["cv/mean_class_acc"] for n in names]
        std = [rows[n]["cv/mean_class_acc_std"] for n in names]
        precision = [rows[n]["cv/macro_precision"] for n in names]
        ax.bar([i - 0.2 for i in x], acc, 0.4, yerr=std, capsize=3, label="mean per-class acc (± fold std)")
        ax.bar([i + 0.2 for i in x], precision, 0.4, label="pooled macro precision")
        ax.set_xticks(list(x), [labels.get(n, n) for n in names], rotation=35, ha="right", fontsize=8)
        ax.set_ylim(0, 1)
        ax.set_title(f"{DATASET_LABELS.get(dataset, dataset)}, protocol={protocol}", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    save_figure_atomic(fig, path)


def write_report(
    profile: Any, results: Sequence[Any], out: Path, wall_seconds: float, log_invocation: bool = True
) -> Path:
    """``leaderboard.md``, ``leaderboard.json``, ``leaderboard.png`` and (``log_invocation``, once the
    run is over) its line in ``invocations.json``, in ``out``."""
    labels = {m.name: m.label for m in profile.models}
    board = board_json(results)
    write_json_atomic(out / "leaderboard.json", board)
    plot_board(board, labels, out / "leaderboard.png")
    if log_invocation:
        append_invocation(out, wall_seconds, profile=profile.name, wall_seconds=round(wall_seconds, 1))
    lines = [
        f"# Leaderboard (`flakeseg leaderboard --profile {profile.name}`)",
        "",
        f"{profile.folds}-fold CV x {profile.repeats} repeat(s) per row: CV mean per-class accuracy is the "
        "mean ± std over every fold of every repeat; macro precision is that of the pooled out-of-fold "
        "confusion matrix; test region accuracy is the fold models' ensemble on the held-out test split "
        "with the row's own evaluation steps (— under `protocol=upstream`, whose CV pool holds the test "
        f"images); train s sums the folds' training. This invocation: {wall_seconds:.0f} s wall so far "
        "(every finished invocation is logged in invocations.json).",
        "",
        *markdown_tables(results, labels),
        "## Commands",
        "",
        *[f"- {r.dataset} / {r.protocol} / {r.model.name}: `{r.command}`" for r in results],
        "",
    ]
    path = out / "leaderboard.md"
    write_text_atomic(path, "\n".join(lines))
    return path
