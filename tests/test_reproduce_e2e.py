"""The reproduction pipeline and multirun resume, end to end on the real data at micro size."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from flakeseg.studies.reproduce import TEST_OUTPUTS
from tests.conftest import REPO_ROOT, TINY


def _env(data_root):
    return {**os.environ, "FLAKESEG_DATA": str(data_root), "HYDRA_FULL_ERROR": "0"}


@pytest.mark.slow
def test_reproduce_micro_writes_every_output_for_both_data_sets(data_root, tmp_path):
    out = tmp_path / "reproduce"
    command = [
        sys.executable,
        "-m",
        "flakeseg.studies.reproduce",
        "--profile",
        "micro",
        "--dataset",
        "all",
        "--out",
        str(out),
    ]
    run = subprocess.run(
        command, cwd=REPO_ROOT, env=_env(data_root), capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    for dataset in ("mos2", "graphene"):
        folder = out / dataset
        for name in ["table1.md", "table1.csv", "report.md", "grid.csv", *TEST_OUTPUTS]:
            assert (folder / name).is_file() and (folder / name).stat().st_size > 0, f"{dataset}/{name}"
        table = list(csv.DictReader((folder / "table1.csv").open()))
        assert [(r["augment"], r["loss"]) for r in table] == [
            ("none", "weighted_ce"),
            ("contrast", "weighted_ce"),
        ]
        assert all(0 <= float(r["cv_mean_class_acc"]) <= 1 and r["epochs"] in ("1", "2") for r in table)
        grid = list(csv.DictReader((folder / "grid.csv").open()))
        assert len(grid) == 2 * 2  # 2 cells x 2 epoch budgets, from 2 runs
        metrics = json.loads((folder / "test_metrics.json").read_text())
        assert metrics["complete"] and 0 <= metrics["test/region_accuracy"] <= 1
        assert set(metrics["test/curves"]) == {"monolayer", "bilayer"}
        assert metrics["test_ids"] and not set(metrics["test_ids"]) & set(metrics["train_ids"])
        regions = list(csv.DictReader((folder / "regions.csv").open()))
        assert len(regions) == metrics["test/regions"]
        assert all(int(r["area_px"]) >= metrics["test/region_min_area_px"] for r in regions)
        report = (folder / "report.md").read_text()
        assert "Table 1" in report and "region accuracy" in report
        assert "train.py -m" in report and "Device:" in report
    assert "0.789" in (out / "mos2" / "table1.md").read_text()  # the paper's best cell beside ours
    assert (out / "selected" / "mos2-contrast-weighted_ce.yaml").is_file()

    # a rerun finds everything complete and trains nothing
    before = (out / "mos2" / "test" / "contrast-weighted_ce" / "test_metrics.json").stat().st_mtime_ns
    again = subprocess.run(
        command, cwd=REPO_ROOT, env=_env(data_root), capture_output=True, text=True, timeout=600
    )
    assert again.returncode == 0
    assert "nothing to train" in again.stdout + again.stderr
    assert (out / "mos2" / "test" / "contrast-weighted_ce" / "test_metrics.json").stat().st_mtime_ns == before


def _multirun(data_root, sweep_dir, *extra):
    return [
        sys.executable,
        "train.py",
        "-m",
        *TINY,
        f"data.root={data_root}",
        "optim.lr=1.0e-3,2.0e-3",
        f"hydra.sweep.dir={sweep_dir}",
        *extra,
    ]


@pytest.mark.slow
def test_killed_sweep_resumes_and_skips_finished_jobs(data_root, tmp_path):
    sweep = tmp_path / "sweep"
    command = _multirun(data_root, sweep)
    proc = subprocess.Popen(
        command,
        cwd=REPO_ROOT,
        env=_env(data_root),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 300
    while not (sweep / "1").exists():  # job 1 starts once job 0 is complete
        assert proc.poll() is None and time.time() < deadline, "sweep ended before job 1 started"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    first = json.loads((sweep / "0" / "metrics.json").read_text())
    assert first["complete"]
    stamp = (sweep / "0" / "metrics.json").stat().st_mtime_ns
    killed = sweep / "1" / "metrics.json"
    assert not killed.exists() or not json.loads(killed.read_text())["complete"]

    rerun = subprocess.run(
        command, cwd=REPO_ROOT, env=_env(data_root), capture_output=True, text=True, timeout=300
    )
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert (sweep / "0" / "metrics.json").stat().st_mtime_ns == stamp  # not retrained
    assert json.loads((sweep / "1" / "metrics.json").read_text())["complete"]
    assert json.loads((sweep / "1" / "metrics.json").read_text())["config"]["optim"]["lr"] == 2.0e-3


@pytest.mark.slow
def test_queue_launcher_runs_jobs_in_processes_and_reports_failures(data_root, tmp_path):
    sweep = tmp_path / "queue"
    command = _multirun(data_root, sweep, "hydra/launcher=queue", "hydra.launcher.devices=2")
    command[command.index("optim.lr=1.0e-3,2.0e-3")] = "optim.lr=1.0e-3,-1"
    run = subprocess.run(
        command, cwd=REPO_ROOT, env=_env(data_root), capture_output=True, text=True, timeout=300
    )
    output = run.stdout + run.stderr
    assert run.returncode != 0  # one job failed
    assert json.loads((sweep / "0" / "metrics.json").read_text())["complete"]  # the other one finished
    assert "1 of 2 jobs did not finish" in output and "optim.lr: must be > 0, got -1.0" in output
    assert "Traceback" not in output and run.stderr.rstrip().endswith(f"see {sweep}/sweep_summary.json")
    assert (sweep / "0" / "queue.log").is_file()
    # rerun: the finished job is not started again, the failed one is retried (and fails again)
    rerun = subprocess.run(
        command, cwd=REPO_ROOT, env=_env(data_root), capture_output=True, text=True, timeout=300
    )
    assert "#0 : complete, skipped" in rerun.stdout + rerun.stderr
    assert "1 of 2 jobs did not finish" in rerun.stdout + rerun.stderr
