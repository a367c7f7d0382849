"""Training: one loop for every objective - same towers, optimiser, batch size, step budget and
schedule. The objective is the only variable.

AdamW with linear warm-up then cosine decay over a fixed number of steps; validation every
`eval_every` steps on the *validation* split only, keeping the best state (checkpoint selection);
a non-finite loss or gradient stops training with a message naming the step, objective and term.

With several processes (torchrun; `ftbench.train.distributed`) every process draws the same global batch
and view selection, encodes its own slice, and the objective sees the gathered global batch, so a
step's loss and gradients are those of one process on the same batch. Rank 0 alone validates.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import nn

from ..config import Search, check_options, option
from ..data.batching import ViewBatch, build_view_batch
from ..data.content import batch_has_duplicates, feature_content_ids
from ..data.dataset import MultiViewDataset
from ..data.splits import SPLIT_CODES
from ..data.views import SlotLayout, ViewSelection
from ..device import autocast, check_precision
from ..eval.metric_registry import is_task_metric
from ..model.encode import batch_selection, encoded_views, to_device
from ..model.towers import Towers
from ..objectives.base import AlignmentBatch, EncodedViews, Objective
from ..run.tracking import NO_RUN, TrackedRun
from .distributed import SINGLE_PROCESS, DistributedContext, gather, gather_views, gather_with_grad, wrap


@dataclass
class TrainConfig:
    steps: int = option(400, "optimisation steps (the budget, identical for every objective)", "convention", ge=1)
    batch_size: int = option(256, "items (and paired queries) per step (at least 2: in-batch negatives)", "convention", ge=2)
    lr: float = option(
        2e-3,
        "AdamW learning rate (towers and objective parameters)",
        "convention",
        gt=0,
        search=Search(
            1e-4,
            1e-2,
            "log",
            why="a decade either side of the default: above 1e-2 AdamW on the "
            "towers diverges within the warm-up, below 1e-4 a 400-step budget barely moves them",
        ),
    )
    weight_decay: float = option(
        0.01,
        "AdamW weight decay (not applied to the logit scale)",
        "convention",
        search=Search(
            1e-4, 0.3, "log", why="from almost none to above open_clip's 0.1-0.2; log because its effect per step is a factor"
        ),
    )
    warmup_fraction: float = option(0.05, "fraction of steps of linear warm-up before cosine decay", "convention", ge=0, lt=1)
    eval_every: int = option(100, "validate every this many steps (0: only at the end)", "convention", ge=0)
    select_metric: str = option(
        "auto",
        "validation metric for checkpoint selection, 'task/metric', 'auto', or 'last' (no selection: "
        "keep the final state; for data with no validation split)",
        "our reading",
    )
    val_gallery_size: int = option(
        20_000,
        "validation gallery: relevant items of val queries plus random items up to this size",
        "our reading",
        ge=1,
    )
    grad_clip: float = option(0.0, "max gradient norm (0: no clipping)", "convention", ge=0)

    def validate(self) -> None:
        check_options(self, "train")
        if self.select_metric not in ("auto", "last") and not is_task_metric(self.select_metric):
            raise ValueError(
                f"train option 'select_metric' must be 'auto', 'last' or 'task/metric' (e.g. 'query->item/recall@100', "
                f"'cross-view/mean recall@10'), got {self.select_metric!r}"
            )


class NonFiniteError(RuntimeError):
    """Training produced a NaN or infinite loss or gradient."""


class BatchSampler:
    """Batches of training pairs: (query, item) interactions with both in the train split when the
    data set has them, else the train items. Within a batch, items and queries are unique (a
    repeated item would be its own in-batch negative).

    Each batch reads the next 2B pairs of a shuffled pass over the pairs and keeps the first B
    whose item and query are new to the batch; the rest of the 2B are passed over, not carried to
    the next batch. Every pair is equally likely to be drawn, but a pass over the shuffled order
    uses about half of the pairs, not all: "passes", not epochs. (Kept as is: changing the draw
    would change every recorded result for a given seed.)"""

    def __init__(self, dataset: MultiViewDataset, batch_size: int, seed: int) -> None:
        self.rng = np.random.default_rng(np.random.SeedSequence([seed, 0xBA7C4]))
        self.batch_size = batch_size
        train_items = dataset.item_split == SPLIT_CODES["train"]
        q = dataset.queries
        self.pairs: np.ndarray
        if q is not None and len(q.interactions):
            inter = q.interactions
            train_query = q.split[inter[:, 0]] == SPLIT_CODES["train"]
            train_item = train_items[inter[:, 1]]
            keep = train_query & train_item
            self.pairs = inter[keep]
            self.dropped_pairs = int((~keep).sum())
            # why each unused pair was left out: the run records and prints it (no silent drop)
            self.dropped_by_reason = {
                "query_not_train": int((~train_query).sum()),
                "item_not_train": int((train_query & ~train_item).sum()),
            }
        else:
            self.pairs = np.empty((0, 2), dtype=np.int64)
            self.dropped_pairs = 0
            self.dropped_by_reason = {"query_not_train": 0, "item_not_train": 0}
        self.with_queries = len(self.pairs) > 0
        if not self.with_queries:
            items = np.flatnonzero(train_items)
            self.pairs = np.stack([np.full(len(items), -1), items], axis=1)
        if len(np.unique(self.pairs[:, 1])) < 2:
            raise ValueError("training needs at least 2 distinct train items")
        self._order = np.empty(0, dtype=np.int64)
        self._pos = 0

    def _next_candidates(self, n: int) -> np.ndarray:
        out = []
        while n > 0:
            if self._pos >= len(self._order):
                self._order = self.rng.permutation(len(self.pairs))
                self._pos = 0
            take = self._order[self._pos : self._pos + n]
            self._pos += len(take)
            out.append(take)
            n -= len(take)
        return np.concatenate(out)

    def next(self) -> tuple[np.ndarray, np.ndarray]:
        """(query indices or -1, item indices), at most `batch_size`, unique items and queries."""
        cand = self.pairs[self._next_candidates(min(2 * self.batch_size, 2 * len(self.pairs)))]
        _, first_item = np.unique(cand[:, 1], return_index=True)
        keep = np.zeros(len(cand), dtype=bool)
        keep[first_item] = True
        if self.with_queries:
            _, first_query = np.unique(cand[:, 0], return_index=True)
            kq = np.zeros(len(cand), dtype=bool)
            kq[first_query] = True
            keep &= kq
        chosen = cand[np.sort(np.flatnonzero(keep))][: self.batch_size]
        return chosen[:, 0], chosen[:, 1]


def lr_lambda(step: int, total: int, warmup_fraction: float) -> float:
    """Linear warm-up to 1, then cosine decay to 0 at `total` steps."""
    warm = max(int(round(warmup_fraction * total)), 0)
    if step < warm:
        return (step + 1) / warm
    progress = (step - warm) / max(total - warm, 1)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


@dataclass
class TrainOutcome:
    selected_step: int
    selected_score: float | None
    select_metric: str
    history: list[dict] = field(default_factory=list)
    step_ms: list[float] = field(default_factory=list)
    dropped_pairs: int = 0
    #: the dropped pairs by reason: {"query_not_train": n, "item_not_train": n} (`BatchSampler`)
    dropped_by_reason: dict[str, int] = field(default_factory=dict)
    #: (query, item) pairs trained on (0: no query pair, training on the train items alone)
    training_pairs: int = 0
    used_queries: bool = False
    mean_views_per_step: float = 0.0
    #: [{"step", "loss"}]: the training loss, mean over windows of `loss_window(steps)` steps
    loss_curve: list[dict] = field(default_factory=list)


def loss_window(steps: int, points: int = 100) -> int:
    """Steps per point of the recorded loss curve: at most `points` points whatever the budget."""
    return max(1, -(-steps // points))


def _check_finite(terms: dict[str, torch.Tensor], step: int, objective: str) -> None:
    for key, value in terms.items():
        if key.endswith("_loss") and not torch.isfinite(value).all():
            raise NonFiniteError(f"non-finite loss at step {step}: objective {objective!r}, term {key!r} = {value.item()}")


def make_optimizer(towers: Towers, objective: Objective, config: TrainConfig):
    """AdamW over towers and objective parameters (no decay on biases, norms and the logit
    scale), with linear warm-up then cosine decay over `config.steps`."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for name, p in list(towers.named_parameters()) + [("objective." + n, p) for n, p in objective.named_parameters()]:
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "logit_scale" in name else decay).append(p)
    # not fused: fused AdamW (one kernel per group, faster on CPU) differs from this update by float
    # round-off, and committed results reproduce bit for bit (docs/perf)
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.lr,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_lambda(s, config.steps, config.warmup_fraction))
    return optimizer, scheduler


