"""flakeseg: find monolayer and bilayer flakes of 2D crystals in optical-microscope images."""

import os

from flakeseg.errors import ConfigError, DataError, FlakesegError

# flakeseg makes no network call of its own accord (labs screen offline, tests download nothing):
# albumentations asks PyPI for a newer version of itself at every import unless this is set
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

__all__ = ["ConfigError", "DataError", "FlakesegError"]
__version__ = "0.1.0"
