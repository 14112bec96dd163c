"""fer-cache: thin commands over the stage-1 library. User mistakes: one line on stderr, exit 1."""

import functools
import json
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from fer_cache import __version__
from fer_cache.errors import FerCacheError, StoreMismatchError
from fer_cache.extraction.request import ExtractRequest
from fer_cache.extraction.request import default_of as request_default
from fer_cache.views import console, errors, print_basis, print_families, print_scan, print_summary, print_verify

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,  # plain help: no <bool> columns
                  help="Encode face videos once into a Zarr cache.")

ConfigOpt = Annotated[Path, typer.Option("--config", help="the YAML file naming datasets and encoders")]
Store = Annotated[str, typer.Argument(help="a store (STORE.zarr, or an fsspec URL) written by fer-cache extract")]
HINTS = {StoreMismatchError: "--overwrite replaces the store"}


def user_errors(command):
    """Library errors are the user's to fix: print their one line (and the flag that helps) and exit 1."""
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except FerCacheError as exc:
            hint = next((f" ({h})" for kind, h in HINTS.items() if isinstance(exc, kind)), "")
            errors.print(f"[red]error:[/red] {exc}{hint}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
    return wrapper


def show_version(value: bool) -> None:
    if value:
        console.print(f"fer-cache {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(version: Annotated[bool, typer.Option("--version", callback=show_version, is_eager=True,
                                                       help="print the version and exit")] = False):
    """Encode face videos once into a Zarr cache."""
    from fer_cache.store import tune_process

    tune_process()  # once per process, for every command


def progress_bar(stderr: bool = False) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[rate]}"), TimeRemainingColumn(),
                    console=errors if stderr else console, transient=stderr)


def counted(bar: Progress, description: str):
    """A progress callback (done, total) for the library's long loops."""
    task = bar.add_task(description, total=None, rate="")
    return lambda done, total: bar.update(task, completed=done, total=total)


@app.command()
@user_errors
def scan(*, dataset: Annotated[str, typer.Option(help="dataset name in the config file")],
         config: ConfigOpt = Path("data.yaml"),
         decode: Annotated[bool, typer.Option(help="decode every video to count its frames")] = False,
         as_json: Annotated[bool, typer.Option("--json", help="print JSON: videos with label names, and errors")]
         = False,
         encoder: Annotated[str | None, typer.Option(help="also say what extracting with this encoder costs: "
                                                          "encoder passes and bytes (augmented copies apart)")] = None,
         preset: Annotated[str | None, typer.Option(help="with --encoder: the cost under this preset (paper)")]
         = None):
    """List what would be extracted: id, label, subject (and decoded frames); unusable files with reasons.
    Exits 3 when it lists errors."""
    from fer_cache.config import load_config
    from fer_cache.inputs.scan import scan_with_frames

    loaded = load_config(config)
    with progress_bar(stderr=True) as bar:
        report = scan_with_frames(loaded.dataset(dataset), decode, counted(bar, "decoding"))
    print_scan(report, dataset, config, decode=decode, as_json=as_json)
    if encoder is not None:
        from fer_cache.extraction.cost import extraction_cost

        request = ExtractRequest(dataset=dataset, encoder=encoder, out="", preset=preset)
        cost = extraction_cost(loaded, request, videos=len(report.videos),
                               frames=[v["n_frames"] for v in report.videos] if decode else None)
        for line in cost.lines():
            (errors if as_json else console).print(line, highlight=False)
    raise typer.Exit(3 if report.errors else 0)


