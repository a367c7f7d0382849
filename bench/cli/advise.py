"""`ftbench advise`: the objective a catalog should train with, predicted from the regime map
(`ftbench.regime.advise`), plus the map's own upkeep (`--profile-map`) and validation (`--validate`)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer

from ..config import to_jsonable
from ..run.results import atomic_write_text
from .common import fail

MAP_DIR = Path("results") / "regime-map"


def _write_json(path: Path, payload: dict) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(payload, indent=2, allow_nan=False) + "\n")
    except OSError as exc:
        fail(f"{str(path)!r}: cannot be written ({exc.strerror or exc})")


def _profile(dataset: str, views: int, sets: list[str], seed: int = 0):
    from ..regime.indicators import profile_dataset  # lazy: CLI start-up
    from ..run.experiment import RunSpec, build_dataset, prepare  # lazy: CLI start-up

    prepared = prepare(RunSpec(dataset=dataset, views=views, sets=sets))
    return prepared, profile_dataset(build_dataset(prepared), views=views, seed=seed)


def profile_map(folder: Path, echo=print) -> int:
    """Profile every design cell that lacks `profiles/cell_NN.json`; returns how many were written."""
    from ..regime.advise import profile_path  # lazy: CLI start-up
    from ..regime.design import regime_design  # lazy: CLI start-up

    written = 0
    for point in regime_design():
        path = profile_path(folder, point)
        if path.is_file():
            continue
        t0 = time.perf_counter()
        prepared, profile = _profile("synthetic", point.views, point.sets)
        _write_json(
            path,
            {
                "cell": point.index,
                "views": point.views,
                "options": point.options,
                "dataset_config": to_jsonable(prepared.configs["dataset"]),
                "indicators": profile.indicators(),
                "profile": profile.to_dict(),
            },
        )
        written += 1
        echo(f"profiled {point.label} in {time.perf_counter() - t0:.1f} s -> {path}")
    return written


def _load(folder: Path):
    from ..regime.advise import load_map  # lazy: CLI start-up

    try:
        regime = load_map(folder)
    except FileNotFoundError as exc:
        fail(str(exc))
    if len(regime.cells) < 3:
        fail(
            f"the regime map in {folder} has {len(regime.cells)} complete cell(s) (a profile and clip plus another "
            f"objective over 3 seeds); {len(regime.incomplete)} cell(s) with runs are incomplete and "
            f"{len(regime.missing_profiles)} lack a profile: run `ftbench sweep --preset regime-map --out {folder}` "
            f"and `ftbench advise --profile-map --map {folder}`"
        )
    return regime


def _fmt(x: float) -> str:
    return f"{x:+.4f}"


def register(app: typer.Typer) -> None:
    @app.command("advise")
    def advise(
        dataset: str | None = typer.Option(None, "--dataset", "-d", help="the catalog to advise on (a registered data set)"),
        data_dir: Path | None = typer.Option(None, "--data-dir", help="the data set's folder (its `data_dir` option)"),
        views: int = typer.Option(8, "--views", "-V", help="views per item the catalog would train with"),
        set_: list[str] = typer.Option([], "--set", help="data set option key=value (dataset. prefix optional); repeatable"),
        map_dir: Path = typer.Option(MAP_DIR, "--map", help="the regime map folder (result files + profiles/)"),
        cost_dir: Path = typer.Option(
            Path("results") / "cost",
            "--cost-dir",
            help="the folder of the step-cost benchmark's JSON (named cost, as results/cost)",
        ),
        profile_cells: bool = typer.Option(
            False, "--profile-map", help="profile every design cell of --map that lacks one, then stop"
        ),
        validate: bool = typer.Option(False, "--validate", help="leave-one-cell-out over --map; writes MAP/validation.json"),
        json_file: Path | None = typer.Option(None, "--json", help="also write the advice (or validation) to this JSON file"),
        measured_dir: Path | None = typer.Option(
            None,
            "--measured",
            help="a folder of this catalog's comparison runs (the confirming sweep's --out): check the advice against them",
        ),
    ) -> None:
        """Predict, before training anything, how each objective would do on a catalog: its paired gain over
        clip with a 95% interval, the ranking with ties, the step cost at --views, how far the catalog lies
        from the regime map, and the sweep that would confirm it (docs/method.md, Regime map and advice)."""
        from ..errors import input_errors  # lazy: CLI start-up
        from ..regime import advise as rg  # lazy: CLI start-up

        if profile_cells:
            n = profile_map(map_dir)
            print(f"{n} cell profile(s) written under {map_dir / 'profiles'}")
            return
        regime = _load(map_dir)
        if validate:
            outcome = rg.leave_one_cell_out(regime.cells)
            for row in outcome["rows"]:
                print(
                    f"cell {row['cell']:02d}  advised {row['advised']:<11} measured best {','.join(row['measured_best']):<40} "
                    f"{'hit ' if row['hit'] else 'MISS'}  spearman {row['spearman']:+.2f}"
                )
            print(
                f"leave-one-cell-out over {outcome['cells']} cells: advised best inside the measured tied-best set in "
                f"{outcome['hit_rate']:.0%} of cells; median Spearman {outcome['median_spearman']:+.2f}"
            )
            _write_json(json_file or map_dir / "validation.json", {"metric": f"{rg.MAP_TASK}/{rg.MAP_METRIC}", **outcome})
            return
        if dataset is None:
            raise typer.BadParameter("name the catalog to advise on (or give --profile-map / --validate)", param_hint="--dataset")
        sets = [f"dataset.{pair.removeprefix('dataset.')}" for pair in set_]
        if data_dir is not None:
            sets.append(f"dataset.data_dir={str(data_dir)!r}")
        t0 = time.perf_counter()
        try:
            _, profile = _profile(dataset, views, sets)
        except input_errors() as exc:
            fail(str(exc))
        advisor = rg.Advisor(regime.cells)
        try:
            advice = advisor.advise(profile.indicators())
        except ValueError as exc:
            fail(str(exc))
        costs = rg.step_cost_ms(cost_dir, views) if cost_dir.is_dir() else {}
        print(
            f"advice for {dataset} (--views {views}{'; ' + ', '.join(sets) if sets else ''}) from {advice.cells} map cells; "
            f"metric {rg.MAP_TASK} {rg.MAP_METRIC}, gain = objective - clip, paired over seeds"
        )
        print(f"{'rank':<5}{'objective':<12}{'predicted gain':>15}  {'95% interval':<20}{'tied with best':<16}{'step ms @V':>10}")
        for p in advice.predictions:
            interval = "(reference)" if p.objective == rg.REFERENCE else f"[{_fmt(p.low)}, {_fmt(p.high)}]"
            cost = f"{costs[p.objective]:.1f}" if p.objective in costs else "—"
            print(
                f"{p.rank:<5}{p.objective:<12}{_fmt(p.gain):>15}  {interval:<20}{'yes' if p.tied_with_best else '':<16}{cost:>10}"
            )
        tied = [p.objective for p in advice.predictions if p.tied_with_best]
        where = "inside the map" if advice.inside else "OUTSIDE the map: run the comparison"
        print(
            f"distance to the nearest map cell (cell {advice.nearest_cell:02d}): {advice.distance:.2f} standardised units; "
            f"the map's own cells lie up to {advice.map_spread:.2f} apart: {where}"
        )
        for name, (mine, theirs) in advice.extrapolated.items():
            print(f"note: {name} is {mine:.3g} here but {theirs:.3g} on every map cell: the prediction extrapolates along it")
        check = sorted(set(tied) | {rg.REFERENCE})
        command = " ".join(
            [
                "ftbench sweep",
                f"--dataset {dataset}",
                *[f"--set {s}" for s in sets],
                f"-o {','.join(check)}",
                f"--views {views}",
                "--seed 0,1,2",
                "--out runs/advise-check",
            ]
        )
        print(f"confirm on your data: {command}")
        checked = None
        if measured_dir is not None:
            try:
                measured = rg.measured_comparison(measured_dir, dataset, views)
            except input_errors() as exc:  # ValueError is among them
                fail(str(exc))
            checked = {"folder": str(measured_dir), **measured, **rg.check_advice(advice, measured)}
            gains = ", ".join(f"{o} {g:+.4f}" for o, g in sorted(measured["gains"].items(), key=lambda kv: -kv[1]))
            print(
                f"measured in {measured_dir} ({measured['task']} {measured['metric']}): gains over clip {gains}; "
                f"tied-best {','.join(checked['measured_tied_best'])}; advised best {advice.best}: "
                f"{'inside' if checked['hit'] else 'NOT inside'} it; measured tied-best "
                f"{'all' if checked['measured_best_inside_advised_ties'] else 'not all'} among the advised ties; "
                f"Spearman {checked['spearman']:+.2f}"
            )
        print(f"(profiled and advised in {time.perf_counter() - t0:.1f} s)")
        if json_file is not None:
            _write_json(
                json_file,
                {
                    "dataset": dataset,
                    "views": views,
                    "sets": sets,
                    "indicators": profile.indicators(),
                    "advice": advice.to_dict(),
                    "step_ms": costs,
                    "confirm": command,
                    "measured": checked,
                },
            )
