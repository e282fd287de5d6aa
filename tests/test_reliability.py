"""Reliability: kill and resume bitwise, corrupt checkpoints, safe loading, same seed same result."""

import json
import logging
import os
import pickle
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

from flakeseg.errors import DataError
from flakeseg.inference.checkpoint import load_checkpoint
from flakeseg.stages.cv import run_cross_validation
from flakeseg.training.random_state import capture_random_states, restore_random_states
from tests.conftest import REPO_ROOT, TINY, compose_train

#: a fold long enough (about 1 s an epoch) to be killed in the middle of its third epoch
RESUMABLE = [*TINY, "data.samples_per_image=8", "trainer.max_epochs=5", "cv.fold=0"]


def _command(data_root, run_dir, *extra):
    return [
        sys.executable,
        "train.py",
        *RESUMABLE,
        f"data.root={data_root}",
        f"hydra.run.dir={run_dir}",
        *extra,
    ]


def _train(data_root, run_dir, *extra):
    """The resumable run in this process, as ``python train.py`` runs it (the task, its one-line errors)."""
    from flakeseg.stages.task import run_task

    return run_task(
        compose_train([*RESUMABLE, f"data.root={data_root}", f"paths.output_dir={run_dir}", *extra])
    )


def _start(data_root, run_dir, **popen):
    """The resumable run in the background (its own process group unless ``popen`` says otherwise)."""
    popen = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "start_new_session": True, **popen}
    return subprocess.Popen(_command(data_root, run_dir), cwd=REPO_ROOT, **popen)


def _wait_until(reached, proc, what, timeout=240):
    """Poll ``reached()`` while ``proc`` runs; fail if it ends or ``timeout`` passes first."""
    deadline = time.time() + timeout
    while not reached():
        assert proc.poll() is None and time.time() < deadline, f"run ended before {what}"
        time.sleep(0.02)


def _weights(run_dir):
    return load_checkpoint(run_dir / "fold_0" / "checkpoints" / "last.ckpt")["state_dict"]


def _epochs_done(path):
    try:
        return load_checkpoint(path)["epoch"] + 1
    except DataError:  # not there yet
        return 0


@pytest.mark.slow
def test_kill_9_in_epoch_3_and_resume_gives_bitwise_the_uninterrupted_weights(data_root, tmp_path, caplog):
    straight = tmp_path / "straight"
    _train(data_root, straight)

    killed = tmp_path / "killed"
    proc = _start(data_root, killed)
    last = killed / "fold_0" / "checkpoints" / "last.ckpt"
    _wait_until(lambda: _epochs_done(last) >= 2, proc, "epoch 3")  # two epochs done: in epoch 3
    time.sleep(random.uniform(0.0, 0.3))  # a random step of epoch 3
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert _epochs_done(last) < 5
    assert not json.loads((killed / "metrics.json").read_text())["complete"]
    steps = _logged_steps(killed / "csv" / "fold_0" / "metrics.csv")
    assert steps == list(range(len(steps))) and len(steps) >= 12  # the CSV log lost no completed step

    with caplog.at_level(logging.INFO):
        _train(data_root, killed)
    assert "resuming from" in caplog.text
    a, b = _weights(straight), _weights(killed)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed weights differ from the uninterrupted run"
    fold_a = json.loads((straight / "metrics.json").read_text())["folds"][0]
    fold_b = json.loads((killed / "metrics.json").read_text())["folds"][0]
    assert fold_a["val/mean_class_acc"] == fold_b["val/mean_class_acc"]
    assert [h["epoch"] for h in fold_b["val_history"]] == [1, 2, 3, 4, 5]  # curves survive the resume


def _logged_steps(log_file):
    import csv as csv_module

    try:
        rows = list(csv_module.DictReader(log_file.open()))
    except OSError:
        return []
    return sorted({int(r["step"]) for r in rows if r.get("train/loss_step")})


