"""Subject-independent cross-validation and cross-dataset evaluation from cached tokens.

Protocol (copied into every report): folds are subject-disjoint (StratifiedGroupKFold, seeded, folds.json).
Within a training fold every (lr, weight decay) head trains in one pass over the data. With one head it trains on
the whole training fold; with several, they train on an inner subject-disjoint split of the training fold and the
head with the best validation UAR (PBV) is chosen there. The test fold is read only after that choice, once, to
score the chosen head: every clip and view of a test video gets posteriors, PBV sums them, MV counts argmax votes.
"""

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from fer_probe import outputs
from fer_probe.errors import FerProbeError, MappingError
from fer_probe.folds import fold_indices, inner_split, load_folds, make_folds
from fer_probe.metrics import FoldPredictions, summarise, uar
from fer_probe.reader import CacheReader
from fer_probe.train import ProbeConfig, TokenSource, score_videos, train_heads

PROTOCOL = __doc__.split("\n\n", 1)[1].strip()


@dataclass
class RunResult:
    out: Path
    metrics: dict
    class_names: list[str]
    folds: list[FoldPredictions] = field(default_factory=list)
    selected: list[str] = field(default_factory=list)  # chosen head per fold
    excluded: int = 0  # pending or failed videos left out under --allow-incomplete
    unlabelled: int = 0  # videos with label -1 (unknown): neither trained on nor scored


def open_source(store: str, cfg: ProbeConfig, allow_incomplete: bool) -> TokenSource:
    reader = CacheReader(store, allow_incomplete, cfg.memory_budget_mb, cfg.compute_dtype())
    if len(reader) == 0:
        raise FerProbeError(f"{store}: no usable videos")
    if cfg.probe in ("linear", "mlp"):
        return TokenSource(reader, "pooled", torch.from_numpy(reader.mean_pooled()))
    reader.preload()
    return TokenSource(reader, "tokens")


def fit_and_select(source: TokenSource, train_idx: np.ndarray, targets: np.ndarray, cfg: ProbeConfig,
                   num_classes: int, seed: int, on_epoch) -> tuple[object, list[dict]]:
    """Train the heads; choose among several on an inner validation split of the training videos only."""
    if len(cfg.lrs) * len(cfg.weight_decays) == 1:
        heads = train_heads(source, train_idx, targets, cfg, num_classes, seed, on_epoch)
        return heads[0], [{"head": heads[0].name, "selected": True}]
    subjects = source.reader.subjects
    inner_train, val = inner_split(subjects, targets, train_idx, seed)
    heads = train_heads(source, inner_train, targets, cfg, num_classes, seed, on_epoch)
    posteriors = score_videos(source, heads, val.tolist(), cfg)
    val_uar = [uar(targets[val], np.array([p.sum(0).argmax() for p in per_head])) for per_head in posteriors]
    best = int(np.argmax(val_uar))
    table = [{"head": h.name, "lr": h.lr, "weight_decay": h.weight_decay, "val_uar_pbv": float(s),
              "selected": i == best} for i, (h, s) in enumerate(zip(heads, val_uar))]
    return heads[best], table


def run_cv(store: str, out: str | Path, cfg: ProbeConfig, n_folds: int = 5, folds_file: str | Path | None = None,
           allow_incomplete: bool = False, on_progress: Callable[[int, int, int], None] | None = None) -> RunResult:
    """Cross-validate a probe on one store; writes the run directory (DESIGN section 5) and returns its metrics."""
    cfg = cfg.check()
    out = Path(out)
    source = open_source(store, cfg, allow_incomplete)
    reader = source.reader
    active = reader.active_classes()
    class_names = [reader.label_names[i] for i in active]
    targets = np.array([active.index(label) for label in reader.labels], dtype=np.int64)
    if folds_file is not None:
        folds = load_folds(Path(folds_file), reader.subjects)
    else:
        folds = make_folds(reader.subjects, targets, n_folds, cfg.seed)
    out.mkdir(parents=True, exist_ok=True)
    outputs.write_config(out, {"command": "cv", "store": str(store), "fingerprint": reader.fingerprint,
                               "n_folds": len(folds), "folds_file": str(folds_file) if folds_file else None,
                               "allow_incomplete": allow_incomplete, "excluded_videos": reader.excluded,
                               "unlabelled_videos": reader.unlabelled,
                               "classes": class_names, "store_attrs": reader.attrs, "protocol": PROTOCOL}, cfg)
    outputs.write_folds(out, folds, cfg.seed)
    result = RunResult(out, {}, class_names, excluded=reader.excluded, unlabelled=reader.unlabelled)
    head_tables = []
    for f, fold in enumerate(folds):
        train_idx, test_idx = fold_indices(reader.subjects, fold)
        if len(train_idx) == 0 or len(test_idx) == 0:
            raise FerProbeError(f"fold {f} has no training or no test videos; check the folds")
        progress = (lambda epoch, f=f: on_progress(f, len(folds), epoch)) if on_progress else None
        head, table = fit_and_select(source, train_idx, targets, cfg, len(class_names), cfg.seed + f, progress)
        posteriors = score_videos(source, [head], test_idx.tolist(), cfg)[0]
        result.folds.append(FoldPredictions(f, [reader.ids[i] for i in test_idx],
                                            [reader.subjects[i] for i in test_idx], targets[test_idx], posteriors))
        result.selected.append(head.name)
        head_tables.append({"fold": f, "heads": table})
        outputs.write_weights(out / "weights" / f"fold{f}.safetensors", head, cfg, class_names, reader.width)
    result.metrics = summarise(result.folds, seed=cfg.seed)
    outputs.write_results(out, result.folds, result.metrics, class_names, head_tables)
    return result


