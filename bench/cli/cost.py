"""`ftbench cost`: cost against the number of views, and the solver / search benchmarks."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ..kernels.search import SCANS
from ..registry import UnknownNameError
from ..run.results import atomic_write_text
from .common import UsageError, check_writable, fail, split_list


def register(app: typer.Typer) -> None:
    @app.command()
    def cost(
        objective: list[str] = typer.Option(
            [],
            "--objective",
            "-o",
            help="Objective (repeatable or a comma list; default: all). Benchmark-only variants: oat-geomloss-w1 (oat with its W1 term as two geomloss calls, the previous code path); oat-floor (oat's step without its own terms: towers on all views, fused item, query InfoNCE).",
        ),
        views: list[str] = typer.Option(
            [], "--views", help="V values (repeatable or a comma list: 1,2,4; default 1 2 4 8 16 32)."
        ),
        batch_size: int = typer.Option(256, "--batch-size", help="Items per step."),
        repeats: int = typer.Option(10, "--repeats", help="Timed repeats per cell (median reported)."),
        warmup: int = typer.Option(3, "--warmup", help="Untimed warm-up repeats per cell."),
        device: str = typer.Option("cpu", "--device", help="auto, cpu or cuda."),
        out: Path = typer.Option(
            Path("runs/cost"), "--out", help="Folder for the cost results (default runs/cost, git-ignored)."
        ),
        budget_gb: float = typer.Option(8.0, "--budget-gb", help="Skip cells whose estimated memory exceeds this."),
        set_: list[str] = typer.Option([], "--set", help="Objective config override key=value (repeatable)."),
        plot: bool = typer.Option(True, "--plot/--no-plot", help="Write a log-log PNG of cost against V."),
        solver_bench: bool = typer.Option(False, "--solver-bench", help="Only: our batched Sinkhorn vs POT's solve_batch."),
        search_bench: bool = typer.Option(False, "--search-bench", help="Only: exact top-K search vs faiss IndexFlatIP."),
        step_ratio: bool = typer.Option(
            False,
            "--step-ratio",
            help="Only: every --objective's whole step against the first one's, side by side in one process, in rounds (one V, default 8; default objectives: clip, then the others).",
        ),
        rounds: int = typer.Option(
            10,
            "--rounds",
            help="Step ratio: rounds of --repeats steps of every objective in turn (each round gives one ratio per objective).",
        ),
        items: int = typer.Option(1_000_000, "--items", help="Search bench: catalog size."),
        threads: int = typer.Option(0, "--threads", help="CPU threads per measured cell (0: torch's default, all cores)."),
        search_precision: str = typer.Option(
            "auto",
            "--search-precision",
            help="Search bench: the first pass of our search: auto (lowrank for large nearly-low-rank catalogs, else bf16 where the hardware makes it faster, else fp32), fp32, bf16 or lowrank (certified-exact every way).",
        ),
        search_embeddings: Path | None = typer.Option(
            None,
            "--search-embeddings",
            help="Search bench: a run's --save-embeddings folder (its items and the first --queries test queries) instead of random unit vectors; writes search_bench__embeddings[__PRECISION].json.",
        ),
        search_repeats: int = typer.Option(
            3,
            "--search-repeats",
            help="Search bench: timed searches of each side, alternating ours and faiss (this machine's speed drifts: more pairs give a steadier ratio).",
        ),
        queries: int = typer.Option(
            4096,
            "--queries",
            help="Search bench: number of queries (a serving batch; faiss and ours both amortise the catalog scan over it).",
        ),
        encode_bench: bool = typer.Option(
            False,
            "--encode-bench",
            help="Only: encoding throughput of minilm and efficientnet-lite0 (inputs/s, GFLOP/s against a large matmul) before and after length-sorted batches, decoding threads and bf16, on the grocery mini (--encode-data-dir) and --encode-texts synthetic product texts; writes encode_bench__cpu.json.",
        ),
        encode_data_dir: Path = typer.Option(
            Path("../shared/data/grocery_store_mini"), "--encode-data-dir", help="Encode bench: a grocery-store folder."
        ),
        encode_texts: int = typer.Option(10_000, "--encode-texts", help="Encode bench: synthetic product texts."),
        encode_before_texts: int = typer.Option(
            1_000,
            "--encode-before-texts",
            help="Encode bench: how many of them the slow earlier path encodes (its rate does not depend on the set's size).",
        ),
        encode_images: int = typer.Option(
            0, "--encode-images", help="Encode bench: only the first N grocery images (0: all 1,010)."
        ),
    ) -> None:
        """Time each objective alone and as a whole training step against V; fit growth exponents."""
        from rich.console import Console  # lazy: CLI start-up

        console = Console()
        try:
            objective = split_list(objective, "--objective")
            view_list = split_list(views, "--views", int)
            check_writable(out)
        except UsageError as exc:
            fail(str(exc))
        if encode_bench:
            from ..cost.encode_bench import format_encode_bench, run_encode_bench  # lazy: CLI start-up

            if encode_texts < 1 or not 1 <= encode_before_texts <= encode_texts:
                fail(
                    f"--encode-texts must be at least 1 and --encode-before-texts between 1 and it, got "
                    f"{encode_texts} and {encode_before_texts}"
                )
            try:
                result = run_encode_bench(
                    encode_data_dir,
                    texts=encode_texts,
                    before_texts=encode_before_texts,
                    images=encode_images or None,
                    say=lambda line: console.print(line, highlight=False, markup=False),
                )
            except (OSError, ValueError) as exc:
                fail(f"--encode-data-dir {str(encode_data_dir)!r}: {exc}")
            console.print(format_encode_bench(result), highlight=False, markup=False)
            atomic_write_text(out / "encode_bench__cpu.json", json.dumps(result, indent=2, default=str) + "\n")
            console.print(f"results: {out / 'encode_bench__cpu.json'}", highlight=False)
            return
        if solver_bench:
            from ..cost.solver_bench import format_solver_bench, run_solver_bench  # lazy: CLI start-up

            result = run_solver_bench(device=device)
            console.print(format_solver_bench(result), highlight=False, markup=False)
            atomic_write_text(out / "solver_bench.json", json.dumps(result, indent=2, default=str) + "\n")
            return
        if search_bench:
            from ..cost.search_bench import format_search_bench, run_search_bench  # lazy: CLI start-up

            if search_precision not in SCANS:
                fail(f"--search-precision must be one of {', '.join(SCANS)}, got {search_precision!r}")
            try:
                result = run_search_bench(
                    num_items=items,
                    num_queries=queries,
                    device=device,
                    precision=search_precision,
                    repeats=search_repeats,
                    embeddings=None if search_embeddings is None else str(search_embeddings),
                )
            except ValueError as exc:
                fail(str(exc))
            console.print(format_search_bench(result), highlight=False, markup=False)
            name = (
                "search_bench"
                + ("" if search_embeddings is None else "__embeddings")
                + ("" if search_precision == "auto" else f"__{search_precision}")
                + ".json"
            )
            atomic_write_text(out / name, json.dumps(result, indent=2, default=str) + "\n")
            return
        if threads < 0:
            fail(f"--threads must be 0 (default) or a positive number of threads, got {threads}")

        def cost_spec(names: list[str], measured_views: list[int]):
            """The benchmark's options for `names` at `measured_views` (the whole sweep or --step-ratio's V)."""
            from ..cost.scaling import CostSpec  # lazy: CLI start-up

            return CostSpec(
                objectives=names,
                views=measured_views,
                batch_size=batch_size,
                repeats=repeats,
                warmup=warmup,
                device=device,
                memory_budget_gb=budget_gb,
                sets=list(set_),
                threads=threads or None,
            )

        if step_ratio:
            from ..cost.step_ratio import format_step_ratio, run_step_ratio  # lazy: CLI start-up
            from ..cost.warnings import machine_load  # lazy: CLI start-up
            from ..objectives import OBJECTIVES  # lazy: CLI start-up

            names = list(objective) or ["clip"] + [n for n in OBJECTIVES.names() if n != "clip"]
            if len(view_list) > 1:
                fail(f"--step-ratio measures one V; got --views {','.join(map(str, view_list))}")
            v = view_list[0] if view_list else 8
            spec = cost_spec(names, [v])
            load = machine_load()
            try:
                result = run_step_ratio(spec, views=v, rounds=rounds)
            except (UnknownNameError, ValueError) as exc:
                fail(str(exc))
            result["machine_load"] = load
            console.print(format_step_ratio(result), highlight=False, markup=False)
            path = out / f"step_ratio__V{v}__B{batch_size}__{result['device']['device'].replace(':', '')}.json"
            atomic_write_text(path, json.dumps(result, indent=2, default=str) + "\n")
            console.print(f"results: {path}", highlight=False)
            return
        from rich.progress import Progress  # lazy: CLI start-up

        from ..cost.scaling import format_cost, plot_cost, run_cost, write_cost  # lazy: CLI start-up
        from ..objectives import OBJECTIVES  # lazy: CLI start-up

        names = list(objective) or OBJECTIVES.names()
        spec = cost_spec(names, list(view_list) or [1, 2, 4, 8, 16, 32])
        if min(spec.views) < 1:
            fail("--views must be at least 1")
        from ..cost.warnings import cost_warnings, machine_load  # lazy: CLI start-up

        load = machine_load()  # before our own work adds to it
        try:
            with Progress(console=console, transient=True) as bar:
                task = bar.add_task("cost", total=len(names) * len(spec.views))
                result = run_cost(spec, progress=lambda d, t, n, v: bar.update(task, completed=d, description=f"{n} V={v}"))
        except (UnknownNameError, ValueError) as exc:
            fail(str(exc))
        except KeyboardInterrupt:
            console.print(
                "\ninterrupted: no cost result was written (cells are measured together so they compare); "
                "run the same command again.",
                highlight=False,
            )
            raise typer.Exit(code=130) from None
        result["machine_load"] = load
        jpath, cpath = write_cost(result, out)
        console.print(format_cost(result), highlight=False, markup=False)
        for line in cost_warnings(result):
            console.print(f"[yellow]warning:[/] {line}" if not line.startswith("  ") else line, highlight=False)
        console.print(f"results: {jpath} {cpath}", highlight=False)
        if plot:
            png = plot_cost([result], jpath.with_suffix(".png"))
            console.print(f"plot: {png}", highlight=False)
