"""What one update of a probe does besides its gradients: V-JEPA's cosine schedules, its parameter groups (no
weight decay on biases and norms), gradient-norm clipping and the AdamW step."""

import math

import torch
import torch.nn as nn


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """No weight decay on biases and 1-D parameters (norms), as V-JEPA; query tokens are decayed."""
    decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim > 1 and not n.endswith(".bias")]
    other = [p for n, p in model.named_parameters() if p.requires_grad and (p.ndim <= 1 or n.endswith(".bias"))]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": other, "weight_decay": 0.0}]


def cosine(start: float, end: float, progress: float) -> float:
    """V-JEPA's cosine schedules, evaluated before each step with progress = step / total_steps (step from 1)."""
    return max(end, end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * progress)))


def clip_gradients(model: nn.Module, max_norm: float) -> None:
    """nn.utils.clip_grad_norm_, with the total norm as the square root of each gradient's dot product with itself
    (one BLAS pass over 20M gradients, half the time of its per-tensor norms on the CPU), and without multiplying
    every gradient by 1.0 when the norm is within bounds (on CUDA the test would wait for the device)."""
    parameters = [p for p in model.parameters() if p.grad is not None]
    if not parameters or parameters[0].device.type != "cpu" or not hasattr(nn.utils, "clip_grads_with_norm_"):
        nn.utils.clip_grad_norm_(parameters, max_norm, foreach=True)
        return
    total = torch.stack([torch.dot(g, g) for g in (p.grad.reshape(-1) for p in parameters)]).sum().sqrt()
    if bool(max_norm / (total + 1e-6) < 1.0):  # the factor clip_grad_norm_ clamps to 1, computed as it does
        nn.utils.clip_grads_with_norm_(parameters, max_norm, total, foreach=True)


class AdamW:
    """torch.optim.AdamW(fused=True), the same kernel and the same bits, without torch.optim's machinery: its first
    parameter group imports torch._dynamo, a second of every run's start on a 2-core machine. What the training
    uses of an optimizer: param_groups (lr and weight_decay set before each step), zero_grad, step, and GradScaler's
    protocol (grad_scale and found_inf handed to the kernel, so an overflowing step is skipped on the device)."""
    _step_supports_amp_scaling = True  # GradScaler sets grad_scale and found_inf before calling step

    def __init__(self, groups: list[dict], lr: float, *, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8):
        self.param_groups = [{"lr": lr, "betas": betas, "eps": eps} | group for group in groups]
        self.state: dict[torch.Tensor, dict] = {}  # per parameter: step, exp_avg, exp_avg_sq (from its first step)

    def zero_grad(self) -> None:
        """Gradients set to None (autograd's next backward makes fresh ones, no zeroing pass)."""
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        grad_scale, found_inf = getattr(self, "grad_scale", None), getattr(self, "found_inf", None)
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            for p in params:
                if p not in self.state:
                    self.state[p] = {"step": torch.zeros((), dtype=torch.float32, device=p.device),
                                     "exp_avg": torch.zeros_like(p), "exp_avg_sq": torch.zeros_like(p)}
            states = [self.state[p] for p in params]
            steps = [s["step"] for s in states]
            torch._foreach_add_(steps, 1)
            beta1, beta2 = group["betas"]
            torch._fused_adamw_(params, [p.grad for p in params], [s["exp_avg"] for s in states],
                                [s["exp_avg_sq"] for s in states], [], steps, amsgrad=False, lr=group["lr"],
                                beta1=beta1, beta2=beta2, weight_decay=group["weight_decay"], eps=group["eps"],
                                maximize=False, grad_scale=grad_scale, found_inf=found_inf)
            if found_inf is not None:  # a skipped step does not count
                torch._foreach_sub_(steps, [found_inf] * len(steps))
