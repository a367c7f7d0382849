"""`ftbench encode`: embed a data set's items (and queries) with a model saved by `ftbench run
--save-model`, into the `--save-embeddings` layout (`ftbench.run.embeddings_io`)."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import console, fail, use_cache_dir

QUERY_CHOICES = ("test", "val", "train", "all", "none")


def encode(
    model: Path = typer.Option(..., "--model", metavar="DIR", help="A folder written by `ftbench run --save-model DIR`."),
    dataset: str | None = typer.Option(
        None, "--dataset", "-d", help="Data set name (default: the one the model was trained on)."
    ),
    data_dir: Path | None = typer.Option(
        None, "--data-dir", help="Data folder, for data sets read from disk (default: the training run's, for its data set)."
    ),
    set_: list[str] = typer.Option(
        [], "--set", help="Override a data set config field: key=value or dataset.key=value (repeatable)."
    ),
    queries: str = typer.Option(
        "test", "--queries", help="Which queries to embed too: test (as --save-embeddings), val, train, all or none."
    ),
    out: Path = typer.Option(
        ...,
        "--out",
        metavar="DIR",
        help="Folder to write (replaced): item_embeddings.npy, item_ids.npy, query_embeddings.npy, query_ids.npy, manifest.json.",
    ),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    cache_dir: Path | None = typer.Option(
        None, "--cache-dir", help="Feature cache folder (default: $FTBENCH_CACHE_DIR or ~/.cache/ftbench/features)."
    ),
) -> None:
    """Embed the items (and queries) of a data set with a saved model; write them as --save-embeddings does."""
    from ..errors import input_errors  # lazy: CLI start-up
    from ..model.saved import load_model  # lazy: CLI start-up
    from ..run.embeddings_io import write_embeddings  # lazy: CLI start-up
    from ..run.experiment import parse_sets  # lazy: CLI start-up

    if queries not in QUERY_CHOICES:
        fail(f"--queries must be one of {', '.join(QUERY_CHOICES)}, got {queries!r}")
    use_cache_dir(cache_dir)
    try:
        overrides = {}
        for section, key, value in parse_sets(set_):
            if section not in (None, "dataset"):
                raise ValueError(f"--set {section}.{key}: encode takes data set fields only (dataset.<field>)")
            overrides[key] = value
        saved = load_model(model, device)
        data = saved.build_dataset(dataset, data_dir, overrides)
        item_embeddings = saved.embed_items(data)
        query_block = None
        if queries != "none" and data.queries is not None:
            from ..model.saved import query_rows  # lazy: CLI start-up

            rows = query_rows(data, queries)
            query_block = (saved.embed_queries(data, rows), data.queries.ids[rows], queries)
    except input_errors(ValueError, KeyError, OSError) as exc:
        fail(str(exc) if not isinstance(exc, KeyError) else str(exc.args[0]))
    written = write_embeddings(
        out,
        item_embeddings,
        data.catalog.item_ids(),
        query_block,
        {"model": str(model), "objective": saved.objective_name, "dataset": data.name},
    )
    what = f"{len(item_embeddings):,} items" + (f", {len(query_block[0]):,} {queries} queries" if query_block else "")
    console.print(f"encoded {what} of {data.name} with {saved.objective_name} -> {written}", highlight=False, markup=False)


def register(app: typer.Typer) -> None:
    app.command()(encode)
