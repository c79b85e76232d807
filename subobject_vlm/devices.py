"""Devices and dtypes by name, checked once: one table of dtypes, one clear error for a device that is not here."""

from __future__ import annotations

import warnings

import torch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """``"float32"`` / ``"bfloat16"`` / ``"float16"`` or a torch dtype -> the torch dtype; ``ValueError`` else."""
    resolved = DTYPES.get(dtype) if isinstance(dtype, str) else dtype
    if resolved not in DTYPES.values():
        raise ValueError(f"dtype must be one of {list(DTYPES)}, got {dtype!r}")
    return resolved


def check_device(device: str | torch.device) -> torch.device:
    """The torch device named ``device`` if this machine has it; ``ValueError`` in one line otherwise."""
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"device must be cpu, cuda, cuda:N, mps or xpu, got {device!r}") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {str(device)!r} is not available here (no CUDA); use cpu")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(
                f"device {str(device)!r}: this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {str(device)!r} is not available here (no MPS); use cpu")
    return resolved


def warn_slow_half_precision(device: torch.device, dtype: torch.dtype) -> None:
    """Half precision on a CPU without native support runs 18-35x slower than float32: say so."""
    if device.type == "cpu" and dtype in (torch.float16, torch.bfloat16):
        warnings.warn(
            f"{dtype} on CPU is emulated on most CPUs and runs many times slower than float32 (a SegFormer-b0 at "
            "512 px: 138 s vs 5.6 s); use float32 on CPU",
            UserWarning,
            stacklevel=3,
        )


__all__ = ["DTYPES", "check_device", "resolve_dtype", "warn_slow_half_precision"]
