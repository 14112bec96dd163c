"""Tables of report.md that read several run files: per fold, and this run against the paper's configuration."""

from fer_probe.config import ProbeConfig
from fer_probe.results.metrics import uar

# What the paper's code does (DESIGN section 10), setting by setting.
PAPER = {
    "probe": "attentive (1 query, linear head)",
    "num_heads": "the encoder's heads (16 for ViT-H)",
    "use_proj": "applied (the fork's one change to V-JEPA 1)",
    "batch_size": "4",
    "train_clips": "all 8 clips concatenated",
    "augmentation": "a fresh draw for every clip every epoch (RandAugment, resized crop, erasing)",
    "test_clips": "every clip start (stride 1) at short side 256/224 of the crop, one pass each, voted",
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


def paper_test(probe: dict, sampling: dict) -> bool:
    """Whether test videos were scored as the reference's final evaluation: one pass per clip, every start at
    stride 1, the short side at int(crop x 256 / 224)."""
    crop = sampling.get("crop") or 0
    return (probe.get("test_clips") == "each" and sampling.get("clips_per_video") == "all"
            and sampling.get("clip_stride") == 1 and sampling.get("resize") == int(crop * 256 / 224))


def augmentation_text(probe: dict, sampling: dict) -> str:
    augment = sampling.get("augment")
    if probe.get("train_copies") == "augmented" and augment:
        return f"{augment.get('copies')} fixed copies of every clip, drawn at extraction; one drawn per clip and epoch"
    return "none: the clean cached clips" + (" (the store has copies; --train-copies clean)" if augment else "")


def test_text(probe: dict, sampling: dict) -> str:
    dense = sampling.get("clips_per_video") == "all"
    clips = f"every clip start (stride {sampling.get('clip_stride')})" if dense else \
        f"{sampling.get('clips_per_video', '?')} cached clips x {sampling.get('spatial_views', '?')} views"
    passes = {"all": "concatenated as trained", "each": "one pass each, voted", "one": "the middle clip only"}
    return f"{clips} at short side {sampling.get('resize', '?')}, {passes.get(probe.get('test_clips'), '?')}"


def this_run(probe: dict, clips: int | None, basis: dict | None = None, *, sampling: dict | None = None,
             test_sampling: dict | None = None) -> dict[str, str]:
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
        "augmentation": augmentation_text(probe, sampling or {}),
        "test_clips": test_text(probe, test_sampling or sampling or {}),
        "epochs": words(probe.get("epochs")),
        "lrs": ", ".join(f"{v:g}" for v in probe.get("lrs", [])) + ", cosine to 0",
        "weight_decays": ", ".join(f"{v:g}" for v in probe.get("weight_decays", [])) + wd_end,
        "init": "V-JEPA's (the same)",
        "precision": words(probe.get("precision")),
        "selection": "the last epoch" + ("; candidates chosen on an inner validation split" if several else ""),
        "tokens": compact_text(basis) or "the encoder's tokens (the same)",
    }


def same_as_paper(probe: dict, encoder_heads, compact: bool = False, *, clips=None,
                  test_sampling: dict | None = None) -> dict[str, bool]:
    """Setting by setting, whether this run trains and tests as the paper's code does (config.RECIPES["paper"] on
    8 segments, and its final evaluation); augmentation never is: cached copies are fixed at extraction."""
    several = several_candidates(probe)
    paper = ProbeConfig(recipe="paper")
    same = {k: probe.get(k) == getattr(paper, k) for k in ("use_proj", "batch_size", "train_clips", "epochs",
                                                            "head", "num_queries", "probe")}
    return {
        "probe": same["probe"] and same["num_queries"] and same["head"],
        "num_heads": probe.get("num_heads") == encoder_heads,
        "use_proj": same["use_proj"],
        "batch_size": same["batch_size"],
        "train_clips": same["train_clips"] and clips == 8,
        "augmentation": False,
        "test_clips": paper_test(probe, test_sampling or {}),
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
    sampling = attrs.get("sampling", {})
    test_sampling = config.get("test_store_sampling") or sampling
    mine = this_run(probe, sampling.get("clips_per_video"), basis, sampling=sampling, test_sampling=test_sampling)
    same = same_as_paper(probe, attrs.get("encoder", {}).get("num_heads"), compact=bool(basis),
                         clips=sampling.get("clips_per_video"), test_sampling=test_sampling)
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
