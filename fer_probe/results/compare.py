"""`fer-probe compare`: one table of several runs, and paired tests between runs that scored the same videos."""

import csv
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

import numpy as np

from fer_probe.errors import FerProbeError
from fer_probe.results.metrics import distinguishable, p_text, paired_bootstrap, uar
from fer_probe.results.outputs import RUN_FILES, RUN_FOLDERS, is_run_dir
from fer_probe.results.report import read_run

COLUMNS = ["run", "command", "recipe", "probe", "data", "encoder", "test videos", "UAR (PBV)", "WAR (PBV)", "classes",
           "chance UAR"]


@dataclass(kw_only=True)
class Comparison:
    columns: list[str]
    rows: list[dict] = field(default_factory=list)
    tests: list[str] = field(default_factory=list)  # one line per pair of runs over the same videos
    notes: list[str] = field(default_factory=list)  # what makes the runs' numbers not comparable
    written: list[Path] = field(default_factory=list)  # the table's files, where asked for


def interval(metric: dict, cross: bool) -> str:
    spread = "" if cross else f" ± {metric['std']:.3f}"
    return f"{metric['mean']:.3f}{spread} [{metric['ci95'][0]:.3f}, {metric['ci95'][1]:.3f}]"


def summary_row(run: Path, config: dict, metrics: dict, *, rows: list[dict], classes: list[str]) -> dict:
    probe, attrs = config.get("probe", {}), config.get("store_attrs", {})
    encoder = attrs.get("encoder", {})
    cross = config.get("command") == "cross"
    data = f"{Path(config['train_store']).name} -> {Path(config['test_store']).name}" if cross else \
        f"{Path(str(config.get('store'))).name} ({config.get('n_folds')} folds)"
    return {"run": str(run), "command": config.get("command", "?"), "recipe": probe.get("recipe", "?"),
            "probe": probe.get("probe", "?"), "data": data,
            "encoder": f"{encoder.get('family')} {encoder.get('arch') or encoder.get('embed_dim')}"
                       + (" (fine-tuned with labels)" if encoder.get("fine_tuned") else ""),
            "test videos": len(rows), "UAR (PBV)": interval(metrics["uar_pbv"], cross),
            "WAR (PBV)": interval(metrics["war_pbv"], cross), "classes": len(classes),
            "chance UAR": f"{1 / max(len(classes), 1):.3f}"}


def paired_line(a: tuple, b: tuple, seed: int = 0) -> str | None:
    """A paired bootstrap of UAR (PBV) when both runs scored exactly the same videos with the same labels."""
    (name_a, rows_a, classes_a), (name_b, rows_b, classes_b) = a, b
    by_id_b = {r["video_id"]: r for r in rows_b}
    if len(rows_a) != len(rows_b) or set(by_id_b) != {r["video_id"] for r in rows_a}:
        return None
    if any(by_id_b[r["video_id"]]["label"] != r["label"] for r in rows_a):
        return None
    classes = sorted(set(classes_a) | set(classes_b))
    labels = np.array([classes.index(r["label"]) for r in rows_a])
    pred_a = np.array([classes.index(r["pred_pbv"]) for r in rows_a])
    pred_b = np.array([classes.index(by_id_b[r["video_id"]]["pred_pbv"]) for r in rows_a])
    test = paired_bootstrap(labels, pred_a, pred_b, metric=uar, seed=seed)
    verdict = "distinguishable" if distinguishable(test["p_value"]) else "not distinguishable"
    return (f"{name_a} - {name_b}: UAR (PBV) {test['difference']:+.3f} [{test['ci95'][0]:+.3f}, "
            f"{test['ci95'][1]:+.3f}], paired bootstrap p {p_text(test['p_value'], relation=True)} over "
            f"{len(labels)} videos ({verdict} from noise)")


def compare_runs(runs: list[Path], out: Path | None = None, *, overwrite: bool = False) -> Comparison:
    """Read each run directory; write out.md and out.csv when `out` is given (Comparison.written), never over a
    run's own files, and over existing files only with overwrite."""
    targets = output_paths(Path(out), overwrite) if out is not None else []
    if len(runs) < 1:
        raise FerProbeError("name at least one run directory")
    table = Comparison(columns=list(COLUMNS))
    loaded = []
    for run in runs:
        config, metrics, rows, classes = read_run(Path(run))
        table.rows.append(summary_row(Path(run), config, metrics, rows=rows, classes=classes))
        loaded.append((Path(run).name, rows, classes))
    class_sets = {tuple(sorted(c)) for _, _, c in loaded}
    if len(class_sets) > 1:
        table.notes.append("the runs predict different class sets (" + "; ".join(
            f"{name}: {len(c)} classes, {', '.join(c)}" for name, _, c in loaded) + "), so their chance levels "
            "differ and their UARs are not directly comparable")
    for a, b in combinations(loaded, 2):
        line = paired_line(a, b)
        if line:
            table.tests.append(line)
    if targets:
        write_comparison(table, *targets)
        table.written = targets
    return table


def output_paths(out: Path, overwrite: bool) -> tuple[Path, Path]:
    """(out.md, out.csv), refused in one line where they would replace a run's own files or an existing file."""
    if out.is_dir():
        raise FerProbeError(f"--out {out} is a folder; name the table's file, e.g. {out / 'table.md'}")
    base = out.with_suffix("")
    targets = (base.with_suffix(".md"), base.with_suffix(".csv"))
    for target in targets:
        folder = target.parent
        own = (is_run_dir(folder) and target.name in RUN_FILES) or (folder.name in RUN_FOLDERS and is_run_dir(
            folder.parent)) or ((folder / "ablation.md").is_file() and target.stem == "ablation")
        if own:
            raise FerProbeError(f"--out {out} would replace {target}, a file of the run in {folder}; choose another "
                                "name")
    existing = [str(t) for t in targets if t.exists()]
    if existing and not overwrite:
        raise FerProbeError(f"{existing[0]} exists; pass --overwrite to replace it, or choose another --out")
    return targets


def write_comparison(table: Comparison, markdown: Path, spreadsheet: Path) -> None:
    markdown.parent.mkdir(parents=True, exist_ok=True)
    with open(spreadsheet, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=table.columns)
        writer.writeheader()
        writer.writerows(table.rows)
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(str(r[c]) for c in table.columns) + " |" for r in table.rows]
    if table.notes:
        lines += [""] + [f"**Note:** {n}" for n in table.notes]
    if table.tests:
        lines += ["", "Paired tests (runs that scored the same videos):", ""] + [f"- {t}" for t in table.tests]
    markdown.write_text("\n".join(lines) + "\n")
