"""How long a person waits for a mistake's one line, and for ``--help``: every bad invocation of
``tests/test_cli_errors.py`` (the table the suite checks for one line and its exit status) and every
subcommand's ``--help``, each as a new ``flakeseg`` process, as a user types it (interpreter start and
imports included). The target (the screening-door issue): every one under 2 s, every ``--help``
under 1 s.

Run from the repository root: ``uv run python benchmarks/error_latency.py --out docs/results/bench_cpu``.
Writes ``error_latency.md`` and ``error_latency.json``. The tests do not time anything; this does.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from machine import machine  # noqa: E402
from tests.test_cli_errors import BAD_INVOCATIONS, lay_out_mistake_files  # noqa: E402

from flakeseg.cli import COMMANDS  # noqa: E402

ERROR_LIMIT_S, HELP_LIMIT_S = 2.0, 1.0


def timed(argv: list[str], cwd: Path, repeats: int) -> dict:
    """The median wall seconds of ``repeats`` runs, the exit status and the number of stderr lines."""
    exe = shutil.which("flakeseg") or str(Path(sys.executable).with_name("flakeseg"))
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        run = subprocess.run([exe, *argv], cwd=cwd, capture_output=True, text=True)
        seconds.append(time.perf_counter() - start)
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    return {
        "argv": " ".join(argv),
        "seconds": round(statistics.median(seconds), 3),
        "exit": run.returncode,
        "stderr_lines": len(lines),
        "says": lines[0] if len(lines) == 1 else "",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for error_latency.md and .json")
    parser.add_argument("--repeats", type=int, default=3, help="runs per command line (median; 3)")
    args = parser.parse_args()
    folder = lay_out_mistake_files(Path(tempfile.mkdtemp(prefix="flakeseg-errors-")))
    started = time.perf_counter()
    errors = [timed(list(argv), folder, args.repeats) for argv, _, _ in BAD_INVOCATIONS]
    helps = [timed([name, "--help"], folder, args.repeats) for name in COMMANDS]
    shutil.rmtree(folder, ignore_errors=True)
    slowest = sorted(errors, key=lambda row: -row["seconds"])
    result = {
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "repeats": args.repeats,
        "wall_s": round(time.perf_counter() - started, 1),
        "errors": errors,
        "helps": helps,
        "errors_over_limit": sum(row["seconds"] > ERROR_LIMIT_S for row in errors),
        "helps_over_limit": sum(row["seconds"] > HELP_LIMIT_S for row in helps),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "error_latency.json").write_text(json.dumps(result, indent=1) + "\n")
    median = statistics.median(row["seconds"] for row in errors)
    host = result["machine"]
    where = f"{host['cpu']}, {host['cores']} cores, Python {host['python']}"
    lines = [
        "# Waiting for a mistake's one line, and for --help",
        "",
        f"`python benchmarks/error_latency.py --out {args.out}`, {result['date']}, {where}; "
        f"each command line run {args.repeats} times as a new `flakeseg` process (median), "
        f"{result['wall_s']} s in all. The command lines: `BAD_INVOCATIONS` of `tests/test_cli_errors.py`.",
        "",
        f"- {len(errors)} bad invocations: median {median:.2f} s, slowest {slowest[0]['seconds']:.2f} s; "
        f"over {ERROR_LIMIT_S:g} s: {result['errors_over_limit']}.",
        f"- {len(helps)} `--help`: slowest {max(row['seconds'] for row in helps):.2f} s; over "
        f"{HELP_LIMIT_S:g} s: {result['helps_over_limit']}.",
        "",
        "| slowest bad invocations | s | exit | stderr lines |",
        "| --- | --- | --- | --- |",
        *(
            f"| `flakeseg {r['argv']}` | {r['seconds']:.2f} | {r['exit']} | {r['stderr_lines']} |"
            for r in slowest[:10]
        ),
        "",
        "| `--help` | s |",
        "| --- | --- |",
        *(f"| `flakeseg {r['argv']}` | {r['seconds']:.2f} |" for r in helps),
        "",
    ]
    (args.out / "error_latency.md").write_text("\n".join(lines))
    print("\n".join(lines[4:7]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
