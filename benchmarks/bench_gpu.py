"""One command for a fresh CUDA machine (`make bench-gpu`, under 5 minutes): the bf16 matmul rate; the ViT-H/16-384
encoder alone, eager and compiled, per SDPA backend (clips/s, TFLOP/s, share of the matmul rate); `fer-cache
extract` end to end on generated 720p videos, steady state from two runs of different length; the ratios; CUDA
fidelity on the reference fixtures; and a short `fer-probe cv` on the GPU. Every figure comes from this one run.

python benchmarks/bench_gpu.py            # on a CUDA machine
python benchmarks/bench_gpu.py --smoke    # the same steps at toy sizes on the CPU (checks that the script works)
"""

import argparse
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))
from bench_extract import make_videos
from common import append_row, machine, timed

FIXTURES = Path(__file__).parent.parent / "tests" / "fixtures" / "encoders"
EMOTIONS = (1, 3, 4, 5)  # neutral, happy, sad, angry: labels for the short cv


def matmul_rate(device: torch.device, size: int) -> float:
    """Measured bf16 TFLOP/s of a square matmul: the yardstick of the encoder's share (MFU)."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a, b = torch.randn(size, size, device=device, dtype=dtype), torch.randn(size, size, device=device, dtype=dtype)
    return 2 * size**3 / timed(lambda: a @ b, device, warmup=3, iters=20) / 1e12


def encoder_speed(model, forward, batch: int, device: torch.device, iters: int) -> float:
    cfg = model.cfg
    video = torch.randn(batch, 3, cfg.frames_per_clip, cfg.resolution, cfg.resolution, device=device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32

    def step():
        with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=device.type == "cuda"):
            forward(video)
    return batch / timed(step, device, warmup=2, iters=iters)


def encoder_section(args, device: torch.device, rate: float) -> dict:
    from fer_cache.encoders import build_encoder
    dims = {"arch": "vit_huge", "resolution": 384, "frames_per_clip": 16} if not args.smoke else \
        {"embed_dim": 96, "depth": 2, "num_heads": 4, "resolution": 64, "frames_per_clip": 8}
    model = build_encoder(family="vjepa", device=device, **dims)
    flops = model.flops_per_clip()
    results = {"eager": encoder_speed(model, model, args.batch, device, args.iters)}
    if device.type == "cuda":
        from torch.nn.attention import SDPBackend, sdpa_kernel
        for name, backend in (("flash", SDPBackend.FLASH_ATTENTION), ("cudnn", SDPBackend.CUDNN_ATTENTION),
                              ("efficient", SDPBackend.EFFICIENT_ATTENTION)):
            try:
                with sdpa_kernel([backend]):
                    results[f"eager {name}"] = encoder_speed(model, model, args.batch, device, args.iters)
            except RuntimeError as exc:  # a backend that does not take this head size
                print(f"  SDPA {name}: not available here ({str(exc).splitlines()[0][:80]})")
    started = time.perf_counter()
    compiled = torch.compile(model, dynamic=False)
    results["compiled"] = encoder_speed(model, compiled, args.batch, device, args.iters)
    print(f"  (compiling and the first batches took {time.perf_counter() - started:.0f} s)")
    for name, clips in results.items():
        tflops = flops * clips / 1e12
        print(f"encoder {name:16s}: {clips:7.1f} clips/s, {tflops:6.1f} TFLOP/s, {100 * tflops / rate:5.1f}% of the "
              f"matmul rate")
    return results


def families_section(args, device: torch.device, rate: float) -> None:
    """Each family's model at its release size, eager bf16, against the FLOPs of its own clip (MFU per family)."""
    from fer_cache.encoders.families import FAMILIES
    from fer_cache.encoders.vit import VideoViT, ViTConfig
    sizes = {"vjepa2.1": dict(embed_dim=1024, depth=24, num_heads=16, resolution=384, frames_per_clip=16),
             "videomae": dict(embed_dim=1280, depth=32, num_heads=16, resolution=224, frames_per_clip=16)}
    for name, dims in sizes.items():
        if args.smoke:
            dims = dims | {"embed_dim": 128, "depth": 4, "num_heads": 2, "resolution": 64, "frames_per_clip": 8}
        architecture = {k: (16 if v == "pretraining" else v) for k, v in FAMILIES[name].architecture.items()}
        model = VideoViT(ViTConfig(**architecture, uniform_power=None, **dims)).to(device).eval().requires_grad_(False)
        clips = encoder_speed(model, model, args.batch, device, args.iters)
        tflops = model.flops_per_clip() * clips / 1e12
        print(f"family {name:10s}: {dims['embed_dim']} wide x {dims['depth']} at {dims['resolution']} px, {clips:7.1f} "
              f"clips/s, {tflops:6.1f} TFLOP/s, {100 * tflops / rate:5.1f}% of the matmul rate (eager)")


