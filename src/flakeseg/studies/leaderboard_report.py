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
#: how the report marks a row kept from the leaderboard.json of an earlier invocation
CARRIED = "earlier invocation"


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


def _job(result: Any) -> str:
    carried = f" ({CARRIED})" if result.carried else ""
    return f"{result.dataset} / {result.protocol} / {result.model.name}{carried}"


def _number(value: Any, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def flake_names(rows: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The flake classes a table's rows were scored on (from their ``cv/flake_f1_<name>`` keys)."""
    names: list[str] = []
    for row in rows.values():
        for key in row:
            if key.startswith("cv/flake_f1_") and not key.endswith(("_device", "_iou25")):
                name = key.removeprefix("cv/flake_f1_")
                if name not in names:
                    names.append(name)
    return names


def markdown_tables(results: Sequence[Any], labels: Mapping[str, str]) -> list[str]:
    """One table per (data set, protocol): flake F1 and AP first, best of each column in bold."""
    lines: list[str] = []
    board = board_json(results)
    failed = {(r.dataset, r.protocol, r.model.name): r.error for r in results if r.error}
    carried = {(r.dataset, r.protocol, r.model.name) for r in results if r.carried}
    for dataset, protocols in board.items():
        for protocol, rows in protocols.items():
            flakes = flake_names(rows)
            columns = (
                [(f"cv/flake_f1_{n}_device", f"flake F1 {n} >= 600 px") for n in flakes]
                + [(f"cv/flake_ap50_{n}", f"AP50 {n}") for n in flakes]
                + [(f"cv/flake_f1_{n}", f"flake F1 {n} >= 100 px") for n in flakes]
                + [
                    ("cv/mean_class_acc", "CV mean per-class acc"),
                    ("cv/macro_precision", "pooled macro precision"),
                    ("cv/mean_iou", "mean IoU"),
                    ("test/region_accuracy", "test region acc (paper's measure)"),
                ]
            )
            lines += [
                f"### {DATASET_LABELS.get(dataset, dataset)}, `protocol={protocol}`",
                "",
                "| model | kind | " + " | ".join(label for _, label in columns) + " | train s |",
                "| --- | --- |" + " --- |" * len(columns) + " --- |",
            ]
            best = {
                key: max((r[key] for r in rows.values() if _finite(r.get(key))), default=None)
                for key, _ in columns
            }
            for name, row in rows.items():
                cells = []
                for key, _ in columns:
                    text = _number(row.get(key) if _finite(row.get(key)) else None)
                    if key == "cv/mean_class_acc":
                        text += f" ± {row['cv/mean_class_acc_std']:.3f}"
                    cells.append(f"**{text}**" if _finite(row.get(key)) and row[key] == best[key] else text)
                mark = f" ({CARRIED})" if (dataset, protocol, name) in carried else ""
                lines.append(
                    f"| {labels.get(name, name)}{mark} | {row['kind']} | "
                    + " | ".join(cells)
                    + f" | {row['train_s']:.0f} |"
                )
            lines += [
                f"| {labels.get(m, m)} | {_why(error)} |" + " |" * (len(columns) + 1)
                for (d, p, m), error in failed.items()
                if (d, p) == (dataset, protocol)
            ]
            lines.append("")
    return lines


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and value == value


def plot_board(board: Mapping[str, Any], labels: Mapping[str, str], path: Path) -> None:
    """Bars per table: device-sized flake F1 per flake class, CV mean per-class accuracy and pooled
    macro precision."""
    plt = pyplot()
    tables = [(d, p, rows) for d, protocols in board.items() for p, rows in protocols.items()]
    if not tables:
        return
    fig, axes = plt.subplots(1, len(tables), figsize=(5.2 * len(tables), 4.4), squeeze=False)
    for ax, (dataset, protocol, rows) in zip(axes[0], tables, strict=True):
        names = list(rows)
        series = [(f"cv/flake_f1_{n}_device", f"flake F1 {n} (>= 600 px)") for n in flake_names(rows)] + [
            ("cv/mean_class_acc", "mean per-class acc"),
            ("cv/macro_precision", "pooled macro precision"),
        ]
        width = 0.8 / len(series)
        for k, (key, label) in enumerate(series):
            values = [rows[n].get(key) if _finite(rows[n].get(key)) else 0.0 for n in names]
            ax.bar([i - 0.4 + width * (k + 0.5) for i in range(len(names))], values, width, label=label)
        ax.set_xticks(
            list(range(len(names))), [labels.get(n, n) for n in names], rotation=35, ha="right", fontsize=8
        )
        ax.set_ylim(0, 1)
        ax.set_title(f"{DATASET_LABELS.get(dataset, dataset)}, protocol={protocol}", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].legend(fontsize=7, loc="upper right")
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
        f"{profile.folds}-fold CV x {profile.repeats} repeat(s) per row. Flake F1 and AP50: predicted flakes "
        "(as `flakeseg predict` lists them: >= 100 px, confidence >= 0.5) matched one-to-one to the "
        "labelled flakes at IoU >= 0.5, on the images' stored pixels, true positives, false alarms and "
        "misses pooled out of fold over every fold of every repeat; '>= 600 px' counts device-sized "
        "flakes only (about 25 um^2 on the graphene images). A constant map scores 0 there but wins "
        "region accuracy where one class covers most flake pixels: its rows show what each number "
        "rewards. CV mean per-class accuracy is the "
        "mean ± std over every fold of every repeat; macro precision is that of the pooled out-of-fold "
        "confusion matrix; test region accuracy is the mean over the fold models on the held-out test split "
        "with the row's own evaluation steps (— under `protocol=upstream`, whose CV pool holds the test "
        f"images); train s sums the folds' training. This invocation: {wall_seconds:.0f} s wall so far "
        "(every finished invocation is logged in invocations.json)."
        + (
            f" Rows marked '{CARRIED}' were not run by it: they are kept from the leaderboard.json it "
            "found, as that invocation measured them."
            if any(r.carried for r in results)
            else ""
        ),
        "",
        *markdown_tables(results, labels),
        "## Commands",
        "",
        *[f"- {_job(r)}: `{r.command}`" for r in results],
        "",
    ]
    path = out / "leaderboard.md"
    write_text_atomic(path, "\n".join(lines))
    return path
