"""Inference speed of ``flakeseg predict``: images per second on a 700 x 525 image, per backend.

Run with ``make bench`` (or ``uv run python benchmarks/bench_predict.py --help``). For the CPU preset's
model (base 8 U-Net at scale 0.5, as ``make train`` trains it) and the paper-size U-Net (base 64 at full
scale) it times :meth:`flakeseg.inference.predictor.Predictor.probabilities` (resampling, tiling, network,
softmax, mapping back: what a user waits for per image) with each backend:

- ``eager``: PyTorch eager, fp32, NCHW;
- ``channels_last``: eager with NHWC memory (oneDNN's preferred layout on CPUs);
- ``compile``: ``torch.compile`` (TorchInductor), compile time reported apart;
- ``onnxruntime``: the ``flakeseg export`` ONNX file on ONNX Runtime's CPU provider.

Weights are freshly initialised (speed does not depend on their values). Each backend's output is
checked against eager (max absolute probability difference). Writes ``bench_predict.md`` and
``bench_predict.json`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from machine import machine

from flakeseg.data.io import read_image
from flakeseg.inference.checkpoint import ModelCard
from flakeseg.inference.onnx import OnnxBackend, export_onnx
from flakeseg.inference.predictor import Predictor, TorchBackend
from flakeseg.models import build_model

# name -> (model config, data scale, training crop, what it is)
MODELS = {
    "cpu_preset": ({"name": "unet_paper", "base_channels": 8}, 0.5, 128, "base 8 U-Net, scale 0.5"),
    "paper_unet": ({"name": "unet_paper", "base_channels": 64}, 1.0, 512, "base 64 U-Net, scale 1"),
}
BACKENDS = ("eager", "channels_last", "compile", "onnxruntime")
CLASSES = ["other", "monolayer", "bilayer"]


def test_image() -> tuple[np.ndarray, str]:
    """A real 700 x 525 MoS2 image when the data are at hand, else a synthetic one of that size."""
    root = os.environ.get("FLAKESEG_DATA")
    path = Path(root or ".") / "data" / "ori" / "or00000.png"
    if path.exists():
        return read_image(path), "MoS2 `data/ori/or00000.png`"
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (525, 700, 3), dtype=np.uint8), "synthetic 700 x 525"


def card_for(name: str, net: torch.nn.Module) -> ModelCard:
    model, scale, crop, _ = MODELS[name]
    return ModelCard(
        model=model,
        class_names=CLASSES,
        class_colors=["#000000", "#1f5fff", "#20c020"],
        mean=[0.5] * 3,
        std=[0.25] * 3,
        data_scale=scale,
        crop_size=crop,
        flake_classes=CLASSES[1:],
        input_multiple=net.input_multiple,
    )


def bench_model(name: str, image: np.ndarray, backends, min_seconds: float, min_runs: int, workdir: Path):
    """Time every backend of one model, interleaved call by call.

    Interleaving (one call of each backend per round, as ``make bench-train`` alternates its loops)
    spreads any background load of a shared 2-core machine evenly over the backends, so their ratios
    stay fair even when absolute times wobble.
    """
    torch.manual_seed(0)
    net = build_model(MODELS[name][0], num_classes=len(CLASSES)).eval()
    card = card_for(name, net)
    rows: dict[str, dict] = {}
    predictors: dict[str, Predictor] = {}
    outputs: dict[str, np.ndarray] = {}
    for backend in backends:
        try:
            if backend == "onnxruntime":
                runner = OnnxBackend(export_onnx(net, card, workdir / f"{name}.onnx"))
            else:
                fresh = build_model(MODELS[name][0], num_classes=len(CLASSES))
                fresh.load_state_dict(net.state_dict())
                runner = TorchBackend(
                    fresh.eval(), channels_last=backend == "channels_last", compile=backend == "compile"
                )
            predictor = Predictor(runner, card)
            start = time.perf_counter()
            outputs[backend] = predictor.probabilities(image)  # compile happens in this first call
            rows[backend] = {"model": name, "backend": backend, "first_call_s": time.perf_counter() - start}
            predictor.probabilities(image)
            predictors[backend] = predictor
        except Exception as exc:  # a backend that fails here is reported in the table, not fatal
            rows[backend] = {"model": name, "backend": backend, "error": f"{type(exc).__name__}: {exc}"[:200]}
            print(f"{name} {backend}: failed ({rows[backend]['error']})", flush=True)
    times: dict[str, list[float]] = {b: [] for b in predictors}
    while any(len(t) < min_runs or sum(t) < min_seconds for t in times.values()):
        for backend, predictor in predictors.items():
            start = time.perf_counter()
            predictor.probabilities(image)
            times[backend].append(time.perf_counter() - start)
    reference = outputs.get("eager", next(iter(outputs.values()), None))
    for backend, spent in times.items():
        median = statistics.median(spent)
        row = rows[backend]
        row.update(
            images_per_s=1.0 / median,
            seconds_median=median,
            seconds_min=min(spent),
            seconds_max=max(spent),
            runs=len(spent),
            max_abs_diff_vs_eager=float(np.abs(outputs[backend] - reference).max()),
        )
        print(
            f"{name:11s} {backend:14s} {row['images_per_s']:8.2f} images/s "
            f"(median {median * 1e3:.0f} ms over {len(spent)} runs; first call {row['first_call_s']:.1f} s; "
            f"max |p - eager| {row['max_abs_diff_vs_eager']:.1e})",
            flush=True,
        )
    return [rows[b] for b in backends if b in rows]


def markdown(rows, info: dict, image_source: str, command: str) -> str:
    lines = [
        "# Inference speed: images per second on a 700 x 525 image",
        "",
        f"Command: `{command}`. Image: {image_source}. Each figure is the median over repeated calls of",
        "`Predictor.probabilities` (resample, tile, network, softmax, map back) after two warm-up calls,",
        "the backends interleaved call by call; 'first call' is the first call's time (torch.compile",
        "compiles there).",
        "",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in info.items()) + ".",
        "",
        "| model | backend | images/s | median ms | min-max ms | runs | first call s | max diff vs eager |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        label = f"{row['model']} ({MODELS[row['model']][3]})"
        if "error" in row:
            lines.append(f"| {label} | {row['backend']} | failed: {row['error']} | | | | | |")
            continue
        lines.append(
            f"| {label} | {row['backend']} | {row['images_per_s']:.2f} | {row['seconds_median'] * 1e3:.0f} | "
            f"{row['seconds_min'] * 1e3:.0f}-{row['seconds_max'] * 1e3:.0f} | {row['runs']} | "
            f"{row['first_call_s']:.1f} | {row['max_abs_diff_vs_eager']:.1e} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("docs/results/bench_cpu"), help="output folder")
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    parser.add_argument("--min-seconds", type=float, default=5.0, help="least timed seconds per backend")
    parser.add_argument("--min-runs", type=int, default=5, help="least timed calls per backend")
    args = parser.parse_args()
    image, source = test_image()
    info = machine()
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for name in args.models:
            rows += bench_model(name, image, args.backends, args.min_seconds, args.min_runs, Path(workdir))
    args.out.mkdir(parents=True, exist_ok=True)
    command = "make bench"
    (args.out / "bench_predict.md").write_text(markdown(rows, info, source, command))
    (args.out / "bench_predict.json").write_text(
        json.dumps({"machine": info, "image": source, "rows": rows}, indent=2)
    )
    print(f"wrote {args.out / 'bench_predict.md'}")


if __name__ == "__main__":
    main()
