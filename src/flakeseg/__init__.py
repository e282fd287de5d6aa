"""flakeseg: find monolayer and bilayer flakes of 2D crystals in optical-microscope images."""

from flakeseg.errors import ConfigError, DataError, FlakesegError

__all__ = ["ConfigError", "DataError", "FlakesegError"]
__version__ = "0.1.0"
