"""Cross-validate a segmentation model: `python train.py [overrides]`, `python train.py -m ...` to sweep.

Examples:
    python train.py                                   # CPU preset, 3-fold CV on MoS2
    python train.py data=graphene
    python train.py -m optim.lr=1.0e-5,1.0e-4,1.0e-3  # one job per learning rate
    python train.py experiment=paper trainer=gpu      # the paper's size, on a GPU
    python train.py --help                            # every config group and value
"""

import hydra
from omegaconf import DictConfig

from flakeseg.cli_support import run_task


@hydra.main(config_path="conf", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float:
    return run_task(cfg)


if __name__ == "__main__":
    main()
