"""What decides a probe run: recipes (complete configurations, by name), the resolved ProbeConfig, and the attention
heads from the store. torch-free, so that the command line shows the recipes' values in its help.

A recipe fixes every training choice at once; individual options override single values of it. The resolved
config, with the recipe's name and the names of the overridden fields, is written into every run directory.
"""

import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import TYPE_CHECKING, Literal, get_args

from fer_probe.errors import FerProbeError
from fer_probe.registry import PROBES

if TYPE_CHECKING:
    import torch

RecipeName = Literal["paper", "vjepa", "fast"]
Head = Literal["linear", "mlp"]
ClipMode = Literal["one", "all"]
Precision = Literal["auto", "float32", "bfloat16", "float16"]
WeightDecaySchedule = Literal["cosine", "constant"]
Schedule = Literal["all-folds", "per-fold"]
# The recipes' values: each is complete (every field a recipe decides), and nothing else holds these values.
RECIPES: dict[str, dict] = {
    # the paper's code (a fork of V-JEPA 1's frozen evaluation): proj applied, batch 4, all 8 clips concatenated
    "paper": {"use_proj": True, "batch_size": 4, "train_clips": "all", "epochs": 20, "lrs": (1e-3,),
              "weight_decays": (0.01,), "wd_schedule": "cosine", "final_weight_decay": 1e-6},
    # upstream V-JEPA 1 frozen evaluation: the same, but the cross-attention's proj is never applied
    "vjepa": {"use_proj": False, "batch_size": 4, "train_clips": "all", "epochs": 20, "lrs": (1e-3,),
              "weight_decays": (0.01,), "wd_schedule": "cosine", "final_weight_decay": 1e-6},
    # quick iteration: one random clip per video and epoch (8x fewer token reads), batch 8, constant weight decay
    "fast": {"use_proj": False, "batch_size": 8, "train_clips": "one", "epochs": 20, "lrs": (1e-3,),
             "weight_decays": (0.01,), "wd_schedule": "constant", "final_weight_decay": 1e-6},
}
RECIPE_FIELDS = tuple(RECIPES["paper"])  # what a recipe decides; every other field has one default for all


def _check_choice(value, kind, name: str) -> None:
    if value not in get_args(kind):
        raise FerProbeError(f"{name} must be one of {', '.join(get_args(kind))}, got '{value}'")


