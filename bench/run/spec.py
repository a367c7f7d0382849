"""What one run is asked to do (`RunSpec`) and the config sections a `--set` key may name.

Kept apart from `ftbench.run.experiment` so that the modules below it (`provenance`, which reads a
result file back into a spec) can build one without importing the run itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: the config sections of a run, in the order a result file records them (`--set section.key=value`)
SECTIONS = ("objective", "dataset", "train", "tower", "eval")


@dataclass
class RunSpec:
    """The options of one run, as the command line gives them (the configs are resolved by
    `ftbench.run.experiment.prepare`)."""

    objective: str = "factorized"
    dataset: str = "synthetic"
    views: int = 8
    seed: int = 0
    device: str = "auto"
    sets: list[str] = field(default_factory=list)
    steps: int | None = None
    batch_size: int | None = None
    deterministic: bool = False
    precision: str = "fp32"
