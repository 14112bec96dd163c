import math

import pytest
import torch
from safetensors.torch import load_file

from fer_probe.probes import AttentiveProbe, AttentiveSettings, forward_many, load_reference_classifier, registered
from tests.helpers import ENCODER_FIXTURES, straightforward_logits


def perturbed(probe):
    """Move every parameter off its initial value so that no term of the computation is trivially zero."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in probe.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=generator, dtype=p.dtype))
    return probe


def close(a, b, tolerance):
    """Errors relative to each tensor's largest magnitude (float32 gradients here reach ~50)."""
    return (a - b).abs().max() <= tolerance * max(1.0, b.abs().max().item())


@pytest.mark.parametrize("dtype,tolerance", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
@pytest.mark.parametrize("num_queries,head,use_proj", [(1, "linear", False), (3, "mlp", False), (2, "linear", True)])
def test_fast_attention_equals_straightforward_forward_and_gradients(num_queries, head, use_proj, dtype, tolerance):
    torch.manual_seed(0)
    probe = AttentiveProbe(64, 5, AttentiveSettings(num_heads=8, num_queries=num_queries, head=head, use_proj=use_proj))
    probe = perturbed(probe.to(dtype))
    tokens = (torch.randn(4, 37, 64) * 3 + 1).to(dtype)

    def run(fast):
        probe.zero_grad(set_to_none=True)
        x = tokens.clone().requires_grad_(True)
        logits = probe(x) if fast else straightforward_logits(probe, x)
        (logits * torch.arange(5.0, dtype=dtype)).sum().backward()
        grads = {n: p.grad.clone() for n, p in probe.named_parameters() if p.grad is not None}
        return logits.detach(), grads, x.grad

    logits_fast, grads_fast, input_fast = run(True)
    logits_slow, grads_slow, input_slow = run(False)
    assert close(logits_fast, logits_slow, tolerance)
    assert grads_fast.keys() == grads_slow.keys()
    for name in grads_fast:
        assert close(grads_fast[name], grads_slow[name], tolerance), name
    assert close(input_fast, input_slow, tolerance)


def test_probes_sharing_one_token_pass_equal_each_probe_alone():
    """forward_many stacks every probe's score columns into one matmul; logits and gradients stay each probe's own."""
    torch.manual_seed(1)
    probes = [perturbed(AttentiveProbe(48, 4, AttentiveSettings(num_heads=h, num_queries=q, use_proj=p))).double()
              for h, q, p in ((4, 1, True), (8, 2, False), (6, 1, False))]
    tokens = torch.randn(3, 29, 48, dtype=torch.float64)
    together = forward_many(probes, tokens)
    sum(lg.square().sum() for lg in together).backward()
    shared = [{n: p.grad.clone() for n, p in probe.named_parameters() if p.grad is not None} for probe in probes]
    for probe, logits, grads in zip(probes, together, shared):
        probe.zero_grad(set_to_none=True)
        alone = probe(tokens)
        alone.square().sum().backward()
        assert close(logits, alone, 1e-12)
        assert grads.keys() == {n for n, p in probe.named_parameters() if p.grad is not None}
        for name, p in probe.named_parameters():
            if p.grad is not None:
                assert close(grads[name], p.grad, 1e-12), name


def test_upstream_classifier_fixture_reproduces_without_proj():
    folder = ENCODER_FIXTURES / "vjepa1-tiny"
    state = load_file(str(folder / "attentive_classifier.safetensors"))
    reference = load_file(str(folder / "reference.safetensors"))
    probe = load_reference_classifier(state, num_heads=4)
    assert probe.shared_pass() is AttentiveProbe and not probe.pooler.cross_attention_block.xattn.use_proj
    with torch.inference_mode():
        logits = probe(reference["tokens"])
    assert (logits - reference["logits"]).abs().max() < 1e-4


def test_a_path_instead_of_a_state_dict_is_one_line():
    from fer_probe.errors import FerProbeError
    with pytest.raises(FerProbeError, match="takes a state dict .*got str"):
        load_reference_classifier(str(ENCODER_FIXTURES / "vjepa1-tiny" / "attentive_classifier.safetensors"))
    with pytest.raises(FerProbeError, match="use_proj must be True or False"):
        AttentiveSettings(use_proj="no")


def test_fork_classifier_fixture_reproduces_with_proj_and_only_with_it():
    folder = ENCODER_FIXTURES / "vjepa1-tiny"
    state = load_file(str(folder / "fork_classifier.safetensors"))
    reference = load_file(str(folder / "fork_reference.safetensors"))
    with torch.inference_mode():
        fork = load_reference_classifier(state, num_heads=4, use_proj=True)(reference["tokens"])
        upstream = load_reference_classifier(state, num_heads=4, use_proj=False)(reference["tokens"])
    assert (fork - reference["logits"]).abs().max() < 1e-4
    assert (upstream - reference["logits"]).abs().max() > 1e-2  # the same weights without proj are another model


def test_fresh_probe_has_the_reference_initialisation():
    torch.manual_seed(0)
    probe = AttentiveProbe(512, 6, AttentiveSettings(num_heads=8, use_proj=True), depth=3)
    pooler = probe.pooler
    cross = pooler.cross_attention_block
    for name, linear in (("q", cross.xattn.q), ("kv", cross.xattn.kv), ("fc1", cross.mlp.fc1)):
        assert abs(linear.weight.std().item() - 0.02) < 0.002, name
        assert linear.bias.abs().max() == 0, name
    for linear in (cross.xattn.proj, cross.mlp.fc2):  # residual branches of the cross-attention block / sqrt(2)
        assert abs(linear.weight.std().item() - 0.02 / math.sqrt(2)) < 0.0015
    for i, block in enumerate(pooler.blocks, start=1):  # i-th self-attention block / sqrt(2 (i + 1))
        for linear in (block.proj, block.mlp.fc2):
            assert abs(linear.weight.std().item() - 0.02 / math.sqrt(2 * (i + 1))) < 0.0015
        assert abs(block.qkv.weight.std().item() - 0.02) < 0.002 and block.qkv.bias.abs().max() == 0
    assert abs(pooler.query_tokens.std().item() - 0.02) < 0.005
    for norm in (cross.norm1, cross.norm2):
        assert torch.equal(norm.weight, torch.ones(512)) and torch.equal(norm.bias, torch.zeros(512))
    assert probe.linear.bias.abs().max() > 0  # the head keeps PyTorch's default initialisation, as V-JEPA's


def test_a_probe_created_from_the_meta_device_equals_one_initialised_in_place():
    """create() skips PyTorch's default initialisation and materialises empty parameters: the same trainable
    parameters, with the same values for a seed, as building on the CPU and initialising again from that seed."""
    torch.manual_seed(7)
    settings = AttentiveSettings(num_heads=4, use_proj=True)
    created = AttentiveProbe.create(64, 5, settings, device=torch.device("cpu"))
    built = AttentiveProbe.build(64, 5, settings)
    torch.manual_seed(7)
    built.reset_parameters()
    expected = dict(built.named_parameters())
    for name, parameter in created.named_parameters():
        assert isinstance(parameter, torch.nn.Parameter) and parameter.requires_grad and parameter.device.type == "cpu"
        assert torch.equal(parameter, expected.pop(name)), name
    assert not expected


@pytest.mark.parametrize("kind,shape", [("attentive", (3, 20, 32)), ("attentive-deep", (3, 20, 32)),
                                        ("linear", (3, 32)), ("mlp", (3, 32))])
def test_every_probe_type_trains(kind, shape):
    torch.manual_seed(0)
    cls = registered(kind)
    probe = cls.build(32, 4, cls.settings_from({"num_heads": 4}))
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
    code = ("import sys, fer_probe.cli, fer_probe.protocols.cv, fer_probe.protocols.cross, fer_probe.results.report, "
            "fer_probe.results.plots, fer_probe.protocols.ablate, fer_probe.results.compare;"
            "allowed = ('fer_cache', 'fer_cache.errors', 'fer_cache.labels');"
            "bad = [m for m in sys.modules if m in ('av', 'torchvision') or m.startswith('fer_cache') and m not in "
            "allowed and not m.startswith('fer_cache.store')];"
            "print(bad); sys.exit(1 if bad else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_the_default_shared_pass_runs_each_probe_on_its_rows():
    """A probe kind without a pass of its own inherits one that runs each probe alone, on its rows of the batch."""
    from fer_probe.data.precision import CPU_FLOAT32
    from fer_probe.probes import LinearProbe
    torch.manual_seed(0)
    probes = [LinearProbe.build(8, 3, LinearProbe.make_settings()) for _ in range(2)]
    x = torch.randn(4, 8)
    logits = LinearProbe.forward_shared(probes, x, [[0, 2], [1, 2, 3]], precision=CPU_FLOAT32)
    assert torch.equal(logits[0], probes[0](x[[0, 2]])) and torch.equal(logits[1], probes[1](x[[1, 2, 3]]))
    assert all(torch.equal(a, p(x)) for a, p in zip(LinearProbe.forward_shared(probes, x, None, precision=CPU_FLOAT32),
                                                    probes))
