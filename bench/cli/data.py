"""`ftbench features ...` (precompute backbone features into the cache) and
`ftbench data fetch NAME` (download, check and safely extract a data set's declared public archive) and
`ftbench data info synthetic` (how much item information each view slot carries) and
`ftbench data validate DIR` (a catalog folder's data-quality report, `ftbench.data.quality`) and
`ftbench data init DIR` (an example catalog to edit, `ftbench.data.example`)."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from .. import __version__
from ..config import apply_overrides, parse_literal, to_jsonable
from ..features.backbones import MODALITIES, backbone_modalities, parse_spec
from ..features.cache import report_progress
from ..registry import UnknownNameError, suggest
from .common import fail

console = Console(stderr=True)


class _RichReporter:
    """Adapts a rich Progress to the `feature_cache.ProgressReporter` protocol."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress

    def start(self, label: str, total: int) -> object:
        return self.progress.add_task(label, total=total)

    def advance(self, task: object, n: int) -> None:
        self.progress.advance(task, n)  # type: ignore[arg-type]  # task is the TaskID start() returned


def parse_set(pairs: list[str]) -> dict[str, Any]:
    """``key=value`` strings (an optional ``dataset.`` prefix is dropped) -> {key: literal}."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"--set expects key=value, got {pair!r}")
        key = key.strip().removeprefix("dataset.")
        out[key] = parse_literal(value)
    return out


def backbone_overrides(specs: list[str], fields: set[str], dataset: str) -> dict[str, str]:
    """Map ``--backbone`` values to the data set's ``image_backbone`` / ``text_backbone`` fields.

    ``image=BACKBONE`` or ``text=BACKBONE`` names the modality; a bare BACKBONE goes to every modality its
    backbone can encode that the data set has.
    """
    out: dict[str, str] = {}
    for spec in specs:
        modality, sep, rest = spec.partition("=")
        if sep and modality in MODALITIES:
            targets, spec = [modality], rest
        else:
            targets = list(backbone_modalities(spec))
        parse_spec(spec)
        usable = [m for m in targets if f"{m}_backbone" in fields]
        if not usable:
            raise typer.BadParameter(f"data set {dataset!r} has no {' or '.join(targets)} views for backbone {spec!r}")
        for m in usable:
            out[f"{m}_backbone"] = spec
    return out


def build_with_progress(dataset: str, overrides: dict[str, Any]):
    """Build data set `dataset` with `overrides`, showing a progress bar per encoding pass."""
    from ..datasets import DATASETS  # lazy: CLI start-up

    plugin_cls = DATASETS.get(dataset)
    config = apply_overrides(plugin_cls.Config(), overrides, f"data set {dataset!r}")
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    from .progress import make_progress  # lazy: CLI start-up

    with make_progress(*columns, console=console, transient=False) as progress:
        with report_progress(_RichReporter(progress)):
            return plugin_cls().build(config)


def _fail(exc: BaseException) -> None:
    """Print a data error as one line naming what was wrong (the loaders name file and line)."""
    fail(str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc))


def register(app: typer.Typer) -> None:
    @app.command("features")
    def features(
        dataset: str = typer.Option("grocery-store", "--dataset", "-d", help="data set whose views and queries to encode"),
        data_dir: Path | None = typer.Option(None, "--data-dir", help="the data set's folder (its `data_dir` option)"),
        backbone: list[str] = typer.Option(
            [],
            "--backbone",
            "-b",
            help="backbone spec (minilm, efficientnet-lite0, hash, precomputed:DIR, st:HUB_ID or st:PATH, "
            "open_clip:MODEL/PRETRAINED, open_clip:MODEL:WEIGHTS or open_clip:FOLDER); "
            "prefix image= or text= to choose the modality; repeatable",
        ),
        cache_dir: Path | None = typer.Option(
            None, "--cache-dir", help="feature cache folder (default $FTBENCH_CACHE_DIR or ~/.cache/ftbench/features)"
        ),
        set_: list[str] = typer.Option([], "--set", help="data set option key=value; repeatable"),
    ) -> None:
        """Precompute a data set's backbone features into the cache; a second run encodes nothing."""
        from ..datasets import DATASETS  # lazy: CLI start-up

        try:
            plugin_cls = DATASETS.get(dataset)
        except UnknownNameError as exc:
            raise typer.BadParameter(str(exc), param_hint="--dataset") from None
        fields = {f.name for f in dataclasses.fields(plugin_cls.Config)}
        overrides = parse_set(set_)
        overrides.update(backbone_overrides(backbone, fields, dataset))
        if data_dir is not None:
            if "data_dir" not in fields:
                raise typer.BadParameter(f"data set {dataset!r} has no data_dir option", param_hint="--data-dir")
            overrides["data_dir"] = str(data_dir)
        if cache_dir is not None:
            if "cache_dir" not in fields:
                raise typer.BadParameter(f"data set {dataset!r} reads no backbone features", param_hint="--cache-dir")
            overrides["cache_dir"] = str(cache_dir)
        from ..errors import input_errors  # lazy: CLI start-up

        t0 = time.perf_counter()
        try:
            ds = build_with_progress(dataset, overrides)
        except input_errors() as exc:
            _fail(exc)
        seconds = time.perf_counter() - t0
        info = ds.config
        table = Table(title=f"features of {dataset}")
        table.add_column("what")
        table.add_column("value", overflow="fold")
        counts = ds.counts()
        table.add_row("items / view slots", f"{counts['items']} / {counts['view_slots']}")
        if ds.queries is not None:
            table.add_row("queries", f"{ds.queries.num_queries} ({ds.queries.modality})")
        for key in ("image_backbone", "text_backbone"):
            if key in info:
                table.add_row(key, str(info[key]))
        table.add_row("encoded now", str(info.get("features_encoded", "?")))
        table.add_row("read from cache", str(info.get("features_from_cache", "?")))
        table.add_row("cache", str(info.get("cache_dir_resolved")))
        table.add_row("seconds", f"{seconds:.1f}")
        if ds.skipped:
            table.add_row("skipped", ", ".join(f"{k}={v}" for k, v in ds.skipped.items()))
        Console().print(table)

    data_app = typer.Typer(help="Public data sets: download and check.", no_args_is_help=True)

    @data_app.command("fetch")
    def fetch(
        name: str | None = typer.Argument(None, help="data set to download (without NAME: the data sets that can be)"),
        dest: Path | None = typer.Option(
            None, "--dest", help="destination folder (default $FTBENCH_DATA_DIR/<name> or ~/.cache/ftbench/data/<name>)"
        ),
        url: str | None = typer.Option(None, "--url", help="archive URL (default: the one the data set declares)"),
        sha256: str | None = typer.Option(
            None, "--sha256", help="expected sha256 of the archive (default: the declared one, if any)"
        ),
        force: bool = typer.Option(False, "--force", help="download again even if a complete copy is there"),
    ) -> None:
        """Download a public data set archive, check it, extract it safely, print its folder.
        Each data set plugin declares whether and from where it can be fetched (its `archive`)."""
        from ..data.fetch import default_data_root, fetchable  # lazy: CLI start-up
        from ..datasets import DATASETS  # lazy: CLI start-up
        from ..errors import input_errors  # lazy: CLI start-up

        sources = fetchable(DATASETS)
        if name is None:
            for each, source in sources.items():
                console.print(f"{each:<16} {source.url}", highlight=False, markup=False, soft_wrap=True)
            return
        if name not in sources:
            listed = f" `data fetch` knows {', '.join(sources) or 'none'}."
            if name in DATASETS:
                raise typer.BadParameter(
                    f"data set {name!r} declares no public archive: it is downloaded by hand "
                    f"(see docs/data/real-data.md) and read with --data-dir.{listed}",
                    param_hint="NAME",
                )
            raise typer.BadParameter(suggest(name, list(DATASETS), "data set") + listed, param_hint="NAME")
        columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeElapsedColumn())
        with Progress(*columns, console=console) as progress:
            task = progress.add_task("downloading", total=None)

            def report(done: int, total: int | None) -> None:
                progress.update(task, completed=done, total=total)

            try:
                root = sources[name].fetch(
                    dest or default_data_root() / name, url=url, sha256=sha256, force=force, progress=report
                )
            except input_errors() as exc:  # bad URL or digest, damaged or unsafe archive, network
                _fail(exc)
        console.print(f"{name} data folder: {root}")
        print(root)

    @data_app.command("convert")
    def convert(
        name: str = typer.Argument(..., help="data set to convert: grocery-store, esci, wands, amazon-reviews-2023, synthetic"),
        out: Path = typer.Option(
            ...,
            "--out",
            help="new (or empty) folder for the catalog layout (it appears only when complete: an interrupted convert leaves none)",
        ),
        data_dir: Path | None = typer.Option(None, "--data-dir", help="the source data set's folder (its `data_dir` option)"),
        set_: list[str] = typer.Option([], "--set", help="source data set option key=value; repeatable"),
        link_images: bool = typer.Option(False, "--link-images", help="symlink image files instead of copying them"),
    ) -> None:
        """Write a data set in the catalog layout (items.jsonl, queries.jsonl, qrels/, catalog.json),
        readable with `ftbench run --dataset catalog --data-dir OUT`."""
        from ..data.convert import convert_dataset  # lazy: CLI start-up
        from ..datasets import DATASETS  # lazy: CLI start-up
        from ..errors import input_errors  # lazy: CLI start-up

        try:
            plugin_cls = DATASETS.get(name)
        except UnknownNameError as exc:
            raise typer.BadParameter(str(exc), param_hint="NAME") from None
        overrides = parse_set(set_)
        if data_dir is not None:
            if "data_dir" not in {f.name for f in dataclasses.fields(plugin_cls.Config)}:
                raise typer.BadParameter(f"data set {name!r} has no data_dir option", param_hint="--data-dir")
            overrides["data_dir"] = str(data_dir)
        try:
            summary = convert_dataset(name, overrides, out, link_images=link_images)
        except input_errors(FileExistsError) as exc:
            _fail(exc)
        except KeyboardInterrupt:
            # the layout is renamed into place only when complete: nothing half-written remains
            console.print(
                f"\ninterrupted: nothing was written to {out}; the same command starts again.", highlight=False, markup=False
            )
            raise typer.Exit(code=130) from None
        table = Table(title=f"{name} -> catalog layout")
        table.add_column("what")
        table.add_column("value", overflow="fold")
        for key, value in summary.items():
            table.add_row(key, ", ".join(f"{k}={v}" for k, v in value.items()) if isinstance(value, dict) else str(value))
        Console(stderr=True).print(table)
        print(out)

    @data_app.command("info")
    def info(
        name: str = typer.Argument(..., help="data set: synthetic"),
        set_: list[str] = typer.Option([], "--set", help="data set option key=value (dataset. prefix optional); repeatable"),
        k: int = typer.Option(10, "--k", help="recall cutoff"),
    ) -> None:
        """Per view slot: recall@K of the item among the test items from the slot's raw feature.

        Untrained probes (see `ftbench.datasets.synthetic.slot_information`): cosine against the
        same-modality primary view, against the mean of the item's other same-modality views, and,
        through a ridge map fitted on train items, against the other modality's views.
        """
        from ..datasets.synthetic import SyntheticConfig, slot_information  # lazy: CLI start-up

        if name != "synthetic":
            raise typer.BadParameter(f"unknown data set {name!r}: `data info` knows synthetic", param_hint="NAME")
        if k < 1:
            raise typer.BadParameter(f"--k must be at least 1, got {k}", param_hint="--k")
        try:
            config = apply_overrides(SyntheticConfig(), parse_set(set_), "data set 'synthetic'")
            rows = slot_information(config, k=k)
        except (ValueError, KeyError, TypeError) as exc:
            _fail(exc)
        changed = ", ".join(f"{key}={value!r}" for key, value in parse_set(set_).items()) or "defaults"
        table = Table(
            title=f"synthetic ({changed}): item information per slot, R@{k} among test items",
            caption=f"raw features, no towers; has = share of test items with the view; shows = share of test items whose view shows each attribute (no share: all); chance = {rows[0].chance:.3f}",
            caption_justify="left",
        )
        table.add_column("slot", no_wrap=True)
        table.add_column("role", no_wrap=True)
        table.add_column("has", justify="right")
        table.add_column("shows attr:%", no_wrap=True)
        for col in ("vs primary", "vs other views", "vs other modality"):
            table.add_column(col, justify="right")

        def fmt(value):
            return "—" if value is None else f"{value:.3f}"

        for r in rows:
            table.add_row(
                f"{r.slot} ({r.modality})",
                "aux" if r.role == "auxiliary" else r.role,
                f"{r.present:.0%}",
                r.shows,
                fmt(r.recall_vs_primary),
                fmt(r.recall_vs_other_views),
                fmt(r.recall_vs_other_modality),
            )
        Console().print(table)

    @data_app.command("init")
    def init(
        data_dir: Path = typer.Argument(..., help="a new or empty folder to write the example catalog into"),
        items_format: str = typer.Option(
            "jsonl", "--items-format", help="write the items as items.jsonl (jsonl) or items.csv (csv)"
        ),
    ) -> None:
        """Write a small, valid example catalog to edit into your own (docs/catalog.md): 24 items with
        a title, a description, an image and two more photos (PNGs drawn here), catalog.json, 24 text
        queries and graded qrels for train, dev and test. Refuses a folder that is not empty."""
        from ..data.example import ITEMS_FORMATS, write_example_catalog  # lazy: CLI start-up

        if items_format not in ITEMS_FORMATS:
            raise typer.BadParameter(
                f"must be one of {', '.join(ITEMS_FORMATS)}, got {items_format!r}", param_hint="--items-format"
            )
        try:
            counts = write_example_catalog(data_dir, items_format)
        except (FileExistsError, OSError) as exc:
            _fail(exc)
        console.print(
            f"example catalog written to {data_dir}: "
            + ", ".join(f"{v} {k}" for k, v in counts.items())
            + f"\nnext: ftbench data validate {data_dir}; ftbench run --dataset catalog --data-dir {data_dir}",
            highlight=False,
            markup=False,
        )
        print(data_dir)

    @data_app.command("validate")
    def validate(
        data_dir: Path = typer.Argument(..., help="a folder in the catalog layout (items.jsonl, queries.jsonl, qrels/, ...)"),
        json_file: Path | None = typer.Option(None, "--json", help="also write the report to this JSON file"),
    ) -> None:
        """Check a catalog folder as `ftbench run` reads it, without encoding or training, and report
        its data quality: items, views per slot, queries and qrels per split, absent files, skipped
        lines; duplicate titles and image files, views shared across items, empty, truncated, HTML,
        garbled (control characters, not Unicode, mojibake) texts, relevant items per query.
        Exit 0 when the folder loads (defects are reported, not fatal), 2 when it cannot."""
        from ..data.quality import ValidationError, plain_text, rich_tables, to_json, validate_catalog  # lazy: CLI start-up

        try:
            report = validate_catalog(data_dir)
        except ValidationError as exc:
            _fail(exc)
        if json_file is not None:
            try:
                json_file.write_text(to_json(report) + "\n", encoding="utf-8")
            except OSError as exc:
                fail(f"--json {str(json_file)!r}: cannot be written ({exc.strerror or exc})")
        out = Console()
        if out.is_terminal:
            for table in rich_tables(report):
                out.print(table)
        else:
            print(plain_text(report))

    @data_app.command("profile")
    def profile(
        dataset: str = typer.Option("synthetic", "--dataset", "-d", help="data set to profile"),
        data_dir: Path | None = typer.Option(None, "--data-dir", help="the data set's folder (its `data_dir` option)"),
        views: int = typer.Option(8, "--views", "-V", help="views per item kept (primary first), as ftbench run's --views"),
        set_: list[str] = typer.Option([], "--set", help="data set option key=value (dataset. prefix optional); repeatable"),
        json_file: Path | None = typer.Option(
            None, "--json", help="also write the data set's identity and the indicators to this JSON file"
        ),
        seed: int = typer.Option(0, "--seed", help="seed of the ridge maps' folds and of the samples drawn"),
    ) -> None:
        """A data set's regime indicators from its frozen features, no training (ftbench.regime.indicators;
        docs/method.md, Regime indicators): views per item, modality mix, catalog size, training signal,
        frozen query recall, auxiliary gain for queries and for held-out views, cross-side overlap."""
        from ..errors import input_errors  # lazy: CLI start-up
        from ..regime.indicators import profile_dataset, profile_rows  # lazy: CLI start-up
        from ..run.experiment import RunSpec, build_dataset, prepare  # lazy: CLI start-up

        sets = [f"dataset.{pair.removeprefix('dataset.')}" for pair in set_]
        if data_dir is not None:
            sets.append(f"dataset.data_dir={str(data_dir)!r}")
        if views < 1:
            raise typer.BadParameter(f"--views must be at least 1, got {views}", param_hint="--views")
        t0 = time.perf_counter()
        try:
            prepared = prepare(RunSpec(dataset=dataset, views=views, sets=sets))
            built = build_dataset(prepared)
            build_seconds = time.perf_counter() - t0
            result = profile_dataset(built, views=views, seed=seed)
        except UnknownNameError as exc:
            raise typer.BadParameter(str(exc), param_hint="--dataset") from None
        except input_errors() as exc:
            _fail(exc)
        if json_file is not None:
            import json

            payload = {
                "dataset": dataset,
                "views": views,
                "seed": seed,
                "sets": sets,
                "dataset_config": to_jsonable(prepared.configs["dataset"]),
                "data": prepared.data,
                "ftbench_version": __version__,
                "build_seconds": round(build_seconds, 3),
                "indicators": result.indicators(),
                "profile": result.to_dict(),
            }
            try:
                json_file.write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n", encoding="utf-8")
            except OSError as exc:
                fail(f"--json {str(json_file)!r}: cannot be written ({exc.strerror or exc})")
        rows = profile_rows(result)
        title = f"{dataset} regime indicators (--views {views}; " + (", ".join(sets) or "defaults") + ")"
        out = Console()
        if out.is_terminal:
            # escaped: option values and reasons are not markup
            table = Table(
                title=escape(title),
                caption=f"frozen features, no training; data set built in {build_seconds:.1f} s",
                caption_justify="left",
            )
            table.add_column("indicator", no_wrap=True)
            table.add_column("value", overflow="fold")
            table.add_column("what", overflow="fold")
            for row in rows:
                table.add_row(*(escape(cell) for cell in row))
            out.print(table)
        else:
            print(title)
            for name, value, what in rows:
                print(f"{name}\t{value}\t{what}")

    app.add_typer(data_app, name="data")
