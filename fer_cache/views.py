"""What fer-cache's commands print: tables and summaries drawn with rich, kept apart so the commands stay thin."""

import json
from pathlib import Path

from rich.console import Console
from rich.table import Column, Table

console = Console()
errors = Console(stderr=True)


def print_scan(report, dataset: str, config: Path, *, decode: bool, as_json: bool) -> None:
    if report.skipped:
        errors.print(f"{report.skipped} videos left out by the dataset's filters in {config}")
    if as_json:
        print(json.dumps(report.as_json(), indent=1))
        return
    headers = ["id", "label", "subject", *(["split"] if report.splits else []), *(["frames"] if decode else [])]
    table = Table(*[Column(h, overflow="fold") for h in headers],  # wrapped, never cut
                  title=f"{dataset}: {len(report.videos)} videos, {len(report.errors)} errors")
    for v in report.videos:
        table.add_row(v["id"], v["label_name"], v["subject"], *([str(v.get("split", ""))] if report.splits else []),
                      *([str(v["n_frames"])] if decode else []))
    console.print(table)
    for title, counts in (("videos per class", report.per_class), ("videos per subject", report.per_subject)):
        console.print(f"{title}: " + ", ".join(f"{k} {n}" for k, n in counts.items()), highlight=False)
    for e in report.errors:
        console.print(f"[yellow]error[/yellow] {e['path']}: {e['reason']}", highlight=False)


def print_summary(summary) -> None:
    rate = summary.clips_now / summary.seconds if summary.seconds else 0.0
    console.print(f"{summary.store}: {summary.done}/{summary.total} videos done, {len(summary.failed)} failed; "
                  f"this run encoded {summary.encoded_now} videos ({summary.clips_now} clips, {rate:.1f} clips/s) "
                  f"in {summary.seconds:.1f} s", highlight=False)
    for note in summary.notes:
        console.print(f"[dim]{note}[/dim]", highlight=False)
    for video_id, reason in summary.failed:
        console.print(f"[red]failed[/red] {video_id}: {reason}", highlight=False)
    for path, reason in summary.scan_errors:
        console.print(f"[yellow]not a dataset video[/yellow] {path}: {reason}", highlight=False)
    if summary.stopped or summary.pending:
        console.print("[yellow]stopped before the end: rerun the same command to resume[/yellow]")


def print_basis(basis: dict, parent: dict | None) -> None:
    """A compact store's rank, what it keeps and where its basis came from, with the curve to choose R by."""
    fitted, curve = basis.get("fitted_on", {}), basis.get("curve") or {}
    console.print(f"[bold]compact[/bold]: rank {basis['rank']}, {basis['explained']:.1%} of the token variance kept; "
                  f"basis fitted on {fitted.get('tokens', '?')} tokens of {fitted.get('videos', '?')} videos of "
                  f"{fitted.get('store') or 'dataset ' + str(fitted.get('dataset')) + ' at extraction'} (seed "
                  f"{fitted.get('seed', '?')})" + (f"; compacted from {parent['store']}" if parent else ""),
                  highlight=False)
    console.print("explained variance by rank: " + ", ".join(f"{r}: {share:.1%}" for r, share in curve.items()),
                  highlight=False)


def print_families(families) -> None:
    """Each encoder family, grouped by what it was pretrained to do (the paper's contrast); lines, not a table, so
    that nothing is cut at 80 columns."""
    for objective in dict.fromkeys(f.objective for f in families):
        console.print(f"[bold]{objective}[/bold]")
        for family in (f for f in families if f.objective == objective):
            console.print(f"  [bold]{family.name}[/bold] ({family.title}): {family.checkpoint_format}",
                          highlight=False)
            console.print(f"      presets: {', '.join(family.presets) or 'none (dimensions from config.json)'}; "
                          f"outputs: {', '.join(family.outputs)}; used as: {family.sampling}", highlight=False)


def print_verify(report, *, repair: bool) -> None:
    """Each problem, what was not checked, and the way to a repair; success says what was checked."""
    for problem in report.problems:
        console.print(f"[red]✗[/red] {problem}", highlight=False)
    for note in report.notes:
        console.print(f"[yellow]note:[/yellow] {note}", highlight=False)
    rerun = f": {report.command}" if report.command else ""
    if report.damaged and repair:
        console.print(f"{len(report.damaged)} damaged videos marked pending; rerun the extraction that wrote this "
                      f"store to encode them again{rerun}", highlight=False)
    elif report.damaged:
        console.print(f"{len(report.damaged)} videos have damaged values: `fer-cache verify {report.location} "
                      "--repair` marks them pending, then rerun the extraction", highlight=False)
    if report.ok:
        checked = "each chunk against its checksum, " if report.checksums else ""
        attributes = "attributes as extracted" if "attributes_digest" not in " ".join(report.notes) else \
            "attributes consistent with the fingerprint"
        console.print(f"[green]✓[/green] {report.location}: every video done; every value read back ({checked}"
                      f"through zarr) and finite; {attributes}", highlight=False)