@pytest.mark.slow
def test_truncated_last_checkpoint_is_one_line_error_never_a_silent_restart(data_root, tmp_path, capsys):
    run = tmp_path / "run"
    _train(data_root, run, "trainer.max_epochs=2")
    metrics = json.loads((run / "metrics.json").read_text())
    metrics["complete"] = False  # as if killed after the last checkpoint
    metrics["folds"] = []
    (run / "metrics.json").write_text(json.dumps(metrics))
    last = run / "fold_0" / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        _train(data_root, run, "trainer.max_epochs=2")
    assert exit_info.value.code == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, errors  # one plain line, no log prefix
    assert str(last) in errors[0] and "truncated or corrupt" in errors[0]
    assert not json.loads((run / "metrics.json").read_text())["complete"]


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_checkpoint_with_pickled_code_is_refused_and_runs_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.ckpt"
    with open(path, "wb") as handle:
        pickle.dump({"state_dict": {}, "extra": _Payload()}, handle)
    torch.save({"state_dict": {}, "extra": _Payload()}, tmp_path / "evil2.ckpt")
    for bad in (path, tmp_path / "evil2.ckpt"):
        with pytest.raises(DataError) as info:
            load_checkpoint(bad)
        assert str(bad) in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "pwned").exists()


def test_our_checkpoints_and_random_states_load_weights_only(tmp_path):
    states = capture_random_states()
    torch.save({"random_states": states, "val_history": [{"epoch": 1, "val/x": 0.5}]}, tmp_path / "ok.ckpt")
    loaded = load_checkpoint(tmp_path / "ok.ckpt")
    expected = [torch.rand(3), random.random()]
    restore_random_states(loaded["random_states"])
    assert torch.equal(torch.rand(3), expected[0]) and random.random() == expected[1]


@pytest.mark.slow
def test_same_seed_gives_bitwise_the_same_weights_and_metrics(tiny_cfg, tmp_path):
    first = tiny_cfg("cv.fold=0", "trainer.max_epochs=2")
    first.paths.output_dir = str(tmp_path / "a")
    second = tiny_cfg("cv.fold=0", "trainer.max_epochs=2")
    second.paths.output_dir = str(tmp_path / "b")
    a, b = run_cross_validation(first), run_cross_validation(second)
    assert a["folds"][0]["val/confmat"] == b["folds"][0]["val/confmat"]
    assert a["cv/mean_class_acc"] == b["cv/mean_class_acc"]
    wa, wb = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    other = tiny_cfg("cv.fold=0", "trainer.max_epochs=2", "seed=7")
    other.paths.output_dir = str(tmp_path / "c")
    run_cross_validation(other)
    assert not all(torch.equal(wa[k], v) for k, v in _weights(tmp_path / "c").items())


@pytest.mark.slow
def test_sigterm_writes_a_checkpoint_and_exits_143(data_root, tmp_path):
    run = tmp_path / "run"
    proc = _start(
        data_root, run, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=False
    )
    last = run / "fold_0" / "checkpoints" / "last.ckpt"
    _wait_until(lambda: _epochs_done(last) >= 1, proc, "the first epoch")
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 143, output[-2000:]
    assert "interrupted: fold 0: stopped by SIGTERM" in output
    saved = load_checkpoint(run / "fold_0" / "checkpoints" / "interrupted.ckpt")
    assert all(torch.isfinite(v).all() for v in saved["state_dict"].values())
    assert json.loads((run / "status.json").read_text())["state"] == "interrupted"


@pytest.mark.slow
def test_non_finite_loss_stops_at_once_with_fold_epoch_step_and_no_checkpoint(tiny_cfg, tmp_path):
    from flakeseg.errors import NonFiniteError

    # inputs divided by a std of 1e-40 overflow float32: the first loss is not finite
    cfg = tiny_cfg("cv.fold=1", "data.std=[1.0e-40,1.0e-40,1.0e-40]", "trainer.max_epochs=3")
    with pytest.raises(NonFiniteError, match=r"fold 1: loss is (nan|inf) at epoch 1, step \d+ \(batch 0"):
        run_cross_validation(cfg)
    assert not list((tmp_path / "fold_1").rglob("*.ckpt"))


