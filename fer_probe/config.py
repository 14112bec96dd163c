"""What decides a probe run: recipes (complete configurations, by name), the resolved ProbeConfig, and the attention
heads from the store. torch-free, so that the command line shows the recipes' values in its help.

A recipe fixes every training choice at once; individual options override single values of it. The resolved
config, with the recipe's name and the names of the overridden fields, is written into every run directory.
"""

import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import TYPE_CHECKING, Literal, get_args

from fer_probe.errors import FerProbeError
from fer_probe.probes.registry import PROBES

if TYPE_CHECKING:
    from fer_probe.data.precision import Precision

RecipeName = Literal["paper", "vjepa", "fast"]
Head = Literal["linear", "mlp"]
ClipMode = Literal["one", "all"]
TestClips = Literal["auto", "one", "all", "each"]  # each: one pass per clip view (the reference's final evaluation)
TrainCopies = Literal["auto", "augmented", "clean"]  # a store's augmented copies of its clips, or its clean views
PrecisionName = Literal["auto", "float32", "bfloat16", "float16"]
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
DEFAULT_FOLDS = 5  # subject folds of cv and ablate, as the paper


def _check_choice(value, kind, name: str) -> None:
    if value not in get_args(kind):
        raise FerProbeError(f"{name} must be one of {', '.join(get_args(kind))}, got '{value}'")


# What a field does to runs trained together (cv's engine trains several runs from one read of each clip: ablate):
SHARED = "shared"  # runs trained together must agree on it (they share batches, schedules and candidates' folds)
VARIANT = "variant"  # runs trained together may differ in it: each value is a candidate group of one grid
REPORTING = "reporting"  # describes the run and changes nothing that is computed
ROLES = (SHARED, VARIANT, REPORTING)


def role(kind: str, default=None, *, test_only: bool = False, **options):
    """A ProbeConfig field with its role (field metadata). A test_only variant decides only how test videos are
    scored: runs that differ in nothing else share their trained probes."""
    return field(default=default, metadata={"role": kind, "test_only": test_only}, **options)


