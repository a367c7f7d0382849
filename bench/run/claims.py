"""One storage shared by many workers: opening it from a URL, keeping passwords out of
everything written, heartbeats, and claims.

Workers on several machines run the same `ftbench tune` or `ftbench sweep --storage URL` command
against one Optuna storage: an SQLite file (the default, embedded, for workers on one machine),
any database URL SQLAlchemy and Optuna accept (PostgreSQL: `postgresql://user:pw@host/db`), or
Optuna's journal file (`journal:PATH`, for a shared file system without a database server).

Liveness. A worker that holds a trial (a tuning trial, or the claim of a sweep cell) writes the
time into the trial's user attribute `ftbench_heartbeat` every `stale_after / 4` seconds from a
background thread. Any worker, before it takes new work, marks every RUNNING trial whose last
heartbeat is older than `stale_after` as FAIL (`reap_stale`): the work of a worker killed with
SIGKILL or lost with its machine becomes available again. This is the same on every storage
(Optuna's own heartbeat exists for databases only, not for the journal file).

Claims (`CellClaims`): the claim of a grid cell is a trial created with the cell's key among its
user attributes, in one storage operation. The owner of a cell is its lowest-numbered live
(RUNNING or COMPLETE) claim; trial numbers are assigned by the storage in creation order, so two
workers racing for one cell both see the lower-numbered claim and only its creator goes on.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
import time
from pathlib import Path
from typing import Any, Literal

HEARTBEAT_ATTR = "ftbench_heartbeat"
REASON_ATTR = "ftbench_failed_reason"
CELL_ATTR = "ftbench_cell"
#: seconds without a heartbeat after which a RUNNING trial is taken for dead
DEFAULT_STALE_AFTER = 120.0
DEFAULT_STORAGE_NAME = "tune.sqlite3"

_PASSWORD_IN_NETLOC = re.compile(r"(?P<head>://[^/@:]*):(?P<password>[^@/]*)@")
_PASSWORD_IN_QUERY = re.compile(r"(?P<head>[?&]password=)[^&]*", re.IGNORECASE)


def redact_url(text: str) -> str:
    """`text` with any password of a URL in it replaced by `***` (user, host and database kept)."""
    text = _PASSWORD_IN_NETLOC.sub(r"\g<head>:***@", str(text))
    return _PASSWORD_IN_QUERY.sub(r"\g<head>***", text)


def default_storage_url(out: Path) -> str:
    return f"sqlite:///{(Path(out) / DEFAULT_STORAGE_NAME).resolve()}"


def database_url(url: str) -> str:
    """`postgresql://...` with the installed driver named: SQLAlchemy 2.1 reads a bare
    `postgresql://` as psycopg 3; when only psycopg2 (the `tune` extra's psycopg2-binary) is
    installed, say `postgresql+psycopg2://`."""
    import importlib.util

    if (
        url.startswith(("postgresql://", "postgres://"))
        and importlib.util.find_spec("psycopg") is None
        and importlib.util.find_spec("psycopg2") is not None
    ):
        return "postgresql+psycopg2://" + url.split("://", 1)[1]
    return url


def open_storage(url: str | None, out: Path | None = None) -> Any:
    """An Optuna storage for `--storage URL`; None: the SQLite file `tune.sqlite3` under `out`.

    `journal:PATH` (or a path ending in `.log` / `.journal`) opens Optuna's journal file. Errors
    name the option and the URL with its password hidden."""
    import optuna  # optional: tune extra

    if url is None:
        if out is None:
            raise ValueError("--storage: no URL given and no --out folder for the default SQLite file")
        Path(out).mkdir(parents=True, exist_ok=True)
        url = default_storage_url(out)
    shown = redact_url(url)
    try:
        if url.startswith("journal:") or ("://" not in url and url.endswith((".log", ".journal"))):
            from optuna.storages.journal import JournalFileBackend  # optional: tune extra

            path = Path(url[len("journal:") :] if url.startswith("journal:") else url)
            path.parent.mkdir(parents=True, exist_ok=True)
            return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
        if "://" not in url:
            raise ValueError("expected a database URL (sqlite:///PATH, postgresql://USER:PASSWORD@HOST/DB) or journal:PATH")
        engine_kwargs: dict[str, Any] = {"pool_pre_ping": True}
        if url.startswith("sqlite"):
            # several processes write one file: wait for the lock rather than fail at once
            engine_kwargs = {"connect_args": {"timeout": 120}}
        for attempt in range(5):
            try:
                return optuna.storages.RDBStorage(database_url(url), engine_kwargs=engine_kwargs)
            except Exception as exc:
                # workers starting together race to create the tables of a new database: the
                # loser sees a constraint error once; the tables exist when it tries again
                if "IntegrityError" not in type(exc).__name__ and "already exists" not in str(exc) or attempt == 4:
                    raise
                time.sleep(0.5 * (attempt + 1))
    except ValueError as exc:
        raise ValueError(f"--storage {shown}: {redact_url(str(exc))}") from None
    except Exception as exc:  # noqa: BLE001 - driver errors (no server, bad password) become one message
        message = redact_url(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
        raise ValueError(f"--storage {shown}: cannot open the storage ({type(exc).__name__}: {message})") from None


class Heartbeat:
    """Context manager: keep trial `trial_id` alive (its `ftbench_heartbeat` attribute) from a
    daemon thread every `every` seconds until the block ends."""

    def __init__(self, storage: Any, trial_id: int, every: float) -> None:
        self.storage, self.trial_id, self.every = storage, trial_id, max(float(every), 0.05)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"ftbench-heartbeat-{trial_id}")

    def beat(self) -> None:
        self.storage.set_trial_user_attr(self.trial_id, HEARTBEAT_ATTR, time.time())

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.beat()
            except Exception:  # noqa: BLE001 - the trial finished meanwhile, or a brief database hiccup
                pass

    def __enter__(self) -> Heartbeat:
        self.beat()
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


def last_heartbeat(trial: Any) -> float:
    beat = trial.user_attrs.get(HEARTBEAT_ATTR)
    if isinstance(beat, (int, float)):
        return float(beat)
    start = trial.datetime_start
    return start.timestamp() if start is not None else 0.0


def reap_stale(storage: Any, study_id: int, stale_after: float) -> list[int]:
    """Mark RUNNING trials without a heartbeat for `stale_after` seconds as FAIL (their worker
    died); returns their numbers."""
    from optuna.exceptions import UpdateFinishedTrialError  # optional: tune extra
    from optuna.trial import TrialState  # optional: tune extra

    now, reaped = time.time(), []
    for trial in storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
        silent = now - last_heartbeat(trial)
        if silent <= stale_after:
            continue
        try:
            storage.set_trial_user_attr(
                trial._trial_id, REASON_ATTR, f"worker lost: no heartbeat for {silent:.0f} s (stale after {stale_after:g} s)"
            )
            storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
            reaped.append(trial.number)
        except (UpdateFinishedTrialError, RuntimeError):
            pass  # it finished, or another worker reaped it first
    return reaped


def ensure_study(storage: Any, name: str, direction: Literal["minimize", "maximize"] = "maximize") -> int:
    """The id of study `name`, created if missing (safe when workers race to create it)."""
    import optuna  # optional: tune extra

    optuna.create_study(storage=storage, study_name=name, direction=direction, load_if_exists=True)
    return storage.get_study_id_from_name(name)


class CellClaims:
    """Claims of grid cells in one study of a shared storage: each cell runs once over all
    workers; a dead worker's cell is claimable again after `stale_after` seconds."""

    def __init__(self, storage: Any, study_name: str, stale_after: float = DEFAULT_STALE_AFTER) -> None:
        self.storage, self.study_name, self.stale_after = storage, study_name, float(stale_after)
        self.study_id = ensure_study(storage, study_name)

    def _claims(self, key: str) -> list[Any]:
        return [t for t in self.storage.get_all_trials(self.study_id, deepcopy=False) if t.user_attrs.get(CELL_ATTR) == key]

    def done(self, key: str) -> bool:
        from optuna.trial import TrialState  # optional: tune extra

        return any(t.state == TrialState.COMPLETE for t in self._claims(key))

    def claim(self, key: str) -> int | None:
        """The trial id of this worker's claim of cell `key`, or None when another worker holds
        it or finished it."""
        from optuna.trial import FrozenTrial, TrialState  # optional: tune extra

        live = (TrialState.RUNNING, TrialState.COMPLETE)
        reap_stale(self.storage, self.study_id, self.stale_after)
        if any(t.state in live for t in self._claims(key)):
            return None
        template = FrozenTrial(
            number=-1,
            state=TrialState.RUNNING,
            value=None,
            datetime_start=dt.datetime.now(),
            datetime_complete=None,
            params={},
            distributions={},
            user_attrs={CELL_ATTR: key, HEARTBEAT_ATTR: time.time()},
            system_attrs={},
            intermediate_values={},
            trial_id=-1,
        )
        trial_id = self.storage.create_new_trial(self.study_id, template_trial=template)
        number = self.storage.get_trial_number_from_id(trial_id)
        if any(t.number < number and t.state in live for t in self._claims(key)):
            self.release(trial_id, ok=False, detail="claimed by another worker first")
            return None
        return trial_id

    def heartbeat(self, trial_id: int) -> Heartbeat:
        return Heartbeat(self.storage, trial_id, self.stale_after / 4)

    def release(self, trial_id: int, ok: bool, detail: str = "") -> None:
        """Finish a claim: COMPLETE (the cell is done for every worker) or FAIL (claimable again)."""
        from optuna.exceptions import UpdateFinishedTrialError  # optional: tune extra
        from optuna.trial import TrialState  # optional: tune extra

        try:
            if detail:
                self.storage.set_trial_user_attr(trial_id, REASON_ATTR if not ok else "ftbench_detail", redact_url(detail))
            if ok:
                self.storage.set_trial_state_values(trial_id, TrialState.COMPLETE, values=[1.0])
            else:
                self.storage.set_trial_state_values(trial_id, TrialState.FAIL)
        except UpdateFinishedTrialError:
            pass  # reaped as stale meanwhile (a very long run without heartbeats reaching the storage)
