import pytest
import torch
from safetensors.torch import load_file

from fer_probe.probes import AttentiveProbe, build_probe, load_reference_classifier
from tests.conftest import ENCODER_FIXTURES


def perturbed(probe):
    """Move every parameter off its initial value so that no term of the computation is trivially zero."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in probe.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=generator, dtype=p.dtype))
    return probe


@pytest.mark.parametrize("dtype,tolerance", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
@pytest.mark.parametrize("num_queries,head,use_proj", [(1, "linear", False), (3, "mlp", False), (2, "linear", True)])
def test_fast_attention_equals_straightforward_forward_and_gradients(num_queries, head, use_proj, dtype, tolerance):
    """Errors relative to each tensor's largest magnitude (float32 gradients here reach ~50)."""
    torch.manual_seed(0)
    probe = AttentiveProbe(64, 5, num_heads=8, num_queries=num_queries, head=head, use_proj=use_proj)
    probe = perturbed(probe.to(dtype))
    tokens = (torch.randn(4, 37, 64) * 3 + 1).to(dtype)

    def close(a, b):
        return (a - b).abs().max() <= tolerance * max(1.0, b.abs().max().item())

    def run(fast):
        probe.zero_grad(set_to_none=True)
        probe.fast = fast
        x = tokens.clone().requires_grad_(True)
        logits = probe(x)
        (logits * torch.arange(5.0, dtype=dtype)).sum().backward()
        grads = {n: p.grad.clone() for n, p in probe.named_parameters() if p.grad is not None}
        return logits.detach(), grads, x.grad

    logits_fast, grads_fast, input_fast = run(True)
    logits_slow, grads_slow, input_slow = run(False)
    assert close(logits_fast, logits_slow)
    assert grads_fast.keys() == grads_slow.keys()
    for name in grads_fast:
        assert close(grads_fast[name], grads_slow[name]), name
    assert close(input_fast, input_slow)


def test_reference_classifier_reproduces_fixture_logits():
    folder = ENCODER_FIXTURES / "vjepa1-tiny"
    state = load_file(str(folder / "attentive_classifier.safetensors"))
    reference = load_file(str(folder / "reference.safetensors"))
    probe = load_reference_classifier(state, num_heads=4)
    assert probe.fast
    with torch.inference_mode():
        logits = probe(reference["tokens"])
    assert (logits - reference["logits"]).abs().max() < 1e-4


@pytest.mark.parametrize("kind,shape", [("attentive", (3, 20, 32)), ("attentive-deep", (3, 20, 32)),
                                        ("linear", (3, 32)), ("mlp", (3, 32))])
def test_every_probe_type_trains(kind, shape):
    torch.manual_seed(0)
    probe = build_probe(kind, 32, 4, num_heads=4)
    x, y = torch.randn(*shape), torch.tensor([0, 1, 2])
    optimizer = torch.optim.AdamW(probe.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss = torch.nn.functional.cross_entropy(probe(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_fer_probe_never_imports_video_or_encoder_code():
    import subprocess
    import sys
    code = ("import sys, fer_probe.cli, fer_probe.cv, fer_probe.report, fer_probe.plots, fer_probe.ablate;"
            "bad = [m for m in sys.modules if m == 'av' or m.startswith('fer_cache')];"
            "print(bad); sys.exit(1 if bad else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