@dataclass(frozen=True, kw_only=True)
class ProbeConfig:
    """Everything that decides a probe run; written into RUN/config.json. A recipe field left None takes the
    recipe's value, and a given one that differs from it is recorded in `overridden`: `recipe` never lies. Every
    field declares its role for runs trained together (SHARED, VARIANT, REPORTING)."""
    recipe: RecipeName = role(REPORTING, "paper")
    use_proj: bool | None = role(VARIANT)  # apply the cross-attention's output projection (the paper's fork) or not
    batch_size: int | None = role(SHARED)
    # all: every clip of one random view concatenated along the tokens, as the paper trains (test: all views, or
    # one view with test_clips one); one: a random clip/view per video per epoch (the pooled baselines, held in
    # memory, see every clip view); test: every clip and view (all: one pass per view over its concatenated clips for
    # probes trained on concatenated clips; each: one pass per clip view, voted over), or the middle clip's first view
    train_clips: ClipMode | None = role(VARIANT)
    epochs: int | None = role(SHARED)
    lrs: tuple[float, ...] | None = role(SHARED)
    weight_decays: tuple[float, ...] | None = role(SHARED)
    wd_schedule: WeightDecaySchedule | None = role(SHARED)  # cosine: from each weight decay to final_weight_decay
    final_weight_decay: float | None = role(SHARED)
    probe: str = role(VARIANT, "attentive")  # a name in fer_probe.probes.registry.PROBES
    head: Head = role(SHARED, "linear")  # linear (as V-JEPA) or mlp (3 layers)
    num_heads: int | None = role(SHARED)  # attention heads; None: the store's encoder heads (resolve_num_heads)
    num_queries: int = role(SHARED, 1)
    # auto: each on a dense scoring store (every clip start), else all (resolved by protocols.runs.plan_run)
    test_clips: TestClips = role(VARIANT, "auto", test_only=True)
    # auto: augmented where the store has copies and the probe reads tokens (each epoch draws one per clip), else
    # clean; test and validation passes read clean tokens always
    train_copies: TrainCopies = role(SHARED, "auto")
    grad_clip: float = role(SHARED, 1.0)
    seed: int = role(SHARED, 0)
    device: str = role(SHARED, "auto")  # auto, cpu, cuda or cuda:N (checked by precision.resolve_device)
    memory_budget_mb: float = role(SHARED, 2048.0)  # stored tokens kept in memory between epochs; 0 streams
    # auto: float32 on the CPU (exact, deterministic), bfloat16 autocast on CUDA; float16: autocast with a gradient
    # scaler on CUDA, as the reference code trains; bfloat16 on a CPU multiplies the tokens in bfloat16 (not exact)
    precision: PrecisionName = role(SHARED, "auto")
    schedule: Schedule = role(SHARED, "all-folds")  # all folds' probes from one read of each clip, or fold by fold
    val_curve: bool = role(SHARED, False)  # score the inner validation videos after every epoch, not only the last
    overridden: tuple[str, ...] = role(REPORTING, (), compare=False)  # fields set apart from the recipe

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
        _check_choice(self.test_clips, TestClips, "test_clips")
        _check_choice(self.train_copies, TrainCopies, "train_copies")
        _check_choice(self.precision, PrecisionName, "precision")
        _check_choice(self.wd_schedule, WeightDecaySchedule, "wd_schedule")
        _check_choice(self.schedule, Schedule, "schedule")
        for name in ("epochs", "batch_size", "num_queries", "seed"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise FerProbeError(f"{name} must be a whole number, got {value!r}")
        if not isinstance(self.use_proj, bool):
            raise FerProbeError(f"use_proj must be True or False, got {self.use_proj!r}")
        if self.epochs < 1 or self.batch_size < 1 or self.num_queries < 1:
            raise FerProbeError("epochs, batch_size and num_queries must be at least 1")
        if self.num_heads is not None and (not isinstance(self.num_heads, int) or isinstance(self.num_heads, bool)
                                           or self.num_heads < 1):
            raise FerProbeError(f"num_heads must be a whole number of at least 1, got {self.num_heads!r}")
        for name in ("lrs", "weight_decays"):  # a single number is one candidate
            value = getattr(self, name)
            value = (value,) if isinstance(value, (int, float)) and not isinstance(value, bool) else value
            if not isinstance(value, (tuple, list)) or not all(isinstance(v, (int, float)) and not isinstance(
                    v, bool) for v in value):
                raise FerProbeError(f"{name} must be a number or a tuple of numbers, got {value!r}")
            object.__setattr__(self, name, tuple(float(v) for v in value))
        if not isinstance(self.device, str):
            raise FerProbeError(f"device must be a string (auto, cpu, cuda or cuda:N), got {self.device!r}")
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

    def with_settings(self, **changes) -> "ProbeConfig":
        """This config with some fields changed, the changes recorded as overrides of its recipe."""
        overridden = tuple(dict.fromkeys(self.overridden + tuple(changes)))
        return replace(self, **changes, overridden=overridden)

    @property
    def candidates_per_fold(self) -> int:
        """(lr, weight decay) pairs: more than one are chosen among on an inner validation split."""
        return len(self.lrs) * len(self.weight_decays)

    def resolve_precision(self) -> "Precision":
        """The run's device and dtypes, resolved once (fer_probe.data.precision)."""
        from fer_probe.data.precision import Precision

        return Precision.resolve(self.precision, self.device)

    def variant(self) -> str:
        """The candidate group of this config among runs trained together: its VARIANT fields that decide training,
        e.g. `use_proj=True/train_clips=all/probe=attentive`."""
        return "/".join(f"{f.name}={getattr(self, f.name)}" for f in fields(self)
                        if f.metadata.get("role") == VARIANT and not f.metadata.get("test_only"))


def differences(configs: list[ProbeConfig], kind: str) -> list[str]:
    """The fields of a role on which the configs disagree."""
    names = [f.name for f in fields(configs[0]) if f.metadata.get("role", SHARED) == kind]
    return [name for name in names if len({repr(getattr(c, name)) for c in configs}) > 1]


def check_trained_together(configs: list[ProbeConfig]) -> None:
    """Runs trained together may differ only in VARIANT and REPORTING fields; anything else (a field without a role
    counts as SHARED) is refused in one line, never merged."""
    differ = differences(configs, SHARED)
    if differ:
        raise FerProbeError(f"runs trained together must agree on {', '.join(differ)}; run them one by one")


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
