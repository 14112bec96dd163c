"""Probes on a compact store's coordinates compute, in float32, what the same probes compute on the tokens those
coordinates stand for (x~ = mean + z @ components): forward and gradients, on every path (streamed CPU pooling,
whole-tensor pooling, the deep probe, several probes sharing one pass)."""

import numpy as np
import pytest
import torch

from fer_probe.data.coordinates import TokenBasis
from fer_probe.data.precision import CPU_FLOAT32
from fer_probe.probes import forward_many, registered
from fer_probe.probes.pooling import pool, whole_pool, whole_pool_compact
from tests.fer_probe.probes.test_probes import close, perturbed

D, R = 48, 12


def random_basis(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    components = np.linalg.qr(rng.standard_normal((D, R)))[0].T  # [R, D] orthonormal rows
    return (0.4 * rng.standard_normal(D)).astype(np.float32), components.astype(np.float32)


def coordinates_and_tokens(batch: int = 3, tokens: int = 300, seed: int = 1):
    mean, components = random_basis()
    basis = TokenBasis.create(mean, components, torch.device("cpu"))
    z = torch.from_numpy(np.random.default_rng(seed).standard_normal((batch, tokens, R)).astype(np.float32) * 2)
    tokens = torch.addmm(basis.mean, z.reshape(-1, R), basis.components).view(batch, tokens, D)  # x~, directly
    return basis, basis.normalise(z), tokens  # [B, N, R + 1] as the reader hands them out, [B, N, D]


def gradients(probes, x, precision):
    for probe in probes:
        probe.zero_grad(set_to_none=True)
    logits = forward_many(probes, x, precision=precision)
    sum((lg * torch.arange(1.0, lg.shape[1] + 1)).sum() for lg in logits).backward()
    return [lg.detach() for lg in logits], [{n: p.grad.clone() for n, p in probe.named_parameters()
                                             if p.grad is not None} for probe in probes]


@pytest.mark.parametrize("kind,count", [("attentive", 1), ("attentive", 3), ("attentive-deep", 1)])
def test_probes_on_coordinates_equal_probes_on_the_tokens_they_stand_for(kind, count, monkeypatch):
    from fer_probe.probes import pooling
    monkeypatch.setattr(pooling, "TOKEN_CHUNK", 64)  # several chunks: the online softmax across them
    basis, z, tokens = coordinates_and_tokens()
    cls = registered(kind)
    torch.manual_seed(0)
    probes = [perturbed(cls.build(D, 5, cls.make_settings(num_heads=4, use_proj=True))) for _ in range(count)]
    logits_z, grads_z = gradients(probes, z, CPU_FLOAT32.with_basis(basis))
    logits_x, grads_x = gradients(probes, tokens, CPU_FLOAT32)
    for a, b in zip(logits_z, logits_x):
        assert close(a, b, 1e-4)
    for mine, theirs in zip(grads_z, grads_x):
        assert mine.keys() == theirs.keys() and mine
        for name in mine:
            assert close(mine[name], theirs[name], 1e-4), name


def test_whole_tensor_pooling_on_coordinates_equals_it_on_tokens_with_gradients():
    """The path CUDA takes: whole_pool_compact against whole_pool, in both inputs' gradients (u's)."""
    basis, z, tokens = coordinates_and_tokens(tokens=50)
    u = torch.randn(7, D, requires_grad=True)
    g = torch.randn(3, 7, D)
    (whole_pool_compact(z, u, basis=basis) * g).sum().backward()
    grad_compact, u.grad = u.grad.clone(), None
    (whole_pool(tokens, u, 1e-5) * g).sum().backward()
    assert close(whole_pool_compact(z, u, basis=basis), whole_pool(tokens, u, 1e-5), 1e-4)
    assert close(grad_compact, u.grad, 1e-4)
    assert close(pool(z, u, 1e-5, basis=basis), whole_pool(tokens, u, 1e-5), 1e-4)  # the streamed CPU path


def test_normalised_coordinates_hold_the_layer_norm_of_the_tokens_they_stand_for():
    """[rstd z, rstd]: rstd is the LayerNorm 1/std of x~, and the coordinates, the tokens and their mean come back."""
    basis, zn, tokens = coordinates_and_tokens()
    flat = tokens.reshape(-1, D)
    assert close(zn[..., -1:].reshape(-1, 1), torch.rsqrt(flat.var(-1, unbiased=False, keepdim=True) + 1e-5), 1e-4)
    assert close(basis.lift(zn), tokens, 1e-5)
    means = basis.lift_means(basis.coordinates(zn).mean(1).numpy())  # the baselines' feature: the mean of x~
    assert close(torch.from_numpy(means), tokens.mean(1), 1e-5)


def test_a_probe_with_another_layer_norm_eps_is_refused_on_coordinates():
    from fer_probe.errors import FerProbeError
    basis, zn, _ = coordinates_and_tokens(batch=1, tokens=10)
    with pytest.raises(FerProbeError, match="eps"):
        pool(zn, torch.randn(4, D), 1e-6, basis=basis)
