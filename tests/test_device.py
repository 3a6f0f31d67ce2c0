"""Device and precision choice."""

from __future__ import annotations

import pytest
import torch

from lsmap.device import autocast_dtype, pick_device
from lsmap.errors import LsmapError


def test_auto_picks_cuda_only_when_available():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert pick_device("auto").type == expected


def test_cuda_request_without_gpu_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(LsmapError, match="CUDA"):
        pick_device("cuda")


def test_unknown_device_and_precision_are_rejected():
    with pytest.raises(LsmapError, match="tpu"):
        pick_device("tpu")
    with pytest.raises(LsmapError, match="fp8"):
        autocast_dtype(torch.device("cpu"), "fp8")


def test_fp32_flag_disables_autocast_everywhere():
    assert autocast_dtype(torch.device("cpu"), "fp32") is None
    assert autocast_dtype(torch.device("cuda"), "fp32") is None


def test_cpu_auto_precision_is_bf16_or_fp32():
    assert autocast_dtype(torch.device("cpu"), "auto") in (torch.bfloat16, None)