def test_module_refuses_to_checkpoint_non_finite_weights():
    from flakeseg.errors import NonFiniteError
    from flakeseg.training.module import FlakeSegModule

    module = FlakeSegModule(
        model={"name": "unet_paper", "base_channels": 4},
        class_names=["a", "b"],
        loss={"name": "ce"},
        optim={"name": "adam", "lr": 1e-3},
    )
    state = module.state_dict()
    next(iter(v for v in state.values() if v.is_floating_point())).view(-1)[0] = float("nan")
    with pytest.raises(NonFiniteError, match="not finite; refusing to write a checkpoint"):
        module.on_save_checkpoint({"state_dict": state})


@pytest.mark.slow
def test_six_job_sweep_with_two_failures_finishes_the_rest_and_lists_both(data_root, tmp_path):
    sweep = tmp_path / "sweep"
    command = [
        sys.executable,
        "train.py",
        "-m",
        *TINY,
        f"data.root={data_root}",
        "cv.fold=0,1",
        "optim.lr=1.0e-3,2.0e-3,-1",
        f"hydra.sweep.dir={sweep}",
    ]
    run = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=400)
    output = run.stdout + run.stderr
    assert run.returncode != 0
    summary = json.loads((sweep / "sweep_summary.json").read_text())
    states = {job["job"]: job["state"] for job in summary["jobs"]}
    assert states == {0: "done", 1: "done", 2: "failed", 3: "done", 4: "done", 5: "failed"}
    assert summary["failed"] == 2 and "2 of 6 jobs did not finish" in output
    # the sweep ends in one line pointing at the list, not the first failed job's traceback
    assert "Traceback" not in output
    assert (
        run.stderr.rstrip().splitlines()[-1]
        == f"error: 2 of 6 jobs did not finish; see {sweep}/sweep_summary.json"
    )
    for job in range(6):
        status = json.loads((sweep / str(job) / "status.json").read_text())
        assert status["state"] == states[job]
        if status["state"] == "failed":
            assert status["error"] == "optim.lr: must be > 0, got -1.0"
        else:  # one metrics file per job, each with its own job's values
            metrics = json.loads((sweep / str(job) / "metrics.json").read_text())
            assert metrics["complete"] and "cv/mean_class_acc" in metrics
            assert metrics["config"]["optim"]["lr"] == [1.0e-3, 2.0e-3][job % 3]
            assert metrics["config"]["cv"]["fold"] == job // 3


def test_sweep_summary_marks_interrupted_and_crashed_jobs(tmp_path):
    from hydra.core.utils import JobReturn, JobStatus

    from hydra_plugins.flakeseg_queue_launcher.queue_launcher import summarize_sweep

    returns = []
    for job, (state, status) in enumerate(
        [("done", JobStatus.COMPLETED), ("interrupted", JobStatus.FAILED), ("running", JobStatus.FAILED)]
    ):
        folder = tmp_path / str(job)
        folder.mkdir()
        (folder / "status.json").write_text(json.dumps({"state": state, "error": "" if job == 0 else "boom"}))
        ret = JobReturn(overrides=[f"seed={job}"], working_dir=str(folder), status=status)
        ret._return_value = RuntimeError("exit")
        returns.append(ret)
    problems = summarize_sweep(tmp_path, returns, 0)
    summary = json.loads((tmp_path / "sweep_summary.json").read_text())
    assert [j["state"] for j in summary["jobs"]] == ["done", "interrupted", "failed"]  # killed while running
    assert len(problems) == 2 and "interrupted: boom" in problems[0]


