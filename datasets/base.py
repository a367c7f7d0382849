"""The interface of a data set plugin."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..config import check_options, option
from ..data.dataset import MultiViewDataset
from ..data.fetch import ArchiveSource
from ..data.fingerprint import DataFiles


@dataclass
class DatasetConfig:
    """Fields every data set has; plugins subclass it and add their knobs with `option`."""

    split_seed: int = option(0, "seed of the item/query train/val/test split", "convention", ge=0)

    def validate(self) -> None:
        """The declared choices and bounds of every field (`check_options`), then what relates
        fields; plugins extend it (calling ``super().validate()``)."""
        check_options(self, "dataset")


class DatasetPlugin:
    """Builds a `MultiViewDataset` from its config. `summary` is the one-line description that
    `ftbench datasets` prints; `archive`, when the data set has a public archive, is how `ftbench
    data fetch NAME` downloads it (None: obtained by hand, read with --data-dir)."""

    name: ClassVar[str] = "base"
    summary: ClassVar[str] = ""
    Config: ClassVar[type[DatasetConfig]] = DatasetConfig
    archive: ClassVar[ArchiveSource | None] = None

    def build(self, config: DatasetConfig) -> MultiViewDataset:  # pragma: no cover
        raise NotImplementedError

    def data_files(self, config: DatasetConfig) -> DataFiles | None:
        """The files whose bytes decide the data set `build` reads, for its content fingerprint
        (`ftbench.data.fingerprint`), found without reading them. None (this default): the data is
        decided by the config alone (a generator), whose hash stays the run's identity."""
        return None
