"""fer-probe: thin commands over the stage-2 library. User mistakes: one line on stderr, exit 1."""

import functools
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from fer_probe.errors import FerProbeError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Train and evaluate probes on cached tokens.")
console = Console()
errors = Console(stderr=True)


def user_errors(command):
    """Library errors are the user's to fix: print their one line and exit 1, no traceback."""
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except FerProbeError as exc:
            errors.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
    return wrapper


def floats(text: str, option: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError as exc:
        raise FerProbeError(f"{option} takes comma-separated numbers such as 1e-3,3e-4; got '{text}'") from exc


Probe = Annotated[str, typer.Option(help="attentive, attentive-deep, linear or mlp")]
Epochs = Annotated[int, typer.Option(min=1, help="training epochs")]
Seed = Annotated[int, typer.Option(help="seed for folds, sampling and initialisation")]
Device = Annotated[str, typer.Option(help="auto, cpu or cuda")]
BatchSize = Annotated[int, typer.Option(min=1, help="videos per training step")]
Lr = Annotated[str, typer.Option("--lr", help="learning rate(s); several train as heads in one pass")]
Wd = Annotated[str, typer.Option("--wd", help="weight decay(s); several train as heads in one pass")]
Head = Annotated[str, typer.Option(help="classification head: linear (V-JEPA) or mlp (3 layers)")]
NumHeads = Annotated[int, typer.Option(min=1, help="attention heads of the attentive probe")]
TrainClips = Annotated[str, typer.Option(help="one random clip/view per video per epoch, or all (concatenated)")]
TestClips = Annotated[str, typer.Option(help="all clips and views of a test video, or one (middle clip)")]
Incomplete = Annotated[bool, typer.Option(help="leave out pending/failed videos instead of refusing")]
MemoryMb = Annotated[float, typer.Option(help="keep decoded tokens in memory if the store fits (MB); 0 streams")]
Precision = Annotated[str, typer.Option(help="auto (float32 on CPU, bfloat16 on CUDA), float32 or bfloat16")]


def probe_config(probe, epochs, seed, device, batch_size, lr, wd, head, num_heads, train_clips, test_clips,
                 memory_mb, precision):
    from fer_probe.train import ProbeConfig
    return ProbeConfig(probe=probe, epochs=epochs, batch_size=batch_size, lrs=floats(lr, "--lr"),
                       weight_decays=floats(wd, "--wd"), head=head, num_heads=num_heads, train_clips=train_clips,
                       test_clips=test_clips, seed=seed, device=device, memory_budget_mb=memory_mb,
                       precision=precision).check()


def fold_progress(epochs: int):
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=console)
    tasks = {}

    def update(fold: int, n_folds: int, epoch: int) -> None:
        if fold not in tasks:
            tasks[fold] = bar.add_task(f"fold {fold + 1}/{n_folds} epochs", total=epochs)
        bar.update(tasks[fold], completed=epoch + 1)
    return bar, update


@app.command()
@user_errors
def cv(store: str, probe: Probe = "attentive", out: Annotated[Path, typer.Option(help="run directory")] = Path(
        "runs/cv"), folds: Annotated[int, typer.Option(help="number of subject folds")] = 5, epochs: Epochs = 20,
       seed: Seed = 0, folds_file: Annotated[Path | None, typer.Option(help="reuse a folds.json")] = None,
       device: Device = "auto", batch_size: BatchSize = 8, lr: Lr = "1e-3", wd: Wd = "0.01", head: Head = "linear",
       num_heads: NumHeads = 16, train_clips: TrainClips = "one", test_clips: TestClips = "all",
       allow_incomplete: Incomplete = False, memory_mb: MemoryMb = 2048.0, precision: Precision = "auto"):
    """Subject-independent cross-validation of a probe on one store."""
    from fer_probe.cv import run_cv

    cfg = probe_config(probe, epochs, seed, device, batch_size, lr, wd, head, num_heads, train_clips, test_clips,
                       memory_mb, precision)
    bar, update = fold_progress(epochs)
    with bar:
        result = run_cv(store, out, cfg, folds, folds_file, allow_incomplete, update)
    if result.excluded:
        console.print(f"[yellow]left out {result.excluded} pending or failed videos (--allow-incomplete)[/yellow]")
    if result.unlabelled:
        console.print(f"[yellow]left out {result.unlabelled} videos without a label (label -1)[/yellow]")
    print_metrics(result.metrics, f"{probe} probe, {len(result.folds)} folds: {store}")
    console.print(f"run directory: {out}")


