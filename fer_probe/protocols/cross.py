"""Cross-dataset evaluation: a probe trained on all of store A, tested on every video of store B through a label
mapping by canonical class name, under a declared policy.

shared: only B's videos whose class exists in A count, and posteriors are renormalised over the shared classes.
strict: every video of B counts; a class that A never saw can only be an error.
"""

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import numpy as np

from fer_cache.labels import canonical_order
from fer_probe.config import ProbeConfig
from fer_probe.data.reader import CacheReader
from fer_probe.errors import MappingError
from fer_probe.protocols.engine import train_folds
from fer_probe.protocols.runs import (
    FinishedRun,
    RunResult,
    SavedProbe,
    collapse_warning,
    fold_plan,
    open_source,
    plan_run,
    require_two_classes,
    write_run,
)
from fer_probe.results import outputs
from fer_probe.results.metrics import FoldPredictions
from fer_probe.training.candidates import select
from fer_probe.training.scoring import video_posteriors

PROTOCOL = " ".join(__doc__.split("\n\n", 1)[1].split())  # the policies above, copied into the run's config
Policy = Literal["shared", "strict"]
POLICIES = get_args(Policy)


@dataclass(kw_only=True)
class LabelMapping:
    """How B's labels land in the space the probe predicts."""
    train_classes: list[str]  # the probe's output classes (A's, in A's label order)
    space: list[str]  # the columns of the predictions: A's classes, then (strict) B's classes that A lacks
    scored: list[int]  # B's reader rows that are scored
    labels: np.ndarray  # [len(scored)] indices into space
    class_mask: np.ndarray | None  # [len(train_classes)] shared classes (policy shared), else None
    summary: dict


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


def map_labels(a: CacheReader, b: CacheReader, policy: Policy, *, calm_as_neutral: bool) -> LabelMapping:
    if policy not in POLICIES:
        raise MappingError(f"policy must be shared or strict, got '{policy}'")
    train_classes = canonical_order(list(dict.fromkeys(canonical(a.label_names[i], calm_as_neutral)
                                                       for i in a.active_classes())))
    names_b = [canonical(b.label_names[i], calm_as_neutral) for i in b.labels]
    shared = [n for n in train_classes if n in set(names_b)]
    if not shared:
        raise MappingError(f"no class of {b.location} ({', '.join(sorted(set(names_b)))}) exists in {a.location}")
    if policy == "shared":
        scored = [i for i, n in enumerate(names_b) if n in shared]
        space, mask = train_classes, np.array([n in shared for n in train_classes])
    else:
        scored = list(range(len(b)))
        space, mask = canonical_order(train_classes + sorted({n for n in names_b if n not in train_classes})), None
    summary = {"policy": policy, "calm_as_neutral": calm_as_neutral, "train_classes": train_classes,
               "test_classes": sorted(set(names_b)), "shared_classes": shared, "scored_videos": len(scored),
               "excluded_videos": len(b) - len(scored), "unlabelled_test_videos": b.unlabelled,
               "trained_on": "all videos of the training store, one probe"}
    labels = np.array([space.index(names_b[i]) for i in scored], dtype=np.int64)
    return LabelMapping(train_classes=train_classes, space=space, scored=scored, labels=labels, class_mask=mask,
                        summary=summary)


def run_cross(train_store: str, test_store: str, out: str | Path, *, cfg: ProbeConfig, policy: Policy = "shared",
              calm_as_neutral: bool = False, allow_incomplete: bool = False, overwrite: bool = False,
              on_progress: Callable[[str, int, int], None] | None = None) -> RunResult:
    """Train on all of A (one probe; several candidates are chosen on an inner split of A), test on every video
    of B through a label mapping by canonical name."""
    if policy not in POLICIES:
        raise MappingError(f"policy must be shared or strict, got '{policy}'")
    source_a = open_source(train_store, cfg, allow_incomplete)
    source_b = open_source(test_store, cfg, allow_incomplete)
    with source_a.reader as a, source_b.reader as b:
        check_same_encoder(a, b)
        require_two_classes(a, train_store)
        run = plan_run("", out, cfg, reader=a, overwrite=overwrite, scoring=b)
        out, cfg, notes = run.out, run.config, run.notes
        mapping = map_labels(a, b, policy, calm_as_neutral=calm_as_neutral)
        names_a = [canonical(a.label_names[i], calm_as_neutral) for i in a.labels]
        targets = np.array([mapping.train_classes.index(n) for n in names_a], dtype=np.int64)
        outputs.write_config(out, {"command": "cross", "train_store": str(train_store), "test_store": str(test_store),
                                   "fingerprint": a.fingerprint, "mapping": mapping.summary, "notes": notes,
                                   "protocol": PROTOCOL, "store_attrs": a.attrs,
                                   "test_basis": b.attrs.get("storage", {}).get("basis")}, cfg)
        plan = fold_plan(0, np.arange(len(a)), subjects=a.subjects, targets=targets, cfg=cfg, seed=cfg.seed)
        training = train_folds(source_a, [plan], targets, cfg=cfg, num_classes=len(mapping.train_classes),
                               on_progress=on_progress)
        selection = select(training.grid.fold(0))
        posteriors = [p[0] for p in video_posteriors(source_b, [selection.chosen.model], mapping.scored, cfg=cfg,
                                                     class_mask=mapping.class_mask)]
        fold = FoldPredictions(fold=0, video_ids=[b.ids[i] for i in mapping.scored],
                               subjects=[b.subjects[i] for i in mapping.scored],
                               labels=mapping.labels, clip_posteriors=[in_space(p, mapping) for p in posteriors])
        width = a.width
    result = RunResult(out=out, metrics={}, class_names=mapping.space, config=cfg, folds=[fold],
                       selected=[selection.chosen.name], notes=notes,
                       warnings=[w for w in [collapse_warning(fold, mapping.space, "the probe")] if w])
    probe = SavedProbe(path=out / "weights" / "all.safetensors", candidate=selection.chosen,
                       classes=mapping.train_classes, width=width)
    return write_run(FinishedRun(result=result, candidate_tables=[{"fold": 0, "heads": selection.table}],
                                 probes=[probe], log=training.log, mapping=mapping.summary))


def in_space(posteriors: np.ndarray, mapping: LabelMapping) -> np.ndarray:
    """[M, C_train] -> [M, C_space]: the probe's classes in their columns of the prediction space, 0 for classes the
    probe never saw."""
    placed = np.zeros((len(posteriors), len(mapping.space)), dtype=posteriors.dtype)
    placed[:, [mapping.space.index(name) for name in mapping.train_classes]] = posteriors
    return placed
