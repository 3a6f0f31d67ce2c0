"""Choosing the compute device and the precision to run a model at."""

from __future__ import annotations

import torch

from lsmap.errors import LsmapError


def pick_device(requested: str = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise LsmapError(f"device {requested!r} requested but torch sees no CUDA device")
    if requested != "cpu" and not requested.startswith("cuda"):
        raise LsmapError(f"unknown device {requested!r}: use auto, cpu or cuda[:N]")
    return torch.device(requested)


def cpu_supports_bf16() -> bool:
    """True where the CPU has native bf16 matrix instructions (AVX512-BF16 or AMX)."""
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def autocast_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """The autocast dtype for inference, or None for plain fp32.

    ``auto``: fp16 on CUDA (bf16 where the GPU supports it), bf16 on CPUs with native bf16
    support, else fp32 (emulated bf16 on older CPUs is slower than fp32). ``fp32`` forces fp32.
    """
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        return torch.float16
    if precision != "auto":
        raise LsmapError(f"unknown precision {precision!r}: use auto, fp32, bf16 or fp16")
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_supports_bf16() else None
