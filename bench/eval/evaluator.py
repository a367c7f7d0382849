"""Evaluation: query->item over the whole catalog and the cross-view tasks on held-out
items, with exact search.

Tasks
-----
- `query->item` (or the data set's own name, e.g. `photo->product`): each test query searches the
  fused item embeddings of the whole catalog; graded relevance from interactions.
- `title->image`, `image->title`: primary views of the evaluation items (test split) against each
  other; one target per query.
- `image->item`, `text->item`: the primary image / title against the *served item embeddings* of
  the evaluation items, where the query's own item is embedded without the query view
  (leave-one-out, so the query never leaks into its target).
- `aux->item`: every auxiliary view (within `--views`) of the evaluation items against the served
  item embeddings, leave-one-out likewise; pooled over (item, view) pairs.

Tasks a catalog cannot pose (title->image without images) are listed as not applicable, with the
reason, and K values at or above the gallery size are listed as not applicable rather than
reported as a trivial 1.0.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from ..config import check_options, option
from ..data.batching import build_view_batch
from ..data.dataset import MultiViewDataset
from ..data.views import SlotLayout
from ..kernels.search import exact_topk, rank_of_targets
from ..model.encode import batch_selection, capped_availability, encoded_views, to_device
from ..model.towers import Towers
from ..objectives.base import Objective
from ..schema import CROSS_VIEW_TASKS, DEFAULT_CUTOFFS
from .metric_registry import DEFAULT_METRICS, METRICS, check_metric_families
from .metrics import RetrievalReport, ranked_list_metrics, target_rank_metrics
from .selection import resolve_select_metric, validation_score


@dataclass
class EvalConfig:
    ks: tuple = option(DEFAULT_CUTOFFS, "cut-offs K of recall@K, hit@K, ndcg@K", "protocol")
    # not in a run's identity while it is the default (experiment.prepare): runs before the option
    # keep their hashes; map is asked for, e.g. eval.metrics=('recall','hit','ndcg','mrr','map')
    metrics: tuple = option(
        DEFAULT_METRICS, f"metrics computed per task, of {', '.join(METRICS)} (ftbench.eval.metric_registry)", "protocol"
    )
    encode_batch_size: int = option(4096, "items encoded per forward pass at evaluation", "convention", ge=1)
    cross_view_max_items: int = option(
        20_000, "cap on evaluation items for cross-view tasks (random, fixed seed); recorded", "our reading", ge=2
    )

    def validate(self) -> None:
        check_options(self, "eval")
        if not self.ks or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in self.ks):
            raise ValueError(f"eval option 'ks' must be a non-empty list of positive integers, got {self.ks!r}")
        check_metric_families(self.metrics, "eval option 'metrics'")


@dataclass
class QueryRun:
    """One scored pass of the query task: what the run files are written from.

    `query_index` are the QuerySet rows searched, `gallery` the searched items (catalog indices),
    `ranked` [Q, C] gallery positions best first, `scores` their similarities (when kept),
    `relevance` the CSR (indptr, gallery positions, grades) of those queries and `report` the
    metrics with their per-query values (`report.query_index` = rows of `ranked` that count)."""

    task: str
    split: str
    query_index: np.ndarray
    gallery: np.ndarray
    ranked: np.ndarray
    scores: np.ndarray | None
    relevance: tuple
    report: RetrievalReport


@dataclass
class ViewEmbeddings:
    """Tower outputs of every view of some items: `table` [n, S, d] (zeros where absent), row r
    belonging to catalog item `items[r]`."""

    items: np.ndarray
    table: torch.Tensor


class Evaluator:
    """Encodes items and queries with trained towers + objective and scores every task."""

    def __init__(
        self,
        dataset: MultiViewDataset,
        towers: Towers,
        objective: Objective,
        max_views: int,
        device: torch.device,
        config: EvalConfig | None = None,
    ) -> None:
        self.dataset = dataset
        self.towers = towers
        self.objective = objective
        self.max_views = max_views
        self.device = device
        self.config = config or EvalConfig()
        self.layout = SlotLayout.from_catalog(dataset.catalog)
        #: the last query-task evaluation (ranked lists, relevance, per-query values), for run files
        self.last_query_run: QueryRun | None = None
        #: per-query values of the cross-view tasks of the last `cross_view` call
        self.per_query: dict[str, dict[str, np.ndarray]] = {}
        #: cross-view tasks encode each (item, view) once and build every query, leave-one-out
        #: target and item embedding from those tower outputs; False encodes per task, as the
        #: definition reads (same results: a tower embeds each view on its own)
        self.reuse_view_embeddings = True
        #: CPU: encode chunks on one worker thread per torch thread (`_encode_chunks`); False runs
        #: them in turn on the caller's threads (same embeddings)
        self.parallel_encoding = True

    # -- encoding ----------------------------------------------------------------------------
    def _encode_chunks(self, n: int, prepare, compute) -> torch.Tensor:
        """[n, d] float32 on the evaluation device: rows start:stop are compute(prepare(start, stop)),
        in chunks of `encode_batch_size`.

        On CPU with several torch threads the chunks are shared among worker threads (one per
        thread, as `kernels.search` does for its query blocks), each running single-threaded torch
        ops: the towers' small elementwise operations and the Python work between them then run
        side by side instead of in turn (~10-20% faster on 2 cores). `prepare` reads the catalog
        and runs under a lock (a data set plugin need not be thread-safe); `compute` (towers and
        objective, no state written at inference) runs in parallel. Every row is the same bit for
        bit: a tower embeds each view on its own and the objective each item on its own, and the
        matrix products give the same result on one thread as on several (tested)."""
        d = self.towers.embedding_dim
        bs = self.config.encode_batch_size
        bounds = [(start, min(n, start + bs)) for start in range(0, n, bs)]
        out = torch.empty(n, d, device=self.device)
        workers = min(len(bounds), torch.get_num_threads()) if self.device.type == "cpu" and self.parallel_encoding else 1
        if workers < 2:
            for start, stop in bounds:
                out[start:stop] = compute(prepare(start, stop))
            return out
        lock = threading.Lock()
        outer = torch.get_num_threads()

        def chunk(bound: tuple[int, int]) -> None:
            torch.set_num_threads(1)
            with torch.inference_mode():
                with lock:
                    data = prepare(*bound)
                out[bound[0] : bound[1]] = compute(data)

        try:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                for fut in [pool.submit(chunk, b) for b in bounds]:
                    fut.result()
        finally:
            torch.set_num_threads(outer)
        return out

    @torch.inference_mode()
    def embed_items(self, items: np.ndarray, exclude_slot: int | None = None) -> torch.Tensor:
        """Served item embeddings [n, d] (on the evaluation device) of `items`."""

        def prepare(start: int, stop: int):
            chunk = items[start:stop]
            selection = batch_selection(
                self.dataset, self.objective, chunk, self.max_views, training=False, exclude_slot=exclude_slot
            )
            return to_device(build_view_batch(self.dataset.catalog, self.layout, chunk, selection), self.device)

        def compute(raw):
            return self.objective.item_embedding(encoded_views(self.towers.encode_views(raw), raw))

        return self._encode_chunks(len(items), prepare, compute)

    @torch.inference_mode()
    def embed_slot(self, items: np.ndarray, slot: int) -> torch.Tensor:
        """Tower embeddings [n, d] of one view slot of `items` (used as queries)."""
        modality = self.dataset.catalog.slots[slot].modality

        def prepare(start: int, stop: int):
            return torch.from_numpy(self.dataset.catalog.features(items[start:stop], slot)).to(self.device)

        return self._encode_chunks(len(items), prepare, lambda feats: self.towers.encode(modality, feats))

    @torch.inference_mode()
    def embed_queries(self, query_index: np.ndarray) -> torch.Tensor:
        q = self.dataset.queries
        assert q is not None  # queries are embedded only from a data set that has them

        def prepare(start: int, stop: int):
            return torch.from_numpy(q.features[query_index[start:stop]]).to(self.device)

        def compute(feats):
            return self.objective.query_embedding(self.towers.encode(q.modality, feats))

        return self._encode_chunks(len(query_index), prepare, compute)

    @torch.inference_mode()
    def embed_views(self, items: np.ndarray) -> ViewEmbeddings:
        """Tower embeddings of every view within --views of `items`, each (item, view) encoded once
        (slot by slot, in batches of `encode_batch_size`); zeros where an item lacks the view."""
        avail = capped_availability(self.dataset.catalog, items, self.max_views).numpy()
        table = torch.zeros(len(items), self.layout.num_slots, self.towers.embedding_dim, device=self.device)
        for s in range(self.layout.num_slots):
            rows = np.flatnonzero(avail[:, s])
            if len(rows):
                table[torch.as_tensor(rows, device=self.device), s] = self.embed_slot(items[rows], s)
        return ViewEmbeddings(items=items, table=table)

    @torch.inference_mode()
    def embed_items_from(self, views: ViewEmbeddings, rows: np.ndarray, exclude_slot: int | None = None) -> torch.Tensor:
        """`embed_items(views.items[rows], exclude_slot)` from the stored tower outputs: the same
        view selection and positions per batch of `encode_batch_size` items, only the towers are
        not run again."""
        out = []
        bs = self.config.encode_batch_size
        rows = np.asarray(rows, dtype=np.int64)
        for start in range(0, len(rows), bs):
            chunk_rows = rows[start : start + bs]
            chunk = views.items[chunk_rows]
            selection = batch_selection(
                self.dataset, self.objective, chunk, self.max_views, training=False, exclude_slot=exclude_slot
            )
            raw = build_view_batch(None, self.layout, chunk, selection)
            picked = views.table[torch.as_tensor(chunk_rows, device=self.device)[:, None], raw.slot.clamp(min=0).to(self.device)]
            embeddings = torch.where(raw.mask.to(self.device)[..., None], picked, torch.zeros((), device=self.device))
            out.append(self.objective.item_embedding(encoded_views(embeddings, to_device(raw, self.device))).float())
        if not out:
            return torch.zeros(0, self.towers.embedding_dim, device=self.device)
        return torch.cat(out)

    # -- tasks -------------------------------------------------------------------------------
    def query_task(self, split: str, gallery: np.ndarray | None = None, depth: int | None = None) -> tuple[dict, dict, dict]:
        """Metrics of the query task on `split` queries; `gallery` restricts the searched items.

        `depth` (one of the config's ks, below the gallery's size): search only the top `depth` and
        report the metrics at that K (eval.metrics @depth: recall, hit, ndcg, mrr by default). Each is a function of
        the top-`depth` prefix of the ranking by (-score, index), so it equals the full run's
        value; checkpoint selection, which needs one metric, uses it to skip the deeper search.
        """
        q = self.dataset.queries
        assert q is not None  # the query task runs on a data set with queries
        name = self.dataset.query_task
        n_items = self.dataset.catalog.num_items
        gallery = np.arange(n_items) if gallery is None else np.asarray(gallery)
        qidx = q.indices(split)
        # relevance restricted to the gallery, re-indexed to gallery positions
        position = np.full(n_items, -1, dtype=np.int64)
        position[gallery] = np.arange(len(gallery))
        counts = np.diff(q.relevant_indptr)[qidx]
        rows = np.repeat(np.arange(len(qidx)), counts)
        starts = q.relevant_indptr[qidx]
        flat = (np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)) + np.repeat(starts, counts)
        rel_pos = position[q.relevant_items[flat]]
        keep = rel_pos >= 0
        rows, rel_pos, grades = rows[keep], rel_pos[keep], q.relevant_grades[flat][keep]
        per_q = np.bincount(rows, minlength=len(qidx))
        indptr = np.concatenate([[0], np.cumsum(per_q)])
        has_rel = per_q > 0
        item_emb = self.embed_items(gallery)
        query_emb = self.embed_queries(qidx)
        ks = [k for k in self.config.ks if k < len(gallery)]
        na = {f"{name}/recall@{k}": f"K >= gallery size ({len(gallery)})" for k in self.config.ks if k >= len(gallery)}
        if depth is not None:
            if depth not in ks:
                raise ValueError(f"query_task depth {depth}: expected one of the ks below the gallery size {ks}")
            ks, na = [depth], {}
        if not ks:
            return {}, na, {"queries": int(has_rel.sum())}
        # searched to the largest requested K (the reciprocal rank's cut-off), or the whole gallery
        mrr_at = max(self.config.ks) if depth is None else depth
        search: dict = {}
        scores, ranked_t = exact_topk(query_emb, item_emb, min(mrr_at, len(gallery)), info=search)
        ranked = ranked_t.cpu().numpy()
        report = ranked_list_metrics(
            ranked, indptr, rel_pos, grades, len(gallery), ks, mrr_at=mrr_at, metrics=self.config.metrics
        )
        self.last_query_run = QueryRun(
            task=name,
            split=split,
            query_index=qidx,
            gallery=gallery,
            ranked=ranked,
            scores=scores.float().cpu().numpy(),
            relevance=(indptr, rel_pos, grades),
            report=report,
        )
        metrics = dict(report.metrics)
        metrics["queries"] = float(report.num_queries)
        counts_out = {
            "queries": int(report.num_queries),
            "queries_without_relevant": int(report.num_excluded),
            "gallery": int(len(gallery)),
            "mrr_cutoff": report.mrr_cutoff,
            # which first pass the exact search took here, and why (every pass gives the same top-K)
            "search": search,
        }
        return {name: metrics}, na, counts_out

    def _primary_slot(self, image: bool) -> int | None:
        """First primary slot of image modality (`image=True`) or of a text-like one (the title).

        Found by modality, not by side: in a one-modality catalog the sides are primary vs
        auxiliary, and the title is the primary view of side 0."""
        slots = self.dataset.catalog.slots
        for s, slot in enumerate(slots):
            if slot.role == "primary" and (slot.modality == "image") == image:
                return s
        return None

    def _rank_task(
        self,
        name: str,
        queries: torch.Tensor,
        gallery: torch.Tensor,
        targets: np.ndarray,
        target_scores: torch.Tensor,
        out: dict,
        na: dict,
    ) -> None:
        ks = [k for k in self.config.ks if k < len(gallery)]
        for k in self.config.ks:
            if k >= len(gallery):
                na[f"{name}/recall@{k}"] = f"K >= gallery size ({len(gallery)})"
        if len(queries) == 0:
            na[name] = "no query view available among the evaluation items"
            return
        ranks = rank_of_targets(queries, gallery, torch.as_tensor(targets, device=gallery.device), target_scores)
        if not ks:
            na[name] = f"gallery of {len(gallery)} items is smaller than every K"
            return
        report = target_rank_metrics(
            ranks.cpu().numpy(), len(gallery), ks, mrr_cutoff=max(self.config.ks), metrics=self.config.metrics
        )
        out[name] = dict(report.metrics)
        self.per_query[name] = report.per_query
        out[name]["queries"] = float(len(queries))

    def cross_view(self, items: np.ndarray) -> tuple[dict, dict]:
        out: dict = {}
        na: dict = {}
        layout = self.layout
        avail = capped_availability(self.dataset.catalog, items, self.max_views).numpy()
        views = self.embed_views(items) if self.reuse_view_embeddings else None
        img, title = self._primary_slot(image=True), self._primary_slot(image=False)
        modalities = self.dataset.catalog.modalities
        has_image = "image" in modalities
        has_text = any(m != "image" for m in modalities)

        def lacks(image: bool) -> str:
            """The true reason a primary view of that kind is missing."""
            kind = "image" if image else "text"
            present = has_image if image else has_text
            return f"catalog has no {kind} views" if not present else f"catalog has no primary {kind} view"

        # primary image <-> title
        if img is not None and title is not None:
            both = avail[:, img] & avail[:, title]
            sub = items[both]
            if len(sub) < 2:
                na["title->image"] = na["image->title"] = (
                    f"fewer than 2 evaluation items have both a primary image and a title within --views {self.max_views}"
                )
            else:
                if views is not None:
                    pick = torch.as_tensor(np.flatnonzero(both), device=self.device)
                    a, b = views.table[pick, img].contiguous(), views.table[pick, title].contiguous()
                else:
                    a, b = self.embed_slot(sub, img), self.embed_slot(sub, title)
                targets = np.arange(len(sub))
                self._rank_task("title->image", b, a, targets, (a * b).sum(-1), out, na)
                self._rank_task("image->title", a, b, targets, (a * b).sum(-1), out, na)
        else:
            na["title->image"] = na["image->title"] = lacks(image=img is None)
        full = self.embed_items(items) if views is None else self.embed_items_from(views, np.arange(len(items)))
        # primary view -> item (leave-one-out); in a one-modality catalog too (the title, or the
        # primary image, against the item's other views)
        for name, slot, image in (("image->item", img, True), ("text->item", title, False)):
            if slot is None:
                na[name] = lacks(image)
                continue
            rows = np.flatnonzero(avail[:, slot])
            self._loo_task(name, items, rows, [slot] * len(rows), full, out, na, avail, views)
        # auxiliary views -> item (leave-one-out)
        aux_slots = [s for s in range(layout.num_slots) if not bool(layout.is_primary[s])]
        # (item row, slot) pairs, slot by slot in slot order
        per_slot = [np.flatnonzero(avail[:, s]) for s in aux_slots]
        rows = np.concatenate(per_slot) if per_slot else np.empty(0, np.int64)
        if not len(rows):
            na["aux->item"] = f"no auxiliary view within --views {self.max_views} among the evaluation items"
        else:
            slots = np.repeat(np.asarray(aux_slots, dtype=np.int64), [len(r) for r in per_slot])
            self._loo_task("aux->item", items, rows, slots, full, out, na, avail, views)
        return out, na

    def _loo_task(self, name, items, rows, slots, full, out, na, avail=None, views=None) -> None:
        """Query = view `slot` of item rows[i]; its own target is the item embedded without it.

        Only items with at least one other view within --views take part: an item seen through
        its query view alone has nothing left to be retrieved by.
        """
        rows = np.asarray(rows, dtype=np.int64)
        slots = np.asarray(slots, dtype=np.int64)
        if avail is not None and len(rows):
            keep = avail[rows].sum(axis=1) >= 2
            rows, slots = rows[keep], slots[keep]
        if len(rows) == 0:
            na[name] = f"no evaluation item has this view and another one within --views {self.max_views}"
            return
        queries, target_scores = [], []
        order_parts = []
        for s in np.unique(slots):
            sel = np.flatnonzero(slots == s)
            if views is not None:
                q = views.table[torch.as_tensor(rows[sel], device=self.device), int(s)]
                loo = self.embed_items_from(views, rows[sel], exclude_slot=int(s))
            else:
                sub_items = items[rows[sel]]
                q = self.embed_slot(sub_items, int(s))
                loo = self.embed_items(sub_items, exclude_slot=int(s))
            queries.append(q)
            target_scores.append((q * loo).sum(-1))
            order_parts.append(sel)
        order = np.concatenate(order_parts)
        self._rank_task(name, torch.cat(queries), full, rows[order], torch.cat(target_scores), out, na)

    # -- entry points ------------------------------------------------------------------------
    def evaluate(self, seed: int = 0) -> tuple[dict, dict, dict]:
        """All tasks on the test split. Returns (metrics, not_applicable, counts)."""
        metrics: dict = {}
        na: dict = {}
        counts: dict = {}
        ds = self.dataset
        if ds.queries is not None and len(ds.queries.indices("test")):
            m, n, c = self.query_task("test")
            metrics.update(m), na.update(n)
            counts[ds.query_task] = c
        else:
            na[ds.query_task] = "data set has no test queries"
        items = ds.evaluation_items()
        if len(items) > self.config.cross_view_max_items:
            rng = np.random.default_rng(np.random.SeedSequence([seed, 0xE7A1]))
            items = np.sort(rng.choice(items, self.config.cross_view_max_items, replace=False))
        counts["cross_view_items"] = int(len(items))
        if len(items) >= 2:
            m, n = self.cross_view(items)
            metrics.update(m), na.update(n)
        else:
            for t in CROSS_VIEW_TASKS:
                na[t] = "fewer than 2 evaluation items"
        return metrics, na, counts

    def resolve_select_metric(self, select_metric: str) -> str:
        """The selection metric as validation can score it (`selection.resolve_select_metric`)."""
        return resolve_select_metric(self, select_metric)

    def validation_score(self, select_metric: str, gallery_size: int, seed: int) -> tuple[str, float]:
        """The checkpoint-selection score on the validation split only (`selection.validation_score`)."""
        return validation_score(self, select_metric, gallery_size, seed)