def _rows(selection: ViewSelection, rows: slice) -> ViewSelection:
    return ViewSelection(
        mask=selection.mask[rows], side_weight=selection.side_weight[rows], item_weight=selection.item_weight[rows]
    )


class StepForward(nn.Module):
    """The differentiable part of a step: towers on this process's slice (under `--precision`),
    the gathered global batch, the objective. One module holding towers and objective, so that
    DistributedDataParallel averages the gradients of both."""

    def __init__(
        self, towers: Towers, objective: Objective, context: DistributedContext, precision: str, query_modality: str | None
    ) -> None:
        super().__init__()
        self.towers, self.objective = towers, objective
        self.context, self.precision, self.query_modality = context, precision, query_modality

    def forward(
        self,
        raw: ViewBatch,
        query_features: torch.Tensor | None,
        sizes: tuple[int, ...],
        query_content: torch.Tensor | None = None,
    ):
        """(loss terms, global EncodedViews); `sizes`: items of each process's slice, in rank order;
        content ids (`raw.content`, `query_content`) are kept only where the global batch has a
        duplicate (`ftbench.data.content`)."""
        device = raw.mask.device
        with autocast(device, self.precision):
            # views and queries in separate tower calls: one call for both is ~10% faster but sums the
            # weight gradients in another order (float round-off; committed results reproduce bit for bit)
            embeddings = self.towers.encode_views(raw)
            query = None
            if query_features is not None:
                assert self.query_modality is not None  # Stepper passes both, or neither (no queries)
                query = self.towers.encode(self.query_modality, query_features)
        views = encoded_views(embeddings.float(), raw)
        views = gather_views(views, self.context, sizes)
        if query is not None:
            query = gather_with_grad(query.float(), self.context, sizes)
        if query_content is not None:
            query_content = gather(query_content, self.context, sizes)
        if self.context.enabled:
            # several processes: Stepper built the batch with content ids and left them in (only one process drops them)
            assert views.content is not None
            if not batch_has_duplicates(views.content, views.mask, query_content):
                views, query_content = replace(views, content=None), None
        return self.objective(AlignmentBatch(views=views, query=query, query_content=query_content)), views


