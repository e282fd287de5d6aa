"""segmentation-models-pytorch networks (``model=smp``): an architecture name and an encoder name.

Nothing is downloaded unless ``model.encoder_weights`` names pretrained weights (the default is
``null``, random initialisation). Pretrained encoder weights come from the Hugging Face Hub and are
cached there (``HF_HOME``, default ``~/.cache/huggingface``); when they cannot be fetched the error is
one line saying so and how to fix it.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

from torch import nn

from flakeseg.errors import ConfigError
from flakeseg.models.registry import register_model

#: ``model.arch`` values: the smp classes that work with every convolutional encoder.
ARCHITECTURES = (
    "Unet",
    "UnetPlusPlus",
    "FPN",
    "DeepLabV3Plus",
    "DeepLabV3",
    "Linknet",
    "MAnet",
    "PAN",
    "PSPNet",
    "UPerNet",
)
#: Encoders shown in error messages as examples; any name of smp's encoder table is accepted.
EXAMPLE_ENCODERS = ("resnet18", "resnet34", "mobilenet_v2", "efficientnet-b0", "timm-efficientnet-b0")


def _smp():
    with warnings.catch_warnings():  # smp's timm import warns about deprecated timm module paths
        warnings.simplefilter("ignore")
        import segmentation_models_pytorch as smp
    return smp


def check_encoder(encoder: str, encoder_weights: str | None) -> None:
    """Refuse an encoder smp does not know, or weights it has no entry for, in one line."""
    encoders = _smp().encoders.encoders
    if encoder not in encoders:
        raise ConfigError(
            f"model.encoder: unknown encoder {encoder!r}; e.g. {', '.join(EXAMPLE_ENCODERS)} "
            f"({len(encoders)} in segmentation_models_pytorch.encoders.get_encoder_names())"
        )
    if encoder_weights is not None:
        known = list(encoders[encoder]["pretrained_settings"])
        if encoder_weights not in known:
            raise ConfigError(
                f"model.encoder_weights: encoder {encoder} has no weights {encoder_weights!r}; "
                f"available: {', '.join(known)} or null (random initialisation)"
            )


def _download_failed(exc: BaseException) -> bool:
    """Whether ``exc`` (or its cause) is the Hub download failing rather than a bug."""
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled

    kinds = (LocalEntryNotFoundError, OfflineModeIsEnabled, HfHubHTTPError, OSError, ConnectionError)
    while exc is not None:
        if isinstance(exc, kinds):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


@register_model("smp")
def build_smp(
    num_classes: int,
    arch: str = "Unet",
    encoder: str = "resnet18",
    encoder_weights: str | None = None,
    in_channels: int = 3,
    options: Mapping[str, Any] | None = None,
) -> nn.Module:
    """A segmentation-models-pytorch network, e.g. ``Unet`` with a ``resnet18`` encoder.

    Args:
        num_classes: output classes.
        arch: the smp class, one of :data:`ARCHITECTURES`.
        encoder: an smp encoder name (``resnet18``, ``resnet34``, ``mobilenet_v2``, ``efficientnet-b0``...).
        encoder_weights: ``None`` (random initialisation, nothing downloaded) or a pretrained variant
            such as ``"imagenet"``, downloaded once from the Hugging Face Hub into its cache.
        in_channels: input channels.
        options: further keyword arguments of the smp class, e.g. ``{"decoder_channels": [64, 32, 16,
            16, 8]}`` for a narrower ``Unet`` decoder.

    Returns:
        the network, with ``input_multiple`` set to its encoder's output stride (32; 16 for
        ``DeepLabV3Plus``/``DeepLabV3``, whose encoders are dilated), and ``head_prefixes`` /
        ``encoder_prefixes`` (what fine-tuning rebuilds and freezes).
    """
    if arch not in ARCHITECTURES:
        raise ConfigError(f"model.arch: unknown architecture {arch!r}; available: {', '.join(ARCHITECTURES)}")
    check_encoder(encoder, encoder_weights)
    cls = getattr(_smp(), arch)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # timm- encoders: "use tu- instead"
            net = cls(
                encoder_name=encoder,
                encoder_weights=encoder_weights,
                in_channels=in_channels,
                classes=num_classes,
                **dict(options or {}),
            )
    except TypeError as exc:
        raise ConfigError(f"model.options: {arch} does not accept these options ({exc})") from None
    except Exception as exc:
        if encoder_weights is None or not _download_failed(exc):
            raise
        raise ConfigError(
            f"model.encoder_weights: the pretrained {encoder_weights} weights for encoder {encoder} could "
            "not be downloaded from the Hugging Face Hub (offline?); run once with internet to fill the "
            "cache (HF_HOME, default ~/.cache/huggingface), point HF_HOME at a cache that holds them, "
            "or set model.encoder_weights=null"
        ) from None
    net.input_multiple = int(net.encoder.output_stride)
    # parameter-name prefixes of the class scores and of the encoder (fine-tuning: model.init_from)
    net.head_prefixes = ("segmentation_head.",)
    net.encoder_prefixes = ("encoder.",)
    return net