@app.command()
@user_errors
def extract(*, dataset: Annotated[str, typer.Option(help="dataset name in the config file")],
            encoder: Annotated[str, typer.Option(help="encoder name in the config file")],
            out: Annotated[str, typer.Option(help="store path (STORE.zarr) or fsspec URL")],
            config: ConfigOpt = Path("data.yaml"),
            device: Annotated[str | None, typer.Option(help=f"auto, cpu or cuda [{request_default('device')}]")
                              ] = None,
            batch_size: Annotated[int | None, typer.Option(min=1, help="clips per encoder batch "
                                                                       f"[{request_default('batch_size')}]")] = None,
            workers: Annotated[int | None, typer.Option(min=0, help="decode worker processes "
                                                                    f"[{request_default('workers')}]")] = None,
            limit: Annotated[int | None, typer.Option(min=1, help="only the first N videos")] = None,
            overwrite: Annotated[bool, typer.Option(help="replace a store of another extraction")] = False,
            rank: Annotated[int | None, typer.Option(min=1, help="write a compact store of this rank")] = None,
            preset: Annotated[str | None, typer.Option(help="paper: the reference's training sampling (16 frames "
                                                            "at step 4, 8 segments, 4 augmented copies each)")] = None,
            test_out: Annotated[str | None, typer.Option(help="then write the test store that goes with it here: "
                                                              "every clip start, short side 256/224 of the crop")]
            = None,
            compile_encoder: Annotated[str | None, typer.Option(
                "--compile", help="auto (compiled on CUDA, eager on the CPU), on or off "
                                  f"[{request_default('compile')}]")
            ] = None):
    """Encode every clip of a dataset once into a schema-1 Zarr store; resumes a partial store and appends the
    videos a grown dataset adds. Exits 3 with failed videos, 130 after a clean stop on Ctrl-C."""
    from dataclasses import replace

    from fer_cache.config import load_config
    from fer_cache.extraction.pipeline import run_extraction

    given = dict(device=device, batch_size=batch_size, workers=workers, compile=compile_encoder)
    request = ExtractRequest(dataset=dataset, encoder=encoder, out=out, limit=limit, overwrite=overwrite, rank=rank,
                             preset=preset, **{k: v for k, v in given.items() if v is not None})  # defaults: its own
    if test_out is not None and test_out.rstrip("/") == out.rstrip("/"):
        raise FerCacheError(f"--test-out {test_out} is the training store's --out; name another store for the test "
                            "clips")
    requests = [request] + ([replace(request, out=test_out, test=True)] if test_out else [])
    codes = []
    for request in requests:  # the training store, then its test store
        progress = ExtractProgress()
        try:
            summary = run_extraction(load_config(config), request, on_start=progress.start,
                                     on_advance=progress.advance)
        finally:
            progress.stop()
        if summary.rank == 0:
            print_summary(summary)
        codes.append(summary.exit_code)
        if summary.exit_code == 130:
            break
    raise typer.Exit(max(codes))


class ExtractProgress:
    """Videos done out of all, clips/s and failures, fed by the pipeline's callbacks; drawn only once the encoder is
    built and the store prepared, so that a mistake in data.yaml is one line with no bar above it."""

    def __init__(self):
        self.bar: Progress | None = None
        self.clips = self.failed = 0
        self.started = time.perf_counter()

    def start(self, total: int, todo: int) -> None:
        self.started = time.perf_counter()
        self.bar = progress_bar()
        self.bar.start()
        self.task = self.bar.add_task("videos", total=total, completed=total - todo, rate="")

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()

    def advance(self, step) -> None:
        self.clips += step.clips
        self.failed += step.failed
        rate = self.clips / max(time.perf_counter() - self.started, 1e-9)
        self.bar.update(self.task, advance=step.videos, rate=f"{rate:.1f} clips/s, {self.failed} failed")


@app.command()
@user_errors
def compact(store: Store, *, out: Annotated[str, typer.Option(help="the compact store to write (STORE.zarr)")],
            rank: Annotated[int | None, typer.Option(min=1, help="principal directions kept (e.g. 256)")] = None,
            dtype: Annotated[str, typer.Option(help="int8 (a scale per token) or float16 coordinates")] = "int8",
            sample_tokens: Annotated[int, typer.Option(min=2, help="tokens fitted on, from every video")] = 200_000,
            seed: Annotated[int, typer.Option(help="seed of the token sample")] = 0,
            basis_from: Annotated[str | None, typer.Option(help="reuse this compact store's basis")] = None,
            overwrite: Annotated[bool, typer.Option(help="replace a store of another compaction")] = False):
    """Write a compact copy of a store: every token as its R coordinates on a principal basis of the store's
    tokens (about D/R times smaller); resumes a partial one. fer-probe reads it like any store."""
    from fer_cache.store.compaction import CompactRequest, compact_store

    request = CompactRequest(source=store, out=out, rank=rank, dtype=dtype, sample_tokens=sample_tokens, seed=seed,
                             basis_from=basis_from, overwrite=overwrite)
    with progress_bar() as bar:
        summary = compact_store(request, on_fit=counted(bar, "fitting the basis"),
                                on_video=counted(bar, "videos compacted"))
    basis, (before, after) = summary.basis, summary.bytes_per_clip
    console.print(f"{summary.store}: {summary.done}/{summary.total} videos compacted ({summary.written_now} now) in "
                  f"{summary.seconds:.1f} s; rank {basis.rank} keeps {basis.explained:.1%} of the variance of "
                  f"{basis.fitted_on.get('tokens', '?')} sampled tokens; {before / 1e3:.1f} -> {after / 1e3:.1f} kB "
                  f"per clip view ({before / after:.1f}x smaller)", highlight=False)
    if summary.not_done:  # pending or failed in the source
        console.print(f"[yellow]note:[/yellow] {summary.not_done} videos of {store} are not done; rerun compact "
                      "after finishing its extraction", highlight=False)


