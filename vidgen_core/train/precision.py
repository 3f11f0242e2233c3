"""Numerics and layout of a training run: autocast dtype, loss scaling, memory format, compile.

Torch only. The defaults are bf16 autocast on a GPU and on a CPU with AMX tiles
(Intel Sapphire Rapids and later: oneDNN runs bf16 convs there natively, a
default-recipe VAE run 1.64x faster, its GAN 1.34x), fp32 on other CPUs (which
would emulate bf16, slower than fp32); and ``channels_last_3d`` everywhere:
cuDNN's fast layout for 3D convs, and oneDNN's on a CPU too (a default-recipe
VAE step 1.24x faster, a GAN run 1.15x on 2 cores; bench/RESULTS.md). Every
option can be forced so each code path runs (and is tested) on a CPU.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, ContextManager

import torch
from torch import nn

if TYPE_CHECKING:
    from vidgen_core.train.settings import FitSettings

_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Numerics:
    """How this run computes: ``dtype`` of autocast (float32 = autocast off) and the memory format."""

    device: torch.device
    dtype: torch.dtype
    channels_last: bool

    def describe(self) -> str:
        """One line for a run's tags: e.g. ``bf16 autocast, channels_last_3d on cpu``."""
        name = {v: k for k, v in _DTYPES.items()}[self.dtype]
        dtype = name if self.dtype == torch.float32 else f"{name} autocast"
        layout = "channels_last_3d" if self.channels_last else "contiguous"
        return f"{dtype}, {layout} on {self.device.type}"

    @property
    def autocast_enabled(self) -> bool:
        return self.dtype != torch.float32

    def autocast(self) -> ContextManager:
        """Autocast context for forward passes (a no-op in fp32)."""
        if not self.autocast_enabled:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """A loss scaler, enabled only for fp16 (bf16 has fp32's exponent range and needs none)."""
        return torch.amp.GradScaler(self.device.type, enabled=self.dtype == torch.float16)

    def to_input(self, x: torch.Tensor) -> torch.Tensor:
        """A 5-D batch in the run's memory format (channels_last_3d or contiguous).

        Explicit both ways: clips converted from (B, T, H, W, 3) uint8 arrive
        channels-last by accident of the permute, and a layout that differs from
        the weights' makes every conv convert.
        """
        if self.channels_last and x.dim() == 5:
            return x.contiguous(memory_format=torch.channels_last_3d)
        return x.contiguous()

    def prepare(self, model: nn.Module) -> nn.Module:
        """Move ``model`` to the device in the run's memory format (before DDP wraps it)."""
        model = model.to(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last_3d)
        return model


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 matmuls and convs in hardware (AMX tiles), so autocast pays.

    Without AMX, oneDNN's bf16 is slower than fp32: a default-recipe VAE step takes 0.56-0.66 of
    fp32's time with AMX, 1.4x with AVX512-BF16 only, 2.8x with AVX-512 only and 26x with AVX2 only
    (``bench/cpu_precision.py`` under ``ONEDNN_MAX_CPU_ISA``; bench/RESULTS.md).
    """
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)  # private: absent in some builds
    try:
        return bool(probe()) if probe is not None else False
    except RuntimeError:
        return False


def resolve_numerics(train_cfg: FitSettings, device: torch.device | str) -> Numerics:
    """Turn ``precision`` ("auto": bf16 on a GPU or an AMX CPU, else fp32) / ``memory_format``
    ("auto": channels_last_3d) into a :class:`Numerics`."""
    device = torch.device(device)
    if train_cfg.precision != "auto":
        precision = train_cfg.precision
        if device.type == "cpu" and precision != "fp32" and not cpu_has_native_bf16():
            warnings.warn(f"precision={precision} on a CPU without AMX is emulated and several times slower "
                          "than fp32: set precision to auto or fp32", stacklevel=2)
    elif device.type == "cuda" or (device.type == "cpu" and cpu_has_native_bf16()):
        precision = "bf16"
    else:
        precision = "fp32"
    channels_last = train_cfg.memory_format != "contiguous"  # auto: channels_last_3d on every device
    return Numerics(device=device, dtype=_DTYPES[precision], channels_last=channels_last)


def maybe_compile(model: nn.Module, enabled: bool) -> nn.Module:
    """``torch.compile(model)`` when enabled (after DDP wrapping, so DDP's optimizer splits graphs at buckets).

    The compiled wrapper keeps the module as ``_orig_mod``; checkpoint and
    save code unwraps it, so state-dict keys never carry the prefix.
    """
    return torch.compile(model) if enabled else model
