import pytest

from fer_probe.config import RECIPES, ProbeConfig, resolve_num_heads
from fer_probe.errors import FerProbeError


def test_the_default_is_the_paper_recipe():
    assert ProbeConfig() == ProbeConfig.from_recipe("paper")
    paper = ProbeConfig.from_recipe("paper")
    assert (paper.use_proj, paper.batch_size, paper.train_clips, paper.epochs, paper.wd_schedule) == \
        (True, 4, "all", 20, "cosine")
    assert paper.lrs == (1e-3,) and paper.weight_decays == (0.01,) and paper.final_weight_decay == 1e-6
    assert paper.num_heads is None  # taken from the store's encoder
    vjepa = ProbeConfig.from_recipe("vjepa")
    assert not vjepa.use_proj and {k: v for k, v in RECIPES["vjepa"].items() if k != "use_proj"} == \
        {k: v for k, v in RECIPES["paper"].items() if k != "use_proj"}
    fast = ProbeConfig.from_recipe("fast")
    assert (fast.batch_size, fast.train_clips, fast.wd_schedule, fast.use_proj) == (8, "one", "constant", False)


def test_options_override_single_values_and_are_recorded():
    cfg = ProbeConfig.from_recipe("paper", batch_size=8, train_clips="all", epochs=None, use_proj=False)
    assert cfg.batch_size == 8 and not cfg.use_proj and cfg.epochs == 20
    assert cfg.overridden == ("use_proj", "batch_size")  # train_clips equals the recipe's: not an override
    assert "overridden" in cfg.as_dict()


@pytest.mark.parametrize("change,message", [
    ({"recipe": "papper"}, "recipe must be one of paper, vjepa, fast"),
    ({"train_clips": "some"}, "train_clips must be one of one, all"),
    ({"test_clips": "middle"}, "test_clips must be one of auto, one, all"),
    ({"precision": "fp16"}, "precision must be one of"),
    ({"wd_schedule": "linear"}, "wd_schedule must be one of cosine, constant"),
    ({"schedule": "fold-by-fold"}, "schedule must be one of all-folds, per-fold"),
    ({"probe": "transformer"}, "probe must be one of"),
    ({"head": "deep"}, "head must be one of linear, mlp"),
    ({"epochs": 0}, "at least 1"),
    ({"lrs": (-1e-3,)}, "learning rates must be positive"),
    ({"lrs": ()}, "at least one learning rate"),
    ({"num_heads": 0}, "num_heads must be a whole number of at least 1"),
])
def test_every_mode_is_checked(change, message):
    recipe = change.pop("recipe", "paper")
    with pytest.raises(FerProbeError, match=message):
        ProbeConfig.from_recipe(recipe, **change)


def test_float16_is_a_cuda_precision():
    with pytest.raises(FerProbeError, match="for CUDA"):
        ProbeConfig(precision="float16", device="cpu").resolve_precision()


def test_attention_heads_come_from_the_store():
    assert resolve_num_heads(None, {"num_heads": 16}, 1280)[0] == 16
    assert resolve_num_heads(None, {"num_heads": 4}, 96)[0] == 4
    heads, note = resolve_num_heads(None, {"num_heads": 5}, 96)
    assert heads == 16 and "do not divide" in note  # the largest divisor of 96 up to 16
    heads, note = resolve_num_heads(None, {}, 36)
    assert heads == 12 and "does not name" in note
    assert resolve_num_heads(8, {"num_heads": 16}, 1280) == (8, "8 attention heads (asked for)")
    with pytest.raises(FerProbeError, match="do not divide the token width 96"):
        resolve_num_heads(7, {"num_heads": 4}, 96)


def test_every_field_declares_its_role_for_runs_trained_together():
    """The engine trains several runs from one read (ablate); a field without a role could merge two runs."""
    from dataclasses import fields

    from fer_probe.config import ROLES
    undeclared = [f.name for f in fields(ProbeConfig) if f.metadata.get("role") not in ROLES]
    assert not undeclared, f"fields without a role: {undeclared}"


