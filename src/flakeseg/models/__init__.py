"""Segmentation models, built by name from the ``model`` config node.

Networks: ``unet_paper`` (the paper's U-Net), ``unet_norm`` (with normalisation), ``smp``
(segmentation-models-pytorch), ``pixel_cnn`` (the paper's pixel-wise CNN). Classical models
(:mod:`flakeseg.models.classical`): ``bovw``, ``contrast_gmm``, ``constant`` (the trivial baseline).
"""

from flakeseg.models import pixel_cnn, smp_models, unet_norm, unet_paper  # noqa: F401  (register the networks)
from flakeseg.models.classical import bovw, constant, contrast_gmm, optics_layers  # noqa: F401  (register the classical models)
from flakeseg.models.registry import available_models, build_model, is_classical, model_kind, register_model
from flakeseg.models.unet_paper import PaperUNet

__all__ = ["PaperUNet", "available_models", "build_model", "is_classical", "model_kind", "register_model"]