@app.command()
@user_errors
def cross(train: Annotated[str, typer.Option(help="store to train on (all its videos)")],
          test: Annotated[str, typer.Option(help="store to test on (every video)")],
          probe: Probe = "attentive", out: Annotated[Path, typer.Option(help="run directory")] = Path("runs/cross"),
          policy: Annotated[str, typer.Option(help="shared or strict")] = "shared",
          calm_as_neutral: Annotated[bool, typer.Option(help="treat RAVDESS calm as neutral")] = False,
          epochs: Epochs = 20, seed: Seed = 0, device: Device = "auto", batch_size: BatchSize = 8, lr: Lr = "1e-3",
          wd: Wd = "0.01", head: Head = "linear", num_heads: NumHeads = 16, train_clips: TrainClips = "one",
          test_clips: TestClips = "all", allow_incomplete: Incomplete = False, memory_mb: MemoryMb = 2048.0,
          precision: Precision = "auto"):
    """Train on all of one store, test on every video of another, mapping labels by name."""
    from fer_probe.cv import run_cross

    cfg = probe_config(probe, epochs, seed, device, batch_size, lr, wd, head, num_heads, train_clips, test_clips,
                       memory_mb, precision)
    bar, update = fold_progress(epochs)
    with bar:
        result = run_cross(train, test, out, cfg, policy, calm_as_neutral, allow_incomplete, update)
    print_metrics(result.metrics, f"{probe} probe trained on {train}, tested on {test} ({policy})")
    console.print(f"run directory: {out}")


@app.command()
@user_errors
def report(run: Path):
    """Write report.md and confusion-matrix PNGs of a run directory."""
    from fer_probe.report import write_report

    written = write_report(run)
    for path in written:
        console.print(f"wrote {path}")


@app.command("embed-plot")
@user_errors
def embed_plot(store: str, out: Annotated[Path, typer.Option(help="PNG file")] = Path("embeddings.png"),
               method: Annotated[str, typer.Option(help="pca or tsne")] = "pca",
               classes: Annotated[str | None, typer.Option(help="comma-separated class names")] = None,
               run: Annotated[Path | None, typer.Option(help="use this run's fold-0 probe pooling")] = None,
               allow_incomplete: Incomplete = False):
    """PCA or t-SNE of video-level embeddings coloured by class."""
    from fer_probe.plots import embedding_plot

    chosen = [c.strip() for c in classes.split(",")] if classes else None
    path = embedding_plot(store, out, method, chosen, run, allow_incomplete)
    console.print(f"wrote {path}")


@app.command()
@user_errors
def ablate(store: str, out: Annotated[Path, typer.Option(help="run directory")] = Path("runs/ablate"),
           folds: Annotated[int, typer.Option(help="number of subject folds")] = 5, epochs: Epochs = 20,
           seed: Seed = 0, device: Device = "auto", batch_size: BatchSize = 8,
           allow_incomplete: Incomplete = False):
    """Probe type, test clips, voting and training clips compared on the same folds, with paired bootstraps."""
    from fer_probe.ablate import run_ablation

    bar, update = fold_progress(epochs)
    with bar:
        table = run_ablation(store, out, folds, epochs, seed, device, batch_size, allow_incomplete, update)
    print_ablation(table)
    console.print(f"run directory: {out}")


def print_metrics(metrics: dict, title: str) -> None:
    table = Table("metric", "mean", "± std", "95% CI", "per fold", title=title)
    for key, m in metrics.items():
        table.add_row(key, f"{m['mean']:.3f}", f"{m['std']:.3f}", f"[{m['ci95'][0]:.3f}, {m['ci95'][1]:.3f}]",
                      " ".join(f"{v:.2f}" for v in m["per_fold"]))
    console.print(table)


def print_ablation(rows: list[dict]) -> None:
    table = Table("comparison", "A", "B", "UAR A", "UAR B", "A - B [95% CI]", "p", title="ablations (UAR)")
    for r in rows:
        table.add_row(r["comparison"], r["a"], r["b"], f"{r['uar_a']:.3f}", f"{r['uar_b']:.3f}",
                      f"{r['difference']:+.3f} [{r['ci95'][0]:+.3f}, {r['ci95'][1]:+.3f}]", f"{r['p_value']:.3f}")
    console.print(table)


def main() -> None:
    sys.exit(app())


if __name__ == "__main__":
    app()
