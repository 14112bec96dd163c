"""The one Precision of a run: the dtypes it resolves to on each device, and how inputs reach the compute dtype."""

import pytest
import torch

from fer_probe.config import ProbeConfig
from fer_probe.data.precision import Precision, resolve_device
from fer_probe.errors import FerProbeError


def test_cpu_precisions_resolve_to_exact_float32_or_the_bfloat16_token_path():
    auto = Precision.resolve("auto", "cpu")
    assert auto.compute == torch.float32 and auto.matmul is None and not auto.scaled and not auto.cuda
    bf16 = Precision.resolve("bfloat16", "cpu")
    assert bf16.compute == torch.bfloat16 and bf16.matmul == torch.bfloat16
    assert ProbeConfig(device="cpu").resolve_precision() == auto


def test_float16_is_refused_on_the_cpu_in_one_line():
    with pytest.raises(FerProbeError, match="float16 .* is for CUDA"):
        Precision.resolve("float16", "cpu")
    with pytest.raises(FerProbeError, match="precision must be"):
        Precision.resolve("float8", "cpu")


def test_devices_are_checked():
    assert resolve_device("cpu").type == "cpu"
    with pytest.raises(FerProbeError, match="device must be auto, cpu or cuda"):
        resolve_device("tpu")


@pytest.mark.parametrize("storage,compute,expected", [
    ("float16", torch.float32, torch.float16),  # widened by the probe's pooling a chunk at a time
    ("float16", torch.bfloat16, torch.float16),
    ("bfloat16", torch.float32, torch.float32),
    ("int8", torch.float32, torch.float32),
    ("float32", torch.bfloat16, torch.bfloat16),
])
def test_cpu_transfer_dtypes(storage, compute, expected):
    assert Precision(device=torch.device("cpu"), compute=compute).transfer(storage) == expected


def test_cuda_gets_half_precision_as_stored_and_casts_it_there():
    cuda = Precision(device=torch.device("cuda"), compute=torch.bfloat16)  # not resolved: no GPU needed
    assert cuda.transfer("float16") == torch.float16 and cuda.transfer("bfloat16") == torch.bfloat16
    assert cuda.transfer("int8") == torch.bfloat16 and cuda.matmul is None
    assert Precision(device=torch.device("cuda"), compute=torch.float16).scaled


def test_cpu_inputs_stay_as_they_came():
    bf16 = Precision.resolve("bfloat16", "cpu")
    tokens = torch.randn(2, 3).half()
    assert bf16.to_compute(tokens) is tokens  # converted by the pooling, a chunk at a time
    pooled = torch.randn(2, 3)
    assert bf16.to_compute(pooled) is pooled
