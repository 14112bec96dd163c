"""Run the same cv in another source tree (an earlier commit's fer_probe and fer_cache) and in this one, in each
precision, and report whether their predictions.csv files are identical: a refactor's check that behaviour stayed.

python benchmarks/compare_runs_across_trees.py OTHER_TREE --device cuda [--precisions auto,float16,float32]
"""

import argparse
import filecmp
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUN = """
import sys
from fer_probe.config import ProbeConfig
try:
    from fer_probe.protocols.cv import run_cv
except ImportError:
    from fer_probe.cv import run_cv
cfg = ProbeConfig.from_recipe(sys.argv[3], device=sys.argv[4], precision=sys.argv[5], epochs=4, num_heads=4)
run_cv(sys.argv[1], sys.argv[2], cfg, n_folds=4)
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("other", type=Path)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precisions", default="auto")
    parser.add_argument("--recipes", default="paper,fast")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from tests.helpers import write_planted_store
    folder = Path(tempfile.mkdtemp())
    store = str(write_planted_store(folder / "s.zarr", signal=0.05, clips=4, views=2, tokens=64, width=128))
    differ = 0
    for recipe in args.recipes.split(","):
        for precision in args.precisions.split(","):
            outs = []
            for name, tree in (("other", args.other.resolve()), ("this", ROOT)):
                out = folder / f"{recipe}-{precision}-{name}"
                env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tree), os.environ.get("PYTHONPATH", "")]))
                subprocess.run([sys.executable, "-c", RUN, store, str(out), recipe, args.device, precision],
                               check=True, env=env, cwd=folder)
                outs.append(out)
            same = all(filecmp.cmp(outs[0] / f, outs[1] / f, shallow=False)
                       for f in ("predictions.csv", "metrics.json", "train_log.csv"))
            differ += not same
            print(f"{recipe} {precision} on {args.device}: {'identical' if same else 'DIFFERENT'} predictions, "
                  "metrics and training log", flush=True)
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