class Stepper:
    """One optimisation step: sample -> select views -> encode -> objective -> backward -> update.
    Shared by `train` and the cost benchmark, so that what is timed is what is trained.

    With several processes (`distributed`), each encodes its slice of the global batch and
    DistributedDataParallel averages gradients (see `ftbench.train.distributed` for why this equals the
    single-process gradient). `precision` "bf16" runs the towers under bfloat16 autocast."""

    def __init__(
        self,
        dataset,
        towers,
        objective,
        config: TrainConfig,
        max_views: int,
        seed: int,
        device,
        *,
        distributed: DistributedContext = SINGLE_PROCESS,
        precision: str = "fp32",
    ) -> None:
        check_precision(precision, device)
        if config.batch_size < distributed.world_size:
            raise ValueError(
                f"--batch-size {config.batch_size} is smaller than the number of processes "
                f"({distributed.world_size}): --batch-size is the global batch, split over the processes"
            )
        self.dataset, self.towers, self.objective = dataset, towers, objective
        self.config, self.max_views, self.device = config, max_views, device
        self.distributed, self.precision = distributed, precision
        self.layout = SlotLayout.from_catalog(dataset.catalog)
        self.sampler = BatchSampler(dataset, config.batch_size, seed)
        self.generator = torch.Generator().manual_seed(seed)
        self.optimizer, self.scheduler = make_optimizer(towers, objective, config)
        self.params = [p for g in self.optimizer.param_groups for p in g["params"]]
        query_modality = dataset.queries.modality if self.sampler.with_queries else None
        # the queries' content ids, each hashed on its first draw: a query recurs from pass to pass,
        # and a row's id does not depend on the batch it is hashed in
        n_queries = len(dataset.queries.features) if self.sampler.with_queries else 0
        self._query_ids = np.zeros(n_queries, dtype=np.int64)
        self._query_hashed = np.zeros(n_queries, dtype=bool)
        self.forward = wrap(StepForward(towers, objective, distributed, precision, query_modality), distributed, device)

    def _check_gradients(self, step: int, terms: dict[str, torch.Tensor]) -> None:
        """Raise NonFiniteError naming the first parameter with a NaN or infinite gradient.

        First one test for all: the sum of every gradient entry, which is not finite when any entry
        is not (one vectorised sum per parameter, an order of magnitude cheaper than an isfinite pass
        and a host sync per parameter; docs/perf). A sum that is not finite can also be
        finite entries that overflowed, so only then is each parameter checked exactly."""
        sums = [p.grad.sum() for p in self.params if p.grad is not None]
        if not sums or bool(torch.isfinite(torch.stack(sums).sum())):
            return
        for p in self.params:
            if p.grad is not None and not torch.isfinite(p.grad).all():
                named = {
                    **dict(self.towers.named_parameters(prefix="towers")),
                    **dict(self.objective.named_parameters(prefix="objective")),
                }
                where = next((n for n, q in named.items() if q is p), "?")
                values = ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in terms.items() if k.endswith("_loss"))
                raise NonFiniteError(
                    f"non-finite gradient at step {step}: objective {self.objective.name!r}, parameter {where!r}; "
                    f"loss terms (all finite): {values}"
                )

    def _query_content_ids(self, queries: np.ndarray) -> np.ndarray:
        """int64 content ids of `queries` (`feature_content_ids` of their feature rows), hashing
        only the queries not drawn before."""
        new = np.unique(queries[~self._query_hashed[queries]])
        if len(new):
            features = self.dataset.queries.features[new]
            self._query_ids[new] = feature_content_ids(features, f"query {self.dataset.queries.modality}")
            self._query_hashed[new] = True
        return self._query_ids[queries]

    def step(self, step: int) -> tuple[torch.Tensor, EncodedViews]:
        query_idx, items = self.sampler.next()
        # every process selects views for the whole batch (same generator draws as one process),
        # then materialises only its own rows
        selection = batch_selection(self.dataset, self.objective, items, self.max_views, training=True, generator=self.generator)
        sizes = tuple(self.distributed.shard_sizes(len(items)))
        rows = self.distributed.shard(len(items))
        raw = build_view_batch(self.dataset.catalog, self.layout, items[rows], _rows(selection, rows), content=True)
        query_features = query_content = None
        if self.sampler.with_queries:
            features = self.dataset.queries.features[query_idx[rows]]
            query_features = to_device(torch.from_numpy(features), self.device)
            query_content = torch.from_numpy(self._query_content_ids(query_idx[rows]))
        # one process decides here, on the host; several decide on the gathered batch (StepForward)
        assert raw.content is not None  # build_view_batch(content=True) over the data set's catalog
        if not self.distributed.enabled and not batch_has_duplicates(raw.content, raw.mask, query_content):
            raw, query_content = replace(raw, content=None), None  # no duplicate: the step is as without ids
        raw = to_device(raw, self.device)
        if query_content is not None:
            query_content = query_content.to(self.device)
        terms, views = self.forward(raw, query_features, sizes, query_content)
        _check_finite(terms, step, self.objective.name)
        loss = Objective.total_loss(terms)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self._check_gradients(step, terms)
        if self.config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.params, self.config.grad_clip)
        self.optimizer.step()
        self.objective.after_step()  # parameter constraints (logit-scale clamp), after the update
        self.scheduler.step()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return loss.detach(), views


