"""The streamed pooling of the CPU path against the whole-tensor computation: values and gradients, over chunk
boundaries, for float32, float16 and bfloat16 tokens."""

import numpy as np
import pytest
import torch

from fer_probe.data.coordinates import TokenBasis
from fer_probe.probes import pooling
from fer_probe.probes.pooling import StreamedCompactPool, StreamedPool, pool, whole_pool


def tokens(n: int, width: int, dtype: torch.dtype, batch: int = 2) -> torch.Tensor:
    torch.manual_seed(0)
    return (torch.randn(batch, n, width) * 2 + 0.3).to(dtype)  # encoder-like: a non-zero mean per token


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_streamed_pooling_equals_whole_tensor_pooling_across_chunks(monkeypatch, dtype):
    monkeypatch.setattr(pooling, "TOKEN_CHUNK", 64)  # 300 tokens: four whole chunks and a partial one
    x = tokens(300, 48, dtype)
    u = (torch.randn(7, 48) * 0.3).requires_grad_()
    grad = torch.randn(2, 7, 48)
    expected = whole_pool(x.float(), u, 1e-6)
    (expected_grad,) = torch.autograd.grad(expected, u, grad)
    streamed = StreamedPool.apply(x, u, 1e-6)
    (streamed_grad,) = torch.autograd.grad(streamed, u, grad)
    torch.testing.assert_close(streamed, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(streamed_grad, expected_grad, rtol=1e-4, atol=1e-4)


def test_streamed_pooling_gradient_is_exact_in_float64(monkeypatch):
    monkeypatch.setattr(pooling, "TOKEN_CHUNK", 50)
    x = tokens(130, 16, torch.float64, batch=1)
    u = (torch.randn(3, 16, dtype=torch.float64) * 0.3).requires_grad_()
    assert torch.autograd.gradcheck(lambda columns: StreamedPool.apply(x, columns, 1e-6), (u,))


def test_bfloat16_tokens_multiply_in_bfloat16_close_to_float32(monkeypatch):
    monkeypatch.setattr(pooling, "TOKEN_CHUNK", 64)
    x = tokens(300, 48, torch.bfloat16)
    u = torch.randn(5, 48) * 0.3
    reference = whole_pool(x.float(), u, 1e-6)
    assert (StreamedPool.apply(x, u, 1e-6) - reference).abs().max() < 0.05 * reference.abs().max()


def test_float16_tokens_multiplied_in_bfloat16_are_bfloat16_tokens(monkeypatch):
    """A CPU bfloat16 run reads float16 as stored and converts each chunk: the pooling and its gradient are those of
    the same tokens cast to bfloat16 up front, to the bit."""
    monkeypatch.setattr(pooling, "TOKEN_CHUNK", 64)
    x = tokens(300, 48, torch.float16)
    u = (torch.randn(5, 48) * 0.3).requires_grad_()
    grad = torch.randn(2, 5, 48)
    converted = StreamedPool.apply(x, u, 1e-6, torch.bfloat16)
    cast = StreamedPool.apply(x.to(torch.bfloat16), u, 1e-6)
    assert torch.equal(converted, cast)
    assert torch.equal(*(torch.autograd.grad(out, u, grad)[0] for out in (converted, cast)))


def test_tokens_that_need_a_gradient_take_the_whole_tensor_path():
    """attentive-deep's self-attention blocks feed pool tokens that need a gradient: StreamedPool gives none."""
    x = tokens(40, 16, torch.float32).requires_grad_()
    u = torch.randn(3, 16) * 0.3
    (grad_x,) = torch.autograd.grad(pool(x, u, 1e-6).sum(), x)
    (expected,) = torch.autograd.grad(whole_pool(x, u, 1e-6).sum(), x)
    torch.testing.assert_close(grad_x, expected)


def test_columns_scaled_by_powers_of_two_come_back_exactly():
    g = torch.tensor([[0.0, 0.0, 0.0], [3e-37, -1e-37, 2e-38], [1e-42, 0.0, -3e-43], [1e3, -2.5, 7.0]])
    scaled, unscale = pooling.scaled_columns(g)  # [M, D], [M, 1]
    top = scaled.abs().amax(-1)
    assert top[0] == 0 and 1 <= top[1] < 2 and 1 <= top[3] < 2  # the subnormal row as far as float32 can take it
    assert torch.equal(scaled * unscale, g)


def test_a_backward_of_gradients_near_float32_underflow_is_the_scaled_backward_of_normal_ones():
    """A probe certain of a video hands the pooling gradients of 1e-37, whose products fall below float32's normal
    range (where x86 CPUs run 15x slower and keep fewer bits): both streamed paths give, to the bit, the backward
    of the same gradients at normal size, scaled."""
    x = tokens(300, 48, torch.float32)
    u = (torch.randn(7, 48) * 0.3).requires_grad_()
    grad = torch.randn(2, 7, 48)
    basis = TokenBasis.create(np.linspace(-0.2, 0.2, 48, dtype=np.float32), np.eye(48, dtype=np.float32)[::6],
                              torch.device("cpu"))
    zn = basis.normalise(x[..., :8])
    for apply in (lambda: StreamedPool.apply(x, u, 1e-6), lambda: StreamedCompactPool.apply(zn, u, basis)):
        (normal,) = torch.autograd.grad(apply(), u, grad)
        (tiny,) = torch.autograd.grad(apply(), u, grad * 2.0 ** -118)
        assert torch.equal(tiny * 2.0 ** 118, normal)
