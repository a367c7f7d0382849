"""Equal-budget tuning: every objective gets the same number of trials over its declared search
space, then its best configuration is re-run with several seeds and evaluated on test once.

The protocol (after Musgrave et al., "A Metric Learning Reality Check", ECCV 2020) is
docs/tuning.md: one Optuna study per objective, named from `--study`, the objective and a hash of
the untuned configuration (so changing `--set`, `--views` or the data set starts a new study);
the search space declared beside each field's default (`ftbench.config.Search`); seeded TPE (the
k-th trial's sampler seeded with (seed, k)); the same step budget and median pruner for every
objective, a non-finite loss counting as pruned; validation data only. Exactly `trials` trials per
objective end COMPLETE or PRUNED however many workers share the storage: a worker gives up a
surplus trial (FAIL, attribute `ftbench_surplus`), and a trial without a heartbeat for
`stale_after` seconds is failed and replaced (`ftbench.run.claims`). Then the default and the best
configuration each run with `seeds` as normal runs (`experiment.execute`), claimed on the same
storage (`CellClaims`); the tuned result files carry a `tuning` block.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import Search, config_hash, search_space
from ..data.views import SlotLayout
from ..device import resolve_device, seed_everything
from ..eval.evaluator import Evaluator
from ..model.towers import build_towers
from ..objectives import OBJECTIVES
from ..objectives.base import ObjectiveContext
from ..report.load import group_key
from ..train.loop import NonFiniteError, TrainConfig, train
from .claims import DEFAULT_STALE_AFTER, REASON_ATTR, CellClaims, Heartbeat, ensure_study, reap_stale, redact_url
from .experiment import RunSpec, build_dataset, execute, prepare
from .results import load_result
from .sweep import existing_result

SURPLUS_ATTR = "ftbench_surplus"
PRUNED_ATTR = "ftbench_pruned_reason"
#: TPE draws this fraction of the budget at random before modelling (at least 4, at most 10)
STARTUP_FRACTION = 0.25
#: a study stops with an error after this many failed trials (crashes, not pruning)
MAX_FAILURES = 5


@dataclass
class TuneSpec:
    objectives: list[str]
    trials: int
    dataset: str = "synthetic"
    views: int = 8
    sets: list[str] = field(default_factory=list)
    steps: int | None = None
    batch_size: int | None = None
    device: str = "auto"
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    storage: str | None = None
    study: str = "ftbench"
    sampler_seed: int = 0
    trial_seed: int = 0
    stale_after: float = DEFAULT_STALE_AFTER
    with_defaults: bool = True

    def validate(self) -> None:
        if not self.objectives:
            raise ValueError("no --objective given: name at least one (e.g. --objective clip --objective factorized)")
        if self.trials < 1:
            raise ValueError(f"--trials must be at least 1, got {self.trials}")
        if not self.seeds:
            raise ValueError("--seeds: give at least one seed for the reruns of the best configuration")
        if self.stale_after <= 0:
            raise ValueError(f"--stale-after must be positive (seconds), got {self.stale_after}")
        if not self.study or "/" in self.study:
            raise ValueError(f"--study must be a non-empty name without '/', got {self.study!r}")


def tuned_fields(objective: str) -> dict[str, Search]:
    """`section.field` -> range: the shared training fields, then the objective's own."""
    space = {f"train.{name}": s for name, s in search_space(TrainConfig).items()}
    space.update({f"objective.{name}": s for name, s in search_space(OBJECTIVES.get(objective).Config).items()})
    return space


def as_sets(params: dict[str, Any]) -> list[str]:
    return [f"{key}={value!r}" for key, value in sorted(params.items())]


def _run_spec(spec: TuneSpec, objective: str, seed: int, extra: Sequence[str] = ()):
    return RunSpec(
        objective=objective,
        dataset=spec.dataset,
        views=spec.views,
        seed=seed,
        device=spec.device,
        sets=list(spec.sets) + list(extra),
        steps=spec.steps,
        batch_size=spec.batch_size,
    )


def study_name(spec: TuneSpec, base_hash: str, objective: str) -> str:
    return f"{spec.study}-{objective}-{base_hash[:10]}"


def budget(prepared) -> dict[str, Any]:
    t = prepared.configs["train"]
    return {"steps": t.steps, "batch_size": t.batch_size, "eval_every": t.eval_every, "select_metric": t.select_metric}


def make_pruner():
    """One pruning rule for every objective: the median rule after 3 finished trials, from the
    first validation on."""
    import optuna  # optional: tune extra

    return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0)


def make_sampler(seed: int, trials_so_far: int, budget_trials: int):
    import optuna  # optional: tune extra

    startup = int(min(10, max(4, round(STARTUP_FRACTION * budget_trials))))
    return optuna.samplers.TPESampler(seed=seed * 1_000_003 + trials_so_far, n_startup_trials=startup)


