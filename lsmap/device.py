"""Choosing the compute devices, the precision and the thread counts a model run uses."""

from __future__ import annotations

import os

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
    device = torch.device(requested)
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise LsmapError(f"device {requested!r} requested but torch sees {torch.cuda.device_count()} CUDA device(s)")
    return device


def resolve_devices(requested: str = "auto", cpu_workers: int = 1) -> list[torch.device]:
    """The devices that model workers run on, one worker per entry.

    ``cuda`` (and ``auto`` on a GPU host): every visible GPU; ``cuda:N``: that one; a comma list
    (``cuda:0,cuda:2``): those; ``cpu`` (and ``auto`` without a GPU): ``cpu_workers`` CPU workers.
    """
    if cpu_workers < 1:
        raise LsmapError(f"cpu_workers {cpu_workers}: need at least 1")
    if "," in requested:
        devices = [pick_device(part.strip()) for part in requested.split(",") if part.strip()]
        if len(set(devices)) != len(devices):
            raise LsmapError(f"device list {requested!r} names a device twice")
        return devices
    device = pick_device(requested)
    if device.type == "cpu":
        return [device] * cpu_workers
    if device.index is None:  # "cuda" or "auto": one worker per visible GPU
        return [torch.device("cuda", i) for i in range(torch.cuda.device_count())]
    return [device]


def available_cores() -> int:
    """Cores this process may run on (the affinity mask, e.g. a SLURM allocation), not the machine's."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def default_reader_threads(cores: int) -> int:
    """Reader threads decoding blocks ahead: half the cores, at least 2 (GDAL releases the GIL,
    so two readers overlap even on two cores), at most 8 (one decoder core keeps ~170 tiles/s)."""
    return max(2, min(8, cores // 2))


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
