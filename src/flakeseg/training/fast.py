"""Optional fast paths for training and inference: channels-last memory, torch.compile, bf16 autocast.

Each is off by default and measured by ``make bench-train`` (see docs/results/bench_train_cpu/).
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractContextManager

import torch
from torch import nn

from flakeseg.errors import ConfigError

FAST_PATHS = ("channels_last", "compile", "bf16")


def apply_fast_paths(
    net: nn.Module, paths: Iterable[str], device_type: str = "cpu"
) -> tuple[nn.Module, AbstractContextManager | None]:
    """Apply fast paths to ``net`` in place and return it with an autocast context (or ``None``).

    - ``channels_last``: weights in NHWC memory order (inputs are converted by :class:`FlakeSegModule`
      or by the caller); oneDNN and cuDNN convolutions prefer it.
    - ``compile``: ``nn.Module.compile()`` (TorchInductor), which keeps ``state_dict`` keys unchanged
      so checkpoints stay interchangeable with eager models.
    - ``bf16``: an autocast context for bfloat16 mixed precision (CPUs with AVX-512 BF16 / AMX, GPUs).
    """
    paths = list(paths)
    unknown = [p for p in paths if p not in FAST_PATHS]
    if unknown:
        raise ConfigError(f"fast paths {unknown} unknown; available: {', '.join(FAST_PATHS)}")
    if "channels_last" in paths:
        net = net.to(memory_format=torch.channels_last)
        net.register_forward_pre_hook(_to_channels_last)
    if "compile" in paths:
        net.compile()
    autocast = torch.autocast(device_type=device_type, dtype=torch.bfloat16) if "bf16" in paths else None
    return net, autocast


def _to_channels_last(module: nn.Module, args: tuple) -> tuple:
    return tuple(
        a.contiguous(memory_format=torch.channels_last) if isinstance(a, torch.Tensor) and a.dim() == 4 else a
        for a in args
    )