def test_names_that_would_leave_the_run_folder_are_refused_before_anything_is_written(data_root, tmp_path):
    from flakeseg.stages.config_checks import path_name_problems
    from tests.conftest import compose_train

    for override in ("task_name=/tmp/escaped", "logger.name=../../x", "data.name=a/b"):
        problems = path_name_problems(compose_train([override]))
        assert len(problems) == 1 and problems[0].startswith(override.split("=")[0] + ":")
    assert path_name_problems(compose_train(["task_name=my-run_2", "data=graphene"])) == []
    for override in ("task_name=../escaped",):  # through train.py: refused before Hydra makes a folder
        run = subprocess.run(
            [sys.executable, str(REPO_ROOT / "train.py"), override, f"data.root={data_root}"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        errors = [ln for ln in (run.stdout + run.stderr).splitlines() if "error:" in ln]
        assert run.returncode == 1 and len(errors) == 1, run.stderr[-1500:]
        assert override.split("=")[0] + ":" in errors[0] and "not a plain name" in errors[0]
        assert list(tmp_path.iterdir()) == [], f"{override} wrote {list(tmp_path.iterdir())}"


def test_importing_the_augmentations_asks_no_server(monkeypatch):
    """albumentations asks PyPI for a newer version at import unless told not to; flakeseg tells it."""
    import importlib
    import urllib.request

    import albumentations

    import flakeseg

    assert flakeseg.__version__
    asked: list[tuple] = []
    monkeypatch.setattr(urllib.request.OpenerDirector, "open", lambda self, *args, **kw: asked.append(args))
    importlib.reload(albumentations)  # its import-time code, run again with this process's environment
    assert asked == []


@pytest.mark.slow
@pytest.mark.parametrize("logger", ["csv", "wandb"])
def test_training_starts_within_10_s_without_network(logger, tiny_cfg, tmp_path, monkeypatch, caplog):
    """With W&B credentials but no reachable server (or no W&B at all), the first step comes quickly."""
    import pytorch_lightning as pl

    from flakeseg.stages import cv

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens: like no network
    first_step: list[float] = []

    class FirstStep(pl.Callback):
        def on_train_batch_start(self, *args):
            first_step.append(first_step[0] if first_step else time.perf_counter())

    build = cv.build_trainer
    monkeypatch.setattr(
        cv,
        "build_trainer",
        lambda *a, extra_callbacks=(), **k: build(*a, extra_callbacks=[*extra_callbacks, FirstStep()], **k),
    )
    cfg = tiny_cfg("cv.fold=0", f"logger={logger}")
    start = time.perf_counter()
    with caplog.at_level(logging.INFO):
        run_cross_validation(cfg)
    assert first_step and first_step[0] - start < 10.0
    if logger == "wandb":  # went offline by itself, wrote its runs, and says how to upload them
        assert "W&B: offline (W&B server not reachable)" in caplog.text
        assert "wandb sync" in caplog.text
        assert len(list((tmp_path / "wandb").glob("offline-run-*"))) == 2  # the CV run and fold 0


@pytest.mark.parametrize("hook", ["on_train_batch_end", "on_validation_batch_end", "on_validation_end"])
def test_sigterm_checkpoint_is_written_wherever_lightning_stops(hook, tmp_path):
    """A real Lightning fit with SIGTERM noticed after a training batch, a validation batch, or in the
    hooks after validation's last batch (where a batch-end save never ran): interrupted.ckpt is
    written each time and fit ends in Interrupted; a run that is not signalled writes none."""
    import pytorch_lightning as pl

    from flakeseg.errors import Interrupted
    from flakeseg.training.callbacks import CheckpointOnSigterm
    from flakeseg.training.trainer import fit

    class Tiny(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(2, 1)

        def training_step(self, batch, batch_idx):
            return self.layer(batch[0]).pow(2).mean()

        def validation_step(self, batch, batch_idx):
            pass

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    class Signal(pl.Callback):
        def __init__(self, hook):
            setattr(self, hook, self.raise_flag)

        def raise_flag(self, trainer, *args, **kwargs):
            if trainer.current_epoch == 1:
                trainer._signal_connector.received_sigterm = True

    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.ones(4, 2)), batch_size=2)

    def run(callbacks, directory):
        trainer = pl.Trainer(
            max_epochs=3,
            callbacks=callbacks,
            default_root_dir=directory,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        module = Tiny()
        module.train_dataloader = lambda: loader
        module.val_dataloader = lambda: loader
        fit(trainer, module, None, None, "fold 0")

    saved = tmp_path / "interrupted.ckpt"
    with pytest.raises(Interrupted, match="fold 0: stopped by SIGTERM in epoch "):
        run([CheckpointOnSigterm(saved), Signal(hook)], tmp_path)
    assert load_checkpoint(saved)["state_dict"]
    quiet = tmp_path / "quiet.ckpt"
    run([CheckpointOnSigterm(quiet)], tmp_path)
    assert not quiet.exists()
