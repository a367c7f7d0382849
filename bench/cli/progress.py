"""Progress displays that work in a terminal and in a log file.

In a terminal, rich's live progress bars. Where the output is not a terminal (``> run.log``, a
batch job, CI), rich draws nothing until the display stops and then cuts each row to 80 columns;
`LogProgress` writes plain lines instead: what, how many of how many, the rate and the time left,
when a task starts, at every tenth of its total, at least every `interval_s` seconds while it
advances, and when it ends. Lines are written whole (no width), so paths and labels survive.
`make_progress` picks one of the two; the commands use it for feature encoding, training and
evaluation alike.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

#: seconds between two lines of a task that advances but crosses no tenth of its total
LOG_INTERVAL_S = 10.0


def make_progress(*columns, console, disable: bool = False, **kwargs):
    """rich's `Progress(*columns, console=console, **kwargs)` where `console` writes to a terminal
    (or a notebook) or the display is disabled; a `LogProgress` on the console's stream otherwise."""
    if disable or console.is_terminal or console.is_jupyter:
        from rich.progress import Progress  # lazy: CLI start-up

        return Progress(*columns, console=console, disable=disable, **kwargs)
    return LogProgress(console.file)


@dataclass
class LogTask:
    """One task of a `LogProgress`: rich's task attributes that the commands read."""

    id: int
    description: str
    total: float | None
    completed: float = 0
    visible: bool = True
    fields: dict[str, Any] = field(default_factory=dict)
    started_at: float = 0.0  # clock time of the task's start (or its last reset or new description)
    started_from: float = 0.0  # `completed` at that time: the rate counts only this phase's work
    last_line_at: float = 0.0
    last_tenth: int = -1
    ended: bool = False  # its last line (completed == total) is written
    dirty: bool = False  # advanced since its last line

    @property
    def finished(self) -> bool:
        return self.total is not None and self.completed >= self.total


def _clock_text(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class LogProgress:
    """The part of rich's `Progress` interface the commands use (`add_task`, `update`, `advance`,
    `reset`, `stop`, `tasks`, a context manager), writing plain lines to `stream` (module
    docstring). `clock` is for tests."""

    def __init__(self, stream: TextIO, interval_s: float = LOG_INTERVAL_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream
        self.interval_s = interval_s
        self.clock = clock
        self._tasks: dict[int, LogTask] = {}
        self._lock = threading.Lock()

    # -- rich's interface --------------------------------------------------------------------
    def __enter__(self) -> LogProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def tasks(self) -> list[LogTask]:
        return list(self._tasks.values())

    def add_task(
        self,
        description: str,
        start: bool = True,
        total: float | None = 100.0,
        completed: float = 0,
        visible: bool = True,
        **fields: Any,
    ) -> int:
        with self._lock:
            now = self.clock()
            task = LogTask(len(self._tasks), description, total, completed, visible, dict(fields), now, completed, now)
            self._tasks[task.id] = task
            if visible:
                self._emit(task, now)
            return task.id

    def update(
        self,
        task_id: int,
        *,
        total: float | None = None,
        completed: float | None = None,
        advance: float | None = None,
        description: str | None = None,
        visible: bool | None = None,
        refresh: bool = False,
        **fields: Any,
    ) -> None:
        with self._lock:
            task = self._tasks[task_id]
            now = self.clock()
            became_visible = visible is True and not task.visible
            renamed = description is not None and description != task.description
            # a new phase on the same row (sweep: train -> evaluate): its own rate, tenths and end
            restart = (
                became_visible
                or (total is not None and total != task.total)
                or (completed is not None and completed < task.completed)
            )
            if description is not None:
                task.description = description
            if total is not None:
                task.total = total
            if completed is not None:
                task.completed = completed
            if advance is not None:
                task.completed += advance
            if visible is not None:
                task.visible = visible
            task.fields.update(fields)
            if restart:
                self._restart(task, now)
            else:
                task.dirty = task.dirty or completed is not None or advance is not None
            if task.visible and (restart or renamed):
                self._emit(task, now)  # what the row does now (a sweep's next cell, say)
            else:
                self._maybe_emit(task, now)

    def advance(self, task_id: int, advance: float = 1) -> None:
        self.update(task_id, advance=advance)

    def reset(
        self,
        task_id: int,
        *,
        start: bool = True,
        total: float | None = None,
        completed: int = 0,
        visible: bool | None = None,
        description: str | None = None,
        **fields: Any,
    ) -> None:
        with self._lock:
            task = self._tasks[task_id]
            now = self.clock()
            if total is not None:
                task.total = total
            if description is not None:
                task.description = description
            if visible is not None:
                task.visible = visible
            task.completed = completed
            task.fields.update(fields)
            self._restart(task, now)
            if task.visible:
                self._emit(task, now)

    def stop(self) -> None:
        """Say where every visible task that advanced since its last line stands."""
        with self._lock:
            now = self.clock()
            for task in self._tasks.values():
                if task.visible and task.dirty and not task.ended:
                    self._emit(task, now)

    # -- lines -------------------------------------------------------------------------------
    @staticmethod
    def _restart(task: LogTask, now: float) -> None:
        task.started_at, task.started_from = now, task.completed
        task.last_tenth, task.ended, task.dirty = -1, False, False

    def _tenth(self, task: LogTask) -> int:
        if not task.total:
            return -1
        return int(10 * min(task.completed, task.total) / task.total)

    def _maybe_emit(self, task: LogTask, now: float) -> None:
        if not task.visible or task.ended or not task.dirty:
            return
        if task.finished or self._tenth(task) > task.last_tenth or now - task.last_line_at >= self.interval_s:
            self._emit(task, now)

    def _emit(self, task: LogTask, now: float) -> None:
        self.stream.write(self.line(task, now) + "\n")
        self.stream.flush()
        task.last_line_at, task.last_tenth, task.dirty = now, self._tenth(task), False
        task.ended = task.finished

    def line(self, task: LogTask, now: float) -> str:
        """``description: done/total (pct%), rate/s, elapsed, ETA; info``."""
        done = task.completed
        count = f"{done:g}/{task.total:g} ({100 * done / task.total:.0f}%)" if task.total else f"{done:g}"
        parts = [f"{task.description}: {count}"]
        elapsed = now - task.started_at
        work = done - task.started_from
        if elapsed > 0 and work > 0:
            rate = work / elapsed
            parts.append(f"{rate:,.0f}/s" if rate >= 100 else f"{rate:.3g}/s")
            parts.append(f"{_clock_text(elapsed)} elapsed")
            if task.total and not task.finished:
                parts.append(f"ETA {_clock_text((task.total - done) / rate)}")
        elif elapsed > 0:
            parts.append(f"{_clock_text(elapsed)} elapsed")
        info = str(task.fields.get("info") or "").strip()
        return ", ".join(parts) + (f"; {info}" if info else "")
