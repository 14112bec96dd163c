"""The ablations readers of the paper ask for next, from one cache, on the same folds, with paired bootstraps."""

import json
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from fer_probe.config import DEFAULT_FOLDS, SHARED, ProbeConfig, differences
from fer_probe.errors import FerProbeError, RunDirectoryError
from fer_probe.protocols.cv import run_cv, run_cv_many
from fer_probe.protocols.runs import RunResult
from fer_probe.protocols.stores import (
    by_objective,
    compared_videos,
    probe_heads,
    same_extraction_notes,
    store_attrs,
    store_label,
    store_record,
)
from fer_probe.results.metrics import N_BOOT, bootstrap_ci, distinguishable, p_text, paired_bootstrap, uar
from fer_probe.results.outputs import is_run_dir

OWNED = ("ablation.json", "ablation.md", "ablation.png")


@dataclass(kw_only=True)
class VariantResult:
    """One variant: its UAR (PBV) over all its test videos, with a bootstrap interval, and what it changes."""
    variant: str
    uar_pbv: float
    ci95: list[float]
    changes: dict


@dataclass(kw_only=True)
class PairedComparison:
    """A against B on the same test videos: a paired bootstrap of the UAR difference."""
    comparison: str
    a: str
    b: str
    uar_a: float
    uar_b: float
    difference: float
    ci95: list[float]
    p_value: float
    distinguishable: bool
    by_construction: bool = False  # A and B are the same posteriors (one per video): not a measured null effect


@dataclass(kw_only=True)
class AblationSummary:
    variants: list[VariantResult]
    comparisons: list[PairedComparison]
    left_out: int = 0  # videos done in only some of the compared stores (--allow-incomplete), left out of all
    stores: list[dict] = field(default_factory=list)  # each store: its label, objective, and whether fine-tuned
    notes: list[str] = field(default_factory=list)  # e.g. two stores of one extraction

    def as_json(self) -> dict:
        """ablation.json: {"variants": [...], "comparisons": [...], "left_out_videos": n, "stores": [...]}."""
        return {"variants": [asdict(v) for v in self.variants], "comparisons": [asdict(c) for c in self.comparisons],
                "left_out_videos": self.left_out, "stores": self.stores, "notes": self.notes}


def variants(base: ProbeConfig) -> dict[str, ProbeConfig]:
    """name -> config: the recipe's attentive probe and one change at a time."""
    other_clips = "one" if base.train_clips == "all" else "all"
    return {
        "attentive": base,
        "linear": base.with_settings(probe="linear"),
        "attentive-no-proj" if base.use_proj else "attentive-proj": base.with_settings(use_proj=not base.use_proj),
        "attentive-test-one-clip": base.with_settings(test_clips="one"),
        f"attentive-train-{'one-clip' if other_clips == 'one' else 'all-clips'}":
            base.with_settings(train_clips=other_clips),
    }


def comparisons(names: list[str]) -> list[tuple[str, str, str, str, str]]:
    """(question, A, B, vote A, vote B) over the variant names."""
    base, linear, proj, test_one, clips = names
    return [("probe type", base, linear, "pbv", "pbv"), ("cross-attention proj", base, proj, "pbv", "pbv"),
            ("clips at test time", base, test_one, "pbv", "pbv"), ("voting", base, base, "pbv", "mv"),
            ("training clips", base, clips, "pbv", "pbv")]


def by_construction(question: str, base: ProbeConfig, result: RunResult) -> bool:
    """Whether a row compares what cannot differ: voting over one posterior per video, or the test clips of a probe
    that scores all its clips concatenated in one pass over a store of one view (one clip is that same pass)."""
    return result.one_posterior_per_video and (question == "voting" or (question == "clips at test time"
                                                                        and base.train_clips == "all"))


