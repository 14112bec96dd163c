"""The command-line options of fer-probe that more than one command takes, defined once, with help texts that show
the real defaults (the recipes' and ProbeConfig's values). torch-free, as the rest of the command line."""

import functools
import inspect
from pathlib import Path
from typing import Annotated

import typer

from fer_probe.config import ProbeConfig, default_of, recipe_values
from fer_probe.errors import FerProbeError
from fer_probe.probes.registry import PROBES

__all__ = ["PROBE_OPTIONS", "probe_options", "config_from_options", "default_of"]


def floats(text: str | None, option: str) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError as exc:
        raise FerProbeError(f"{option} takes comma-separated numbers such as 1e-3,3e-4; got '{text}'") from exc


RECIPE_HELP = "paper (the paper's code: proj applied, batch 4, all clips), vjepa (upstream V-JEPA 1: proj not " \
              "applied) or fast (one clip per epoch, batch 8); the options below override single values"
Store = Annotated[str, typer.Argument(help="a store (STORE.zarr) written by fer-cache extract")]
Recipe = Annotated[str, typer.Option(help=RECIPE_HELP)]
Out = Annotated[Path, typer.Option(help="run directory (refused if not empty, unless --overwrite)")]
Epochs = Annotated[int | None, typer.Option(min=1, help=f"training epochs [{recipe_values('epochs')}]")]
Seed = Annotated[int | None, typer.Option(min=0, max=2**32 - 1, help="seed for folds, sampling and initialisation "
                                                                     f"(0 to 2^32-1) [{default_of('seed')}]")]
Device = Annotated[str | None, typer.Option(help=f"auto, cpu or cuda [{default_of('device')}]")]
BatchSize = Annotated[int | None, typer.Option(min=1, help="videos per training step "
                                                           f"[{recipe_values('batch_size')}]")]
NumHeads = Annotated[int | None, typer.Option(min=1, help="attention heads of the probe [the store's encoder "
                                                          "heads]")]
Incomplete = Annotated[bool, typer.Option(help="leave out pending/failed videos instead of refusing")]
Overwrite = Annotated[bool, typer.Option(help="replace the run files of an existing run directory")]

# The options of every command that trains probes (cv and cross), defined once: name -> (type and help, default).
PROBE_OPTIONS = {
    "recipe": (Recipe, "paper"),
    "probe": (Annotated[str, typer.Option(help=f"one of: {', '.join(PROBES)}")], default_of("probe")),
    "epochs": (Epochs, None),
    "seed": (Seed, None),
    "device": (Device, None),
    "batch_size": (BatchSize, None),
    "lr": (Annotated[str | None, typer.Option("--lr", help="learning rate(s), comma-separated; several train as "
                                                           "candidates chosen on an inner validation split "
                                                           f"[{recipe_values('lrs')}]")], None),
    "wd": (Annotated[str | None, typer.Option("--wd", help="weight decay(s), comma-separated, as --lr "
                                                           f"[{recipe_values('weight_decays')}]")], None),
    "wd_schedule": (Annotated[str | None, typer.Option(help="cosine (to final weight decay "
                                                            f"{recipe_values('final_weight_decay')}, as V-JEPA) or "
                                                            f"constant [{recipe_values('wd_schedule')}]")], None),
    "head": (Annotated[str | None, typer.Option("--head", help="classification head: linear (V-JEPA) or mlp (3 "
                                                               f"layers) [{default_of('head')}]")], None),
    "num_heads": (NumHeads, None),
    "proj": (Annotated[bool | None, typer.Option("--proj/--no-proj", help="apply the cross-attention's output "
                                                                          "projection "
                                                                          f"[{recipe_values('use_proj')}]")], None),
    "train_clips": (Annotated[str | None, typer.Option(help="all (every clip of a view concatenated, as the paper) "
                                                            "or one (a random clip per video and epoch) "
                                                            f"[{recipe_values('train_clips')}]")], None),
    "test_clips": (Annotated[str | None, typer.Option(help="all clips and views of a test video (concatenated, as "
                                                           "trained), each (one pass per clip view, voted over), "
                                                           "one, or auto (each on a dense store of every clip start, "
                                                           f"else all) [{default_of('test_clips')}]")], None),
    "train_copies": (Annotated[str | None, typer.Option(help="augmented (one of the store's augmented copies of "
                                                             "each clip, drawn every epoch) or clean; auto: augmented "
                                                             "where the store has copies "
                                                             f"[{default_of('train_copies')}]")], None),
    "memory_mb": (Annotated[float | None, typer.Option(help="keep the stored tokens in memory if they fit (MB); "
                                                            f"0 streams [{default_of('memory_budget_mb'):g}]")],
                  None),
    "precision": (Annotated[str | None, typer.Option(help="auto (float32 on the CPU, bfloat16 on CUDA), float32, "
                                                          "bfloat16, or float16 (CUDA, with a gradient scaler, as "
                                                          f"the reference) [{default_of('precision')}]")], None),
    "allow_incomplete": (Incomplete, False),
    "overwrite": (Overwrite, False),
}


def probe_options(command):
    """Give a command the options of PROBE_OPTIONS and hand it their ProbeConfig as `cfg` (plus `recipe`, `probe`,
    `allow_incomplete` and `overwrite` as themselves): one definition for cv and cross."""
    signature = inspect.signature(command)
    own = [p for p in signature.parameters.values() if p.name not in ("cfg", *PROBE_OPTIONS)]
    added = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=kind, default=default)
             for name, (kind, default) in PROBE_OPTIONS.items()]

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        options = {name: kwargs.pop(name) for name in PROBE_OPTIONS}
        passed = {k: options[k] for k in ("recipe", "probe", "allow_incomplete", "overwrite")
                  if k in signature.parameters}
        cfg = config_from_options(options.pop("recipe"), **{k: v for k, v in options.items()
                                                      if k not in ("allow_incomplete", "overwrite")})
        return command(*args, cfg=cfg, **passed, **kwargs)

    wrapper.__signature__ = signature.replace(parameters=sorted(own + added, key=lambda p: p.kind))
    wrapper.__annotations__ = {p.name: p.annotation for p in own + added}
    return wrapper


def config_from_options(recipe: str, **values) -> ProbeConfig:
    """The ProbeConfig of a recipe and the options given (None: the recipe's value)."""
    values["lrs"], values["weight_decays"] = floats(values.pop("lr"), "--lr"), floats(values.pop("wd"), "--wd")
    values["memory_budget_mb"] = values.pop("memory_mb")
    values["use_proj"] = values.pop("proj", None)
    return ProbeConfig.from_recipe(recipe, **values)