def train(
    dataset: MultiViewDataset,
    towers: Towers,
    objective: Objective,
    config: TrainConfig,
    max_views: int,
    seed: int,
    device: torch.device,
    validate: Callable[[], tuple[str, float]] | None = None,
    progress: Callable[[int, dict], None] | None = None,
    *,
    distributed: DistributedContext = SINGLE_PROCESS,
    precision: str = "fp32",
    tracked: TrackedRun = NO_RUN,
) -> TrainOutcome:
    """Train `towers` and `objective` in place; returns the outcome with the best state loaded.

    `tracked` (`ftbench.run.tracking`) receives `train/loss` at every step and each validation
    score as `val/<task>/<metric>`, against the step.

    With several processes pass `validate` on rank 0 only: the others keep training state in
    step through the gradient averages and leave checkpoint selection to rank 0."""
    config.validate()
    stepper = Stepper(dataset, towers, objective, config, max_views, seed, device, distributed=distributed, precision=precision)
    outcome = TrainOutcome(selected_step=0, selected_score=None, select_metric="", dropped_pairs=stepper.sampler.dropped_pairs)
    outcome.used_queries = stepper.sampler.with_queries
    outcome.dropped_by_reason = dict(stepper.sampler.dropped_by_reason)
    outcome.training_pairs = len(stepper.sampler.pairs) if stepper.sampler.with_queries else 0
    best_state = None
    views_seen = 0.0

    def run_validation(step: int) -> None:
        nonlocal best_state
        if validate is None:
            return
        towers.eval(), objective.eval()
        with torch.no_grad():
            name, score = validate()
        towers.train(), objective.train()
        outcome.select_metric = name
        outcome.history.append({"step": step, "val": score})
        tracked.log_metrics({f"val/{name}": score}, step)
        if outcome.selected_score is None or score > outcome.selected_score:
            outcome.selected_score, outcome.selected_step = score, step
            best_state = (copy.deepcopy(towers.state_dict()), copy.deepcopy(objective.state_dict()))

    towers.train(), objective.train()
    window, window_losses = loss_window(config.steps), []
    for step in range(1, config.steps + 1):
        t0 = time.perf_counter()
        loss, views = stepper.step(step)
        outcome.step_ms.append((time.perf_counter() - t0) * 1000.0)
        window_losses.append(float(loss))
        tracked.log_metrics({"train/loss": window_losses[-1]}, step)
        if len(window_losses) == window or step == config.steps:
            outcome.loss_curve.append({"step": step, "loss": sum(window_losses) / len(window_losses)})
            window_losses = []
        views_seen += float(views.mask.sum(1).float().mean())
        if progress is not None:
            progress(step, {"loss": float(loss)})
        if config.eval_every and step % config.eval_every == 0 and step != config.steps:
            run_validation(step)
    run_validation(config.steps)
    if best_state is not None:
        towers.load_state_dict(best_state[0])
        objective.load_state_dict(best_state[1])
    else:
        outcome.selected_step = config.steps
    outcome.mean_views_per_step = views_seen / config.steps
    towers.eval(), objective.eval()
    return outcome
