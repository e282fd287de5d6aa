"""Segmentation models, built by name from the ``model`` config node."""

from flakeseg.models import unet_paper  # noqa: F401  (registers unet_paper)
from flakeseg.models.registry import available_models, build_model, register_model
from flakeseg.models.unet_paper import PaperUNet

__all__ = ["PaperUNet", "available_models", "build_model", "register_model"]
