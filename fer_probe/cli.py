"""fer-probe: thin commands over the stage-2 library. User mistakes: one line on stderr, exit 1."""

import functools
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Column, Table

from fer_probe import __version__
from fer_probe.config import DEFAULT_FOLDS
from fer_probe.errors import FerProbeError, IncompleteStoreError, NoSubjectsError, RunDirectoryError
from fer_probe.options import (
    Incomplete,
    Out,
    Store,
    default_of,
    probe_options,
)

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,  # plain help: no <bool> columns
                  help="Train and evaluate probes on cached tokens.")
console = Console()
errors = Console(stderr=True)


HINTS = {IncompleteStoreError: "--allow-incomplete leaves them out", RunDirectoryError: "--overwrite replaces them",
         NoSubjectsError: "--folds official"}


def user_errors(command):
    """Library errors are the user's to fix: print their one line (and the flag that helps) and exit 1. (fer-cache's
    CLI has its own: the packages share no module but the store schema.)"""
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except FerProbeError as exc:
            hint = next((f" ({h})" for kind, h in HINTS.items() if isinstance(exc, kind)), "")
            errors.print(f"[red]error:[/red] {exc}{hint}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            errors.print(f"[yellow]stopped[/yellow] (Ctrl-C): {stopped_run(kwargs.get('out'))}", highlight=False,
                         soft_wrap=True)
            raise typer.Exit(130) from None
    return wrapper


def stopped_run(out: Path | None) -> str:
    """What a stopped command leaves: the files already in its output folder, and how to start again."""
    if out is None or not Path(out).is_dir():
        return "nothing was written"
    kept = sorted(p.name for p in Path(out).iterdir())
    return (f"the run in {out} is incomplete (kept: {', '.join(kept) or 'an empty folder'}; no metrics); rerun the "
            "same command with --overwrite to start it again")


def show_version(value: bool) -> None:
    if value:
        console.print(f"fer-probe {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(version: Annotated[bool, typer.Option("--version", callback=show_version, is_eager=True,
                                                       help="print the version and exit")] = False):
    """Train and evaluate probes on cached tokens."""
    from fer_cache.store import tune_process

    tune_process()  # once per process, for every command


def fold_count(text: str) -> int | str:
    if text == "official" or text.isdigit():
        return text if text == "official" else int(text)
    raise FerProbeError(f"--folds takes a number of subject folds or 'official', got '{text}'")


def epoch_progress():
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=console)
    tasks = {}

    def update(label: str, done: int, total: int) -> None:
        if label not in tasks:
            tasks[label] = bar.add_task(f"{label}: epochs", total=total)
        bar.update(tasks[label], completed=done)
    return bar, update


@app.command()
@user_errors
@probe_options
def cv(store: Store, *, cfg, recipe: str, probe: str, allow_incomplete: bool, overwrite: bool,
       out: Out = Path("runs/cv"),
       folds: Annotated[str, typer.Option(help="number of subject folds, or official (the dataset's own folds, "
                                                "by clip: DFEW, FERV39k, MAFW)")] = str(DEFAULT_FOLDS),
       folds_file: Annotated[Path | None, typer.Option(help="reuse a folds.json")] = None,
       test_store: Annotated[str | None, typer.Option(help="score the test videos from this store of the same "
                                                           "videos and encoder (e.g. every clip start)")] = None,
       schedule: Annotated[str | None, typer.Option(help="all-folds (every fold from one read of each clip) or "
                                                         f"per-fold [{default_of('schedule')}]")] = None,
       val_curve: Annotated[bool, typer.Option(help="with several candidates, score the validation split after "
                                                    "every epoch (training curves), not only after the last")] = False):
    """Subject-independent cross-validation of a probe on one store."""
    from dataclasses import replace

    from fer_probe.protocols.cv import run_cv

    cfg = replace(cfg, schedule=schedule or cfg.schedule, val_curve=val_curve)
    bar, update = epoch_progress()
    with bar:
        result = run_cv(store, out, cfg, n_folds=fold_count(folds), folds_file=folds_file,
                        allow_incomplete=allow_incomplete, overwrite=overwrite, on_progress=update,
                        test_store=test_store)
    print_run(result, f"{probe} probe, recipe {recipe}, {len(result.folds)} folds: {store}")