def train_trial(prepared, trial, dataset_cache: dict | None = None):
    """Train one configuration and validate it every `eval_every` steps, reporting each score to
    `trial` and stopping (optuna.TrialPruned) when the pruner says so. Validation data only: no
    test evaluation. Returns the training outcome (best validation score and its step)."""
    import optuna  # optional: tune extra

    spec, configs = prepared.spec, prepared.configs
    device = resolve_device(spec.device)
    dataset = build_dataset(prepared, dataset_cache)
    seed_everything(spec.seed, spec.deterministic)

    towers = build_towers(dataset, configs["tower"]).to(device)
    context = ObjectiveContext(
        layout=SlotLayout.from_catalog(dataset.catalog),
        embedding_dim=configs["tower"].embedding_dim,
        num_items=dataset.catalog.num_items,
        has_queries=dataset.queries is not None,
        has_interactions=dataset.queries is not None and len(dataset.queries.interactions) > 0,
    )
    objective = prepared.objective_cls(configs["objective"], context).to(device)
    evaluator = Evaluator(dataset, towers, objective, spec.views, device, configs["eval"])
    tcfg = configs["train"]
    current = {"step": 0}

    def validate():
        name, score = evaluator.validation_score(tcfg.select_metric, tcfg.val_gallery_size, spec.seed)
        step = current["step"]
        trial.report(score, step)
        if step < tcfg.steps and trial.should_prune():
            raise optuna.TrialPruned(f"validation {name} {score:.4f} at step {step} is below the median")
        return name, score

    def progress(step, info):
        current["step"] = step

    return train(dataset, towers, objective, tcfg, spec.views, spec.seed, device, validate=validate, progress=progress)


@dataclass
class StudyState:
    """Counts of one study's trials, as `ftbench tune` prints and records them."""

    name: str
    objective: str
    budget_trials: int
    completed: int = 0
    pruned: int = 0
    failed: int = 0
    running: int = 0
    best_value: float | None = None
    best_params: dict[str, Any] = field(default_factory=dict)
    best_number: int | None = None
    select_metric: str = ""

    @property
    def finished(self) -> int:
        return self.completed + self.pruned

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def study_state(storage, study_id: int, name: str, objective: str, budget_trials: int) -> StudyState:
    from optuna.trial import TrialState  # optional: tune extra

    state = StudyState(name=name, objective=objective, budget_trials=budget_trials)
    for t in storage.get_all_trials(study_id, deepcopy=False):
        if t.state == TrialState.COMPLETE:
            state.completed += 1
            if t.value is not None and (state.best_value is None or t.value > state.best_value):
                state.best_value, state.best_params, state.best_number = t.value, dict(t.params), t.number
                state.select_metric = t.user_attrs.get("select_metric", "")
        elif t.state == TrialState.PRUNED:
            state.pruned += 1
        elif t.state == TrialState.RUNNING:
            state.running += 1
        elif t.state == TrialState.FAIL and not t.user_attrs.get(SURPLUS_ATTR):
            state.failed += 1
    return state


def run_study(
    spec: TuneSpec,
    objective: str,
    storage,
    on_trial: Callable[[StudyState], None] | None = None,
    dataset_cache: dict | None = None,
    poll_s: float = 1.0,
) -> StudyState:
    """Run trials of `objective`'s study until `spec.trials` trials are COMPLETE or PRUNED (over
    every worker on `storage`); returns the study's final counts and best trial."""
    import optuna  # optional: tune extra
    from optuna.trial import TrialState  # optional: tune extra

    base = prepare(_run_spec(spec, objective, spec.trial_seed))
    name = study_name(spec, base.config_hash, objective)
    study_id = ensure_study(storage, name)
    storage.set_study_user_attr(study_id, "ftbench_budget", {"trials": spec.trials, **budget(base)})
    space = tuned_fields(objective)
    failures_here = 0
    while True:
        reap_stale(storage, study_id, spec.stale_after)
        state = study_state(storage, study_id, name, objective, spec.trials)
        if on_trial:
            on_trial(state)
        if state.finished >= spec.trials:
            return state
        if state.failed >= MAX_FAILURES and failures_here:
            raise RuntimeError(f"study {name}: {state.failed} failed trials; see the trials' '{REASON_ATTR}' attribute for why")
        if state.finished + state.running >= spec.trials:
            time.sleep(poll_s)  # the rest of the budget is running on other workers (or is stale)
            continue
        trials_so_far = len(storage.get_all_trials(study_id, deepcopy=False))
        study = optuna.load_study(
            study_name=name,
            storage=storage,
            sampler=make_sampler(spec.sampler_seed, trials_so_far, spec.trials),
            pruner=make_pruner(),
        )
        trial = study.ask()
        with Heartbeat(storage, trial._trial_id, spec.stale_after / 4):
            ahead = [
                t
                for t in storage.get_all_trials(study_id, deepcopy=False)
                if t.number < trial.number and t.state in (TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED)
            ]
            if len(ahead) >= spec.trials:  # another worker took the last slot first
                trial.set_user_attr(SURPLUS_ATTR, True)
                study.tell(trial, state=TrialState.FAIL)
                continue
            params = {key: s.suggest(trial, key) for key, s in space.items()}
            try:
                prepared = prepare(_run_spec(spec, objective, spec.trial_seed, as_sets(params)))
                outcome = train_trial(prepared, trial, dataset_cache)
            except optuna.TrialPruned as exc:
                trial.set_user_attr(PRUNED_ATTR, str(exc))
                study.tell(trial, state=TrialState.PRUNED)
            except NonFiniteError as exc:
                trial.set_user_attr(PRUNED_ATTR, f"non-finite: {exc}")
                study.tell(trial, state=TrialState.PRUNED)
            except Exception as exc:  # noqa: BLE001 - a crashing trial is recorded, the study goes on
                trial.set_user_attr(REASON_ATTR, redact_url(f"{type(exc).__name__}: {exc}")[:500])
                study.tell(trial, state=TrialState.FAIL)
                failures_here += 1
            else:
                trial.set_user_attr("select_metric", outcome.select_metric)
                trial.set_user_attr("selected_step", outcome.selected_step)
                study.tell(trial, outcome.selected_score)


