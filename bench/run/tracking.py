"""Experiment tracking: a run's parameters, per-step loss, validation scores, final metrics and
result file sent to a tracking service (`ftbench run|sweep|tune --tracker NAME`).

The result JSON stays the record every table and plot is built from; a tracker is a copy for teams
that browse runs in a tracking UI. Trackers are plugins: a class with `open`, `start_run` and the
`TrackedRun` methods, registered with `@TRACKERS.register("name")`. Built in: `none` (the default,
nothing sent) and `mlflow` (the optional extra ``ftbench[tracking]``; without `--tracking-uri` a local
SQLite store, ``OUT/mlruns/mlflow.db``, because MLflow 3.x refuses plain-folder ``file:`` stores
unless ``MLFLOW_ALLOW_FILE_STORE=true``). What a tracked run holds, and the URIs accepted:
docs/getting-started.md#experiment-tracking. MLflow metric names allow letters, digits and
``_ - . / : space`` only, so `metric_key` writes ``->`` as ``_to_`` and ``@`` as ``_at_``. A
password in the tracking URI is never written: every line, error and note shows the URI through
`redact_url`.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..registry import Registry
from .claims import redact_url

if TYPE_CHECKING:
    from mlflow import MlflowClient  # optional: tracking extra

TRACKING_EXTRA_HINT = "pip install 'ftbench[tracking]'"
DEFAULT_EXPERIMENT = "ftbench"
DEFAULT_STORE_FOLDER = "mlruns"

_ARROW = re.compile(r"\s*->\s*")
_NOT_ALLOWED = re.compile(r"[^\w./\- :]")


class TrackingError(ValueError):
    """The tracker cannot be used as asked (missing package, unusable URI); the message is one line
    that names the option and hides any password."""


def metric_key(*parts: str) -> str:
    """A tracking-safe metric name from name parts: `metric_key("test", "query->item", "recall@10")`
    is `"test/query_to_item/recall_at_10"`. Characters tracking services refuse become `_`."""
    text = "/".join(str(p).strip("/") for p in parts if str(p))
    text = _ARROW.sub("_to_", text).replace("@", "_at_")
    return _NOT_ALLOWED.sub("_", text)


def flatten_params(config: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """A nested config as flat `section.key -> text`: nested dicts are joined with dots; lists,
    tuples and None are written as JSON (the result file's notation)."""
    out: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten_params(value, name + "."))
        elif isinstance(value, str):
            out[name] = value
        else:
            out[name] = json.dumps(value, sort_keys=True, default=str)
    return out


class TrackedRun:
    """One run as a tracker sees it. This base class is the no-op run: every method does nothing,
    so the training loop and the experiment call it without asking whether tracking is on."""

    #: the tracker's id of the run (None: not tracked)
    run_id: str | None = None

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        """Record `metrics` (name -> value) at training step `step`."""

    def log_params(self, params: dict[str, str]) -> None:
        """Record parameters (name -> text)."""

    def set_tags(self, tags: dict[str, str]) -> None:
        """Record tags (name -> text)."""

    def log_artifact(self, path: Path, folder: str | None = None) -> None:
        """Copy the file `path` into the run's artifacts (under `folder`)."""

    def end(self, status: str = "FINISHED") -> None:
        """Close the run: FINISHED, FAILED (an exception) or KILLED (interrupted)."""

    def describe(self) -> str:
        """Where the run is, for notes and console lines (no password)."""
        return ""


NO_RUN = TrackedRun()


class Tracker:
    """A tracking destination shared by the runs of one command. `open` checks that it can be used
    (called once, before any training, so that a bad URI fails in seconds); `start_run` begins one
    tracked run. The base class tracks nothing."""

    name = "none"

    def __init__(self, uri: str | None = None, out: Path | None = None, experiment: str = DEFAULT_EXPERIMENT) -> None:
        self.uri, self.out, self.experiment = uri, out, experiment

    @property
    def enabled(self) -> bool:
        return False

    def open(self) -> None:
        pass

    def start_run(self, name: str, params: dict[str, str], tags: dict[str, str]) -> TrackedRun:
        return NO_RUN

    def describe(self) -> str:
        return "no tracking"


TRACKERS: Registry[type[Tracker]] = Registry("tracker")
TRACKERS.register("none")(Tracker)