def video_predictions(result: RunResult, vote: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    ids, labels, preds = [], [], []
    for fold in result.folds:
        pred_pbv, pred_mv, _ = fold.video_level()
        ids += fold.video_ids
        labels.append(fold.labels)
        preds.append(pred_pbv if vote == "pbv" else pred_mv)
    return ids, np.concatenate(labels), np.concatenate(preds)


def prepare_ablation_dir(out: Path, overwrite: bool) -> None:
    """As for runs: a non-empty folder only with overwrite, and then only an earlier ablation's files go."""
    if out.exists() and not out.is_dir():
        raise FerProbeError(f"{out} is a file; the ablation output must be a folder")
    if not (out.is_dir() and any(out.iterdir())):
        return
    if not overwrite:
        raise RunDirectoryError(f"{out} is not empty; replace the earlier ablation there or choose another output "
                                "folder")
    if not (out / "ablation.json").is_file():
        raise FerProbeError(f"{out} is not empty and holds no earlier ablation; nothing was removed: choose another "
                            "output folder")
    for name in OWNED:
        (out / name).unlink(missing_ok=True)
    for child in out.iterdir():
        if child.is_dir() and is_run_dir(child):
            shutil.rmtree(child)


def versus_names(store: str, versus: list[str]) -> list[str]:
    """One variant name per other store, from its file name (numbered where two share one)."""
    names, seen = [], {Path(store).stem}
    for other in versus:
        stem, k = Path(other).stem, 2
        name = stem
        while name in seen:
            name, k = f"{stem}-{k}", k + 1
        seen.add(name)
        names.append(f"attentive-on-{name}")
    return names


def run_ablation(store: str, out: str | Path, base: ProbeConfig, *, n_folds: int = DEFAULT_FOLDS,
                 allow_incomplete: bool = False, overwrite: bool = False, versus: list[str] | str | None = None,
                 stores_only: bool = False, test_store: str | None = None,
                 on_progress: Callable[[str, int, int], None] | None = None) -> AblationSummary:
    """Each variant is a full cross-validation run in out/<variant>, all on the first run's folds; the variants on
    the first store train together, from one read of each clip per epoch (run_cv_many). A store with augmented
    copies adds the row training copies (augmented vs clean); `test_store` (every clip start of the same videos)
    the row test clips (the store's clips vs every start). `versus`: stores
    of the same videos extracted otherwise (another encoder, face crops); the recipe's probe trains on each, at its
    store's width and heads, and is compared with the first store's by a paired bootstrap. `stores_only` leaves out
    the one-store variants. Returns every variant's pooled UAR with its interval and the paired comparisons."""
    out = Path(out)
    versus = [versus] if isinstance(versus, str) else list(versus or [])
    if stores_only and not versus:
        raise FerProbeError("--stores-only compares stores: name at least one --versus store")
    if not stores_only and base.probe != "attentive":
        raise FerProbeError(f"the ablations vary the attentive probe (one row is the linear probe); --probe "
                            f"{base.probe} applies with --stores-only, where it is the probe trained on every store")
    common, left_out = compared_videos(store, versus, allow_incomplete)
    prepare_ablation_dir(out, overwrite)
    configs = {"attentive": base} if stores_only else variants(base)
    stores = {name: store for name in configs}
    protocol = [] if stores_only else protocol_rows(store, base, test_store)
    for _, _, name, cfg in protocol:
        configs[name], stores[name] = cfg, store
    for name, other in zip(versus_names(store, versus), versus):
        configs[name], stores[name] = base, other
    # the variants on the baseline's store train with it, from one read of each clip per epoch (run_cv_many)
    tests = {EVERY_START: test_store} if EVERY_START in configs else {}  # variants scored from another store
    together = [n for n, c in configs.items() if stores[n] == store and shares_training(c, base) and n not in tests]
    results = run_cv_many(store, {n: (out / n, configs[n]) for n in together}, n_folds=n_folds,
                          allow_incomplete=allow_incomplete, only=common,
                          on_progress=labelled(on_progress, f"{len(together)} variants" if len(together) > 1
                                               else together[0]))
    folds_file = out / together[0] / "folds.json"
    for name, cfg in configs.items():
        if name not in together:
            results[name] = run_cv(stores[name], out / name, cfg, n_folds=n_folds, folds_file=folds_file,
                                   allow_incomplete=allow_incomplete, on_progress=labelled(on_progress, name),
                                   only=common, test_store=tests.get(name))
    results = {name: results[name] for name in configs}
    questions = [] if stores_only else comparisons(list(configs)[:5])
    questions += [(question, "attentive", name, "pbv", "pbv") for question, _, name, _ in protocol]
    for name, other in zip(versus_names(store, versus), versus):
        questions.append((f"store ({Path(store).name} vs {Path(other).name})", "attentive", name, "pbv", "pbv"))
    rows = [paired(question, results, base, a=a, b=b, votes=(vote_a, vote_b))
            for question, a, b, vote_a, vote_b in questions]
    summary = AblationSummary(variants=variant_rows(results, configs, base, stores=stores), comparisons=rows,
                              left_out=left_out, stores=[store_record(s) for s in [store, *versus]],
                              notes=same_extraction_notes(store, versus))
    (out / "ablation.json").write_text(json.dumps(summary.as_json(), indent=1))
    heads = {stores[name]: results[name].config.num_heads for name in configs}  # each store's probe, as trained
    write_ablation_md(out, [store, *versus], base, n_folds=n_folds, rows=rows, left_out=left_out, heads=heads,
                      notes=summary.notes)
    from fer_probe.results.plots import ablation_png
    ablation_png(summary, out / "ablation.png", f"ablations on {Path(store).name} (recipe {base.recipe})",
                 chance=1 / len(results["attentive"].class_names))
    return summary


def paired(question: str, results: dict[str, RunResult], base: ProbeConfig, *, a: str, b: str,
           votes: tuple[str, str]) -> PairedComparison:
    """Run a against run b on the same test videos: a paired bootstrap of their UAR difference."""
    ids_a, labels, pred_a = video_predictions(results[a], votes[0])
    ids_b, _, pred_b = video_predictions(results[b], votes[1])
    order = {v: i for i, v in enumerate(ids_b)}
    pred_b = pred_b[[order[v] for v in ids_a]]  # the same videos in the same order
    test = paired_bootstrap(labels, pred_a, pred_b, metric=uar, seed=base.seed)
    return PairedComparison(comparison=question, a=f"{a} ({votes[0].upper()})", b=f"{b} ({votes[1].upper()})",
                            uar_a=uar(labels, pred_a), uar_b=uar(labels, pred_b), **test,
                            distinguishable=distinguishable(test["p_value"]),
                            by_construction=by_construction(question, base, results[a]))


EVERY_START = "attentive-test-every-start"


def protocol_rows(store: str, base: ProbeConfig, test_store: str | None) -> list[tuple[str, str, str, ProbeConfig]]:
    """(question, -, variant, config) of the cache's two shortcuts against the paper's protocol, where the stores
    can measure them: fixed augmented copies against clean clips, and the store's clips against every clip start
    (test_store)."""
    from fer_probe.data.reader import CacheReader

    with CacheReader(store, allow_incomplete=True) as reader:
        copies = reader.copies
    rows = []
    if copies and base.train_copies != "clean":
        rows.append((f"training copies ({copies} augmented vs clean)", "", "attentive-train-clean",
                     base.with_settings(train_copies="clean")))
    if test_store is not None:
        rows.append(("test clips (the store's vs every start)", "", EVERY_START, base))
    return rows


def shares_training(cfg: ProbeConfig, base: ProbeConfig) -> bool:
    """Whether a variant can train from the baseline's reads (they agree on every SHARED field)."""
    return not differences([cfg, base], SHARED)


def labelled(on_progress: Callable[[str, int, int], None] | None, name: str):
    if on_progress is None:
        return None
    return lambda label, done, total: on_progress(f"{name} ({label})", done, total)


def variant_rows(results: dict[str, RunResult], configs: dict[str, ProbeConfig], base: ProbeConfig, *,
                 stores: dict[str, str]) -> list[VariantResult]:
    """UAR (PBV) of each variant over all its test videos, with a bootstrap interval, and what it changes."""
    out = []
    first = stores["attentive"]
    for name, result in results.items():
        _, labels, preds = video_predictions(result, "pbv")
        changed = {k: v for k, v in configs[name].as_dict().items()
                   if k != "overridden" and v != base.as_dict().get(k)}
        if stores[name] != first:
            changed["store"] = store_label(stores[name])
            changed["objective"] = (store_attrs(stores[name]) or {}).get("objective")
        out.append(VariantResult(variant=name, uar_pbv=uar(labels, preds),
                                 ci95=bootstrap_ci(labels, preds, uar, seed=base.seed), changes=changed))
    return out


def write_ablation_md(out: Path, stores: list[str], base: ProbeConfig, *, n_folds: int,
                      rows: list[PairedComparison], left_out: int = 0, heads: dict[str, int] | None = None,
                      notes: list[str] = ()) -> None:
    store = stores[0]
    lines = ["# Ablations", "", f"Store `{store}`, recipe **{base.recipe}**, {n_folds} subject-independent folds "
             f"shared by every variant, {base.epochs} epochs, seed {base.seed}. Each variant changes one setting of "
             "the baseline. UAR over all test videos pooled across folds (so the baseline differs slightly from cv's "
             f"mean of per-fold UARs); paired bootstrap over the same test videos ({N_BOOT} resamples).", "",
             "![UAR per variant with 95% intervals, and paired differences](ablation.png)", ""]
    tuned = [store_label(s) for s in stores if ((store_attrs(s) or {}).get("encoder") or {}).get("fine_tuned")]
    if tuned:
        lines += ["**Note: fine-tuned with labels, not a frozen self-supervised encoder:** "
                  + "; ".join(f"`{t}`" for t in tuned), ""]
    lines += [f"**Note:** {note}" for note in notes] + ([""] if notes else [])
    if left_out:
        lines += [f"{left_out} videos done in only some of the stores were left out of every run "
                  "(--allow-incomplete): each store is measured on the videos done in all of them.", ""]
    if len(stores) > 1:
        lines += ["Stores compared (the same videos; each probe at its store's token width and heads, on the same "
                  "folds), by their encoder's pretraining objective:", ""]
        lines += [f"- {objective}: " + "; ".join(f"`{store_label(s)}`{probe_heads(s, (heads or {}).get(s))}"
                                                  for s in members)
                  for objective, members in by_objective(stores).items()] + [""]
    lines += ["| comparison | A | B | UAR A | UAR B | A - B [95% CI] | p | distinguishable from noise |",
              "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        verdict = "identical by construction (one posterior per video)" if r.by_construction else \
            ("yes" if r.distinguishable else "no")
        lines.append(f"| {r.comparison} | {r.a} | {r.b} | {r.uar_a:.3f} | {r.uar_b:.3f} | "
                     f"{r.difference:+.3f} [{r.ci95[0]:+.3f}, {r.ci95[1]:+.3f}] | {p_text(r.p_value)} | {verdict} |")
    (out / "ablation.md").write_text("\n".join(lines) + "\n")
