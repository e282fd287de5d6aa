"""Training throughput: framework overhead, data pipeline, hardware use.

Run with ``make bench-train`` (or ``uv run python benchmarks/bench_train.py --help``). For each model
profile it measures, in one process:

1. seconds per training step of our Lightning path (the Trainer, callbacks and logger that ``train.py``
   builds) against a plain PyTorch loop over the same model, batches and optimiser, alternating the two;
2. augmented samples per second that the training DataLoader delivers (default workers) against the
   samples per second the model consumes;
3. training FLOPs per step (``torch.utils.flop_counter``) over step time, against the machine's measured
   matmul throughput;
4. the step time of each fast path (channels-last, ``torch.compile``, bf16 autocast) in the plain loop.

It writes ``bench_train.md`` and ``bench_train.json`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from machine import machine
from omegaconf import OmegaConf
from torch.utils.data import DataLoader
from torch.utils.flop_counter import FlopCounterMode

from flakeseg.data import FlakeDataModule, fold_ids, load_dataset
from flakeseg.data.splits import split_from_config
from flakeseg.models import build_model
from flakeseg.training.fast import apply_fast_paths
from flakeseg.training.losses import class_pixel_counts, median_frequency_weights
from flakeseg.training.progress import quiet_lightning
from flakeseg.training.trainer import build_module, build_trainer
from flakeseg.utils.config_files import CONFIG_DIR

# profile -> (overrides, batches per repeat)
PROFILES = {
    # the CPU preset exactly as `make train` runs it
    "cpu_quick": ([], 24),
    # the paper's U-Net (base 64); on the CPU at a 256 crop and batch 2 so a step takes 2 s, not
    # minutes; on a GPU at the paper's 512 crop and batch 5
    "paper_unet_cpu": (["experiment=paper", "trainer=cpu", "data.crop_size=256", "data.batch_size=2"], 8),
    "paper_unet_gpu": (["experiment=paper"], 24),
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int = 2048, reps: int = 5) -> float:
    """Best FLOP/s of an ``n x n`` matmul (2 n^3 FLOPs) over ``reps`` tries."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    torch.matmul(a, b)
    best = float("inf")
    for _ in range(reps):
        _sync(device)
        start = time.perf_counter()
        torch.matmul(a, b)
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


class StepTimer(pl.Callback):
    """Timestamps at the start of every training batch; consecutive differences are step times."""

    def __init__(self):
        self.stamps: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        _sync(pl_module.device)
        self.stamps.append(time.perf_counter())

    def on_train_epoch_end(self, trainer, pl_module):
        _sync(pl_module.device)
        self.stamps.append(time.perf_counter())

    def step_times(self, skip: int) -> list[float]:
        return [b - a for a, b in zip(self.stamps[:-1], self.stamps[1:], strict=True)][skip:]


def plain_steps(net, criterion, optimizer, batches, device, skip, autocast=None) -> list[float]:
    """A plain PyTorch training loop over ``batches``; per-step times after the first ``skip``."""
    net.train()
    times = []
    for x, y in batches:
        _sync(device)
        start = time.perf_counter()
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        with autocast or nullcontext():
            loss = criterion(net(x), y)
        loss.backward()
        optimizer.step()
        _sync(device)
        times.append(time.perf_counter() - start)
    return times[skip:]


