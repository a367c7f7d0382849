"""The trade-off plot's V labels: crowded points get labels that do not cover one another."""

import itertools

import pandas as pd
from ftbench.report import plots


def _crowded():
    """Three objectives whose points at the same V sit 2% apart in step time and 0.0004
    apart in score (a label is shared only within one objective): their labels, written at the
    points, cover each other."""
    rows, step_ms = [], {}
    for i, objective in enumerate(("clip", "factorized", "full_ot")):
        for j, v in enumerate((1, 2, 4, 8)):
            step_ms[(objective, v)] = 20.0 * (1.5**j) * (1.02**i)
            for seed in (0, 1, 2):
                rows.append(
                    {
                        "group": "g",
                        "objective_label": objective,
                        "views": v,
                        "seed": seed,
                        "query->item/recall@100": 0.80 + 0.0004 * i + 0.01 * j,
                    }
                )
    return pd.DataFrame(rows), step_ms


def _overlapping(fig, labels):
    fig.canvas.draw()  # the axes limits are settled at drawing time
    renderer = fig.canvas.get_renderer()
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in labels]
    return [(a, b) for (a, box_a), (b, box_b) in itertools.combinations(boxes, 2) if box_a.overlaps(box_b)]


def test_labels_are_moved_apart(monkeypatch, tmp_path):
    frame, step_ms = _crowded()
    fig, labels = plots.tradeoff_figure(frame, "g", "query->item/recall@100", "t", step_ms)
    assert len(labels) == 12 and _overlapping(fig, labels) == []
    # where they start (at their points) they do overlap: the test case is crowded
    monkeypatch.setattr(plots, "_separate_labels", lambda ax, labels, points: None)
    fig, labels = plots.tradeoff_figure(frame, "g", "query->item/recall@100", "t", step_ms)
    assert _overlapping(fig, labels)
    path = plots.plot_tradeoff(frame, "g", "query->item/recall@100", tmp_path / "t.png", "t", step_ms)
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_no_plot_without_a_step_time():
    frame, _ = _crowded()
    assert plots.tradeoff_figure(frame, "g", "query->item/recall@100", "t", {}) == (None, [])
