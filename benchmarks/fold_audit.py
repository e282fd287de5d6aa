"""Which training images ``data.exclude_mislabelled`` leaves out of each CV fold, with the label audit's
optics verdict through the shipped setup (calibrated on every training label, the held-out fold's too)
and through a setup calibrated on the fold's own training images (what a fold uses since 2026-12-06).

Run: ``FLAKESEG_DATA=... python benchmarks/fold_audit.py [--data mos2]`` (about 1 min on 2 cores):
``protocol=paper`` with fold seeds 0, 1, 2 and ``protocol=upstream`` with seed 0, 3 folds each, as
the repeated CV and the leaderboard ran them. ``--fewshot docs/results/fewshot_cpu/fewshot.md --data
graphene``: the same for every image set a few-shot report's commands train on.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from unittest import mock


def left_out(data_cfg: dict, train_ids: list[str], shipped: bool) -> list[str]:
    """The ids :func:`~flakeseg.stages.fold_inputs.without_mislabelled` drops; ``shipped``: with the
    fold's own setup replaced by the shipped one, as before."""
    from flakeseg.data.catalog import load_dataset
    from flakeseg.stages.fold_inputs import without_mislabelled

    train = load_dataset(data_cfg, ids=train_ids, progress=False)
    if shipped:
        # as if these were the split the shipped setup was calibrated on: the audit then reads it
        with mock.patch("flakeseg.data.contrasts.shipped_split", return_value=list(train.ids)):
            kept = without_mislabelled(train, data_cfg)
    else:
        kept = without_mislabelled(train, data_cfg)
    return sorted(set(train.ids) - set(kept.ids))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="mos2")
    parser.add_argument("--fewshot", type=Path, default=None, help="a few-shot report (fewshot.md)")
    args = parser.parse_args(argv)
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from flakeseg.data.splits import fold_ids, split_from_config
    from flakeseg.utils.config_files import CONFIG_DIR

    print("| protocol | fold seed | fold | left out, shipped setup | left out, the fold's own setup |")
    print("| --- | --- | --- | --- | --- |")
    if args.fewshot is not None:
        with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
            cfg = compose("train", [f"data={args.data}", "experiment=best_cpu"])
        data_cfg = OmegaConf.to_container(cfg.data, resolve=True)
        drawn = re.findall(r"data\.split\.train=(\[[^\]]*\])", args.fewshot.read_text())
        sets = sorted({tuple(json.loads(text)) for text in drawn}, key=lambda ids: (len(ids), ids))
        print("| drawn images | left out, shipped setup | left out, the run's own setup |")
        print("| --- | --- | --- |")
        for ids in sets:
            before = left_out(data_cfg, list(ids), shipped=True)
            after = left_out(data_cfg, list(ids), shipped=False)
            print(f"| {', '.join(ids)} | {', '.join(before) or '-'} | {', '.join(after) or '-'} |")
        return 0
    for protocol, seeds in (("paper", (0, 1, 2)), ("upstream", (0,))):
        with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
            cfg = compose("train", [f"data={args.data}", "experiment=best_cpu", f"protocol={protocol}"])
        data_cfg = OmegaConf.to_container(cfg.data, resolve=True)
        split = split_from_config(data_cfg)
        pool = split["train"] + (split["test"] if protocol == "upstream" else [])
        for seed in seeds:
            for fold in range(3):
                train_ids, _ = fold_ids(pool, 3, fold, seed)
                before = left_out(data_cfg, train_ids, shipped=True)
                after = left_out(data_cfg, train_ids, shipped=False)
                cells = [protocol, seed, fold, ", ".join(before) or "-", ", ".join(after) or "-"]
                print("| " + " | ".join(map(str, cells)) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