def bench_profile(
    name: str, overrides: list[str], steps: int, args: argparse.Namespace, workdir: Path
) -> dict:
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[*overrides, *args.override, f"paths.output_dir={workdir}"])
    data_cfg = OmegaConf.to_container(cfg.data, resolve=True)
    images = load_dataset(data_cfg, ids=split_from_config(data_cfg)["train"], progress=False)
    train_ids, val_ids = fold_ids(images.ids, int(cfg.cv.folds), 0, int(cfg.cv.seed))
    train = images.subset(train_ids)
    weights = median_frequency_weights(class_pixel_counts(train.masks, images.scheme.num_classes)).tolist()
    module = build_module(cfg, images.scheme, weights)
    datamodule = FlakeDataModule(
        train,
        images.subset(val_ids),
        data_cfg,
        OmegaConf.to_container(cfg.augment, resolve=True),
        seed=int(cfg.seed),
    )
    batch_size = int(data_cfg["batch_size"])
    device = torch.device("cuda" if cfg.trainer.accelerator == "gpu" and torch.cuda.is_available() else "cpu")

    # 2. data pipeline: the real training loader with its default workers, after start-up
    loader = datamodule.train_dataloader()
    batches, stamps = [], []
    epoch = 0
    while len(batches) < steps + args.data_warmup:
        loader.sampler.set_epoch(epoch)
        for batch in loader:
            batches.append(batch)
            stamps.append(time.perf_counter())
            if len(batches) >= steps + args.data_warmup:
                break
        epoch += 1
    span = stamps[-1] - stamps[args.data_warmup - 1]
    delivered = batch_size * (len(stamps) - args.data_warmup) / span
    batches = batches[args.data_warmup :]
    del loader

    # 1. framework overhead, alternating Lightning and the plain loop over the same batches
    # same architecture and fast paths as the Lightning module, its own weights and optimiser
    enabled = [name for name, on in (cfg.get("fast") or {}).items() if on]
    plain, _ = apply_fast_paths(
        build_model(OmegaConf.to_container(cfg.model, resolve=True), images.scheme.num_classes).to(device),
        enabled,
        device.type,
    )
    plain_opt = torch.optim.Adam(plain.parameters(), lr=float(cfg.optim.lr))
    criterion = module.criterion.to(device)
    lightning_times, plain_times, ratios = [], [], []
    for _ in range(args.repeats):
        timer = StepTimer()
        trainer, _ = build_trainer(
            cfg,
            workdir,
            label="bench",
            version="bench",
            extra_callbacks=[timer],
            max_epochs=1,
            limit_val_batches=0,
            num_sanity_val_steps=0,
        )
        trainer.fit(module, train_dataloaders=DataLoader(batches, batch_size=None))
        lightning = timer.step_times(args.skip)
        plain_run = plain_steps(plain, criterion, plain_opt, batches, device, args.skip)
        # the machine's speed drifts between repeats: compare each Lightning repeat with its neighbour
        ratios.append(statistics.median(lightning) / statistics.median(plain_run))
        lightning_times += lightning
        plain_times += plain_run
    lightning_step = statistics.median(lightning_times)
    plain_step = statistics.median(plain_times)

    # 3. FLOPs of one training step (forward + backward), counted
    x, y = batches[0][0].to(device), batches[0][1].to(device)
    with FlopCounterMode(display=False) as counter:
        criterion(plain(x), y).backward()
    flops = counter.get_total_flops()
    plain_opt.zero_grad(set_to_none=True)
    peak = matmul_peak(device, torch.float32)

    # 4. fast paths in the plain loop (same batches, fresh copies of the model)
    variants = {}
    for variant in args.variants:
        net = build_model(OmegaConf.to_container(cfg.model, resolve=True), images.scheme.num_classes).to(
            device
        )
        try:
            net, autocast = apply_fast_paths(
                net, variant.split("+") if variant != "eager" else [], device.type
            )
            opt = torch.optim.Adam(net.parameters(), lr=float(cfg.optim.lr))
            times = []
            for _ in range(args.variant_repeats):
                times += plain_steps(net, criterion, opt, batches, device, args.skip, autocast)
            variants[variant] = statistics.median(times)
        except Exception as exc:  # a fast path this machine cannot run is reported, not fatal
            variants[variant] = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}"

    model_rate = batch_size / lightning_step
    return {
        "profile": name,
        "overrides": overrides + list(args.override),
        "device": str(device),
        "batch_size": batch_size,
        "crop_size": int(data_cfg["crop_size"]),
        "base_channels": int(cfg.model.base_channels),
        "num_workers": int(data_cfg["num_workers"]),
        "steps_timed": len(lightning_times),
        "lightning_step_s": lightning_step,
        "plain_step_s": plain_step,
        "overhead_ratio": statistics.median(ratios),
        "overhead_ratio_range": [min(ratios), max(ratios)],
        "fast_paths": enabled,
        "pipeline_samples_per_s": delivered,
        "model_samples_per_s": model_rate,
        "pipeline_margin": delivered / model_rate,
        "train_flops_per_step": flops,
        "achieved_flops": flops / plain_step,
        "matmul_peak_flops": peak,
        "fraction_of_peak": flops / plain_step / peak,
        "variants_step_s": variants,
    }


def _fmt_variants(row: dict) -> str:
    eager = row["variants_step_s"].get("eager")
    parts = []
    for name, value in row["variants_step_s"].items():
        if isinstance(value, float) and isinstance(eager, float):
            parts.append(f"{name} {value * 1e3:.1f} ms ({eager / value:.2f}x)")
        else:
            parts.append(f"{name} {value}")
    return "; ".join(parts)


