"""`make demo`: synthetic faces -> tiny random encoder -> Zarr cache -> probes -> reports, all on the CPU."""

import json
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
console = Console()


def step(title: str, *command: str) -> None:
    console.rule(title)
    started = time.perf_counter()
    code = subprocess.call([str(BIN / command[0]), *command[1:]], cwd=ROOT)
    if code != 0:
        console.print(f"[red]{' '.join(command)} exited with {code}[/red]")
        sys.exit(code)
    console.print(f"[dim]{time.perf_counter() - started:.1f} s[/dim]")


def main() -> None:
    started = time.perf_counter()
    if not (ROOT / ".fer/demo/Actor_12").is_dir():
        step("1/7 synthetic face videos", "fer-cache", "demo-data", ".fer/demo")
    step("2/7 extract with a tiny random-weight V-JEPA encoder", "fer-cache", "extract", "--dataset", "demo",
         "--encoder", "tiny", "--out", "caches/demo.zarr", "--overwrite")
    step("3/7 the paper's attentive probe, 5 subject folds", "fer-probe", "cv", "caches/demo.zarr", "--recipe",
         "paper", "--out", "runs/demo", "--folds", "5", "--overwrite")
    step("4/7 linear baseline on the same folds", "fer-probe", "cv", "caches/demo.zarr", "--probe", "linear",
         "--out", "runs/demo/linear", "--folds-file", "runs/demo/folds.json", "--overwrite")
    step("5/7 reports and plots", "fer-probe", "report", "runs/demo")
    step("", "fer-probe", "report", "runs/demo/linear")
    step("", "fer-probe", "embed-plot", "caches/demo.zarr", "--out", "runs/demo/embeddings_probe.png", "--run",
         "runs/demo")
    step("", "fer-probe", "embed-plot", "caches/demo.zarr", "--out", "runs/demo/embeddings_subjects.png",
         "--color-by", "subject")
    step("6/7 ablations: probe type, proj, test clips, voting, training clips", "fer-probe", "ablate",
         "caches/demo.zarr", "--out", "runs/demo/ablate", "--overwrite")
    step("7/7 one table of the runs", "fer-probe", "compare", "runs/demo", "runs/demo/linear", "--out",
         "runs/demo/compare.md", "--overwrite")
    table = Table("probe", "metric", "mean ± std", "95% CI", title="demo results (6 classes, chance 0.167)")
    for name, run in (("attentive (paper recipe)", ROOT / "runs/demo"), ("linear", ROOT / "runs/demo/linear")):
        metrics = json.loads((run / "metrics.json").read_text())
        for key in ("uar_pbv", "war_pbv", "uar_mv", "war_mv", "uar_clip", "war_clip"):
            m = metrics[key]
            table.add_row(name, key, f"{m['mean']:.3f} ± {m['std']:.3f}", f"[{m['ci95'][0]:.3f}, {m['ci95'][1]:.3f}]")
    console.print(table)
    console.print("Random-weight features on synthetic faces show that the machinery works, not what V-JEPA "
                  "achieves; for real numbers run the GPU workflow in the README.")
    console.print(f"runs/demo/report.md, runs/demo/*.png, runs/demo/ablate/ablation.md; total "
                  f"{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
