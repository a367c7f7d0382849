"""The regime map's design: seeded, inside the knobs' ranges, space-filling, and what the
`regime-map` sweep preset runs."""

import numpy as np
import pytest
from ftbench.regime.design import KNOBS, regime_design
from ftbench.run.experiment import prepare
from ftbench.run.sweep import spec_from_preset

REGISTERED = lambda: ["clip", "factorized", "oat"]  # noqa: E731


def test_same_seed_same_cells_and_another_seed_others():
    a, b, c = regime_design(32, seed=0), regime_design(32, seed=0), regime_design(32, seed=1)
    assert a == b
    assert a != c


def test_cells_lie_inside_the_ranges_and_cover_each_knob():
    points = regime_design(32)
    assert len(points) == 32 and [p.index for p in points] == list(range(32))
    for name, low, high, scale in KNOBS:
        values = np.array([p.views if name == "views" else p.options[name] for p in points], dtype=float)
        assert values.min() >= low and values.max() <= high, name
        if scale == "integer":  # every view count is used
            assert set(values.astype(int)) == set(range(int(low), int(high) + 1))
        else:  # Sobol: each quarter of the (log) range holds 8 of the 32 cells
            u = (np.log(values) - np.log(low)) / (np.log(high) - np.log(low)) if scale == "log" else (values - low) / (high - low)
            counts = np.histogram(u, bins=4, range=(0, 1))[0]
            assert counts.min() >= 6, (name, counts)


def test_the_preset_runs_every_objective_and_seed_on_every_cell_cell_by_cell():
    spec = spec_from_preset("regime-map", registered_objectives=REGISTERED)
    cells = spec.cells()
    assert len(cells) == 32 * 3 * 3
    # cell-major: a sweep stopped part-way has compared every objective on the cells it finished
    assert [c.objective for c in cells[:3]] == ["clip", "factorized", "oat"]
    assert len({(c.views, tuple(c.sets)) for c in cells[:9]}) == 1
    # each cell's options reach the data set's config, and distinct cells are distinct runs
    first = prepare(cells[0])
    point = regime_design()[0]
    assert first.config["views"] == point.views
    for key, value in point.options.items():
        assert first.config["dataset_config"][key] == value
    assert len({prepare(c).config_hash for c in cells[::3]}) == 32 * 3


def test_views_cannot_be_given_with_the_design():
    with pytest.raises(ValueError, match="--views cannot be given"):
        spec_from_preset("regime-map", views=[8], registered_objectives=REGISTERED)