def write_dataset(root: Path, count: int, frames: int, width: int, height: int) -> None:
    """RAVDESS-named 720p videos: one actor each, four emotions, written in parallel."""
    with ProcessPoolExecutor() as pool:
        list(pool.map(one_video, [(root, i, frames, width, height) for i in range(count)]))


def one_video(job) -> None:
    root, i, frames, width, height = job
    make_videos(root / f"v{i}", 1, frames, width, height)
    source = next((root / f"v{i}").rglob("*.mp4"))
    folder = root / f"Actor_{i % 24 + 1:02d}"
    folder.mkdir(parents=True, exist_ok=True)
    emotion, take = EMOTIONS[i % len(EMOTIONS)], i // 24
    source.rename(folder / f"01-01-{emotion:02d}-01-{take % 2 + 1:02d}-{take // 2 + 1:02d}-{i % 24 + 1:02d}.mp4")


def pipeline_section(args, device: torch.device, folder: Path) -> tuple[float, Path]:
    """End-to-end clips/s in steady state: (clips of the long run - of the short) / (difference of their times),
    after a first run that pays the one-off costs (compiling the encoder, warming the caches)."""
    from fer_cache.config import load_config
    from fer_cache.extraction.pipeline import ExtractRequest, run_extraction
    width, height = (1280, 720) if not args.smoke else (160, 120)
    encoder = "vith: {family: vjepa, arch: vit_huge, checkpoint: null, resolution: 384, frames_per_clip: 16}" \
        if not args.smoke else \
        "vith: {family: vjepa, checkpoint: null, embed_dim: 96, depth: 2, num_heads: 4, resolution: 64, " \
        "frames_per_clip: 16}"
    times, clips = {}, {}
    for name, count in (("warm-up", args.short), ("short", args.short), ("long", args.long)):
        root = folder / f"videos{count}"
        if not root.exists():
            write_dataset(root, count, args.frames, width, height)
        (folder / f"data{count}.yaml").write_text(
            f"datasets:\n  bench: {{adapter: ravdess, root: {root}}}\nencoders:\n  {encoder}\n"
            "extraction: {frames_per_clip: 16, frame_step: 4, clips_per_video: 8, spatial_views: 1, dtype: float16}\n")
        request = ExtractRequest(dataset="bench", encoder="vith", out=str(folder / f"{name}.zarr"),
                                 device=str(device), batch_size=args.batch, workers=args.workers)
        started = time.perf_counter()
        summary = run_extraction(load_config(folder / f"data{count}.yaml"), request)
        times[name], clips[name] = time.perf_counter() - started, summary.clips_now
        print(f"extract {count} videos ({name}): {summary.clips_now} clips in {times[name]:.1f} s "
              f"({', '.join(summary.notes)})")
    steady = (clips["long"] - clips["short"]) / (times["long"] - times["short"])
    print(f"fer-cache extract, steady state: {steady:.1f} clips/s")
    return steady, folder / "long.zarr"