@app.command()
@user_errors
@probe_options
def cross(*, cfg, probe: str, allow_incomplete: bool, overwrite: bool,
          train: Annotated[str, typer.Option(help="store to train on (all its videos)")],
          test: Annotated[str, typer.Option(help="store to test on (every video)")], out: Out = Path("runs/cross"),
          policy: Annotated[str, typer.Option(help="shared: score only test videos of classes the probe knows, "
                                                   "posteriors renormalised over them; strict: score every test "
                                                   "video, unknown classes count as errors")] = "shared",
          calm_as_neutral: Annotated[bool, typer.Option(help="treat RAVDESS calm as neutral")] = False):
    """Train on all of one store, test on every video of another, mapping labels by name."""
    from fer_probe.protocols.cross import run_cross

    bar, update = epoch_progress()
    with bar:
        result = run_cross(train, test, out, cfg=cfg, policy=policy, calm_as_neutral=calm_as_neutral,
                           allow_incomplete=allow_incomplete, overwrite=overwrite, on_progress=update)
    print_run(result, f"{probe} probe trained on {train}, tested on {test} ({policy})")


@app.command()
@user_errors
def report(run: Annotated[Path, typer.Argument(help="a run directory of fer-probe cv or cross")]):
    """Write report.md and its figures (confusion matrices, training curves) for a run directory."""
    from fer_probe.results.report import write_report

    for path in write_report(run):
        console.print(f"wrote {path}")


@app.command("embed-plot")
@user_errors
def embed_plot(store: Store, *, out: Annotated[Path, typer.Option(help="PNG file")] = Path("embeddings.png"),
               method: Annotated[str, typer.Option(help="pca or tsne")] = "pca",
               classes: Annotated[str | None, typer.Option(help="comma-separated class names")] = None,
               color_by: Annotated[str, typer.Option(help="class or subject")] = "class",
               run: Annotated[Path | None, typer.Option(help="use this run's fold-0 probe pooling")] = None,
               allow_incomplete: Incomplete = False):
    """PCA or t-SNE of video-level embeddings, coloured by class or by subject."""
    from fer_probe.results.plots import embedding_plot

    chosen = [c.strip() for c in classes.split(",")] if classes else None
    path = embedding_plot(store, out, method=method, classes=chosen, run=run, color_by=color_by,
                          allow_incomplete=allow_incomplete,
                          on_warning=lambda w: errors.print(f"[yellow]warning:[/yellow] {w}", highlight=False))
    console.print(f"wrote {path}")


@app.command()
@user_errors
@probe_options
def ablate(store: Store, *, cfg, allow_incomplete: bool, overwrite: bool, out: Out = Path("runs/ablate"),
           folds: Annotated[int, typer.Option(help="number of subject folds")] = DEFAULT_FOLDS,
           versus: Annotated[list[str] | None, typer.Option(
               help="a store of the same videos extracted otherwise (another encoder, e.g. V-JEPA 2.1 or VideoMAE, "
                    "or face crops); repeat for several: the recipe's probe trains on each, compared with STORE's")
           ] = None,
           stores_only: Annotated[bool, typer.Option(help="compare the stores only (skip the one-store variants)")
                                  ] = False,
           test_store: Annotated[str | None, typer.Option(help="every clip start of the same videos: adds the row "
                                                               "test clips (the store's vs every start)")] = None):
    """Probe type, proj, test clips, voting and training clips compared on the same folds, with paired bootstraps
    (and training copies, augmented vs clean, on a store with copies); with --versus, stores of other encoders too
    (latent prediction vs pixel reconstruction in one command). The options set the baseline that every variant
    changes one setting of."""
    from fer_probe.protocols.ablate import run_ablation

    bar, update = epoch_progress()
    with bar:
        summary = run_ablation(store, out, cfg, n_folds=folds, allow_incomplete=allow_incomplete,
                               overwrite=overwrite, versus=versus, stores_only=stores_only, on_progress=update,
                               test_store=test_store)
    print_ablation(summary.comparisons)
    for note in summary.notes:
        console.print(f"[yellow]note:[/yellow] {note}", highlight=False)
    for record in summary.stores:
        if record["fine_tuned"]:
            console.print(f"[yellow]note: {record['label']} (the encoder was {record['fine_tuned']})[/yellow]",
                          highlight=False)
    if summary.left_out:
        console.print(f"[yellow]left out {summary.left_out} videos done in only some of the stores "
                      "(--allow-incomplete): every store is measured on the videos done in all[/yellow]")
    console.print(f"run directory: {out}")