@TRACKERS.register("mlflow")
class MlflowTracker(Tracker):
    """MLflow's tracking client (`mlflow.MlflowClient`, no global active run, so that sweep cells and
    tests never share state). Metrics are buffered and sent in batches of at most
    `flush_every` values (one store transaction per batch rather than one per step)."""

    name = "mlflow"
    flush_every = 200

    def __init__(self, uri: str | None = None, out: Path | None = None, experiment: str = DEFAULT_EXPERIMENT) -> None:
        super().__init__(uri, out, experiment)
        self._client: MlflowClient | None = None  # set by open()
        self._experiment_id: str | None = None
        self.shown_uri = redact_url(uri) if uri else None

    @property
    def enabled(self) -> bool:
        return True

    def resolved_uri(self) -> tuple[str, Path | None]:
        """(tracking URI, artifact folder or None): the default is the SQLite store under --out."""
        if self.uri:
            artifacts = None
            if self.uri.startswith("sqlite:///"):
                # artifacts beside the database, not in ./mlruns of whatever folder we run from
                artifacts = Path(self.uri[len("sqlite:///") :]).resolve().parent / "artifacts"
            return self.uri, artifacts
        if self.out is None:
            raise TrackingError("--tracker mlflow: no --tracking-uri given and no --out folder for the local store")
        folder = (Path(self.out) / DEFAULT_STORE_FOLDER).resolve()
        return f"sqlite:///{folder / 'mlflow.db'}", folder / "artifacts"

    def open(self) -> None:
        if self._client is not None:
            return
        # no usage telemetry leaves the machine (MLflow 3 sends it by default)
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        try:
            import mlflow  # noqa: F401
            from mlflow import MlflowClient  # optional: tracking extra
        except ImportError:
            raise TrackingError(f"--tracker mlflow needs the optional extra: {TRACKING_EXTRA_HINT}") from None
        import logging
        import warnings

        logging.getLogger("mlflow").setLevel(logging.WARNING)  # "Creating initial MLflow database tables..."
        uri, artifacts = self.resolved_uri()
        if uri.startswith("sqlite:///"):
            Path(uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
        self.shown_uri = redact_url(uri)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # SQLAlchemy's, from MLflow's models
                client = MlflowClient(tracking_uri=uri)
                found = client.get_experiment_by_name(self.experiment)
                if found is not None:
                    self._experiment_id = found.experiment_id
                else:
                    self._experiment_id = client.create_experiment(
                        self.experiment, artifact_location=artifacts.as_uri() if artifacts is not None else None
                    )
        except Exception as exc:  # noqa: BLE001 - MLflow raises many kinds; one line, password hidden
            message = redact_url(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            raise TrackingError(f"--tracking-uri {self.shown_uri}: {message}") from None
        self._client = client

    def start_run(self, name: str, params: dict[str, str], tags: dict[str, str]) -> TrackedRun:
        self.open()
        assert self._client is not None and self._experiment_id is not None  # open() set them
        run = self._client.create_run(self._experiment_id, run_name=name, tags=tags)
        tracked = MlflowRun(self._client, run.info.run_id, self.flush_every, self.shown_uri)
        tracked.log_params(params)
        return tracked

    def describe(self) -> str:
        shown = self.shown_uri or redact_url(self.resolved_uri()[0])
        return f"mlflow experiment {self.experiment!r} at {shown}"


class MlflowRun(TrackedRun):
    def __init__(self, client, run_id: str, flush_every: int, shown_uri: str | None) -> None:
        self.client, self.run_id, self.flush_every, self.shown_uri = client, run_id, flush_every, shown_uri
        self._pending: list = []

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric  # optional: tracking extra

        now = int(time.time() * 1000)
        self._pending += [Metric(metric_key(k), float(v), now, int(step)) for k, v in metrics.items()]
        if len(self._pending) >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        from mlflow.utils.validation import MAX_METRICS_PER_BATCH  # optional: tracking extra

        while self._pending:
            batch, self._pending = self._pending[:MAX_METRICS_PER_BATCH], self._pending[MAX_METRICS_PER_BATCH:]
            self.client.log_batch(self.run_id, metrics=batch)

    def log_params(self, params: dict[str, str]) -> None:
        from mlflow.entities import Param  # optional: tracking extra
        from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH, MAX_PARAMS_TAGS_PER_BATCH  # optional: tracking extra

        entries = [Param(metric_key(k), str(v)[:MAX_PARAM_VAL_LENGTH]) for k, v in params.items()]
        for i in range(0, len(entries), MAX_PARAMS_TAGS_PER_BATCH):
            self.client.log_batch(self.run_id, params=entries[i : i + MAX_PARAMS_TAGS_PER_BATCH])

    def set_tags(self, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag  # optional: tracking extra

        if tags:
            self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_artifact(self, path: Path, folder: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path=folder)

    def end(self, status: str = "FINISHED") -> None:
        try:
            self.flush()
        finally:
            self.client.set_terminated(self.run_id, status=status)

    def describe(self) -> str:
        return f"mlflow run {self.run_id} at {self.shown_uri}"


def make_tracker(name: str, uri: str | None, out: Path | None, experiment: str = DEFAULT_EXPERIMENT) -> Tracker:
    """The tracker of `--tracker NAME` (unknown names: an error naming the known ones). `--tracking-uri`
    without a tracker is an error rather than silently ignored."""
    cls = TRACKERS.get(name)
    if cls is Tracker and uri:
        raise TrackingError(f"--tracking-uri {redact_url(uri)} given without a tracker: add --tracker mlflow")
    return cls(uri, out, experiment)
