"""The training entry point: ``python train.py`` in a checkout, ``flakeseg train`` or
``python -m flakeseg.cli.train`` anywhere the package is installed. It only composes the config
(``conf/train.yaml``, found through the package) and runs the task; ``--help`` imports no Lightning.

Examples:
    python train.py                                   # CPU preset, 3-fold CV on MoS2
    python train.py data=graphene
    python train.py -m optim.lr=1.0e-5,1.0e-4,1.0e-3  # one job per learning rate
    python train.py experiment=paper trainer=gpu      # the paper's size, on a GPU
    python train.py --help                            # every config group and value
"""

import hydra
from omegaconf import DictConfig

from flakeseg.utils.config_files import CONFIG_DIR


@hydra.main(config_path=str(CONFIG_DIR), config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float:
    from flakeseg.stages.task import run_task  # Lightning is imported here, not for --help

    return run_task(cfg)


def main_argv(argv: list[str]) -> int:
    """``flakeseg train ARGS``: Hydra reads its overrides from ``sys.argv``."""
    import sys

    sys.argv = ["flakeseg train", *argv]
    main()
    return 0


if __name__ == "__main__":
    main()
