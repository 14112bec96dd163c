"""What one candidate's update costs besides its token work, at the paper's probe (ViT-H width 1280, 19.7M
parameters): AdamW as foreach and as PyTorch's fused CPU kernel, over the probe's 17 tensors and over one flat
buffer; the gradient norm of clipping as torch's per-tensor norms and as BLAS dot products (against float64); and
zeroing gradients kept in a flat buffer against fresh ones. The fastest of the repeats, in one run.

python benchmarks/bench_optimizer.py [--repeats 20]
"""

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))
from common import append_row, machine

from fer_probe.probes import registered


def best_ms(fn, repeats: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    kind = registered("attentive")
    probe = kind.build(1280, 6, kind.make_settings(num_heads=16, use_proj=True))
    params = list(probe.parameters())
    for p in params:
        p.grad = torch.randn_like(p) * 1e-4
    grads = [p.grad for p in params]
    flat = nn.Parameter(torch.cat([p.detach().reshape(-1) for p in params]))
    flat.grad = torch.cat([g.reshape(-1) for g in grads])
    n = flat.numel()
    timings = {
        "adamw_foreach_ms": best_ms(torch.optim.AdamW(params, lr=1e-3, foreach=True).step, args.repeats),
        "adamw_fused_ms": best_ms(torch.optim.AdamW(params, lr=1e-3, fused=True).step, args.repeats),
        "adamw_fused_flat_ms": best_ms(torch.optim.AdamW([flat], lr=1e-3, fused=True).step, args.repeats),
        "norm_torch_ms": best_ms(lambda: nn.utils.get_total_norm(grads, foreach=True), args.repeats),
        "norm_dot_ms": best_ms(lambda: torch.stack([torch.dot(g.reshape(-1), g.reshape(-1)) for g in grads]).sum(),
                               args.repeats),
        "norm_dot_flat_ms": best_ms(lambda: torch.dot(flat.grad, flat.grad), args.repeats),
        "zero_flat_grad_ms": best_ms(flat.grad.zero_, args.repeats),
        "fresh_grad_ms": best_ms(lambda: torch.empty(n).fill_(0), args.repeats),
    }
    exact = torch.stack([torch.dot(g.reshape(-1).double(), g.reshape(-1).double()) for g in grads]).sum().sqrt()
    torch_norm = nn.utils.get_total_norm(grads, foreach=True)
    dot_norm = torch.stack([torch.dot(g.reshape(-1), g.reshape(-1)) for g in grads]).sum().sqrt()
    where = machine(torch.device("cpu"))
    print(f"the paper's probe at width 1280 ({n / 1e6:.1f}M parameters, {len(params)} tensors) on {where}")
    for name, ms in timings.items():
        print(f"  {name:22s} {ms:7.2f} ms")
    print(f"  gradient norm relative error against float64: torch {abs(torch_norm - exact) / exact:.1e}, dot "
          f"{abs(dot_norm - exact) / exact:.1e}")
    append_row("optimizer", {"machine": where} | {k: round(v, 2) for k, v in timings.items()})


if __name__ == "__main__":
    main()
