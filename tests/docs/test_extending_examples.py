"""Every python example of docs/extend/*.md runs as written, and does what its page says.

The code blocks of a page run in order in one namespace (later blocks use what earlier ones
defined), with temporary folders under the test's own. What an example registers (an objective,
a data set, a backbone, a metric) is removed afterwards, so that the registries other tests read
hold only the shipped plugins.
"""

from __future__ import annotations

import re
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import pytest
from ftbench.datasets import DATASETS
from ftbench.eval.metric_registry import METRICS
from ftbench.features.backbones.base import BACKBONES
from ftbench.objectives import OBJECTIVES
from ftbench.objectives.base import Objective

EXTEND = Path(__file__).resolve().parents[2] / "docs" / "extend"
PAGES = sorted(p.name for p in EXTEND.glob("*.md"))
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def python_blocks(page: str) -> list[str]:
    return BLOCK.findall((EXTEND / page).read_text(encoding="utf-8"))


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """Temporary folders under tmp_path; registries restored after the example."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    registries = [OBJECTIVES._entries, DATASETS._entries, BACKBONES._entries, METRICS]
    before = [dict(r) for r in registries]
    yield
    for registry, saved in zip(registries, before):
        registry.clear()
        registry.update(saved)


def run_page(page: str, monkeypatch) -> dict:
    """The page's blocks, run as the body of one module (dataclasses look their module up in
    sys.modules); compiled without this file's `from __future__ import annotations`."""
    module = types.ModuleType(f"docs_extend_{page[:-3]}")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    for code in python_blocks(page):
        exec(compile(code, f"docs/extend/{page}", "exec", dont_inherit=True), module.__dict__)
    return module.__dict__


def test_every_extending_page_has_an_example_and_is_checked_here():
    assert PAGES == ["backbone.md", "dataset.md", "metric.md", "objective.md"]
    for page in PAGES:
        assert python_blocks(page), f"docs/extend/{page} has no python example"


def test_objective_example(isolated, monkeypatch):
    ns = run_page("objective.md", monkeypatch)
    cls = OBJECTIVES.get("example_side_mean")
    assert issubclass(cls, Objective) and cls.name == "example_side_mean" and cls.summary
    # the interface as documented: the subclass computes its own terms, the base class does the rest
    assert "alignment_terms" in vars(cls) and "forward" not in vars(cls)
    out = ns["out"]
    assert out.config["objective"] == "example_side_mean"
    assert out.config["objective_config"]["side_weight"] == 0.5  # --set reached the new field
    recall = out.metrics.query("task == 'query->item' and metric == 'recall@10'").value
    assert len(recall) == 1 and 0 < float(recall.iloc[0]) <= 1


def test_dataset_example(isolated, monkeypatch):
    ns = run_page("dataset.md", monkeypatch)
    assert DATASETS.get("example_clusters").name == "example_clusters"
    out = ns["out"]
    assert out.config["dataset"] == "example_clusters" and out.config["dataset_config"]["items"] == 400
    built = DATASETS.get("example_clusters")().build(DATASETS.get("example_clusters").Config(items=400))
    assert built.catalog.num_items == 400 and built.queries.num_queries == 400
    tasks = set(out.metrics.task)
    assert {"query->item", "title->image", "image->title"} <= tasks


def test_metric_example(isolated, monkeypatch):
    ns = run_page("metric.md", monkeypatch)
    m = ns["out"].metrics.set_index(["task", "metric"]).value
    ks = ns["out"].config["eval_config"]["ks"]
    for task in ("title->image", "image->title"):
        # one relevant item per cross-view query: precision@K = recall@K / K
        for k in ks:
            if (task, f"recall@{k}") in m.index:
                assert m[(task, f"precision@{k}")] == pytest.approx(m[(task, f"recall@{k}")] / k)
    precision = m[[name.startswith("precision@") for _, name in m.index]]
    assert len(precision) and ((precision >= 0) & (precision <= 1)).all()


def test_backbone_example(isolated, monkeypatch):
    ns = run_page("backbone.md", monkeypatch)
    backbone = ns["create_backbone"]("example_trigrams:16", "text")
    features = backbone.encode(["oak dining chair", "oak dining chair", "brass desk lamp"])
    assert features.shape == (3, 16) and features.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(features, axis=1), 1.0, rtol=1e-6)
    assert np.array_equal(features[0], features[1]) and not np.array_equal(features[0], features[2])
    with pytest.raises(ValueError, match="positive dimension"):
        ns["create_backbone"]("example_trigrams:0", "text")
    out = ns["out"]
    assert out.config["dataset_config"]["text_backbone"] == "example_trigrams:32"
    assert "query->item" in set(out.metrics.task)