@dataclass(frozen=True, kw_only=True)
class ProbeConfig:
    """Everything that decides a probe run; written into RUN/config.json. A recipe field left None takes the
    recipe's value, and a given one that differs from it is recorded in `overridden`: `recipe` never lies."""
    recipe: RecipeName = "paper"
    use_proj: bool | None = None  # apply the cross-attention's output projection (the paper's fork) or not (V-JEPA 1)
    batch_size: int | None = None
    # all: every clip of one random view concatenated along the tokens, as the paper trains (test: all views, or
    # one view with test_clips one); one: a random clip/view per video per epoch (the pooled baselines, held in
    # memory, see every clip view); test: every clip and view, or only the middle clip's first view
    train_clips: ClipMode | None = None
    epochs: int | None = None
    lrs: tuple[float, ...] | None = None
    weight_decays: tuple[float, ...] | None = None
    wd_schedule: WeightDecaySchedule | None = None  # cosine: from each weight decay to final_weight_decay
    final_weight_decay: float | None = None
    probe: str = "attentive"  # a name in fer_probe.registry.PROBES
    head: Head = "linear"  # linear (as V-JEPA) or mlp (3 layers)
    num_heads: int | None = None  # attention heads; None: the store's encoder heads (resolve_num_heads)
    num_queries: int = 1
    test_clips: ClipMode = "all"
    grad_clip: float = 1.0
    seed: int = 0
    device: str = "auto"  # auto, cpu, cuda or cuda:N (checked by device.resolve_device)
    memory_budget_mb: float = 2048.0  # decoded tokens kept in memory between epochs; 0 streams every read
    # auto: float32 on the CPU (exact, deterministic), bfloat16 autocast on CUDA; float16: autocast with a gradient
    # scaler on CUDA, as the reference code trains; bfloat16 on a CPU multiplies the tokens in bfloat16 (not exact)
    precision: Precision = "auto"
    schedule: Schedule = "all-folds"  # all folds' probes from one read of each clip, or fold after fold
    val_curve: bool = False  # score the inner validation videos after every epoch, not only after the last
    overridden: tuple[str, ...] = field(default=(), compare=False)  # fields set apart from the recipe

    def __post_init__(self):
        _check_choice(self.recipe, RecipeName, "recipe")
        recipe = RECIPES[self.recipe]
        given = {k: getattr(self, k) for k in RECIPE_FIELDS if getattr(self, k) is not None}
        for key in RECIPE_FIELDS:
            object.__setattr__(self, key, given.get(key, recipe[key]))
        if not self.overridden:
            object.__setattr__(self, "overridden", tuple(k for k, v in given.items() if v != recipe[k]))
        if self.probe not in PROBES:
            raise FerProbeError(f"probe must be one of {', '.join(PROBES)}, got '{self.probe}'")
        _check_choice(self.head, Head, "head")
        _check_choice(self.train_clips, ClipMode, "train_clips")
        _check_choice(self.test_clips, ClipMode, "test_clips")
        _check_choice(self.precision, Precision, "precision")
        _check_choice(self.wd_schedule, WeightDecaySchedule, "wd_schedule")
        _check_choice(self.schedule, Schedule, "schedule")
        if self.epochs < 1 or self.batch_size < 1 or self.num_queries < 1:
            raise FerProbeError("epochs, batch_size and num_queries must be at least 1")
        if self.num_heads is not None and self.num_heads < 1:
            raise FerProbeError(f"num_heads must be at least 1, got {self.num_heads}")
        if not self.lrs or not self.weight_decays:
            raise FerProbeError("give at least one learning rate and one weight decay")
        values = (*self.lrs, *self.weight_decays, self.final_weight_decay, self.grad_clip)
        if any(not math.isfinite(v) or v < 0 for v in values) or min(self.lrs) <= 0:
            raise FerProbeError("learning rates must be positive; weight decays and grad_clip not negative")

    @classmethod
    def from_recipe(cls, recipe: str = "paper", **overrides) -> "ProbeConfig":
        """The recipe's values, then every override that is not None; the overridden recipe fields are recorded."""
        if recipe not in RECIPES:
            raise FerProbeError(f"recipe must be one of {', '.join(RECIPES)}, got '{recipe}'")
        known = {f.name for f in fields(cls)} - {"recipe", "overridden"}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise FerProbeError(f"unknown probe setting(s): {', '.join(unknown)}")
        return cls(recipe=recipe, **{k: v for k, v in overrides.items() if v is not None})

    def as_dict(self) -> dict:
        return asdict(self)

    def with_num_heads(self, num_heads: int) -> "ProbeConfig":
        return replace(self, num_heads=num_heads)

    def compute_dtype(self) -> "torch.dtype":
        """The dtype tokens are fed in (fer_probe.device.compute_dtype)."""
        from fer_probe.device import compute_dtype

        return compute_dtype(self.precision, self.device)


def recipe_values(name: str) -> str:
    """`paper 20, vjepa 20, fast 20` for a field, or its one value where every recipe agrees: help texts."""
    values = {r: values[name] for r, values in RECIPES.items()}
    shown = {r: ",".join(f"{x:g}" for x in v) if isinstance(v, tuple) else str(v) for r, v in values.items()}
    if len(set(shown.values())) == 1:
        return next(iter(shown.values()))
    return ", ".join(f"{r} {v}" for r, v in shown.items())


def default_of(name: str):
    """The one default of a field that no recipe decides (help texts)."""
    return next(f.default for f in fields(ProbeConfig) if f.name == name)


def resolve_num_heads(requested: int | None, encoder: dict, width: int) -> tuple[int, str]:
    """Attention heads of the probe and why: the requested count, else the store's encoder heads when they divide
    the width (as V-JEPA's evaluation does), else the largest divisor of the width up to 16."""
    if requested is not None:
        if width % requested:
            raise FerProbeError(f"{requested} attention heads do not divide the token width {width}; choose a "
                                "divisor of the width")
        return requested, f"{requested} attention heads (asked for)"
    stored = encoder.get("num_heads")
    if isinstance(stored, int) and stored > 0 and width % stored == 0:
        return stored, f"{stored} attention heads (the store's encoder has {stored})"
    fallback = max(h for h in range(1, 17) if width % h == 0)
    reason = "the store does not name its encoder's heads" if stored is None else \
        f"the store's {stored} encoder heads do not divide the width {width}"
    return fallback, f"{fallback} attention heads ({reason}; the largest divisor of {width} up to 16)"
