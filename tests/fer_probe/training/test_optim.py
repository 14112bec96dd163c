import copy

import pytest
import torch

from fer_probe.training.optim import AdamW, clip_gradients, parameter_groups


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


def paired_models():
    torch.manual_seed(0)
    ours = torch.nn.Sequential(torch.nn.Linear(30, 20), torch.nn.LayerNorm(20), torch.nn.Linear(20, 3))
    return ours, copy.deepcopy(ours)


def test_adamw_is_torchs_fused_adamw_bit_for_bit():
    """The same parameters and moments as torch.optim.AdamW(fused=True) after steps whose lr and weight decay change
    (as the cosine schedules set them), with a parameter that has no gradient left as it is."""
    ours, theirs = paired_models()
    frozen = ours[1].weight, theirs[1].weight
    optimizers = AdamW(parameter_groups(ours, 0.05), lr=1e-2), \
        torch.optim.AdamW(parameter_groups(theirs, 0.05), lr=1e-2, fused=True)
    for step in range(5):
        x = torch.randn(8, 30)
        for model, optimizer, still in zip((ours, theirs), optimizers, frozen):
            optimizer.zero_grad()  # both set gradients to None
            model(x).square().sum().backward()
            still.grad = None
            for group in optimizer.param_groups:
                group["lr"] = 1e-2 / (step + 1)
            optimizer.param_groups[0]["weight_decay"] = 0.05 * (step + 1)
            optimizer.step()
    assert all(torch.equal(a, b) for a, b in zip(ours.parameters(), theirs.parameters()))
    assert torch.equal(frozen[0], torch.ones(20))  # never stepped: LayerNorm's initial weight
    state = optimizers[0].state[ours[0].weight]
    assert torch.equal(state["exp_avg_sq"], optimizers[1].state[theirs[0].weight]["exp_avg_sq"])
    assert float(state["step"]) == 5


def test_adamw_skips_a_step_that_grad_scaler_found_inf_in():
    """GradScaler's protocol: found_inf set on the optimizer skips its step on the device, step count included."""
    ours, theirs = paired_models()
    optimizers = AdamW(parameter_groups(ours, 0.05), lr=1e-2), \
        torch.optim.AdamW(parameter_groups(theirs, 0.05), lr=1e-2, fused=True)
    x = torch.randn(8, 30)
    for inf in (0.0, 1.0):
        for model, optimizer in zip((ours, theirs), optimizers):
            optimizer.zero_grad()  # both set gradients to None
            model(x).square().sum().backward()
            optimizer.grad_scale, optimizer.found_inf = torch.tensor(2.0), torch.tensor(inf)
            optimizer.step()
        if not inf:
            stepped = [p.clone() for p in ours.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(ours.parameters(), theirs.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(ours.parameters(), stepped))
    assert float(optimizers[0].state[ours[0].weight]["step"]) == 1