@app.command()
@user_errors
def compare(runs: Annotated[list[Path], typer.Argument(help="run directories of fer-probe cv or cross")],
            out: Annotated[Path | None, typer.Option(help="also write the table here (.md and .csv)")] = None,
            overwrite: Annotated[bool, typer.Option(help="replace existing table files")] = False):
    """One table of several runs: recipe, store, encoder, UAR/WAR with intervals, paired tests where the videos
    match."""
    from fer_probe.results.compare import compare_runs

    table = compare_runs(runs, out, overwrite=overwrite)
    print_comparison(table)
    for path in table.written:
        console.print(f"wrote {path}", highlight=False)


def print_run(result, title: str) -> None:
    for note in result.notes:
        console.print(f"[dim]{note}[/dim]", highlight=False)
    if result.excluded:
        console.print(f"[yellow]left out {result.excluded} pending or failed videos (--allow-incomplete)[/yellow]")
    if result.unlabelled:
        console.print(f"[yellow]left out {result.unlabelled} videos without a label (label -1)[/yellow]")
    single = result.one_posterior_per_video
    if single:
        console.print("[dim]MV and clip metrics equal PBV by construction: one posterior per test video "
                      "(metrics.json holds all six)[/dim]")
    rows = [[key, f"{m['mean']:.3f}", f"{m['std']:.3f}", f"[{m['ci95'][0]:.3f}, {m['ci95'][1]:.3f}]",
             " ".join(f"{v:.2f}" for v in m["per_fold"])] for key, m in result.metrics.items()
            if not (single and not key.endswith("_pbv"))]
    print_table(["metric", "mean", "± std", "95% CI", "per fold"], rows, title=title, optional=["per fold", "95% CI"],
                kept_in="metrics.json")
    for warning in result.warnings:
        errors.print(f"[yellow]warning:[/yellow] {warning}", highlight=False, soft_wrap=True)
    console.print(f"run directory: {result.out}")


def print_ablation(rows: list[dict]) -> None:
    from fer_probe.results.metrics import p_text

    cells = [[r.comparison, r.a, r.b, f"{r.uar_a:.3f}", f"{r.uar_b:.3f}",
              "same by construction" if r.by_construction else
              f"{r.difference:+.3f} [{r.ci95[0]:+.3f}, {r.ci95[1]:+.3f}]", p_text(r.p_value)] for r in rows]
    print_table(["comparison", "A", "B", "UAR A", "UAR B", "A - B [95% CI]", "p"], cells, title="ablations (UAR)",
                optional=["A", "B"], kept_in="ablation.md")


def print_comparison(table) -> None:
    print_table(list(table.columns), [[str(row[c]) for c in table.columns] for row in table.rows],
                title="runs compared", optional=["data", "command", "classes", "chance UAR", "test videos",
                                                 "WAR (PBV)"], kept_in="the --out table")
    for note in table.notes:
        console.print(f"[yellow]note:[/yellow] {note}", highlight=False)
    for line in table.tests:
        console.print(line, highlight=False)


def print_table(headers: list[str], rows: list[list[str]], *, title: str, optional: list[str], kept_in: str) -> None:
    """A table that never cuts a number: where it is wider than the terminal, the `optional` columns are left out
    in that order (and said to be in `kept_in`); text that is still too long wraps instead of ending in '…'."""
    def width(columns: list[int]) -> int:
        return sum(max(len(headers[i]), *(len(r[i]) for r in rows)) + 3 for i in columns) + 1
    shown = list(range(len(headers)))
    dropped = []
    for name in optional:
        if width(shown) <= console.width:
            break
        if name in headers:
            shown.remove(headers.index(name))
            dropped.append(name)
    table = Table(*[Column(headers[i], overflow="fold") for i in shown], title=title)
    for row in rows:
        table.add_row(*[row[i] for i in shown])
    console.print(table)
    if dropped:
        console.print(f"[dim]{', '.join(dropped)} left out at this terminal width: see {kept_in}[/dim]",
                      highlight=False)


def main() -> None:
    sys.exit(app())


if __name__ == "__main__":
    app()
