import pytest
import torch

from fer_probe.training.optim import clip_gradients


@pytest.mark.parametrize("scale", [1e-4, 10.0])  # within the bound (left as they are) and above it (scaled)
def test_gradient_clipping_matches_torch(scale):
    torch.manual_seed(0)
    ours, theirs = (torch.nn.Sequential(torch.nn.Linear(50, 40), torch.nn.Linear(40, 3)) for _ in range(2))
    for a, b in zip(ours.parameters(), theirs.parameters()):
        a.grad = torch.randn_like(a) * scale
        b.grad = a.grad.clone()
    clip_gradients(ours, 1.0)
    torch.nn.utils.clip_grad_norm_(list(theirs.parameters()), 1.0, foreach=True)
    assert all(torch.equal(a.grad, b.grad) for a, b in zip(ours.parameters(), theirs.parameters()))
    norm = torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in ours.parameters()]))
    assert (norm <= 1.0 + 1e-5) if scale > 1 else (norm < 0.1)