def test_two_runs_that_differ_in_an_undeclared_field_are_refused_not_merged(tmp_path):
    """A field added without a role counts as shared: runs that differ in it are refused in one line, where before
    {variant: cfg} kept only the last of two configs that differed in neither list."""
    from dataclasses import dataclass

    from fer_probe.config import check_trained_together
    from fer_probe.protocols.cv import run_cv_many
    from tests.helpers import write_planted_store

    @dataclass(frozen=True, kw_only=True)
    class WithDropout(ProbeConfig):
        dropout: float = 0.0  # a new setting whose author forgot its role

    a, b = WithDropout(device="cpu", epochs=1), WithDropout(device="cpu", epochs=1, dropout=0.5)
    assert a.variant() == b.variant()  # the key that would have merged them
    with pytest.raises(FerProbeError, match="must agree on dropout; run them one by one"):
        check_trained_together([a, b])
    store = write_planted_store(tmp_path / "s.zarr")
    with pytest.raises(FerProbeError, match="dropout"):
        run_cv_many(str(store), {"a": (tmp_path / "a", a), "b": (tmp_path / "b", b)}, n_folds=2)
    assert not (tmp_path / "a").exists()  # refused before any run directory is made


def test_runs_trained_together_may_differ_only_as_their_roles_say():
    from fer_probe.config import check_trained_together
    base = ProbeConfig.from_recipe("fast", device="cpu")
    proj, one = base.with_settings(use_proj=True), base.with_settings(test_clips="one")
    deep, linear = base.with_settings(probe="attentive-deep"), base.with_settings(probe="linear")
    check_trained_together([base, proj, one, deep, linear])  # variants, and a test-only difference
    assert len({c.variant() for c in (base, proj, deep, linear)}) == 4
    assert base.variant() == one.variant()  # test-only: one trained probe serves both
    base.with_settings(recipe="vjepa")  # reporting fields never count
    with pytest.raises(FerProbeError, match="seed"):
        check_trained_together([base, base.with_settings(seed=1)])


def test_python_api_arguments_are_checked_in_one_line(tmp_path):
    from fer_probe.protocols.cv import run_cv
    with pytest.raises(FerProbeError, match="run_cv takes a ProbeConfig .*got str"):
        run_cv(str(tmp_path / "s.zarr"), tmp_path / "run", "vjepa")
    with pytest.raises(FerProbeError, match="epochs must be a whole number"):
        ProbeConfig.from_recipe("vjepa", epochs="1")
    with pytest.raises(FerProbeError, match="use_proj must be True or False"):
        ProbeConfig(use_proj="no")
    with pytest.raises(FerProbeError, match="lrs must be a number or a tuple of numbers, got '0.001'"):
        ProbeConfig.from_recipe("vjepa", lrs="0.001")
    assert ProbeConfig.from_recipe("vjepa", lrs=3e-4).lrs == (3e-4,)  # one number is one candidate
    with pytest.raises(FerProbeError, match="device must be a string"):
        ProbeConfig.from_recipe("vjepa", device=0)
    with pytest.raises(FerProbeError, match="num_heads must be a whole number of at least 1, got '4'"):
        ProbeConfig.from_recipe("vjepa", num_heads="4")


def test_load_reference_classifier_checks_its_arguments():
    from safetensors.torch import load_file

    from fer_probe.probes import load_reference_classifier
    from tests.helpers import ENCODER_FIXTURES
    path = ENCODER_FIXTURES / "vjepa1-tiny" / "attentive_classifier.safetensors"
    with pytest.raises(FerProbeError, match="takes a state dict .*got PosixPath"):
        load_reference_classifier(path, num_heads=4)
    with pytest.raises(FerProbeError, match="use_proj must be True .* got 'no'"):
        load_reference_classifier(load_file(str(path)), num_heads=4, use_proj="no")
    with pytest.raises(FerProbeError, match="num_heads must be a positive whole number, got 4.0"):
        load_reference_classifier(load_file(str(path)), num_heads=4.0)