def render(rows: list[dict], info: dict, command: str) -> str:
    lines = [
        "# Training throughput",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {info.get('gpu', info['cpu'])} ({info['cores']} cores, torch threads {info['threads']}); "
        f"Python {info['python']}, torch {info['torch']}, pytorch-lightning {info['lightning']}.",
        "",
        "| profile | crop x batch | Lightning s/step | plain s/step | overhead (target <= 1.05) | "
        "pipeline samples/s | model samples/s | pipeline margin (target >= 3) | GFLOP/step | "
        "achieved GFLOP/s | matmul peak GFLOP/s | fraction of peak |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['profile']} (base {r['base_channels']}, {r['num_workers']} workers, "
            f"fast paths: {', '.join(r['fast_paths']) or 'none'}) | "
            f"{r['crop_size']} x {r['batch_size']} | {r['lightning_step_s']:.4f} | {r['plain_step_s']:.4f} | "
            f"{r['overhead_ratio']:.3f} "
            f"({r['overhead_ratio_range'][0]:.2f}-{r['overhead_ratio_range'][1]:.2f}) | "
            f"{r['pipeline_samples_per_s']:.0f} | "
            f"{r['model_samples_per_s']:.1f} | "
            f"{r['pipeline_margin']:.1f}x | {r['train_flops_per_step'] / 1e9:.2f} | "
            f"{r['achieved_flops'] / 1e9:.1f} | {r['matmul_peak_flops'] / 1e9:.0f} | "
            f"{r['fraction_of_peak']:.1%} |"
        )
    lines += ["", "Fast paths, plain loop, median step time (speed-up against eager fp32):", ""]
    lines += [f"- {r['profile']}: {_fmt_variants(r)}" for r in rows]
    lines += [
        "",
        "Step times are medians over the timed steps (first steps of each repeat skipped), Lightning and",
        "the plain loop alternating in one process over the same pre-loaded batches; the overhead is the",
        "median over repeats of (Lightning median / plain median) of neighbouring repeats, with its range",
        "in brackets (this shared 2-core machine drifts by 10-20 % between repeats). The pipeline figure",
        "is what the real training DataLoader delivers with the profile's workers; the model figure is",
        "batch size over the Lightning step time. FLOPs are counted for forward + backward of one batch.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--profiles",
        nargs="+",
        default=None,
        help=f"profiles to run (default: cpu_quick and the paper U-Net for this device); "
        f"choices: {', '.join(PROFILES)}",
    )
    parser.add_argument("--variant-repeats", type=int, default=2, help="repeats per fast-path variant")
    parser.add_argument("--repeats", type=int, default=6, help="alternations of Lightning and plain loop")
    parser.add_argument("--skip", type=int, default=2, help="warm-up steps dropped from each repeat")
    parser.add_argument("--data-warmup", type=int, default=4, help="batches before timing the DataLoader")
    parser.add_argument(
        "--variants",
        nargs="+",
        default=["eager", "channels_last", "compile", "bf16"],
        help="fast paths to time, '+' combines, e.g. channels_last+bf16",
    )
    parser.add_argument("--override", nargs="*", default=[], help="extra Hydra overrides for every profile")
    parser.add_argument("--out", type=Path, default=Path("docs/results/bench_train_cpu"))
    args = parser.parse_args()
    quiet_lightning()
    profiles = args.profiles or (
        ["cpu_quick", "paper_unet_gpu"] if torch.cuda.is_available() else ["cpu_quick", "paper_unet_cpu"]
    )
    if not os.environ.get("FLAKESEG_DATA"):
        sys.exit("error: FLAKESEG_DATA is not set (the folder that holds the upstream data/)")
    info = machine()
    rows = []
    for name in profiles:
        overrides, steps = PROFILES[name]
        if name.endswith("_gpu") or torch.cuda.is_available():
            overrides = [*overrides, "trainer=gpu"]
        print(f"benchmarking {name} ...", flush=True)
        with tempfile.TemporaryDirectory() as workdir:
            rows.append(bench_profile(name, overrides, steps, args, Path(workdir)))
    command = "python benchmarks/bench_train.py " + " ".join(sys.argv[1:])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_train.json").write_text(
        json.dumps({"machine": info, "command": command, "rows": rows}, indent=2)
    )
    text = render(rows, info, command.strip())
    (args.out / "bench_train.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