def canonical(name: str, calm_as_neutral: bool) -> str:
    return "neutral" if calm_as_neutral and name == "calm" else name


def check_same_encoder(a: CacheReader, b: CacheReader) -> None:
    """Tokens of different encoders live in different spaces: refuse the pair."""
    key = ("encoder", "token_grid")
    enc_a = json.dumps({k: a.attrs.get(k) for k in key}, sort_keys=True)
    enc_b = json.dumps({k: b.attrs.get(k) for k in key}, sort_keys=True)
    if enc_a != enc_b or a.width != b.width:
        raise MappingError(f"{a.location} and {b.location} were extracted with different encoders (fingerprints "
                           f"{a.fingerprint[:12]} vs {b.fingerprint[:12]}); extract both with the same encoder")


def run_cross(train_store: str, test_store: str, out: str | Path, cfg: ProbeConfig, policy: str = "shared",
              calm_as_neutral: bool = False, allow_incomplete: bool = False,
              on_progress: Callable[[int, int, int], None] | None = None) -> RunResult:
    """Train on all of A (one probe), test on every video of B through a label mapping by canonical name."""
    cfg = cfg.check()
    if policy not in ("shared", "strict"):
        raise MappingError(f"--policy must be shared or strict, got '{policy}'")
    out = Path(out)
    source_a, source_b = open_source(train_store, cfg, allow_incomplete), open_source(test_store, cfg,
                                                                                      allow_incomplete)
    a, b = source_a.reader, source_b.reader
    check_same_encoder(a, b)
    names_a = [canonical(a.label_names[i], calm_as_neutral) for i in a.labels]
    class_names = list(dict.fromkeys(canonical(a.label_names[i], calm_as_neutral) for i in a.active_classes()))
    targets_a = np.array([class_names.index(n) for n in names_a], dtype=np.int64)
    names_b = [canonical(b.label_names[i], calm_as_neutral) for i in b.labels]
    shared = [n for n in class_names if n in set(names_b)]
    if not shared:
        raise MappingError(f"no class of {test_store} ({', '.join(sorted(set(names_b)))}) exists in {train_store}")
    if policy == "shared":
        keep = [i for i, n in enumerate(names_b) if n in shared]
        space = class_names
        mask = np.array([n in shared for n in class_names])
    else:
        keep = list(range(len(b)))
        space = class_names + sorted({n for n in names_b if n not in class_names})
        mask = None
    labels_b = np.array([space.index(names_b[i]) for i in keep], dtype=np.int64)
    out.mkdir(parents=True, exist_ok=True)
    mapping = {"policy": policy, "calm_as_neutral": calm_as_neutral, "train_classes": class_names,
               "test_classes": sorted(set(names_b)), "shared_classes": shared, "scored_videos": len(keep),
               "excluded_videos": len(b) - len(keep), "unlabelled_test_videos": b.unlabelled,
               "trained_on": "all videos of the training store, one probe"}
    outputs.write_config(out, {"command": "cross", "train_store": str(train_store), "test_store": str(test_store),
                               "fingerprint": a.fingerprint, "mapping": mapping, "protocol": PROTOCOL,
                               "store_attrs": a.attrs}, cfg)
    progress = (lambda epoch: on_progress(0, 1, epoch)) if on_progress else None
    train_idx = np.arange(len(a))
    head, table = fit_and_select(source_a, train_idx, targets_a, cfg, len(class_names), cfg.seed, progress)
    posteriors = score_videos(source_b, [head], keep, cfg, mask)[0]
    padded = [np.pad(p, ((0, 0), (0, len(space) - p.shape[1]))) for p in posteriors]  # [M, C_space]
    fold = FoldPredictions(0, [b.ids[i] for i in keep], [b.subjects[i] for i in keep], labels_b, padded)
    metrics = summarise([fold], seed=cfg.seed)
    outputs.write_weights(out / "weights" / "all.safetensors", head, cfg, class_names, a.width)
    outputs.write_results(out, [fold], metrics, space, [{"fold": 0, "heads": table}], mapping=mapping)
    return RunResult(out, metrics, space, [fold], [head.name])
