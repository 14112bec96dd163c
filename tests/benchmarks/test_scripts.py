"""The benchmark scripts run: the GPU one at toy sizes on the CPU (it cannot be run on a GPU here), the pipeline one
on a small store. Their figures are not checked here; benchmarks/results holds the measured ones."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(tmp_path, *args):
    env = dict(os.environ, FER_BENCH_RESULTS=str(tmp_path), PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, timeout=300, env=env,
                          cwd=ROOT)


def test_bench_gpu_runs_every_step_at_toy_sizes(tmp_path):
    result = run(tmp_path, ROOT / "benchmarks" / "bench_gpu.py", "--smoke")
    assert result.returncode == 0, result.stdout + result.stderr
    for line in ("matmul:", "encoder eager", "encoder compiled", "fer-cache extract, steady state", "ratios:",
                 "fidelity vjepa2-hf", "fidelity vjepa2.1", "fidelity videomae", "fidelity marlin", "fidelity clip",
                 "fidelity siglip", "fidelity dinov2", "fidelity dinov3", "family vjepa2.1", "family videomae",
                 "fer-probe cv", "bench-gpu finished"):
        assert line in result.stdout, line
    assert (tmp_path / "gpu.csv").is_file()


def test_bench_pipeline_reports_clips_per_second(tmp_path):
    result = run(tmp_path, ROOT / "benchmarks" / "bench_pipeline.py", "--videos", "8", "--clips", "2", "--tokens",
                 "512", "--width", "256", "--size", "32")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().splitlines()[-1].startswith("pipeline: ")


def test_bench_probe_floor_mode_prints_the_ratio(tmp_path):
    result = run(tmp_path, ROOT / "benchmarks" / "bench_probe.py", "--mode", "floor", "--tokens", "64", "--width",
                 "64", "--epochs", "1", "--repeats", "1")  # each repeat is a fresh process: one keeps the suite short
    assert result.returncode == 0, result.stdout + result.stderr
    assert "(runs " in result.stdout and "median run" in result.stdout  # every repeat printed
    for line in ("one candidate per fold", "2 lr x 2 wd per fold", "token matmuls", "ratio",
                 "projected whole RAVDESS paper protocol"):
        assert line in result.stdout, line
    assert (tmp_path / "probe_floor.csv").is_file()


def test_bench_probe_refuses_fewer_than_one_repeat_in_one_line(tmp_path):
    result = run(tmp_path, ROOT / "benchmarks" / "bench_probe.py", "--mode", "floor", "--repeats", "0")
    assert result.returncode == 2 and "--repeats must be at least 1, got 0" in result.stderr
    assert "Traceback" not in result.stderr


def test_bench_probe_disk_mode_reads_less_from_one_read(tmp_path):
    result = run(tmp_path, ROOT / "benchmarks" / "bench_probe.py", "--mode", "disk", "--tokens", "64", "--width",
                 "64", "--epochs", "1")
    assert result.returncode == 0, result.stdout + result.stderr
    megabytes = {}
    for schedule in ("one-read", "one-by-one"):
        line = next(line for line in result.stdout.splitlines() if line.startswith(schedule))
        megabytes[schedule] = float(line.split(" s, ")[1].split(" MB")[0])
    assert "read floor" in result.stdout and (tmp_path / "probe_disk.csv").is_file()
    assert 0 < megabytes["one-read"] < megabytes["one-by-one"]


def test_bench_probe_floor_mode_with_a_rank_compares_a_full_store_and_its_compaction(tmp_path):
    result = run(tmp_path, ROOT / "benchmarks" / "bench_probe.py", "--mode", "floor", "--rank", "8", "--tokens", "64",
                 "--width", "64", "--epochs", "1", "--repeats", "1")
    assert result.returncode == 0, result.stdout + result.stderr
    for line in ("fer-cache compact --rank 8", "full    : cv", "compact : cv", "parameter updates",
                 "compact against full:", "projected whole RAVDESS paper protocol"):
        assert line in result.stdout, line
    assert (tmp_path / "probe_compact.csv").is_file()


def test_bench_checksums_reports_read_and_write_ratios(tmp_path):
    result = run(tmp_path, ROOT / "benchmarks" / "bench_checksums.py", "--videos", "2", "--clips", "2", "--tokens",
                 "64", "--width", "32")
    assert result.returncode == 0, result.stdout + result.stderr
    for line in ("first read:", "later reads (checked chunks trusted):", "write:"):
        assert line in result.stdout, line
    assert (tmp_path / "checksums.csv").is_file()