def tuning_block(spec: TuneSpec, state: StudyState, base) -> dict[str, Any]:
    """The `tuning` block of a tuned result file (no storage password: the URL is redacted)."""
    return {
        "study": state.name,
        "storage": redact_url(spec.storage) if spec.storage else "sqlite (under --out: tune.sqlite3)",
        "trials": spec.trials,
        "completed": state.completed,
        "pruned": state.pruned,
        "failed": state.failed,
        "best_trial": state.best_number,
        "best_value": state.best_value,
        "select_metric": state.select_metric,
        "best_params": dict(state.best_params),
        "budget": {"trials": spec.trials, **budget(base)},
        "sampler": f"TPE, seed {spec.sampler_seed}",
        "pruner": "median rule (3 start-up trials) on the validation score every eval_every steps",
        "base_group": group_key(base.config, base.data),
        "base_config_hash": base.config_hash,
        "default_objective_config": config_hash(base.config["objective_config"])[:6],
    }


@dataclass
class Rerun:
    objective: str
    seed: int
    role: str  # "default" or "tuned"
    status: str  # "ran", "skipped", "claimed elsewhere", "failed"
    path: Path | None = None
    detail: str = ""


def rerun_best(
    spec: TuneSpec,
    state: StudyState,
    storage,
    out: Path,
    on_run: Callable[[Rerun], None] | None = None,
    dataset_cache: dict | None = None,
    tracker=None,
) -> list[Rerun]:
    """The default and the best configuration of one study with each of `spec.seeds`, evaluated
    on test once; each run claimed on `storage` so that it runs once over all workers. With a
    `tracker` (`tracking.Tracker`) each rerun is one tracked run (the trials are not)."""
    base = prepare(_run_spec(spec, objective=state.objective, seed=spec.trial_seed))
    if state.best_value is None:
        raise RuntimeError(f"study {state.name}: no completed trial (all {state.pruned} pruned), nothing to re-run")
    block = tuning_block(spec, state, base)
    claims = CellClaims(storage, f"{state.name}-reruns", spec.stale_after)
    roles = (["default"] if spec.with_defaults else []) + ["tuned"]
    done: list[Rerun] = []
    cache: dict = dataset_cache if dataset_cache is not None else {}
    for role in roles:
        for seed in spec.seeds:
            extra = as_sets(state.best_params) if role == "tuned" else []
            prepared = prepare(_run_spec(spec, state.objective, seed, extra))
            path, reason = existing_result(prepared, out)
            if reason is not None and (role == "default" or load_result(path).tuning):
                done.append(Rerun(state.objective, seed, role, "skipped", path))
                continue
            key = f"{role}:{prepared.config_hash}"
            if claims.done(key):
                done.append(Rerun(state.objective, seed, role, "claimed elsewhere", path))
                continue
            trial_id = claims.claim(key)
            if trial_id is None:
                done.append(Rerun(state.objective, seed, role, "claimed elsewhere", path))
                continue
            try:
                with claims.heartbeat(trial_id):
                    result, written = execute(
                        prepared, out, dataset_cache=cache, tracker=tracker, tuning=block if role == "tuned" else None
                    )
            except Exception as exc:  # noqa: BLE001 - reported; the claim is released for another try
                claims.release(trial_id, ok=False, detail=f"{type(exc).__name__}: {exc}")
                done.append(Rerun(state.objective, seed, role, "failed", path, f"{type(exc).__name__}: {exc}"))
            else:
                claims.release(trial_id, ok=True)
                done.append(Rerun(state.objective, seed, role, "ran", written))
            if on_run:
                on_run(done[-1])
    return done


def check_objectives(spec: TuneSpec) -> None:
    """Every objective and option valid before any trial starts (a typo fails in seconds)."""
    spec.validate()
    for objective in spec.objectives:
        prepare(_run_spec(spec, objective, spec.trial_seed))
        if not tuned_fields(objective):
            raise ValueError(f"objective {objective!r} declares no search space")