@app.command()
@user_errors
def info(store: Store, as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False):
    """Attributes, counts by status, sizes and bytes per clip of a store."""
    from fer_cache.store.audit import store_info

    with errors.status(f"reading {store}"):
        result = store_info(store)
    payload = {"store": result.location, "shape": list(result.shape), "counts": result.counts,
               "dtype": result.dtype, "stored_bytes": result.stored_bytes, "bytes_per_clip": result.bytes_per_clip,
               "quantisation_error": result.quantisation_error, "padding": result.padding, "attrs": result.attrs}
    if as_json:
        print(json.dumps(payload, indent=1, default=str))
        return
    console.print(f"[bold]{store}[/bold] tokens {tuple(result.shape)} {result.dtype}, "
                  f"{result.stored_bytes / 1e6:.1f} MB stored, {result.bytes_per_clip / 1e3:.1f} kB per clip view")
    console.print(f"videos: {result.counts}", highlight=False)
    from fer_cache.store.schema import padding_note
    padding = padding_note(*result.padding.values()) if result.padding else None
    if padding:
        console.print(f"[yellow]note:[/yellow] {padding}", highlight=False)
    if result.quantisation_error is not None:
        console.print(f"{result.dtype} rounding error at most {result.quantisation_error:.3g} (first video)")
    encoder = result.attrs.get("encoder") or {}
    width = encoder.get("token_width", encoder.get("embed_dim"))
    console.print(f"encoder: family {encoder.get('family')}, preset {encoder.get('arch') or 'none'}"
                  f", output {encoder.get('output', 'last')}, width {width}, "
                  f"checkpoint {encoder.get('checkpoint') or 'none (random weights)'}"
                  + (f" (key {encoder['checkpoint_key']})" if encoder.get("checkpoint_key") else ""), highlight=False)
    if encoder.get("fine_tuned"):
        console.print(f"[yellow]note:[/yellow] the encoder was {encoder['fine_tuned']}", highlight=False)
    basis = result.attrs.get("storage", {}).get("basis")
    if basis:
        print_basis(basis, result.attrs.get("compacted_from"))
    for key in ("dataset", "label_names", "token_grid", "encoder", "sampling", "storage", "fingerprint"):
        console.print(f"{key}: {result.attrs.get(key)}", highlight=False)


@app.command()
@user_errors
def verify(store: Store, repair: Annotated[bool, typer.Option(
        help="mark videos whose stored values are damaged pending, for the extraction to encode again")] = False):
    """Exit 0 only if every video is done, its values readable and finite and the attributes as extraction wrote
    them; otherwise list what is wrong, naming each chunk (exit 3)."""
    from fer_cache.store.audit import verify_store

    with progress_bar(stderr=True) as bar:
        report = verify_store(store, on_video=counted(bar, "videos checked"), repair=repair)
    print_verify(report, repair=repair)
    raise typer.Exit(0 if report.ok else 3)


@app.command("export-h5")
@user_errors
def export_h5(store: Store, out: Annotated[Path, typer.Argument(help="the HDF5 file to write")]):
    """Write the store's arrays and attributes into one HDF5 file."""
    from fer_cache.store.audit import export_h5 as export

    with progress_bar(stderr=True) as bar:
        n = export(store, out, on_video=counted(bar, "videos exported"))
    console.print(f"wrote {n} videos to {out}")


@app.command()
def families():
    """The encoder families: what each was pretrained to do, what `checkpoint:` points at, presets and outputs."""
    from fer_cache.encoders import FAMILIES
    print_families(list(FAMILIES.values()))


@app.command("demo-data")
@user_errors
def demo_data(out_dir: Annotated[Path, typer.Argument(help="folder for the synthetic videos")], *,
              actors: Annotated[int, typer.Option(min=2)] = 12,
              repetitions: Annotated[int, typer.Option(min=1)] = 2, seed: int = 0,
              frames: Annotated[int, typer.Option(min=1, help="frames of each video")] = 48,
              frames_spread: Annotated[int, typer.Option(min=0, help="each video up to this many frames longer "
                                                                     "(seeded): videos of different lengths")] = 0):
    """Generate the synthetic face-video dataset used by `make demo` (RAVDESS naming)."""
    from fer_cache.inputs.datasets.synthetic import DEMO_EMOTIONS, generate_demo_dataset

    total = actors * len(DEMO_EMOTIONS) * repetitions
    with progress_bar() as bar:
        task = bar.add_task("videos", total=total, rate="")
        written = generate_demo_dataset(out_dir, actors, repetitions, seed=seed, progress=lambda: bar.advance(task),
                                        n_frames=frames, frames_spread=frames_spread)
    console.print(f"wrote {len(written)} videos to {out_dir}")


def main() -> None:
    sys.exit(app())


if __name__ == "__main__":
    app()