def fidelity_cases():
    """(family, build settings, video [B, 3, T, H, W], reference tokens) of every fixture encoder."""
    from safetensors.torch import load_file
    video_cases = [("vjepa", "vjepa1-tiny/checkpoint.pth.tar", dict(num_heads=4, resolution=64, frames_per_clip=8)),
                   ("vjepa2", "vjepa2-tiny/checkpoint.pt", dict(num_heads=4, resolution=64, frames_per_clip=8)),
                   ("vjepa2-hf", "vjepa2-hf-tiny", {}), ("videomae", "videomae-tiny", {}),
                   ("vjepa2.1", "vjepa21-tiny/checkpoint.pt", dict(checkpoint_key="ema_encoder", resolution=96)),
                   ("marlin", "marlin-tiny/marlin_vit_fixture_ytf.encoder.pt", dict(num_heads=4, frames_per_clip=8))]
    for family, checkpoint, settings in video_cases:
        reference = load_file(str(FIXTURES / checkpoint.split("/")[0] / "reference.safetensors"))
        video = reference["input"] if "input" in reference else reference["input_btchw"].permute(0, 2, 1, 3, 4)
        yield family, dict(checkpoint=FIXTURES / checkpoint, **settings), video, reference["tokens"]
    for family, prefix in (("clip", 1), ("siglip", 0), ("dinov2", 1), ("dinov3", 5)):  # frame by frame
        reference = load_file(str(FIXTURES / f"{family}-tiny" / "reference.safetensors"))
        frames = reference["pixel_values"]  # [B*T, 3, H, W], T = 4
        video = frames.reshape(-1, 4, *frames.shape[1:]).transpose(1, 2)
        width = reference["last_hidden_state"].shape[-1]
        tokens = reference["last_hidden_state"][:, prefix:].reshape(video.shape[0], -1, width)  # [B, T*P, D]
        yield family, dict(checkpoint=FIXTURES / f"{family}-tiny", frames_per_clip=4), video, tokens


def fidelity_section(device: torch.device) -> None:
    from fer_cache.encoders import build_encoder
    from fer_cache.errors import CheckpointError
    for family, settings, video, expected in fidelity_cases():
        try:
            model = build_encoder(family=family, device=device, **settings)
        except CheckpointError as exc:  # a frame-wise family without transformers on this machine
            print(f"fidelity {family:10s}: skipped ({exc})")
            continue
        video = video.to(device)
        with torch.inference_mode():
            exact = model(video).float().cpu()
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                fast = model(video).float().cpu()
        cosine = torch.nn.functional.cosine_similarity(fast.flatten(1), expected.flatten(1)).min()
        print(f"fidelity {family:10s}: float32 max error {(exact - expected).abs().max():.2e}, "
              f"bf16 max error {(fast - expected).abs().max():.3f}, bf16 cosine {cosine:.6f}")


def probe_section(store: Path, device: torch.device, folder: Path, folds: int) -> None:
    from fer_probe.config import ProbeConfig
    from fer_probe.protocols.cv import run_cv
    cfg = ProbeConfig.from_recipe("paper", epochs=2, device=str(device))
    started = time.perf_counter()
    result = run_cv(str(store), folder / "run", cfg, n_folds=folds)
    print(f"fer-probe cv (paper recipe, {folds} folds, 2 epochs) on {device}: {time.perf_counter() - started:.1f} s, "
          f"UAR(PBV) {result.metrics['uar_pbv']['mean']:.3f} on pattern videos (chance 0.25)")


def main() -> None:
    from fer_cache.store import tune_process
    tune_process()  # as the command-line tools do
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="toy sizes on the CPU, to check the script")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--short", type=int, default=8)
    parser.add_argument("--long", type=int, default=32)
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--workers", type=int, default=12)
    args = parser.parse_args()
    if args.smoke:
        args.batch, args.iters, args.short, args.long, args.frames, args.workers = 4, 1, 4, 8, 40, 2
    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    if device.type != "cuda" and not args.smoke:
        sys.exit("no CUDA GPU is visible: run with --smoke to check the script on the CPU")
    started = time.perf_counter()
    print(f"device: {machine(device)}, torch {torch.__version__}")
    rate = matmul_rate(device, 8192 if not args.smoke else 512)
    print(f"{'bf16' if device.type == 'cuda' else 'float32'} matmul: {rate:.1f} TFLOP/s")
    encoder = encoder_section(args, device, rate)
    families_section(args, device, rate)
    with tempfile.TemporaryDirectory(prefix="bench_gpu_") as tmp:
        steady, store = pipeline_section(args, device, Path(tmp))
        best = max(encoder.values())
        print(f"ratios: compiled encoder {encoder['compiled'] / encoder['eager']:.2f}x eager; pipeline / best encoder "
              f"{steady / best:.2f} (goal >= 0.9)")
        fidelity_section(device)
        probe_section(store, device, Path(tmp), folds=2 if args.smoke else 4)
    append_row("gpu", {"machine": machine(device), "matmul_tflops": round(rate, 1), "pipeline_clips_per_s":
                       round(steady, 1)} | {f"encoder_{k.replace(' ', '_')}_clips_per_s": round(v, 1)
                                            for k, v in encoder.items()})
    print(f"bench-gpu finished in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
