"""Tables of report.md that read several run files: per fold, and this run against the paper's configuration."""

from fer_probe.config import ProbeConfig
from fer_probe.results.metrics import uar

# What the paper's code does (DESIGN section 10), setting by setting.
PAPER = {
    "probe": "attentive (1 query, linear head)",
    "num_heads": "the encoder's heads (16 for ViT-H)",
    "use_proj": "applied (the fork's one change to V-JEPA 1)",
    "batch_size": "4",
    "train_clips": "all 8 clips concatenated, freshly augmented every epoch",
    "test_clips": "3 views x 8 clips while training; every clip start at the end",
    "epochs": "20",
    "lrs": "1e-3, cosine to 0",
    "weight_decays": "0.01, cosine to 1e-6",
    "init": "V-JEPA's: trunc_normal(0.02), proj and fc2 / sqrt(2)",
    "precision": "float16 autocast with a gradient scaler (GPU)",
    "selection": "the last epoch",
    "tokens": "the encoder's tokens, every one D wide",
}


def words(value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return "-" if value is None else str(value)


def several_candidates(probe: dict) -> bool:
    """Whether a run's config.json chose among (lr, weight decay) candidates (ProbeConfig.candidates_per_fold)."""
    return len(probe.get("lrs", [])) * len(probe.get("weight_decays", [])) > 1


def compact_text(basis: dict | None) -> str | None:
    """How a compact store holds its tokens, for the reports (None for a full store)."""
    if not basis:
        return None
    fitted = basis.get("fitted_on", {})
    return (f"rank-{basis['rank']} coordinates of a compact store ({basis['explained']:.1%} of the token variance "
            f"kept; basis fitted on {fitted.get('tokens', '?')} tokens of {fitted.get('videos', '?')} videos of "
            f"{fitted.get('store') or 'dataset ' + str(fitted.get('dataset')) + ' at extraction'})")


def this_run(probe: dict, clips: int | None, basis: dict | None = None) -> dict[str, str]:
    several = several_candidates(probe)
    wd_end = f", cosine to {probe.get('final_weight_decay'):g}" if probe.get("wd_schedule") == "cosine" else \
        ", constant"
    train = {"all": f"all {clips or '?'} cached clips of one view concatenated", "one": "one cached clip per epoch"}
    return {
        "probe": f"{probe.get('probe')} ({probe.get('num_queries')} query, {probe.get('head')} head)",
        "num_heads": words(probe.get("num_heads")),
        "use_proj": "applied" if probe.get("use_proj") else "not applied (upstream V-JEPA 1)",
        "batch_size": words(probe.get("batch_size")),
        "train_clips": train.get(probe.get("train_clips"), "?"),
        "test_clips": {"all": "every cached clip and view", "each": "every cached clip view, one pass each (voted)"}
        .get(probe.get("test_clips"), "one"),
        "epochs": words(probe.get("epochs")),
        "lrs": ", ".join(f"{v:g}" for v in probe.get("lrs", [])) + ", cosine to 0",
        "weight_decays": ", ".join(f"{v:g}" for v in probe.get("weight_decays", [])) + wd_end,
        "init": "V-JEPA's (the same)",
        "precision": words(probe.get("precision")),
        "selection": "the last epoch" + ("; candidates chosen on an inner validation split" if several else ""),
        "tokens": compact_text(basis) or "the encoder's tokens (the same)",
    }


def same_as_paper(probe: dict, encoder_heads, compact: bool = False) -> dict[str, bool]:
    """Setting by setting, whether this run trains as the paper recipe does (config.RECIPES["paper"])."""
    several = several_candidates(probe)
    paper = ProbeConfig(recipe="paper")
    same = {k: probe.get(k) == getattr(paper, k) for k in ("use_proj", "batch_size", "train_clips", "test_clips",
                                                            "epochs", "head", "num_queries", "probe")}
    return {
        "probe": same["probe"] and same["num_queries"] and same["head"],
        "num_heads": probe.get("num_heads") == encoder_heads,
        "use_proj": same["use_proj"],
        "batch_size": same["batch_size"],
        "train_clips": same["train_clips"],
        "test_clips": same["test_clips"],
        "epochs": same["epochs"],
        "lrs": tuple(probe.get("lrs", [])) == paper.lrs,
        "weight_decays": tuple(probe.get("weight_decays", [])) == paper.weight_decays
        and probe.get("wd_schedule") == paper.wd_schedule
        and probe.get("final_weight_decay") == paper.final_weight_decay,
        "init": True,
        "precision": probe.get("precision") == "float16",
        "selection": not several,
        "tokens": not compact,
    }


def paper_table(config: dict) -> list[str]:
    probe = config.get("probe", {})
    attrs = config.get("store_attrs", {})
    basis = attrs.get("storage", {}).get("basis")
    mine = this_run(probe, attrs.get("sampling", {}).get("clips_per_video"), basis)
    same = same_as_paper(probe, attrs.get("encoder", {}).get("num_heads"), compact=bool(basis))
    lines = ["| setting | this run | the paper's code |", "|---|---|---|"]
    for key, paper in PAPER.items():
        lines.append(f"| {key} | {mine[key]}{'' if same[key] else ' *'} | {paper} |")
    return lines + ["", "`*` marks settings where this run differs from the paper's code."]


def fold_table(rows: list[dict], classes: list[str], folds: dict, *, heads: list[dict]) -> list[str]:
    """Per fold: its test subjects, test videos per class, UAR (PBV) and the chosen candidate."""
    entries = folds.get("folds", [])
    lines = ["| fold | test subjects | test videos per class | UAR (PBV) | chosen head |", "|---|---|---|---|---|"]
    for f in sorted({int(r["fold"]) for r in rows}):
        mine = [r for r in rows if int(r["fold"]) == f]
        subjects = entries[f]["test_subjects"] if f < len(entries) else sorted({r["subject"] for r in mine})
        counts = ", ".join(f"{c} {sum(r['label'] == c for r in mine)}" for c in classes
                           if any(r["label"] == c for r in mine))
        score = uar([classes.index(r["label"]) for r in mine], [classes.index(r["pred_pbv"]) for r in mine])
        chosen = next((h["head"] for t in heads if t.get("fold") == f for h in t["heads"] if h.get("selected")), "-")
        shown = ", ".join(subjects[:12]) + (f" (+{len(subjects) - 12})" if len(subjects) > 12 else "")
        lines.append(f"| {f} | {shown} | {counts} | {score:.3f} | {chosen} |")
    return lines
