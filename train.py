"""Cross-validate a segmentation model: `python train.py [overrides]`, `python train.py -m ...` to sweep.

The same entry point as `flakeseg train` and `python -m flakeseg.cli.train` (flakeseg/cli/train.py);
`python train.py --help` lists every config group and value.
"""

from flakeseg.cli.train import main

if __name__ == "__main__":
    main()
