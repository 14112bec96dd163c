"""One video's pass of the attentive pooling (forward and backward, 36864 x 1280 float16 tokens, 64 score columns:
the paper recipe's shape with four candidates) in another source tree and in this one, alternating, each the
fastest of five in a fresh process: a refactor's check that the hot path kept its speed.

python benchmarks/pooling_across_trees.py OTHER_TREE [--rounds 2]
"""

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PASS = """
import sys, time, torch
sys.path.insert(0, sys.argv[1])
from fer_cache.store import tune_process
try:
    from fer_probe.probes.pooling import pool
except ImportError:  # trees before the pooling had a module of its own
    from fer_probe.probes.attention import pool
tune_process()
torch.manual_seed(0)
x = torch.randn(1, 36864, 1280).half()
u = (torch.randn(64, 1280) * 0.05).requires_grad_(True)
def run():
    out = pool(x, u, 1e-5)
    (out * out).sum().backward()
run()
times = []
for _ in range(5):
    started = time.perf_counter()
    run()
    times.append(time.perf_counter() - started)
print(min(times))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("other", type=Path)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    for _ in range(args.rounds):
        for name, tree in (("other", args.other.resolve()), ("this", ROOT)):
            done = subprocess.run([sys.executable, "-c", PASS, str(tree)], capture_output=True, text=True, check=True)
            print(f"{name:5s} {tree}: {float(done.stdout.strip()) * 1e3:.0f} ms a video pass", flush=True)


if __name__ == "__main__":
    main()
