"""`ftbench verify`: run a seeded sample of each folder's result files again (as `ftbench rerun`
does one) and check that every metric reproduces to the last digit."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import typer

from ..files import atomic_write_text
from .common import UsageError, check_writable, console, fail, use_cache_dir

# at most this many skipped file names are printed per folder (all of them go into --record)
_SKIPPED_SHOWN = 4


def _diff_cell(check) -> str:
    if check.comparison is None:
        return "—"
    if check.comparison.differences and check.comparison.max_abs_diff == 0.0:
        return "names differ"  # a metric on one side only
    return f"{check.comparison.max_abs_diff:.3g}"


def verify(
    folders: list[Path] = typer.Argument(..., help="Folders of result files (searched recursively)."),
    sample: int = typer.Option(2, "--sample", "-n", help="Result files drawn per folder (all of them if the folder has fewer)."),
    sample_for: list[str] = typer.Option(
        [], "--sample-for", help="NAME=N: draw N files from the folder named NAME instead (repeatable; e.g. paper-scale=1)."
    ),
    seed: int = typer.Option(
        0, "--seed", help="Seed of the draw (with the folder's name): the same command picks the same files."
    ),
    tracked: bool = typer.Option(
        False,
        "--tracked",
        help="Draw only among files git tracks (a sweep still writing into the folder cannot change the draw).",
    ),
    device: str | None = typer.Option(None, "--device", help="auto, cpu or cuda (default: each file's recorded --device)."),
    cache_dir: Path | None = typer.Option(None, "--cache-dir", help="Feature cache folder."),
    record: Path | None = typer.Option(
        None, "--record", help="Also write the check (sample, skipped files, each rerun's outcome) to this JSON file."
    ),
) -> None:
    """Run N result files per folder again under their recorded config and torch thread count, each
    into a temporary folder (never into the folders checked), and compare every metric exactly:
    equal floats after a JSON round trip. JSON files that are not run results (cost files, designs,
    profiles) are skipped with a message. Prints one row per file and exits 1 if any metric differs
    or a rerun fails."""
    from ..run.verify import check_record, legacy_name_lines, rerun_and_compare, sample_folder  # lazy: CLI start-up

    use_cache_dir(cache_dir)
    if record is not None:
        try:
            check_writable(record.parent)
        except UsageError:
            fail(f"--record {str(record)!r}: its folder is not writable")
    sizes: dict[str, int] = {}
    for item in sample_for:
        name, _, size = item.partition("=")
        if not name or not size.strip().isdigit():
            fail(f"--sample-for {item!r}: expected NAME=N, e.g. paper-scale=1")
        sizes[name.strip()] = int(size)
    samples = []
    for folder in folders:
        try:
            samples.append(sample_folder(folder, sizes.get(folder.resolve().name, sample), seed, tracked))
        except ValueError as exc:
            fail(str(exc))
    for s in samples:
        line = f"{s.folder}: {len(s.runs)} run files, rerunning {len(s.chosen)}"
        if s.untracked:
            line += f"; {s.untracked} JSON files git does not track left out"
        console.print(line, highlight=False, markup=False)
        if s.skipped:
            names = [str(p.relative_to(s.folder)) for p, _ in s.skipped]
            shown = ", ".join(names[:_SKIPPED_SHOWN]) + (
                f", ... (+{len(names) - _SKIPPED_SHOWN})" if len(names) > _SKIPPED_SHOWN else ""
            )
            reasons = sorted({reason for _, reason in s.skipped})
            console.print(
                f"  skipped {len(names)} JSON files that are not run results: {shown} ({'; '.join(reasons[:3])})",
                highlight=False,
                markup=False,
            )
    chosen = [(s.folder, path) for s in samples for path in s.chosen]
    checks = []
    with tempfile.TemporaryDirectory(prefix="ftbench-verify-") as scratch:
        for index, (folder, path) in enumerate(chosen):
            console.print(f"[{index + 1}/{len(chosen)}] {path}", highlight=False, markup=False)
            dataset_cache: dict = {}  # per file: a 1M-item data set is not kept beyond its run
            check = rerun_and_compare(path, Path(scratch) / str(index), device, dataset_cache)
            checks.append((folder, check))
            for line in legacy_name_lines(check.comparison) if check.comparison else []:
                console.print(f"  {line}", highlight=False, markup=False)
            for note in check.notes:
                console.print(f"  note: {note}", highlight=False, markup=False)
            for line in check.comparison.differences[:10] if check.comparison else []:
                console.print(f"  differs: {line}", highlight=False, markup=False)
            console.print(f"  {check.status} ({check.seconds:.1f} s)", highlight=False, markup=False)
    # plain aligned lines, not a rich table: a table cut to 80 columns folds every file name
    rows = [("folder", "file", "#metrics", "max abs diff", "status", "s")]
    rows += [
        (
            str(folder),
            str(check.path.relative_to(folder)),
            str(check.comparison.compared if check.comparison else 0),
            _diff_cell(check),
            check.status,
            f"{check.seconds:.0f}",
        )
        for folder, check in checks
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = [cell.ljust(w) if i in (0, 1, 4) else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))]
        console.print("  ".join(cells).rstrip(), highlight=False, markup=False, soft_wrap=True)
    if record is not None:
        payload = check_record([c for _, c in checks], samples, seed=seed, tracked_only=tracked)
        atomic_write_text(record, json.dumps(payload, indent=2) + "\n")
        console.print(f"record: {record}", highlight=False, markup=False)
    failed = [c for _, c in checks if c.status != "equal"]
    if failed:
        console.print(f"[red]{len(failed)} of {len(checks)} reruns do not reproduce[/]", highlight=False)
        raise typer.Exit(code=1)
    console.print(f"all {len(checks)} reruns reproduce every metric exactly.", highlight=False)


def register(app: typer.Typer) -> None:
    app.command()(verify)
