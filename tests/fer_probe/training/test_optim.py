import pytest
import torch

from fer_probe.training.optim import clip_gradients


@pytest.mark.parametrize("scale", [1e-4, 10.0])  # within the bound (left as they are) and above it (scaled)
def test_gradient_clipping_matches_torch(scale):
    """The norm from BLAS dot products is torch's up to float32 rounding (it is closer to the float64 norm): the
    clipped gradients agree to 1e-5, and gradients within the bound are left untouched."""
    torch.manual_seed(0)
    ours, theirs = (torch.nn.Sequential(torch.nn.Linear(50, 40), torch.nn.Linear(40, 3)) for _ in range(2))
    for a, b in zip(ours.parameters(), theirs.parameters()):
        a.grad = torch.randn_like(a) * scale
        b.grad = a.grad.clone()
    before = [p.grad.clone() for p in ours.parameters()]
    clip_gradients(ours, 1.0)
    torch.nn.utils.clip_grad_norm_(list(theirs.parameters()), 1.0, foreach=True)
    assert all(torch.allclose(a.grad, b.grad, rtol=1e-5, atol=0) for a, b in zip(ours.parameters(),
                                                                                theirs.parameters()))
    norm = torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in ours.parameters()]))
    if scale > 1:
        assert norm <= 1.0 + 1e-5
    else:
        assert norm < 0.1 and all(torch.equal(p.grad, g) for p, g in zip(ours.parameters(), before))
